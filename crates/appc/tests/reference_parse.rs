//! Image references as typed on the command line: parsing, canonical
//! printing, defaults, the host arch mapping and argument classification.

use berth_appc::reference::{
    host_os_arch, ImageArg, ImageReference, OciTransport, ReferenceError, RustTarget,
};
use berth_appc::types::{AcIdentifier, Label, Labels};
use proptest::prelude::*;

fn r(s: &str) -> ImageReference {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn labels_of(r: &ImageReference) -> Vec<(String, String)> {
    r.labels()
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Label (name, value) pairs.
type Pairs = &'static [(&'static str, &'static str)];

#[test]
fn valid_references() {
    // (input, name, labels sorted by name, canonical form)
    let cases: &[(&str, &str, Pairs, &str)] = &[
        ("example.com/app", "example.com/app", &[], "example.com/app"),
        (
            "example.com/app:1.0",
            "example.com/app",
            &[("version", "1.0")],
            "example.com/app:1.0",
        ),
        (
            "example.com/app,version=1.0,os=linux,arch=amd64",
            "example.com/app",
            &[("arch", "amd64"), ("os", "linux"), ("version", "1.0")],
            "example.com/app:1.0,arch=amd64,os=linux",
        ),
        (
            "example.com/app:1.0,arch=aarch64",
            "example.com/app",
            &[("arch", "aarch64"), ("version", "1.0")],
            "example.com/app:1.0,arch=aarch64",
        ),
        // arch alone is meaningless but not wrong (spec types.md), so even
        // Go's spelling passes parsing; with_os_arch catches it.
        (
            "example.com/app:1.0,arch=arm64",
            "example.com/app",
            &[("arch", "arm64"), ("version", "1.0")],
            "example.com/app:1.0,arch=arm64",
        ),
        // values may contain "=" (split at the first one) and Go's specials
        (
            "example.com/app:1.2.3,special=!*'();@&+$/?#[],channel=beta",
            "example.com/app",
            &[
                ("channel", "beta"),
                ("special", "!*'();@&+$/?#[]"),
                ("version", "1.2.3"),
            ],
            "example.com/app:1.2.3,channel=beta,special=!*'();@&+$/?#[]",
        ),
        (
            "example.com/app,expr=a=b",
            "example.com/app",
            &[("expr", "a=b")],
            "example.com/app,expr=a=b",
        ),
        (
            "example.com/~user/app_v1,channel=alpha",
            "example.com/~user/app_v1",
            &[("channel", "alpha")],
            "example.com/~user/app_v1,channel=alpha",
        ),
        (
            "busybox:1=2",
            "busybox",
            &[("version", "1=2")],
            "busybox:1=2",
        ),
        (
            "coreos.com/etcd,os=freebsd,arch=arm",
            "coreos.com/etcd",
            &[("arch", "arm"), ("os", "freebsd")],
            "coreos.com/etcd,arch=arm,os=freebsd",
        ),
        (
            "example.com/app,version=v2,example.com/tier=db",
            "example.com/app",
            &[("example.com/tier", "db"), ("version", "v2")],
            "example.com/app:v2,example.com/tier=db",
        ),
    ];
    for (input, name, labels, canonical) in cases {
        let got = r(input);
        assert_eq!(got.name().as_str(), *name, "{input}");
        let want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(labels_of(&got), want, "{input}");
        assert_eq!(got.to_string(), *canonical, "{input}");
        // the canonical form parses back to the same value
        assert_eq!(r(canonical), got, "{input}");
    }
}

#[test]
fn accessors() {
    let x = r("example.com/app:1.0,os=linux,arch=amd64,channel=beta");
    assert_eq!(x.version(), Some("1.0"));
    assert_eq!(x.os(), Some("linux"));
    assert_eq!(x.arch(), Some("amd64"));
    assert_eq!(x.label("channel"), Some("beta"));
    assert_eq!(x.label("missing"), None);
    let l = x.to_labels();
    assert_eq!(l.len(), 4);
    assert_eq!(l.get("os"), Some("linux"));
    assert_eq!(r("example.com/app").version(), None);
}

#[test]
fn invalid_references() {
    type Check = fn(&ReferenceError) -> bool;
    // (input, expected error, a fragment its message must contain)
    let cases: &[(&str, Check, &str)] = &[
        ("", |e| matches!(e, ReferenceError::Empty), "empty"),
        (
            "Example.com/app",
            |e| matches!(e, ReferenceError::BadName { name, .. } if name == "Example.com/app"),
            "bad image name \"Example.com/app\"",
        ),
        (
            "not an app name",
            |e| matches!(e, ReferenceError::BadName { .. }),
            "not allowed",
        ),
        (
            "example.com/app/",
            |e| matches!(e, ReferenceError::BadName { .. }),
            "must start and end",
        ),
        (
            ":1.0",
            |e| matches!(e, ReferenceError::BadName { .. }),
            "empty",
        ),
        (
            "example.com/app,channel",
            |e| matches!(e, ReferenceError::LabelWithoutValue { part } if part == "channel"),
            "has no \"=\"",
        ),
        (
            "example.com/app,os=linux,",
            |e| matches!(e, ReferenceError::EmptyLabel),
            "empty label",
        ),
        (
            "example.com/app,,os=linux",
            |e| matches!(e, ReferenceError::EmptyLabel),
            "empty label",
        ),
        (
            "example.com/app,channel=",
            |e| matches!(e, ReferenceError::EmptyValue { name } if name == "channel"),
            "\"channel\" has an empty value",
        ),
        (
            "example.com/app:",
            |e| matches!(e, ReferenceError::EmptyValue { name } if name == "version"),
            "empty value",
        ),
        (
            "foo.com/bar,channel=alpha,dog=woof,channel=beta",
            |e| matches!(e, ReferenceError::DuplicateLabel { name } if name == "channel"),
            "duplicate label \"channel\"",
        ),
        (
            "example.com/app:3.2.1,version=1.2.3",
            |e| {
                matches!(e, ReferenceError::VersionTwice { colon, label }
                    if colon == "3.2.1" && label == "1.2.3")
            },
            "version given twice",
        ),
        (
            "example.com/app,channel=beta:1.2.3",
            |e| matches!(e, ReferenceError::MisplacedColon),
            "right after the name",
        ),
        (
            "example.com/app:3.2.1,channel=beta:1.2.3",
            |e| matches!(e, ReferenceError::MisplacedColon),
            "only once",
        ),
        (
            "example.com/app:1:2",
            |e| matches!(e, ReferenceError::MisplacedColon),
            "only once",
        ),
        (
            "example.com/app,Channel=beta",
            |e| matches!(e, ReferenceError::BadLabelName { name, .. } if name == "Channel"),
            "invalid label name \"Channel\"",
        ),
        (
            "example.com/app,=beta",
            |e| matches!(e, ReferenceError::BadLabelName { .. }),
            "invalid label name",
        ),
        (
            "example.com/app,name=other",
            |e| matches!(e, ReferenceError::NameLabel),
            "\"name\" cannot be a label",
        ),
        (
            "example.com/app,os=windows",
            |e| matches!(e, ReferenceError::OsArch { .. }),
            "os \"windows\" is not supported (one of: linux, freebsd, darwin)",
        ),
        (
            "example.com/app,os=linux,arch=arm64",
            |e| matches!(e, ReferenceError::OsArch { hint: Some(_), .. }),
            "appc spells this arch \"aarch64\"",
        ),
        (
            "example.com/app,os=linux,arch=x86_64",
            |e| matches!(e, ReferenceError::OsArch { .. }),
            "arch \"x86_64\" is not valid for os \"linux\"",
        ),
        (
            "example.com/app,os=macos",
            |e| matches!(e, ReferenceError::OsArch { .. }),
            "appc spells this os \"darwin\"",
        ),
        (
            "example.com/app,note=a\tb",
            |e| matches!(e, ReferenceError::BadValue { name, .. } if name == "note"),
            "control characters",
        ),
    ];
    for (input, check, fragment) in cases {
        let err = input
            .parse::<ImageReference>()
            .expect_err(&format!("{input:?} should be refused"));
        assert!(check(&err), "{input:?}: unexpected error {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(fragment),
            "{input:?}: message {msg:?} lacks {fragment:?}"
        );
    }
}

fn id(s: &str) -> AcIdentifier {
    s.parse().unwrap()
}

#[test]
fn new_checks_like_parse() {
    let ok = ImageReference::new(
        id("example.com/app"),
        [
            (id("version"), "1.0".to_owned()),
            (id("os"), "linux".to_owned()),
        ],
    )
    .unwrap();
    assert_eq!(ok.to_string(), "example.com/app:1.0,os=linux");

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("channel", "a,b")], "\",\" separates labels"),
        (vec![("channel", "a:b")], "may only follow the name"),
        (vec![("channel", "")], "empty value"),
        (vec![("name", "x")], "cannot be a label"),
        (vec![("a", "1"), ("a", "2")], "duplicate label"),
        (vec![("os", "linux"), ("arch", "arm64")], "aarch64"),
        // Found by the round-trip property: "a://" would print and then
        // read back as a URL.
        (vec![("version", "//")], "would read as a URL"),
    ];
    for (labels, fragment) in cases {
        let err = ImageReference::new(
            id("example.com/app"),
            labels.iter().map(|(k, v)| (id(k), v.to_string())),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(fragment), "{labels:?}: {err}");
    }

    let base = r("example.com/app");
    assert_eq!(
        base.with_label(id("channel"), "beta").unwrap().to_string(),
        "example.com/app,channel=beta"
    );
    assert!(base.with_label(id("channel"), "a,b").is_err());
    assert_eq!(
        ImageReference::from_name(id("example.com/app")),
        base,
        "from_name is the bare name"
    );
}

