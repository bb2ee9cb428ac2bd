//! OCI layer extraction: whiteouts and opaque markers are reported (never
//! created), and hostile layers are refused like hostile ACIs.

use std::fs;

use berth_appc::aci::{extract_layer, AciError, ExtractOptions};

fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
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
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, path, t).unwrap();
            }
            None if path.ends_with('/') => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
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
