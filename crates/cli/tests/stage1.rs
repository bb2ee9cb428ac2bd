//! stage1 end to end: `berth stage1 run POD_DIR` on pod directories built
//! by hand (the plan written with berth_pod), the way stage0 leaves them:
//! the pod directory locked through an inherited fd named by BERTH_LOCK_FD.
//! Assertions come from outside (exit codes, output, files on the host,
//! /proc) and from inside (the static probe's report).
//!
//! Every test has its own temp dir; guards kill what a failed test leaves
//! running, so no process or mount outlives a test.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_pod::{
    AppPlan, AppStatus, MountPlan, NetMode, PodPlan, RestartPolicy, VolumeKindPlan, VolumePlan,
};
use common::{probe, stderr, stdout, tool};
use serde_json::Value;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "true", "false", "sleep", "touch", "ls", "id", "hostname", "kill", "test",
    "[", "grep", "tty", "wc", "rm", "mkdir",
];

/// One test's world: a temp dir with an image tree and a pod directory.
struct World {
    tmp: tempfile::TempDir,
    pod: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let pod = tmp
            .path()
            .join("pods/run/0a1b2c3d-0000-4000-8000-000000000001");
        fs::create_dir_all(&pod).unwrap();
        World { tmp, pod }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A tree with busybox and its applets, /etc/passwd and /etc/group with
    /// a non-root user, a /work directory and (optionally) the probe.
    fn tree(&self, name: &str, with_probe: bool) -> PathBuf {
        let root = self.path().join("trees").join(name);
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("work")).unwrap();
        fs::create_dir_all(root.join("tmp")).unwrap();
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::set_permissions(root.join("work"), fs::Permissions::from_mode(0o777)).unwrap();
        fs::copy(tool("busybox"), root.join("bin/busybox")).unwrap();
        for a in APPLETS {
            symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1001:app:/work:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            "root:x:0:\nappgroup:x:1001:\nextra:x:2000:appuser\n",
        )
        .unwrap();
        if with_probe {
            fs::copy(probe(), root.join("probe")).unwrap();
        }
        root
    }

    fn write_plan(&self, plan: &PodPlan) {
        for a in &plan.apps {
            fs::create_dir_all(self.pod.join("apps").join(&a.name)).unwrap();
        }
        plan.save(&self.pod).unwrap();
    }

    /// `berth stage1 run` the way stage0 execs it: a locked pod dir fd in
    /// BERTH_LOCK_FD (the shell opens it, flock locks it, exec keeps PID).
    fn command(&self) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec 9<"$1" && flock -x 9 && BERTH_LOCK_FD=9 exec "$0" stage1 run "$1""#)
            .arg(env!("CARGO_BIN_EXE_berth"))
            .arg(&self.pod)
            .stdin(Stdio::null());
        cmd
    }

    fn spawn(&self) -> PodGuard {
        let child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        PodGuard {
            child: Some(child),
            pod: self.pod.clone(),
        }
    }

    /// Run the pod to its end (at most `limit`).
    fn run(&self, limit: Duration) -> Output {
        self.spawn().wait_output(limit)
    }

    fn status(&self, app: &str) -> AppStatus {
        AppStatus::load(&self.pod.join("apps").join(app).join("status.json"))
            .unwrap()
            .unwrap_or_else(|| panic!("no status for {app}"))
    }

    fn volume(&self, name: &str) -> PathBuf {
        self.pod.join("volumes").join(name)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Nothing of the pod may stay mounted on the host (checked by the
        // tests; this only keeps a failed test from leaking into others).
        let me = self.path().to_string_lossy().into_owned();
        for m in mounts_under(&me) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// A running supervisor: killed with its whole pod when dropped.
struct PodGuard {
    child: Option<Child>,
    pod: PathBuf,
}

impl PodGuard {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn wait_output(mut self, limit: Duration) -> Output {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                kill_pod(&self.pod);
                panic!(
                    "pod did not end within {limit:?}\nstdout: {}\nstderr: {}",
                    stdout(&out),
                    stderr(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// Wait for the pod's `ready` file.
    fn wait_ready(&mut self) {
        let start = Instant::now();
        while !self.pod.join("ready").exists() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                let _ = self
                    .child
                    .as_mut()
                    .unwrap()
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err);
                panic!("pod ended ({st}) before ready: {err}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "pod not ready in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PodGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_pod(&self.pod);
    }
}

/// SIGKILL the pod's PID 1 named in `pid` (which takes the whole PID
/// namespace down), if it is still a berth process.
fn kill_pod(pod: &Path) {
    if let Some(pid) = read_pid(&pod.join("pid")) {
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if exe.to_string_lossy().contains("berth") {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn mounts_under(prefix: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(prefix))
        .collect()
}

/// True once `pid` is gone (or a zombie, waiting for a reaper that is not
/// us), polling up to `limit`.
fn gone(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) => {
                let state = s.rsplit(')').next().unwrap_or("").trim_start();
                if state.starts_with('Z') || state.starts_with('X') {
                    return true;
                }
            }
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn app(name: &str, tree: &Path, exec: &[&str]) -> AppPlan {
    AppPlan {
        name: name.into(),
        image_name: "example.com/test".into(),
        image_id: "sha512-0000".into(),
        oci_image: None,
        tree: tree.to_path_buf(),
        tree_key: "deps-sha512-0000".into(),
        exec: exec.iter().map(|s| s.to_string()).collect(),
        user: "0".into(),
        group: "0".into(),
        supplementary_gids: vec![],
        working_directory: "/".into(),
        env: vec![
            ("PATH".into(), "/bin".into()),
            ("AC_APP_NAME".into(), name.into()),
        ],
        pre_start: None,
        post_stop: None,
        mounts: vec![],
        restart: RestartPolicy::No,
        readonly_rootfs: false,
        stop_signal: 15,
    }
}

fn plan(apps: Vec<AppPlan>) -> PodPlan {
    PodPlan {
        version: berth_pod::plan::PLAN_VERSION,
        uuid: "0a1b2c3d-0000-4000-8000-000000000001".into(),
        hostname: "testpod".into(),
        net: NetMode::Host,
        overlay: true,
        interactive: false,
        prefix_output: false,
        stop_timeout_ms: 3000,
        log_max_bytes: 1 << 20,
        volumes: vec![],
        apps,
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn empty_volume(name: &str) -> VolumePlan {
    VolumePlan {
        name: name.into(),
        kind: VolumeKindPlan::Empty {
            mode: 0o777,
            uid: 0,
            gid: 0,
            read_only: false,
        },
    }
}

fn mount(volume: &str, target: &str, read_only: bool) -> MountPlan {
    MountPlan {
        volume: volume.into(),
        target: target.into(),
        read_only,
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn probe_sees_the_planned_env_user_cwd_and_hostname() {
    let w = World::new();
    let tree = w.tree("probe", true);
    let mut a = app("probe", &tree, &["/probe", "--exit", "0"]);
    a.user = "appuser".into();
    a.group = "appgroup".into();
    a.supplementary_gids = vec![2000, 3000];
    a.working_directory = "/work".into();
    a.env = vec![
        ("PATH".into(), "/bin".into()),
        ("AC_APP_NAME".into(), "probe".into()),
        ("GREETING".into(), "hello world".into()),
    ];
    let mut p = plan(vec![a]);
    p.net = NetMode::None;
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let doc: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        doc["env"],
        serde_json::json!({"PATH": "/bin", "AC_APP_NAME": "probe", "GREETING": "hello world"})
    );
    assert_eq!(doc["uid"], 1000);
    assert_eq!(doc["euid"], 1000);
    assert_eq!(doc["gid"], 1001);
    assert_eq!(doc["groups"], serde_json::json!([2000, 3000]));
    assert_eq!(doc["cwd"], "/work");
    assert_eq!(doc["hostname"], "testpod");
    // Its parent is the pod's PID 1: a PID namespace of the pod's own.
    assert_eq!(doc["ppid"], 1);
    assert_eq!(doc["stdin_tty"], false);
    let mps: Vec<&str> = doc["mountpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for m in [
        "/",
        "/proc",
        "/sys",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/null",
    ] {
        assert!(mps.contains(&m), "{m} not mounted in the app: {mps:?}");
    }
    // Pod files: ppid, pid, started, exit, status.
    let st = w.status("probe");
    assert_eq!(st.exit_code, Some(0));
    assert!(!st.running);
    assert!(st.started_ms.is_some() && st.exited_ms.is_some());
    assert_eq!(fs::read_to_string(w.pod.join("exit")).unwrap().trim(), "0");
    assert!(read_pid(&w.pod.join("ppid")).is_some());
    assert!(w.pod.join("started").exists());
    assert!(w.pod.join("ready").exists());
}

#[test]
fn exit_codes_are_the_apps() {
    for (script, want) in [
        ("true", 0),
        ("exit 1", 1),
        ("exit 42", 42),
        ("kill -9 $$", 128 + 9),
    ] {
        let w = World::new();
        let tree = w.tree("bb", false);
        let mut a = app("a", &tree, &[]);
        a.exec = sh(script);
        w.write_plan(&plan(vec![a]));
        let out = w.run(LIMIT);
        assert_eq!(code(&out), want, "{script}: stderr: {}", stderr(&out));
        let st = w.status("a");
        assert_eq!(st.exit_code, Some(want), "{script}");
        if want == 137 {
            assert_eq!(st.signal, Some(9));
        }
        assert_eq!(
            fs::read_to_string(w.pod.join("exit")).unwrap().trim(),
            want.to_string()
        );
    }
}

#[test]
fn output_is_prefixed_per_app_and_logged() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut one = app("one", &tree, &[]);
    one.exec = sh("echo hello; echo oops >&2; printf 'part'; printf 'ial\\n'");
    let mut two = app("two", &tree, &[]);
    two.exec = sh("echo second");
    let mut p = plan(vec![one, two]);
    p.prefix_output = true;
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let o = stdout(&out);
    assert!(o.lines().any(|l| l == "one: hello"), "{o}");
    assert!(o.lines().any(|l| l == "one: partial"), "{o}");
    assert!(o.lines().any(|l| l == "two: second"), "{o}");
    assert!(
        stderr(&out).lines().any(|l| l == "one: oops"),
        "{}",
        stderr(&out)
    );
    let log = fs::read_to_string(w.pod.join("apps/one/log")).unwrap();
    assert!(log.contains("hello\n") && log.contains("oops\n"), "{log}");
    assert!(!log.contains("one: "), "the log is not prefixed: {log}");
    // Both programs started, however quickly they ended: the pod was ready.
    assert!(w.pod.join("ready").exists());
}

#[test]
fn log_is_capped_and_rotated() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &[]);
    a.exec = sh("i=0; while [ $i -lt 50 ]; do echo line-$i; i=$((i+1)); sleep 0.01; done");
    let mut p = plan(vec![a]);
    p.log_max_bytes = 100;
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 50);
    let log = fs::metadata(w.pod.join("apps/a/log")).unwrap().len();
    let old = fs::metadata(w.pod.join("apps/a/log.1")).unwrap().len();
    assert!(log <= 100 && old <= 100, "log {log} log.1 {old}");
    let last = fs::read_to_string(w.pod.join("apps/a/log")).unwrap();
    assert!(last.ends_with("line-49\n"), "{last}");
}

#[test]
fn handlers_run_in_order_and_apps_share_an_empty_volume() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &[]);
    a.pre_start = Some(sh("echo pre-$AC_APP_NAME >> /shared/order"));
    a.exec = sh("echo app >> /shared/order");
    a.post_stop = Some(sh(
        "while [ ! -e /shared/from-b ]; do sleep 0.05; done; cat /shared/from-b >> /shared/order; echo post >> /shared/order",
    ));
    a.mounts = vec![mount("shared", "/shared", false)];
    let mut b = app("b", &tree, &[]);
    b.exec = sh("echo b-was-here > /data/from-b");
    b.mounts = vec![mount("shared", "/data", false)];
    let mut p = plan(vec![a, b]);
    p.volumes = vec![empty_volume("shared")];
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(
        fs::read_to_string(w.volume("shared").join("order")).unwrap(),
        "pre-a\napp\nb-was-here\npost\n"
    );
    let meta = fs::metadata(w.volume("shared")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o777);
}

#[test]
fn host_volumes_bind_and_read_only_is_enforced() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let ro = w.path().join("host-ro");
    let rw = w.path().join("host-rw");
    fs::create_dir_all(&ro).unwrap();
    fs::create_dir_all(&rw).unwrap();
    fs::write(ro.join("f"), "host content\n").unwrap();
    let mut a = app("a", &tree, &[]);
    a.exec = sh(
        "cat /ro/f; if echo x > /ro/new; then echo ro-write-ok; else echo ro-write-refused; fi; echo y > /deep/er/rw/new && echo rw-write-ok; \
         if mkdir /sys/fs/cgroup/pids/berth-escape-test 2>/dev/null; then echo cgroup-writable; else echo cgroup-readonly; fi",
    );
    a.mounts = vec![mount("ro", "/ro", false), mount("rw", "/deep/er/rw", false)];
    let mut p = plan(vec![a]);
    p.volumes = vec![
        VolumePlan {
            name: "ro".into(),
            kind: VolumeKindPlan::Host {
                source: ro.clone(),
                read_only: true,
                recursive: true,
            },
        },
        VolumePlan {
            name: "rw".into(),
            kind: VolumeKindPlan::Host {
                source: rw.clone(),
                read_only: false,
                recursive: false,
            },
        },
    ];
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let o = stdout(&out);
    assert!(o.contains("host content"), "{o}");
    assert!(o.contains("ro-write-refused"), "{o}");
    assert!(o.contains("rw-write-ok"), "{o}");
    // The host's /sys (and its cgroup mounts below) is read-only in the pod.
    let _ = fs::remove_dir("/sys/fs/cgroup/pids/berth-escape-test");
    assert!(o.contains("cgroup-readonly"), "{o}");
    assert!(!ro.join("new").exists());
    assert_eq!(fs::read_to_string(rw.join("new")).unwrap(), "y\n");
    // The target was created in the app's rootfs (overlay upper), not the tree.
    assert!(!tree.join("deep").exists());
}

#[test]
fn mount_targets_never_follow_symlinks_out_of_the_root() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let victim = w.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    // The image points /escape at a host directory.
    symlink(&victim, tree.join("escape")).unwrap();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("marker"), "m").unwrap();
    let mut a = app("a", &tree, &[]);
    a.exec = sh("cat /escape/vol/marker");
    a.mounts = vec![mount("v", "/escape/vol", false)];
    let mut p = plan(vec![a]);
    p.volumes = vec![VolumePlan {
        name: "v".into(),
        kind: VolumeKindPlan::Host {
            source: src,
            read_only: false,
            recursive: true,
        },
    }];
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "m");
    assert!(
        fs::read_dir(&victim).unwrap().next().is_none(),
        "a mount target was created on the host through an image symlink"
    );
}

