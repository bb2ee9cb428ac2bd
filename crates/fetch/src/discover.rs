//! appc meta discovery over HTTP: `berth_appc::discovery` decides, this
//! module fetches.
//!
//! The walk itself (which URLs, in which order, what a page offers) is pure
//! code in `berth-appc`; here its page getter is [`Fetcher::get_small`], so
//! discovery gets the same TLS roots, `--insecure-options=http|tls`,
//! redirects (each hop's scheme checked) and per-host `auth.d` credentials
//! as downloads. Plain `http://` discovery URLs and endpoints are used only
//! when the fetcher allows HTTP. Pages are capped at [`PAGE_LIMIT`] bytes.
//!
//! [`DiscoveryResolver`] is the [`NameResolver`] that `berth fetch NAME`
//! uses: it runs discovery for the reference (version defaulting to
//! `latest`, `os`/`arch` to the host's), takes the first endpoint, and
//! remembers the endpoint's signature URL and the keys discovery offered,
//! which the signature check ([`crate::trust::TrustedImages`]) needs next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_appc::discovery::{self, DiscoveryOptions, DiscoveryResult, Endpoint, Want};
use berth_appc::reference::ImageReference;

use crate::image::{NameResolver, PluginError};
use crate::trust::PublicKey;
use crate::{FetchError, Fetcher};

/// Largest discovery page read.
pub const PAGE_LIMIT: u64 = 1 << 20;
/// Largest key or signature file read.
pub const SMALL_LIMIT: u64 = 1 << 20;

/// Runs discovery for `reference` (exactly as given: call
/// [`ImageReference::with_defaults`] first to fill `os` and `arch`).
pub fn discover(fetcher: &Fetcher, reference: &ImageReference, want: Want) -> DiscoveryResult {
    let options = DiscoveryOptions {
        insecure_http: fetcher.config().allow_http,
        want,
    };
    let mut get = |url: &str| -> Result<String, FetchError> {
        let (body, _) = fetcher.get_small(url, PAGE_LIMIT)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    let result = discovery::discover(reference, options, &mut get);
    for a in &result.tried {
        tracing::debug!("discovery: {a}");
    }
    result
}

/// Why discovery gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery found no image endpoint for {reference}; tried:\n{explain}")]
    NoEndpoint { reference: String, explain: String },
    #[error("discovery found no public keys for {reference}; tried:\n{explain}")]
    NoKeys { reference: String, explain: String },
    #[error("cannot get the public keys at {url}")]
    KeyFetch {
        url: String,
        #[source]
        source: Box<FetchError>,
    },
    #[error("the document at {url} holds no usable public key")]
    KeyParse {
        url: String,
        #[source]
        source: crate::trust::KeyError,
    },
}

/// Downloads and parses the keys at `url` (a discovery `ac-discovery-pubkeys`
/// URL, or a URL given to `berth trust`).
pub fn fetch_keys(fetcher: &Fetcher, url: &str) -> Result<Vec<PublicKey>, DiscoveryError> {
    let (body, _) =
        fetcher
            .get_small(url, SMALL_LIMIT)
            .map_err(|source| DiscoveryError::KeyFetch {
                url: url.to_owned(),
                source: Box::new(source),
            })?;
    PublicKey::parse_armored(&body).map_err(|source| DiscoveryError::KeyParse {
        url: url.to_owned(),
        source,
    })
}

/// What discovery found for an ACI URL it handed out.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The reference as the user wrote it (for messages).
    pub reference: ImageReference,
    pub endpoint: Endpoint,
    /// The `ac-discovery-pubkeys` URLs (to name an untrusted signer).
    pub pubkeys: Vec<String>,
}

/// ACI URL -> what discovery said about it; shared between the resolver
/// and the signature check.
pub type DiscoveredMap = Arc<Mutex<HashMap<String, Discovered>>>;

/// The [`NameResolver`] of `berth fetch NAME`: appc meta discovery.
pub struct DiscoveryResolver<'a> {
    pub fetcher: &'a Fetcher,
    /// Filled with every endpoint handed out.
    pub discovered: DiscoveredMap,
}

impl std::fmt::Debug for DiscoveryResolver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryResolver").finish_non_exhaustive()
    }
}

impl NameResolver for DiscoveryResolver<'_> {
    fn resolve(&self, reference: &ImageReference) -> Result<String, PluginError> {
        let full = reference.with_host_defaults()?;
        let result = discover(self.fetcher, &full, Want::ImageAndKeys);
        let Some(endpoint) = result.image_endpoints.first().cloned() else {
            return Err(Box::new(DiscoveryError::NoEndpoint {
                reference: reference.to_string(),
                explain: result.explain(),
            }));
        };
        tracing::debug!(aci = %endpoint.aci_url, asc = %endpoint.asc_url, "discovered");
        let url = endpoint.aci_url.clone();
        self.discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                url.clone(),
                Discovered {
                    reference: reference.clone(),
                    endpoint,
                    pubkeys: result.pubkeys,
                },
            );
        Ok(url)
    }
}
