//! The test probe is a static executable: it must run inside an image with no
//! libc at all, and report what it sees as JSON.

mod common;

use common::*;
use std::process::Command;

#[test]
fn probe_is_static_and_reports_its_environment_from_an_empty_root() {
    let probe = probe();
    let file = run(Command::new(tool("file")).arg("-L").arg(&probe));
    let what = stdout(&file);
    assert!(what.contains("static"), "probe is not static: {what}");

    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&probe, root.path().join("probe")).unwrap();
    let out = run(Command::new(tool("chroot"))
        .arg(root.path())
        .arg("/probe")
        .arg("first")
        .arg("second arg")
        .env_clear()
        .env("PROBE_TEST", "value with spaces"));
    assert!(
        out.status.success(),
        "probe failed in an empty root: {}",
        stderr(&out)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["args"],
        serde_json::json!(["/probe", "first", "second arg"])
    );
    assert_eq!(
        doc["env"],
        serde_json::json!({"PROBE_TEST": "value with spaces"})
    );
    assert_eq!(doc["uid"], 0);
    assert_eq!(doc["cwd"], "/");
    assert!(doc["hostname"].as_str().is_some_and(|h| !h.is_empty()));
}
