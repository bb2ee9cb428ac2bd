//! Image and pod manifests (`spec/aci.md` "Image Manifest Schema",
//! `spec/pods.md` "Pod Manifest Schema"), parsed strictly.
//!
//! Parsing walks the JSON document itself rather than using serde's derive,
//! so that it can report *every* problem at once, each with the JSON path of
//! the field and the rule it breaks (`app.ports[0].port: 0 is out of range
//! 1-65535`): `berth image validate` prints one line per problem. The result
//! is made of the validated types of [`crate::types`] and
//! [`crate::isolator`].
//!
//! Agreement with the reference (`actool validate`, the Go code in
//! `schema/`): unknown fields are ignored, field names match
//! case-insensitively when there is no exact match, and `null` is read as an
//! absent field, because Go's `encoding/json` does all three. Where the spec
//! text demands something the Go code never checked (a pod app's image ID,
//! a port's name and protocol, unique port and mount point names, volume
//! references...), we follow the spec; each such rule is noted on its field.
//!
//! Output (`to_json`) writes the fields in the spec's order and omits absent
//! optional fields and empty lists (which the spec treats as absent), so
//! parse → serialise → parse gives back an equal value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{ManifestError, ValueError};
use crate::isolator::{parse_isolators, Isolator};
use crate::types::{
    AcIdentifier, AcKind, AcName, AcVersion, Annotation, Annotations, AppName, EnvVar, EnvVarName,
    Environment, Exec, ImageId, Label, Labels, Port,
};
use crate::walk::{field, index, parse_json, Cx, Obj};

/// An image manifest: the `manifest` file at the root of an ACI.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "acKind", rename = "ImageManifest", rename_all = "camelCase")]
pub struct ImageManifest {
    pub ac_version: AcVersion,
    pub name: AcIdentifier,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    /// Absolute paths (the spec's rule; the reference does not check).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path_whitelist: Vec<String>,
}

/// How to run an image (the `app` object of an image manifest, or a pod
/// app's override of it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_handlers: Vec<EventHandler>,
    /// User name, UID, or absolute path of a file whose owner to use.
    pub user: String,
    /// Group name, GID, or absolute path of a file whose group to use.
    pub group: String,
    #[serde(rename = "supplementaryGIDs", skip_serializing_if = "Vec::is_empty")]
    pub supplementary_gids: Vec<u32>,
    /// Absolute path; `None` means `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(skip_serializing_if = "Environment::is_empty")]
    pub environment: Environment,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolators: Vec<Isolator>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_labels: BTreeMap<String, String>,
}

/// When an event handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventHandlerName {
    PreStart,
    PostStop,
}

impl EventHandlerName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventHandlerName::PreStart => "pre-start",
            EventHandlerName::PostStop => "post-stop",
        }
    }
}

impl fmt::Display for EventHandlerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventHandlerName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s {
            "pre-start" => Ok(EventHandlerName::PreStart),
            "post-stop" => Ok(EventHandlerName::PostStop),
            other => Err(ValueError::new(format!(
                "{other:?} is not an event (expected \"pre-start\" or \"post-stop\")"
            ))),
        }
    }
}

impl Serialize for EventHandlerName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A command run on an app's life-cycle event. Its `exec` is required (the
/// reference lets it be missing, which leaves nothing to run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventHandler {
    pub name: EventHandlerName,
    pub exec: Exec,
}

/// A place in the app's file system where it expects a volume. Names are
/// unique within an app (they are keys for mounts; the reference does not
/// check), the path is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub name: AcName,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// An image this image is layered on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub image_name: AcIdentifier,
    #[serde(rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<ImageId>,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A pod manifest: the apps of a pod and what they share.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "acKind", rename = "PodManifest", rename_all = "camelCase")]
pub struct PodManifest {
    pub ac_version: AcVersion,
    /// Required, may be empty; app names are unique.
    pub apps: Vec<RuntimeApp>,
    /// Names are unique.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolators: Vec<Isolator>,
    #[serde(skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
    /// Ports exposed on the host; names unique.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ExposedPort>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_labels: BTreeMap<String, String>,
}

