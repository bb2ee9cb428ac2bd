//! Verifying an image's detached OpenPGP signature while it streams in.
//!
//! [`SignatureVerifier`] is the store's [`ImportVerifier`]: the image bytes
//! are hashed in [`update`](ImportVerifier::update) as the import pass reads
//! them (download, decompress, hash, validate and verify in one pass; no
//! second read of a 200 MB file, no thread), and the verdict is given before
//! the store makes the image visible.
//!
//! rPGP's `Signature::verify` wants the whole data as a reader. Instead of
//! running it on a second thread fed through a pipe, this module does the
//! same steps with rPGP's public pieces: the signature's own hasher
//! (`HashAlgorithm::new_hasher`), the data, then
//! `SignatureConfig::hash_signature_data` and the trailer, the two-octet
//! quick check, and `VerifyingKey::verify` on the digest. The data are the
//! ACI's bytes exactly as received (a binary signature, type 0x00).
//!
//! Which keys may sign is the keystore's business ([`Keyring`]); whether a
//! key may sign *at the signature's time* is [`PublicKey`]'s policy. Every
//! refusal is a [`SignatureError`] a person can act on.

use std::fmt;
use std::io::{Cursor, Read};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_appc::{AcIdentifier, ImageId, ImageManifest};
use berth_store::{ImportVerifier, VerifierError};
use digest::DynDigest;
use pgp::composed::{Deserializable, DetachedSignature};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType, SignatureVersionSpecific};
use pgp::types::KeyVersion;

use super::key::{format_time, PublicKey};
use super::keystore::{Keyring, Keystore, KeystoreError, Scope, Source};

/// Why an image's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature where it should be.
    #[error(
        "image {image} is not signed: no signature at {location} (sign it with \
         \"gpg --armor --detach-sign\", or skip verification with --insecure-options=image)"
    )]
    Missing { image: String, location: String },
    /// The signature file is not a usable OpenPGP signature.
    #[error("bad signature for {image} at {location}: {reason}")]
    Malformed {
        image: String,
        location: String,
        reason: String,
    },
    /// The signature does not match the image: it was modified after signing.
    #[error(
        "signature of {image} by key {key} does not match the image: the image was \
         modified after it was signed, or the signature belongs to another file"
    )]
    Tampered { image: String, key: String },
    /// The key that made the signature is not trusted for the name.
    #[error(
        "signature of {image} is made by key {key}, which is not trusted for prefix \
         {prefix}; run \"berth trust --prefix={prefix}\""
    )]
    Untrusted {
        image: String,
        key: String,
        prefix: String,
    },
    /// A vendor key revoked by an empty local file.
    #[error(
        "signature of {image} is made by key {key}, a vendor key that is revoked locally \
         ({revoked_by})"
    )]
    RevokedLocally {
        image: String,
        key: String,
        revoked_by: String,
    },
    /// The key (or signing subkey) carries a revocation signature.
    #[error("signature of {image} is made by key {key}, which is revoked{}; the image is not trusted", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Revoked {
        image: String,
        key: String,
        reason: Option<String>,
    },
    /// The key (or signing subkey) has expired.
    #[error("signature of {image} is made by key {key}, which expired on {expired}; ask the publisher for a re-signed image or an extended key")]
    Expired {
        image: String,
        key: String,
        expired: String,
    },
    /// The signature was made after the key's expiry.
    #[error("signature of {image} was made on {signed}, after key {key} expired on {expired}")]
    SignedAfterExpiry {
        image: String,
        key: String,
        signed: String,
        expired: String,
    },
    /// Anything else that makes the key unfit to sign.
    #[error("signature of {image} is made by key {key}, which cannot sign: {reason}")]
    Unusable {
        image: String,
        key: String,
        reason: String,
    },
    /// The keystore could not be read.
    #[error("cannot read the trusted keys: {reason}")]
    Keystore { reason: String },
    /// The image's name is not the one the signature was checked for.
    #[error("the signed image is named {actual:?}, not {expected:?}: refused")]
    WrongName { expected: String, actual: String },
}

/// Who signed an accepted image.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The trusted certificate.
    pub key: PublicKey,
    /// The fingerprint of the (sub)key that signed, uppercase hex.
    pub signer: String,
    pub scope: Scope,
    pub source: Source,
    pub signed_at: SystemTime,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signed by {}", self.key.describe())?;
        if self.signer != self.key.fingerprint_upper() {
            write!(f, " (subkey {})", self.signer)?;
        }
        write!(f, ", trusted for {} ({})", self.scope, self.source.as_str())
    }
}

struct Pending {
    sig: Signature,
    hasher: Option<Box<dyn DynDigest + Send>>,
}

