//! Isolators (`spec/ace.md`, "Isolators"): every isolator the spec defines,
//! parsed into a typed value, plus the rules on a *set* of isolators (which
//! may appear once, which exclude each other).
//!
//! An isolator whose name we do not know is kept verbatim (name and raw JSON
//! value): the spec lets executors ignore isolators they do not understand,
//! so refusing them would make images from newer tools unusable. (The Go
//! reference, and so `actool`, refuses unknown isolators inside an `app`,
//! which contradicts the spec; we do not copy that.)
//!
//! Where the spec text is stricter than the Go reference we follow the text:
//! capability names are checked against the kernel's list, retain and remove
//! capability sets exclude each other, seccomp entries must look like syscall
//! names or `@scope/name` wildcards, resource quantities cannot be negative,
//! and `os/linux/apparmor-profile` (added to the spec after the reference
//! code was packaged) is checked too.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use crate::error::{ManifestError, ValueError};
use crate::quantity::Quantity;
use crate::types::AcIdentifier;
use crate::walk::{field, index, Cx};

pub const RESOURCE_CPU: &str = "resource/cpu";
pub const RESOURCE_MEMORY: &str = "resource/memory";
pub const RESOURCE_BLOCK_BANDWIDTH: &str = "resource/block-bandwidth";
pub const RESOURCE_BLOCK_IOPS: &str = "resource/block-iops";
pub const RESOURCE_NETWORK_BANDWIDTH: &str = "resource/network-bandwidth";
pub const LINUX_CAPABILITIES_RETAIN_SET: &str = "os/linux/capabilities-retain-set";
pub const LINUX_CAPABILITIES_REMOVE_SET: &str = "os/linux/capabilities-remove-set";
pub const LINUX_SECCOMP_RETAIN_SET: &str = "os/linux/seccomp-retain-set";
pub const LINUX_SECCOMP_REMOVE_SET: &str = "os/linux/seccomp-remove-set";
pub const LINUX_NO_NEW_PRIVILEGES: &str = "os/linux/no-new-privileges";
pub const LINUX_OOM_SCORE_ADJ: &str = "os/linux/oom-score-adj";
pub const LINUX_CPU_SHARES: &str = "os/linux/cpu-shares";
pub const LINUX_SELINUX_CONTEXT: &str = "os/linux/selinux-context";
pub const LINUX_APPARMOR_PROFILE: &str = "os/linux/apparmor-profile";
pub const UNIX_SYSCTL: &str = "os/unix/sysctl";

/// The Linux capabilities, in kernel order (`CAP_CHOWN` is 0).
pub const LINUX_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A Linux capability name from [`LINUX_CAPABILITIES`], e.g. `CAP_NET_ADMIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability(&'static str);

impl Capability {
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The kernel's number for this capability.
    pub fn number(self) -> u32 {
        let i = LINUX_CAPABILITIES
            .iter()
            .position(|c| *c == self.0)
            .unwrap_or_default();
        u32::try_from(i).unwrap_or_default()
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for Capability {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match LINUX_CAPABILITIES.iter().find(|c| **c == s) {
            Some(c) => Ok(Capability(c)),
            None => Err(ValueError::new(format!(
                "{s:?} is not a known Linux capability (like \"CAP_NET_ADMIN\")"
            ))),
        }
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// An entry of a seccomp set: a syscall name (`[a-z0-9_]+`) or a scoped
/// wildcard `@scope/name` (e.g. `@appc.io/all`, `@docker/default-whitelist`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeccompEntry(String);

impl SeccompEntry {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Some((scope, name))` for a wildcard like `@appc.io/all`.
    pub fn wildcard(&self) -> Option<(&str, &str)> {
        self.0.strip_prefix('@').and_then(|w| w.split_once('/'))
    }
}

impl FromStr for SeccompEntry {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let ok = if let Some(w) = s.strip_prefix('@') {
            w.split_once('/').is_some_and(|(scope, name)| {
                !scope.is_empty()
                    && !name.is_empty()
                    && !w.chars().any(|c| c.is_whitespace() || c.is_control())
            })
        } else {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if ok {
            Ok(SeccompEntry(s.to_owned()))
        } else {
            Err(ValueError::new(format!(
                "{s:?} is neither a syscall name (like \"reboot\") nor a wildcard (like \"@appc.io/all\")"
            )))
        }
    }
}

