//! # Docker/OCI images, as pure data
//!
//! berth runs Docker and OCI images natively (their layers are stored once
//! and stacked into trees); this module is the part of that which needs no
//! I/O:
//!
//! - [`reference`]: `docker://` references with Docker's normalisation, and
//!   the `oci:`/`oci-archive:`/`docker-archive:` locations;
//! - [`spec`]: the JSON documents (manifests, indexes, image configs, the
//!   `manifest.json` of `docker save`) and platform matching;
//! - [`app`]: an image configuration as an appc image manifest, so the pod
//!   runtime treats an OCI image as an appc app.
//!
//! Layer extraction (whiteouts, opaque directories, the hostile-path rules)
//! shares the ACI extractor: [`crate::aci::extract_layer`].

pub mod app;
pub mod reference;
pub mod spec;

pub use reference::{DockerReference, OciLocation, OciReferenceError};
