//! Copying a store tree into a pod (no overlayfs, or `--no-overlay`).
//!
//! The copy must be indistinguishable from the tree to the app: modes
//! (setuid bits included), owners, symlinks as symlinks, hard links as
//! links to one inode, device nodes, fifos and modification times. Symlinks
//! are never followed, on either side: the source is walked with `lstat`,
//! and every destination entry is created fresh by us under a directory we
//! created, so no name can lead out of the destination.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

use crate::error::{Context, Error};

/// Copy the tree `src` into the (existing, empty) directory `dst`.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), Error> {
    let mut links = HashMap::new();
    copy_dir(src, dst, &mut links)?;
    let meta = fs::symlink_metadata(src).ctx(|| format!("lstat {}", src.display()))?;
    set_attrs(src, dst, &meta, false)
}

fn copy_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<(), Error> {
    let entries = fs::read_dir(src).ctx(|| format!("read directory {}", src.display()))?;
    for entry in entries {
        let entry = entry.ctx(|| format!("read directory {}", src.display()))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).ctx(|| format!("lstat {}", from.display()))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).ctx(|| format!("mkdir {}", to.display()))?;
            copy_dir(&from, &to, links)?;
            set_attrs(&from, &to, &meta, false)?;
            continue;
        }
        // A second name of an inode already copied becomes a hard link.
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &to)
                    .ctx(|| format!("link {} to {}", to.display(), first.display()))?;
                continue;
            }
            links.insert(key, to.clone());
        }
        if ft.is_symlink() {
            let target = fs::read_link(&from).ctx(|| format!("readlink {}", from.display()))?;
            std::os::unix::fs::symlink(&target, &to).ctx(|| format!("symlink {}", to.display()))?;
            set_attrs(&from, &to, &meta, true)?;
        } else if ft.is_file() {
            fs::copy(&from, &to).ctx(|| format!("copy {} to {}", from.display(), to.display()))?;
            set_attrs(&from, &to, &meta, false)?;
        } else {
            // Device nodes, fifos, sockets: the same kind, the same numbers.
            let kind = FileType::from_raw_mode(meta.mode());
            rustix::fs::mknodat(
                CWD,
                &to,
                kind,
                Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .ctx(|| format!("mknod {}", to.display()))?;
            set_attrs(&from, &to, &meta, false)?;
        }
    }
    Ok(())
}

/// Extended attributes: file capabilities (`security.capability`, e.g.
/// ping's cap_net_raw), ACLs and the like are part of what the image says.
/// A filesystem without xattrs on either side has none to keep.
fn copy_xattrs(src: &Path, dst: &Path) -> Result<(), Error> {
    let size = match rustix::fs::llistxattr_query(src) {
        Ok(0) => return Ok(()),
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(Error::new(format!("list xattrs of {}", src.display()), e)),
    };
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(src, &mut names[..])
        .ctx(|| format!("list xattrs of {}", src.display()))?;
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let len = rustix::fs::lgetxattr_query(src, name)
            .ctx(|| format!("read xattr {name:?} of {}", src.display()))?;
        let mut value = vec![0u8; len];
        let got = rustix::fs::lgetxattr(src, name, &mut value[..])
            .ctx(|| format!("read xattr {name:?} of {}", src.display()))?;
        match rustix::fs::lsetxattr(dst, name, &value[..got], rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
            Err(e) => {
                return Err(Error::new(
                    format!("set xattr {name:?} on {}", dst.display()),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid/setgid bits, so mode comes after),
/// then times; symlinks get owner and times only (their mode is fixed).
fn set_attrs(src: &Path, path: &Path, meta: &fs::Metadata, symlink: bool) -> Result<(), Error> {
    let flags = if symlink {
        AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::empty()
    };
    rustix::fs::chownat(
        CWD,
        path,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        flags,
    )
    .ctx(|| format!("chown {}", path.display()))?;
    if !symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .ctx(|| format!("chmod {}", path.display()))?;
    }
    // After chown (which drops security.capability) and chmod.
    copy_xattrs(src, path)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .ctx(|| format!("set times of {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn copies_links_modes_and_fifos() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let dst = tmp.path().join("dst");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("d/f"), b"data").unwrap();
        fs::set_permissions(src.join("d/f"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
        symlink("/etc/passwd", src.join("abs")).unwrap();
        rustix::fs::mknodat(
            CWD,
            src.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        rustix::fs::lsetxattr(
            src.join("d/f"),
            "user.berth",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        copy_tree(&src, &dst).unwrap();
        let mut v = [0u8; 16];
        let n = rustix::fs::lgetxattr(dst.join("d/f"), "user.berth", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"kept");
        let f = fs::metadata(dst.join("d/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o4751);
        assert_eq!(f.ino(), fs::metadata(dst.join("h")).unwrap().ino());
        assert_eq!(
            fs::read_link(dst.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(fs::symlink_metadata(dst.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo_like());
        assert_eq!(f.mtime(), fs::metadata(src.join("d/f")).unwrap().mtime());
    }

    trait FifoLike {
        fn is_fifo_like(&self) -> bool;
    }
    impl FifoLike for fs::FileType {
        fn is_fifo_like(&self) -> bool {
            use std::os::unix::fs::FileTypeExt;
            self.is_fifo()
        }
    }
}
