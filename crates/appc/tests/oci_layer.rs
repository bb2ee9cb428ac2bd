//! OCI layer extraction: whiteouts and opaque markers are reported (never
//! created), and hostile layers are refused like hostile ACIs; over the tree
//! of the layers below, hard links may name its files (never through a
//! symlink, never a directory); the diff_id covers the whole uncompressed
//! stream.

use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_appc::aci::{
    extract_layer, extract_layer_with, AciError, ExtractOptions, LayerOptions, LayerReport,
};
use sha2::{Digest as _, Sha256};

/// A layer of files and directories (a trailing `/`) with symlinks
/// (`(path, Some(target))`).
fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
    layer_of(entries, tar::EntryType::Symlink)
}

/// Files (`content of PATH`), directories (a trailing `/`) and links of
/// `link_type` (`(path, Some(target))`).
fn layer_of(entries: &[(&str, Option<&str>)], link_type: tar::EntryType) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_mode(0o644);
        h.set_size(0);
        match link {
            Some(t) => {
                h.set_entry_type(link_type);
                b.append_link(&mut h, path, t).unwrap();
            }
            None if path.ends_with('/') => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            None => {
                let data = format!("content of {path}\n");
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn whiteouts_are_reported_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let tar = layer(&[
        ("etc/", None),
        ("etc/.wh.passwd", None),
        ("opt/", None),
        ("opt/.wh..wh..opq", None),
        ("opt/new", None),
        (".wh..wh.plnk/", None),
    ]);
    let r = extract_layer(&tar[..], dir.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(r.whiteouts, vec![vec![b"etc".to_vec(), b"passwd".to_vec()]]);
    assert_eq!(r.opaque_dirs, vec![vec![b"opt".to_vec()]]);
    assert!(dir.path().join("opt/new").exists());
    assert!(!dir.path().join("etc/.wh.passwd").exists());
    assert!(!dir.path().join("opt/.wh..wh..opq").exists());
    // A layer holds rootfs paths: no manifest needed, no rootfs/ level.
    assert!(fs::read_dir(dir.path()).unwrap().count() == 2);
}

#[test]
fn hostile_whiteouts_are_refused() {
    for bad in ["a/.wh..", "a/.wh...", ".wh."] {
        let dir = tempfile::tempdir().unwrap();
        let tar = layer(&[("a/", None), (bad, None)]);
        let err = extract_layer(&tar[..], dir.path(), &ExtractOptions::default()).unwrap_err();
        assert!(
            matches!(&err, AciError::Hostile { reason, .. } if reason.contains("whiteout")),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn paths_through_a_layer_symlink_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().display().to_string();
    let tar = layer(&[("l", Some(&target)), ("l/x", None)]);
    let err = extract_layer(&tar[..], dir.path(), &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, AciError::Hostile { .. }), "{err:?}");
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
}

/// A layer of files and directories (a trailing `/`) with hard links
/// (`(path, Some(target))`).
fn layer_with_links(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
    layer_of(entries, tar::EntryType::Link)
}

/// A lower tree (`usr/bin/tool`, the directory `usr/lib/`) and an empty
/// staging directory next to it (one filesystem).
fn lower_and_stage() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let lower = top.path().join("lower");
    fs::create_dir_all(lower.join("usr/bin")).unwrap();
    fs::create_dir_all(lower.join("usr/lib")).unwrap();
    fs::write(lower.join("usr/bin/tool"), b"tool\n").unwrap();
    let stage = top.path().join("stage");
    fs::create_dir(&stage).unwrap();
    (top, lower, stage)
}

fn over(tar: &[u8], stage: &Path, lower: &Path) -> Result<LayerReport, AciError> {
    let l = fs::File::open(lower).unwrap();
    let with = LayerOptions {
        lower: Some(l.as_fd()),
        diff_id: true,
    };
    extract_layer_with(tar, stage, &ExtractOptions::default(), &with)
}

#[test]
fn hard_link_to_a_lower_file_shares_its_inode() {
    let (_top, lower, stage) = lower_and_stage();
    let tar = layer_with_links(&[
        ("usr/", None),
        ("usr/bin/", None),
        ("usr/bin/l2", Some("usr/bin/tool")),
        // A link to the staged link: the same inode again.
        ("usr/bin/l3", Some("usr/bin/l2")),
    ]);
    let r = over(&tar, &stage, &lower).unwrap();
    let tool = fs::metadata(lower.join("usr/bin/tool")).unwrap();
    for l in ["usr/bin/l2", "usr/bin/l3"] {
        let m = fs::symlink_metadata(stage.join(l)).unwrap();
        assert_eq!((m.dev(), m.ino()), (tool.dev(), tool.ino()), "{l}");
    }
    assert_eq!(tool.nlink(), 3);
    assert_eq!(
        r.diff_id.unwrap(),
        format!("sha256:{:x}", Sha256::digest(&tar))
    );

    // Without a lower tree (the bottom layer) such a link is refused as
    // before.
    let empty = tempfile::tempdir().unwrap();
    let err = extract_layer(&tar[..], empty.path(), &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, AciError::Hostile { .. }), "{err:?}");
}

#[test]
fn hard_link_to_a_lower_directory_or_nothing_is_refused() {
    for (target, want) in [
        ("usr/lib", "a directory"),
        ("usr/bin", "a directory"),
        ("usr/bin/nope", "neither this layer nor the layers below"),
        ("nope/x", "neither this layer nor the layers below"),
        ("usr/bin/tool/x", "not a directory"),
        ("l2", "itself"),
    ] {
        let (_top, lower, stage) = lower_and_stage();
        let tar = layer_with_links(&[("l2", Some(target))]);
        let err = over(&tar, &stage, &lower).unwrap_err();
        assert!(
            matches!(&err, AciError::Hostile { reason, .. } if reason.contains(want)),
            "{target}: {err:?}"
        );
        assert!(fs::symlink_metadata(stage.join("l2")).is_err());
    }
}

/// CVE-2014-6407: `a/b/f` where the lower `a` is a symlink to a host
/// directory must never link the host's `b/f`.
#[test]
fn hard_link_through_a_lower_symlink_is_refused() {
    let (top, lower, stage) = lower_and_stage();
    let host = top.path().join("host");
    fs::create_dir_all(host.join("b")).unwrap();
    fs::write(host.join("b/f"), b"host secret\n").unwrap();
    std::os::unix::fs::symlink(&host, lower.join("a")).unwrap();
    std::os::unix::fs::symlink(host.join("b/f"), lower.join("leaf")).unwrap();
    let tar = layer_with_links(&[("l2", Some("a/b/f"))]);
    let err = over(&tar, &stage, &lower).unwrap_err();
    assert!(
        matches!(&err, AciError::Hostile { reason, .. } if reason.contains("symlink")),
        "{err:?}"
    );
    assert!(fs::symlink_metadata(stage.join("l2")).is_err());
    assert_eq!(fs::metadata(host.join("b/f")).unwrap().nlink(), 1);

    // A link to a lower symlink links the symlink itself, not its target.
    let tar = layer_with_links(&[("l3", Some("leaf"))]);
    over(&tar, &stage, &lower).unwrap();
    assert!(fs::symlink_metadata(stage.join("l3"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::metadata(host.join("b/f")).unwrap().nlink(), 1);
    assert_eq!(fs::read(host.join("b/f")).unwrap(), b"host secret\n");

    // Nor through a symlink of the layer itself.
    let stage2 = top.path().join("stage2");
    fs::create_dir(&stage2).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (kind, path, target) in [
        (tar::EntryType::Symlink, "usr", host.to_str().unwrap()),
        (tar::EntryType::Link, "l4", "usr/bin/tool"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, path, target).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let err = over(&tar, &stage2, &lower).unwrap_err();
    assert!(
        matches!(&err, AciError::Hostile { reason, .. } if reason.contains("symlink")),
        "{err:?}"
    );
}

/// As umoci applies a layer in archive order: a whiteout (or opaque marker)
/// before the link has deleted the lower file; one after it has not.
#[test]
fn hard_link_and_whiteouts_of_its_target() {
    for (entries, ok) in [
        (
            vec![
                ("usr/bin/l2", Some("usr/bin/tool")),
                ("usr/bin/.wh.tool", None),
            ],
            true,
        ),
        (
            vec![
                ("usr/bin/.wh.tool", None),
                ("usr/bin/l2", Some("usr/bin/tool")),
            ],
            false,
        ),
        (
            vec![("usr/.wh.bin", None), ("l2", Some("usr/bin/tool"))],
            false,
        ),
        (
            vec![("usr/.wh..wh..opq", None), ("l2", Some("usr/bin/tool"))],
            false,
        ),
        (
            vec![
                ("usr/bin/.wh..wh..opq", None),
                ("usr/bin/l2", Some("usr/bin/tool")),
            ],
            false,
        ),
        (
            vec![
                ("usr/bin/l2", Some("usr/bin/tool")),
                ("usr/bin/.wh..wh..opq", None),
            ],
            true,
        ),
        // An opaque marker in the target's own directory hides its content,
        // not the directory: a link to a sibling directory's file is fine.
        (
            vec![("usr/lib/.wh..wh..opq", None), ("l2", Some("usr/bin/tool"))],
            true,
        ),
    ] {
        let (_top, lower, stage) = lower_and_stage();
        let tar = layer_with_links(&entries);
        let r = over(&tar, &stage, &lower);
        assert_eq!(r.is_ok(), ok, "{entries:?}: {r:?}");
        if let Err(err) = r {
            assert!(
                matches!(&err, AciError::Hostile { reason, .. } if reason.contains("whiteout")),
                "{err:?}"
            );
        }
    }
}

/// The diff_id is the SHA-256 of every uncompressed byte, padding after
/// the end-of-archive blocks included, whatever the compression.
#[test]
fn diff_id_covers_the_whole_uncompressed_stream() {
    let mut tar = layer_with_links(&[("a/", None), ("a/f", None)]);
    tar.extend_from_slice(&[0u8; 3 * 10240]);
    let want = format!("sha256:{:x}", Sha256::digest(&tar));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    for bytes in [&tar, &gz] {
        let dir = tempfile::tempdir().unwrap();
        let with = LayerOptions {
            lower: None,
            diff_id: true,
        };
        let r =
            extract_layer_with(&bytes[..], dir.path(), &ExtractOptions::default(), &with).unwrap();
        assert_eq!(r.diff_id.as_deref(), Some(want.as_str()));
        assert_eq!(r.tar_size, tar.len() as u64);
    }
    // Not asked for, not computed.
    let dir = tempfile::tempdir().unwrap();
    let r = extract_layer(&tar[..], dir.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(r.diff_id, None);
}
