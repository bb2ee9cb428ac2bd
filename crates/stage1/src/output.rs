//! Where the apps' output goes: the supervisor's own stdout/stderr (with
//! `<app>: ` before each line when asked), and the app's capped log in the
//! pod directory, so `berth status`/`logs` can show it after the fact.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use berth_pod::layout::AppDir;

/// One app's log file, cut at `max` bytes: when the next chunk would not
/// fit, the log becomes `log.1` (replacing the older part) and a new log
/// starts. At most `2 * max` bytes are kept.
#[derive(Debug)]
pub struct CappedLog {
    path: PathBuf,
    old: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
}

impl CappedLog {
    pub fn open(app: &AppDir, max: u64) -> CappedLog {
        let path = app.log();
        let _ = std::fs::create_dir_all(app.path());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        CappedLog {
            path,
            old: app.log_old(),
            file,
            size,
            max,
        }
    }

    /// Append `data`. A log is a convenience: an error writing it (full
    /// disk) must not stop the pod, so it is dropped silently.
    pub fn append(&mut self, mut data: &[u8]) {
        if self.max == 0 {
            return;
        }
        if data.len() as u64 > self.max {
            data = &data[data.len() - self.max as usize..];
        }
        if self.size + data.len() as u64 > self.max && self.size > 0 {
            self.file = None;
            let _ = std::fs::rename(&self.path, &self.old);
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
            self.size = 0;
        }
        if let Some(f) = &mut self.file {
            if f.write_all(data).is_ok() {
                self.size += data.len() as u64;
            }
        }
    }
}

/// Write all of `data` to `fd`, waiting when the descriptor is
/// non-blocking and full. A closed reader (EPIPE) is not our failure: the
/// pod keeps running and the log keeps the output.
pub fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let mut p = [rustix::event::PollFd::from_borrowed_fd(
                    fd,
                    rustix::event::PollFlags::OUT,
                )];
                let _ = rustix::event::poll(&mut p, None);
            }
            Err(_) => return,
        }
    }
}

/// Line prefixing state of one output stream.
#[derive(Debug)]
pub struct Prefixer {
    prefix: Option<Vec<u8>>,
    at_line_start: bool,
}

impl Prefixer {
    pub fn new(app: &str, enabled: bool) -> Prefixer {
        Prefixer {
            prefix: enabled.then(|| format!("{app}: ").into_bytes()),
            at_line_start: true,
        }
    }

    /// Copy `data` to `out`, with the prefix at the start of each line. A
    /// line split over two reads gets the prefix once.
    pub fn render(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some(prefix) = &self.prefix else {
            out.extend_from_slice(data);
            return;
        };
        for piece in data.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                out.extend_from_slice(prefix);
            }
            out.extend_from_slice(piece);
            self.at_line_start = piece.ends_with(b"\n");
        }
    }
}

/// Write `data` (already rendered) to the supervisor's stdout or stderr.
pub fn to_console(to_stderr: bool, data: &[u8]) {
    if to_stderr {
        write_all_fd(std::io::stderr().as_fd(), data);
    } else {
        write_all_fd(std::io::stdout().as_fd(), data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_once_per_line_across_reads() {
        let mut p = Prefixer::new("web", true);
        let mut out = Vec::new();
        p.render(b"one\ntw", &mut out);
        p.render(b"o\nthree\n", &mut out);
        assert_eq!(out, b"web: one\nweb: two\nweb: three\n");
        let mut q = Prefixer::new("web", false);
        let mut out = Vec::new();
        q.render(b"a\nb", &mut out);
        assert_eq!(out, b"a\nb");
    }

    #[test]
    fn log_rotates_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppDir::new(dir.path(), "a");
        let mut log = CappedLog::open(&app, 10);
        log.append(b"12345678");
        log.append(b"abcdef");
        assert_eq!(std::fs::read(app.log_old()).unwrap(), b"12345678");
        assert_eq!(std::fs::read(app.log()).unwrap(), b"abcdef");
        log.append(b"0123456789xyz");
        assert_eq!(std::fs::read(app.log()).unwrap(), b"3456789xyz");
    }
}
