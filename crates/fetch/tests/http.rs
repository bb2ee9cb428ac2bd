//! berth-fetch against real HTTP(S) servers on 127.0.0.1.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_fetch::{
    resume_info_path, AuthConfig, CacheInfo, FetchConfig, FetchError, Fetcher, Outcome, Progress,
};
use common::{Pki, Reply, Server};

/// Deterministic, non-repeating-ish test content.
fn content(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn config(pki: Option<&Pki>) -> FetchConfig {
    FetchConfig {
        extra_ca_files: pki.map(|p| vec![p.ca_file.clone()]).unwrap_or_default(),
        use_env_proxy: false,
        ..FetchConfig::default()
    }
}

fn fetcher(config: FetchConfig) -> Fetcher {
    Fetcher::new(config).expect("build fetcher")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Self {
        Work {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn partial(&self) -> PathBuf {
        self.dir.path().join("image.partial")
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

fn expect_body(outcome: Outcome) -> berth_fetch::Download {
    match outcome {
        Outcome::Body(d) => *d,
        other => panic!("expected a body, got {other:?}"),
    }
}

/// Reads a download to the end and finishes it.
fn read_all(outcome: Outcome) -> (Vec<u8>, berth_fetch::Completed) {
    let mut d = expect_body(outcome);
    let mut out = Vec::new();
    d.read_to_end(&mut out).expect("read body");
    let done = d.finish().expect("finish");
    (out, done)
}

fn write_auth(dir: &Path, name: &str, json: &str) {
    fs::create_dir_all(dir.join("auth.d")).unwrap();
    fs::write(dir.join("auth.d").join(name), json).unwrap();
}

#[test]
fn https_fetch_with_test_ca_streams_body_and_cache_info() {
    let pki = Pki::new();
    let body = content(300_000);
    let served = body.clone();
    let server = Server::https(&pki, move |_| {
        Reply::ok(&served)
            .header("ETag", "\"v1\"")
            .header("Cache-Control", "public, max-age=600")
    });
    let work = Work::new();
    let url = server.url("/images/app.aci");
    let progress = Progress::hidden();
    let mut d = expect_body(
        fetcher(config(Some(&pki)))
            .download(&url, None, &work.partial())
            .unwrap(),
    )
    .with_progress(progress.clone());
    assert_eq!(d.total_len(), Some(body.len() as u64));
    assert_eq!(d.resumed_from(), 0);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    let done = d.finish().unwrap();
    assert!(got == body, "streamed body differs");
    assert_eq!(progress.position(), body.len() as u64);
    assert_eq!(progress.length(), Some(body.len() as u64));
    assert_eq!(done.len, body.len() as u64);
    assert_eq!(done.path, work.partial());
    assert!(
        fs::read(&done.path).unwrap() == body,
        "partial file differs"
    );
    assert!(!resume_info_path(&work.partial()).exists());
    assert_eq!(done.cache.etag.as_deref(), Some("\"v1\""));
    assert_eq!(done.cache.max_age, Some(600));
    assert!(done.cache.fetched_at.abs_diff(now()) < 60);

    let log = server.requests();
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("GET", "/images/app.aci")
    );
    assert!(r.header("user-agent").unwrap().starts_with("berth/"));
    for absent in [
        "range",
        "if-range",
        "if-none-match",
        "authorization",
        "accept-encoding",
    ] {
        assert_eq!(r.header(absent), None, "{absent} sent");
    }
}

#[test]
fn https_without_the_ca_fails_with_a_clear_message() {
    let pki = Pki::new();
    let server = Server::https(&pki, |_| Reply::ok(b"secret"));
    let work = Work::new();
    let url = server.url("/a.aci");
    let err = fetcher(config(None))
        .download(&url, None, &work.partial())
        .unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("SSL_CERT_FILE"), "{msg}");
    assert!(msg.contains("--insecure-options=tls"), "{msg}");
    // The reason is in the message itself (not only in a source, which a
    // one-line rendering of the error chain would drop).
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(server.requests().is_empty(), "no request got past TLS");
}

#[test]
fn insecure_tls_switch_accepts_a_cert_from_an_unknown_ca() {
    let pki = Pki::new();
    let server = Server::https(&pki, |_| Reply::ok(b"hello"));
    let work = Work::new();
    let (got, _) = read_all(
        fetcher(FetchConfig {
            skip_tls_verify: true,
            ..config(None)
        })
        .download(&server.url("/a.aci"), None, &work.partial())
        .unwrap(),
    );
    assert_eq!(got, b"hello");
}

#[test]
fn a_missing_ca_file_is_reported() {
    let work = Work::new();
    let err = Fetcher::new(FetchConfig {
        extra_ca_files: vec![work.path("nope.pem")],
        ..config(None)
    })
    .unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
    fs::write(work.path("empty.pem"), "not a certificate\n").unwrap();
    let err = Fetcher::new(FetchConfig {
        extra_ca_files: vec![work.path("empty.pem")],
        ..config(None)
    })
    .unwrap_err();
    assert!(matches!(err, FetchError::NoCertificates { .. }), "{err}");
}

#[test]
fn plain_http_needs_the_insecure_option() {
    let server = Server::http(|_| Reply::ok(b"plain"));
    let work = Work::new();
    let url = server.url("/a.aci");
    let err = fetcher(config(None))
        .download(&url, None, &work.partial())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("refusing plain HTTP for {url}; use --insecure-options=http")
    );
    assert!(server.requests().is_empty());

    let allowed = FetchConfig {
        allow_http: true,
        ..config(None)
    };
    let (got, _) = read_all(
        fetcher(allowed)
            .download(&url, None, &work.partial())
            .unwrap(),
    );
    assert_eq!(got, b"plain");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn fresh_cache_sends_no_request() {
    let pki = Pki::new();
    let server = Server::https(&pki, |_| Reply::ok(b"new"));
    let work = Work::new();
    let cache = CacheInfo {
        etag: Some("\"v1\"".into()),
        max_age: Some(3600),
        fetched_at: now() - 10,
        ..CacheInfo::default()
    };
    let outcome = fetcher(config(Some(&pki)))
        .download(&server.url("/a.aci"), Some(&cache), &work.partial())
        .unwrap();
    assert!(matches!(outcome, Outcome::Fresh), "{outcome:?}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn stale_cache_revalidates_with_etag_and_gets_304() {
    let pki = Pki::new();
    let server = Server::https(&pki, |req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            Reply::new(304)
                .header("ETag", "\"v1\"")
                .header("Cache-Control", "max-age=120")
        } else {
            Reply::ok(b"body").header("ETag", "\"v1\"")
        }
    });
    let work = Work::new();
    let cache = CacheInfo {
        etag: Some("\"v1\"".into()),
        max_age: Some(60),
        fetched_at: now() - 3600,
        ..CacheInfo::default()
    };
    let outcome = fetcher(config(Some(&pki)))
        .download(&server.url("/a.aci"), Some(&cache), &work.partial())
        .unwrap();
    let Outcome::NotModified(updated) = outcome else {
        panic!("expected NotModified, got {outcome:?}");
    };
    assert_eq!(updated.etag.as_deref(), Some("\"v1\""));
    assert_eq!(updated.max_age, Some(120));
    assert!(updated.fetched_at.abs_diff(now()) < 60);
    assert!(updated.is_fresh(SystemTime::now()));
    let log = server.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].header("if-none-match"), Some("\"v1\""));
    assert_eq!(
        fs::metadata(work.partial()).map(|m| m.len()).unwrap_or(0),
        0
    );
}

