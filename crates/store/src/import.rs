//! Importing an ACI: one streaming pass that stores, hashes, validates and
//! lets a verifier judge, before anything becomes visible.
//!
//! ```text
//! reader ──tee──> tmp/<proc>/blob-… (the bytes as received)
//!          │  └─> ImportVerifier::update (e.g. an OpenPGP signature check)
//!          └────> decompress ─> sha512 (the image ID) ─> tar walk (layout,
//!                                                        manifest) = aci::validate
//! ```
//!
//! Only when the stream is read to its end, the image is valid, its ID is
//! the expected one (if any) and the verifier said yes, is the temp file
//! fsynced and, under the image's lock, renamed to `cas/blobs/sha512/<hex>`
//! (and the directory fsynced); only then is the index row inserted. A crash
//! before the rename leaves a temp file in a dead process's directory
//! (removed by the next `Store::open`); a crash between rename and insert
//! leaves a blob without a row, which gc and verify adopt.
//!
//! With [`ImportOptions::render`] the same pass also extracts the rootfs
//! (`aci::validate_extract`: the decompressed stream feeds the ID hash, the
//! checks and the extractor) into a staging directory in the process's temp
//! dir, hashing each file as it is written. That directory becomes the
//! image's tree (`tree.rs`, [`Store::render_staged`](crate::Store)) only
//! after the image is committed as above, so a refused image never shows a
//! tree either; a crash leaves it in the dead process's temp dir like the
//! blob. The extraction's own failures (say, a device node it may not
//! create) never fail the import: the tree is then just not made, and the
//! first render extracts the stored blob as usual.
//!
//! Memory stays at a few decoder buffers whatever the image's size.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use berth_appc::aci::{self, AciError, Compression, Extracted};
use berth_appc::{AcIdentifier, ImageId, ImageManifest, Problem};

use crate::tree::TreePath;

/// The error a verifier returns to refuse an image.
pub type VerifierError = Box<dyn std::error::Error + Send + Sync>;

/// Sees an image's bytes as they stream in, and gives a verdict before the
/// image becomes visible in the store. OpenPGP signature checking (a later
/// issue) plugs in here; a detached signature covers the bytes as received.
pub trait ImportVerifier {
    /// The next bytes of the image, exactly as received (compressed).
    fn update(&mut self, bytes: &[u8]);
    /// All bytes were seen and the image is valid: accept (`Ok`) or refuse.
    fn verdict(&mut self, id: &ImageId, manifest: &ImageManifest) -> Result<(), VerifierError>;
}

/// A verifier made of a closure that gives the verdict (and ignores the
/// bytes): handy for policies on the manifest, and for tests.
pub struct VerdictFn<F>(pub F);

impl<F> std::fmt::Debug for VerdictFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerdictFn")
    }
}

impl<F> ImportVerifier for VerdictFn<F>
where
    F: FnMut(&ImageId, &ImageManifest) -> Result<(), VerifierError>,
{
    fn update(&mut self, _bytes: &[u8]) {}
    fn verdict(&mut self, id: &ImageId, manifest: &ImageManifest) -> Result<(), VerifierError> {
        (self.0)(id, manifest)
    }
}

/// HTTP cache data of a URL (what `berth-fetch` needs to revalidate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCacheEntry {
    pub url: String,
    /// The image that URL gave last time.
    pub image_id: Option<ImageId>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `Cache-Control: max-age`.
    pub max_age: Option<Duration>,
    pub fetched_at: SystemTime,
}

/// How [`Store::import_aci`](crate::Store::import_aci) imports.
#[derive(Default)]
pub struct ImportOptions<'a> {
    /// The ID the image must have (from a dependency's `imageID`, a pinned
    /// reference...): a mismatch is an error and nothing is stored.
    pub expected_id: Option<ImageId>,
    /// The name the image must have (the name it was fetched by).
    pub expected_name: Option<AcIdentifier>,
    /// Where the image came from (a URL or a path), kept in the index.
    pub origin: Option<String>,
    /// Sees the bytes and gives the verdict before the image is visible.
    pub verifier: Option<&'a mut dyn ImportVerifier>,
    /// Stored (keyed by its URL) in the same transaction as the image.
    pub http_cache: Option<HttpCacheEntry>,
    /// Also render the image's tree, in the same pass over the stream
    /// (decompressed once), when the image is its own tree: no dependencies
    /// and no path whitelist. Then [`Store::render`](crate::Store::render)
    /// finds the tree ready. Other images are imported as without it (their
    /// dependencies may not be in the store yet).
    pub render: bool,
}

impl std::fmt::Debug for ImportOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("expected_id", &self.expected_id)
            .field("expected_name", &self.expected_name)
            .field("origin", &self.origin)
            .field("verifier", &self.verifier.is_some())
            .field("http_cache", &self.http_cache)
            .field("render", &self.render)
            .finish()
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub id: ImageId,
    pub name: AcIdentifier,
    /// The image was in the store already (this import changed nothing but
    /// the HTTP cache data).
    pub already_present: bool,
    /// Bytes as stored (as received).
    pub blob_size: u64,
    pub compression: Compression,
    /// Validation warnings (device nodes...).
    pub warnings: Vec<Problem>,
    /// With [`ImportOptions::render`], the image's tree (rendered by this
    /// import, or found there already). `None` when not asked for, when the
    /// image has dependencies or a path whitelist, or when rendering failed.
    pub tree: Option<TreePath>,
    /// Why the tree asked for was not rendered, if it failed (the image is
    /// stored all the same; rendering it later extracts the blob).
    pub render_error: Option<String>,
}

