//! `berth run` of Docker/OCI images end to end: images written by the test
//! around Debian's busybox-static, served by Debian's docker-registry on
//! loopback (or read from an OCI layout), run as real pods. Checked by what
//! the apps print and by berth's exit codes: the image config as the app
//! (Entrypoint + Cmd, Env, WorkingDir, User, Volumes, StopSignal), Docker's
//! override rules, the refusal without `--insecure-options=image`, the pod
//! manifest (valid for `actool`), prepare/run-prepared and `--pod-manifest`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::oci::*;
use common::{run, stderr, stdout, tool, ChildGuard, Env};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha512};

/// The host's architecture as OCI spells it.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no test image for {other}"),
    }
}

/// Two layers: busybox with its applets, passwd/group (user `web` is
/// 33:44), then `/srv` and `/data` owned by web (the image's volume).
fn app_layers() -> Vec<Vec<u8>> {
    let busybox = fs::read(tool("busybox")).unwrap();
    let applets = ["sh", "echo", "id", "pwd", "stat", "sleep", "cat", "true"];
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    let mut base = vec![
        E::Dir("bin/", 0o755),
        E::File("bin/busybox", &busybox, 0o755),
        E::Dir("etc/", 0o755),
        E::File(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nweb:x:33:44:web:/srv:/bin/sh\n",
            0o644,
        ),
        E::File("etc/group", b"root:x:0:\nwebgrp:x:44:\n", 0o644),
    ];
    for l in &links {
        base.push(E::Sym(l, "busybox"));
    }
    vec![
        tar_of(&base),
        tar_of(&[
            E::DirOwned("srv/", 0o750, 33, 44),
            E::DirOwned("data/", 0o770, 33, 44),
        ]),
    ]
}

/// The app's config: prints what it sees, then exits 7.
fn app_config() -> Value {
    json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo \"$GREETING from $(pwd) as $(id -u):$(id -g) home $HOME\"; stat -c 'data %a %u:%g' /data; echo written > /srv/out; exit 7"],
        "Env": ["GREETING=hello", "PATH=/bin"],
        "WorkingDir": "/srv",
        "User": "web",
        "Volumes": {"/data": {}},
        "ExposedPorts": {"8080/tcp": {}},
        "StopSignal": "SIGUSR1",
    })
}

/// An OCI layout with `app:v1` (the image above) and `stopper:v1` (traps
/// its StopSignal, SIGUSR1, and ignores SIGTERM).
fn layout(dir: &Path) -> Layout {
    let mut lay = Layout::new(dir);
    let d = lay.image(&app_layers(), Comp::Gzip, oci_arch(), app_config());
    lay.tag(d, "v1");
    let stopper = json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["trap 'echo got USR1; exit 42' USR1; trap '' TERM; echo started; while true; do sleep 0.1; done"],
        "Env": ["PATH=/bin"],
        "StopSignal": "SIGUSR1",
    });
    let d = lay.image(&app_layers(), Comp::Gzip, oci_arch(), stopper);
    lay.tag(d, "stopper");
    lay
}

