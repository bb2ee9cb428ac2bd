//! The store-backed `berth image` commands through the real binary: list,
//! rm, gc, export, extract, render (dependencies), cat-manifest, verify,
//! and a `kill -9` in the middle of a render.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::aci::{dep_id, dep_name, file, gz, id_of, manifest, tar_aci};
use common::{run, stderr, stdout, ChildGuard, Env};
use serde_json::json;

/// Writes `bytes` as an ACI file in the work directory and imports it.
fn import(env: &Env, name: &str, bytes: &[u8]) -> String {
    let path = env.work().join(format!("{name}.aci"));
    fs::write(&path, bytes).unwrap();
    let out = run(env
        .berth()
        .args(["--insecure-options=image", "fetch", "--full"])
        .arg(&path));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn list_json(env: &Env) -> Vec<serde_json::Value> {
    let out = run(env.berth().args(["image", "list", "--format=json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read(p: PathBuf) -> String {
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn render_follows_dependencies_whitelists_and_overrides() {
    let env = Env::new();
    let base = tar_aci(
        &manifest("example.com/base", &[("version", "1")], json!([]), &[]),
        &[
            file("etc/os-release", "base\n"),
            file("etc/passwd", "base\n"),
            file("etc/shadow", "base\n"),
        ],
    );
    let mid = tar_aci(
        &manifest(
            "example.com/mid",
            &[],
            json!([dep_name("example.com/base", &[("version", "1")])]),
            &["/etc/os-release", "/etc/passwd", "/mid.txt"],
        ),
        &[
            file("etc/os-release", "mid\n"),
            file("mid.txt", "mid\n"),
            file("mid-extra.txt", "mid\n"),
        ],
    );
    let mid_id = id_of(&mid);
    let top = tar_aci(
        &manifest(
            "example.com/top",
            &[],
            json!([dep_id("example.com/mid", &mid_id)]),
            &[],
        ),
        &[file("etc/passwd", "top\n"), file("top.txt", "top\n")],
    );
    import(&env, "base", &gz(&base));
    import(&env, "mid", &mid);
    let top_id = import(&env, "top", &gz(&top));

    let out_dir = env.work().join("rendered");
    let out = run(env
        .berth()
        .args(["image", "render", "example.com/top"])
        .arg(&out_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    let r = out_dir.join("rootfs");
    assert_eq!(
        read(r.join("etc/os-release")),
        "mid\n",
        "mid overrides base"
    );
    assert_eq!(read(r.join("etc/passwd")), "top\n", "top overrides base");
    assert!(!r.join("etc/shadow").exists(), "not in mid's whitelist");
    assert!(!r.join("mid-extra.txt").exists(), "not in mid's whitelist");
    assert_eq!(read(r.join("mid.txt")), "mid\n");
    assert_eq!(read(r.join("top.txt")), "top\n");
    assert!(read(out_dir.join("manifest")).contains("example.com/top"));

    // A non-empty target is refused unless --overwrite; --rootfs-only.
    let again = run(env
        .berth()
        .args(["image", "render", "--rootfs-only", &top_id])
        .arg(&out_dir));
    assert_eq!(again.status.code(), Some(254));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let again = run(env
        .berth()
        .args([
            "image",
            "render",
            "--rootfs-only",
            "--overwrite",
            &top_id[..20],
        ])
        .arg(&out_dir));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(read(out_dir.join("top.txt")), "top\n");
    assert!(!out_dir.join("manifest").exists());

    // The rendered tree counts in the size.
    let top_row = list_json(&env)
        .into_iter()
        .find(|i| i["id"] == json!(top_id))
        .unwrap();
    assert!(top_row["treeSize"].as_u64().unwrap() > 0);
}

#[test]
fn dependency_cycle_and_missing_dependency() {
    let env = Env::new();
    let x = tar_aci(
        &manifest(
            "example.com/x",
            &[],
            json!([dep_name("example.com/y", &[])]),
            &[],
        ),
        &[file("x", "x")],
    );
    let y = tar_aci(
        &manifest(
            "example.com/y",
            &[],
            json!([dep_name("example.com/x", &[])]),
            &[],
        ),
        &[file("y", "y")],
    );
    let n = tar_aci(
        &manifest(
            "example.com/needs-nope",
            &[],
            json!([dep_name("example.com/nope", &[("version", "1.0")])]),
            &[],
        ),
        &[file("n", "n")],
    );
    import(&env, "x", &x);
    import(&env, "y", &y);
    import(&env, "n", &n);
    let out = run(env
        .berth()
        .args(["image", "render", "example.com/x"])
        .arg(env.work().join("x")));
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("dependency cycle: example.com/x -> example.com/y -> example.com/x"),
        "{}",
        stderr(&out)
    );
    let out = run(env
        .berth()
        .args(["image", "render", "example.com/needs-nope"])
        .arg(env.work().join("n")));
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("\"example.com/nope:1.0\"")
            && stderr(&out).contains("is not in the store; fetch it first"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn list_rm_export_extract_cat_manifest() {
    let env = Env::new();
    let one = tar_aci(
        &manifest(
            "example.com/app",
            &[("version", "1.0"), ("os", "linux")],
            json!([]),
            &[],
        ),
        &[file("v", "1\n")],
    );
    let two = tar_aci(
        &manifest(
            "example.com/app",
            &[("version", "2.0"), ("os", "linux")],
            json!([]),
            &[],
        ),
        &[file("v", "2\n")],
    );
    let id1 = import(&env, "one", &gz(&one));
    let id2 = import(&env, "two", &gz(&two));

    let images = list_json(&env);
    assert_eq!(images.len(), 2);
    assert_eq!(images[0]["id"], json!(id1));
    assert_eq!(images[0]["name"], json!("example.com/app"));
    assert_eq!(images[0]["labels"]["version"], json!("1.0"));
    assert!(images[0]["size"].as_u64().unwrap() > 0);
    assert!(images[0]["importTime"].as_u64().unwrap() > 1_600_000_000);

    let table = run(env.berth().args(["image", "list"]));
    let text = stdout(&table);
    // `--format=table`, as the issue and rkt users write it, is the default.
    let named = run(env.berth().args(["image", "list", "--format=table"]));
    assert_eq!(stdout(&named), text);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("ID"));
    assert!(lines.next().unwrap().starts_with(&id1[..7 + 12]));
    let bare = run(env
        .berth()
        .args(["image", "list", "--no-legend", "--full", "--fields=id"]));
    assert_eq!(stdout(&bare), format!("{id1}\n{id2}\n"));

    // A name without version is the newest import; with one, that one.
    let cat = run(env
        .berth()
        .args(["image", "cat-manifest", "example.com/app"]));
    assert!(stdout(&cat).contains("\"2.0\""), "{}", stdout(&cat));
    let cat = run(env
        .berth()
        .args(["image", "cat-manifest", "--pretty", "example.com/app:1.0"]));
    let m: serde_json::Value = serde_json::from_slice(&cat.stdout).unwrap();
    assert_eq!(m["labels"][0]["value"], json!("1.0"));
    // A file path still works.
    let cat = run(env
        .berth()
        .args(["image", "cat-manifest"])
        .arg(env.work().join("one.aci")));
    assert!(cat.status.success() && stdout(&cat).contains("\"1.0\""));

    let exported = env.work().join("exported.aci");
    let out = run(env
        .berth()
        .args(["image", "export", &id1[..20]])
        .arg(&exported));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        common::outside_image_id(&exported, "gzip"),
        id1,
        "same image ID"
    );
    let out = run(env.berth().args(["image", "export", &id1]).arg(&exported));
    assert_eq!(out.status.code(), Some(254), "no overwrite without asking");
    let out = run(env
        .berth()
        .args(["image", "export", "--overwrite", &id1])
        .arg(&exported));
    assert!(out.status.success(), "{}", stderr(&out));

    let ex = env.work().join("extracted");
    let out = run(env
        .berth()
        .args(["image", "extract", "--rootfs-only", "example.com/app:1.0"])
        .arg(&ex));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(ex.join("v")), "1\n");

    let out = run(env
        .berth()
        .args(["image", "rm", &id1, "example.com/missing"]));
    assert_eq!(out.status.code(), Some(254), "one failed");
    assert!(stdout(&out).contains(&format!("removed {id1}")));
    assert!(
        stderr(&out).contains("example.com/missing"),
        "{}",
        stderr(&out)
    );
    let images = list_json(&env);
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["id"], json!(id2));

    let out = run(env.berth().args(["image", "rm", "sha512-0"]));
    assert_eq!(out.status.code(), Some(254));
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));

    // gc with the default grace period keeps a fresh image; with 0s it goes.
    let out = run(env.berth().args(["image", "gc"]));
    assert!(out.status.success());
    assert_eq!(list_json(&env).len(), 1);
    let out = run(env.berth().args(["image", "gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("removed image {id2}")),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).lines().last().unwrap().starts_with("freed "));
    assert!(list_json(&env).is_empty());
}

/// Flips one byte of a file, in place.
fn flip(path: &Path, at: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0xff;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn verify_finds_a_flipped_byte_in_a_blob_and_in_a_tree() {
    let env = Env::new();
    let a = tar_aci(
        &manifest("example.com/a", &[], json!([]), &[]),
        &[file("data.txt", "some data here\n")],
    );
    let b = tar_aci(
        &manifest("example.com/b", &[], json!([]), &[]),
        &[file("other.txt", "other data\n")],
    );
    let id_a = import(&env, "a", &a);
    let id_b = import(&env, "b", &b);
    let out = run(env
        .berth()
        .args(["image", "render", &id_b])
        .arg(env.work().join("r")));
    assert!(out.status.success(), "{}", stderr(&out));
    let clean = run(env.berth().args(["image", "verify"]));
    assert!(clean.status.success(), "{}", stdout(&clean));

    flip(
        &env.store()
            .join("cas/blobs/sha512")
            .join(id_a.strip_prefix("sha512-").unwrap()),
        600,
    );
    let tree = fs::read_dir(env.store().join("tree"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("rootfs/other.txt").exists())
        .unwrap();
    flip(&tree.join("rootfs/other.txt"), 0);
    let key = tree.file_name().unwrap().to_string_lossy().into_owned();

    let out = run(env.berth().args(["image", "verify"]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.contains(&id_a) && l.contains("CORRUPT")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&key) && l.contains("CORRUPT")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&id_b) && l.ends_with(": ok")),
        "{text}"
    );
    let out = run(env.berth().args(["image", "verify", "--drop-corrupt"]));
    assert_eq!(out.status.code(), Some(1));
    let out = run(env.berth().args(["image", "verify"]));
    assert!(out.status.success(), "{}", stdout(&out));
}

/// `kill -9` of `berth image render` mid-render, then a retry works.
#[test]
fn killed_render_can_be_retried() {
    let env = Env::new();
    let files: Vec<common::aci::E> = (0..4000)
        .map(|i| file(&format!("d{}/f{i}", i % 40), vec![b'x'; 4096]))
        .collect();
    let big = tar_aci(&manifest("example.com/many", &[], json!([]), &[]), &files);
    let id = import(&env, "many", &gz(&big));
    let target = env.work().join("first");
    let mut child = ChildGuard(
        env.berth()
            .args(["image", "render", &id])
            .arg(&target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Kill it once it has begun writing (or after a short while).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && fs::read_dir(env.store().join("tmp")).map_or(0, |d| d.count()) == 0
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(30));
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let retry = env.work().join("second");
    let out = run(env.berth().args(["image", "render", &id]).arg(&retry));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(retry.join("rootfs/d7/f7")).unwrap(),
        vec![b'x'; 4096]
    );
    let out = run(env.berth().args(["image", "verify"]));
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        fs::read_dir(env.store().join("tmp")).unwrap().count(),
        0,
        "the killed render's temp files are gone"
    );
}

/// A name picks images that run here: an image labelled for another arch is
/// skipped even if newer, unless the reference asks for that arch.
#[test]
fn names_prefer_images_for_this_host() {
    let env = Env::new();
    let (os, arch) = berth_appc::reference::host_os_arch().unwrap();
    let other = if arch == "amd64" { "aarch64" } else { "amd64" };
    let mk = |a: &str| {
        tar_aci(
            &manifest(
                "example.com/multi",
                &[("version", "1"), ("os", os), ("arch", a)],
                json!([]),
                &[],
            ),
            &[file("arch", a)],
        )
    };
    let here = import(&env, "here", &mk(arch));
    let there = import(&env, "there", &mk(other));
    let unlabelled = tar_aci(
        &manifest("example.com/plain", &[("version", "1")], json!([]), &[]),
        &[file("x", "x")],
    );
    let plain = import(&env, "plain", &unlabelled);
    let fetch = |r: &str| {
        let out = run(env
            .berth()
            .args(["fetch", "--pull-policy=never", "--full", r]));
        assert!(out.status.success(), "{r}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    assert_eq!(fetch("example.com/multi:1"), here);
    assert_eq!(fetch(&format!("example.com/multi:1,arch={other}")), there);
    assert_eq!(
        fetch("example.com/plain"),
        plain,
        "no os/arch labels: taken"
    );
    let out = run(env
        .berth()
        .args(["fetch", "--pull-policy=never", "example.com/multi:2"]));
    assert_eq!(out.status.code(), Some(254));
    assert_eq!(
        stderr(&out).trim(),
        "berth: fetching example.com/multi:2: image \"example.com/multi:2\" not found in the store \
         (run \"berth fetch\" or drop --pull-policy=never)"
    );
}

/// `berth image render IMAGE` without DIR renders into the tree store only
/// and prints the tree's rootfs; `render IMAGE DIR` then copies that tree.
#[test]
fn render_without_dir_prints_the_tree_rootfs() {
    let env = Env::new();
    let a = tar_aci(
        &manifest("example.com/tree-only", &[], json!([]), &[]),
        &[file("etc/hello", "hello\n"), file("bin/x", "x\n")],
    );
    let id = import(&env, "tree-only", &a);
    let out = run(env.berth().args(["image", "render", &id]));
    assert!(out.status.success(), "{}", stderr(&out));
    let rootfs = PathBuf::from(stdout(&out).trim());
    assert!(rootfs.starts_with(env.store().join("tree")), "{rootfs:?}");
    assert!(rootfs.ends_with("rootfs"));
    assert_eq!(read(rootfs.join("etc/hello")), "hello\n");
    assert_eq!(read(rootfs.join("bin/x")), "x\n");
    // Again: the same tree, reused.
    let again = run(env
        .berth()
        .args(["image", "render", "example.com/tree-only"]));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).trim(), rootfs.to_str().unwrap());
    // With DIR: a copy of it.
    let dir = env.work().join("copy");
    let out = run(env
        .berth()
        .args(["image", "render", "--rootfs-only", &id])
        .arg(&dir));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(dir.join("etc/hello")), "hello\n");
    // --rootfs-only and --overwrite only make sense with DIR.
    let bad = run(env.berth().args(["image", "render", "--rootfs-only", &id]));
    assert!(!bad.status.success());
}
