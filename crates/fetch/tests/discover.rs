//! appc meta discovery over HTTPS against a loopback server that answers
//! for `example.com` (through `FetchConfig::host_overrides`, with a test CA
//! whose certificate names `example.com`): walking up the name, label
//! templating, keys, and the http/tls switches.

mod common;

use berth_appc::discovery::Want;
use berth_appc::reference::ImageReference;
use berth_fetch::discover::{discover, fetch_keys};
use berth_fetch::{FetchConfig, Fetcher};
use common::{Pki, Reply, Server};

fn fetcher(
    server: &Server,
    ca: Option<&std::path::Path>,
    tweak: impl FnOnce(&mut FetchConfig),
) -> Fetcher {
    let mut c = FetchConfig {
        system_roots: false,
        use_env_proxy: false,
        extra_ca_files: ca.map(|p| vec![p.to_owned()]).unwrap_or_default(),
        host_overrides: vec![("example.com".into(), server.addr)],
        ..FetchConfig::default()
    };
    tweak(&mut c);
    Fetcher::new(c).unwrap()
}

const PAGE: &str = r#"<html><head>
<meta name="ac-discovery" content="example.com https://example.com/images/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
</head></html>"#;

fn reference(s: &str) -> ImageReference {
    s.parse::<ImageReference>()
        .unwrap()
        .with_defaults("linux", "amd64")
        .unwrap()
}

#[test]
fn walks_up_to_the_page_and_renders_labels() {
    let pki = Pki::with_names(&["example.com"]);
    let server = Server::https(&pki, |req| match req.path.as_str() {
        "/app?ac-discovery=1" => Reply::ok(PAGE.as_bytes()),
        "/pubkeys.gpg" => Reply::ok(b"not a key"),
        _ => Reply::new(404),
    });
    let f = fetcher(&server, Some(&pki.ca_file), |_| {});
    let r = discover(
        &f,
        &reference("example.com/app/sub:1.0"),
        Want::ImageAndKeys,
    );
    assert_eq!(r.image_endpoints.len(), 1, "{}", r.explain());
    assert_eq!(
        r.image_endpoints[0].aci_url,
        "https://example.com/images/example.com/app/sub-1.0-linux-amd64.aci"
    );
    assert_eq!(
        r.image_endpoints[0].asc_url,
        "https://example.com/images/example.com/app/sub-1.0-linux-amd64.aci.asc"
    );
    assert_eq!(
        r.pubkeys,
        vec!["https://example.com/pubkeys.gpg".to_owned()]
    );
    let tried: Vec<&str> = r.tried.iter().map(|a| a.url.as_str()).collect();
    assert_eq!(
        tried,
        vec![
            "https://example.com/app/sub?ac-discovery=1",
            "https://example.com/app?ac-discovery=1"
        ]
    );
    // The server saw the real Host, not the address it was reached at.
    let reqs = server.requests();
    assert_eq!(reqs[0].header("host"), Some("example.com"));
    // No version: discovery asks for "latest".
    let r = discover(&f, &reference("example.com/app"), Want::Image);
    assert!(r.image_endpoints[0]
        .aci_url
        .ends_with("/example.com/app-latest-linux-amd64.aci"));
    // A key URL serving something else is a clear error.
    let err = fetch_keys(&f, "https://example.com/pubkeys.gpg").unwrap_err();
    assert!(
        err.to_string().contains("holds no usable public key"),
        "{err}"
    );
}

#[test]
fn nothing_found_explains_every_url() {
    let pki = Pki::with_names(&["example.com"]);
    let server = Server::https(&pki, |_| Reply::new(404));
    let f = fetcher(&server, Some(&pki.ca_file), |_| {});
    let r = discover(&f, &reference("example.com/a/b"), Want::ImageAndKeys);
    assert!(r.image_endpoints.is_empty());
    assert_eq!(r.tried.len(), 3);
    assert!(
        r.explain().contains("https://example.com?ac-discovery=1"),
        "{}",
        r.explain()
    );
}

#[test]
fn tls_is_checked_against_the_name_unless_insecure() {
    let pki = Pki::with_names(&["example.com"]);
    let other = Pki::with_names(&["example.com"]);
    let server = Server::https(&pki, |req| match req.path.as_str() {
        "/app?ac-discovery=1" => Reply::ok(PAGE.as_bytes()),
        _ => Reply::new(404),
    });
    // A CA that did not sign the server's certificate: nothing found.
    let f = fetcher(&server, Some(&other.ca_file), |_| {});
    let r = discover(&f, &reference("example.com/app"), Want::Image);
    assert!(r.image_endpoints.is_empty());
    assert!(r.explain().contains("TLS"), "{}", r.explain());
    // A certificate for other names only: refused too (the check uses the
    // URL's host, not the overridden address).
    let narrow = Pki::new();
    let server2 = Server::https(&narrow, |_| Reply::ok(PAGE.as_bytes()));
    let f = fetcher(&server2, Some(&narrow.ca_file), |_| {});
    assert!(discover(&f, &reference("example.com/app"), Want::Image)
        .image_endpoints
        .is_empty());
    // --insecure-options=tls
    let f = fetcher(&server, None, |c| c.skip_tls_verify = true);
    assert_eq!(
        discover(&f, &reference("example.com/app"), Want::Image)
            .image_endpoints
            .len(),
        1
    );
}

#[test]
fn plain_http_only_when_allowed() {
    let server = Server::http(|req| match req.path.as_str() {
        "/app?ac-discovery=1" => Reply::ok(
            br#"<meta name="ac-discovery" content="example.com http://example.com/{name}.{ext}">"#,
        ),
        _ => Reply::new(404),
    });
    let f = fetcher(&server, None, |_| {});
    let r = discover(&f, &reference("example.com/app"), Want::Image);
    assert!(r.image_endpoints.is_empty());
    assert!(
        server.requests().is_empty(),
        "no plain HTTP request without the option"
    );
    let f = fetcher(&server, None, |c| c.allow_http = true);
    let r = discover(&f, &reference("example.com/app"), Want::Image);
    assert_eq!(
        r.image_endpoints[0].aci_url,
        "http://example.com/example.com/app.aci"
    );
}
