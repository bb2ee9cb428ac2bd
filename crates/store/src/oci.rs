//! OCI images in the store: blobs shared by digest, image rows, trees.
//!
//! ## Blobs
//! Every OCI blob (manifest, config, layer) is a file `cas/blobs/sha256/<hex>`
//! named by the SHA-256 of its bytes as received; the bytes are hashed while
//! they stream in and only a matching file is renamed into place (temp file,
//! fsync, rename, directory fsync, like the ACI blobs). A blob is stored once
//! however many images use it. Downloads in progress live in
//! `cas/partial/sha256-<hex>` so that a killed pull resumes where it stopped
//! (the HTTP layer appends with `Range`); [`Store::commit_partial`] checks
//! and moves a finished one.
//!
//! ## Rows
//! An image is named by its manifest's digest (`sha256:<hex>`, its *ID*):
//! the `oci_images` row, the references it was fetched by (`oci_refs`,
//! e.g. `docker://localhost:5000/app:v1`), and its blobs in order
//! (`oci_image_blobs`: manifest, config, layers bottom first). A row is
//! written only once all its blobs are in place. A blob no row lists is
//! garbage: `rm` deletes the blobs of the removed image that no other image
//! uses, and `gc` sweeps any left (a killed pull's, say).
//!
//! Pulls hold `locks/oci-blobs` shared from their first blob to their row;
//! deleting unlisted blobs needs it exclusively (tried, never waited for),
//! so a blob that is downloaded but not yet listed is never swept.
//!
//! ## Trees
//! An OCI tree is keyed by its layer chain, `oci-sha256-<hex>` (the
//! SHA-256 of the layer digests in order), so images that differ only in
//! their config (a re-tag with new labels) share it. It holds `rootfs/`
//! (no `manifest`: the appc manifest depends on the config, see
//! [`Store::oci_app_manifest`]), `hash`, `layers`, `diff_ids` and
//! `durable`, and is leased, settled after a reboot and gc'ed like an ACI
//! tree.
//!
//! Layers are applied bottom up with image-spec semantics: each layer is
//! extracted (by `berth_appc::aci::extract_layer_with`, the ACI extractor's
//! hostile-path rules and fd-relative, never-follow resolution) into a
//! staging directory; its whiteouts then delete the named entries of the
//! tree below and its opaque markers empty their directories there; then it
//! is moved over the tree (`merge`, shared with ACI dependencies).
//!
//! A hard link in a layer may name a file of the layers below (image-spec
//! layer.md: links name paths of the layer's *resulting* filesystem): the
//! extractor is given the tree rendered so far and links the staged name to
//! that file's inode, resolving the target there without following any
//! symlink, and refusing directories and targets found nowhere
//! (CVE-2014-6407). Staging and tree are both under `tmp/`, one filesystem.
//! The whiteouts applied afterwards remove names, not inodes, so a link
//! survives a later whiteout of its target, as with umoci; a link that
//! comes after a whiteout of its target in the same layer is refused, as
//! umoci does (it applies a layer in archive order).
//!
//! Every layer's uncompressed stream is hashed while it is extracted (to
//! its end, past the tar's end-of-archive blocks) and must equal the
//! config's `rootfs.diff_ids` entry for it; the compressed blob is re-hashed
//! against its digest in the same pass (an uncompressed layer's diff_id is
//! that digest, so it is hashed once). A config whose diff_ids do not
//! match the layers in number, or a layer whose diff_id differs, fails the
//! render and leaves nothing in `tree/`. The diff_ids the layers hashed to
//! are kept in the tree's `diff_ids`, so that an image reusing the tree (same
//! layers, another config) is checked too. A config without a `rootfs`
//! section renders unchecked (debug-logged): skopeo copies such images
//! (umoci refuses to unpack them), and the layer digests are checked anyway.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_appc::aci::{self, DevicePolicy, ExtractOptions, LayerOptions, LayerPath};
use berth_appc::oci::app::{self, AppSource};
use berth_appc::oci::spec::{self, ImageConfig};
use berth_appc::ImageManifest;
use rustix::fs::{self as rfs, FileType, OFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::fsops;
use crate::gc::{RemovedTree, VerifyStatus};
use crate::index::{self, OciBlobRow, OciImageRow, TreeRow};
use crate::lock::{self, FileLock, Mode as LockMode};
use crate::store::{io_err, Store, StoreError};
use crate::tree::{self, TreeKey, TreeLease};

/// One blob an OCI image uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// An OCI image of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// The manifest's digest: the image's ID.
    pub id: Digest,
    pub media_type: String,
    pub manifest: OciBlob,
    pub config: OciBlob,
    /// Bottom first.
    pub layers: Vec<OciBlob>,
    /// What it was fetched as, most recent first.
    pub references: Vec<String>,
    /// Manifest + config + layers, as stored.
    pub size: u64,
    pub tree_size: u64,
    pub import_time: SystemTime,
    pub last_used: SystemTime,
    pub origin: Option<String>,
    pub platform: Option<String>,
}

/// An image to record: every blob must be in the store already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOciImage {
    pub manifest: OciBlob,
    pub config: OciBlob,
    pub layers: Vec<OciBlob>,
    /// The reference it was fetched as (`docker://…`, `oci:…`).
    pub reference: Option<String>,
    pub origin: Option<String>,
    pub platform: Option<String>,
}

