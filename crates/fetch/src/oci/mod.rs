//! Docker/OCI images into the store: registries (`docker://`), OCI image
//! layouts (`oci:`), OCI archives (`oci-archive:`) and `docker save`
//! archives (`docker-archive:`).
//!
//! Every source ends the same way ([`OciFetcher::record`]): a manifest (an
//! index first resolves to the host's platform, or `--platform`), its
//! config and its layers are blobs in the store, each checked against its
//! sha256 digest while it streams in, stored once and shared by every image
//! that lists it; then the image row goes in, named by the manifest's digest
//! (`sha256:<hex>`, the image's ID). Foreign layers (Windows base layers,
//! whose bytes live outside the registry) and media types that are not
//! image layers are refused with the digest and type.
//!
//! - `registry.rs`: the registry v2 client (manifests with `Accept` for
//!   Docker schema 2, OCI manifests, manifest lists and OCI indexes; the
//!   Bearer-token challenge; parallel, resumable blob downloads).
//! - `local.rs`: layouts and archives on disk.
//! - `auth.rs`: credentials from a Docker `config.json`.
//!
//! ## Image IDs and signatures
//! An OCI image's ID is its manifest digest, `sha256:<64 hex>`; `fetch`
//! prints it whole, and every command takes it (or a unique prefix of at
//! least `sha256:` and two hex digits, or the reference it was fetched as).
//! OCI images carry no signature berth checks yet: fetching stores them,
//! running one needs `--insecure-options=image` ([`UnsignedOciImage`] is
//! the refusal `berth run` gives).

mod auth;
mod local;
mod registry;

use std::path::PathBuf;

use berth_appc::oci::spec::{self, Descriptor, Manifest, ManifestOrIndex, Platform};
use berth_appc::oci::{DockerReference, OciLocation, OciReferenceError};
use berth_appc::reference::ImageArg;
use berth_store::{Digest, NewOciImage, OciBlob, OciImage, Store, StoreError};

use crate::{FetchError, Fetcher, PullPolicy};

pub use auth::{docker_config_credentials, DockerConfigError};

/// Largest manifest, index or config accepted (they are read into memory).
pub const MAX_DOCUMENT: u64 = 8 << 20;

/// Why a Docker/OCI image could not be fetched. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum OciFetchError {
    #[error(transparent)]
    Reference(#[from] OciReferenceError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{reference}: no image for platform {platform} (the index has {}); pass --platform=OS/ARCH[/VARIANT]",
        if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoPlatform {
        reference: String,
        platform: String,
        available: Vec<String>,
    },
    #[error("{reference}: layer {digest} is a foreign layer ({media_type}): its content is not in the registry and berth does not download foreign layers (they are Windows base layers)")]
    ForeignLayer {
        reference: String,
        digest: String,
        media_type: String,
    },
    #[error("{reference}: {what} {digest} has media type {media_type:?}, which is not a container image's")]
    MediaType {
        reference: String,
        what: &'static str,
        digest: String,
        media_type: String,
    },
    #[error("{reference}: invalid {what}: {reason}")]
    Document {
        reference: String,
        what: String,
        reason: String,
    },
    #[error("{reference}: blob {digest} is corrupt: its content hashes to {actual} (the source is damaged; nothing was stored for it)")]
    Corrupt {
        reference: String,
        digest: String,
        actual: String,
    },
    #[error("{reference}: blob {digest} is {actual} bytes, its descriptor says {expected}")]
    Size {
        reference: String,
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{}: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "image {reference} is not in the store (run \"berth fetch\" or drop --pull-policy=never)"
    )]
    NotInStore { reference: String },
    #[error("{registry}: authentication failed: {reason}")]
    Auth { registry: String, reason: String },
    #[error("{0} is not a Docker/OCI image argument")]
    NotOci(String),
    #[error(transparent)]
    DockerConfig(#[from] DockerConfigError),
}

impl OciFetchError {
    /// A store error from checking a blob, with the reference it was for.
    fn from_blob(reference: &str, e: StoreError) -> OciFetchError {
        match e {
            StoreError::DigestMismatch { expected, actual } => OciFetchError::Corrupt {
                reference: reference.to_string(),
                digest: expected.to_string(),
                actual: actual.to_string(),
            },
            e => OciFetchError::Store(e),
        }
    }
}

/// Why an OCI image cannot run without `--insecure-options=image`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image {image} is a Docker/OCI image, and berth cannot verify signatures of OCI images yet; to run it anyway, pass --insecure-options=image")]
pub struct UnsignedOciImage {
    pub image: String,
}

