//! Build → validate → extract round trips, checked against the real tools:
//! `gzip`/`xz`/`bzip2`/`zstd -dc | sha512sum` must give the image ID, and
//! `actool validate` (Debian's appc-spec) must accept what `build` writes.
//! Runs as root in CI (device nodes, owners, setuid).

mod aci_support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use aci_support::*;
use berth_appc::aci::{self, AciError, BuildOptions, Compression, DevicePolicy, ExtractOptions};

fn opts(c: Compression) -> BuildOptions {
    BuildOptions {
        compression: c,
        mtime: Some(1_600_000_000),
        ..BuildOptions::default()
    }
}

fn build_file(dir: &Path, out: &Path, o: &BuildOptions) -> aci::BuildReport {
    let (dir, out, o) = (dir.to_path_buf(), out.to_path_buf(), o.clone());
    with_timeout(120, move || aci::build(&dir, &out, &o)).unwrap()
}

fn validate_file(p: &Path) -> aci::ValidateReport {
    aci::validate(fs::File::open(p).unwrap()).unwrap()
}

/// A rootfs with some text and some incompressible data, big enough to span
/// many parallel-gzip chunks.
fn simple_tree(parent: &Path) -> PathBuf {
    let d = image_dir(parent);
    let r = d.join("rootfs");
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::create_dir_all(r.join("usr/share/doc")).unwrap();
    fs::write(r.join("etc/hostname"), "berth\n").unwrap();
    let text: String = (0..60_000)
        .map(|i| format!("line {i} of some text\n"))
        .collect();
    fs::write(r.join("usr/share/doc/text"), text).unwrap();
    let mut x = 0x1234_5678_u32;
    let noise: Vec<u8> = (0..700_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    fs::write(r.join("usr/share/doc/noise"), noise).unwrap();
    d
}

fn decompress_cmd(c: Compression) -> &'static str {
    match c {
        Compression::None => "cat",
        Compression::Gzip => "gzip -dc",
        Compression::Bzip2 => "bzip2 -dc",
        Compression::Xz => "xz -dc",
        Compression::Zstd => "zstd -dcq",
    }
}