/// One app of a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeApp {
    pub name: AppName,
    pub image: RuntimeImage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(rename = "readOnlyRootFS", skip_serializing_if = "Option::is_none")]
    pub read_only_root_fs: Option<bool>,
    /// Each names a pod volume, unless it carries its own `appVolume`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "Annotations::is_empty")]
    pub annotations: Annotations,
}

/// The image of a pod app. `id` is required (the spec's rule; the
/// reference lets it be missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeImage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<AcIdentifier>,
    pub id: ImageId,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// A volume mounted into an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub volume: AcName,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_volume: Option<Volume>,
}

/// The kind of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeKind {
    /// A directory of the host, bind-mounted.
    Host,
    /// A new empty directory that lives as long as the pod.
    Empty,
}

/// A volume of a pod (or a mount's own `appVolume`).
///
/// `host`: `source` is an absolute path; `mode`/`uid`/`gid` are not allowed.
/// `empty`: no `source`; `mode` (octal, default `0755`), `uid` and `gid`
/// (default 0). The reference never checked that `mode` is octal nor that
/// ids are not negative; we do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: AcName,
    pub kind: VolumeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

impl Volume {
    /// The permission bits of an `empty` volume (default 0o755).
    pub fn mode_bits(&self) -> u32 {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o755)
    }
}

/// A port exposed on the host. `hostPort` is 1-65535 and `hostIP`, when
/// given, an IPv4 address in dotted-quad form, as the spec says (the
/// reference takes port 0 and IPv6 addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExposedPort {
    pub name: AcName,
    pub host_port: u16,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_port: Option<Port>,
}

/// Either kind of manifest, told apart by `acKind`.
// Unboxed on purpose: callers match on the manifests directly, and a
// manifest is parsed once per command, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AnyManifest {
    Image(ImageManifest),
    Pod(PodManifest),
}

// ---------------------------------------------------------------------------
// Entry points

fn top<'v>(cx: &mut Cx, doc: &'v Value) -> Option<Obj<'v>> {
    match doc {
        Value::Object(_) => cx.object(doc, ""),
        other => {
            cx.err(
                "",
                format!(
                    "a manifest must be a JSON object, found {}",
                    crate::walk::kind_of(other)
                ),
            );
            None
        }
    }
}

fn check_kind(cx: &mut Cx, obj: &Obj<'_>, want: AcKind) {
    if let Some(kind) = obj.must(cx, "acKind", |cx, v, p| cx.parse_str::<AcKind>(v, p)) {
        if kind != want {
            cx.err(
                &obj.path_of("acKind"),
                format!("expected \"{want}\", found \"{kind}\""),
            );
        }
    }
}

impl ImageManifest {
    /// The `acKind` of image manifests.
    pub const AC_KIND: AcKind = AcKind::ImageManifest;

    /// Parses and validates an image manifest; the error lists every problem.
    pub fn from_json(bytes: &[u8]) -> Result<ImageManifest, ManifestError> {
        ImageManifest::from_value(&parse_json(bytes)?)
    }

    /// As [`ImageManifest::from_json`], from an already parsed document.
    pub fn from_value(doc: &Value) -> Result<ImageManifest, ManifestError> {
        let mut cx = Cx::default();
        let parsed = top(&mut cx, doc).and_then(|obj| {
            check_kind(&mut cx, &obj, AcKind::ImageManifest);
            parse_image_manifest(&mut cx, &obj)
        });
        cx.finish(parsed)
    }

    pub fn to_json(&self) -> String {
        to_string(self, false)
    }

