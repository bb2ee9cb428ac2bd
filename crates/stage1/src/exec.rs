//! The app side of a fork in PID 1: from a copy of PID 1 to the app's
//! program, in its own root, as its own user. Runs in a single-threaded
//! child (see the crate doc), and never returns: it execs or `_exit`s with
//! 254 after one `berth: app <name>: <what>: <why>` line on the app's
//! stderr (so the failure shows in the app's output and log).

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use berth_pod::AppPlan;
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use rustix::fs::{Mode, OFlags};

use crate::error::{Context, Error};
use crate::sys;

/// What a child needs besides the plan.
#[derive(Debug)]
pub struct ChildSpec<'a> {
    pub app: &'a AppPlan,
    /// argv: the app's exec, or an event handler's.
    pub argv: &'a [String],
    pub rootfs: &'a Path,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
    /// `--interactive`: the pty slave becomes stdin/stdout/stderr and the
    /// controlling terminal.
    pub tty: Option<BorrowedFd<'a>>,
    /// Write end of PID 1's start pipe (close-on-exec): the child writes
    /// its host PID into it; the exec closes it, which tells PID 1 the
    /// program started.
    pub sync: OwnedFd,
}

/// Become the app. Never returns.
pub fn run_child(spec: ChildSpec<'_>) -> ! {
    sys::reset_signals_for_exec();
    let name = spec.app.name.clone();
    // stdio first, so every later error goes to the app's stderr.
    let result = stdio(&spec).and_then(|()| become_app(&spec));
    let e = match result {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = writeln!(std::io::stderr(), "berth: app {name}: {}", e.one_line());
    // Tell PID 1 the start failed (rather than exec'd), then leave.
    let _ = rustix::io::write(&spec.sync, FAILED_MARK);
    sys::exit_now(254);
}

/// Written into the start pipe by a child that could not exec.
pub const FAILED_MARK: &[u8] = b"E";

enum Never {}

fn stdio(spec: &ChildSpec<'_>) -> Result<(), Error> {
    if let Some(tty) = spec.tty {
        // A session of its own whose controlling terminal is the pty, so
        // the shell in it gets job control and Ctrl-C as SIGINT.
        nix::unistd::setsid().ctx(|| "setsid")?;
        rustix::process::ioctl_tiocsctty(tty).ctx(|| "make the pty the controlling terminal")?;
        for target in [0, 1, 2] {
            dup_onto(tty, target)?;
        }
        return Ok(());
    }
    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| "open /dev/null")?;
    dup_onto(null.as_fd(), 0)?;
    dup_onto(spec.stdout, 1)?;
    dup_onto(spec.stderr, 2)?;
    Ok(())
}

fn dup_onto(fd: BorrowedFd<'_>, target: i32) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() == target {
        // dup2 onto itself keeps close-on-exec: clear it by hand.
        return rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
            .ctx(|| format!("clear close-on-exec of fd {target}"));
    }
    let r = match target {
        0 => rustix::stdio::dup2_stdin(fd),
        1 => rustix::stdio::dup2_stdout(fd),
        _ => rustix::stdio::dup2_stderr(fd),
    };
    r.ctx(|| format!("dup2 onto fd {target}"))
}

fn become_app(spec: &ChildSpec<'_>) -> Result<Never, Error> {
    let app = spec.app;
    // Tell PID 1 our host PID: /proc is still the host's here, and the
    // host's procfs names us by our host PID.
    let host_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<i32>().ok()))
        .unwrap_or(0);
    let _ = rustix::io::write(&spec.sync, format!("{host_pid}\n").as_bytes());

    // A mount namespace per app: pivot_root moves the root of every
    // process sharing the namespace, and PID 1 must keep the host view.
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).ctx(|| "unshare the mount namespace")?;
    enter_root(spec.rootfs)?;

    // Names are the image's: read its files now that they are at /etc.
    let passwd = std::fs::read_to_string("/etc/passwd").ok();
    let group = std::fs::read_to_string("/etc/group").ok();
    let (uid, primary) = crate::users::resolve_user(&app.user, passwd.as_deref())
        .map_err(|m| Error::msg("resolve the user", m))?;
    let gid = crate::users::resolve_group(&app.group, group.as_deref(), primary)
        .map_err(|m| Error::msg("resolve the group", m))?;
    // Exactly the planned supplementary groups: the image's /etc/group
    // memberships are not added (the plan already decided).
    let groups: Vec<Gid> = app
        .supplementary_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).ctx(|| "setgroups")?;
    nix::unistd::setgid(Gid::from_raw(gid)).ctx(|| format!("setgid {gid}"))?;
    nix::unistd::setuid(Uid::from_raw(uid)).ctx(|| format!("setuid {uid}"))?;
    // After setuid: the directory must be one the user may enter.
    std::env::set_current_dir(&app.working_directory)
        .ctx(|| format!("chdir {}", app.working_directory))?;

    let program = find_program(&spec.argv[0], &app.env)
        .ok_or_else(|| Error::msg(format!("execute {:?}", spec.argv[0]), "not found in PATH"))?;
    let argv: Vec<CString> = spec.argv.iter().map(|a| cstr(a)).collect();
    let envp: Vec<CString> = app
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect();
    // Everything but 0, 1, 2 closes on exec: the sync pipe, the output
    // pipes of other apps, stage0's lock and store-lease fds.
    sys::cloexec_from(3).ctx(|| "close_range")?;
    let err = nix::unistd::execve(&cstr(&program), &argv, &envp).unwrap_err();
    Err(Error::new(format!("execute {program}"), err))
}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// chdir into the root, make it `/` and drop the old root, so nothing of
/// the host (not even through `..` or a leaked cwd) stays reachable.
fn enter_root(rootfs: &Path) -> Result<(), Error> {
    std::env::set_current_dir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    // pivot_root(".", "."): the old root ends up stacked on top of the new
    // one at "/", and the lazy unmount of "." takes it away (pivot_root(2)).
    rustix::process::pivot_root(".", ".")
        .ctx(|| format!("pivot_root into {}", rootfs.display()))?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
        .ctx(|| "detach the old root")?;
    std::env::set_current_dir("/").ctx(|| "chdir /")?;
    Ok(())
}

/// `exec[0]` as the app's environment's PATH finds it (appc: the exec path
/// is absolute, or looked up in the app's PATH).
fn find_program(name: &str, env: &[(String, String)]) -> Option<String> {
    if name.contains('/') {
        return Some(name.to_string());
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':').filter(|d| !d.is_empty()).find_map(|d| {
        let candidate = format!("{}/{}", d.trim_end_matches('/'), name);
        rustix::fs::access(candidate.as_str(), rustix::fs::Access::EXEC_OK)
            .ok()
            .map(|_| candidate)
    })
}
