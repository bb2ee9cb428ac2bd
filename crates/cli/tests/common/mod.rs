//! Helpers shared by berth's CLI tests: the binary under test, the real
//! outside tools (actool, gzip, busybox) and image layouts built on the fly.
#![allow(dead_code)] // each test binary uses its own subset

/// The HTTP(S) test server and test CA of berth-fetch's tests, shared (not
/// copied) so that both suites exercise the same server behaviour.
#[path = "../../../fetch/tests/common/mod.rs"]
pub mod server;

/// Test ACIs built with the `tar` crate (berth-store's test helpers, shared).
#[path = "../../../store/tests/common/mod.rs"]
pub mod aci;

/// OCI layouts, tree descriptions and the loopback docker-registry.
pub mod oci;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `berth` as built by cargo for this test run, with a private `--dir` so
/// that no test touches the host's store.
pub fn berth(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.env_remove("BERTH_DIR")
        .env_remove("BERTH_INSECURE_OPTIONS")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("BERTH_LOG")
        .arg("--dir")
        .arg(data_dir);
    cmd
}

/// The path of a tool the tests use for real. A missing tool is a broken test
/// machine, not a reason to skip: scripts/test installs them all.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed; run scripts/test, which installs the test dependencies");
}

/// The static probe that tests run inside pods: `$BERTH_PROBE`
/// (scripts/test builds it once and sets it), else built now.
pub fn probe() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_PROBE") {
        return PathBuf::from(p);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/probe/build.sh");
    let out = run(&mut Command::new(script));
    assert!(out.status.success(), "building the probe: {}", stderr(&out));
    PathBuf::from(stdout(&out).trim())
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command and returns its output, panicking with everything it said
/// if it could not be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub const BUSYBOX_MANIFEST: &str = r#"{
  "acKind": "ImageManifest",
  "acVersion": "0.8.11",
  "name": "example.com/busybox",
  "labels": [
    {"name": "version", "value": "1.35.0"},
    {"name": "os", "value": "linux"},
    {"name": "arch", "value": "amd64"}
  ],
  "app": {
    "exec": ["/bin/sh", "-c", "echo hello"],
    "user": "0",
    "group": "0",
    "environment": [{"name": "GREETING", "value": "hello"}]
  }
}
"#;

/// An image layout (`manifest` + `rootfs/`) holding busybox-static with a few
/// applet symlinks, under `parent/name`.
pub fn busybox_layout(parent: &Path, name: &str, manifest: &str) -> PathBuf {
    let layout = parent.join(name);
    let bin = layout.join("rootfs/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    fs::copy(tool("busybox"), bin.join("busybox")).unwrap();
    for applet in ["sh", "echo", "ls", "cat", "true"] {
        symlink("busybox", bin.join(applet)).unwrap();
    }
    fs::write(
        layout.join("rootfs/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    fs::write(layout.join("manifest"), manifest).unwrap();
    layout
}

/// `sha512-` of what `gzip -dc FILE` (or the matching decompressor) prints:
/// the appc image ID computed by outside tools.
pub fn outside_image_id(aci: &Path, decompressor: &str) -> String {
    let script = format!("{} -dc < '{}' | sha512sum", decompressor, aci.display());
    let out = run(Command::new("sh").arg("-c").arg(&script));
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    let text = stdout(&out);
    format!("sha512-{}", text.split_whitespace().next().unwrap())
}

/// A temp directory for one test: the store (`--dir`), empty config
/// directories and scratch space; removed on drop.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["store", "sys-config", "local-config", "work"] {
            fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        Env { tmp }
    }

    pub fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    pub fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    /// `berth` with this environment's store and config directories, and
    /// `SSL_CERT_FILE` unset (tests that need a CA set it).
    pub fn berth(&self) -> Command {
        let mut cmd = berth(&self.store());
        cmd.env_remove("SSL_CERT_FILE")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .arg("--system-config")
            .arg(self.tmp.path().join("sys-config"))
            .arg("--local-config")
            .arg(self.tmp.path().join("local-config"));
        cmd
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// A child process killed (and reaped) when dropped, even if the test fails.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
