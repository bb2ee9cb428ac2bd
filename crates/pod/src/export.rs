//! An exited app's filesystem as one directory, for `berth export`.
//!
//! With overlayfs the app's files are two layers: the read-only store tree
//! and the pod's upper dir (what the app wrote, with overlayfs whiteouts for
//! what it deleted). Without overlay the app ran in a copy of the tree, and
//! that copy is its filesystem.
//!
//! [`ExportLayout::stage`] builds, inside the pod directory, a directory
//! holding `manifest` and `rootfs/` (the layout an ACI is built from):
//! - overlay pods: a read-only overlay mount `lowerdir=upper:tree`, so the
//!   kernel itself applies the whiteouts exactly as the app saw them;
//! - copied pods: a read-only bind mount of the copy;
//! - where overlayfs cannot be mounted: a merged copy made here, applying
//!   whiteouts (character device 0/0) and opaque directories
//!   (`trusted.overlay.opaque=y`) by hand.
//!
//! Mounts are made in a private mount namespace of this process (call
//! [`private_mount_namespace`] first): nothing propagates to the host, and
//! when the process ends, however it ends, the mounts go with it. A `kill
//! -9` of `berth export` can leave at most an unmounted staging directory in
//! the pod directory, which is deleted with the pod.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// Move this process into its own mount namespace whose mounts do not
/// propagate anywhere. Must be called while the process has one thread
/// (the namespace is per thread; threads spawned later inherit it).
pub fn private_mount_namespace() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )?;
    Ok(())
}

/// How the staged rootfs was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagedFrom {
    /// Read-only overlay of the upper dir over the tree.
    Overlay,
    /// Read-only bind mount of the app's copied rootfs.
    Copy,
    /// A merged copy (overlayfs could not be mounted).
    MergedCopy,
}

/// A staging directory `<pod>/export.<pid>/{manifest,rootfs}`, removed
/// (after unmounting) when dropped.
#[derive(Debug)]
pub struct ExportLayout {
    dir: PathBuf,
    mounted: bool,
    pub from: StagedFrom,
}

/// Where an app's files are.
#[derive(Debug, Clone)]
pub enum AppFiles {
    /// Overlay: `upper` (what the app wrote) over `tree` (the store's).
    Layers { upper: PathBuf, tree: PathBuf },
    /// A plain directory (the copy the app ran in).
    Dir(PathBuf),
}

impl ExportLayout {
    /// Stage `manifest` and the app's files under `pod_dir`.
    pub fn stage(pod_dir: &Path, manifest: &Path, files: &AppFiles) -> io::Result<ExportLayout> {
        let dir = pod_dir.join(format!("export.{}", std::process::id()));
        if fs::symlink_metadata(&dir).is_ok() {
            // Left by an earlier export with our PID that was killed.
            remove_staging(&dir)?;
        }
        fs::create_dir(&dir)?;
        let mut layout = ExportLayout {
            dir,
            mounted: false,
            from: StagedFrom::Copy,
        };
        fs::copy(manifest, layout.dir.join("manifest"))?;
        let rootfs = layout.rootfs();
        fs::create_dir(&rootfs)?;
        match files {
            AppFiles::Dir(src) => {
                rustix::mount::mount_bind(src, &rootfs)?;
                layout.mounted = true;
                remount_read_only(&rootfs)?;
                layout.from = StagedFrom::Copy;
            }
            AppFiles::Layers { upper, tree } => match mount_overlay(&[upper, tree], &rootfs) {
                Ok(()) => {
                    layout.mounted = true;
                    layout.from = StagedFrom::Overlay;
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot mount overlayfs to read the app's files ({e}); merging a copy instead"
                    );
                    merge_copy(tree, upper, &rootfs)?;
                    layout.from = StagedFrom::MergedCopy;
                }
            },
        }
        Ok(layout)
    }

    /// The directory holding `manifest` and `rootfs/`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

