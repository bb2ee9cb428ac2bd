//! The HTTP(S) client: TLS roots, insecure switches, redirects with
//! per-host credentials, conditional requests and resumable, streaming
//! downloads. See the crate documentation for the design.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use ureq::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    LOCATION, RANGE,
};
use ureq::http::{HeaderMap, HeaderName, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::{Agent, Body, BodyReader, Proxy};
use url::Url;

use crate::error::Status;
use crate::{AuthConfig, CacheInfo, FetchError, Progress};

/// How the [`Fetcher`] talks to servers. The CLI fills it from its flags and
/// environment; nothing here reads the environment by itself (so tests and
/// other callers stay independent of the process environment).
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Allow plain `http://` URLs and redirects (`--insecure-options=http`).
    pub allow_http: bool,
    /// Accept any server certificate (`--insecure-options=tls`).
    pub skip_tls_verify: bool,
    /// Trust the operating system's CA certificates (normally true).
    pub system_roots: bool,
    /// More CA certificate files (PEM) to trust on top of the system's; the
    /// CLI passes `SSL_CERT_FILE` here.
    pub extra_ca_files: Vec<PathBuf>,
    /// Per-host credentials from `auth.d`.
    pub auth: AuthConfig,
    /// Use a proxy from `HTTPS_PROXY`/`ALL_PROXY`/`HTTP_PROXY` (honouring
    /// `NO_PROXY`).
    pub use_env_proxy: bool,
    /// Most redirects followed for one request.
    pub max_redirects: u32,
    /// Limit for opening a connection (DNS included).
    pub connect_timeout: Duration,
    /// Limit for each wait on the server: the response head, and every read
    /// of the body (a stalled transfer fails, a slow one does not).
    pub read_timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// **For tests and local mirrors only**: connect to this address
    /// whenever a URL names this host (and any port), instead of asking DNS.
    /// appc image names cannot carry a port, so a test serving
    /// `example.com/app` on `127.0.0.1:PORT` maps `example.com` here. Only
    /// the TCP destination changes: the `Host` header, TLS SNI and the
    /// certificate check still use the host name of the URL.
    pub host_overrides: Vec<(String, std::net::SocketAddr)>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            allow_http: false,
            skip_tls_verify: false,
            system_roots: true,
            extra_ca_files: Vec::new(),
            auth: AuthConfig::default(),
            use_env_proxy: true,
            max_redirects: 10,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_owned(),
            host_overrides: Vec::new(),
        }
    }
}

/// An HTTP(S) client for image downloads. Cheap to share by reference; one
/// per process is enough (connections are pooled).
///
/// The TLS set-up is made on the first request, not in [`Fetcher::new`]:
/// the system CA store is ~150 PEM files, and `berth run` of an image the
/// store already has never asks the network (loading them was about a
/// tenth of its CPU time). `--ca-file`s are still read at once, so a bad
/// one is an error before any work.
pub struct Fetcher {
    agent: OnceLock<Agent>,
    extra_roots: Vec<Certificate<'static>>,
    config: FetchConfig,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The result of [`Fetcher::download`].
#[derive(Debug)]
pub enum Outcome {
    /// The cached copy is still fresh (`max-age` not expired): no request
    /// was sent. Use the stored image; its [`CacheInfo`] is unchanged.
    Fresh,
    /// The server answered `304 Not Modified`: use the stored image, and
    /// store this updated [`CacheInfo`] (new fetch time and lifetime).
    NotModified(CacheInfo),
    /// A body is coming: read it from the [`Download`].
    Body(Box<Download>),
}

/// What is remembered next to a partial file so a later attempt can resume
/// it: the `If-Range` validator must be the one the bytes came with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ResumeInfo {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    total: Option<u64>,
}

impl ResumeInfo {
    /// The validator for `If-Range`: a strong ETag, else `Last-Modified`
    /// (weak ETags are not allowed there, RFC 9110 §13.1.5).
    fn validator(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }
}