#[test]
fn changed_image_after_revalidation_downloads_the_new_body() {
    let pki = Pki::new();
    let server = Server::https(&pki, |_| Reply::ok(b"version 2").header("ETag", "\"v2\""));
    let work = Work::new();
    let cache = CacheInfo {
        etag: Some("\"v1\"".into()),
        ..CacheInfo::default()
    };
    let (got, done) = read_all(
        fetcher(config(Some(&pki)))
            .download(&server.url("/a.aci"), Some(&cache), &work.partial())
            .unwrap(),
    );
    assert_eq!(got, b"version 2");
    assert_eq!(done.cache.etag.as_deref(), Some("\"v2\""));
    assert_eq!(done.cache.max_age, None);
    assert_eq!(server.requests()[0].header("if-none-match"), Some("\"v1\""));
}

#[test]
fn last_modified_only_revalidates_with_if_modified_since() {
    let pki = Pki::new();
    let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    let server = Server::https(&pki, move |req| {
        if req.header("if-modified-since") == Some(lm) {
            Reply::new(304)
        } else {
            Reply::ok(b"x")
        }
    });
    let work = Work::new();
    let cache = CacheInfo {
        last_modified: Some(lm.into()),
        ..CacheInfo::default()
    };
    let outcome = fetcher(config(Some(&pki)))
        .download(&server.url("/a.aci"), Some(&cache), &work.partial())
        .unwrap();
    assert!(matches!(outcome, Outcome::NotModified(_)), "{outcome:?}");
}

