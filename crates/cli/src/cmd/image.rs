//! `berth image ...`: build, validate and inspect images.
//!
//! `build` and `validate` work on files; `list`, `rm`, `gc`, `export`,
//! `extract`, `render` and `verify` on the store (`--dir`); `cat-manifest`
//! on either (an existing path is a file, anything else a store reference).
//! Store references are image IDs, unique ID prefixes (`sha512-` and at
//! least 2 hex digits) or names with labels, resolved as `berth fetch
//! --pull-policy=never` does.

use anyhow::{bail, Context};
use berth_appc::aci::{self, BuildOptions, Compression};
use berth_appc::{AnyManifest, Problem};
use clap::{Args, Subcommand};
use serde_json::json;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::Format;
use crate::globals::GlobalArgs;
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Build an ACI from a directory holding `manifest` and `rootfs/`.
    ///
    /// The manifest is validated first; nothing is written for an invalid one.
    /// Entries are sorted and owners, modes, hard links, symlinks, device
    /// nodes, fifos and xattrs are kept (device nodes are never opened).
    /// Gzip compression runs on every core. The image ID is printed on stdout.
    Build(BuildArgs),
    /// Check ACIs, image manifests and pod manifests against the appc spec.
    ///
    /// The kind of each FILE is detected. One line per problem; exits 0 only
    /// if every file is valid, 1 otherwise.
    Validate(ValidateArgs),
    /// Print the image manifest of an ACI file or of an image in the store
    /// (for a Docker/OCI image: its OCI manifest and config).
    CatManifest(CatManifestArgs),
    /// List the images in the store.
    #[command(alias = "ls")]
    List(super::store::ListArgs),
    /// Remove images from the store (and the trees rendered from them).
    Rm(super::store::RmArgs),
    /// Remove images unused for longer than the grace period, and unused trees.
    Gc(super::store::GcArgs),
    /// Write an image of the store to a file: an ACI (the same image ID), or
    /// a Docker/OCI image as an OCI archive (--format=oci-archive).
    Export(super::store::ExportArgs),
    /// Extract an image alone (no dependencies) into a directory.
    Extract(super::store::ExtractArgs),
    /// Render an image with its dependencies into the tree store (and print
    /// the tree's rootfs), or copy it into a directory.
    Render(super::store::RenderArgs),
    /// Re-hash the store's images and trees; exit 1 if anything is corrupt.
    Verify(super::store::VerifyArgs),
    /// Show where appc discovery finds an image name: ACI and signature
    /// URLs, public keys (and, with --debug, every URL tried).
    Discover(super::discover::DiscoverArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Compression of the archive.
    #[arg(long, default_value = "gzip", value_parser = parse_compression)]
    pub compression: Compression,
    /// Compression level (gzip 1-9, xz 0-9, zstd 1-22); the format's default if unset.
    #[arg(long)]
    pub level: Option<u32>,
    /// Give every entry this modification time (seconds since the epoch), for
    /// byte-identical rebuilds. Defaults to $SOURCE_DATE_EPOCH when set.
    #[arg(long, value_name = "SECONDS", env = "SOURCE_DATE_EPOCH")]
    pub mtime: Option<u64>,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Compression threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The image layout: a directory with `manifest` and `rootfs/`.
    pub dir: PathBuf,
    /// The ACI to write; its name must end in `.aci`.
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// ACI files, image manifests or pod manifests.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CatManifestArgs {
    /// Re-indent the manifest instead of printing it as stored.
    #[arg(long)]
    pub pretty: bool,
    /// For a Docker/OCI image: print the appc image manifest berth runs it
    /// as (its config as an app) instead of its OCI manifest and config.
    #[arg(long)]
    pub app: bool,
    /// An ACI file, or an image ID or name in the store.
    pub image: String,
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse::<Compression>()
        .map_err(|_| format!("unknown compression {s:?} (gzip, bzip2, xz, zstd or none)"))
}

pub fn run(global: &GlobalArgs, cmd: ImageCmd) -> anyhow::Result<Outcome> {
    use super::store;
    match cmd {
        ImageCmd::Build(args) => build(&args),
        ImageCmd::Validate(args) => validate(&args),
        ImageCmd::CatManifest(args) => cat_manifest(global, &args),
        ImageCmd::List(args) => store::list(global, &args),
        ImageCmd::Rm(args) => store::rm(global, &args),
        ImageCmd::Gc(args) => store::gc(global, &args),
        ImageCmd::Export(args) => store::export(global, &args),
        ImageCmd::Extract(args) => store::extract(global, &args),
        ImageCmd::Render(args) => store::render(global, &args),
        ImageCmd::Verify(args) => store::verify(global, &args),
        ImageCmd::Discover(args) => super::discover::run(global, &args),
    }
}

fn build(args: &BuildArgs) -> anyhow::Result<Outcome> {
    let what = || {
        format!(
            "building {} from {}",
            args.out.display(),
            args.dir.display()
        )
    };
    if args.out.extension().and_then(|e| e.to_str()) != Some("aci") {
        return Err(anyhow::anyhow!(
            "{:?} does not end in \".aci\", which appc requires of image archives",
            args.out.display().to_string()
        ))
        .with_context(what);
    }
    if args.compression == Compression::Bzip2 {
        return Err(anyhow::anyhow!(
            "berth reads bzip2 ACIs but does not write them; use gzip, xz, zstd or none"
        ))
        .with_context(what);
    }
    let opts = BuildOptions {
        compression: args.compression,
        level: args.level,
        mtime: args.mtime,
        threads: args.threads,
        overwrite: args.overwrite,
    };
    tracing::debug!(?opts, "building image");
    let report = aci::build(&args.dir, &args.out, &opts).with_context(what)?;
    for warning in &report.warnings {
        eprintln!("berth: warning: {warning}");
    }
    tracing::debug!(
        entries = report.entries,
        tar_size = report.tar_size,
        compressed_size = report.compressed_size,
        "image built"
    );
    println!("{}", report.image_id);
    Ok(Outcome::Success)
}

