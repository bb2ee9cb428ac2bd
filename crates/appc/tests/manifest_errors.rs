//! What a person sees when a manifest is wrong: one line per problem, each
//! naming the JSON path and the rule, every problem of the document at once,
//! and never a bare serde message. Plus property tests of the name rules
//! against an independent statement of the spec's regular expressions.

use berth_appc::types::{AcIdentifier, AcName, ImageId};
use berth_appc::{AnyManifest, ImageManifest, PodManifest};
use proptest::prelude::*;
use serde_json::json;

fn image_errors(doc: serde_json::Value) -> Vec<String> {
    match ImageManifest::from_json(doc.to_string().as_bytes()) {
        Ok(m) => panic!("accepted: {}", m.to_json()),
        Err(e) => e.lines(),
    }
}

#[test]
fn messages_name_the_field_and_the_rule() {
    let lines = image_errors(json!({
        "acKind": "ImageManifest", "acVersion": "0.8", "name": "example.com/app",
        "labels": [{"name": "version", "value": "1"}, {"name": "os", "value": "darwin"}, {"name": "arch", "value": "amd64"}],
        "app": {"user": "0", "group": "0", "ports": [{"name": "http", "protocol": "tcp", "port": 0}]}
    }));
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("acVersion: \"0.8\" is not a semantic version"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "labels[2]: arch \"amd64\" is not valid for os \"darwin\" (one of: x86_64, i386)"
    );
    assert_eq!(lines[2], "app.ports[0].port: 0 is out of range 1-65535");
}

#[test]
fn every_problem_is_reported_in_document_order() {
    let lines = image_errors(json!({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "Bad Name",
        "labels": [{"name": "name", "value": "x"}],
        "app": {"exec": [], "user": "", "environment": [{"name": "1X"}],
                "isolators": [{"name": "os/linux/cpu-shares", "value": "1024"},
                              {"name": "resource/memory", "value": {"limit": "1K"}}]},
        "dependencies": [{"imageName": "example.com/base", "imageID": "sha512-abc"}],
        "pathWhitelist": ["relative"]
    }));
    let paths: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "name",
            "labels[0]",
            "app.exec",
            "app.user",
            "app.group",
            "app.environment[0].name",
            "app.isolators[0].value",
            "app.isolators[1].value.limit",
            "dependencies[0].imageID",
            "pathWhitelist[0]"
        ],
        "{lines:#?}"
    );
    assert_eq!(lines[3], "app.user: must not be empty");
    assert_eq!(lines[4], "app.group: is required");
    assert_eq!(
        lines[6],
        "app.isolators[0].value: expected an integer, found a string"
    );
}

#[test]
fn kind_problems() {
    let missing = AnyManifest::from_json(br#"{"acVersion": "0.8.11"}"#).unwrap_err();
    assert_eq!(missing.lines(), ["acKind: is required"]);
    let unknown = AnyManifest::from_json(br#"{"acKind": "Pod"}"#).unwrap_err();
    assert_eq!(
        unknown.lines(),
        ["acKind: \"Pod\" is not a known kind (expected \"ImageManifest\" or \"PodManifest\")"]
    );
    let wrong = ImageManifest::from_json(
        br#"{"acKind": "PodManifest", "acVersion": "0.8.11", "name": "a"}"#,
    )
    .unwrap_err();
    assert_eq!(
        wrong.lines(),
        ["acKind: expected \"ImageManifest\", found \"PodManifest\""]
    );
    let pod =
        PodManifest::from_json(br#"{"acKind": 7, "acVersion": "0.8.11", "apps": []}"#).unwrap_err();
    assert_eq!(pod.lines(), ["acKind: expected a string, found a number"]);
}

#[test]
fn json_problems_are_one_clear_line() {
    let e = AnyManifest::from_json(b"{\"acKind\": \"ImageManifest\",}").unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert!(e.to_string().starts_with("not valid JSON: "), "{e}");
    let e = AnyManifest::from_json(b"\"ImageManifest\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "a manifest must be a JSON object, found a string"
    );
}

#[test]
fn pod_problems() {
    let doc = json!({
        "acKind": "PodManifest", "acVersion": "0.8.11",
        "apps": [{"name": "web", "image": {"id": "sha256-00"}, "mounts": [{"volume": "data", "path": "/d"}]},
                 {"name": "web", "image": {"id": format!("sha512-{}", "0".repeat(128))}}],
        "volumes": [{"name": "other", "kind": "host", "source": "/srv", "uid": 5}],
        "ports": [{"name": "http", "hostPort": 8080, "hostIP": "::1"}]
    });
    let e = PodManifest::from_json(doc.to_string().as_bytes()).unwrap_err();
    let lines = e.lines();
    assert!(
        lines[0].starts_with(
            "apps[0].image.id: \"sha256-00\" is not a valid image ID: hash algorithm \"sha256\""
        ),
        "{lines:#?}"
    );
    assert_eq!(
        lines[1],
        "apps[1].name: duplicate app \"web\" (first at [0])"
    );
    assert_eq!(
        lines[2],
        "volumes[0].uid: is only allowed for empty volumes"
    );
    assert_eq!(
        lines[3],
        "ports[0].hostIP: \"::1\" is not an IPv4 address in dotted-quad form"
    );
    assert_eq!(e.problems.len(), 4, "{lines:#?}");
    assert!(e.mentions("apps[1]") && e.mentions("ports") && !e.mentions("apps[2]"));
    assert!(e.to_string().ends_with("(and 3 more problems)"));
}

// ---- the name rules against the spec's regular expressions, stated again
// independently: `^[a-z0-9]+([SEP][a-z0-9]+)*$` with consecutive separators
// tolerated (as the reference and the spec's own examples do).

fn spec_rule(s: &str, seps: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.chars().all(|c| alnum(c) || seps.contains(c))
        && s.chars().next().is_some_and(alnum)
        && s.chars().last().is_some_and(alnum)
}

proptest! {
    #[test]
    fn ac_name_matches_the_rule(s in "[a-zA-Z0-9._~/ -]{0,12}") {
        prop_assert_eq!(AcName::try_from(s.as_str()).is_ok(), spec_rule(&s, "-"));
    }

    #[test]
    fn ac_identifier_matches_the_rule(s in "[a-zA-Z0-9._~/ :-]{0,12}") {
        prop_assert_eq!(AcIdentifier::try_from(s.as_str()).is_ok(), spec_rule(&s, "-._~/"));
    }

    #[test]
    fn image_ids_round_trip(bytes in prop::collection::vec(any::<u8>(), 64)) {
        let id = ImageId::from_sha512(&bytes);
        let parsed: ImageId = id.as_str().parse().unwrap();
        prop_assert_eq!(&parsed, &id);
        for n in 1..id.as_str().len() {
            prop_assert!(ImageId::is_prefix(&id.as_str()[..n]));
        }
    }

    #[test]
    fn any_json_never_panics(s in ".{0,40}") {
        let _ = AnyManifest::from_json(s.as_bytes());
        let _ = berth_appc::lenient::AnyManifest::from_json(s.as_bytes());
    }
}