/// The first response is cut half-way; the consumer sees an error carrying
/// `Interrupted`, and the bytes so far stay in the partial file.
fn interrupted_first_attempt(server: &Server, pki: &Pki, work: &Work, body: &[u8]) -> u64 {
    let mut d = expect_body(
        fetcher(config(Some(pki)))
            .download(&server.url("/big.aci"), None, &work.partial())
            .unwrap(),
    );
    let mut got = Vec::new();
    let err = d.read_to_end(&mut got).unwrap_err();
    let fetch_err = FetchError::from_io(&err).expect("a FetchError inside");
    assert!(
        matches!(fetch_err, FetchError::Interrupted { .. }),
        "{fetch_err:?}"
    );
    assert!(fetch_err
        .to_string()
        .contains("run the command again to resume"));
    assert!(fetch_err.is_transient());
    drop(d);
    let on_disk = fs::read(work.partial()).unwrap();
    assert!(!on_disk.is_empty() && on_disk.len() < body.len());
    assert!(on_disk == body[..on_disk.len()], "partial bytes differ");
    assert!(got == body[..got.len()], "streamed bytes differ");
    assert!(resume_info_path(&work.partial()).exists());
    on_disk.len() as u64
}

#[test]
fn interrupted_download_resumes_with_range_and_206() {
    let pki = Pki::new();
    let body = content(400_000);
    let served = body.clone();
    let server = Server::https(&pki, move |req| {
        let reply = Reply::ranged(req, &served, "\"big-1\"");
        if req.index == 0 {
            reply.cut_after(150_000)
        } else {
            reply
        }
    });
    let work = Work::new();
    let have = interrupted_first_attempt(&server, &pki, &work, &body);

    let progress = Progress::hidden();
    let mut d = expect_body(
        fetcher(config(Some(&pki)))
            .download(&server.url("/big.aci"), None, &work.partial())
            .unwrap(),
    )
    .with_progress(progress.clone());
    assert_eq!(d.resumed_from(), have);
    assert_eq!(d.total_len(), Some(body.len() as u64));
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    let done = d.finish().unwrap();
    assert!(
        got == body,
        "the consumer saw the whole file, replay included"
    );
    assert!(fs::read(&done.path).unwrap() == body, "byte-identical file");
    assert_eq!(progress.position(), body.len() as u64);
    assert_eq!(done.cache.etag.as_deref(), Some("\"big-1\""));

    let log = server.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].header("range"), None);
    assert_eq!(
        log[1].header("range").map(str::to_owned),
        Some(format!("bytes={have}-"))
    );
    assert_eq!(log[1].header("if-range"), Some("\"big-1\""));
}

