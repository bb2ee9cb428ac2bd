//! Why a download failed, worded for the person who has to fix it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An HTTP status with its reason phrase: `HTTP 500 Internal Server Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = ureq::http::StatusCode::from_u16(self.0)
            .ok()
            .and_then(|s| s.canonical_reason());
        match reason {
            Some(reason) => write!(f, "HTTP {} {reason}", self.0),
            None => write!(f, "HTTP {}", self.0),
        }
    }
}

/// A failed fetch. Every variant names the URL it was fetching; causes are
/// kept as `source` (print the chain once, as `main` does).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The text is not a URL.
    #[error("invalid URL {url:?}")]
    InvalidUrl {
        /// The text given.
        url: String,
        /// The cause.
        source: url::ParseError,
    },
    /// Only `https` (and `http` when allowed) can be fetched.
    #[error("unsupported URL scheme {scheme:?} in {url} (expected https)")]
    UnsupportedScheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// Plain HTTP without `--insecure-options=http`.
    #[error("refusing plain HTTP for {url}; use --insecure-options=http")]
    InsecureHttp {
        /// The URL.
        url: String,
    },
    /// A CA file given in the configuration could not be read.
    #[error("cannot read CA certificates from {}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A CA file given in the configuration holds no PEM certificate.
    #[error("no PEM certificate in CA file {}", path.display())]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// HTTP 404.
    #[error("image not found at {url} (HTTP 404)")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// HTTP 401 or 403.
    #[error("access denied to {url} ({status}): {}", denied_hint(*sent_credentials, host))]
    AccessDenied {
        /// The URL.
        url: String,
        /// 401 or 403.
        status: Status,
        /// The host credentials are looked up for.
        host: String,
        /// Whether credentials from auth.d were sent.
        sent_credentials: bool,
    },
    /// HTTP 5xx.
    #[error("server error fetching {url} ({status})")]
    ServerError {
        /// The URL.
        url: String,
        /// The status.
        status: Status,
    },
    /// Any other status berth cannot use.
    #[error("unexpected response fetching {url} ({status})")]
    UnexpectedStatus {
        /// The URL.
        url: String,
        /// The status.
        status: Status,
    },
    /// A redirect without a usable `Location`.
    #[error("bad redirect from {url} ({status}): {reason}")]
    BadRedirect {
        /// The URL that redirected.
        url: String,
        /// The status.
        status: Status,
        /// What is wrong with it.
        reason: String,
    },
    /// More redirects than allowed.
    #[error("too many redirects fetching {url} (more than {max})")]
    TooManyRedirects {
        /// The URL first asked for.
        url: String,
        /// The limit.
        max: u32,
    },
    /// The TLS handshake failed (unknown CA, wrong name, expired...).
    ///
    /// The cause is part of the message and not a `source`: a one-line
    /// error shows the outermost context and the innermost cause, and the
    /// way out named here must not be cut from the middle.
    #[error(
        "TLS failure talking to {host} for {url}: {cause} (if the server uses a private CA, \
         point SSL_CERT_FILE at its certificate; to skip verification use \
         --insecure-options=tls)"
    )]
    Tls {
        /// The URL.
        url: String,
        /// Its host.
        host: String,
        /// What failed.
        cause: ureq::Error,
    },
    /// Nobody listens at the address.
    #[error("connection refused by {addr} fetching {url}")]
    ConnectionRefused {
        /// The URL.
        url: String,
        /// `host:port`.
        addr: String,
        /// The cause.
        source: ureq::Error,
    },
    /// DNS gave no address.
    #[error("cannot resolve host {host} fetching {url}")]
    HostNotFound {
        /// The URL.
        url: String,
        /// The host.
        host: String,
    },
    /// The server did not answer in time.
    #[error("timed out fetching {url}")]
    Timeout {
        /// The URL.
        url: String,
        /// The cause.
        source: ureq::Error,
    },
    /// Any other network failure before the body.
    #[error("network error fetching {url}")]
    Network {
        /// The URL.
        url: String,
        /// The cause.
        source: ureq::Error,
    },
    /// The body stream failed part-way; the bytes so far are kept.
    #[error(
        "download of {url} interrupted after {received} bytes (run the command again to resume)"
    )]
    Interrupted {
        /// The URL.
        url: String,
        /// Bytes of the file received, including resumed ones.
        received: u64,
        /// The cause.
        source: io::Error,
    },
    /// The body ended before its announced length.
    #[error("download of {url} ended after {received} of {expected} bytes (run the command again to resume)")]
    Truncated {
        /// The URL.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The server answered a range request with an unusable range.
    #[error("bad Content-Range {content_range:?} from {url} (asked for bytes from {offset})")]
    BadContentRange {
        /// The URL.
        url: String,
        /// The header as received.
        content_range: String,
        /// The offset asked for.
        offset: u64,
    },
    /// Reading or writing the partial download file failed.
    #[error("cannot use partial download file {}", path.display())]
    PartialFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A small document (discovery page, signature, key) is too big.
    #[error("{url} is larger than the {limit} bytes allowed for it")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// Another process holds the partial download file.
    #[error("another process is downloading into {} (wait for it, or remove the file if no berth is running)", path.display())]
    PartialBusy {
        /// The file.
        path: PathBuf,
    },
}

fn denied_hint(sent_credentials: bool, host: &str) -> String {
    if sent_credentials {
        format!("the server refused the credentials for {host} from auth.d; check them")
    } else {
        format!(
            "credentials are needed; add them for {host} in an auth.d/*.json file of the \
             configuration directory"
        )
    }
}

impl FetchError {
    /// Whether trying again later could succeed (network trouble, a server
    /// error, an interrupted body), as opposed to a configuration problem.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FetchError::ServerError { .. }
                | FetchError::ConnectionRefused { .. }
                | FetchError::Timeout { .. }
                | FetchError::Network { .. }
                | FetchError::Interrupted { .. }
                | FetchError::Truncated { .. }
        )
    }

    /// Gets the `FetchError` back out of an `io::Error` returned by
    /// [`Download`](crate::Download)'s `Read`, if it carries one.
    pub fn from_io(err: &io::Error) -> Option<&FetchError> {
        err.get_ref().and_then(|e| e.downcast_ref::<FetchError>())
    }

    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            FetchError::Interrupted { source, .. } => source.kind(),
            FetchError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            FetchError::PartialFile { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        // `Interrupted` would make `read_to_end` and `io::copy` retry.
        let kind = match kind {
            io::ErrorKind::Interrupted => io::ErrorKind::Other,
            k => k,
        };
        io::Error::new(kind, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_display() {
        assert_eq!(Status(500).to_string(), "HTTP 500 Internal Server Error");
        assert_eq!(Status(404).to_string(), "HTTP 404 Not Found");
        assert_eq!(Status(599).to_string(), "HTTP 599");
    }

    #[test]
    fn io_round_trip() {
        let e = FetchError::Truncated {
            url: "https://x/y".into(),
            received: 1,
            expected: 2,
        }
        .into_io();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            FetchError::from_io(&e),
            Some(FetchError::Truncated { .. })
        ));
    }
}
