//! The store-backed `berth image` subcommands: list, rm, gc, export,
//! extract, render, verify. Each opens the store under `--dir`, resolves
//! references with [`super::oci::find_any`] (ACIs and Docker/OCI images) and prints what it did.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use berth_store::{ImageInfo, OciImage, Store, TreeLease, VerifyOptions, VerifyStatus};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::fetch::{open_store, short_id};
use super::oci::{find_any, AnyImage};
use super::Format;
use crate::globals::GlobalArgs;
use crate::Outcome;

/// Hex digits of an image ID that `image list` shows without `--full` (rkt's).
const LIST_SHORT_HEX: usize = 12;

/// A column of `image list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Field {
    Id,
    Name,
    Labels,
    Size,
    Importtime,
    Lastused,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format (JSON has whole IDs, sizes in bytes and times in
    /// seconds since the epoch).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Columns to show, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "id,name,labels,size,importtime,lastused"
    )]
    pub fields: Vec<Field>,
    /// Leave out the header line.
    #[arg(long)]
    pub no_legend: bool,
    /// Whole image IDs and exact sizes.
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Image IDs (or unique prefixes) or names.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep images used more recently than this (e.g. 24h, 30m, 0s).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub grace_period: Duration,
}

/// What `image export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The ACI as stored (ACI images only).
    Aci,
    /// An OCI image layout in a tar (OCI images only; `oci-archive:` reads it).
    OciArchive,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Replace OUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// The output format: aci for ACIs, oci-archive for Docker/OCI images
    /// (the default is the image's own kind).
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    /// Image ID (or unique prefix), name, or the reference an OCI image
    /// was fetched as.
    pub image: String,
    /// The file to write.
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Only the content of the rootfs (no `manifest`, no `rootfs/` level).
    #[arg(long)]
    pub rootfs_only: bool,
    /// Empty DIR first if it is not empty.
    #[arg(long)]
    pub overwrite: bool,
    /// Image ID (or unique prefix) or name.
    pub image: String,
    /// The target directory (missing or empty).
    #[arg(value_name = "DIR")]
    pub target: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Without DIR the image is rendered into the store's tree store only (what a
