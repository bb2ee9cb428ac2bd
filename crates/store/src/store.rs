//! The [`Store`]: the API the CLI and the other crates use.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use berth_appc::aci::{self, AciError, DevicePolicy, ExtractOptions};
use berth_appc::reference::{ImageReference, ReferenceError};
use berth_appc::types::{Label, Labels};
use berth_appc::{AcIdentifier, ImageId, ImageManifest};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::fsops;
use crate::import::{self, HttpCacheEntry, ImportError, ImportOptions, ImportReport};
use crate::index::{self, CacheRow, ImageRow, Index, IndexError};
use crate::lock::{self, FileLock, Mode, TmpDir};
use crate::tree::{Staged, TreeError, TreePath};

/// Why a store operation failed. Messages say what to do; the CLI adds its
/// own hints and prints the `source` chain once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("image {reference:?} not found in the store")]
    NotFound { reference: String },
    #[error("image ID {prefix:?} is too short: give \"sha512-\" and at least 2 hex digits")]
    PrefixTooShort { prefix: String },
    #[error(
        "image ID {prefix:?} is ambiguous: it matches {} images ({}); give more digits",
        candidates.len(), candidates.join(", ")
    )]
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
    },
    #[error(
        "image {id} is in use by the rendered tree {tree} (leased by {}); stop the pods using it, then retry",
        if holders.is_empty() { "a running process".to_string() } else { holders.join(", ") }
    )]
    InUse {
        id: ImageId,
        tree: String,
        holders: Vec<String>,
    },
    #[error("image {id} is being imported, rendered or removed by another berth process; retry")]
    Busy { id: ImageId },
    #[error("the blob of image {id} is missing ({}); run `berth image verify` and fetch the image again", path.display())]
    BlobMissing { id: ImageId, path: PathBuf },
    #[error("the blob of image {id} is corrupt (its content hashes to {actual}); remove the image and fetch it again")]
    BlobCorrupt { id: ImageId, actual: ImageId },
    #[error("cannot read image {id}")]
    Aci {
        id: ImageId,
        #[source]
        source: AciError,
    },
    #[error("{} already exists (ask to overwrite it)", path.display())]
    Exists { path: PathBuf },
    #[error("refusing to write into {}: not a place for an image", path.display())]
    BadTarget { path: PathBuf },
    #[error("the index row of image {id:?} is damaged: {reason}; remove the image")]
    BadRow { id: String, reason: String },
    #[error("the manifest of image {id} in the index does not parse; remove the image and fetch it again")]
    BadManifest {
        id: ImageId,
        #[source]
        source: berth_appc::ManifestError,
    },
    #[error("blob {expected} does not match its content ({actual}); it was not stored")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is missing from the store; fetch the image again")]
    OciBlobMissing { digest: Digest },
    #[error("blob {digest} is corrupt (its content hashes to {actual}); remove the image and fetch it again")]
    OciBlobCorrupt { digest: Digest, actual: Digest },
    #[error("blob {digest}: {reason}")]
    OciDocument { digest: Digest, reason: String },
    #[error("layer {digest} does not match the image config: its uncompressed content hashes to {actual}, the config's rootfs.diff_ids expects {expected}; the image is inconsistent and cannot be rendered")]
    OciDiffIdMismatch {
        digest: Digest,
        expected: String,
        actual: String,
    },
    #[error("cannot render layer {digest}")]
    OciLayer {
        digest: Digest,
        #[source]
        source: AciError,
    },
    #[error("image {id} is being fetched, rendered or removed by another berth process; retry")]
    OciBusy { id: Digest },
    #[error(
        "image {id} is in use by the rendered tree {tree} (leased by {}); stop the pods using it, then retry",
        if holders.is_empty() { "a running process".to_string() } else { holders.join(", ") }
    )]
    OciInUse {
        id: Digest,
        tree: String,
        holders: Vec<String>,
    },
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}

/// What kind of image a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// An appc ACI.
    Aci,
    /// An OCI image (converted; a later issue).
    Oci,
}