/// The sidecar file (`<partial>.resume.json`) that records the URL, the
/// validator and the length the partial bytes came with, so the store can
/// clean it up together with the partial file.
pub fn resume_info_path(partial: &Path) -> PathBuf {
    let mut name = partial.file_name().unwrap_or_default().to_os_string();
    name.push(".resume.json");
    partial.with_file_name(name)
}

/// A response after redirects, with what was sent to get it.
struct Sent {
    response: Response<Body>,
    url: Url,
    sent_credentials: bool,
}

impl Fetcher {
    /// Builds a client: reads the extra CA files now; the system CA store
    /// (when asked) is loaded by the first request.
    pub fn new(config: FetchConfig) -> Result<Self, FetchError> {
        let mut extra_roots = Vec::new();
        for path in &config.extra_ca_files {
            let found = read_ca_file(path)?;
            tracing::debug!(file = %path.display(), certificates = found.len(), "extra CA file");
            extra_roots.extend(found);
        }
        Ok(Fetcher {
            agent: OnceLock::new(),
            extra_roots,
            config,
        })
    }

    /// The HTTP agent, set up on first use (see the type's doc).
    fn agent(&self) -> &Agent {
        self.agent.get_or_init(|| {
            let config = &self.config;
            let mut roots: Vec<Certificate<'static>> = Vec::new();
            if config.system_roots && !config.skip_tls_verify {
                roots.extend(system_roots());
            }
            roots.extend(self.extra_roots.iter().cloned());
            let tls = TlsConfig::builder()
                .provider(TlsProvider::Rustls)
                .root_certs(RootCerts::Specific(Arc::new(roots)))
                .disable_verification(config.skip_tls_verify)
                .build();
            let agent_config = Agent::config_builder()
                .tls_config(tls)
                .http_status_as_error(false)
                // Redirects are followed here, hop by hop, to pick credentials
                // and check the scheme for each host.
                .max_redirects(0)
                .user_agent(config.user_agent.as_str())
                .proxy(if config.use_env_proxy {
                    Proxy::try_from_env()
                } else {
                    None
                })
                .timeout_connect(Some(config.connect_timeout))
                .timeout_recv_response(Some(config.read_timeout))
                .timeout_per_read(Some(config.read_timeout))
                .build();
            Agent::with_parts(
                agent_config,
                ureq::unversioned::transport::DefaultConnector::default(),
                OverrideResolver {
                    overrides: config.host_overrides.clone(),
                },
            )
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Fetches `url`, using what is known about the stored copy and resuming
    /// an earlier interrupted attempt.
    ///
    /// * `cache`: the [`CacheInfo`] of the copy in the store, or `None` when
    ///   the store has no copy (then the request is never conditional).
    /// * `partial`: where the body is written while it streams; it lives in
    ///   a directory of the caller's (the store's `tmp/`), one path per URL.
    ///   Bytes already there from an interrupted attempt are resumed with a
    ///   `Range` request when `<partial>.resume.json` shows the server's
    ///   validator for them. The file is locked while the [`Download`] lives.
    pub fn download(
        &self,
        url: &str,
        cache: Option<&CacheInfo>,
        partial: &Path,
    ) -> Result<Outcome, FetchError> {
        self.download_with(url, cache, partial, &[], None)
    }

    /// [`download`](Self::download) with more request headers (`Accept`),
    /// and `authorization` (a registry's Bearer token) sent instead of the
    /// `auth.d` credentials to the URL's own host only: a redirect to
    /// another host (a registry's blob storage) never receives it.
    pub fn download_with(
        &self,
        url: &str,
        cache: Option<&CacheInfo>,
        partial: &Path,
        extra: &[(HeaderName, String)],
        authorization: Option<&str>,
    ) -> Result<Outcome, FetchError> {
        let url = Url::parse(url).map_err(|source| FetchError::InvalidUrl {
            url: url.to_owned(),
            source,
        })?;
        self.check_scheme(&url)?;
        let now = SystemTime::now();
        if let Some(cache) = cache.filter(|c| c.is_fresh(now)) {
            tracing::debug!(%url, expires = ?cache.expires_at(), "cache: fresh, not fetching");
            return Ok(Outcome::Fresh);
        }

        let file = open_partial(partial)?;
        let partial_err = |source| FetchError::PartialFile {
            path: partial.to_owned(),
            source,
        };
        let mut resume = resume_point(&url, &file, partial).map_err(partial_err)?;

        loop {
            let mut headers: Vec<(HeaderName, String)> = extra.to_vec();
            if let Some(cache) = cache {
                if let Some(etag) = &cache.etag {
                    headers.push((IF_NONE_MATCH, etag.clone()));
                } else if let Some(lm) = &cache.last_modified {
                    headers.push((IF_MODIFIED_SINCE, lm.clone()));
                }
            }
            if let Some((offset, validator)) = &resume {
                headers.push((RANGE, format!("bytes={offset}-")));
                headers.push((IF_RANGE, validator.clone()));
            }
            let offset = resume.as_ref().map_or(0, |r| r.0);
            tracing::debug!(%url, conditional = cache.is_some(), resume_offset = offset,
                "cache: revalidating or downloading");
            let sent = self.send_as(&url, &headers, authorization)?;
            let status = sent.response.status().as_u16();
            let at = sent.url.to_string();
            match status {
                304 => {
                    let Some(cache) = cache else {
                        return Err(FetchError::UnexpectedStatus {
                            url: at,
                            status: Status(304),
                        });
                    };
                    tracing::debug!(url = %at, "cache: not modified (304)");
                    // The stored copy is current: bytes of any other
                    // version in the partial file are of no use.
                    restart(&file, partial).map_err(partial_err)?;
                    drop(file);
                    remove_partial(partial).map_err(partial_err)?;
                    return Ok(Outcome::NotModified(
                        cache.revalidated(sent.response.headers(), SystemTime::now()),
                    ));
                }
                200 => {
                    if offset > 0 {
                        tracing::debug!(url = %at, offset,
                            "resume: server sent the whole file (200), starting over");
                        restart(&file, partial).map_err(partial_err)?;
                    }
                    let total = header_u64(sent.response.headers(), &CONTENT_LENGTH);
                    return self.body(sent, &url, file, partial, 0, total);
                }
                206 if offset > 0 => {
                    let range = sent
                        .response
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    match parse_content_range(&range) {
                        Some((start, total)) if start == offset => {
                            tracing::debug!(url = %at, offset, ?total, "resume: 206 Partial Content");
                            return self.body(sent, &url, file, partial, offset, total);
                        }
                        _ => {
                            tracing::debug!(url = %at, %range, offset,
                                "resume: unusable Content-Range, starting over");
                            restart(&file, partial).map_err(partial_err)?;
                            resume = None;
                        }
                    }
                }
                206 => {
                    return Err(FetchError::BadContentRange {
                        url: at,
                        content_range: "(unrequested 206 Partial Content)".into(),
                        offset: 0,
                    })
                }
                416 if offset > 0 => {
                    tracing::debug!(url = %at, offset,
                        "resume: range not satisfiable (416), starting over");
                    restart(&file, partial).map_err(partial_err)?;
                    resume = None;
                }
                _ => return Err(status_error(&sent)),
            }
        }
    }

    /// Sets up the streaming body of a 200 or 206 response.
    fn body(
        &self,
        sent: Sent,
        url: &Url,
        file: File,
        partial: &Path,
        offset: u64,
        total: Option<u64>,
    ) -> Result<Outcome, FetchError> {
        let now = SystemTime::now();
        let headers = sent.response.headers();
        let cache = CacheInfo::from_headers(headers, now);
        let info = ResumeInfo {
            url: url.to_string(),
            etag: cache.etag.clone(),
            last_modified: cache.last_modified.clone(),
            total,
        };
        write_resume_info(partial, &info).map_err(|source| FetchError::PartialFile {
            path: resume_info_path(partial),
            source,
        })?;
        tracing::debug!(url = %sent.url, ?total, resume_offset = offset, etag = ?cache.etag,
            max_age = ?cache.max_age, "downloading body");
        Ok(Outcome::Body(Box::new(Download {
            url: url.to_string(),
            final_url: sent.url.to_string(),
            body: sent.response.into_body().into_reader(),
            file,
            partial: partial.to_owned(),
            resumed_from: offset,
            replayed: 0,
            written: offset,
            total,
            cache,
            done: false,
            progress: Progress::hidden(),
        })))
    }

    fn check_scheme(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.config.allow_http => Ok(()),
            "http" => Err(FetchError::InsecureHttp {
                url: url.to_string(),
            }),
            other => Err(FetchError::UnsupportedScheme {
                url: url.to_string(),
                scheme: other.to_owned(),
            }),
        }
    }

    /// Sends a GET, following redirects. Credentials are looked up for each
    /// hop's own host, so they never follow a redirect to another host.
    fn send(&self, url: &Url, headers: &[(HeaderName, String)]) -> Result<Sent, FetchError> {
        self.send_as(url, headers, None)
    }

    /// [`send`](Self::send); `authorization` replaces the `auth.d`
    /// credentials on hops to `url`'s own origin, and is never sent
    /// elsewhere.
    fn send_as(
        &self,
        url: &Url,
        headers: &[(HeaderName, String)],
        authorization: Option<&str>,
    ) -> Result<Sent, FetchError> {
        let mut current = url.clone();
        for _hop in 0..=self.config.max_redirects {
            self.check_scheme(&current)?;
            let mut request = self.agent().get(current.as_str());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let same_origin = current.host_str() == url.host_str()
                && current.port_or_known_default() == url.port_or_known_default();
            let explicit = authorization.filter(|_| same_origin);
            let credentials = current.host_str().and_then(|h| {
                self.config
                    .auth
                    .for_host(h, current.port_or_known_default())
            });
            let credentials = if explicit.is_some() {
                None
            } else {
                credentials
            };
            if let Some(a) = explicit {
                tracing::debug!(host = current.host_str(), "sending the registry's token");
                request = request.header(AUTHORIZATION, a);
            }
            if let Some(c) = credentials {
                tracing::debug!(
                    host = current.host_str(),
                    kind = c.kind(),
                    "sending credentials from auth.d"
                );
                request = request.header(AUTHORIZATION, c.header_value());
            }
            tracing::debug!(url = %current, headers = ?headers, "HTTP GET");
            let response = request.call().map_err(|e| classify(e, &current))?;
            let status = response.status();
            tracing::debug!(url = %current, status = status.as_u16(),
                content_length = ?header_u64(response.headers(), &CONTENT_LENGTH),
                "HTTP response");
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                let bad = |reason: &str| FetchError::BadRedirect {
                    url: current.to_string(),
                    status: Status(status.as_u16()),
                    reason: reason.to_owned(),
                };
                let location = response
                    .headers()
                    .get(LOCATION)
                    .ok_or_else(|| bad("no Location header"))?
                    .to_str()
                    .map_err(|_| bad("Location is not text"))?;
                let next = current
                    .join(location)
                    .map_err(|e| bad(&format!("invalid Location {location:?}: {e}")))?;
                tracing::debug!(from = %current, to = %next, "following redirect");
                current = next;
                continue;
            }
            return Ok(Sent {
                response,
                url: current,
                sent_credentials: credentials.is_some() || explicit.is_some(),
            });
        }
        Err(FetchError::TooManyRedirects {
            url: url.to_string(),
            max: self.config.max_redirects,
        })
    }
}

/// Parses `host=IP:PORT[,host=IP:PORT...]` (the CLI's
/// `BERTH_HOST_OVERRIDES`) for [`FetchConfig::host_overrides`]. For tests
/// and local mirrors only; addresses must be literal (no DNS).
pub fn parse_host_overrides(s: &str) -> Result<Vec<(String, std::net::SocketAddr)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (host, addr) = e
                .split_once('=')
                .ok_or_else(|| format!("{e:?}: expected HOST=IP:PORT"))?;
            let addr = addr
                .parse()
                .map_err(|_| format!("{e:?}: {addr:?} is not IP:PORT"))?;
            Ok((host.to_ascii_lowercase(), addr))
        })
        .collect()
}

