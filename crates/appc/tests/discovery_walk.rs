//! The discovery walk up the name, driven by a fake page getter (a closure
//! over a map of URL -> page): which URLs are fetched, in what order, when the
//! walk stops, and what it reports.

use std::collections::HashMap;

use berth_appc::discovery::{
    discover, discovery_prefixes, discovery_urls, Discovery, DiscoveryOptions, DiscoveryResult,
    Endpoint, Outcome, Want,
};
use berth_appc::reference::ImageReference;
use berth_appc::types::AcIdentifier;

fn r(s: &str) -> ImageReference {
    s.parse().unwrap()
}

fn meta(name: &str, prefix: &str, url: &str) -> String {
    format!("<meta name=\"{name}\" content=\"{prefix} {url}\">\n")
}

fn page(metas: &[String]) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>x</title>\n{}</head><body>hello</body></html>",
        metas.concat()
    )
}

/// Runs discovery over `site`; a URL not in it answers "404 Not Found".
/// Returns the result and the URLs requested, in order.
fn run(
    reference: &str,
    options: DiscoveryOptions,
    site: &HashMap<&str, String>,
) -> (DiscoveryResult, Vec<String>) {
    let mut requested = Vec::new();
    let mut get = |url: &str| -> Result<String, String> {
        requested.push(url.to_owned());
        site.get(url)
            .cloned()
            .ok_or_else(|| "404 Not Found".to_owned())
    };
    let result = discover(&r(reference), options, &mut get);
    (result, requested)
}

fn aci_urls(res: &DiscoveryResult) -> Vec<&str> {
    res.image_endpoints
        .iter()
        .map(|e| e.aci_url.as_str())
        .collect()
}

const APP: &str = "example.com/project/app:1.0,os=linux,arch=amd64";
const TPL: &str = "https://cdn.example.com/{name}-{version}-{os}-{arch}.{ext}";

fn secure(want: Want) -> DiscoveryOptions {
    DiscoveryOptions {
        insecure_http: false,
        want,
    }
}

#[test]
fn prefixes_and_urls() {
    let name: AcIdentifier = "example.com/project/app".parse().unwrap();
    assert_eq!(
        discovery_prefixes(&name),
        [
            "example.com/project/app",
            "example.com/project",
            "example.com"
        ]
    );
    assert_eq!(
        discovery_urls(&name, false),
        [
            "https://example.com/project/app?ac-discovery=1",
            "https://example.com/project?ac-discovery=1",
            "https://example.com?ac-discovery=1",
        ]
    );
    assert_eq!(
        discovery_urls(&name, true),
        [
            "https://example.com/project/app?ac-discovery=1",
            "http://example.com/project/app?ac-discovery=1",
            "https://example.com/project?ac-discovery=1",
            "http://example.com/project?ac-discovery=1",
            "https://example.com?ac-discovery=1",
            "http://example.com?ac-discovery=1",
        ]
    );
    let single: AcIdentifier = "busybox".parse().unwrap();
    assert_eq!(discovery_prefixes(&single), ["busybox"]);
    // an empty path segment gives no prefix of its own
    let doubled: AcIdentifier = "example.com//app".parse().unwrap();
    assert_eq!(
        discovery_prefixes(&doubled),
        ["example.com//app", "example.com"]
    );
}

#[test]
fn walks_up_until_a_page_matches() {
    let site = HashMap::from([
        // the project page exists but has nothing for this name
        (
            "https://example.com/project?ac-discovery=1",
            page(&[meta("ac-discovery", "example.com/other", TPL)]),
        ),
        (
            "https://example.com?ac-discovery=1",
            page(&[
                meta("ac-discovery", "example.com", TPL),
                meta(
                    "ac-discovery-pubkeys",
                    "example.com",
                    "https://example.com/keys.gpg",
                ),
            ]),
        ),
    ]);
    let (res, requested) = run(APP, secure(Want::ImageAndKeys), &site);
    assert_eq!(
        requested,
        [
            "https://example.com/project/app?ac-discovery=1",
            "https://example.com/project?ac-discovery=1",
            "https://example.com?ac-discovery=1",
        ]
    );
    assert_eq!(
        res.image_endpoints,
        [Endpoint {
            aci_url: "https://cdn.example.com/example.com/project/app-1.0-linux-amd64.aci".into(),
            asc_url: "https://cdn.example.com/example.com/project/app-1.0-linux-amd64.aci.asc"
                .into(),
        }]
    );
    assert_eq!(res.pubkeys, ["https://example.com/keys.gpg"]);
    assert_eq!(
        res.tried[0].outcome,
        Outcome::FetchFailed {
            error: "404 Not Found".into()
        }
    );
    match &res.tried[1].outcome {
        Outcome::Page {
            endpoints: 0,
            pubkeys: 0,
            ignored,
        } => assert!(ignored[0].reason.contains("does not match"), "{ignored:?}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        res.tried[2].outcome,
        Outcome::Page {
            endpoints: 1,
            pubkeys: 1,
            ..
        }
    ));
}

