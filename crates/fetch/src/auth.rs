//! Per-host credentials from `auth.d/*.json` (rkt's format).
//!
//! ```json
//! {"rktKind": "auth", "rktVersion": "v1", "domains": ["example.com"],
//!  "type": "basic", "credentials": {"user": "bob", "password": "secret"}}
//! {"rktKind": "auth", "rktVersion": "v1", "domains": ["example.com:8443"],
//!  "type": "oauth", "credentials": {"token": "sometoken"}}
//! {"rktKind": "dockerAuth", "rktVersion": "v1", "registries": ["quay.io"],
//!  "credentials": {"user": "bob", "password": "secret"}}
//! ```
//! berth's own `berthKind`/`berthVersion` keys are accepted in place of
//! `rktKind`/`rktVersion`. Only files named `*.json` directly in `auth.d` are
//! read (subdirectories and other files are ignored, as in rkt); directories
//! are read in the order given (system, then local) and a later directory
//! replaces an earlier one's credentials for the same domain. Two files of the
//! same directory naming the same domain are an error.
//!
//! A domain matches the URL's host, or its `host:port` when the domain
//! names a port.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Credentials for one host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `"type": "basic"`: `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `"type": "oauth"`: `Authorization: Bearer TOKEN`.
    Bearer {
        /// The token.
        token: String,
    },
}

impl Credentials {
    /// The value of the `Authorization` header.
    pub fn header_value(&self) -> String {
        match self {
            Credentials::Basic { user, password } => {
                format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
            }
            Credentials::Bearer { token } => format!("Bearer {token}"),
        }
    }

    /// `basic` or `oauth`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Basic { .. } => "basic",
            Credentials::Bearer { .. } => "oauth",
        }
    }
}

/// Secrets stay out of `--debug` output.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Credentials and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    credentials: Credentials,
    file: PathBuf,
}

/// All credentials read from the `auth.d` directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// `rktKind: auth`, by lowercase domain (`host` or `host:port`).
    hosts: BTreeMap<String, Entry>,
    /// `rktKind: dockerAuth`, by lowercase registry.
    registries: BTreeMap<String, Entry>,
}

/// A failure to read the credentials configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Listing an `auth.d` directory failed.
    #[error("cannot list credentials directory {}", path.display())]
    ListDir {
        /// The `auth.d` directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading one file failed.
    #[error("cannot read credentials file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file is not valid JSON or lacks required fields.
    #[error("malformed credentials file {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A file is JSON but says something berth does not support.
    #[error("invalid credentials file {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, for a person.
        reason: String,
    },
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(rename = "type")]
    kind: String,
    credentials: Value,
}

#[derive(Deserialize)]
struct DockerAuthFile {
    #[serde(default)]
    registries: Vec<String>,
    credentials: BasicCredentials,
}

#[derive(Deserialize)]
struct BasicCredentials {
    user: String,
    password: String,
}

#[derive(Deserialize)]
struct OauthCredentials {
    token: String,
}

impl AuthConfig {
    /// Reads `<dir>/auth.d/*.json` for each configuration directory, in order
    /// (pass the system directory first, then the local one). A missing
    /// directory is skipped.
    pub fn load<P: AsRef<Path>>(config_dirs: &[P]) -> Result<Self, AuthError> {
        let mut config = AuthConfig::default();
        for dir in config_dirs {
            config.load_auth_d(&dir.as_ref().join("auth.d"))?;
        }
        Ok(config)
    }

    /// Adds credentials for a domain (`host` or `host:port`), replacing any.
    pub fn insert(&mut self, domain: &str, credentials: Credentials) {
        self.hosts.insert(
            domain.to_ascii_lowercase(),
            Entry {
                credentials,
                file: PathBuf::new(),
            },
        );
    }

    /// The credentials for a URL's host (`host:port` entries first, then
    /// `host`), if any.
    pub fn for_host(&self, host: &str, port: Option<u16>) -> Option<&Credentials> {
        let host = host.to_ascii_lowercase();
        port.and_then(|p| self.hosts.get(&format!("{host}:{p}")))
            .or_else(|| self.hosts.get(&host))
            .map(|e| &e.credentials)
    }

    /// Basic credentials for a Docker registry (`rktKind: dockerAuth`).
    pub fn for_registry(&self, registry: &str) -> Option<&Credentials> {
        self.registries
            .get(&registry.to_ascii_lowercase())
            .map(|e| &e.credentials)
    }

