//! The supervisor: the process `berth run` became. It creates PID 1 of
//! the pod in new namespaces, copies the apps' output, forwards stop
//! requests, and exits with the pod's exit code.
//!
//! It stays single-threaded and outside every pod namespace: it holds
//! stage0's lock fd (the pod is "running" exactly while that fd is open)
//! and store-lease fds for the pod's whole life, and is what the user's
//! shell or systemd waits for.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_pod::fsutil;
use berth_pod::layout::{self, AppDir};
use berth_pod::PodPlan;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};

use crate::error::{Context, Error};
use crate::output::{self, CappedLog, Prefixer};
use crate::pid1::{self, Pid1Args};
use crate::sys;
use crate::terminal::{self, RawMode};

/// How long to keep reading the apps' output after PID 1 has exited: the
/// kernel kills what was left in the pod, and their pipe ends close soon
/// after; a descendant that escaped the pod must not hold us forever.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// One output stream the supervisor reads.
#[derive(Debug)]
struct Stream {
    app: usize,
    fd: OwnedFd,
    to_stderr: bool,
    prefixer: Prefixer,
    open: bool,
}

/// Run the pod in `pod_dir`; returns the pod's exit code.
pub fn run(pod_dir: &Path) -> Result<u8, Error> {
    let plan = PodPlan::load(pod_dir).map_err(|e| {
        let what = "load the pod plan".to_string();
        match e {
            berth_pod::plan::PlanError::Io { source, .. } => Error::new(what, source),
            other => Error::msg(what, other.to_string()),
        }
    })?;
    // stage0's lock and store leases: ours to keep open until we exit, and
    // never the apps' (close-on-exec, on top of PID 1's close_range).
    for fd in inherited_fds()? {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)
            .ctx(|| format!("set close-on-exec on inherited fd {}", fd.as_raw_fd()))?;
    }
    fsutil::write_number(&pod_dir.join(layout::PPID), std::process::id())
        .ctx(|| format!("write {}", pod_dir.join(layout::PPID).display()))?;
    fsutil::write_number(&pod_dir.join(layout::STARTED), fsutil::now_ms())
        .ctx(|| format!("write {}", pod_dir.join(layout::STARTED).display()))?;

    // Block before forking, so PID 1 starts with them blocked too and a
    // stop request can never kill it before it reads its signalfd.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGWINCH,
    ] {
        mask.add(s);
    }
    mask.thread_block().ctx(|| "block signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .ctx(|| "signalfd")?;

    let mut streams = Vec::new();
    let mut outputs = Vec::new();
    let mut pty: Option<(OwnedFd, OwnedFd, PathBuf)> = None;
    if plan.interactive {
        pty = Some(open_pty()?);
    }
    for (i, app) in plan.apps.iter().enumerate() {
        let mut ends = Vec::new();
        for to_stderr in [false, true] {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .ctx(|| format!("pipe for app {:?}", app.name))?;
            rustix::fs::fcntl_setfl(&r, OFlags::NONBLOCK).ctx(|| "set O_NONBLOCK")?;
            streams.push(Stream {
                app: i,
                fd: r,
                to_stderr,
                prefixer: Prefixer::new(&app.name, plan.prefix_output),
                open: !plan.interactive,
            });
            ends.push(w);
        }
        let err = ends.pop();
        let out = ends.pop();
        if let (Some(out), Some(err)) = (out, err) {
            outputs.push((out, err));
        }
    }
    let mut logs: Vec<CappedLog> = plan
        .apps
        .iter()
        .map(|a| CappedLog::open(&AppDir::new(pod_dir, &a.name), plan.log_max_bytes))
        .collect();

    // PID 1 polls this pipe once its death signal is armed: a closed pipe
    // means the supervisor died before that, and no signal will come.
    let (alive_r, alive_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ctx(|| "pipe")?;

    // A new PID namespace applies to the children created after unshare:
    // our one child is its init. The supervisor itself stays outside.
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).ctx(|| "unshare the PID namespace")?;
    // Buffered output would be written twice, once by each process.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let child = match sys::fork().ctx(|| "fork the pod's PID 1")? {
        ForkResult::Child => {
            // Die with the supervisor: with PID 1 gone the kernel kills the
            // whole pod, and with its processes gone the pod's mount
            // namespaces (and every mount in them) disappear.
            let _ = rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::KILL,
            ));
            drop(alive_w);
            // Armed after the fork: the supervisor may have died in between,
            // which the closed pipe shows.
            let mut p = [PollFd::new(&alive_r, PollFlags::IN)];
            if rustix::event::poll(&mut p, Some(&rustix::event::Timespec::default())).is_ok()
                && p[0].revents().intersects(PollFlags::HUP | PollFlags::IN)
            {
                sys::exit_now(254);
            }
            drop(alive_r);
            drop(sfd);
            drop(streams);
            drop(logs);
            let tty = pty.map(|(master, slave, path)| {
                drop(master);
                (slave, path)
            });
            pid1::run(Pid1Args {
                plan,
                pod_dir: pod_dir.to_path_buf(),
                outputs,
                tty,
            })
        }
        ForkResult::Parent { child } => child,
    };
    drop(alive_r);
    drop(outputs);
    let master = pty.map(|(master, slave, _)| {
        drop(slave);
        master
    });
    let _ = fsutil::write_number(&pod_dir.join(layout::PID), child.as_raw());

    // Raw mode only now: errors above print normally. The guard restores
    // the terminal on every return from here on, errors and panics too.
    let stdin_fd: BorrowedFd<'static> = rustix::stdio::stdin();
    let _raw = match &master {
        Some(m) => {
            terminal::copy_winsize(stdin_fd, m);
            RawMode::enter(stdin_fd)
        }
        None => None,
    };

    let status = event_loop(
        child,
        &sfd,
        &mut streams,
        &mut logs,
        master.as_ref(),
        stdin_fd,
    )?;
    drop(alive_w);
    let _ = fsutil::write_number(&pod_dir.join(layout::EXIT), status);
    Ok(status.clamp(0, 255) as u8)
}

