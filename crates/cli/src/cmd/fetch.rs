//! `berth fetch`: bring images into the store and print their IDs; and the
//! set-up shared by every store-backed command (opening the store, the HTTP
//! client's configuration from the global flags and the environment).
//!
//! Like rkt, `fetch` prints a shortened ID (`sha512-` and 32 hex digits,
//! which every command accepts as a unique prefix) and the whole ID with
//! `--full`; one line per image, in the order given, on stdout.

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
    /// ACI files, https:// URLs, image IDs or names with labels
    /// (`example.com/app:1.0,arch=amd64`).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
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

pub fn run(global: &GlobalArgs, args: &FetchArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
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
    let mut fetcher = ImageFetcher::new(&store, &http, args.pull_policy);
    fetcher.insecure_image = insecure_image;
    fetcher.resolver = Some(&resolver);
    // Images are fetched to be run: an image that is its own tree (no
    // dependencies) is rendered on the same pass, decompressed once, so a
    // later run or `image render` finds the tree ready.
    fetcher.render = true;
    if !insecure_image {
        fetcher.verifiers = Some(&trusted);
    }
    for image in &args.images {
        let fetched = fetcher
            .fetch(image)
            .with_context(|| format!("fetching {image}"))?;
        for v in trusted
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            eprintln!("berth: {image}: {v}");
        }
        tracing::debug!(image, id = %fetched.id, source = ?fetched.source, "fetched");
        let id = fetched.id.as_str();
        if args.full {
            println!("{id}");
        } else {
            println!("{}", short_id(id, FETCH_SHORT_HEX));
        }
    }
    Ok(Outcome::Success)
}
