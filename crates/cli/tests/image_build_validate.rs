//! End-to-end tests of `berth image build`, `validate` and `cat-manifest`,
//! judged by outside tools: `actool validate` (appc's reference
//! implementation) and `gzip -dc | sha512sum` for image IDs.

mod common;

use common::*;
use std::fs;
use std::process::Command;

#[test]
fn built_busybox_image_is_valid_for_actool_and_berth() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path(), "layout", BUSYBOX_MANIFEST);
    let aci = tmp.path().join("busybox.aci");

    let out = run(berth(tmp.path())
        .args(["image", "build"])
        .arg(&layout)
        .arg(&aci));
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(
        id.starts_with("sha512-") && id.len() == 7 + 128,
        "bad id {id:?}"
    );
    assert_eq!(
        id,
        outside_image_id(&aci, "gzip"),
        "image ID differs from gzip -dc | sha512sum"
    );

    let actool = run(Command::new(tool("actool")).arg("validate").arg(&aci));
    assert!(
        actool.status.success(),
        "actool rejects berth's ACI: {}",
        stderr(&actool)
    );

    let out = run(berth(tmp.path()).args(["image", "validate"]).arg(&aci));
    assert!(
        out.status.success(),
        "berth rejects its own ACI: {}",
        stdout(&out)
    );
    assert_eq!(
        stdout(&out).trim(),
        format!("{}: valid ACI {id}", aci.display())
    );

    let out = run(berth(tmp.path()).args(["image", "cat-manifest"]).arg(&aci));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), BUSYBOX_MANIFEST);

    let out = run(berth(tmp.path())
        .args(["image", "cat-manifest", "--pretty"])
        .arg(&aci));
    assert!(out.status.success(), "{}", stderr(&out));
    let pretty: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let original: serde_json::Value = serde_json::from_str(BUSYBOX_MANIFEST).unwrap();
    assert_eq!(pretty, original);
    assert!(
        stdout(&out).contains("\n  \"acVersion\""),
        "not indented: {}",
        stdout(&out)
    );
}

#[test]
fn every_compression_builds_images_that_actool_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path(), "layout", BUSYBOX_MANIFEST);
    for (compression, decompressor) in [
        ("gzip", "gzip"),
        ("xz", "xz"),
        ("zstd", "zstd"),
        ("none", "cat"),
    ] {
        let aci = tmp.path().join(format!("bb-{compression}.aci"));
        let out = run(berth(tmp.path())
            .args(["image", "build", "--compression", compression])
            .arg(&layout)
            .arg(&aci));
        assert!(out.status.success(), "{compression}: {}", stderr(&out));
        let id = stdout(&out).trim().to_string();
        let outside = if decompressor == "cat" {
            let out = run(Command::new("sha512sum").arg(&aci));
            format!("sha512-{}", stdout(&out).split_whitespace().next().unwrap())
        } else {
            outside_image_id(&aci, decompressor)
        };
        assert_eq!(id, outside, "{compression}: image ID");
        let out = run(berth(tmp.path()).args(["image", "validate"]).arg(&aci));
        assert!(out.status.success(), "{compression}: {}", stdout(&out));
        if compression != "zstd" {
            // actool 0.8.11 predates zstd ACIs; it reads the others.
            let actool = run(Command::new(tool("actool")).arg("validate").arg(&aci));
            assert!(
                actool.status.success(),
                "{compression}: {}",
                stderr(&actool)
            );
        }
    }
}

#[test]
fn builds_with_a_fixed_mtime_are_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path(), "layout", BUSYBOX_MANIFEST);
    let a = tmp.path().join("a.aci");
    let b = tmp.path().join("b.aci");
    let out = run(berth(tmp.path())
        .args(["image", "build", "--mtime", "1700000000"])
        .arg(&layout)
        .arg(&a));
    assert!(out.status.success(), "{}", stderr(&out));
    // Touch the tree in between: with a fixed mtime nothing may change.
    fs::write(
        layout.join("rootfs/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    let out2 = run(berth(tmp.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["image", "build"])
        .arg(&layout)
        .arg(&b));
    assert!(out2.status.success(), "{}", stderr(&out2));
    assert_eq!(stdout(&out), stdout(&out2));
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
}