#[test]
fn a_failing_app_stops_the_others_and_gives_its_code() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let long = app("long", &tree, &["sleep", "1000"]);
    let mut fail = app("fail", &tree, &[]);
    fail.exec = sh("sleep 0.3; exit 3");
    w.write_plan(&plan(vec![long, fail]));
    let start = Instant::now();
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 3, "stderr: {}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(w.status("long").exit_code, Some(128 + 15));
    assert_eq!(w.status("fail").exit_code, Some(3));
}

#[test]
fn sigterm_to_the_supervisor_stops_the_pod_gracefully() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &["sleep", "1000"]);
    a.post_stop = Some(sh("echo post-stop-ran > /v/post"));
    a.mounts = vec![mount("v", "/v", false)];
    let mut p = plan(vec![a]);
    p.volumes = vec![empty_volume("v")];
    p.stop_timeout_ms = 10_000;
    w.write_plan(&p);
    let mut guard = w.spawn();
    guard.wait_ready();
    // `pid` names PID 1 of the pod, a child of the supervisor (`ppid`).
    let sup = guard.pid() as i32;
    assert_eq!(read_pid(&w.pod.join("ppid")), Some(sup));
    let pid1 = read_pid(&w.pod.join("pid")).unwrap();
    let status = fs::read_to_string(format!("/proc/{pid1}/status")).unwrap();
    assert!(
        status.lines().any(|l| l == format!("PPid:\t{sup}")),
        "{status}"
    );
    let st = w.status("a");
    assert!(st.running);
    let app_pid = st.pid.unwrap();
    assert!(fs::read_to_string(format!("/proc/{app_pid}/cmdline"))
        .unwrap()
        .starts_with("sleep"));

    // The supervisor stays small (it lives as long as the pod).
    let sup_status = fs::read_to_string(format!("/proc/{sup}/status")).unwrap();
    let hwm_kb: u64 = sup_status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(hwm_kb < 10 * 1024, "supervisor peak RSS {hwm_kb} kB");
    let start = Instant::now();
    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(sup.to_string())
        .status()
        .unwrap()
        .success());
    let out = guard.wait_output(LIMIT);
    // Graceful: `sleep` dies of the SIGTERM at once, well before the grace.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code(&out), 128 + 15, "stderr: {}", stderr(&out));
    assert_eq!(
        fs::read_to_string(w.volume("v").join("post")).unwrap(),
        "post-stop-ran\n"
    );
    assert_eq!(w.status("a").signal, Some(15));
    assert!(gone(app_pid, Duration::from_secs(5)));
}