#[test]
fn build_validate_every_compression_matches_external_sha512() {
    let t = tempfile::tempdir().unwrap();
    let d = simple_tree(t.path());
    for c in Compression::ALL {
        let out = t.path().join(format!("img-{c}.aci"));
        let b = build_file(&d, &out, &opts(c));
        assert_eq!(b.compressed_size, fs::metadata(&out).unwrap().len(), "{c}");
        let v = validate_file(&out);
        assert!(v.is_valid(), "{c}: {:?}", v.problems);
        assert_eq!(v.compression, c);
        assert_eq!(v.image_id, b.image_id, "{c}");
        assert_eq!(v.tar_size, b.tar_size, "{c}");
        assert_eq!(v.entries, b.entries, "{c}");
        assert_eq!(
            v.manifest.as_ref().unwrap().name.as_str(),
            "example.com/berth-test"
        );
        assert_eq!(v.manifest_bytes.as_deref(), Some(MANIFEST.as_bytes()));
        // The tool this machine would use: CI must install zstd.
        assert!(
            have(decompress_cmd(c).split(' ').next().unwrap()),
            "{c}: tool missing"
        );
        let ext = sha512_of_cmd(&format!("{} '{}'", decompress_cmd(c), out.display()));
        assert_eq!(ext, b.image_id.as_str(), "{c}: external sha512 differs");
        let m = aci::read_manifest_bytes(fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(m, MANIFEST.as_bytes());
    }
}

#[test]
fn parallel_gzip_is_read_by_gzip_and_flate2_for_any_thread_count() {
    let t = tempfile::tempdir().unwrap();
    let d = simple_tree(t.path());
    let mut ids = Vec::new();
    for threads in [1, 2, 3, 8] {
        for level in [1, 6, 9] {
            let out = t.path().join(format!("t{threads}-l{level}.aci"));
            let o = BuildOptions {
                threads,
                level: Some(level),
                ..opts(Compression::Gzip)
            };
            let b = build_file(&d, &out, &o);
            sh(&format!("gzip -t '{}'", out.display()));
            let mut tar = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(fs::File::open(&out).unwrap()),
                &mut tar,
            )
            .unwrap();
            assert_eq!(tar.len() as u64, b.tar_size);
            ids.push(b.image_id);
        }
    }
    // The tar stream, hence the ID, does not depend on compression settings.
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn reproducible_with_fixed_mtime() {
    let t = tempfile::tempdir().unwrap();
    let d = simple_tree(t.path());
    let (a, b) = (t.path().join("a.aci"), t.path().join("b.aci"));
    let ra = build_file(&d, &a, &opts(Compression::Gzip));
    // Different timestamps and a different creation order on disk.
    fs::write(d.join("rootfs/zz-late"), "x").unwrap();
    fs::remove_file(d.join("rootfs/zz-late")).unwrap();
    sh(&format!(
        "touch '{}'",
        d.join("rootfs/etc/hostname").display()
    ));
    let rb = build_file(&d, &b, &opts(Compression::Gzip));
    assert_eq!(ra.image_id, rb.image_id);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    for c in [Compression::Zstd, Compression::Xz, Compression::None] {
        let (x, y) = (t.path().join("x"), t.path().join("y"));
        let o = BuildOptions {
            overwrite: true,
            ..opts(c)
        };
        build_file(&d, &x, &o);
        build_file(&d, &y, &o);
        assert_eq!(fs::read(&x).unwrap(), fs::read(&y).unwrap(), "{c}");
    }
}

#[test]
fn build_refuses_existing_output_and_bad_input_before_writing() {
    let t = tempfile::tempdir().unwrap();
    let d = image_dir(t.path());
    let out = t.path().join("out.aci");
    fs::write(&out, "keep").unwrap();
    let err = aci::build(&d, &out, &BuildOptions::default()).unwrap_err();
    assert!(matches!(err, AciError::Exists { .. }), "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"keep");
    aci::build(
        &d,
        &out,
        &BuildOptions {
            overwrite: true,
            ..BuildOptions::default()
        },
    )
    .unwrap();
    assert!(validate_file(&out).is_valid());

    // An extra top-level item.
    fs::write(d.join("README"), "no").unwrap();
    let out2 = t.path().join("out2.aci");
    let err = aci::build(&d, &out2, &BuildOptions::default()).unwrap_err();
    assert!(
        matches!(&err, AciError::Layout { path, .. } if path.ends_with("README")),
        "{err}"
    );
    fs::remove_file(d.join("README")).unwrap();
    // A manifest that does not parse: refused, nothing written.
    fs::write(d.join("manifest"), r#"{"acKind": "ImageManifest"}"#).unwrap();
    let err = aci::build(&d, &out2, &BuildOptions::default()).unwrap_err();
    assert!(matches!(err, AciError::Manifest(_)), "{err}");
    // No output and no temporary file left behind.
    let names: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A rootfs with what real ones hold: busybox with applet symlinks, a hard
/// link, a fifo, device nodes, a setuid file, an xattr, empty directories,
/// a socket, a long path.
fn rich_tree(parent: &Path) -> (PathBuf, bool) {
    let d = image_dir(parent);
    let r = d.join("rootfs");
    for sub in [
        "bin",
        "dev",
        "etc",
        "tmp",
        "empty/nested/deeper",
        "var/empty",
    ] {
        fs::create_dir_all(r.join(sub)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static must be installed (apt-get install busybox-static)");
    fs::copy(busybox, r.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "true"] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).unwrap();
    }
    std::os::unix::fs::symlink("/bin/busybox", r.join("bin/abs-sh")).unwrap();
    fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::hard_link(r.join("etc/passwd"), r.join("etc/passwd.hard")).unwrap();
    fs::write(r.join("bin/suid"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(r.join("bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("tmp/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let mut long = r.join("etc");
    for i in 0..12 {
        long = long.join(format!("a-rather-long-directory-name-{i}"));
    }
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join("file-at-the-end-of-a-long-path"), "deep\n").unwrap();
    if is_root() {
        for (name, maj, min) in [("console", 5, 1), ("null", 1, 3)] {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                r.join("dev").join(name),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o666),
                rustix::fs::makedev(maj, min),
            )
            .unwrap();
            // (mknod applies the umask)
            fs::set_permissions(r.join("dev").join(name), fs::Permissions::from_mode(0o666))
                .unwrap();
        }
        rustix::fs::chown(
            r.join("etc/passwd"),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
        )
        .unwrap();
    }
    fs::write(r.join("etc/hostname-x"), "x\n").unwrap();
    // Skip only the xattr checks where the file system has no user xattrs.
    let xattr_ok = rustix::fs::setxattr(
        r.join("etc/hostname-x"),
        "user.berth",
        b"yes",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    (d, xattr_ok)
}

#[test]
fn rich_rootfs_builds_without_hanging_and_actool_accepts_it() {
    let t = tempfile::tempdir().unwrap();
    let (d, xattr_ok) = rich_tree(t.path());
    let r = d.join("rootfs");
    let sock_path = r.join("tmp/sock");
    let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let out = t.path().join("rich.aci");
    // The fifo and /dev/console would make a builder that opens files hang.
    let b = build_file(&d, &out, &BuildOptions::default());
    assert!(
        b.warnings
            .iter()
            .any(|w| w.contains("tmp/sock") && w.contains("socket")),
        "{:?}",
        b.warnings
    );
    let v = validate_file(&out);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    if is_root() {
        assert!(
            v.warnings.iter().any(|w| w.path == "rootfs/dev/console"),
            "{:?}",
            v.warnings
        );
    }
    assert_eq!(v.image_id, b.image_id);

    // The real actool must accept it: a missing actool is a failure.
    let st = Command::new("actool")
        .arg("validate")
        .arg(&out)
        .output()
        .expect("actool (Debian package appc-spec) must be installed");
    assert!(
        st.status.success(),
        "actool validate refused the image: {}{}",
        String::from_utf8_lossy(&st.stdout),
        String::from_utf8_lossy(&st.stderr)
    );

    // GNU tar lists what we expect, hard link and all.
    let listing = sh(&format!("tar -tvzf '{}'", out.display()));
    assert!(
        listing.contains("rootfs/etc/passwd.hard link to rootfs/etc/passwd"),
        "{listing}"
    );
    assert!(listing.contains("rootfs/bin/sh -> busybox"), "{listing}");
    assert!(
        listing.lines().next().unwrap().ends_with(" manifest"),
        "{listing}"
    );
    assert!(listing.contains("-rwsr-xr-x"), "{listing}");
    assert!(
        listing.contains("rootfs/etc/a-rather-long-directory-name-0/"),
        "{listing}"
    );

    // Extract it and compare with the source tree.
    let dest = t.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let xo = ExtractOptions {
        devices: DevicePolicy::Create,
        ..ExtractOptions::default()
    };
    let report = if is_root() {
        aci::extract(fs::File::open(&out).unwrap(), &dest, &xo).unwrap()
    } else {
        let xo = ExtractOptions {
            devices: DevicePolicy::Skip,
            ..xo
        };
        aci::extract(fs::File::open(&out).unwrap(), &dest, &xo).unwrap()
    };
    assert_eq!(report.image_id, b.image_id);
    compare_trees(&d, &dest, xattr_ok);
    assert_eq!(
        fs::read(dest.join("manifest")).unwrap(),
        MANIFEST.as_bytes()
    );
    let a = fs::metadata(dest.join("rootfs/etc/passwd")).unwrap();
    let h = fs::metadata(dest.join("rootfs/etc/passwd.hard")).unwrap();
    assert_eq!(a.ino(), h.ino(), "hard link not preserved");
    if is_root() {
        assert_eq!((a.uid(), a.gid()), (1234, 5678));
        let con = fs::symlink_metadata(dest.join("rootfs/dev/console")).unwrap();
        assert_eq!(con.rdev(), rustix::fs::makedev(5, 1));
        assert_eq!(con.mode() & 0o7777, 0o666);
    }
    // The extracted busybox runs (a proof that the bytes are right).
    let o = Command::new(dest.join("rootfs/bin/busybox"))
        .arg("true")
        .status()
        .unwrap();
    assert!(o.success());

    // rootfs_only: the rootfs's content straight into the target.
    let dest2 = t.path().join("dest2");
    fs::create_dir(&dest2).unwrap();
    let xo2 = ExtractOptions {
        rootfs_only: true,
        devices: DevicePolicy::Skip,
        ..ExtractOptions::default()
    };
    let rep2 = aci::extract(fs::File::open(&out).unwrap(), &dest2, &xo2).unwrap();
    assert!(dest2.join("bin/busybox").is_file());
    assert!(!dest2.join("manifest").exists());
    assert_eq!(
        fs::metadata(dest2.join("etc/passwd")).unwrap().ino(),
        fs::metadata(dest2.join("etc/passwd.hard")).unwrap().ino()
    );
    if is_root() {
        assert!(
            rep2.skipped.contains(&"rootfs/dev/console".to_string()),
            "{:?}",
            rep2.skipped
        );
    }
    // A non-empty target is refused.
    let err = aci::extract(fs::File::open(&out).unwrap(), &dest2, &xo2).unwrap_err();
    assert!(matches!(err, AciError::Layout { .. }), "{err}");
}

/// Same names, kinds, modes, sizes, contents, link targets, mtimes (and
/// owners as root) under `a/rootfs` and `b/rootfs`.
fn compare_trees(a: &Path, b: &Path, xattr_ok: bool) {
    let list = |root: &Path| -> Vec<String> {
        let out = sh(&format!(
            "cd '{}' && find rootfs ! -name sock -printf '%p %y %m %s %U %G %T@ %l\\n' | sort",
            root.display()
        ));
        out.lines().map(str::to_owned).collect()
    };
    let (la, lb) = (list(a), list(b));
    // mtimes of the source are whatever; build used the file's own (no fixed
    // mtime), so they must match to the second. %T@ has fractions: cut them.
    let cut = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|l| {
                let mut f: Vec<String> = l.split(' ').map(str::to_owned).collect();
                if let Some(t) = f.get_mut(6) {
                    *t = t.split('.').next().unwrap().to_string();
                }
                if !is_root() {
                    f[4].clear();
                    f[5].clear();
                }
                f.join(" ")
            })
            .filter(|l| is_root() || !l.starts_with("rootfs/dev/"))
            .collect()
    };
    assert_eq!(cut(la), cut(lb));
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a.join("rootfs/etc"))
        .arg(b.join("rootfs/etc"))
        .status()
        .unwrap();
    assert!(diff.success());
    if xattr_ok {
        let mut v = [0u8; 16];
        let n = rustix::fs::getxattr(b.join("rootfs/etc/hostname-x"), "user.berth", &mut v[..])
            .unwrap();
        assert_eq!(&v[..n], b"yes");
    }
}

#[test]
fn reads_acis_made_by_gnu_tar() {
    // GNU tar output (GNU and PAX formats, long names) compressed by the
    // real tools: valid, and the ID is the external sha512 of the tar.
    let t = tempfile::tempdir().unwrap();
    let d = simple_tree(t.path());
    let mut long = d.join("rootfs");
    for i in 0..8 {
        long = long.join(format!("{i}-{}", "n".repeat(30)));
    }
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join(format!("{}.txt", "f".repeat(120))), "long\n").unwrap();
    std::os::unix::fs::symlink("x".repeat(150), d.join("rootfs/longlink")).unwrap();
    for (format, comp, ext) in [
        ("gnu", "gzip -n", "gz"),
        ("pax", "xz", "xz"),
        ("posix", "bzip2", "bz2"),
        ("gnu", "cat", "tar"),
        ("pax", "zstd -q", "zst"),
    ] {
        let out = t.path().join(format!("gnu-{format}.{ext}"));
        sh(&format!(
            "tar --format={format} --numeric-owner -C '{}' -cf - manifest rootfs | {comp} > '{}'",
            d.display(),
            out.display()
        ));
        let v = validate_file(&out);
        assert!(v.is_valid(), "{format}/{comp}: {:?}", v.problems);
        let dc = match ext {
            "gz" => "gzip -dc",
            "xz" => "xz -dc",
            "bz2" => "bzip2 -dc",
            "zst" => "zstd -dcq",
            _ => "cat",
        };
        assert_eq!(
            v.image_id.as_str(),
            sha512_of_cmd(&format!("{dc} '{}'", out.display()))
        );
        let dest = t.path().join(format!("x-{format}-{ext}"));
        fs::create_dir(&dest).unwrap();
        aci::extract(
            fs::File::open(&out).unwrap(),
            &dest,
            &ExtractOptions::default(),
        )
        .unwrap();
        let rel = long.strip_prefix(&d).unwrap();
        assert_eq!(
            fs::read(dest.join(rel).join(format!("{}.txt", "f".repeat(120)))).unwrap(),
            b"long\n"
        );
        assert_eq!(
            fs::read_link(dest.join("rootfs/longlink")).unwrap(),
            Path::new(&"x".repeat(150))
        );
    }
}