#[test]
fn build_refuses_an_invalid_manifest_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = BUSYBOX_MANIFEST.replace(
        "\"arch\", \"value\": \"amd64\"",
        "\"arch\", \"value\": \"amd65\"",
    );
    let layout = busybox_layout(tmp.path(), "layout", &bad);
    let aci = tmp.path().join("bad.aci");
    let out = run(berth(tmp.path())
        .args(["image", "build"])
        .arg(&layout)
        .arg(&aci));
    assert_eq!(out.status.code(), Some(254), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("berth: building "), "{err}");
    assert!(err.contains("labels[2]") && err.contains("amd65"), "{err}");
    assert!(!aci.exists(), "an output file was left behind");
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[test]
fn build_keeps_an_existing_output_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path(), "layout", BUSYBOX_MANIFEST);
    let aci = tmp.path().join("out.aci");
    fs::write(&aci, "precious").unwrap();
    let out = run(berth(tmp.path())
        .args(["image", "build"])
        .arg(&layout)
        .arg(&aci));
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("--overwrite") || stderr(&out).contains("exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&aci).unwrap(), "precious");
    let out = run(berth(tmp.path())
        .args(["image", "build", "--overwrite"])
        .arg(&layout)
        .arg(&aci));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(berth(tmp.path()).args(["image", "validate"]).arg(&aci));
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn build_requires_the_aci_suffix() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path(), "layout", BUSYBOX_MANIFEST);
    let out = run(berth(tmp.path())
        .args(["image", "build"])
        .arg(&layout)
        .arg(tmp.path().join("x.tar")));
    assert_eq!(out.status.code(), Some(254));
    assert!(stderr(&out).contains(".aci"), "{}", stderr(&out));
    assert!(!tmp.path().join("x.tar").exists());
}

#[test]
fn build_of_a_missing_directory_is_one_clear_line_and_debug_gives_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let out = run(berth(tmp.path())
        .args(["image", "build"])
        .arg(&missing)
        .arg(tmp.path().join("x.aci")));
    assert_eq!(out.status.code(), Some(254));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("berth: building ") && err.contains("nope"),
        "{err}"
    );
    let out = run(berth(tmp.path())
        .args(["image", "build", "--debug"])
        .arg(&missing)
        .arg(tmp.path().join("x.aci")));
    assert_eq!(out.status.code(), Some(254));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("berth: building ") && last.contains("No such file"),
        "{last}"
    );
}

#[test]
fn validate_reports_each_file_and_exits_one_if_any_is_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path(), "layout", BUSYBOX_MANIFEST);
    let aci = tmp.path().join("good.aci");
    assert!(run(berth(tmp.path())
        .args(["image", "build"])
        .arg(&layout)
        .arg(&aci))
    .status
    .success());

    let good_manifest = tmp.path().join("image.json");
    fs::write(&good_manifest, BUSYBOX_MANIFEST).unwrap();
    let pod = tmp.path().join("pod.json");
    fs::write(
        &pod,
        format!(
            r#"{{"acKind":"PodManifest","acVersion":"0.8.11","apps":[{{"name":"bb","image":{{"id":"sha512-{}"}}}}]}}"#,
            "0".repeat(128)
        ),
    )
    .unwrap();
    let bad = tmp.path().join("bad.json");
    fs::write(
        &bad,
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Example.com/UPPER","app":{"exec":["/bin/sh"],"user":"0","group":"0","ports":[{"name":"http","port":0,"protocol":"tcp"}]}}"#,
    )
    .unwrap();
    let junk = tmp.path().join("junk.aci");
    fs::write(&junk, b"this is neither a tar nor JSON").unwrap();

    let out = run(berth(tmp.path())
        .args(["image", "validate"])
        .args([&aci, &good_manifest, &pod]));
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("good.aci: valid ACI sha512-"), "{text}");
    assert!(text.contains("image.json: valid ImageManifest"), "{text}");
    assert!(text.contains("pod.json: valid PodManifest"), "{text}");

    let out = run(berth(tmp.path())
        .args(["image", "validate"])
        .args([&aci, &bad, &junk]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let bad_lines: Vec<&str> = text.lines().filter(|l| l.contains("bad.json: ")).collect();
    assert!(
        bad_lines.len() >= 2,
        "one line per problem expected: {text}"
    );
    assert!(bad_lines.iter().any(|l| l.contains("name")), "{text}");
    assert!(
        bad_lines.iter().any(|l| l.contains("app.ports[0]")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{}: ", junk.display()))),
        "{text}"
    );
    assert!(text.contains("good.aci: valid ACI"), "{text}");

    let out = run(berth(tmp.path())
        .args(["image", "validate", "--format", "json"])
        .args([&aci, &bad]));
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc[0]["valid"], true);
    assert_eq!(doc[0]["kind"], "ACI");
    assert_eq!(doc[1]["valid"], false);
    assert!(doc[1]["problems"].as_array().unwrap().len() >= 2);
}

#[test]
fn validate_agrees_with_actool_on_broken_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path(), "layout", BUSYBOX_MANIFEST);
    let aci = tmp.path().join("good.aci");
    assert!(run(berth(tmp.path())
        .args(["image", "build"])
        .arg(&layout)
        .arg(&aci))
    .status
    .success());
    let bytes = fs::read(&aci).unwrap();
    let truncated = tmp.path().join("truncated.aci");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let mut garbled = bytes.clone();
    for b in garbled.iter_mut().skip(64).take(4096) {
        *b ^= 0x5a;
    }
    let garbled_path = tmp.path().join("garbled.aci");
    fs::write(&garbled_path, &garbled).unwrap();
    for broken in [&truncated, &garbled_path] {
        let ours = run(berth(tmp.path()).args(["image", "validate"]).arg(broken));
        let theirs = run(Command::new(tool("actool")).arg("validate").arg(broken));
        assert!(
            !theirs.status.success(),
            "actool accepted {}",
            broken.display()
        );
        assert_eq!(
            ours.status.code(),
            Some(1),
            "{}: {}",
            broken.display(),
            stdout(&ours)
        );
        assert!(
            stdout(&ours).starts_with(&format!("{}: ", broken.display())),
            "{}",
            stdout(&ours)
        );
    }
}

