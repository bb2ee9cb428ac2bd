//! Integration tests of the image store: import, lookup, render with
//! dependencies, concurrency between threads and processes, crashes,
//! verify, schema migration.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use berth_appc::ImageId;
use berth_store::{
    ImageRef, ImportError, ImportOptions, ImportVerifier, Store, StoreError, TreeError, VerdictFn,
    VerifyOptions, VerifyStatus,
};
use common::*;
use serde_json::json;

fn import(store: &Store, bytes: &[u8]) -> ImageId {
    store
        .import_aci(bytes, ImportOptions::default())
        .unwrap()
        .id
}

/// Files under `dir` (recursively), for "nothing left behind" checks.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

fn blobs(root: &Path) -> Vec<String> {
    files_under(&root.join("cas/blobs"))
}

#[test]
fn import_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let bb = busybox();
    let tar = tar_aci(
        &manifest(
            "example.com/busybox",
            &[("version", "1.35"), ("os", "linux"), ("arch", "amd64")],
            json!([]),
            &[],
        ),
        &[
            file("bin/busybox", &bb),
            link("bin/sh", "busybox"),
            file("etc/motd", "hi\n"),
        ],
    );
    let want = id_of(&tar);
    let compressed = gz(&tar);
    let rep = store
        .import_aci(
            &compressed[..],
            ImportOptions {
                origin: Some("file:///images/busybox.aci".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(rep.id, want);
    assert!(!rep.already_present);
    assert_eq!(rep.blob_size, compressed.len() as u64);
    assert_eq!(rep.name.as_str(), "example.com/busybox");

    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    let info = &list[0];
    assert_eq!(info.id, want);
    assert_eq!(info.labels.get("version"), Some("1.35"));
    assert_eq!(info.origin.as_deref(), Some("file:///images/busybox.aci"));
    assert_eq!(info.compression.as_deref(), Some("gzip"));
    assert_eq!(info.blob_size, compressed.len() as u64);

    // Stored as received; exported file is the same bytes, hence the same ID.
    let out = d.path().join("out.aci");
    store.export(&want, &out, false).unwrap();
    let exported = fs::read(&out).unwrap();
    assert_eq!(exported, compressed);
    let mut dec = Vec::new();
    flate2::read::GzDecoder::new(&exported[..])
        .read_to_end(&mut dec)
        .unwrap();
    assert_eq!(id_of(&dec), want);
    assert!(matches!(
        store.export(&want, &out, false),
        Err(StoreError::Exists { .. })
    ));
    store.export(&want, &out, true).unwrap();

    // Extract the image alone.
    let x = d.path().join("x");
    store.extract(&want, &x, false, false).unwrap();
    assert_eq!(fs::read(x.join("rootfs/bin/busybox")).unwrap(), bb);
    assert_eq!(
        fs::read_link(x.join("rootfs/bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(x.join("manifest").is_file());
    assert!(matches!(
        store.extract(&want, &x, true, false),
        Err(StoreError::Exists { .. })
    ));
    store.extract(&want, &x, true, true).unwrap();
    assert!(x.join("bin/busybox").is_file());
    assert!(!x.join("manifest").exists());
    assert!(matches!(
        store.extract(&want, Path::new("/"), true, true),
        Err(StoreError::BadTarget { .. })
    ));

    // Manifest, raw and parsed.
    let m = store.manifest(&want).unwrap();
    assert_eq!(m.name.as_str(), "example.com/busybox");
    assert!(String::from_utf8(store.manifest_bytes(&want).unwrap())
        .unwrap()
        .contains("1.35"));

    // Importing again (uncompressed this time) changes nothing.
    let again = store
        .import_aci(&tar[..], ImportOptions::default())
        .unwrap();
    assert!(again.already_present);
    assert_eq!(store.list().unwrap().len(), 1);

    // Lookups.
    assert_eq!(store.lookup(&ImageRef::Id(want.clone())).unwrap().id, want);
    let prefix = &want.as_str()[..19];
    assert_eq!(store.resolve(prefix).unwrap().id, want);
    assert_eq!(store.resolve("example.com/busybox:1.35").unwrap().id, want);

    // Nothing left in the temp dirs.
    assert!(files_under(&d.path().join("tmp")).is_empty());
    // touch_last_used moves last_used forward.
    std::thread::sleep(Duration::from_millis(5));
    store.touch_last_used(&want).unwrap();
    let after = store.get(&want).unwrap().unwrap();
    assert!(after.last_used > info.last_used);
}

#[test]
fn wrong_expected_id_is_refused_and_nothing_visible() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let a = simple("example.com/a", &[], "a");
    let b = simple("example.com/b", &[], "b");
    let err = store
        .import_aci(
            &gz(&a)[..],
            ImportOptions {
                expected_id: Some(id_of(&b)),
                ..Default::default()
            },
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::Import(ImportError::IdMismatch { .. })),
        "{msg}"
    );
    assert!(
        msg.contains(id_of(&a).as_str()) && msg.contains(id_of(&b).as_str()),
        "{msg}"
    );
    assert!(store.list().unwrap().is_empty());
    assert!(blobs(d.path()).is_empty());
    assert!(files_under(&d.path().join("tmp")).is_empty());
    // The right ID is accepted.
    store
        .import_aci(
            &a[..],
            ImportOptions {
                expected_id: Some(id_of(&a)),
                expected_name: Some("example.com/a".try_into().unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    // A wrong name is refused.
    let err = store
        .import_aci(
            &b[..],
            ImportOptions {
                expected_name: Some("example.com/a".try_into().unwrap()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Import(ImportError::NameMismatch { .. })),
        "{err}"
    );
    assert_eq!(store.list().unwrap().len(), 1);
}

/// Counts the bytes it sees and accepts only when asked to.
struct Counting {
    seen: Vec<u8>,
    accept: bool,
    verdicts: usize,
}

impl ImportVerifier for Counting {
    fn update(&mut self, bytes: &[u8]) {
        self.seen.extend_from_slice(bytes);
    }
    fn verdict(
        &mut self,
        _id: &ImageId,
        m: &berth_appc::ImageManifest,
    ) -> Result<(), berth_store::VerifierError> {
        self.verdicts += 1;
        if self.accept {
            Ok(())
        } else {
            Err(format!("no valid signature for {}", m.name).into())
        }
    }
}

#[test]
fn verifier_sees_the_bytes_and_its_refusal_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let aci = gz(&simple("example.com/signed", &[], ""));
    let mut v = Counting {
        seen: Vec::new(),
        accept: false,
        verdicts: 0,
    };
    let err = store
        .import_aci(
            &aci[..],
            ImportOptions {
                verifier: Some(&mut v),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Import(ImportError::Refused { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("refused by verification"));
    assert_eq!(v.seen, aci, "the verifier sees the bytes as received");
    assert_eq!(v.verdicts, 1);
    assert!(store.list().unwrap().is_empty());
    assert!(blobs(d.path()).is_empty());
    assert!(store.resolve("example.com/signed").is_err());

    v.accept = true;
    v.seen.clear();
    store
        .import_aci(
            &aci[..],
            ImportOptions {
                verifier: Some(&mut v),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(v.seen, aci);
    assert_eq!(store.list().unwrap().len(), 1);

    // A closure verifier on the manifest.
    let mut deny = VerdictFn(|_: &ImageId, m: &berth_appc::ImageManifest| {
        if m.name.as_str().starts_with("evil.") {
            Err("untrusted prefix".into())
        } else {
            Ok(())
        }
    });
    let evil = simple("evil.example/x", &[], "");
    assert!(store
        .import_aci(
            &evil[..],
            ImportOptions {
                verifier: Some(&mut deny),
                ..Default::default()
            }
        )
        .is_err());
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn invalid_images_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    // No manifest.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, "rootfs", &[][..]).unwrap();
    let no_manifest = b.into_inner().unwrap();
    let err = store
        .import_aci(&no_manifest[..], ImportOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Import(ImportError::Invalid { .. })),
        "{err}: {:?}",
        std::error::Error::source(&err)
    );
    assert!(err.to_string().contains("manifest"), "{err}");
    // Truncated gzip stream.
    let good = gz(&simple("example.com/t", &[], ""));
    let err = store
        .import_aci(&good[..good.len() / 2], ImportOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Import(ImportError::Read(_))),
        "{err}"
    );
    assert!(store.list().unwrap().is_empty());
    assert!(blobs(d.path()).is_empty());
    assert!(files_under(&d.path().join("tmp")).is_empty());
}

#[test]
fn prefix_lookup_and_ambiguity() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    // Find two images whose IDs share their first two hex digits.
    let mut by_prefix: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let (a, b) = (0..10_000)
        .find_map(|i| {
            let t = simple("example.com/p", &[], &i.to_string());
            let p = id_of(&t).as_str()[..9].to_string();
            by_prefix.insert(p, t.clone()).map(|prev| (prev, t))
        })
        .unwrap();
    let ia = import(&store, &a);
    let ib = import(&store, &b);
    let common = &ia.as_str()[..9];
    let err = store.resolve(common).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Ambiguous { .. }), "{msg}");
    assert!(
        msg.contains(ia.as_str()) && msg.contains(ib.as_str()),
        "{msg}"
    );
    assert!(msg.contains("give more digits"), "{msg}");
    // A longer prefix is unique.
    let n = (9..ia.as_str().len())
        .find(|&n| ia.as_str()[..n] != ib.as_str()[..n])
        .unwrap();
    assert_eq!(store.resolve(&ia.as_str()[..n]).unwrap().id, ia);
    assert_eq!(store.resolve(&ib.as_str()[..n]).unwrap().id, ib);
    assert!(matches!(
        store.resolve("sha512-"),
        Err(StoreError::PrefixTooShort { .. })
    ));
    let missing = if ia.as_str().as_bytes()[7] == b'0' {
        "sha512-ff"
    } else {
        "sha512-00"
    };
    let missing = if common.starts_with(missing) {
        "sha512-0f"
    } else {
        missing
    };
    let err = store.resolve(missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("image {missing:?} not found in the store")
    );
}

#[test]
fn name_and_labels_lookup() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let amd10 = import(
        &store,
        &simple(
            "example.com/app",
            &[("version", "1.0"), ("os", "linux"), ("arch", "amd64")],
            "",
        ),
    );
    std::thread::sleep(Duration::from_millis(3));
    let arm10 = import(
        &store,
        &simple(
            "example.com/app",
            &[("version", "1.0"), ("os", "linux"), ("arch", "aarch64")],
            "",
        ),
    );
    std::thread::sleep(Duration::from_millis(3));
    let amd20 = import(
        &store,
        &simple(
            "example.com/app",
            &[("version", "2.0"), ("os", "linux"), ("arch", "amd64")],
            "",
        ),
    );
    import(
        &store,
        &simple("example.com/other", &[("version", "1.0")], ""),
    );

    let find = |labels: &[(&str, &str)]| {
        store.lookup(&ImageRef::Name {
            name: "example.com/app".try_into().unwrap(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    };
    assert_eq!(
        find(&[("version", "1.0"), ("arch", "amd64")]).unwrap().id,
        amd10
    );
    assert_eq!(
        find(&[("version", "1.0"), ("arch", "aarch64")]).unwrap().id,
        arm10
    );
    // Several match: the most recently imported.
    assert_eq!(find(&[("version", "1.0")]).unwrap().id, arm10);
    assert_eq!(find(&[("arch", "amd64")]).unwrap().id, amd20);
    assert_eq!(find(&[]).unwrap().id, amd20);
    assert_eq!(
        store.resolve("example.com/app:1.0,arch=amd64").unwrap().id,
        amd10
    );
    let err = store.resolve("example.com/app:3.0").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"image "example.com/app:3.0" not found in the store"#
    );
    let err = find(&[("version", "1.0"), ("arch", "s390x")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"image "example.com/app:1.0,arch=s390x" not found in the store"#
    );
}

/// The appc "Filesystem Setup" rules, checked file by file on a three-level
/// chain: top -> mid (by imageID) -> base (by name + labels), mid having a
/// pathWhitelist.
#[test]
fn dependencies_render_as_the_spec_says() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path().join("store")).unwrap();
    // A host directory the base layer's symlink points at: rendering must
    // never write into it.
    let host = d.path().join("host-dir");
    fs::create_dir(&host).unwrap();
    let bb = busybox();
    let base = tar_aci(
        &manifest(
            "example.com/base",
            &[("version", "1"), ("os", "linux")],
            json!([]),
            &[],
        ),
        &[
            file("etc/os-release", "base\n"),
            file("etc/passwd", "base\n"),
            file("etc/shadow", "base\n"),
            file("lib/libc.so", "base\n"),
            file("bin/busybox", &bb),
            link("evil", host.to_str().unwrap()),
            E::Dir("var/empty-dir"),
        ],
    );
    // Another base with other labels, imported later: must not be chosen.
    let base_other = tar_aci(
        &manifest(
            "example.com/base",
            &[("version", "2"), ("os", "linux")],
            json!([]),
            &[],
        ),
        &[file("etc/os-release", "base v2\n")],
    );
    let mid = tar_aci(
        &manifest(
            "example.com/mid",
            &[],
            json!([dep_name("example.com/base", &[("version", "1")])]),
            &[
                "/etc/os-release",
                "/etc/passwd",
                "/lib/libc.so",
                "/bin/busybox",
                "/evil/payload",
                "/mid.txt",
            ],
        ),
        &[
            file("etc/os-release", "mid\n"),
            file("mid.txt", "mid\n"),
            file("mid-extra.txt", "mid\n"),
            file("evil/payload", "mid\n"),
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
        &[
            file("etc/passwd", "top\n"),
            file("top.txt", "top\n"),
            link("lib", "/usr/lib"),
            file("usr/lib/libc.so", "top\n"),
        ],
    );
    let base_id = import(&store, &gz(&base));
    import(&store, &base_other);
    assert_eq!(import(&store, &mid), mid_id);
    let top_id = import(&store, &gz(&top));

    let tree = store.render(&top_id).unwrap();
    assert_eq!(
        tree.layers,
        vec![base_id.clone(), mid_id.clone(), top_id.clone()]
    );
    let r = tree.rootfs();
    let read = |p: &str| fs::read_to_string(r.join(p)).unwrap();
    assert_eq!(read("etc/os-release"), "mid\n", "mid overrides base");
    assert_eq!(read("etc/passwd"), "top\n", "top overrides base");
    assert!(
        !r.join("etc/shadow").exists(),
        "not in mid's whitelist: dropped"
    );
    assert!(
        !r.join("mid-extra.txt").exists(),
        "mid's own file, not whitelisted: dropped"
    );
    assert!(
        !r.join("var").exists(),
        "directories not on a whitelisted path: dropped"
    );
    assert_eq!(read("mid.txt"), "mid\n");
    assert_eq!(
        read("top.txt"),
        "top\n",
        "the top image is not filtered by its dependency's whitelist"
    );
    assert_eq!(fs::read(r.join("bin/busybox")).unwrap(), bb);
    assert_eq!(
        fs::metadata(r.join("bin/busybox")).unwrap().mode() & 0o777,
        0o755
    );
    // A symlink over a directory replaces it.
    assert_eq!(fs::read_link(r.join("lib")).unwrap(), Path::new("/usr/lib"));
    assert_eq!(read("usr/lib/libc.so"), "top\n");
    // The base's symlink to a host directory was replaced by mid's directory,
    // and nothing was written through it.
    let evil = fs::symlink_metadata(r.join("evil")).unwrap();
    assert!(evil.is_dir(), "symlink replaced by a real directory");
    assert_eq!(read("evil/payload"), "mid\n");
    assert_eq!(
        fs::read_dir(&host).unwrap().count(),
        0,
        "nothing written through the symlink"
    );
    // The tree's manifest is the top image's.
    assert!(fs::read_to_string(tree.manifest_path())
        .unwrap()
        .contains("example.com/top"));
    assert!(fs::read_to_string(tree.path.join("hash"))
        .unwrap()
        .starts_with("sha512-"));

    // Rendered once: a second render reuses it.
    let ino = fs::metadata(r.join("top.txt")).unwrap().ino();
    let again = store.render(&top_id).unwrap();
    assert_eq!(again.key, tree.key);
    assert_eq!(
        fs::metadata(again.rootfs().join("top.txt")).unwrap().ino(),
        ino
    );
    let info = store.get(&top_id).unwrap().unwrap();
    assert!(info.tree_size > 0 && info.size() > info.blob_size);

    // render_to copies the rendered tree.
    let out = d.path().join("out");
    store.render_to(&top_id, &out, true).unwrap();
    assert_eq!(fs::read_to_string(out.join("etc/passwd")).unwrap(), "top\n");
    assert!(fs::symlink_metadata(out.join("evil")).unwrap().is_dir());
    assert_eq!(fs::read(out.join("bin/busybox")).unwrap(), bb);
    let out2 = d.path().join("out2");
    store.render_to(&top_id, &out2, false).unwrap();
    assert!(out2.join("manifest").is_file());
    assert_eq!(
        fs::read_to_string(out2.join("rootfs/mid.txt")).unwrap(),
        "mid\n"
    );
    assert!(matches!(
        store.render_to(&top_id, &out2, false),
        Err(StoreError::Exists { .. })
    ));
}

/// Render order for DAGs: `A -> [B, C], C -> [D]` gives B, D, C, A;
/// `A -> [B, C], B -> [D], C -> [D]` gives D, B, D, C, A.
#[test]
fn dependency_order_is_depth_first() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let mk = |name: &str, deps: serde_json::Value| {
        tar_aci(
            &manifest(name, &[], deps, &[]),
            &[
                file("who", name),
                file(&format!("{}.txt", name.replace('/', "_")), "x"),
            ],
        )
    };
    let dd = import(&store, &mk("example.com/d", json!([])));
    let b = import(&store, &mk("example.com/b", json!([])));
    let c = import(
        &store,
        &mk("example.com/c", json!([dep_name("example.com/d", &[])])),
    );
    let a = import(
        &store,
        &mk(
            "example.com/a",
            json!([
                dep_name("example.com/b", &[]),
                dep_name("example.com/c", &[])
            ]),
        ),
    );
    let t = store.render(&a).unwrap();
    assert_eq!(t.layers, vec![b.clone(), dd.clone(), c.clone(), a.clone()]);
    assert_eq!(
        fs::read_to_string(t.rootfs().join("who")).unwrap(),
        "example.com/a"
    );

    let b2 = import(
        &store,
        &mk("example.com/b2", json!([dep_name("example.com/d", &[])])),
    );
    let a2 = import(
        &store,
        &mk(
            "example.com/a2",
            json!([
                dep_name("example.com/b2", &[]),
                dep_name("example.com/c", &[])
            ]),
        ),
    );
    let t = store.render(&a2).unwrap();
    assert_eq!(t.layers, vec![dd.clone(), b2, dd, c, a2]);
}

#[test]
fn dependency_cycle_and_missing_dependency_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let x = import(
        &store,
        &tar_aci(
            &manifest(
                "example.com/x",
                &[],
                json!([dep_name("example.com/y", &[])]),
                &[],
            ),
            &[file("x", "x")],
        ),
    );
    import(
        &store,
        &tar_aci(
            &manifest(
                "example.com/y",
                &[],
                json!([dep_name("example.com/x", &[])]),
                &[],
            ),
            &[file("y", "y")],
        ),
    );
    let err = store.render(&x).unwrap_err();
    assert!(
        matches!(err, StoreError::Tree(TreeError::Cycle { .. })),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "dependency cycle: example.com/x -> example.com/y -> example.com/x"
    );

    let n = import(
        &store,
        &tar_aci(
            &manifest(
                "example.com/needs-nope",
                &[],
                json!([dep_name("example.com/nope", &[("version", "1.0")])]),
                &[],
            ),
            &[file("n", "n")],
        ),
    );
    let err = store.render(&n).unwrap_err();
    assert!(
        matches!(err, StoreError::Tree(TreeError::MissingDependency { .. })),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "dependency \"example.com/nope:1.0\" of image \"example.com/needs-nope\" ({n}) is not in the store; fetch it first"
        )
    );
    // Nothing rendered, nothing left in tmp.
    assert_eq!(fs::read_dir(d.path().join("tree")).unwrap().count(), 0);
    assert!(files_under(&d.path().join("tmp")).is_empty());
}

#[test]
fn two_threads_import_the_same_image() {
    let d = tempfile::tempdir().unwrap();
    let mut bytes = tar_aci(
        &manifest("example.com/race", &[], json!([]), &[]),
        &[
            file("bin/busybox", busybox()),
            file("big", vec![7u8; 4 << 20]),
        ],
    );
    bytes = gz(&bytes);
    let bytes = Arc::new(bytes);
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (dir, bytes, barrier) = (d.path().to_path_buf(), bytes.clone(), barrier.clone());
            std::thread::spawn(move || {
                // Each thread its own Store, as two processes would.
                let store = Store::open(&dir).unwrap();
                barrier.wait();
                store
                    .import_aci(&bytes[..], ImportOptions::default())
                    .unwrap()
            })
        })
        .collect();
    let reports: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(reports[0].id, reports[1].id);
    assert_eq!(reports.iter().filter(|r| !r.already_present).count(), 1);
    let store = Store::open(d.path()).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(store
        .verify(&[], VerifyOptions::default())
        .unwrap()
        .is_clean());
    assert_eq!(blobs(d.path()).len(), 1);
}

/// Run one ignored test of this binary in a child process.
fn child(test: &str, envs: &[(&str, &Path)]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

#[test]
#[ignore = "run by two_processes_import_the_same_image"]
fn child_import() {
    let Some(dir) = std::env::var_os("BERTH_TEST_STORE") else {
        return;
    };
    let aci = fs::read(std::env::var_os("BERTH_TEST_ACI").unwrap()).unwrap();
    let store = Store::open(&dir).unwrap();
    let r = store
        .import_aci(&aci[..], ImportOptions::default())
        .unwrap();
    println!("IMPORTED {} {}", r.id, r.already_present);
}

#[test]
fn two_processes_import_the_same_image() {
    let d = tempfile::tempdir().unwrap();
    let aci = d.path().join("x.aci");
    let tar = tar_aci(
        &manifest("example.com/procs", &[], json!([]), &[]),
        &[file("bin/busybox", busybox())],
    );
    fs::write(&aci, gz(&tar)).unwrap();
    let store_dir = d.path().join("store");
    let kids: Vec<_> = (0..2)
        .map(|_| {
            child(
                "child_import",
                &[("BERTH_TEST_STORE", &store_dir), ("BERTH_TEST_ACI", &aci)],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut fresh = 0;
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(out.status.success());
        let s = String::from_utf8_lossy(&out.stdout);
        let line = s
            .lines()
            .find(|l| l.contains("IMPORTED"))
            .unwrap_or_else(|| panic!("child output: {s}"));
        assert!(line.contains(id_of(&tar).as_str()));
        if line.ends_with("false") {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one process stored the image");
    let store = Store::open(&store_dir).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(store
        .verify(&[], VerifyOptions::default())
        .unwrap()
        .is_clean());
    assert!(files_under(&store_dir.join("tmp")).is_empty());
}

#[test]
fn gc_racing_imports() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    Store::open(&dir).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let store = Store::open(&dir).unwrap();
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || runs < 3 {
                // Grace 0: every image not being imported is fair game.
                let rep = store.gc(Duration::ZERO).unwrap();
                assert!(rep.orphans.removed_blobs.is_empty(), "{rep:?}");
                runs += 1;
            }
            runs
        })
    };
    let store = Store::open(&dir).unwrap();
    for i in 0..20 {
        let aci = gz(&simple(
            "example.com/gc",
            &[("version", &i.to_string())],
            &"x".repeat(i * 1000),
        ));
        let r = store
            .import_aci(&aci[..], ImportOptions::default())
            .unwrap();
        // Either still there and whole, or removed whole by gc.
        if store.get(&r.id).unwrap().is_some() {
            let blob = store.open_blob(&r.id);
            assert!(blob.is_ok() || store.get(&r.id).unwrap().is_none());
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(gc.join().unwrap() >= 3);
    let v = store.verify(&[], VerifyOptions::default()).unwrap();
    assert!(v.is_clean(), "{v:?}");
    // With a grace period, gc keeps what was imported just now.
    let keep = import(&store, &simple("example.com/keep", &[], ""));
    let rep = store.gc(Duration::from_secs(3600)).unwrap();
    assert!(rep.removed_images.is_empty());
    assert!(store.get(&keep).unwrap().is_some());
    // Every blob has its row and every row its blob.
    assert_eq!(blobs(&dir).len(), store.list().unwrap().len());
}

#[test]
fn gc_keeps_leased_trees_and_their_images() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let base = import(&store, &simple("example.com/base", &[], ""));
    let app = import(
        &store,
        &tar_aci(
            &manifest(
                "example.com/app",
                &[],
                json!([dep_name("example.com/base", &[])]),
                &[],
            ),
            &[file("app", "1")],
        ),
    );
    let (tree, lease) = store.render_leased(&app, "pod-1234").unwrap();
    assert_eq!(lease.holder(), "pod-1234");
    let rep = store.gc(Duration::ZERO).unwrap();
    assert!(rep.removed_trees.is_empty(), "{rep:?}");
    assert_eq!(rep.kept_trees.len(), 1);
    assert!(
        rep.kept_trees[0]
            .1
            .iter()
            .any(|h| h.starts_with("pod-1234")),
        "{rep:?}"
    );
    assert!(rep.removed_images.is_empty(), "{rep:?}");
    assert!(rep.kept_images.contains(&base) && rep.kept_images.contains(&app));
    assert!(tree.rootfs().join("app").is_file());
    // remove refuses, naming the holder.
    let err = store.remove(&base).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("pod-1234") && msg.contains(tree.key.as_str()),
        "{msg}"
    );
    // A second lease on the same tree (another pod) also works.
    let lease2 = store.tree_lease(&tree.key, "pod-5678").unwrap();
    drop(lease);
    assert!(store.gc(Duration::ZERO).unwrap().removed_trees.is_empty());
    drop(lease2);
    let rep = store.gc(Duration::ZERO).unwrap();
    assert_eq!(rep.removed_trees.len(), 1);
    assert_eq!(rep.removed_images.len(), 2);
    assert!(rep.freed > 0);
    assert!(!tree.path.exists());
    assert!(store.list().unwrap().is_empty());
    assert!(blobs(d.path()).is_empty());
    assert!(matches!(
        store.tree_lease(&tree.key, "late"),
        Err(StoreError::Tree(TreeError::NotRendered { .. }))
    ));
}

#[test]
#[ignore = "run by a lease_dies_with_its_process"]
fn child_hold_lease() {
    let Some(dir) = std::env::var_os("BERTH_TEST_STORE") else {
        return;
    };
    let store = Store::open(&dir).unwrap();
    let id = store.resolve("example.com/leased").unwrap().id;
    let (_tree, _lease) = store.render_leased(&id, "pod-child").unwrap();
    println!("LEASED");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_lease_dies_with_its_process() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    import(&store, &simple("example.com/leased", &[], ""));
    let mut kid = child("child_hold_lease", &[("BERTH_TEST_STORE", d.path())])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(kid.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("LEASED")));
    let rep = store.gc(Duration::ZERO).unwrap();
    assert!(
        rep.removed_trees.is_empty() && rep.removed_images.is_empty(),
        "{rep:?}"
    );
    kid.kill().unwrap(); // SIGKILL: no destructor runs, the kernel drops the flock
    kid.wait().unwrap();
    let rep = store.gc(Duration::ZERO).unwrap();
    assert_eq!(rep.removed_trees.len(), 1, "{rep:?}");
    assert_eq!(rep.removed_images.len(), 1);
}

#[test]
#[ignore = "run by kill_9_mid_import_leaves_nothing"]
fn child_import_stdin() {
    let Some(dir) = std::env::var_os("BERTH_TEST_STORE") else {
        return;
    };
    let store = Store::open(&dir).unwrap();
    let opts = ImportOptions {
        render: std::env::var_os("BERTH_TEST_RENDER").is_some(),
        ..Default::default()
    };
    let _ = store.import_aci(std::io::stdin().lock(), opts);
}

#[test]
fn kill_9_mid_import_leaves_nothing() {
    kill_9_mid_import(false);
}

/// The same with the tree rendered on the import's pass: the half-extracted
/// staging tree is in the dead process's temp dir, never under tree/.
#[test]
fn kill_9_mid_import_with_render_leaves_nothing() {
    kill_9_mid_import(true);
}

fn kill_9_mid_import(render: bool) {
    let d = tempfile::tempdir().unwrap();
    let tar = tar_aci(
        &manifest("example.com/crash", &[], json!([]), &[]),
        &[
            file("bin/busybox", busybox()),
            file(
                "big",
                (0..8u32 << 20).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
            ),
        ],
    );
    let aci = gz(&tar);
    let store_dir = d.path().join("store");
    let mut envs = vec![("BERTH_TEST_STORE", store_dir.as_path())];
    if render {
        envs.push(("BERTH_TEST_RENDER", Path::new("1")));
    }
    let mut kid = child("child_import_stdin", &envs)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // A slow pipe: half the image, then wait until the child has written
    // part of it into its temp dir, then kill -9.
    let mut stdin = kid.stdin.take().unwrap();
    stdin.write_all(&aci[..aci.len() / 2]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partial: u64 = files_under(&store_dir.join("tmp"))
            .iter()
            .filter_map(|f| fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        if partial > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "child never started importing");
        std::thread::sleep(Duration::from_millis(20));
    }
    kid.kill().unwrap();
    kid.wait().unwrap();
    drop(stdin);
    // The dead process's temp dir is there until the next open.
    assert!(!files_under(&store_dir.join("tmp")).is_empty());
    let store = Store::open(&store_dir).unwrap();
    assert!(
        files_under(&store_dir.join("tmp")).is_empty(),
        "open cleaned tmp/"
    );
    assert_eq!(
        fs::read_dir(store_dir.join("tmp")).unwrap().count(),
        1,
        "only our own dir"
    );
    assert!(store.list().unwrap().is_empty());
    assert!(blobs(&store_dir).is_empty());
    assert!(
        fs::read_dir(store_dir.join("tree"))
            .unwrap()
            .next()
            .is_none(),
        "no tree visible"
    );
    // Retry works.
    let r = store
        .import_aci(
            &aci[..],
            ImportOptions {
                render,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.id, id_of(&tar));
    if render {
        let t = r.tree.expect("the retry rendered the tree");
        assert_eq!(fs::read(t.rootfs().join("big")).unwrap().len(), 8 << 20);
        assert!(files_under(&store_dir.join("tmp")).is_empty());
    }
    assert!(store
        .verify(&[], VerifyOptions::default())
        .unwrap()
        .is_clean());
}

#[test]
fn blob_without_row_is_adopted_and_row_without_blob_dropped() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let tar = simple("example.com/orphan", &[], "");
    let id = import(&store, &tar);
    let blob = store.blob_path(&(&id).into());
    // Simulate a crash between rename and insert: a blob with no row.
    let saved = fs::read(&blob).unwrap();
    let rm = store.remove(&id).unwrap();
    assert_eq!(rm.size, saved.len() as u64);
    fs::write(&blob, &saved).unwrap();
    // And garbage under a valid-looking name.
    let junk = store.blob_path(&format!("sha512-{}", "ab".repeat(64)).parse().unwrap());
    fs::write(&junk, b"junk").unwrap();
    let rep = store.gc(Duration::from_secs(3600)).unwrap();
    assert_eq!(rep.orphans.adopted, vec![id.clone()]);
    assert_eq!(rep.orphans.removed_blobs.len(), 1);
    assert!(!junk.exists());
    assert_eq!(
        store.get(&id).unwrap().unwrap().origin.as_deref(),
        Some("adopted")
    );
    // A row whose blob is gone is dropped.
    fs::remove_file(&blob).unwrap();
    let v = store
        .verify(&[], VerifyOptions { drop_corrupt: true })
        .unwrap();
    assert_eq!(v.orphans.dropped_rows, vec![id.to_string()]);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn verify_finds_a_flipped_byte_in_a_blob_and_in_a_tree() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let good = import(&store, &simple("example.com/good", &[], ""));
    let tar = tar_aci(
        &manifest("example.com/flip", &[], json!([]), &[]),
        &[
            file("data", vec![b'a'; 10_000]),
            file("bin/busybox", busybox()),
        ],
    );
    let id = import(&store, &tar); // stored uncompressed: easy to flip a content byte
    let tree = store.render(&id).unwrap();
    let clean = store.verify(&[], VerifyOptions::default()).unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!(clean.trees.len(), 1);

    // Flip a byte in the tree.
    let f = tree.rootfs().join("data");
    let mut data = fs::read(&f).unwrap();
    data[5000] ^= 1;
    fs::write(&f, &data).unwrap();
    let rep = store
        .verify(std::slice::from_ref(&id), VerifyOptions::default())
        .unwrap();
    assert_eq!(rep.images, vec![(id.clone(), VerifyStatus::Ok)]);
    assert!(
        matches!(rep.trees[0].1, VerifyStatus::Corrupt { .. }),
        "{rep:?}"
    );

    // Flip a byte in the blob.
    let blob = store.blob_path(&(&id).into());
    let mut b = fs::read(&blob).unwrap();
    let pos = b
        .windows(100)
        .position(|w| w.iter().all(|&c| c == b'a'))
        .unwrap()
        + 50;
    b[pos] ^= 1;
    fs::write(&blob, &b).unwrap();
    let rep = store.verify(&[], VerifyOptions::default()).unwrap();
    let st = rep.images.iter().find(|(i, _)| *i == id).unwrap();
    assert!(
        matches!(&st.1, VerifyStatus::Corrupt { reason } if reason.contains("hashes to")),
        "{rep:?}"
    );
    assert_eq!(
        rep.images.iter().find(|(i, _)| *i == good).unwrap().1,
        VerifyStatus::Ok
    );
    // Rendering from a corrupt blob is refused too (the ID is re-checked).
    fs::remove_dir_all(d.path().join("tree")).unwrap();
    fs::create_dir(d.path().join("tree")).unwrap();
    // (the row still names the tree; gc reconciles, then render re-extracts)
    store.gc(Duration::from_secs(3600)).unwrap();
    let err = store.render(&id).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");

    // Dropping removes the corrupt image only.
    let rep = store
        .verify(&[], VerifyOptions { drop_corrupt: true })
        .unwrap();
    assert!(rep.dropped.contains(&id.to_string()), "{rep:?}");
    assert!(store.get(&id).unwrap().is_none());
    assert!(store.get(&good).unwrap().is_some());
}

#[test]
fn http_cache_data() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let url = "https://example.com/app-1.0.aci";
    assert!(store.http_cache(url).unwrap().is_none());
    let fetched_at = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let tar = simple("example.com/cached", &[], "");
    let r = store
        .import_aci(
            &tar[..],
            ImportOptions {
                origin: Some(url.into()),
                http_cache: Some(berth_store::HttpCacheEntry {
                    url: url.into(),
                    image_id: None,
                    etag: Some("\"abc\"".into()),
                    last_modified: None,
                    max_age: Some(Duration::from_secs(600)),
                    fetched_at,
                }),
                ..Default::default()
            },
        )
        .unwrap();
    let c = store.http_cache(url).unwrap().unwrap();
    assert_eq!(c.image_id, Some(r.id.clone()));
    assert_eq!(c.etag.as_deref(), Some("\"abc\""));
    assert_eq!(c.max_age, Some(Duration::from_secs(600)));
    assert_eq!(c.fetched_at, fetched_at);
    let mut c2 = c.clone();
    c2.etag = Some("\"def\"".into());
    store.set_http_cache(&c2).unwrap();
    assert_eq!(store.http_cache(url).unwrap().unwrap(), c2);
}

#[test]
fn schema_migration_from_version_1() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("cas")).unwrap();
    let db = d.path().join("cas/index.db");
    let tar = simple("example.com/old", &[("version", "0.9")], "");
    let id = id_of(&tar);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(berth_store::index::MIGRATIONS[0])
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let m = manifest("example.com/old", &[("version", "0.9")], json!([]), &[]);
        conn.execute(
            "INSERT INTO images (id, name, blob_size, import_time, last_used, manifest) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![id.as_str(), "example.com/old", tar.len() as i64, 1_600_000_000_000i64, 1_600_000_000_000i64, m],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO image_labels (image_id, name, value) VALUES (?1, 'version', '0.9')",
            rusqlite::params![id.as_str()],
        )
        .unwrap();
    }
    fs::create_dir_all(d.path().join("cas/blobs/sha512")).unwrap();
    fs::write(
        d.path().join("cas/blobs/sha512").join(id.digest_hex()),
        &tar,
    )
    .unwrap();

    let store = Store::open(d.path()).unwrap();
    let info = store.resolve("example.com/old:0.9").unwrap();
    assert_eq!(info.id, id);
    assert_eq!(info.kind, berth_store::ImageKind::Aci);
    assert_eq!(info.origin, None);
    assert_eq!(
        info.import_time,
        std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
    );
    // The new tables work on the migrated database.
    store.render(&id).unwrap();
    assert!(store
        .verify(&[], VerifyOptions::default())
        .unwrap()
        .is_clean());
    drop(store);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let v: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, berth_store::index::SCHEMA_VERSION);
    assert!(
        d.path().join("cas/index.v1.bak").exists(),
        "backup before migrating"
    );

    // A database from a newer berth is refused, clearly.
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(d.path()).unwrap_err();
    assert!(
        err.to_string().contains("newer than this berth knows"),
        "{err}"
    );
}

