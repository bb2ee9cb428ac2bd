//! From a command-line image argument to an image ID in the store: the
//! orchestration of `berth fetch` and (later) `berth run`.
//!
//! [`ImageFetcher::fetch`] classifies the argument with
//! [`ImageArg::classify`] (rkt's order: image ID, URL, path, name) and then:
//!
//! | argument | what happens |
//! | --- | --- |
//! | `sha512-…` (whole or a unique prefix) | store lookup only |
//! | a path (`./app.aci`, `/x/app.aci`, `file://…`) | imported from the file, whatever the pull policy (origin: the absolute path) |
//! | `https://…` (`http://` with `--insecure-options=http`) | [`PullPolicy::decide`] with the [`CacheInfo`] the store keeps for the URL; a download streams into [`Store::import_aci`] |
//! | a name with labels | store lookup; if missing, the [`NameResolver`] (discovery) |
//! | `docker://`, `oci:`… | refused: [`crate::oci::OciFetcher`] fetches them |
//!
//! # Name lookup
//! The store's images whose name matches and which carry every label the
//! user gave are candidates. Like rkt, berth then only takes images that can
//! run here: an image that has an `os` (or `arch`) label must have the host's
//! value, unless the user asked for another one; an image without those
//! labels is not excluded by them. Of the remaining candidates the newest
//! import wins (no `version` means "any version").
//!
//! # Downloads
//! The body goes through the partial file
//! `<dir>/cas/downloads/<sha256 of the URL>.partial` (outside the per-process
//! `tmp/`, so it survives a `kill -9` and the next `berth fetch` of the URL
//! resumes it with `Range`). The same bytes stream into the store's import,
//! which hashes and validates them while they arrive. If the import refuses
//! the bytes (invalid ACI, corrupt compression, a verifier's "no") the
//! partial file is deleted, since resuming it would only give the same bad
//! image; if the network failed it is kept for the next attempt. A second
//! process fetching the same URL waits for the first and then finds the
//! image in the store.
//!
//! # Seams for discovery and signatures
//! Two traits let the trust/discovery work plug in without touching this
//! module's logic:
//! - [`NameResolver`]: turns a name that is not in the store into the URL
//!   of its ACI (appc meta discovery). Without one, such names fail with
//!   "discovery is not available yet".
//! - [`VerifierFactory`]: gives the [`ImportVerifier`] (a signature check)
//!   for each image about to be imported. When it gives none and
//!   `--insecure-options=image` is not set, the image is refused before any
//!   byte is downloaded.

use std::error::Error as StdError;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_appc::reference::{host_os_arch, ImageArg, ImageReference, ReferenceError};
use berth_appc::{AcIdentifier, ImageId};
use berth_store::{
    HttpCacheEntry, ImageInfo, ImageRef, ImportOptions, ImportReport, ImportVerifier, Store,
    StoreError,
};
use sha2::{Digest as _, Sha256};

use crate::{
    resume_info_path, CacheInfo, FetchError, Fetcher, Outcome, Progress, PullDecision, PullPolicy,
};

/// A boxed error from a plug-in (resolver or verifier factory).
pub type PluginError = Box<dyn StdError + Send + Sync>;

/// Finds the ACI of an image name that is not in the store (appc
/// discovery). Implemented by the discovery module.
pub trait NameResolver {
    /// The URL of the ACI for `reference` (whose `version`, `os` and `arch`
    /// the implementation defaults as discovery requires).
    fn resolve(&self, reference: &ImageReference) -> Result<String, PluginError>;
}

/// Produces the verifier (e.g. an OpenPGP signature check) for one image
/// about to be imported. Implemented by the trust module.
pub trait VerifierFactory {
    /// `name`: the name the image was asked for (for keys by prefix), when
    /// it was asked for by name; `origin`: the URL or absolute path of the
    /// ACI. `Ok(None)`: this factory has nothing to check the image with.
    fn verifier_for(
        &self,
        name: Option<&AcIdentifier>,
        origin: &str,
    ) -> Result<Option<Box<dyn ImportVerifier>>, PluginError>;
}

