//! The daemonless pod lifecycle: list, status, stop, logs, rm, gc,
//! cat-manifest, export, enter.
//!
//! Pods are built by hand with berth-pod in the state each test needs, as
//! stage0 and stage1 would leave them: a running pod is a directory in
//! `run/` whose lock a child process holds (`flock -o DIR sleep`, standing
//! in for the supervisor), with `ppid` naming that process. Every process a
//! test starts runs in its own process group and is killed (the whole
//! group) when the test ends, pass or fail; mounts are undone the same way.

mod common;

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_pod::inspect;
use berth_pod::layout::{self, AppDir};
use berth_pod::{AppPlan, AppStatus, NetMode, PodPlan, Pods, RestartPolicy};
use common::*;

// ---------------------------------------------------------------------------
// Fixtures

/// A process group killed with SIGKILL when dropped.
struct Group(Child);

impl Group {
    fn spawn(cmd: &mut Command) -> Group {
        Group(
            cmd.process_group(0)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
        )
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    /// The first child of the leader (flock's `sleep`).
    fn child_pid(&self) -> i32 {
        let pid = self.pid();
        wait_for(|| {
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .is_ok_and(|c| !c.trim().is_empty())
        });
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// A mount undone (lazily) when dropped.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

fn wait_for(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "condition not met in 10s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

fn app_plan(name: &str, tree: &Path) -> AppPlan {
    AppPlan {
        name: name.into(),
        image_name: format!("example.com/{name}"),
        image_id: format!("sha512-{}", "ab".repeat(64)),
        oci_image: None,
        tree: tree.to_path_buf(),
        tree_key: format!("deps-sha512-{}", "cd".repeat(32)),
        exec: vec!["/bin/sh".into()],
        user: "0".into(),
        group: "0".into(),
        supplementary_gids: vec![],
        working_directory: "/".into(),
        env: vec![("PATH".into(), "/bin".into())],
        pre_start: None,
        post_stop: None,
        mounts: vec![],
        restart: RestartPolicy::No,
        readonly_rootfs: false,
        stop_signal: 15,
    }
}

/// A pod of `apps` as stage0 prepares it: plan, manifest, created time,
/// app dirs with manifests; in `prepared/`, unlocked.
struct TestPod {
    uuid: String,
    dir: PathBuf,
    holder: Option<Group>,
}

impl TestPod {
    fn app(&self, name: &str) -> AppDir {
        AppDir::new(&self.dir, name)
    }
    fn short(&self) -> &str {
        &self.uuid[..8]
    }
    /// Move from `prepared/` to `run/` (exited: nobody holds it).
    fn move_to_run(&mut self, pods: &Pods) {
        let to = pods.root().join("run").join(&self.uuid);
        fs::rename(&self.dir, &to).unwrap();
        self.dir = to;
        fs::write(
            self.dir.join(layout::STARTED),
            format!("{}\n", now_ms() - 1000),
        )
        .unwrap();
    }
    /// Running: a process holds the lock, recorded as the supervisor, its
    /// child as the pod's PID 1.
    fn run(&mut self, pods: &Pods) {
        self.move_to_run(pods);
        let g = Group::spawn(
            Command::new(tool("flock"))
                .arg("-o")
                .arg(&self.dir)
                .args(["sleep", "1000"]),
        );
        let dir = self.dir.clone();
        wait_for(|| inspect::lock_held(&dir).unwrap());
        fs::write(self.dir.join(layout::PPID), format!("{}\n", g.pid())).unwrap();
        fs::write(self.dir.join(layout::PID), format!("{}\n", g.child_pid())).unwrap();
        self.holder = Some(g);
    }
    /// The supervisor dies (as with kill -9): the pod is exited.
    fn kill_holder(&mut self) {
        drop(self.holder.take());
        let dir = self.dir.clone();
        wait_for(|| !inspect::lock_held(&dir).unwrap());
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn make_pod(env: &Env, apps: &[&str], created_ms: u64) -> TestPod {
    let pods = Pods::open(&env.store()).unwrap();
    let mut p = pods.create().unwrap();
    pods.begin_prepare(&mut p).unwrap();
    let tree = env.work().join("tree");
    fs::create_dir_all(&tree).unwrap();
    let plan = PodPlan {
        version: berth_pod::plan::PLAN_VERSION,
        uuid: p.uuid.clone(),
        hostname: format!("berth-{}", p.uuid),
        net: NetMode::Host,
        overlay: true,
        interactive: false,
        prefix_output: apps.len() > 1,
        stop_timeout_ms: 10_000,
        log_max_bytes: 1 << 20,
        volumes: vec![],
        apps: apps.iter().map(|a| app_plan(a, &tree)).collect(),
    };
    plan.save(&p.dir).unwrap();
    let manifest = serde_json::json!({
        "acVersion": "0.8.11",
        "acKind": "PodManifest",
        "apps": apps.iter().map(|a| serde_json::json!({
            "name": a,
            "image": {"name": format!("example.com/{a}"), "id": format!("sha512-{}", "ab".repeat(64))},
        })).collect::<Vec<_>>(),
    });
    fs::write(
        p.dir.join(layout::POD_MANIFEST),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    fs::write(p.dir.join(layout::CREATED), format!("{created_ms}\n")).unwrap();
    for a in apps {
        let ad = AppDir::new(&p.dir, a);
        fs::create_dir_all(ad.rootfs()).unwrap();
        fs::write(ad.manifest(), BUSYBOX_MANIFEST).unwrap();
    }
    pods.finish_prepare(&mut p).unwrap();
    TestPod {
        uuid: p.uuid.clone(),
        dir: p.dir.clone(),
        holder: None,
    }
}

fn set_status(pod: &TestPod, app: &str, s: AppStatus) {
    s.save(&pod.app(app).status()).unwrap();
}

fn exited_status(code: i32, restarts: u32) -> AppStatus {
    AppStatus {
        pid: None,
        started_ms: Some(now_ms() - 900),
        exited_ms: Some(now_ms() - 100),
        exit_code: Some(code),
        signal: None,
        restarts,
        running: false,
    }
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}): {}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs, expects exit 254 and one `berth: ...` line holding `needle`.
fn fails(cmd: &mut Command, needle: &str) -> String {
    let out = run(cmd);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(254),
        "{cmd:?}: {}{err}",
        stdout(&out)
    );
    assert!(err.contains(needle), "{cmd:?}: {err:?} lacks {needle:?}");
    assert!(err.starts_with("berth: "), "{err}");
    err
}

fn mountinfo_mentions(s: &str) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(s)
}

// ---------------------------------------------------------------------------
// list and lookup

#[test]
fn list_shows_every_pod_sorted_by_creation_as_table_and_json() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let t0 = now_ms() - 60_000;
    let prepared = make_pod(&env, &["web", "db"], t0 + 2000);
    let mut exited = make_pod(&env, &["job"], t0);
    exited.move_to_run(&pods);
    let mut running = make_pod(&env, &["srv"], t0 + 1000);
    running.run(&pods);

    let table = ok(env.berth().arg("list"));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    for col in [
        "UUID",
        "APP",
        "IMAGE NAME",
        "STATE",
        "CREATED",
        "STARTED",
        "NETWORKS",
    ] {
        assert!(lines[0].contains(col), "{table}");
    }
    assert!(lines[1].starts_with(exited.short()), "{table}");
    assert!(lines[1].contains("exited") && lines[1].contains("example.com/job"));
    assert!(lines[1].contains("host"), "{table}");
    assert!(lines[2].starts_with(running.short()) && lines[2].contains("running"));
    assert!(lines[3].starts_with(prepared.short()) && lines[3].contains("prepared"));
    assert!(lines[3].contains("web") && lines[4].contains("db"));
    assert!(
        !lines[3].contains("host"),
        "no network before it ran: {table}"
    );
    // The second app's line has only its own columns.
    assert!(lines[4].starts_with(' ') && !lines[4].contains("prepared"));
    assert!(lines[3].contains("minute ago") || lines[3].contains("seconds ago"));
    assert!(!table.contains(&exited.uuid), "short UUIDs only: {table}");

    let full = ok(env.berth().args(["list", "--full", "--no-legend"]));
    assert!(!full.contains("UUID"), "{full}");
    assert!(full.contains(&running.uuid), "{full}");
    assert!(
        full.contains(&format!("sha512-{}", "ab".repeat(6))),
        "{full}"
    );
    assert!(full.contains(" UTC"), "{full}");

    let json = ok(env.berth().args(["list", "--format=json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["uuid"], exited.uuid.as_str());
    assert_eq!(arr[1]["state"], "running");
    assert_eq!(arr[2]["apps"][1]["name"], "db");
    assert_eq!(arr[0]["networks"], serde_json::json!(["host"]));
    assert!(arr[0]["created"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn uuid_prefixes_unique_ambiguous_and_unknown() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    for u in [
        "abcdef01-0000-4000-8000-000000000001",
        "abcdef01-0000-4000-8000-000000000002",
    ] {
        let d = pods.root().join("prepared").join(u);
        fs::create_dir(&d).unwrap();
        fs::write(
            d.join(layout::POD_MANIFEST),
            format!("{{\"uuid\":\"{u}\"}}"),
        )
        .unwrap();
    }
    let err = fails(env.berth().args(["status", "abcd"]), "matches several pods");
    assert!(
        err.contains("abcdef01-0000-4000-8000-000000000002"),
        "{err}"
    );
    fails(env.berth().args(["cat-manifest", "ffff"]), "no pod matches");
    fails(env.berth().args(["status", ""]), "UUID");
    let out = ok(env
        .berth()
        .args(["cat-manifest", "abcdef01-0000-4000-8000-000000000002"]));
    assert!(out.contains("000000000002"), "{out}");
    let st = ok(env
        .berth()
        .args(["status", "ABCDEF01-0000-4000-8000-000000000001"]));
    assert!(st.starts_with("state=prepared\n"), "{st}");
}

// ---------------------------------------------------------------------------
// status

#[test]
fn status_reports_state_times_exit_codes_and_restarts() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["web", "worker"], now_ms() - 5000);
    pod.move_to_run(&pods);
    set_status(&pod, "web", exited_status(0, 0));
    set_status(&pod, "worker", exited_status(42, 3));
    fs::write(pod.dir.join(layout::EXIT), "42\n").unwrap();

    let text = ok(env.berth().args(["status", pod.short()]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "state=exited", "{text}");
    assert!(lines[1].starts_with("created=") && lines[1].ends_with(" UTC"));
    assert!(lines[2].starts_with("started="));
    for want in [
        "networks=host",
        "exited=true",
        "app-web=0",
        "app-worker=42",
        "restarts-web=0",
        "restarts-worker=3",
    ] {
        assert!(lines.contains(&want), "{want} missing: {text}");
    }
    assert!(!text.contains("pid="), "no pid for an exited pod: {text}");

    let json = ok(env.berth().args(["status", "--format=json", &pod.uuid]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["state"], "exited");
    assert_eq!(v["exitCode"], 42);
    assert_eq!(v["apps"][1]["exitCode"], 42);
    assert_eq!(v["apps"][1]["restarts"], 3);

    // A running pod shows its PID 1 and no exit.
    let mut live = make_pod(&env, &["srv"], now_ms());
    live.run(&pods);
    let pid1 = fs::read_to_string(live.dir.join(layout::PID)).unwrap();
    let text = ok(env.berth().args(["status", live.short()]));
    assert!(text.contains("state=running\n"), "{text}");
    assert!(text.contains(&format!("pid={}\n", pid1.trim())), "{text}");
    assert!(text.contains("exited=false\n"), "{text}");
}

#[test]
fn status_wait_times_out_then_returns_when_the_pod_exits() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["srv"], now_ms());
    pod.run(&pods);

    let start = Instant::now();
    fails(
        env.berth().args(["status", "--wait=300ms", pod.short()]),
        "timed out",
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    let mut waiter = env.berth();
    waiter
        .args(["status", "--wait", pod.short()])
        .stdout(Stdio::piped());
    let waiting = waiter.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let killed_at = Instant::now();
    pod.kill_holder();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        killed_at.elapsed() < Duration::from_secs(2),
        "--wait woke late"
    );
    assert!(
        stdout(&out).starts_with("state=exited\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn status_wait_ready_times_out_succeeds_and_fails_when_the_pod_dies() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["srv"], now_ms());
    pod.run(&pods);
    fails(
        env.berth()
            .args(["status", "--wait-ready=200ms", pod.short()]),
        "timed out",
    );
    let ready = pod.dir.join(layout::READY);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        fs::write(ready, "").unwrap();
    });
    let out = ok(env
        .berth()
        .args(["status", "--wait-ready=10s", pod.short()]));
    writer.join().unwrap();
    assert!(out.contains("state=running"), "{out}");

    let mut dying = make_pod(&env, &["srv"], now_ms());
    dying.run(&pods);
    let mut waiter = env.berth();
    waiter
        .args(["status", "--wait-ready", dying.short()])
        .stderr(Stdio::piped());
    let waiting = waiter.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    dying.kill_holder();
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(254));
    assert!(stderr(&out).contains("never ready"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// stop

#[test]
fn stop_signals_only_the_live_recorded_supervisor() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["srv"], now_ms());
    pod.run(&pods);
    let supervisor = fs::read_to_string(pod.dir.join(layout::PPID)).unwrap();

    // A stranger's PID in ppid (as after a PID reuse) is never signalled.
    let stranger = Group::spawn(Command::new("sleep").arg("1000"));
    fs::write(pod.dir.join(layout::PPID), format!("{}\n", stranger.pid())).unwrap();
    fails(
        env.berth().args(["stop", pod.short()]),
        "is not the pod's supervisor",
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(stranger.pid()), "the stranger was signalled");

    fs::write(pod.dir.join(layout::PPID), &supervisor).unwrap();
    let out = ok(env.berth().args(["stop", pod.short()]));
    assert_eq!(out, format!("\"{}\"\n", pod.uuid));
    let mut holder = pod.holder.take().unwrap();
    let status = holder.0.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");
    drop(holder);
    let out = ok(env.berth().args(["stop", pod.short()]));
    assert_eq!(out, format!("pod \"{}\" is already stopped\n", pod.uuid));

    // --force kills PID 1 and the supervisor with SIGKILL.
    let mut forced = make_pod(&env, &["srv"], now_ms());
    forced.run(&pods);
    let pid1: i32 = fs::read_to_string(forced.dir.join(layout::PID))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    ok(env.berth().args(["stop", "--force", forced.short()]));
    let mut holder = forced.holder.take().unwrap();
    // Killed itself, or (flock) ended first because its child was: 128 + 9.
    let status = holder.0.wait().unwrap();
    assert!(
        status.signal() == Some(9) || status.code() == Some(137),
        "{status:?}"
    );
    wait_for(|| !alive(pid1));
    drop(holder);

    // A prepared pod is not running.
    let prepared = make_pod(&env, &["srv"], now_ms());
    let out = ok(env.berth().args(["stop", prepared.short()]));
    assert!(out.contains("is prepared, not running"), "{out}");
}

// ---------------------------------------------------------------------------
// logs

#[test]
fn logs_print_rotated_parts_with_prefixes() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["a", "b"], now_ms());
    pod.move_to_run(&pods);
    fs::write(pod.app("a").log_old(), "one\n").unwrap();
    fs::write(pod.app("a").log(), "two\nthree").unwrap();
    fs::write(pod.app("b").log(), "b1\n").unwrap();
    let out = ok(env.berth().args(["logs", pod.short()]));
    assert_eq!(out, "a: one\na: two\na: three\nb: b1\n");
    let out = ok(env.berth().args(["logs", "--app=a", pod.short()]));
    assert_eq!(out, "one\ntwo\nthree");
    let out = ok(env.berth().args(["logs", "--no-prefix", pod.short()]));
    assert_eq!(out, "one\ntwo\nthreeb1\n");
    fails(
        env.berth().args(["logs", "--app=c", pod.short()]),
        "has no app \"c\" (its apps: a, b)",
    );
}

#[test]
fn logs_follow_through_a_rotation_until_the_pod_exits() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["srv"], now_ms());
    pod.run(&pods);
    let log = pod.app("srv").log();
    fs::write(&log, "first\n").unwrap();
    let mut cmd = env.berth();
    cmd.args(["logs", "--follow", pod.short()])
        .stdout(Stdio::piped());
    let follower = cmd.spawn().unwrap();
    let append = |s: &str| {
        use std::io::Write;
        fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    };
    std::thread::sleep(Duration::from_millis(300));
    append("second\n");
    std::thread::sleep(Duration::from_millis(300));
    // Rotation as stage1 does it: the log becomes log.1, a new log starts.
    append("third\n");
    fs::rename(&log, pod.app("srv").log_old()).unwrap();
    fs::write(&log, "fourth\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append("fifth\n");
    pod.kill_holder();
    let start = Instant::now();
    let out = follower.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "follow did not end"
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out), "first\nsecond\nthird\nfourth\nfifth\n");
}

// ---------------------------------------------------------------------------
// rm and gc

#[test]
fn rm_refuses_running_pods_and_removes_exited_and_prepared_ones() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut running = make_pod(&env, &["srv"], now_ms());
    running.run(&pods);
    fails(
        env.berth().args(["rm", running.short()]),
        "is running: stop it first",
    );
    assert!(running.dir.exists());