#[test]
fn resume_answered_with_200_starts_over() {
    let pki = Pki::new();
    let body = content(300_000);
    let served = body.clone();
    let server = Server::https(&pki, move |req| {
        let reply = Reply::ok(&served).header("ETag", "\"big-1\"");
        if req.index == 0 {
            reply.cut_after(100_000)
        } else {
            reply // ignores Range
        }
    });
    let work = Work::new();
    let have = interrupted_first_attempt(&server, &pki, &work, &body);
    let d = expect_body(
        fetcher(config(Some(&pki)))
            .download(&server.url("/big.aci"), None, &work.partial())
            .unwrap(),
    );
    assert_eq!(d.resumed_from(), 0);
    let (got, done) = read_all(Outcome::Body(Box::new(d)));
    assert!(got == body);
    assert!(fs::read(&done.path).unwrap() == body);
    let log = server.requests();
    assert_eq!(
        log[1].header("range").map(str::to_owned),
        Some(format!("bytes={have}-"))
    );
}

#[test]
fn resume_after_the_image_changed_gets_the_new_image() {
    let pki = Pki::new();
    let old = content(200_000);
    let new: Vec<u8> = content(250_000).iter().map(|b| b ^ 0x5a).collect();
    let (served_old, served_new) = (old.clone(), new.clone());
    let server = Server::https(&pki, move |req| {
        if req.index == 0 {
            Reply::ranged(req, &served_old, "\"old\"").cut_after(80_000)
        } else {
            // If-Range "old" does not match "new": the whole new file.
            Reply::ranged(req, &served_new, "\"new\"")
        }
    });
    let work = Work::new();
    interrupted_first_attempt(&server, &pki, &work, &old);
    let (got, done) = read_all(
        fetcher(config(Some(&pki)))
            .download(&server.url("/big.aci"), None, &work.partial())
            .unwrap(),
    );
    assert!(got == new);
    assert_eq!(done.cache.etag.as_deref(), Some("\"new\""));
}

#[test]
fn partial_without_validator_is_discarded() {
    let pki = Pki::new();
    let server = Server::https(&pki, |_| Reply::ok(b"complete file"));
    let work = Work::new();
    fs::write(work.partial(), b"stale bytes").unwrap();
    let (got, _) = read_all(
        fetcher(config(Some(&pki)))
            .download(&server.url("/a.aci"), None, &work.partial())
            .unwrap(),
    );
    assert_eq!(got, b"complete file");
    assert_eq!(server.requests()[0].header("range"), None);
}

#[test]
fn a_partial_file_in_use_is_refused() {
    let pki = Pki::new();
    let server = Server::https(&pki, |_| Reply::ok(b"x"));
    let work = Work::new();
    let f = fetcher(config(Some(&pki)));
    let first = f
        .download(&server.url("/a.aci"), None, &work.partial())
        .unwrap();
    let err = f
        .download(&server.url("/a.aci"), None, &work.partial())
        .unwrap_err();
    assert!(matches!(err, FetchError::PartialBusy { .. }), "{err}");
    drop(first);
}

#[test]
fn not_found_and_server_error_messages() {
    let pki = Pki::new();
    let server = Server::https(&pki, |req| match req.path.as_str() {
        "/missing.aci" => Reply::new(404),
        _ => Reply::new(500),
    });
    let work = Work::new();
    let f = fetcher(config(Some(&pki)));
    let url = server.url("/missing.aci");
    let err = f.download(&url, None, &work.partial()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("image not found at {url} (HTTP 404)")
    );
    assert!(!err.is_transient());
    let url = server.url("/broken.aci");
    let err = f.download(&url, None, &work.partial()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("server error fetching {url} (HTTP 500 Internal Server Error)")
    );
    assert!(err.is_transient());
}

#[test]
fn connection_refused_names_host_and_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let work = Work::new();
    let url = format!("https://127.0.0.1:{port}/a.aci");
    let err = fetcher(config(None))
        .download(&url, None, &work.partial())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("connection refused by 127.0.0.1:{port} fetching {url}")
    );
}