/// Why an image could not be fetched. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageFetchError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(
        "image {reference:?} not found in the store (run \"berth fetch\" or drop --pull-policy=never)"
    )]
    NotInStoreNever { reference: String },
    #[error("image {reference:?} not found in the store, and discovery is not available yet")]
    NoDiscovery { reference: String },
    #[error("discovery of image {reference:?} failed")]
    Discovery {
        reference: String,
        #[source]
        source: PluginError,
    },
    #[error("Docker/OCI images are fetched by berth_fetch::oci::OciFetcher, not as ACIs")]
    Docker,
    #[error("signature verification is not available yet; pass --insecure-options=image to fetch without it")]
    NoVerification,
    #[error("cannot set up signature verification for {origin}")]
    Verifier {
        origin: String,
        #[source]
        source: PluginError,
    },
    #[error("cannot open the image file {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot prepare the download directory {}", path.display())]
    DownloadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`ImageFetcher::fetch`] found or did, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Already in the store (lookup, or the pull policy said so).
    Store,
    /// The server said the stored copy is current (304 or still fresh).
    NotModified,
    /// Imported from a local file.
    File,
    /// Downloaded.
    Downloaded,
}

/// The result of one fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub id: ImageId,
    pub source: Source,
}

/// Resolves image arguments to image IDs, importing and downloading as the
/// pull policy allows.
pub struct ImageFetcher<'a> {
    pub store: &'a Store,
    pub http: &'a Fetcher,
    pub policy: PullPolicy,
    /// `--insecure-options=image`: import images no verifier vouches for.
    pub insecure_image: bool,
    pub resolver: Option<&'a dyn NameResolver>,
    pub verifiers: Option<&'a dyn VerifierFactory>,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// How long to wait for another process downloading the same URL.
    pub busy_wait: Duration,
    /// Render the tree of each image imported, in the same pass as the
    /// import ([`ImportOptions::render`]), so that the first run or render
    /// finds it ready. `berth fetch` sets it.
    pub render: bool,
}