#[test]
fn defaults_for_discovery_and_store() {
    // (input, os, arch, with_os_arch, with_defaults)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "example.com/app",
            "linux",
            "amd64",
            "example.com/app,arch=amd64,os=linux",
            "example.com/app:latest,arch=amd64,os=linux",
        ),
        (
            "example.com/app:1.0",
            "linux",
            "amd64",
            "example.com/app:1.0,arch=amd64,os=linux",
            "example.com/app:1.0,arch=amd64,os=linux",
        ),
        // what the user gave wins over the host's
        (
            "example.com/app,arch=armv7l",
            "linux",
            "amd64",
            "example.com/app,arch=armv7l,os=linux",
            "example.com/app:latest,arch=armv7l,os=linux",
        ),
        (
            "example.com/app,os=freebsd,arch=arm",
            "linux",
            "amd64",
            "example.com/app,arch=arm,os=freebsd",
            "example.com/app:latest,arch=arm,os=freebsd",
        ),
    ];
    for (input, os, arch, store, disc) in cases {
        let x = r(input);
        assert_eq!(
            x.with_os_arch(os, arch).unwrap().to_string(),
            *store,
            "{input}"
        );
        assert_eq!(
            x.with_defaults(os, arch).unwrap().to_string(),
            *disc,
            "{input}"
        );
    }

    // the user's Go spelling meets the host's os: refused, with the hint
    let err = r("example.com/app:1.0,arch=arm64")
        .with_defaults("linux", "amd64")
        .unwrap_err();
    assert!(matches!(err, ReferenceError::OsArch { .. }), "{err:?}");
    assert!(err.to_string().contains("\"aarch64\""), "{err}");
}

