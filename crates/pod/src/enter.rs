//! Joining a running app, for `berth enter`: its namespaces, root,
//! working directory, environment, user and groups, and cgroup.
//!
//! Everything about the target is read and opened first (namespace links,
//! root, cwd, cgroup files), while `/proc` and `/sys/fs/cgroup` are still
//! the host's; then this process joins, and the command is started as a
//! *child*, because a process never moves into a PID namespace itself, only
//! its children do. The child is born in the app's cgroups; the waiting
//! parent then moves back to its own ([`Joined::leave_cgroups`]).
//!
//! Joining a mount namespace needs a process with one thread (setns
//! refuses a process whose threads share their filesystem context), so
//! [`Target::join`] checks that first and says so rather than failing with
//! a bare EINVAL. No `unsafe` is needed: every step is a plain syscall on
//! the calling (only) thread.
//!
//! Not copied (yet): the capability bounding set and the seccomp filter of
//! the app; the entered command runs with the app's user and groups, so a
//! non-root app gets no capabilities anyway.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::thread::LinkNameSpaceType;

/// Namespaces joined, in this order: the mount namespace last, since after
/// it `/proc` is the pod's.
const NAMESPACES: [(&str, LinkNameSpaceType); 6] = [
    ("cgroup", LinkNameSpaceType::ControlGroup),
    ("ipc", LinkNameSpaceType::InterProcessCommunication),
    ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
    ("net", LinkNameSpaceType::Network),
    ("pid", LinkNameSpaceType::ProcessID),
    ("mnt", LinkNameSpaceType::Mount),
];

/// A running process to join, with everything read while it was there.
#[derive(Debug)]
pub struct Target {
    pid: i32,
    namespaces: Vec<(&'static str, LinkNameSpaceType, OwnedFd)>,
    root: OwnedFd,
    cwd: OwnedFd,
    /// The process's environment as it was exec'd.
    pub env: Vec<(OsString, OsString)>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The app's cgroups that are not ours, one per hierarchy.
    cgroups: Vec<CgroupMove>,
}

/// One cgroup hierarchy where the app's cgroup differs from ours: both
/// `cgroup.procs` files, opened while the host's `/sys/fs/cgroup` is in
/// view (and with root's credentials, which the kernel checks at open).
#[derive(Debug)]
struct CgroupMove {
    app: File,
    home: File,
    what: String,
}

/// What [`Target::join`] leaves to undo once the command was started.
#[derive(Debug)]
pub struct Joined {
    homes: Vec<CgroupMove>,
}

impl Joined {
    /// Move this (waiting) process back to its own cgroups: the command,
    /// started while this process was in the app's cgroups, stays there
    /// and counts against the app's limits; the waiting parent must not
    /// (it would keep the app's cgroup busy after the pod ends).
    pub fn leave_cgroups(&self) {
        for m in &self.homes {
            if let Err(e) = (&m.home).write_all(b"0") {
                tracing::warn!("cannot leave the app's {} cgroup: {e}", m.what);
            }
        }
    }
}

fn err(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Target {
    /// Read and open what is needed to join `pid`.
    pub fn open(pid: i32) -> io::Result<Target> {
        let proc = format!("/proc/{pid}");
        let mut namespaces = Vec::new();
        for (name, kind) in NAMESPACES {
            let link = format!("{proc}/ns/{name}");
            let mine = fs::read_link(format!("/proc/self/ns/{name}")).ok();
            let theirs = fs::read_link(&link).map_err(err(format!("cannot read {link}")))?;
            if mine.as_ref() == Some(&theirs) {
                continue; // shared with the host (e.g. --net=host): nothing to join
            }
            let fd = rustix::fs::open(&link, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| err(format!("cannot open {link}"))(e.into()))?;
            namespaces.push((name, kind, fd));
        }
        let dir = |p: String| {
            rustix::fs::openat(
                CWD,
                &p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(format!("cannot open {p}"))(e.into()))
        };
        let root = dir(format!("{proc}/root"))?;
        let cwd = dir(format!("{proc}/cwd"))?;
        let environ = fs::read(format!("{proc}/environ"))
            .map_err(err(format!("cannot read {proc}/environ")))?;
        let env = environ
            .split(|&b| b == 0)
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| {
                let eq = kv.iter().position(|&b| b == b'=')?;
                Some((
                    OsString::from_vec(kv[..eq].to_vec()),
                    OsString::from_vec(kv[eq + 1..].to_vec()),
                ))
            })
            .collect();
        let status = fs::read_to_string(format!("{proc}/status"))
            .map_err(err(format!("cannot read {proc}/status")))?;
        let field = |key: &str| -> Vec<u32> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (uids, gids) = (field("Uid:"), field("Gid:"));
        let cgroups = cgroup_moves(pid);
        Ok(Target {
            pid,
            namespaces,
            root,
            cwd,
            env,
            uid: uids.first().copied().unwrap_or(0),
            gid: gids.first().copied().unwrap_or(0),
            groups: field("Groups:"),
            cgroups,
        })
    }

    /// Join: cgroup, namespaces, root and working directory, groups, gid,
    /// uid. After this, children of this process are in the app's world.
    pub fn join(self) -> io::Result<Joined> {
        check_single_threaded()?;
        // Resource limits follow the cgroup: the command counts against the
        // app's. A cgroup that refuses is reported, not fatal: the
        // namespaces are what "enter" means.
        let mut homes = Vec::new();
        for m in self.cgroups {
            match (&m.app).write_all(b"0") {
                Ok(()) => homes.push(m),
                Err(e) => tracing::warn!(
                    "cannot join the app's {} cgroup: {e}; the command runs outside it",
                    m.what
                ),
            }
        }
        for (name, kind, fd) in &self.namespaces {
            rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind)).map_err(|e| {
                err(format!(
                    "cannot join the {name} namespace of process {}",
                    self.pid
                ))(e.into())
            })?;
        }
        rustix::process::fchdir(&self.root)
            .and_then(|()| rustix::process::chroot("."))
            .map_err(|e| err(format!("cannot enter the root of process {}", self.pid))(e.into()))?;
        rustix::process::fchdir(&self.cwd).map_err(|e| {
            err(format!(
                "cannot enter the working directory of process {}",
                self.pid
            ))(e.into())
        })?;
        let groups: Vec<rustix::fs::Gid> = self
            .groups
            .iter()
            .map(|g| rustix::fs::Gid::from_raw(*g))
            .collect();
        let ids = || -> rustix::io::Result<()> {
            rustix::thread::set_thread_groups(&groups)?;
            let g = rustix::fs::Gid::from_raw(self.gid);
            rustix::thread::set_thread_res_gid(g, g, g)?;
            let u = rustix::fs::Uid::from_raw(self.uid);
            rustix::thread::set_thread_res_uid(u, u, u)?;
            Ok(())
        };
        ids().map_err(|e| {
            err(format!(
                "cannot take the user {} and group {} of process {}",
                self.uid, self.gid, self.pid
            ))(e.into())
        })?;
        Ok(Joined { homes })
    }
}

