//! The shared types of the App Container spec (`spec/types.md` and the field
//! rules of `spec/aci.md`/`spec/pods.md`), as newtypes that cannot hold an
//! invalid value.
//!
//! Every type here is built only through `TryFrom<&str>`/`FromStr` (or a
//! checked `new`) or serde, and they all run the same checks, so code that
//! holds an `AcName` or a `Labels` never has to re-validate it. A refused
//! value comes back as a [`ValueError`] stating the rule, without a location;
//! the manifest parser adds the JSON path.
//!
//! Where the Go reference (`schema/types`) and the spec text differ, we follow
//! the spec text when it is stricter and say so on the item.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ValueError;

/// Implements the string plumbing shared by the validated string newtypes:
/// `as_str`, `Display`, `FromStr`, `TryFrom<&str>`/`TryFrom<String>`,
/// `AsRef<str>` and serde as a plain string. `$check` is the only way in.
macro_rules! string_newtype {
    ($ty:ident, $check:path) => {
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $ty {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                $check(s)?;
                Ok($ty(s.to_owned()))
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = ValueError;
            fn try_from(s: &str) -> Result<Self, ValueError> {
                s.parse()
            }
        }
        impl TryFrom<String> for $ty {
            type Error = ValueError;
            fn try_from(s: String) -> Result<Self, ValueError> {
                $check(&s)?;
                Ok($ty(s))
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }
        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ty::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Checks the spec's name rule the way the Go reference does: only lowercase
/// letters, digits and the separators, beginning and ending with a letter or
/// digit. (The spec's regular expression would also refuse two separators in
/// a row, but its own example `example.com/~user/app_v1` has them and the
/// reference accepts them, so we do too.)
fn check_name(s: &str, what: &str, seps: &str) -> Result<(), ValueError> {
    if s.is_empty() {
        return Err(ValueError::new(format!("{what} must not be empty")));
    }
    let allowed = if seps.len() == 1 {
        format!("lowercase letters, digits and {seps:?}")
    } else {
        format!("lowercase letters, digits and the characters {seps:?}")
    };
    if let Some(bad) = s.chars().find(|&c| !is_lower_alnum(c) && !seps.contains(c)) {
        return Err(ValueError::new(format!(
            "{s:?} is not a valid {what}: {bad:?} is not allowed (only {allowed})"
        )));
    }
    let first = s.chars().next().is_some_and(is_lower_alnum);
    let last = s.chars().next_back().is_some_and(is_lower_alnum);
    if !first || !last {
        return Err(ValueError::new(format!(
            "{s:?} is not a valid {what}: must start and end with a lowercase letter or digit"
        )));
    }
    Ok(())
}

fn check_ac_name(s: &str) -> Result<(), ValueError> {
    check_name(s, "AC name", "-")
}

fn check_ac_identifier(s: &str) -> Result<(), ValueError> {
    check_name(s, "AC identifier", "-._~/")
}

/// An AC Name: `^[a-z0-9]+([-][a-z0-9]+)*$` (app names, volume, port and
/// mount point names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcName(String);
string_newtype!(AcName, check_ac_name);

/// An AC Identifier: `^[a-z0-9]+([-._~/][a-z0-9]+)*$` (image names, label,
/// annotation and isolator names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcIdentifier(String);
string_newtype!(AcIdentifier, check_ac_identifier);

/// The name of an app inside a pod: an [`AcName`], unique within the pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);
string_newtype!(AppName, check_ac_name);

impl AppName {
    pub fn as_ac_name(&self) -> AcName {
        AcName(self.0.clone())
    }
}

impl From<AcName> for AppName {
    fn from(n: AcName) -> Self {
        AppName(n.0)
    }
}

/// The kind of a manifest (`acKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcKind {
    ImageManifest,
    PodManifest,
}

impl AcKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AcKind::ImageManifest => "ImageManifest",
            AcKind::PodManifest => "PodManifest",
        }
    }
}

impl fmt::Display for AcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AcKind {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s {
            "ImageManifest" => Ok(AcKind::ImageManifest),
            "PodManifest" => Ok(AcKind::PodManifest),
            "" => Err(ValueError::new("must not be empty")),
            other => Err(ValueError::new(format!(
                "{other:?} is not a known kind (expected \"ImageManifest\" or \"PodManifest\")"
            ))),
        }
    }
}

