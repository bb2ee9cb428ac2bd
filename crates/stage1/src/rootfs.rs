//! Building each app's root in PID 1's private mount namespace: the
//! overlay (or copy) over the store tree, then /proc, /sys, /dev, the /etc
//! files the image lacks, the volumes, and the read-only remount.
//!
//! # Paths inside a root are hostile
//! An image (or an app writing to a shared volume before another app
//! starts) controls the symlinks inside a rootfs. Joining "rootfs" and
//! "/some/target" as strings and mounting there follows those symlinks on
//! the *host*: an image with `/proc -> /` or `/data -> /etc` would have us
//! mount over host paths. That is the class of CVE-2019-16884 and
//! CVE-2021-30465 (runc: mount targets swapped for symlinks between check
//! and use). So every target is resolved with `openat2(RESOLVE_IN_ROOT)`,
//! which treats the rootfs as `/` for every symlink and `..` on the way,
//! missing components are created with `mkdirat` relative to a parent fd
//! resolved the same way, and the mount is made on `/proc/self/fd/N`: the
//! very object we resolved, whatever the name points to by now.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_pod::layout::{self, AppDir};
use berth_pod::{AppPlan, NetMode, PodPlan, VolumeKindPlan};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{self as m, MountFlags};

use crate::error::{Context, Error};

/// Internal marker (not part of the layout contract): the tree has been
/// copied into `rootfs` completely, so a second start does not copy again.
const COPIED_MARKER: &str = "rootfs.copied";

/// The host nodes bound into each app's /dev.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// `/proc/self/fd/N`: a path naming exactly the object `fd` refers to.
fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Open `path` (absolute or relative: both mean from the root) inside the
/// root `root`, never leaving it. Magic links (/proc/*/fd) are refused too,
/// so a rootfs symlink into a procfs cannot jump out either. Kernels
/// without openat2 (before 5.6, or a seccomp filter refusing it) get the
/// same semantics from [`open_in_root_by_hand`].
fn open_in_root(root: &OwnedFd, path: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    match rustix::fs::openat2(
        root,
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Err(Errno::NOSYS) | Err(Errno::PERM) => open_in_root_by_hand(root, path, flags),
        other => other,
    }
}

/// `RESOLVE_IN_ROOT` in user space: one component at a time with
/// `O_NOFOLLOW`, symlinks expanded by us (absolute ones from the root), and
/// `..` taken from the stack of directories we walked through, never from
/// the disk, so it cannot climb above the root even if a directory is
/// moved meanwhile.
fn open_in_root_by_hand(root: &OwnedFd, path: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let mut todo: std::collections::VecDeque<String> = path.split('/').map(String::from).collect();
    let mut ancestors: Vec<OwnedFd> = Vec::new();
    let mut cur = rustix::fs::openat(
        root,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut links = 0;
    let mut last_name: Option<String> = None;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                if let Some(up) = ancestors.pop() {
                    cur = up;
                }
                last_name = None;
                continue;
            }
            _ => {}
        }
        let is_last = todo.iter().all(|c| c.is_empty() || c == ".");
        let fd = rustix::fs::openat(
            &cur,
            c.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
            && !(is_last && flags.contains(OFlags::NOFOLLOW))
        {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::LOOP);
            }
            let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                ancestors.clear();
                cur = rustix::fs::openat(
                    root,
                    ".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
            }
            for part in target.split('/').rev() {
                todo.push_front(part.to_string());
            }
            last_name = None;
            continue;
        }
        if is_last {
            last_name = Some(c);
            break;
        }
        ancestors.push(std::mem::replace(&mut cur, fd));
    }
    match last_name {
        // The last component, opened with the caller's flags from its
        // resolved parent; O_NOFOLLOW: it was not a symlink a moment ago,
        // and one swapped in since is refused rather than followed.
        Some(name) => rustix::fs::openat(
            &cur,
            name.as_str(),
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ),
        // The path ended on a directory reached through `..` or a link.
        None => rustix::fs::openat(&cur, ".", flags | OFlags::CLOEXEC, Mode::empty()),
    }
}

/// What to create at a missing mount target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Resolve `path` inside `root`, creating missing components (directories,
/// and the last one as `kind`), and return an `O_PATH` fd of the result.
fn make_in_root(root: &OwnedFd, path: &str, kind: Kind) -> Result<OwnedFd, Error> {
    make_in_root_at(root, path, kind, 0)
}