    let mut exited = make_pod(&env, &["srv"], now_ms());
    exited.move_to_run(&pods);
    let prepared = make_pod(&env, &["srv"], now_ms());
    let out = ok(env.berth().args(["rm", exited.short(), prepared.short()]));
    assert_eq!(out, format!("\"{}\"\n\"{}\"\n", exited.uuid, prepared.uuid));
    assert!(!exited.dir.exists() && !prepared.dir.exists());
    for d in ["run", "prepared", "garbage", "exited-garbage"] {
        let left: Vec<_> = fs::read_dir(pods.root().join(d))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| *n != *running.uuid.as_str())
            .collect();
        assert!(left.is_empty(), "{d}: {left:?}");
    }
    fails(env.berth().args(["rm", exited.short()]), "no pod matches");
}

#[test]
fn gc_marks_then_deletes_after_the_grace_period_and_expires_prepared_pods() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut exited = make_pod(&env, &["srv"], now_ms());
    exited.move_to_run(&pods);
    let prepared = make_pod(&env, &["srv"], now_ms());
    let mut running = make_pod(&env, &["srv"], now_ms());
    running.run(&pods);
    // An aborted prepare: in prepare/, nobody holds it.
    let mut aborted = pods.create().unwrap();
    pods.begin_prepare(&mut aborted).unwrap();
    let aborted_uuid = aborted.uuid.clone();
    drop(aborted);

    // Embryos: one abandoned two minutes ago, one just being created.
    let old_embryo = pods
        .root()
        .join("embryo/0bd0bd00-0000-4000-8000-000000000001");
    let new_embryo = pods
        .root()
        .join("embryo/0bd0bd00-0000-4000-8000-000000000002");
    fs::create_dir(&old_embryo).unwrap();
    fs::create_dir(&new_embryo).unwrap();
    ok(Command::new("touch")
        .args(["-d", "2 minutes ago"])
        .arg(&old_embryo));

    let out = ok(env.berth().args(["gc", "--mark-only", "--grace-period=0s"]));
    assert!(
        out.contains("marked 0bd0bd00-0000-4000-8000-000000000001 as garbage (abandoned embryo)"),
        "{out}"
    );
    assert!(
        !out.contains("000000000002"),
        "a fresh embryo is kept: {out}"
    );
    assert!(new_embryo.is_dir());
    assert!(
        out.contains(&format!("marked {} as garbage (exited)", exited.uuid)),
        "{out}"
    );
    assert!(out.contains(&aborted_uuid), "{out}");
    assert!(!out.contains("removed"), "{out}");
    assert!(pods
        .root()
        .join("exited-garbage")
        .join(&exited.uuid)
        .is_dir());

    let out = ok(env.berth().args(["gc", "--grace-period=1h"]));
    assert!(!out.contains("removed"), "within the grace period: {out}");
    assert!(pods.root().join("prepared").join(&prepared.uuid).is_dir());

    let out = ok(env.berth().args(["gc", "--grace-period=0s"]));
    assert!(out.contains(&format!("removed {}", exited.uuid)), "{out}");
    assert!(out.contains(&format!("removed {aborted_uuid}")), "{out}");
    assert!(!out.contains(&prepared.uuid), "not expired yet: {out}");
    assert!(!out.contains(&running.uuid), "{out}");

    let out = ok(env
        .berth()
        .args(["gc", "--expire-prepared=0s", "--grace-period=0s"]));
    assert!(out.contains("prepared pod expired"), "{out}");
    assert!(out.contains(&format!("removed {}", prepared.uuid)), "{out}");
    assert!(running.dir.is_dir(), "a running pod is never collected");
    let st = ok(env.berth().args(["status", running.short()]));
    assert!(st.starts_with("state=running"), "{st}");
}