    pub fn to_json_pretty(&self) -> String {
        to_string(self, true)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl PodManifest {
    /// The `acKind` of pod manifests.
    pub const AC_KIND: AcKind = AcKind::PodManifest;

    /// Parses and validates a pod manifest; the error lists every problem.
    pub fn from_json(bytes: &[u8]) -> Result<PodManifest, ManifestError> {
        PodManifest::from_value(&parse_json(bytes)?)
    }

    /// As [`PodManifest::from_json`], from an already parsed document.
    pub fn from_value(doc: &Value) -> Result<PodManifest, ManifestError> {
        let mut cx = Cx::default();
        let parsed = top(&mut cx, doc).and_then(|obj| {
            check_kind(&mut cx, &obj, AcKind::PodManifest);
            parse_pod_manifest(&mut cx, &obj)
        });
        cx.finish(parsed)
    }

    pub fn to_json(&self) -> String {
        to_string(self, false)
    }

    pub fn to_json_pretty(&self) -> String {
        to_string(self, true)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The app of that name.
    pub fn app(&self, name: &str) -> Option<&RuntimeApp> {
        self.apps.iter().find(|a| a.name == name)
    }

    /// The pod volume of that name.
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.name == name)
    }
}

impl AnyManifest {
    /// Parses either kind of manifest, chosen by `acKind`. A missing or
    /// unknown `acKind` is a problem (and nothing else is checked then).
    pub fn from_json(bytes: &[u8]) -> Result<AnyManifest, ManifestError> {
        AnyManifest::from_value(&parse_json(bytes)?)
    }

    pub fn from_value(doc: &Value) -> Result<AnyManifest, ManifestError> {
        let mut cx = Cx::default();
        let Some(obj) = top(&mut cx, doc) else {
            return cx.finish(None);
        };
        match obj.must(&mut cx, "acKind", |cx, v, p| cx.parse_str::<AcKind>(v, p)) {
            None => cx.finish(None),
            Some(AcKind::ImageManifest) => ImageManifest::from_value(doc).map(AnyManifest::Image),
            Some(AcKind::PodManifest) => PodManifest::from_value(doc).map(AnyManifest::Pod),
        }
    }

    pub fn kind(&self) -> AcKind {
        match self {
            AnyManifest::Image(_) => AcKind::ImageManifest,
            AnyManifest::Pod(_) => AcKind::PodManifest,
        }
    }

    pub fn to_json(&self) -> String {
        match self {
            AnyManifest::Image(m) => m.to_json(),
            AnyManifest::Pod(m) => m.to_json(),
        }
    }

    pub fn to_json_pretty(&self) -> String {
        match self {
            AnyManifest::Image(m) => m.to_json_pretty(),
            AnyManifest::Pod(m) => m.to_json_pretty(),
        }
    }
}

fn to_string<T: Serialize>(v: &T, pretty: bool) -> String {
    // Every field serialises to plain JSON (strings, numbers, string-keyed
    // maps), so this cannot fail.
    let r = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    r.unwrap_or_default()
}

macro_rules! deserialize_via_value {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                <$ty>::from_value(&v).map_err(|e| serde::de::Error::custom(e.lines().join("; ")))
            }
        }
    };
}
deserialize_via_value!(ImageManifest);
deserialize_via_value!(PodManifest);
deserialize_via_value!(AnyManifest);

// ---------------------------------------------------------------------------
// The walk

fn string(cx: &mut Cx, v: &Value, p: &str) -> Option<String> {
    cx.string(v, p).map(str::to_owned)
}

fn non_empty_string(cx: &mut Cx, v: &Value, p: &str) -> Option<String> {
    let s = cx.string(v, p)?;
    if s.is_empty() {
        cx.err(p, "must not be empty");
        return None;
    }
    Some(s.to_owned())
}

fn absolute_path(cx: &mut Cx, v: &Value, p: &str) -> Option<String> {
    let s = cx.string(v, p)?;
    if !s.starts_with('/') {
        cx.err(p, format!("{s:?} is not an absolute path"));
        return None;
    }
    Some(s.to_owned())
}

fn report(cx: &mut Cx, path: &str, problems: Vec<(usize, String)>) -> bool {
    let ok = problems.is_empty();
    for (i, msg) in problems {
        cx.err(&index(path, i), msg);
    }
    ok
}

/// Reports names that appear twice in the JSON list `v`, at the second
/// one's `name`. Works on the raw elements so that a duplicate is reported
/// even when some element is invalid for another reason.
fn unique_names(cx: &mut Cx, v: &Value, path: &str, what: &str) -> bool {
    let Value::Array(items) = v else {
        return true;
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else { continue };
        let obj = Obj {
            map,
            path: index(path, i),
        };
        if let Some(Value::String(n)) = obj.get("name") {
            if let Some(first) = seen.insert(n.as_str(), i) {
                cx.err(
                    &obj.path_of("name"),
                    format!("duplicate {what} {n:?} (first at [{first}])"),
                );
                ok = false;
            }
        }
    }
    ok
}

