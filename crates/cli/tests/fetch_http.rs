//! `berth fetch` end to end: the real binary, a private store, and a real
//! HTTPS server on 127.0.0.1 with a test CA passed through `SSL_CERT_FILE`.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aci::{file, gz, id_of, manifest, tar_aci};
use common::server::{Pki, Reply, Server};
use common::{run, stderr, stdout, ChildGuard, Env};
use serde_json::json;

/// A small gzip ACI and its ID.
fn small_aci(name: &str) -> (Vec<u8>, String) {
    let tar = tar_aci(
        &manifest(name, &[("version", "1.0")], json!([]), &[]),
        &[file("hello.txt", "hello\n")],
    );
    (gz(&tar), id_of(&tar).to_string())
}

/// An ACI with `size` bytes of incompressible content, gzip (fast level).
fn big_aci(size: usize) -> (Vec<u8>, String) {
    let mut content = vec![0u8; size];
    // xorshift: random-looking, reproducible, incompressible.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in content.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let tar = tar_aci(
        &manifest("example.com/big", &[("version", "1")], json!([]), &[]),
        &[file("blob.bin", &content)],
    );
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&tar).unwrap();
    (enc.finish().unwrap(), id_of(&tar).to_string())
}

fn fetch(env: &Env, pki: &Pki, args: &[&str]) -> std::process::Output {
    run(env
        .berth()
        .env("SSL_CERT_FILE", &pki.ca_file)
        .arg("--insecure-options=image")
        .arg("fetch")
        .args(args))
}

