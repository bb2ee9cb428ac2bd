//! OpenPGP public keys as berth uses them: parsed from ASCII armor, named
//! by fingerprint, and judged for *signing* at a given time.
//!
//! rPGP parses keys and checks single signatures; which self-signature
//! counts, when a key or subkey has expired, and whether a revocation
//! applies is policy, and lives here so that `berth trust` (showing a key)
//! and the verifier (using it) judge a key the same way.
//!
//! The rules:
//! - A key is usable only through self-signatures that verify: the newest
//!   valid user-ID certification or direct-key signature of the primary key
//!   gives its flags and expiry; a subkey needs a valid binding signature,
//!   the *sign* flag, and (RFC 4880 §11.1) a valid embedded back-signature.
//! - A revocation signature that verifies revokes the primary key (and with
//!   it every subkey) or the subkey it is attached to. Revocation reasons are
//!   not weighed: a revoked key verifies nothing.
//! - Expiry is creation time + the key-expiration subpacket of the newest
//!   valid self-signature (0 or absent: never).

use std::fmt;
use std::io::Cursor;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgp::composed::{Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, KeyId, Tag, VerifyingKey};

/// A key file that is not an ASCII-armored OpenPGP public key.
#[derive(Debug, thiserror::Error)]
#[error("not an ASCII-armored OpenPGP public key: {reason}")]
pub struct KeyError {
    /// What the parser said.
    pub reason: String,
}

/// One OpenPGP public key (a certificate: primary key, user IDs, subkeys).
#[derive(Clone)]
pub struct PublicKey {
    key: SignedPublicKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("fingerprint", &self.fingerprint())
            .field("user_ids", &self.user_ids())
            .finish()
    }
}

/// Whether a key (or subkey) may sign at a time, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Valid,
    Revoked {
        reason: Option<String>,
    },
    Expired {
        at: SystemTime,
    },
    /// No self-signature verifies: the key's user IDs and flags cannot be trusted.
    NoValidSelfSignature,
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStatus::Valid => f.write_str("valid"),
            KeyStatus::Revoked { reason: Some(r) } => write!(f, "revoked ({r})"),
            KeyStatus::Revoked { reason: None } => f.write_str("revoked"),
            KeyStatus::Expired { at } => write!(f, "expired on {}", format_time(*at)),
            KeyStatus::NoValidSelfSignature => f.write_str("without a valid self-signature"),
        }
    }
}

/// A key that can verify data signatures: the primary key or a signing subkey.
pub(crate) struct Signer<'a> {
    pub key: &'a dyn VerifyingKey,
    pub fingerprint: String,
    pub key_id: KeyId,
    pub created: SystemTime,
    /// When its validity ends (the primary's expiry bounds a subkey's too).
    pub expires: Option<SystemTime>,
    /// Why it may not sign, if so (revoked, no sign flag, no binding...).
    pub unusable: Option<String>,
    pub revoked: bool,
}

fn ts(t: pgp::types::Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(t.as_secs()))
}