#[test]
fn keys_are_looked_for_separately() {
    // endpoints on the deepest page, keys only at the root: the walk goes on
    // for the keys, and the root's own template does not replace the
    // endpoints already found
    let site = HashMap::from([
        (
            "https://example.com/project/app?ac-discovery=1",
            page(&[meta("ac-discovery", "example.com/project/app", TPL)]),
        ),
        (
            "https://example.com?ac-discovery=1",
            page(&[
                meta(
                    "ac-discovery",
                    "example.com",
                    "https://root.example.com/{name}.{ext}",
                ),
                meta(
                    "ac-discovery-pubkeys",
                    "example.com",
                    "https://example.com/keys.gpg",
                ),
            ]),
        ),
    ]);

    let (res, requested) = run(APP, secure(Want::ImageAndKeys), &site);
    assert_eq!(requested.len(), 3, "{requested:?}");
    assert_eq!(
        aci_urls(&res),
        ["https://cdn.example.com/example.com/project/app-1.0-linux-amd64.aci"]
    );
    assert_eq!(res.pubkeys, ["https://example.com/keys.gpg"]);

    // only the image: stops at the first page
    let (res, requested) = run(APP, secure(Want::Image), &site);
    assert_eq!(
        requested,
        ["https://example.com/project/app?ac-discovery=1"]
    );
    assert_eq!(res.image_endpoints.len(), 1);
    assert!(res.pubkeys.is_empty());

    // only keys (berth trust --prefix): no labels needed
    let (res, requested) = run("example.com/project/app", secure(Want::Keys), &site);
    assert_eq!(requested.len(), 3);
    assert!(res.image_endpoints.is_empty());
    assert_eq!(res.pubkeys, ["https://example.com/keys.gpg"]);
}

#[test]
fn stops_when_both_found_on_one_page() {
    let site = HashMap::from([(
        "https://example.com/project/app?ac-discovery=1",
        page(&[
            meta("ac-discovery", "example.com", TPL),
            meta(
                "ac-discovery-pubkeys",
                "example.com",
                "https://example.com/keys.gpg",
            ),
        ]),
    )]);
    let (res, requested) = run(APP, secure(Want::ImageAndKeys), &site);
    assert_eq!(requested.len(), 1);
    assert_eq!(res.image_endpoints.len(), 1);
    assert_eq!(res.pubkeys.len(), 1);
    assert_eq!(res.tried.len(), 1);
}

#[test]
fn http_fallback_only_when_insecure_and_only_on_failure() {
    let site = HashMap::from([
        // the app's https page fails; its http page has the template
        (
            "http://example.com/project/app?ac-discovery=1",
            page(&[
                meta(
                    "ac-discovery",
                    "example.com",
                    "http://plain.example.com/{name}.{ext}",
                ),
                meta(
                    "ac-discovery-pubkeys",
                    "example.com",
                    "http://example.com/keys.gpg",
                ),
            ]),
        ),
        // https works but is empty: no retry over http
        ("https://example.com/project?ac-discovery=1", page(&[])),
        (
            "http://example.com/project?ac-discovery=1",
            page(&[meta("ac-discovery", "example.com", TPL)]),
        ),
    ]);

    let insecure = DiscoveryOptions {
        insecure_http: true,
        want: Want::ImageAndKeys,
    };
    let (res, requested) = run(APP, insecure, &site);
    assert_eq!(
        requested,
        [
            "https://example.com/project/app?ac-discovery=1",
            "http://example.com/project/app?ac-discovery=1",
        ]
    );
    assert_eq!(
        aci_urls(&res),
        ["http://plain.example.com/example.com/project/app.aci"]
    );
    assert_eq!(res.pubkeys, ["http://example.com/keys.gpg"]);

    // secure: never an http:// URL, and http templates are not usable
    let (res, requested) = run(APP, secure(Want::ImageAndKeys), &site);
    assert!(
        requested.iter().all(|u| u.starts_with("https://")),
        "{requested:?}"
    );
    assert_eq!(requested.len(), 3);
    assert!(res.image_endpoints.is_empty());
    assert!(res.pubkeys.is_empty());

    // insecure, https page present but empty at the project level
    let mut site2 = site.clone();
    site2.remove("http://example.com/project/app?ac-discovery=1");
    let (_, requested) = run(APP, insecure, &site2);
    assert_eq!(
        requested,
        [
            "https://example.com/project/app?ac-discovery=1",
            "http://example.com/project/app?ac-discovery=1",
            "https://example.com/project?ac-discovery=1",
            "https://example.com?ac-discovery=1",
            "http://example.com?ac-discovery=1",
        ]
    );
}

