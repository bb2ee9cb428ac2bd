//! Conformance: berth's strict parser against the reference validator,
//! `actool validate` (Debian's appc-spec 0.8.11, the Go code in `schema/`).
//!
//! Every case is written to a file, judged by `actool validate FILE` (exit
//! status 0 = valid) and by `AnyManifest::from_json`. In the agreement table
//! both must give the expected verdict, and for invalid cases berth's error
//! must point at the expected JSON path.
//!
//! The second table lists where berth deliberately differs: mostly rules the
//! spec text states and the Go code never checked (berth stricter), plus
//! two crashes of actool and one actool bug (unknown isolators refused inside
//! an app, contradicting the spec). For those we assert berth's verdict and
//! record actool's, so a change in either shows up here.
//!
//! actool must be installed: this test fails (it does not skip) without it.

use std::io::Write;
use std::process::Command;

use berth_appc::AnyManifest;
use serde_json::{json, Value};

fn id(c: char) -> String {
    format!("sha512-{}", c.to_string().repeat(128))
}

/// Merge `extra`'s keys into object `base` (a `null` removes the key).
fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

fn image(extra: Value) -> String {
    with(
        json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/app"}),
        extra,
    )
    .to_string()
}

fn app(extra: Value) -> String {
    image(json!({"app": with(json!({"exec": ["/bin/app"], "user": "0", "group": "0"}), extra)}))
}

fn iso(name: &str, value: Value) -> String {
    app(json!({"isolators": [{"name": name, "value": value}]}))
}

fn pod(extra: Value) -> String {
    with(
        json!({"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [
            {"name": "web", "image": {"name": "example.com/web", "id": id('a')}}
        ]}),
        extra,
    )
    .to_string()
}

fn pod_app(extra: Value) -> String {
    pod(json!({"apps": [with(
        json!({"name": "web", "image": {"name": "example.com/web", "id": id('a')}}),
        extra,
    )]}))
}

fn vol(v: Value) -> String {
    pod(json!({"volumes": [v]}))
}

/// `None`: valid. `Some(path)`: invalid, with a problem at `path` (or below).
type Expect = Option<&'static str>;