    /// Whether no credentials are configured at all.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.registries.is_empty()
    }

    fn load_auth_d(&mut self, auth_d: &Path) -> Result<(), AuthError> {
        let entries = match fs::read_dir(auth_d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(dir = %auth_d.display(), "no credentials directory");
                return Ok(());
            }
            Err(source) => {
                return Err(AuthError::ListDir {
                    path: auth_d.to_owned(),
                    source,
                })
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| AuthError::ListDir {
                path: auth_d.to_owned(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                tracing::debug!(file = %path.display(), "ignoring non-.json file in auth.d");
                continue;
            }
            // Follow symlinks, as a configuration directory often holds them.
            if !path.is_file() {
                tracing::debug!(file = %path.display(), "ignoring non-file in auth.d");
                continue;
            }
            files.push(path);
        }
        files.sort();

        // Domains set by this directory: a clash inside one directory is an
        // error, a clash with an earlier directory is an override.
        let mut hosts_here: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut registries_here: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in files {
            let text = fs::read_to_string(&path).map_err(|source| AuthError::Read {
                path: path.clone(),
                source,
            })?;
            match parse_file(&path, &text)? {
                Parsed::Hosts(domains, credentials) => add(
                    &mut self.hosts,
                    &mut hosts_here,
                    &path,
                    domains,
                    credentials,
                    "domain",
                )?,
                Parsed::Registries(registries, credentials) => add(
                    &mut self.registries,
                    &mut registries_here,
                    &path,
                    registries,
                    credentials,
                    "registry",
                )?,
            }
        }
        Ok(())
    }
}

enum Parsed {
    Hosts(Vec<String>, Credentials),
    Registries(Vec<String>, Credentials),
}

fn add(
    map: &mut BTreeMap<String, Entry>,
    here: &mut BTreeMap<String, PathBuf>,
    path: &Path,
    names: Vec<String>,
    credentials: Credentials,
    what: &str,
) -> Result<(), AuthError> {
    for name in names {
        let name = name.to_ascii_lowercase();
        if let Some(other) = here.get(&name) {
            return Err(AuthError::Invalid {
                path: path.to_owned(),
                reason: format!(
                    "credentials for {what} {name:?} are already given in {}",
                    other.display()
                ),
            });
        }
        here.insert(name.clone(), path.to_owned());
        if let Some(old) = map.get(&name) {
            tracing::debug!(%name, file = %path.display(), overridden = %old.file.display(),
                "credentials override those of an earlier configuration directory");
        }
        map.insert(
            name,
            Entry {
                credentials: credentials.clone(),
                file: path.to_owned(),
            },
        );
    }
    Ok(())
}

fn parse_file(path: &Path, text: &str) -> Result<Parsed, AuthError> {
    let invalid = |reason: String| AuthError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let parse_err = |source| AuthError::Parse {
        path: path.to_owned(),
        source,
    };
    let value: Value = serde_json::from_str(text).map_err(parse_err)?;
    let header = |rkt: &str, berth: &str| -> Result<String, AuthError> {
        match value.get(berth).or_else(|| value.get(rkt)) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(invalid(format!("{rkt:?} must be a string"))),
            None => Err(invalid(format!("no {rkt:?} (or {berth:?}) key"))),
        }
    };
    let kind = header("rktKind", "berthKind")?;
    let version = header("rktVersion", "berthVersion")?;
    if version != "v1" {
        return Err(invalid(format!(
            "unsupported version {version:?} (expected \"v1\")"
        )));
    }
    match kind.as_str() {
        "auth" => {
            let file: AuthFile = serde_json::from_value(value).map_err(parse_err)?;
            if file.domains.is_empty() {
                return Err(invalid("\"domains\" is empty".into()));
            }
            let credentials = match file.kind.as_str() {
                "basic" => {
                    let c: BasicCredentials =
                        serde_json::from_value(file.credentials).map_err(parse_err)?;
                    Credentials::Basic {
                        user: c.user,
                        password: c.password,
                    }
                }
                "oauth" => {
                    let c: OauthCredentials =
                        serde_json::from_value(file.credentials).map_err(parse_err)?;
                    Credentials::Bearer { token: c.token }
                }
                other => {
                    return Err(invalid(format!(
                        "unsupported credentials type {other:?} (expected \"basic\" or \"oauth\")"
                    )))
                }
            };
            Ok(Parsed::Hosts(file.domains, credentials))
        }
        "dockerAuth" => {
            let file: DockerAuthFile = serde_json::from_value(value).map_err(parse_err)?;
            if file.registries.is_empty() {
                return Err(invalid("\"registries\" is empty".into()));
            }
            Ok(Parsed::Registries(
                file.registries,
                Credentials::Basic {
                    user: file.credentials.user,
                    password: file.credentials.password,
                },
            ))
        }
        other => Err(invalid(format!(
            "unknown kind {other:?} in auth.d (expected \"auth\" or \"dockerAuth\")"
        ))),
    }
}