impl Serialize for SeccompEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// An errno name for seccomp: `E` then upper-case letters and digits
/// (`ENOTSUP`, `E2BIG`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Errno(String);

impl Errno {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Errno {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let ok = s.starts_with('E')
            && s.len() > 1
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(Errno(s.to_owned()))
        } else {
            Err(ValueError::new(format!(
                "{s:?} is not an errno name (\"E\" then upper-case letters or digits, like \"ENOTSUP\")"
            )))
        }
    }
}

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The value of a resource isolator.
///
/// For `resource/cpu` and `resource/memory`, `default` must be false (or
/// absent); for the bandwidth/iops ones it must be true and `request` absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Resource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Quantity>,
}

impl Resource {
    /// The request, which defaults to the limit when absent.
    pub fn effective_request(&self) -> Option<&Quantity> {
        self.request.as_ref().or(self.limit.as_ref())
    }
}

/// The value of a capabilities retain/remove set: never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilitySet {
    pub set: Vec<Capability>,
}

/// The value of a seccomp retain/remove set: `set` never empty; `errno`
/// absent (or `""`, read as absent) means "kill with SIGSYS".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeccompSet {
    pub set: Vec<SeccompEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<Errno>,
}

/// An SELinux context: user, role and type non-empty without `:`; level
/// non-empty (it may contain `:`, as in `s0:c1,c2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelinuxContext {
    pub user: String,
    pub role: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub level: String,
}

/// The isolators the spec defines, and the others kept as they were.
#[derive(Debug, Clone, PartialEq)]
pub enum Isolator {
    ResourceCpu(Resource),
    ResourceMemory(Resource),
    ResourceBlockBandwidth(Resource),
    ResourceBlockIops(Resource),
    ResourceNetworkBandwidth(Resource),
    CapabilitiesRetainSet(CapabilitySet),
    CapabilitiesRemoveSet(CapabilitySet),
    SeccompRetainSet(SeccompSet),
    SeccompRemoveSet(SeccompSet),
    NoNewPrivileges(bool),
    /// -1000..=1000, as `/proc/PID/oom_score_adj`.
    OomScoreAdj(i16),
    /// 2..=262144, the cgroup CPU weight.
    CpuShares(u32),
    SelinuxContext(SelinuxContext),
    /// The (non-empty) name of an AppArmor profile loaded on the host.
    ApparmorProfile(String),
    /// sysctl(8) keys and values.
    Sysctl(BTreeMap<String, String>),
    /// An isolator this version of the spec does not define.
    Unknown {
        name: AcIdentifier,
        value: Value,
    },
}

