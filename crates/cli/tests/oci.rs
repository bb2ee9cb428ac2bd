//! Docker/OCI images end to end: layouts and archives written by the test,
//! pushed with skopeo to Debian's docker-registry (distribution v2) on
//! loopback, fetched and rendered by berth, and checked file by file against
//! `umoci unpack` of the same image. Registry behaviour berth must survive
//! (token auth, a pull killed mid-layer, a corrupt blob) is played by the
//! loopback test server of berth-fetch's tests.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::oci::*;
use common::server::{Pki, Reply, Request, Server};
use common::{run, stdout, ChildGuard, Env};
use serde_json::{json, Value};

/// The three layers of the main test image: whiteouts, an opaque
/// directory, a hard link, ownership and modes, a symlink.
fn main_layers() -> Vec<Vec<u8>> {
    vec![
        tar_of(&[
            E::Dir("etc/", 0o755),
            E::File(
                "etc/passwd",
                b"root:x:0:0::/root:/bin/sh\nweb:x:33:44::/srv:/bin/sh\n",
                0o644,
            ),
            E::File("etc/gone", b"deleted by a whiteout\n", 0o644),
            E::Dir("opq/", 0o755),
            E::File("opq/old1", b"hidden\n", 0o644),
            E::Dir("opq/sub/", 0o700),
            E::File("opq/sub/old2", b"hidden too\n", 0o600),
            E::Dir("tree/", 0o755),
            E::Dir("tree/deep/", 0o755),
            E::File("tree/deep/f", b"f\n", 0o644),
            E::Dir("usr/", 0o755),
            E::Dir("usr/bin/", 0o755),
            E::File("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        ]),
        tar_of(&[
            E::Dir("etc/", 0o755),
            E::File("etc/.wh.gone", b"", 0o644),
            E::File(".wh.tree", b"", 0o644),
            E::Dir("opq/", 0o750),
            E::File("opq/.wh..wh..opq", b"", 0o644),
            E::File("opq/new", b"new\n", 0o644),
            E::Dir("usr/", 0o755),
            E::Dir("usr/bin/", 0o755),
            E::Owned("usr/bin/suid", b"suid\n", 0o4755, 1000, 1001),
            E::Hard("usr/bin/suid-link", "usr/bin/suid"),
            E::Sym("usr/bin/rel", "../../etc/passwd"),
            E::Sym("usr/bin/abs", "/etc/passwd"),
        ]),
        tar_of(&[
            E::Dir("usr/", 0o755),
            E::Dir("usr/bin/", 0o755),
            E::File("usr/bin/tool", b"#!/bin/sh\necho tool v2\n", 0o700),
            E::Dir("srv/", 0o1777),
        ]),
    ]
}

fn main_config() -> Value {
    json!({"Cmd": ["/usr/bin/tool"], "Env": ["PATH=/usr/bin"], "User": "web", "WorkingDir": "/srv",
           "ExposedPorts": {"8080/tcp": {}}, "Volumes": {"/data": {}}, "Labels": {"org.example.x": "y"},
           "StopSignal": "SIGQUIT"})
}

// ---------------------------------------------------------------- tests

/// A three-layer image (whiteouts, opaque dir, hard link, owners, modes,
/// setuid, symlinks) in an OCI layout renders exactly as umoci unpacks it.
#[test]
fn oci_layout_renders_like_umoci() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    let d = lay.image(&main_layers(), Comp::Gzip, "amd64", main_config());
    lay.tag(d.clone(), "v1");
    let arg = format!("oci:{}:v1", lay.dir.display());
    let id = berth_ok(&env, &["fetch", &arg]);
    assert_eq!(
        id,
        d["digest"].as_str().unwrap(),
        "the image ID is the manifest digest"
    );
    let rootfs = PathBuf::from(berth_ok(&env, &["image", "render", &arg]));
    let reference = umoci_unpack(&lay.dir, "v1", &env.work().join("umoci"));
    assert_same_tree(&rootfs, &reference);
    // The semantics, spelled out.
    assert!(!rootfs.join("etc/gone").exists());
    assert!(!rootfs.join("tree").exists());
    assert!(!rootfs.join("opq/old1").exists() && !rootfs.join("opq/sub").exists());
    assert_eq!(fs::read(rootfs.join("opq/new")).unwrap(), b"new\n");
    let a = fs::metadata(rootfs.join("usr/bin/suid")).unwrap();
    let b = fs::metadata(rootfs.join("usr/bin/suid-link")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!((a.uid(), a.gid(), a.mode() & 0o7777), (1000, 1001, 0o4755));
    assert_eq!(
        fs::read(rootfs.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool v2\n"
    );
    // Rendering again reuses the tree.
    assert_eq!(
        berth_ok(&env, &["image", "render", &id]),
        rootfs.display().to_string()
    );
    // The tree's hash, made from the digests taken as the layers were
    // written, is what verify computes from the files.
    assert_eq!(
        berth_ok(&env, &["image", "verify", &id]),
        format!("image {id}: ok")
    );

    // The image's config as an appc app.
    let app: Value =
        serde_json::from_str(&berth_ok(&env, &["image", "cat-manifest", "--app", &id])).unwrap();
    assert_eq!(app["app"]["exec"], json!(["/usr/bin/tool"]));
    assert_eq!(app["app"]["user"], "web");
    assert_eq!(
        app["app"]["group"], "44",
        "the primary group from the image's /etc/passwd"
    );
    assert_eq!(app["app"]["workingDirectory"], "/srv");
    assert_eq!(app["app"]["ports"][0]["name"], "8080-tcp");
    assert_eq!(app["app"]["mountPoints"][0]["path"], "/data");
    let ann = app["annotations"].as_array().unwrap();
    assert!(ann.contains(&json!({"name": "berth/oci-stop-signal", "value": "SIGQUIT"})));
    assert!(ann.contains(&json!({"name": "org.example.x", "value": "y"})));
    // The OCI manifest and config.
    let cat: Value =
        serde_json::from_str(&berth_ok(&env, &["image", "cat-manifest", &id])).unwrap();
    assert_eq!(cat["manifest"]["layers"].as_array().unwrap().len(), 3);
    assert_eq!(cat["config"]["config"]["StopSignal"], "SIGQUIT");

    // A copy with the app manifest.
    let out = env.work().join("copy");
    berth_ok(&env, &["image", "render", &id, out.to_str().unwrap()]);
    assert_same_tree(&out.join("rootfs"), &reference);
    assert!(out.join("manifest").is_file());
}

/// A hard link in an upper layer to a file of a lower layer: both names
/// share one inode, as umoci unpacks it, also when the same layer whites
/// out the target after the link; a link to a lower directory, or to a
/// target the layer whited out before the link, is refused.
/// A layer that writes `opt/sub/b` without entries for `opt/` and
/// `opt/sub/` leaves those directories as the layer below made them (mode,
/// owner), as umoci does; a directory entry of the layer still wins.
#[test]
fn parents_a_layer_leaves_out_keep_their_lower_metadata() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    let l1 = tar_of(&[
        E::DirOwned("opt/", 0o750, 7, 8),
        E::DirOwned("opt/sub/", 0o700, 9, 10),
        E::File("opt/sub/a", b"a\n", 0o644),
        E::DirOwned("srv/", 0o711, 3, 4),
    ]);
    let l2 = tar_of(&[
        E::File("opt/sub/b", b"b\n", 0o644),
        E::File("srv/x", b"x\n", 0o644),
        E::DirOwned("srv/", 0o755, 5, 6),
        E::File("new/dir/c", b"c\n", 0o644),
    ]);
    let d = lay.image(&[l1, l2], Comp::Gzip, "amd64", json!({}));
    lay.tag(d, "v1");
    let arg = format!("oci:{}:v1", lay.dir.display());
    berth_ok(&env, &["fetch", &arg]);
    let rootfs = PathBuf::from(berth_ok(&env, &["image", "render", &arg]));
    let reference = umoci_unpack(&lay.dir, "v1", &env.work().join("umoci"));
    assert_same_tree(&rootfs, &reference);
    let meta = |p: &str| {
        let m = fs::metadata(rootfs.join(p)).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    assert_eq!(meta("opt"), (0o750, 7, 8));
    assert_eq!(meta("opt/sub"), (0o700, 9, 10));
    assert_eq!(meta("srv"), (0o755, 5, 6));
}

#[test]
fn hard_link_to_a_lower_layer_renders_like_umoci() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    let l1 = tar_of(&[
        E::Dir("usr/", 0o755),
        E::Dir("usr/bin/", 0o755),
        E::File("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        E::File("usr/bin/other", b"other\n", 0o644),
    ]);
    let cases = [
        (
            "link",
            tar_of(&[
                E::Dir("usr/", 0o755),
                E::Dir("usr/bin/", 0o755),
                E::Hard("usr/bin/l2", "usr/bin/tool"),
            ]),
        ),
        (
            "link-then-whiteout",
            tar_of(&[
                E::Dir("usr/", 0o755),
                E::Dir("usr/bin/", 0o755),
                E::Hard("usr/bin/l2", "usr/bin/other"),
                E::File("usr/bin/.wh.other", b"", 0o644),
            ]),
        ),
    ];
    for (tag, l2) in &cases {
        let d = lay.image(&[l1.clone(), l2.clone()], Comp::Gzip, "amd64", json!({}));
        lay.tag(d, tag);
        let arg = format!("oci:{}:{tag}", lay.dir.display());
        berth_ok(&env, &["fetch", &arg]);
        let rootfs = PathBuf::from(berth_ok(&env, &["image", "render", &arg]));
        let reference = umoci_unpack(&lay.dir, tag, &env.work().join(format!("umoci-{tag}")));
        assert_same_tree(&rootfs, &reference);
        let id = berth_ok(&env, &["fetch", &arg]);
        assert_eq!(
            berth_ok(&env, &["image", "verify", &id]),
            format!("image {id}: ok")
        );
        let l2 = fs::metadata(rootfs.join("usr/bin/l2")).unwrap();
        if *tag == "link" {
            let tool = fs::metadata(rootfs.join("usr/bin/tool")).unwrap();
            assert_eq!((l2.dev(), l2.ino()), (tool.dev(), tool.ino()));
            assert_eq!(tool.nlink(), 2);
        } else {
            assert!(!rootfs.join("usr/bin/other").exists());
            assert_eq!(fs::read(rootfs.join("usr/bin/l2")).unwrap(), b"other\n");
            assert_eq!(l2.nlink(), 1);
        }
    }
    let refused = [
        ("to-dir", tar_of(&[E::Hard("l2", "usr/bin")]), "a directory"),
        (
            "whiteout-then-link",
            tar_of(&[
                E::Dir("usr/", 0o755),
                E::Dir("usr/bin/", 0o755),
                E::File("usr/bin/.wh.tool", b"", 0o644),
                E::Hard("usr/bin/l2", "usr/bin/tool"),
            ]),
            "whiteout",
        ),
        (
            "missing",
            tar_of(&[E::Hard("l2", "usr/bin/nope")]),
            "neither this layer nor the layers below",
        ),
    ];
    for (tag, l2, want) in &refused {
        let d = lay.image(&[l1.clone(), l2.clone()], Comp::Gzip, "amd64", json!({}));
        lay.tag(d.clone(), tag);
        let arg = format!("oci:{}:{tag}", lay.dir.display());
        berth_ok(&env, &["fetch", &arg]);
        let err = berth_fails(&env, &["image", "render", &arg]);
        assert!(err.contains(want), "{tag}: {err}");
    }
}

/// The trees under the store's tree/ directory.
fn trees(env: &Env) -> Vec<String> {
    let mut t: Vec<String> = fs::read_dir(env.store().join("tree"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    t.sort();
    t
}

/// A config whose rootfs.diff_ids do not match the layers (a wrong digest,
/// or a wrong count) fails the render, naming the layer and both digests,
/// and leaves no tree; a config without a rootfs section renders.
#[test]
fn wrong_diff_ids_fail_the_render() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    let layers = main_layers();
    let good = lay.image(&layers, Comp::Gzip, "amd64", main_config());
    let m: Value = serde_json::from_slice(&lay.read(good["digest"].as_str().unwrap())).unwrap();
    let second = m["layers"][1]["digest"].as_str().unwrap().to_string();
    let right = sha(&layers[1]);
    let wrong = sha(b"not the layer");
    let bad = lay.edit_config(&good, |c| c["rootfs"]["diff_ids"][1] = json!(wrong));
    lay.tag(bad, "bad");
    let short = lay.edit_config(&good, |c| {
        c["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
    });
    lay.tag(short, "short");
    let none = lay.edit_config(&good, |c| {
        c.as_object_mut().unwrap().remove("rootfs");
    });
    lay.tag(none, "none");

    // Uncompressed layers: the diff_id is the blob digest.
    let plain = lay.image(&layers, Comp::None, "amd64", main_config());
    let plain_bad = lay.edit_config(&plain, |c| c["rootfs"]["diff_ids"][2] = json!(wrong));
    lay.tag(plain_bad, "plain-bad");

    let before = trees(&env);
    let arg = format!("oci:{}:plain-bad", lay.dir.display());
    berth_ok(&env, &["fetch", &arg]);
    let err = berth_fails(&env, &["image", "render", &arg]);
    let third = sha(&layers[2]);
    assert!(err.contains(&third) && err.contains(&wrong), "{err}");
    assert_eq!(trees(&env), before, "no tree is left behind");

    let arg = format!("oci:{}:bad", lay.dir.display());
    berth_ok(&env, &["fetch", &arg]);
    let err = berth_fails(&env, &["image", "render", &arg]);
    assert!(
        err.contains(&second) && err.contains(&wrong) && err.contains(&right),
        "{err}"
    );
    assert_eq!(trees(&env), before, "no tree is left behind");

    let arg = format!("oci:{}:short", lay.dir.display());
    berth_ok(&env, &["fetch", &arg]);
    let err = berth_fails(&env, &["image", "render", &arg]);
    assert!(
        err.contains("diff_ids lists 2 layer(s) but the manifest has 3"),
        "{err}"
    );
    assert_eq!(trees(&env), before, "no tree is left behind");

    let arg = format!("oci:{}:none", lay.dir.display());
    berth_ok(&env, &["fetch", &arg]);
    let rootfs = PathBuf::from(berth_ok(&env, &["image", "render", &arg]));
    assert_eq!(trees(&env).len(), before.len() + 1);
    lay.tag(good, "good");
    assert_same_tree(
        &rootfs,
        &umoci_unpack(&lay.dir, "good", &env.work().join("umoci")),
    );
    let arg = format!("oci:{}:good", lay.dir.display());
    berth_ok(&env, &["fetch", &arg]);
    assert_eq!(
        berth_ok(&env, &["image", "render", &arg]),
        rootfs.display().to_string(),
        "the same layers share the tree"
    );

    // The tree of these layers exists now: the bad config is still
    // checked against what the layers hashed to.
    let arg = format!("oci:{}:bad", lay.dir.display());
    let err = berth_fails(&env, &["image", "render", &arg]);
    assert!(
        err.contains(&second) && err.contains(&wrong) && err.contains(&right),
        "{err}"
    );
}

/// zstd and uncompressed layers render as the gzip ones do.
#[test]
fn zstd_and_plain_layers_render_like_gzip() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    for (c, tag) in [(Comp::Gzip, "gz"), (Comp::Zstd, "zst"), (Comp::None, "tar")] {
        let d = lay.image(&main_layers(), c, "amd64", main_config());
        lay.tag(d, tag);
    }
    let mut roots = Vec::new();
    for tag in ["gz", "zst", "tar"] {
        let arg = format!("oci:{}:{tag}", lay.dir.display());
        berth_ok(&env, &["fetch", &arg]);
        roots.push(PathBuf::from(berth_ok(&env, &["image", "render", &arg])));
    }
    assert_ne!(roots[0], roots[1], "different layer blobs, different trees");
    assert_same_tree(&roots[1], &roots[0]);
    assert_same_tree(&roots[2], &roots[0]);
}

/// Push to a real registry, pull, render, compare with umoci; a second
/// image sharing all but one layer downloads only that layer; rm and gc
/// free only what no image uses; list shows references and digests;
/// export --format=oci-archive reads back as the same image.
#[test]
fn registry_pull_shares_layers() {
    let env = Env::new();
    let reg = Registry::start(&env.work().join("registry"));
    let mut lay = Layout::new(&env.work().join("layout"));
    let layers = main_layers();
    let d1 = lay.image(&layers, Comp::Gzip, "amd64", main_config());
    lay.tag(d1.clone(), "v1");
    let mut layers2 = layers.clone();
    layers2[2] = tar_of(&[E::File("v2-only", b"second image\n", 0o644)]);
    let d2 = lay.image(&layers2, Comp::Gzip, "amd64", json!({"Cmd": ["/bin/true"]}));
    lay.tag(d2.clone(), "v2");
    reg.push(&lay.dir, "v1", "test/app:v1", false);
    reg.push(&lay.dir, "v2", "test/app:v2", false);

    let r1 = format!("docker://127.0.0.1:{}/test/app:v1", reg.port);
    let before = reg.blob_gets().len();
    let id1 = berth_ok(&env, &["--insecure-options=http", "fetch", &r1]);
    assert_eq!(id1, d1["digest"].as_str().unwrap());
    let got1 = reg.blob_gets().len() - before;
    assert_eq!(got1, 4, "config and three layers: {:?}", reg.blob_gets());
    let rootfs = PathBuf::from(berth_ok(&env, &["image", "render", &r1]));
    let reference = umoci_unpack(&lay.dir, "v1", &env.work().join("umoci"));
    assert_same_tree(&rootfs, &reference);

    let r2 = format!("docker://127.0.0.1:{}/test/app:v2", reg.port);
    let before = reg.blob_gets();
    let id2 = berth_ok(&env, &["--insecure-options=http", "fetch", &r2]);
    assert_eq!(id2, d2["digest"].as_str().unwrap());
    let after = reg.blob_gets();
    let new: Vec<_> = after[before.len()..].to_vec();
    let m2: Value = serde_json::from_slice(&lay.read(d2["digest"].as_str().unwrap())).unwrap();
    let only_layer = m2["layers"][2]["digest"].as_str().unwrap().to_string();
    let config2 = m2["config"]["digest"].as_str().unwrap().to_string();
    let mut want = vec![only_layer.clone(), config2];
    want.sort();
    let mut new_sorted = new.clone();
    new_sorted.sort();
    assert_eq!(
        new_sorted, want,
        "only the new layer (and config) are downloaded"
    );

    // Fetching again asks for the manifest only.
    let before = reg.blob_gets().len();
    assert_eq!(
        berth_ok(&env, &["--insecure-options=http", "fetch", &r2]),
        id2
    );
    assert_eq!(reg.blob_gets().len(), before);

    let list = berth_ok(&env, &["image", "list", "--full"]);
    assert!(list.contains(&r1) && list.contains(&id1), "{list}");
    assert!(list.contains(&r2) && list.contains(&id2), "{list}");

    // Export, then read the archive back: the same image.
    let archive = env.work().join("v1.oci.tar");
    berth_ok(
        &env,
        &[
            "image",
            "export",
            "--format=oci-archive",
            &id1,
            archive.to_str().unwrap(),
        ],
    );
    let env2 = Env::new();
    let back = berth_ok(
        &env2,
        &["fetch", &format!("oci-archive:{}", archive.display())],
    );
    assert_eq!(back, id1);

    // rm v1 frees its own layer, keeps the shared ones.
    let m1: Value = serde_json::from_slice(&lay.read(&id1)).unwrap();
    let own = m1["layers"][2]["digest"].as_str().unwrap();
    let shared = m1["layers"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| env.store().join("cas/blobs/sha256").join(&d[7..]);
    assert!(blob(own).exists() && blob(shared).exists());
    berth_ok(&env, &["image", "rm", &id1]);
    assert!(!blob(own).exists(), "a layer no image uses is freed");
    assert!(blob(shared).exists(), "a layer another image uses stays");
    assert!(!rootfs.exists(), "the tree of the removed image is gone");
    // gc with no grace removes the rest.
    berth_ok(&env, &["image", "gc", "--grace-period=0s"]);
    assert!(!blob(shared).exists());
    assert!(!berth_ok(&env, &["image", "list"]).contains(&r2));
}

/// A multi-platform index: the host's platform by default, --platform to
/// pick another, and a clear error for one the index lacks.
#[test]
fn multi_platform_index() {
    let env = Env::new();
    let reg = Registry::start(&env.work().join("registry"));
    let mut lay = Layout::new(&env.work().join("layout"));
    let amd = lay.image(
        &[tar_of(&[E::File("arch", b"amd64\n", 0o644)])],
        Comp::Gzip,
        "amd64",
        json!({}),
    );
    let arm = lay.image(
        &[tar_of(&[E::File("arch", b"arm64\n", 0o644)])],
        Comp::Gzip,
        "arm64",
        json!({}),
    );
    lay.tag_index(vec![amd.clone(), arm.clone()], "multi");
    reg.push(&lay.dir, "multi", "test/multi:latest", true);
    let r = format!("docker://127.0.0.1:{}/test/multi", reg.port);
    let id = berth_ok(&env, &["--insecure-options=http", "fetch", &r]);
    assert_eq!(
        id,
        amd["digest"].as_str().unwrap(),
        "the host (amd64) manifest"
    );
    let root = PathBuf::from(berth_ok(&env, &["image", "render", &id]));
    assert_eq!(fs::read(root.join("arch")).unwrap(), b"amd64\n");
    let id = berth_ok(
        &env,
        &[
            "--insecure-options=http",
            "fetch",
            "--platform=linux/arm64",
            &r,
        ],
    );
    assert_eq!(id, arm["digest"].as_str().unwrap());
    let root = PathBuf::from(berth_ok(&env, &["image", "render", &id]));
    assert_eq!(fs::read(root.join("arch")).unwrap(), b"arm64\n");
    let err = berth_fails(
        &env,
        &[
            "--insecure-options=http",
            "fetch",
            "--platform=linux/s390x",
            &r,
        ],
    );
    assert!(
        err.contains("no image for platform linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
    // Without --insecure-options=http the registry is spoken to over TLS.
    let err = berth_fails(&env, &["fetch", &r]);
    assert!(err.contains("127.0.0.1"), "{err}");
}

/// Rewrites a static registry's replies (to cut or corrupt one).
type Tweak = Arc<dyn Fn(&Request, Reply) -> Reply + Send + Sync>;

/// A static registry v2 API on the loopback test server, serving one
/// layout image; `auth` demands a Bearer token from `/token` (Basic
/// alice:secret) and `tweak` rewrites replies.
fn static_registry(
    lay: &Layout,
    desc: &Value,
    repo: &'static str,
    auth: bool,
    tweak: Tweak,
) -> Server {
    static_registry_on(None, lay, desc, repo, auth, tweak)
}

/// [`static_registry`] over HTTPS with `pki`'s certificate when given.
fn static_registry_on(
    pki: Option<&Pki>,
    lay: &Layout,
    desc: &Value,
    repo: &'static str,
    auth: bool,
    tweak: Tweak,
) -> Server {
    let scheme = if pki.is_some() { "https" } else { "http" };
    let dir = lay.dir.clone();
    let mdigest = desc["digest"].as_str().unwrap().to_string();
    let port_cell: Arc<std::sync::OnceLock<u16>> = Arc::new(std::sync::OnceLock::new());
    let pc = port_cell.clone();
    let handler = move |req: &Request| {
        let port = *pc.get().unwrap();
        if req.path.starts_with("/token") {
            let ok =
                req.header("authorization") == Some(&format!("Basic {}", b64(b"alice:secret")));
            return if ok {
                Reply::ok(br#"{"token":"t0ken"}"#).header("Content-Type", "application/json")
            } else {
                Reply::new(401)
            };
        }
        if auth && req.header("authorization") != Some("Bearer t0ken") {
            return Reply::new(401).header(
                "WWW-Authenticate",
                &format!(
                    "Bearer realm=\"{scheme}://127.0.0.1:{port}/token\",service=\"test-registry\",scope=\"repository:{repo}:pull\""
                ),
            );
        }
        let prefix = format!("/v2/{repo}/");
        let Some(rest) = req.path.strip_prefix(&prefix) else {
            return Reply::new(404);
        };
        let reply = if let Some(r) = rest.strip_prefix("manifests/") {
            let d = if r.starts_with("sha256:") {
                r.to_string()
            } else {
                mdigest.clone()
            };
            match fs::read(dir.join("blobs/sha256").join(&d[7..])) {
                Ok(b) => Reply::ok(&b)
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .header("Docker-Content-Digest", &d),
                Err(_) => Reply::new(404),
            }
        } else if let Some(d) = rest.strip_prefix("blobs/") {
            match fs::read(dir.join("blobs/sha256").join(&d[7..])) {
                Ok(b) => Reply::ranged(req, &b, &format!("\"{d}\"")),
                Err(_) => Reply::new(404),
            }
        } else {
            Reply::new(404)
        };
        tweak(req, reply)
    };
    let server = match pki {
        Some(pki) => Server::https(pki, handler),
        None => Server::http(handler),
    };
    port_cell.set(server.addr.port()).unwrap();
    server
}

/// A Docker config.json with alice:secret for the registry on `port`.
fn write_alice_config(path: &Path, port: u16) {
    let auth = b64(b"alice:secret");
    fs::write(
        path,
        format!(r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
}

fn b64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn no_tweak() -> Tweak {
    Arc::new(|_: &Request, r: Reply| r)
}

/// A registry over HTTPS whose CA berth does not know is refused with the
/// way out in the message; it is trusted through `SSL_CERT_FILE`, or with
/// `--insecure-options=tls`; Bearer tokens come from it over HTTPS too.
#[test]
fn tls_registries() {
    let creds = Env::new();
    let mut lay = Layout::new(&creds.work().join("layout"));
    let d = lay.image(&main_layers(), Comp::Gzip, "amd64", main_config());
    lay.tag(d.clone(), "v1");
    let pki = Pki::new();
    let server = static_registry_on(Some(&pki), &lay, &d, "team/app", true, no_tweak());
    let r = format!("docker://127.0.0.1:{}/team/app:v1", server.addr.port());
    let cfg = creds.work().join("config.json");
    write_alice_config(&cfg, server.addr.port());
    let reg = format!("--registry-config={}", cfg.display());

    let env = Env::new();
    let err = berth_fails(&env, &["fetch", &reg, &r]);
    assert!(err.contains("--insecure-options=tls"), "{err}");

    let out = run(env
        .berth()
        .env("SSL_CERT_FILE", &pki.ca_file)
        .args(["fetch", &reg, &r]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(stdout(&out).trim(), d["digest"].as_str().unwrap());

    let env = Env::new();
    let id = berth_ok(&env, &["--insecure-options=tls", "fetch", &reg, &r]);
    assert_eq!(id, d["digest"].as_str().unwrap());
}

/// Token auth: the Bearer challenge is answered with a token fetched with
/// the Basic credentials of a Docker config.json; without them the error
/// says what to add.
#[test]
fn token_auth() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    let d = lay.image(&main_layers(), Comp::Gzip, "amd64", main_config());
    lay.tag(d.clone(), "v1");
    let server = static_registry(&lay, &d, "private/app", true, no_tweak());
    let r = format!("docker://127.0.0.1:{}/private/app:v1", server.addr.port());

    let err = berth_fails(
        &env,
        &[
            "--insecure-options=http",
            "fetch",
            "--registry-config=/nonexistent",
            &r,
        ],
    );
    assert!(err.contains("credentials"), "{err}");

    let cfg = env.work().join("config.json");
    write_alice_config(&cfg, server.addr.port());
    let id = berth_ok(
        &env,
        &[
            "--insecure-options=http",
            "fetch",
            "--registry-config",
            cfg.to_str().unwrap(),
            &r,
        ],
    );
    assert_eq!(id, d["digest"].as_str().unwrap());
    let reqs = server.requests();
    assert!(reqs.iter().any(|q| q.path.starts_with("/token")
        && q.path.contains("scope=repository%3Aprivate%2Fapp%3Apull")));
    assert!(reqs
        .iter()
        .filter(|q| q.path.contains("/blobs/"))
        .all(|q| q.header("authorization") == Some("Bearer t0ken")));
    let rootfs = PathBuf::from(berth_ok(&env, &["image", "render", &r]));
    assert_same_tree(
        &rootfs,
        &umoci_unpack(&lay.dir, "v1", &env.work().join("umoci")),
    );
}

/// An uncompressed image `v1` of a small layer and a big one (`words`
/// pseudo-random 4-byte words, `i * mult`), for interrupted pulls: the
/// layout, the manifest descriptor, the two layer digests and the big
/// file's content.
fn small_and_big_layers(
    env: &Env,
    words: u32,
    mult: u32,
) -> (Layout, Value, String, String, Vec<u8>) {
    let mut lay = Layout::new(&env.work().join("layout"));
    let big: Vec<u8> = (0..words)
        .flat_map(|i| (i.wrapping_mul(mult)).to_le_bytes())
        .collect();
    let layers = vec![
        tar_of(&[E::File("small", b"small layer\n", 0o644)]),
        tar_of(&[E::File("big", &big, 0o644)]),
    ];
    let d = lay.image(&layers, Comp::None, "amd64", json!({}));
    lay.tag(d.clone(), "v1");
    let m: Value = serde_json::from_slice(&lay.read(d["digest"].as_str().unwrap())).unwrap();
    let small = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let bigd = m["layers"][1]["digest"].as_str().unwrap().to_string();
    (lay, d, small, bigd, big)
}

/// A pull killed in the middle of a layer: the next one does not ask for
/// the finished layers again and resumes the broken one with Range.
#[test]
fn killed_pull_resumes() {
    let env = Env::new();
    let (lay, d, small, bigd, big) = small_and_big_layers(&env, 3_000_000, 2654435761);
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (c2, b2) = (cut.clone(), bigd.clone());
    let server = static_registry(
        &lay,
        &d,
        "app",
        false,
        Arc::new(move |req: &Request, r: Reply| {
            if req.path.ends_with(&b2) && c2.swap(false, std::sync::atomic::Ordering::SeqCst) {
                // The connection dies after 5 MB, as if the pull was killed.
                r.cut_after(5_000_000)
            } else {
                r
            }
        }),
    );
    let r = format!("docker://127.0.0.1:{}/app:v1", server.addr.port());
    berth_fails(&env, &["--insecure-options=http", "fetch", &r]);
    let first = server.requests().len();
    assert!(env
        .store()
        .join("cas/blobs/sha256")
        .join(&small[7..])
        .exists());
    let id = berth_ok(&env, &["--insecure-options=http", "fetch", &r]);
    assert_eq!(id, d["digest"].as_str().unwrap());
    let second = &server.requests()[first..];
    assert!(
        !second.iter().any(|q| q.path.ends_with(&small)),
        "the finished layer is not fetched again"
    );
    let resumed: Vec<_> = second.iter().filter(|q| q.path.ends_with(&bigd)).collect();
    assert_eq!(resumed.len(), 1);
    let range = resumed[0].header("range").unwrap_or_default();
    let offset: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(offset >= 4_000_000, "resumed from {range}");
    let root = PathBuf::from(berth_ok(&env, &["image", "render", &id]));
    assert_eq!(fs::read(root.join("big")).unwrap(), big);
}

/// A blob whose content does not match its digest is reported with the
/// digest and never stored; `verify` finds blobs damaged in the store.
#[test]
fn corrupt_blobs_are_reported() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    let d = lay.image(&main_layers(), Comp::Gzip, "amd64", main_config());
    lay.tag(d.clone(), "v1");
    let m: Value = serde_json::from_slice(&lay.read(d["digest"].as_str().unwrap())).unwrap();
    let bad = m["layers"][1]["digest"].as_str().unwrap().to_string();
    let b2 = bad.clone();
    let server = static_registry(
        &lay,
        &d,
        "app",
        false,
        Arc::new(move |req: &Request, mut r: Reply| {
            if req.path.ends_with(&b2) {
                let n = r.body.len() / 2;
                r.body[n] ^= 0xff;
            }
            r
        }),
    );
    let r = format!("docker://127.0.0.1:{}/app:v1", server.addr.port());
    let err = berth_fails(&env, &["--insecure-options=http", "fetch", &r]);
    assert!(err.contains(&bad) && err.contains("corrupt"), "{err}");
    assert!(!env
        .store()
        .join("cas/blobs/sha256")
        .join(&bad[7..])
        .exists());
    assert!(!env
        .store()
        .join("cas/partial")
        .join(format!("sha256-{}", &bad[7..]))
        .exists());

    // Damage in the store: verify names the tree or the blob and exits 1.
    let arg = format!("oci:{}:v1", lay.dir.display());
    let id = berth_ok(&env, &["fetch", &arg]);
    assert_eq!(
        berth_ok(&env, &["image", "verify", &id]),
        format!("image {id}: ok")
    );
    let rootfs = PathBuf::from(berth_ok(&env, &["image", "render", &id]));
    fs::write(rootfs.join("etc/passwd"), b"tampered\n").unwrap();
    let out = run(env.berth().args(["image", "verify", &id]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("CORRUPT: content hashes to"),
        "{}",
        stdout(&out)
    );
    berth_ok(&env, &["image", "gc", "--grace-period=24h"]);
    assert!(!rootfs.exists(), "gc removes trees no pod holds");
    let p = env.store().join("cas/blobs/sha256").join(&bad[7..]);
    let mut bytes = fs::read(&p).unwrap();
    bytes[10] ^= 1;
    fs::write(&p, bytes).unwrap();
    let out = run(env.berth().args(["image", "verify", &id]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("blob {bad}: CORRUPT")),
        "{}",
        stdout(&out)
    );
    let err = berth_fails(&env, &["image", "render", &id]);
    assert!(err.contains(&bad), "{err}");
}

/// docker save archives and OCI archives import as the layout does.
#[test]
fn archives() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    let layers = main_layers();
    let d = lay.image(&layers, Comp::Gzip, "amd64", main_config());
    lay.tag(d.clone(), "v1");
    let from_layout = PathBuf::from(berth_ok(
        &env,
        &["image", "render", &{
            let a = format!("oci:{}:v1", lay.dir.display());
            berth_ok(&env, &["fetch", &a]);
            a
        }],
    ));

    // oci-archive: the layout in a tar.
    let oa = env.work().join("image.oci.tar");
    let out = run(Command::new("tar")
        .arg("-C")
        .arg(&lay.dir)
        .arg("-cf")
        .arg(&oa)
        .arg("."));
    assert!(out.status.success());
    let env2 = Env::new();
    let id = berth_ok(
        &env2,
        &["fetch", &format!("oci-archive:{}:v1", oa.display())],
    );
    assert_eq!(id, d["digest"].as_str().unwrap());

    // docker-archive: manifest.json, the config, a tar per layer (one
    // linked to another, as docker save does for identical layers).
    let m: Value = serde_json::from_slice(&lay.read(d["digest"].as_str().unwrap())).unwrap();
    let config = lay.read(m["config"]["digest"].as_str().unwrap());
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("cfg.json", &config);
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let n = format!("l{i}/layer.tar");
        add(&n, l);
        names.push(n);
    }
    add("dup/layer.tar", &layers[0]);
    add(
        "manifest.json",
        &serde_json::to_vec(
            &json!([{"Config": "cfg.json", "RepoTags": ["example.com/app:1"], "Layers": names}]),
        )
        .unwrap(),
    );
    let da = env.work().join("image.docker.tar");
    fs::write(&da, b.into_inner().unwrap()).unwrap();
    let env3 = Env::new();
    let id = berth_ok(
        &env3,
        &["fetch", &format!("docker-archive:{}", da.display())],
    );
    assert!(id.starts_with("sha256:"));
    let rootfs = PathBuf::from(berth_ok(&env3, &["image", "render", &id]));
    assert_same_tree(&rootfs, &from_layout);
    let list = berth_ok(&env3, &["image", "list"]);
    assert!(list.contains("example.com/app:1"), "{list}");
    let err = berth_fails(
        &env3,
        &["fetch", &format!("docker-archive:{}:nope:2", da.display())],
    );
    assert!(err.contains("example.com/app:1"), "{err}");
}

/// Hostile layers are refused and never write or delete outside the tree.
#[test]
fn hostile_layers_refused() {
    let env = Env::new();
    let victim = env.work().join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("keep"), b"host file").unwrap();
    let victim_s = victim.display().to_string();
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "dotdot",
            vec![tar_of(&[E::File("../evil", b"x", 0o644)])],
            "\"..\"",
        ),
        (
            "whiteout-dotdot",
            vec![tar_of(&[
                E::Dir("a/", 0o755),
                E::File("a/.wh..", b"", 0o644),
            ])],
            "whiteout",
        ),
        (
            "through-symlink",
            vec![tar_of(&[
                E::Sym("l", &victim_s),
                E::File("l/new", b"x", 0o644),
            ])],
            "symlink",
        ),
    ];
    for (tag, layers, want) in &cases {
        let mut lay = Layout::new(&env.work().join(format!("layout-{tag}")));
        let d = lay.image(layers, Comp::Gzip, "amd64", json!({}));
        lay.tag(d, tag);
        let arg = format!("oci:{}:{tag}", lay.dir.display());
        berth_ok(&env, &["fetch", &arg]);
        let err = berth_fails(&env, &["image", "render", &arg]);
        assert!(err.contains(want), "{tag}: {err}");
    }
    // A lower layer's symlink is never followed by an upper layer's
    // whiteout or files (the upper directory replaces the link).
    let mut lay = Layout::new(&env.work().join("layout-lower"));
    let d = lay.image(
        &[
            tar_of(&[E::Sym("etc", &victim_s)]),
            tar_of(&[
                E::Dir("etc/", 0o755),
                E::File("etc/.wh.keep", b"", 0o644),
                E::File("etc/x", b"x", 0o644),
            ]),
        ],
        Comp::Gzip,
        "amd64",
        json!({}),
    );
    lay.tag(d, "t");
    let arg = format!("oci:{}:t", lay.dir.display());
    berth_ok(&env, &["fetch", &arg]);
    let root = PathBuf::from(berth_ok(&env, &["image", "render", &arg]));
    assert!(
        victim.join("keep").exists(),
        "a host file was deleted through a symlink"
    );
    assert!(
        !victim.join("x").exists(),
        "a host file was written through a symlink"
    );
    assert!(fs::symlink_metadata(root.join("etc")).unwrap().is_dir());
}

/// Foreign layers and non-image media types are refused with their digest.
#[test]
fn foreign_layers_refused() {
    let env = Env::new();
    let mut lay = Layout::new(&env.work().join("layout"));
    let d = lay.image(
        &[tar_of(&[E::File("f", b"f", 0o644)])],
        Comp::Gzip,
        "amd64",
        json!({}),
    );
    let mut m: Value = serde_json::from_slice(&lay.read(d["digest"].as_str().unwrap())).unwrap();
    m["layers"][0]["mediaType"] =
        json!("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip");
    let mb = serde_json::to_vec(&m).unwrap();
    let (md, mn) = lay.blob(&mb);
    lay.tag(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn}), "f");
    let err = berth_fails(&env, &["fetch", &format!("oci:{}:f", lay.dir.display())]);
    assert!(
        err.contains("foreign layer") && err.contains(m["layers"][0]["digest"].as_str().unwrap()),
        "{err}"
    );
}

/// The same with a real `kill -9` of berth in the middle of a slow layer:
/// the partial download survives the process and the next pull resumes it.
#[test]
fn kill_9_mid_pull_resumes() {
    let env = Env::new();
    let (lay, d, small, bigd, big) = small_and_big_layers(&env, 1_000_000, 2246822519);
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (s2, b2) = (slow.clone(), bigd.clone());
    let server = static_registry(
        &lay,
        &d,
        "app",
        false,
        Arc::new(move |req: &Request, r: Reply| {
            if req.path.ends_with(&b2) && s2.load(std::sync::atomic::Ordering::SeqCst) {
                r.throttle(32 * 1024, Duration::from_millis(20))
            } else {
                r
            }
        }),
    );
    let r = format!("docker://127.0.0.1:{}/app:v1", server.addr.port());
    let child = env
        .berth()
        .args(["--insecure-options=http", "fetch", &r])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let partial = env
        .store()
        .join("cas/partial")
        .join(format!("sha256-{}", &bigd[7..]));
    let t0 = Instant::now();
    while fs::metadata(&partial).map_or(0, |m| m.len()) < 500_000 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    guard.0.kill().unwrap(); // SIGKILL
    guard.0.wait().unwrap();
    slow.store(false, std::sync::atomic::Ordering::SeqCst);
    let kept = fs::metadata(&partial).unwrap().len();
    assert!(env
        .store()
        .join("cas/blobs/sha256")
        .join(&small[7..])
        .exists());
    let first = server.requests().len();
    let id = berth_ok(&env, &["--insecure-options=http", "fetch", &r]);
    assert_eq!(id, d["digest"].as_str().unwrap());
    let second = &server.requests()[first..];
    assert!(
        !second.iter().any(|q| q.path.ends_with(&small)),
        "the finished layer is not fetched again"
    );
    let resumed: Vec<_> = second.iter().filter(|q| q.path.ends_with(&bigd)).collect();
    assert_eq!(resumed.len(), 1);
    assert_eq!(
        resumed[0].header("range"),
        Some(format!("bytes={kept}-").as_str()),
        "resumed where the killed process stopped"
    );
    let root = PathBuf::from(berth_ok(&env, &["image", "render", &id]));
    assert_eq!(fs::read(root.join("big")).unwrap(), big);
}
