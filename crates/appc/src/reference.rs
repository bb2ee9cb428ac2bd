//! Image references: the way people write an appc image on the command line,
//! `example.com/app:1.0,os=linux,arch=amd64`, parsed into a name and labels.
//!
//! appc has no tags: an image is picked by its name plus labels (`version`,
//! `os`, `arch` and any others the image declares). The command-line form is
//! the one of the Go reference (`discovery.NewAppFromString`) and of rkt:
//!
//! - `example.com/app` — just the name; no label is required;
//! - `example.com/app:1.0` — shorthand for `version=1.0`;
//! - `example.com/app,version=1.0,os=linux` — labels spelled out;
//! - `example.com/app:1.0,arch=aarch64` — both.
//!
//! The grammar is kept unambiguous so that [`ImageReference`]'s `Display`
//! always parses back to the same value: `,` separates labels, the first `=`
//! of a label separates its name from its value (a value may contain `=`),
//! and `:` may appear once, right after the name. So a label value can hold
//! neither `,` nor `:` (Go refuses both too), and it may not be empty
//! (stricter than Go, where `version=` silently meant "latest").
//!
//! **Defaults.** A reference says only what the user asked for. What is
//! filled in depends on the use:
//!
//! - *store lookup*: no `version` means "any version" (the store picks the
//!   newest import). Use [`ImageReference::with_os_arch`] to restrict to
//!   images that run on this host.
//! - *discovery*: the spec's templates need a version, and the Go reference
//!   substitutes `latest` when none is given; `os` and `arch` are filled from
//!   the host by the caller (rkt did so). [`ImageReference::with_defaults`]
//!   does all three. Use it only for discovery, never for store lookup, where
//!   `latest` would wrongly demand an image labelled `version=latest`.
//!
//! [`ImageArg::classify`] decides whether a command-line argument is such a
//! name, or an image ID, a path, a URL or a Docker/OCI reference.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::{AcIdentifier, Label, Labels, VALID_OS_ARCH};

/// The version the discovery templates get when the reference names none
/// (`defaultVersion` in the Go reference's `discovery` package).
pub const DEFAULT_DISCOVERY_VERSION: &str = "latest";

/// Why an image reference (or a command-line image argument) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error("bad image name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("invalid label name {name:?}: {reason}")]
    BadLabelName { name: String, reason: String },
    #[error("label {part:?} has no \"=\" (write labels as name=value, e.g. os=linux)")]
    LabelWithoutValue { part: String },
    #[error("empty label between two commas (or a trailing comma)")]
    EmptyLabel,
    #[error("label {name:?} has an empty value")]
    EmptyValue { name: String },
    #[error("label {name:?}: value {value:?} is not allowed: {reason}")]
    BadValue {
        name: String,
        value: String,
        reason: String,
    },
    #[error("\"name\" cannot be a label: the name is the part before the first \",\" or \":\"")]
    NameLabel,
    #[error("duplicate label {name:?}")]
    DuplicateLabel { name: String },
    #[error("version given twice, as \":{colon}\" and as \"version={label}\": use one of the two")]
    VersionTwice { colon: String, label: String },
    #[error(
        "\":\" may appear only once, right after the name (as in example.com/app:1.0,os=linux)"
    )]
    MisplacedColon,
    #[error("{message}{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    OsArch {
        message: String,
        hint: Option<String>,
    },
    #[error("{arg:?} is not a valid image ID: {reason}")]
    BadImageId { arg: String, reason: String },
    #[error("{arg:?}: unsupported URL scheme {scheme:?} (use https://, http://, file://, docker://, oci:, oci-archive: or docker-archive:)")]
    UnsupportedScheme { arg: String, scheme: String },
    #[error("{arg:?}: {what} needs something after the prefix")]
    EmptyLocation { arg: String, what: &'static str },
    #[error("this host (os {os:?}, arch {arch:?}) has no appc os/arch spelling")]
    UnknownHost { os: String, arch: String },
}

