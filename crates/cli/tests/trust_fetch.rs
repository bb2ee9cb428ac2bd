//! End to end: `berth trust` and `berth fetch` with the real berth binary,
//! the real gpg, and a loopback HTTPS server answering for `example.com`
//! (through `BERTH_HOST_OVERRIDES`, with a test CA in `SSL_CERT_FILE` whose
//! certificate names `example.com`). Each test has its own --dir,
//! --local-config, --system-config and GNUPGHOME, removed on drop.

mod common;
#[path = "../../fetch/tests/common/gpg.rs"]
mod gpg;

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use common::server::{Pki, Reply, Server};
use common::{run, stderr, stdout, Env};
use gpg::Gpg;

const PAGE: &str = r#"<!DOCTYPE html><html><head>
<meta name="ac-discovery" content="example.com https://example.com/images/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
</head><body>berth test discovery</body></html>"#;

/// Files served by path (with query), changeable while the server runs.
type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;

struct Site {
    pki: Pki,
    server: Server,
    files: Files,
}

impl Site {
    fn new() -> Site {
        let pki = Pki::with_names(&["example.com"]);
        let files: Files = Arc::default();
        let f = files.clone();
        let server = Server::https(&pki, move |req| match f.lock().unwrap().get(&req.path) {
            Some(body) => Reply::ok(body),
            None => Reply::new(404),
        });
        files
            .lock()
            .unwrap()
            .insert("/app?ac-discovery=1".into(), PAGE.as_bytes().to_vec());
        Site { pki, server, files }
    }

    fn put(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_owned(), body);
    }

    fn remove(&self, path: &str) {
        self.files.lock().unwrap().remove(path);
    }

    /// berth talking to this site as `example.com`.
    fn berth(&self, env: &Env) -> Command {
        let mut c = env.berth();
        c.env("SSL_CERT_FILE", &self.pki.ca_file).env(
            "BERTH_HOST_OVERRIDES",
            format!("example.com={}", self.server.addr),
        );
        c.stdin(Stdio::null());
        c
    }
}

const ACI_PATH: &str = "/images/example.com/app-1.0-linux-amd64.aci";

/// Builds `example.com/app` version 1.0 with berth itself.
fn build_aci(env: &Env, name: &str, version: &str) -> PathBuf {
    let layout = env.work().join(format!("layout-{version}"));
    fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    fs::write(layout.join("rootfs/etc/hello"), "hello\n").unwrap();
    fs::write(
        layout.join("manifest"),
        format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}",
            "labels":[{{"name":"version","value":"{version}"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}]}}"#
        ),
    )
    .unwrap();
    let out = env.work().join(format!("app-{version}.aci"));
    let o = run(env.berth().args(["image", "build"]).arg(&layout).arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// A site serving a signed example.com/app:1.0 and the signer's key.
fn signed_site(env: &Env, g: &Gpg, key: &str) -> (Site, PathBuf) {
    let site = Site::new();
    let aci = build_aci(env, "example.com/app", "1.0");
    let asc = g.sign(key, &aci, None);
    site.put(ACI_PATH, fs::read(&aci).unwrap());
    site.put(&format!("{ACI_PATH}.asc"), fs::read(&asc).unwrap());
    site.put("/pubkeys.gpg", g.export(key));
    (site, aci)
}

/// Writes a key file (or an empty revocation marker) by hand, as a vendor
/// or an administrator would: `<config>/trustedkeys/<scope>/<fingerprint>`.
fn put_key(env: &Env, config: &str, scope: &str, fpr: &str, bytes: &[u8]) {
    let dir = env.tmp.path().join(config).join("trustedkeys").join(scope);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(fpr.to_lowercase()), bytes).unwrap();
}