impl ImageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Aci => "aci",
            ImageKind::Oci => "oci",
        }
    }
}

/// An image of the store, as `list` and `lookup` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: ImageId,
    pub name: AcIdentifier,
    pub labels: Labels,
    pub kind: ImageKind,
    /// `gzip`, `none`...: how the blob is stored (as it was received).
    pub compression: Option<String>,
    /// Bytes of the blob as stored.
    pub blob_size: u64,
    /// Bytes of the trees rendered for this image (0 if none).
    pub tree_size: u64,
    pub import_time: SystemTime,
    pub last_used: SystemTime,
    /// Where it came from (URL or path), if known.
    pub origin: Option<String>,
}

impl ImageInfo {
    /// Blob plus rendered trees, as `image list` shows.
    pub fn size(&self) -> u64 {
        self.blob_size + self.tree_size
    }
}

/// How to find an image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A full image ID.
    Id(ImageId),
    /// The beginning of an image ID (`sha512-` and some hex digits).
    IdPrefix(String),
    /// A name and labels: an image matches when it has this name and every
    /// one of these labels with the same value.
    Name {
        name: AcIdentifier,
        labels: Vec<(String, String)>,
    },
}

/// An image reference that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an image ID or name: {reason}")]
pub struct ImageRefError {
    pub input: String,
    pub reason: String,
}

impl FromStr for ImageRef {
    type Err = ImageRefError;
    /// `sha512-<hex>` (full or a prefix), or `name[:version][,label=value...]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| ImageRefError {
            input: s.to_string(),
            reason,
        };
        if s.starts_with("sha512-") {
            return match ImageId::try_from(s) {
                Ok(id) => Ok(ImageRef::Id(id)),
                Err(_) if ImageId::is_prefix(s) => Ok(ImageRef::IdPrefix(s.to_string())),
                Err(e) => Err(bad(e.to_string())),
            };
        }
        // One parser of `name[:version][,label=value...]` for all of
        // berth: berth-appc's.
        let reference: ImageReference =
            s.parse().map_err(|e: ReferenceError| bad(e.to_string()))?;
        Ok(ImageRef::from(reference))
    }
}

impl From<&ImageReference> for ImageRef {
    /// The store lookup for a command-line reference: its name and exactly
    /// the labels it gives (no defaults are added).
    fn from(r: &ImageReference) -> Self {
        ImageRef::Name {
            name: r.name().clone(),
            labels: r
                .labels()
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }
}

impl From<ImageReference> for ImageRef {
    fn from(r: ImageReference) -> Self {
        ImageRef::from(&r)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Id(id) => write!(f, "{id}"),
            ImageRef::IdPrefix(p) => f.write_str(p),
            ImageRef::Name { name, labels } => {
                write!(f, "{name}")?;
                let version = labels.iter().find(|(k, _)| k == "version");
                if let Some((_, v)) = version {
                    write!(f, ":{v}")?;
                }
                for (k, v) in labels.iter().filter(|(k, _)| k != "version") {
                    write!(f, ",{k}={v}")?;
                }
                Ok(())
            }
        }
    }
}

/// The image store. Cheap to share between threads (`&Store` is `Sync`);
/// several processes may open the same directory at once.
#[derive(Debug)]
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) index: Index,
    pub(crate) tmp: TmpDir,
}

const MIN_PREFIX: usize = "sha512-".len() + 2;

/// Mark `dir` as the top of unrelated hierarchies (ext4's `FS_TOPDIR_FL`,
/// `chattr +T`), so that the Orlov allocator places each new subdirectory
/// (each process's scratch directory, where trees are rendered) in a block
/// group of its own choosing, one with free inodes, instead of beside its
/// parent. Where it matters: on ext4 without a journal, every new inode
/// scans its group's bitmap past the inodes deleted in the last minutes
/// (`recently_deleted`), so creating a tree just after deleting one (a gc,
/// a `rm -rf` of an old store) near the same place costs a scan per file;
/// rendering a 11,000-file image after such a delete took 3.0-5.8 s
/// instead of 1.4 s. Filesystems without the flag refuse it: harmless.
fn spread_subdirectories(dir: &Path) {
    use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
    let set = (|| -> rustix::io::Result<()> {
        let fd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let flags = ioctl_getflags(&fd)?;
        if !flags.contains(IFlags::TOPDIR) {
            ioctl_setflags(&fd, flags | IFlags::TOPDIR)?;
        }
        Ok(())
    })();
    if let Err(e) = set {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot mark the directory FS_TOPDIR_FL");
    }
}