/// Standard base64 with padding (RFC 4648), enough for Basic credentials.
pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir.join("auth.d")).unwrap();
        fs::write(dir.join("auth.d").join(name), text).unwrap();
    }

    #[test]
    fn local_overrides_system_and_junk_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let (system, local) = (tmp.path().join("system"), tmp.path().join("local"));
        write(
            &system,
            "a.json",
            r#"{"rktKind":"auth","rktVersion":"v1","domains":["Example.com","other.org"],
               "type":"basic","credentials":{"user":"sys","password":"pw"}}"#,
        );
        write(
            &local,
            "b.json",
            r#"{"berthKind":"auth","berthVersion":"v1","domains":["example.com"],
               "type":"oauth","credentials":{"token":"tok"}}"#,
        );
        write(&local, "README", "not json at all");
        write(&local, "broken.json.bak", "{");
        fs::create_dir_all(local.join("auth.d/sub.json")).unwrap();
        let config = AuthConfig::load(&[&system, &local]).unwrap();
        assert_eq!(
            config.for_host("example.com", Some(443)),
            Some(&Credentials::Bearer {
                token: "tok".into()
            })
        );
        assert_eq!(
            config.for_host("other.org", None).unwrap().header_value(),
            format!("Basic {}", base64(b"sys:pw"))
        );
        assert!(config.for_host("nowhere.net", None).is_none());
        assert!(!format!("{config:?}").contains("tok\""));
    }

    #[test]
    fn domain_with_port_matches_that_port_only() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "a.json",
            r#"{"rktKind":"auth","rktVersion":"v1","domains":["h:8443"],
               "type":"oauth","credentials":{"token":"t"}}"#,
        );
        let config = AuthConfig::load(&[tmp.path()]).unwrap();
        assert!(config.for_host("h", Some(8443)).is_some());
        assert!(config.for_host("h", Some(443)).is_none());
    }

    #[test]
    fn docker_auth() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "d.json",
            r#"{"rktKind":"dockerAuth","rktVersion":"v1","registries":["quay.io"],
               "credentials":{"user":"u","password":"p"}}"#,
        );
        let config = AuthConfig::load(&[tmp.path()]).unwrap();
        assert!(config.for_registry("quay.io").is_some());
        assert!(config.for_host("quay.io", None).is_none());
    }

    #[test]
    fn bad_files_name_the_file() {
        let cases = [
            ("{", "malformed credentials file"),
            (
                r#"{"rktKind":"auth","rktVersion":"v2","domains":["a"],"type":"basic","credentials":{}}"#,
                "unsupported version \"v2\"",
            ),
            (
                r#"{"rktKind":"auth","rktVersion":"v1","domains":["a"],"type":"aws","credentials":{}}"#,
                "unsupported credentials type \"aws\"",
            ),
            (
                r#"{"rktKind":"auth","rktVersion":"v1","domains":["a"],"type":"basic","credentials":{"user":"x"}}"#,
                "malformed credentials file",
            ),
            (
                r#"{"rktKind":"paths","rktVersion":"v1"}"#,
                "unknown kind \"paths\"",
            ),
            (r#"{"rktVersion":"v1"}"#, "no \"rktKind\""),
        ];
        for (text, expected) in cases {
            let tmp = tempfile::tempdir().unwrap();
            write(tmp.path(), "bad.json", text);
            let err = AuthConfig::load(&[tmp.path()]).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("bad.json"), "{err}");
        }
    }

    #[test]
    fn duplicate_domain_in_one_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let text = r#"{"rktKind":"auth","rktVersion":"v1","domains":["a"],
                       "type":"oauth","credentials":{"token":"t"}}"#;
        write(tmp.path(), "1.json", text);
        write(tmp.path(), "2.json", text);
        let err = AuthConfig::load(&[tmp.path()]).unwrap_err().to_string();
        assert!(err.contains("2.json") && err.contains("1.json"), "{err}");
    }
}
