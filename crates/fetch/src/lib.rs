//! Fetching images for berth: the HTTP(S) download layer.
//!
//! # Parts
//! - [`Fetcher`] (module `http`): a blocking [`ureq`] client over rustls.
//!   It trusts the operating system's CA store plus the CA files in
//!   [`FetchConfig::extra_ca_files`] (the CLI passes `SSL_CERT_FILE` there:
//!   it *adds* to the system store instead of replacing it). `http://` is
//!   refused unless [`FetchConfig::allow_http`] (`--insecure-options=http`),
//!   and certificate checks are skipped only with
//!   [`FetchConfig::skip_tls_verify`] (`--insecure-options=tls`). No async
//!   runtime is involved, so nothing here outlives a call into the pod
//!   runtime's `fork`/`unshare`.
//! - [`CacheInfo`] (module `cache`): ETag, Last-Modified, max-age and fetch
//!   time of a previous download, serde-serialisable, persisted by the store.
//! - [`PullPolicy`] (module `policy`): `--pull-policy=never|new|update` and
//!   [`PullPolicy::decide`], the "use the store or ask the network" rule.
//! - [`AuthConfig`] (module `auth`): per-host credentials from
//!   `auth.d/*.json` (rkt's format, `basic` and `oauth`), system directory
//!   first, local directory overriding it.
//! - [`Progress`] (module `progress`): an indicatif bar on stderr when it is
//!   a terminal, hidden otherwise; the caller drives it for extraction too.
//! - [`discover`]: appc meta discovery over HTTP (the walk itself is
//!   `berth_appc::discovery`), and the [`NameResolver`] of `berth fetch NAME`.
//! - [`trust`]: the trusted-key store, the key policy and the streaming
//!   OpenPGP signature check that runs inside the store's import, plus the
//!   [`VerifierFactory`] that finds each image's signature.
//! - [`FetchError`]: one enum, each variant naming the URL and telling what
//!   to do (404, 5xx, 401/403 and auth.d, TLS and `SSL_CERT_FILE`/
//!   `--insecure-options=tls`, connection refused with `host:port`, ...).
//!
//! - [`oci`]: Docker/OCI images: the registry v2 client (token auth,
//!   manifest lists, parallel resumable layer downloads) and OCI layouts,
//!   OCI archives and `docker save` archives, into the store's sha256 blobs.
//! - [`ImageFetcher`] (module `image`): the orchestration on top of the
//!   store: classifies a command-line image argument, applies the pull
//!   policy, imports files, downloads URLs straight into the store's import,
//!   and offers the [`NameResolver`] and [`VerifierFactory`] seams for
//!   discovery and signature checks.
//!
//! # Caching
//! [`Fetcher::download`] takes the [`CacheInfo`] of the copy in the store
//! (or `None` when there is none):
//! 1. still fresh per `max-age` (minus the response's `Age`): return
//!    [`Outcome::Fresh`] without sending anything;
//! 2. otherwise send `If-None-Match` (or `If-Modified-Since` when there is
//!    only a `Last-Modified`): a `304` gives [`Outcome::NotModified`] with the
//!    refreshed [`CacheInfo`] to store;
//! 3. otherwise the body streams as [`Outcome::Body`]; its
//!    [`Download::cache_info`] is what to store with the new image.
//!
//! `no-cache`/`no-store` responses are never fresh. No `Accept-Encoding` is
//! sent and ureq's transparent gzip is compiled out: the bytes and offsets
//! are those of the file itself, which resume and digests rely on.
//!
//! # Streaming and resume
//! The body goes through a *partial file* in a directory of the caller's
//! (the store's `tmp/`, one path per URL). [`Download`] implements `Read`:
//! it first replays the bytes an interrupted earlier attempt left in the
//! partial file, then streams the rest from the network, writing each chunk
//! to the partial file before handing the same bytes to the consumer. So
//! "download, hash, decompress and extract at once" works (the consumer
//! pulls, nothing is held in memory and no thread is needed), and a process
//! killed at any point leaves a partial file that the next attempt resumes
//! with `Range: bytes=N-` and `If-Range: <validator>`. The validator (strong
//! ETag, else Last-Modified) the bytes came with is kept in
//! `<partial>.resume.json`; without one, the partial bytes are dropped. A
//! `206` whose `Content-Range` starts at N continues the file; a `200` (the
//! file changed, or the server ignores ranges) truncates it and starts over;
//! a `416` or a mismatched range starts over with a plain request. The file
//! is `flock`ed while a [`Download`] lives, so two processes never write it
//! at once. [`Download::finish`] drains what the consumer left unread, checks
//! the length against `Content-Length`/`Content-Range`, and hands back the
//! complete file ([`Completed`]) for the store to verify and move in. The
//! digest check by the consumer is the final guard against a resumed file
//! that does not match.
//!
//! The rejected alternative, downloading to the partial file first and then
//! returning a reader over the finished file, is simpler but serialises
//! download and extraction; a reader thread with a pipe adds a thread and a
//! buffer for no gain over pulling from the consumer's side.
//!
//! # Redirects and credentials
//! ureq's own redirect handling is off; [`Fetcher`] follows up to
//! [`FetchConfig::max_redirects`] hops itself, checks each hop's scheme
//! (no silent downgrade to `http`) and looks credentials up for each hop's
//! own host (`host:port` entries first, then `host`), so credentials for
//! one host never reach another one, `127.0.0.1` and `localhost` included.
//!
//! # Logging
//! `tracing::debug!` (shown with `--debug`) records every request (URL,
//! conditional and range headers, never credentials), every response
//! status, the cache decision and the resume offset.

mod auth;
mod cache;
pub mod discover;
mod error;
mod http;
mod image;
pub mod oci;
mod policy;
mod progress;
pub mod trust;

pub use auth::{AuthConfig, AuthError, Credentials};
pub use cache::CacheInfo;
pub use error::{FetchError, Status};
pub use http::{
    parse_host_overrides, resume_info_path, Completed, Download, FetchConfig, Fetcher, Outcome,
    SmallResponse,
};
pub use image::{
    find_by_name, find_in_store, Fetched, ImageFetchError, ImageFetcher, NameResolver, PluginError,
    Source, VerifierFactory,
};
pub use policy::{ParsePullPolicyError, PullDecision, PullPolicy};
pub use progress::{Progress, ProgressGroup, ProgressRead};