impl Isolator {
    /// The isolator's name, e.g. `resource/memory`.
    pub fn name(&self) -> &str {
        match self {
            Isolator::ResourceCpu(_) => RESOURCE_CPU,
            Isolator::ResourceMemory(_) => RESOURCE_MEMORY,
            Isolator::ResourceBlockBandwidth(_) => RESOURCE_BLOCK_BANDWIDTH,
            Isolator::ResourceBlockIops(_) => RESOURCE_BLOCK_IOPS,
            Isolator::ResourceNetworkBandwidth(_) => RESOURCE_NETWORK_BANDWIDTH,
            Isolator::CapabilitiesRetainSet(_) => LINUX_CAPABILITIES_RETAIN_SET,
            Isolator::CapabilitiesRemoveSet(_) => LINUX_CAPABILITIES_REMOVE_SET,
            Isolator::SeccompRetainSet(_) => LINUX_SECCOMP_RETAIN_SET,
            Isolator::SeccompRemoveSet(_) => LINUX_SECCOMP_REMOVE_SET,
            Isolator::NoNewPrivileges(_) => LINUX_NO_NEW_PRIVILEGES,
            Isolator::OomScoreAdj(_) => LINUX_OOM_SCORE_ADJ,
            Isolator::CpuShares(_) => LINUX_CPU_SHARES,
            Isolator::SelinuxContext(_) => LINUX_SELINUX_CONTEXT,
            Isolator::ApparmorProfile(_) => LINUX_APPARMOR_PROFILE,
            Isolator::Sysctl(_) => UNIX_SYSCTL,
            Isolator::Unknown { name, .. } => name.as_str(),
        }
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, Isolator::Unknown { .. })
    }

    /// The isolator's `value` as JSON.
    pub fn value_json(&self) -> Value {
        let r = match self {
            Isolator::ResourceCpu(r)
            | Isolator::ResourceMemory(r)
            | Isolator::ResourceBlockBandwidth(r)
            | Isolator::ResourceBlockIops(r)
            | Isolator::ResourceNetworkBandwidth(r) => serde_json::to_value(r),
            Isolator::CapabilitiesRetainSet(c) | Isolator::CapabilitiesRemoveSet(c) => {
                serde_json::to_value(c)
            }
            Isolator::SeccompRetainSet(s) | Isolator::SeccompRemoveSet(s) => {
                serde_json::to_value(s)
            }
            Isolator::NoNewPrivileges(b) => Ok(Value::Bool(*b)),
            Isolator::OomScoreAdj(n) => Ok(json!(n)),
            Isolator::CpuShares(n) => Ok(json!(n)),
            Isolator::SelinuxContext(c) => serde_json::to_value(c),
            Isolator::ApparmorProfile(p) => Ok(json!({ "profile": p })),
            Isolator::Sysctl(m) => serde_json::to_value(m),
            Isolator::Unknown { value, .. } => Ok(value.clone()),
        };
        // These values are plain data (strings, numbers, maps with string
        // keys): serialising them to a Value cannot fail.
        r.unwrap_or(Value::Null)
    }

    /// Builds an isolator from its name and JSON value, with the checks the
    /// manifest parser runs. The error lists every problem.
    pub fn from_name_value(name: &str, value: &Value) -> Result<Isolator, ValueError> {
        let mut cx = Cx::default();
        let doc = json!({ "name": name, "value": value });
        let parsed = parse_isolator(&mut cx, &doc, "");
        cx.finish(parsed)
            .map_err(|e| ValueError::new(e.lines().join("; ")))
    }

    /// May this isolator appear more than once in one set?
    fn multiple_allowed(&self) -> bool {
        !matches!(
            self,
            Isolator::SeccompRetainSet(_)
                | Isolator::SeccompRemoveSet(_)
                | Isolator::OomScoreAdj(_)
                | Isolator::CpuShares(_)
                | Isolator::SelinuxContext(_)
                | Isolator::ApparmorProfile(_)
                | Isolator::Sysctl(_)
        )
    }

    /// Names of isolators that cannot be in the same set as this one.
    fn conflicts(&self) -> &'static [&'static str] {
        match self {
            Isolator::SeccompRetainSet(_) => &[LINUX_SECCOMP_REMOVE_SET],
            Isolator::SeccompRemoveSet(_) => &[LINUX_SECCOMP_RETAIN_SET],
            Isolator::CapabilitiesRetainSet(_) => &[LINUX_CAPABILITIES_REMOVE_SET],
            Isolator::CapabilitiesRemoveSet(_) => &[LINUX_CAPABILITIES_RETAIN_SET],
            _ => &[],
        }
    }
}

impl Serialize for Isolator {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Isolator", 2)?;
        st.serialize_field("name", self.name())?;
        st.serialize_field("value", &self.value_json())?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Isolator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let mut cx = Cx::default();
        let parsed = parse_isolator(&mut cx, &v, "");
        cx.finish(parsed)
            .map_err(|e: ManifestError| serde::de::Error::custom(e.lines().join("; ")))
    }
}

/// Problems of a set of isolators (one app's or the pod's), as `(index,
/// message)`: a second instance of an isolator allowed once, or two that
/// exclude each other.
pub(crate) fn set_problems(items: &[Isolator]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, iso) in items.iter().enumerate() {
        let earlier = &items[..i];
        if !iso.multiple_allowed() {
            if let Some(first) = earlier.iter().position(|o| o.name() == iso.name()) {
                out.push((
                    i,
                    format!("{} may appear only once (first at [{first}])", iso.name()),
                ));
            }
        }
        for c in iso.conflicts() {
            if let Some(j) = earlier.iter().position(|o| o.name() == *c) {
                out.push((
                    i,
                    format!("{} cannot be used together with {c} (at [{j}])", iso.name()),
                ));
            }
        }
    }
    out
}