pod uses; nothing is copied) and the path of the tree's rootfs is printed; an
existing tree is reused. With DIR the tree is copied into DIR (`manifest` and
`rootfs/`, or with --rootfs-only the rootfs's content).")]
pub struct RenderArgs {
    /// Only the content of the rootfs (no `manifest`, no `rootfs/` level); needs DIR.
    #[arg(long, requires = "target")]
    pub rootfs_only: bool,
    /// Empty DIR first if it is not empty; needs DIR.
    #[arg(long, requires = "target")]
    pub overwrite: bool,
    /// Image ID (or unique prefix) or name.
    pub image: String,
    /// Copy the rendered tree into this directory (missing or empty).
    #[arg(value_name = "DIR")]
    pub target: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Remove the corrupt images and trees found.
    #[arg(long)]
    pub drop_corrupt: bool,
    /// Images to check (all of them by default).
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `24h`, `30m`, `90s`, `1h30m`, `0`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (e.g. 24h, 30m, 90s, 1h30m)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `1.5 MiB`, `512 B`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `2026-11-29 23:48:21 UTC` (the trust commands' format).
fn utc(t: SystemTime) -> String {
    berth_fetch::trust::key::format_time(t)
}

fn labels_text(image: &ImageInfo) -> String {
    let text: Vec<String> = image
        .labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect();
    if text.is_empty() {
        "-".into()
    } else {
        text.join(",")
    }
}

/// An OCI image's short ID: `sha256:` and 12 hex digits.
fn oci_short(i: &OciImage, full: bool) -> String {
    let s = i.id.to_string();
    if full {
        s
    } else {
        s[.."sha256:".len() + LIST_SHORT_HEX].to_string()
    }
}

/// An OCI image's name in `list`: the reference it was last fetched as.
fn oci_name(i: &OciImage) -> String {
    i.references.first().cloned().unwrap_or_else(|| "-".into())
}

pub fn list(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
    let images = store.list().context("listing the images in the store")?;
    let oci = store
        .oci_images()
        .context("listing the OCI images in the store")?;
    let mut out = io::stdout().lock();
    if args.format == Format::Json {
        let mut docs: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                let labels: serde_json::Map<String, serde_json::Value> = i
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), json!(l.value)))
                    .collect();
                json!({
                    "kind": "aci",
                    "id": i.id.as_str(),
                    "name": i.name.as_str(),
                    "labels": labels,
                    "size": i.size(),
                    "blobSize": i.blob_size,
                    "treeSize": i.tree_size,
                    "importTime": unix(i.import_time),
                    "lastUsed": unix(i.last_used),
                    "origin": i.origin,
                })
            })
            .collect();
        docs.extend(oci.iter().map(|i| {
            json!({
                "kind": "oci",
                "id": i.id.to_string(),
                "digest": i.id.to_string(),
                "name": oci_name(i),
                "references": i.references,
                "platform": i.platform,
                "configDigest": i.config.digest.to_string(),
                "layers": i.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
                "size": i.size + i.tree_size,
                "blobSize": i.size,
                "treeSize": i.tree_size,
                "importTime": unix(i.import_time),
                "lastUsed": unix(i.last_used),
                "origin": i.origin,
            })
        }));
        writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
        return Ok(Outcome::Success);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    if !args.no_legend {
        rows.push(
            args.fields
                .iter()
                .map(|f| {
                    match f {
                        Field::Id => "ID",
                        Field::Name => "NAME",
                        Field::Labels => "LABELS",
                        Field::Size => "SIZE",
                        Field::Importtime => "IMPORT TIME",
                        Field::Lastused => "LAST USED",
                    }
                    .to_string()
                })
                .collect(),
        );
    }
    for i in &images {
        rows.push(
            args.fields
                .iter()
                .map(|f| match f {
                    Field::Id if args.full => i.id.to_string(),
                    Field::Id => short_id(i.id.as_str(), LIST_SHORT_HEX).to_string(),
                    Field::Name => i.name.to_string(),
                    Field::Labels => labels_text(i),
                    Field::Size if args.full => i.size().to_string(),
                    Field::Size => human_size(i.size()),
                    Field::Importtime => utc(i.import_time),
                    Field::Lastused => utc(i.last_used),
                })
                .collect(),
        );
    }
    for i in &oci {
        rows.push(
            args.fields
                .iter()
                .map(|f| match f {
                    Field::Id => oci_short(i, args.full),
                    Field::Name => oci_name(i),
                    Field::Labels => i
                        .platform
                        .as_deref()
                        .map_or("-".into(), |p| format!("platform={p}")),
                    Field::Size if args.full => (i.size + i.tree_size).to_string(),
                    Field::Size => human_size(i.size + i.tree_size),
                    Field::Importtime => utc(i.import_time),
                    Field::Lastused => utc(i.last_used),
                })
                .collect(),
        );
    }
    super::write_table(&mut out, &rows)?;
    Ok(Outcome::Success)
}

pub fn rm(global: &GlobalArgs, args: &RmArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
    let mut failed = 0;
    for arg in &args.images {
        let result = find_any(&store, arg).and_then(|i| match i {
            AnyImage::Aci(i) => {
                let removed = store.remove(&i.id)?;
                let trees: u64 = removed.trees.iter().map(|t| t.size).sum();
                Ok(format!(
                    "removed {} {} ({})",
                    removed.id,
                    removed.name,
                    human_size(removed.size + trees)
                ))
            }
            AnyImage::Oci(i) => {
                let removed = store.oci_remove(&i.id)?;
                let trees: u64 = removed.trees.iter().map(|t| t.size).sum();
                Ok(format!(
                    "removed {} {} ({})",
                    removed.id,
                    removed.references.first().map_or("-", String::as_str),
                    human_size(removed.freed + trees)
                ))
            }
        });
        match result {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed += 1;
                eprintln!(
                    "berth: cannot remove {arg}: {}",
                    e.chain().last().map(|c| c.to_string()).unwrap_or_default()
                );
            }
        }
    }
    if failed > 0 {
        bail!(
            "removing images: {failed} of {} could not be removed",
            args.images.len()
        );
    }
    Ok(Outcome::Success)
}

