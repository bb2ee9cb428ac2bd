//! Hostile and broken archives, written by hand. Each must be reported by
//! `validate` (a problem naming the entry) and refused by `extract` (an error
//! naming the entry), and extraction must leave everything outside its target
//! exactly as it was: the target is a subdirectory of a scratch directory that
//! also holds a canary file and an "outside" directory, the places these
//! archives aim at.

mod aci_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aci_support::*;
use berth_appc::aci::{self, AciError, Compression, DevicePolicy, ExtractOptions};

struct Scene {
    _t: tempfile::TempDir,
    top: PathBuf,
    dest: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("top");
        fs::create_dir_all(top.join("outside")).unwrap();
        fs::write(top.join("canary"), "canary\n").unwrap();
        let dest = top.join("a/b/dest");
        fs::create_dir_all(&dest).unwrap();
        Scene { _t: t, top, dest }
    }
    fn abs(&self, rel: &str) -> String {
        self.top.join(rel).display().to_string()
    }
    fn snapshot(&self) -> Vec<String> {
        snapshot(&self.top, &self.dest)
    }
}

fn entry_of(e: &AciError) -> Option<&str> {
    match e {
        AciError::Hostile { entry, .. }
        | AciError::Device { entry }
        | AciError::Extract { entry, .. }
        | AciError::Truncated { entry } => Some(entry),
        _ => None,
    }
}

/// `validate` reports `entry` and `extract` refuses it; nothing outside the
/// target changes.
fn assert_refused(s: &Scene, tar: &[u8], entry: &str) {
    for data in [tar.to_vec(), gzip(tar)] {
        let v = aci::validate(&data[..]).unwrap();
        assert!(!v.is_valid());
        assert!(
            v.problems.iter().any(|p| p.path == entry),
            "validate did not name {entry:?}: {:?}",
            v.problems
        );
        let before = s.snapshot();
        let dest = s.dest.clone();
        fs::remove_dir_all(&dest).unwrap();
        fs::create_dir(&dest).unwrap();
        let err = aci::extract(&data[..], &dest, &ExtractOptions::default()).unwrap_err();
        assert_eq!(entry_of(&err), Some(entry), "extract: {err:?}");
        assert_eq!(before, s.snapshot(), "something outside the target changed");
        assert_eq!(fs::read(s.top.join("canary")).unwrap(), b"canary\n");
        assert_eq!(fs::metadata(s.top.join("canary")).unwrap().nlink(), 1);
        assert_eq!(fs::read_dir(s.top.join("outside")).unwrap().count(), 0);
    }
}

#[test]
fn dotdot_traversal() {
    let s = Scene::new();
    let tar = RawTar::default()
        .start()
        .file("rootfs/../../../../outside/pwned", b"x")
        .finish();
    assert_refused(&s, &tar, "rootfs/../../../../outside/pwned");
    let tar = RawTar::default()
        .start()
        .file("../../canary", b"pwned")
        .finish();
    assert_refused(&s, &tar, "../../canary");
}

#[test]
fn absolute_path() {
    let s = Scene::new();
    let name = s.abs("outside/pwned");
    let tar = RawTar::default().start().file(&name, b"x").finish();
    assert_refused(&s, &tar, &name);
}

#[test]
fn absolute_symlink_then_write_through_it() {
    let s = Scene::new();
    let tar = RawTar::default()
        .start()
        .symlink("rootfs/link", &s.abs("outside"))
        .file("rootfs/link/pwned", b"x")
        .finish();
    // The symlink itself is fine (absolute links resolve in the rootfs).
    let v = aci::validate(&tar[..]).unwrap();
    assert!(
        !v.problems.iter().any(|p| p.path == "rootfs/link"),
        "{:?}",
        v.problems
    );
    assert_refused(&s, &tar, "rootfs/link/pwned");
    // Same, the symlink pointing at a file, then the file written again.
    let tar = RawTar::default()
        .start()
        .symlink("rootfs/f", &s.abs("canary"))
        .file("rootfs/f", b"pwned")
        .finish();
    assert_refused(&s, &tar, "rootfs/f");
}