/// An appc image name with the labels that select among its images.
///
/// Built only valid: through [`FromStr`]/[`TryFrom`], serde (as the string
/// form), or [`ImageReference::new`]. Labels are kept sorted by name, so two
/// references asking for the same thing are equal and print the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageReference {
    name: AcIdentifier,
    labels: BTreeMap<AcIdentifier, String>,
}

impl ImageReference {
    /// A reference from a name and labels, checked as parsing checks them.
    pub fn new(
        name: AcIdentifier,
        labels: impl IntoIterator<Item = (AcIdentifier, String)>,
    ) -> Result<Self, ReferenceError> {
        let mut map = BTreeMap::new();
        for (k, v) in labels {
            check_label(&k, &v)?;
            if map.contains_key(&k) {
                return Err(ReferenceError::DuplicateLabel { name: k.into() });
            }
            map.insert(k, v);
        }
        check_os_arch(&map)?;
        Ok(ImageReference { name, labels: map })
    }

    /// A reference to any image of this name.
    pub fn from_name(name: AcIdentifier) -> Self {
        ImageReference {
            name,
            labels: BTreeMap::new(),
        }
    }

    pub fn name(&self) -> &AcIdentifier {
        &self.name
    }

    /// All labels, `version` included, sorted by name.
    pub fn labels(&self) -> &BTreeMap<AcIdentifier, String> {
        &self.labels
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn version(&self) -> Option<&str> {
        self.label("version")
    }

    pub fn os(&self) -> Option<&str> {
        self.label("os")
    }

    pub fn arch(&self) -> Option<&str> {
        self.label("arch")
    }

    /// The labels as the manifest type (sorted by name).
    pub fn to_labels(&self) -> Labels {
        let items = self
            .labels
            .iter()
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .collect();
        // The map's keys are unique, never "name", and os/arch were checked.
        Labels::new(items).unwrap_or_default()
    }

    /// This reference with one more label, or one label replaced.
    pub fn with_label(
        &self,
        name: AcIdentifier,
        value: impl Into<String>,
    ) -> Result<Self, ReferenceError> {
        let value = value.into();
        check_label(&name, &value)?;
        let mut out = self.clone();
        out.labels.insert(name, value);
        check_os_arch(&out.labels)?;
        Ok(out)
    }

    /// This reference with `os` and `arch` filled in where the user left them
    /// out (labels the user gave are kept). Fails when the result is not a
    /// valid appc os/arch pair, e.g. the user's `arch=arm64` (appc spells it
    /// `aarch64`) with the host's `os=linux`.
    pub fn with_os_arch(&self, os: &str, arch: &str) -> Result<Self, ReferenceError> {
        let mut out = self.clone();
        for (k, v) in [("os", os), ("arch", arch)] {
            let key = ident(k);
            check_label(&key, v)?;
            out.labels.entry(key).or_insert_with(|| v.to_owned());
        }
        check_os_arch(&out.labels)?;
        Ok(out)
    }

    /// The defaults for **discovery**: `os` and `arch` as in
    /// [`with_os_arch`](Self::with_os_arch), and `version` set to
    /// [`DEFAULT_DISCOVERY_VERSION`] (`latest`) when none was given, as the
    /// Go reference does before rendering templates.
    ///
    /// Not for store lookup: there a missing version means "any version,
    /// newest import", and `latest` would demand a `version=latest` label.
    pub fn with_defaults(&self, os: &str, arch: &str) -> Result<Self, ReferenceError> {
        let mut out = self.with_os_arch(os, arch)?;
        out.labels
            .entry(ident("version"))
            .or_insert_with(|| DEFAULT_DISCOVERY_VERSION.to_owned());
        Ok(out)
    }

    /// [`with_defaults`](Self::with_defaults) with this host's os and arch
    /// ([`host_os_arch`]).
    pub fn with_host_defaults(&self) -> Result<Self, ReferenceError> {
        let (os, arch) = host_os_arch()?;
        self.with_defaults(os, arch)
    }

    /// Whether an image with this name and these labels is what the
    /// reference asks for (spec `discovery.md`, Validation): same name, and
    /// every label of the reference present in the image with the same
    /// value. Labels the reference does not mention match any value.
    pub fn matches(&self, name: &AcIdentifier, labels: &Labels) -> bool {
        &self.name == name
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k.as_str()) == Some(v.as_str()))
    }
}