/// A list whose elements' `name`s must be unique.
fn unique_list<T>(
    cx: &mut Cx,
    v: &Value,
    path: &str,
    what: &str,
    each: impl FnMut(&mut Cx, &Value, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let items = cx.list(v, path, each);
    let unique = unique_names(cx, v, path, what);
    items.filter(|_| unique)
}

pub(crate) fn parse_labels(cx: &mut Cx, v: &Value, path: &str) -> Option<Labels> {
    let items = cx.list(v, path, |cx, v, p| {
        let obj = cx.object(v, p)?;
        let name = obj.must(cx, "name", |cx, v, p| cx.parse_str::<AcIdentifier>(v, p));
        let value = obj.opt(cx, "value", string).flatten().unwrap_or_default();
        Some(Label::new(name?, value))
    })?;
    if !report(cx, path, Labels::problems(&items)) {
        return None;
    }
    Labels::new(items).ok()
}

fn parse_annotations(cx: &mut Cx, v: &Value, path: &str) -> Option<Annotations> {
    let items = cx.list(v, path, |cx, v, p| {
        let obj = cx.object(v, p)?;
        let name = obj.must(cx, "name", |cx, v, p| cx.parse_str::<AcIdentifier>(v, p));
        let value = obj.opt(cx, "value", string).flatten().unwrap_or_default();
        Some(Annotation::new(name?, value))
    })?;
    if !report(cx, path, Annotations::problems(&items)) {
        return None;
    }
    Annotations::new(items).ok()
}

fn parse_exec(cx: &mut Cx, v: &Value, path: &str) -> Option<Exec> {
    let argv = cx.list(v, path, string)?;
    match Exec::new(argv) {
        Ok(e) => Some(e),
        Err(e) => {
            cx.err(path, e.to_string());
            None
        }
    }
}

fn parse_port(cx: &mut Cx, v: &Value, path: &str) -> Option<Port> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let name = obj.must(cx, "name", |cx, v, p| cx.parse_str::<AcName>(v, p));
    let protocol = obj.must(cx, "protocol", non_empty_string);
    let port = obj.must(cx, "port", |cx, v, p| {
        let n = cx.int(v, p, 1, 65535)?;
        u32::try_from(n).ok()
    });
    let count = obj
        .opt(cx, "count", |cx, v, p| {
            let n = cx.int(v, p, 1, 65535)?;
            u32::try_from(n).ok()
        })
        .flatten();
    let socket = obj
        .opt(cx, "socketActivated", |cx, v, p| cx.boolean(v, p))
        .flatten();
    if let (Some(p), Some(c)) = (port, count) {
        let p16 = u16::try_from(p).unwrap_or(u16::MAX);
        if let Err(e) = Port::check_count(p16, Some(c)) {
            cx.err(&obj.path_of("count"), e.to_string());
        }
    }
    if cx.count() != before {
        return None;
    }
    match Port::new(name?, protocol?, port?, count, socket) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.err(path, e.to_string());
            None
        }
    }
}

