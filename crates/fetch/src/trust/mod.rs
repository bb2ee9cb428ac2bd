//! Signed images: the trusted-key store and OpenPGP signature checks.
//!
//! appc images are verified with a detached, ASCII-armored OpenPGP
//! signature over the ACI file (`image.aci.asc`), against keys trusted for
//! the image's *name*: a key trusted for `example.com/app` vouches for
//! `example.com/app` and `example.com/app/x`, not for `example.org/app`.
//!
//! - [`keystore`]: where trusted keys live (vendor and local configuration,
//!   `root.d` and `prefix.d`, rkt's layout) and how a name picks its keys.
//! - [`key`]: one public key, and the policy deciding when it may sign
//!   (self-signatures, signing subkeys, expiry, revocation).
//! - [`verify`]: the streaming verifier the store runs during import, and
//!   the errors a person sees.
//!
//! All OpenPGP parsing and cryptography is rPGP (`pgp`), pure Rust.

pub mod factory;
pub mod key;
pub mod keystore;
pub mod verify;

pub use factory::TrustedImages;
pub use key::{KeyError, KeyStatus, PublicKey};
pub use keystore::{
    Keyring, Keystore, KeystoreError, Listing, Revocation, Scope, Source, TrustedKey,
};
pub use verify::{Keys, SignatureError, SignatureVerifier, Verified};