fn ident(s: &str) -> AcIdentifier {
    // Only called with the literals "os", "arch" and "version".
    AcIdentifier::try_from(s).unwrap_or_else(|_| unreachable!("{s:?} is a valid AC identifier"))
}

/// The rules on one label that parsing and construction share.
fn check_label(name: &AcIdentifier, value: &str) -> Result<(), ReferenceError> {
    if name == "name" {
        return Err(ReferenceError::NameLabel);
    }
    if value.is_empty() {
        return Err(ReferenceError::EmptyValue {
            name: name.to_string(),
        });
    }
    let bad = |reason: &str| ReferenceError::BadValue {
        name: name.to_string(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if value.contains(',') {
        return Err(bad("\",\" separates labels"));
    }
    if value.contains(':') {
        return Err(bad("\":\" may only follow the name (name:version)"));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    // `NAME://…` reads as a URL (ImageArg::classify), so a version written
    // right after the colon may not start with "//": every reference must
    // print as something that reads back as the same reference.
    if name == "version" && value.starts_with("//") {
        return Err(bad("a version starting with \"//\" would read as a URL"));
    }
    Ok(())
}

/// The appc spelling of a few spellings people reach for (Go's, Rust's,
/// Debian's), used as a hint in os/arch errors.
fn arch_hint(os: Option<&str>, arch: &str) -> Option<String> {
    let appc = match (os, arch) {
        (Some("darwin"), "amd64" | "x86-64") => "x86_64",
        (Some("darwin"), _) => return None,
        (_, "x86_64" | "x86-64" | "x64") => "amd64",
        (Some("freebsd"), "arm64" | "aarch64") => return None,
        (_, "arm64") => "aarch64",
        (_, "386" | "x86" | "i686" | "i586") => "i386",
        (Some("freebsd"), _) => return None,
        (_, "arm" | "armhf" | "armv7") => "armv7l",
        (_, "armel" | "armv6") => "armv6l",
        (_, "ppc64el" | "powerpc64le") => "ppc64le",
        (_, "powerpc64") => "ppc64",
        _ => return None,
    };
    Some(format!("appc spells this arch {appc:?}"))
}

fn check_os_arch(labels: &BTreeMap<AcIdentifier, String>) -> Result<(), ReferenceError> {
    let os = labels
        .iter()
        .find(|(k, _)| *k == "os")
        .map(|(_, v)| v.as_str());
    let arch = labels
        .iter()
        .find(|(k, _)| *k == "arch")
        .map(|(_, v)| v.as_str());
    let Some(os) = os else {
        // `arch` alone is meaningless, not wrong (spec types.md; Go agrees).
        return Ok(());
    };
    let Some((_, arches)) = VALID_OS_ARCH.iter().find(|(o, _)| *o == os) else {
        let oses: Vec<&str> = VALID_OS_ARCH.iter().map(|(o, _)| *o).collect();
        let hint = match os {
            "macos" | "osx" => Some("appc spells this os \"darwin\"".to_owned()),
            _ => None,
        };
        return Err(ReferenceError::OsArch {
            message: format!("os {os:?} is not supported (one of: {})", oses.join(", ")),
            hint,
        });
    };
    if let Some(arch) = arch {
        if !arches.contains(&arch) {
            return Err(ReferenceError::OsArch {
                message: format!(
                    "arch {arch:?} is not valid for os {os:?} (one of: {})",
                    arches.join(", ")
                ),
                hint: arch_hint(Some(os), arch),
            });
        }
    }
    Ok(())
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (head, rest) = match s.split_once(',') {
            Some((h, r)) => (h, Some(r)),
            None => (s, None),
        };
        if rest.is_some_and(|r| r.contains(':')) {
            return Err(ReferenceError::MisplacedColon);
        }
        let (name, colon_version) = match head.split_once(':') {
            Some((n, v)) => {
                if v.contains(':') {
                    return Err(ReferenceError::MisplacedColon);
                }
                (n, Some(v))
            }
            None => (head, None),
        };
        let name = AcIdentifier::try_from(name).map_err(|e| ReferenceError::BadName {
            name: name.to_owned(),
            reason: strip_quoted_prefix(e.message(), name),
        })?;

        let mut labels: BTreeMap<AcIdentifier, String> = BTreeMap::new();
        if let Some(v) = colon_version {
            let key = ident("version");
            check_label(&key, v)?;
            labels.insert(key, v.to_owned());
        }
        for part in rest.into_iter().flat_map(|r| r.split(',')) {
            if part.is_empty() {
                return Err(ReferenceError::EmptyLabel);
            }
            let Some((k, v)) = part.split_once('=') else {
                return Err(ReferenceError::LabelWithoutValue {
                    part: part.to_owned(),
                });
            };
            let key = AcIdentifier::try_from(k).map_err(|e| ReferenceError::BadLabelName {
                name: k.to_owned(),
                reason: strip_quoted_prefix(e.message(), k),
            })?;
            if key == "version" {
                if let Some(colon) = colon_version {
                    return Err(ReferenceError::VersionTwice {
                        colon: colon.to_owned(),
                        label: v.to_owned(),
                    });
                }
            }
            check_label(&key, v)?;
            if labels.contains_key(&key) {
                return Err(ReferenceError::DuplicateLabel { name: k.to_owned() });
            }
            labels.insert(key, v.to_owned());
        }
        check_os_arch(&labels)?;
        Ok(ImageReference { name, labels })
    }
}

/// `ValueError` messages start with `"value" is not a valid ...: `; our
/// errors already quote the value, so keep only the rule after the colon.
fn strip_quoted_prefix(message: &str, value: &str) -> String {
    let quoted = format!("{value:?} is not a valid ");
    match message
        .strip_prefix(&quoted)
        .and_then(|m| m.split_once(": "))
    {
        Some((_, why)) => why.to_owned(),
        None => message.to_owned(),
    }
}

impl TryFrom<&str> for ImageReference {
    type Error = ReferenceError;
    fn try_from(s: &str) -> Result<Self, ReferenceError> {
        s.parse()
    }
}

impl TryFrom<String> for ImageReference {
    type Error = ReferenceError;
    fn try_from(s: String) -> Result<Self, ReferenceError> {
        s.parse()
    }
}

/// The canonical form: `name[:version][,label=value...]`, other labels
/// sorted by name, e.g. `example.com/app:1.0,arch=amd64,os=linux`.
impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_str())?;
        if let Some(v) = self.version() {
            write!(f, ":{v}")?;
        }
        for (k, v) in &self.labels {
            if *k != "version" {
                write!(f, ",{k}={v}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for ImageReference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageReference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Rust compilation target, as far as appc's os/arch labels care.
/// [`RustTarget::host`] is the one this program was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RustTarget<'a> {
    /// `std::env::consts::OS`: `linux`, `freebsd`, `macos`...
    pub os: &'a str,
    /// `std::env::consts::ARCH`: `x86_64`, `aarch64`, `arm`, `powerpc64`...
    pub arch: &'a str,
    pub big_endian: bool,
    /// For `arch == "arm"`: whether the target is ARMv7 (else ARMv6).
    pub armv7: bool,
}

impl RustTarget<'static> {
    /// The target this program was compiled for.
    pub fn host() -> Self {
        RustTarget {
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            big_endian: cfg!(target_endian = "big"),
            armv7: cfg!(target_feature = "v7"),
        }
    }
}

impl RustTarget<'_> {
    /// The appc `(os, arch)` labels for this target, after the table of the Go
    /// reference (`types.ToAppcOSArch`: Go's amd64 is appc's `amd64` on
    /// Linux/FreeBSD but `x86_64` on Darwin, Go's arm64 is `aarch64`, GOARM
    /// 6/7 are `armv6l`/`armv7l`), extended to the big-endian spellings the
    /// spec lists (`aarch64_be`, `ppc64`). `None` where appc has no name for
    /// the target (e.g. riscv64, or Darwin on aarch64).
    pub fn to_appc(&self) -> Option<(&'static str, &'static str)> {
        let pair = match (self.os, self.arch) {
            ("linux", "x86_64") => ("linux", "amd64"),
            ("linux", "x86") => ("linux", "i386"),
            ("linux", "aarch64") if self.big_endian => ("linux", "aarch64_be"),
            ("linux", "aarch64") => ("linux", "aarch64"),
            ("linux", "arm") if self.big_endian && self.armv7 => ("linux", "armv7b"),
            ("linux", "arm") if self.big_endian => return None,
            ("linux", "arm") if self.armv7 => ("linux", "armv7l"),
            ("linux", "arm") => ("linux", "armv6l"),
            ("linux", "powerpc64") if self.big_endian => ("linux", "ppc64"),
            ("linux", "powerpc64") => ("linux", "ppc64le"),
            ("linux", "s390x") => ("linux", "s390x"),
            ("freebsd", "x86_64") => ("freebsd", "amd64"),
            ("freebsd", "x86") => ("freebsd", "i386"),
            ("freebsd", "arm") => ("freebsd", "arm"),
            ("macos", "x86_64") => ("darwin", "x86_64"),
            ("macos", "x86") => ("darwin", "i386"),
            _ => return None,
        };
        Some(pair)
    }
}

/// This host's appc `(os, arch)`, e.g. `("linux", "amd64")`.
pub fn host_os_arch() -> Result<(&'static str, &'static str), ReferenceError> {
    let t = RustTarget::host();
    t.to_appc().ok_or_else(|| ReferenceError::UnknownHost {
        os: t.os.to_owned(),
        arch: t.arch.to_owned(),
    })
}

/// Where a Docker/OCI image argument points, by its transport prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OciTransport {
    /// `oci:DIR[:REF]` — an OCI image layout directory.
    Oci,
    /// `oci-archive:FILE[:REF]` — an OCI image layout in a tar file.
    OciArchive,
    /// `docker-archive:FILE[:REF]` — the output of `docker save`.
    DockerArchive,
}