impl Store {
    /// Open (creating it if needed) the store in `dir`: create the layout,
    /// remove the temp directories of processes that are gone, open (and
    /// migrate) the index.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let root = dir.as_ref().to_path_buf();
        for sub in [
            "",
            "cas",
            "cas/blobs",
            "cas/blobs/sha512",
            "cas/blobs/sha256",
            "cas/partial",
            "tree",
            "locks",
            "locks/image",
            "locks/tree",
            "locks/render",
        ] {
            let p = root.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&p)
                .map_err(io_err("create the directory", &p))?;
        }
        let tmp_root = root.join("tmp");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tmp_root)
            .map_err(io_err("create the directory", &tmp_root))?;
        spread_subdirectories(&tmp_root);
        for name in lock::clean_stale(&tmp_root).map_err(io_err("clean", &tmp_root))? {
            tracing::warn!(dir = %tmp_root.join(&name).display(), "removed the temp files of a berth process that is gone");
        }
        let tmp =
            TmpDir::create(&tmp_root).map_err(io_err("create a temp directory in", &tmp_root))?;
        let index = Index::open(&root.join("cas/index.db"))?;
        Ok(Store { root, index, tmp })
    }

    /// The store's directory.
    /// Call before this process execs another program (stage0 becoming the
    /// pod supervisor): removes this process's temp directory, whose clean-up
    /// on drop would never run, so the next berth does not report it as left
    /// over. Imports and renders must not be started afterwards.
    pub fn before_exec(&self) {
        self.tmp.remove_now();
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("cas/blobs").join(digest.rel_path())
    }

    pub(crate) fn image_lock(
        &self,
        digest: &Digest,
        mode: Mode,
        wait: bool,
    ) -> Result<Option<FileLock>, StoreError> {
        let p = self.root.join("locks/image").join(digest.lock_name());
        lock::lock_path(&p, mode, wait).map_err(io_err("lock", p))
    }

    /// Import an ACI from `r` (any compression), in one streaming pass; see
    /// [`ImportOptions`]. Importing an image that is there already succeeds
    /// with `already_present`.
    pub fn import_aci<R: Read>(
        &self,
        r: R,
        mut opts: ImportOptions<'_>,
    ) -> Result<ImportReport, StoreError> {
        let tmp = self.tmp.fresh("blob-");
        // The tree is staged beside the blob, in this process's temp dir, so
        // that a kill -9 leaves it to the next Store::open like the blob,
        // and it is never visible before the import's verdict.
        let work = if opts.render {
            let w = self.tmp.fresh("tree-");
            match fs::create_dir(&w).and_then(|()| fs::create_dir(w.join("rootfs"))) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot stage a tree; importing without it");
                    let _ = fsops::remove_all(&w);
                    None
                }
            }
        } else {
            None
        };
        let stage = work.as_ref().map(|w| w.join("rootfs"));
        let received =
            import::receive(r, &tmp, &mut opts, stage.as_deref()).map_err(StoreError::from);
        let committed = received.and_then(|mut rcv| {
            let result = self.commit_import(&tmp, &rcv, &opts);
            result.map(|present| {
                let extracted = rcv.extracted.take();
                (rcv, present, extracted)
            })
        });
        let _ = fs::remove_file(&tmp);
        let (received, already_present, extracted) = match committed {
            Ok(c) => c,
            Err(e) => {
                if let Some(w) = &work {
                    let _ = fsops::remove_all(w);
                }
                return Err(e);
            }
        };
        let (tree, render_error) = match (work, extracted) {
            (Some(work), Some(extracted)) => {
                let rendered = self.adopt_staged(&received, &work, extracted);
                let _ = fsops::remove_all(&work);
                match rendered {
                    Ok(tree) => (tree, None),
                    Err(e) => (None, Some(error_chain(&e))),
                }
            }
            (work, _) => {
                if let Some(w) = work {
                    let _ = fsops::remove_all(&w);
                }
                (None, None)
            }
        };
        Ok(ImportReport {
            id: received.id,
            name: received.manifest.name,
            already_present,
            blob_size: received.blob_size,
            compression: received.compression,
            warnings: received.warnings,
            tree,
            render_error,
        })
    }

    /// Make the rootfs an import extracted into `work` the image's tree,
    /// when the image is its own tree. `Ok(None)`: it is not (dependencies,
    /// a path whitelist); the caller removes `work` whatever happens.
    fn adopt_staged(
        &self,
        rcv: &import::Received,
        work: &Path,
        extracted: Result<aci::Extracted, AciError>,
    ) -> Result<Option<TreePath>, StoreError> {
        let m = &rcv.manifest;
        if !m.dependencies.is_empty() || !m.path_whitelist.is_empty() {
            return Ok(None);
        }
        let extracted = extracted.map_err(|source| TreeError::Extract {
            image: rcv.id.clone(),
            source,
        })?;
        if extracted.report.image_id != rcv.id {
            // Cannot happen (one stream, one hash), but a tree must come
            // from exactly the image stored.
            return Err(TreeError::Corrupt {
                image: rcv.id.clone(),
                actual: extracted.report.image_id,
            }
            .into());
        }
        let staged = Staged {
            image: rcv.id.clone(),
            work: work.to_path_buf(),
            files: extracted
                .files
                .into_iter()
                .map(|f| ((f.dev, f.ino), (f.sha512, f.len)))
                .collect(),
        };
        let (tree, _lease) = self.render_staged(&rcv.id, "import", Some(staged))?;
        Ok(Some(tree))
    }

    fn commit_import(
        &self,
        tmp: &Path,
        rcv: &import::Received,
        opts: &ImportOptions<'_>,
    ) -> Result<bool, StoreError> {
        let digest = Digest::of_image(&rcv.id);
        let cache = opts
            .http_cache
            .as_ref()
            .map(|c| cache_row(c, Some(&rcv.id)));
        // Held from before the rename until the row is in: gc never sees
        // this blob as an orphan, and a second importer of the same image
        // waits, then finds the row.
        let _lock = self.image_lock(&digest, Mode::Exclusive, true)?;
        if self.index.has_image(rcv.id.as_str())? {
            tracing::debug!(id = %rcv.id, "image already in the store");
            if let Some(c) = &cache {
                self.index.set_cache(c)?;
            }
            return Ok(true);
        }
        let dest = self.blob_path(&digest);
        fs::rename(tmp, &dest).map_err(io_err("move the image into", &dest))?;
        let dir = dest.parent().unwrap_or(&self.root);
        fsops::fsync_dir(dir).map_err(io_err("fsync", dir))?;
        let now = index::to_millis(SystemTime::now());
        let row = ImageRow {
            id: rcv.id.to_string(),
            name: rcv.manifest.name.to_string(),
            kind: ImageKind::Aci.as_str().into(),
            media_type: None,
            compression: Some(rcv.compression.as_str().into()),
            blob_size: rcv.blob_size,
            import_time: now,
            last_used: now,
            origin: opts.origin.clone(),
            manifest: rcv.manifest_bytes.clone(),
            labels: rcv
                .manifest
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.clone()))
                .collect(),
            tree_size: 0,
        };
        let inserted = self.index.insert_image(&row, cache.as_ref())?;
        Ok(!inserted)
    }

    /// Store a raw blob named by the SHA-256 of its bytes (OCI layers and
    /// configs; no index row: the OCI issue adds references). Returns its
    /// digest and size; a mismatch with `expected` stores nothing.
    pub fn put_blob<R: Read>(
        &self,
        mut r: R,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        let tmp = self.tmp.fresh("blob-");
        let result = (|| {
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut size = 0u64;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("read the blob for", &tmp)(e)),
                };
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_err("write", &tmp))?;
                size += n as u64;
            }
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            let digest = Digest::Sha256(hex);
            if let Some(e) = expected {
                if *e != digest {
                    return Err(StoreError::DigestMismatch {
                        expected: e.clone(),
                        actual: digest,
                    });
                }
            }
            f.sync_all().map_err(io_err("fsync", &tmp))?;
            let dest = self.blob_path(&digest);
            fs::rename(&tmp, &dest).map_err(io_err("move the blob into", &dest))?;
            let dir = dest.parent().unwrap_or(&self.root);
            fsops::fsync_dir(dir).map_err(io_err("fsync", dir))?;
            Ok((digest, size))
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    fn info(&self, row: ImageRow) -> Result<ImageInfo, StoreError> {
        let bad = |reason: String| StoreError::BadRow {
            id: row.id.clone(),
            reason,
        };
        let id = ImageId::try_from(row.id.as_str()).map_err(|e| bad(e.to_string()))?;
        let name = AcIdentifier::try_from(row.name.as_str()).map_err(|e| bad(e.to_string()))?;
        let mut labels = Vec::new();
        for (k, v) in &row.labels {
            let k = AcIdentifier::try_from(k.as_str()).map_err(|e| bad(e.to_string()))?;
            labels.push(Label::new(k, v.clone()));
        }
        let labels = Labels::new(labels).map_err(|e| bad(e.to_string()))?;
        Ok(ImageInfo {
            id,
            name,
            labels,
            kind: if row.kind == "oci" {
                ImageKind::Oci
            } else {
                ImageKind::Aci
            },
            compression: row.compression,
            blob_size: row.blob_size,
            tree_size: row.tree_size,
            import_time: index::from_millis(row.import_time),
            last_used: index::from_millis(row.last_used),
            origin: row.origin,
        })
    }

    /// The image with this ID, if the store has it.
    pub fn get(&self, id: &ImageId) -> Result<Option<ImageInfo>, StoreError> {
        self.index
            .image(id.as_str())?
            .map(|r| self.info(r))
            .transpose()
    }

    /// Find one image: by full ID, by unique ID prefix, or by name and
    /// labels (the most recently imported of those that match).
    pub fn lookup(&self, r: &ImageRef) -> Result<ImageInfo, StoreError> {
        let not_found = || StoreError::NotFound {
            reference: r.to_string(),
        };
        match r {
            ImageRef::Id(id) => self.get(id)?.ok_or_else(not_found),
            ImageRef::IdPrefix(p) => {
                if p.len() < MIN_PREFIX {
                    return Err(StoreError::PrefixTooShort { prefix: p.clone() });
                }
                let ids = self.index.ids_with_prefix(p)?;
                match ids.as_slice() {
                    [] => Err(not_found()),
                    [one] => {
                        let row = self.index.image(one)?.ok_or_else(not_found)?;
                        self.info(row)
                    }
                    _ => Err(StoreError::Ambiguous {
                        prefix: p.clone(),
                        candidates: ids,
                    }),
                }
            }
            ImageRef::Name { name, labels } => {
                let rows = self.index.find(name.as_str(), labels)?;
                if rows.len() > 1 {
                    tracing::debug!(
                        reference = %r,
                        chosen = %rows[0].id,
                        others = rows.len() - 1,
                        "several images match; using the most recently imported"
                    );
                }
                let row = rows.into_iter().next().ok_or_else(not_found)?;
                self.info(row)
            }
        }
    }

    /// Parse `reference` ([`ImageRef`]'s syntax) and look it up.
    pub fn resolve(&self, reference: &str) -> Result<ImageInfo, StoreError> {
        let r: ImageRef = reference.parse().map_err(|_| StoreError::NotFound {
            reference: reference.to_string(),
        })?;
        self.lookup(&r)
    }

    /// Every image, oldest import first.
    pub fn list(&self) -> Result<Vec<ImageInfo>, StoreError> {
        self.index
            .list()?
            .into_iter()
            .map(|r| self.info(r))
            .collect()
    }

    /// The raw manifest bytes of an image, as in the ACI.
    pub fn manifest_bytes(&self, id: &ImageId) -> Result<Vec<u8>, StoreError> {
        Ok(self
            .index
            .image(id.as_str())?
            .ok_or_else(|| StoreError::NotFound {
                reference: id.to_string(),
            })?
            .manifest)
    }

    /// The parsed manifest of an image.
    pub fn manifest(&self, id: &ImageId) -> Result<ImageManifest, StoreError> {
        let bytes = self.manifest_bytes(id)?;
        ImageManifest::from_json(&bytes).map_err(|source| StoreError::BadManifest {
            id: id.clone(),
            source,
        })
    }

    /// Mark an image as used now (gc keeps images used within its grace
    /// period).
    pub fn touch_last_used(&self, id: &ImageId) -> Result<(), StoreError> {
        self.index
            .touch(&[id.as_str()], index::to_millis(SystemTime::now()))
            .map_err(Into::into)
    }

    /// Open an image's blob for reading (as received: maybe compressed).
    pub fn open_blob(&self, id: &ImageId) -> Result<File, StoreError> {
        let path = self.blob_path(&Digest::of_image(id));
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobMissing {
                id: id.clone(),
                path,
            },
            _ => io_err("open", path)(e),
        })
    }

    fn require(&self, id: &ImageId) -> Result<(), StoreError> {
        if self.index.has_image(id.as_str())? {
            Ok(())
        } else {
            Err(StoreError::NotFound {
                reference: id.to_string(),
            })
        }
    }

    /// Write the image as stored to `out`, atomically (a temp file beside it,
    /// fsynced, then renamed; without `overwrite`, linked so that an
    /// existing file is never replaced). The file has the same image ID.
    /// Returns the bytes written.
    pub fn export(&self, id: &ImageId, out: &Path, overwrite: bool) -> Result<u64, StoreError> {
        self.require(id)?;
        write_atomically(out, overwrite, |mut f, tmp| {
            let mut src = self.open_blob(id)?;
            io::copy(&mut src, &mut f).map_err(io_err("write", tmp))?;
            Ok(f)
        })
    }

    /// Extract the image alone (no dependencies) into `dir`: `manifest` and
    /// `rootfs/`, or with `rootfs_only` the rootfs's content. `dir` must be
    /// missing or empty, unless `overwrite` (then it is emptied first); `/`
    /// is always refused. The blob's ID is checked on the way.
    pub fn extract(
        &self,
        id: &ImageId,
        dir: &Path,
        rootfs_only: bool,
        overwrite: bool,
    ) -> Result<(), StoreError> {
        self.require(id)?;
        prepare_target(dir, overwrite)?;
        let blob = self.open_blob(id)?;
        let opts = ExtractOptions {
            rootfs_only,
            devices: if rustix::process::geteuid().is_root() {
                DevicePolicy::Create
            } else {
                DevicePolicy::Skip
            },
            preserve_owners: true,
        };
        let result = aci::extract(io::BufReader::new(blob), dir, &opts)
            .map_err(|source| StoreError::Aci {
                id: id.clone(),
                source,
            })
            .and_then(|report| {
                if report.image_id != *id {
                    Err(StoreError::BlobCorrupt {
                        id: id.clone(),
                        actual: report.image_id,
                    })
                } else {
                    Ok(())
                }
            });
        if result.is_err() {
            let _ = empty_dir(dir);
        }
        result
    }

    /// The HTTP cache data stored for `url`.
    pub fn http_cache(&self, url: &str) -> Result<Option<HttpCacheEntry>, StoreError> {
        let Some(row) = self.index.cache(url)? else {
            return Ok(None);
        };
        Ok(Some(HttpCacheEntry {
            url: row.url,
            image_id: row
                .image_id
                .and_then(|s| ImageId::try_from(s.as_str()).ok()),
            etag: row.etag,
            last_modified: row.last_modified,
            max_age: row.max_age_secs.map(std::time::Duration::from_secs),
            fetched_at: index::from_millis(row.fetched_at),
        }))
    }

    /// Store (replace) the HTTP cache data of `entry.url`.
    pub fn set_http_cache(&self, entry: &HttpCacheEntry) -> Result<(), StoreError> {
        self.index
            .set_cache(&cache_row(entry, None))
            .map_err(Into::into)
    }
}