/// DNS, except for the hosts of [`FetchConfig::host_overrides`].
#[derive(Debug)]
struct OverrideResolver {
    overrides: Vec<(String, std::net::SocketAddr)>,
}

impl ureq::unversioned::resolver::Resolver for OverrideResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        use ureq::unversioned::resolver::DefaultResolver;
        let host = uri.host().unwrap_or_default();
        if let Some((_, addr)) = self
            .overrides
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
        {
            tracing::debug!(%host, %addr, "host override (tests and local mirrors)");
            let mut out = DefaultResolver::default().empty();
            out.push(*addr);
            return Ok(out);
        }
        DefaultResolver::default().resolve(uri, config, timeout)
    }
}

impl Fetcher {
    /// GETs a small document (a discovery page, a signature, a key),
    /// following redirects like [`download`](Self::download) but keeping
    /// nothing on disk. Fails on any status but 200, and on bodies longer
    /// than `limit` bytes. Returns the body and the URL after redirects.
    pub fn get_small(&self, url: &str, limit: u64) -> Result<(Vec<u8>, String), FetchError> {
        let parsed = Url::parse(url).map_err(|source| FetchError::InvalidUrl {
            url: url.to_owned(),
            source,
        })?;
        self.check_scheme(&parsed)?;
        let sent = self.send(&parsed, &[])?;
        if sent.response.status().as_u16() != 200 {
            return Err(status_error(&sent));
        }
        let final_url = sent.url.to_string();
        let body = read_limited(sent.response, &final_url, limit)?;
        Ok((body, final_url))
    }
}