#[test]
fn relative_symlink_escaping_then_write_through_it() {
    let s = Scene::new();
    let tar = RawTar::default()
        .start()
        .symlink("rootfs/up", "../../../outside")
        .file("rootfs/up/pwned", b"x")
        .finish();
    assert_refused(&s, &tar, "rootfs/up");
    let v = aci::validate(&tar[..]).unwrap();
    assert!(
        v.problems.iter().any(|p| p.path == "rootfs/up/pwned"),
        "{:?}",
        v.problems
    );
    // A harmless relative link, then a write through it: still refused.
    let tar = RawTar::default()
        .start()
        .dir("rootfs/d/")
        .symlink("rootfs/l", "d")
        .file("rootfs/l/x", b"x")
        .finish();
    assert_refused(&s, &tar, "rootfs/l/x");
}

#[test]
fn hard_links_outside() {
    let s = Scene::new();
    let tar = RawTar::default()
        .start()
        .hard_link("rootfs/passwd", "../../canary")
        .finish();
    assert_refused(&s, &tar, "rootfs/passwd");
    let abs = s.abs("canary");
    let tar = RawTar::default()
        .start()
        .hard_link("rootfs/passwd", &abs)
        .finish();
    assert_refused(&s, &tar, "rootfs/passwd");
    // To the manifest (outside rootfs/), to a later entry, to a directory.
    let tar = RawTar::default()
        .start()
        .hard_link("rootfs/m", "manifest")
        .finish();
    assert_refused(&s, &tar, "rootfs/m");
    let tar = RawTar::default()
        .start()
        .hard_link("rootfs/early", "rootfs/late")
        .file("rootfs/late", b"x")
        .finish();
    assert_refused(&s, &tar, "rootfs/early");
    let tar = RawTar::default()
        .start()
        .dir("rootfs/d/")
        .hard_link("rootfs/dl", "rootfs/d")
        .finish();
    assert_refused(&s, &tar, "rootfs/dl");
    // Hard link, then the link overwritten with content (docker CVE-2014-6407).
    let tar = RawTar::default()
        .start()
        .hard_link("rootfs/h", &abs)
        .file("rootfs/h", b"pwned")
        .finish();
    assert_refused(&s, &tar, "rootfs/h");
}

#[test]
fn duplicates_and_layout() {
    let s = Scene::new();
    let tar = RawTar::default()
        .start()
        .file("rootfs/a", b"1")
        .file("rootfs/a", b"2")
        .finish();
    assert_refused(&s, &tar, "rootfs/a");
    let tar = RawTar::default()
        .start()
        .dir("rootfs/x/")
        .symlink("rootfs/x", "/etc")
        .finish();
    assert_refused(&s, &tar, "rootfs/x");
    let tar = RawTar::default().start().file("etc/passwd", b"x").finish();
    assert_refused(&s, &tar, "etc/passwd");
    let tar = RawTar::default().start().file("README", b"x").finish();
    assert_refused(&s, &tar, "README");
    // The manifest as a directory, as a symlink, twice.
    let tar = RawTar::default().dir("manifest/").dir("rootfs/").finish();
    assert_refused(&s, &tar, "manifest/");
    let tar = RawTar::default()
        .symlink("manifest", &s.abs("canary"))
        .dir("rootfs/")
        .finish();
    assert_refused(&s, &tar, "manifest");
    let tar = RawTar::default()
        .start()
        .file("manifest", MANIFEST.as_bytes())
        .finish();
    assert_refused(&s, &tar, "manifest");
    // rootfs not a directory.
    let tar = RawTar::default()
        .file("manifest", MANIFEST.as_bytes())
        .file("rootfs", b"x")
        .finish();
    assert_refused(&s, &tar, "rootfs");
    // A file used as a directory.
    let tar = RawTar::default()
        .start()
        .file("rootfs/f", b"x")
        .file("rootfs/f/g", b"x")
        .finish();
    assert_refused(&s, &tar, "rootfs/f/g");
}