/// Lease the trees of every pod still on disk that may use them again
/// (prepared, running, exited: `run-prepared` and `export` need them), so
/// the store's gc keeps them. Running pods hold their own leases too.
fn lease_pod_trees<'s>(
    global: &GlobalArgs,
    store: &'s Store,
) -> anyhow::Result<Vec<TreeLease<'s>>> {
    use berth_pod::PodState;
    let pods = berth_pod::Pods::open(&global.dir).context("opening the pods")?;
    let mut leases = Vec::new();
    for pod in pods.list()? {
        if !matches!(
            pod.state,
            PodState::Preparing | PodState::Prepared | PodState::Running | PodState::Exited
        ) {
            continue;
        }
        // A pod without a readable plan cannot use a tree again.
        let Ok(plan) = berth_pod::PodPlan::load(&pod.dir) else {
            continue;
        };
        for app in &plan.apps {
            let Ok(key) = app.tree_key.parse() else {
                continue;
            };
            // A tree already gone (or never settled) has nothing to keep.
            if let Ok(l) = store.tree_lease(&key, &format!("pod {}", pod.uuid)) {
                leases.push(l);
            }
        }
    }
    Ok(leases)
}

pub fn gc(global: &GlobalArgs, args: &GcArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
    let leases = lease_pod_trees(global, &store)?;
    let report = store
        .gc(args.grace_period)
        .context("garbage-collecting the store")?;
    let mut out = io::stdout().lock();
    for t in &report.removed_trees {
        writeln!(out, "removed tree {} ({})", t.key, human_size(t.size))?;
    }
    for i in &report.removed_images {
        for t in &i.trees {
            writeln!(out, "removed tree {} ({})", t.key, human_size(t.size))?;
        }
        writeln!(
            out,
            "removed image {} {} ({})",
            i.id,
            i.name,
            human_size(i.size)
        )?;
    }
    for i in &report.removed_oci_images {
        writeln!(
            out,
            "removed image {} {} ({})",
            i.id,
            i.references.first().map_or("-", String::as_str),
            human_size(i.freed)
        )?;
    }
    for (key, holders) in &report.kept_trees {
        writeln!(out, "kept tree {key}: in use by {}", holders.join(", "))?;
    }
    writeln!(out, "freed {}", human_size(report.freed))?;
    drop(leases);
    Ok(Outcome::Success)
}

pub fn export(global: &GlobalArgs, args: &ExportArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
    let what = || format!("exporting {} to {}", args.image, args.out.display());
    match (
        find_any(&store, &args.image).with_context(what)?,
        args.format,
    ) {
        (AnyImage::Aci(image), None | Some(ExportFormat::Aci)) => {
            store
                .export(&image.id, &args.out, args.overwrite)
                .with_context(what)?;
        }
        (AnyImage::Oci(image), None | Some(ExportFormat::OciArchive)) => {
            let tag = image
                .references
                .first()
                .and_then(|r| r.strip_prefix("docker://"))
                .and_then(|r| berth_appc::oci::DockerReference::parse(r).ok())
                .and_then(|r| r.tag().map(str::to_string));
            store
                .oci_export_archive(&image, tag.as_deref(), &args.out, args.overwrite)
                .with_context(what)?;
        }
        (AnyImage::Aci(_), Some(ExportFormat::OciArchive)) => {
            return Err(anyhow::anyhow!(
                "it is an ACI, which exports as --format=aci (berth does not convert ACIs to OCI)"
            ))
            .with_context(what)
        }
        (AnyImage::Oci(_), Some(ExportFormat::Aci)) => {
            return Err(anyhow::anyhow!(
                "it is a Docker/OCI image, which exports as --format=oci-archive"
            ))
            .with_context(what)
        }
    }
    Ok(Outcome::Success)
}

/// Empties `dir` (without following symlinks) for `--overwrite`.
fn empty_for_overwrite(dir: &Path) -> anyhow::Result<()> {
    if fs::canonicalize(dir).is_ok_and(|c| c == Path::new("/")) {
        bail!("refusing to empty /");
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let p = e?.path();
        if fs::symlink_metadata(&p)?.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        }
        .with_context(|| format!("emptying {}", dir.display()))?;
    }
    Ok(())
}

pub fn extract(global: &GlobalArgs, args: &ExtractArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
    let what = || format!("extracting {} into {}", args.image, args.target.display());
    let image = match find_any(&store, &args.image).with_context(what)? {
        AnyImage::Aci(i) => i,
        AnyImage::Oci(_) => {
            return Err(anyhow::anyhow!(
                "it is a Docker/OCI image, whose layers only make sense stacked: use `berth image render IMAGE DIR`"
            ))
            .with_context(what)
        }
    };
    store
        .extract(&image.id, &args.target, args.rootfs_only, args.overwrite)
        .with_context(what)?;
    Ok(Outcome::Success)
}

