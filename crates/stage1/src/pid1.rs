//! PID 1 of the pod: builds the app roots, starts the apps with their
//! event handlers, reaps every process of the pod (orphans are reparented
//! to a PID namespace's init), restarts apps by policy, stops the pod, and
//! records each app's status in the pod directory.
//!
//! One event loop, one thread: a signalfd (SIGCHLD, stop requests) and a
//! timeout for the nearest deadline (a restart's backoff, a SIGKILL after
//! the stop grace). Each app moves through [`Phase`]s:
//!
//! ```text
//! Waiting --(time)--> PreStart --(exit 0)--> Running --(exit)--> PostStop --> Waiting (restart)
//!                        |                                          |     \-> Done
//!                        \------------(failure)---------------------/
//! ```

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_pod::fsutil;
use berth_pod::layout::{self, AppDir};
use berth_pod::{AppPlan, AppStatus, NetMode, PodPlan, RestartPolicy};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::error::{Context, Error};
use crate::exec::{self, ChildSpec};
use crate::sys;

/// First restart delay; doubled after each restart up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// An app that ran this long before failing starts over at
/// [`BACKOFF_START`]: it was healthy, this is a new incident.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// What the supervisor hands to PID 1 across the fork.
#[derive(Debug)]
pub struct Pid1Args {
    pub plan: PodPlan,
    pub pod_dir: PathBuf,
    /// Write ends of each app's stdout and stderr pipes, in plan order.
    pub outputs: Vec<(OwnedFd, OwnedFd)>,
    /// `--interactive`: the pty slave and its host path (for /dev/console).
    pub tty: Option<(OwnedFd, PathBuf)>,
}

/// Where an app is in its life.
#[derive(Debug)]
enum Phase {
    /// Not started yet, or waiting for its restart.
    Waiting {
        at: Instant,
    },
    PreStart {
        pid: Pid,
    },
    Running {
        pid: Pid,
        since: Instant,
    },
    /// The app exited and its post-stop handler runs; then the app
    /// restarts at `restart_at` (unless the pod is stopping), or is done.
    PostStop {
        pid: Pid,
        restart_at: Option<Instant>,
    },
    Done,
}

#[derive(Debug)]
struct App {
    phase: Phase,
    status: AppStatus,
    status_path: PathBuf,
    backoff: Duration,
    /// SIGKILL the current process at this time (stop grace, handler limit).
    kill_at: Option<Instant>,
    /// A start (pre-start included) has been attempted: later ones count
    /// as restarts.
    started_once: bool,
    /// The app's own program has been exec'd at least once.
    execed: bool,
}

/// Run PID 1. Never returns: it exits with the pod's exit code, or 254
/// after printing why it could not run the pod.
pub fn run(args: Pid1Args) -> ! {
    match pid1(args) {
        Ok(code) => sys::exit_now(code),
        Err(e) => {
            eprintln!("berth: {}", e.one_line());
            sys::exit_now(254)
        }
    }
}