/// `BERTH_LOCK_FD` and `BERTH_KEEP_FDS` (comma-separated).
fn inherited_fds() -> Result<Vec<BorrowedFd<'static>>, Error> {
    let mut numbers = Vec::new();
    if let Ok(v) = std::env::var("BERTH_LOCK_FD") {
        numbers.push(v);
    }
    if let Ok(v) = std::env::var("BERTH_KEEP_FDS") {
        numbers.extend(
            v.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(String::from),
        );
    }
    numbers
        .iter()
        .map(|n| {
            let fd: i32 = n
                .trim()
                .parse()
                .map_err(|_| Error::msg(format!("inherited fd {n:?}"), "not a number"))?;
            sys::inherited_fd(fd).ctx(|| format!("inherited fd {fd}"))
        })
        .collect()
}

/// A pty pair: the master stays here, the slave goes to the app.
fn open_pty() -> Result<(OwnedFd, OwnedFd, PathBuf), Error> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .ctx(|| "open a pseudo-terminal")?;
    grantpt(&master).ctx(|| "grantpt")?;
    unlockpt(&master).ctx(|| "unlockpt")?;
    let name = ptsname(&master, Vec::new()).ctx(|| "ptsname")?;
    let path = PathBuf::from(name.to_string_lossy().into_owned());
    let slave = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}", path.display()))?;
    Ok((master, slave, path))
}

