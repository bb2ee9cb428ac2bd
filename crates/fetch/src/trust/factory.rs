//! The [`VerifierFactory`] that makes every fetched ACI pass a signature
//! check before the store shows it.
//!
//! For each image about to be imported it finds the detached signature:
//! - by name: the signature URL discovery rendered for the endpoint
//!   (`{ext}` = `aci.asc`), remembered by [`DiscoveryResolver`];
//! - by URL: the URL + `.asc`;
//! - by file: the file + `.asc` (or the `--signature` file given).
//!
//! The signature is downloaded *before* the image, so a missing or
//! malformed signature costs no image download, and the image then streams
//! once through the [`SignatureVerifier`] into the store. With
//! `--insecure-options=image` no verifier is made at all.
//!
//! [`DiscoveryResolver`]: crate::discover::DiscoveryResolver

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_appc::AcIdentifier;
use berth_store::{ImportVerifier, VerifierError};

use super::keystore::Keystore;
use super::verify::{Keys, SignatureError, SignatureVerifier, Verified};
use crate::discover::{DiscoveredMap, SMALL_LIMIT};
use crate::image::{PluginError, VerifierFactory};
use crate::{FetchError, Fetcher};

/// Signature checks for `berth fetch` (and later `berth run`).
pub struct TrustedImages<'a> {
    pub fetcher: &'a Fetcher,
    pub keystore: Keystore,
    /// What discovery found for the URLs it handed out.
    pub discovered: DiscoveredMap,
    /// A signature file given on the command line for the next image.
    pub signature_file: Option<PathBuf>,
    /// Every accepted signature, for the caller to report.
    pub verified: Arc<Mutex<Vec<Verified>>>,
}

impl std::fmt::Debug for TrustedImages<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedImages")
            .field("keystore", &self.keystore)
            .finish_non_exhaustive()
    }
}

/// Failing to fetch a signature for a reason other than its absence.
#[derive(Debug, thiserror::Error)]
pub enum SignatureFetchError {
    #[error("error downloading the signature file {url}")]
    Download {
        url: String,
        #[source]
        source: FetchError,
    },
    #[error("error opening the signature file {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl<'a> TrustedImages<'a> {
    pub fn new(fetcher: &'a Fetcher, keystore: Keystore, discovered: DiscoveredMap) -> Self {
        TrustedImages {
            fetcher,
            keystore,
            discovered,
            signature_file: None,
            verified: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The signature's location and bytes (`Ok(None)`: there is none).
    fn signature(&self, origin: &str) -> Result<(String, Option<Vec<u8>>), PluginError> {
        if let Some(path) = &self.signature_file {
            let bytes = fs::read(path).map_err(|source| SignatureFetchError::Open {
                path: path.clone(),
                source,
            })?;
            return Ok((path.display().to_string(), Some(bytes)));
        }
        let discovered = self
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .map(|d| d.endpoint.asc_url.clone());
        let is_url = origin.starts_with("https://") || origin.starts_with("http://");
        if is_url || discovered.is_some() {
            let url = discovered.unwrap_or_else(|| format!("{origin}.asc"));
            // Fetched before the image: a missing signature costs no download.
            return match self.fetcher.get_small(&url, SMALL_LIMIT) {
                Ok((bytes, _)) => Ok((url, Some(bytes))),
                Err(FetchError::NotFound { .. }) => Ok((url, None)),
                Err(source) => Err(Box::new(SignatureFetchError::Download { url, source })),
            };
        }
        let path = PathBuf::from(format!("{origin}.asc"));
        match fs::read(&path) {
            Ok(bytes) => Ok((path.display().to_string(), Some(bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((path.display().to_string(), None)),
            Err(source) => Err(Box::new(SignatureFetchError::Open { path, source })),
        }
    }
}

/// Records the verdict for the caller, and checks the labels the user asked
/// for against the manifest of an image found by discovery.
struct Recording {
    inner: SignatureVerifier,
    verified: Arc<Mutex<Vec<Verified>>>,
    requested: Option<berth_appc::reference::ImageReference>,
}

/// An image found by discovery that lacks a label value the user asked for.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("requested value for label {label:?}: {wanted:?} differs from fetched aci label value: {got:?}")]
    Differs {
        label: String,
        wanted: String,
        got: String,
    },
    #[error("requested label {label:?} not provided by the image manifest")]
    Missing { label: String },
}

impl ImportVerifier for Recording {
    fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    fn verdict(
        &mut self,
        id: &berth_appc::ImageId,
        manifest: &berth_appc::ImageManifest,
    ) -> Result<(), VerifierError> {
        self.inner.verdict(id, manifest)?;
        if let Some(r) = &self.requested {
            for (k, wanted) in r.labels() {
                match manifest.labels.get(k.as_str()) {
                    Some(got) if got == wanted.as_str() => {}
                    Some(got) => {
                        return Err(Box::new(LabelError::Differs {
                            label: k.to_string(),
                            wanted: wanted.clone(),
                            got: got.to_owned(),
                        }))
                    }
                    None => {
                        return Err(Box::new(LabelError::Missing {
                            label: k.to_string(),
                        }))
                    }
                }
            }
        }
        if let Ok(v) = self.inner.finish(&manifest.name) {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(v);
        }
        Ok(())
    }
}

impl VerifierFactory for TrustedImages<'_> {
    fn verifier_for(
        &self,
        name: Option<&AcIdentifier>,
        origin: &str,
    ) -> Result<Option<Box<dyn ImportVerifier>>, PluginError> {
        let (requested, pubkeys) = self
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .map(|d| (Some(d.reference.clone()), d.pubkeys.clone()))
            .unwrap_or_default();
        let shown = requested
            .as_ref()
            .map(|r| r.to_string())
            .or_else(|| name.map(|n| n.to_string()))
            .unwrap_or_else(|| origin.to_owned());
        let (location, bytes) = self.signature(origin)?;
        let Some(bytes) = bytes else {
            return Err(Box::new(SignatureError::Missing {
                image: shown,
                location,
            }));
        };
        let mut v = SignatureVerifier::new(
            &shown,
            name,
            &bytes,
            &location,
            Keys::Store(self.keystore.clone()),
        )?;
        // A signer nobody trusts will be refused at the verdict; fetch the
        // keys discovery offered (never trusted from here) so the message
        // can name the signer with its user ID, e.g. "key 5F3A... (Alice
        // <alice@example.com>)".
        if let Some(n) = name.filter(|_| !pubkeys.is_empty()) {
            let trusted = self.keystore.keyring_for(n).unwrap_or_default();
            if !v.issuer_in(&trusted) {
                for url in &pubkeys {
                    match crate::discover::fetch_keys(self.fetcher, url) {
                        Ok(keys) => v = v.with_known_keys(keys),
                        Err(e) => tracing::debug!(%url, error = %e, "offered keys unavailable"),
                    }
                }
            }
        }
        Ok(Some(Box::new(Recording {
            inner: v,
            verified: self.verified.clone(),
            requested,
        })))
    }
}