/// An error and its causes on one line, for a report that carries text.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

fn cache_row(c: &HttpCacheEntry, id: Option<&ImageId>) -> CacheRow {
    CacheRow {
        url: c.url.clone(),
        image_id: c.image_id.as_ref().or(id).map(|i| i.to_string()),
        etag: c.etag.clone(),
        last_modified: c.last_modified.clone(),
        max_age_secs: c.max_age.map(|d| d.as_secs()),
        fetched_at: index::to_millis(c.fetched_at),
    }
}

/// Write `out` atomically: `write` fills a new temp file beside it and
/// hands it back; it is fsynced, then renamed onto `out` (`overwrite`) or
/// linked there, so that an existing file is never replaced (`out` existing
/// without `overwrite` is refused before anything is written), and the
/// directory is fsynced. The temp file never outlives the call. Returns the
/// file's length.
pub(crate) fn write_atomically(
    out: &Path,
    overwrite: bool,
    write: impl FnOnce(File, &Path) -> Result<File, StoreError>,
) -> Result<u64, StoreError> {
    if !overwrite && fs::symlink_metadata(out).is_ok() {
        return Err(StoreError::Exists { path: out.into() });
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = out
        .file_name()
        .ok_or_else(|| StoreError::BadTarget { path: out.into() })?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(lock::unique_name(&format!(".{base}.tmp-")));
    let result = (|| {
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        let f = write(f, &tmp)?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        let n = f.metadata().map_err(io_err("stat", &tmp))?.len();
        if overwrite {
            fs::rename(&tmp, out).map_err(io_err("rename onto", out))?;
        } else {
            fs::hard_link(&tmp, out).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => StoreError::Exists { path: out.into() },
                _ => io_err("create", out)(e),
            })?;
        }
        fsops::fsync_dir(&dir).map_err(io_err("fsync", &dir))?;
        Ok(n)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Remove everything inside `dir` (not `dir` itself), without following
/// symlinks.
pub(crate) fn empty_dir(dir: &Path) -> io::Result<()> {
    let fd = fsops::open_dir(dir)?;
    for n in fsops::list(std::os::fd::AsFd::as_fd(&fd))? {
        fsops::remove_at(std::os::fd::AsFd::as_fd(&fd), &n)?;
    }
    Ok(())
}

/// Make `dir` an existing empty directory: created if missing; emptied if
/// not empty and `overwrite`; refused if it is `/`.
pub(crate) fn prepare_target(dir: &Path, overwrite: bool) -> Result<(), StoreError> {
    if let Ok(c) = fs::canonicalize(dir) {
        if c == Path::new("/") {
            return Err(StoreError::BadTarget { path: dir.into() });
        }
    }
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_err("create the directory", dir))?;
        }
        Err(e) => return Err(io_err("stat", dir)(e)),
        Ok(m) if !m.is_dir() => return Err(StoreError::Exists { path: dir.into() }),
        Ok(_) => {
            let non_empty = fs::read_dir(dir)
                .map_err(io_err("read the directory", dir))?
                .next()
                .is_some();
            if non_empty {
                if !overwrite {
                    return Err(StoreError::Exists { path: dir.into() });
                }
                empty_dir(dir).map_err(io_err("empty the directory", dir))?;
            }
        }
    }
    Ok(())
}
