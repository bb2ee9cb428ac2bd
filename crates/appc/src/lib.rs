//! # berth-appc: the App Container specification (appc 0.8.11) as typed Rust
//!
//! This crate is pure plumbing: it knows the appc formats and nothing about
//! the store, the network or namespaces.
//!
//! - [`types`]: the spec's identifier types (`ACName`, `ACIdentifier`, image
//!   IDs, labels, annotations, environment names, ports, exec). Every one is a
//!   newtype that can only be built valid: through `TryFrom<&str>`/`FromStr`
//!   or serde, which run the same checks.
//! - [`isolator`]: every isolator the spec lists, parsed into typed values;
//!   unknown isolator names are kept verbatim (the spec allows extension).
//! - [`manifest`]: `ImageManifest` and `PodManifest`, parsed strictly. Parsing
//!   walks the JSON itself (not serde's derive) so that it can report *every*
//!   problem, each with the JSON path of the field and the rule it breaks:
//!   `labels[2]: arch "amd64" is not valid for os "freebsd"`.
//! - [`lenient`]: the lax twin of [`manifest`]. It reads broken manifests far
//!   enough to name an image or a pod's apps in an error message, and to clean
//!   up (rm/gc) what the strict parser refuses.
//! - [`aci`]: ACI archives. Reading sniffs the compression from magic bytes
//!   and streams (the image ID, `sha512-` of the uncompressed tar, is computed
//!   on the way through); validation reports hostile entries by name;
//!   extraction never writes outside its target; building is reproducible and
//!   compresses on all cores.
//! - [`reference`]: image references as people type them
//!   (`example.com/app:1.0,os=linux`) and the classification of image
//!   arguments (ID, path, URL, Docker/OCI reference, name).
//! - [`discovery`]: appc meta discovery without I/O: `ac-discovery` meta tags
//!   from real-world HTML, template rendering, and the walk up the name as a
//!   state machine the HTTP layer drives.
//!
//! - [`oci`]: Docker/OCI references, image JSON documents and the image
//!   config as an appc app (OCI layers are extracted by [`aci`]).
//!
//! Errors carry the path of what failed; callers print the chain once.

pub mod aci;
pub mod discovery;
pub mod error;
pub mod isolator;
pub mod lenient;
pub mod manifest;
pub mod oci;
pub mod quantity;
pub mod reference;
pub mod types;
mod walk;

pub use error::{ManifestError, Problem};
pub use manifest::{AnyManifest, ImageManifest, PodManifest};
pub use reference::{ImageArg, ImageReference};
pub use types::{AcIdentifier, AcKind, AcName, ImageId};

/// The version of the App Container specification this crate implements.
pub const APPC_SPEC_VERSION: &str = "0.8.11";