/// A small response of any status, for protocols that branch on it (a
/// registry's `401` with its `WWW-Authenticate` challenge).
#[derive(Debug, Clone)]
pub struct SmallResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The URL after redirects.
    pub url: String,
}

impl SmallResponse {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error a non-success status means, as downloads report it.
    pub fn error(&self, sent_credentials: bool) -> FetchError {
        let host = Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        error_for_status(self.url.clone(), host, self.status, sent_credentials)
    }
}

impl Fetcher {
    /// GETs a small document with more headers and any status (see
    /// [`SmallResponse`]); `authorization` as in
    /// [`download_with`](Self::download_with). Bodies over `limit` bytes
    /// fail.
    pub fn get_small_with(
        &self,
        url: &str,
        extra: &[(HeaderName, String)],
        authorization: Option<&str>,
        limit: u64,
    ) -> Result<SmallResponse, FetchError> {
        let parsed = Url::parse(url).map_err(|source| FetchError::InvalidUrl {
            url: url.to_owned(),
            source,
        })?;
        self.check_scheme(&parsed)?;
        let sent = self.send_as(&parsed, extra, authorization)?;
        let status = sent.response.status().as_u16();
        let headers = sent.response.headers().clone();
        let final_url = sent.url.to_string();
        let body = read_limited(sent.response, &final_url, limit)?;
        Ok(SmallResponse {
            status,
            headers,
            body,
            url: final_url,
        })
    }
}