fn pid1(args: Pid1Args) -> Result<i32, Error> {
    let plan = &args.plan;
    // Leave the caller's session: a Ctrl-C on the caller's terminal goes to
    // the supervisor alone, which turns it into an orderly stop.
    let _ = nix::unistd::setsid();
    // Predictable modes for what we create (and for the apps, who inherit it).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));

    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if plan.net == NetMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    nix::sched::unshare(flags).ctx(|| "unshare the pod's mount, UTS, IPC namespaces")?;
    // Nothing mounted from here on may reach the host: receive the host's
    // unmounts (slave) but never send ours back.
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::DOWNSTREAM
            | rustix::mount::MountPropagationFlags::REC,
    )
    .ctx(|| "make / a recursive slave mount")?;
    rustix::system::sethostname(plan.hostname.as_bytes())
        .ctx(|| format!("sethostname {:?}", plan.hostname))?;
    if plan.net == NetMode::None {
        sys::loopback_up().ctx(|| "bring lo up in the pod's network namespace")?;
    }

    // Signals: blocked since the supervisor (inherited), read here from a
    // signalfd of our own; handlers too, see sys::install_noop_handlers.
    let stop_signals = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];
    let mut mask = SigSet::empty();
    for s in stop_signals.iter().chain([&Signal::SIGCHLD]) {
        mask.add(*s);
    }
    mask.thread_block().ctx(|| "block signals")?;
    sys::install_noop_handlers(&[
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ])
    .ctx(|| "install signal handlers")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .ctx(|| "signalfd")?;

    crate::rootfs::make_empty_volumes(plan, &args.pod_dir)?;
    let console = args
        .tty
        .as_ref()
        .map_or_else(|| PathBuf::from("/dev/null"), |(_, p)| p.clone());
    let mut warned = false;
    let mut roots = Vec::new();
    for app in &plan.apps {
        roots.push(crate::rootfs::prepare_app(
            plan,
            app,
            &args.pod_dir,
            &console,
            &mut warned,
        )?);
    }

    let now = Instant::now();
    let mut pod = Pod {
        args: &args,
        roots,
        apps: plan
            .apps
            .iter()
            .map(|a| App {
                phase: Phase::Waiting { at: now },
                status: AppStatus {
                    running: true,
                    ..AppStatus::default()
                },
                status_path: AppDir::new(&args.pod_dir, &a.name).status(),
                backoff: BACKOFF_START,
                kill_at: None,
                started_once: false,
                execed: false,
            })
            .collect(),
        stopping: false,
        code: None,
        ready_written: false,
    };
    for a in &pod.apps {
        let _ = a.status.save(&a.status_path);
    }
    pod.event_loop(&sfd)
}

struct Pod<'a> {
    args: &'a Pid1Args,
    roots: Vec<PathBuf>,
    apps: Vec<App>,
    /// A stop is under way (a request, or an app failed).
    stopping: bool,
    /// The pod's exit code: the first app that ended non-zero.
    code: Option<i32>,
    ready_written: bool,
}

