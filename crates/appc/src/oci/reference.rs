//! Docker/OCI image references and local image locations.
//!
//! [`DockerReference`] follows Docker's name rules (distribution/reference,
//! the `docker.io` normalisation of the Docker CLI):
//!
//! - `[REGISTRY/]REPO[:TAG][@DIGEST]`; the first `/`-separated component is
//!   a registry when it contains a `.` or a `:` or is `localhost`, and there
//!   is more to the name after it (`localhost` alone is a repository);
//! - no registry means Docker Hub, `registry-1.docker.io` (its API host;
//!   `docker.io` and `index.docker.io` mean the same), where a one-component
//!   repository is an official image under `library/`;
//! - no tag and no digest means the tag `latest`;
//! - repository components are lowercase `[a-z0-9]` runs joined by `.`,
//!   `_`, `__` or dashes; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the
//!   only digest algorithm is `sha256`.
//!
//! So `busybox` is `registry-1.docker.io/library/busybox:latest`, and
//! `localhost:5000/team/app@sha256:…` keeps its registry and has no tag.
//!
//! [`OciLocation`] is the rest of an `oci:`, `oci-archive:` or
//! `docker-archive:` argument: a path and, after the first `:`, an optional
//! tag or reference (skopeo's syntax, so a path may not contain `:`).

use std::fmt;
use std::str::FromStr;

use crate::reference::OciTransport;

/// Docker Hub's registry API host.
pub const DOCKER_HUB: &str = "registry-1.docker.io";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

/// Why a Docker reference or an OCI location was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error("{input:?}: repository name must be lowercase (Docker's rule); write {lower:?}")]
    Uppercase { input: String, lower: String },
    #[error("{input:?}: invalid repository name component {component:?} (use lowercase letters and digits, joined by \".\", \"_\", \"__\" or \"-\")")]
    BadComponent { input: String, component: String },
    #[error("{input:?}: invalid tag {tag:?} (up to 128 letters, digits, \"_\", \".\" and \"-\", not starting with \".\" or \"-\")")]
    BadTag { input: String, tag: String },
    #[error(
        "{input:?}: invalid digest {digest:?} (expected \"sha256:\" and 64 lowercase hex digits)"
    )]
    BadDigest { input: String, digest: String },
    #[error("{input:?}: invalid registry {registry:?}")]
    BadRegistry { input: String, registry: String },
    #[error("{input:?}: the repository name is longer than 255 characters")]
    TooLong { input: String },
    #[error("{input:?}: no path before the tag")]
    NoPath { input: String },
}

/// A parsed, normalised `docker://` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DockerReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "."
            || sep == "_"
            || sep == "__"
            || (!sep.is_empty() && sep.bytes().all(|x| x == b'-'));
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

/// `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A host name or IPv4 address with an optional port, or `[IPv6]:port`.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => {
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return false;
                }
                (None, p.strip_prefix(':').map(Some).unwrap_or(None))
            }
            None => return false,
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(r), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
        }
    }
}