#[test]
fn kill_9_of_the_supervisor_leaves_no_process_and_no_mount() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &["sleep", "1000"]);
    a.mounts = vec![mount("v", "/v", false)];
    // b leaves an orphan behind, which the pod's PID 1 must reap.
    let mut b = app("b", &tree, &[]);
    b.exec = sh("(sleep 0.1 &); exec sleep 1000");
    let mut p = plan(vec![a, b]);
    p.volumes = vec![empty_volume("v")];
    w.write_plan(&p);
    let mut guard = w.spawn();
    guard.wait_ready();
    let pid1 = read_pid(&w.pod.join("pid")).unwrap();
    let apps = [w.status("a").pid.unwrap(), w.status("b").pid.unwrap()];
    // Once the orphan has exited, PID 1's children are the two apps, and
    // no zombie among them.
    let start = Instant::now();
    loop {
        let children = fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children")).unwrap();
        let mut kids: Vec<i32> = children
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        kids.sort();
        let mut want = apps.to_vec();
        want.sort();
        if kids == want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "PID 1's children {kids:?}, apps {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let me = w.path().to_string_lossy().into_owned();
    // The pod's mounts live in its own namespace only.
    assert!(mounts_under(&me).is_empty(), "{:?}", mounts_under(&me));
    let sup = guard.pid();
    assert!(Command::new("kill")
        .arg("-9")
        .arg(sup.to_string())
        .status()
        .unwrap()
        .success());
    let _ = guard.child.as_mut().unwrap().wait();
    assert!(gone(pid1, Duration::from_secs(5)), "PID 1 {pid1} survived");
    for p in apps {
        assert!(gone(p, Duration::from_secs(5)), "app {p} survived");
    }
    assert!(mounts_under(&me).is_empty(), "{:?}", mounts_under(&me));
    // And no mount namespace of the pod is left with a rootfs in it: the
    // rootfs directory is an empty directory again.
    let rootfs = w.pod.join("apps/a/rootfs");
    assert!(fs::read_dir(&rootfs).unwrap().next().is_none());
}

