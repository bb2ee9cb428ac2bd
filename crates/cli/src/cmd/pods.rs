//! The pod lifecycle commands that need no daemon: list, status, stop,
//! logs, enter, rm, gc, cat-manifest, export. Each reads the pod directory
//! and its lock (berth-pod) and nothing else: a pod's state is which
//! directory it is in and whether its lock is held, and everything else
//! (apps, PIDs, exit codes, logs) is a file stage0 or stage1 wrote there.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use berth_appc::aci::{self, BuildOptions};
use berth_pod::export::{AppFiles, ExportLayout};
use berth_pod::inspect::{self, LockProbe, PodInfo};
use berth_pod::layout::{self, AppDir};
use berth_pod::{AppStatus, Pod, PodError, PodPlan, PodState, Pods};
use clap::{ArgAction, Args, ValueEnum};
use serde_json::json;

use super::Format;
use crate::globals::GlobalArgs;
use crate::Outcome;

/// Hex digits of a UUID that `list` shows without `--full` (rkt's).
const SHORT_UUID: usize = 8;

/// How often state that cannot be waited on is looked at again.
const POLL: Duration = Duration::from_millis(100);

/// Output of `berth list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// Aligned columns, one line per app.
    #[value(alias = "text")]
    Table,
    /// One JSON array of pods.
    Json,
}

/// `berth list`.
#[derive(Debug, Args)]
#[command(after_help = "\
STATE is one of embryo, preparing, aborted-prepare, prepared, running, exited,
exited-garbage (marked by gc, deleted after the grace period), garbage and
deleting. A pod of several apps takes one line per app. JSON has whole UUIDs,
RFC 3339 times and each app's recorded status.")]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Leave out the header line.
    #[arg(long)]
    pub no_legend: bool,
    /// Whole UUIDs, image IDs and absolute times.
    #[arg(long)]
    pub full: bool,
}

/// A timeout for `--wait`: a duration, or none (wait as long as it takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(Option<Duration>);

fn parse_timeout(s: &str) -> Result<Timeout, String> {
    if s.is_empty() || s == "forever" {
        return Ok(Timeout(None));
    }
    parse_duration(s).map(|d| Timeout(Some(d)))
}

/// `berth status`.
#[derive(Debug, Args)]
#[command(after_help = "\
Text output is one key=value per line: state, created, started, networks,
pid (the pod's PID 1, while it runs), exited, app-<name>=<exit code> for each
app that exited, restarts-<name>=<count> for each app that started.

--wait returns once the pod has finished (exited, or will never run); a
prepared pod is waited for until it has run. --wait-ready returns once every
app has started, and fails if the pod ends first. A timeout that expires is an
error (exit 254).")]
pub struct StatusArgs {
    /// Wait until the pod has finished, at most TIMEOUT (e.g. 30s, 5m;
    /// without a value: as long as it takes).
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          default_missing_value = "forever", value_parser = parse_timeout)]
    pub wait: Option<Timeout>,
    /// Wait until the pod's apps have all started, at most TIMEOUT.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          default_missing_value = "forever", value_parser = parse_timeout)]
    pub wait_ready: Option<Timeout>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The pod's UUID or a unique prefix of it.
    pub uuid: String,
}

/// `berth stop`.
#[derive(Debug, Args)]
#[command(after_help = "\
Without --force the pod's supervisor (the `berth run` process) gets SIGTERM and
stops the apps as Ctrl-C would: their stop signal, SIGKILL after the stop
timeout, post-stop handlers. --force kills the pod's PID 1 and the supervisor
with SIGKILL at once. stop does not wait: use `berth status --wait UUID`.
A process is only signalled after checking that it still holds the pod (a PID
recorded by a pod that died may belong to another process now).")]
pub struct StopArgs {
    /// SIGKILL instead of a graceful stop.
    #[arg(long)]
    pub force: bool,
    /// Pod UUIDs or unique prefixes.
    #[arg(required = true, value_name = "UUID")]
    pub uuids: Vec<String>,
}

/// `berth logs`.
#[derive(Debug, Args)]
#[command(after_help = "\
The pod directory keeps the last part of each app's output (stdout and stderr
together, capped in size), so logs work while the pod runs and after it
exited, until it is removed. Apps are printed one after the other.")]
pub struct LogsArgs {
    /// Only this app's output.
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Keep printing new output until the pod exits.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Do not put "<app>: " before each line (the default with several apps).
    #[arg(long)]
    pub no_prefix: bool,
    /// The pod's UUID or a unique prefix of it.
    pub uuid: String,
}