/// Why an import failed. Nothing of the image is visible in the store after
/// any of these.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the image")]
    Read(#[source] AciError),
    #[error("the image is not a valid ACI: {}", list(problems))]
    Invalid { problems: Vec<Problem> },
    #[error("the image has ID {actual}, not the expected {expected}; it was not stored")]
    IdMismatch { expected: ImageId, actual: ImageId },
    #[error("the image is named \"{actual}\", not the expected \"{expected}\"; it was not stored")]
    NameMismatch {
        expected: AcIdentifier,
        actual: AcIdentifier,
    },
    #[error("image {id} was refused by verification; it was not stored")]
    Refused {
        id: ImageId,
        #[source]
        source: VerifierError,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn list(problems: &[Problem]) -> String {
    let shown: Vec<String> = problems.iter().take(5).map(|p| p.to_string()).collect();
    let more = problems.len().saturating_sub(5);
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

/// A reader that copies what it reads into a file and a verifier.
struct Tee<'f, R, V: ?Sized> {
    inner: R,
    file: &'f mut File,
    verifier: Option<&'f mut V>,
    written: u64,
    write_error: Option<io::Error>,
}

impl<R: Read, V: ImportVerifier + ?Sized> Read for Tee<'_, R, V> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.file.write_all(&buf[..n]) {
            let kind = e.kind();
            self.write_error = Some(e);
            return Err(io::Error::new(
                kind,
                "writing the image to the store failed",
            ));
        }
        self.written += n as u64;
        if let Some(v) = self.verifier.as_deref_mut() {
            v.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// What [`receive`] leaves for the commit.
pub(crate) struct Received {
    pub id: ImageId,
    pub manifest: ImageManifest,
    pub manifest_bytes: Vec<u8>,
    pub compression: Compression,
    pub blob_size: u64,
    pub warnings: Vec<Problem>,
    /// With a staging directory: how its extraction ended.
    pub extracted: Option<Result<Extracted, AciError>>,
}

/// Stream `r` into `tmp` (created), validating and hashing on the way, and
/// run every check of `opts`; with `stage` (an empty directory), extract the
/// image's rootfs into it on the same pass. On error the caller removes
/// `tmp` and `stage`.
pub(crate) fn receive<R: Read>(
    r: R,
    tmp: &std::path::Path,
    opts: &mut ImportOptions<'_>,
    stage: Option<&std::path::Path>,
) -> Result<Received, ImportError> {
    let werr = |source| ImportError::Write {
        path: tmp.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(werr)?;
    let mut verifier = opts.verifier.take();
    let mut tee = Tee {
        inner: r,
        file: &mut file,
        verifier: verifier.as_deref_mut(),
        written: 0,
        write_error: None,
    };
    let (report, extracted) = match stage {
        Some(dest) => {
            match aci::validate_extract(&mut tee, dest, &crate::tree::extract_options()) {
                Ok((report, extracted)) => (Ok(report), Some(extracted)),
                Err(e) => (Err(e), None),
            }
        }
        None => (aci::validate(&mut tee), None),
    };
    // The decoder may stop before the end of the input (trailing bytes after
    // the compressed stream): those are part of the blob as received.
    let rest = report
        .as_ref()
        .ok()
        .map(|_| io::copy(&mut tee, &mut io::sink()));
    let write_error = tee.write_error.take();
    let blob_size = tee.written;
    drop(tee);
    if let Some(e) = write_error {
        return Err(werr(e));
    }
    let report = report.map_err(ImportError::Read)?;
    if let Some(Err(e)) = rest {
        return Err(ImportError::Read(AciError::Read(e)));
    }
    if !report.is_valid() {
        return Err(ImportError::Invalid {
            problems: report.problems,
        });
    }
    let (Some(manifest), Some(manifest_bytes)) = (report.manifest, report.manifest_bytes) else {
        return Err(ImportError::Invalid {
            problems: vec![Problem::new("manifest", "missing")],
        });
    };
    if let Some(expected) = &opts.expected_id {
        if *expected != report.image_id {
            return Err(ImportError::IdMismatch {
                expected: expected.clone(),
                actual: report.image_id,
            });
        }
    }
    if let Some(expected) = &opts.expected_name {
        if *expected != manifest.name {
            return Err(ImportError::NameMismatch {
                expected: expected.clone(),
                actual: manifest.name,
            });
        }
    }
    if let Some(v) = verifier {
        v.verdict(&report.image_id, &manifest)
            .map_err(|source| ImportError::Refused {
                id: report.image_id.clone(),
                source,
            })?;
    }
    file.sync_all().map_err(werr)?;
    Ok(Received {
        id: report.image_id,
        manifest,
        manifest_bytes,
        compression: report.compression,
        blob_size,
        warnings: report.warnings,
        extracted,
    })
}