#[test]
fn restart_on_failure_is_bounded_and_counted() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &[]);
    a.exec = sh("echo run >> /v/runs; exit 7");
    a.restart = RestartPolicy::OnFailure { max: Some(2) };
    a.mounts = vec![mount("v", "/v", false)];
    let mut p = plan(vec![a]);
    p.volumes = vec![empty_volume("v")];
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 7, "stderr: {}", stderr(&out));
    let st = w.status("a");
    assert_eq!(st.restarts, 2);
    assert_eq!(st.exit_code, Some(7));
    assert!(!st.running);
    assert_eq!(
        fs::read_to_string(w.volume("v").join("runs")).unwrap(),
        "run\nrun\nrun\n"
    );
}

#[test]
fn overlay_leaves_the_tree_untouched() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let before = fs::read(tree.join("etc/passwd")).unwrap();
    let mut a = app("a", &tree, &[]);
    a.exec = sh(
        "echo new > /newfile && echo hacked >> /etc/passwd && rm /bin/ls && cat /etc/hostname /etc/hosts",
    );
    w.write_plan(&plan(vec![a]));
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("testpod"), "{}", stdout(&out));
    assert!(!tree.join("newfile").exists());
    assert!(!tree.join("etc/hostname").exists());
    assert_eq!(fs::read(tree.join("etc/passwd")).unwrap(), before);
    assert!(fs::symlink_metadata(tree.join("bin/ls")).is_ok());
    // What the app wrote is in the overlay's upper layer.
    assert_eq!(
        fs::read_to_string(w.pod.join("apps/a/upper/newfile")).unwrap(),
        "new\n"
    );
}