/// How [`OciFetcher`] fetches.
#[derive(Debug, Clone)]
pub struct OciFetchOptions {
    pub policy: PullPolicy,
    /// The platform to pick from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// Most layers downloaded at once.
    pub parallel: usize,
    /// A Docker `config.json` to read registry credentials from
    /// (`--registry-config`); else `$DOCKER_CONFIG/config.json`, then
    /// `~/.docker/config.json`, when they exist.
    pub registry_config: Option<PathBuf>,
    /// Progress bars on stderr (when it is a terminal).
    pub progress: bool,
}

impl Default for OciFetchOptions {
    fn default() -> Self {
        OciFetchOptions {
            policy: PullPolicy::Update,
            platform: None,
            parallel: 3,
            registry_config: None,
            progress: true,
        }
    }
}

/// What one fetch did.
#[derive(Debug, Clone)]
pub struct OciFetched {
    pub image: OciImage,
    /// Blobs transferred (layers and config; not the manifest).
    pub downloaded: Vec<Digest>,
    /// Blobs the store had already.
    pub reused: Vec<Digest>,
    /// The store had the image and nothing was asked of the network.
    pub from_store: bool,
}

/// Gets the manifest an index entry names: its bytes and media type.
type ChildFetch<'c> = dyn Fn(&Descriptor) -> Result<(Vec<u8>, String), OciFetchError> + 'c;

/// Blobs moved so far by one fetch.
#[derive(Debug, Default)]
struct Transfers {
    downloaded: Vec<Digest>,
    reused: Vec<Digest>,
}

impl Transfers {
    fn done(self, image: OciImage) -> OciFetched {
        OciFetched {
            image,
            downloaded: self.downloaded,
            reused: self.reused,
            from_store: false,
        }
    }
}

/// Brings Docker/OCI images into the store.
#[derive(Debug)]
pub struct OciFetcher<'a> {
    pub store: &'a Store,
    pub http: &'a Fetcher,
    pub opts: OciFetchOptions,
}

/// A layer media type berth can render, or the refusal.
fn check_layer(reference: &str, d: &Descriptor) -> Result<(), OciFetchError> {
    if spec::is_foreign_layer(&d.media_type) {
        return Err(OciFetchError::ForeignLayer {
            reference: reference.into(),
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
        });
    }
    let ok = d.media_type.is_empty()
        || d.media_type
            .starts_with("application/vnd.oci.image.layer.v1.tar")
        || d.media_type
            .starts_with("application/vnd.docker.image.rootfs.diff.tar");
    if !ok {
        return Err(OciFetchError::MediaType {
            reference: reference.into(),
            what: "layer",
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
        });
    }
    Ok(())
}

/// The digest of a descriptor, parsed.
fn digest(reference: &str, d: &Descriptor) -> Result<Digest, OciFetchError> {
    d.digest.parse().map_err(|_| OciFetchError::Document {
        reference: reference.into(),
        what: "descriptor".into(),
        reason: format!(
            "digest {:?} is not sha256 and 64 hex digits (the only algorithm berth stores)",
            d.digest
        ),
    })
}

fn sha256(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(bytes);
    Digest::Sha256(h.iter().map(|b| format!("{b:02x}")).collect())
}

impl<'a> OciFetcher<'a> {
    pub fn new(store: &'a Store, http: &'a Fetcher, opts: OciFetchOptions) -> Self {
        OciFetcher { store, http, opts }
    }

    fn platform(&self) -> Platform {
        self.opts.platform.clone().unwrap_or_else(Platform::host)
    }

    /// Fetch a `docker://`, `oci:`, `oci-archive:` or `docker-archive:`
    /// argument.
    pub fn fetch(&self, arg: &ImageArg) -> Result<OciFetched, OciFetchError> {
        match arg {
            ImageArg::DockerRef(r) => self.fetch_docker(&DockerReference::parse(r)?),
            ImageArg::OciLayout {
                transport,
                location,
            } => self.fetch_local(&OciLocation::parse(*transport, location)?),
            other => Err(OciFetchError::NotOci(format!("{other:?}"))),
        }
    }