fn agreement_cases() -> Vec<(&'static str, String, Expect)> {
    let v = None;
    vec![
        // ---- valid image manifests
        ("minimal image", image(json!({})), v),
        ("spec example image", spec_example_image(), v),
        ("full app", full_app(), v),
        ("os/arch linux/aarch64", image(json!({"labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "aarch64"}]})), v),
        ("os/arch freebsd/arm", image(json!({"labels": [{"name": "arch", "value": "arm"}, {"name": "os", "value": "freebsd"}]})), v),
        ("os/arch darwin/x86_64", image(json!({"labels": [{"name": "os", "value": "darwin"}, {"name": "arch", "value": "x86_64"}]})), v),
        ("arch without os", image(json!({"labels": [{"name": "arch", "value": "anything"}]})), v),
        ("identifier with ~ and //", image(json!({"name": "example.com/~user//app_v1"})), v),
        ("keys match case-insensitively", r#"{"ACKIND":"ImageManifest","acversion":"0.8.11","Name":"a","APP":{"Exec":["/a"],"USER":"0","group":"0"}}"#.to_owned(), v),
        ("nulls read as absent", image(json!({"labels": Value::Null, "x": 1})).replace("\"x\":1", "\"labels\":null,\"app\":null,\"annotations\":null"), v),
        ("well-known annotations", image(json!({"annotations": [
            {"name": "created", "value": "2014-10-27T19:32:27.67021798Z"},
            {"name": "homepage", "value": "https://example.com"},
            {"name": "documentation", "value": "http://example.com/docs"}]})), v),
        ("unknown fields ignored", image(json!({"futureField": {"a": 1}})), v),
        ("relative exec and empty workingDirectory", app(json!({"exec": ["sh", "-c", "true"], "workingDirectory": ""})), v),
        ("quantity forms", app(json!({"isolators": [
            {"name": "resource/memory", "value": {"limit": "1Gi", "request": 100}},
            {"name": "resource/cpu", "value": {"limit": "1e3", "request": " 0.5 "}}]})), v),
        ("AC names with double dash", app(json!({"mountPoints": [{"name": "a--b", "path": "/x"}]})), v),
        // ---- invalid image manifests
        ("bad acKind", image(json!({"acKind": "imagemanifest"})), Some("acKind")),
        ("acVersion not semver", image(json!({"acVersion": "0.8"})), Some("acVersion")),
        ("acVersion zero", image(json!({"acVersion": "0.0.0"})), Some("acVersion")),
        ("acVersion missing", image(json!({"acVersion": null})), Some("acVersion")),
        ("name missing", image(json!({"name": null})), Some("name")),
        ("name uppercase", image(json!({"name": "Example.com/app"})), Some("name")),
        ("name with space", image(json!({"name": "example.com/my app"})), Some("name")),
        ("name edge", image(json!({"name": "-example.com"})), Some("name")),
        ("label name invalid", image(json!({"labels": [{"name": "Version", "value": "1"}]})), Some("labels[0].name")),
        ("duplicate label", image(json!({"labels": [{"name": "version", "value": "1"}, {"name": "version", "value": "2"}]})), Some("labels[1]")),
        ("label called name", image(json!({"labels": [{"name": "name", "value": "x"}]})), Some("labels[0]")),
        ("unsupported os", image(json!({"labels": [{"name": "os", "value": "plan9"}]})), Some("labels[0]")),
        ("arch invalid for os", image(json!({"labels": [{"name": "os", "value": "darwin"}, {"name": "arch", "value": "amd64"}]})), Some("labels[1]")),
        ("label value not a string", image(json!({"labels": [{"name": "version", "value": 1}]})), Some("labels[0].value")),
        ("exec not a list", app(json!({"exec": "/bin/app"})), Some("app.exec")),
        ("user missing", app(json!({"user": null})), Some("app.user")),
        ("group empty", app(json!({"group": ""})), Some("app.group")),
        ("env name starts with digit", app(json!({"environment": [{"name": "1FOO", "value": "x"}]})), Some("app.environment[0].name")),
        ("env name with =", app(json!({"environment": [{"name": "A=B", "value": "x"}]})), Some("app.environment[0].name")),
        ("duplicate env", app(json!({"environment": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]})), Some("app.environment[1]")),
        ("bad event handler", app(json!({"eventHandlers": [{"name": "pre-stop", "exec": ["/x"]}]})), Some("app.eventHandlers[0].name")),
        ("duplicate event handler", app(json!({"eventHandlers": [{"name": "pre-start", "exec": ["/x"]}, {"name": "pre-start", "exec": ["/y"]}]})), Some("app.eventHandlers[1]")),
        ("relative workingDirectory", app(json!({"workingDirectory": "opt/work"})), Some("app.workingDirectory")),
        ("bad mount point name", app(json!({"mountPoints": [{"name": "Work", "path": "/w"}]})), Some("app.mountPoints[0].name")),
        ("port 0", app(json!({"ports": [{"name": "http", "protocol": "tcp", "port": 0}]})), Some("app.ports[0].port")),
        ("port 65536", app(json!({"ports": [{"name": "http", "protocol": "tcp", "port": 65536}]})), Some("app.ports[0].port")),
        ("port range past 65535", app(json!({"ports": [{"name": "http", "protocol": "tcp", "port": 65535, "count": 2}]})), Some("app.ports[0].count")),
        ("port as string", app(json!({"ports": [{"name": "http", "protocol": "tcp", "port": "80"}]})), Some("app.ports[0].port")),
        ("supplementaryGIDs strings", app(json!({"supplementaryGIDs": ["1"]})), Some("app.supplementaryGIDs[0]")),
        ("cpu quantity garbage", iso("resource/cpu", json!({"limit": "1x"})), Some("app.isolators[0].value.limit")),
        ("memory suffix K", iso("resource/memory", json!({"limit": "1K"})), Some("app.isolators[0].value.limit")),
        ("exponent with SI suffix", iso("resource/cpu", json!({"limit": "1e3m"})), Some("app.isolators[0].value.limit")),
        ("memory default true", iso("resource/memory", json!({"default": true, "limit": "1G"})), Some("app.isolators[0].value.default")),
        ("block-bandwidth default missing", iso("resource/block-bandwidth", json!({"limit": "2M"})), Some("app.isolators[0].value.default")),
        ("block-iops default false", iso("resource/block-iops", json!({"default": false, "limit": "1000"})), Some("app.isolators[0].value.default")),
        ("network-bandwidth with request", iso("resource/network-bandwidth", json!({"default": true, "request": "1M", "limit": "1G"})), Some("app.isolators[0].value.request")),
        ("no-new-privileges string", iso("os/linux/no-new-privileges", json!("true")), Some("app.isolators[0].value")),
        ("oom-score-adj 1001", iso("os/linux/oom-score-adj", json!(1001)), Some("app.isolators[0].value")),
        ("oom-score-adj -1001", iso("os/linux/oom-score-adj", json!(-1001)), Some("app.isolators[0].value")),
        ("cpu-shares 1", iso("os/linux/cpu-shares", json!(1)), Some("app.isolators[0].value")),
        ("capabilities set empty", iso("os/linux/capabilities-retain-set", json!({"set": []})), Some("app.isolators[0].value.set")),
        ("seccomp set empty", iso("os/linux/seccomp-remove-set", json!({"set": []})), Some("app.isolators[0].value.set")),
        ("seccomp errno lowercase", iso("os/linux/seccomp-remove-set", json!({"set": ["reboot"], "errno": "enotsup"})), Some("app.isolators[0].value.errno")),
        ("seccomp retain and remove", app(json!({"isolators": [
            {"name": "os/linux/seccomp-retain-set", "value": {"set": ["read"]}},
            {"name": "os/linux/seccomp-remove-set", "value": {"set": ["reboot"]}}]})), Some("app.isolators[1]")),
        ("oom-score-adj twice", app(json!({"isolators": [
            {"name": "os/linux/oom-score-adj", "value": 1},
            {"name": "os/linux/oom-score-adj", "value": 2}]})), Some("app.isolators[1]")),
        ("selinux user with colon", iso("os/linux/selinux-context", json!({"user": "a:b", "role": "r", "type": "t", "level": "s0"})), Some("app.isolators[0].value.user")),
        ("selinux level missing", iso("os/linux/selinux-context", json!({"user": "u", "role": "r", "type": "t"})), Some("app.isolators[0].value.level")),
        ("sysctl value not string", iso("os/unix/sysctl", json!({"net.ipv4.ip_forward": 1})), Some("app.isolators[0].value.net.ipv4.ip_forward")),
        ("isolator name invalid", iso("Resource/CPU", json!({})), Some("app.isolators[0].name")),
        ("userLabels value not string", app(json!({"userLabels": {"team": 1}})), Some("app.userLabels.team")),
        ("dependency imageID sha256", image(json!({"dependencies": [{"imageName": "example.com/base", "imageID": "sha256-abcd"}]})), Some("dependencies[0].imageID")),
        ("dependency imageID no dash", image(json!({"dependencies": [{"imageName": "example.com/base", "imageID": "sha512"}]})), Some("dependencies[0].imageID")),
        ("dependency imageName missing", image(json!({"dependencies": [{"labels": []}]})), Some("dependencies[0].imageName")),
        ("dependency size negative", image(json!({"dependencies": [{"imageName": "example.com/base", "size": -1}]})), Some("dependencies[0].size")),
        ("dependency labels duplicate", image(json!({"dependencies": [{"imageName": "example.com/base", "labels": [{"name": "os", "value": "linux"}, {"name": "os", "value": "linux"}]}]})), Some("dependencies[0].labels[1]")),
        ("annotation name invalid", image(json!({"annotations": [{"name": "Authors", "value": "x"}]})), Some("annotations[0].name")),
        ("duplicate annotation", image(json!({"annotations": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]})), Some("annotations[1]")),
        ("created not RFC 3339", image(json!({"annotations": [{"name": "created", "value": "2014-10-27 19:32:27Z"}]})), Some("annotations[0]")),
        ("homepage not http", image(json!({"annotations": [{"name": "homepage", "value": "ftp://example.com"}]})), Some("annotations[0]")),
        ("not an object", "[]".to_owned(), Some("")),
        ("not JSON", "{\"acKind\": ".to_owned(), Some("")),
        ("duplicate key, first invalid", r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"BAD","name":"a"}"#.to_owned(), Some("")),
        // ---- valid pod manifests
        ("minimal pod", r#"{"acKind":"PodManifest","acVersion":"0.8.11","apps":[]}"#.to_owned(), v),
        ("spec example pod", spec_example_pod(), v),
        ("pod as Go writes it (nulls)", pod(json!({})).replacen('{', r#"{"volumes":null,"isolators":null,"annotations":null,"ports":null,"#, 1), v),
        ("pod with everything", full_pod(), v),
        // ---- invalid pod manifests
        ("app name invalid", pod_app(json!({"name": "Reduce_Worker"})), Some("apps[0].name")),
        ("duplicate app names", pod(json!({"apps": [
            {"name": "web", "image": {"id": id('a')}}, {"name": "web", "image": {"id": id('b')}}]})), Some("apps[1].name")),
        ("image id sha256", pod_app(json!({"image": {"id": "sha256-abc"}})), Some("apps[0].image.id")),
        ("image name invalid", pod_app(json!({"image": {"name": "Web", "id": id('a')}})), Some("apps[0].image.name")),
        ("image labels bad arch", pod_app(json!({"image": {"id": id('a'), "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "x86_64"}]}})), Some("apps[0].image.labels[1]")),
        ("app override without user", pod_app(json!({"app": {"exec": ["/x"], "group": "0"}})), Some("apps[0].app.user")),
        ("readOnlyRootFS string", pod_app(json!({"readOnlyRootFS": "yes"})), Some("apps[0].readOnlyRootFS")),
        ("volume kind unknown", vol(json!({"name": "data", "kind": "tmpfs"})), Some("volumes[0].kind")),
        ("host volume without source", vol(json!({"name": "data", "kind": "host"})), Some("volumes[0].source")),
        ("host volume relative source", vol(json!({"name": "data", "kind": "host", "source": "srv/data"})), Some("volumes[0].source")),
        ("host volume with mode", vol(json!({"name": "data", "kind": "host", "source": "/srv", "mode": "0755"})), Some("volumes[0].mode")),
        ("host volume with uid", vol(json!({"name": "data", "kind": "host", "source": "/srv", "uid": 0})), Some("volumes[0].uid")),
        ("empty volume with source", vol(json!({"name": "data", "kind": "empty", "source": "/srv"})), Some("volumes[0].source")),
        ("volume without name", vol(json!({"kind": "empty"})), Some("volumes[0].name")),
        ("duplicate volumes", pod(json!({"volumes": [{"name": "d", "kind": "empty"}, {"name": "d", "kind": "empty"}]})), Some("volumes[1].name")),
        ("appVolume kind unknown", pod_app(json!({"mounts": [{"volume": "d", "path": "/d", "appVolume": {"name": "d", "kind": "nfs"}}]})), Some("apps[0].mounts[0].appVolume.kind")),
        ("pod acVersion invalid", pod(json!({"acVersion": "1"})), Some("acVersion")),
        ("pod with acKind ImageManifest", pod(json!({"acKind": "ImageManifest"})), Some("name")),
        ("hostIP invalid", pod(json!({"ports": [{"name": "http", "hostPort": 80, "hostIP": "1.2.3"}]})), Some("ports[0].hostIP")),
        ("exposed port name invalid", pod(json!({"ports": [{"name": "HTTP", "hostPort": 80}]})), Some("ports[0].name")),
        ("podPort port 0", pod(json!({"ports": [{"name": "http", "hostPort": 80, "podPort": {"name": "http", "protocol": "tcp", "port": 0}}]})), Some("ports[0].podPort.port")),
        ("pod isolator bad quantity", pod(json!({"isolators": [{"name": "resource/memory", "value": {"limit": "lots"}}]})), Some("isolators[0].value.limit")),
        ("pod annotation duplicate", pod(json!({"annotations": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]})), Some("annotations[1]")),
        ("pod userAnnotations not strings", pod(json!({"userAnnotations": {"a": ["b"]}})), Some("userAnnotations.a")),
    ]
}

/// What actool said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actool {
    Valid,
    Invalid,
    /// Go panic (exit status 2): actool has no verdict.
    Crash,
}

/// Cases where berth deliberately differs from actool: `(name, document,
/// actool's verdict, berth's expectation, why)`.
fn deviation_cases() -> Vec<(&'static str, String, Actool, Expect, &'static str)> {
    use Actool::{Crash, Valid};
    vec![
        ("short image ID", image(json!({"dependencies": [{"imageName": "example.com/base", "imageID": "sha512-abc"}]})), Valid, Some("dependencies[0].imageID"),
            "types.md: the hex of the digest; Go takes any non-empty value"),
        ("placeholder image ID from the spec", pod_app(json!({"image": {"id": "sha512-..."}})), Valid, Some("apps[0].image.id"),
            "\"...\" is not hex"),
        ("acVersion with leading zero", image(json!({"acVersion": "0.08.11"})), Valid, Some("acVersion"),
            "SemVer 2.0.0 forbids leading zeros; go-semver parses with ParseInt"),
        ("empty exec", app(json!({"exec": []})), Valid, Some("app.exec"),
            "nothing to run; omit exec instead"),
        ("port without name", app(json!({"ports": [{"protocol": "tcp", "port": 80}]})), Valid, Some("app.ports[0].name"),
            "aci.md: name is required (it is the key for pod ports)"),
        ("port without protocol", app(json!({"ports": [{"name": "http", "port": 80}]})), Valid, Some("app.ports[0].protocol"),
            "aci.md: protocol is required"),
        ("port count 0", app(json!({"ports": [{"name": "http", "protocol": "tcp", "port": 80, "count": 0}]})), Valid, Some("app.ports[0].count"),
            "aci.md: count must be >= 1; Go silently makes it 1"),
        ("duplicate port names", app(json!({"ports": [{"name": "a", "protocol": "tcp", "port": 1}, {"name": "a", "protocol": "udp", "port": 2}]})), Valid, Some("app.ports[1].name"),
            "port names are keys for pod ports"),
        ("duplicate mount point names", app(json!({"mountPoints": [{"name": "a", "path": "/a"}, {"name": "a", "path": "/b"}]})), Valid, Some("app.mountPoints[1].name"),
            "mount point names are keys for pod mounts"),
        ("mount point without path", app(json!({"mountPoints": [{"name": "a"}]})), Valid, Some("app.mountPoints[0].path"),
            "Go has the check (MountPoint.assertValid) but never calls it when unmarshalling"),
        ("label without name", image(json!({"labels": [{"value": "x"}]})), Valid, Some("labels[0].name"),
            "an empty ACIdentifier is invalid; Go only validates names that are present"),
        ("negative supplementary GID", app(json!({"supplementaryGIDs": [-1]})), Valid, Some("app.supplementaryGIDs[0]"),
            "aci.md: list of unsigned integers"),
        ("event handler without exec", app(json!({"eventHandlers": [{"name": "pre-start"}]})), Valid, Some("app.eventHandlers[0].exec"),
            "nothing to run"),
        ("relative pathWhitelist entry", image(json!({"pathWhitelist": ["etc/passwd"]})), Valid, Some("pathWhitelist[0]"),
            "aci.md: whitelist of absolute paths"),
        ("unknown capability", iso("os/linux/capabilities-remove-set", json!({"set": ["CAP_FLY"]})), Valid, Some("app.isolators[0].value.set[0]"),
            "not a Linux capability"),
        ("capability retain and remove sets", app(json!({"isolators": [
            {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_KILL"]}},
            {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_KILL"]}}]})), Valid, Some("app.isolators[1]"),
            "ace.md: the retain set cannot be used in conjunction with the remove set"),
        ("seccomp entry not a syscall", iso("os/linux/seccomp-retain-set", json!({"set": ["Read Write"]})), Valid, Some("app.isolators[0].value.set[0]"),
            "ace.md: syscall names or @scope/name wildcards"),
        ("negative memory", iso("resource/memory", json!({"limit": "-1G"})), Valid, Some("app.isolators[0].value.limit"),
            "a negative amount of a resource is meaningless"),
        ("quantity without digits", iso("resource/memory", json!({"limit": "."})), Valid, Some("app.isolators[0].value.limit"),
            "Go reads \".\" as 0"),
        ("empty apparmor profile (pod level)", pod(json!({"isolators": [{"name": "os/linux/apparmor-profile", "value": {"profile": ""}}]})), Valid, Some("isolators[0].value.profile"),
            "ace.md defines apparmor-profile; the packaged Go code predates it"),
        ("sysctl twice in a pod", pod(json!({"isolators": [{"name": "os/unix/sysctl", "value": {}}, {"name": "os/unix/sysctl", "value": {}}]})), Valid, Some("isolators[1]"),
            "ace.md: only a single os/unix/sysctl per pod; Go checks sets only inside apps"),
        ("pod without apps", r#"{"acKind":"PodManifest","acVersion":"0.8.11"}"#.to_owned(), Valid, Some("apps"),
            "pods.md: apps is required"),
        ("pod without acVersion", pod(json!({"acVersion": null})), Valid, Some("acVersion"),
            "pods.md: acVersion is required"),
        ("pod app without name", pod(json!({"apps": [{"image": {"id": id('a')}}]})), Valid, Some("apps[0].name"),
            "pods.md: name is required"),
        ("pod app without image id", pod_app(json!({"image": {"name": "example.com/web"}})), Valid, Some("apps[0].image.id"),
            "pods.md: id is required"),
        ("volume mode not octal", vol(json!({"name": "d", "kind": "empty", "mode": "rwx"})), Valid, Some("volumes[0].mode"),
            "a permission mode"),
        ("negative volume uid", vol(json!({"name": "d", "kind": "empty", "uid": -1})), Valid, Some("volumes[0].uid"),
            "a user id"),
        ("IPv6 hostIP", pod(json!({"ports": [{"name": "http", "hostPort": 80, "hostIP": "::1"}]})), Valid, Some("ports[0].hostIP"),
            "pods.md: an IPv4 address in dotted-quad notation"),
        ("hostPort 0", pod(json!({"ports": [{"name": "http", "hostPort": 0}]})), Valid, Some("ports[0].hostPort"),
            "not a port"),
        ("hostPort 70000", pod(json!({"ports": [{"name": "http", "hostPort": 70000}]})), Valid, Some("ports[0].hostPort"),
            "not a port"),
        ("duplicate exposed ports", pod(json!({"ports": [{"name": "http", "hostPort": 80}, {"name": "http", "hostPort": 81}]})), Valid, Some("ports[1].name"),
            "pods.md: port names are unique within a pod"),
        ("mount of an unknown volume", pod_app(json!({"mounts": [{"volume": "nope", "path": "/d"}]})), Valid, Some("apps[0].mounts[0].volume"),
            "pods.md: volume is a key into volumes unless appVolume is given"),
        ("mount without path", pod(json!({"volumes": [{"name": "d", "kind": "empty"}], "apps": [
            {"name": "web", "image": {"id": id('a')}, "mounts": [{"volume": "d"}]}]})), Valid, Some("apps[0].mounts[0].path"),
            "pods.md: path is required; Go never calls Mount.assertValid"),
        ("duplicate key, both valid", r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","name":"b"}"#.to_owned(), Valid, Some(""),
            "ambiguous: Go keeps the last, other readers the first"),
        ("missing acKind", r#"{"acVersion":"0.8.11","name":"a"}"#.to_owned(), Crash, Some("acKind"),
            "actool panics (\"bad ACKind\")"),
        ("known isolator without value", app(json!({"isolators": [{"name": "resource/cpu"}]})), Crash, Some("app.isolators[0].value"),
            "actool dereferences the missing value and panics"),
        // berth more lenient than actool:
        ("unknown isolator in an app", iso("example.com/gpu", json!({"count": 1})), Actool::Invalid, None,
            "ace.md: executors MAY ignore isolators they do not understand; Go refuses any isolator it has no type for inside an app (\"invalid isolator\")"),
    ]
}

fn spec_example_image() -> String {
    json!({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/reduce-worker",
        "labels": [{"name": "version", "value": "1.0.0"}, {"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}],
        "app": {
            "exec": ["/usr/bin/reduce-worker", "--quiet"], "user": "100", "group": "300",
            "supplementaryGids": [400, 500],
            "eventHandlers": [
                {"exec": ["/usr/bin/data-downloader"], "name": "pre-start"},
                {"exec": ["/usr/bin/deregister-worker", "--verbose"], "name": "post-stop"}],
            "workingDirectory": "/opt/work",
            "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}],
            "isolators": [
                {"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}},
                {"name": "resource/memory", "value": {"request": "1G", "limit": "2G"}},
                {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE"]}}],
            "mountPoints": [{"name": "work", "path": "/var/lib/work", "readOnly": false}],
            "ports": [
                {"name": "health", "port": 4000, "protocol": "tcp", "socketActivated": true},
                {"name": "ftp-data", "port": 20000, "count": 1000, "protocol": "tcp"}]
        },
        "dependencies": [{"imageName": "example.com/reduce-worker-base", "imageID": id('d'),
            "labels": [{"name": "os", "value": "linux"}, {"name": "env", "value": "canary"}], "size": 22017258}],
        "pathWhitelist": ["/etc/ca/example.com/crt", "/usr/bin/map-reduce-worker", "/etc/systemd/system/"],
        "annotations": [
            {"name": "authors", "value": "Carly Container <carly@example.com>"},
            {"name": "created", "value": "2014-10-27T19:32:27.67021798Z"},
            {"name": "documentation", "value": "https://example.com/docs"},
            {"name": "homepage", "value": "https://example.com"},
            {"name": "appc.io/executor/supports-systemd-notify", "value": "false"}]
    })
    .to_string()
}

fn full_app() -> String {
    app(json!({
        "exec": ["worker", "--flag"],
        "eventHandlers": [{"name": "post-stop", "exec": ["/bin/cleanup"]}],
        "environment": [{"name": "my.var-1", "value": ""}, {"name": "_X", "value": "y"}],
        "isolators": [
            {"name": "resource/block-bandwidth", "value": {"default": true, "limit": "2M"}},
            {"name": "resource/block-iops", "value": {"default": true, "limit": "1000"}},
            {"name": "resource/network-bandwidth", "value": {"default": true, "limit": "1G"}},
            {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_SYS_CHROOT", "CAP_MKNOD"]}},
            {"name": "os/linux/seccomp-remove-set", "value": {"errno": "ENOTSUP", "set": ["clock_adjtime", "reboot", "@appc.io/empty"]}},
            {"name": "os/linux/no-new-privileges", "value": true},
            {"name": "os/linux/oom-score-adj", "value": -1000},
            {"name": "os/linux/cpu-shares", "value": 262144},
            {"name": "os/linux/selinux-context", "value": {"user": "system_u", "role": "system_r", "type": "dhcpc_t", "level": "s0:c1,c2"}},
            {"name": "os/unix/sysctl", "value": {"net.ipv4.tcp_mtu_probing": "1"}}],
        "mountPoints": [{"name": "work", "path": "/var/lib/work", "readOnly": true}],
        "ports": [{"name": "health", "port": 4000, "protocol": "tcp", "socketActivated": true},
                  {"name": "range", "port": 65000, "count": 536, "protocol": "udp"}],
        "userAnnotations": {"Any Key": "value"},
        "userLabels": {"team": "infra"}
    }))
}

fn spec_example_pod() -> String {
    json!({
        "acVersion": "0.8.11", "acKind": "PodManifest",
        "apps": [
            {"name": "reduce-worker",
             "image": {"name": "example.com/reduce-worker", "id": id('1'), "labels": [{"name": "version", "value": "1.0.0"}]},
             "app": {"exec": ["/bin/reduce-worker", "--debug=true", "--data-dir=/mnt/foo"], "group": "0", "user": "0",
                     "mountPoints": [{"name": "work", "path": "/var/lib/work"}]},
             "readOnlyRootFS": true,
             "mounts": [{"volume": "worklib", "path": "/var/lib/work"}]},
            {"name": "backup",
             "image": {"name": "example.com/worker-backup", "id": id('2'), "labels": [{"name": "version", "value": "1.0.0"}]},
             "app": {"exec": ["/bin/reduce-backup"], "group": "0", "user": "0",
                     "mountPoints": [{"name": "backup", "path": "/mnt/bar"}],
                     "isolators": [{"name": "resource/memory", "value": {"limit": "1G"}}]},
             "mounts": [{"volume": "worklib", "path": "/mnt/bar"}],
             "annotations": [{"name": "foo", "value": "baz"}]},
            {"name": "register",
             "image": {"name": "example.com/reduce-worker-register", "id": id('3'), "labels": [{"name": "version", "value": "1.0.0"}]}}
        ],
        "volumes": [{"name": "worklib", "kind": "host", "source": "/opt/tenant1/work", "readOnly": true, "recursive": true}],
        "isolators": [{"name": "resource/memory", "value": {"limit": "4G"}}],
        "annotations": [{"name": "ip-address", "value": "10.1.2.3"}],
        "ports": [{"name": "ftp", "hostPort": 2121}]
    })
    .to_string()
}

fn full_pod() -> String {
    json!({
        "acVersion": "0.8.11", "acKind": "PodManifest",
        "apps": [{"name": "db", "image": {"id": id('e')},
                  "mounts": [{"volume": "own", "path": "/own", "appVolume": {"name": "own", "kind": "empty", "mode": "1777"}},
                             {"volume": "data", "path": "/data"}]}],
        "volumes": [{"name": "data", "kind": "empty", "mode": "0700", "uid": 1000, "gid": 1000, "readOnly": false}],
        "isolators": [{"name": "os/linux/selinux-context", "value": {"user": "u", "role": "r", "type": "t", "level": "s0"}},
                      {"name": "example.com/unknown", "value": [1, 2]}],
        "ports": [{"name": "db", "hostPort": 5432, "hostIP": "127.0.0.1",
                   "podPort": {"name": "db", "protocol": "tcp", "port": 5432}}],
        "userAnnotations": {"owner": "me"},
        "userLabels": {"env": "test"}
    })
    .to_string()
}

/// Runs `actool validate` on `doc`.
fn actool(doc: &str) -> Actool {
    let mut f = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    f.write_all(doc.as_bytes()).expect("write temp file");
    let out = match Command::new("actool")
        .arg("validate")
        .arg(f.path())
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run actool ({e}): this test needs the reference validator; \
             install the appc-spec package (apt-get install appc-spec)"
        ),
    };
    match out.status.code() {
        Some(0) => Actool::Valid,
        Some(1) => Actool::Invalid,
        _ => Actool::Crash,
    }
}

fn berth_verdict(doc: &str, expect: Expect) -> Result<(), String> {
    match (AnyManifest::from_json(doc.as_bytes()), expect) {
        (Ok(_), None) => Ok(()),
        (Ok(_), Some(path)) => Err(format!("berth accepted it, expected a problem at {path:?}")),
        (Err(e), None) => Err(format!("berth refused it: {:?}", e.lines())),
        (Err(e), Some(path)) if e.mentions(path) => Ok(()),
        (Err(e), Some(path)) => Err(format!(
            "berth refused it but not at {path:?}: {:?}",
            e.lines()
        )),
    }
}

#[test]
fn berth_agrees_with_actool() {
    let cases = agreement_cases();
    assert!(cases.len() >= 45, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for (name, doc, expect) in &cases {
        assert!(names.insert(*name), "case name {name:?} used twice");
        let want = if expect.is_none() {
            Actool::Valid
        } else {
            Actool::Invalid
        };
        let got = actool(doc);
        if got != want {
            failures.push(format!(
                "{name}: actool says {got:?}, table says {want:?}\n  {doc}"
            ));
        }
        if let Err(e) = berth_verdict(doc, *expect) {
            failures.push(format!("{name}: {e}\n  {doc}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deliberate_deviations_from_actool() {
    let mut failures = Vec::new();
    for (name, doc, actool_says, expect, _why) in deviation_cases() {
        let got = actool(&doc);
        if got != actool_says {
            failures.push(format!(
                "{name}: actool now says {got:?} (recorded {actool_says:?})"
            ));
        }
        if let Err(e) = berth_verdict(&doc, expect) {
            failures.push(format!("{name}: {e}\n  {doc}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