fn status_error(sent: &Sent) -> FetchError {
    error_for_status(
        sent.url.to_string(),
        sent.url.host_str().unwrap_or_default().to_owned(),
        sent.response.status().as_u16(),
        sent.sent_credentials,
    )
}

/// What a non-success status of `url` (on `host`) means.
fn error_for_status(url: String, host: String, code: u16, sent_credentials: bool) -> FetchError {
    let status = Status(code);
    match code {
        404 => FetchError::NotFound { url },
        401 | 403 => FetchError::AccessDenied {
            host,
            url,
            status,
            sent_credentials,
        },
        500..=599 => FetchError::ServerError { url, status },
        _ => FetchError::UnexpectedStatus { url, status },
    }
}

/// A reply's body, at most `limit` bytes (more is [`FetchError::TooLarge`]).
fn read_limited(response: Response<Body>, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    let mut reader = response.into_body().into_reader().take(limit + 1);
    reader
        .read_to_end(&mut body)
        .map_err(|source| FetchError::Interrupted {
            url: url.to_owned(),
            received: body.len() as u64,
            source,
        })?;
    if body.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            url: url.to_owned(),
            limit,
        });
    }
    Ok(body)
}

fn classify(err: ureq::Error, url: &Url) -> FetchError {
    let host = url.host_str().unwrap_or_default().to_owned();
    let u = url.to_string();
    let tls_io = |e: &io::Error| e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
    match &err {
        ureq::Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            FetchError::ConnectionRefused {
                addr: format!("{host}:{}", url.port_or_known_default().unwrap_or(0)),
                url: u,
                source: err,
            }
        }
        ureq::Error::Io(e) if tls_io(e) => FetchError::Tls {
            url: u,
            host,
            cause: err,
        },
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) | ureq::Error::Pem(_) => FetchError::Tls {
            url: u,
            host,
            cause: err,
        },
        ureq::Error::HostNotFound => FetchError::HostNotFound { url: u, host },
        ureq::Error::Timeout(_) => FetchError::Timeout {
            url: u,
            source: err,
        },
        _ => FetchError::Network {
            url: u,
            source: err,
        },
    }
}