impl Drop for ExportLayout {
    fn drop(&mut self) {
        let rootfs = self.rootfs();
        if self.mounted {
            if let Err(e) = rustix::mount::unmount(&rootfs, UnmountFlags::DETACH) {
                // Never remove recursively through a mount (a bind of the
                // app's copy is writable underneath): leave it to gc.
                tracing::warn!("cannot unmount {}: {e}", rootfs.display());
                return;
            }
            let _ = fs::remove_dir(&rootfs);
            let _ = fs::remove_file(self.dir.join("manifest"));
            let _ = fs::remove_dir(&self.dir);
        } else {
            let _ = remove_staging(&self.dir);
        }
    }
}

/// Remove a staging directory, unmounting first so a recursive removal
/// can never reach through a mount.
fn remove_staging(dir: &Path) -> io::Result<()> {
    crate::state::unmount_below(dir);
    fs::remove_dir_all(dir)
}

fn remount_read_only(target: &Path) -> io::Result<()> {
    rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")?;
    Ok(())
}

/// overlayfs option values separate layers with ':' and options with ',';
/// a backslash escapes them.
fn escape_layer(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Mount a read-only overlay of `layers` (top first) on `target`: with no
/// upper dir the kernel treats every layer as a lower, whiteouts included.
pub fn mount_overlay(layers: &[&PathBuf], target: &Path) -> io::Result<()> {
    let lower: Vec<String> = layers.iter().map(|p| escape_layer(p)).collect();
    let data = format!("lowerdir={}", lower.join(":"));
    let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::RDONLY,
        data.as_c_str(),
    )?;
    Ok(())
}

const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";

/// An overlayfs whiteout: a character device with device number 0/0.
fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut v = [0u8; 8];
    matches!(rustix::fs::lgetxattr(path, OVERLAY_OPAQUE, &mut v[..]), Ok(n) if v[..n] == *b"y")
}

/// The merged view of `upper` over `lower`, copied into the existing empty
/// directory `dst`: what overlayfs would show, as plain files.
pub fn merge_copy(lower: &Path, upper: &Path, dst: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    copy_dir_contents(lower, dst, false, &mut links)?;
    set_attrs(dst, &fs::symlink_metadata(lower)?, lower)?;
    // The upper layer's inodes are other inodes: its own hard-link map.
    let mut links = HashMap::new();
    apply_upper(upper, dst, &mut links)?;
    set_attrs(dst, &fs::symlink_metadata(upper)?, upper)
}

fn apply_upper(
    upper: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    for e in fs::read_dir(upper)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let meta = fs::symlink_metadata(&from)?;
        if is_whiteout(&meta) {
            remove_any(&to)?;
            continue;
        }
        if meta.is_dir() {
            let merge = !is_opaque(&from) && fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir());
            if merge {
                apply_upper(&from, &to, links)?;
            } else {
                remove_any(&to)?;
                fs::create_dir(&to)?;
                // Below an opaque or new directory nothing of the lower
                // layer shows, but whiteouts may still sit there: skip them.
                copy_dir_contents(&from, &to, true, links)?;
            }
            set_attrs(&to, &meta, &from)?;
        } else {
            remove_any(&to)?;
            copy_one(&from, &to, &meta, links)?;
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    skip_whiteouts: bool,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    for e in fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let meta = fs::symlink_metadata(&from)?;
        if skip_whiteouts && is_whiteout(&meta) {
            continue;
        }
        if meta.is_dir() {
            fs::create_dir(&to)?;
            copy_dir_contents(&from, &to, skip_whiteouts, links)?;
            set_attrs(&to, &meta, &from)?;
        } else {
            copy_one(&from, &to, &meta, links)?;
        }
    }
    Ok(())
}