fn berth_run(env: &Env, args: &[&str]) -> Output {
    run(env.berth().args(args).stdin(Stdio::null()))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn sha512_hex(b: &[u8]) -> String {
    Sha512::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The manifest digest a layout's tag points at.
fn tagged_digest(lay: &Layout, tag: &str) -> String {
    lay.index
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|d| d["digest"].as_str())
        .unwrap()
        .to_string()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// From a registry: refused (before any download) without
/// `--insecure-options=image`; with it, the config is the app (user by
/// name with its primary group, working dir, env, exit code) and the
/// image's volume starts empty with the image directory's mode and owner.
/// The pod manifest names the image by the SHA-512 of its manifest and is
/// valid for actool.
#[test]
fn a_registry_image_runs_as_its_config_says() {
    let env = Env::new();
    let lay = layout(&env.work().join("layout"));
    let reg = Registry::start(&env.work().join("registry"));
    reg.push(&lay.dir, "v1", "team/app:v1", false);
    let image = format!("docker://127.0.0.1:{}/team/app:v1", reg.port);

    let out = berth_run(&env, &["--insecure-options=http", "run", &image]);
    assert_eq!(code(&out), 254, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--insecure-options=image") && err.contains(&image),
        "{err}"
    );
    assert!(
        reg.blob_gets().is_empty(),
        "nothing is downloaded for an image that will not run: {:?}",
        reg.blob_gets()
    );

    let uuid_file = env.work().join("uuid");
    let out = berth_run(
        &env,
        &[
            "--insecure-options=http,image",
            "run",
            &format!("--uuid-file-save={}", uuid_file.display()),
            &image,
        ],
    );
    assert_eq!(code(&out), 7, "{}{}", stdout(&out), stderr(&out));
    let o = stdout(&out);
    assert!(o.contains("hello from /srv as 33:44 home /srv\n"), "{o}");
    assert!(o.contains("data 770 33:44\n"), "{o}");

    let uuid = fs::read_to_string(&uuid_file).unwrap().trim().to_string();
    let man = run(env.berth().args(["cat-manifest", &uuid]));
    assert!(man.status.success(), "{}", stderr(&man));
    let pm: Value = serde_json::from_slice(&man.stdout).unwrap();
    let digest = tagged_digest(&lay, "v1");
    let app = &pm["apps"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(
        app["image"]["id"],
        format!("sha512-{}", sha512_hex(&lay.read(&digest)))
    );
    assert_eq!(
        app["image"]["name"],
        format!("127.0.0.1-{}/team/app", reg.port)
    );
    let ann = app["annotations"].as_array().unwrap();
    assert!(
        ann.contains(&json!({"name": "berth/oci-manifest-digest", "value": digest})),
        "{ann:?}"
    );
    assert_eq!(app["app"]["exec"][0], "/bin/sh");
    assert_eq!(pm["volumes"][0]["name"], "volume-data");
    assert_eq!(pm["volumes"][0]["kind"], "empty");
    let pm_file = env.work().join("pod-manifest.json");
    fs::write(&pm_file, &man.stdout).unwrap();
    let valid = run(Command::new(tool("actool")).arg("validate").arg(&pm_file));
    assert!(
        valid.status.success(),
        "actool rejects the pod manifest: {}{}",
        stdout(&valid),
        stderr(&valid)
    );

    // The exited app, with what it wrote, exports as a valid ACI.
    let aci = env.work().join("exported.aci");
    let out = run(env.berth().args(["export", &uuid]).arg(&aci));
    assert!(out.status.success(), "{}", stderr(&out));
    let valid = run(Command::new(tool("actool")).arg("validate").arg(&aci));
    assert!(
        valid.status.success(),
        "{}{}",
        stdout(&valid),
        stderr(&valid)
    );
    let listing = run(Command::new(tool("tar")).arg("-tzf").arg(&aci));
    assert!(
        stdout(&listing).lines().any(|l| l == "rootfs/srv/out"),
        "{}",
        stdout(&listing)
    );

    let list = run(env.berth().args(["list", "--no-legend"]));
    assert!(
        stdout(&list).contains(&image["docker://".len()..]) || stdout(&list).contains(&image),
        "{}",
        stdout(&list)
    );
}

/// `docker run`'s rules: arguments after `--` replace Cmd (the Entrypoint
/// stays), `--exec` replaces the Entrypoint and drops Cmd; `--user` and
/// `--set-env` override the config; two apps of one image in one pod.
#[test]
fn arguments_and_exec_override_like_docker_run() {
    let env = Env::new();
    let lay = layout(&env.work().join("layout"));
    let image = format!("oci:{}:v1", lay.dir.display());
    let insecure = "--insecure-options=image";

    let out = berth_run(
        &env,
        &[
            insecure,
            "run",
            &image,
            "--",
            "echo replaced $GREETING; exit 3",
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(stdout(&out), "replaced hello\n");

    let out = berth_run(
        &env,
        &[
            insecure,
            "run",
            &image,
            "--exec",
            "/bin/echo",
            "--",
            "a",
            "b",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "a b\n");

    let out = berth_run(
        &env,
        &[
            insecure,
            "run",
            &image,
            "--user",
            "0",
            "--group",
            "0",
            "--set-env",
            "GREETING=bonjour",
            "--",
            "echo $GREETING $(id -u) $(pwd) $HOME",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "bonjour 0 /srv /root\n");

    let out = berth_run(
        &env,
        &[
            insecure,
            "run",
            "--no-prefix",
            &image,
            "--name",
            "one",
            "--",
            "echo one",
            "---",
            &image,
            "--name",
            "two",
            "--",
            "sleep 0.3; echo two",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "one\ntwo\n");
}

/// `berth stop` sends the image's StopSignal (SIGUSR1 here; the app
/// ignores SIGTERM); `--stop-signal` overrides it (then the app ignores it
/// and is killed after the stop timeout).
#[test]
fn berth_stop_sends_the_images_stop_signal() {
    let env = Env::new();
    let lay = layout(&env.work().join("layout"));
    let image = format!("oci:{}:stopper", lay.dir.display());
    for (extra, want) in [(None, 42), (Some("--stop-signal=TERM"), 137)] {
        let uuid_file = env.work().join("uuid");
        let _ = fs::remove_file(&uuid_file);
        let mut cmd = env.berth();
        cmd.args(["--insecure-options=image", "run", "--stop-timeout=1s"])
            .arg(format!("--uuid-file-save={}", uuid_file.display()))
            .arg(&image);
        if let Some(e) = extra {
            cmd.arg(e);
        }
        let log = env.work().join("out");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = ChildGuard(child);
        wait_for("the app to start", || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("started")
        });
        let uuid = fs::read_to_string(&uuid_file).unwrap().trim().to_string();
        let stop = run(env.berth().args(["stop", &uuid]));
        assert!(stop.status.success(), "{}", stderr(&stop));
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the pod did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(want), "{extra:?}");
        let out = fs::read_to_string(&log).unwrap();
        assert_eq!(out.contains("got USR1"), want == 42, "{out}");
    }
}

/// A prepared pod of an OCI image runs once with run-prepared, also after
/// `image gc`; its pod manifest runs again with `--pod-manifest` (the image
/// found by its appc ID), which also needs `--insecure-options=image`.
#[test]
fn prepared_pods_and_pod_manifests_of_oci_images() {
    let env = Env::new();
    let lay = layout(&env.work().join("layout"));
    let image = format!("oci:{}:v1", lay.dir.display());
    let out = run(env
        .berth()
        .args(["--insecure-options=image", "prepare", "--quiet", &image]));
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let gc = run(env.berth().args(["image", "gc", "--grace-period=0s"]));
    assert!(gc.status.success(), "{}", stderr(&gc));
    let out = berth_run(&env, &["run-prepared", &uuid]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from /srv as 33:44"));

    let man = run(env.berth().args(["cat-manifest", &uuid]));
    let pm_file: PathBuf = env.work().join("pod.json");
    fs::write(&pm_file, &man.stdout).unwrap();
    let pm = pm_file.to_str().unwrap();
    let out = berth_run(&env, &["run", "--pod-manifest", pm]);
    assert_eq!(code(&out), 254);
    assert!(
        stderr(&out).contains("--insecure-options=image"),
        "{}",
        stderr(&out)
    );
    let out = berth_run(
        &env,
        &["--insecure-options=image", "run", "--pod-manifest", pm],
    );
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello from /srv as 33:44"));
}

/// An ACI app and a Docker app in one pod share an empty volume: what the
/// ACI app writes, the Docker app (running as its image's user) reads.
#[test]
fn aci_and_docker_apps_share_a_pod() {
    let env = Env::new();
    let lay = layout(&env.work().join("layout"));
    let arch = match oci_arch() {
        "arm64" => "aarch64",
        a => a,
    };
    let manifest = format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/writer",
        "labels":[{{"name":"version","value":"1.0"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"{arch}"}}],
        "app":{{"exec":["/bin/true"],"user":"0","group":"0"}}}}"#
    );
    let aci_dir = common::busybox_layout(&env.work(), "writer", &manifest);
    let aci = env.work().join("writer.aci");
    let out = run(env.berth().args(["image", "build"]).arg(&aci_dir).arg(&aci));
    assert!(out.status.success(), "{}", stderr(&out));
    let aci = aci.to_str().unwrap().to_string();
    let oci = format!("oci:{}:v1", lay.dir.display());
    let out = berth_run(
        &env,
        &[
            "--insecure-options=image",
            "run",
            "--no-prefix",
            "--volume=shared,kind=empty",
            "--mount=volume=shared,target=/shared",
            &aci,
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            "echo from-aci > /shared/msg",
            "---",
            &oci,
            "--",
            "while [ ! -s /shared/msg ]; do sleep 0.05; done; echo \"$(id -u) read $(cat /shared/msg)\"",
        ],
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "33 read from-aci\n");
}
