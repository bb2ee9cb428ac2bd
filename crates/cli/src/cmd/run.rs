//! `berth run`, `berth prepare`, `berth run-prepared`: stage0.
//!
//! Stage0 does everything that needs the store, the network or the command
//! line, then gets out of the way:
//! 1. parse rkt's syntax (`[pod flags] IMAGE [app flags] [-- ARGS ---] ...`)
//!    into an appc pod manifest (or read one with `--pod-manifest`);
//! 2. fetch the images (pull policy, signatures) and render their trees,
//!    leasing each tree for the pod so `image gc` leaves it alone;
//! 3. create the pod directory (embryo -> prepare) under its lock and write
//!    the pod manifest, the apps' image manifests and the typed plan;
//! 4. `run`: move the pod to `run/` and exec the stage1 supervisor *in
//!    place*, handing over the pod lock and the tree leases as open fds, so
//!    the PID the user (or systemd) started is the pod's supervisor;
//!    `prepare`: move it to `prepared/` and print its UUID.
//!
//! ## Docker/OCI images
//! A `docker://`, `oci:`, `oci-archive:` or `docker-archive:` image runs as
//! an app made of its config (`berth_appc::oci::app`): Entrypoint + Cmd,
//! Env, WorkingDir, User, Volumes as mount points, StopSignal. The command
//! line overrides it as `docker run` does: arguments after `--` replace
//! Cmd and keep the Entrypoint; `--exec` replaces the Entrypoint and drops
//! Cmd. A volume with no `--volume` is empty, with the mode and owner of
//! the image's directory there (as Docker creates one). The pod manifest
//! names the image by its appc ID (the SHA-512 of its manifest, see
//! `berth_appc::oci::app`) and carries the digest as an annotation; the
//! plan keeps the digest, by which `run-prepared` finds the image again.
//! OCI images carry no signature berth checks, so running one needs
//! `--insecure-options=image`, and the error says so.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use berth_appc::manifest::{App, ImageManifest, Mount, PodManifest, RuntimeApp, RuntimeImage};
use berth_appc::manifest::{EventHandlerName, Volume, VolumeKind};
use berth_appc::oci::app as oci_app;
use berth_appc::oci::spec::{ImageConfig, Platform};
use berth_appc::types::{AcName, AcVersion, AppName, EnvVar, Environment, Exec, ImageId};
use berth_appc::types::{Annotation, Annotations};
use berth_fetch::PullPolicy;
use berth_pod::plan::{AppPlan, MountPlan, NetMode, PodPlan, RestartPolicy, PLAN_VERSION};
use berth_pod::plan::{VolumeKindPlan, VolumePlan};
use berth_pod::{fsutil, layout, Pod, Pods};
use berth_store::{OciImage, Store, TreeLease};
use clap::{Args, Parser};

use crate::globals::{GlobalArgs, Insecure};
use crate::Outcome;

/// The default `PATH` of ace.md, for apps whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Kept log per app before rotation (the previous part is kept too).
const LOG_MAX_BYTES: u64 = 8 << 20;

/// Flags that apply to one app when they follow its image, and to every app
/// when they stand before the first image.
#[derive(Debug, Clone, Default, Args)]
pub struct AppFlags {
    /// Run this program instead of the image's exec (app arguments after
    /// `--` are appended). For a Docker/OCI image it replaces the
    /// Entrypoint, and the image's Cmd is dropped, as `docker run
    /// --entrypoint` does.
    #[arg(long, value_name = "PROGRAM")]
    pub exec: Option<String>,
    /// The app's name in the pod (default: the last part of the image name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// User to run as: a name from the image's /etc/passwd, or a number.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Group to run as: a name from the image's /etc/group, or a number.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Working directory inside the app (absolute).
    #[arg(long, value_name = "DIR")]
    pub working_dir: Option<String>,
    /// Set an environment variable, NAME=VALUE (repeatable; wins over the
    /// image, --set-env-file and --inherit-env).
    #[arg(long, value_name = "NAME=VALUE")]
    pub set_env: Vec<String>,
    /// Read NAME=VALUE lines from a file (blank lines and # comments skipped).
    #[arg(long, value_name = "FILE")]
    pub set_env_file: Vec<PathBuf>,
    /// Mount a pod volume into the app: volume=NAME,target=PATH.
    #[arg(long, value_name = "volume=NAME,target=PATH")]
    pub mount: Vec<String>,
    /// Restart policy: no, on-failure[:MAX] or always (with exponential
    /// backoff; restarts are counted in `berth status`).
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Mount the app's root filesystem read-only.
    #[arg(long)]
    pub readonly_rootfs: bool,
    /// Signal `berth stop` sends to the app first: a name (TERM, SIGUSR1,
    /// SIGRTMIN+3) or a number. Default: a Docker image's StopSignal, else
    /// SIGTERM.
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
}

/// Flags of the pod as a whole (before the first image).
#[derive(Debug, Clone, Args)]
pub struct PodFlags {
    /// Network: `host` (share the host's network) or `none` (only a
    /// loopback interface). CNI networks come later; until then `host`
    /// is the default.
    #[arg(long, default_value = "host", value_name = "NET")]
    pub net: String,
    /// A pod volume: NAME,kind=host,source=PATH[,readOnly=true][,recursive=false]
    /// or NAME,kind=empty[,mode=0755][,uid=0][,gid=0][,readOnly=true].
    /// Apps' mount points of the same name use it; mount points with no
    /// volume get an empty one.
    #[arg(long, value_name = "VOLUME")]
    pub volume: Vec<String>,
    /// Pass berth's own environment to the apps (below the image's and
    /// --set-env's variables).
    #[arg(long)]
    pub inherit_env: bool,
    /// The pod's host name (default `berth-<uuid>`).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Copy the image into the pod instead of mounting an overlay over it.
    #[arg(long)]
    pub no_overlay: bool,
    /// Attach the (single) app to this terminal: a real pty, window size
    /// and Ctrl-C forwarded.
    #[arg(long)]
    pub interactive: bool,
    /// Do not prefix output lines with the app name in multi-app pods.
    #[arg(long)]
    pub no_prefix: bool,
    /// Grace between the stop signal and SIGKILL when the pod stops.
    #[arg(long, default_value = "10s", value_parser = super::store::parse_duration)]
    pub stop_timeout: Duration,
    /// Write the pod's UUID into this file.
    #[arg(long, value_name = "FILE")]
    pub uuid_file_save: Option<PathBuf>,
    /// Run this appc pod manifest instead of images named on the command
    /// line (its images must be in the store or fetchable by ID/name).
    #[arg(long, value_name = "FILE")]
    pub pod_manifest: Option<PathBuf>,
    /// When to use the store and when to ask the network: never, new
    /// (download only what is missing) or update.
    #[arg(long, default_value = "new", value_name = "POLICY")]
    pub pull_policy: PullPolicy,
    #[command(flatten)]
    pub oci: super::fetch::OciArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Images follow one another; flags after an image apply to that app, flags
before the first image to every app. Arguments after `--` go to the app
(appended to its exec) up to `---`:

  berth run --volume data,kind=empty example.com/db:1.0 --name db \\
      example.com/worker --exec /bin/work -- --queue fast ---

Docker/OCI images (docker://REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE,
docker-archive:FILE) run with --insecure-options=image (berth cannot check
their signatures yet). Arguments after `--` replace the image's Cmd and
--exec replaces its Entrypoint, as with `docker run`:

  berth --insecure-options=image run docker://busybox -- echo hello

berth run exits with the app's exit code (in a pod of several apps, the code
of the first app that failed; 128+N for an app killed by signal N) and 254
when berth itself fails. SIGTERM or SIGINT stop the pod gracefully.")]
pub struct RunArgs {
    #[command(flatten)]
    pub pod: PodFlags,
    #[command(flatten)]
    pub app: AppFlags,
    /// IMAGE [app flags] [-- ARGS... ---] [IMAGE ...]
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE"
    )]
    pub images: Vec<String>,
}

/// `berth prepare`: same flags as `run`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Print only the UUID.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct RunPreparedArgs {
    /// The prepared pod's UUID (or a unique prefix).
    pub uuid: String,
}

/// Parsed per-app flags after an image (clap does the checking).
#[derive(Debug, Parser)]
#[command(no_binary_name = true, disable_help_flag = true)]
struct AppFlagsCli {
    #[command(flatten)]
    flags: AppFlags,
}

/// App flags that take a value (so `--exec /bin/sh` keeps its value).
const VALUE_FLAGS: [&str; 10] = [
    "--exec",
    "--name",
    "--user",
    "--group",
    "--working-dir",
    "--set-env",
    "--set-env-file",
    "--mount",
    "--restart",
    "--stop-signal",
];

/// One app as the command line gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AppSpec {
    image: String,
    flags: Vec<String>,
    args: Vec<String>,
}

/// Split `IMAGE [flags] [-- ARGS ---] IMAGE ...` into apps.
fn split_apps(tokens: &[String]) -> anyhow::Result<Vec<AppSpec>> {
    let mut apps = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let image = &tokens[i];
        if image.starts_with('-') {
            bail!(
                "expected an image, found {image:?} (pod flags go before the first image, \
                 app flags after their image)"
            );
        }
        i += 1;
        let mut spec = AppSpec {
            image: image.clone(),
            flags: Vec::new(),
            args: Vec::new(),
        };
        while i < tokens.len() && tokens[i].starts_with("--") && tokens[i] != "--" {
            let f = &tokens[i];
            spec.flags.push(f.clone());
            i += 1;
            if VALUE_FLAGS.contains(&f.as_str()) {
                let v = tokens
                    .get(i)
                    .ok_or_else(|| anyhow!("{f} after {image} needs a value"))?;
                spec.flags.push(v.clone());
                i += 1;
            }
        }
        if tokens.get(i).map(String::as_str) == Some("--") {
            i += 1;
            while i < tokens.len() && tokens[i] != "---" {
                spec.args.push(tokens[i].clone());
                i += 1;
            }
            i += 1; // the `---`, if any
        }
        apps.push(spec);
    }
    Ok(apps)
}

fn parse_app_flags(spec: &AppSpec) -> anyhow::Result<AppFlags> {
    AppFlagsCli::try_parse_from(&spec.flags)
        .map(|c| c.flags)
        .map_err(|e| {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            anyhow!("app flags of {}: {first}", spec.image)
        })
}

/// Per-app flags over the pod-wide defaults.
fn merge_flags(defaults: &AppFlags, own: AppFlags) -> AppFlags {
    let mut set_env = defaults.set_env.clone();
    set_env.extend(own.set_env);
    let mut set_env_file = defaults.set_env_file.clone();
    set_env_file.extend(own.set_env_file);
    let mut mount = defaults.mount.clone();
    mount.extend(own.mount);
    AppFlags {
        exec: own.exec.or_else(|| defaults.exec.clone()),
        // A name is per app: a pod-wide --name would clash at once.
        name: own.name,
        user: own.user.or_else(|| defaults.user.clone()),
        group: own.group.or_else(|| defaults.group.clone()),
        working_dir: own.working_dir.or_else(|| defaults.working_dir.clone()),
        set_env,
        set_env_file,
        mount,
        restart: own.restart.or_else(|| defaults.restart.clone()),
        readonly_rootfs: own.readonly_rootfs || defaults.readonly_rootfs,
        stop_signal: own.stop_signal.or_else(|| defaults.stop_signal.clone()),
    }
}

/// `key=value,key=value` options after an optional leading name.
fn kv_options(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (p.trim().to_string(), String::new()),
        })
        .collect()
}

fn parse_bool(what: &str, v: &str) -> anyhow::Result<bool> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("{what}: {v:?} is not true or false"),
    }
}