fn parse_app(cx: &mut Cx, v: &Value, path: &str) -> Option<App> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let exec = obj.opt(cx, "exec", parse_exec).flatten();
    let event_handlers = obj
        .opt(cx, "eventHandlers", |cx, v, p| {
            unique_list(cx, v, p, "event handler", |cx, v, p| {
                let o = cx.object(v, p)?;
                let name = o.must(cx, "name", |cx, v, p| {
                    cx.parse_str::<EventHandlerName>(v, p)
                });
                let exec = o.must(cx, "exec", parse_exec);
                Some(EventHandler {
                    name: name?,
                    exec: exec?,
                })
            })
        })
        .flatten()
        .unwrap_or_default();
    let user = obj.must(cx, "user", non_empty_string);
    let group = obj.must(cx, "group", non_empty_string);
    let supplementary_gids = obj
        .opt(cx, "supplementaryGIDs", |cx, v, p| {
            cx.list(v, p, |cx, v, p| {
                u32::try_from(cx.int(v, p, 0, i64::from(u32::MAX))?).ok()
            })
        })
        .flatten()
        .unwrap_or_default();
    let working_directory = obj
        .opt(cx, "workingDirectory", |cx, v, p| match v {
            Value::String(s) if s.is_empty() => Some(None),
            _ => absolute_path(cx, v, p).map(Some),
        })
        .flatten()
        .flatten();
    let environment = obj
        .opt(cx, "environment", |cx, v, p| {
            let items = cx.list(v, p, |cx, v, p| {
                let o = cx.object(v, p)?;
                let name = o.must(cx, "name", |cx, v, p| cx.parse_str::<EnvVarName>(v, p));
                let value = o.opt(cx, "value", string).flatten().unwrap_or_default();
                Some(EnvVar { name: name?, value })
            })?;
            if !report(cx, p, Environment::problems(&items)) {
                return None;
            }
            Environment::new(items).ok()
        })
        .flatten()
        .unwrap_or_default();
    let mount_points = obj
        .opt(cx, "mountPoints", |cx, v, p| {
            unique_list(cx, v, p, "mount point", |cx, v, p| {
                let o = cx.object(v, p)?;
                let name = o.must(cx, "name", |cx, v, p| cx.parse_str::<AcName>(v, p));
                let path = o.must(cx, "path", non_empty_string);
                let read_only = o.opt(cx, "readOnly", |cx, v, p| cx.boolean(v, p)).flatten();
                Some(MountPoint {
                    name: name?,
                    path: path?,
                    read_only,
                })
            })
        })
        .flatten()
        .unwrap_or_default();
    let ports = obj
        .opt(cx, "ports", |cx, v, p| {
            unique_list(cx, v, p, "port", parse_port)
        })
        .flatten()
        .unwrap_or_default();
    let isolators = obj
        .opt(cx, "isolators", parse_isolators)
        .flatten()
        .unwrap_or_default();
    let user_annotations = obj
        .opt(cx, "userAnnotations", |cx, v, p| cx.string_map(v, p))
        .flatten()
        .unwrap_or_default();
    let user_labels = obj
        .opt(cx, "userLabels", |cx, v, p| cx.string_map(v, p))
        .flatten()
        .unwrap_or_default();
    if cx.count() != before {
        return None;
    }
    Some(App {
        exec,
        event_handlers,
        user: user?,
        group: group?,
        supplementary_gids,
        working_directory,
        environment,
        mount_points,
        ports,
        isolators,
        user_annotations,
        user_labels,
    })
}

fn parse_dependency(cx: &mut Cx, v: &Value, path: &str) -> Option<Dependency> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let image_name = obj.must(cx, "imageName", |cx, v, p| {
        cx.parse_str::<AcIdentifier>(v, p)
    });
    let image_id = obj
        .opt(cx, "imageID", |cx, v, p| cx.parse_str::<ImageId>(v, p))
        .flatten();
    let labels = obj
        .opt(cx, "labels", parse_labels)
        .flatten()
        .unwrap_or_default();
    let size = obj
        .opt(cx, "size", |cx, v, p| {
            u64::try_from(cx.int(v, p, 0, i64::MAX)?).ok()
        })
        .flatten();
    if cx.count() != before {
        return None;
    }
    Some(Dependency {
        image_name: image_name?,
        image_id,
        labels,
        size,
    })
}

fn parse_ac_version(cx: &mut Cx, obj: &Obj<'_>) -> Option<AcVersion> {
    obj.must(cx, "acVersion", |cx, v, p| cx.parse_str::<AcVersion>(v, p))
}

fn parse_image_manifest(cx: &mut Cx, obj: &Obj<'_>) -> Option<ImageManifest> {
    let before = cx.count();
    let ac_version = parse_ac_version(cx, obj);
    let name = obj.must(cx, "name", |cx, v, p| cx.parse_str::<AcIdentifier>(v, p));
    let labels = obj
        .opt(cx, "labels", parse_labels)
        .flatten()
        .unwrap_or_default();
    let app = obj.opt(cx, "app", parse_app).flatten();
    let annotations = obj
        .opt(cx, "annotations", parse_annotations)
        .flatten()
        .unwrap_or_default();
    let dependencies = obj
        .opt(cx, "dependencies", |cx, v, p| {
            cx.list(v, p, parse_dependency)
        })
        .flatten()
        .unwrap_or_default();
    let path_whitelist = obj
        .opt(cx, "pathWhitelist", |cx, v, p| cx.list(v, p, absolute_path))
        .flatten()
        .unwrap_or_default();
    if cx.count() != before {
        return None;
    }
    Some(ImageManifest {
        ac_version: ac_version?,
        name: name?,
        labels,
        app,
        annotations,
        dependencies,
        path_whitelist,
    })
}