#[test]
fn missing_pieces_and_bad_manifest() {
    let s = Scene::new();
    let tar = RawTar::default()
        .dir("rootfs/")
        .file("rootfs/a", b"x")
        .finish();
    let v = aci::validate(&tar[..]).unwrap();
    assert!(
        v.problems.iter().any(|p| p.path == "manifest"),
        "{:?}",
        v.problems
    );
    let err = aci::extract(&tar[..], &s.dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(&err, AciError::Layout { path, .. } if path.ends_with("manifest")),
        "{err}"
    );

    let tar = RawTar::default()
        .file("manifest", MANIFEST.as_bytes())
        .finish();
    let v = aci::validate(&tar[..]).unwrap();
    assert!(
        v.problems.iter().any(|p| p.path == "rootfs"),
        "{:?}",
        v.problems
    );

    let tar = RawTar::default()
        .file(
            "manifest",
            br#"{"acKind": "ImageManifest", "acVersion": "0.8.11"}"#,
        )
        .dir("rootfs/")
        .finish();
    let v = aci::validate(&tar[..]).unwrap();
    assert!(v.manifest.is_none() && v.manifest_bytes.is_some());
    assert!(
        v.problems.iter().any(|p| p.path == "manifest"),
        "{:?}",
        v.problems
    );
    fs::remove_dir_all(&s.dest).unwrap();
    fs::create_dir(&s.dest).unwrap();
    let err = aci::extract(&tar[..], &s.dest, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, AciError::Manifest(_)), "{err}");

    let err = aci::read_manifest_bytes(&RawTar::default().dir("rootfs/").finish()[..]).unwrap_err();
    assert!(matches!(err, AciError::Layout { .. }), "{err}");
}

#[test]
fn device_nodes() {
    let s = Scene::new();
    let tar = RawTar::default()
        .start()
        .dir("rootfs/dev/")
        .entry_dev(b"rootfs/dev/null", b'3', b"", 0o666, b"", (1, 3))
        .entry_dev(b"rootfs/dev/sda", b'4', b"", 0o660, b"", (8, 0))
        .finish();
    // Valid per the spec: warnings, not problems.
    let v = aci::validate(&tar[..]).unwrap();
    assert!(v.is_valid(), "{:?}", v.problems);
    assert!(v.warnings.iter().any(|w| w.path == "rootfs/dev/null"));
    assert!(v.warnings.iter().any(|w| w.path == "rootfs/dev/sda"));
    let err = aci::extract(&tar[..], &s.dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(&err, AciError::Device { entry } if entry == "rootfs/dev/null"),
        "{err}"
    );

    fs::remove_dir_all(&s.dest).unwrap();
    fs::create_dir(&s.dest).unwrap();
    let skip = ExtractOptions {
        devices: DevicePolicy::Skip,
        ..ExtractOptions::default()
    };
    let r = aci::extract(&tar[..], &s.dest, &skip).unwrap();
    assert_eq!(r.skipped, ["rootfs/dev/null", "rootfs/dev/sda"]);
    assert!(!s.dest.join("rootfs/dev/null").exists());

    if is_root() {
        fs::remove_dir_all(&s.dest).unwrap();
        fs::create_dir(&s.dest).unwrap();
        let create = ExtractOptions {
            devices: DevicePolicy::Create,
            ..ExtractOptions::default()
        };
        aci::extract(&tar[..], &s.dest, &create).unwrap();
        let m = fs::symlink_metadata(s.dest.join("rootfs/dev/null")).unwrap();
        assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
        assert_eq!(m.mode() & 0o7777, 0o666);
        let m = fs::symlink_metadata(s.dest.join("rootfs/dev/sda")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o660);
    }
}

#[test]
fn long_names_gnu_and_pax() {
    let s = Scene::new();
    // Legitimate long names are read in both encodings.
    let long = format!("rootfs/{}/file", "d".repeat(200));
    let tar = RawTar::default()
        .start()
        .gnu_long_file(long.as_bytes(), b"gnu")
        .pax_file(format!("{long}2").as_bytes(), b"pax")
        .finish();
    let v = aci::validate(&tar[..]).unwrap();
    assert!(v.is_valid(), "{:?}", v.problems);
    aci::extract(&tar[..], &s.dest, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(s.dest.join(&long)).unwrap(), b"gnu");
    assert_eq!(fs::read(s.dest.join(format!("{long}2"))).unwrap(), b"pax");
    // Escaping long names, in both encodings.
    let evil = format!(
        "rootfs/{}/{}outside/pwned",
        "d".repeat(150),
        "../".repeat(6)
    );
    let tar = RawTar::default()
        .start()
        .gnu_long_file(evil.as_bytes(), b"x")
        .finish();
    assert_refused(&s, &tar, &evil);
    let tar = RawTar::default()
        .start()
        .pax_file(evil.as_bytes(), b"x")
        .finish();
    assert_refused(&s, &tar, &evil);
    let abs = format!("{}/{}", s.abs("outside"), "p".repeat(120));
    let tar = RawTar::default()
        .start()
        .pax_file(abs.as_bytes(), b"x")
        .finish();
    assert_refused(&s, &tar, &abs);
}

