//! `berth run`, `berth prepare`, `berth run-prepared` end to end: real
//! images built from busybox-static and the static probe, run as real pods
//! (namespaces, overlay, mounts), checked by what the apps see and do.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An image manifest named `example.com/<name>` with the given `app` JSON.
fn manifest(name: &str, app: &str) -> String {
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/{name}",
        "labels":[{{"name":"version","value":"1.0"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}],
        "app":{app}}}"#
    )
}

/// Build an image (busybox, the probe at /probe, `extra` adds files),
/// fetch it into the env's store, return its name with version.
fn image(env: &Env, name: &str, app: &str, extra: impl Fn(&Path)) -> String {
    let layout = busybox_layout(&env.work(), name, &manifest(name, app));
    let rootfs = layout.join("rootfs");
    for applet in [
        "sleep", "test", "[", "touch", "mkdir", "id", "env", "kill", "grep",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
    }
    fs::create_dir_all(rootfs.join("tmp")).unwrap();
    fs::copy(probe(), rootfs.join("probe")).unwrap();
    extra(&rootfs);
    let aci = env.work().join(format!("{name}.aci"));
    let out = run(env.berth().args(["image", "build"]).arg(&layout).arg(&aci));
    assert!(out.status.success(), "build: {}", stderr(&out));
    let out = run(env
        .berth()
        .arg("--insecure-options=image")
        .arg("fetch")
        .arg(&aci));
    assert!(out.status.success(), "fetch: {}", stderr(&out));
    format!("example.com/{name}:1.0")
}

const SH_APP: &str = r#"{"exec":["/bin/sh","-c","exit 0"],"user":"0","group":"0"}"#;
const PROBE_APP: &str = r#"{"exec":["/probe"],"user":"0","group":"0",
    "environment":[{"name":"FOO","value":"image"},{"name":"BAR","value":"image"}]}"#;