fn parse_volume(cx: &mut Cx, v: &Value, path: &str) -> Option<Volume> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let name = obj.must(cx, "name", |cx, v, p| cx.parse_str::<AcName>(v, p));
    let kind = obj.must(cx, "kind", |cx, v, p| match cx.string(v, p)? {
        "host" => Some(VolumeKind::Host),
        "empty" => Some(VolumeKind::Empty),
        other => {
            cx.err(
                p,
                format!("{other:?} is not a volume kind (expected \"host\" or \"empty\")"),
            );
            None
        }
    });
    let source = obj.opt(cx, "source", string).flatten();
    let read_only = obj
        .opt(cx, "readOnly", |cx, v, p| cx.boolean(v, p))
        .flatten();
    let recursive = obj
        .opt(cx, "recursive", |cx, v, p| cx.boolean(v, p))
        .flatten();
    let mode = obj.opt(cx, "mode", |cx, v, p| {
        let s = cx.string(v, p)?;
        let ok = !s.is_empty()
            && s.len() <= 5
            && s.bytes().all(|b| (b'0'..=b'7').contains(&b))
            && u32::from_str_radix(s, 8).is_ok_and(|m| m <= 0o7777);
        if !ok {
            cx.err(
                p,
                format!("{s:?} is not an octal permission mode (like \"0755\")"),
            );
            return None;
        }
        Some(s.to_owned())
    });
    let id =
        |cx: &mut Cx, v: &Value, p: &str| u32::try_from(cx.int(v, p, 0, i64::from(u32::MAX))?).ok();
    let uid = obj.opt(cx, "uid", id);
    let gid = obj.opt(cx, "gid", id);
    let (mode, uid, gid) = (mode.flatten(), uid.flatten(), gid.flatten());
    match kind {
        Some(VolumeKind::Host) => {
            match source.as_deref() {
                None | Some("") => cx.err(&obj.path_of("source"), "is required for a host volume"),
                Some(s) if !s.starts_with('/') => cx.err(
                    &obj.path_of("source"),
                    format!("{s:?} is not an absolute path"),
                ),
                Some(_) => {}
            }
            for (set, f) in [
                (mode.is_some(), "mode"),
                (uid.is_some(), "uid"),
                (gid.is_some(), "gid"),
            ] {
                if set {
                    cx.err(&obj.path_of(f), "is only allowed for empty volumes");
                }
            }
        }
        Some(VolumeKind::Empty) if source.as_deref().is_some_and(|s| !s.is_empty()) => {
            cx.err(&obj.path_of("source"), "is not allowed for an empty volume");
        }
        Some(VolumeKind::Empty) | None => {}
    }
    if cx.count() != before {
        return None;
    }
    Some(Volume {
        name: name?,
        kind: kind?,
        source: source.filter(|s| !s.is_empty()),
        read_only,
        recursive,
        mode,
        uid,
        gid,
    })
}