fn auth_server(pki: &Pki, expected: &'static str) -> Server {
    Server::https(pki, move |req| {
        if req.header("authorization") == Some(expected) {
            Reply::ok(b"AuthenticationSucceeded.")
        } else {
            Reply::new(401).header("WWW-Authenticate", "Basic realm=\"berth\"")
        }
    })
}

#[test]
fn basic_auth_from_auth_d() {
    let pki = Pki::new();
    // "bob:s3cret"
    let server = auth_server(&pki, "Basic Ym9iOnMzY3JldA==");
    let work = Work::new();
    let url = server.url("/private.aci");

    let err = fetcher(config(Some(&pki)))
        .download(&url, None, &work.partial())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("access denied to {url} (HTTP 401 Unauthorized)")),
        "{msg}"
    );
    assert!(
        msg.contains("auth.d") && msg.contains("credentials"),
        "{msg}"
    );

    let local = work.path("local");
    write_auth(
        &local,
        "basic.json",
        r#"{"rktKind": "auth", "rktVersion": "v1", "domains": ["127.0.0.1"],
            "type": "basic", "credentials": {"user": "bob", "password": "s3cret"}}"#,
    );
    let auth = AuthConfig::load(&[work.path("system"), local]).unwrap();
    let (got, _) = read_all(
        fetcher(FetchConfig {
            auth,
            ..config(Some(&pki))
        })
        .download(&url, None, &work.partial())
        .unwrap(),
    );
    assert_eq!(got, b"AuthenticationSucceeded.");
}

#[test]
fn bearer_auth_local_overrides_system() {
    let pki = Pki::new();
    let server = auth_server(&pki, "Bearer local-token");
    let work = Work::new();
    let (system, local) = (work.path("system"), work.path("local"));
    write_auth(
        &system,
        "a.json",
        r#"{"rktKind": "auth", "rktVersion": "v1", "domains": ["127.0.0.1"],
            "type": "oauth", "credentials": {"token": "system-token"}}"#,
    );
    let url = server.url("/private.aci");

    let system_only = AuthConfig::load(std::slice::from_ref(&system)).unwrap();
    let err = fetcher(FetchConfig {
        auth: system_only,
        ..config(Some(&pki))
    })
    .download(&url, None, &work.partial())
    .unwrap_err();
    assert!(matches!(
        err,
        FetchError::AccessDenied {
            sent_credentials: true,
            ..
        }
    ));
    assert!(err.to_string().contains("refused the credentials"), "{err}");

    write_auth(
        &local,
        "b.json",
        r#"{"berthKind": "auth", "berthVersion": "v1", "domains": ["127.0.0.1"],
            "type": "oauth", "credentials": {"token": "local-token"}}"#,
    );
    fs::write(local.join("auth.d/README"), "ignored").unwrap();
    let auth = AuthConfig::load(&[system, local]).unwrap();
    let (got, _) = read_all(
        fetcher(FetchConfig {
            auth,
            ..config(Some(&pki))
        })
        .download(&url, None, &work.partial())
        .unwrap(),
    );
    assert_eq!(got, b"AuthenticationSucceeded.");
    let log = server.requests();
    assert_eq!(log[0].header("authorization"), Some("Bearer system-token"));
    assert_eq!(log[1].header("authorization"), Some("Bearer local-token"));
}

#[test]
fn credentials_do_not_follow_a_redirect_to_another_host() {
    let pki = Pki::new();
    // The target: reached as "localhost", which is another host than
    // "127.0.0.1" even though it is the same machine.
    let target = Server::https(&pki, |_| Reply::ok(b"image bytes"));
    let target_url = target.url_for_host("localhost", "/real.aci");
    let origin = Server::https(&pki, move |req| match req.path.as_str() {
        "/same-host" => Reply::new(302).header("Location", "/needs-auth"),
        "/needs-auth" if req.header("authorization").is_some() => Reply::ok(b"same host"),
        _ => Reply::new(302).header("Location", &target_url),
    });
    let work = Work::new();
    let mut auth = AuthConfig::default();
    auth.insert(
        "127.0.0.1",
        berth_fetch::Credentials::Bearer {
            token: "only-for-127".into(),
        },
    );
    let f = fetcher(FetchConfig {
        auth,
        ..config(Some(&pki))
    });

    let (got, done) = read_all(
        f.download(&origin.url("/image.aci"), None, &work.partial())
            .unwrap(),
    );
    assert_eq!(got, b"image bytes");
    assert!(
        done.final_url.starts_with("https://localhost:"),
        "{}",
        done.final_url
    );
    assert_eq!(
        origin.requests()[0].header("authorization"),
        Some("Bearer only-for-127")
    );
    let hits = target.requests();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].header("authorization"), None, "credentials leaked");

    // A redirect on the same host keeps them.
    let (got, _) = read_all(
        f.download(&origin.url("/same-host"), None, &work.path("p2"))
            .unwrap(),
    );
    assert_eq!(got, b"same host");
}