/// The cgroup paths of `pid` per hierarchy (`id:controllers` -> path).
fn cgroup_paths(pid: &str) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (key, path) = l.rsplit_once(':')?;
            Some((key.to_string(), path.to_string()))
        })
        .collect()
}

/// Where the hierarchy `key` (`0:` for v2, `N:cpu,cpuacct` or
/// `N:name=systemd` for v1) is mounted, and the cgroup path at the
/// mount's root.
fn hierarchy_mount(key: &str, mountinfo: &str) -> Option<(String, String)> {
    let controllers = key.split_once(':')?.1;
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let mut post = post.split(' ');
        let (fstype, _source, opts) = (post.next()?, post.next()?, post.next()?);
        let matches = if controllers.is_empty() {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup"
                && controllers
                    .split(',')
                    .all(|c| opts.split(',').any(|o| o == c))
        };
        if !matches {
            return None;
        }
        Some((pre.get(4)?.to_string(), pre.get(3)?.to_string()))
    })
}

fn cgroup_moves(pid: i32) -> Vec<CgroupMove> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mine = cgroup_paths("self");
    let mut out = Vec::new();
    for (key, path) in cgroup_paths(&pid.to_string()) {
        let Some((_, home)) = mine.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        if *home == path {
            continue; // nothing to join here
        }
        let Some((mnt, root)) = hierarchy_mount(&key, &mountinfo) else {
            continue;
        };
        let procs = |cg: &str| {
            let rel = cg.strip_prefix(root.as_str()).unwrap_or(cg);
            Path::new(&mnt)
                .join(rel.trim_start_matches('/'))
                .join("cgroup.procs")
        };
        let what = key.split_once(':').map_or("", |k| k.1);
        let what = if what.is_empty() { "unified" } else { what };
        // Write-only, never created: only a real cgroup file will do.
        let open = |p: PathBuf| fs::OpenOptions::new().write(true).open(p);
        match (open(procs(&path)), open(procs(home))) {
            (Ok(app), Ok(home)) => out.push(CgroupMove {
                app,
                home,
                what: what.to_string(),
            }),
            (Err(e), _) | (_, Err(e)) => tracing::warn!(
                "cannot open the {what} cgroup of process {pid}: {e}; the command runs outside it"
            ),
        }
    }
    out
}

/// setns(CLONE_NEWNS) and the per-thread credential calls act on the
/// calling thread only; with a second thread they would be refused or
/// leave the process half-switched.
fn check_single_threaded() -> io::Result<()> {
    let status = fs::read_to_string("/proc/self/status")?;
    let threads: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    if threads != 1 {
        return Err(io::Error::other(format!(
            "this process has {threads} threads; joining a pod needs exactly one"
        )));
    }
    Ok(())
}

/// Block SIGINT and SIGQUIT in this process while it waits for the
/// entered command: Ctrl-C is for the command (which gets the terminal's
/// signals itself, with a clean signal mask, as `std::process::Command`
/// resets it), not for the waiting parent, which must stay to pass on the
/// command's exit status.
pub fn block_terminal_signals() -> io::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGQUIT);
    set.thread_block().map_err(io::Error::from)
}

/// The host PID of the pod's PID 1 must share its PID namespace with the
/// app, and that namespace must not be ours: a recycled PID of a host
/// process is never entered.
pub fn in_pod_pid_namespace(app_pid: i32, pod_pid1: Option<i32>) -> bool {
    let ns = |pid: String| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(app) = ns(app_pid.to_string()) else {
        return false;
    };
    if Some(&app) == ns("self".into()).as_ref() {
        return false;
    }
    match pod_pid1 {
        Some(p) => ns(p.to_string()).as_ref() == Some(&app),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_hierarchies_are_found_in_mountinfo() {
        let mi = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 25 0:29 /sub /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let m = |k| hierarchy_mount(k, mi);
        assert_eq!(
            m("4:pids"),
            Some(("/sys/fs/cgroup/pids".into(), "/".into()))
        );
        assert_eq!(m("2:cpu,cpuacct").unwrap().0, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(m("1:name=systemd").unwrap().0, "/sys/fs/cgroup/systemd");
        assert_eq!(
            m("0:"),
            Some(("/sys/fs/cgroup/unified".into(), "/sub".into()))
        );
        assert_eq!(m("7:memory"), None);
    }
}