#[test]
fn put_blob_sha256() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let (dg, n) = store.put_blob(&b"layer bytes"[..], None).unwrap();
    assert_eq!(n, 11);
    assert_eq!(dg.algorithm(), "sha256");
    assert_eq!(fs::read(store.blob_path(&dg)).unwrap(), b"layer bytes");
    let wrong = format!("sha256:{}", "00".repeat(32)).parse().unwrap();
    assert!(matches!(
        store.put_blob(&b"x"[..], Some(&wrong)),
        Err(StoreError::DigestMismatch { .. })
    ));
}

fn vm_hwm_kib() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "run by import_memory_stays_small"]
fn child_import_big() {
    let Some(dir) = std::env::var_os("BERTH_TEST_STORE") else {
        return;
    };
    let dir = Path::new(&dir);
    // A 256 MiB image, streamed to disk (never in memory).
    let aci = dir.join("big.aci");
    {
        let f = fs::File::create(&aci).unwrap();
        let gz =
            flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let m = manifest("example.com/big", &[], json!([]), &[]);
        let mut h = header(tar::EntryType::Regular, 0o644, m.len() as u64);
        b.append_data(&mut h, "manifest", &m[..]).unwrap();
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, "rootfs", &[][..]).unwrap();
        for i in 0..4 {
            let size = 64u64 << 20;
            let mut h = header(tar::EntryType::Regular, 0o644, size);
            let data = std::io::repeat(b'a' + i as u8).take(size);
            b.append_data(&mut h, format!("rootfs/blob{i}"), data)
                .unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }
    let store = Store::open(dir.join("store")).unwrap();
    let before = vm_hwm_kib();
    let f = fs::File::open(&aci).unwrap();
    // Rendering on the same pass (what `berth fetch` does) must stay as
    // small: the extraction and its content hashing stream too.
    let rep = store.import_aci(f, render_opts()).unwrap();
    assert!(rep.tree.is_some(), "{:?}", rep.render_error);
    let after = vm_hwm_kib();
    println!("HWM {before} {after}");
}