fn images_in_store(env: &Env) -> usize {
    berth_store::Store::open(env.store())
        .unwrap()
        .list()
        .unwrap()
        .len()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

fn failed_with(o: &Output, text: &str) {
    assert_eq!(
        o.status.code(),
        Some(254),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    assert!(
        stderr(o).contains(text),
        "expected {text:?} in:\n{}",
        stderr(o)
    );
}

fn trust_file(site: &Site, env: &Env, g: &Gpg, key: &str, scope: &[&str]) -> Output {
    let file = g.export_to(key, &env.work().join("key.asc"));
    run(site
        .berth(env)
        .arg("trust")
        .args(scope)
        .arg("--skip-fingerprint-review")
        .arg(&file))
}

#[test]
fn trusted_prefix_key_lets_a_name_fetch_through_discovery() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_rsa_with_subkey("Alice", "alice@example.com");
    let (site, _) = signed_site(&env, &g, &key);
    let o = trust_file(&site, &env, &g, &key, &["--prefix=example.com/app"]);
    ok(&o);
    assert!(
        stdout(&o).contains(&format!(
            "Added key {key} (Alice <alice@example.com>) for prefix example.com/app"
        )),
        "{}",
        stdout(&o)
    );
    assert!(env
        .tmp
        .path()
        .join("local-config/trustedkeys/prefix.d/example.com/app")
        .join(key.to_lowercase())
        .is_file());

    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    ok(&o);
    assert!(stdout(&o).starts_with("sha512-"), "{}", stdout(&o));
    assert!(stderr(&o).contains("signed by"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Alice <alice@example.com>"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(images_in_store(&env), 1);
    // The signature was asked for before the image.
    let paths: Vec<String> = site
        .server
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    let asc = paths.iter().position(|p| p.ends_with(".aci.asc")).unwrap();
    let aci = paths.iter().position(|p| p.ends_with(".aci")).unwrap();
    assert!(asc < aci, "{paths:?}");

    // A label the image does not have: refused, with rkt's message.
    let o = run(site
        .berth(&env)
        .args(["fetch", "example.com/app:1.0,channel=beta"]));
    failed_with(
        &o,
        "requested label \"channel\" not provided by the image manifest",
    );
}

#[test]
fn untrusted_signer_and_wrong_prefix_get_the_actionable_message() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let (site, _) = signed_site(&env, &g, &key);
    // Nothing trusted: the signer is named with the user ID of the key that
    // discovery offers (which is not trusted for that).
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(
        &o,
        &format!(
            "signature of example.com/app:1.0 is made by key {key} (Alice <alice@example.com>), \
             which is not trusted for prefix example.com/app; run \"berth trust \
             --prefix=example.com/app\""
        ),
    );
    // Without offered keys, by fingerprint.
    site.remove("/pubkeys.gpg");
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(
        &o,
        &format!("is made by key {key}, which is not trusted for prefix example.com/app"),
    );
    assert!(
        env.tmp
            .path()
            .join("local-config/trustedkeys")
            .read_dir()
            .is_err(),
        "offered keys are not trusted"
    );
    assert_eq!(
        images_in_store(&env),
        0,
        "a refused image is not in the store"
    );

    // Trusted for a sibling prefix that is a string prefix but not a path prefix.
    ok(&trust_file(
        &site,
        &env,
        &g,
        &key,
        &["--prefix=example.com/ap"],
    ));
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(&o, &format!("made by key {key} (Alice <alice@example.com>), which is not trusted for prefix example.com/app"));
    assert_eq!(images_in_store(&env), 0);

    // The wrong key trusted for the right prefix: still the signer's name.
    let other = g.gen_ed25519("Bob", "bob@example.com", "never", None);
    ok(&trust_file(
        &site,
        &env,
        &g,
        &other,
        &["--prefix=example.com"],
    ));
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(&o, "which is not trusted for prefix example.com/app");
}

#[test]
fn trust_by_discovery_and_root_trust() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let (site, _) = signed_site(&env, &g, &key);
    // No key argument: the key comes from ac-discovery-pubkeys.
    let o = run(site.berth(&env).args([
        "trust",
        "--prefix=example.com/app",
        "--skip-fingerprint-review",
    ]));
    ok(&o);
    assert!(stdout(&o).contains(&key), "{}", stdout(&o));
    ok(&run(site
        .berth(&env)
        .args(["fetch", "example.com/app:1.0"])));

    let env2 = Env::new();
    let o = trust_file(&site, &env2, &g, &key, &["--root"]);
    ok(&o);
    assert!(
        stderr(&o).contains("warning: trusting key"),
        "{}",
        stderr(&o)
    );
    assert!(env2
        .tmp
        .path()
        .join("local-config/trustedkeys/root.d")
        .join(key.to_lowercase())
        .is_file());
    ok(&run(site
        .berth(&env2)
        .args(["fetch", "example.com/app:1.0"])));

    let o = run(site.berth(&env2).args(["trust", "list", "--format=json"]));
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["root"], true);
    assert_eq!(v[0]["fingerprint"], key.as_str());
    assert_eq!(v[0]["user_ids"][0], "Alice <alice@example.com>");
    assert_eq!(v[0]["source"], "local");
    assert_eq!(v[0]["revoked"], false);
}

