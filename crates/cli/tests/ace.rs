//! appc's own App Container Executor validator judges `berth run`.
//!
//! tests/ace/build.sh builds the validator from Debian's appc source
//! (golang-github-appc-spec-dev, ace/validator.go) and packs it into two
//! images with `actool build`: `ace-validator-main` (pre-start and post-stop
//! handlers, workingDirectory, environment, the `database` mount point at
//! /db) and `ace-validator-sidekick` (the same mount point). Run as one pod
//! sharing the `database` volume, the validator checks, from inside:
//!
//! - prestart (validator.go:148): runs first, in the main app's rootfs;
//! - main (validator.go:127): pre-start left /prestart, the rootfs is the
//!   app's own (no /main, no /poststop yet), PATH is ace.md's, the working
//!   directory, IN_ACE_VALIDATOR from the image, /db is a read-write mount
//!   point, AC_APP_NAME, the metadata service, /db/sidekick appears (the
//!   volume is shared), then it writes /db/main;
//! - sidekick (validator.go:142): writes /db/sidekick, sees /db/main;
//! - poststop (validator.go:155): runs after main, in the same rootfs.
//!
//! Each mode prints `MODE OK` or `MODE FAIL` on stdout and one `==> ERROR`
//! line per failed check on stderr; berth prefixes both with the app name.
//! berth has no metadata service yet (AC_METADATA_URL unset), so the
//! metadata checks are the only failures allowed, each one named; any other
//! failure, or a mode that does not report, fails the test.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, tool, ChildGuard, Env};

const MAIN: &str = "ace-validator-main";
const SIDEKICK: &str = "ace-validator-sidekick";
/// Longer than the validator's own 5 s waits, with room for a loaded machine.
const LIMIT: Duration = Duration::from_secs(60);
/// Runs of the pod before giving up on the sidekick reporting (see `judge`).
const ATTEMPTS: usize = 8;

/// The two ACIs, built once per target dir (tests/ace/build.sh skips the
/// build when its inputs did not change, and serialises parallel callers).
fn images() -> (PathBuf, PathBuf) {
    let bin = Path::new(env!("CARGO_BIN_EXE_berth"));
    let cache = bin
        .parent()
        .and_then(Path::parent)
        .expect("berth lives in <target>/<profile>/")
        .join("ace");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/ace/build.sh");
    let out = common::run(Command::new(script).arg(&cache));
    assert!(
        out.status.success(),
        "tests/ace/build.sh failed:\n{}",
        stderr(&out)
    );
    let text = stdout(&out);
    let mut lines = text.lines().map(PathBuf::from);
    let (main, sidekick) = (lines.next().unwrap(), lines.next().unwrap());
    assert!(
        main.is_file() && sidekick.is_file(),
        "build.sh said: {text}"
    );
    (main, sidekick)
}

/// The appc image ID of an ACI, computed outside berth.
fn image_id(aci: &Path) -> String {
    common::outside_image_id(aci, "gzip")
}

/// A store with both images fetched, and the pods run in it; whatever a
/// failed test leaves behind (a pod's processes, mounts under the temp dir)
/// is ended when it is dropped.
struct World {
    env: Env,
    main_id: String,
    sidekick_id: String,
    uuid_files: Vec<PathBuf>,
}

impl World {
    fn new() -> World {
        let (main, sidekick) = images();
        let env = Env::new();
        let out = common::run(
            env.berth()
                .arg("--insecure-options=image")
                .arg("fetch")
                .arg(&main)
                .arg(&sidekick),
        );
        assert!(out.status.success(), "berth fetch: {}", stderr(&out));
        World {
            env,
            main_id: image_id(&main),
            sidekick_id: image_id(&sidekick),
            uuid_files: Vec::new(),
        }
    }