#[test]
fn import_memory_stays_small() {
    let d = tempfile::tempdir().unwrap();
    let out = child("child_import_big", &[("BERTH_TEST_STORE", d.path())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .find_map(|l| l.split_once("HWM "))
        .map(|(_, r)| r.to_string())
        .unwrap();
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    // Peak resident memory of the whole process, importing 256 MiB.
    assert!(
        v[1] < 64 * 1024,
        "peak RSS {} KiB (was {} KiB before the import)",
        v[1],
        v[0]
    );
}

/// A tree is not synced when rendered; its `durable` marker names the boot.
/// After a reboot (another boot id in the marker), the first render checks
/// it: an intact tree is kept and marked `synced`, one that lost data (or
/// its marker) is rendered again; a lease waits for that check.
#[test]
fn tree_not_known_durable_is_checked_and_rebuilt_if_damaged() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let id = import(
        &store,
        &tar_aci(
            &manifest("example.com/durable", &[], json!([]), &[]),
            &[file("a.txt", "hello\n"), file("dir/b.txt", "world\n")],
        ),
    );
    let t = store.render(&id).unwrap();
    let marker = t.path.join("durable");
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(
        fs::read_to_string(&marker).unwrap(),
        format!("boot {}\n", boot.trim())
    );
    let ino = fs::metadata(t.rootfs().join("a.txt")).unwrap().ino();
    let other_boot = "boot 00000000-0000-0000-0000-000000000000\n";

    // Rendered before a "reboot", intact: kept (same inode), now `synced`.
    fs::write(&marker, other_boot).unwrap();
    assert!(matches!(
        store.tree_lease(&t.key, "pod"),
        Err(StoreError::Tree(TreeError::NotRendered { .. }))
    ));
    let again = store.render(&id).unwrap();
    assert_eq!(again.key, t.key);
    assert_eq!(
        fs::metadata(again.rootfs().join("a.txt")).unwrap().ino(),
        ino
    );
    assert_eq!(fs::read_to_string(&marker).unwrap(), "synced\n");
    drop(store.tree_lease(&t.key, "pod").unwrap());

    // A "crash" truncated a file and lost the marker's data: rebuilt.
    fs::write(&marker, "").unwrap();
    fs::write(t.rootfs().join("dir/b.txt"), "").unwrap();
    let rebuilt = store.render(&id).unwrap();
    assert_eq!(
        fs::read_to_string(rebuilt.rootfs().join("dir/b.txt")).unwrap(),
        "world\n"
    );
    assert!(fs::read_to_string(&marker).unwrap().starts_with("boot "));
    let report = store.verify(&[], VerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:?}");

    // The marker itself missing: checked too (kept when intact).
    fs::remove_file(&marker).unwrap();
    let ino = fs::metadata(t.rootfs().join("a.txt")).unwrap().ino();
    store.render(&id).unwrap();
    assert_eq!(fs::metadata(t.rootfs().join("a.txt")).unwrap().ino(), ino);
    assert_eq!(fs::read_to_string(&marker).unwrap(), "synced\n");
}

/// An image with what a tree hash must see: modes (setuid, a 0700
/// directory), owners, a hard link, a symlink, an empty file, a fifo, a
/// file bigger than one I/O buffer, and an xattr.
fn rich_image(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let m = manifest(name, &[], json!([]), &[]);
    let mut h = header(tar::EntryType::Regular, 0o644, m.len() as u64);
    b.append_data(&mut h, "manifest", &m[..]).unwrap();
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32| {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, p, &[][..]).unwrap();
    };
    dir(&mut b, "rootfs", 0o755);
    dir(&mut b, "rootfs/bin", 0o755);
    dir(&mut b, "rootfs/secret", 0o700);
    let put = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32, uid: u64, data: &[u8]| {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(uid);
        b.append_data(&mut h, p, data).unwrap();
    };
    put(&mut b, "rootfs/bin/su", 0o4755, 0, b"#!/bin/sh\necho su\n");
    put(&mut b, "rootfs/secret/key", 0o600, 1000, b"k3y\n");
    put(&mut b, "rootfs/empty", 0o644, 0, b"");
    let big: Vec<u8> = (0..(700u32 << 10)).map(|i| (i * 31 % 251) as u8).collect();
    put(&mut b, "rootfs/big", 0o644, 0, &big);
    let mut h = header(tar::EntryType::Link, 0o4755, 0);
    b.append_link(&mut h, "rootfs/bin/su2", "rootfs/bin/su")
        .unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "rootfs/bin/sh", "/bin/su").unwrap();
    let mut h = header(tar::EntryType::Fifo, 0o640, 0);
    b.append_data(&mut h, "rootfs/fifo", &[][..]).unwrap();
    // An xattr, as a PAX record before its file.
    b.append_pax_extensions([("SCHILY.xattr.user.berth", &b"yes"[..])])
        .unwrap();
    put(&mut b, "rootfs/attr", 0o644, 0, b"with an xattr\n");
    b.into_inner().unwrap()
}