#[test]
fn matching_against_image_labels() {
    let image_labels = Labels::new(vec![
        Label::new(id("version"), "1.0"),
        Label::new(id("os"), "linux"),
        Label::new(id("arch"), "amd64"),
    ])
    .unwrap();
    let name = id("example.com/app");
    assert!(r("example.com/app").matches(&name, &image_labels));
    assert!(r("example.com/app:1.0").matches(&name, &image_labels));
    assert!(r("example.com/app:1.0,os=linux").matches(&name, &image_labels));
    assert!(!r("example.com/app:2.0").matches(&name, &image_labels));
    assert!(!r("example.com/app,channel=beta").matches(&name, &image_labels));
    assert!(!r("example.com/other").matches(&name, &image_labels));
}

#[test]
fn rust_targets_map_to_appc_spellings() {
    let t = |os, arch, big_endian, armv7| RustTarget {
        os,
        arch,
        big_endian,
        armv7,
    };
    let cases = [
        (t("linux", "x86_64", false, false), Some(("linux", "amd64"))),
        (t("linux", "x86", false, false), Some(("linux", "i386"))),
        (
            t("linux", "aarch64", false, false),
            Some(("linux", "aarch64")),
        ),
        (
            t("linux", "aarch64", true, false),
            Some(("linux", "aarch64_be")),
        ),
        (t("linux", "arm", false, true), Some(("linux", "armv7l"))),
        (t("linux", "arm", false, false), Some(("linux", "armv6l"))),
        (t("linux", "arm", true, true), Some(("linux", "armv7b"))),
        (
            t("linux", "powerpc64", false, false),
            Some(("linux", "ppc64le")),
        ),
        (
            t("linux", "powerpc64", true, false),
            Some(("linux", "ppc64")),
        ),
        (t("linux", "s390x", true, false), Some(("linux", "s390x"))),
        (
            t("freebsd", "x86_64", false, false),
            Some(("freebsd", "amd64")),
        ),
        (t("freebsd", "x86", false, false), Some(("freebsd", "i386"))),
        (t("freebsd", "arm", false, true), Some(("freebsd", "arm"))),
        (
            t("macos", "x86_64", false, false),
            Some(("darwin", "x86_64")),
        ),
        (t("macos", "aarch64", false, false), None),
        (t("linux", "riscv64", false, false), None),
        (t("windows", "x86_64", false, false), None),
    ];
    for (target, want) in cases {
        let got = target.to_appc();
        assert_eq!(got, want, "{target:?}");
        // every mapped pair is one the spec accepts
        if let Some((os, arch)) = got {
            r("example.com/app")
                .with_os_arch(os, arch)
                .unwrap_or_else(|e| panic!("{target:?}: {e}"));
        }
    }
}