fn big_image(dir: &Path) -> PathBuf {
    let d = image_dir(dir);
    let mut x = 99u32;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    fs::write(d.join("rootfs/noise"), noise).unwrap();
    let out = dir.join("big.aci");
    aci::build(&d, &out, &aci::BuildOptions::default()).unwrap();
    out
}

#[test]
fn truncated_streams() {
    let s = Scene::new();
    let out = big_image(s._t.path());
    let full = fs::read(&out).unwrap();
    let half = &full[..full.len() / 2];
    let err = aci::validate(half).unwrap_err();
    assert!(
        matches!(
            err,
            AciError::Decompress {
                compression: Compression::Gzip,
                ..
            } | AciError::Truncated { .. }
        ),
        "{err:?}"
    );
    let err = aci::extract(half, &s.dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            AciError::Decompress { .. } | AciError::Truncated { .. }
        ),
        "{err:?}"
    );
    // Uncompressed, cut inside the big file's data.
    let tar = sh(&format!("gzip -dc '{}' | wc -c", out.display()));
    let n: usize = tar.trim().parse().unwrap();
    let raw = {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&full[..]), &mut v).unwrap();
        v
    };
    assert_eq!(raw.len(), n);
    let err = aci::validate(&raw[..n / 2]).unwrap_err();
    assert!(
        matches!(&err, AciError::Truncated { entry } if entry == "rootfs/noise"),
        "{err:?}"
    );
    // The whole gzip minus its 8-byte trailer: the tar is complete, the
    // stream is not. Still an error (the hash would cover a broken file).
    let err = aci::validate(&full[..full.len() - 4]).unwrap_err();
    assert!(matches!(err, AciError::Decompress { .. }), "{err:?}");
}

#[test]
fn wrong_compression_and_not_a_tar() {
    let mut garbage = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    garbage.extend((0..5000u32).map(|i| (i * 7919 % 251) as u8));
    let err = aci::validate(&garbage[..]).unwrap_err();
    assert!(
        matches!(
            err,
            AciError::Decompress {
                compression: Compression::Gzip,
                ..
            }
        ),
        "{err:?}"
    );
    let mut xz = vec![0xfd, b'7', b'z', b'X', b'Z', 0];
    xz.extend_from_slice(&[1u8; 100]);
    let err = aci::validate(&xz[..]).unwrap_err();
    assert!(
        matches!(
            err,
            AciError::Decompress {
                compression: Compression::Xz,
                ..
            }
        ),
        "{err:?}"
    );
    let text = b"this is not a tar archive, just some text that goes on and on\n".repeat(20);
    let err = aci::validate(&text[..]).unwrap_err();
    assert!(matches!(err, AciError::NotTar { .. }), "{err:?}");
    let err = aci::validate(&gzip(&text)[..]).unwrap_err();
    assert!(matches!(err, AciError::NotTar { .. }), "{err:?}");
    let err = aci::validate(&b""[..]).unwrap_err();
    assert!(matches!(err, AciError::NotTar { .. }), "{err:?}");
    let t = tempfile::tempdir().unwrap();
    let err = aci::extract(&text[..], t.path(), &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, AciError::NotTar { .. }), "{err:?}");
}

#[test]
fn hash_covers_trailing_padding() {
    // GNU tar pads to 10 KiB records; anything after the end-of-archive
    // blocks is part of the image ID too.
    let mut tar = RawTar::default().start().file("rootfs/a", b"a").finish();
    tar.extend_from_slice(&[0u8; 9000]);
    tar.extend_from_slice(b"trailing bytes after the end of the archive");
    let v = aci::validate(&gzip(&tar)[..]).unwrap();
    assert!(v.is_valid(), "{:?}", v.problems);
    use sha2::Digest;
    assert_eq!(
        v.image_id,
        berth_appc::ImageId::from_sha512(&sha2::Sha512::digest(&tar))
    );
    assert_eq!(v.tar_size, tar.len() as u64);
}
