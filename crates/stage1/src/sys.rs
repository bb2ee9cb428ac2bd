//! The only unsafe code of stage1: the few calls with no safe wrapper.
//!
//! Each function is small, documents why its call is sound, and is used
//! from code that keeps the process single-threaded (see the crate doc), so
//! the usual "only async-signal-safe calls after fork" rule holds trivially.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, RawFd};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::ForkResult;

/// `fork(2)`.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: stage1 never starts a thread (the supervisor and PID 1 are
    // single-threaded event loops), so the child is a complete copy with no
    // lock held by a vanished thread; it may allocate and do ordinary work.
    unsafe { nix::unistd::fork() }
}

/// `_exit(2)`: leave a forked child (or PID 1) at once. Destructors and
/// stdio buffers belong to the process we were forked from; running them
/// here would, e.g., remove files the parent still owns.
pub fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

extern "C" fn noop_handler(_: libc::c_int) {}

/// Give `signals` a do-nothing handler. The kernel drops a signal sent to
/// a PID-namespace init when the init leaves it at SIG_DFL; a handler (even
/// with the signal blocked and read from a signalfd) makes sure SIGTERM
/// from `berth stop` or from the supervisor is delivered.
pub fn install_noop_handlers(signals: &[Signal]) -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(noop_handler),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &s in signals {
        // SAFETY: the handler does nothing, so it is async-signal-safe and
        // touches no state.
        unsafe { nix::sys::signal::sigaction(s, &action)? };
    }
    Ok(())
}

/// Reset every catchable signal to its default action and unblock all of
/// them. An exec keeps ignored signals ignored and the mask as it was; the
/// app must start as if from a fresh init, not inherit the blocked mask of
/// our signalfd or the SIGPIPE the Rust runtime ignores.
pub fn reset_signals_for_exec() {
    for s in Signal::iterator() {
        if s == Signal::SIGKILL || s == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no code of ours; errors (a signal that
        // cannot be changed) are harmless and ignored.
        let _ = unsafe { nix::sys::signal::signal(s, SigHandler::SigDfl) };
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
}

/// Mark every descriptor from `first` up close-on-exec, so the app gets
/// exactly stdin, stdout and stderr (the lock and store-lease fds of stage0
/// included, whatever their numbers) while our own error messages can still
/// use stderr until the exec.
pub fn cloexec_from(first: u32) -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags; no memory is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A descriptor number inherited from stage0 (`BERTH_LOCK_FD`,
/// `BERTH_KEEP_FDS`), checked to be open.
///
/// JUSTIFICATION: `BorrowedFd::borrow_raw` is the only way to use a number
/// received through the environment.
pub fn inherited_fd(fd: RawFd) -> std::io::Result<BorrowedFd<'static>> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: fcntl(F_GETFD) on any number is harmless; it tells whether
    // the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and is never closed by
    // this process: stage0 handed it over for the pod's whole life, so the
    // 'static borrow cannot outlive it.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Bring the loopback interface up in the current network namespace
/// (`--net=none` pods get a namespace with only `lo`, down by default).
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket(2); the result is checked and closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own, sized for it.
    let mut r = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) };
    if r == 0 {
        // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
        r = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) };
    }
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket we opened above, exactly once.
    unsafe { libc::close(sock) };
    if r < 0 {
        return Err(err);
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2) (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Make the mount at `fd` and every mount below it read-only, in one
/// call (`mount_setattr(AT_RECURSIVE)`, Linux 5.12). A plain
/// `MS_REMOUNT|MS_BIND|MS_RDONLY` only changes the top mount: after an
/// rbind of /sys, /sys/fs/cgroup/* would stay writable, and an app could
/// write to the host's cgroups.
pub fn make_readonly_recursive(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid NUL-terminated empty string, `attr`
    // lives across the call and its size is passed; the kernel only reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