impl fmt::Debug for ImageFetcher<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageFetcher")
            .field("policy", &self.policy)
            .field("insecure_image", &self.insecure_image)
            .field("resolver", &self.resolver.is_some())
            .field("verifiers", &self.verifiers.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> ImageFetcher<'a> {
    /// A fetcher with no discovery and no verifiers.
    pub fn new(store: &'a Store, http: &'a Fetcher, policy: PullPolicy) -> Self {
        ImageFetcher {
            store,
            http,
            policy,
            insecure_image: false,
            resolver: None,
            verifiers: None,
            progress: true,
            busy_wait: Duration::from_secs(3600),
            render: false,
        }
    }

    /// Finds or brings `arg` into the store and returns its ID.
    pub fn fetch(&self, arg: &str) -> Result<Fetched, ImageFetchError> {
        match ImageArg::classify(arg)? {
            ImageArg::ImageId(id) => {
                let r = match ImageId::try_from(id.as_str()) {
                    Ok(full) => ImageRef::Id(full),
                    Err(_) => ImageRef::IdPrefix(id),
                };
                Ok(Fetched {
                    id: self.store.lookup(&r)?.id,
                    source: Source::Store,
                })
            }
            ImageArg::Path(p) => self.fetch_file(Path::new(&p), None),
            ImageArg::Url(url) => self.fetch_url(&url, None),
            ImageArg::DockerRef(_) | ImageArg::OciLayout { .. } => Err(ImageFetchError::Docker),
            ImageArg::Name(reference) => self.fetch_name(&reference),
        }
    }

    fn fetch_name(&self, reference: &ImageReference) -> Result<Fetched, ImageFetchError> {
        if let Some(found) = find_by_name(self.store, reference)? {
            return Ok(Fetched {
                id: found.id,
                source: Source::Store,
            });
        }
        if self.policy == PullPolicy::Never {
            return Err(ImageFetchError::NotInStoreNever {
                reference: reference.to_string(),
            });
        }
        let Some(resolver) = self.resolver else {
            return Err(ImageFetchError::NoDiscovery {
                reference: reference.to_string(),
            });
        };
        let url = resolver
            .resolve(reference)
            .map_err(|source| ImageFetchError::Discovery {
                reference: reference.to_string(),
                source,
            })?;
        self.fetch_url(&url, Some(reference.name()))
    }

    /// The verifier for one import, or the refusal to import unverified.
    fn verifier(
        &self,
        name: Option<&AcIdentifier>,
        origin: &str,
    ) -> Result<Option<Box<dyn ImportVerifier>>, ImageFetchError> {
        if let Some(factory) = self.verifiers {
            if let Some(v) =
                factory
                    .verifier_for(name, origin)
                    .map_err(|source| ImageFetchError::Verifier {
                        origin: origin.to_owned(),
                        source,
                    })?
            {
                return Ok(Some(v));
            }
        }
        if self.insecure_image {
            Ok(None)
        } else {
            Err(ImageFetchError::NoVerification)
        }
    }

    fn progress(&self, what: String) -> Progress {
        if self.progress {
            Progress::stderr(what)
        } else {
            Progress::hidden()
        }
    }

    fn fetch_file(
        &self,
        path: &Path,
        name: Option<&AcIdentifier>,
    ) -> Result<Fetched, ImageFetchError> {
        let open_err = |source| ImageFetchError::Open {
            path: path.to_owned(),
            source,
        };
        let abs = std::path::absolute(path).map_err(open_err)?;
        let file = File::open(&abs).map_err(open_err)?;
        let origin = abs.display().to_string();
        let mut verifier = self.verifier(name, &origin)?;
        let progress = self.progress(format!("importing {}", path.display()));
        progress.set_length(file.metadata().ok().map(|m| m.len()));
        let report = self.store.import_aci(
            io::BufReader::with_capacity(256 * 1024, progress.wrap_read(file)),
            ImportOptions {
                origin: Some(origin),
                expected_name: name.cloned(),
                verifier: verifier
                    .as_deref_mut()
                    .map(|v| v as &mut dyn ImportVerifier),
                render: self.render,
                ..ImportOptions::default()
            },
        );
        progress.finish();
        let report = report?;
        warn_unrendered(&report);
        Ok(Fetched {
            id: report.id,
            source: Source::File,
        })
    }

    /// Where the partial download of `url` lives.
    pub fn partial_path(store: &Store, url: &str) -> PathBuf {
        let hex: String = Sha256::digest(url.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        store
            .root()
            .join("cas/downloads")
            .join(format!("{hex}.partial"))
    }

    fn fetch_url(
        &self,
        url: &str,
        name: Option<&AcIdentifier>,
    ) -> Result<Fetched, ImageFetchError> {
        let started = Instant::now();
        loop {
            match self.fetch_url_once(url, name) {
                Err(ImageFetchError::Fetch(FetchError::PartialBusy { path }))
                    if started.elapsed() < self.busy_wait =>
                {
                    tracing::debug!(%url, partial = %path.display(),
                        "another process is downloading this URL; waiting");
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn fetch_url_once(
        &self,
        url: &str,
        name: Option<&AcIdentifier>,
    ) -> Result<Fetched, ImageFetchError> {
        let now = SystemTime::now();
        let entry = self.store.http_cache(url)?;
        let stored = match entry.as_ref().and_then(|e| e.image_id.clone()) {
            Some(id) => self.store.get(&id)?.map(|i| i.id),
            None => None,
        };
        let cache = entry.as_ref().map(cache_info);
        let decision = self.policy.decide(stored.is_some(), cache.as_ref(), now);
        tracing::debug!(%url, ?decision, in_store = stored.is_some(), "pull policy");
        match decision {
            PullDecision::UseStore => {
                if let Some(id) = stored {
                    return Ok(Fetched {
                        id,
                        source: Source::Store,
                    });
                }
            }
            PullDecision::Unavailable => {
                return Err(ImageFetchError::NotInStoreNever {
                    reference: url.to_owned(),
                })
            }
            PullDecision::Fetch => {}
        }
        let mut verifier = self.verifier(name, url)?;
        let partial = Self::partial_path(self.store, url);
        if let Some(dir) = partial.parent() {
            fs::create_dir_all(dir).map_err(|source| ImageFetchError::DownloadDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let cache_for_request = if stored.is_some() {
            cache.as_ref()
        } else {
            None
        };
        match self.http.download(url, cache_for_request, &partial)? {
            Outcome::Fresh => Ok(Fetched {
                id: stored.ok_or(StoreError::NotFound {
                    reference: url.to_owned(),
                })?,
                source: Source::NotModified,
            }),
            Outcome::NotModified(info) => {
                let id = stored.ok_or(StoreError::NotFound {
                    reference: url.to_owned(),
                })?;
                self.store
                    .set_http_cache(&cache_entry(url, Some(id.clone()), &info))?;
                Ok(Fetched {
                    id,
                    source: Source::NotModified,
                })
            }
            Outcome::Body(download) => {
                let mut download =
                    download.with_progress(self.progress(format!("downloading {url}")));
                let info = download.cache_info().clone();
                let imported = self.store.import_aci(
                    io::BufReader::with_capacity(256 * 1024, &mut download),
                    ImportOptions {
                        origin: Some(url.to_owned()),
                        expected_name: name.cloned(),
                        verifier: verifier
                            .as_deref_mut()
                            .map(|v| v as &mut dyn ImportVerifier),
                        http_cache: Some(cache_entry(url, None, &info)),
                        render: self.render,
                        ..ImportOptions::default()
                    },
                );
                let report = match imported {
                    Ok(r) => r,
                    Err(e) => {
                        if fetch_cause(&e).is_some() {
                            tracing::debug!(%url, "download interrupted; keeping the partial file to resume");
                        } else {
                            tracing::debug!(%url, "image refused; dropping the partial file");
                            drop(download);
                            discard_partial(&partial);
                        }
                        return Err(match take_fetch_error(e) {
                            Ok(f) => f.into(),
                            Err(e) => e.into(),
                        });
                    }
                };
                warn_unrendered(&report);
                let done = download.finish()?;
                discard_partial(&done.path);
                Ok(Fetched {
                    id: report.id,
                    source: Source::Downloaded,
                })
            }
        }
    }
}

/// The store's image for `reference`, as described in the module docs.
pub fn find_by_name(
    store: &Store,
    reference: &ImageReference,
) -> Result<Option<ImageInfo>, StoreError> {
    let host = host_os_arch().ok();
    let mut best: Option<ImageInfo> = None;
    for image in store.list()? {
        if !reference.matches(&image.name, &image.labels) {
            continue;
        }
        if let Some((os, arch)) = host {
            let runs_here = [("os", os), ("arch", arch)].iter().all(|(k, v)| {
                reference.label(k).is_some() || image.labels.get(k).is_none_or(|x| x == *v)
            });
            if !runs_here {
                tracing::debug!(id = %image.id, "skipping an image for another os/arch");
                continue;
            }
        }
        if best
            .as_ref()
            .is_none_or(|b| image.import_time >= b.import_time)
        {
            best = Some(image);
        }
    }
    Ok(best)
}

/// Resolves a store reference (image ID, prefix or name with labels) given
/// on the command line, with the same rules as `berth fetch`.
pub fn find_in_store(store: &Store, arg: &str) -> Result<ImageInfo, ImageFetchError> {
    match ImageArg::classify(arg)? {
        ImageArg::ImageId(_) => Ok(store.resolve(arg)?),
        ImageArg::Name(reference) => find_by_name(store, &reference)?.ok_or_else(|| {
            ImageFetchError::Store(StoreError::NotFound {
                reference: arg.to_owned(),
            })
        }),
        _ => Err(StoreError::NotFound {
            reference: arg.to_owned(),
        }
        .into()),
    }
}

/// The first [`FetchError`] in an import error's chain (a failed read of
/// the download), if the import failed because of the network.
fn fetch_cause(err: &StoreError) -> Option<&FetchError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(f) = e.downcast_ref::<FetchError>() {
            return Some(f);
        }
        if let Some(f) = e.downcast_ref::<io::Error>().and_then(FetchError::from_io) {
            return Some(f);
        }
        cur = e.source();
    }
    None
}

/// The import error, or the network error it wraps (whose message says
/// what happened to the download, which is what the user needs).
fn take_fetch_error(err: StoreError) -> Result<FetchError, StoreError> {
    let Some(f) = fetch_cause(&err) else {
        return Err(err);
    };
    // FetchError is not Clone; rebuild the message-carrying variant that
    // matters: the interrupted or truncated transfer.
    Ok(match f {
        FetchError::Truncated {
            url,
            received,
            expected,
        } => FetchError::Truncated {
            url: url.clone(),
            received: *received,
            expected: *expected,
        },
        FetchError::Interrupted {
            url,
            received,
            source,
        } => FetchError::Interrupted {
            url: url.clone(),
            received: *received,
            source: io::Error::new(source.kind(), source.to_string()),
        },
        _ => return Err(err),
    })
}

fn discard_partial(partial: &Path) {
    let _ = fs::remove_file(partial);
    let _ = fs::remove_file(resume_info_path(partial));
}

fn cache_info(e: &HttpCacheEntry) -> CacheInfo {
    CacheInfo {
        etag: e.etag.clone(),
        last_modified: e.last_modified.clone(),
        max_age: e.max_age.map(|d| d.as_secs()),
        fetched_at: e
            .fetched_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

fn cache_entry(url: &str, id: Option<ImageId>, info: &CacheInfo) -> HttpCacheEntry {
    HttpCacheEntry {
        url: url.to_owned(),
        image_id: id,
        etag: info.etag.clone(),
        last_modified: info.last_modified.clone(),
        max_age: info.max_age.map(Duration::from_secs),
        fetched_at: UNIX_EPOCH + Duration::from_secs(info.fetched_at),
    }
}

/// The image is stored, but the tree its import was to render is not: say
/// so (the first render will extract the blob, slower but fine).
fn warn_unrendered(report: &ImportReport) {
    if let Some(e) = &report.render_error {
        tracing::warn!(id = %report.id, error = %e, "the image's tree was not rendered while fetching");
    }
}