#[test]
fn trust_refuses_without_a_terminal_or_a_prefix() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let file = g.export_to(&key, &env.work().join("k.asc"));
    let site = Site::new();
    let o = run(site
        .berth(&env)
        .args(["trust", "--prefix=example.com/app"])
        .arg(&file));
    failed_with(&o, "stdin is not a terminal");
    let o = run(site.berth(&env).arg("trust").arg(&file));
    failed_with(&o, "--prefix=PREFIX or --root");
    assert!(!env.tmp.path().join("local-config/trustedkeys").exists());
}

#[test]
fn tampered_image_and_missing_signature_are_refused() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_rsa_with_subkey("Alice", "alice@example.com");
    let (site, aci) = signed_site(&env, &g, &key);
    ok(&trust_file(
        &site,
        &env,
        &g,
        &key,
        &["--prefix=example.com"],
    ));

    // Same manifest, different rootfs, old signature.
    let layout = env.work().join("layout-1.0");
    fs::write(layout.join("rootfs/etc/hello"), "evil\n").unwrap();
    let other = env.work().join("evil.aci");
    ok(&run(env
        .berth()
        .args(["image", "build"])
        .arg(&layout)
        .arg(&other)));
    assert_ne!(fs::read(&other).unwrap(), fs::read(&aci).unwrap());
    site.put(ACI_PATH, fs::read(&other).unwrap());
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(
        &o,
        "does not match the image: the image was modified after it was signed",
    );
    assert_eq!(images_in_store(&env), 0);

    site.remove(&format!("{ACI_PATH}.asc"));
    let aci_gets = || {
        site.server
            .requests()
            .iter()
            .filter(|r| r.path == ACI_PATH)
            .count()
    };
    let before = aci_gets();
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(&o, "is not signed: no signature at https://example.com/images/example.com/app-1.0-linux-amd64.aci.asc");
    assert_eq!(aci_gets(), before, "no image download without a signature");

    // --insecure-options=image: fetched, with one warning.
    let o =
        run(site
            .berth(&env)
            .args(["--insecure-options=image", "fetch", "example.com/app:1.0"]));
    ok(&o);
    assert_eq!(
        stderr(&o)
            .matches("berth: warning: image signature verification is disabled")
            .count(),
        1,
        "{}",
        stderr(&o)
    );
    assert_eq!(images_in_store(&env), 1);
}

#[test]
fn local_files_and_urls_are_verified_too() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let (site, aci) = signed_site(&env, &g, &key);
    // File with FILE.asc next to it, key not trusted yet.
    let o = run(site.berth(&env).arg("fetch").arg(&aci));
    failed_with(&o, "not trusted for prefix example.com/app");
    ok(&trust_file(
        &site,
        &env,
        &g,
        &key,
        &["--prefix=example.com/app"],
    ));
    ok(&run(site.berth(&env).arg("fetch").arg(&aci)));
    // A copy without its signature.
    let lone = env.work().join("lone.aci");
    fs::copy(&aci, &lone).unwrap();
    let o = run(site.berth(&env).arg("fetch").arg(&lone));
    failed_with(&o, &format!("no signature at {}.asc", lone.display()));
    // By URL: signature at URL.asc.
    let env2 = Env::new();
    ok(&trust_file(
        &site,
        &env2,
        &g,
        &key,
        &["--prefix=example.com/app"],
    ));
    let o = run(site
        .berth(&env2)
        .arg("fetch")
        .arg(format!("https://example.com{ACI_PATH}")));
    ok(&o);
    assert_eq!(images_in_store(&env2), 1);
}

#[test]
fn revoking_a_vendor_key_locally() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Vendor", "vendor@example.com", "never", None);
    let (site, _) = signed_site(&env, &g, &key);
    put_key(
        &env,
        "sys-config",
        "prefix.d/example.com",
        &key,
        &g.export(&key),
    );
    ok(&run(site.berth(&env).args([
        "fetch",
        "--pull-policy=update",
        "example.com/app:1.0",
    ])));

    let o = run(site.berth(&env).args(["trust", "rm", &key]));
    ok(&o);
    assert!(stdout(&o).contains("Revoked vendor key"), "{}", stdout(&o));
    let o = run(site.berth(&env).args(["trust", "list", "--format=json"]));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["source"], "system");
    assert_eq!(v[0]["revoked"], true);

    let env2 = Env::new();
    put_key(
        &env2,
        "sys-config",
        "prefix.d/example.com",
        &key,
        &g.export(&key),
    );
    put_key(&env2, "local-config", "prefix.d/example.com", &key, b"");
    let o = run(site.berth(&env2).args(["fetch", "example.com/app:1.0"]));
    failed_with(&o, "a vendor key that is revoked locally");
    assert_eq!(images_in_store(&env2), 0);
}