fn header_u64(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`) into (START, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => {
            let t: u64 = t.parse().ok()?;
            if end >= t {
                return None;
            }
            Some(t)
        }
    };
    Some((start, total))
}

/// The operating system's CA certificates. `SSL_CERT_FILE`/`SSL_CERT_DIR`
/// are deliberately not consulted here (OpenSSL's convention would let them
/// replace the system store); the caller adds such files through
/// [`FetchConfig::extra_ca_files`], on top of the system's.
fn system_roots() -> Vec<Certificate<'static>> {
    let mut certs = Vec::new();
    for dir in openssl_probe::candidate_cert_dirs() {
        let result = rustls_native_certs::load_certs_from_paths(None, Some(dir));
        for e in &result.errors {
            tracing::debug!(dir = %dir.display(), error = %e, "skipping unreadable system CA");
        }
        tracing::debug!(dir = %dir.display(), certificates = result.certs.len(), "system CA store");
        certs.extend(
            result
                .certs
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned()),
        );
    }
    certs
}

fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, FetchError> {
    let pem = fs::read(path).map_err(|source| FetchError::CaFile {
        path: path.to_owned(),
        source,
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(FetchError::CaFile {
                    path: path.to_owned(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                })
            }
        }
    }
    if certs.is_empty() {
        return Err(FetchError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn open_partial(partial: &Path) -> Result<File, FetchError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .map_err(|source| FetchError::PartialFile {
            path: partial.to_owned(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(FetchError::PartialBusy {
            path: partial.to_owned(),
        }),
        Err(TryLockError::Error(source)) => Err(FetchError::PartialFile {
            path: partial.to_owned(),
            source,
        }),
    }
}

/// Where to resume from, and the `If-Range` validator to send; bytes that
/// cannot be resumed safely are dropped.
fn resume_point(url: &Url, file: &File, partial: &Path) -> io::Result<Option<(u64, String)>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let info = fs::read(resume_info_path(partial))
        .ok()
        .and_then(|b| serde_json::from_slice::<ResumeInfo>(&b).ok());
    let usable = info.as_ref().and_then(|info| {
        if info.url != url.as_str() {
            return None;
        }
        if info.total.is_some_and(|t| len > t) {
            return None;
        }
        info.validator().map(str::to_owned)
    });
    match usable {
        Some(validator) => {
            tracing::debug!(%url, offset = len, %validator, "resume: partial download found");
            Ok(Some((len, validator)))
        }
        None => {
            tracing::debug!(%url, bytes = len,
                "resume: partial download has no usable validator, starting over");
            restart(file, partial)?;
            Ok(None)
        }
    }
}

/// Empties the partial file and forgets its validator.
fn restart(file: &File, partial: &Path) -> io::Result<()> {
    file.set_len(0)?;
    remove_resume_info(partial)
}

fn remove_partial(partial: &Path) -> io::Result<()> {
    match fs::remove_file(partial) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_resume_info(partial: &Path) -> io::Result<()> {
    match fs::remove_file(resume_info_path(partial)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_resume_info(partial: &Path, info: &ResumeInfo) -> io::Result<()> {
    let path = resume_info_path(partial);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, serde_json::to_vec(info).map_err(io::Error::other)?)?;
    fs::rename(&tmp, &path)
}

/// A body being downloaded: a `Read` of the whole file.
///
/// Reading first replays the bytes an earlier attempt left in the partial
/// file, then streams the rest from the network, writing each chunk to the
/// partial file before handing it over. So the consumer (hash, decompress,
/// extract) runs while the download goes on, nothing is held in memory, and
/// a process killed at any point leaves a partial file the next attempt
/// resumes. Read errors carry a [`FetchError`] (see [`FetchError::from_io`]).
pub struct Download {
    url: String,
    final_url: String,
    body: BodyReader<'static>,
    file: File,
    partial: PathBuf,
    resumed_from: u64,
    replayed: u64,
    written: u64,
    total: Option<u64>,
    cache: CacheInfo,
    done: bool,
    progress: Progress,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url)
            .field("final_url", &self.final_url)
            .field("partial", &self.partial)
            .field("resumed_from", &self.resumed_from)
            .field("written", &self.written)
            .field("total", &self.total)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A finished download, see [`Download::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The complete file (the partial path); the caller moves it into the
    /// store or removes it.
    pub path: PathBuf,
    /// Its length.
    pub len: u64,
    /// The caching facts to store with the image.
    pub cache: CacheInfo,
    /// The URL after redirects.
    pub final_url: String,
}

