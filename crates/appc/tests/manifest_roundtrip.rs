//! Serialising what was parsed gives back the same manifest: exactly the
//! same JSON for documents already in canonical form, and an equal value
//! (with stable output) for everything else. Property tests generate valid
//! manifests and check both.

use berth_appc::isolator::Isolator;
use berth_appc::manifest::{EventHandlerName, VolumeKind};
use berth_appc::{AnyManifest, ImageManifest, PodManifest};
use proptest::prelude::*;
use serde_json::{json, Value};

fn id(c: char) -> String {
    format!("sha512-{}", c.to_string().repeat(128))
}

/// Documents in canonical form: fields in spec order, no nulls, no empty
/// lists, exact-case keys.
fn canonical_docs() -> Vec<Value> {
    vec![
        json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/minimal"}),
        json!({
            "acKind": "ImageManifest", "acVersion": "1.0.0-rc.1+build.5", "name": "example.com/reduce-worker",
            "labels": [{"name": "version", "value": "1.0.0"}, {"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}],
            "app": {
                "exec": ["/usr/bin/reduce-worker", "--quiet"],
                "eventHandlers": [{"name": "pre-start", "exec": ["/usr/bin/data-downloader"]},
                                  {"name": "post-stop", "exec": ["/usr/bin/deregister-worker", "--verbose"]}],
                "user": "100", "group": "300",
                "supplementaryGIDs": [400, 500],
                "workingDirectory": "/opt/work",
                "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}],
                "mountPoints": [{"name": "work", "path": "/var/lib/work", "readOnly": false}],
                "ports": [{"name": "health", "protocol": "tcp", "port": 4000, "socketActivated": true},
                          {"name": "ftp-data", "protocol": "tcp", "port": 20000, "count": 1000}],
                "isolators": [
                    {"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}},
                    {"name": "resource/memory", "value": {"default": false, "request": 1000, "limit": "2G"}},
                    {"name": "resource/block-bandwidth", "value": {"default": true, "limit": "2M"}},
                    {"name": "resource/block-iops", "value": {"default": true, "limit": "1000"}},
                    {"name": "resource/network-bandwidth", "value": {"default": true, "limit": "1.5Gi"}},
                    {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE"]}},
                    {"name": "os/linux/seccomp-retain-set", "value": {"set": ["read", "@appc.io/all"], "errno": "EPERM"}},
                    {"name": "os/linux/no-new-privileges", "value": true},
                    {"name": "os/linux/oom-score-adj", "value": -17},
                    {"name": "os/linux/cpu-shares", "value": 512},
                    {"name": "os/linux/selinux-context", "value": {"user": "system_u", "role": "system_r", "type": "dhcpc_t", "level": "s0"}},
                    {"name": "os/linux/apparmor-profile", "value": {"profile": "rkt-default"}},
                    {"name": "os/unix/sysctl", "value": {"net.ipv4.tcp_keepalive_time": "300"}},
                    {"name": "example.com/future", "value": {"nested": [1, "two", null, {"x": 1.5}]}}],
                "userAnnotations": {"Free Form": "yes"},
                "userLabels": {"team": "infra"}
            },
            "annotations": [{"name": "created", "value": "2014-10-27T19:32:27.67021798Z"},
                            {"name": "homepage", "value": "https://example.com"}],
            "dependencies": [{"imageName": "example.com/base", "imageID": id('d'),
                              "labels": [{"name": "os", "value": "linux"}], "size": 22017258},
                             {"imageName": "example.com/other"}],
            "pathWhitelist": ["/etc/ca/example.com/crt", "/etc/systemd/system/"]
        }),
        json!({"acKind": "PodManifest", "acVersion": "0.8.11", "apps": []}),
        json!({
            "acKind": "PodManifest", "acVersion": "0.8.11",
            "apps": [
                {"name": "reduce-worker",
                 "image": {"name": "example.com/reduce-worker", "id": id('1'), "labels": [{"name": "version", "value": "1.0.0"}]},
                 "app": {"exec": ["/bin/reduce-worker"], "user": "0", "group": "0",
                         "mountPoints": [{"name": "work", "path": "/var/lib/work"}]},
                 "readOnlyRootFS": true,
                 "mounts": [{"volume": "worklib", "path": "/var/lib/work"},
                            {"volume": "scratch", "path": "/tmp", "appVolume": {"name": "scratch", "kind": "empty", "mode": "1777", "uid": 0, "gid": 0}}],
                 "annotations": [{"name": "foo", "value": "baz"}]},
                {"name": "register", "image": {"id": id('3')}}
            ],
            "volumes": [{"name": "worklib", "kind": "host", "source": "/opt/tenant1/work", "readOnly": true, "recursive": true},
                        {"name": "cache", "kind": "empty", "mode": "0700", "uid": 1000, "gid": 100}],
            "isolators": [{"name": "resource/memory", "value": {"limit": "4G"}}],
            "annotations": [{"name": "ip-address", "value": "10.1.2.3"}],
            "ports": [{"name": "ftp", "hostPort": 2121},
                      {"name": "db", "hostPort": 5432, "hostIP": "127.0.0.1",
                       "podPort": {"name": "db", "protocol": "tcp", "port": 5432, "count": 1, "socketActivated": false}}],
            "userAnnotations": {"a": "b"},
            "userLabels": {"c": "d"}
        }),
    ]
}

fn reparse(m: &AnyManifest) -> AnyManifest {
    match AnyManifest::from_json(m.to_json().as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!(
            "output does not parse: {:?}\n{}",
            e.lines(),
            m.to_json_pretty()
        ),
    }
}

#[test]
fn canonical_documents_come_back_identical() {
    for doc in canonical_docs() {
        let m = AnyManifest::from_json(doc.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{:?}\n{doc:#}", e.lines()));
        let out: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(out, doc);
        let pretty: Value = serde_json::from_str(&m.to_json_pretty()).unwrap();
        assert_eq!(pretty, doc);
        assert_eq!(reparse(&m), m);
    }
}

#[test]
fn output_keeps_field_order_of_the_spec() {
    let m = ImageManifest::from_json(
        br#"{"name": "a", "app": {"group": "0", "user": "0", "exec": ["/x"]}, "acVersion": "0.8.11", "acKind": "ImageManifest"}"#,
    )
    .unwrap();
    assert_eq!(
        m.to_json(),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","app":{"exec":["/x"],"user":"0","group":"0"}}"#
    );
}

#[test]
fn non_canonical_documents_normalise() {
    // nulls, empty lists, case-folded keys and an empty errno all mean
    // "absent" and are dropped; the value survives another round.
    let doc = br#"{"ACKIND": "PodManifest", "acVersion": "0.8.11", "apps": [
        {"name": "a", "image": {"id": "IDA"}, "mounts": [], "annotations": null,
         "app": {"exec": ["/x"], "user": "0", "group": "0", "workingDirectory": "",
                 "isolators": [{"name": "os/linux/seccomp-remove-set", "value": {"set": ["reboot"], "errno": ""}}]}}],
        "volumes": null, "isolators": [], "ports": null, "userLabels": {}}"#;
    let doc = String::from_utf8_lossy(doc).replace("IDA", &id('a'));
    let m = PodManifest::from_json(doc.as_bytes()).unwrap();
    let out: Value = serde_json::from_str(&m.to_json()).unwrap();
    assert_eq!(
        out,
        json!({"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [
            {"name": "a", "image": {"id": id('a')},
             "app": {"exec": ["/x"], "user": "0", "group": "0",
                     "isolators": [{"name": "os/linux/seccomp-remove-set", "value": {"set": ["reboot"]}}]}}]})
    );
    assert_eq!(PodManifest::from_json(m.to_json().as_bytes()).unwrap(), m);
}

#[test]
fn parsed_values_are_typed() {
    let docs = canonical_docs();
    let AnyManifest::Image(img) = AnyManifest::from_json(docs[1].to_string().as_bytes()).unwrap()
    else {
        panic!("expected an image manifest")
    };
    assert_eq!(img.name.as_str(), "example.com/reduce-worker");
    assert_eq!(img.labels.get("os"), Some("linux"));
    let app = img.app.as_ref().unwrap();
    assert_eq!(app.event_handlers[1].name, EventHandlerName::PostStop);
    assert_eq!(app.ports[1].count(), 1000);
    assert!(!app.ports[1].socket_activated());
    assert_eq!(app.environment.get("REDUCE_WORKER_DEBUG"), Some("true"));
    let Isolator::ResourceMemory(mem) = &app.isolators[1] else {
        panic!("{:?}", app.isolators[1])
    };
    assert_eq!(
        mem.limit.as_ref().and_then(|q| q.value()),
        Some(2_000_000_000)
    );
    assert!(matches!(app.isolators[13], Isolator::Unknown { .. }));
    assert_eq!(img.dependencies[0].size, Some(22017258));

    let pod = PodManifest::from_json(docs[3].to_string().as_bytes()).unwrap();
    assert_eq!(pod.app("register").unwrap().image.id.as_str(), id('3'));
    let cache = pod.volume("cache").unwrap();
    assert_eq!(
        (cache.kind, cache.mode_bits(), cache.uid),
        (VolumeKind::Empty, 0o700, Some(1000))
    );
    assert_eq!(
        pod.ports[1].host_ip.map(|ip| ip.to_string()).as_deref(),
        Some("127.0.0.1")
    );
}

#[test]
fn serde_deserialize_runs_the_same_checks() {
    let good: ImageManifest = serde_json::from_value(
        json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a"}),
    )
    .unwrap();
    assert_eq!(good.name.as_str(), "a");
    let bad = serde_json::from_value::<ImageManifest>(
        json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "A"}),
    )
    .unwrap_err();
    assert!(
        bad.to_string()
            .starts_with("name: \"A\" is not a valid AC identifier"),
        "{bad}"
    );
}

// ---- property tests

fn ac_name() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}(-[a-z0-9]{1,6}){0,2}"
}

