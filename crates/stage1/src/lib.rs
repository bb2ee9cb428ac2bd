//! # berth-stage1: what runs a pod
//!
//! Stage0 (`berth run`) prepares a pod directory (see `berth_pod::layout`),
//! holds its lock, and then *execs* `berth stage1 run POD_DIR` in place. So
//! the process the user's shell or systemd started becomes the pod's
//! supervisor: the init system tracks the right PID, Ctrl-C and SIGTERM reach
//! the pod, and the lock (the pod's "running" state) lives exactly as long
//! as the pod does. There is no daemon to ask; everything else learns about
//! the pod from files in its directory.
//!
//! ## Process model
//!
//! ```text
//! berth run  --exec-->  supervisor (host namespaces; holds the lock fd)
//!                         |  pipes / pty carry the apps' output up
//!                         +-- fork into new pid/mnt/uts/ipc[/net] namespaces
//!                               PID 1 of the pod (still sees the host fs)
//!                                 |  mounts each app's rootfs, reaps,
//!                                 |  restarts, stops, records statuses
//!                                 +-- app (own mount ns, pivot_root, exec)
//!                                 +-- app ...
//! ```
//!
//! - The **supervisor** ([`supervisor`]) stays outside the pod. It is
//!   single-threaded and event driven (one `poll` over a signalfd and the
//!   output pipes), which keeps it small and makes `fork` safe: after a
//!   fork only the forking thread exists, and with one thread there is no
//!   lock another thread could hold. It copies the apps' output to its own
//!   stdout/stderr and into capped per-app logs, forwards stop requests to
//!   PID 1, and turns PID 1's exit into its own exit status.
//! - **PID 1** ([`pid1`]) is the init of the pod's PID namespace. It dies
//!   with the supervisor (`PR_SET_PDEATHSIG`), and when a PID namespace's
//!   init dies the kernel kills every process in it, and the last process
//!   leaving the mount namespace takes every pod mount with it. That is why
//!   the mounts are made *in PID 1's private mount namespace* rather than by
//!   the supervisor: a `kill -9` of `berth run` can never leave a mount or a
//!   process behind on the host.
//! - Each **app** ([`exec`]) gets its own mount namespace, because
//!   `pivot_root` changes the root of every process of a mount namespace,
//!   and PID 1 must keep seeing the host (the pod directory, the other apps'
//!   roots).
//!
//! Root filesystems ([`rootfs`]) are overlays over the read-only store tree,
//! or copies ([`copy`]) where overlayfs is missing. Every path inside an app
//! root is resolved with the root as the root (`openat2(RESOLVE_IN_ROOT)`),
//! and mounted through `/proc/self/fd`, so an image's symlinks can never
//! send a mount to the host.
//!
//! All `unsafe` lives in [`sys`].
//!
//! ## Exit statuses
//! The supervisor exits with the pod's code: the first app that failed (its
//! exit code, or 128 + signal), else 0; 128 + signal if PID 1 itself was
//! killed; 254 with one `berth: <what>: <why>` line for berth's own failures.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

pub mod copy;
pub mod error;
pub mod exec;
pub mod output;
pub mod pid1;
pub mod rootfs;
pub mod supervisor;
pub mod sys;
pub mod terminal;
pub mod users;

pub use error::Error;

/// Exit status of berth's own failures (rkt's convention, as `berth run`).
pub const EXIT_BERTH_FAILURE: u8 = 254;

/// Entry point of `berth stage1 ARGS...` (hidden; stage0 execs it).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut args = args.into_iter();
    let pod_dir = match (args.next(), args.next(), args.next()) {
        (Some(cmd), Some(dir), None) if cmd == "run" => PathBuf::from(dir),
        _ => {
            eprintln!("berth: stage1: usage: berth stage1 run POD_DIR");
            return ExitCode::from(EXIT_BERTH_FAILURE);
        }
    };
    match supervisor::run(&pod_dir) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("berth: {}", e.one_line());
            ExitCode::from(EXIT_BERTH_FAILURE)
        }
    }
}