#[test]
fn host_mapping() {
    let host = host_os_arch();
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert_eq!(host, Ok(("linux", "amd64")));
    }
    if cfg!(all(
        target_os = "linux",
        target_arch = "aarch64",
        target_endian = "little"
    )) {
        assert_eq!(host, Ok(("linux", "aarch64")));
    }
    if let Ok((os, arch)) = host {
        let d = r("example.com/app").with_host_defaults().unwrap();
        assert_eq!(d.os(), Some(os));
        assert_eq!(d.arch(), Some(arch));
        assert_eq!(d.version(), Some("latest"));
    }
}

#[test]
fn serde_as_string() {
    let x = r("example.com/app:1.0,os=linux,arch=amd64");
    let json = serde_json::to_string(&x).unwrap();
    assert_eq!(json, "\"example.com/app:1.0,arch=amd64,os=linux\"");
    let back: ImageReference = serde_json::from_str(&json).unwrap();
    assert_eq!(back, x);
    let err = serde_json::from_str::<ImageReference>("\"example.com/app,channel\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no \"=\""), "{err}");
    assert_eq!(
        ImageReference::try_from("example.com/app:1")
            .unwrap()
            .version(),
        Some("1")
    );
    assert_eq!(
        ImageReference::try_from("example.com/app".to_owned()).unwrap(),
        r("example.com/app")
    );
}