/// `YYYY-MM-DD HH:MM:SS UTC`, without a date crate.
pub fn format_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl PublicKey {
    /// Every public key in an ASCII-armored text (a discovery key URL may
    /// serve several). Secret keys are refused.
    pub fn parse_armored(bytes: &[u8]) -> Result<Vec<PublicKey>, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError {
            reason: "the file is not text (binary keys are not accepted; export with --armor)"
                .into(),
        })?;
        if !text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
            return Err(KeyError {
                reason: "no \"BEGIN PGP PUBLIC KEY BLOCK\" (export with gpg --armor --export)"
                    .into(),
            });
        }
        let (keys, _) =
            SignedPublicKey::from_armor_many(Cursor::new(text.as_bytes())).map_err(|e| {
                KeyError {
                    reason: e.to_string(),
                }
            })?;
        let mut out = Vec::new();
        for k in keys {
            let key = k.map_err(|e| KeyError {
                reason: e.to_string(),
            })?;
            out.push(PublicKey { key });
        }
        if out.is_empty() {
            return Err(KeyError {
                reason: "no key in the armored block".into(),
            });
        }
        Ok(out)
    }

    /// Exactly one key.
    pub fn parse_one(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let mut keys = PublicKey::parse_armored(bytes)?;
        if keys.len() != 1 {
            return Err(KeyError {
                reason: format!(
                    "{} keys in one file; a trusted key file holds one",
                    keys.len()
                ),
            });
        }
        Ok(keys.remove(0))
    }

    /// The armored form, as written to the keystore.
    pub fn to_armored(&self) -> String {
        self.key
            .to_armored_string(Default::default())
            .unwrap_or_default()
    }

    /// Lowercase hex fingerprint of the primary key (the keystore's file name).
    pub fn fingerprint(&self) -> String {
        format!("{:x}", self.key.fingerprint())
    }

    /// Uppercase hex fingerprint, as people compare it.
    pub fn fingerprint_upper(&self) -> String {
        format!("{:X}", self.key.fingerprint())
    }

    /// The user IDs whose self-certification verifies, in key order.
    pub fn user_ids(&self) -> Vec<String> {
        let primary = &self.key.primary_key;
        self.key
            .details
            .users
            .iter()
            .filter(|u| {
                u.signatures
                    .iter()
                    .any(|s| s.verify_certification(primary, Tag::UserId, &u.id).is_ok())
            })
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .collect()
    }

    /// `FINGERPRINT (First User <id>)` for messages.
    pub fn describe(&self) -> String {
        match self.user_ids().first() {
            Some(u) => format!("{} ({u})", self.fingerprint_upper()),
            None => self.fingerprint_upper(),
        }
    }

    /// When the primary key was created.
    pub fn created(&self) -> SystemTime {
        ts(self.key.primary_key.created_at())
    }

    /// The newest valid self-signature of the primary key.
    fn self_signature(&self) -> Option<&Signature> {
        let primary = &self.key.primary_key;
        let certs = self.key.details.users.iter().flat_map(|u| {
            u.signatures
                .iter()
                .filter(move |s| s.verify_certification(primary, Tag::UserId, &u.id).is_ok())
        });
        let direct = self
            .key
            .details
            .direct_signatures
            .iter()
            .filter(|s| s.verify_key(primary).is_ok());
        certs
            .chain(direct)
            .filter(|s| s.typ() != Some(SignatureType::CertRevocation))
            .max_by_key(|s| s.created().map_or(0, |t| t.as_secs()))
    }

    fn primary_revocation(&self) -> Option<&Signature> {
        let primary = &self.key.primary_key;
        // A revocation only counts if the key itself made it: anybody can
        // append a packet that claims to revoke a key.
        self.key
            .details
            .revocation_signatures
            .iter()
            .find(|s| s.verify_key(primary).is_ok())
    }

    /// When the primary key expires (`None`: never, or no self-signature).
    pub fn expires(&self) -> Option<SystemTime> {
        let sig = self.self_signature()?;
        let d = sig.key_expiration_time()?.as_secs();
        (d != 0).then(|| self.created() + Duration::from_secs(u64::from(d)))
    }

    /// Whether the primary key may sign at `now`.
    pub fn status(&self, now: SystemTime) -> KeyStatus {
        if let Some(rev) = self.primary_revocation() {
            return KeyStatus::Revoked {
                reason: rev
                    .revocation_reason_string()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .filter(|s| !s.is_empty()),
            };
        }
        if self.self_signature().is_none() {
            return KeyStatus::NoValidSelfSignature;
        }
        match self.expires() {
            Some(at) if at <= now => KeyStatus::Expired { at },
            _ => KeyStatus::Valid,
        }
    }

    /// The primary key and every subkey that could have made a data
    /// signature, each with what makes it unusable (if anything).
    pub(crate) fn signers(&self) -> Vec<Signer<'_>> {
        let primary = &self.key.primary_key;
        let primary_revoked = self.primary_revocation().is_some();
        let self_sig = self.self_signature();
        let primary_expires = self.expires();
        let mut out = Vec::new();
        let primary_unusable = if primary_revoked {
            Some("the key is revoked".to_owned())
        } else if self_sig.is_none() {
            Some("the key has no valid self-signature".to_owned())
        } else if self_sig.is_some_and(|s| {
            let f = s.key_flags();
            // Keys without a flags subpacket (old ones) may sign.
            (f.certify() || f.encrypt_comms() || f.encrypt_storage() || f.authentication())
                && !f.sign()
        }) {
            Some("the primary key is not marked for signing".to_owned())
        } else {
            None
        };
        out.push(Signer {
            key: primary,
            fingerprint: format!("{:X}", primary.fingerprint()),
            key_id: primary.legacy_key_id(),
            created: self.created(),
            expires: primary_expires,
            unusable: primary_unusable,
            revoked: primary_revoked,
        });
        for sub in &self.key.public_subkeys {
            out.push(self.subkey_signer(sub, primary_revoked, primary_expires));
        }
        out
    }

    fn subkey_signer<'a>(
        &self,
        sub: &'a SignedPublicSubKey,
        primary_revoked: bool,
        primary_expires: Option<SystemTime>,
    ) -> Signer<'a> {
        let primary = &self.key.primary_key;
        let revoked = sub.signatures.iter().any(|s| {
            s.typ() == Some(SignatureType::SubkeyRevocation)
                && s.verify_subkey_binding(primary, &sub.key).is_ok()
        });
        let binding = sub
            .signatures
            .iter()
            .filter(|s| {
                s.typ() == Some(SignatureType::SubkeyBinding)
                    && s.verify_subkey_binding(primary, &sub.key).is_ok()
            })
            .max_by_key(|s| s.created().map_or(0, |t| t.as_secs()));
        let created = ts(sub.key.created_at());
        let own_expiry = binding
            .and_then(|b| b.key_expiration_time())
            .map(|d| d.as_secs())
            .filter(|d| *d != 0)
            .map(|d| created + Duration::from_secs(u64::from(d)));
        let expires = match (own_expiry, primary_expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let unusable = if primary_revoked {
            Some("the key is revoked".to_owned())
        } else if revoked {
            Some("the signing subkey is revoked".to_owned())
        } else {
            match binding {
                None => Some("the subkey has no valid binding signature".to_owned()),
                Some(b) if !b.key_flags().sign() => {
                    Some("the subkey is not marked for signing".to_owned())
                }
                // Cross-certification: without the embedded back-signature
                // (0x19, RFC 4880 §11.1), anybody could bind someone else's
                // signing subkey to their own key and claim its signatures.
                Some(b) => match b.embedded_signature() {
                    Some(back) if back.verify_primary_key_binding(&sub.key, primary).is_ok() => {
                        None
                    }
                    _ => Some("the signing subkey has no valid back-signature".to_owned()),
                },
            }
        };
        Signer {
            key: &sub.key,
            fingerprint: format!("{:X}", sub.key.fingerprint()),
            key_id: sub.key.legacy_key_id(),
            created,
            expires,
            unusable,
            revoked: revoked || primary_revoked,
        }
    }

    /// Whether this key (primary or a subkey) has the given issuer key ID or
    /// fingerprint (uppercase hex).
    pub(crate) fn has_key(&self, key_ids: &[KeyId], fingerprints: &[String]) -> bool {
        self.signers()
            .iter()
            .any(|s| key_ids.contains(&s.key_id) || fingerprints.contains(&s.fingerprint))
    }
}