/// Everything about a tree a pod would see: per path, type, mode, owner,
/// size and content (files) or target (symlinks), inode sharing.
fn describe_tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>, inodes: &mut Vec<(u64, String)>) {
        let p = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let mut line = format!(
            "{rel} mode={:o} uid={} gid={} mtime={}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime()
        );
        if ft.is_symlink() {
            line += &format!(" -> {}", fs::read_link(&p).unwrap().display());
        } else if ft.is_file() {
            let data = fs::read(&p).unwrap();
            let h: String = sha2::Sha512::digest(&data)[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            line += &format!(" size={} sha={h}", data.len());
            if m.nlink() > 1 {
                match inodes.iter().find(|(i, _)| *i == m.ino()) {
                    Some((_, first)) => line += &format!(" same-inode-as={first}"),
                    None => inodes.push((m.ino(), rel.to_string())),
                }
            }
        }
        out.push(line);
        if ft.is_dir() {
            let mut names: Vec<String> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let r = if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                };
                walk(root, &r, out, inodes);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out, &mut Vec::new());
    out
}

fn render_opts<'a>() -> ImportOptions<'a> {
    ImportOptions {
        render: true,
        ..Default::default()
    }
}

use sha2::Digest as _;

/// The single pass (import extracts and hashes as it streams) leaves the
/// same tree, with the same key, rows and content hash, as an import then a
/// render; verify accepts it and finds a flipped byte in it.
#[test]
fn import_with_render_leaves_the_tree_a_render_makes() {
    let d = tempfile::tempdir().unwrap();
    let tar = rich_image("example.com/rich");
    let aci = gz(&tar);

    let one = Store::open(d.path().join("one")).unwrap();
    let rep = one.import_aci(&aci[..], render_opts()).unwrap();
    assert_eq!(rep.id, id_of(&tar));
    assert_eq!(rep.render_error, None);
    let tree = rep.tree.clone().expect("a tree was rendered by the import");
    assert!(tree.rootfs().join("bin/su").is_file());
    assert!(files_under(&d.path().join("one/tmp")).is_empty());
    // render finds it ready: same tree, same inode (not re-extracted).
    let ino = fs::metadata(tree.rootfs().join("big")).unwrap().ino();
    let again = one.render(&rep.id).unwrap();
    assert_eq!(again, tree);
    assert_eq!(fs::metadata(again.rootfs().join("big")).unwrap().ino(), ino);

    let two = Store::open(d.path().join("two")).unwrap();
    let plain = two.import_aci(&aci[..], ImportOptions::default()).unwrap();
    assert_eq!(plain.tree, None);
    assert!(fs::read_dir(d.path().join("two/tree"))
        .unwrap()
        .next()
        .is_none());
    let rendered = two.render(&plain.id).unwrap();

    assert_eq!(tree.key, rendered.key);
    assert_eq!(describe_tree(&tree.path), describe_tree(&rendered.path));
    for f in ["hash", "layers", "manifest"] {
        assert_eq!(
            fs::read(tree.path.join(f)).unwrap(),
            fs::read(rendered.path.join(f)).unwrap(),
            "{f}"
        );
    }
    let su = fs::metadata(tree.rootfs().join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!(
        su.ino(),
        fs::metadata(tree.rootfs().join("bin/su2")).unwrap().ino()
    );

    // verify re-hashes the tree from disk and agrees with the hash the
    // import computed from the stream.
    let v = one.verify(&[], VerifyOptions::default()).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.trees.len(), 1);
    assert_eq!(v.trees[0].1, VerifyStatus::Ok);

    // A flipped byte in a file the import hashed as it wrote it.
    let f = tree.rootfs().join("big");
    let mut data = fs::read(&f).unwrap();
    data[300_000] ^= 1;
    fs::write(&f, &data).unwrap();
    let v = one.verify(&[], VerifyOptions::default()).unwrap();
    assert!(
        matches!(v.trees[0].1, VerifyStatus::Corrupt { .. }),
        "{v:?}"
    );
    assert_eq!(v.images, vec![(rep.id.clone(), VerifyStatus::Ok)]);
}