/// Copy a non-directory entry: files, symlinks (never followed), device
/// nodes and fifos (never opened); a second name of an inode already
/// copied becomes a hard link.
fn copy_one(
    from: &Path,
    to: &Path,
    meta: &fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    if meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(first) = links.get(&key) {
            return fs::hard_link(first, to);
        }
        links.insert(key, to.to_path_buf());
    }
    let ft = FileType::from_raw_mode(meta.mode());
    match ft {
        FileType::Symlink => std::os::unix::fs::symlink(fs::read_link(from)?, to)?,
        FileType::RegularFile => {
            fs::copy(from, to)?;
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
            rustix::fs::mknodat(
                CWD,
                to,
                ft,
                Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
        }
        // Sockets cannot live in an image: the ACI builder would skip them.
        _ => return Ok(()),
    }
    set_attrs(to, meta, from)
}

/// Owner, mode, extended attributes (not overlayfs's own) and mtime of
/// `from` onto `to`. Owner first: chown clears setuid bits.
fn set_attrs(to: &Path, meta: &fs::Metadata, from: &Path) -> io::Result<()> {
    let link = meta.file_type().is_symlink();
    rustix::fs::chownat(
        CWD,
        to,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !link {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    copy_xattrs(from, to);
    let t = Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec() as _,
    };
    rustix::fs::utimensat(
        CWD,
        to,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Best effort: a filesystem without xattrs loses them, as `cp -a` would.
fn copy_xattrs(from: &Path, to: &Path) {
    let mut names = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(from, &mut names[..]) else {
        return;
    };
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let Ok(name) = std::ffi::CString::new(name) else {
            continue;
        };
        if let Ok(len) = rustix::fs::lgetxattr(from, name.as_c_str(), &mut value[..]) {
            let _ = rustix::fs::lsetxattr(
                to,
                name.as_c_str(),
                &value[..len],
                rustix::fs::XattrFlags::empty(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whiteout(p: &Path) -> io::Result<()> {
        rustix::fs::mknodat(CWD, p, FileType::CharacterDevice, Mode::empty(), 0)?;
        Ok(())
    }

    /// Needs root (mknod of the whiteout, trusted.* xattrs); skipped
    /// otherwise, since the CLI tests cover the overlay path as root.
    #[test]
    fn merged_copy_applies_whiteouts_and_opaque_dirs() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (lower, upper, dst) = (t.path().join("l"), t.path().join("u"), t.path().join("d"));
        for d in [&lower, &upper, &dst] {
            fs::create_dir(d).unwrap();
        }
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::write(lower.join("etc/keep"), "keep").unwrap();
        fs::write(lower.join("etc/gone"), "gone").unwrap();
        fs::create_dir_all(lower.join("opaque/old")).unwrap();
        fs::write(lower.join("opaque/old/f"), "old").unwrap();
        fs::write(lower.join("changed"), "before").unwrap();
        std::os::unix::fs::symlink("etc/keep", lower.join("link")).unwrap();

        fs::create_dir(upper.join("etc")).unwrap();
        whiteout(&upper.join("etc/gone")).unwrap();
        fs::write(upper.join("etc/new"), "new").unwrap();
        fs::create_dir(upper.join("opaque")).unwrap();
        rustix::fs::lsetxattr(
            upper.join("opaque"),
            OVERLAY_OPAQUE,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        fs::write(upper.join("opaque/only"), "only").unwrap();
        fs::write(upper.join("changed"), "after").unwrap();

        merge_copy(&lower, &upper, &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("etc/keep")).unwrap(), "keep");
        assert!(fs::symlink_metadata(dst.join("etc/gone")).is_err());
        assert_eq!(fs::read_to_string(dst.join("etc/new")).unwrap(), "new");
        assert!(!dst.join("opaque/old").exists());
        assert_eq!(fs::read_to_string(dst.join("opaque/only")).unwrap(), "only");
        assert!(!is_opaque(&dst.join("opaque")));
        assert_eq!(fs::read_to_string(dst.join("changed")).unwrap(), "after");
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("etc/keep")
        );
    }
}