/// A rendered OCI tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciTree {
    pub key: TreeKey,
    /// `tree/<key>`, holding `rootfs/`.
    pub path: PathBuf,
    pub image: Digest,
    pub layers: Vec<Digest>,
}

impl OciTree {
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }
}

/// An OCI image that was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedOciImage {
    pub id: Digest,
    pub references: Vec<String>,
    /// Bytes of blobs deleted (blobs other images use stay).
    pub freed: u64,
    pub trees: Vec<RemovedTree>,
}

/// Shared while a pull adds blobs; see the module doc.
#[derive(Debug)]
pub struct PullGuard {
    _lock: FileLock,
}

/// The key of the tree made of `layers`.
pub(crate) fn oci_tree_key(layers: &[Digest]) -> TreeKey {
    let mut h = Sha256::new();
    h.update(b"berth oci tree v1\n");
    for l in layers {
        h.update(l.to_string().as_bytes());
        h.update(b"\n");
    }
    TreeKey::new_unchecked(format!("oci-sha256-{}", hex(&h.finalize())))
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn digest_of(s: &str) -> Result<Digest, StoreError> {
    s.parse().map_err(|_| StoreError::BadRow {
        id: s.to_string(),
        reason: "not a sha256 digest".into(),
    })
}

/// A reader that hashes what passes, to re-check a blob as it is read.
struct Sha256Reader<R> {
    inner: R,
    h: Sha256,
    n: u64,
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

impl Store {
    /// Whether the blob `digest` is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Where the download of `digest` accumulates until it is complete
    /// (kept across processes, so that a killed pull resumes).
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("cas/partial")
            .join(format!("{}-{}", digest.algorithm(), digest.hex()))
    }

    /// Check the finished download of `digest` and move it into the blob
    /// store. A mismatch deletes the partial file (it can never become
    /// right by appending) and says which blob was wrong.
    pub fn commit_partial(&self, digest: &Digest) -> Result<u64, StoreError> {
        let p = self.partial_path(digest);
        let f = File::open(&p).map_err(io_err("open", &p))?;
        let (actual, size) = sha256_of(f).map_err(io_err("read", &p))?;
        if actual != *digest {
            let _ = fs::remove_file(&p);
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let f = File::options()
            .write(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        f.sync_all().map_err(io_err("fsync", &p))?;
        let dest = self.blob_path(digest);
        fs::rename(&p, &dest).map_err(io_err("move the blob into", &dest))?;
        let dir = dest.parent().unwrap_or(&self.root);
        fsops::fsync_dir(dir).map_err(io_err("fsync", dir))?;
        Ok(size)
    }

    /// Hold while adding blobs that no image row lists yet.
    pub fn oci_pull_guard(&self) -> Result<PullGuard, StoreError> {
        let p = self.root.join("locks/oci-blobs");
        let lock = lock::lock_wait(&p, LockMode::Shared).map_err(io_err("lock", &p))?;
        Ok(PullGuard { _lock: lock })
    }

    /// Read a whole (small) blob: a manifest or a config, re-checked.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(digest);
        let bytes = fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::OciBlobMissing {
                digest: digest.clone(),
            },
            _ => io_err("read", &p)(e),
        })?;
        let actual = Digest::Sha256(hex(&Sha256::digest(&bytes)));
        if actual != *digest {
            return Err(StoreError::OciBlobCorrupt {
                digest: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Record an OCI image whose blobs are all stored. Returns whether it
    /// was new (an image already there gets `reference` as one more name).
    pub fn oci_add_image(&self, img: &NewOciImage) -> Result<bool, StoreError> {
        let all = std::iter::once(&img.manifest)
            .chain(std::iter::once(&img.config))
            .chain(img.layers.iter());
        let mut blobs = Vec::new();
        for (i, b) in all.enumerate() {
            if !self.has_blob(&b.digest) {
                return Err(StoreError::OciBlobMissing {
                    digest: b.digest.clone(),
                });
            }
            blobs.push(OciBlobRow {
                role: match i {
                    0 => "manifest",
                    1 => "config",
                    _ => "layer",
                }
                .into(),
                digest: b.digest.to_string(),
                size: b.size,
                media_type: b.media_type.clone(),
            });
        }
        let _lock = self.image_lock(&img.manifest.digest, LockMode::Exclusive, true)?;
        let now = index::to_millis(SystemTime::now());
        let row = OciImageRow {
            digest: img.manifest.digest.to_string(),
            media_type: img.manifest.media_type.clone(),
            config_digest: img.config.digest.to_string(),
            size: blobs.iter().map(|b| b.size).sum(),
            import_time: now,
            last_used: now,
            origin: img.origin.clone(),
            platform: img.platform.clone(),
            references: Vec::new(),
            blobs,
            tree_size: 0,
        };
        Ok(self
            .index
            .insert_oci_image(&row, img.reference.as_deref())?)
    }

    fn oci_info(&self, row: OciImageRow) -> Result<OciImage, StoreError> {
        let mut blobs = Vec::new();
        for b in &row.blobs {
            blobs.push(OciBlob {
                digest: digest_of(&b.digest)?,
                size: b.size,
                media_type: b.media_type.clone(),
            });
        }
        if blobs.len() < 2 {
            return Err(StoreError::BadRow {
                id: row.digest.clone(),
                reason: "no manifest or config blob".into(),
            });
        }
        let layers = blobs.split_off(2);
        let config = blobs.pop().expect("two blobs");
        let manifest = blobs.pop().expect("one blob");
        Ok(OciImage {
            id: digest_of(&row.digest)?,
            media_type: row.media_type,
            manifest,
            config,
            layers,
            references: row.references,
            size: row.size,
            tree_size: row.tree_size,
            import_time: index::from_millis(row.import_time),
            last_used: index::from_millis(row.last_used),
            origin: row.origin,
            platform: row.platform,
        })
    }

    /// Every OCI image, oldest import first.
    pub fn oci_images(&self) -> Result<Vec<OciImage>, StoreError> {
        self.index
            .oci_images()?
            .into_iter()
            .map(|r| self.oci_info(r))
            .collect()
    }

    /// The OCI image with this ID, if any.
    pub fn oci_get(&self, id: &Digest) -> Result<Option<OciImage>, StoreError> {
        self.index
            .oci_image(&id.to_string())?
            .map(|r| self.oci_info(r))
            .transpose()
    }

    /// Find an OCI image by ID (`sha256:…`, or a unique prefix of at least
    /// two hex digits), or by a reference it was fetched as (`docker://…`
    /// given as typed or normalised, `oci:DIR:TAG`…).
    pub fn oci_lookup(&self, reference: &str) -> Result<Option<OciImage>, StoreError> {
        if let Some(h) = reference.strip_prefix("sha256:") {
            if h.len() < 2 {
                return Err(StoreError::PrefixTooShort {
                    prefix: reference.into(),
                });
            }
            let ids = self.index.oci_with_prefix(reference)?;
            return match ids.as_slice() {
                [] => Ok(None),
                [one] => self.oci_get(&digest_of(one)?),
                _ => Err(StoreError::Ambiguous {
                    prefix: reference.into(),
                    candidates: ids,
                }),
            };
        }
        let mut candidates = vec![reference.to_string()];
        let bare = reference.strip_prefix("docker://").unwrap_or(reference);
        if let Ok(r) = berth_appc::oci::DockerReference::parse(bare) {
            candidates.push(format!("docker://{r}"));
        }
        for c in candidates {
            if let Some(d) = self.index.oci_by_reference(&c)? {
                return self.oci_get(&digest_of(&d)?);
            }
        }
        Ok(None)
    }

    /// [`Store::oci_lookup`], or `NotFound`.
    pub fn oci_resolve(&self, reference: &str) -> Result<OciImage, StoreError> {
        self.oci_lookup(reference)?
            .ok_or_else(|| StoreError::NotFound {
                reference: reference.into(),
            })
    }

    /// The parsed image config.
    pub fn oci_config(&self, img: &OciImage) -> Result<ImageConfig, StoreError> {
        let bytes = self.read_blob(&img.config.digest)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::OciDocument {
            digest: img.config.digest.clone(),
            reason: e.to_string(),
        })
    }

    /// Remove an OCI image, the trees made from it (refused while one is
    /// leased) and the blobs no other image uses.
    pub fn oci_remove(&self, id: &Digest) -> Result<RemovedOciImage, StoreError> {
        let img = self.oci_get(id)?.ok_or_else(|| StoreError::NotFound {
            reference: id.to_string(),
        })?;
        let lp = self.root.join("locks/image").join(id.lock_name());
        let Some(lock) =
            lock::try_lock_for(&lp, LockMode::Exclusive, 25, Duration::from_millis(20))
                .map_err(io_err("lock", &lp))?
        else {
            return Err(StoreError::OciBusy { id: id.clone() });
        };
        let trees = self.remove_oci_tree(&img)?;
        self.index.delete_oci_image(&id.to_string())?;
        lock.unlink();
        let mut freed = 0;
        let candidates: Vec<&OciBlob> = std::iter::once(&img.manifest)
            .chain(std::iter::once(&img.config))
            .chain(img.layers.iter())
            .collect();
        freed += self.sweep_blobs(candidates.iter().map(|b| &b.digest), None)?;
        Ok(RemovedOciImage {
            id: id.clone(),
            references: img.references,
            freed,
            trees,
        })
    }

    /// Remove the tree of `img`'s layer chain, unless another image has the
    /// same chain (the tree is theirs too). Refused while it is leased.
    fn remove_oci_tree(&self, img: &OciImage) -> Result<Vec<RemovedTree>, StoreError> {
        let layers: Vec<Digest> = img.layers.iter().map(|l| l.digest.clone()).collect();
        let key = oci_tree_key(&layers);
        let shared = self
            .oci_images()?
            .iter()
            .any(|o| o.id != img.id && o.layers.iter().map(|l| &l.digest).eq(layers.iter()));
        if shared || (self.index.tree(key.as_str())?.is_none() && !self.tree_dir(&key).exists()) {
            return Ok(Vec::new());
        }
        match self.try_remove_tree_for(key.as_str(), 25)? {
            Some(t) => Ok(vec![t]),
            None => Err(StoreError::OciInUse {
                id: img.id.clone(),
                tree: key.to_string(),
                holders: crate::gc::holders(self, key.as_str()),
            }),
        }
    }

    /// Delete the blobs among `candidates` (all sha256 blobs and partial
    /// downloads older than `older_than`, when `candidates` is empty and a
    /// cutoff is given) that no image lists, if no pull is running.
    /// Returns the bytes freed.
    fn sweep_blobs<'d>(
        &self,
        candidates: impl Iterator<Item = &'d Digest>,
        older_than: Option<SystemTime>,
    ) -> Result<u64, StoreError> {
        let p = self.root.join("locks/oci-blobs");
        let Some(_lock) =
            lock::lock_path(&p, LockMode::Exclusive, false).map_err(io_err("lock", &p))?
        else {
            tracing::debug!("a pull is running: unused OCI blobs are left for a later gc");
            return Ok(0);
        };
        let used = self.index.oci_used_blobs()?;
        let mut freed = 0;
        let mut remove = |path: &Path| -> Result<(), StoreError> {
            let size = fs::symlink_metadata(path).map_or(0, |m| m.len());
            match fs::remove_file(path) {
                Ok(()) => freed += size,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", path)(e)),
            }
            Ok(())
        };
        let mut any = false;
        for d in candidates {
            any = true;
            if !used.contains(&d.to_string()) {
                remove(&self.blob_path(d))?;
            }
        }
        if let (false, Some(cutoff)) = (any, older_than) {
            for sub in ["cas/blobs/sha256", "cas/partial"] {
                let dir = self.root.join(sub);
                let rd = match fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("read the directory", &dir)(e)),
                };
                for ent in rd {
                    let ent = ent.map_err(io_err("read the directory", &dir))?;
                    let name = ent.file_name().to_string_lossy().into_owned();
                    let digest = format!("sha256:{}", name.trim_start_matches("sha256-"));
                    if used.contains(&digest) && sub != "cas/partial" {
                        continue;
                    }
                    let old = ent
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t <= cutoff);
                    if old {
                        tracing::debug!(blob = %name, "gc removes an OCI blob no image uses");
                        remove(&ent.path())?;
                    }
                }
            }
        }
        Ok(freed)
    }

    /// gc's part for OCI images: remove images unused since `cutoff` that
    /// no held tree uses, then blobs no image lists (older than `cutoff`).
    pub(crate) fn oci_gc(
        &self,
        cutoff: SystemTime,
        held_trees: &HashSet<String>,
    ) -> Result<(Vec<RemovedOciImage>, Vec<Digest>, u64), StoreError> {
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        let mut freed = 0;
        for img in self.oci_images()? {
            if img.last_used > cutoff {
                continue;
            }
            let layers: Vec<Digest> = img.layers.iter().map(|l| l.digest.clone()).collect();
            if held_trees.contains(oci_tree_key(&layers).as_str()) {
                kept.push(img.id);
                continue;
            }
            match self.oci_remove(&img.id) {
                Ok(r) => {
                    freed += r.freed + r.trees.iter().map(|t| t.size).sum::<u64>();
                    removed.push(r);
                }
                Err(StoreError::OciBusy { .. }) | Err(StoreError::OciInUse { .. }) => {
                    kept.push(img.id)
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        freed += self.sweep_blobs(std::iter::empty(), Some(cutoff))?;
        Ok((removed, kept, freed))
    }

    /// Re-hash every blob of the image.
    pub fn oci_verify(&self, img: &OciImage) -> Vec<(Digest, VerifyStatus)> {
        let all = std::iter::once(&img.manifest)
            .chain(std::iter::once(&img.config))
            .chain(img.layers.iter());
        all.map(|b| {
            let p = self.blob_path(&b.digest);
            let status = match File::open(&p) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => VerifyStatus::Missing,
                Err(e) => VerifyStatus::Corrupt {
                    reason: format!("cannot open it: {e}"),
                },
                Ok(f) => match sha256_of(f) {
                    Ok((d, _)) if d == b.digest => VerifyStatus::Ok,
                    Ok((d, _)) => VerifyStatus::Corrupt {
                        reason: format!("content hashes to {d}"),
                    },
                    Err(e) => VerifyStatus::Corrupt {
                        reason: format!("cannot read it: {e}"),
                    },
                },
            };
            (b.digest.clone(), status)
        })
        .collect()
    }

    /// Re-hash the image's rendered tree, if it has one: its key and state.
    pub fn oci_verify_tree(
        &self,
        img: &OciImage,
    ) -> Result<Option<(TreeKey, VerifyStatus)>, StoreError> {
        let layers: Vec<Digest> = img.layers.iter().map(|l| l.digest.clone()).collect();
        let key = oci_tree_key(&layers);
        let Some(row) = self.index.tree(key.as_str())? else {
            return Ok(None);
        };
        // Shared: gc cannot remove the tree while we read it.
        let lp = self.root.join("locks/tree").join(key.as_str());
        let _l = lock::lock_wait(&lp, LockMode::Shared).map_err(io_err("lock", &lp))?;
        let dir = self.tree_dir(&key);
        let status = if !dir.exists() {
            VerifyStatus::Missing
        } else {
            match fsops::hash_tree(&dir, Some(&["manifest", "rootfs"])) {
                Ok(d) if d.hash == row.content_hash => VerifyStatus::Ok,
                Ok(d) => VerifyStatus::Corrupt {
                    reason: format!(
                        "content hashes to {}, rendered as {}",
                        d.hash, row.content_hash
                    ),
                },
                Err(e) => VerifyStatus::Corrupt {
                    reason: format!("cannot read it: {e}"),
                },
            }
        };
        Ok(Some((key, status)))
    }

    /// Write the image as an OCI image layout in a tar (`oci-archive:`),
    /// atomically; `tag` goes into `index.json` as the ref name.
    pub fn oci_export_archive(
        &self,
        img: &OciImage,
        tag: Option<&str>,
        out: &Path,
        overwrite: bool,
    ) -> Result<u64, StoreError> {
        crate::store::write_atomically(out, overwrite, |f, tmp| {
            let mut t = tar::Builder::new(io::BufWriter::new(f));
            let werr = io_err("write", tmp);
            let add = |t: &mut tar::Builder<io::BufWriter<File>>,
                       name: &str,
                       size: u64,
                       r: &mut dyn Read|
             -> io::Result<()> {
                let mut h = tar::Header::new_ustar();
                h.set_size(size);
                h.set_mode(0o644);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                t.append_data(&mut h, name, r)
            };
            let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
            let mut annotations = serde_json::Map::new();
            if let Some(tag) = tag {
                annotations.insert(spec::REF_NAME.into(), tag.into());
            }
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": spec::OCI_INDEX,
                "manifests": [{
                    "mediaType": img.manifest.media_type,
                    "digest": img.manifest.digest.to_string(),
                    "size": img.manifest.size,
                    "annotations": annotations,
                }],
            });
            let index = serde_json::to_vec(&index).unwrap_or_default();
            let r: io::Result<()> = (|| {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_mtime(0);
                h.set_size(0);
                t.append_data(&mut h.clone(), "blobs/", io::empty())?;
                t.append_data(&mut h, "blobs/sha256/", io::empty())?;
                add(&mut t, "oci-layout", layout.len() as u64, &mut &layout[..])?;
                add(&mut t, "index.json", index.len() as u64, &mut &index[..])?;
                let all = std::iter::once(&img.manifest)
                    .chain(std::iter::once(&img.config))
                    .chain(img.layers.iter());
                let mut done = HashSet::new();
                for b in all {
                    if !done.insert(b.digest.clone()) {
                        continue;
                    }
                    let p = self.blob_path(&b.digest);
                    let mut f = File::open(&p)?;
                    let size = f.metadata()?.len();
                    add(
                        &mut t,
                        &format!("blobs/sha256/{}", b.digest.hex()),
                        size,
                        &mut f,
                    )?;
                }
                Ok(())
            })();
            r.map_err(werr)?;
            let w = t.into_inner().map_err(io_err("write", tmp))?;
            w.into_inner()
                .map_err(|e| io_err("write", tmp)(e.into_error()))
        })
    }

    /// Render the image's layers into a tree (or reuse it) and lease it
    /// for `holder`.
    pub fn oci_render_leased(
        &self,
        img: &OciImage,
        holder: &str,
    ) -> Result<(OciTree, TreeLease<'_>), StoreError> {
        let layers: Vec<Digest> = img.layers.iter().map(|l| l.digest.clone()).collect();
        let key = oci_tree_key(&layers);
        let diff_ids = self.oci_diff_ids(img)?;
        // Shared: the image cannot be removed until the tree is leased.
        let _image_lock = self.image_lock(&img.id, LockMode::Shared, true)?;
        if self.index.oci_image(&img.id.to_string())?.is_none() {
            return Err(StoreError::NotFound {
                reference: img.id.to_string(),
            });
        }
        let lease = self.lease_unchecked(&key, holder)?;
        let dir = self.tree_dir(&key);
        let row = self.index.tree(key.as_str())?;
        if !dir.exists() || row.is_none() || !tree::settled(&dir) {
            let p = self.root.join("locks/render").join(key.as_str());
            let _render = lock::lock_wait(&p, LockMode::Exclusive).map_err(io_err("lock", &p))?;
            self.ensure_oci_tree(&key, img, &dir, diff_ids.as_deref())?;
        }
        if let Some(expected) = &diff_ids {
            // The tree is shared by every image of these layers: this
            // image's config must agree with what the layers hashed to.
            check_recorded_diff_ids(&dir, img, expected)?;
        }
        self.index
            .touch_oci(&img.id.to_string(), index::to_millis(SystemTime::now()))?;
        Ok((
            OciTree {
                key,
                path: dir,
                image: img.id.clone(),
                layers,
            },
            lease,
        ))
    }

    /// Render the image through the tree store and copy it into `dir`
    /// (missing or empty): its appc `manifest` (the config as an app) and
    /// `rootfs/`, or with `rootfs_only` the rootfs's content.
    pub fn oci_render_to(
        &self,
        img: &OciImage,
        dir: &Path,
        rootfs_only: bool,
    ) -> Result<OciTree, StoreError> {
        let (tree, _lease) = self.oci_render_leased(img, "render-to")?;
        tree::copy_out(&tree.rootfs(), dir, rootfs_only, |m| {
            let manifest = self.oci_app_manifest(img, Some(&tree))?;
            fs::write(m, manifest.to_json_pretty()).map_err(io_err("write", m))
        })?;
        Ok(tree)
    }

    /// Render (or reuse) the tree; nothing holds it afterwards.
    pub fn oci_render(&self, img: &OciImage) -> Result<OciTree, StoreError> {
        self.oci_render_leased(img, "render").map(|(t, _)| t)
    }

    fn ensure_oci_tree(
        &self,
        key: &TreeKey,
        img: &OciImage,
        dir: &Path,
        diff_ids: Option<&[String]>,
    ) -> Result<(), StoreError> {
        let row = self.index.tree(key.as_str())?;
        if dir.exists() {
            let recorded = match &row {
                Some(r) => r.content_hash.clone(),
                None => fs::read_to_string(dir.join("hash"))
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            };
            if row.is_some() && tree::settled(dir) {
                return Ok(());
            }
            match fsops::hash_tree(dir, Some(&["manifest", "rootfs"])) {
                Ok(d) if d.hash == recorded => {
                    if !tree::settled(dir) {
                        tree::mark_synced(dir).map_err(io_err("sync", dir))?;
                    }
                    if row.is_none() {
                        self.insert_oci_tree_row(key, img, d.size, d.hash)?;
                    }
                    return Ok(());
                }
                _ => {
                    tracing::warn!(tree = %key, "rendering again an OCI tree that does not match its hash");
                    self.discard_tree_dir(key)?;
                }
            }
        }
        let work = self.tmp.fresh("tree-");
        let result = self.render_oci_into(&work, img, diff_ids).and_then(|digest| {
            match fs::rename(&work, dir) {
                Ok(()) => {}
                Err(e) if dir.exists() => {
                    tracing::debug!(tree = %key, error = %e, "tree appeared while rendering; keeping the other copy");
                }
                Err(e) => return Err(io_err("move the tree into", dir)(e)),
            }
            let parent = self.root.join("tree");
            fsops::fsync_dir(&parent).map_err(io_err("fsync", &parent))?;
            self.insert_oci_tree_row(key, img, digest.size, digest.hash)
        });
        let _ = fsops::remove_all(&work);
        result
    }

    fn insert_oci_tree_row(
        &self,
        key: &TreeKey,
        img: &OciImage,
        size: u64,
        hash: String,
    ) -> Result<(), StoreError> {
        self.index.insert_tree(&TreeRow {
            key: key.to_string(),
            image_id: img.id.to_string(),
            size,
            content_hash: hash,
            rendered_at: index::to_millis(SystemTime::now()),
            layers: img.layers.iter().map(|l| l.digest.to_string()).collect(),
        })?;
        Ok(())
    }

    /// Extract one layer blob into `into`, re-checking its digest on the
    /// way (a blob's name is trusted only as far as it still hashes to it),
    /// and hashing its uncompressed stream (the report's `diff_id`), which
    /// must equal `diff_id` (the config's, when it has one). `lower`: the
    /// tree of the layers below, for hard links to their files (`None` for
    /// the bottom layer).
    fn extract_oci_layer(
        &self,
        layer: &OciBlob,
        into: &Path,
        lower: Option<BorrowedFd<'_>>,
        diff_id: Option<&str>,
    ) -> Result<aci::LayerReport, StoreError> {
        if spec::is_foreign_layer(&layer.media_type) {
            return Err(StoreError::OciDocument {
                digest: layer.digest.clone(),
                reason: format!("foreign layer ({}) cannot be rendered", layer.media_type),
            });
        }
        let p = self.blob_path(&layer.digest);
        let f = File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::OciBlobMissing {
                digest: layer.digest.clone(),
            },
            _ => io_err("open", &p)(e),
        })?;
        // An uncompressed layer's diff_id is its blob's digest (the
        // extractor passes the blob's bytes through as they are, to the
        // last): checked below anyway, so not hashed a second time. The
        // extractor sniffs the same first bytes.
        let mut head = [0u8; aci::MAGIC_LEN];
        let n = read_head(&f, &mut head).map_err(io_err("read", &p))?;
        let plain = aci::detect_compression(&head[..n]) == aci::Compression::None;
        let mut r = Sha256Reader {
            inner: io::BufReader::with_capacity(256 * 1024, f),
            h: Sha256::new(),
            n: 0,
        };
        let opts = ExtractOptions {
            rootfs_only: false,
            devices: if rustix::process::geteuid().is_root() {
                DevicePolicy::Create
            } else {
                DevicePolicy::Skip
            },
            preserve_owners: true,
        };
        let with = LayerOptions {
            lower,
            diff_id: !plain,
        };
        let mut report = match aci::extract_layer_with(&mut r, into, &opts, &with) {
            Ok(report) => report,
            Err(source) => {
                // A blob damaged in the store shows as a broken stream:
                // name the blob, which is what the user must replace.
                let actual = File::open(&p).ok().and_then(|f| sha256_of(f).ok());
                if let Some((actual, _)) = actual.filter(|(a, _)| *a != layer.digest) {
                    return Err(StoreError::OciBlobCorrupt {
                        digest: layer.digest.clone(),
                        actual,
                    });
                }
                return Err(StoreError::OciLayer {
                    digest: layer.digest.clone(),
                    source,
                });
            }
        };
        // The tar reader may stop at the end-of-archive blocks: the rest of
        // the blob must still hash.
        io::copy(&mut r, &mut io::sink()).map_err(io_err("read", &p))?;
        let actual = Digest::Sha256(hex(&r.h.finalize()));
        if actual != layer.digest {
            return Err(StoreError::OciBlobCorrupt {
                digest: layer.digest.clone(),
                actual,
            });
        }
        if plain {
            report.diff_id = Some(layer.digest.to_string());
        }
        if let Some(expected) = diff_id {
            let actual = report.diff_id.clone().unwrap_or_default();
            if actual != expected {
                return Err(StoreError::OciDiffIdMismatch {
                    digest: layer.digest.clone(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        Ok(report)
    }

    /// The config's `rootfs.diff_ids`, one per layer; `None` if the config
    /// has no `rootfs` section (nothing to check against).
    fn oci_diff_ids(&self, img: &OciImage) -> Result<Option<Vec<String>>, StoreError> {
        let Some(rootfs) = self.oci_config(img)?.rootfs else {
            tracing::debug!(
                image = %img.id,
                config = %img.config.digest,
                "the image config has no rootfs section: layer diff_ids not checked"
            );
            return Ok(None);
        };
        if rootfs.diff_ids.len() != img.layers.len() {
            return Err(StoreError::OciDocument {
                digest: img.config.digest.clone(),
                reason: format!(
                    "its rootfs.diff_ids lists {} layer(s) but the manifest has {}; the image \
                     cannot be rendered",
                    rootfs.diff_ids.len(),
                    img.layers.len()
                ),
            });
        }
        Ok(Some(rootfs.diff_ids))
    }

    /// Render the layers into `work`, checking each against `diff_ids` (the
    /// config's), and record the diff_ids they hash to in `work/diff_ids`
    /// (for the other images that share the tree).
    fn render_oci_into(
        &self,
        work: &Path,
        img: &OciImage,
        diff_ids: Option<&[String]>,
    ) -> Result<fsops::TreeDigest, StoreError> {
        let mut actual = Vec::new();
        let rootfs = work.join("rootfs");
        fs::create_dir(work).map_err(io_err("create", work))?;
        fs::create_dir(&rootfs).map_err(io_err("create", &rootfs))?;
        let t0 = std::time::Instant::now();
        for (i, layer) in img.layers.iter().enumerate() {
            let diff_id = diff_ids.map(|d| d[i].as_str());
            if i == 0 {
                // Nothing below the first layer: its whiteouts hide nothing,
                // its hard links can only name its own files.
                let report = self.extract_oci_layer(layer, &rootfs, None, diff_id)?;
                actual.push(report.diff_id.unwrap_or_default());
                continue;
            }
            let stage = self.tmp.fresh("layer-");
            fs::create_dir(&stage).map_err(io_err("create", &stage))?;
            let merged = (|| -> Result<(), StoreError> {
                let d = fsops::open_dir(&rootfs).map_err(io_err("open", &rootfs))?;
                // Hard links may name files of the tree so far (`stage` and
                // `rootfs` are both under tmp/: one filesystem).
                let report = self.extract_oci_layer(layer, &stage, Some(d.as_fd()), diff_id)?;
                actual.push(report.diff_id.clone().unwrap_or_default());
                for o in &report.opaque_dirs {
                    apply_opaque(d.as_fd(), o)
                        .map_err(io_err("apply an opaque directory in", &rootfs))?;
                }
                for w in &report.whiteouts {
                    apply_whiteout(d.as_fd(), w).map_err(io_err("apply a whiteout in", &rootfs))?;
                }
                let s = fsops::open_dir(&stage).map_err(io_err("open", &stage))?;
                tree::merge(s.as_fd(), d.as_fd(), b"", &[])?;
                Ok(())
            })();
            let _ = fsops::remove_all(&stage);
            merged?;
        }
        let t1 = std::time::Instant::now();
        let digest =
            fsops::hash_tree(work, Some(&["manifest", "rootfs"])).map_err(io_err("hash", work))?;
        let hp = work.join("hash");
        fs::write(&hp, format!("{}\n", digest.hash)).map_err(io_err("write", &hp))?;
        let ids: Vec<String> = img.layers.iter().map(|l| l.digest.to_string()).collect();
        let lp = work.join("layers");
        fs::write(&lp, serde_json::to_vec_pretty(&ids).unwrap_or_default())
            .map_err(io_err("write", &lp))?;
        let dp = work.join(DIFF_IDS);
        fs::write(&dp, serde_json::to_vec_pretty(&actual).unwrap_or_default())
            .map_err(io_err("write", &dp))?;
        tree::write_durable_marker(work)?;
        tracing::debug!(extract = ?(t1 - t0), hash = ?t1.elapsed(), "OCI tree rendered");
        Ok(digest)
    }

    /// The appc image manifest of an OCI image (its config as an app), for
    /// the pod runtime. `tree` (the rendered rootfs) resolves a user name's
    /// primary group from its `/etc/passwd`.
    pub fn oci_app_manifest(
        &self,
        img: &OciImage,
        tree: Option<&OciTree>,
    ) -> Result<ImageManifest, StoreError> {
        let config = self.oci_config(img)?;
        let passwd = tree
            .and_then(|t| read_in_root(&t.rootfs(), &["etc", "passwd"]))
            .unwrap_or_default();
        let passwd = String::from_utf8_lossy(&passwd);
        let group_of = |user: &str| -> Option<String> {
            app::passwd_field(&passwd, user, 3, |_| true).map(str::to_string)
        };
        let reference = img.references.first().cloned();
        let bare = reference
            .as_deref()
            .and_then(|r| r.strip_prefix("docker://"))
            .and_then(|r| berth_appc::oci::DockerReference::parse(r).ok());
        let (name, tag) = match &bare {
            Some(r) => (r.name(), r.tag().map(str::to_string)),
            None => (
                reference
                    .clone()
                    .unwrap_or_else(|| format!("oci-{}", &img.id.hex()[..12])),
                None,
            ),
        };
        let mut annotations = vec![(
            app::MANIFEST_DIGEST_ANNOTATION.to_string(),
            img.id.to_string(),
        )];
        if let Some(r) = &reference {
            annotations.push((app::REFERENCE_ANNOTATION.to_string(), r.clone()));
        }
        let src = AppSource {
            name: &name,
            tag: tag.as_deref(),
            annotations,
        };
        app::app_manifest(&src, &config, &group_of).map_err(|e| StoreError::OciDocument {
            digest: img.config.digest.clone(),
            reason: format!("cannot make an app of its config: {e}"),
        })
    }
}

/// The file of a rendered OCI tree that lists the diff_ids its layers
/// hashed to, bottom first.
const DIFF_IDS: &str = "diff_ids";

/// Compare the config's diff_ids with those recorded in the tree `dir`
/// when it was rendered (perhaps for another image of the same layers).
/// A tree rendered before they were recorded is taken as it is.
fn check_recorded_diff_ids(
    dir: &Path,
    img: &OciImage,
    expected: &[String],
) -> Result<(), StoreError> {
    let p = dir.join(DIFF_IDS);
    let recorded: Vec<String> = match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err("read", &p)(e)),
    };
    if recorded.len() != img.layers.len() {
        tracing::debug!(tree = %dir.display(), "no diff_ids recorded with the tree: not checked");
        return Ok(());
    }
    for ((layer, want), got) in img.layers.iter().zip(expected).zip(recorded) {
        if *want != got {
            return Err(StoreError::OciDiffIdMismatch {
                digest: layer.digest.clone(),
                expected: want.clone(),
                actual: got,
            });
        }
    }
    Ok(())
}

/// Read the first bytes of `f` (without moving its offset) into `head`;
/// how many there are (fewer only at the end of the file).
fn read_head(f: &File, head: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// SHA-256 and length of everything `r` gives.
pub(crate) fn sha256_of(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((Digest::Sha256(hex(&h.finalize())), n))
}

/// Open the directory `path` (components) under `root` without following
/// any symlink; `None` if some component is missing or not a directory (or
/// a symlink: a lower layer's symlink is never a way into the tree).
//
// CVE-2018-15664 class (symlink races and symlinked parents in copy and
// extraction code): every component is opened relative to its parent's
// fd with O_NOFOLLOW, so a whiteout `a/b/.wh.c` where the tree's `a` is a
// symlink to `/etc` can never delete a host file.
fn open_inside(root: BorrowedFd<'_>, path: &[Vec<u8>]) -> io::Result<Option<OwnedFd>> {
    let mut cur = fsops::open_dir_at(root, b".")?;
    for c in path {
        match fsops::open_dir_at(cur.as_fd(), c) {
            Ok(fd) => cur = fd,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(x) if x == Errno::NOENT.raw_os_error()
                        || x == Errno::LOOP.raw_os_error()
                        || x == Errno::NOTDIR.raw_os_error()
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(cur))
}

/// `.wh.NAME`: delete `NAME` (whatever it is, a directory with its content)
/// from the layers below.
fn apply_whiteout(root: BorrowedFd<'_>, path: &LayerPath) -> io::Result<()> {
    let Some((name, parent)) = path.split_last() else {
        return Ok(());
    };
    let Some(dir) = open_inside(root, parent)? else {
        return Ok(());
    };
    match fsops::remove_at(dir.as_fd(), name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// `.wh..wh..opq` in `DIR`: hide everything the layers below have in `DIR`.
fn apply_opaque(root: BorrowedFd<'_>, dir: &LayerPath) -> io::Result<()> {
    let Some(d) = open_inside(root, dir)? else {
        return Ok(());
    };
    for n in fsops::list(d.as_fd())? {
        fsops::remove_at(d.as_fd(), &n)?;
    }
    Ok(())
}

/// A small regular file (at most 4 MiB) inside a rendered rootfs, read
/// without following symlinks anywhere on the way; `None` if it is missing,
/// not a regular file or larger.
pub fn read_in_root(root: &Path, path: &[&str]) -> Option<Vec<u8>> {
    let (name, parent) = path.split_last()?;
    let r = fsops::open_dir(root).ok()?;
    let comps: Vec<Vec<u8>> = parent.iter().map(|c| c.as_bytes().to_vec()).collect();
    let dir = open_inside(r.as_fd(), &comps).ok()??;
    let fd = rfs::openat(
        dir.as_fd(),
        *name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        rfs::Mode::empty(),
    )
    .ok()?;
    let st = rfs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_size > 4 << 20 {
        return None;
    }
    let mut out = Vec::new();
    File::from(fd).read_to_end(&mut out).ok()?;
    Some(out)
}
