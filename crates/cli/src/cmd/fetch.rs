//! `berth fetch`: bring images into the store and print their IDs; and the
//! set-up shared by every store-backed command (opening the store, the HTTP
//! client's configuration from the global flags and the environment).
//!
//! Like rkt, `fetch` prints a shortened ID (`sha512-` and 32 hex digits,
//! which every command accepts as a unique prefix) and the whole ID with
//! `--full`; one line per image, in the order given, on stdout.
//!
//! Docker/OCI images (`docker://`, `oci:`, `oci-archive:`,
//! `docker-archive:`) are fetched by `berth_fetch::oci`; their ID is the
//! digest of their manifest, `sha256:<64 hex>`, always printed whole.

use std::path::PathBuf;

use anyhow::Context;
use berth_fetch::{AuthConfig, FetchConfig, Fetcher, ImageFetcher, PullPolicy};
use berth_store::Store;
use clap::Args;

use crate::globals::{GlobalArgs, Insecure};
use crate::Outcome;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// When to use the store and when to ask the network: never (store
    /// only), new (download only what is missing), update (ask the server
    /// whether the stored copy is current).
    #[arg(long, default_value = "update", value_name = "POLICY")]
    pub pull_policy: PullPolicy,
    /// Print whole image IDs (otherwise `sha512-` and 32 hex digits).
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub oci: OciArgs,
    /// ACI files, https:// URLs, image IDs or names with labels
    /// (`example.com/app:1.0,arch=amd64`), or Docker/OCI images:
    /// docker://[REGISTRY/]REPO[:TAG|@DIGEST], oci:DIR[:TAG],
    /// oci-archive:FILE[:TAG], docker-archive:FILE[:REF].
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Flags for Docker/OCI images, shared by `fetch`, `run` and `prepare`.
#[derive(Debug, Clone, Default, Args)]
pub struct OciArgs {
    /// For Docker/OCI images with several platforms (an index): which one
    /// to fetch, as OS/ARCH[/VARIANT] (e.g. linux/arm64); the host's by default.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub platform: Option<berth_appc::oci::spec::Platform>,
    /// A Docker config.json with registry credentials (`auths`); by
    /// default $DOCKER_CONFIG/config.json, then ~/.docker/config.json.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
}

impl OciArgs {
    /// How to fetch Docker/OCI images under these flags.
    pub fn options(&self, policy: PullPolicy) -> berth_fetch::oci::OciFetchOptions {
        berth_fetch::oci::OciFetchOptions {
            policy,
            platform: self.platform.clone(),
            registry_config: self.registry_config(),
            ..Default::default()
        }
    }

    /// The Docker config.json to read registry credentials from.
    fn registry_config(&self) -> Option<PathBuf> {
        if let Some(p) = &self.registry_config {
            return Some(p.clone());
        }
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(d).join("config.json"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".docker/config.json"))
    }
}

fn parse_platform(s: &str) -> Result<berth_appc::oci::spec::Platform, String> {
    berth_appc::oci::spec::Platform::parse(s)
        .ok_or_else(|| format!("{s:?} is not OS/ARCH[/VARIANT] (e.g. linux/amd64, linux/arm/v7)"))
}

/// Hex digits of an image ID that `fetch` prints without `--full` (rkt's).
const FETCH_SHORT_HEX: usize = 32;

/// Opens (creating it if needed) the store under `--dir`.
pub fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    Store::open(&global.dir)
        .with_context(|| format!("opening the image store in {}", global.dir.display()))
}

/// The HTTP client configuration from the global flags: `--insecure-options`
/// (http, tls), `SSL_CERT_FILE` added to the trusted CAs, and credentials
/// from `<system-config>/auth.d` then `<local-config>/auth.d`.
pub fn fetch_config(global: &GlobalArgs) -> anyhow::Result<FetchConfig> {
    let insecure = global.insecure_options;
    let auth = AuthConfig::load(&[&global.system_config, &global.local_config])
        .context("reading credentials from auth.d")?;
    let extra_ca_files = std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    // For tests and local mirrors only: connect to these addresses for
    // these hosts (appc names cannot carry a port).
    let host_overrides = match std::env::var("BERTH_HOST_OVERRIDES") {
        Ok(v) => berth_fetch::parse_host_overrides(&v)
            .map_err(|e| anyhow::anyhow!("BERTH_HOST_OVERRIDES: {e}"))?,
        Err(_) => Vec::new(),
    };
    Ok(FetchConfig {
        host_overrides,
        allow_http: insecure.allows(Insecure::Http),
        skip_tls_verify: insecure.allows(Insecure::Tls),
        extra_ca_files,
        auth,
        ..FetchConfig::default()
    })
}

