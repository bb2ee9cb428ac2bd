//! The caller's terminal in `--interactive` pods: raw mode while the pod
//! runs (so keys, Ctrl-C included, reach the app's pty as bytes), restored
//! on every way out, and window sizes passed on to the pty.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::termios::{self, OptionalActions, Termios};

/// Restores the saved terminal settings when dropped: normal return, error
/// return and panic unwinding all go through the drop.
#[derive(Debug)]
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Put `fd` in raw mode if it is a terminal; `None` when it is not (a
    /// pipe or a file: nothing to set or restore).
    pub fn enter(fd: BorrowedFd<'static>) -> Option<RawMode> {
        if !termios::isatty(fd) {
            return None;
        }
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(fd, OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}

/// Copy the window size of the caller's terminal to the pty (at start and
/// on SIGWINCH). Nothing to do when the caller has no terminal.
pub fn copy_winsize(from: BorrowedFd<'_>, to: impl AsFd) {
    if let Ok(ws) = termios::tcgetwinsize(from) {
        let _ = termios::tcsetwinsize(to, ws);
    }
}