fn list_json(env: &Env) -> Vec<serde_json::Value> {
    let out = run(env.berth().args(["image", "list", "--format=json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

fn dir_is_empty(p: &Path) -> bool {
    fs::read_dir(p).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn fetch_caches_and_revalidates_with_etag() {
    let env = Env::new();
    let pki = Pki::new();
    let (aci, id) = small_aci("example.com/hello");
    let served = aci.clone();
    let server = Server::https(&pki, move |req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            Reply::new(304).header("ETag", "\"v1\"")
        } else {
            Reply::ok(&served).header("ETag", "\"v1\"")
        }
    });
    let url = server.url("/hello.aci");

    let out = fetch(&env, &pki, &["--full", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id, "the ID is the sha512 of the tar");
    assert!(
        stderr(&out).contains("warning: image signature verification is disabled"),
        "{}",
        stderr(&out)
    );

    // The default short form is a 32-hex prefix of the same ID.
    let out = fetch(&env, &pki, &["--pull-policy=new", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), &id[..7 + 32]);
    assert_eq!(server.requests().len(), 1, "new: served from the store");

    let out = fetch(&env, &pki, &["--pull-policy=update", "--full", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("if-none-match"), Some("\"v1\""));

    let images = list_json(&env);
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["id"], json!(id));
    assert_eq!(images[0]["origin"], json!(url));
    assert_eq!(images[0]["blobSize"], json!(aci.len()));
    // fetch rendered the image's tree on the same pass: its size counts.
    let tree = images[0]["treeSize"].as_u64().unwrap();
    assert!(tree > 0, "{images:?}");
    assert_eq!(images[0]["size"], json!(aci.len() as u64 + tree));
}

#[test]
fn max_age_means_no_request_at_all() {
    let env = Env::new();
    let pki = Pki::new();
    let (aci, id) = small_aci("example.com/fresh");
    let server = Server::https(&pki, move |_| {
        Reply::ok(&aci)
            .header("ETag", "\"f\"")
            .header("Cache-Control", "max-age=3600")
    });
    let url = server.url("/fresh.aci");
    for _ in 0..2 {
        let out = fetch(&env, &pki, &["--full", &url]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), id);
    }
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn interrupted_download_resumes_with_range() {
    let env = Env::new();
    let pki = Pki::new();
    let (aci, id) = big_aci(4 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let half = aci.len() / 2;
    let server = Server::https(&pki, move |req| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::ok(&aci).header("ETag", "\"big\"").cut_after(half)
        } else {
            Reply::ranged(req, &aci, "\"big\"")
        }
    });
    let url = server.url("/big.aci");
    let out = fetch(&env, &pki, &[&url]);
    assert_eq!(out.status.code(), Some(254), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 2, "{}", stderr(&out));
    assert!(list_json(&env).is_empty());

    let out = fetch(&env, &pki, &["--full", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let range = reqs[1].header("range").unwrap_or_default().to_string();
    let offset: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume: {range:?}"));
    assert!(offset > 0 && offset <= half, "{offset}");
    assert!(dir_is_empty(&env.store().join("cas/downloads")));
    let out = run(env.berth().args(["image", "verify"]));
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn server_errors_are_clear() {
    let env = Env::new();
    let pki = Pki::new();
    let server = Server::https(&pki, |req| {
        if req.path == "/missing.aci" {
            Reply::new(404)
        } else {
            Reply::new(500)
        }
    });
    for (path, want) in [("/missing.aci", "404"), ("/broken.aci", "500")] {
        let out = fetch(&env, &pki, &[&server.url(path)]);
        assert_eq!(out.status.code(), Some(254));
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("berth: fetching https://"), "{err}");
        assert!(last.contains(want), "{err}");
    }
    assert!(list_json(&env).is_empty());
}

#[test]
fn tampered_download_is_rejected_and_not_kept() {
    let env = Env::new();
    let pki = Pki::new();
    let (aci, _) = small_aci("example.com/tampered");
    // A gzip stream cut short, served whole (right Content-Length).
    let truncated = aci[..aci.len() - 20].to_vec();
    // An ACI whose manifest is not valid (no acVersion).
    let bad_manifest = gz(&tar_aci(
        br#"{"acKind":"ImageManifest","name":"example.com/bad"}"#,
        &[file("x", "x")],
    ));
    let server = Server::https(&pki, move |req| {
        let body = if req.path == "/truncated.aci" {
            &truncated
        } else {
            &bad_manifest
        };
        Reply::ok(body).header("ETag", "\"t\"")
    });
    for path in ["/truncated.aci", "/bad-manifest.aci"] {
        let out = fetch(&env, &pki, &[&server.url(path)]);
        assert_eq!(out.status.code(), Some(254), "{path}: {}", stdout(&out));
        assert!(stderr(&out).contains("berth: fetching"), "{}", stderr(&out));
    }
    assert!(list_json(&env).is_empty());
    assert!(dir_is_empty(&env.store().join("cas/downloads")));
    assert!(dir_is_empty(&env.store().join("cas/blobs/sha512")));
}

#[test]
fn plain_http_and_unsigned_images_need_insecure_options() {
    let env = Env::new();
    let pki = Pki::new();
    let (aci, id) = small_aci("example.com/plain");
    let server = Server::http(move |_| Reply::ok(&aci));
    let url = server.url("/plain.aci");

    let out = fetch(&env, &pki, &[&url]);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        stderr(&out).contains("--insecure-options=http"),
        "{}",
        stderr(&out)
    );
    assert!(server.requests().is_empty());

    // Unsigned: refused unless signature checks are switched off, and
    // nothing reaches the store.
    let out = run(env.berth().args(["--insecure-options=http", "fetch", &url]));
    assert_eq!(out.status.code(), Some(254));
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));
    assert!(list_json(&env).is_empty());

    let out = run(env
        .berth()
        .args(["--insecure-options=http,image", "fetch", "--full", &url]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id);
}

/// `kill -9` of `berth fetch` in the middle of a (throttled) transfer: the
/// retry resumes with Range and the store's tmp/ is clean afterwards.
#[test]
fn killed_fetch_resumes() {
    let env = Env::new();
    let pki = Pki::new();
    let (aci, id) = big_aci(8 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let server = Server::https(&pki, move |req| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::ok(&aci)
                .header("ETag", "\"k\"")
                .throttle(256 * 1024, Duration::from_millis(100))
        } else {
            Reply::ranged(req, &aci, "\"k\"")
        }
    });
    let url = server.url("/kill.aci");
    let mut child = ChildGuard(
        env.berth()
            .env("SSL_CERT_FILE", &pki.ca_file)
            .args(["--insecure-options=image", "fetch", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let partial_dir = env.store().join("cas/downloads");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size: u64 = fs::read_dir(&partial_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0);
        if size > 1 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let out = fetch(&env, &pki, &["--full", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), id);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].header("range").is_some(), "resumed: {:?}", reqs[1]);
    assert!(dir_is_empty(&env.store().join("tmp")), "tmp/ is clean");
    assert!(dir_is_empty(&partial_dir));
}

/// Two `berth fetch` of the same ~100 MB image at once: one good image.
#[test]
fn concurrent_fetches_of_one_image() {
    let env = Env::new();
    let pki = Pki::new();
    let (aci, id) = big_aci(100 << 20);
    let server = Server::https(&pki, move |req| Reply::ranged(req, &aci, "\"c\""));
    let url = server.url("/concurrent.aci");
    let spawn = || {
        ChildGuard(
            env.berth()
                .env("SSL_CERT_FILE", &pki.ca_file)
                .args(["--insecure-options=image", "fetch", "--full", &url])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let (a, b) = (spawn(), spawn());
    // Race a gc against them too: it must not corrupt anything.
    let gc = run(env.berth().args(["image", "gc", "--grace-period=0s"]));
    assert!(gc.status.success(), "{}", stderr(&gc));
    for mut g in [a, b] {
        let child = std::mem::replace(&mut g.0, Command::new("true").spawn().unwrap());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), id);
    }
    let images = list_json(&env);
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["id"], json!(id));
    let out = run(env.berth().args(["image", "verify"]));
    assert!(out.status.success(), "{}", stdout(&out));
}
