//! Registry credentials from a Docker `config.json` (`docker login`,
//! `podman login --authfile`, skopeo): `{"auths": {"<registry>":
//! {"auth": "<base64 user:password>"}}}`.
//!
//! The CLI decides which file (`--registry-config`, else
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`); this module
//! only reads the one it is given, so the library never reads the
//! environment. Credential helpers (`credsStore`) are not run.

use std::path::{Path, PathBuf};

use berth_appc::oci::reference::DOCKER_HUB;

use crate::Credentials;

/// A `config.json` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("cannot read the registry credentials file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the registry credentials file {} is not valid: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The keys a registry may be filed under.
fn keys(registry: &str) -> Vec<String> {
    let mut k = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v2/"),
        format!("https://{registry}/v1/"),
    ];
    if registry == DOCKER_HUB {
        k.extend(
            [
                "https://index.docker.io/v1/",
                "index.docker.io",
                "docker.io",
                "https://index.docker.io/v1",
            ]
            .map(String::from),
        );
    }
    k
}

/// Basic credentials for `registry` from the `config.json` at `path`;
/// `Ok(None)` when the file does not exist or has none for it.
pub fn docker_config_credentials(
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, DockerConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DockerConfigError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let invalid = |reason: String| DockerConfigError::Invalid {
        path: path.into(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for k in keys(registry) {
        let Some(entry) = auths.get(&k) else { continue };
        if let Some(a) = entry.get("auth").and_then(|a| a.as_str()) {
            let plain = unbase64(a)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid(format!("auths.{k}.auth is not base64 of user:password")))?;
            let (user, password) = plain
                .split_once(':')
                .ok_or_else(|| invalid(format!("auths.{k}.auth is not user:password")))?;
            return Ok(Some(Credentials::Basic {
                user: user.into(),
                password: password.into(),
            }));
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|x| x.as_str()),
            entry.get("password").and_then(|x| x.as_str()),
        ) {
            return Ok(Some(Credentials::Basic {
                user: u.into(),
                password: p.into(),
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let auth = crate::auth::base64(b"alice:s3:cret");
        std::fs::write(
            &p,
            format!(r#"{{"auths":{{"localhost:5000":{{"auth":"{auth}"}},"https://index.docker.io/v1/":{{"username":"u","password":"p"}}}}}}"#),
        )
        .unwrap();
        assert_eq!(
            docker_config_credentials(&p, "localhost:5000").unwrap(),
            Some(Credentials::Basic {
                user: "alice".into(),
                password: "s3:cret".into()
            })
        );
        assert_eq!(
            docker_config_credentials(&p, DOCKER_HUB).unwrap(),
            Some(Credentials::Basic {
                user: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(docker_config_credentials(&p, "other.io").unwrap(), None);
        assert_eq!(
            docker_config_credentials(&dir.path().join("none"), "x").unwrap(),
            None
        );
        std::fs::write(&p, "{").unwrap();
        assert!(docker_config_credentials(&p, "x").is_err());
    }
}