#[test]
fn redirect_to_plain_http_is_refused() {
    let pki = Pki::new();
    let plain = Server::http(|_| Reply::ok(b"downgraded"));
    let plain_url = plain.url("/a.aci");
    let origin = Server::https(&pki, move |_| {
        Reply::new(301).header("Location", &plain_url)
    });
    let work = Work::new();
    let err = fetcher(config(Some(&pki)))
        .download(&origin.url("/a.aci"), None, &work.partial())
        .unwrap_err();
    assert!(matches!(err, FetchError::InsecureHttp { .. }), "{err}");
    assert!(plain.requests().is_empty());
}

#[test]
fn redirect_loops_stop() {
    let pki = Pki::new();
    let server = Server::https(&pki, |_| Reply::new(302).header("Location", "/again"));
    let work = Work::new();
    let err = fetcher(FetchConfig {
        max_redirects: 3,
        ..config(Some(&pki))
    })
    .download(&server.url("/a.aci"), None, &work.partial())
    .unwrap_err();
    assert!(
        matches!(err, FetchError::TooManyRedirects { max: 3, .. }),
        "{err}"
    );
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn truncated_body_without_resume_support_is_an_error_then_a_fresh_start() {
    let pki = Pki::new();
    let body = content(100_000);
    let served = body.clone();
    // No validator: the partial bytes cannot be resumed safely.
    let server = Server::https(&pki, move |req| {
        let reply = Reply::ok(&served);
        if req.index == 0 {
            reply.cut_after(30_000)
        } else {
            reply
        }
    });
    let work = Work::new();
    let f = fetcher(config(Some(&pki)));
    let mut d = expect_body(
        f.download(&server.url("/a.aci"), None, &work.partial())
            .unwrap(),
    );
    let err = d.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(FetchError::from_io(&err).is_some(), "{err}");
    drop(d);
    let (got, _) = read_all(
        f.download(&server.url("/a.aci"), None, &work.partial())
            .unwrap(),
    );
    assert!(got == body);
    assert_eq!(server.requests()[1].header("range"), None);
}

#[test]
fn finish_drains_what_the_consumer_left() {
    let pki = Pki::new();
    let body = content(50_000);
    let served = body.clone();
    let server = Server::https(&pki, move |_| Reply::ok(&served));
    let work = Work::new();
    let mut d = expect_body(
        fetcher(config(Some(&pki)))
            .download(&server.url("/a.aci"), None, &work.partial())
            .unwrap(),
    );
    let mut first = [0u8; 100];
    d.read_exact(&mut first).unwrap();
    let done = d.finish().unwrap();
    assert_eq!(done.len, body.len() as u64);
    assert!(fs::read(&done.path).unwrap() == body);
}

#[test]
fn slow_server_times_out() {
    let pki = Pki::new();
    let server = Server::https(&pki, |_| {
        std::thread::sleep(Duration::from_millis(1500));
        Reply::ok(b"late")
    });
    let work = Work::new();
    let err = fetcher(FetchConfig {
        read_timeout: Duration::from_millis(300),
        ..config(Some(&pki))
    })
    .download(&server.url("/a.aci"), None, &work.partial())
    .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
}