#[test]
fn without_overlay_the_tree_is_copied_faithfully() {
    let w = World::new();
    let tree = w.tree("bb", false);
    fs::write(tree.join("suid"), "x").unwrap();
    fs::set_permissions(tree.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(tree.join("suid"), tree.join("suid-link")).unwrap();
    let mut a = app("a", &tree, &[]);
    a.exec = sh("echo new > /newfile && ls -l /bin/sh");
    let mut p = plan(vec![a]);
    p.overlay = false;
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("-> busybox"), "{}", stdout(&out));
    assert!(!stderr(&out).contains("overlayfs unavailable"));
    assert!(!tree.join("newfile").exists());
    let rootfs = w.pod.join("apps/a/rootfs");
    assert_eq!(fs::read_to_string(rootfs.join("newfile")).unwrap(), "new\n");
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let s = fs::metadata(rootfs.join("suid")).unwrap();
    assert_eq!(s.mode() & 0o7777, 0o4755);
    assert_eq!(
        s.ino(),
        fs::metadata(rootfs.join("suid-link")).unwrap().ino()
    );
}

#[test]
fn an_unknown_user_fails_the_app_with_254() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &["true"]);
    a.user = "nosuchuser".into();
    w.write_plan(&plan(vec![a]));
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 254, "stderr: {}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("nosuchuser") && e.contains("/etc/passwd"), "{e}");
    assert_eq!(w.status("a").exit_code, Some(254));
    // The program never started, so the pod never became ready.
    assert!(!w.pod.join("ready").exists());
}