fn ac_identifier() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}([-._~/][a-z0-9]{1,6}){0,3}"
}

fn quantity() -> impl Strategy<Value = String> {
    (
        1u32..100_000,
        prop::sample::select(vec!["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "e3"]),
    )
        .prop_map(|(n, s)| format!("{n}{s}"))
}

fn isolator() -> impl Strategy<Value = Value> {
    prop_oneof![
        (quantity(), quantity())
            .prop_map(|(r, l)| json!({"name": "resource/memory", "value": {"request": r, "limit": l}})),
        quantity().prop_map(|l| json!({"name": "resource/network-bandwidth", "value": {"default": true, "limit": l}})),
        (-1000i32..=1000).prop_map(|n| json!({"name": "os/linux/oom-score-adj", "value": n})),
        any::<bool>().prop_map(|b| json!({"name": "os/linux/no-new-privileges", "value": b})),
        ac_identifier().prop_map(|n| json!({"name": format!("x.example/{n}"), "value": {"k": n}})),
    ]
}

prop_compose! {
    fn image_doc()(
        name in ac_identifier(),
        version in "[a-z0-9.]{0,8}",
        os in prop::sample::select(vec![("linux", "amd64"), ("linux", "s390x"), ("freebsd", "arm"), ("darwin", "i386")]),
        ports in prop::collection::btree_map(ac_name(), (1u32..60000, 1u32..100, any::<bool>()), 0..4),
        env in prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_.-]{0,8}", ".{0,10}", 0..4),
        isolators in prop::collection::vec(isolator(), 0..3),
        args in prop::collection::vec(".{0,6}", 0..3),
        gids in prop::collection::vec(any::<u32>(), 0..3),
    ) -> Value {
        let ports: Vec<Value> = ports.into_iter().map(|(n, (p, c, s))| {
            json!({"name": n, "protocol": "tcp", "port": p, "count": c, "socketActivated": s})
        }).collect();
        let env: Vec<Value> = env.into_iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
        let mut exec = vec!["/bin/app".to_owned()];
        exec.extend(args);
        // OOM score and no-new-privileges may appear once: keep the first.
        let mut seen_oom = false;
        let isolators: Vec<Value> = isolators.into_iter().filter(|i| {
            if i["name"] == "os/linux/oom-score-adj" {
                let first = !seen_oom;
                seen_oom = true;
                first
            } else { true }
        }).collect();
        let mut app = json!({"exec": exec, "user": "0", "group": "0"});
        for (k, v) in [("supplementaryGIDs", json!(gids)), ("environment", json!(env)),
                       ("ports", json!(ports)), ("isolators", json!(isolators))] {
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                app[k] = v;
            }
        }
        json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
               "labels": [{"name": "version", "value": version}, {"name": "os", "value": os.0}, {"name": "arch", "value": os.1}],
               "app": app})
    }
}