/// `--volume NAME,kind=host,source=PATH[,readOnly=true][,recursive=false]`
/// or `NAME,kind=empty[,mode=0755][,uid=N][,gid=N][,readOnly=true]`.
fn parse_volume(s: &str) -> anyhow::Result<Volume> {
    let what = format!("--volume {s}");
    let (name, rest) = s.split_once(',').unwrap_or((s, ""));
    let name: AcName = name
        .parse()
        .map_err(|e| anyhow!("{what}: volume name {name:?}: {e}"))?;
    let mut kind = None;
    let mut v = Volume {
        name,
        kind: VolumeKind::Empty,
        source: None,
        read_only: None,
        recursive: None,
        mode: None,
        uid: None,
        gid: None,
    };
    for (k, val) in kv_options(rest) {
        match k.as_str() {
            "kind" => {
                kind = Some(match val.as_str() {
                    "host" => VolumeKind::Host,
                    "empty" => VolumeKind::Empty,
                    _ => bail!("{what}: kind must be host or empty, not {val:?}"),
                })
            }
            "source" => v.source = Some(val),
            "readOnly" | "readonly" => v.read_only = Some(parse_bool(&what, &val)?),
            "recursive" => v.recursive = Some(parse_bool(&what, &val)?),
            "mode" => {
                u32::from_str_radix(&val, 8)
                    .map_err(|_| anyhow!("{what}: mode {val:?} is not octal"))?;
                v.mode = Some(val)
            }
            "uid" => v.uid = Some(val.parse().map_err(|_| anyhow!("{what}: bad uid"))?),
            "gid" => v.gid = Some(val.parse().map_err(|_| anyhow!("{what}: bad gid"))?),
            _ => bail!("{what}: unknown option {k:?}"),
        }
    }
    v.kind = kind.ok_or_else(|| anyhow!("{what}: kind=host or kind=empty is needed"))?;
    match v.kind {
        VolumeKind::Host => {
            let src = v
                .source
                .as_deref()
                .ok_or_else(|| anyhow!("{what}: a host volume needs source=PATH"))?;
            if !src.starts_with('/') {
                bail!("{what}: source {src:?} must be an absolute path");
            }
            if v.mode.is_some() || v.uid.is_some() || v.gid.is_some() {
                bail!("{what}: mode, uid and gid are for empty volumes");
            }
        }
        VolumeKind::Empty => {
            if v.source.is_some() {
                bail!("{what}: an empty volume has no source");
            }
        }
    }
    Ok(v)
}

/// `--mount volume=NAME,target=PATH`.
fn parse_mount(s: &str) -> anyhow::Result<Mount> {
    let mut volume = None;
    let mut target = None;
    for (k, v) in kv_options(s) {
        match k.as_str() {
            "volume" => volume = Some(v),
            "target" | "path" => target = Some(v),
            _ => bail!("--mount {s}: unknown option {k:?} (volume=NAME,target=PATH)"),
        }
    }
    let (Some(volume), Some(path)) = (volume, target) else {
        bail!("--mount {s}: volume=NAME,target=PATH are both needed");
    };
    if !path.starts_with('/') {
        bail!("--mount {s}: target {path:?} must be absolute");
    }
    Ok(Mount {
        volume: volume
            .parse()
            .map_err(|e| anyhow!("--mount {s}: volume name: {e}"))?,
        path,
        app_volume: None,
    })
}

fn parse_restart(s: &str) -> anyhow::Result<RestartPolicy> {
    Ok(match s {
        "no" => RestartPolicy::No,
        "always" => RestartPolicy::Always,
        "on-failure" => RestartPolicy::OnFailure { max: None },
        _ => match s.strip_prefix("on-failure:") {
            Some(n) => RestartPolicy::OnFailure {
                max: Some(n.parse().map_err(|_| {
                    anyhow!("--restart={s}: the maximum must be a number (on-failure:3)")
                })?),
            },
            None => bail!("--restart={s}: expected no, on-failure[:MAX] or always"),
        },
    })
}

/// Linux's signal numbers (x86-64 and arm64 share them).
const SIGNALS: [(&str, i32); 32] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The real-time signals' range (glibc keeps 32 and 33 for itself).
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// A signal by number, name (`TERM`, `SIGTERM`, any case) or real-time
/// offset (`SIGRTMIN+3`, as systemd images ask, `RTMAX-1`).
pub(crate) fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.trim().to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let rt = |base: i32, rest: &str| -> Option<i32> {
        let n = match rest.as_bytes().first() {
            None => base,
            Some(b'+') => base + rest[1..].parse::<i32>().ok()?,
            Some(b'-') => base - rest[1..].parse::<i32>().ok()?,
            _ => return None,
        };
        (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(SIGRTMIN, rest).ok_or_else(|| anyhow!("unknown signal {s:?}"));
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(SIGRTMAX, rest).ok_or_else(|| anyhow!("unknown signal {s:?}"));
    }
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| anyhow!("unknown signal {s:?}"))
}

/// `NAME=VALUE` lines of an env file.
fn read_env_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --set-env-file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| {
            anyhow!(
                "{}:{}: expected NAME=VALUE, found {line:?}",
                path.display(),
                n + 1
            )
        })?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn parse_env_pair(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| anyhow!("--set-env {s:?}: expected NAME=VALUE"))
}

/// Replace or append `name` in an ordered environment.
fn env_set(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(e) => e.1 = value.to_string(),
        None => env.push((name.to_string(), value.to_string())),
    }
}

/// The default app name of an image: the last part of its name.
fn default_app_name(image_name: &str) -> String {
    let last = image_name.rsplit('/').next().unwrap_or(image_name);
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let parts: Vec<&str> = cleaned.split('-').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        "app".into()
    } else {
        parts.join("-")
    }
}

/// Where an app's image is in the store.
#[derive(Debug, Clone)]
enum Source {
    Aci(ImageId),
    /// A Docker/OCI image; `appc_id` is the ID the pod manifest gives it.
    Oci {
        image: Box<OciImage>,
        appc_id: ImageId,
    },
}

impl Source {
    fn appc_id(&self) -> &ImageId {
        match self {
            Source::Aci(id) => id,
            Source::Oci { appc_id, .. } => appc_id,
        }
    }
}

/// A Docker/OCI image of the store as an app's source.
fn oci_source(store: &Store, image: OciImage) -> anyhow::Result<Source> {
    let bytes = store
        .read_blob(&image.manifest.digest)
        .with_context(|| format!("reading the manifest of {}", image.id))?;
    Ok(Source::Oci {
        appc_id: oci_app::appc_image_id(&bytes),
        image: Box::new(image),
    })
}

/// The Docker/OCI image whose appc ID is `id`, if the store has one (a pod
/// manifest names OCI images so).
fn oci_by_appc_id(store: &Store, id: &ImageId) -> anyhow::Result<Option<Source>> {
    for img in store.oci_images().context("listing the OCI images")? {
        let src = oci_source(store, img)?;
        if src.appc_id() == id {
            return Ok(Some(src));
        }
    }
    Ok(None)
}

/// The appc manifest of a source's image and, for an OCI image, its config
/// and the rootfs of its (rendered, not yet leased) tree.
fn image_of(
    store: &Store,
    source: &Source,
) -> anyhow::Result<(ImageManifest, Option<(ImageConfig, PathBuf)>)> {
    match source {
        Source::Aci(id) => Ok((store.manifest(id)?, None)),
        Source::Oci { image, .. } => {
            let config = store.oci_config(image)?;
            let host = Platform::host();
            if !config.architecture.is_empty() && config.architecture != host.architecture {
                bail!(
                    "image {} is for {}/{}, and this host is {}/{} (fetch another platform with --platform)",
                    reference_of(image),
                    config.os,
                    config.architecture,
                    host.os,
                    host.architecture
                );
            }
            let tree = store
                .oci_render(image)
                .with_context(|| format!("rendering {}", reference_of(image)))?;
            let manifest = store.oci_app_manifest(image, Some(&tree))?;
            Ok((manifest, Some((config, tree.rootfs()))))
        }
    }
}