/// `berth image render IMAGE [DIR]`: into the tree store (printing the
/// tree's rootfs), and with DIR copied there.
pub fn render(global: &GlobalArgs, args: &RenderArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
    let Some(target) = &args.target else {
        let what = || format!("rendering {}", args.image);
        let rootfs = match find_any(&store, &args.image).with_context(what)? {
            AnyImage::Aci(image) => store.render(&image.id).with_context(what)?.rootfs(),
            AnyImage::Oci(image) => store.oci_render(&image).with_context(what)?.rootfs(),
        };
        writeln!(io::stdout().lock(), "{}", rootfs.display())?;
        return Ok(Outcome::Success);
    };
    let what = || format!("rendering {} into {}", args.image, target.display());
    let image = find_any(&store, &args.image).with_context(what)?;
    if args.overwrite {
        empty_for_overwrite(target).with_context(what)?;
    }
    match image {
        AnyImage::Aci(image) => {
            store
                .render_to(&image.id, target, args.rootfs_only)
                .with_context(what)?;
        }
        AnyImage::Oci(image) => {
            store
                .oci_render_to(&image, target, args.rootfs_only)
                .with_context(what)?;
        }
    }
    Ok(Outcome::Success)
}

pub fn verify(global: &GlobalArgs, args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let store = open_store(global)?;
    let mut ids = Vec::new();
    let mut oci = Vec::new();
    for arg in &args.images {
        match find_any(&store, arg).with_context(|| format!("verifying {arg}"))? {
            AnyImage::Aci(i) => ids.push(i.id),
            AnyImage::Oci(i) => oci.push(i),
        }
    }
    let all = args.images.is_empty();
    if all {
        oci = store.oci_images().context("listing the OCI images")?;
    }
    let report = if all || !ids.is_empty() {
        store
            .verify(
                &ids,
                VerifyOptions {
                    drop_corrupt: args.drop_corrupt,
                },
            )
            .context("verifying the store")?
    } else {
        berth_store::VerifyReport::default()
    };
    let mut out = io::stdout().lock();
    let status = |s: &VerifyStatus| match s {
        VerifyStatus::Ok => "ok".to_string(),
        VerifyStatus::Missing => "MISSING".to_string(),
        VerifyStatus::Corrupt { reason } => format!("CORRUPT: {reason}"),
    };
    for (id, s) in &report.images {
        writeln!(out, "image {id}: {}", status(s))?;
    }
    for (key, s) in &report.trees {
        writeln!(out, "tree {key}: {}", status(s))?;
    }
    for d in &report.dropped {
        writeln!(out, "dropped {d}")?;
    }
    let mut oci_clean = true;
    for img in &oci {
        let blobs = store.oci_verify(img);
        let bad: Vec<&(berth_store::Digest, VerifyStatus)> = blobs
            .iter()
            .filter(|(_, s)| *s != VerifyStatus::Ok)
            .collect();
        let tree = store
            .oci_verify_tree(img)
            .with_context(|| format!("verifying the tree of {}", img.id))?;
        if let Some((key, s)) = &tree {
            if *s != VerifyStatus::Ok {
                oci_clean = false;
                writeln!(out, "tree {key}: {}", status(s))?;
            }
        }
        if bad.is_empty() {
            writeln!(out, "image {}: ok", img.id)?;
            continue;
        }
        oci_clean = false;
        writeln!(out, "image {}: CORRUPT", img.id)?;
        for (d, s) in bad {
            writeln!(out, "blob {d}: {}", status(s))?;
        }
        if args.drop_corrupt {
            match store.oci_remove(&img.id) {
                Ok(_) => writeln!(out, "dropped {}", img.id)?,
                Err(e) => eprintln!("berth: cannot drop {}: {e}", img.id),
            }
        }
    }
    Ok(if report.is_clean() && oci_clean {
        Outcome::Success
    } else {
        Outcome::Negative
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(1_764_460_101)),
            "2025-11-29 23:48:21 UTC"
        );
    }
}
