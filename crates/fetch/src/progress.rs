//! Progress reporting on stderr.
//!
//! [`Progress`] is a cheap, cloneable handle. [`Progress::stderr`] draws an
//! indicatif bar (bytes, rate, ETA; a spinner while the length is unknown)
//! when stderr is a terminal and stays silent otherwise, so logs and pipes
//! get no control characters. A download drives it by itself; the caller can
//! drive one too (for extraction) through [`Progress::wrap_read`] or
//! [`Progress::inc`].

use std::borrow::Cow;
use std::io::{self, IsTerminal, Read};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const BAR_TEMPLATE: &str = "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";
const SPINNER_TEMPLATE: &str = "{spinner} {msg} {bytes} {bytes_per_sec}";

/// A progress indicator for a byte stream.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A progress indicator that draws nothing (but still counts).
    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    /// A progress bar on stderr if stderr is a terminal, hidden otherwise.
    pub fn stderr(message: impl Into<Cow<'static, str>>) -> Self {
        if !io::stderr().is_terminal() {
            let p = Progress::hidden();
            p.bar.set_message(message);
            return p;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_message(message);
        let p = Progress { bar };
        p.set_length(None);
        p
    }

    /// Whether anything is drawn.
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Sets the total length; `None` (unknown) shows a spinner.
    pub fn set_length(&self, len: Option<u64>) {
        match len {
            Some(len) => {
                self.bar.disable_steady_tick();
                self.bar.set_length(len);
                self.bar.set_style(style(BAR_TEMPLATE));
            }
            None => {
                self.bar.unset_length();
                self.bar.set_style(style(SPINNER_TEMPLATE));
                if !self.bar.is_hidden() {
                    self.bar.enable_steady_tick(Duration::from_millis(120));
                }
            }
        }
    }

    /// The total length, if known.
    pub fn length(&self) -> Option<u64> {
        self.bar.length()
    }

    /// Changes the text in front of the bar.
    pub fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        self.bar.set_message(message);
    }

    /// Counts `n` more bytes.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Sets the byte count.
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    /// The byte count so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Stops and removes the bar (the stream is done).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Stops the bar and leaves it on screen (the stream failed).
    pub fn abandon(&self) {
        self.bar.abandon();
    }

    /// Wraps a reader so each read advances this indicator.
    pub fn wrap_read<R: Read>(&self, inner: R) -> ProgressRead<R> {
        ProgressRead {
            inner,
            progress: self.clone(),
        }
    }
}

/// Several bars drawn together on stderr, one per parallel download (an
/// OCI image's layers), so they do not overwrite each other.
#[derive(Debug, Clone)]
pub struct ProgressGroup {
    multi: Option<indicatif::MultiProgress>,
}

impl ProgressGroup {
    /// A group on stderr if it is a terminal (and `enabled`); silent otherwise.
    pub fn stderr(enabled: bool) -> Self {
        ProgressGroup {
            multi: (enabled && io::stderr().is_terminal())
                .then(|| indicatif::MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A new bar in the group.
    pub fn bar(&self, message: impl Into<Cow<'static, str>>) -> Progress {
        match &self.multi {
            None => {
                let p = Progress::hidden();
                p.bar.set_message(message);
                p
            }
            Some(m) => {
                let bar = m.add(ProgressBar::hidden());
                bar.set_message(message);
                let p = Progress { bar };
                p.set_length(None);
                p
            }
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants checked by the tests below.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A reader that reports what passes through it, see [`Progress::wrap_read`].
#[derive(Debug)]
pub struct ProgressRead<R> {
    inner: R,
    progress: Progress,
}

impl<R> ProgressRead<R> {
    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for ProgressRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
        assert!(ProgressStyle::with_template(SPINNER_TEMPLATE).is_ok());
    }

    #[test]
    fn wrap_read_counts() {
        let p = Progress::hidden();
        p.set_length(Some(5));
        let mut out = Vec::new();
        p.wrap_read(&b"hello"[..]).read_to_end(&mut out).unwrap();
        assert_eq!(p.position(), 5);
        assert_eq!(p.length(), Some(5));
        p.set_length(None);
        assert_eq!(p.length(), None);
    }
}