impl TryFrom<&str> for AcKind {
    type Error = ValueError;
    fn try_from(s: &str) -> Result<Self, ValueError> {
        s.parse()
    }
}

impl Serialize for AcKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AcKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An AC Version: a SemVer 2.0.0 version, not `0.0.0`.
///
/// Stricter than the Go reference, which also takes leading zeros (`0.08.11`)
/// that SemVer 2.0.0 forbids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcVersion(semver::Version);

impl AcVersion {
    /// The version this crate implements (`0.8.11`).
    pub fn current() -> AcVersion {
        AcVersion(semver::Version::new(0, 8, 11))
    }

    pub fn version(&self) -> &semver::Version {
        &self.0
    }
}

impl fmt::Display for AcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AcVersion {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let v = semver::Version::parse(s).map_err(|e| {
            ValueError::new(format!("{s:?} is not a semantic version (x.y.z): {e}"))
        })?;
        if v.major == 0 && v.minor == 0 && v.patch == 0 && v.pre.is_empty() && v.build.is_empty() {
            return Err(ValueError::new("\"0.0.0\" is not allowed as a version"));
        }
        Ok(AcVersion(v))
    }
}

impl TryFrom<&str> for AcVersion {
    type Error = ValueError;
    fn try_from(s: &str) -> Result<Self, ValueError> {
        s.parse()
    }
}

impl Serialize for AcVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AcVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

const SHA512_PREFIX: &str = "sha512-";
const SHA512_HEX_LEN: usize = 128;

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_image_id(s: &str) -> Result<(), ValueError> {
    let Some(hex) = s.strip_prefix(SHA512_PREFIX) else {
        let algo = s.split_once('-').map_or("", |(a, _)| a);
        return Err(if algo.is_empty() {
            ValueError::new(format!(
                "{s:?} is not a valid image ID (expected \"sha512-\" followed by 128 hex digits)"
            ))
        } else {
            ValueError::new(format!(
                "{s:?} is not a valid image ID: hash algorithm {algo:?} is not supported (only sha512)"
            ))
        });
    };
    if !is_lower_hex(hex) {
        return Err(ValueError::new(format!(
            "{s:?} is not a valid image ID: the digest must be lowercase hex"
        )));
    }
    if hex.len() != SHA512_HEX_LEN {
        return Err(ValueError::new(format!(
            "{s:?} is not a valid image ID: the digest has {} hex digits, a full sha512 has {SHA512_HEX_LEN}",
            hex.len()
        )));
    }
    Ok(())
}

/// An Image ID: `sha512-` and the 128 lowercase hex digits of the SHA-512 of
/// the uncompressed image tar.
///
/// Stricter than the Go reference, which takes any non-empty value after
/// `sha512-` (so also the truncated IDs people type). Use
/// [`ImageId::is_prefix`] to recognise those.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);
string_newtype!(ImageId, check_image_id);

impl ImageId {
    /// `sha512-` + lowercase hex of a SHA-512 digest (64 bytes).
    pub fn from_sha512(digest: &[u8]) -> Self {
        use std::fmt::Write;
        let mut s = String::with_capacity(SHA512_PREFIX.len() + digest.len() * 2);
        s.push_str(SHA512_PREFIX);
        for b in digest {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
        }
        ImageId(s)
    }

    /// The hex digest, without the `sha512-` prefix.
    pub fn digest_hex(&self) -> &str {
        &self.0[SHA512_PREFIX.len()..]
    }

    /// Whether `s` is the beginning of some valid image ID: a prefix of
    /// `sha512-`, or `sha512-` followed by up to 128 lowercase hex digits.
    /// The empty string is not a prefix.
    pub fn is_prefix(s: &str) -> bool {
        if s.is_empty() {
            return false;
        }
        match s.strip_prefix(SHA512_PREFIX) {
            Some(hex) => hex.len() <= SHA512_HEX_LEN && is_lower_hex(hex),
            None => SHA512_PREFIX.starts_with(s),
        }
    }

    /// Whether this ID starts with `prefix` (and `prefix` is a valid prefix).
    pub fn starts_with(&self, prefix: &str) -> bool {
        ImageId::is_prefix(prefix) && self.0.starts_with(prefix)
    }
}