/// A list of isolators, checked as a set, reporting problems at
/// `path[i]`.
pub(crate) fn parse_isolators(cx: &mut Cx, v: &Value, path: &str) -> Option<Vec<Isolator>> {
    let items = cx.list(v, path, parse_isolator)?;
    let problems = set_problems(&items);
    let ok = problems.is_empty();
    for (i, msg) in problems {
        cx.err(&index(path, i), msg);
    }
    ok.then_some(items)
}

fn parse_resource(cx: &mut Cx, v: &Value, path: &str, bandwidth: bool) -> Option<Resource> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let default = obj
        .opt(cx, "default", |cx, v, p| cx.boolean(v, p))
        .flatten();
    let quantity = |cx: &mut Cx, name: &str| {
        obj.opt(cx, name, |cx, v, p| {
            let q = match v {
                Value::Number(n) => Quantity::from_json_number(n),
                Value::String(s) => s.parse(),
                other => Err(ValueError::new(format!(
                    "expected a quantity string (like \"500M\"), found {}",
                    crate::walk::kind_of(other)
                ))),
            };
            match q {
                Ok(q) if q.is_negative() => {
                    cx.err(p, format!("{q:?} must not be negative", q = q.as_str()));
                    None
                }
                Ok(q) => Some(q),
                Err(e) => {
                    cx.err(p, e.to_string());
                    None
                }
            }
        })
        .flatten()
    };
    let request = quantity(cx, "request");
    let limit = quantity(cx, "limit");
    if bandwidth {
        if default != Some(true) {
            cx.err(&field(path, "default"), "must be true for this resource");
        }
        if request.is_some() {
            cx.err(
                &field(path, "request"),
                "is not supported by this resource (only limit)",
            );
        }
    } else if default == Some(true) {
        cx.err(&field(path, "default"), "must be false for this resource");
    }
    (cx.count() == before).then_some(Resource {
        default,
        request,
        limit,
    })
}

fn parse_capabilities(cx: &mut Cx, v: &Value, path: &str) -> Option<CapabilitySet> {
    let obj = cx.object(v, path)?;
    let set = obj.must(cx, "set", |cx, v, p| {
        cx.list(v, p, |cx, v, p| cx.parse_str::<Capability>(v, p))
    })?;
    if set.is_empty() {
        cx.err(&field(path, "set"), "must not be empty");
        return None;
    }
    Some(CapabilitySet { set })
}

fn parse_seccomp(cx: &mut Cx, v: &Value, path: &str) -> Option<SeccompSet> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let set = obj.must(cx, "set", |cx, v, p| {
        cx.list(v, p, |cx, v, p| cx.parse_str::<SeccompEntry>(v, p))
    });
    if set.as_ref().is_some_and(Vec::is_empty) {
        cx.err(&field(path, "set"), "must not be empty");
    }
    let errno = obj
        .opt(cx, "errno", |cx, v, p| match cx.string(v, p)? {
            "" => Some(None),
            s => match s.parse::<Errno>() {
                Ok(e) => Some(Some(e)),
                Err(e) => {
                    cx.err(p, e.to_string());
                    None
                }
            },
        })
        .flatten()
        .flatten();
    if cx.count() != before {
        return None;
    }
    Some(SeccompSet { set: set?, errno })
}

fn parse_selinux(cx: &mut Cx, v: &Value, path: &str) -> Option<SelinuxContext> {
    let obj = cx.object(v, path)?;
    let before = cx.count();
    let part = |cx: &mut Cx, name: &str, colon_ok: bool| -> Option<String> {
        let s = obj.must(cx, name, |cx, v, p| cx.string(v, p).map(str::to_owned))?;
        let p = obj.path_of(name);
        if s.is_empty() {
            cx.err(&p, "must not be empty");
            None
        } else if !colon_ok && s.contains(':') {
            cx.err(&p, format!("{s:?} must not contain \":\""));
            None
        } else {
            Some(s)
        }
    };
    let user = part(cx, "user", false);
    let role = part(cx, "role", false);
    let type_ = part(cx, "type", false);
    let level = part(cx, "level", true);
    if cx.count() != before {
        return None;
    }
    Some(SelinuxContext {
        user: user?,
        role: role?,
        type_: type_?,
        level: level?,
    })
}