impl Download {
    /// Reports progress to `progress` (length and bytes read so far).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        progress.set_length(self.total);
        progress.set_position(self.replayed + (self.written - self.resumed_from));
        self.progress = progress;
        self
    }

    /// The URL asked for.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL after redirects.
    pub fn final_url(&self) -> &str {
        &self.final_url
    }

    /// The whole file's length, when the server said.
    pub fn total_len(&self) -> Option<u64> {
        self.total
    }

    /// Bytes taken from an earlier attempt (0 when not resumed).
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// The caching facts of this response.
    pub fn cache_info(&self) -> &CacheInfo {
        &self.cache
    }

    /// The partial file being written.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Reads what the consumer left unread (a decompressor may stop before
    /// trailing padding), checks the length, and returns the complete file
    /// with its caching facts. The resume sidecar is removed.
    pub fn finish(mut self) -> Result<Completed, FetchError> {
        if let Err(e) = io::copy(&mut self, &mut io::sink()) {
            return Err(match e.into_inner().map(|b| b.downcast::<FetchError>()) {
                Some(Ok(fetch)) => *fetch,
                Some(Err(other)) => FetchError::Interrupted {
                    url: self.url.clone(),
                    received: self.written,
                    source: io::Error::other(other),
                },
                None => FetchError::Interrupted {
                    url: self.url.clone(),
                    received: self.written,
                    source: io::Error::other("read failed"),
                },
            });
        }
        remove_resume_info(&self.partial).map_err(|source| FetchError::PartialFile {
            path: resume_info_path(&self.partial),
            source,
        })?;
        Ok(Completed {
            path: self.partial.clone(),
            len: self.written,
            cache: self.cache.clone(),
            final_url: self.final_url.clone(),
        })
    }

    fn fail(&mut self, err: FetchError) -> io::Error {
        self.progress.abandon();
        tracing::debug!(url = %self.url, received = self.written, error = %err, "download failed");
        err.into_io()
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // 1. Replay what an earlier attempt downloaded.
        if self.replayed < self.resumed_from {
            let want = usize::try_from(self.resumed_from - self.replayed)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = self
                .file
                .read_at(&mut buf[..want], self.replayed)
                .map_err(|source| FetchError::PartialFile {
                    path: self.partial.clone(),
                    source,
                })
                .map_err(|e| self.fail(e))?;
            if n == 0 {
                let err = FetchError::PartialFile {
                    path: self.partial.clone(),
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "partial file shrank"),
                };
                return Err(self.fail(err));
            }
            self.replayed += n as u64;
            self.progress.inc(n as u64);
            return Ok(n);
        }
        if self.done {
            return Ok(0);
        }
        // 2. Stream from the network, teeing into the partial file.
        let n = match self.body.read(buf) {
            Ok(n) => n,
            Err(source) => {
                let err = FetchError::Interrupted {
                    url: self.url.clone(),
                    received: self.written,
                    source,
                };
                return Err(self.fail(err));
            }
        };
        if n == 0 {
            if let Some(expected) = self.total.filter(|t| *t != self.written) {
                let err = FetchError::Truncated {
                    url: self.url.clone(),
                    received: self.written,
                    expected,
                };
                return Err(self.fail(err));
            }
            self.done = true;
            self.progress.finish();
            tracing::debug!(url = %self.url, bytes = self.written, "download complete");
            return Ok(0);
        }
        if let Err(source) = self.file.write_all_at(&buf[..n], self.written) {
            let err = FetchError::PartialFile {
                path: self.partial.clone(),
                source,
            };
            return Err(self.fail(err));
        }
        self.written += n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("bytes 10-100/100"), None);
        assert_eq!(parse_content_range("bytes 10-5/100"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range(""), None);
    }

    #[test]
    fn resume_validator_prefers_strong_etag() {
        let mut info = ResumeInfo {
            url: "https://h/x".into(),
            etag: Some("\"a\"".into()),
            last_modified: Some("lm".into()),
            total: None,
        };
        assert_eq!(info.validator(), Some("\"a\""));
        info.etag = Some("W/\"a\"".into());
        assert_eq!(info.validator(), Some("lm"));
        info.last_modified = None;
        assert_eq!(info.validator(), None);
    }

    #[test]
    fn sidecar_name() {
        assert_eq!(
            resume_info_path(Path::new("/tmp/x/abc.partial")),
            PathBuf::from("/tmp/x/abc.partial.resume.json")
        );
    }

    #[test]
    fn system_store_loads_where_there_is_one() {
        if openssl_probe::candidate_cert_dirs().next().is_some() {
            let start = std::time::Instant::now();
            let roots = system_roots();
            assert!(!roots.is_empty());
            eprintln!("{} system roots in {:?}", roots.len(), start.elapsed());
        }
    }

    #[test]
    fn schemes() {
        let f = Fetcher::new(FetchConfig {
            system_roots: false,
            use_env_proxy: false,
            ..FetchConfig::default()
        })
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("p");
        let err = f.download("http://127.0.0.1:1/x", None, &p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing plain HTTP for http://127.0.0.1:1/x; use --insecure-options=http"
        );
        let err = f.download("ftp://h/x", None, &p).unwrap_err();
        assert!(matches!(err, FetchError::UnsupportedScheme { .. }), "{err}");
        let err = f.download("not a url", None, &p).unwrap_err();
        assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err}");
        assert!(!p.exists(), "no partial file for a refused URL");
    }
}
