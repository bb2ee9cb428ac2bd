//! The trusted-key store: which OpenPGP keys may sign images of which names.
//!
//! Layout (rkt's, so existing `/etc/rkt/trustedkeys` trees carry over):
//!
//! ```text
//! <config>/trustedkeys/root.d/<fingerprint>                   trusted for every name
//! <config>/trustedkeys/prefix.d/<prefix>/<fingerprint>        trusted for <prefix> and below
//! ```
//!
//! `<config>` is the vendor directory (`--system-config`, `/usr/lib/berth`)
//! and the local one (`--local-config`, `/etc/berth`); `berth trust` writes
//! to the local one only. `<prefix>` is an AC identifier written as nested
//! directories (`prefix.d/example.com/app/`), as rkt does, and a name is
//! matched against *every ancestor directory* of its own path
//! (`example.com/app/x`, `example.com/app`, `example.com`): trust follows
//! path segments, so a key for `example.com/ap` does not cover
//! `example.com/app`. (A plain string prefix would: that is the bug this
//! layout avoids.) AC identifiers cannot contain `..` or empty segments, so
//! a prefix cannot escape `prefix.d`.
//!
//! Files are named by the key's lowercase hex fingerprint and hold the
//! ASCII-armored key; the name is checked against the content when read, so
//! a file renamed by hand cannot smuggle another key in. An **empty** file
//! in the local directory named like a vendor key's fingerprint, in any
//! directory that applies to a name, revokes that vendor key for it.
//!
//! Writes are atomic: a temp file in the same directory, fsync, rename,
//! fsync of the directory.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_appc::discovery::discovery_prefixes;
use berth_appc::AcIdentifier;

use super::key::{KeyError, PublicKey};

/// Where a trust entry sits: vendor or local configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    System,
    Local,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::System => "system",
            Source::Local => "local",
        }
    }
}

/// For which names a key is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every name (`root.d`).
    Root,
    /// The prefix and every name below it, by path segments.
    Prefix(AcIdentifier),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Root => f.write_str("(root: every name)"),
            Scope::Prefix(p) => f.write_str(p.as_str()),
        }
    }
}

/// A key file found in the store.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key: PublicKey,
    pub scope: Scope,
    pub source: Source,
    pub path: PathBuf,
}

/// A revocation marker: an empty local file named like a vendor key.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub fingerprint: String,
    pub scope: Scope,
    pub path: PathBuf,
}

/// The keys that apply to one name.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Trusted keys, revoked vendor keys left out.
    pub keys: Vec<TrustedKey>,
    /// Vendor keys that an empty local file revoked.
    pub revoked: Vec<TrustedKey>,
}

/// Everything in the store, for `berth trust list`.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub keys: Vec<TrustedKey>,
    pub revocations: Vec<Revocation>,
}

impl Listing {
    /// Whether a vendor entry is revoked by a local marker of the same scope.
    pub fn is_revoked(&self, entry: &TrustedKey) -> bool {
        entry.source == Source::System
            && self
                .revocations
                .iter()
                .any(|r| r.fingerprint == entry.key.fingerprint() && r.scope == entry.scope)
    }
}

/// A failure reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("cannot read trusted keys in {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("trusted key file {} is unusable", path.display())]
    BadKey {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("trusted key file {} holds key {actual}, not the one its name says", path.display())]
    NameMismatch { path: PathBuf, actual: String },
    #[error("cannot write trusted key {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no trusted key with fingerprint {fingerprint} in {}", dir.display())]
    NotFound { fingerprint: String, dir: PathBuf },
}

/// The two trusted-key directories.
#[derive(Debug, Clone)]
pub struct Keystore {
    system: PathBuf,
    local: PathBuf,
}

const TRUSTED: &str = "trustedkeys";

impl Keystore {
    /// The store under the two configuration directories (each gets
    /// `trustedkeys/` appended).
    pub fn new(system_config: impl Into<PathBuf>, local_config: impl Into<PathBuf>) -> Self {
        Keystore {
            system: system_config.into().join(TRUSTED),
            local: local_config.into().join(TRUSTED),
        }
    }

    fn base(&self, source: Source) -> &Path {
        match source {
            Source::System => &self.system,
            Source::Local => &self.local,
        }
    }

    /// The directory of a scope in one of the two trees.
    pub fn scope_dir(&self, source: Source, scope: &Scope) -> PathBuf {
        let base = self.base(source);
        match scope {
            Scope::Root => base.join("root.d"),
            Scope::Prefix(p) => {
                let mut d = base.join("prefix.d");
                for seg in p.as_str().split('/') {
                    d.push(seg);
                }
                d
            }
        }
    }

    /// The keys trusted for `name`: `root.d` and every ancestor prefix, from
    /// both trees; vendor keys revoked by a local empty file are set apart.
    pub fn keyring_for(&self, name: &AcIdentifier) -> Result<Keyring, KeystoreError> {
        let mut scopes = vec![Scope::Root];
        for p in discovery_prefixes(name) {
            if let Ok(id) = AcIdentifier::try_from(p.as_str()) {
                scopes.push(Scope::Prefix(id));
            }
        }
        let mut found = Vec::new();
        let mut markers = Vec::new();
        for scope in &scopes {
            for source in [Source::System, Source::Local] {
                let (keys, revs) = self.read_dir(source, scope)?;
                found.extend(keys);
                markers.extend(revs);
            }
        }
        let mut ring = Keyring::default();
        for k in found {
            let fp = k.key.fingerprint();
            if k.source == Source::System && markers.iter().any(|m| m.fingerprint == fp) {
                ring.revoked.push(k);
            } else {
                ring.keys.push(k);
            }
        }
        Ok(ring)
    }