/// Poll until PID 1 has exited and the output is drained; returns the
/// pod's exit code.
fn event_loop(
    child: Pid,
    sfd: &SignalFd,
    streams: &mut [Stream],
    logs: &mut [CappedLog],
    master: Option<&OwnedFd>,
    stdin: BorrowedFd<'static>,
) -> Result<i32, Error> {
    let mut exit: Option<i32> = None;
    let mut drain_until: Option<Instant> = None;
    let mut master_open = master.is_some();
    let mut stdin_open = master.is_some();
    let mut buf = vec![0u8; 64 * 1024];
    let mut rendered = Vec::with_capacity(64 * 1024);
    loop {
        if exit.is_some() {
            let all_closed = !master_open && streams.iter().all(|s| !s.open);
            if all_closed || drain_until.is_some_and(|t| Instant::now() >= t) {
                break;
            }
        }
        // Poll set: [signalfd, streams..., master?, stdin?]
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(streams.len() + 3);
        fds.push(PollFd::new(sfd, PollFlags::IN));
        let mut which: Vec<Source> = vec![Source::Signals];
        for (i, s) in streams.iter().enumerate() {
            if s.open {
                fds.push(PollFd::new(&s.fd, PollFlags::IN));
                which.push(Source::Stream(i));
            }
        }
        if let (Some(m), true) = (master, master_open) {
            fds.push(PollFd::new(m, PollFlags::IN));
            which.push(Source::Master);
        }
        if stdin_open && exit.is_none() {
            fds.push(PollFd::from_borrowed_fd(stdin, PollFlags::IN));
            which.push(Source::Stdin);
        }
        let timeout = drain_until.map(|t| {
            let left = t.saturating_duration_since(Instant::now());
            rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            }
        });
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::new("poll", e)),
        }
        let ready: Vec<(Source, PollFlags)> = which
            .iter()
            .zip(fds.iter())
            .map(|(w, f)| (*w, f.revents()))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        drop(fds);
        for (source, _) in ready {
            match source {
                Source::Signals => {
                    while let Ok(Some(info)) = sfd.read_signal() {
                        match Signal::try_from(info.ssi_signo as i32) {
                            Ok(Signal::SIGCHLD) => {
                                if let Some(code) = reap(child) {
                                    exit.get_or_insert(code);
                                    drain_until = Some(Instant::now() + DRAIN_GRACE);
                                }
                            }
                            Ok(Signal::SIGWINCH) => {
                                if let Some(m) = master {
                                    terminal::copy_winsize(stdin, m);
                                }
                            }
                            // SIGTERM, SIGINT, SIGHUP: an orderly stop,
                            // which PID 1 runs (stop signals, grace,
                            // post-stop handlers).
                            Ok(_) if exit.is_none() => {
                                let _ = nix::sys::signal::kill(child, Signal::SIGTERM);
                            }
                            _ => {}
                        }
                    }
                }
                Source::Stream(i) => {
                    let s = &mut streams[i];
                    match rustix::io::read(&s.fd, &mut buf) {
                        Ok(0) => s.open = false,
                        Ok(n) => {
                            logs[s.app].append(&buf[..n]);
                            rendered.clear();
                            s.prefixer.render(&buf[..n], &mut rendered);
                            output::to_console(s.to_stderr, &rendered);
                        }
                        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                        Err(_) => s.open = false,
                    }
                }
                Source::Master => {
                    let Some(m) = master else { continue };
                    match rustix::io::read(m, &mut buf) {
                        Ok(0) => master_open = false,
                        Ok(n) => {
                            if let Some(log) = logs.first_mut() {
                                log.append(&buf[..n]);
                            }
                            output::to_console(false, &buf[..n]);
                        }
                        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                        // EIO: every slave end is closed, the app is gone.
                        Err(_) => master_open = false,
                    }
                }
                Source::Stdin => {
                    let Some(m) = master else { continue };
                    match rustix::io::read(stdin, &mut buf) {
                        Ok(0) => {
                            stdin_open = false;
                            // Input from a file or pipe has ended: tell the
                            // app as a terminal would, with the EOF
                            // character (^D) at the start of a line.
                            if !rustix::termios::isatty(stdin) {
                                output::write_all_fd(m.as_fd(), b"\x04");
                            }
                        }
                        Ok(n) => output::write_all_fd(m.as_fd(), &buf[..n]),
                        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                        Err(_) => stdin_open = false,
                    }
                }
            }
        }
    }
    Ok(exit.unwrap_or(254))
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Signals,
    Stream(usize),
    Master,
    Stdin,
}

/// PID 1's exit code (or 128 + the signal that killed it) once it is gone.
fn reap(child: Pid) -> Option<i32> {
    loop {
        match nix::sys::wait::waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}