/// Checks one image's detached signature; see the module docs.
pub struct SignatureVerifier {
    /// How the image is shown; set at the verdict from the manifest if unset.
    image: String,
    /// The name the image was asked for; `None` for files and URLs (then
    /// the manifest's name picks the keys).
    name: Option<AcIdentifier>,
    location: String,
    keys: Keys,
    keyring: Keyring,
    known: Vec<PublicKey>,
    sigs: Vec<Pending>,
    now: SystemTime,
    bytes: u64,
    result: Option<Result<Verified, SignatureError>>,
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerifier")
            .field("image", &self.image)
            .field("location", &self.location)
            .field("signatures", &self.sigs.len())
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// Where the trusted keys come from.
#[derive(Debug, Clone)]
pub enum Keys {
    /// Exactly these (tests, callers that looked the name up already).
    Ring(Keyring),
    /// The keystore, consulted for the image's name at the verdict.
    Store(Keystore),
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SignatureVerifier {
    /// Prepares the check of `signature` (ASCII-armored, read from
    /// `location`) over an image asked for as `image` (`example.com/app:1.0`,
    /// or the URL or file) with the name `name` (`None` when asked for by
    /// URL or file: the manifest's name then selects the keys).
    pub fn new(
        image: &str,
        name: Option<&AcIdentifier>,
        signature: &[u8],
        location: &str,
        keys: Keys,
    ) -> Result<Self, SignatureError> {
        let malformed = |reason: String| SignatureError::Malformed {
            image: image.to_owned(),
            location: location.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(signature)
            .ok()
            .filter(|t| t.contains("-----BEGIN PGP SIGNATURE-----"))
            .ok_or_else(|| {
                malformed(
                    "not an ASCII-armored OpenPGP signature (make one with \
                     \"gpg --armor --detach-sign\")"
                        .into(),
                )
            })?;
        let (parsed, _) = DetachedSignature::from_armor_many(Cursor::new(text.as_bytes()))
            .map_err(|e| malformed(e.to_string()))?;
        let mut sigs = Vec::new();
        for s in parsed {
            let sig = s.map_err(|e| malformed(e.to_string()))?.signature;
            let Some(config) = sig.config() else {
                return Err(malformed("signature version not supported".into()));
            };
            if config.typ != SignatureType::Binary {
                return Err(malformed(format!(
                    "a {:?} signature, not a binary document signature (0x00)",
                    config.typ
                )));
            }
            // CVE-2019-14855 ("SHA-1 is a Shambles"): chosen-prefix collisions
            // make SHA-1 (and MD5, RIPEMD-160) signatures forgeable; GnuPG
            // rejects them for data signatures, and so does berth.
            if matches!(
                config.hash_alg,
                HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160
            ) {
                return Err(malformed(format!(
                    "made with the broken hash algorithm {:?}; re-sign with SHA-256 or better",
                    config.hash_alg
                )));
            }
            let mut hasher = config
                .hash_alg
                .new_hasher()
                .map_err(|e| malformed(e.to_string()))?;
            if let SignatureVersionSpecific::V6 { salt } = &config.version_specific {
                if config.hash_alg.salt_len() != Some(salt.len()) {
                    return Err(malformed("wrong salt length for a v6 signature".into()));
                }
                hasher.update(salt);
            }
            if sig.created().is_none() {
                return Err(malformed("no signature creation time".into()));
            }
            sigs.push(Pending {
                sig,
                hasher: Some(hasher),
            });
        }
        if sigs.is_empty() {
            return Err(malformed("no signature in the file".into()));
        }
        Ok(SignatureVerifier {
            image: image.to_owned(),
            name: name.cloned(),
            location: location.to_owned(),
            keys,
            keyring: Keyring::default(),
            known: Vec::new(),
            sigs,
            now: SystemTime::now(),
            bytes: 0,
            result: None,
        })
    }

    /// Keys that are not trusted but may name a signer in an error message
    /// (other prefixes' keys, keys offered by discovery).
    pub fn with_known_keys(mut self, keys: impl IntoIterator<Item = PublicKey>) -> Self {
        self.known.extend(keys);
        self
    }

    /// Whether any key of `keyring` has the issuer key ID or fingerprint of
    /// one of the signatures (a signature naming no issuer counts as yes).
    pub fn issuer_in(&self, keyring: &Keyring) -> bool {
        self.sigs.iter().any(|p| {
            let ids: Vec<_> = p.sig.issuer_key_id().into_iter().cloned().collect();
            let fps: Vec<String> = p
                .sig
                .issuer_fingerprint()
                .into_iter()
                .map(|f| format!("{f:X}"))
                .collect();
            (ids.is_empty() && fps.is_empty())
                || keyring.keys.iter().any(|k| k.key.has_key(&ids, &fps))
        })
    }

    /// Judges key validity at `now` instead of the clock (tests).
    pub fn with_time(mut self, now: SystemTime) -> Self {
        self.now = now;
        self
    }

    /// Feeds image bytes (the same as [`ImportVerifier::update`]).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        for p in &mut self.sigs {
            if let Some(h) = p.hasher.as_mut() {
                h.update(bytes);
            }
        }
    }