impl Pod<'_> {
    fn plan(&self, idx: usize) -> &AppPlan {
        &self.args.plan.apps[idx]
    }

    fn event_loop(&mut self, sfd: &SignalFd) -> Result<i32, Error> {
        loop {
            self.on_timers();
            if self.apps.iter().all(|a| matches!(a.phase, Phase::Done)) {
                // Whatever the apps left behind (daemons, orphans) ends with
                // the pod; our exit kills them anyway, this makes it prompt.
                let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
                return Ok(self.code.unwrap_or(0));
            }
            let timeout = self.next_deadline().map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                rustix::event::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as i64,
                }
            });
            let mut fds = [rustix::event::PollFd::new(
                sfd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::new("poll", e)),
            }
            while let Ok(Some(info)) = sfd.read_signal() {
                let sig = Signal::try_from(info.ssi_signo as i32).ok();
                match sig {
                    Some(Signal::SIGCHLD) => {}
                    Some(_) => self.begin_stop(),
                    None => {}
                }
            }
            self.reap();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.apps
            .iter()
            .flat_map(|a| {
                let phase = match a.phase {
                    Phase::Waiting { at } => Some(at),
                    _ => None,
                };
                [phase, a.kill_at]
            })
            .flatten()
            .min()
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.apps.len() {
            if let Some(t) = self.apps[i].kill_at {
                if t <= now {
                    self.apps[i].kill_at = None;
                    if let Some(pid) = self.apps[i].live_pid() {
                        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    }
                }
            }
            if let Phase::Waiting { at } = self.apps[i].phase {
                if at <= now {
                    if self.stopping {
                        self.finish(i);
                    } else {
                        self.start(i);
                    }
                }
            }
        }
    }

    /// Start app `i`: its pre-start handler if it has one, else the app.
    fn start(&mut self, i: usize) {
        let app = self.plan(i).clone();
        if self.apps[i].started_once {
            self.apps[i].status.restarts += 1;
        }
        self.apps[i].started_once = true;
        match &app.pre_start {
            Some(argv) => match self.spawn(i, argv) {
                Ok((pid, _, _)) => self.apps[i].phase = Phase::PreStart { pid },
                Err(e) => {
                    eprintln!("berth: app {}: pre-start: {}", app.name, e.one_line());
                    self.exited(i, 254, None);
                }
            },
            None => self.start_main(i),
        }
    }

    fn start_main(&mut self, i: usize) {
        let app = self.plan(i).clone();
        match self.spawn(i, &app.exec) {
            Ok((pid, host_pid, execed)) => {
                let a = &mut self.apps[i];
                a.phase = Phase::Running {
                    pid,
                    since: Instant::now(),
                };
                a.status.pid = Some(host_pid);
                a.status.started_ms = Some(fsutil::now_ms());
                a.status.running = true;
                let _ = a.status.save(&a.status_path);
                a.execed |= execed;
                // Ready: every app's program has been started (exec'd) at
                // least once; a quick app may already be done by now.
                if !self.ready_written && self.apps.iter().all(|a| a.execed) {
                    self.ready_written = true;
                    let _ =
                        fsutil::write_atomic_nosync(&self.args.pod_dir.join(layout::READY), b"");
                }
            }
            Err(e) => {
                eprintln!("berth: app {}: {}", app.name, e.one_line());
                self.exited(i, 254, None);
            }
        }
    }

    /// Fork a process of app `i` running `argv`. Returns its PID in the pod
    /// and on the host once it has exec'd (or failed: then its exit status,
    /// reaped as usual, tells).
    fn spawn(&self, i: usize, argv: &[String]) -> Result<(Pid, i32, bool), Error> {
        let app = self.plan(i);
        let (out, err) = &self.args.outputs[i];
        let (sync_r, sync_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ctx(|| "pipe")?;
        match sys::fork().ctx(|| format!("fork app {:?}", app.name))? {
            ForkResult::Child => {
                drop(sync_r);
                exec::run_child(ChildSpec {
                    app,
                    argv,
                    rootfs: &self.roots[i],
                    stdout: out.as_fd(),
                    stderr: err.as_fd(),
                    tty: self.args.tty.as_ref().map(|(fd, _)| fd.as_fd()),
                    sync: sync_w,
                })
            }
            ForkResult::Parent { child } => {
                drop(sync_w);
                // Until EOF: the child's host PID, then nothing more once it
                // has exec'd (close-on-exec) or exited.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 64];
                loop {
                    match rustix::io::read(&sync_r, &mut chunk) {
                        Ok(0) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(rustix::io::Errno::INTR) => {}
                        Err(_) => break,
                    }
                }
                let failed = buf.ends_with(exec::FAILED_MARK);
                let host_pid = std::str::from_utf8(&buf)
                    .ok()
                    .and_then(|s| s.lines().next()?.trim().parse().ok())
                    .unwrap_or(child.as_raw());
                Ok((child, host_pid, !failed))
            }
        }
    }

    /// Reap every exited child: our apps and handlers, and the orphans the
    /// kernel hands to a namespace's init.
    fn reap(&mut self) {
        loop {
            let (pid, code, signal) =
                match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) => (pid, code, None),
                    Ok(WaitStatus::Signaled(pid, sig, _)) => {
                        (pid, 128 + sig as i32, Some(sig as i32))
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => return,
                    Ok(_) => continue,
                };
            let Some(i) = self.apps.iter().position(|a| a.live_pid() == Some(pid)) else {
                continue; // an orphan
            };
            self.apps[i].kill_at = None;
            match std::mem::replace(&mut self.apps[i].phase, Phase::Done) {
                Phase::PreStart { .. } => {
                    if code == 0 && !self.stopping {
                        self.start_main(i);
                    } else {
                        eprintln!(
                            "berth: app {}: pre-start handler failed with {code}",
                            self.plan(i).name
                        );
                        self.exited(i, code, signal);
                    }
                }
                Phase::Running { since, .. } => {
                    if since.elapsed() >= BACKOFF_RESET_AFTER {
                        self.apps[i].backoff = BACKOFF_START;
                    }
                    self.exited(i, code, signal);
                }
                Phase::PostStop { restart_at, .. } => match restart_at {
                    Some(at) if !self.stopping => self.apps[i].phase = Phase::Waiting { at },
                    _ => self.finish(i),
                },
                other => self.apps[i].phase = other,
            }
        }
    }

    /// App `i` (or its pre-start) ended with `code`: record it, decide on a
    /// restart, run its post-stop handler.
    fn exited(&mut self, i: usize, code: i32, signal: Option<i32>) {
        let policy = self.plan(i).restart;
        let restarts = self.apps[i].status.restarts;
        let restart = !self.stopping
            && match policy {
                RestartPolicy::No => false,
                RestartPolicy::OnFailure { max } => code != 0 && max.is_none_or(|m| restarts < m),
                RestartPolicy::Always => true,
            };
        {
            let a = &mut self.apps[i];
            a.status.pid = None;
            a.status.exit_code = Some(code);
            a.status.signal = signal;
            a.status.exited_ms = Some(fsutil::now_ms());
            a.status.running = restart;
            let _ = a.status.save(&a.status_path);
        }
        let restart_at = restart.then(|| {
            let a = &mut self.apps[i];
            let at = Instant::now() + a.backoff;
            a.backoff = (a.backoff * 2).min(BACKOFF_MAX);
            at
        });
        if !restart && code != 0 && self.code.is_none() {
            self.code = Some(code);
            self.begin_stop();
        }
        let post_stop = self.plan(i).post_stop.clone();
        if let Some(argv) = post_stop {
            match self.spawn(i, &argv) {
                Ok((pid, _, _)) => {
                    let grace = Duration::from_millis(self.args.plan.stop_timeout_ms);
                    let a = &mut self.apps[i];
                    a.phase = Phase::PostStop { pid, restart_at };
                    // A hung handler must not hold the pod forever.
                    a.kill_at = Some(Instant::now() + grace);
                    return;
                }
                Err(e) => eprintln!(
                    "berth: app {}: post-stop: {}",
                    self.plan(i).name,
                    e.one_line()
                ),
            }
        }
        match restart_at {
            Some(at) if !self.stopping => self.apps[i].phase = Phase::Waiting { at },
            _ => self.finish(i),
        }
    }

    /// App `i` is over for good.
    fn finish(&mut self, i: usize) {
        let a = &mut self.apps[i];
        a.phase = Phase::Done;
        a.kill_at = None;
        if a.status.running {
            a.status.running = false;
            let _ = a.status.save(&a.status_path);
        }
    }

    /// Stop the pod: each running app gets its stop signal, and SIGKILL
    /// after the grace; pending restarts are cancelled; post-stop handlers
    /// still run as the apps exit.
    fn begin_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let deadline = Instant::now() + Duration::from_millis(self.args.plan.stop_timeout_ms);
        for i in 0..self.apps.len() {
            let sig = Signal::try_from(self.plan(i).stop_signal).unwrap_or(Signal::SIGTERM);
            match self.apps[i].phase {
                Phase::Running { pid, .. } | Phase::PreStart { pid } => {
                    let _ = nix::sys::signal::kill(pid, sig);
                    self.apps[i].kill_at = Some(deadline);
                }
                Phase::Waiting { .. } => self.finish(i),
                Phase::PostStop { .. } | Phase::Done => {}
            }
        }
    }
}

impl App {
    fn live_pid(&self) -> Option<Pid> {
        match self.phase {
            Phase::PreStart { pid } | Phase::Running { pid, .. } | Phase::PostStop { pid, .. } => {
                Some(pid)
            }
            Phase::Waiting { .. } | Phase::Done => None,
        }
    }
}