#[test]
fn revoked_and_expired_keys_are_refused() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let (site, _) = signed_site(&env, &g, &key);
    ok(&trust_file(
        &site,
        &env,
        &g,
        &key,
        &["--prefix=example.com/app"],
    ));
    g.revoke(&key);
    // The revoked key replaces the trusted copy (a key server would serve it).
    put_key(
        &env,
        "local-config",
        "prefix.d/example.com/app",
        &key,
        &g.export(&key),
    );
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(&o, "which is revoked");
    // and berth trust will not add it.
    let o = trust_file(&site, &env, &g, &key, &["--prefix=example.com/app"]);
    failed_with(&o, "is revoked");

    let env = Env::new();
    let g = Gpg::new();
    let old = g.gen_ed25519("Old", "old@example.com", "10d", Some("20200101T000000!"));
    let aci = build_aci(&env, "example.com/app", "1.0");
    let asc = g.sign(&old, &aci, Some("20200105T000000!"));
    site.put(ACI_PATH, fs::read(&aci).unwrap());
    site.put(&format!("{ACI_PATH}.asc"), fs::read(&asc).unwrap());
    put_key(
        &env,
        "local-config",
        "prefix.d/example.com",
        &old,
        &g.export(&old),
    );
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(&o, "which expired on 2020-01-11");
    assert_eq!(images_in_store(&env), 0);
}

#[test]
fn insecure_http_and_tls_switches() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let aci = build_aci(&env, "example.com/app", "1.0");
    let asc = g.sign(&key, &aci, None);
    let files: Files = Arc::default();
    {
        let mut f = files.lock().unwrap();
        f.insert(
            "/app?ac-discovery=1".into(),
            br#"<meta name="ac-discovery" content="example.com http://example.com/images/{name}-{version}-{os}-{arch}.{ext}">"#.to_vec(),
        );
        f.insert(ACI_PATH.into(), fs::read(&aci).unwrap());
        f.insert(format!("{ACI_PATH}.asc"), fs::read(&asc).unwrap());
    }
    let f2 = files.clone();
    let plain = Server::http(move |req| match f2.lock().unwrap().get(&req.path) {
        Some(b) => Reply::ok(b),
        None => Reply::new(404),
    });
    let berth = |env: &Env| {
        let mut c = env.berth();
        c.env(
            "BERTH_HOST_OVERRIDES",
            format!("example.com={}", plain.addr),
        );
        c
    };
    ok(&run(berth(&env)
        .args([
            "trust",
            "--prefix=example.com/app",
            "--skip-fingerprint-review",
        ])
        .arg(g.export_to(&key, &env.work().join("k.asc")))));
    let o = run(berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(&o, "discovery");
    assert!(!plain.requests().iter().any(|r| r.path == ACI_PATH));
    let o = run(berth(&env).args(["--insecure-options=http", "fetch", "example.com/app:1.0"]));
    ok(&o);

    // TLS: a server whose CA is not trusted.
    let env = Env::new();
    let site = Site::new();
    site.put(ACI_PATH, fs::read(&aci).unwrap());
    site.put(&format!("{ACI_PATH}.asc"), fs::read(&asc).unwrap());
    ok(&trust_file(
        &site,
        &env,
        &g,
        &key,
        &["--prefix=example.com/app"],
    ));
    let mut c = site.berth(&env);
    c.env_remove("SSL_CERT_FILE")
        .args(["fetch", "example.com/app:1.0"]);
    let o = run(&mut c);
    failed_with(&o, "TLS");
    let mut c = site.berth(&env);
    c.env_remove("SSL_CERT_FILE").args([
        "--insecure-options=tls,image",
        "fetch",
        "example.com/app:1.0",
    ]);
    ok(&run(&mut c));
}