#[test]
fn net_none_has_only_loopback_and_a_readonly_rootfs_refuses_writes() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &[]);
    a.exec = sh(
        "cat /proc/net/dev; hostname; if touch /x 2>/dev/null; then echo root-writable; else echo root-readonly; fi",
    );
    a.readonly_rootfs = true;
    let mut p = plan(vec![a]);
    p.net = NetMode::None;
    p.hostname = "isolated".into();
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let o = stdout(&out);
    let ifaces: Vec<&str> = o
        .lines()
        .filter(|l| l.contains(':') && !l.contains('|'))
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"], "{o}");
    assert!(o.contains("isolated"), "{o}");
    assert!(o.contains("root-readonly"), "{o}");
}

#[test]
fn interactive_app_gets_a_terminal() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &[]);
    a.exec = sh(
        "if [ -t 0 ] && [ -t 1 ]; then echo stdin-is-a-tty; fi; read line; echo got-$line; exit 5",
    );
    let mut p = plan(vec![a]);
    p.interactive = true;
    w.write_plan(&p);
    // The terminal's settings before and after: raw mode must not outlive
    // the pod.
    let inner = w.path().join("inner.sh");
    fs::write(
        &inner,
        format!(
            r#"stty -g > '{tmp}/before'
(exec 9<'{pod}' && flock -x 9 && BERTH_LOCK_FD=9 exec '{berth}' stage1 run '{pod}')
rc=$?
stty -g > '{tmp}/after'
exit $rc
"#,
            tmp = w.path().display(),
            pod = w.pod.display(),
            berth = env!("CARGO_BIN_EXE_berth"),
        ),
    )
    .unwrap();
    // script(1) gives the supervisor a real terminal; what is typed into it
    // (here: piped into script) must reach the app through the pod's pty.
    let outer = format!(
        "(sleep 0.3; echo typed) | timeout 30 script -qec 'sh {}' /dev/null",
        inner.display()
    );
    let out = common::run(
        Command::new("sh")
            .arg("-c")
            .arg(&outer)
            .stdin(Stdio::null()),
    );
    let o = stdout(&out);
    assert!(
        o.contains("stdin-is-a-tty"),
        "stdout: {o}\nstderr: {}",
        stderr(&out)
    );
    assert!(
        o.contains("got-typed"),
        "stdout: {o}\nstderr: {}",
        stderr(&out)
    );
    assert_eq!(code(&out), 5, "stdout: {o}\nstderr: {}", stderr(&out));
    assert!(fs::read_to_string(w.pod.join("apps/a/log"))
        .unwrap()
        .contains("stdin-is-a-tty"));
    let before = fs::read_to_string(w.path().join("before")).unwrap();
    assert!(!before.is_empty());
    assert_eq!(
        before,
        fs::read_to_string(w.path().join("after")).unwrap(),
        "terminal settings not restored"
    );
}