#[test]
fn gc_cleans_a_killed_pod_and_unmounts_what_was_left_under_it() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["srv"], now_ms());
    pod.run(&pods);
    // A mount left under the pod on the host (a bind of a directory whose
    // content must survive the pod's deletion).
    let source = env.work().join("precious");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("keep"), "keep").unwrap();
    let target = pod.app("srv").rootfs();
    assert!(run(Command::new("mount")
        .arg("--bind")
        .arg(&source)
        .arg(&target))
    .status
    .success());
    let _guard = MountGuard(target.clone());
    assert!(mountinfo_mentions(&pod.uuid));

    fails(env.berth().args(["rm", pod.short()]), "stop it first");
    pod.kill_holder(); // kill -9 of `berth run`
    let st = ok(env.berth().args(["status", pod.short()]));
    assert!(st.starts_with("state=exited"), "{st}");
    let out = ok(env.berth().args(["gc", "--grace-period=0s"]));
    assert!(out.contains(&format!("removed {}", pod.uuid)), "{out}");
    assert!(!mountinfo_mentions(&pod.uuid), "a mount was left behind");
    assert_eq!(fs::read_to_string(source.join("keep")).unwrap(), "keep");
    let left = ok(env.berth().args(["list", "--no-legend"]));
    assert!(left.trim().is_empty(), "{left}");
}