#[test]
fn version_defaults_to_latest_for_discovery() {
    let site = HashMap::from([(
        "https://example.com?ac-discovery=1",
        page(&[meta(
            "ac-discovery",
            "example.com",
            "https://example.com/{name}/{version}.{ext}",
        )]),
    )]);
    let (res, _) = run("example.com/app", secure(Want::Image), &site);
    assert_eq!(
        aci_urls(&res),
        ["https://example.com/example.com/app/latest.aci"]
    );
    assert_eq!(res.reference.to_string(), "example.com/app:latest");

    // os/arch are not defaulted here: a template needing them is skipped,
    // with the reason
    let site = HashMap::from([(
        "https://example.com?ac-discovery=1",
        page(&[meta("ac-discovery", "example.com", TPL)]),
    )]);
    let (res, _) = run("example.com/app", secure(Want::Image), &site);
    assert!(res.image_endpoints.is_empty());
    let explained = res.explain();
    assert!(
        explained.contains("placeholders {os}, {arch} not filled"),
        "{explained}"
    );
    // ...and with the discovery defaults it works
    let with = r("example.com/app")
        .with_defaults("linux", "amd64")
        .unwrap();
    let res = discover(&with, secure(Want::Image), &mut |url: &str| {
        site.get(url).cloned().ok_or("404")
    });
    assert_eq!(
        aci_urls(&res),
        ["https://cdn.example.com/example.com/app-latest-linux-amd64.aci"]
    );
}

#[test]
fn nothing_found_explains_every_attempt() {
    let site = HashMap::from([(
        "https://example.com/project?ac-discovery=1",
        page(&[meta(
            "ac-discovery",
            "example.com",
            "https://example.com/{name}.aci",
        )]),
    )]);
    let (res, requested) = run(APP, secure(Want::ImageAndKeys), &site);
    assert_eq!(requested.len(), 3);
    assert!(res.image_endpoints.is_empty() && res.pubkeys.is_empty());
    assert_eq!(
        res.explain(),
        "  https://example.com/project/app?ac-discovery=1: 404 Not Found\n\
         \x20 https://example.com/project?ac-discovery=1: 0 image endpoint(s), 0 key URL(s), 1 meta tag(s) ignored\n\
         \x20   ignored <meta name=\"ac-discovery\" content=\"example.com https://example.com/{name}.aci\">: template has no {ext}: the image and signature URLs would be the same\n\
         \x20 https://example.com?ac-discovery=1: 404 Not Found\n"
    );
}

#[test]
fn state_machine_directly() {
    let mut walk = Discovery::new(&r(APP), DiscoveryOptions::default());
    assert!(!walk.is_done());
    assert_eq!(
        walk.next_url().as_deref(),
        Some("https://example.com/project/app?ac-discovery=1")
    );
    walk.feed(Err("connection refused".into()));
    assert_eq!(
        walk.next_url().as_deref(),
        Some("https://example.com/project?ac-discovery=1")
    );
    let html = page(&[
        meta("ac-discovery", "example.com", TPL),
        meta(
            "ac-discovery-pubkeys",
            "example.com",
            "https://example.com/k.gpg",
        ),
    ]);
    walk.feed(Ok(&html));
    assert!(walk.is_done());
    assert_eq!(walk.next_url(), None);
    // feeding after the end changes nothing
    walk.feed(Err("late".into()));
    let res = walk.finish();
    assert_eq!(res.tried.len(), 2);
    assert_eq!(res.image_endpoints.len(), 1);
    assert_eq!(res.pubkeys, ["https://example.com/k.gpg"]);
}

#[test]
fn result_serialises_for_json_output() {
    let site = HashMap::from([(
        "https://example.com?ac-discovery=1",
        page(&[
            meta(
                "ac-discovery",
                "example.com",
                "https://example.com/{name}.{ext}",
            ),
            meta(
                "ac-discovery",
                "example.com",
                "https://example.com/{name}-{flavor}.{ext}",
            ),
            meta(
                "ac-discovery-pubkeys",
                "example.com",
                "https://example.com/k.gpg",
            ),
        ]),
    )]);
    let (res, _) = run("example.com/app", secure(Want::ImageAndKeys), &site);
    let json = serde_json::to_value(&res).unwrap();
    let want = serde_json::json!({
        "reference": "example.com/app:latest",
        "image_endpoints": [{
            "aci_url": "https://example.com/example.com/app.aci",
            "asc_url": "https://example.com/example.com/app.aci.asc"
        }],
        "pubkeys": ["https://example.com/k.gpg"],
        "tried": [
            {"url": "https://example.com/app?ac-discovery=1",
             "outcome": {"result": "fetch-failed", "error": "404 Not Found"}},
            {"url": "https://example.com?ac-discovery=1",
             "outcome": {"result": "page", "endpoints": 1, "pubkeys": 1, "ignored": [{
                 "name": "ac-discovery",
                 "content": "example.com https://example.com/{name}-{flavor}.{ext}",
                 "reason": "placeholder {flavor} not filled: the reference has no such label"
             }]}}
        ]
    });
    assert_eq!(json, want);
    let back: DiscoveryResult = serde_json::from_value(json).unwrap();
    assert_eq!(back, res);
}