    /// Reads all of `r` and verifies it as the image named `name` (for
    /// files and tests).
    pub fn verify_reader(
        mut self,
        mut r: impl Read,
        name: &AcIdentifier,
    ) -> std::io::Result<Result<Verified, SignatureError>> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.feed(&buf[..n]);
        }
        Ok(self.finish(name))
    }

    /// The verdict over everything fed so far, for an image whose manifest
    /// says it is `name`. Idempotent.
    pub fn finish(&mut self, name: &AcIdentifier) -> Result<Verified, SignatureError> {
        if let Some(r) = &self.result {
            return r.clone();
        }
        let result = self.judge(name);
        self.result = Some(result.clone());
        result
    }

    fn judge(&mut self, name: &AcIdentifier) -> Result<Verified, SignatureError> {
        // Signature/name confusion: keys are chosen by the name's prefixes
        // while the signature covers only bytes. An image fetched as
        // example.com/app must call itself that, or a key trusted for
        // another prefix would vouch for it under this name.
        if let Some(expected) = self.name.as_ref().filter(|e| *e != name) {
            return Err(SignatureError::WrongName {
                expected: expected.to_string(),
                actual: name.to_string(),
            });
        }
        if self.name.is_none() {
            self.image = format!("{name} (from {})", self.image);
            self.name = Some(name.clone());
        }
        let keystore_error = |e: KeystoreError| SignatureError::Keystore {
            reason: format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ),
        };
        self.keyring = match &self.keys {
            Keys::Ring(r) => r.clone(),
            Keys::Store(ks) => {
                // Keys of other prefixes only name an untrusted signer.
                if let Ok(all) = ks.list() {
                    self.known.extend(all.keys.into_iter().map(|k| k.key));
                }
                ks.keyring_for(name).map_err(keystore_error)?
            }
        };
        self.known.extend(
            self.keyring
                .keys
                .iter()
                .chain(&self.keyring.revoked)
                .map(|k| k.key.clone()),
        );
        let mut first_err: Option<(u8, SignatureError)> = None;
        let mut ok = None;
        for i in 0..self.sigs.len() {
            match self.check(i) {
                Ok(v) => {
                    ok = Some(v);
                    break;
                }
                Err((rank, e)) => {
                    if first_err.as_ref().is_none_or(|(r, _)| rank > *r) {
                        first_err = Some((rank, e));
                    }
                }
            }
        }
        match (ok, first_err) {
            (Some(v), _) => Ok(v),
            (None, Some((_, e))) => Err(e),
            (None, None) => Err(SignatureError::Malformed {
                image: self.image.clone(),
                location: self.location.clone(),
                reason: "no signature in the file".into(),
            }),
        }
    }

    /// Checks signature `i`; errors carry a rank (higher = more specific).
    fn check(&mut self, i: usize) -> Result<Verified, (u8, SignatureError)> {
        let image = self.image.clone();
        let pending = &mut self.sigs[i];
        let sig = &pending.sig;
        let config = sig.config().expect("checked in new");
        let malformed = |reason: String| {
            (
                1,
                SignatureError::Malformed {
                    image: image.clone(),
                    location: self.location.clone(),
                    reason,
                },
            )
        };
        let mut hasher = pending
            .hasher
            .take()
            .ok_or_else(|| malformed("checked twice".into()))?;
        let len = config
            .hash_signature_data(&mut hasher)
            .map_err(|e| malformed(e.to_string()))?;
        hasher.update(&config.trailer(len).map_err(|e| malformed(e.to_string()))?);
        let digest = hasher.finalize();
        let signed_at = sig
            .created()
            .map(|t| UNIX_EPOCH + Duration::from_secs(u64::from(t.as_secs())))
            .unwrap_or(UNIX_EPOCH);

        let key_ids: Vec<_> = sig.issuer_key_id().into_iter().cloned().collect();
        let fps: Vec<String> = sig
            .issuer_fingerprint()
            .into_iter()
            .map(|f| format!("{f:X}"))
            .collect();
        let anonymous = key_ids.is_empty() && fps.is_empty();

        // Vendor keys revoked locally: say so rather than "not trusted".
        if let Some(r) = self
            .keyring
            .revoked
            .iter()
            .find(|k| k.key.has_key(&key_ids, &fps))
        {
            if !self
                .keyring
                .keys
                .iter()
                .any(|k| k.key.has_key(&key_ids, &fps))
            {
                return Err((
                    3,
                    SignatureError::RevokedLocally {
                        image,
                        key: r.key.describe(),
                        revoked_by: format!(
                            "an empty file named {} in the local trustedkeys for {}",
                            r.key.fingerprint(),
                            r.scope
                        ),
                    },
                ));
            }
        }

        let mut best: Option<(u8, SignatureError)> = None;
        for trusted in &self.keyring.keys {
            for signer in trusted.key.signers() {
                let matches = anonymous
                    || key_ids.contains(&signer.key_id)
                    || fps.contains(&signer.fingerprint);
                if !matches {
                    continue;
                }
                let desc = trusted.key.describe();
                // v6 signatures only from v6 keys and back (RFC 9580 §5.2.3).
                let v6_sig = matches!(config.version_specific, SignatureVersionSpecific::V6 { .. });
                let v6_key = signer.key.version() == KeyVersion::V6;
                let crypto_ok = v6_sig == v6_key
                    && sig.signed_hash_value() == Some([digest[0], digest[1]])
                    && sig
                        .signature()
                        .is_some_and(|b| signer.key.verify(config.hash_alg, &digest, b).is_ok());
                if !crypto_ok {
                    if !anonymous && best.as_ref().is_none_or(|(r, _)| *r < 5) {
                        best = Some((
                            5,
                            SignatureError::Tampered {
                                image: image.clone(),
                                key: desc,
                            },
                        ));
                    }
                    continue;
                }
                // The signature is genuine; is the key fit to have made it?
                let refusal = if signer.revoked {
                    let reason = match trusted.key.status(self.now) {
                        super::key::KeyStatus::Revoked { reason } => reason,
                        _ => signer.unusable.clone(),
                    };
                    Some(SignatureError::Revoked {
                        image: image.clone(),
                        key: desc.clone(),
                        reason,
                    })
                } else if let Some(reason) = signer.unusable.clone() {
                    Some(SignatureError::Unusable {
                        image: image.clone(),
                        key: desc.clone(),
                        reason,
                    })
                } else if signed_at < signer.created {
                    Some(SignatureError::Unusable {
                        image: image.clone(),
                        key: desc.clone(),
                        reason: format!(
                            "the signature ({}) is older than the key ({})",
                            format_time(signed_at),
                            format_time(signer.created)
                        ),
                    })
                } else if let Some(exp) = signer.expires.filter(|e| signed_at >= *e) {
                    Some(SignatureError::SignedAfterExpiry {
                        image: image.clone(),
                        key: desc.clone(),
                        signed: format_time(signed_at),
                        expired: format_time(exp),
                    })
                } else if let Some(exp) = signer.expires.filter(|e| self.now >= *e) {
                    Some(SignatureError::Expired {
                        image: image.clone(),
                        key: desc.clone(),
                        expired: format_time(exp),
                    })
                } else if let Some(d) = sig.signature_expiration_time().filter(|d| d.as_secs() != 0)
                {
                    let until = signed_at + Duration::from(d);
                    (secs(self.now) >= secs(until)).then(|| SignatureError::Unusable {
                        image: image.clone(),
                        key: desc.clone(),
                        reason: format!("the signature itself expired on {}", format_time(until)),
                    })
                } else {
                    None
                };
                match refusal {
                    None => {
                        return Ok(Verified {
                            key: trusted.key.clone(),
                            signer: signer.fingerprint.clone(),
                            scope: trusted.scope.clone(),
                            source: trusted.source,
                            signed_at,
                        })
                    }
                    Some(e) => {
                        if best.as_ref().is_none_or(|(r, _)| *r < 4) {
                            best = Some((4, e));
                        }
                    }
                }
            }
        }
        if let Some(b) = best {
            return Err(b);
        }
        // No trusted key made it: name the signer as well as we can.
        let key = self
            .known
            .iter()
            .find(|k| k.has_key(&key_ids, &fps))
            .map(|k| k.describe())
            .or_else(|| fps.first().cloned())
            .or_else(|| {
                key_ids.first().map(|id| {
                    id.as_ref()
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect::<String>()
                })
            })
            .unwrap_or_else(|| "(unnamed)".into());
        Err((
            2,
            SignatureError::Untrusted {
                image,
                key,
                prefix: self
                    .name
                    .as_ref()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            },
        ))
    }
}

impl ImportVerifier for SignatureVerifier {
    fn update(&mut self, bytes: &[u8]) {
        self.feed(bytes);
    }

    fn verdict(&mut self, _id: &ImageId, manifest: &ImageManifest) -> Result<(), VerifierError> {
        let v = self.finish(&manifest.name).map_err(Box::new)?;
        tracing::info!(image = %self.image, "signature verified: {v}");
        Ok(())
    }
}