/// `sha512-` and the first `hex` digits of an ID (all of it if shorter).
pub fn short_id(id: &str, hex: usize) -> &str {
    let end = ("sha512-".len() + hex).min(id.len());
    &id[..end]
}

/// The fetchers a command that brings images in works with.
pub struct Fetchers<'a> {
    /// appc images: files, URLs, IDs, names (discovery, signatures).
    pub aci: ImageFetcher<'a>,
    /// Docker/OCI images: registries, layouts, archives.
    pub oci: berth_fetch::oci::OciFetcher<'a>,
    /// Tells, after an image, whose signature it carried.
    pub report: &'a dyn Fn(&str),
}

/// Set up the fetchers the way every command that brings images in needs
/// them (discovery for names, signature verification unless
/// `--insecure-options=image`, registry credentials) and hand them to `f`.
pub fn with_image_fetcher<T>(
    global: &GlobalArgs,
    store: &Store,
    policy: PullPolicy,
    oci_options: berth_fetch::oci::OciFetchOptions,
    f: impl FnOnce(&mut Fetchers<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let http = Fetcher::new(fetch_config(global)?).context("setting up the HTTP client")?;
    let insecure_image = global.insecure_options.allows(Insecure::Image);
    if insecure_image {
        eprintln!("berth: warning: image signature verification is disabled");
    }
    // Names are found by appc discovery; every image is verified against
    // the trusted keys before the store shows it (unless
    // --insecure-options=image).
    let discovered = berth_fetch::discover::DiscoveredMap::default();
    let resolver = berth_fetch::discover::DiscoveryResolver {
        fetcher: &http,
        discovered: discovered.clone(),
    };
    let trusted =
        berth_fetch::trust::TrustedImages::new(&http, super::trust::keystore(global), discovered);
    let mut aci = ImageFetcher::new(store, &http, policy);
    aci.insecure_image = insecure_image;
    aci.resolver = Some(&resolver);
    // Images are fetched to be run: an image that is its own tree (no
    // dependencies) is rendered on the same pass, decompressed once, so a
    // later run or `image render` finds the tree ready.
    aci.render = true;
    if !insecure_image {
        aci.verifiers = Some(&trusted);
    }
    let oci = berth_fetch::oci::OciFetcher::new(store, &http, oci_options);
    let report = |image: &str| {
        for v in trusted
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            eprintln!("berth: {image}: {v}");
        }
    };
    f(&mut Fetchers {
        aci,
        oci,
        report: &report,
    })
}

/// Whether an image argument names a Docker/OCI image.
pub fn is_oci_arg(image: &str) -> anyhow::Result<Option<berth_appc::ImageArg>> {
    let arg = berth_appc::ImageArg::classify(image).with_context(|| format!("fetching {image}"))?;
    Ok(matches!(
        arg,
        berth_appc::ImageArg::DockerRef(_) | berth_appc::ImageArg::OciLayout { .. }
    )
    .then_some(arg))
}

pub fn run(global: &GlobalArgs, args: &FetchArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
    let oci_options = args.oci.options(args.pull_policy);
    let insecure_image = global.insecure_options.allows(Insecure::Image);
    with_image_fetcher(global, &store, args.pull_policy, oci_options, |f| {
        let mut warned = insecure_image;
        for image in &args.images {
            if let Some(arg) = is_oci_arg(image)? {
                let fetched = f
                    .oci
                    .fetch(&arg)
                    .with_context(|| format!("fetching {image}"))?;
                tracing::debug!(image, id = %fetched.image.id, downloaded = fetched.downloaded.len(),
                    reused = fetched.reused.len(), from_store = fetched.from_store, "fetched");
                if !warned {
                    warned = true;
                    eprintln!("berth: note: Docker/OCI images are not signature-checked; running one needs --insecure-options=image");
                }
                println!("{}", fetched.image.id);
                continue;
            }
            let fetched = f
                .aci
                .fetch(image)
                .with_context(|| format!("fetching {image}"))?;
            (f.report)(image);
            tracing::debug!(image, id = %fetched.id, source = ?fetched.source, "fetched");
            let id = fetched.id.as_str();
            if args.full {
                println!("{id}");
            } else {
                println!("{}", short_id(id, FETCH_SHORT_HEX));
            }
        }
        Ok(Outcome::Success)
    })
}