/// `berth enter`.
#[derive(Debug, Args)]
#[command(after_help = "\
CMD runs in the app's mount, PID, UTS, IPC, network and cgroup namespaces,
chrooted to the app's root, in its working directory, with its environment,
user, group and supplementary groups, and joins its cgroup. berth exits with
CMD's exit status (128 + signal when CMD is killed). The app's capability
bounding set and seccomp filter are not applied to CMD.")]
pub struct EnterArgs {
    /// The app to enter (needed when the pod has several).
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// The pod's UUID or a unique prefix of it.
    pub uuid: String,
    /// The command and its arguments (default: /bin/sh).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<OsString>,
}

/// `berth rm`.
#[derive(Debug, Args)]
#[command(after_help = "\
Removes exited, prepared and aborted pods at once, the way gc does after the
grace period (everything still mounted under a pod is unmounted first, lazily).
Running and preparing pods are refused: stop them first.")]
pub struct RmArgs {
    /// Pod UUIDs or unique prefixes.
    #[arg(required = true, value_name = "UUID")]
    pub uuids: Vec<String>,
}

/// `berth gc`.
#[derive(Debug, Args)]
#[command(after_help = "\
Mark: exited pods move to exited-garbage, aborted prepares, abandoned embryos
(older than a minute) and prepared pods older than --expire-prepared move to
garbage; the grace period starts then. Sweep: marked pods older than the grace
period are deleted, unmounting whatever is still mounted under them (lazily,
so a busy mount never stops gc). A pod whose `berth run` was killed (even with
kill -9) is exited, and is collected like any other.
Durations: 30m, 24h, 90s, 1h30m, 0s.")]
pub struct GcArgs {
    /// How long marked pods are kept before they are deleted.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub grace_period: Duration,
    /// Prepared pods older than this are marked as garbage.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub expire_prepared: Duration,
    /// Only mark (e.g. in ExecStopPost of a systemd unit); delete nothing.
    #[arg(long)]
    pub mark_only: bool,
}

/// `berth cat-manifest`.
#[derive(Debug, Args)]
pub struct CatManifestArgs {
    /// Re-indent the manifest (--pretty-print=false prints it as stored).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", action = ArgAction::Set)]
    pub pretty_print: bool,
    /// The pod's UUID or a unique prefix of it.
    pub uuid: String,
}

/// `berth export`.
#[derive(Debug, Args)]
#[command(after_help = "\
The ACI holds the app's filesystem as the app left it: the image's files with
the app's changes and deletions applied, and the app's image manifest. Only
exited pods can be exported (a running app's files are still changing). The
image ID of the new ACI is printed.")]
pub struct ExportArgs {
    /// The app to export (needed when the pod has several).
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// The pod's UUID or a unique prefix of it.
    pub uuid: String,
    /// The ACI file to write; its name must end in ".aci".
    #[arg(value_name = "OUT.aci")]
    pub out: PathBuf,
}

// ---------------------------------------------------------------------------
// Shared helpers

fn open_pods(global: &GlobalArgs) -> anyhow::Result<Pods> {
    Pods::open(&global.dir).with_context(|| format!("opening the pods in {}", global.dir.display()))
}

fn find(pods: &Pods, arg: &str) -> anyhow::Result<Pod> {
    pods.find(arg)
        .with_context(|| format!("looking up pod {arg:?}"))
}

/// The pod again (it may have moved since it was found); None once it is
/// gone.
fn refresh(pods: &Pods, uuid: &str) -> anyhow::Result<Option<Pod>> {
    match pods.find(uuid) {
        Ok(p) => Ok(Some(p)),
        Err(PodError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a pod may still run (or is running): waiting on it makes sense.
fn not_finished(state: PodState) -> bool {
    matches!(
        state,
        PodState::Embryo | PodState::Preparing | PodState::Prepared | PodState::Running
    )
}

/// `24h`, `30m`, `90s`, `500ms`, `1h30m`, `0`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (e.g. 24h, 30m, 90s, 500ms, 1h30m, 0s)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            let secs = match rest.chars().next() {
                Some('s') => 1,
                Some('m') => 60,
                Some('h') => 3600,
                Some('d') => 86400,
                _ => return Err(bad()),
            };
            (Duration::from_secs(secs), 1)
        };
        rest = &rest[len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// Civil date (proleptic Gregorian) of a day count since 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (date, time with milliseconds) in UTC.
fn utc_parts(t: SystemTime) -> (String, String) {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    (
        format!("{y:04}-{mo:02}-{d:02}"),
        format!(
            "{:02}:{:02}:{:02}.{milli:03}",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        ),
    )
}

/// `2026-11-30 01:46:16.123 UTC`.
fn utc(t: SystemTime) -> String {
    let (d, tm) = utc_parts(t);
    format!("{d} {tm} UTC")
}

/// `2026-11-30T01:46:16.123Z`.
fn rfc3339(t: SystemTime) -> String {
    let (d, tm) = utc_parts(t);
    format!("{d}T{tm}Z")
}

/// `5 seconds ago`, `3 minutes ago`, `2 hours ago`, `4 days ago`.
fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    let (n, unit) = match secs {
        0..=1 => return "just now".into(),
        2..=119 => (secs, "second"),
        120..=7199 => (secs / 60, "minute"),
        7200..=172_799 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}s ago")
}

fn ms_time(ms: Option<u64>) -> Option<SystemTime> {
    ms.map(|m| UNIX_EPOCH + Duration::from_millis(m))
}

fn opt_json(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| json!(rfc3339(t)))
}

/// The networks a pod has joined: none until it started.
fn networks(pod: &Pod, info: &PodInfo) -> Vec<String> {
    match (pod.started(), info.net()) {
        (Some(_), Some(n)) => vec![n.as_str().to_string()],
        _ => Vec::new(),
    }
}

fn app_json(a: &inspect::AppInfo) -> serde_json::Value {
    let s = a.status.clone().unwrap_or_default();
    json!({
        "name": a.name,
        "imageName": a.image_name,
        "imageId": a.image_id,
        "running": s.running,
        "pid": s.pid.filter(|_| s.running),
        "exitCode": s.exit_code,
        "signal": s.signal,
        "restarts": s.restarts,
        "started": opt_json(ms_time(s.started_ms)),
        "exited": opt_json(ms_time(s.exited_ms)),
    })
}

/// Choose the app a command acts on: the one named, or the only one.
fn pick_app<'a>(info: &'a PodInfo, uuid: &str, app: Option<&str>) -> anyhow::Result<&'a str> {
    let names = info.app_names();
    match app {
        Some(name) => info.app(name).map(|a| a.name.as_str()).ok_or_else(|| {
            anyhow!(
                "pod {uuid} has no app {name:?} (its apps: {})",
                names.join(", ")
            )
        }),
        None => match names.as_slice() {
            [one] => Ok(one),
            [] => Err(anyhow!("pod {uuid} has no apps")),
            many => Err(anyhow!(
                "pod {uuid} has several apps ({}): choose one with --app=NAME",
                many.join(", ")
            )),
        },
    }
}