/// How an OCI image is named to the user: the reference it was fetched as.
fn reference_of(image: &OciImage) -> String {
    image
        .references
        .first()
        .cloned()
        .unwrap_or_else(|| image.id.to_string())
}

/// `docker run`'s rules: `--exec` replaces the Entrypoint and drops Cmd;
/// arguments replace Cmd.
fn docker_argv(config: &ImageConfig, exec: Option<&str>, args: &[String]) -> Vec<String> {
    let rc = config.config.clone().unwrap_or_default();
    let entrypoint = rc.entrypoint.unwrap_or_default();
    match exec {
        Some(e) => std::iter::once(e.to_string())
            .chain(args.iter().cloned())
            .collect(),
        None if !args.is_empty() => entrypoint.into_iter().chain(args.iter().cloned()).collect(),
        None => entrypoint
            .into_iter()
            .chain(rc.cmd.unwrap_or_default())
            .collect(),
    }
}

/// The annotations a pod manifest gives an app of a Docker/OCI image: its
/// digest and the reference it was fetched as.
fn runtime_annotations(source: &Source) -> anyhow::Result<Annotations> {
    let Source::Oci { image, .. } = source else {
        return Ok(Annotations::default());
    };
    let mut items = vec![(oci_app::MANIFEST_DIGEST_ANNOTATION, image.id.to_string())];
    if let Some(r) = image.references.first() {
        items.push((oci_app::REFERENCE_ANNOTATION, r.clone()));
    }
    let items = items
        .into_iter()
        .map(|(n, v)| Ok(Annotation::new(n.parse().map_err(|e| anyhow!("{e}"))?, v)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Annotations::new(items).map_err(|e| anyhow!("{e}"))
}

/// Mode, owner and group of the directory `path` inside `root`, found
/// without following any symlink (a symlink on the way gives `None`).
fn dir_in_tree(root: &Path, path: &str) -> Option<(u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut p = root.to_path_buf();
    let mut meta = std::fs::symlink_metadata(&p).ok()?;
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return None;
        }
        p.push(c);
        meta = std::fs::symlink_metadata(&p).ok()?;
        if !meta.is_dir() {
            return None;
        }
    }
    Some((meta.mode() & 0o7777, meta.uid(), meta.gid()))
}

/// A Docker app's `HOME`: the user's home directory in the image's
/// `/etc/passwd` (read without following symlinks), else `/`, as Docker
/// sets it.
fn home_in_tree(root: &Path, user: &str) -> String {
    let passwd = berth_store::read_in_root(root, &["etc", "passwd"]).unwrap_or_default();
    oci_app::passwd_field(&String::from_utf8_lossy(&passwd), user, 5, |h| {
        h.starts_with('/')
    })
    .unwrap_or("/")
    .to_string()
}

/// An app chosen for the pod, before the plan.
struct Chosen {
    runtime: RuntimeApp,
    image: ImageManifest,
    source: Source,
    /// A Docker/OCI image's config and the rootfs of its tree.
    oci: Option<(ImageConfig, PathBuf)>,
    flags: AppFlags,
    args: Vec<String>,
}

/// Everything stage0 prepared, held until exec (the leases must live).
struct Prepared<'s> {
    pod: Pod,
    leases: Vec<berth_store::TreeLease<'s>>,
}

/// Fetch (per the pull policy) every image argument, in order.
fn fetch_all(
    global: &GlobalArgs,
    store: &Store,
    pod: &PodFlags,
    images: &[String],
) -> anyhow::Result<Vec<Source>> {
    let insecure_image = global.insecure_options.allows(Insecure::Image);
    let mut oci_args = Vec::new();
    for i in images {
        let arg = super::fetch::is_oci_arg(i)?;
        if arg.is_some() && !insecure_image {
            // Before anything is downloaded: nothing would run it.
            return Err(berth_fetch::oci::UnsignedOciImage { image: i.clone() }.into());
        }
        oci_args.push(arg);
    }
    let oci_options = pod.oci.options(pod.pull_policy);
    super::fetch::with_image_fetcher(global, store, pod.pull_policy, oci_options, |f| {
        images
            .iter()
            .zip(oci_args)
            .map(|(i, oci)| {
                if let Some(arg) = oci {
                    let fetched = f.oci.fetch(&arg).with_context(|| format!("fetching {i}"))?;
                    return oci_source(store, fetched.image);
                }
                let id = f
                    .aci
                    .fetch(i)
                    .map(|f| f.id)
                    .with_context(|| format!("fetching {i}"))?;
                (f.report)(i);
                Ok(Source::Aci(id))
            })
            .collect()
    })
}