impl DockerReference {
    /// Parse and normalise a reference (what follows `docker://`).
    pub fn parse(input: &str) -> Result<DockerReference, OciReferenceError> {
        if input.is_empty() {
            return Err(OciReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(OciReferenceError::BadDigest {
                        input: input.into(),
                        digest: d.into(),
                    });
                }
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/' (a ':'
        // before it is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(OciReferenceError::BadTag {
                        input: input.into(),
                        tag: t.into(),
                    });
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(OciReferenceError::Empty);
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, more))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_registry(first) {
                    return Err(OciReferenceError::BadRegistry {
                        input: input.into(),
                        registry: first.into(),
                    });
                }
                (first.to_string(), more.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "docker.io" | "index.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(OciReferenceError::Uppercase {
                input: input.into(),
                lower: input.to_ascii_lowercase(),
            });
        }
        for c in repository.split('/') {
            if !valid_component(c) {
                return Err(OciReferenceError::BadComponent {
                    input: input.into(),
                    component: c.into(),
                });
            }
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(OciReferenceError::TooLong {
                input: input.into(),
            });
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(DockerReference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host (and port): `registry-1.docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// `sha256:…`, when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What to ask the registry's manifest endpoint for: the digest when
    /// pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for DockerReference {
    /// The canonical form, `registry/repository[:tag][@digest]`, which
    /// parses back to the same reference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for DockerReference {
    type Err = OciReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DockerReference::parse(s)
    }
}

/// A local Docker/OCI image: a layout directory or an archive, with the tag
/// (or, for `docker-archive:`, the image reference) to pick in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLocation {
    pub transport: OciTransport,
    pub path: String,
    /// `None`: the only image there (an error if there are several).
    pub reference: Option<String>,
}

impl OciLocation {
    /// Parse what follows the transport prefix: `PATH[:REF]`, split at the
    /// first `:` as skopeo does.
    pub fn parse(transport: OciTransport, location: &str) -> Result<Self, OciReferenceError> {
        let (path, reference) = match location.split_once(':') {
            Some((p, r)) => (p, (!r.is_empty()).then(|| r.to_string())),
            None => (location, None),
        };
        if path.is_empty() {
            return Err(OciReferenceError::NoPath {
                input: format!("{}{location}", transport.prefix()),
            });
        }
        Ok(OciLocation {
            transport,
            path: path.to_string(),
            reference,
        })
    }
}

impl fmt::Display for OciLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.transport.prefix(), self.path)?;
        if let Some(r) = &self.reference {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        DockerReference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_normalisation() {
        assert_eq!(p("busybox"), "registry-1.docker.io/library/busybox:latest");
        assert_eq!(
            p("busybox:1.36"),
            "registry-1.docker.io/library/busybox:1.36"
        );
        assert_eq!(p("user/app"), "registry-1.docker.io/user/app:latest");
        assert_eq!(
            p("docker.io/busybox"),
            "registry-1.docker.io/library/busybox:latest"
        );
        assert_eq!(
            p("index.docker.io/library/busybox:x"),
            "registry-1.docker.io/library/busybox:x"
        );
        assert_eq!(p("a/b/c"), "registry-1.docker.io/a/b/c:latest");
    }

    #[test]
    fn registries_are_recognised() {
        let r = DockerReference::parse("localhost:5000/team/app:v1").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(p("localhost/app"), "localhost/app:latest");
        assert_eq!(p("quay.io/coreos/etcd"), "quay.io/coreos/etcd:latest");
        assert_eq!(p("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        assert_eq!(p("[::1]:5000/x"), "[::1]:5000/x:latest");
        // `localhost` alone, and a first component without dot/colon, are
        // repositories.
        assert_eq!(
            p("localhost"),
            "registry-1.docker.io/library/localhost:latest"
        );
        assert_eq!(p("team/app"), "registry-1.docker.io/team/app:latest");
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = DockerReference::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.manifest_reference(), d);
        let r = DockerReference::parse(&format!("x:t@{d}")).unwrap();
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(DockerReference::parse(&r.to_string()).unwrap(), r);
        assert!(matches!(
            DockerReference::parse("x@sha256:abc"),
            Err(OciReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            DockerReference::parse(&format!("x@md5:{}", "ab".repeat(32))),
            Err(OciReferenceError::BadDigest { .. })
        ));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            DockerReference::parse("Busybox"),
            Err(OciReferenceError::Uppercase { .. })
        ));
        assert!(matches!(
            DockerReference::parse("a//b"),
            Err(OciReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            DockerReference::parse("a-/b"),
            Err(OciReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            DockerReference::parse("a:.bad"),
            Err(OciReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            DockerReference::parse(&format!("a:{}", "t".repeat(129))),
            Err(OciReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            DockerReference::parse("exa_mple.com/x"),
            Err(OciReferenceError::BadRegistry { .. })
        ));
        assert!(matches!(
            DockerReference::parse(""),
            Err(OciReferenceError::Empty)
        ));
        assert!(DockerReference::parse(&"a".repeat(300)).is_err());
        assert!(valid_component("a__b") && valid_component("a---b") && !valid_component("a___b"));
    }

    #[test]
    fn locations() {
        let l = OciLocation::parse(OciTransport::Oci, "/tmp/layout:v1").unwrap();
        assert_eq!(l.path, "/tmp/layout");
        assert_eq!(l.reference.as_deref(), Some("v1"));
        assert_eq!(l.to_string(), "oci:/tmp/layout:v1");
        let l = OciLocation::parse(OciTransport::DockerArchive, "img.tar:busybox:latest").unwrap();
        assert_eq!(l.path, "img.tar");
        assert_eq!(l.reference.as_deref(), Some("busybox:latest"));
        let l = OciLocation::parse(OciTransport::OciArchive, "a.tar").unwrap();
        assert_eq!(l.reference, None);
        assert!(OciLocation::parse(OciTransport::Oci, ":tag").is_err());
    }
}
