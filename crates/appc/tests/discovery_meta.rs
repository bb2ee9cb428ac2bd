//! Reading ac-discovery meta tags out of real-world HTML.

use berth_appc::discovery::{parse_meta_tags, MetaKind, MetaTag};

fn tag(kind: MetaKind, prefix: &str, url: &str) -> MetaTag {
    MetaTag {
        kind,
        prefix: prefix.to_owned(),
        url: url.to_owned(),
    }
}

fn d(prefix: &str, url: &str) -> MetaTag {
    tag(MetaKind::Discovery, prefix, url)
}

fn k(prefix: &str, url: &str) -> MetaTag {
    tag(MetaKind::Pubkeys, prefix, url)
}

#[test]
fn pages() {
    let cases: Vec<(&str, &str, Vec<MetaTag>, usize)> = vec![
        (
            "a tidy page",
            r#"<!DOCTYPE html>
<html>
<head>
  <title>example.com images</title>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width">
  <meta name="ac-discovery" content="example.com https://storage.example.com/{os}/{arch}/{name}-{version}.{ext}">
  <meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
</head>
<body><h1>Images</h1></body>
</html>"#,
            vec![
                d(
                    "example.com",
                    "https://storage.example.com/{os}/{arch}/{name}-{version}.{ext}",
                ),
                k("example.com", "https://example.com/pubkeys.gpg"),
            ],
            0,
        ),
        (
            "content before name, upper-case tag and attribute names",
            r#"<HTML><HEAD>
<META CONTENT="example.com https://example.com/{name}.{ext}" NAME="ac-discovery">
<Meta Content='example.com https://example.com/keys.asc' Name='AC-Discovery-Pubkeys' />
</HEAD></HTML>"#,
            vec![
                d("example.com", "https://example.com/{name}.{ext}"),
                k("example.com", "https://example.com/keys.asc"),
            ],
            0,
        ),
        (
            "unquoted name; content with extra whitespace, tabs and newlines",
            "<meta name=ac-discovery content=\"  example.com \t\n https://example.com/{name}-{version}.{ext}  \">\n\
             <meta content=\"example.com\thttps://example.com/k.gpg\" name=ac-discovery-pubkeys>",
            vec![
                d("example.com", "https://example.com/{name}-{version}.{ext}"),
                k("example.com", "https://example.com/k.gpg"),
            ],
            0,
        ),
        (
            "several prefixes, as quay.io and coreos.com served them",
            r#"<html><head>
<meta name="ac-discovery" content="quay.io https://quay.io/c1/aci/{name}/{version}/{ext}/{os}/{arch}/">
<meta name="ac-discovery" content="coreos.com/etcd https://github.com/coreos/etcd/releases/download/{version}/etcd-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery" content="coreos.com/etcd hdfs://mirror.example.com/etcd-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="quay.io https://quay.io/aci-signing-key">
<meta name="ac-discovery-pubkeys" content="coreos.com/etcd https://coreos.com/dist/pubkeys/app-signing-pubkey.gpg">
</head></html>"#,
            vec![
                d("quay.io", "https://quay.io/c1/aci/{name}/{version}/{ext}/{os}/{arch}/"),
                d(
                    "coreos.com/etcd",
                    "https://github.com/coreos/etcd/releases/download/{version}/etcd-{version}-{os}-{arch}.{ext}",
                ),
                d(
                    "coreos.com/etcd",
                    "hdfs://mirror.example.com/etcd-{version}-{os}-{arch}.{ext}",
                ),
                k("quay.io", "https://quay.io/aci-signing-key"),
                k(
                    "coreos.com/etcd",
                    "https://coreos.com/dist/pubkeys/app-signing-pubkey.gpg",
                ),
            ],
            0,
        ),
        (
            "broken markup: no head, unclosed tags, stray <, comments, metas in body",
            r#"<html><body><div><p>a < b and <<weird
<!-- <meta name="ac-discovery" content="example.com https://commented.example.com/{name}.{ext}"> -->
<meta name="ac-discovery" content="example.com https://a.example.com/{name}.{ext}"
<p>unclosed <b>bold
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/k.gpg">
</div></span></html></html>
<meta name="ac-discovery" content="example.com https://late.example.com/{name}.{ext}">"#,
            // the second meta's missing ">" makes "<p" one of its attributes:
            // browsers do the same; the tag itself still counts
            vec![
                d("example.com", "https://a.example.com/{name}.{ext}"),
                k("example.com", "https://example.com/k.gpg"),
                d("example.com", "https://late.example.com/{name}.{ext}"),
            ],
            0,
        ),
        (
            "character references are decoded in attribute values",
            r#"<meta name="ac-discovery" content="example.com https://example.com/get?n={name}&amp;v={version}&amp;e={ext}">"#,
            vec![d(
                "example.com",
                "https://example.com/get?n={name}&v={version}&e={ext}",
            )],
            0,
        ),
        (
            "text of script, style and title is not markup",
            r#"<html><head><title><meta name="ac-discovery" content="example.com https://title.example.com/{name}.{ext}"></title>
<script>document.write('<meta name="ac-discovery" content="example.com https://script.example.com/{name}.{ext}">'); if (a<b) {}</script>
<style>/* <meta name="ac-discovery" content="example.com https://style.example.com/{name}.{ext}"> */</style>
<meta name="ac-discovery" content="example.com https://real.example.com/{name}.{ext}">
</head></html>"#,
            vec![d("example.com", "https://real.example.com/{name}.{ext}")],
            0,
        ),
        (
            "duplicate attribute: the first wins (WHATWG)",
            r#"<meta name="ac-discovery" content="example.com https://first.example.com/{name}.{ext}" content="example.com https://second.example.com/{name}.{ext}">"#,
            vec![d("example.com", "https://first.example.com/{name}.{ext}")],
            0,
        ),
        (
            "malformed ac- tags are ignored with a reason; others silently",
            r#"<meta name="ac-discovery" content="https://example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com https://example.com/{name}.{ext} https://other.example.com/{name}.{ext}">
<meta name="ac-discovery" content="">
<meta name="ac-discovery">
<meta name="ac-discovery-pubkey" content="example.com https://example.com/k.gpg">
<meta name="description" content="not ours">
<meta content="example.com https://nameless.example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com https://ok.example.com/{name}.{ext}">"#,
            vec![d("example.com", "https://ok.example.com/{name}.{ext}")],
            5,
        ),
        ("not HTML at all", "404 page not found\n", vec![], 0),
        ("empty", "", vec![], 0),
    ];
    for (what, html, want, ignored) in cases {
        let got = parse_meta_tags(html);
        assert_eq!(got.tags, want, "{what}");
        assert_eq!(got.ignored.len(), ignored, "{what}: {:#?}", got.ignored);
    }
}

#[test]
fn ignored_reasons_name_the_problem() {
    let html = r#"<meta name="ac-discovery" content="https://example.com/{name}.{ext}">
<meta name="ac-discovery-pubkeys" content="a b c">
<meta name="ac-discovery">
<meta name="ac-discovery-pubkey" content="example.com https://example.com/k.gpg">"#;
    let got = parse_meta_tags(html);
    let reasons: Vec<String> = got.ignored.iter().map(ToString::to_string).collect();
    let want = [
        "content must be two space-separated fields, PREFIX URL-TEMPLATE; it has 1",
        "content must be two space-separated fields, PREFIX URL; it has 3",
        "no content attribute",
        "unknown ac- meta name",
    ];
    assert_eq!(reasons.len(), want.len(), "{reasons:#?}");
    for (r, w) in reasons.iter().zip(want) {
        assert!(r.contains(w), "{r:?} lacks {w:?}");
    }
    // the tag is shown as written
    assert!(
        reasons[3].starts_with("<meta name=\"ac-discovery-pubkey\""),
        "{}",
        reasons[3]
    );
}