#[test]
fn classify_image_arguments() {
    let full = format!("sha512-{}", "ab".repeat(64));
    let name = |s: &str| ImageArg::Name(r(s));
    let path = |s: &str| ImageArg::Path(s.to_owned());
    let oci = |transport, location: &str| ImageArg::OciLayout {
        transport,
        location: location.to_owned(),
    };
    let cases: Vec<(&str, ImageArg)> = vec![
        // 1. image IDs, whole or prefix
        ("sha512-abc123", ImageArg::ImageId("sha512-abc123".into())),
        (full.as_str(), ImageArg::ImageId(full.clone())),
        // 2. URLs and transports; a URL ending in .aci is still a URL
        (
            "https://example.com/app.aci",
            ImageArg::Url("https://example.com/app.aci".into()),
        ),
        (
            "HTTP://example.com/app-1.0.aci",
            ImageArg::Url("HTTP://example.com/app-1.0.aci".into()),
        ),
        (
            "docker://busybox:latest",
            ImageArg::DockerRef("busybox:latest".into()),
        ),
        (
            "docker://registry.example.com:5000/team/app",
            ImageArg::DockerRef("registry.example.com:5000/team/app".into()),
        ),
        ("file:///srv/images/app.aci", path("/srv/images/app.aci")),
        ("oci:./layout:v1", oci(OciTransport::Oci, "./layout:v1")),
        (
            "oci-archive:app.tar",
            oci(OciTransport::OciArchive, "app.tar"),
        ),
        (
            "docker-archive:/tmp/saved.tar:app:1",
            oci(OciTransport::DockerArchive, "/tmp/saved.tar:app:1"),
        ),
        // 3. paths
        ("/var/lib/images/app.aci", path("/var/lib/images/app.aci")),
        ("./app.aci", path("./app.aci")),
        ("./example.com/app", path("./example.com/app")),
        ("../images/app", path("../images/app")),
        ("stage1-coreos.aci", path("stage1-coreos.aci")),
        ("example.com/app.aci", path("example.com/app.aci")),
        // 4. names
        ("example.com/app", name("example.com/app")),
        (
            "example.com/app:1.0,os=linux",
            name("example.com/app:1.0,os=linux"),
        ),
        ("busybox", name("busybox")),
        // a name that merely starts like a hash prefix is a name
        ("sha512", name("sha512")),
        ("ociapp:1", name("ociapp:1")),
    ];
    for (arg, want) in cases {
        assert_eq!(ImageArg::classify(arg), Ok(want), "{arg}");
    }

    let bad: &[(&str, &str)] = &[
        ("", "empty"),
        ("sha512-", "no digest"),
        ("sha512-XYZ", "lowercase hex"),
        ("sha512-abcg", "lowercase hex"),
        (
            "ftp://example.com/app.aci",
            "unsupported URL scheme \"ftp\"",
        ),
        ("docker://", "docker:// needs something"),
        ("oci:", "oci: needs something"),
        ("Example.com/App", "bad image name"),
        ("example.com/app,channel", "has no \"=\""),
    ];
    for (arg, fragment) in bad {
        let err = ImageArg::classify(arg)
            .expect_err(&format!("{arg:?} should be refused"))
            .to_string();
        assert!(err.contains(fragment), "{arg:?}: {err}");
    }
    let long = format!("sha512-{}", "a".repeat(129));
    assert!(ImageArg::classify(&long)
        .unwrap_err()
        .to_string()
        .contains("129 hex digits"));
}

fn ident_strategy(prefix: &'static str) -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9._~/-]{0,12}[a-z0-9])?".prop_map(move |s| format!("{prefix}{s}"))
}

fn reference_strategy() -> impl Strategy<Value = ImageReference> {
    let os_arch = proptest::option::of(proptest::sample::select(
        berth_appc::types::VALID_OS_ARCH
            .iter()
            .flat_map(|(os, arches)| arches.iter().map(move |a| (*os, *a)))
            .collect::<Vec<_>>(),
    ));
    (
        ident_strategy(""),
        proptest::option::of("[A-Za-z0-9._+=/-]{1,10}"),
        proptest::collection::btree_map(ident_strategy("l"), "[A-Za-z0-9._+=/~!*()@-]{1,10}", 0..4),
        os_arch,
    )
        .prop_filter_map("valid name", |(name, version, labels, os_arch)| {
            let name: AcIdentifier = name.parse().ok()?;
            let mut all: Vec<(AcIdentifier, String)> = labels
                .into_iter()
                .map(|(k, v)| Some((k.parse().ok()?, v)))
                .collect::<Option<_>>()?;
            if let Some(v) = version {
                all.push((id("version"), v));
            }
            if let Some((os, arch)) = os_arch {
                all.push((id("os"), os.to_owned()));
                all.push((id("arch"), arch.to_owned()));
            }
            ImageReference::new(name, all).ok()
        })
}

proptest! {
    #[test]
    fn display_parse_round_trip(reference in reference_strategy()) {
        let printed = reference.to_string();
        let back: ImageReference = printed.parse().map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
        prop_assert_eq!(&back, &reference);
        prop_assert_eq!(back.to_string(), printed.clone());
        // and as a command-line argument, unless it looks like a path
        if !printed.ends_with(".aci") && !printed.starts_with("sha512-") {
            prop_assert_eq!(ImageArg::classify(&printed), Ok(ImageArg::Name(reference)));
        }
    }
}