fn berth_run(env: &Env, args: &[&str]) -> Output {
    run(env.berth().arg("run").args(args).stdin(Stdio::null()))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The probe's JSON report in the output (the line that parses).
fn report(out: &Output) -> Value {
    stdout(out)
        .lines()
        .find_map(|l| {
            let l = l
                .split_once(": {")
                .map(|(_, r)| format!("{{{r}"))
                .unwrap_or(l.to_string());
            serde_json::from_str::<Value>(&l).ok()
        })
        .unwrap_or_else(|| panic!("no probe report in {:?} / {}", stdout(out), stderr(out)))
}

fn env_of(r: &Value, k: &str) -> Option<String> {
    r["env"][k].as_str().map(String::from)
}

/// Pods left in a state directory.
fn pods_in(env: &Env, state: &str) -> Vec<PathBuf> {
    match fs::read_dir(env.store().join("pods").join(state)) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Mount points (as the host sees them) under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let canon = fs::canonicalize(dir).unwrap_or(dir.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| Path::new(p).starts_with(&canon))
        .collect()
}

#[test]
fn the_apps_exit_code_is_berth_runs_exit_code() {
    let env = Env::new();
    let img = image(&env, "codes", SH_APP, |_| {});
    for (script, want) in [
        ("exit 0", 0),
        ("exit 1", 1),
        ("exit 42", 42),
        ("kill -9 $$", 128 + 9),
    ] {
        let o = berth_run(
            &env,
            &[&img, "--exec", "/bin/sh", "--", "-c", script, "---"],
        );
        assert_eq!(code(&o), want, "{script}: {}", stderr(&o));
    }
    // Nothing is mounted on the host once the pods are over.
    assert_eq!(mounts_under(&env.store()), Vec::<String>::new());
}

#[test]
fn the_executor_environment_follows_the_precedence_rules() {
    let env = Env::new();
    let img = image(&env, "envp", PROBE_APP, |_| {});
    let envfile = env.work().join("env.list");
    fs::write(&envfile, "# comment\nBAR=file\nBAZ=file\n\n").unwrap();
    let o = run(env
        .berth()
        .env("HOSTONLY", "host")
        .env("FOO", "host")
        .args(["run", "--inherit-env", "--set-env-file"])
        .arg(&envfile)
        .args(["--set-env=BAZ=flag", &img, "--set-env", "APPONLY=yes"])
        .stdin(Stdio::null()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = report(&o);
    assert_eq!(env_of(&r, "HOSTONLY").as_deref(), Some("host"), "inherited");
    assert_eq!(
        env_of(&r, "FOO").as_deref(),
        Some("image"),
        "image over host"
    );
    assert_eq!(
        env_of(&r, "BAR").as_deref(),
        Some("file"),
        "file over image"
    );
    assert_eq!(env_of(&r, "BAZ").as_deref(), Some("flag"), "flag over file");
    assert_eq!(env_of(&r, "APPONLY").as_deref(), Some("yes"));
    assert_eq!(env_of(&r, "AC_APP_NAME").as_deref(), Some("envp"));
    assert_eq!(env_of(&r, "container").as_deref(), Some("berth"));
    assert!(env_of(&r, "PATH").unwrap().contains("/usr/bin"));

    // Without --inherit-env nothing of berth's environment leaks in.
    let o = run(env
        .berth()
        .env("HOSTONLY", "host")
        .args(["run", &img])
        .stdin(Stdio::null()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = report(&o);
    assert_eq!(env_of(&r, "HOSTONLY"), None);
    assert_eq!(env_of(&r, "FOO").as_deref(), Some("image"));
}

#[test]
fn user_and_group_by_name_working_dir_and_hostname() {
    let env = Env::new();
    let app = r#"{"exec":["/probe"],"user":"worker","group":"staff",
        "supplementaryGIDs":[3000,3001],"workingDirectory":"/srv"}"#;
    let img = image(&env, "ids", app, |root| {
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nworker:x:1000:1000::/srv:/bin/sh\n",
        )
        .unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\nstaff:x:2000:\n").unwrap();
        fs::create_dir_all(root.join("srv")).unwrap();
    });
    let o = berth_run(&env, &["--hostname", "podhost", &img]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = report(&o);
    assert_eq!(r["uid"], 1000);
    assert_eq!(r["gid"], 2000);
    assert_eq!(r["groups"], serde_json::json!([3000, 3001]));
    assert_eq!(r["cwd"], "/srv");
    assert_eq!(r["hostname"], "podhost");

    // --user/--group/--working-dir override the image, by number too.
    let o = berth_run(
        &env,
        &[
            &img,
            "--user",
            "0",
            "--group",
            "root",
            "--working-dir",
            "/tmp",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = report(&o);
    assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(0), Some(0)));
    assert_eq!(r["cwd"], "/tmp");

    // An unknown user is a clear failure, not a root app.
    let o = berth_run(&env, &[&img, "--user", "nobody-here"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("nobody-here"), "{}", stderr(&o));
}

#[test]
fn host_volumes_are_read_only_when_asked_and_empty_volumes_are_shared() {
    let env = Env::new();
    let img = image(&env, "vols", SH_APP, |_| {});
    let host = env.work().join("hostdir");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("given"), "from the host").unwrap();
    let vol = format!("h,kind=host,source={},readOnly=true", host.display());
    let o = berth_run(
        &env,
        &[
            "--volume",
            &vol,
            &img,
            "--mount",
            "volume=h,target=/h",
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "cat /h/given; if touch /h/new; then exit 9; fi; exit 0",
            "---",
        ],
    );
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("from the host"));
    assert!(!host.join("new").exists());

    // Two apps, one empty volume: the second sees what the first wrote.
    let o = berth_run(
        &env,
        &[
            "--volume",
            "shared,kind=empty,mode=0777",
            &img,
            "--name",
            "writer",
            "--mount",
            "volume=shared,target=/shared",
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "echo note > /shared/f",
            "---",
            &img,
            "--name",
            "reader",
            "--mount",
            "volume=shared,target=/data",
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "i=0; while [ ! -s /data/f ]; do i=$((i+1)); [ $i -gt 100 ] && exit 7; sleep 0.1; done; cat /data/f",
            "---",
        ],
    );
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).lines().any(|l| l == "reader: note"),
        "prefixed output: {}",
        stdout(&o)
    );

    // A host volume whose source is missing is refused before anything runs.
    let o = berth_run(
        &env,
        &["--volume", "m,kind=host,source=/does/not/exist", &img],
    );
    assert_eq!(code(&o), 254);
    assert!(
        stderr(&o).contains("/does/not/exist") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(
        pods_in(&env, "run").len() == 2,
        "no pod for the refused run"
    );
}

#[test]
fn a_failing_app_stops_the_others_and_gives_its_code() {
    let env = Env::new();
    let img = image(&env, "fail", SH_APP, |_| {});
    let started = Instant::now();
    let o = berth_run(
        &env,
        &[
            "--stop-timeout=5s",
            &img,
            "--name",
            "sleeper",
            "--exec",
            "/bin/sleep",
            "--",
            "1000",
            "---",
            &img,
            "--name",
            "failer",
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "sleep 0.3; exit 3",
            "---",
        ],
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(30));
    // Each app's own code is recorded.
    let pod = pods_in(&env, "run").pop().unwrap();
    let st = |a: &str| -> Value {
        serde_json::from_slice(&fs::read(pod.join("apps").join(a).join("status.json")).unwrap())
            .unwrap()
    };
    assert_eq!(st("failer")["exit_code"], 3);
    assert_ne!(st("sleeper")["exit_code"], 0);
}

#[test]
fn berth_run_is_the_supervisor_and_sigterm_stops_the_pod_gracefully() {
    let env = Env::new();
    let app = r#"{"exec":["/bin/sleep","1000"],"user":"0","group":"0",
        "eventHandlers":[{"name":"post-stop","exec":["/bin/sh","-c","echo stopped > /out/post-stop"]}],
        "mountPoints":[{"name":"out","path":"/out"}]}"#;
    let img = image(&env, "sup", app, |_| {});
    let out = env.work().join("out");
    fs::create_dir_all(&out).unwrap();
    let vol = format!("out,kind=host,source={}", out.display());
    let child = env
        .berth()
        .args(["run", "--stop-timeout=5s", "--volume", &vol, &img])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let berth_pid = guard.0.id() as i32;
    // Wait until the pod has started its apps.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pod = loop {
        if let Some(p) = pods_in(&env, "run").pop() {
            if p.join("ready").exists() {
                break p;
            }
        }
        assert!(Instant::now() < deadline, "the pod never became ready");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Same PID: stage0 exec'd the supervisor in place; the pod's PID 1 is
    // its child.
    let ppid: i32 = fs::read_to_string(pod.join("ppid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ppid, berth_pid);
    let pid1: i32 = fs::read_to_string(pod.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = fs::read_to_string(format!("/proc/{pid1}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let parent: i32 = after.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(parent, berth_pid, "pid names a child of berth run");

    let t = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(berth_pid).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = guard.0.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopped within the timeout"
    );
    // sleep died of the SIGTERM it was sent.
    assert_eq!(status.code(), Some(128 + 15));
    assert_eq!(
        fs::read_to_string(out.join("post-stop")).unwrap().trim(),
        "stopped"
    );
    assert!(!Path::new(&format!("/proc/{pid1}")).exists());
}

#[test]
fn prepare_then_run_prepared_runs_once() {
    let env = Env::new();
    let img = image(&env, "prep", SH_APP, |_| {});
    let uuid_file = env.work().join("uuid");
    let o = run(env
        .berth()
        .args(["prepare", "--quiet", "--uuid-file-save"])
        .arg(&uuid_file)
        .args([&img, "--exec", "/bin/sh", "--", "-c", "exit 5", "---"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let uuid = stdout(&o).trim().to_string();
    assert_eq!(fs::read_to_string(&uuid_file).unwrap().trim(), uuid);
    assert!(env.store().join("pods/prepared").join(&uuid).is_dir());
    // A prefix is enough.
    let o = run(env
        .berth()
        .args(["run-prepared", &uuid[..8]])
        .stdin(Stdio::null()));
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    let o = run(env.berth().args(["run-prepared", &uuid]));
    assert_eq!(code(&o), 254);
    assert!(stderr(&o).contains("only a prepared pod"), "{}", stderr(&o));
}

#[test]
fn a_pod_manifest_runs_like_the_command_line() {
    let env = Env::new();
    let img = image(&env, "pm", PROBE_APP, |_| {});
    let o = run(env
        .berth()
        .args(["image", "list", "--format=json", "--full"]));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    let pm = format!(
        r#"{{"acKind":"PodManifest","acVersion":"0.8.11","apps":[
            {{"name":"one","image":{{"name":"example.com/pm","id":"{id}"}},
              "app":{{"exec":["/probe","from-manifest"],"user":"0","group":"0",
                      "environment":[{{"name":"FOO","value":"manifest"}}]}}}}]}}"#
    );
    let file = env.work().join("pod.json");
    fs::write(&file, pm).unwrap();
    let o = run(env
        .berth()
        .arg("run")
        .arg(format!("--pod-manifest={}", file.display()))
        .stdin(Stdio::null()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = report(&o);
    assert_eq!(r["args"][1], "from-manifest");
    assert_eq!(env_of(&r, "FOO").as_deref(), Some("manifest"));
    assert_eq!(env_of(&r, "AC_APP_NAME").as_deref(), Some("one"));

    let o = run(env
        .berth()
        .arg("run")
        .arg(format!("--pod-manifest={}", file.display()))
        .arg(&img));
    assert_eq!(code(&o), 254);
    assert!(stderr(&o).contains("conflicting flags"), "{}", stderr(&o));
}

#[test]
fn clear_errors_for_bad_command_lines() {
    let env = Env::new();
    let img = image(&env, "errs", SH_APP, |_| {});
    let cases: [(&[&str], &str); 6] = [
        (
            &["--pull-policy=never", "example.com/missing:1.0"],
            "not found",
        ),
        (&["--net=default", &img], "--net=default"),
        (
            &["--interactive", &img, &img, "--name", "b"],
            "exactly one app",
        ),
        (&[&img, &img], "two apps are named"),
        (&[&img, "--bogus"], "--bogus"),
        (&[&img, "--mount", "volume=nope,target=/x"], "nope"),
    ];
    for (args, want) in cases {
        let o = berth_run(&env, args);
        assert_eq!(code(&o), 254, "{args:?}");
        let e = stderr(&o);
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "one line: {e}");
    }
    // Nothing was left behind by the refused runs.
    for state in ["embryo", "prepare", "prepared", "run"] {
        assert!(pods_in(&env, state).is_empty(), "{state}");
    }
}

#[test]
fn overlay_keeps_the_store_tree_untouched_and_no_overlay_copies() {
    let env = Env::new();
    let img = image(&env, "ovl", SH_APP, |_| {});
    for extra in [None, Some("--no-overlay")] {
        let mut args: Vec<&str> = extra.into_iter().collect();
        args.extend([
            img.as_str(),
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "echo new > /written; rm /bin/cat; test ! -e /bin/cat",
            "---",
        ]);
        let o = berth_run(&env, &args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    // The store's tree still has what the apps deleted, not what they wrote.
    let trees: Vec<PathBuf> = fs::read_dir(env.store().join("tree"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("deps-")
        })
        .collect();
    assert_eq!(trees.len(), 1);
    assert!(fs::symlink_metadata(trees[0].join("rootfs/bin/cat")).is_ok());
    assert!(!trees[0].join("rootfs/written").exists());
    let o = run(env.berth().args(["image", "verify"]));
    assert!(o.status.success(), "{} {}", stdout(&o), stderr(&o));
}

#[test]
fn interactive_apps_get_a_terminal() {
    let env = Env::new();
    let img = image(&env, "tty", SH_APP, |_| {});
    let cmd = format!(
        "{} --dir {} run --interactive {} --exec /bin/sh -- -c '[ -t 0 ] && [ -t 1 ] && echo ON-A-TTY; exit 4' ---",
        env!("CARGO_BIN_EXE_berth"),
        env.store().display(),
        img
    );
    let o = run(Command::new(tool("script"))
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null()));
    assert!(
        stdout(&o).contains("ON-A-TTY"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(code(&o), 4, "script passes the exit code on");
}

#[test]
fn restart_on_failure_is_counted() {
    let env = Env::new();
    let img = image(&env, "rst", SH_APP, |_| {});
    let o = berth_run(
        &env,
        &[
            &img,
            "--restart=on-failure:2",
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "echo run; exit 6",
            "---",
        ],
    );
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert_eq!(stdout(&o).matches("run").count(), 3, "{}", stdout(&o));
    let pod = pods_in(&env, "run").pop().unwrap();
    let st: Value =
        serde_json::from_slice(&fs::read(pod.join("apps/rst/status.json")).unwrap()).unwrap();
    assert_eq!(st["restarts"], 2);
}

#[test]
fn image_gc_keeps_the_trees_of_prepared_pods() {
    let env = Env::new();
    let img = image(&env, "keep", SH_APP, |_| {});
    let o = run(env.berth().args(["prepare", "--quiet", &img]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let uuid = stdout(&o).trim().to_string();
    let o = run(env.berth().args(["image", "gc", "--grace-period=0s"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("kept tree"), "{}", stdout(&o));
    let o = run(env
        .berth()
        .args(["run-prepared", &uuid])
        .stdin(Stdio::null()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// A tmux session killed when dropped, even if the test fails.
struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new(tool("tmux"))
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// Wait until the pane shows `text`; returns the pane's content.
fn pane_shows(session: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = run(Command::new(tool("tmux")).args(["capture-pane", "-p", "-t", session]));
        let pane = stdout(&o);
        if pane.contains(text) {
            return pane;
        }
        assert!(
            Instant::now() < deadline,
            "pane never showed {text:?}:\n{pane}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn interactive_pods_work_in_tmux_with_window_size_and_ctrl_c() {
    let env = Env::new();
    let img = image(&env, "tmx", SH_APP, |root| {
        for applet in ["stty", "read"] {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    });
    let session = format!("berth-test-{}", std::process::id());
    let status_file = env.work().join("status");
    // Ctrl-C typed in the terminal must reach the app as SIGINT through
    // the pod's own terminal; the app's exit code comes back out.
    let script =
        "echo SIZE $(stty size); trap 'echo GOT-INT; exit 5' INT; echo READY; sleep 100 & wait";
    let cmd = format!(
        "{} --dir {} run --interactive {} --exec /bin/sh -- -c \"{}\" ---; echo $? > {}; sleep 100",
        env!("CARGO_BIN_EXE_berth"),
        env.store().display(),
        img,
        script,
        status_file.display()
    );
    let o = run(Command::new(tool("tmux")).args([
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "91",
        "-y",
        "27",
        &cmd,
    ]));
    assert!(o.status.success(), "tmux: {}", stderr(&o));
    let _guard = Tmux(session.clone());
    let pane = pane_shows(&session, "READY");
    assert!(pane.contains("SIZE 27 91"), "window size: {pane}");
    let o = run(Command::new(tool("tmux")).args(["send-keys", "-t", &session, "C-c"]));
    assert!(o.status.success());
    pane_shows(&session, "GOT-INT");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status_file.exists() {
        assert!(Instant::now() < deadline, "berth run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fs::read_to_string(&status_file).unwrap().trim(), "5");
}