/// The valid `os` label values and, for each, the valid `arch` values
/// (`types.ValidOSArch` in the Go reference).
pub const VALID_OS_ARCH: &[(&str, &[&str])] = &[
    (
        "linux",
        &[
            "amd64",
            "i386",
            "aarch64",
            "aarch64_be",
            "armv6l",
            "armv7l",
            "armv7b",
            "ppc64",
            "ppc64le",
            "s390x",
        ],
    ),
    ("freebsd", &["amd64", "i386", "arm"]),
    ("darwin", &["x86_64", "i386"]),
];

/// One label: an AC Identifier name and a free-form value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Label {
    pub name: AcIdentifier,
    #[serde(default)]
    pub value: String,
}

impl Label {
    pub fn new(name: AcIdentifier, value: impl Into<String>) -> Self {
        Label {
            name,
            value: value.into(),
        }
    }
}

/// A list of labels: names unique, never `name`, and `os`/`arch` one of the
/// supported pairs (`arch` alone, without `os`, is accepted as in Go: the
/// spec says it is then meaningless, not wrong).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Every broken rule, as `(index of the offending label, message)`.
    pub(crate) fn problems(items: &[Label]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, l) in items.iter().enumerate() {
            if l.name == "name" {
                out.push((
                    i,
                    "\"name\" cannot be a label (it is the image's name)".to_owned(),
                ));
            }
            if let Some(first) = seen.insert(l.name.as_str(), i) {
                out.push((
                    i,
                    format!("duplicate label {:?} (first at [{first}])", l.name.as_str()),
                ));
            }
        }
        let find = |n: &str| items.iter().position(|l| l.name == n);
        if let Some(oi) = find("os") {
            let os = items[oi].value.as_str();
            match VALID_OS_ARCH.iter().find(|(o, _)| *o == os) {
                None => {
                    let oses: Vec<&str> = VALID_OS_ARCH.iter().map(|(o, _)| *o).collect();
                    out.push((
                        oi,
                        format!("os {os:?} is not supported (one of: {})", oses.join(", ")),
                    ));
                }
                Some((_, arches)) => {
                    if let Some(ai) = find("arch") {
                        let arch = items[ai].value.as_str();
                        if !arches.contains(&arch) {
                            out.push((
                                ai,
                                format!(
                                    "arch {arch:?} is not valid for os {os:?} (one of: {})",
                                    arches.join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out
    }

    pub fn new(items: Vec<Label>) -> Result<Self, ValueError> {
        match Labels::problems(&items).into_iter().next() {
            Some((i, msg)) => Err(ValueError::new(format!("labels[{i}]: {msg}"))),
            None => Ok(Labels(items)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<Label>> for Labels {
    type Error = ValueError;
    fn try_from(items: Vec<Label>) -> Result<Self, ValueError> {
        Labels::new(items)
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Labels::new(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One annotation: an AC Identifier name and a free-form value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Annotation {
    pub name: AcIdentifier,
    #[serde(default)]
    pub value: String,
}

impl Annotation {
    pub fn new(name: AcIdentifier, value: impl Into<String>) -> Self {
        Annotation {
            name,
            value: value.into(),
        }
    }
}

/// A list of annotations: names unique; the well-known `created` must be an
/// RFC 3339 timestamp and `homepage`/`documentation` http(s) URLs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Annotations(Vec<Annotation>);

impl Annotations {
    pub(crate) fn problems(items: &[Annotation]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, a) in items.iter().enumerate() {
            if let Some(first) = seen.insert(a.name.as_str(), i) {
                out.push((
                    i,
                    format!(
                        "duplicate annotation {:?} (first at [{first}])",
                        a.name.as_str()
                    ),
                ));
                continue;
            }
            let checked = match a.name.as_str() {
                "created" => check_timestamp(&a.value),
                "homepage" | "documentation" => check_http_url(&a.value),
                _ => Ok(()),
            };
            if let Err(e) = checked {
                out.push((i, format!("{}: {e}", a.name)));
            }
        }
        out
    }

    pub fn new(items: Vec<Annotation>) -> Result<Self, ValueError> {
        match Annotations::problems(&items).into_iter().next() {
            Some((i, msg)) => Err(ValueError::new(format!("annotations[{i}]: {msg}"))),
            None => Ok(Annotations(items)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Annotation> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Annotation] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<Annotation>> for Annotations {
    type Error = ValueError;
    fn try_from(items: Vec<Annotation>) -> Result<Self, ValueError> {
        Annotations::new(items)
    }
}

impl<'a> IntoIterator for &'a Annotations {
    type Item = &'a Annotation;
    type IntoIter = std::slice::Iter<'a, Annotation>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Annotations::new(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// RFC 3339 `date-time` with the `T` (spec's Timestamps Type), as Go's
/// `time.RFC3339` layout reads it: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn check_timestamp(s: &str) -> Result<(), ValueError> {
    let bad = |why: &str| {
        Err(ValueError::new(format!(
            "{s:?} is not an RFC 3339 timestamp (like 2014-10-27T19:32:27Z): {why}"
        )))
    };
    let (date, rest) = match s.split_once('T') {
        Some(p) => p,
        None => return bad("missing the \"T\" between date and time"),
    };
    let d: Vec<&str> = date.split('-').collect();
    let (Some(year), Some(month), Some(day)) = (
        d.first().and_then(|x| digits(x, 4)),
        d.get(1).and_then(|x| digits(x, 2)),
        d.get(2).and_then(|x| digits(x, 2)),
    ) else {
        return bad("the date must be YYYY-MM-DD");
    };
    if d.len() != 3 {
        return bad("the date must be YYYY-MM-DD");
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return bad("month out of range"),
    };
    if day == 0 || day > days {
        return bad("day out of range");
    }
    let (time, zone) = if let Some(t) = rest.strip_suffix('Z') {
        (t, None)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        (&rest[..pos], Some(&rest[pos + 1..]))
    } else {
        return bad("missing the time zone (Z or ±HH:MM)");
    };
    if let Some(z) = zone {
        let ok = z.len() == 5
            && &z[2..3] == ":"
            && digits(&z[..2], 2).is_some_and(|h| h < 24)
            && digits(&z[3..], 2).is_some_and(|m| m < 60);
        if !ok {
            return bad("the time zone offset must be ±HH:MM");
        }
    }
    let (hms, frac) = match time.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (time, None),
    };
    if frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return bad("fractional seconds must be digits");
    }
    let t: Vec<&str> = hms.split(':').collect();
    let ok = t.len() == 3
        && digits(t[0], 2).is_some_and(|h| h < 24)
        && digits(t[1], 2).is_some_and(|m| m < 60)
        && digits(t[2], 2).is_some_and(|x| x < 60);
    if !ok {
        return bad("the time must be HH:MM:SS");
    }
    Ok(())
}

/// An absolute URL with scheme http or https (scheme case-insensitive, as in
/// Go's `net/url`) and no whitespace or control characters.
pub fn check_http_url(s: &str) -> Result<(), ValueError> {
    let scheme = s.split_once(':').map(|(a, _)| a.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(ValueError::new(format!(
            "{s:?} is not a URL with scheme http or https"
        )));
    }
    if s.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ValueError::new(format!(
            "{s:?} is not a valid URL: it contains spaces or control characters"
        )));
    }
    Ok(())
}

fn check_env_name(s: &str) -> Result<(), ValueError> {
    let mut chars = s.chars();
    match chars.next() {
        None => {
            return Err(ValueError::new(
                "environment variable name must not be empty",
            ))
        }
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        Some(_) => {
            return Err(ValueError::new(format!(
                "{s:?} is not a valid environment variable name: must start with a letter or \"_\""
            )))
        }
    }
    if let Some(bad) = chars.find(|&c| !(c.is_ascii_alphanumeric() || "_.-".contains(c))) {
        return Err(ValueError::new(format!(
            "{s:?} is not a valid environment variable name: {bad:?} is not allowed (only letters, digits, \"_\", \".\" and \"-\")"
        )));
    }
    Ok(())
}

/// An environment variable name: `^[A-Za-z_][A-Za-z_0-9.-]*$` (POSIX names
/// plus `.` and `-`, as the spec allows).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvVarName(String);
string_newtype!(EnvVarName, check_env_name);

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: EnvVarName,
    #[serde(default)]
    pub value: String,
}

/// An app's environment: names unique.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Environment(Vec<EnvVar>);

impl Environment {
    pub(crate) fn problems(items: &[EnvVar]) -> Vec<(usize, String)> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, e) in items.iter().enumerate() {
            if let Some(first) = seen.insert(e.name.as_str(), i) {
                out.push((
                    i,
                    format!(
                        "duplicate environment variable {:?} (first at [{first}])",
                        e.name.as_str()
                    ),
                ));
            }
        }
        out
    }

    pub fn new(items: Vec<EnvVar>) -> Result<Self, ValueError> {
        match Environment::problems(&items).into_iter().next() {
            Some((i, msg)) => Err(ValueError::new(format!("environment[{i}]: {msg}"))),
            None => Ok(Environment(items)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.value.as_str())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, EnvVar> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[EnvVar] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Environment::new(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A command line: the program and its arguments.
///
/// Must not be empty and the program must not be the empty string (the Go
/// reference takes both). The program may be a bare name: the spec has the
/// executor search `PATH` for it like `execvp(3)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Exec(Vec<String>);

impl Exec {
    pub fn new(argv: Vec<String>) -> Result<Self, ValueError> {
        match argv.first() {
            None => Err(ValueError::new("must not be empty (omit it instead)")),
            Some(p) if p.is_empty() => Err(ValueError::new(
                "the program (first element) must not be empty",
            )),
            Some(_) => Ok(Exec(argv)),
        }
    }

    pub fn program(&self) -> &str {
        &self.0[0]
    }

    pub fn args(&self) -> &[String] {
        &self.0[1..]
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl TryFrom<Vec<String>> for Exec {
    type Error = ValueError;
    fn try_from(argv: Vec<String>) -> Result<Self, ValueError> {
        Exec::new(argv)
    }
}

impl<'de> Deserialize<'de> for Exec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Exec::new(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A port (or range of ports) an app listens on.
///
/// `port` is 1-65535, `count` (default 1) at least 1, and the range
/// `port..port+count` must stay within 65535. `name` and `protocol` are
/// required as the spec says (the Go reference lets both be missing and
/// takes `count: 0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    name: AcName,
    protocol: String,
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_activated: Option<bool>,
}

impl Port {
    pub fn new(
        name: AcName,
        protocol: impl Into<String>,
        port: u32,
        count: Option<u32>,
        socket_activated: Option<bool>,
    ) -> Result<Self, ValueError> {
        let protocol = protocol.into();
        if protocol.is_empty() {
            return Err(ValueError::new("protocol must not be empty"));
        }
        let p = Port::check_number(port)?;
        Port::check_count(p, count)?;
        Ok(Port {
            name,
            protocol,
            port: p,
            count,
            socket_activated,
        })
    }

    pub(crate) fn check_number(port: u32) -> Result<u16, ValueError> {
        match u16::try_from(port) {
            Ok(p) if p >= 1 => Ok(p),
            _ => Err(ValueError::new(format!("{port} is out of range 1-65535"))),
        }
    }

    pub(crate) fn check_count(port: u16, count: Option<u32>) -> Result<(), ValueError> {
        match count {
            Some(0) => Err(ValueError::new("must be at least 1")),
            Some(c) if u32::from(port) + c - 1 > 65535 => Err(ValueError::new(format!(
                "{c} ports from {port} go past 65535"
            ))),
            _ => Ok(()),
        }
    }

    pub fn name(&self) -> &AcName {
        &self.name
    }
    pub fn protocol(&self) -> &str {
        &self.protocol
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The number of ports in the range (1 when unset).
    pub fn count(&self) -> u32 {
        self.count.unwrap_or(1)
    }
    pub fn socket_activated(&self) -> bool {
        self.socket_activated.unwrap_or(false)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            name: AcName,
            protocol: String,
            port: u32,
            count: Option<u32>,
            socket_activated: Option<bool>,
        }
        let r = Raw::deserialize(d)?;
        Port::new(r.name, r.protocol, r.port, r.count, r.socket_activated)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ac_name() {
        for ok in ["a", "database", "product-database-1", "0", "a-b-c", "a--b"] {
            assert!(AcName::try_from(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a.b", "a/b", "é"] {
            assert!(AcName::try_from(bad).is_err(), "{bad}");
        }
        let e = AcName::try_from("Web").unwrap_err();
        assert!(e.message().contains("'W' is not allowed"), "{e}");
        assert_eq!(AcName::try_from("web").unwrap().as_str(), "web");
    }

    #[test]
    fn ac_identifier() {
        for ok in [
            "database",
            "example.com/database",
            "example.com/~user/app_v1",
            "sub-domain.example.com/org/product/release",
            "a.b_c~d/e-f",
            "a//b",
        ] {
            assert!(AcIdentifier::try_from(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Example.com", "example.com/", "/a", "a b", "a:b", "a_"] {
            assert!(AcIdentifier::try_from(bad).is_err(), "{bad}");
        }
        let e = AcIdentifier::try_from("a/").unwrap_err();
        assert!(e.message().contains("start and end"), "{e}");
    }

    #[test]
    fn ac_kind_and_version() {
        assert_eq!(
            "PodManifest".parse::<AcKind>().unwrap(),
            AcKind::PodManifest
        );
        assert!("imagemanifest".parse::<AcKind>().is_err());
        assert!("".parse::<AcKind>().is_err());
        assert_eq!("0.8.11".parse::<AcVersion>().unwrap(), AcVersion::current());
        assert!("1.0.0-alpha+b1".parse::<AcVersion>().is_ok());
        for bad in ["0.8", "v0.8.11", "0.0.0", "", "0.08.11", "1.2.3.4"] {
            assert!(bad.parse::<AcVersion>().is_err(), "{bad}");
        }
        let e = "0.8".parse::<AcVersion>().unwrap_err();
        assert!(e.message().starts_with("\"0.8\" is not a semantic version"));
    }

    #[test]
    fn image_id() {
        let id = ImageId::from_sha512(&[0xab; 64]);
        assert_eq!(id.as_str().len(), 7 + 128);
        assert!(id.as_str().starts_with("sha512-abab"));
        let parsed: ImageId = id.as_str().parse().unwrap();
        assert_eq!(parsed, id);
        assert_eq!(id.digest_hex(), &"ab".repeat(64));
        let upper = format!("sha512-{}", "AB".repeat(64));
        assert!(ImageId::try_from(upper.as_str()).is_err());
        assert!(ImageId::try_from("sha512-abc").is_err());
        assert!(
            ImageId::try_from(format!("sha256-{}", "a".repeat(64)).as_str())
                .unwrap_err()
                .message()
                .contains("\"sha256\" is not supported")
        );
        assert!(ImageId::try_from(format!("sha512-{}", "a".repeat(129)).as_str()).is_err());
        assert!(ImageId::is_prefix("sha512-abc"));
        assert!(ImageId::is_prefix("sha5"));
        assert!(ImageId::is_prefix("sha512-"));
        assert!(ImageId::is_prefix(id.as_str()));
        assert!(!ImageId::is_prefix(""));
        assert!(!ImageId::is_prefix("sha512-ABC"));
        assert!(!ImageId::is_prefix("sha256-abc"));
        assert!(!ImageId::is_prefix(&format!("sha512-{}", "a".repeat(129))));
        assert!(id.starts_with("sha512-abab"));
        assert!(!id.starts_with("sha512-abac"));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ImageId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ImageId>("\"sha512-1\"").is_err());
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(n, v)| Label::new(AcIdentifier::try_from(*n).unwrap(), *v))
            .collect()
    }

    #[test]
    fn labels_os_arch() {
        for (os, arches) in VALID_OS_ARCH {
            for arch in *arches {
                assert!(Labels::new(labels(&[("os", os), ("arch", arch)])).is_ok());
            }
        }
        let e = Labels::new(labels(&[
            ("version", "1"),
            ("os", "freebsd"),
            ("arch", "amd64x"),
        ]))
        .unwrap_err();
        assert!(
            e.message()
                .starts_with("labels[2]: arch \"amd64x\" is not valid for os \"freebsd\""),
            "{e}"
        );
        assert!(Labels::new(labels(&[("os", "plan9")])).is_err());
        assert!(Labels::new(labels(&[("os", "darwin"), ("arch", "amd64")])).is_err());
        // arch without os is meaningless but allowed
        assert!(Labels::new(labels(&[("arch", "whatever")])).is_ok());
    }

    #[test]
    fn labels_unique_and_not_name() {
        let p = Labels::problems(&labels(&[("a", "1"), ("name", "x"), ("a", "2")]));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, 1);
        assert!(p[1].1.contains("duplicate label \"a\""));
        let l = Labels::new(labels(&[("version", "1.0")])).unwrap();
        assert_eq!(l.get("version"), Some("1.0"));
        assert_eq!(l.get("os"), None);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json, serde_json::json!([{"name":"version","value":"1.0"}]));
        assert!(serde_json::from_value::<Labels>(serde_json::json!([
            {"name":"a","value":"1"},{"name":"a","value":"2"}
        ]))
        .is_err());
    }

    #[test]
    fn annotations() {
        let mk = |n: &str, v: &str| Annotation::new(AcIdentifier::try_from(n).unwrap(), v);
        assert!(Annotations::new(vec![
            mk("created", "2014-10-27T19:32:27.67021798Z"),
            mk("homepage", "https://example.com"),
            mk("documentation", "HTTP://example.com/docs"),
            mk("authors", "anyone"),
        ])
        .is_ok());
        assert!(Annotations::new(vec![mk("created", "2014-10-27 19:32:27Z")]).is_err());
        assert!(Annotations::new(vec![mk("created", "2014-02-30T19:32:27Z")]).is_err());
        assert!(Annotations::new(vec![mk("homepage", "ftp://example.com")]).is_err());
        assert!(Annotations::new(vec![mk("a", "1"), mk("a", "2")]).is_err());
    }

    #[test]
    fn timestamps() {
        for ok in [
            "2014-10-27T19:32:27Z",
            "2016-02-29T00:00:00+01:00",
            "2015-05-18T13:49:28.351729952-04:00",
        ] {
            assert!(check_timestamp(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2014-10-27",
            "2014-10-27T19:32:27",
            "2014-10-27T19:32:27z",
            "2015-02-29T00:00:00Z",
            "2014-13-01T00:00:00Z",
            "2014-10-27T24:00:00Z",
            "2014-10-27T19:32:27+0100",
            "2014-10-27T19:32:27.Z",
            "14-10-27T19:32:27Z",
        ] {
            assert!(check_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        for ok in ["PATH", "_x", "a.b-c", "A1"] {
            assert!(EnvVarName::try_from(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A=B", "A B", ".a", "-a", "é"] {
            assert!(EnvVarName::try_from(bad).is_err(), "{bad}");
        }
        let name = |s: &str| EnvVarName::try_from(s).unwrap();
        let dup = vec![
            EnvVar {
                name: name("A"),
                value: "1".into(),
            },
            EnvVar {
                name: name("A"),
                value: "2".into(),
            },
        ];
        assert!(Environment::new(dup).is_err());
    }

    #[test]
    fn exec() {
        assert!(Exec::new(vec![]).is_err());
        assert!(Exec::new(vec![String::new()]).is_err());
        let e = Exec::new(vec!["sh".into(), "-c".into()]).unwrap();
        assert_eq!(e.program(), "sh");
        assert_eq!(e.args(), ["-c"]);
        assert!(serde_json::from_str::<Exec>("[]").is_err());
    }

    #[test]
    fn ports() {
        let n = AcName::try_from("http").unwrap();
        assert!(Port::new(n.clone(), "tcp", 80, None, None).is_ok());
        assert!(Port::new(n.clone(), "tcp", 0, None, None).is_err());
        assert!(Port::new(n.clone(), "tcp", 65536, None, None).is_err());
        assert!(Port::new(n.clone(), "tcp", 65535, Some(1), None).is_ok());
        assert!(Port::new(n.clone(), "tcp", 65535, Some(2), None).is_err());
        assert!(Port::new(n.clone(), "tcp", 80, Some(0), None).is_err());
        assert!(Port::new(n.clone(), "", 80, None, None).is_err());
        let p = Port::new(n, "udp", 20000, Some(1000), Some(true)).unwrap();
        assert_eq!(
            (p.port(), p.count(), p.socket_activated()),
            (20000, 1000, true)
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "http", "protocol": "udp", "port": 20000, "count": 1000, "socketActivated": true})
        );
        assert_eq!(serde_json::from_value::<Port>(json).unwrap(), p);
        assert!(serde_json::from_value::<Port>(
            serde_json::json!({"name": "http", "protocol": "tcp", "port": 0})
        )
        .is_err());
    }
}
