//! Content digests: the names of blobs.
//!
//! An ACI blob is named by its image ID, `sha512-<128 hex>`: the SHA-512 of
//! the *uncompressed* tar, whatever compression the blob was received in
//! (the blob is stored as received, so exporting it gives back a file with
//! the same ID). OCI blobs (a later issue) are named `sha256:<64 hex>`, the
//! digest of their bytes as stored. Both live under `cas/blobs/<algo>/<hex>`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use berth_appc::ImageId;

/// A blob's content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    /// 128 lowercase hex digits; displayed `sha512-<hex>` (appc image IDs).
    Sha512(String),
    /// 64 lowercase hex digits; displayed `sha256:<hex>` (OCI descriptors).
    Sha256(String),
}

/// A string that is not a digest this store knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a digest (expected \"sha512-\" and 128 hex digits, or \"sha256:\" and 64)")]
pub struct DigestError(pub String);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Digest {
    /// The algorithm's name, also the blob directory's name.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Digest::Sha512(_) => "sha512",
            Digest::Sha256(_) => "sha256",
        }
    }

    /// The lowercase hex digest.
    pub fn hex(&self) -> &str {
        match self {
            Digest::Sha512(h) | Digest::Sha256(h) => h,
        }
    }

    /// The digest that names an ACI's blob.
    pub fn of_image(id: &ImageId) -> Digest {
        Digest::Sha512(id.digest_hex().to_string())
    }

    /// The image ID, for a `sha512` digest.
    pub fn image_id(&self) -> Option<ImageId> {
        match self {
            Digest::Sha512(_) => ImageId::try_from(self.to_string().as_str()).ok(),
            Digest::Sha256(_) => None,
        }
    }

    /// `<algo>/<hex>`, relative to `cas/blobs/`.
    pub(crate) fn rel_path(&self) -> PathBuf {
        PathBuf::from(self.algorithm()).join(self.hex())
    }

    /// The name of the lock file guarding this blob and its index row.
    pub(crate) fn lock_name(&self) -> String {
        format!("{}-{}", self.algorithm(), self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha512(h) => write!(f, "sha512-{h}"),
            Digest::Sha256(h) => write!(f, "sha256:{h}"),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(h) = s.strip_prefix("sha512-") {
            if is_hex(h, 128) {
                return Ok(Digest::Sha512(h.to_string()));
            }
        } else if let Some(h) = s.strip_prefix("sha256:") {
            if is_hex(h, 64) {
                return Ok(Digest::Sha256(h.to_string()));
            }
        }
        Err(DigestError(s.to_string()))
    }
}

impl From<&ImageId> for Digest {
    fn from(id: &ImageId) -> Self {
        Digest::of_image(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let s512 = format!("sha512-{}", "ab".repeat(64));
        let d: Digest = s512.parse().unwrap();
        assert_eq!(d.to_string(), s512);
        assert_eq!(d.algorithm(), "sha512");
        assert_eq!(d.image_id().unwrap().as_str(), s512);
        let s256 = format!("sha256:{}", "0f".repeat(32));
        let d: Digest = s256.parse().unwrap();
        assert_eq!(d.to_string(), s256);
        assert_eq!(d.rel_path(), PathBuf::from("sha256").join("0f".repeat(32)));
        assert!("sha512-abc".parse::<Digest>().is_err());
        assert!(format!("sha256:{}", "AB".repeat(32))
            .parse::<Digest>()
            .is_err());
    }
}