// ---------------------------------------------------------------------------
// cat-manifest

#[test]
fn cat_manifest_prints_the_pod_manifest_as_stored_or_pretty() {
    let env = Env::new();
    let pod = make_pod(&env, &["web"], now_ms());
    let stored = fs::read_to_string(pod.dir.join(layout::POD_MANIFEST)).unwrap();
    let out = ok(env
        .berth()
        .args(["cat-manifest", "--pretty-print=false", pod.short()]));
    assert_eq!(out.trim_end(), stored);
    let pretty = ok(env
        .berth()
        .args(["cat-manifest", "--pretty-print", pod.short()]));
    assert!(
        pretty.contains("\n  \"acKind\": \"PodManifest\""),
        "{pretty}"
    );
    let a: serde_json::Value = serde_json::from_str(&pretty).unwrap();
    let b: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(a, b);
}

// ---------------------------------------------------------------------------
// export

fn mknod_whiteout(p: &Path) {
    assert!(run(Command::new("mknod").arg(p).args(["c", "0", "0"]))
        .status
        .success());
}

fn tar_list(aci: &Path) -> Vec<String> {
    let out = ok(Command::new("tar").arg("-tzf").arg(aci));
    out.lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn export_builds_a_valid_aci_from_the_overlay_layers_of_an_exited_app() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["app"], now_ms());
    // The store tree: busybox and a few files.
    let layout_dir = busybox_layout(&env.work(), "img", BUSYBOX_MANIFEST);
    let tree = layout_dir.join("rootfs");
    fs::write(tree.join("etc/gone"), "deleted by the app").unwrap();
    fs::create_dir_all(tree.join("var/cache/old")).unwrap();
    fs::write(tree.join("var/cache/old/x"), "hidden by an opaque dir").unwrap();
    let mut plan = PodPlan::load(&pod.dir).unwrap();
    plan.apps[0].tree = tree.clone();
    plan.save(&pod.dir).unwrap();
    // What the app did, as overlayfs recorded it in the upper dir.
    let upper = pod.app("app").upper();
    fs::create_dir_all(upper.join("etc")).unwrap();
    mknod_whiteout(&upper.join("etc/gone"));
    fs::create_dir_all(upper.join("data")).unwrap();
    fs::write(upper.join("data/test.txt"), "ThisIsATest").unwrap();
    fs::create_dir_all(upper.join("var/cache")).unwrap();
    rustix::fs::lsetxattr(
        upper.join("var/cache"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::write(upper.join("var/cache/new"), "new").unwrap();
    fs::create_dir_all(pod.app("app").work()).unwrap();

    let out_aci = env.work().join("out.aci");
    fails(
        env.berth()
            .args(["export", pod.short()])
            .arg(env.work().join("out.tar")),
        "does not end in \".aci\"",
    );
    fails(
        env.berth().args(["export", pod.short()]).arg(&out_aci),
        "only a pod that has run and exited",
    );
    pod.run(&pods);
    fails(
        env.berth().args(["export", pod.short()]).arg(&out_aci),
        "is running",
    );
    pod.kill_holder();

    let id = ok(env.berth().args(["export", pod.short()]).arg(&out_aci));
    assert!(id.starts_with("sha512-"), "{id}");
    let valid = run(Command::new(tool("actool")).arg("validate").arg(&out_aci));
    assert!(
        valid.status.success(),
        "actool: {}{}",
        stdout(&valid),
        stderr(&valid)
    );
    let names = tar_list(&out_aci);
    for want in [
        "manifest",
        "rootfs/bin/busybox",
        "rootfs/data/test.txt",
        "rootfs/etc/passwd",
        "rootfs/var/cache/new",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    for gone in ["rootfs/etc/gone", "rootfs/var/cache/old"] {
        assert!(
            !names.iter().any(|n| n == gone),
            "{gone} exported: {names:?}"
        );
    }
    let x = env.work().join("x");
    fs::create_dir(&x).unwrap();
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(&out_aci)
        .arg("-C")
        .arg(&x));
    assert_eq!(
        fs::read_to_string(x.join("rootfs/data/test.txt")).unwrap(),
        "ThisIsATest"
    );
    assert_eq!(
        fs::read(x.join("rootfs/bin/busybox")).unwrap(),
        fs::read(tool("busybox")).unwrap()
    );
    // Nothing left behind: no mount (it lived in a private namespace), no
    // staging directory; the pod is unchanged.
    assert!(!mountinfo_mentions(&pod.uuid));
    let entries: Vec<String> = fs::read_dir(&pod.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !entries.iter().any(|e| e.starts_with("export")),
        "{entries:?}"
    );
    let st = ok(env.berth().args(["status", pod.short()]));
    assert!(st.starts_with("state=exited"), "{st}");

    // --overwrite is needed to replace it.
    fails(
        env.berth().args(["export", pod.short()]).arg(&out_aci),
        "exists",
    );
    let again = ok(env
        .berth()
        .args(["export", "--overwrite", "--app=app", pod.short()])
        .arg(&out_aci));
    assert!(again.starts_with("sha512-"));
}

#[test]
fn export_of_a_copied_rootfs_without_overlay() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["app"], now_ms());
    pod.move_to_run(&pods);
    // No upper dir: the app ran in a copy, which is its filesystem.
    let rootfs = pod.app("app").rootfs();
    let layout_dir = busybox_layout(&env.work(), "img", BUSYBOX_MANIFEST);
    ok(Command::new("cp")
        .arg("-a")
        .arg(layout_dir.join("rootfs/."))
        .arg(&rootfs));
    fs::write(rootfs.join("written"), "by the app").unwrap();
    let out_aci = env.work().join("copy.aci");
    ok(env.berth().args(["export", pod.short()]).arg(&out_aci));
    let valid = run(Command::new(tool("actool")).arg("validate").arg(&out_aci));
    assert!(valid.status.success(), "{}", stderr(&valid));
    let names = tar_list(&out_aci);
    assert!(names.iter().any(|n| n == "rootfs/written"), "{names:?}");
    // The bind mount was read-only and is gone; the copy is intact.
    assert!(!mountinfo_mentions(&pod.uuid));
    assert_eq!(
        fs::read_to_string(rootfs.join("written")).unwrap(),
        "by the app"
    );
}