#[test]
fn a_missing_tree_is_a_berth_failure() {
    let w = World::new();
    let a = app("a", &w.path().join("no-such-tree"), &["true"]);
    w.write_plan(&plan(vec![a]));
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 254, "stderr: {}", stderr(&out));
    let e = stderr(&out);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("berth: app \"a\": image tree "), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");
}

#[test]
fn a_bad_plan_is_a_berth_failure() {
    let w = World::new();
    fs::write(w.pod.join("plan.json"), "{\"version\": 99}").unwrap();
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 254);
    let e = stderr(&out);
    assert!(e.starts_with("berth: load the pod plan: "), "{e}");
    assert!(e.contains("version 99"), "{e}");
}

#[test]
fn where_overlayfs_fails_the_image_is_copied_with_one_warning() {
    let w = World::new();
    // overlayfs refuses a lower dir inside the upper dir (ELOOP): a real
    // mount failure, as on a filesystem overlayfs cannot use.
    let mut apps = Vec::new();
    for name in ["a", "b"] {
        let upper = w.pod.join("apps").join(name).join("upper");
        fs::create_dir_all(&upper).unwrap();
        let built = w.tree(name, false);
        let tree = upper.join("tree");
        fs::rename(&built, &tree).unwrap();
        let mut a = app(name, &tree, &[]);
        a.exec = sh("echo copied > /newfile; cat /newfile");
        apps.push(a);
    }
    let mut p = plan(apps);
    p.prefix_output = true;
    w.write_plan(&p);
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let e = stderr(&out);
    assert_eq!(
        e.matches("berth: overlayfs unavailable (").count(),
        1,
        "one warning per pod: {e}"
    );
    assert!(e.contains("copying the image instead"), "{e}");
    assert!(stdout(&out).contains("a: copied") && stdout(&out).contains("b: copied"));
    for name in ["a", "b"] {
        let dir = w.pod.join("apps").join(name);
        assert!(dir.join("rootfs/bin/busybox").is_file());
        assert!(!dir.join("upper/tree/newfile").exists(), "tree written");
    }
}

#[test]
fn stop_uses_each_apps_stop_signal_and_kills_after_the_grace() {
    let w = World::new();
    let tree = w.tree("bb", false);
    // Ignores SIGTERM: only the SIGKILL after the grace ends it.
    let mut stubborn = app("stubborn", &tree, &[]);
    stubborn.exec = sh("trap '' TERM; echo stubborn-up; while :; do sleep 0.05; done");
    // Stops cleanly on its own stop signal (SIGINT).
    let mut polite = app("polite", &tree, &[]);
    polite.exec =
        sh("trap 'echo got-int; exit 0' INT; echo polite-up; while :; do sleep 0.05; done");
    polite.stop_signal = 2;
    let mut p = plan(vec![stubborn, polite]);
    p.stop_timeout_ms = 700;
    p.prefix_output = true;
    w.write_plan(&p);
    let mut guard = w.spawn();
    guard.wait_ready();
    // Let both shells install their traps (they print once they have).
    let start = Instant::now();
    while !fs::read_to_string(w.pod.join("apps/stubborn/log"))
        .unwrap_or_default()
        .contains("stubborn-up")
        || !fs::read_to_string(w.pod.join("apps/polite/log"))
            .unwrap_or_default()
            .contains("polite-up")
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    Command::new("kill")
        .arg("-TERM")
        .arg(guard.pid().to_string())
        .status()
        .unwrap();
    let out = guard.wait_output(LIMIT);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(stdout(&out).contains("polite: got-int"), "{}", stdout(&out));
    assert_eq!(w.status("polite").exit_code, Some(0));
    assert_eq!(w.status("stubborn").signal, Some(9));
    assert_eq!(code(&out), 128 + 9, "stderr: {}", stderr(&out));
}

