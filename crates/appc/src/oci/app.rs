//! An OCI image configuration as an appc image manifest, so that the pod
//! runtime runs a Docker/OCI image as it runs an ACI's app.
//!
//! | OCI config           | appc image manifest                              |
//! |----------------------|--------------------------------------------------|
//! | Entrypoint + Cmd     | `app.exec` (Entrypoint first, as Docker runs it)  |
//! | Env                  | `app.environment`                                |
//! | WorkingDir           | `app.workingDirectory`                           |
//! | User `name`/`uid`    | `app.user`; `app.group` from the image's passwd  |
//! | User `u:g`           | `app.user`, `app.group`                          |
//! | ExposedPorts `80/tcp`| `app.ports` (`80-tcp`)                            |
//! | Volumes `/data`      | `app.mountPoints` (`volume-data`)                |
//! | Labels               | `annotations` (names made AC identifiers)        |
//! | StopSignal           | annotation `berth/oci-stop-signal`               |
//!
//! The manifest is built as JSON and parsed by the strict parser, so it is
//! valid by construction or the error says which field broke.
//!
//! ## The image ID a pod manifest gives an OCI image
//! A pod manifest names each app's image by an appc image ID, and appc
//! (types.md, and every reader of it: `actool`, the ACE) accepts only
//! `sha512-`. An OCI image has no ACI whose bytes that could hash, so berth
//! uses the SHA-512 of the image's *manifest* bytes ([`appc_image_id`]):
//! the same bytes whose SHA-256 is the image's digest, which pin its config
//! and every layer. Anyone can check it with `sha512sum` on the manifest
//! blob, it changes exactly when the digest does, and the pod manifest
//! also carries the digest itself (annotation `berth/oci-manifest-digest`).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha512};

use super::spec::ImageConfig;
use crate::error::ManifestError;
use crate::manifest::ImageManifest;
use crate::types::ImageId;
use crate::APPC_SPEC_VERSION;

/// The annotation carrying the image's `StopSignal`.
pub const STOP_SIGNAL_ANNOTATION: &str = "berth/oci-stop-signal";
/// The annotation carrying the image's manifest digest.
pub const MANIFEST_DIGEST_ANNOTATION: &str = "berth/oci-manifest-digest";
/// The annotation carrying the reference the image was fetched by.
pub const REFERENCE_ANNOTATION: &str = "berth/oci-reference";

/// The appc image ID of an OCI image: `sha512-` and the SHA-512 of its
/// manifest's bytes as stored (see the module doc).
pub fn appc_image_id(manifest_bytes: &[u8]) -> ImageId {
    ImageId::from_sha512(&Sha512::digest(manifest_bytes))
}

/// What the manifest is made from, besides the config.
#[derive(Debug, Clone, Default)]
pub struct AppSource<'a> {
    /// Repository name (`registry/repo`), made into the image name.
    pub name: &'a str,
    /// The tag, as the `version` label.
    pub tag: Option<&'a str>,
    /// Extra annotations (already valid AC identifiers as names).
    pub annotations: Vec<(String, String)>,
}

/// Turn anything into an AC identifier (`[a-z0-9]+([-._~/][a-z0-9]+)*`):
/// lowercase, other characters become `-`, separators only between
/// alphanumerics. `None` when nothing alphanumeric is left.
pub fn to_ac_identifier(s: &str, separators: &str) -> Option<String> {
    let mut out = String::new();
    let mut pending: Option<char> = None;
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if let Some(p) = pending.take() {
                if !out.is_empty() {
                    out.push(p);
                }
            }
            out.push(c);
        } else if pending.is_none() {
            pending = Some(if separators.contains(c) { c } else { '-' });
        }
    }
    (!out.is_empty()).then_some(out)
}

/// appc's spelling of a Go architecture (`None`: appc has none).
pub fn appc_arch(arch: &str, variant: Option<&str>) -> Option<&'static str> {
    Some(match (arch, variant) {
        ("amd64", _) => "amd64",
        ("386", _) => "i386",
        ("arm64", _) => "aarch64",
        ("arm", Some("v6")) => "armv6l",
        ("arm", _) => "armv7l",
        ("ppc64", _) => "ppc64",
        ("ppc64le", _) => "ppc64le",
        ("s390x", _) => "s390x",
        _ => return None,
    })
}

/// Split a Docker `User` into (user, group). `group_of` finds a user's
/// primary group in the image (its `/etc/passwd`) when none is given, as
/// Docker does; failing that the group is `0`.
pub fn split_user(user: &str, group_of: &dyn Fn(&str) -> Option<String>) -> (String, String) {
    let user = user.trim();
    if user.is_empty() {
        return ("0".into(), "0".into());
    }
    match user.split_once(':') {
        Some((u, g)) => {
            let u = if u.is_empty() { "0" } else { u };
            let g = if g.is_empty() {
                group_of(u).unwrap_or_else(|| "0".into())
            } else {
                g.to_string()
            };
            (u.to_string(), g)
        }
        None => (
            user.to_string(),
            group_of(user).unwrap_or_else(|| "0".into()),
        ),
    }
}