proptest! {
    #[test]
    fn generated_images_round_trip_exactly(doc in image_doc()) {
        let m = ImageManifest::from_json(doc.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{:?}", e.lines())))?;
        let out: Value = serde_json::from_str(&m.to_json()).unwrap();
        prop_assert_eq!(&out, &doc);
        prop_assert_eq!(ImageManifest::from_json(m.to_json().as_bytes()).unwrap(), m);
    }

    #[test]
    fn generated_pods_round_trip(names in prop::collection::btree_set(ac_name(), 0..5),
                                 vols in prop::collection::btree_set(ac_name(), 0..3),
                                 ro in any::<bool>()) {
        let vols: Vec<String> = vols.into_iter().collect();
        let apps: Vec<Value> = names.iter().enumerate().map(|(i, n)| {
            let mut a = json!({"name": n, "image": {"id": id(char::from(b'a' + (i % 6) as u8))}});
            if let Some(v) = vols.first() {
                a["mounts"] = json!([{"volume": v, "path": format!("/{v}")}]);
            }
            if ro { a["readOnlyRootFS"] = json!(true); }
            a
        }).collect();
        let volumes: Vec<Value> = vols.iter().map(|v| json!({"name": v, "kind": "host", "source": format!("/srv/{v}")})).collect();
        let mut doc = json!({"acKind": "PodManifest", "acVersion": "0.8.11", "apps": apps});
        if !volumes.is_empty() { doc["volumes"] = json!(volumes); }
        let m = PodManifest::from_json(doc.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{:?}", e.lines())))?;
        let out: Value = serde_json::from_str(&m.to_json()).unwrap();
        prop_assert_eq!(&out, &doc);
    }
}