/// One isolator object `{"name": ..., "value": ...}`.
pub(crate) fn parse_isolator(cx: &mut Cx, v: &Value, path: &str) -> Option<Isolator> {
    let obj = cx.object(v, path)?;
    let name = obj.must(cx, "name", |cx, v, p| cx.parse_str::<AcIdentifier>(v, p));
    let value = obj.req(cx, "value");
    let (name, value) = (name?, value?);
    let vp = field(path, "value");
    let vp = vp.as_str();
    Some(match name.as_str() {
        RESOURCE_CPU => Isolator::ResourceCpu(parse_resource(cx, value, vp, false)?),
        RESOURCE_MEMORY => Isolator::ResourceMemory(parse_resource(cx, value, vp, false)?),
        RESOURCE_BLOCK_BANDWIDTH => {
            Isolator::ResourceBlockBandwidth(parse_resource(cx, value, vp, true)?)
        }
        RESOURCE_BLOCK_IOPS => Isolator::ResourceBlockIops(parse_resource(cx, value, vp, true)?),
        RESOURCE_NETWORK_BANDWIDTH => {
            Isolator::ResourceNetworkBandwidth(parse_resource(cx, value, vp, true)?)
        }
        LINUX_CAPABILITIES_RETAIN_SET => {
            Isolator::CapabilitiesRetainSet(parse_capabilities(cx, value, vp)?)
        }
        LINUX_CAPABILITIES_REMOVE_SET => {
            Isolator::CapabilitiesRemoveSet(parse_capabilities(cx, value, vp)?)
        }
        LINUX_SECCOMP_RETAIN_SET => Isolator::SeccompRetainSet(parse_seccomp(cx, value, vp)?),
        LINUX_SECCOMP_REMOVE_SET => Isolator::SeccompRemoveSet(parse_seccomp(cx, value, vp)?),
        LINUX_NO_NEW_PRIVILEGES => Isolator::NoNewPrivileges(cx.boolean(value, vp)?),
        LINUX_OOM_SCORE_ADJ => {
            let n = cx.int(value, vp, -1000, 1000)?;
            Isolator::OomScoreAdj(i16::try_from(n).ok()?)
        }
        LINUX_CPU_SHARES => {
            let n = cx.int(value, vp, 2, 262_144)?;
            Isolator::CpuShares(u32::try_from(n).ok()?)
        }
        LINUX_SELINUX_CONTEXT => Isolator::SelinuxContext(parse_selinux(cx, value, vp)?),
        LINUX_APPARMOR_PROFILE => {
            let obj = cx.object(value, vp)?;
            let p = obj.must(cx, "profile", |cx, v, p| cx.string(v, p).map(str::to_owned))?;
            if p.is_empty() {
                cx.err(&field(vp, "profile"), "must not be empty");
                return None;
            }
            Isolator::ApparmorProfile(p)
        }
        UNIX_SYSCTL => Isolator::Sysctl(cx.string_map(value, vp)?),
        _ => Isolator::Unknown {
            name,
            value: value.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, value: Value) -> Result<Isolator, String> {
        Isolator::from_name_value(name, &value).map_err(|e| e.to_string())
    }

    #[test]
    fn resources() {
        let cpu = parse(RESOURCE_CPU, json!({"request": "250m", "limit": "500m"})).unwrap();
        let Isolator::ResourceCpu(r) = &cpu else {
            panic!("{cpu:?}")
        };
        assert_eq!(r.limit.as_ref().and_then(Quantity::milli_value), Some(500));
        assert_eq!(
            cpu.value_json(),
            json!({"request": "250m", "limit": "500m"})
        );
        let mem = parse(RESOURCE_MEMORY, json!({"limit": "1G"})).unwrap();
        let Isolator::ResourceMemory(r) = &mem else {
            panic!()
        };
        assert_eq!(
            r.effective_request().and_then(Quantity::value),
            Some(1_000_000_000)
        );
        assert!(parse(RESOURCE_MEMORY, json!({"limit": "1K"}))
            .unwrap_err()
            .starts_with("value.limit: \"1K\" is not a quantity"));
        assert!(parse(RESOURCE_MEMORY, json!({"default": true})).is_err());
        assert!(parse(RESOURCE_MEMORY, json!({"limit": "-1G"})).is_err());
        assert!(parse(RESOURCE_MEMORY, json!({"limit": true})).is_err());
        assert!(parse(
            RESOURCE_BLOCK_IOPS,
            json!({"default": true, "limit": "1000"})
        )
        .is_ok());
        assert!(parse(RESOURCE_BLOCK_IOPS, json!({"limit": "1000"})).is_err());
        let e = parse(
            RESOURCE_NETWORK_BANDWIDTH,
            json!({"default": true, "request": "1", "limit": "1G"}),
        )
        .unwrap_err();
        assert!(e.contains("value.request: is not supported"), "{e}");
        assert!(parse(
            RESOURCE_BLOCK_BANDWIDTH,
            json!({"default": true, "limit": "2M"})
        )
        .is_ok());
    }

    #[test]
    fn capabilities() {
        let c = parse(
            LINUX_CAPABILITIES_RETAIN_SET,
            json!({"set": ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]}),
        )
        .unwrap();
        let Isolator::CapabilitiesRetainSet(set) = &c else {
            panic!()
        };
        assert_eq!(set.set[0].number(), 12);
        let e = parse(
            LINUX_CAPABILITIES_REMOVE_SET,
            json!({"set": ["CAP_NET_ADMIN", "NET_RAW"]}),
        )
        .unwrap_err();
        assert!(
            e.starts_with("value.set[1]: \"NET_RAW\" is not a known"),
            "{e}"
        );
        assert!(parse(LINUX_CAPABILITIES_REMOVE_SET, json!({"set": []})).is_err());
        assert!(parse(LINUX_CAPABILITIES_REMOVE_SET, json!({})).is_err());
    }

    #[test]
    fn seccomp() {
        let s = parse(
            LINUX_SECCOMP_REMOVE_SET,
            json!({"errno": "ENOTSUP", "set": ["clock_adjtime", "reboot", "@appc.io/empty"]}),
        )
        .unwrap();
        let Isolator::SeccompRemoveSet(set) = &s else {
            panic!()
        };
        assert_eq!(set.errno.as_ref().map(Errno::as_str), Some("ENOTSUP"));
        assert_eq!(set.set[2].wildcard(), Some(("appc.io", "empty")));
        let r = parse(
            LINUX_SECCOMP_RETAIN_SET,
            json!({"errno": "", "set": ["@docker/default-whitelist", "_llseek"]}),
        )
        .unwrap();
        assert_eq!(
            r.value_json(),
            json!({"set": ["@docker/default-whitelist", "_llseek"]})
        );
        assert!(parse(LINUX_SECCOMP_RETAIN_SET, json!({"set": []})).is_err());
        assert!(parse(LINUX_SECCOMP_RETAIN_SET, json!({"set": ["Reboot"]})).is_err());
        assert!(parse(LINUX_SECCOMP_RETAIN_SET, json!({"set": ["@all"]})).is_err());
        let e = parse(
            LINUX_SECCOMP_RETAIN_SET,
            json!({"set": ["read"], "errno": "enotsup"}),
        )
        .unwrap_err();
        assert!(e.starts_with("value.errno:"), "{e}");
        assert!(parse(
            LINUX_SECCOMP_RETAIN_SET,
            json!({"set": ["read"], "errno": "XNOTSUP"})
        )
        .is_err());
    }

    #[test]
    fn linux_scalars() {
        assert_eq!(
            parse(LINUX_NO_NEW_PRIVILEGES, json!(true)).unwrap(),
            Isolator::NoNewPrivileges(true)
        );
        assert!(parse(LINUX_NO_NEW_PRIVILEGES, json!("true")).is_err());
        assert_eq!(
            parse(LINUX_OOM_SCORE_ADJ, json!(-1000)).unwrap(),
            Isolator::OomScoreAdj(-1000)
        );
        assert_eq!(
            parse(LINUX_OOM_SCORE_ADJ, json!(1001)).unwrap_err(),
            "value: 1001 is out of range -1000-1000"
        );
        assert!(parse(LINUX_OOM_SCORE_ADJ, json!(1.5)).is_err());
        assert_eq!(
            parse(LINUX_CPU_SHARES, json!(1024)).unwrap(),
            Isolator::CpuShares(1024)
        );
        assert!(parse(LINUX_CPU_SHARES, json!(1)).is_err());
        assert!(parse(LINUX_CPU_SHARES, json!(262_145)).is_err());
    }

    #[test]
    fn selinux_apparmor_sysctl() {
        let ctx =
            json!({"user": "system_u", "role": "system_r", "type": "dhcpc_t", "level": "s0:c1,c2"});
        let s = parse(LINUX_SELINUX_CONTEXT, ctx.clone()).unwrap();
        assert_eq!(s.value_json(), ctx);
        let e = parse(
            LINUX_SELINUX_CONTEXT,
            json!({"user": "a:b", "role": "r", "type": "t", "level": ""}),
        )
        .unwrap_err();
        assert!(e.contains("value.user") && e.contains("value.level"), "{e}");
        assert_eq!(
            parse(LINUX_APPARMOR_PROFILE, json!({"profile": "rkt-default"})).unwrap(),
            Isolator::ApparmorProfile("rkt-default".into())
        );
        assert!(parse(LINUX_APPARMOR_PROFILE, json!({"profile": ""})).is_err());
        let sys = parse(UNIX_SYSCTL, json!({"net.ipv4.tcp_mtu_probing": "1"})).unwrap();
        assert_eq!(sys.value_json(), json!({"net.ipv4.tcp_mtu_probing": "1"}));
        assert!(parse(UNIX_SYSCTL, json!({"a": 1})).is_err());
    }

    #[test]
    fn unknown_kept_verbatim_but_name_checked() {
        let v = json!({"anything": [1, 2, {"x": null}]});
        let u = parse("example.com/my-isolator", v.clone()).unwrap();
        assert!(!u.is_known());
        assert_eq!(u.name(), "example.com/my-isolator");
        assert_eq!(u.value_json(), v);
        assert!(parse("Bad Name", json!(1)).is_err());
        let mut cx = Cx::default();
        assert!(parse_isolator(&mut cx, &json!({"name": "x/y"}), "i").is_none());
        assert_eq!(cx.problems[0].to_string(), "i.value: is required");
    }

    #[test]
    fn set_rules() {
        let iso = |n: &str, v: Value| parse(n, v).unwrap();
        let seccomp = json!({"set": ["read"]});
        let caps = json!({"set": ["CAP_KILL"]});
        let p = set_problems(&[
            iso(LINUX_SECCOMP_RETAIN_SET, seccomp.clone()),
            iso(LINUX_SECCOMP_REMOVE_SET, seccomp.clone()),
            iso(LINUX_SECCOMP_RETAIN_SET, seccomp),
        ]);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].0, 1);
        let p = set_problems(&[
            iso(LINUX_CAPABILITIES_RETAIN_SET, caps.clone()),
            iso(LINUX_CAPABILITIES_REMOVE_SET, caps.clone()),
        ]);
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("cannot be used together"));
        // resource isolators, capability sets of one kind and no-new-privileges
        // may repeat, as in the reference
        assert!(set_problems(&[
            iso(RESOURCE_MEMORY, json!({"limit": "1G"})),
            iso(RESOURCE_MEMORY, json!({"limit": "2G"})),
            iso(LINUX_CAPABILITIES_RETAIN_SET, caps.clone()),
            iso(LINUX_CAPABILITIES_RETAIN_SET, caps),
        ])
        .is_empty());
        assert_eq!(
            set_problems(&[
                iso(LINUX_CPU_SHARES, json!(2)),
                iso(LINUX_CPU_SHARES, json!(3))
            ])
            .len(),
            1
        );
    }

    #[test]
    fn serde_roundtrip() {
        let v = json!({"name": "os/linux/oom-score-adj", "value": 5});
        let i: Isolator = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&i).unwrap(), v);
        assert!(serde_json::from_value::<Isolator>(json!({"name": "resource/cpu"})).is_err());
    }
}