/// Symlinks followed while creating one target, at most (the kernel's own
/// limit for a path walk).
const MAX_SYMLINKS: u32 = 40;

fn make_in_root_at(root: &OwnedFd, path: &str, kind: Kind, depth: u32) -> Result<OwnedFd, Error> {
    if depth > MAX_SYMLINKS {
        return Err(Error::new(
            format!("resolve {path} in the app root"),
            Errno::LOOP,
        ));
    }
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.contains(&"..") {
        return Err(Error::msg(
            format!("mount target {path:?}"),
            "must not contain \"..\"",
        ));
    }
    let mut cur = String::from("/");
    let mut parent = open_in_root(root, "/", OFlags::PATH | OFlags::DIRECTORY)
        .ctx(|| "open the app root".to_string())?;
    for (i, c) in comps.iter().enumerate() {
        if !cur.ends_with('/') {
            cur.push('/');
        }
        cur.push_str(c);
        let last = i + 1 == comps.len();
        match open_in_root(root, &cur, OFlags::PATH) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(Error::new(format!("resolve {cur} in the app root"), e)),
        }
        // `parent` was resolved inside the root; mkdirat/openat on a single
        // name relative to it cannot leave it (and do not follow a final
        // symlink: O_EXCL/O_NOFOLLOW, mkdir never follows).
        let dir = open_in_root(root, &parent_of(&cur), OFlags::DIRECTORY | OFlags::RDONLY)
            .ctx(|| format!("open {} in the app root", parent_of(&cur)))?;
        let made = if last && kind == Kind::File {
            rustix::fs::openat(
                &dir,
                *c,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&dir, *c, Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                // A dangling symlink (the image's `/data -> /srv/data`):
                // create what it points to, inside the root, as a container
                // runtime would see it after the pivot.
                if let Ok(target) = rustix::fs::readlinkat(&dir, *c, Vec::new()) {
                    let target = target.to_string_lossy().into_owned();
                    let full = if target.starts_with('/') {
                        target
                    } else {
                        format!("{}/{}", parent_of(&cur), target)
                    };
                    let k = if last { kind } else { Kind::Dir };
                    make_in_root_at(root, &normalize(&full), k, depth + 1)?;
                }
            }
            Err(e) => return Err(Error::new(format!("create {cur} in the app root"), e)),
        }
        parent = open_in_root(root, &cur, OFlags::PATH)
            .ctx(|| format!("resolve {cur} in the app root"))?;
    }
    Ok(parent)
}

/// Fold `.` and `..` lexically, clamping at the root (as RESOLVE_IN_ROOT
/// does for `..` at the root).
fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => path[..i].into(),
    }
}

fn cstring(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn mount_fs(fstype: &str, target: &str, flags: MountFlags, data: &str) -> rustix::io::Result<()> {
    let data = cstring(data);
    m::mount(fstype, target, fstype, flags, Some(data.as_c_str()))
}

fn remount_readonly(target: &str) -> rustix::io::Result<()> {
    m::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
}

/// Read-only for the mount at `fd` and all mounts under it (rbinds), with
/// the top-only remount as the fallback on kernels before 5.12.
fn readonly_tree(fd: &OwnedFd) -> std::io::Result<()> {
    match crate::sys::make_readonly_recursive(fd.as_fd()) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            remount_readonly(&fd_path(fd)).map_err(Into::into)
        }
        other => other,
    }
}

/// Escape a path for overlayfs's option string (`,` separates options,
/// `:` separates lower dirs, `\` escapes).
fn overlay_escape(p: &Path) -> String {
    let mut s = String::new();
    for ch in p.to_string_lossy().chars() {
        if matches!(ch, ',' | ':' | '\\') {
            s.push('\\');
        }
        s.push(ch);
    }
    s
}