#[test]
fn image_discover_prints_endpoints_keys_and_tried_urls() {
    let env = Env::new();
    let site = Site::new();
    let o = run(site.berth(&env).args([
        "--debug",
        "image",
        "discover",
        "example.com/app/sub:2.0,os=linux,arch=aarch64",
    ]));
    ok(&o);
    assert_eq!(
        stdout(&o),
        "ACI: https://example.com/images/example.com/app/sub-2.0-linux-aarch64.aci\n\
         ASC: https://example.com/images/example.com/app/sub-2.0-linux-aarch64.aci.asc\n\
         Keys: https://example.com/pubkeys.gpg\n"
    );
    let err = stderr(&o);
    assert!(
        err.contains("https://example.com/app/sub?ac-discovery=1: image not found"),
        "{err}"
    );
    assert!(
        err.contains("https://example.com/app?ac-discovery=1: 1 image endpoint(s), 1 key URL(s)"),
        "{err}"
    );

    let o = run(site
        .berth(&env)
        .args(["image", "discover", "--format=json", "example.com/app"]));
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let aci = v["image_endpoints"][0]["aci_url"].as_str().unwrap();
    assert!(
        aci.starts_with("https://example.com/images/example.com/app-latest-linux-"),
        "{aci}"
    );
    assert_eq!(v["pubkeys"][0], "https://example.com/pubkeys.gpg");
    assert_eq!(v["tried"].as_array().unwrap().len(), 1);
    let o = run(site
        .berth(&env)
        .args(["image", "discover", "--json", "example.com/app"]));
    ok(&o);
    let short: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(short, v, "--json differs from --format=json");

    let o = run(site
        .berth(&env)
        .args(["image", "discover", "example.org/nothing"]));
    assert_eq!(o.status.code(), Some(254));
}

/// `berth trust` on a terminal (util-linux `script` gives it a pty):
/// shows the fingerprint and user ID, insists on yes or no.
#[test]
fn trust_asks_on_a_terminal() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let file = g.export_to(&key, &env.work().join("k.asc"));
    let berth_cmd = |input: &str| {
        let mut shell = format!(
            "'{}' --dir '{}'",
            env!("CARGO_BIN_EXE_berth"),
            env.store().display()
        );
        for (flag, dir) in [
            ("--system-config", "sys-config"),
            ("--local-config", "local-config"),
        ] {
            shell.push_str(&format!(" {flag} '{}'", env.tmp.path().join(dir).display()));
        }
        shell.push_str(&format!(
            " trust --prefix=example.com/app '{}'",
            file.display()
        ));
        let mut c = Command::new("script");
        c.args(["-qec", &shell, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = berth_cmd("no\n");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    let spaced = format!(
        "{} {} {} {} {}  {} {} {} {} {}",
        &key[0..4],
        &key[4..8],
        &key[8..12],
        &key[12..16],
        &key[16..20],
        &key[20..24],
        &key[24..28],
        &key[28..32],
        &key[32..36],
        &key[36..40]
    );
    assert!(
        text.contains(&format!("GPG key fingerprint is: {spaced}")),
        "{text}"
    );
    assert!(text.contains("Alice <alice@example.com>"), "{text}");
    assert!(text.contains("not trusting key"), "{text}");
    assert!(!env.tmp.path().join("local-config/trustedkeys").exists());

    let o = berth_cmd("maybe\nyes\n");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("Please answer yes or no."));
    assert!(env
        .tmp
        .path()
        .join("local-config/trustedkeys/prefix.d/example.com/app")
        .join(key.to_lowercase())
        .is_file());
}

/// A validly signed image that calls itself another name is refused when
/// fetched by this name (the key was picked for the requested name).
#[test]
fn signed_image_with_another_name_is_refused() {
    let env = Env::new();
    let g = Gpg::new();
    let key = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let site = Site::new();
    let other = build_aci(&env, "example.com/other", "1.0");
    let asc = g.sign(&key, &other, None);
    site.put(ACI_PATH, fs::read(&other).unwrap());
    site.put(&format!("{ACI_PATH}.asc"), fs::read(&asc).unwrap());
    ok(&trust_file(&site, &env, &g, &key, &["--root"]));
    let o = run(site.berth(&env).args(["fetch", "example.com/app:1.0"]));
    failed_with(
        &o,
        "\"example.com/other\", not the expected \"example.com/app\"",
    );
    assert_eq!(images_in_store(&env), 0);
}