impl OciTransport {
    pub fn prefix(self) -> &'static str {
        match self {
            OciTransport::Oci => "oci:",
            OciTransport::OciArchive => "oci-archive:",
            OciTransport::DockerArchive => "docker-archive:",
        }
    }
}

/// What an image argument on the command line (`berth fetch ARG`,
/// `berth run ARG`) refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageArg {
    /// `sha512-` and hex digits: a whole image ID or a prefix of one; the
    /// store resolves a prefix (and reports an ambiguous one).
    ImageId(String),
    /// A local ACI file (a `file://` URL arrives here without its scheme).
    /// Whether it exists is for the caller to find out.
    Path(String),
    /// An `https://` or `http://` URL of an ACI (the scheme is kept).
    Url(String),
    /// `docker://REF`: the reference after the scheme, e.g.
    /// `busybox:latest` or `registry.example.com/team/app`.
    DockerRef(String),
    /// `oci:`, `oci-archive:` or `docker-archive:` and what follows it.
    OciLayout {
        transport: OciTransport,
        location: String,
    },
    /// An appc image name with labels, to be found in the store or by
    /// discovery.
    Name(ImageReference),
}

impl ImageArg {
    /// Classifies a command-line image argument.
    ///
    /// The precedence is rkt's (`guessImageType`): image ID first, then URLs
    /// (anything with a `scheme://`, and the `oci:`-style transports), then
    /// paths, then names. In detail:
    ///
    /// 1. `sha512-HEX...` is an image ID (or a prefix of one). An argument
    ///    starting with `sha512-` that is not followed by lowercase hex is an
    ///    error, not a name.
    /// 2. `scheme://...`: `https`/`http` (any case) is a URL, `docker` a
    ///    Docker reference, `file` a path; any other scheme is an error.
    ///    `oci:`, `oci-archive:` and `docker-archive:` (no `//`) are OCI/Docker
    ///    layouts.
    /// 3. An argument starting with `/`, `./` or `../` (or `.`/`..`), or
    ///    ending with `.aci`, is a path. Checking that it exists is the
    ///    caller's job. (rkt also took any existing relative file: that is a
    ///    filesystem test, left to the caller, which can write `./name`.)
    /// 4. Anything else is parsed as an [`ImageReference`], and its errors
    ///    are returned as they are.
    ///
    /// So an image *named* `oci` with version `1` must be written
    /// `oci,version=1`, and a relative path that looks like a name
    /// (`example.com/app`) must be written `./example.com/app`.
    pub fn classify(arg: &str) -> Result<ImageArg, ReferenceError> {
        if arg.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some(hex) = arg.strip_prefix("sha512-") {
            return if hex.is_empty() {
                Err(ReferenceError::BadImageId {
                    arg: arg.to_owned(),
                    reason: "no digest after \"sha512-\"".to_owned(),
                })
            } else if !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                Err(ReferenceError::BadImageId {
                    arg: arg.to_owned(),
                    reason: "the digest must be lowercase hex digits".to_owned(),
                })
            } else if hex.len() > 128 {
                Err(ReferenceError::BadImageId {
                    arg: arg.to_owned(),
                    reason: format!("the digest has {} hex digits, a sha512 has 128", hex.len()),
                })
            } else {
                Ok(ImageArg::ImageId(arg.to_owned()))
            };
        }
        if let Some((scheme, rest)) = split_scheme(arg) {
            let lower = scheme.to_ascii_lowercase();
            return match lower.as_str() {
                "https" | "http" => Ok(ImageArg::Url(arg.to_owned())),
                "docker" if rest.is_empty() => Err(ReferenceError::EmptyLocation {
                    arg: arg.to_owned(),
                    what: "docker://",
                }),
                "docker" => Ok(ImageArg::DockerRef(rest.to_owned())),
                "file" if rest.is_empty() => Err(ReferenceError::EmptyLocation {
                    arg: arg.to_owned(),
                    what: "file://",
                }),
                "file" => Ok(ImageArg::Path(rest.to_owned())),
                _ => Err(ReferenceError::UnsupportedScheme {
                    arg: arg.to_owned(),
                    scheme: scheme.to_owned(),
                }),
            };
        }
        for transport in [
            OciTransport::Oci,
            OciTransport::OciArchive,
            OciTransport::DockerArchive,
        ] {
            if let Some(location) = arg.strip_prefix(transport.prefix()) {
                if location.is_empty() {
                    return Err(ReferenceError::EmptyLocation {
                        arg: arg.to_owned(),
                        what: transport.prefix(),
                    });
                }
                return Ok(ImageArg::OciLayout {
                    transport,
                    location: location.to_owned(),
                });
            }
        }
        let is_path = arg.starts_with('/')
            || arg.starts_with("./")
            || arg.starts_with("../")
            || arg == "."
            || arg == ".."
            || arg.ends_with(".aci");
        if is_path {
            return Ok(ImageArg::Path(arg.to_owned()));
        }
        arg.parse().map(ImageArg::Name)
    }
}

/// `("https", "example.com/x")` for `https://example.com/x`: a URI scheme
/// (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`) followed by `://`.
fn split_scheme(arg: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = arg.split_once("://")?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (first_ok && rest_ok).then_some((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_quoted_prefix_keeps_rule() {
        let e = AcIdentifier::try_from("Foo").unwrap_err();
        let r = strip_quoted_prefix(e.message(), "Foo");
        assert!(r.starts_with("'F' is not allowed"), "{r}");
    }

    #[test]
    fn split_scheme_needs_a_scheme() {
        assert_eq!(split_scheme("https://x"), Some(("https", "x")));
        assert_eq!(split_scheme("git+ssh://x"), Some(("git+ssh", "x")));
        assert_eq!(split_scheme("example.com/a://b"), None);
        assert_eq!(split_scheme("://x"), None);
        assert_eq!(split_scheme("1a://x"), None);
    }
}