    /// Pick the manifest for this platform from an index.
    fn pick<'i>(
        &self,
        reference: &str,
        index: &'i spec::Index,
    ) -> Result<&'i Descriptor, OciFetchError> {
        let want = self.platform();
        index.pick(&want).ok_or_else(|| OciFetchError::NoPlatform {
            reference: reference.into(),
            platform: want.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect(),
        })
    }

    /// Parse a manifest (not an index), checking what it lists.
    fn parse_manifest(&self, reference: &str, bytes: &[u8]) -> Result<Manifest, OciFetchError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| OciFetchError::Document {
            reference: reference.into(),
            what: "manifest".into(),
            reason: e.to_string(),
        })?;
        if m.schema_version != 2 {
            return Err(OciFetchError::Document {
                reference: reference.into(),
                what: "manifest".into(),
                reason: format!(
                    "schema version {} (only schema 2 is supported: re-push the image with a current tool)",
                    m.schema_version
                ),
            });
        }
        let ct = m.config.media_type.as_str();
        if !(ct == spec::OCI_CONFIG || ct == spec::DOCKER_CONFIG || ct.is_empty()) {
            return Err(OciFetchError::MediaType {
                reference: reference.into(),
                what: "config",
                digest: m.config.digest.clone(),
                media_type: ct.into(),
            });
        }
        digest(reference, &m.config)?;
        for l in &m.layers {
            check_layer(reference, l)?;
            digest(reference, l)?;
        }
        Ok(m)
    }

    /// Read the manifest or index `bytes`: an index resolves (through
    /// `child`) to this platform's manifest. Returns the manifest's bytes,
    /// digest and media type.
    fn resolve_index(
        &self,
        reference: &str,
        bytes: Vec<u8>,
        content_type: &str,
        child: &ChildFetch<'_>,
    ) -> Result<(Vec<u8>, String), OciFetchError> {
        let mut bytes = bytes;
        let mut ct = content_type.to_string();
        // An index may point at another index (rare, bounded).
        for _ in 0..4 {
            let parsed =
                ManifestOrIndex::parse(&bytes, &ct).map_err(|e| OciFetchError::Document {
                    reference: reference.into(),
                    what: "manifest".into(),
                    reason: e.to_string(),
                })?;
            match parsed {
                ManifestOrIndex::Manifest(m) => {
                    let mt = if m.media_type.is_empty() {
                        if ct.is_empty() {
                            spec::OCI_MANIFEST.to_string()
                        } else {
                            ct
                        }
                    } else {
                        m.media_type
                    };
                    return Ok((bytes, mt));
                }
                ManifestOrIndex::Index(i) => {
                    let d = self.pick(reference, &i)?;
                    let (b, t) = child(d)?;
                    let got = sha256(&b);
                    if got.to_string() != d.digest {
                        return Err(OciFetchError::Corrupt {
                            reference: reference.into(),
                            digest: d.digest.clone(),
                            actual: got.to_string(),
                        });
                    }
                    bytes = b;
                    ct = if t.is_empty() {
                        d.media_type.clone()
                    } else {
                        t
                    };
                }
            }
        }
        Err(OciFetchError::Document {
            reference: reference.into(),
            what: "index".into(),
            reason: "indexes nested too deep".into(),
        })
    }

    /// The last step of every source: the manifest blob stored, the row in.
    fn record(
        &self,
        reference: &str,
        manifest_bytes: &[u8],
        media_type: &str,
        manifest: &Manifest,
        stored_as: Option<String>,
        origin: String,
    ) -> Result<OciImage, OciFetchError> {
        let mdigest = sha256(manifest_bytes);
        if !self.store.has_blob(&mdigest) {
            self.store
                .put_blob(manifest_bytes, Some(&mdigest))
                .map_err(|e| OciFetchError::from_blob(reference, e))?;
        }
        let blob = |d: &Descriptor| -> Result<OciBlob, OciFetchError> {
            Ok(OciBlob {
                digest: digest(reference, d)?,
                size: d.size,
                media_type: d.media_type.clone(),
            })
        };
        let config = blob(&manifest.config)?;
        let platform = self
            .store
            .read_blob(&config.digest)
            .ok()
            .and_then(|b| serde_json::from_slice::<spec::ImageConfig>(&b).ok())
            .map(|c| {
                Platform {
                    architecture: c.architecture,
                    os: c.os,
                    variant: c.variant,
                    os_version: None,
                }
                .to_string()
            });
        let img = NewOciImage {
            manifest: OciBlob {
                digest: mdigest.clone(),
                size: manifest_bytes.len() as u64,
                media_type: media_type.to_string(),
            },
            config,
            layers: manifest.layers.iter().map(blob).collect::<Result<_, _>>()?,
            reference: stored_as,
            origin: Some(origin),
            platform,
        };
        self.store.oci_add_image(&img)?;
        self.store
            .oci_get(&mdigest)?
            .ok_or_else(|| OciFetchError::NotInStore {
                reference: reference.into(),
            })
    }
}