    /// The key files (and local revocation markers) directly in one
    /// scope's directory. A missing directory is empty.
    fn read_dir(
        &self,
        source: Source,
        scope: &Scope,
    ) -> Result<(Vec<TrustedKey>, Vec<Revocation>), KeystoreError> {
        let dir = self.scope_dir(source, scope);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((vec![], vec![])),
            Err(source) => return Err(KeystoreError::Read { path: dir, source }),
        };
        let mut keys = Vec::new();
        let mut revs = Vec::new();
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| KeystoreError::Read {
                path: dir.clone(),
                source,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !is_fingerprint(&name) {
                continue;
            }
            let meta = entry.metadata().map_err(|source| KeystoreError::Read {
                path: entry.path(),
                source,
            })?;
            if meta.is_file() {
                names.push((name.to_ascii_lowercase(), entry.path()));
            }
        }
        names.sort();
        for (fp, path) in names {
            let bytes = fs::read(&path).map_err(|source| KeystoreError::Read {
                path: path.clone(),
                source,
            })?;
            if bytes.is_empty() {
                if source == Source::Local {
                    revs.push(Revocation {
                        fingerprint: fp,
                        scope: scope.clone(),
                        path,
                    });
                }
                continue;
            }
            let key = PublicKey::parse_one(&bytes).map_err(|source| KeystoreError::BadKey {
                path: path.clone(),
                source,
            })?;
            if key.fingerprint() != fp {
                return Err(KeystoreError::NameMismatch {
                    path,
                    actual: key.fingerprint(),
                });
            }
            keys.push(TrustedKey {
                key,
                scope: scope.clone(),
                source,
                path,
            });
        }
        Ok((keys, revs))
    }

    /// Every key and revocation marker in both trees.
    pub fn list(&self) -> Result<Listing, KeystoreError> {
        let mut out = Listing::default();
        for source in [Source::System, Source::Local] {
            let mut scopes = vec![Scope::Root];
            let prefix_root = self.base(source).join("prefix.d");
            collect_prefixes(&prefix_root, "", &mut scopes)?;
            for scope in scopes {
                let (k, r) = self.read_dir(source, &scope)?;
                out.keys.extend(k);
                out.revocations.extend(r);
            }
        }
        Ok(out)
    }

    /// Writes `key` to the local tree for `scope`; returns its path.
    /// Writing the same key again replaces the file (same content).
    pub fn add(&self, scope: &Scope, key: &PublicKey) -> Result<PathBuf, KeystoreError> {
        let dir = self.scope_dir(Source::Local, scope);
        let path = dir.join(key.fingerprint());
        write_atomic(&dir, &path, key.to_armored().as_bytes()).map_err(|source| {
            KeystoreError::Write {
                path: path.clone(),
                source,
            }
        })?;
        Ok(path)
    }

    /// Removes a key from the local tree, in every scope; a key that is (also)
    /// a vendor key is revoked there with an empty local file. Returns the
    /// files removed and the markers written.
    pub fn remove(&self, fingerprint: &str) -> Result<(Vec<PathBuf>, Vec<PathBuf>), KeystoreError> {
        let fp = fingerprint.to_ascii_lowercase().replace(' ', "");
        let listing = self.list()?;
        let mut removed = Vec::new();
        let mut marked = Vec::new();
        for entry in listing.keys.iter().filter(|k| k.key.fingerprint() == fp) {
            match entry.source {
                Source::Local => {
                    fs::remove_file(&entry.path).map_err(|source| KeystoreError::Write {
                        path: entry.path.clone(),
                        source,
                    })?;
                    removed.push(entry.path.clone());
                }
                Source::System if !listing.is_revoked(entry) => {
                    let dir = self.scope_dir(Source::Local, &entry.scope);
                    let path = dir.join(&fp);
                    write_atomic(&dir, &path, b"").map_err(|source| KeystoreError::Write {
                        path: path.clone(),
                        source,
                    })?;
                    marked.push(path);
                }
                Source::System => {}
            }
        }
        if removed.is_empty() && marked.is_empty() {
            return Err(KeystoreError::NotFound {
                fingerprint: fp,
                dir: self.local.clone(),
            });
        }
        Ok((removed, marked))
    }
}

/// 40 hex digits (v4 fingerprint) or 64 (v6).
fn is_fingerprint(name: &str) -> bool {
    (name.len() == 40 || name.len() == 64) && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn collect_prefixes(dir: &Path, rel: &str, out: &mut Vec<Scope>) -> Result<(), KeystoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(KeystoreError::Read {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            subdirs.push(name);
        }
    }
    subdirs.sort();
    for name in subdirs {
        let p = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if let Ok(id) = AcIdentifier::try_from(p.as_str()) {
            out.push(Scope::Prefix(id));
        }
        collect_prefixes(&dir.join(&name), &p, out)?;
    }
    Ok(())
}

/// temp file in `dir`, fsync, rename over `path`, fsync `dir`.
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