#[test]
fn restart_always_restarts_with_backoff_until_stopped() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &[]);
    a.exec = sh("echo run >> /v/runs");
    a.restart = RestartPolicy::Always;
    a.mounts = vec![mount("v", "/v", false)];
    let mut p = plan(vec![a]);
    p.volumes = vec![empty_volume("v")];
    w.write_plan(&p);
    let guard = w.spawn();
    let runs = w.volume("v").join("runs");
    let start = Instant::now();
    // Backoff 100, 200, 400 ms: the fourth run comes after about 0.7 s.
    while fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count()
        < 4
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "too few restarts"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(start.elapsed() >= Duration::from_millis(600), "no backoff");
    Command::new("kill")
        .arg("-TERM")
        .arg(guard.pid().to_string())
        .status()
        .unwrap();
    let out = guard.wait_output(LIMIT);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let st = w.status("a");
    assert!(st.restarts >= 3, "{st:?}");
    assert!(!st.running);
}

#[test]
fn interactive_window_size_follows_the_terminal() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &[]);
    a.exec = sh("stty size; read line; stty size; echo got-$line");
    let mut p = plan(vec![a]);
    p.interactive = true;
    w.write_plan(&p);
    let tmp = w.path().display().to_string();
    let log = w.pod.join("apps/a/log");
    // In script's terminal: set a size, start the pod in the background,
    // wait for the app to report it, resize, SIGWINCH the supervisor (as
    // the terminal would), then let the typed line through.
    let inner = w.path().join("inner.sh");
    fs::write(
        &inner,
        format!(
            r#"stty rows 33 cols 111
exec 3<&0
(exec 9<'{pod}' && flock -x 9 && BERTH_LOCK_FD=9 exec '{berth}' stage1 run '{pod}') 0<&3 &
pid=$!
i=0; while ! grep -q '33 111' '{log}' 2>/dev/null; do sleep 0.05; i=$((i+1)); [ $i -gt 400 ] && break; done
stty rows 44 cols 122
kill -WINCH $pid
touch '{tmp}/resized'
wait $pid
"#,
            pod = w.pod.display(),
            berth = env!("CARGO_BIN_EXE_berth"),
            log = log.display(),
        ),
    )
    .unwrap();
    let outer = format!(
        "(i=0; while [ ! -e '{tmp}/resized' ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo typed) \
         | timeout 30 script -qec 'sh {}' /dev/null",
        inner.display()
    );
    let out = common::run(
        Command::new("sh")
            .arg("-c")
            .arg(&outer)
            .stdin(Stdio::null()),
    );
    let o = stdout(&out);
    assert!(
        o.contains("33 111"),
        "stdout: {o}\nstderr: {}",
        stderr(&out)
    );
    assert!(
        o.contains("44 122"),
        "stdout: {o}\nstderr: {}",
        stderr(&out)
    );
    assert!(
        o.contains("got-typed"),
        "stdout: {o}\nstderr: {}",
        stderr(&out)
    );
}

#[test]
fn a_pid_1_killed_by_a_signal_gives_128_plus_the_signal() {
    let w = World::new();
    let tree = w.tree("bb", false);
    w.write_plan(&plan(vec![app("a", &tree, &["sleep", "1000"])]));
    let mut guard = w.spawn();
    guard.wait_ready();
    let pid1 = read_pid(&w.pod.join("pid")).unwrap();
    Command::new("kill")
        .arg("-9")
        .arg(pid1.to_string())
        .status()
        .unwrap();
    let out = guard.wait_output(LIMIT);
    assert_eq!(code(&out), 128 + 9, "stderr: {}", stderr(&out));
    assert_eq!(
        fs::read_to_string(w.pod.join("exit")).unwrap().trim(),
        "137"
    );
}

#[test]
fn a_failing_pre_start_is_the_apps_failure() {
    let w = World::new();
    let tree = w.tree("bb", false);
    let mut a = app("a", &tree, &[]);
    a.pre_start = Some(sh("echo pre-failed; exit 9"));
    a.exec = sh("echo app-ran");
    w.write_plan(&plan(vec![a]));
    let out = w.run(LIMIT);
    assert_eq!(code(&out), 9, "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("pre-failed"));
    assert!(!stdout(&out).contains("app-ran"));
    assert_eq!(w.status("a").exit_code, Some(9));
}