    /// `berth run ARGS` to its end; the pod's UUID is saved for cleanup and
    /// for `berth status`.
    fn run(&mut self, args: &[String]) -> Run {
        let uuid_file = self
            .env
            .work()
            .join(format!("uuid-{}", self.uuid_files.len()));
        self.uuid_files.push(uuid_file.clone());
        let mut cmd = self.env.berth();
        cmd.arg("run")
            .arg("--pull-policy=never")
            .arg("--stop-timeout=5s")
            .arg(format!("--uuid-file-save={}", uuid_file.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().expect("starting berth run"));
        let mut out_pipe = child.0.stdout.take().unwrap();
        let mut err_pipe = child.0.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out_pipe.read_to_string(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.0.try_wait().unwrap() {
                break Some(st);
            }
            if start.elapsed() > LIMIT {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_none() {
            // End the pod before its pipes can close.
            self.kill_pods();
            drop(child);
        }
        // The pipes close when the last process of the pod is gone; one
        // that outlives `berth run` would hang the readers, so end it.
        let closing = Instant::now();
        while !(out_reader.is_finished() && err_reader.is_finished()) {
            if closing.elapsed() > Duration::from_secs(10) {
                self.kill_pods();
                panic!("processes of the pod outlived berth run by 10 s (killed)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = out_reader.join().unwrap();
        let err = err_reader.join().unwrap();
        let Some(status) = status else {
            panic!("berth run did not end within {LIMIT:?}\nstdout:\n{out}\nstderr:\n{err}");
        };
        let uuid = fs::read_to_string(&uuid_file)
            .unwrap_or_else(|e| panic!("--uuid-file-save: {e}\nstderr:\n{err}"))
            .trim()
            .to_string();
        Run {
            status,
            stdout: out,
            stderr: err,
            uuid,
        }
    }

    /// `berth status --format=json`: (exit code, signal) per app.
    fn app_results(&self, uuid: &str) -> BTreeMap<String, (Option<i64>, Option<i64>)> {
        let out = common::run(self.env.berth().args(["status", "--format=json"]).arg(uuid));
        assert!(out.status.success(), "berth status: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("berth status --format=json: {e}: {}", stdout(&out)));
        v["apps"]
            .as_array()
            .expect("apps in berth status")
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or_default().to_string(),
                    (a["exitCode"].as_i64(), a["signal"].as_i64()),
                )
            })
            .collect()
    }

    /// SIGKILL the PID 1 of every pod this world started that still runs
    /// (which takes its PID namespace down).
    fn kill_pods(&self) {
        let pods = self.env.store().join("pods");
        for f in &self.uuid_files {
            let Ok(uuid) = fs::read_to_string(f) else {
                continue;
            };
            let Ok(states) = fs::read_dir(&pods) else {
                continue;
            };
            for state in states.flatten() {
                let pid_file = state.path().join(uuid.trim()).join("pid");
                let Some(pid) = fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                else {
                    continue;
                };
                let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                if exe.to_string_lossy().contains("berth") {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_pods();
        for m in mounts_under(self.env.tmp.path()) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// Mount points under `dir` in this mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    uuid: String,
}

/// What the validator said, per app: each mode's verdict (`true` for OK)
/// and every `==>` error line.
#[derive(Debug, Default)]
struct Verdicts {
    modes: BTreeMap<(String, String), bool>,
    errors: Vec<(String, String)>,
}

fn parse(run: &Run) -> Verdicts {
    let mut v = Verdicts::default();
    let apps = [MAIN, SIDEKICK];
    let split = |line: &str| -> Option<(String, String)> {
        let (app, rest) = line.split_once(": ")?;
        apps.contains(&app)
            .then(|| (app.to_string(), rest.trim_end().to_string()))
    };
    for line in run.stdout.lines() {
        let Some((app, rest)) = split(line) else {
            continue;
        };
        for (suffix, ok) in [(" OK", true), (" FAIL", false)] {
            if let Some(mode) = rest.strip_suffix(suffix) {
                let prev = v.modes.insert((app.clone(), mode.to_lowercase()), ok);
                assert!(prev.is_none(), "{app}: mode {mode} reported twice");
            }
        }
    }
    for line in run.stderr.lines() {
        if let Some((app, rest)) = split(line) {
            if let Some(msg) = rest.strip_prefix("==> ") {
                v.errors.push((app, msg.to_string()));
            }
        }
    }
    v
}

/// The failures of ValidateMetadataSvc (validator.go:416), the only checks
/// that need the metadata service: AC_METADATA_URL unset (validator.go:421)
/// or a request under $AC_METADATA_URL/acMetadata/v1 failing
/// (validator.go:222-281).
fn needs_metadata_service(msg: &str) -> bool {
    msg == "AC_METADATA_URL is not set" || msg.contains("/acMetadata/v1/")
}

/// Judge one run. Returns false when everything the validator reported
/// passed but the sidekick was stopped before it could report: main fails
/// its metadata checks (no service yet), berth then stops the pod as it
/// must when an app fails, and the sidekick, which polls for /db/main that
/// main writes just before it exits, may lose that race. The caller runs
/// the pod again then; every other outcome is decided here.
fn judge(world: &World, form: &str, run: &Run) -> bool {
    let context = format!(
        "{form}: berth run exited {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status, run.stdout, run.stderr
    );
    let v = parse(run);

    // Only metadata-service checks may fail, each one by name.
    let other: Vec<_> = v
        .errors
        .iter()
        .filter(|(_, msg)| !needs_metadata_service(msg))
        .collect();
    assert!(
        other.is_empty(),
        "validator checks failed that do not need the metadata service: {other:?}\n{context}"
    );
    for (app, _) in &v.errors {
        assert_eq!(
            app, MAIN,
            "only main checks the metadata service\n{context}"
        );
    }
    let metadata_failed = !v.errors.is_empty();

    // Every mode of the main app reported, in its own rootfs.
    for mode in ["prestart", "poststop"] {
        assert_eq!(
            v.modes.get(&(MAIN.to_string(), mode.to_string())),
            Some(&true),
            "{MAIN}: {mode} must report OK\n{context}"
        );
    }
    assert_eq!(
        v.modes.get(&(MAIN.to_string(), "main".to_string())),
        Some(&!metadata_failed),
        "{MAIN}: main must report OK, or FAIL with only the metadata errors\n{context}"
    );

    // The sidekick: OK, or (only after main failed) stopped by the pod.
    let sidekick = v.modes.get(&(SIDEKICK.to_string(), "sidekick".to_string()));
    let expected_code = if metadata_failed { 1 } else { 0 };
    match sidekick {
        Some(true) => {
            assert_eq!(
                run.status.code(),
                Some(expected_code),
                "berth run must exit with the failing app's code\n{context}"
            );
            true
        }
        Some(false) => panic!("{SIDEKICK}: sidekick FAIL\n{context}"),
        None => {
            assert!(
                metadata_failed,
                "{SIDEKICK} did not report although no app failed\n{context}"
            );
            let results = world.app_results(&run.uuid);
            assert_eq!(
                results.get(SIDEKICK),
                Some(&(Some(128 + 15), Some(15))),
                "{SIDEKICK} did not report: it must have been stopped (SIGTERM) after \
                 {MAIN} failed; berth status says {results:?}\n{context}"
            );
            assert_eq!(run.status.code(), Some(1), "{context}");
            false
        }
    }
}

/// Runs the pod (up to ATTEMPTS times, see `judge`) and checks that no
/// mount of it is left on the host.
fn validate(world: &mut World, form: &str, args: &[String]) {
    let mut sidekick_reported = false;
    for _ in 0..ATTEMPTS {
        let run = world.run(args);
        let done = judge(world, form, &run);
        let left = mounts_under(world.env.tmp.path());
        assert!(left.is_empty(), "{form}: mounts left on the host: {left:?}");
        if done {
            sidekick_reported = true;
            break;
        }
        eprintln!("{form}: the sidekick was stopped before it reported; running the pod again");
    }
    assert!(
        sidekick_reported,
        "{form}: in {ATTEMPTS} runs the sidekick was always stopped before it saw /db/main"
    );
}

#[test]
fn ace_validator_passes_with_images_on_the_command_line() {
    let mut world = World::new();
    let args: Vec<String> = [
        "--volume",
        "database,kind=empty,mode=0755,uid=0,gid=0",
        "berth.test/ace-validator-main",
        "berth.test/ace-validator-sidekick",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    validate(&mut world, "berth run IMAGE IMAGE", &args);
}

#[test]
fn ace_validator_passes_with_a_pod_manifest() {
    let mut world = World::new();
    let manifest = serde_json::json!({
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [
            {
                "name": MAIN,
                "image": {"name": "berth.test/ace-validator-main", "id": world.main_id},
                "mounts": [{"volume": "database", "path": "/db"}]
            },
            {
                "name": SIDEKICK,
                "image": {"name": "berth.test/ace-validator-sidekick", "id": world.sidekick_id},
                "mounts": [{"volume": "database", "path": "/db"}]
            }
        ],
        "volumes": [
            {"name": "database", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}
        ]
    });
    let path = world.env.work().join("pod-manifest.json");
    fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    // appc's own tool agrees that this is a valid pod manifest.
    let out = common::run(Command::new(tool("actool")).arg("validate").arg(&path));
    assert!(
        out.status.success(),
        "actool validate: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let args = vec![format!("--pod-manifest={}", path.display())];
    validate(&mut world, "berth run --pod-manifest", &args);
}