/// Field `field` of the first `/etc/passwd` line (text `passwd`) whose
/// name or uid is `user` and whose value there `ok` accepts (3: the
/// primary group, 5: the home directory).
pub fn passwd_field<'a>(
    passwd: &'a str,
    user: &str,
    field: usize,
    ok: impl Fn(&str) -> bool,
) -> Option<&'a str> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > field && (f[0] == user || f[2] == user) && ok(f[field])).then(|| f[field])
    })
}

/// The appc image manifest for an OCI image.
pub fn app_manifest(
    src: &AppSource<'_>,
    config: &ImageConfig,
    group_of: &dyn Fn(&str) -> Option<String>,
) -> Result<ImageManifest, ManifestError> {
    let rc = config.config.clone().unwrap_or_default();
    let name = to_ac_identifier(src.name, "-._~/").unwrap_or_else(|| "oci-image".into());
    let mut labels = Vec::new();
    if let Some(t) = src.tag {
        labels.push(json!({"name": "version", "value": t}));
    }
    if let (Some(arch), "linux") = (
        appc_arch(&config.architecture, config.variant.as_deref()),
        config.os.as_str(),
    ) {
        labels.push(json!({"name": "os", "value": "linux"}));
        labels.push(json!({"name": "arch", "value": arch}));
    }

    let mut app = Map::new();
    let argv: Vec<String> = rc
        .entrypoint
        .iter()
        .flatten()
        .chain(rc.cmd.iter().flatten())
        .cloned()
        .collect();
    if !argv.is_empty() {
        app.insert("exec".into(), json!(argv));
    }
    let (user, group) = split_user(rc.user.as_deref().unwrap_or(""), group_of);
    app.insert("user".into(), json!(user));
    app.insert("group".into(), json!(group));
    if let Some(wd) = rc.working_dir.as_deref().filter(|w| !w.is_empty()) {
        app.insert("workingDirectory".into(), json!(wd));
    }
    let mut env = Vec::new();
    let mut seen = BTreeSet::new();
    for e in rc.env.iter().flatten() {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        // Docker lets a later duplicate win; appc wants names unique.
        if seen.insert(k.to_string()) {
            env.push((k.to_string(), v.to_string()));
        } else if let Some(slot) = env.iter_mut().find(|(n, _)| n == k) {
            slot.1 = v.to_string();
        }
    }
    if !env.is_empty() {
        let env: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        app.insert("environment".into(), json!(env));
    }
    let mut ports = Vec::new();
    for p in rc.exposed_ports.iter().flat_map(|m| m.keys()) {
        let (num, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
        let (first, count) = match num.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => (a, Some(b - a + 1)),
                _ => continue,
            },
            None => match num.parse::<u32>() {
                Ok(a) => (a, None),
                Err(_) => continue,
            },
        };
        let proto = proto.to_ascii_lowercase();
        let pname = to_ac_identifier(&format!("{num}-{proto}"), "-").unwrap_or_default();
        let mut port = json!({"name": pname, "protocol": proto, "port": first});
        if let Some(c) = count.filter(|&c| c > 1) {
            port["count"] = json!(c);
        }
        ports.push(port);
    }
    if !ports.is_empty() {
        app.insert("ports".into(), json!(ports));
    }
    let mut mps = Vec::new();
    let mut names = BTreeSet::new();
    for path in rc.volumes.iter().flat_map(|m| m.keys()) {
        let base = to_ac_identifier(&format!("volume-{path}"), "-").unwrap_or_default();
        let mut n = base.clone();
        let mut i = 1;
        while !names.insert(n.clone()) {
            i += 1;
            n = format!("{base}-{i}");
        }
        mps.push(json!({"name": n, "path": path}));
    }
    if !mps.is_empty() {
        app.insert("mountPoints".into(), json!(mps));
    }

    let mut annotations = Vec::new();
    let mut anames = BTreeSet::new();
    for (k, v) in &src.annotations {
        if anames.insert(k.clone()) {
            annotations.push(json!({"name": k, "value": v}));
        }
    }
    if let Some(sig) = rc.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        if anames.insert(STOP_SIGNAL_ANNOTATION.into()) {
            annotations.push(json!({"name": STOP_SIGNAL_ANNOTATION, "value": sig}));
        }
    }
    for (k, v) in rc.labels.iter().flatten() {
        if let Some(n) = to_ac_identifier(k, "-._~/") {
            if anames.insert(n.clone()) {
                annotations.push(json!({"name": n, "value": v}));
            }
        }
    }

    let mut m = json!({
        "acKind": "ImageManifest",
        "acVersion": APPC_SPEC_VERSION,
        "name": name,
        "app": Value::Object(app),
    });
    if !labels.is_empty() {
        m["labels"] = json!(labels);
    }
    if !annotations.is_empty() {
        m["annotations"] = json!(annotations);
    }
    ImageManifest::from_json(m.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(
            to_ac_identifier("localhost:5000/team/App", "-._~/").unwrap(),
            "localhost-5000/team/app"
        );
        assert_eq!(to_ac_identifier("a__b", "-._~/").unwrap(), "a_b");
        assert_eq!(to_ac_identifier("/data/x", "-").unwrap(), "data-x");
        assert_eq!(to_ac_identifier("--", "-"), None);
    }

    #[test]
    fn image_id_is_sha512_of_the_manifest() {
        let id = appc_image_id(b"{}");
        // sha512 of the two bytes `{}`, as `printf '{}' | sha512sum` says.
        assert_eq!(
            id.as_str(),
            "sha512-27c74670adb75075fad058d5ceaf7b20c4e7786c83bae8a32f626f9782af34c9\
             a33c2046ef60fd2a7878d378e29fec851806bbd9a67878f3a9f1cda4830763fd"
        );
        assert_ne!(appc_image_id(b"{} "), id);
    }

    #[test]
    fn users() {
        let passwd = |u: &str| (u == "www").then(|| "33".to_string());
        assert_eq!(split_user("", &passwd), ("0".into(), "0".into()));
        assert_eq!(split_user("www", &passwd), ("www".into(), "33".into()));
        assert_eq!(split_user("1000", &passwd), ("1000".into(), "0".into()));
        assert_eq!(split_user("1000:50", &passwd), ("1000".into(), "50".into()));
        assert_eq!(split_user("www:", &passwd), ("www".into(), "33".into()));
    }

    #[test]
    fn config_becomes_app() {
        let c: ImageConfig = serde_json::from_str(
            r#"{"architecture":"arm64","os":"linux","config":{
                "User":"1000:1000","Env":["PATH=/bin","A=1","A=2"],
                "Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],
                "WorkingDir":"/srv","ExposedPorts":{"80/tcp":{},"53/udp":{},"8000-8002/tcp":{}},
                "Volumes":{"/data":{},"/var/log":{}},
                "Labels":{"org.opencontainers.image.title":"T","Weird Key!":"w"},
                "StopSignal":"SIGINT"}}"#,
        )
        .unwrap();
        let src = AppSource {
            name: "localhost:5000/x/y",
            tag: Some("v1"),
            annotations: vec![(MANIFEST_DIGEST_ANNOTATION.into(), "sha256:00".into())],
        };
        let m = app_manifest(&src, &c, &|_| None).unwrap();
        let j: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(j["name"], "localhost-5000/x/y");
        let app = &j["app"];
        assert_eq!(app["exec"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(app["user"], "1000");
        assert_eq!(app["group"], "1000");
        assert_eq!(app["workingDirectory"], "/srv");
        assert_eq!(
            app["environment"],
            json!([{"name":"PATH","value":"/bin"},{"name":"A","value":"2"}])
        );
        let ports = app["ports"].as_array().unwrap();
        assert!(ports.contains(&json!({"name":"80-tcp","protocol":"tcp","port":80})));
        assert!(ports.contains(&json!({"name":"53-udp","protocol":"udp","port":53})));
        assert!(
            ports.contains(&json!({"name":"8000-8002-tcp","protocol":"tcp","port":8000,"count":3}))
        );
        assert_eq!(
            app["mountPoints"],
            json!([{"name":"volume-data","path":"/data"},{"name":"volume-var-log","path":"/var/log"}])
        );
        let ann = j["annotations"].as_array().unwrap();
        assert!(ann.contains(&json!({"name": STOP_SIGNAL_ANNOTATION, "value": "SIGINT"})));
        assert!(ann.contains(&json!({"name": "org.opencontainers.image.title", "value": "T"})));
        assert!(ann.contains(&json!({"name": "weird-key", "value": "w"})));
        let labels = j["labels"].as_array().unwrap();
        assert!(labels.contains(&json!({"name":"arch","value":"aarch64"})));
        assert!(labels.contains(&json!({"name":"version","value":"v1"})));
    }

    #[test]
    fn empty_config_is_still_an_app() {
        let m = app_manifest(&AppSource::default(), &ImageConfig::default(), &|_| None).unwrap();
        let app = m.app.unwrap();
        assert!(app.exec.is_none());
        assert_eq!(app.user, "0");
        assert_eq!(m.name.as_str(), "oci-image");
    }
}