/// What one file turned out to be, and what is wrong with it.
struct Verdict {
    file: PathBuf,
    kind: &'static str,
    image_id: Option<String>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

fn validate(args: &ValidateArgs) -> anyhow::Result<Outcome> {
    let verdicts: Vec<Verdict> = args.files.iter().map(|f| validate_one(f)).collect();
    let all_valid = verdicts.iter().all(|v| v.problems.is_empty());
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => {
            for v in &verdicts {
                let name = v.file.display();
                for w in &v.warnings {
                    writeln!(out, "{name}: warning: {w}")?;
                }
                if v.problems.is_empty() {
                    match &v.image_id {
                        Some(id) => writeln!(out, "{name}: valid {} {id}", v.kind)?,
                        None => writeln!(out, "{name}: valid {}", v.kind)?,
                    }
                } else {
                    for p in &v.problems {
                        writeln!(out, "{name}: {p}")?;
                    }
                }
            }
        }
        Format::Json => {
            let docs: Vec<serde_json::Value> = verdicts
                .iter()
                .map(|v| {
                    json!({
                        "file": v.file.display().to_string(),
                        "kind": v.kind,
                        "valid": v.problems.is_empty(),
                        "imageID": v.image_id,
                        "problems": v.problems,
                        "warnings": v.warnings,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
        }
    }
    Ok(if all_valid {
        Outcome::Success
    } else {
        Outcome::Negative
    })
}

fn validate_one(path: &Path) -> Verdict {
    let mut verdict = Verdict {
        file: path.to_path_buf(),
        kind: "file",
        image_id: None,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            verdict.problems.push(format!("cannot open: {e}"));
            return verdict;
        }
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let looks_like_json = match reader.fill_buf() {
        Ok(head) => head
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{'),
        Err(e) => {
            verdict.problems.push(format!("cannot read: {e}"));
            return verdict;
        }
    };
    if looks_like_json {
        verdict.kind = "manifest";
        let mut bytes = Vec::new();
        if let Err(e) = reader.read_to_end(&mut bytes) {
            verdict.problems.push(format!("cannot read: {e}"));
            return verdict;
        }
        match AnyManifest::from_json(&bytes) {
            Ok(AnyManifest::Image(_)) => verdict.kind = "ImageManifest",
            Ok(AnyManifest::Pod(_)) => verdict.kind = "PodManifest",
            Err(e) => verdict.problems = e.problems.iter().map(Problem::to_string).collect(),
        }
        return verdict;
    }
    verdict.kind = "ACI";
    match aci::validate(reader) {
        Ok(report) => {
            verdict.image_id = Some(report.image_id.to_string());
            verdict.problems = report.problems.iter().map(Problem::to_string).collect();
            verdict.warnings = report.warnings.iter().map(Problem::to_string).collect();
        }
        Err(e) => verdict.problems.push(error_chain(&e)),
    }
    verdict
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}

fn cat_manifest(global: &GlobalArgs, args: &CatManifestArgs) -> anyhow::Result<Outcome> {
    let what = || format!("reading the manifest of {}", args.image);
    let path = Path::new(&args.image);
    let bytes = if path.exists() {
        let file = File::open(path).with_context(what)?;
        aci::read_manifest_bytes(BufReader::with_capacity(256 * 1024, file)).with_context(what)?
    } else {
        let store = super::fetch::open_store(global)?;
        match super::oci::find_any(&store, &args.image).with_context(what)? {
            super::oci::AnyImage::Aci(image) => {
                store.manifest_bytes(&image.id).with_context(what)?
            }
            super::oci::AnyImage::Oci(image) if args.app => {
                let tree = store.oci_render(&image).with_context(what)?;
                let m = store
                    .oci_app_manifest(&image, Some(&tree))
                    .with_context(what)?;
                m.to_json_pretty().into_bytes()
            }
            super::oci::AnyImage::Oci(image) => {
                // The OCI manifest and the config, as one JSON document.
                let manifest = store.read_blob(&image.manifest.digest).with_context(what)?;
                let config = store.read_blob(&image.config.digest).with_context(what)?;
                let m: serde_json::Value = serde_json::from_slice(&manifest)
                    .with_context(|| format!("{}: the OCI manifest is not JSON", what()))?;
                let c: serde_json::Value = serde_json::from_slice(&config)
                    .with_context(|| format!("{}: the image config is not JSON", what()))?;
                let doc = json!({"id": image.id.to_string(), "manifest": m, "config": c});
                if args.pretty {
                    serde_json::to_string_pretty(&doc)?.into_bytes()
                } else {
                    serde_json::to_string(&doc)?.into_bytes()
                }
            }
        }
    };
    let mut out = std::io::stdout().lock();
    if args.pretty {
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => bail!("{}: the manifest is not JSON: {e}", what()),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        out.write_all(&bytes)?;
        if !bytes.ends_with(b"\n") {
            writeln!(out)?;
        }
    }
    Ok(Outcome::Success)
}