/// Empty volumes: `volumes/<name>` with the planned mode and owner,
/// shared by every app that mounts them.
pub fn make_empty_volumes(plan: &PodPlan, pod_dir: &Path) -> Result<(), Error> {
    for v in &plan.volumes {
        if let VolumeKindPlan::Empty { mode, uid, gid, .. } = v.kind {
            let dir = layout::volume_dir(pod_dir, &v.name);
            fs::create_dir_all(&dir).ctx(|| format!("mkdir {}", dir.display()))?;
            rustix::fs::chown(
                &dir,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .ctx(|| format!("chown {}", dir.display()))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode & 0o7777))
                .ctx(|| format!("chmod {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Mount the app's root (overlay, or copy) and everything inside it.
/// `console` is what /dev/console binds: the pty slave, or /dev/null.
/// `warned` makes the overlay fallback warning appear once per pod.
pub fn prepare_app(
    plan: &PodPlan,
    app: &AppPlan,
    pod_dir: &Path,
    console: &Path,
    warned: &mut bool,
) -> Result<PathBuf, Error> {
    let dir = AppDir::new(pod_dir, &app.name);
    let rootfs = dir.rootfs();
    // A missing tree is stage0's (or gc's) problem, not overlayfs's: say
    // so, rather than "overlayfs unavailable" and a failing copy.
    match fs::metadata(&app.tree) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::msg(
                format!("app {:?}: image tree {}", app.name, app.tree.display()),
                "not a directory",
            ))
        }
        Err(e) => {
            return Err(Error::new(
                format!("app {:?}: image tree {}", app.name, app.tree.display()),
                e,
            ))
        }
    }
    for d in [dir.path().to_path_buf(), rootfs.clone()] {
        fs::create_dir_all(&d).ctx(|| format!("mkdir {}", d.display()))?;
    }
    let mut overlaid = false;
    if plan.overlay {
        for d in [dir.upper(), dir.work()] {
            fs::create_dir_all(&d).ctx(|| format!("mkdir {}", d.display()))?;
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            overlay_escape(&app.tree),
            overlay_escape(&dir.upper()),
            overlay_escape(&dir.work())
        );
        match mount_fs(
            "overlay",
            &rootfs.to_string_lossy(),
            MountFlags::empty(),
            &data,
        ) {
            Ok(()) => overlaid = true,
            Err(e) => {
                if !*warned {
                    eprintln!(
                        "berth: overlayfs unavailable ({}), copying the image instead",
                        std::io::Error::from(e)
                    );
                    *warned = true;
                }
            }
        }
    }
    if !overlaid {
        let marker = dir.path().join(COPIED_MARKER);
        if !marker.exists() {
            // A copy cut short by a crash is redone from scratch.
            let _ = fs::remove_dir_all(&rootfs);
            fs::create_dir(&rootfs).ctx(|| format!("mkdir {}", rootfs.display()))?;
            crate::copy::copy_tree(&app.tree, &rootfs)?;
            fs::write(&marker, b"").ctx(|| format!("write {}", marker.display()))?;
        }
        // pivot_root needs a mount point, and the read-only remount needs
        // a mount of its own: bind the copy onto itself.
        m::mount_bind(&rootfs, &rootfs).ctx(|| format!("bind {} onto itself", rootfs.display()))?;
    }

    // The fd names the mounted root (opened after the mount, so it is the
    // overlay, not the directory under it).
    let root = rustix::fs::open(
        &rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}", rootfs.display()))?;

    // /proc: a new instance, so the app sees the pod's PID namespace.
    let t = make_in_root(&root, "/proc", Kind::Dir)?;
    mount_fs(
        "proc",
        &fd_path(&t),
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "",
    )
    .ctx(|| format!("mount proc in {}", rootfs.display()))?;

    // /sys, read-only. A new network namespace needs its own sysfs (the
    // host's would show the host's interfaces); with the host's network the
    // host's sysfs is the right view.
    let t = make_in_root(&root, "/sys", Kind::Dir)?;
    if plan.net == NetMode::None {
        mount_fs(
            "sysfs",
            &fd_path(&t),
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY,
            "",
        )
        .ctx(|| format!("mount sysfs in {}", rootfs.display()))?;
    } else {
        m::mount_bind_recursive("/sys", fd_path(&t))
            .ctx(|| format!("bind /sys in {}", rootfs.display()))?;
        let t = open_in_root(&root, "/sys", OFlags::PATH)
            .ctx(|| format!("open /sys in {}", rootfs.display()))?;
        readonly_tree(&t).ctx(|| format!("remount /sys read-only in {}", rootfs.display()))?;
    }

    setup_dev(&root, &rootfs, console)?;
    setup_etc(plan, &root, &rootfs)?;

    for mp in &app.mounts {
        let Some(vol) = plan.volumes.iter().find(|v| v.name == mp.volume) else {
            continue; // PodPlan::check refuses this
        };
        let (source, recursive, vol_ro) = match &vol.kind {
            VolumeKindPlan::Host {
                source,
                read_only,
                recursive,
            } => (source.clone(), *recursive, *read_only),
            VolumeKindPlan::Empty { read_only, .. } => {
                (layout::volume_dir(pod_dir, &vol.name), false, *read_only)
            }
        };
        let is_dir = fs::metadata(&source)
            .ctx(|| format!("volume {:?}: stat {}", vol.name, source.display()))?
            .is_dir();
        let kind = if is_dir { Kind::Dir } else { Kind::File };
        let t = make_in_root(&root, &mp.target, kind)?;
        let bound = if recursive {
            m::mount_bind_recursive(&source, fd_path(&t))
        } else {
            m::mount_bind(&source, fd_path(&t))
        };
        bound.ctx(|| {
            format!(
                "app {:?}: bind volume {:?} ({}) on {}",
                app.name,
                vol.name,
                source.display(),
                mp.target
            )
        })?;
        if vol_ro || mp.read_only {
            // Re-resolve: the fd from before the mount names the directory
            // under it; the new one names the bind mount itself.
            let t = open_in_root(&root, &mp.target, OFlags::PATH)
                .ctx(|| format!("resolve {} in the app root", mp.target))?;
            readonly_tree(&t).ctx(|| {
                format!(
                    "app {:?}: remount volume {:?} read-only at {}",
                    app.name, vol.name, mp.target
                )
            })?;
        }
    }

    if app.readonly_rootfs {
        let t =
            open_in_root(&root, "/", OFlags::PATH).ctx(|| format!("open {}", rootfs.display()))?;
        remount_readonly(&fd_path(&t)).ctx(|| format!("remount {} read-only", rootfs.display()))?;
    }
    Ok(rootfs)
}

/// /dev: a fresh tmpfs holding binds of the harmless host nodes, a private
/// devpts instance, /dev/shm and the usual links. Nothing else of the
/// host's /dev (disks, /dev/mem) is reachable.
fn setup_dev(root: &OwnedFd, rootfs: &Path, console: &Path) -> Result<(), Error> {
    let at = |what: &str| format!("{what} in {}", rootfs.display());
    let t = make_in_root(root, "/dev", Kind::Dir)?;
    mount_fs(
        "tmpfs",
        &fd_path(&t),
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        "mode=755,size=65536k",
    )
    .ctx(|| at("mount tmpfs on /dev"))?;
    // The tmpfs is ours and empty: names inside it cannot be symlinks
    // planted by the image.
    let dev =
        open_in_root(root, "/dev", OFlags::DIRECTORY | OFlags::RDONLY).ctx(|| at("open /dev"))?;
    let dev_path = fd_path(&dev);
    let mut nodes: Vec<(String, PathBuf)> = DEV_NODES
        .iter()
        .map(|n| (n.to_string(), Path::new("/dev").join(n)))
        .collect();
    nodes.push(("console".into(), console.to_path_buf()));
    for (name, source) in &nodes {
        rustix::fs::openat(
            &dev,
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .ctx(|| at(&format!("create /dev/{name}")))?;
        m::mount_bind(source, format!("{dev_path}/{name}"))
            .ctx(|| at(&format!("bind {} on /dev/{name}", source.display())))?;
    }
    for (name, mode) in [("pts", 0o755), ("shm", 0o1777)] {
        rustix::fs::mkdirat(&dev, name, Mode::from_raw_mode(mode))
            .ctx(|| at(&format!("mkdir /dev/{name}")))?;
    }
    // newinstance: the app's ptys are its own, not the host's.
    mount_fs(
        "devpts",
        &format!("{dev_path}/pts"),
        MountFlags::NOSUID | MountFlags::NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    .ctx(|| at("mount devpts on /dev/pts"))?;
    mount_fs(
        "tmpfs",
        &format!("{dev_path}/shm"),
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=1777",
    )
    .ctx(|| at("mount tmpfs on /dev/shm"))?;
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        rustix::fs::symlinkat(target, &dev, name).ctx(|| at(&format!("symlink /dev/{name}")))?;
    }
    Ok(())
}

/// /etc/hostname, /etc/hosts and (host network only) /etc/resolv.conf,
/// only where the image has none: the image's own files win. They are
/// written into the app's root (the overlay's upper layer or the copy),
/// never into the store tree.
fn setup_etc(plan: &PodPlan, root: &OwnedFd, rootfs: &Path) -> Result<(), Error> {
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("hostname", format!("{}\n", plan.hostname).into_bytes()),
        (
            "hosts",
            format!(
                "127.0.0.1\tlocalhost localhost.localdomain {h}\n::1\tlocalhost ip6-localhost ip6-loopback {h}\n",
                h = plan.hostname
            )
            .into_bytes(),
        ),
    ];
    if plan.net == NetMode::Host {
        if let Ok(r) = fs::read("/etc/resolv.conf") {
            files.push(("resolv.conf", r));
        }
    }
    let mut etc: Option<OwnedFd> = None;
    for (name, content) in files {
        // An existing entry, even a dangling symlink, is the image's say.
        match open_in_root(
            root,
            &format!("/etc/{name}"),
            OFlags::PATH | OFlags::NOFOLLOW,
        ) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(Error::new(
                    format!("look for /etc/{name} in {}", rootfs.display()),
                    e,
                ))
            }
        }
        if etc.is_none() {
            make_in_root(root, "/etc", Kind::Dir)?;
            etc = Some(
                open_in_root(root, "/etc", OFlags::DIRECTORY | OFlags::RDONLY)
                    .ctx(|| format!("open /etc in {}", rootfs.display()))?,
            );
        }
        let Some(etc) = &etc else { continue };
        let fd = rustix::fs::openat(
            etc,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .ctx(|| format!("create /etc/{name} in {}", rootfs.display()))?;
        let mut f = fs::File::from(fd);
        std::io::Write::write_all(&mut f, &content)
            .ctx(|| format!("write /etc/{name} in {}", rootfs.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_are_escaped() {
        assert_eq!(overlay_escape(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a"), "/");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(normalize("/a/../../b/./c/"), "/b/c");
    }

    #[test]
    fn the_fallback_resolves_like_openat2() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path().join("root");
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("a/b/f"), "f").unwrap();
        std::os::unix::fs::symlink("/a", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", r.join("a/up")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), r.join("host")).unwrap();
        std::os::unix::fs::symlink("loop2", r.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", r.join("loop2")).unwrap();
        fs::write(tmp.path().join("outside"), "o").unwrap();
        let root = rustix::fs::open(
            &r,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let kernel = |p: &str| {
            rustix::fs::openat2(
                &root,
                p,
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
        };
        let ino =
            |fd: rustix::io::Result<OwnedFd>| fd.map(|fd| rustix::fs::fstat(&fd).unwrap().st_ino);
        for p in [
            "/",
            "a/b/f",
            "/abs/b/f",
            "/a/up/a/b/f",
            "/a/up/abs",
            "/../../a",
            "host",
            "host/outside",
            "/a/b/../b/./f",
            "loop1",
            "missing",
            "/abs/missing/x",
        ] {
            assert_eq!(
                ino(open_in_root_by_hand(&root, p, OFlags::PATH)),
                ino(kernel(p)),
                "{p}"
            );
        }
        // A dangling absolute link to a host path resolves inside the root.
        assert_eq!(
            open_in_root_by_hand(&root, "host/outside", OFlags::PATH).unwrap_err(),
            Errno::NOENT
        );
    }

    #[test]
    fn targets_stay_inside_the_root_through_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let root_dir = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&root_dir).unwrap();
        fs::create_dir_all(&outside).unwrap();
        // An image symlink pointing at a host path: must resolve in the root.
        std::os::unix::fs::symlink(&outside, root_dir.join("data")).unwrap();
        let root = rustix::fs::open(
            &root_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        make_in_root(&root, "/data/sub", Kind::Dir).unwrap();
        assert!(!outside.join("sub").exists(), "escaped the root");
        let inside = root_dir
            .join(outside.strip_prefix("/").unwrap())
            .join("sub");
        assert!(inside.is_dir(), "not created inside the root");
        make_in_root(&root, "/etc/file", Kind::File).unwrap();
        assert!(root_dir.join("etc/file").is_file());
        assert!(make_in_root(&root, "/a/../b", Kind::Dir).is_err());
    }
}