/// An image refused by its import (wrong ID, a verifier's "no") leaves no
/// tree and no staging directory, though it was extracted on the way.
#[test]
fn refused_import_with_render_leaves_no_tree() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let tar = rich_image("example.com/refused");
    let other = simple("example.com/other", &[], "");
    let nothing_left = || {
        assert!(store.list().unwrap().is_empty());
        assert!(blobs(d.path()).is_empty());
        assert!(
            fs::read_dir(d.path().join("tree"))
                .unwrap()
                .next()
                .is_none(),
            "no tree"
        );
        assert!(
            files_under(&d.path().join("tmp")).is_empty(),
            "no staging dir: {:?}",
            files_under(&d.path().join("tmp"))
        );
    };
    let err = store
        .import_aci(
            &gz(&tar)[..],
            ImportOptions {
                expected_id: Some(id_of(&other)),
                render: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Import(ImportError::IdMismatch { .. })),
        "{err}"
    );
    nothing_left();

    let mut v = Counting {
        seen: Vec::new(),
        accept: false,
        verdicts: 0,
    };
    let err = store
        .import_aci(
            &gz(&tar)[..],
            ImportOptions {
                verifier: Some(&mut v),
                render: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Import(ImportError::Refused { .. })),
        "{err}"
    );
    assert_eq!(v.verdicts, 1);
    nothing_left();

    // A truncated stream and an invalid image: the same.
    let aci = gz(&tar);
    assert!(store
        .import_aci(&aci[..aci.len() / 2], render_opts())
        .is_err());
    nothing_left();
    let mut bad = tar::Builder::new(Vec::new());
    let m = manifest("example.com/bad", &[], json!([]), &[]);
    let mut h = header(tar::EntryType::Regular, 0o644, m.len() as u64);
    bad.append_data(&mut h, "manifest", &m[..]).unwrap();
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    bad.append_data(&mut h, "rootfs", &[][..]).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o644, 3);
    bad.append_data(&mut h, "rootfs/ok", &b"ok\n"[..3]).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o644, 3);
    bad.append_data(&mut h, "outside", &b"bad"[..]).unwrap();
    let bad = bad.into_inner().unwrap();
    assert!(matches!(
        store.import_aci(&bad[..], render_opts()),
        Err(StoreError::Import(ImportError::Invalid { .. }))
    ));
    nothing_left();

    // Accepted: the tree appears.
    v.accept = true;
    let rep = store
        .import_aci(
            &gz(&tar)[..],
            ImportOptions {
                verifier: Some(&mut v),
                render: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(rep.tree.is_some());
    assert!(files_under(&d.path().join("tmp")).is_empty());
}

/// An image with dependencies is not its own tree: the import stores it
/// and renders nothing (its dependencies may come later), leaving no
/// staging directory; rendering it once they are there works as before.
#[test]
fn import_with_render_of_an_image_with_dependencies_renders_nothing() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let base = simple("example.com/base", &[], "");
    let app = tar_aci(
        &manifest(
            "example.com/app",
            &[],
            json!([dep_id("example.com/base", &id_of(&base))]),
            &[],
        ),
        &[file("app", "app\n")],
    );
    let rep = store.import_aci(&app[..], render_opts()).unwrap();
    assert_eq!((rep.tree, rep.render_error), (None, None));
    assert!(files_under(&d.path().join("tmp")).is_empty());
    assert!(fs::read_dir(d.path().join("tree"))
        .unwrap()
        .next()
        .is_none());
    // A whitelist alone also makes the tree differ from the image.
    let listed = tar_aci(
        &manifest("example.com/listed", &[], json!([]), &["/a"]),
        &[file("a", "a\n"), file("b", "b\n")],
    );
    let rep = store.import_aci(&listed[..], render_opts()).unwrap();
    assert_eq!(rep.tree, None);
    let t = store.render(&rep.id).unwrap();
    assert!(t.rootfs().join("a").exists() && !t.rootfs().join("b").exists());
    // The base renders on import; then the app renders from both.
    let rep = store.import_aci(&base[..], render_opts()).unwrap();
    assert!(rep.tree.is_some());
    let t = store.render(&id_of(&app)).unwrap();
    assert!(t.rootfs().join("app").is_file() && t.rootfs().join("etc/hello").is_file());
    assert!(store
        .verify(&[], VerifyOptions::default())
        .unwrap()
        .is_clean());
}