fn parse_runtime_app(cx: &mut Cx, v: &Value, path: &str) -> Option<RuntimeApp> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let name = obj.must(cx, "name", |cx, v, p| cx.parse_str::<AppName>(v, p));
    let image = obj.must(cx, "image", |cx, v, p| {
        let o = cx.object(v, p)?;
        let name = o
            .opt(cx, "name", |cx, v, p| cx.parse_str::<AcIdentifier>(v, p))
            .flatten();
        let id = o.must(cx, "id", |cx, v, p| cx.parse_str::<ImageId>(v, p));
        let labels = o
            .opt(cx, "labels", parse_labels)
            .flatten()
            .unwrap_or_default();
        Some(RuntimeImage {
            name,
            id: id?,
            labels,
        })
    });
    let app = obj.opt(cx, "app", parse_app).flatten();
    let read_only_root_fs = obj
        .opt(cx, "readOnlyRootFS", |cx, v, p| cx.boolean(v, p))
        .flatten();
    let mounts = obj
        .opt(cx, "mounts", |cx, v, p| {
            cx.list(v, p, |cx, v, p| {
                let o = cx.object(v, p)?;
                let volume = o.must(cx, "volume", |cx, v, p| cx.parse_str::<AcName>(v, p));
                let path = o.must(cx, "path", non_empty_string);
                let app_volume = o.opt(cx, "appVolume", parse_volume).flatten();
                Some(Mount {
                    volume: volume?,
                    path: path?,
                    app_volume,
                })
            })
        })
        .flatten()
        .unwrap_or_default();
    let annotations = obj
        .opt(cx, "annotations", parse_annotations)
        .flatten()
        .unwrap_or_default();
    if cx.count() != before {
        return None;
    }
    Some(RuntimeApp {
        name: name?,
        image: image?,
        app,
        read_only_root_fs,
        mounts,
        annotations,
    })
}

fn parse_exposed_port(cx: &mut Cx, v: &Value, path: &str) -> Option<ExposedPort> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let name = obj.must(cx, "name", |cx, v, p| cx.parse_str::<AcName>(v, p));
    let host_port = obj.must(cx, "hostPort", |cx, v, p| {
        u16::try_from(cx.int(v, p, 1, 65535)?).ok()
    });
    let host_ip = obj
        .opt(cx, "hostIP", |cx, v, p| {
            let s = cx.string(v, p)?;
            match s.parse::<Ipv4Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.err(
                        p,
                        format!("{s:?} is not an IPv4 address in dotted-quad form"),
                    );
                    None
                }
            }
        })
        .flatten();
    let pod_port = obj.opt(cx, "podPort", parse_port).flatten();
    if cx.count() != before {
        return None;
    }
    Some(ExposedPort {
        name: name?,
        host_port: host_port?,
        host_ip,
        pod_port,
    })
}

fn parse_pod_manifest(cx: &mut Cx, obj: &Obj<'_>) -> Option<PodManifest> {
    let before = cx.count();
    let ac_version = parse_ac_version(cx, obj);
    let apps = obj.must(cx, "apps", |cx, v, p| {
        unique_list(cx, v, p, "app", parse_runtime_app)
    });
    // `None` when invalid; absent is an empty list.
    let volumes = obj
        .opt(cx, "volumes", |cx, v, p| {
            unique_list(cx, v, p, "volume", parse_volume)
        })
        .map(Option::unwrap_or_default);
    let isolators = obj
        .opt(cx, "isolators", parse_isolators)
        .flatten()
        .unwrap_or_default();
    let annotations = obj
        .opt(cx, "annotations", parse_annotations)
        .flatten()
        .unwrap_or_default();
    let ports = obj
        .opt(cx, "ports", |cx, v, p| {
            unique_list(cx, v, p, "port", parse_exposed_port)
        })
        .flatten()
        .unwrap_or_default();
    let user_annotations = obj
        .opt(cx, "userAnnotations", |cx, v, p| cx.string_map(v, p))
        .flatten()
        .unwrap_or_default();
    let user_labels = obj
        .opt(cx, "userLabels", |cx, v, p| cx.string_map(v, p))
        .flatten()
        .unwrap_or_default();
    // Mounts name a pod volume unless they bring their own.
    if let (Some(apps), Some(vols)) = (&apps, &volumes) {
        for (i, app) in apps.iter().enumerate() {
            for (j, m) in app.mounts.iter().enumerate() {
                if m.app_volume.is_none() && !vols.iter().any(|v| v.name == m.volume) {
                    cx.err(
                        &field(&index(&field(&index("apps", i), "mounts"), j), "volume"),
                        format!("no volume named {:?} in volumes", m.volume.as_str()),
                    );
                }
            }
        }
    }
    if cx.count() != before {
        return None;
    }
    Some(PodManifest {
        ac_version: ac_version?,
        apps: apps?,
        volumes: volumes.unwrap_or_default(),
        isolators,
        annotations,
        ports,
        user_annotations,
        user_labels,
    })
}