#[test]
fn global_flags_work_after_the_subcommand_and_bad_ones_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("m.json");
    fs::write(&manifest, BUSYBOX_MANIFEST).unwrap();
    let out = run(berth(tmp.path())
        .args([
            "image",
            "validate",
            "--debug",
            "--insecure-options=image,http",
        ])
        .arg(&manifest));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("insecure"),
        "--debug said nothing: {}",
        stderr(&out)
    );
    let out = run(berth(tmp.path())
        .args(["--insecure-options=imgae", "image", "validate"])
        .arg(&manifest));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"imgae\""), "{}", stderr(&out));
}

#[test]
fn version_names_the_appc_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(berth(tmp.path()).arg("version"));
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("berth Version: {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("appc Version: 0.8.11"), "{text}");
    assert!(text.contains("Features: "), "{text}");
    let out = run(berth(tmp.path()).args(["version", "--format=json"]));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["appc"], "0.8.11");
    assert_eq!(doc["features"]["aci-zstd"], true);
}

/// `actool build` hangs forever on a rootfs holding `/dev/console`, because it
/// opens every file it archives. berth archives device nodes and fifos as what
/// they are without opening them.
#[test]
fn build_archives_device_nodes_and_fifos_without_opening_them() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path(), "layout", BUSYBOX_MANIFEST);
    let dev = layout.join("rootfs/dev");
    fs::create_dir_all(&dev).unwrap();
    for args in [["c", "5", "1"], ["c", "1", "3"]] {
        let name = if args[1] == "5" { "console" } else { "null" };
        let out = run(Command::new("mknod").arg(dev.join(name)).args(args));
        assert!(
            out.status.success(),
            "mknod (tests run as root): {}",
            stderr(&out)
        );
    }
    let out = run(Command::new("mkfifo").arg(dev.join("initctl")));
    assert!(out.status.success());
    let aci = tmp.path().join("devices.aci");

    let out = run(Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_berth"))
        .arg("--dir")
        .arg(tmp.path())
        .args(["image", "build"])
        .arg(&layout)
        .arg(&aci));
    assert!(
        out.status.success(),
        "build hung or failed: {:?} {}",
        out.status,
        stderr(&out)
    );

    let listing = run(Command::new("tar").arg("-tvzf").arg(&aci));
    let listing = stdout(&listing);
    let console = listing
        .lines()
        .find(|l| l.ends_with("rootfs/dev/console"))
        .expect(&listing);
    assert!(
        console.starts_with('c') && console.contains("5,1"),
        "{console}"
    );
    let fifo = listing
        .lines()
        .find(|l| l.ends_with("rootfs/dev/initctl"))
        .expect(&listing);
    assert!(fifo.starts_with('p'), "{fifo}");

    let actool = run(Command::new(tool("actool")).arg("validate").arg(&aci));
    assert!(actool.status.success(), "{}", stderr(&actool));
    let out = run(berth(tmp.path()).args(["image", "validate"]).arg(&aci));
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("warning: rootfs/dev/console"),
        "{}",
        stdout(&out)
    );
}