/// From the command line to the apps of a pod manifest.
fn apps_from_args(
    global: &GlobalArgs,
    store: &Store,
    args: &RunArgs,
) -> anyhow::Result<(Vec<Chosen>, Vec<Volume>)> {
    if args.images.is_empty() {
        bail!("no image to run (berth run IMAGE...; see berth run --help)");
    }
    let specs = split_apps(&args.images)?;
    let images: Vec<String> = specs.iter().map(|s| s.image.clone()).collect();
    let sources = fetch_all(global, store, &args.pod, &images)?;
    let mut volumes = Vec::new();
    for v in &args.pod.volume {
        let v = parse_volume(v)?;
        if volumes.iter().any(|o: &Volume| o.name == v.name) {
            bail!(
                "--volume {}: a volume of that name is already given",
                v.name
            );
        }
        volumes.push(v);
    }
    let mut chosen = Vec::new();
    for (spec, source) in specs.into_iter().zip(sources) {
        let own = parse_app_flags(&spec)?;
        let flags = merge_flags(&args.app, own);
        let (image, oci) = image_of(store, &source)
            .with_context(|| format!("reading the manifest of {}", spec.image))?;
        let name_text = flags
            .name
            .clone()
            .unwrap_or_else(|| default_app_name(image.name.as_str()));
        let name: AppName = name_text
            .parse()
            .map_err(|e| anyhow!("app name {name_text:?}: {e} (choose one with --name)"))?;
        let mut mounts = Vec::new();
        for m in &flags.mount {
            mounts.push(parse_mount(m)?);
        }
        let runtime = RuntimeApp {
            name,
            image: RuntimeImage {
                name: Some(image.name.clone()),
                id: source.appc_id().clone(),
                labels: image.labels.clone(),
            },
            app: None,
            read_only_root_fs: flags.readonly_rootfs.then_some(true),
            mounts,
            annotations: runtime_annotations(&source)?,
        };
        chosen.push(Chosen {
            runtime,
            image,
            source,
            oci,
            flags,
            args: spec.args,
        });
    }
    // The overrides the flags make become the pod manifest's app section,
    // so `berth cat-manifest` shows what really runs.
    for c in &mut chosen {
        let base = c.image.app.clone().ok_or_else(|| {
            anyhow!(
                "image {} has no app to run (it is only a base for other images)",
                c.image.name
            )
        })?;
        let mut app = base;
        if let Some((config, _)) = &c.oci {
            if c.flags.exec.is_some() || !c.args.is_empty() {
                let argv = docker_argv(config, c.flags.exec.as_deref(), &c.args);
                app.exec = if argv.is_empty() {
                    None
                } else {
                    Some(Exec::new(argv).map_err(|e| anyhow!("--exec and arguments: {e}"))?)
                };
            }
        } else if let Some(e) = &c.flags.exec {
            app.exec = Some(Exec::new(vec![e.clone()]).map_err(|e| anyhow!("--exec: {e}"))?);
        }
        if c.oci.is_none() && !c.args.is_empty() {
            let mut argv = app
                .exec
                .as_ref()
                .map(|e| e.as_slice().to_vec())
                .unwrap_or_default();
            argv.extend(c.args.iter().cloned());
            app.exec = Some(Exec::new(argv).map_err(|e| anyhow!("app arguments: {e}"))?);
        }
        if let Some(u) = &c.flags.user {
            app.user = u.clone();
        }
        if let Some(g) = &c.flags.group {
            app.group = g.clone();
        }
        if let Some(w) = &c.flags.working_dir {
            if !w.starts_with('/') {
                bail!("--working-dir {w:?} must be absolute");
            }
            app.working_directory = Some(w.clone());
        }
        let mut env: Vec<(String, String)> = app
            .environment
            .iter()
            .map(|e| (e.name.as_str().to_string(), e.value.clone()))
            .collect();
        for f in &c.flags.set_env_file {
            for (k, v) in read_env_file(f)? {
                env_set(&mut env, &k, &v);
            }
        }
        for s in &c.flags.set_env {
            let (k, v) = parse_env_pair(s)?;
            env_set(&mut env, &k, &v);
        }
        let vars = env
            .into_iter()
            .map(|(k, v)| {
                Ok(EnvVar {
                    name: k
                        .parse()
                        .map_err(|e| anyhow!("environment variable {k:?}: {e}"))?,
                    value: v,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        app.environment = Environment::new(vars).map_err(|e| anyhow!("{e}"))?;
        c.runtime.app = Some(app);
    }
    Ok((chosen, volumes))
}

/// From `--pod-manifest`: the manifest's apps, their images from the store.
fn apps_from_manifest(
    global: &GlobalArgs,
    store: &Store,
    args: &RunArgs,
    path: &Path,
) -> anyhow::Result<(Vec<Chosen>, Vec<Volume>, PodManifest)> {
    let conflicting = !args.images.is_empty()
        || !args.pod.volume.is_empty()
        || args.pod.inherit_env
        || args.app.exec.is_some()
        || args.app.user.is_some()
        || args.app.group.is_some()
        || !args.app.set_env.is_empty()
        || !args.app.set_env_file.is_empty()
        || !args.app.mount.is_empty();
    if conflicting {
        bail!(
            "conflicting flags set with --pod-manifest: images, --volume, --mount, --exec, \
             --user, --group and the environment flags come from the manifest (see --help)"
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = PodManifest::from_json(&bytes)
        .with_context(|| format!("pod manifest {}", path.display()))?;
    if manifest.apps.is_empty() {
        bail!(
            "pod manifest {}: a pod must contain at least one app",
            path.display()
        );
    }
    // OCI images are named by their appc ID (see the module doc): those the
    // store has are used as they are; every other ID is an ACI's.
    let mut sources = Vec::new();
    let mut aci_ids = Vec::new();
    for a in &manifest.apps {
        let oci = oci_by_appc_id(store, &a.image.id)?;
        if oci.is_none() {
            aci_ids.push(a.image.id.as_str().to_string());
        }
        sources.push(oci);
    }
    if let Some(Source::Oci { image, .. }) = sources.iter().flatten().next() {
        if !global.insecure_options.allows(Insecure::Image) {
            return Err(berth_fetch::oci::UnsignedOciImage {
                image: reference_of(image),
            }
            .into());
        }
    }
    let mut fetched = fetch_all(global, store, &args.pod, &aci_ids)?.into_iter();
    let sources: Vec<Source> = sources
        .into_iter()
        .map(|s| s.or_else(|| fetched.next()).expect("one per ACI"))
        .collect();
    let mut chosen = Vec::new();
    for (ra, source) in manifest.apps.iter().zip(sources) {
        let (image, oci) = image_of(store, &source)?;
        let mut runtime = ra.clone();
        if runtime.annotations.is_empty() {
            runtime.annotations = runtime_annotations(&source)?;
        }
        if runtime.app.is_none() {
            runtime.app = image.app.clone();
        }
        if runtime.app.is_none() {
            bail!("app {}: image {} has no app to run", ra.name, image.name);
        }
        chosen.push(Chosen {
            runtime,
            image,
            source,
            oci,
            flags: args.app.clone(),
            args: Vec::new(),
        });
    }
    Ok((chosen, manifest.volumes.clone(), manifest))
}

/// Match every app's mount points with pod volumes; a mount point without a
/// volume gets an implicit empty one of its name (as rkt does).
fn resolve_mounts(chosen: &mut [Chosen], volumes: &mut Vec<Volume>) -> anyhow::Result<()> {
    for c in chosen.iter_mut() {
        let app = c.runtime.app.as_ref().expect("set above");
        for mp in &app.mount_points {
            let covered = c
                .runtime
                .mounts
                .iter()
                .any(|m| m.volume == mp.name || m.path == mp.path);
            if covered {
                continue;
            }
            if !volumes.iter().any(|v| v.name == mp.name) {
                // A Docker image's volume starts as its directory in the
                // image is (mode and owner; Docker would copy the content
                // too, berth starts it empty); appc's is 0755 root.
                let (mode, uid, gid) = c
                    .oci
                    .as_ref()
                    .and_then(|(_, rootfs)| dir_in_tree(rootfs, &mp.path))
                    .unwrap_or((0o755, 0, 0));
                volumes.push(Volume {
                    name: mp.name.clone(),
                    kind: VolumeKind::Empty,
                    source: None,
                    read_only: None,
                    recursive: None,
                    mode: Some(format!("{mode:04o}")),
                    uid: Some(uid),
                    gid: Some(gid),
                });
            }
            c.runtime.mounts.push(Mount {
                volume: mp.name.clone(),
                path: mp.path.clone(),
                app_volume: None,
            });
        }
        for m in &c.runtime.mounts {
            if !volumes.iter().any(|v| v.name == m.volume) {
                bail!(
                    "app {}: --mount names volume {:?}, which the pod does not have (add --volume {},kind=...)",
                    c.runtime.name,
                    m.volume.as_str(),
                    m.volume
                );
            }
        }
    }
    for v in volumes.iter() {
        if v.kind == VolumeKind::Host {
            let src = v.source.as_deref().unwrap_or("");
            if std::fs::symlink_metadata(src).is_err() {
                bail!(
                    "volume {}: the host source {src:?} does not exist",
                    v.name.as_str()
                );
            }
        }
    }
    Ok(())
}

fn volume_plan(v: &Volume) -> VolumePlan {
    VolumePlan {
        name: v.name.as_str().to_string(),
        kind: match v.kind {
            VolumeKind::Host => VolumeKindPlan::Host {
                source: PathBuf::from(v.source.clone().unwrap_or_default()),
                read_only: v.read_only.unwrap_or(false),
                recursive: v.recursive.unwrap_or(true),
            },
            VolumeKind::Empty => VolumeKindPlan::Empty {
                mode: v.mode_bits(),
                uid: v.uid.unwrap_or(0),
                gid: v.gid.unwrap_or(0),
                read_only: v.read_only.unwrap_or(false),
            },
        },
    }
}

/// The environment stage1 gives an app: berth's own (with --inherit-env)
/// under the app's (image, --set-env-file, --set-env), then the
/// executor's variables of ace.md (AC_APP_NAME, container, PATH when unset)
/// and, for a Docker image, `HOME` when unset (`home`), as Docker sets it.
fn app_env(
    app: &App,
    name: &str,
    inherit: bool,
    interactive: bool,
    home: Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    if inherit {
        for (k, v) in std::env::vars() {
            if k.starts_with("BERTH_") || k == "LISTEN_FDS" || k == "LISTEN_PID" {
                continue;
            }
            env.push((k, v));
        }
    } else if interactive {
        if let Ok(term) = std::env::var("TERM") {
            env.push(("TERM".into(), term));
        }
    }
    for e in app.environment.iter() {
        env_set(&mut env, e.name.as_str(), &e.value);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if let Some(h) = home.filter(|_| !env.iter().any(|(k, _)| k == "HOME")) {
        env.push(("HOME".into(), h));
    }
    env_set(&mut env, "AC_APP_NAME", name);
    // ace.md: `container` names the executor, a concise sign for the app
    // that it runs in a container.
    env_set(&mut env, "container", "berth");
    env
}

/// Create the pod directory and everything stage1 needs; leaves the pod
/// in Preparing with its lock held and its trees leased.
fn prepare_pod<'s>(
    global: &GlobalArgs,
    store: &'s Store,
    pods: &Pods,
    args: &RunArgs,
) -> anyhow::Result<Prepared<'s>> {
    let net = match args.pod.net.as_str() {
        "host" => NetMode::Host,
        "none" => NetMode::None,
        other => bail!(
            "--net={other}: only host and none exist for now (CNI networks are not built yet)"
        ),
    };
    let (mut chosen, mut volumes, base_manifest) = match &args.pod.pod_manifest {
        Some(p) => {
            let (c, v, m) = apps_from_manifest(global, store, args, p)?;
            (c, v, Some(m))
        }
        None => {
            let (c, v) = apps_from_args(global, store, args)?;
            (c, v, None)
        }
    };
    let mut names = std::collections::HashSet::new();
    for c in &chosen {
        if !names.insert(c.runtime.name.as_str().to_string()) {
            bail!(
                "two apps are named {:?}: give one of them --name",
                c.runtime.name.as_str()
            );
        }
    }
    if args.pod.interactive && chosen.len() != 1 {
        bail!(
            "--interactive needs exactly one app, {} given",
            chosen.len()
        );
    }
    resolve_mounts(&mut chosen, &mut volumes)?;

    let mut pod = pods.create().context("creating the pod directory")?;
    pods.begin_prepare(&mut pod)?;
    let uuid = pod.uuid.clone();
    tracing::debug!(%uuid, dir = %pod.dir.display(), "preparing pod");
    fsutil::write_number(&pod.dir.join(layout::CREATED), fsutil::now_ms())?;

    let mut leases = Vec::new();
    let mut apps = Vec::new();
    for c in &chosen {
        let name = c.runtime.name.as_str().to_string();
        let rendered = match &c.source {
            Source::Aci(id) => store
                .render_leased(id, &uuid)
                .map(|(t, l)| (t.rootfs(), t.key.to_string(), l)),
            Source::Oci { image, .. } => store
                .oci_render_leased(image, &uuid)
                .map(|(t, l)| (t.rootfs(), t.key.to_string(), l)),
        };
        let (rootfs, tree_key, lease): (PathBuf, String, TreeLease<'_>) =
            rendered.with_context(|| format!("rendering image {} for app {name}", c.image.name))?;
        let app = c.runtime.app.as_ref().expect("set above");
        let exec = app
            .exec
            .as_ref()
            .map(|e| e.as_slice().to_vec())
            .ok_or_else(|| {
                anyhow!(
                    "app {name}: image {} has no exec; give one with --exec",
                    c.image.name
                )
            })?;
        let handler = |n: EventHandlerName| {
            app.event_handlers
                .iter()
                .find(|h| h.name == n)
                .map(|h| h.exec.as_slice().to_vec())
        };
        let mounts = c
            .runtime
            .mounts
            .iter()
            .map(|m| {
                let ro = app
                    .mount_points
                    .iter()
                    .find(|mp| mp.name == m.volume || mp.path == m.path)
                    .and_then(|mp| mp.read_only)
                    .unwrap_or(false);
                MountPlan {
                    volume: m.volume.as_str().to_string(),
                    target: m.path.clone(),
                    read_only: ro,
                }
            })
            .collect();
        let app_dir = layout::AppDir::new(&pod.dir, &name);
        std::fs::create_dir_all(app_dir.path())
            .with_context(|| format!("creating {}", app_dir.path().display()))?;
        std::fs::write(app_dir.manifest(), c.image.to_json())?;
        let stop_signal = match (&c.flags.stop_signal, stop_annotation(&c.image)) {
            (Some(s), _) => parse_signal(s)?,
            (None, Some(s)) => parse_signal(s).with_context(|| {
                format!("app {name}: the image's StopSignal {s:?} (override it with --stop-signal)")
            })?,
            (None, None) => 15,
        };
        let (image_name, oci_image) = match &c.source {
            Source::Aci(_) => (c.image.name.as_str().to_string(), None),
            Source::Oci { image, .. } => (reference_of(image), Some(image.id.to_string())),
        };
        apps.push(AppPlan {
            name: name.clone(),
            image_name,
            image_id: c.runtime.image.id.as_str().to_string(),
            oci_image,
            tree: rootfs,
            tree_key,
            exec,
            user: app.user.clone(),
            group: app.group.clone(),
            supplementary_gids: app.supplementary_gids.clone(),
            working_directory: app
                .working_directory
                .clone()
                .unwrap_or_else(|| "/".to_string()),
            env: app_env(
                app,
                &name,
                args.pod.inherit_env,
                args.pod.interactive,
                c.oci
                    .as_ref()
                    .map(|(_, rootfs)| home_in_tree(rootfs, &app.user)),
            ),
            pre_start: handler(EventHandlerName::PreStart),
            post_stop: handler(EventHandlerName::PostStop),
            mounts,
            restart: match &c.flags.restart {
                Some(r) => parse_restart(r)?,
                None => RestartPolicy::No,
            },
            readonly_rootfs: c.runtime.read_only_root_fs.unwrap_or(false)
                || c.flags.readonly_rootfs,
            stop_signal,
        });
        // (render_leased records the image's last use.)
        leases.push(lease);
    }

    let manifest = PodManifest {
        ac_version: AcVersion::current(),
        apps: chosen.iter().map(|c| c.runtime.clone()).collect(),
        volumes: volumes.clone(),
        isolators: base_manifest
            .as_ref()
            .map(|m| m.isolators.clone())
            .unwrap_or_default(),
        annotations: base_manifest
            .as_ref()
            .map(|m| m.annotations.clone())
            .unwrap_or_default(),
        ports: base_manifest
            .as_ref()
            .map(|m| m.ports.clone())
            .unwrap_or_default(),
        user_annotations: BTreeMap::new(),
        user_labels: BTreeMap::new(),
    };
    fsutil::write_atomic(
        &pod.dir.join(layout::POD_MANIFEST),
        manifest.to_json_pretty().as_bytes(),
    )?;
    let plan = PodPlan {
        version: PLAN_VERSION,
        uuid: uuid.clone(),
        hostname: args
            .pod
            .hostname
            .clone()
            .unwrap_or_else(|| format!("berth-{uuid}")),
        net,
        overlay: !args.pod.no_overlay,
        interactive: args.pod.interactive,
        prefix_output: apps.len() > 1 && !args.pod.no_prefix,
        stop_timeout_ms: args.pod.stop_timeout.as_millis() as u64,
        log_max_bytes: LOG_MAX_BYTES,
        volumes: volumes.iter().map(volume_plan).collect(),
        apps,
    };
    plan.save(&pod.dir).context("writing the pod plan")?;
    if let Some(f) = &args.pod.uuid_file_save {
        std::fs::write(f, format!("{uuid}\n"))
            .with_context(|| format!("writing --uuid-file-save {}", f.display()))?;
    }
    Ok(Prepared { pod, leases })
}

/// The stop signal an image asks for (a Docker image's StopSignal).
fn stop_annotation(image: &ImageManifest) -> Option<&str> {
    image
        .annotations
        .get(oci_app::STOP_SIGNAL_ANNOTATION)
        .filter(|s| !s.is_empty())
}

fn open_pods(global: &GlobalArgs) -> anyhow::Result<Pods> {
    Pods::open(&global.dir).with_context(|| format!("opening the pods in {}", global.dir.display()))
}

/// Hand the pod to stage1: keep the lock and leases open across exec, and
/// replace this process with the supervisor. Returns only on failure.
fn exec_stage1(global: &GlobalArgs, pod: &Pod, keep: &[BorrowedFd<'_>]) -> anyhow::Error {
    let Some(lock) = pod.lock_fd() else {
        return anyhow!("internal error: the pod lock is not held");
    };
    let mut fds = vec![lock];
    fds.extend_from_slice(keep);
    for fd in &fds {
        if let Err(e) = clear_cloexec(*fd) {
            return anyhow!("keeping the pod lock across exec: {e}");
        }
    }
    let keep_list: Vec<String> = keep.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return anyhow!("finding berth's own executable: {e}"),
    };
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(exe)
        .arg("stage1")
        .arg("run")
        .arg(&pod.dir)
        .env("BERTH_LOCK_FD", lock.as_raw_fd().to_string())
        .env("BERTH_KEEP_FDS", keep_list.join(","));
    if global.debug {
        cmd.env("BERTH_DEBUG", "1");
    }
    tracing::debug!(pod = %pod.uuid, "exec stage1 supervisor");
    let err = cmd.exec();
    anyhow!("starting the pod supervisor: {err}")
}

fn clear_cloexec(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let flags = rustix::io::fcntl_getfd(fd)?;
    rustix::io::fcntl_setfd(fd, flags - rustix::io::FdFlags::CLOEXEC)?;
    Ok(())
}

pub fn run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<Outcome> {
    let store = super::fetch::open_store(global)?;
    let pods = open_pods(global)?;
    let Prepared { mut pod, leases } = prepare_pod(global, &store, &pods, args)?;
    pods.start_prepared_now(&mut pod)?;
    store.before_exec();
    let keep: Vec<BorrowedFd<'_>> = leases.iter().map(|l| l.fd()).collect();
    Err(exec_stage1(global, &pod, &keep))
}

pub fn prepare(global: &GlobalArgs, args: &PrepareArgs) -> anyhow::Result<Outcome> {
    let store = super::fetch::open_store(global)?;
    let pods = open_pods(global)?;
    let Prepared { mut pod, leases } = prepare_pod(global, &store, &pods, &args.run)?;
    pods.finish_prepare(&mut pod)?;
    drop(leases);
    if !args.quiet {
        eprintln!(
            "berth: pod prepared; start it with: berth run-prepared {}",
            pod.uuid
        );
    }
    println!("{}", pod.uuid);
    Ok(Outcome::Success)
}

pub fn run_prepared(global: &GlobalArgs, args: &RunPreparedArgs) -> anyhow::Result<Outcome> {
    let store = super::fetch::open_store(global)?;
    let pods = open_pods(global)?;
    let mut pod = pods.find(&args.uuid)?;
    pods.start_prepared(&mut pod)?;
    let plan = PodPlan::load(&pod.dir)?;
    // The trees may have been collected since `prepare` (nothing held them):
    // lease them again, re-rendering from the images if needed.
    let mut leases = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for app in &plan.apps {
        if !seen.insert(app.tree_key.as_str()) {
            continue;
        }
        let gone = || {
            format!(
                "app {}: image {} is no longer in the store (fetch it again, or prepare a new pod)",
                app.name, app.image_name
            )
        };
        let (rootfs, lease) = match &app.oci_image {
            Some(digest) => {
                let d: berth_store::Digest = digest
                    .parse()
                    .map_err(|e| anyhow!("pod plan: OCI image {digest:?}: {e}"))?;
                let image = store.oci_get(&d)?.ok_or_else(|| anyhow!(gone()))?;
                let (tree, lease) = store
                    .oci_render_leased(&image, &pod.uuid)
                    .with_context(gone)?;
                (tree.rootfs(), lease)
            }
            None => {
                let id: ImageId = app
                    .image_id
                    .parse()
                    .map_err(|e| anyhow!("pod plan: image ID {:?}: {e}", app.image_id))?;
                let (tree, lease) = store.render_leased(&id, &pod.uuid).with_context(gone)?;
                (tree.rootfs(), lease)
            }
        };
        if rootfs != app.tree {
            bail!(
                "app {}: the image's tree moved since the pod was prepared; prepare a new pod",
                app.name
            );
        }
        leases.push(lease);
    }
    store.before_exec();
    let keep: Vec<BorrowedFd<'_>> = leases.iter().map(|l| l.fd()).collect();
    Err(exec_stage1(global, &pod, &keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn images_flags_and_args_split_like_rkt() {
        let apps = split_apps(&toks(
            "a.aci --exec /bin/sh --set-env=X=1 -- -c echo --- b --name bee c -- x",
        ))
        .unwrap();
        assert_eq!(apps.len(), 3);
        assert_eq!(apps[0].image, "a.aci");
        assert_eq!(apps[0].flags, toks("--exec /bin/sh --set-env=X=1"));
        assert_eq!(apps[0].args, toks("-c echo"));
        assert_eq!(apps[1].image, "b");
        assert_eq!(apps[1].flags, toks("--name bee"));
        assert!(apps[1].args.is_empty());
        assert_eq!(apps[2].args, toks("x"));
        assert!(split_apps(&toks("a --exec")).is_err());
        assert!(split_apps(&toks("-x a")).is_err());
    }

    #[test]
    fn app_flags_override_pod_defaults() {
        let defaults = AppFlags {
            user: Some("1".into()),
            set_env: vec!["A=1".into()],
            ..AppFlags::default()
        };
        let spec = AppSpec {
            image: "i".into(),
            flags: toks("--set-env B=2 --user 5 --readonly-rootfs"),
            args: vec![],
        };
        let m = merge_flags(&defaults, parse_app_flags(&spec).unwrap());
        assert_eq!(m.user.as_deref(), Some("5"));
        assert_eq!(m.set_env, vec!["A=1".to_string(), "B=2".to_string()]);
        assert!(m.readonly_rootfs);
        let bad = AppSpec {
            image: "i".into(),
            flags: toks("--bogus"),
            args: vec![],
        };
        let e = parse_app_flags(&bad).unwrap_err().to_string();
        assert!(e.contains("--bogus"), "{e}");
    }

    #[test]
    fn volumes_mounts_restarts_signals() {
        let v = parse_volume("data,kind=host,source=/tmp,readOnly=true").unwrap();
        assert_eq!(v.kind, VolumeKind::Host);
        assert_eq!(v.read_only, Some(true));
        let e = parse_volume("d,kind=empty,mode=0700,uid=5").unwrap();
        assert_eq!(e.mode_bits(), 0o700);
        assert!(parse_volume("d,kind=host").is_err());
        assert!(parse_volume("d,kind=empty,source=/x").is_err());
        assert!(parse_volume("d").is_err());
        assert!(parse_volume("D,kind=empty").is_err());
        let m = parse_mount("volume=data,target=/srv").unwrap();
        assert_eq!(m.path, "/srv");
        assert!(parse_mount("volume=data").is_err());
        assert_eq!(
            parse_restart("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max: Some(3) }
        );
        assert!(parse_restart("sometimes").is_err());
        assert_eq!(parse_signal("SIGINT").unwrap(), 2);
        assert_eq!(parse_signal("quit").unwrap(), 3);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), 37);
        assert_eq!(parse_signal("rtmax-1").unwrap(), 63);
        assert_eq!(parse_signal("SIGPWR").unwrap(), 30);
        assert!(parse_signal("SIGRTMAX+1").is_err());
        assert!(parse_signal("SIGRTMIN+x").is_err());
    }

    #[test]
    fn docker_rules_for_exec_and_arguments() {
        let c: ImageConfig = serde_json::from_str(
            r#"{"config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo image"]}}"#,
        )
        .unwrap();
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            docker_argv(&c, None, &[]),
            v(&["/bin/sh", "-c", "echo image"])
        );
        assert_eq!(
            docker_argv(&c, None, &v(&["echo args"])),
            v(&["/bin/sh", "-c", "echo args"])
        );
        assert_eq!(
            docker_argv(&c, Some("/bin/echo"), &v(&["a", "b"])),
            v(&["/bin/echo", "a", "b"])
        );
        assert_eq!(docker_argv(&c, Some("/bin/true"), &[]), v(&["/bin/true"]));
        let cmd_only: ImageConfig =
            serde_json::from_str(r#"{"config":{"Cmd":["/bin/app"]}}"#).unwrap();
        assert_eq!(
            docker_argv(&cmd_only, None, &v(&["/bin/other", "x"])),
            v(&["/bin/other", "x"])
        );
    }

    #[test]
    fn app_names_come_from_image_names() {
        assert_eq!(default_app_name("example.com/my_app"), "my-app");
        assert_eq!(default_app_name("busybox"), "busybox");
        assert_eq!(default_app_name("example.com/a.b/ACI"), "aci");
    }
}
