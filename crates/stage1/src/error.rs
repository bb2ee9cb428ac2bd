//! One error type for stage1: what berth was doing (naming the syscall and
//! the object) and the OS error, kept so callers can branch on the errno.

use std::fmt;

/// A failed step of running a pod: `what` names the operation and the
/// object ("mount overlay on /pods/.../rootfs"), `source` is why.
#[derive(Debug)]
pub struct Error {
    what: String,
    source: std::io::Error,
}

impl Error {
    pub fn new(what: impl Into<String>, source: impl Into<std::io::Error>) -> Error {
        Error {
            what: what.into(),
            source: source.into(),
        }
    }

    /// An error that is a refusal of berth's own (no OS error behind it).
    pub fn msg(what: impl Into<String>, why: impl Into<String>) -> Error {
        Error::new(what, std::io::Error::other(why.into()))
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn io(&self) -> &std::io::Error {
        &self.source
    }

    /// `<what>: <why>`, the line printed after `berth: `.
    pub fn one_line(&self) -> String {
        format!("{}: {}", self.what, self.source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `.ctx(|| "what")` on any result whose error converts to `io::Error`
/// (std, rustix and nix errors all do).
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Error>;
}

impl<T, E: Into<std::io::Error>> Context<T> for Result<T, E> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Error> {
        self.map_err(|e| Error::new(what(), e))
    }
}