// ---------------------------------------------------------------------------
// list

pub fn list(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<Outcome> {
    let pods = open_pods(global)?;
    let mut all: Vec<(Pod, PodInfo, Option<SystemTime>)> = pods
        .list()
        .context("listing pods")?
        .into_iter()
        .map(|p| {
            let info = PodInfo::read(&p);
            // An embryo has no `created` yet: its directory's time stands in.
            let created = p
                .created()
                .or_else(|| fs::metadata(&p.dir).and_then(|m| m.modified()).ok());
            (p, info, created)
        })
        .collect();
    all.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.uuid.cmp(&b.0.uuid)));
    let mut out = io::stdout().lock();
    if args.format == ListFormat::Json {
        let docs: Vec<serde_json::Value> = all
            .iter()
            .map(|(p, info, _)| {
                json!({
                    "uuid": p.uuid,
                    "state": p.state.as_str(),
                    "created": opt_json(p.created()),
                    "started": opt_json(p.started()),
                    "networks": networks(p, info),
                    "apps": info.apps.iter().map(app_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
        return Ok(Outcome::Success);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    if !args.no_legend {
        let mut h = vec!["UUID", "APP", "IMAGE NAME"];
        if args.full {
            h.push("IMAGE ID");
        }
        h.extend(["STATE", "CREATED", "STARTED", "NETWORKS"]);
        rows.push(h.into_iter().map(String::from).collect());
    }
    let time = |t: Option<SystemTime>| match t {
        None => "-".to_string(),
        Some(t) if args.full => utc(t),
        Some(t) => ago(t),
    };
    for (p, info, _) in &all {
        let uuid = if args.full {
            p.uuid.clone()
        } else {
            p.uuid[..SHORT_UUID].to_string()
        };
        let nets = networks(p, info);
        let pod_cells = [
            p.state.as_str().to_string(),
            time(p.created()),
            time(p.started()),
            if nets.is_empty() {
                "-".into()
            } else {
                nets.join(",")
            },
        ];
        let apps: Vec<Option<&inspect::AppInfo>> = if info.apps.is_empty() {
            vec![None]
        } else {
            info.apps.iter().map(Some).collect()
        };
        // rkt's layout: the pod's columns on its first app's line only.
        for (i, a) in apps.iter().enumerate() {
            let mut r = vec![
                if i == 0 { uuid.clone() } else { String::new() },
                a.map_or("-".into(), |a| a.name.clone()),
                a.and_then(|a| a.image_name.clone())
                    .unwrap_or_else(|| "-".into()),
            ];
            if args.full {
                r.push(
                    a.and_then(|a| a.image_id.as_deref())
                        .map(|id| id.chars().take("sha512-".len() + 12).collect())
                        .unwrap_or_else(|| "-".into()),
                );
            }
            if i == 0 {
                r.extend(pod_cells.iter().cloned());
            } else {
                r.extend(std::iter::repeat_n(String::new(), pod_cells.len()));
            }
            rows.push(r);
        }
    }
    super::write_table(&mut out, &rows)?;
    Ok(Outcome::Success)
}

// ---------------------------------------------------------------------------
// status

pub fn status(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<Outcome> {
    let pods = open_pods(global)?;
    let mut pod = find(&pods, &args.uuid)?;
    let uuid = pod.uuid.clone();
    if let Some(Timeout(limit)) = args.wait_ready {
        pod = wait_ready(&pods, pod, limit)?;
    }
    if let Some(Timeout(limit)) = args.wait {
        pod = wait_finished(&pods, pod, limit)?;
    }
    let info = PodInfo::read(&pod);
    let running = pod.state == PodState::Running;
    let pid = pod.pid().filter(|_| running);
    let exited = pod.state.is_exited();
    let mut out = io::stdout().lock();
    if args.format == Format::Json {
        let doc = json!({
            "uuid": uuid,
            "state": pod.state.as_str(),
            "created": opt_json(pod.created()),
            "started": opt_json(pod.started()),
            "networks": networks(&pod, &info),
            "pid": pid,
            "supervisorPid": pod.supervisor_pid().filter(|_| running),
            "ready": pod.dir.join(layout::READY).exists(),
            "exited": exited,
            "exitCode": pod.exit_code().filter(|_| exited),
            "apps": info.apps.iter().map(app_json).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(Outcome::Success);
    }
    writeln!(out, "state={}", pod.state)?;
    if let Some(t) = pod.created() {
        writeln!(out, "created={}", utc(t))?;
    }
    if let Some(t) = pod.started() {
        writeln!(out, "started={}", utc(t))?;
    }
    let nets = networks(&pod, &info);
    if !nets.is_empty() {
        writeln!(out, "networks={}", nets.join(","))?;
    }
    if let Some(pid) = pid {
        writeln!(out, "pid={pid}")?;
    }
    writeln!(out, "exited={exited}")?;
    for a in &info.apps {
        let Some(s) = &a.status else { continue };
        if let (false, Some(code)) = (s.running, s.exit_code) {
            writeln!(out, "app-{}={code}", a.name)?;
        }
    }
    for a in &info.apps {
        if let Some(s) = &a.status {
            writeln!(out, "restarts-{}={}", a.name, s.restarts)?;
        }
    }
    Ok(Outcome::Success)
}

fn timed_out(what: &str, uuid: &str, limit: Option<Duration>, state: PodState) -> anyhow::Error {
    anyhow!(
        "timed out after {:?} waiting for pod {uuid} {what} (it is {state})",
        limit.unwrap_or_default()
    )
}

/// Until the pod has finished: a blocking wait on its lock while it runs
/// (woken the moment the supervisor lets go or dies), polling while it has
/// yet to start.
fn wait_finished(pods: &Pods, mut pod: Pod, limit: Option<Duration>) -> anyhow::Result<Pod> {
    let start = std::time::Instant::now();
    let left = || limit.map(|l| l.saturating_sub(start.elapsed()));
    loop {
        if !not_finished(pod.state) {
            return Ok(pod);
        }
        if left() == Some(Duration::ZERO) {
            return Err(timed_out("to finish", &pod.uuid, limit, pod.state));
        }
        if pod.state == PodState::Running {
            if let Ok(probe) = LockProbe::open(&pod.dir) {
                probe.wait_released(left())?;
            }
        } else {
            std::thread::sleep(left().map_or(POLL, |l| l.min(POLL)));
        }
        let uuid = pod.uuid.clone();
        pod = refresh(pods, &uuid)?
            .ok_or_else(|| anyhow!("pod {uuid} was removed while waiting for it"))?;
    }
}

/// Until the pod's `ready` file exists (every app started once).
fn wait_ready(pods: &Pods, mut pod: Pod, limit: Option<Duration>) -> anyhow::Result<Pod> {
    let uuid = pod.uuid.clone();
    let mut err = None;
    let ready = inspect::poll_until(limit, POLL, || {
        match refresh(pods, &uuid) {
            Ok(Some(p)) => pod = p,
            Ok(None) => {
                err = Some(anyhow!("pod {uuid} was removed while waiting for it"));
                return true;
            }
            Err(e) => {
                err = Some(e);
                return true;
            }
        }
        if pod.dir.join(layout::READY).exists() {
            return true;
        }
        if !not_finished(pod.state) {
            err = Some(anyhow!(
                "pod {uuid} is {} and was never ready (see berth logs {uuid})",
                pod.state
            ));
            return true;
        }
        false
    });
    if let Some(e) = err {
        return Err(e);
    }
    if !ready {
        return Err(timed_out("to be ready", &uuid, limit, pod.state));
    }
    Ok(pod)
}

// ---------------------------------------------------------------------------
// stop

pub fn stop(global: &GlobalArgs, args: &StopArgs) -> anyhow::Result<Outcome> {
    let pods = open_pods(global)?;
    let mut failed = 0;
    for arg in &args.uuids {
        match stop_one(&pods, arg, args.force) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed += 1;
                eprintln!("berth: stopping pod {arg:?}: {}", root_cause(&e));
            }
        }
    }
    if failed > 0 {
        bail!(
            "stopping pods: {failed} of {} could not be stopped",
            args.uuids.len()
        );
    }
    Ok(Outcome::Success)
}

fn root_cause(e: &anyhow::Error) -> String {
    e.chain().last().map(|c| c.to_string()).unwrap_or_default()
}

fn stop_one(pods: &Pods, arg: &str, force: bool) -> anyhow::Result<String> {
    use rustix::process::{Pid, PidfdFlags, Signal};
    let pod = pods.find(arg)?;
    if pod.state != PodState::Running {
        return Ok(if not_finished(pod.state) {
            format!("pod \"{}\" is {}, not running", pod.uuid, pod.state)
        } else {
            format!("pod \"{}\" is already stopped", pod.uuid)
        });
    }
    let Some(ppid) = pod.supervisor_pid() else {
        bail!(
            "pod {} is running but has not recorded its supervisor's PID yet; try again",
            pod.uuid
        );
    };
    // A pidfd pins the process: once the check below passed, the signal
    // goes to that process even if it died and its PID was reused since.
    let pid = Pid::from_raw(ppid).ok_or_else(|| {
        anyhow!(
            "{} holds {ppid}, which is not a PID",
            pod.dir.join(layout::PPID).display()
        )
    })?;
    let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => {
            return Ok(format!("pod \"{}\" is already stopped", pod.uuid))
        }
        Err(e) => {
            return Err(io::Error::from(e))
                .with_context(|| format!("opening the supervisor process {ppid}"))
        }
    };
    if !inspect::holds_dir(ppid, &pod.dir) {
        // Dead (lock released since) or a stranger with a recycled PID.
        if !inspect::lock_held(&pod.dir).unwrap_or(false) {
            return Ok(format!("pod \"{}\" is already stopped", pod.uuid));
        }
        bail!(
            "process {ppid} named in {} does not hold pod {}: it is not the pod's supervisor \
             (a reused PID?), so it is not signalled",
            pod.dir.join(layout::PPID).display(),
            pod.uuid
        );
    }
    if force {
        // PID 1 first: the kernel then kills the whole pod. It is pinned by
        // a pidfd, then checked to be the supervisor's child, so a reused
        // PID is never hit.
        let pid1 = pod.pid().and_then(|p| {
            let fd = rustix::process::pidfd_open(Pid::from_raw(p)?, PidfdFlags::empty()).ok()?;
            (inspect::parent_pid(p) == Some(ppid)).then_some(fd)
        });
        if let Some(fd) = pid1 {
            let _ = rustix::process::pidfd_send_signal(&fd, Signal::KILL);
        }
    }
    let sig = if force { Signal::KILL } else { Signal::TERM };
    match rustix::process::pidfd_send_signal(&pidfd, sig) {
        Ok(()) => {}
        Err(rustix::io::Errno::SRCH) => {
            return Ok(format!("pod \"{}\" is already stopped", pod.uuid))
        }
        Err(e) => {
            return Err(io::Error::from(e))
                .with_context(|| format!("signalling the supervisor {ppid}"))
        }
    }
    Ok(format!("\"{}\"", pod.uuid))
}

// ---------------------------------------------------------------------------
// logs

/// One app's log being printed (and followed).
struct LogTail {
    prefix: Option<Vec<u8>>,
    at_line_start: bool,
    log: PathBuf,
    old: PathBuf,
    file: Option<File>,
}

impl LogTail {
    fn new(app_dir: &AppDir, name: &str, prefix: bool) -> LogTail {
        LogTail {
            prefix: prefix.then(|| format!("{name}: ").into_bytes()),
            at_line_start: true,
            log: app_dir.log(),
            old: app_dir.log_old(),
            file: None,
        }
    }

    fn emit(&mut self, data: &[u8], out: &mut impl Write) -> io::Result<()> {
        let Some(prefix) = &self.prefix else {
            return out.write_all(data);
        };
        for piece in data.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                out.write_all(prefix)?;
            }
            out.write_all(piece)?;
            self.at_line_start = piece.ends_with(b"\n");
        }
        Ok(())
    }

    /// Print the older part, then open the current log and print it to
    /// its end. The current log is opened first: if it is rotated in
    /// between, `log.1` *is* the file opened, and is printed once.
    fn start(&mut self, out: &mut impl Write) -> io::Result<()> {
        let current = File::open(&self.log).ok();
        let cur_ino = current
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        if let Ok(mut old) = File::open(&self.old) {
            if old.metadata().ok().map(|m| m.ino()) != cur_ino {
                let mut buf = Vec::new();
                old.read_to_end(&mut buf)?;
                self.emit(&buf, out)?;
            }
        }
        self.file = current;
        self.drain(out)
    }

    fn drain(&mut self, out: &mut impl Write) -> io::Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        self.emit(&buf, out)
    }

    /// Print what was appended; after a rotation (the log path names
    /// another file now), finish the old file and carry on with the new.
    fn poll(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.drain(out)?;
        let path_ino = fs::metadata(&self.log).ok().map(|m| m.ino());
        let our_ino = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        if path_ino.is_some() && path_ino != our_ino {
            self.drain(out)?;
            self.file = File::open(&self.log).ok();
            if let Some(f) = &mut self.file {
                f.seek(SeekFrom::Start(0))?;
            }
            self.drain(out)?;
        }
        Ok(())
    }

    /// A last line without its newline still ends the app's output.
    fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.prefix.is_some() && !self.at_line_start {
            out.write_all(b"\n")?;
            self.at_line_start = true;
        }
        Ok(())
    }
}

pub fn logs(global: &GlobalArgs, args: &LogsArgs) -> anyhow::Result<Outcome> {
    let pods = open_pods(global)?;
    let pod = find(&pods, &args.uuid)?;
    let info = PodInfo::read(&pod);
    let names: Vec<String> = match &args.app {
        Some(_) => vec![pick_app(&info, &pod.uuid, args.app.as_deref())?.to_string()],
        None => info.apps.iter().map(|a| a.name.clone()).collect(),
    };
    let prefix = names.len() > 1 && !args.no_prefix;
    // Paths through an open handle on the pod directory keep naming this
    // pod's files while renames move it (prepared -> run -> exited-garbage).
    let probe = LockProbe::open(&pod.dir).with_context(|| format!("opening pod {}", pod.uuid))?;
    let base = probe.path();
    let mut tails: Vec<LogTail> = names
        .iter()
        .map(|n| LogTail::new(&AppDir::new(&base, n), n, prefix))
        .collect();
    let mut out = io::stdout().lock();
    let write_err = |e: io::Error| anyhow::Error::from(e).context("printing the logs");
    for t in &mut tails {
        t.start(&mut out).map_err(write_err)?;
        if !args.follow {
            t.finish(&mut out).map_err(write_err)?;
        }
    }
    if !args.follow {
        return Ok(Outcome::Success);
    }
    out.flush()?;
    loop {
        let going = probe.held().unwrap_or(false)
            || refresh(&pods, &pod.uuid)?.is_some_and(|p| not_finished(p.state));
        for t in &mut tails {
            if t.file.is_none() {
                // Not started when we began: its log appears with the run.
                t.file = File::open(&t.log).ok();
            }
            t.poll(&mut out).map_err(write_err)?;
        }
        out.flush()?;
        if !going {
            break;
        }
        std::thread::sleep(POLL);
    }
    for t in &mut tails {
        t.finish(&mut out).map_err(write_err)?;
    }
    Ok(Outcome::Success)
}

// ---------------------------------------------------------------------------
// enter

pub fn enter(global: &GlobalArgs, args: &EnterArgs) -> anyhow::Result<Outcome> {
    let pods = open_pods(global)?;
    let pod = find(&pods, &args.uuid)?;
    let what = || format!("entering pod {}", pod.uuid);
    if pod.state != PodState::Running {
        return Err(anyhow!(
            "pod {} is {}: only a running pod can be entered",
            pod.uuid,
            pod.state
        ))
        .with_context(what);
    }
    if !rustix::process::geteuid().is_root() {
        return Err(anyhow!(
            "joining a pod's namespaces needs root (run berth enter as root)"
        ))
        .with_context(what);
    }
    let info = PodInfo::read(&pod);
    let app = pick_app(&info, &pod.uuid, args.app.as_deref()).with_context(what)?;
    let status_path = AppDir::new(&pod.dir, app).status();
    // Right after `berth run` the app may not have started yet: wait for
    // its PID while the pod runs (rkt waited for the pod's pid file).
    let mut status = AppStatus::default();
    let settled = inspect::poll_until(Some(Duration::from_secs(10)), POLL, || {
        status = AppStatus::load(&status_path)
            .ok()
            .flatten()
            .unwrap_or_default();
        (status.running && status.pid.is_some())
            || status.exit_code.is_some()
            || !inspect::lock_held(&pod.dir).unwrap_or(false)
    });
    let pid = match (status.running, status.pid) {
        (true, Some(pid)) => pid,
        _ if !inspect::lock_held(&pod.dir).unwrap_or(false) => {
            return Err(anyhow!("pod {} exited", pod.uuid)).with_context(what)
        }
        _ if status.exit_code.is_some() => {
            return Err(anyhow!(
                "app {app} is not running (it exited with {})",
                status.exit_code.unwrap_or_default()
            ))
            .with_context(what)
        }
        _ => {
            return Err(anyhow!(
                "app {app} has not started{}",
                if settled { "" } else { " after 10s" }
            ))
            .with_context(what)
        }
    };
    if !berth_pod::enter::in_pod_pid_namespace(pid, pod.pid()) {
        return Err(anyhow!(
            "process {pid} recorded for app {app} is not in the pod (it exited, or its PID was reused)"
        ))
        .with_context(what);
    }
    let target = berth_pod::enter::Target::open(pid)
        .with_context(|| format!("reading app {app} (process {pid})"))
        .with_context(what)?;
    let env = target.env.clone();
    let joined = target.join().with_context(what)?;
    berth_pod::enter::block_terminal_signals().with_context(what)?;
    let cmd: Vec<OsString> = if args.cmd.is_empty() {
        vec!["/bin/sh".into()]
    } else {
        args.cmd.clone()
    };
    let mut child = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .env_clear()
        .envs(env)
        .spawn()
        .with_context(|| format!("cannot run {:?} in app {app}", cmd[0]))
        .with_context(what)?;
    // The command was born in the app's cgroups; this waiting process
    // goes back to its own.
    joined.leave_cgroups();
    let status = child
        .wait()
        .with_context(|| format!("waiting for {:?}", cmd[0]))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(Outcome::Code(code.clamp(0, 255) as u8))
}

// ---------------------------------------------------------------------------
// rm and gc

pub fn rm(global: &GlobalArgs, args: &RmArgs) -> anyhow::Result<Outcome> {
    let pods = open_pods(global)?;
    let mut failed = 0;
    for arg in &args.uuids {
        let result = pods
            .find(arg)
            .map_err(anyhow::Error::from)
            .and_then(|mut pod| {
                match pod.state {
                    PodState::Running => bail!(
                        "pod {} is running: stop it first (berth stop {})",
                        pod.uuid,
                        pod.uuid
                    ),
                    PodState::Preparing => bail!(
                        "pod {} is being prepared by another berth process; it can be removed \
                     once that has finished or failed",
                        pod.uuid
                    ),
                    _ => {}
                }
                pods.delete(&mut pod)?;
                Ok(pod.uuid)
            });
        match result {
            Ok(uuid) => println!("\"{uuid}\""),
            Err(e) => {
                failed += 1;
                eprintln!("berth: removing pod {arg:?}: {}", root_cause(&e));
            }
        }
    }
    if failed > 0 {
        bail!(
            "removing pods: {failed} of {} could not be removed",
            args.uuids.len()
        );
    }
    Ok(Outcome::Success)
}

/// An embryo whose creator has not locked and moved it on for this long
/// was abandoned (stage0 holds it only for moments).
const EMBRYO_ABANDONED: Duration = Duration::from_secs(60);

fn age(t: Option<SystemTime>) -> Option<Duration> {
    t.map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
}

pub fn gc(global: &GlobalArgs, args: &GcArgs) -> anyhow::Result<Outcome> {
    let pods = open_pods(global)?;
    let mut out = io::stdout().lock();
    let mut failed = 0;
    for mut pod in pods.list().context("listing pods")? {
        let dir_time = fs::metadata(&pod.dir).and_then(|m| m.modified()).ok();
        let why = match pod.state {
            PodState::Exited => "exited",
            PodState::AbortedPrepare => "aborted prepare",
            PodState::Embryo if age(dir_time).is_some_and(|a| a >= EMBRYO_ABANDONED) => {
                "abandoned embryo"
            }
            PodState::Prepared
                if age(pod.created().or(dir_time)).is_some_and(|a| a >= args.expire_prepared) =>
            {
                "prepared pod expired"
            }
            _ => continue,
        };
        match pods.mark_garbage(&mut pod) {
            Ok(true) => writeln!(out, "marked {} as garbage ({why})", pod.uuid)?,
            Ok(false) => {} // moved on, or locked: not garbage now
            Err(e) => {
                failed += 1;
                eprintln!("berth: marking pod {}: {e}", pod.uuid);
            }
        }
    }
    if !args.mark_only {
        for mut pod in pods.list().context("listing pods")? {
            if !matches!(pod.state, PodState::ExitedGarbage | PodState::Garbage) {
                continue;
            }
            let marked = age(pods.marked_at(&pod)).unwrap_or(Duration::MAX);
            if marked < args.grace_period {
                continue;
            }
            match pods.delete(&mut pod) {
                Ok(()) => writeln!(out, "removed {}", pod.uuid)?,
                Err(PodError::Busy(_)) => {} // another gc or rm has it
                Err(e) => {
                    failed += 1;
                    eprintln!("berth: removing pod {}: {e}", pod.uuid);
                }
            }
        }
    }
    if failed > 0 {
        bail!("garbage collection: {failed} pod(s) could not be collected (see above)");
    }
    Ok(Outcome::Success)
}

// ---------------------------------------------------------------------------
// cat-manifest

pub fn cat_manifest(global: &GlobalArgs, args: &CatManifestArgs) -> anyhow::Result<Outcome> {
    let pods = open_pods(global)?;
    let pod = find(&pods, &args.uuid)?;
    let path = pod.dir.join(layout::POD_MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("pod {} has no manifest yet (it is {})", pod.uuid, pod.state)
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = io::stdout().lock();
    if args.pretty_print {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("the manifest {} is not JSON", path.display()))?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        out.write_all(&bytes)?;
        if !bytes.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
    }
    Ok(Outcome::Success)
}

// ---------------------------------------------------------------------------
// export

pub fn export(global: &GlobalArgs, args: &ExportArgs) -> anyhow::Result<Outcome> {
    let what = || format!("exporting pod {} to {}", args.uuid, args.out.display());
    if args.out.extension().and_then(|e| e.to_str()) != Some("aci") {
        return Err(anyhow!(
            "{:?} does not end in \".aci\", which appc requires of image archives",
            args.out.display().to_string()
        ))
        .with_context(what);
    }
    let pods = open_pods(global)?;
    let pod = find(&pods, &args.uuid)?;
    match pod.state {
        PodState::Exited | PodState::ExitedGarbage => {}
        PodState::Running => {
            return Err(anyhow!(
                "pod {} is running; its files are still changing: stop it first (berth stop {})",
                pod.uuid,
                pod.uuid
            ))
            .with_context(what)
        }
        s => {
            return Err(anyhow!(
                "pod {} is {s}: only a pod that has run and exited can be exported",
                pod.uuid
            ))
            .with_context(what)
        }
    }
    // A shared lock for the export's duration: gc and rm (which take the
    // lock exclusively) leave the pod alone meanwhile, and it still reads
    // as exited to everyone else.
    let lock = File::open(&pod.dir).with_context(what)?;
    match lock.try_lock_shared() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(anyhow!("pod {} is busy (being deleted?)", pod.uuid)).with_context(what)
        }
        Err(fs::TryLockError::Error(e)) => return Err(e).with_context(what),
    }
    if !pod.dir.exists() {
        return Err(anyhow!(
            "pod {} moved while being exported; try again",
            pod.uuid
        ))
        .with_context(what);
    }
    let plan = PodPlan::load(&pod.dir).with_context(what)?;
    let info = PodInfo::read(&pod);
    let app = pick_app(&info, &pod.uuid, args.app.as_deref()).with_context(what)?;
    let app_dir = AppDir::new(&pod.dir, app);
    let app_plan = plan
        .apps
        .iter()
        .find(|a| a.name == app)
        .ok_or_else(|| anyhow!("app {app} is not in the pod's plan"))
        .with_context(what)?;
    let files = if app_dir.upper().is_dir() {
        if !app_plan.tree.is_dir() {
            return Err(anyhow!(
                "the image tree {} the app ran on is gone from the store (removed by \
                 `berth image gc` or `image rm`?); render the image again with \
                 `berth image render {}`",
                app_plan.tree.display(),
                app_plan.image_id
            ))
            .with_context(what);
        }
        AppFiles::Layers {
            upper: app_dir.upper(),
            tree: app_plan.tree.clone(),
        }
    } else {
        let rootfs = app_dir.rootfs();
        let empty = fs::read_dir(&rootfs).map_or(true, |mut d| d.next().is_none());
        if empty {
            return Err(anyhow!(
                "app {app} has no files in the pod (neither an overlay upper dir nor a copied \
                 rootfs in {})",
                app_dir.path().display()
            ))
            .with_context(what);
        }
        AppFiles::Dir(rootfs)
    };
    // This process is single-threaded here; the namespace makes every
    // mount below private to it and gone when it ends, whatever happens.
    berth_pod::export::private_mount_namespace()
        .context("creating a private mount namespace (berth export needs root)")
        .with_context(what)?;
    let staged = ExportLayout::stage(&pod.dir, &app_dir.manifest(), &files)
        .context("assembling the app's files")
        .with_context(what)?;
    tracing::debug!(from = ?staged.from, dir = %staged.path().display(), "staged");
    let opts = BuildOptions {
        overwrite: args.overwrite,
        ..BuildOptions::default()
    };
    let report = aci::build(staged.path(), &args.out, &opts).with_context(what)?;
    drop(staged);
    drop(lock);
    for warning in &report.warnings {
        eprintln!("berth: warning: {warning}");
    }
    println!("{}", report.image_id);
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_timeout("").unwrap(), Timeout(None));
        assert_eq!(
            parse_timeout("2s").unwrap(),
            Timeout(Some(Duration::from_secs(2)))
        );
    }

    #[test]
    fn times_print_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_002_345_678);
        assert_eq!(utc(t), "2026-11-30 01:32:25.678 UTC");
        assert_eq!(rfc3339(t), "2026-11-30T01:32:25.678Z");
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
