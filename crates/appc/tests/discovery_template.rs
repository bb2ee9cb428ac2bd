//! Template rendering and per-page evaluation: labels, unfilled
//! placeholders, prefix matching, schemes.

use berth_appc::discovery::{evaluate_page, render_template, Endpoint, TemplateError};
use berth_appc::reference::ImageReference;

fn r(s: &str) -> ImageReference {
    s.parse().unwrap()
}

/// Rendered URL, or the placeholders reported unfilled.
type Want = Result<&'static str, &'static [&'static str]>;

#[test]
fn rendering() {
    let full = "example.com/app:1.0,os=linux,arch=amd64,channel=beta";
    // (template, reference, ext, rendered or unfilled placeholders)
    let cases: &[(&str, &str, &str, Want)] = &[
        (
            "https://storage.example.com/{os}/{arch}/{name}-{version}.{ext}",
            full,
            "aci",
            Ok("https://storage.example.com/linux/amd64/example.com/app-1.0.aci"),
        ),
        (
            "https://storage.example.com/{os}/{arch}/{name}-{version}.{ext}",
            full,
            "aci.asc",
            Ok("https://storage.example.com/linux/amd64/example.com/app-1.0.aci.asc"),
        ),
        // custom label, and a placeholder used twice
        (
            "https://example.com/{channel}/{version}/app-{version}.{ext}",
            full,
            "aci",
            Ok("https://example.com/beta/1.0/app-1.0.aci"),
        ),
        // {ext} mid-path, as quay.io's template had it
        (
            "https://quay.io/c1/aci/{name}/{version}/{ext}/{os}/{arch}/",
            full,
            "aci.asc",
            Ok("https://quay.io/c1/aci/example.com/app/1.0/aci.asc/linux/amd64/"),
        ),
        // unfilled: every missing placeholder is named, once each
        (
            "https://example.com/{name}-{version}-{os}-{arch}-{os}.{ext}",
            "example.com/app:1.0",
            "aci",
            Err(&["os", "arch"]),
        ),
        (
            "https://example.com/{name}-{flavor}.{ext}",
            full,
            "aci",
            Err(&["flavor"]),
        ),
        // placeholders are case-sensitive, like label names
        (
            "https://example.com/{Name}.{ext}",
            full,
            "aci",
            Err(&["Name"]),
        ),
        ("https://example.com/{}.{ext}", full, "aci", Err(&[""])),
        // a brace with no closing brace is literal; "{{name}" keeps one "{"
        (
            "https://example.com/{name}.{ext}#{",
            full,
            "aci",
            Ok("https://example.com/example.com/app.aci#{"),
        ),
        (
            "https://example.com/{{name}.{ext}",
            full,
            "aci",
            Ok("https://example.com/{example.com/app.aci"),
        ),
        // values are put in once: a value that looks like a placeholder
        // is not expanded again; URL-breaking characters are encoded
        (
            "https://example.com/{name}-{channel}.{ext}",
            "example.com/app,channel={version}",
            "aci",
            Ok("https://example.com/example.com/app-%7Bversion%7D.aci"),
        ),
        (
            "https://example.com/{name}-{version}.{ext}",
            "example.com/app:1.0 beta#2?x%",
            "aci",
            Ok("https://example.com/example.com/app-1.0%20beta%232%3Fx%25.aci"),
        ),
        (
            "https://example.com/{name}-{version}.{ext}",
            "example.com/app:1.0+build.5",
            "aci",
            Ok("https://example.com/example.com/app-1.0+build.5.aci"),
        ),
        // {ext} is always the extension, even with a label of that name
        (
            "https://example.com/{name}.{ext}",
            "example.com/app,ext=zip",
            "aci",
            Ok("https://example.com/example.com/app.aci"),
        ),
    ];
    for (tpl, reference, ext, want) in cases {
        let got = render_template(tpl, &r(reference), ext);
        match want {
            Ok(url) => assert_eq!(got.as_deref(), Ok(*url), "{tpl} for {reference}"),
            Err(names) => {
                let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
                assert_eq!(
                    got,
                    Err(TemplateError::Unfilled {
                        placeholders: names
                    }),
                    "{tpl} for {reference}"
                );
            }
        }
    }
}

#[test]
fn endpoints() {
    let ep = Endpoint::render(
        "https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}",
        &r("example.com/reduce-worker:1.0.0,os=linux,arch=amd64"),
    )
    .unwrap();
    // the spec's own example
    assert_eq!(
        ep.aci_url,
        "https://storage.example.com/example.com/reduce-worker-1.0.0-linux-amd64.aci"
    );
    assert_eq!(
        ep.asc_url,
        "https://storage.example.com/example.com/reduce-worker-1.0.0-linux-amd64.aci.asc"
    );
    assert!(ep.is_https());

    assert_eq!(
        Endpoint::render("https://example.com/{name}.aci", &r("example.com/app")),
        Err(TemplateError::NoExt)
    );
    let err = Endpoint::render(
        "https://example.com/{name}-{os}.{ext}",
        &r("example.com/app"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "placeholder {os} not filled: the reference has no such label"
    );
    let err = Endpoint::render(
        "https://example.com/{name}-{os}-{arch}.{ext}",
        &r("example.com/app"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "placeholders {os}, {arch} not filled: the reference has no such label"
    );
}

const PREFIXES_PAGE: &str = r#"<html><head>
<meta name="ac-discovery" content="example.com/ap https://short.example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com/app https://exact.example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com/application https://longer.example.com/{name}.{ext}">
<meta name="ac-discovery" content="other.example.org https://other.example.org/{name}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/keys.gpg">
<meta name="ac-discovery-pubkeys" content="other.example.org https://other.example.org/keys.gpg">
</head></html>"#;

#[test]
fn prefix_is_a_plain_string_prefix() {
    // As Go's strings.HasPrefix: "example.com/ap" matches "example.com/app"
    // (no path-segment boundary is required); a longer prefix does not.
    let found = evaluate_page(PREFIXES_PAGE, &r("example.com/app"), false);
    let urls: Vec<&str> = found.endpoints.iter().map(|e| e.aci_url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://short.example.com/example.com/app.aci",
            "https://exact.example.com/example.com/app.aci",
        ]
    );
    assert_eq!(found.pubkeys, ["https://example.com/keys.gpg"]);
    let reasons: Vec<&str> = found.ignored.iter().map(|i| i.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "prefix \"example.com/application\" does not match \"example.com/app\"",
            "prefix \"other.example.org\" does not match \"example.com/app\"",
            "prefix \"other.example.org\" does not match \"example.com/app\"",
        ]
    );

    let found = evaluate_page(PREFIXES_PAGE, &r("example.com/apricot"), false);
    assert_eq!(found.endpoints.len(), 1);
    assert_eq!(
        found.endpoints[0].aci_url,
        "https://short.example.com/example.com/apricot.aci"
    );
}

#[test]
fn schemes_ordering_and_duplicates() {
    let page = r#"
<meta name="ac-discovery" content="example.com http://plain.example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com hdfs://storage.example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com https://secure.example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com https://secure.example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com HTTPS://upper.example.com/{name}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com http://example.com/keys.gpg">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/keys.gpg">
<meta name="ac-discovery-pubkeys" content="example.com ftp://example.com/keys.gpg">
"#;
    let app = r("example.com/app");

    let secure = evaluate_page(page, &app, false);
    let urls: Vec<&str> = secure
        .endpoints
        .iter()
        .map(|e| e.aci_url.as_str())
        .collect();
    assert_eq!(
        urls,
        [
            "https://secure.example.com/example.com/app.aci",
            "HTTPS://upper.example.com/example.com/app.aci",
        ]
    );
    assert_eq!(secure.pubkeys, ["https://example.com/keys.gpg"]);
    let reasons: Vec<&str> = secure.ignored.iter().map(|i| i.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert!(reasons[0].contains("insecure HTTP"), "{}", reasons[0]);
    assert!(
        reasons[1].contains("only https:// and http://"),
        "{}",
        reasons[1]
    );
    assert!(reasons[2].contains("insecure HTTP"), "{}", reasons[2]);
    assert!(
        reasons[3].contains("only https:// and http://"),
        "{}",
        reasons[3]
    );

    // insecure: http is usable, but https endpoints come first
    let insecure = evaluate_page(page, &app, true);
    let urls: Vec<&str> = insecure
        .endpoints
        .iter()
        .map(|e| e.aci_url.as_str())
        .collect();
    assert_eq!(
        urls,
        [
            "https://secure.example.com/example.com/app.aci",
            "HTTPS://upper.example.com/example.com/app.aci",
            "http://plain.example.com/example.com/app.aci",
        ]
    );
    assert!(!insecure.endpoints[2].is_https());
    assert_eq!(
        insecure.pubkeys,
        [
            "http://example.com/keys.gpg",
            "https://example.com/keys.gpg"
        ]
    );
}

#[test]
fn unusable_templates_are_reported() {
    let page = r#"
<meta name="ac-discovery" content="example.com https://example.com/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery" content="example.com https://example.com/{name}.aci">
"#;
    let found = evaluate_page(page, &r("example.com/app:1.0"), false);
    assert!(found.endpoints.is_empty());
    let reasons: Vec<String> = found.ignored.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        reasons,
        [
            "<meta name=\"ac-discovery\" content=\"example.com https://example.com/{name}-{version}-{os}-{arch}.{ext}\">: placeholders {os}, {arch} not filled: the reference has no such label",
            "<meta name=\"ac-discovery\" content=\"example.com https://example.com/{name}.aci\">: template has no {ext}: the image and signature URLs would be the same",
        ]
    );
}