// ---------------------------------------------------------------------------
// enter (into an app started by hand in its own namespaces)

/// A cgroup of the test's own (the pids hierarchy on cgroup v1, the
/// unified one on v2), removed when dropped once its processes are gone.
struct TestCgroup {
    dir: PathBuf,
    name: String,
}

impl TestCgroup {
    fn new(tag: &str) -> TestCgroup {
        let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/pids"
        };
        let name = format!("berth-test-{tag}");
        let dir = Path::new(base).join(&name);
        fs::create_dir(&dir).unwrap();
        TestCgroup { dir, name }
    }
    fn procs(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
    fn add(&self, pid: i32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let start = Instant::now();
        while fs::remove_dir(&self.dir).is_err() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn enter_runs_a_command_in_the_running_apps_namespaces_root_and_env() {
    let env = Env::new();
    let pods = Pods::open(&env.store()).unwrap();
    let mut pod = make_pod(&env, &["one", "two"], now_ms());
    let layout_dir = busybox_layout(&env.work(), "img", BUSYBOX_MANIFEST);
    let root = layout_dir.join("rootfs");
    for applet in ["hostname", "id", "pwd", "sleep", "env"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::create_dir_all(root.join("srv/work")).unwrap();
    fs::write(root.join("marker"), "inside the app").unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();
    pod.run(&pods);
    // Dropped after the app (declared before it): the cgroup empties first.
    let cgroup = TestCgroup::new(&pod.uuid[..8]);
    // The "app": PID 1 of new pid/mount/uts/ipc namespaces, chrooted to
    // the rootfs, in /srv/work, as uid 1000, with its own environment.
    let script = format!(
        "mount -t proc proc {root}/proc && hostname app-host && \
         exec chroot --userspec=1000:1000 {root} /bin/sh -c 'cd /srv/work && exec sleep 1000'",
        root = root.display()
    );
    let app = Group::spawn(
        Command::new(tool("unshare"))
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--uts",
                "--ipc",
                "--propagation",
                "private",
            ])
            .args([
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "APP_VAR=from-the-app",
                "sh",
                "-c",
                &script,
            ]),
    );
    let pid1 = app.child_pid();
    wait_for(|| {
        fs::read_link(format!("/proc/{pid1}/root")).is_ok_and(|r| r == root)
            && fs::read_link(format!("/proc/{pid1}/cwd")).is_ok_and(|c| c.ends_with("srv/work"))
    });
    cgroup.add(pid1);
    fs::write(pod.dir.join(layout::PID), format!("{pid1}\n")).unwrap();
    set_status(
        &pod,
        "one",
        AppStatus {
            pid: Some(pid1),
            started_ms: Some(now_ms()),
            running: true,
            ..AppStatus::default()
        },
    );
    set_status(&pod, "two", exited_status(3, 0));

    fails(
        env.berth().args(["enter", pod.short(), "/bin/true"]),
        "has several apps (one, two): choose one with --app=NAME",
    );
    fails(
        env.berth()
            .args(["enter", "--app=two", pod.short(), "/bin/true"]),
        "app two is not running (it exited with 3)",
    );
    let out = ok(env.berth().args([
        "enter",
        "--app=one",
        pod.short(),
        "sh",
        "-c",
        "cat /marker; echo; hostname; id -u; pwd; echo $APP_VAR; echo $$; cat /proc/self/cgroup",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "inside the app", "{out}");
    assert_eq!(lines[1], "app-host", "{out}");
    assert_eq!(lines[2], "1000", "{out}");
    assert_eq!(lines[3], "/srv/work", "{out}");
    assert_eq!(lines[4], "from-the-app", "{out}");
    let pid_inside: u32 = lines[5].parse().unwrap();
    assert!(pid_inside < 10, "not in the pod's PID namespace: {out}");
    assert!(out.contains(&cgroup.name), "not in the app's cgroup: {out}");
    // While a command runs, it is in the app's cgroup and the waiting
    // berth is not.
    let mut cmd = env.berth();
    cmd.args(["enter", "--app=one", pod.short(), "sleep", "2"]);
    let waiting = Group::spawn(&mut cmd);
    let comm = |p: &i32| fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    wait_for(|| {
        let procs = cgroup.procs();
        procs.len() == 2 && procs.iter().any(|p| comm(p) == "sleep\n" && *p != pid1)
    });
    let procs = cgroup.procs();
    assert!(procs.contains(&pid1), "{procs:?}");
    assert!(
        !procs.contains(&waiting.pid()),
        "berth stayed in the cgroup"
    );
    drop(waiting);
    // The command's exit status is berth's.
    let st = run(env
        .berth()
        .args(["enter", "--app=one", pod.short(), "sh", "-c", "exit 42"]));
    assert_eq!(st.status.code(), Some(42), "{}", stderr(&st));
    drop(app);
    pod.kill_holder();
    fails(
        env.berth().args(["enter", "--app=one", pod.short()]),
        "only a running pod can be entered",
    );
}

// ---------------------------------------------------------------------------
// End to end, with pods started by `berth run`

/// A busybox image `example.com/<name>:1.0` running `script`, in the store.
fn e2e_image(env: &Env, name: &str, script: &str) -> String {
    let manifest = serde_json::json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": format!("example.com/{name}"),
        "labels": [
            {"name": "version", "value": "1.0"},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": "amd64"},
        ],
        "app": {
            "exec": ["/bin/sh", "-c", script],
            "user": "0",
            "group": "0",
            "environment": [{"name": "APP_VAR", "value": "from-the-image"}],
        },
    });
    let layout = busybox_layout(&env.work(), name, &manifest.to_string());
    for applet in ["mkdir", "sleep", "hostname", "rm"] {
        std::os::unix::fs::symlink("busybox", layout.join("rootfs/bin").join(applet)).unwrap();
    }
    fs::write(layout.join("rootfs/etc/motd"), "deleted by the app").unwrap();
    let aci = env.work().join(format!("{name}.aci"));
    ok(env.berth().args(["image", "build"]).arg(&layout).arg(&aci));
    ok(env
        .berth()
        .arg("--insecure-options=image")
        .arg("fetch")
        .arg(&aci));
    format!("example.com/{name}:1.0")
}

#[test]
fn e2e_run_then_list_status_logs_export_and_gc() {
    let env = Env::new();
    let img = e2e_image(
        &env,
        "writer",
        "echo hello from the app; mkdir -p /data; echo ThisIsATest > /data/test.txt; \
         rm /etc/motd; exit 3",
    );
    let uuid_file = env.work().join("uuid");
    let out = run(env
        .berth()
        .arg("run")
        .arg(format!("--uuid-file-save={}", uuid_file.display()))
        .arg(&img)
        .stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let uuid = fs::read_to_string(&uuid_file).unwrap().trim().to_string();

    let list = ok(env.berth().args(["list", "--no-legend"]));
    assert!(list.starts_with(&uuid[..8]), "{list}");
    assert!(list.contains("writer") && list.contains("example.com/writer"));
    assert!(list.contains("exited") && list.contains("host"), "{list}");

    let st = ok(env.berth().args(["status", &uuid[..8]]));
    assert!(st.starts_with("state=exited\n"), "{st}");
    assert!(st.contains("\napp-writer=3\n"), "{st}");
    assert!(st.contains("\nexited=true\n"), "{st}");

    let logs = ok(env.berth().args(["logs", &uuid]));
    assert_eq!(logs, "hello from the app\n");

    let man = ok(env.berth().args(["cat-manifest", &uuid]));
    assert!(man.contains("example.com/writer"), "{man}");

    let aci = env.work().join("exported.aci");
    let id = ok(env.berth().args(["export", &uuid]).arg(&aci));
    assert!(id.starts_with("sha512-"), "{id}");
    let valid = run(Command::new(tool("actool")).arg("validate").arg(&aci));
    assert!(
        valid.status.success(),
        "{}{}",
        stdout(&valid),
        stderr(&valid)
    );
    let x = env.work().join("x");
    fs::create_dir(&x).unwrap();
    ok(Command::new("tar").arg("-xzf").arg(&aci).arg("-C").arg(&x));
    assert_eq!(
        fs::read_to_string(x.join("rootfs/data/test.txt")).unwrap(),
        "ThisIsATest\n"
    );
    assert!(x.join("rootfs/bin/busybox").is_file());
    assert!(
        fs::symlink_metadata(x.join("rootfs/etc/motd")).is_err(),
        "a file the app deleted was exported"
    );
    // The exported image runs, with the app's file in it.
    let exported = ok(env
        .berth()
        .arg("--insecure-options=image")
        .arg("fetch")
        .arg(&aci));
    let out = ok(env
        .berth()
        .args([
            "run",
            exported.trim(),
            "--exec",
            "/bin/cat",
            "--",
            "/data/test.txt",
            "---",
        ])
        .stdin(Stdio::null()));
    assert_eq!(out, "ThisIsATest\n");

    let out = ok(env.berth().args(["gc", "--grace-period=0s"]));
    assert!(out.contains(&format!("removed {uuid}")), "{out}");
    assert!(!mountinfo_mentions(&uuid));
    assert!(ok(env.berth().args(["list", "--no-legend"]))
        .trim()
        .is_empty());
}

#[test]
fn e2e_enter_a_running_pod_then_stop_it() {
    let env = Env::new();
    let img = e2e_image(
        &env,
        "server",
        "mkdir -p /srv && cd /srv && echo serving && exec sleep 1000",
    );
    let uuid_file = env.work().join("uuid");
    let mut cmd = env.berth();
    cmd.arg("run")
        .arg(format!("--uuid-file-save={}", uuid_file.display()))
        .arg(&img)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Killing this group on failure kills the supervisor; the pod's PID 1
    // dies with it (and the kernel takes the rest of the pod).
    let mut pod = Group::spawn(&mut cmd);
    wait_for(|| fs::read_to_string(&uuid_file).is_ok_and(|u| u.trim().len() == 36));
    let uuid = fs::read_to_string(&uuid_file).unwrap().trim().to_string();
    let st = ok(env.berth().args(["status", "--wait-ready=20s", &uuid]));
    assert!(st.starts_with("state=running\n"), "{st}");
    assert!(st.contains("\npid="), "{st}");

    // The supervisor is the `berth run` process itself.
    let ppid =
        fs::read_to_string(env.store().join("pods/run").join(&uuid).join(layout::PPID)).unwrap();
    assert_eq!(ppid.trim(), pod.pid().to_string());

    // Ready means started; the script has changed directory once it spoke.
    wait_for(|| ok(env.berth().args(["logs", &uuid])) == "serving\n");
    let out = ok(env.berth().args([
        "enter",
        &uuid[..8],
        "/bin/sh",
        "-c",
        "echo $APP_VAR; pwd; hostname; echo $$; test -f /bin/busybox && echo rooted",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-the-image", "{out}");
    assert_eq!(lines[1], "/srv", "{out}");
    assert!(lines[2].contains(&uuid[..8]), "pod hostname: {out}");
    let pid: u32 = lines[3].parse().unwrap();
    assert!(pid < 100, "not in the pod's PID namespace: {out}");
    assert_eq!(lines[4], "rooted", "{out}");
    let code = run(env.berth().args(["enter", &uuid, "sh", "-c", "exit 7"]));
    assert_eq!(code.status.code(), Some(7));

    let logs = ok(env.berth().args(["logs", &uuid]));
    assert_eq!(logs, "serving\n");

    assert_eq!(
        ok(env.berth().args(["stop", &uuid])),
        format!("\"{uuid}\"\n")
    );
    let st = ok(env.berth().args(["status", "--wait=20s", &uuid]));
    assert!(st.starts_with("state=exited\n"), "{st}");
    assert!(
        st.contains("\napp-server=143\n"),
        "stopped by SIGTERM: {st}"
    );
    let status = pod.0.wait().unwrap();
    assert!(
        status.code().is_some(),
        "berth run ended by itself: {status:?}"
    );
    assert_eq!(
        ok(env.berth().args(["stop", &uuid])),
        format!("pod \"{uuid}\" is already stopped\n")
    );
    fails(
        env.berth().args(["enter", &uuid]),
        "only a running pod can be entered",
    );
}

#[test]
fn e2e_gc_collects_a_pod_whose_berth_run_was_killed() {
    let env = Env::new();
    let img = e2e_image(&env, "victim", "echo up && exec sleep 1000");
    let uuid_file = env.work().join("uuid");
    let mut cmd = env.berth();
    cmd.arg("run")
        .arg(format!("--uuid-file-save={}", uuid_file.display()))
        .arg(&img)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut pod = Group::spawn(&mut cmd);
    wait_for(|| fs::read_to_string(&uuid_file).is_ok_and(|u| u.trim().len() == 36));
    let uuid = fs::read_to_string(&uuid_file).unwrap().trim().to_string();
    ok(env.berth().args(["status", "--wait-ready=20s", &uuid]));
    let dir = env.store().join("pods/run").join(&uuid);
    let pid1: i32 = fs::read_to_string(dir.join(layout::PID))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let app_pid = AppStatus::load(&AppDir::new(&dir, "victim").status())
        .unwrap()
        .unwrap()
        .pid
        .unwrap();

    // kill -9 of `berth run` alone: no chance to clean up anything.
    ok(Command::new("kill").args(["-KILL", &pod.pid().to_string()]));
    assert_eq!(pod.0.wait().unwrap().signal(), Some(9));
    // The pod dies with its supervisor, and becomes exited by itself.
    wait_for(|| !alive(pid1) && !alive(app_pid));
    let st = ok(env.berth().args(["status", "--wait=10s", &uuid]));
    assert!(st.starts_with("state=exited\n"), "{st}");

    let out = ok(env.berth().args(["gc", "--grace-period=0s"]));
    assert!(
        out.contains(&format!("marked {uuid} as garbage (exited)")),
        "{out}"
    );
    assert!(out.contains(&format!("removed {uuid}")), "{out}");
    assert!(!mountinfo_mentions(&uuid), "a mount was left behind");
    for state in ["run", "exited-garbage", "garbage"] {
        let left = fs::read_dir(env.store().join("pods").join(state))
            .unwrap()
            .count();
        assert_eq!(left, 0, "something left in {state}");
    }
}
