//! Removing what is no longer needed, and checking what is kept.
//!
//! - `remove` takes one image away, with the trees made from it; it refuses
//!   while one of those trees is leased.
//! - `gc` removes every tree no process holds (a tree is only a cache of
//!   its images), then every image unused for the grace period and not part
//!   of a tree still held, then reconciles orphans: a blob with no index row
//!   (an import that died between rename and insert) is adopted if it is a
//!   valid image whose content matches its name, else removed; a tree
//!   directory without a row is removed; a row without its file is dropped.
//! - `verify` re-hashes blobs (the decompressed content must hash to the
//!   image ID) and trees (their content hash), and can drop what is corrupt.
//!
//! Everything removed is first unindexed, then deleted; trees are moved out
//! of `tree/` before deletion, so nothing half-deleted is ever visible.
//! Exclusive locks are only ever *tried* here: what another process holds is
//! skipped (gc) or refused (remove), never waited for.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::time::{Duration, SystemTime};

use berth_appc::aci::{self, HashingReader};
use berth_appc::ImageId;

use crate::digest::Digest;
use crate::import::ImportOptions;
use crate::index;
use crate::lock::{self, Mode};
use crate::store::{io_err, Store, StoreError};
use crate::tree::TreeKey;

/// Retries of a try-lock, for a lock that looks held but may just have
/// been released (see `lock::try_lock_for`): a user's remove waits a bit
/// longer than gc, which skips and comes back next time.
const REMOVE_TRIES: (u32, Duration) = (25, Duration::from_millis(20));
const GC_TRIES: (u32, Duration) = (3, Duration::from_millis(20));

/// A tree that was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedTree {
    pub key: String,
    /// The image it was rendered for.
    pub image: String,
    pub size: u64,
}

/// An image that was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedImage {
    pub id: ImageId,
    pub name: String,
    /// Blob bytes freed (trees are listed separately).
    pub size: u64,
    pub trees: Vec<RemovedTree>,
}

/// Orphans found and dealt with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Blobs without a row that were valid: indexed now.
    pub adopted: Vec<ImageId>,
    /// Blobs without a row that were not valid images: removed.
    pub removed_blobs: Vec<String>,
    /// Tree directories without a row: removed.
    pub removed_trees: Vec<String>,
    /// Image rows whose blob is missing: dropped.
    pub dropped_rows: Vec<String>,
}

/// What `gc` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_trees: Vec<RemovedTree>,
    /// Trees kept because a process holds them, with the recorded holders.
    pub kept_trees: Vec<(String, Vec<String>)>,
    pub removed_images: Vec<RemovedImage>,
    /// Images past the grace period kept because a held tree uses them or
    /// another process is busy with them.
    pub kept_images: Vec<ImageId>,
    pub orphans: OrphanReport,
    /// OCI images removed (unused for the grace period).
    pub removed_oci_images: Vec<crate::oci::RemovedOciImage>,
    /// OCI images past the grace period kept (a held tree, another process).
    pub kept_oci_images: Vec<Digest>,
    /// Bytes freed in all.
    pub freed: u64,
}

/// How `verify` behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Remove corrupt images and trees (and reconcile orphans).
    pub drop_corrupt: bool,
}

/// The state of a blob or tree after `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyStatus {
    Ok,
    Missing,
    Corrupt { reason: String },
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub images: Vec<(ImageId, VerifyStatus)>,
    pub trees: Vec<(String, VerifyStatus)>,
    /// What was dropped (with `drop_corrupt`): image IDs and tree keys.
    pub dropped: Vec<String>,
    pub orphans: OrphanReport,
}

impl VerifyReport {
    /// Nothing missing or corrupt.
    pub fn is_clean(&self) -> bool {
        self.images.iter().all(|(_, s)| *s == VerifyStatus::Ok)
            && self.trees.iter().all(|(_, s)| *s == VerifyStatus::Ok)
    }
}

/// The recorded holders of a tree whose process still exists (rows of
/// processes that died without dropping their lease stay until the tree
/// goes; the flock, not the row, is what protects the tree).
pub(crate) fn holders(store: &Store, key: &str) -> Vec<String> {
    store
        .index
        .lease_holders(key)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, pid)| {
            rustix::process::Pid::from_raw(*pid as i32)
                .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
        })
        .map(|(h, pid)| format!("{h} (pid {pid})"))
        .collect()
}

impl Store {
    /// With the tree's lock held exclusively, nobody holds (or can take)
    /// its render lock: a renderer takes the tree lock shared first.
    fn unlink_render_lock(&self, key: &str) {
        let _ = fs::remove_file(self.root.join("locks/render").join(key));
    }

    /// Try to remove a tree: `Ok(None)` if a process holds it.
    fn try_remove_tree(&self, key: &str) -> Result<Option<RemovedTree>, StoreError> {
        self.try_remove_tree_for(key, GC_TRIES.0)
    }

    /// [`Store::try_remove_tree`], trying the lock `tries` times.
    pub(crate) fn try_remove_tree_for(
        &self,
        key: &str,
        tries: u32,
    ) -> Result<Option<RemovedTree>, StoreError> {
        let Ok(k) = key.parse::<TreeKey>() else {
            return Ok(None);
        };
        let lp = self.root.join("locks/tree").join(key);
        let Some(lock) = lock::try_lock_for(&lp, Mode::Exclusive, tries, GC_TRIES.1)
            .map_err(io_err("lock", &lp))?
        else {
            return Ok(None);
        };
        let row = self.index.tree(key)?;
        self.index.delete_tree(key)?;
        self.discard_tree_dir(&k)?;
        self.unlink_render_lock(key);
        lock.unlink();
        Ok(Some(RemovedTree {
            key: key.to_string(),
            image: row.as_ref().map(|r| r.image_id.clone()).unwrap_or_default(),
            size: row.map_or(0, |r| r.size),
        }))
    }

    /// Remove an image and the trees made from it. Refused while one of
    /// those trees is leased, or while another process imports, renders or
    /// removes the image.
    pub fn remove(&self, id: &ImageId) -> Result<RemovedImage, StoreError> {
        let row = self
            .index
            .image(id.as_str())?
            .ok_or_else(|| StoreError::NotFound {
                reference: id.to_string(),
            })?;
        let digest = Digest::of_image(id);
        let lp = self.root.join("locks/image").join(digest.lock_name());
        let Some(lock) = lock::try_lock_for(&lp, Mode::Exclusive, REMOVE_TRIES.0, REMOVE_TRIES.1)
            .map_err(io_err("lock", &lp))?
        else {
            return Err(StoreError::Busy { id: id.clone() });
        };
        // Every tree lock first, so that nothing is removed if one is held.
        let trees = self.index.trees_using(id.as_str())?;
        let mut locks = Vec::new();
        for t in &trees {
            let lp = self.root.join("locks/tree").join(&t.key);
            match lock::try_lock_for(&lp, Mode::Exclusive, REMOVE_TRIES.0, REMOVE_TRIES.1)
                .map_err(io_err("lock", &lp))?
            {
                Some(l) => locks.push((t, l)),
                None => {
                    return Err(StoreError::InUse {
                        id: id.clone(),
                        tree: t.key.clone(),
                        holders: holders(self, &t.key),
                    })
                }
            }
        }
        let mut removed_trees = Vec::new();
        for (t, l) in locks {
            self.index.delete_tree(&t.key)?;
            if let Ok(k) = t.key.parse::<TreeKey>() {
                self.discard_tree_dir(&k)?;
            }
            self.unlink_render_lock(&t.key);
            l.unlink();
            removed_trees.push(RemovedTree {
                key: t.key.clone(),
                image: t.image_id.clone(),
                size: t.size,
            });
        }
        self.index.delete_image(id.as_str())?;
        let blob = self.blob_path(&digest);
        match fs::remove_file(&blob) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &blob)(e)),
        }
        lock.unlink();
        Ok(RemovedImage {
            id: id.clone(),
            name: row.name,
            size: row.blob_size,
            trees: removed_trees,
        })
    }

    /// Remove every tree no process holds, then every image not used
    /// within `grace_period` and not part of a held tree; reconcile orphans.
    pub fn gc(&self, grace_period: Duration) -> Result<GcReport, StoreError> {
        let mut report = GcReport {
            orphans: self.reconcile_orphans()?,
            ..GcReport::default()
        };
        let mut held_images: HashSet<String> = HashSet::new();
        let mut held_trees: HashSet<String> = HashSet::new();
        for t in self.index.trees()? {
            match self.try_remove_tree(&t.key)? {
                Some(r) => {
                    tracing::debug!(tree = %r.key, size = r.size, "gc removed a tree");
                    report.freed += r.size;
                    report.removed_trees.push(r);
                }
                None => {
                    tracing::debug!(tree = %t.key, "gc keeps a tree in use");
                    held_trees.insert(t.key.clone());
                    held_images.insert(t.image_id.clone());
                    held_images.extend(t.layers.iter().cloned());
                    report
                        .kept_trees
                        .push((t.key.clone(), holders(self, &t.key)));
                }
            }
        }
        let cutoff = index::to_millis(
            SystemTime::now()
                .checked_sub(grace_period)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        );
        for img in self.index.list()? {
            if img.last_used > cutoff {
                continue;
            }
            let Ok(id) = ImageId::try_from(img.id.as_str()) else {
                continue;
            };
            if held_images.contains(&img.id) {
                report.kept_images.push(id);
                continue;
            }
            match self.remove(&id) {
                Ok(r) => {
                    report.freed += r.size + r.trees.iter().map(|t| t.size).sum::<u64>();
                    report.removed_trees.extend(r.trees.iter().cloned());
                    report.removed_images.push(r);
                }
                Err(StoreError::Busy { .. }) | Err(StoreError::InUse { .. }) => {
                    tracing::debug!(image = %id, "gc keeps an image another process is using");
                    report.kept_images.push(id);
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let (removed, kept, freed) = self.oci_gc(crate::index::from_millis(cutoff), &held_trees)?;
        for r in &removed {
            report.removed_trees.extend(r.trees.iter().cloned());
        }
        report.removed_oci_images = removed;
        report.kept_oci_images = kept;
        report.freed += freed;
        Ok(report)
    }

    /// Blobs without rows, tree directories without rows, rows without
    /// blobs.
    fn reconcile_orphans(&self) -> Result<OrphanReport, StoreError> {
        let mut rep = OrphanReport::default();
        let dir = self.root.join("cas/blobs/sha512");
        for ent in fs::read_dir(&dir).map_err(io_err("read the directory", &dir))? {
            let ent = ent.map_err(io_err("read the directory", &dir))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("sha512-{name}").parse::<Digest>() else {
                continue;
            };
            let Some(id) = digest.image_id() else {
                continue;
            };
            if self.index.has_image(id.as_str())? {
                continue;
            }
            // Being imported right now: the importer holds this lock.
            let Some(lock) = self.image_lock(&digest, Mode::Exclusive, false)? else {
                continue;
            };
            if self.index.has_image(id.as_str())? {
                continue;
            }
            let path = ent.path();
            // Adopt it: import it again from itself (that validates and
            // checks its ID); the copy replaces the blob by the same bytes.
            drop(lock);
            let adopted = fs::File::open(&path).ok().and_then(|f| {
                self.import_aci(
                    io::BufReader::new(f),
                    ImportOptions {
                        expected_id: Some(id.clone()),
                        origin: Some("adopted".into()),
                        ..ImportOptions::default()
                    },
                )
                .ok()
            });
            if adopted.is_some() {
                tracing::warn!(image = %id, "adopted an image blob that had no index row");
                rep.adopted.push(id);
            } else if let Some(lock) = self.image_lock(&digest, Mode::Exclusive, false)? {
                if !self.index.has_image(id.as_str())? {
                    tracing::warn!(blob = %path.display(), "removed an invalid blob that had no index row");
                    let _ = fs::remove_file(&path);
                    rep.removed_blobs.push(name);
                }
                drop(lock);
            }
        }
        let tdir = self.root.join("tree");
        for ent in fs::read_dir(&tdir).map_err(io_err("read the directory", &tdir))? {
            let ent = ent.map_err(io_err("read the directory", &tdir))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if self.index.tree(&name)?.is_some() {
                continue;
            }
            // A render holds the lock shared until its row is in.
            let lp = self.root.join("locks/tree").join(&name);
            let Some(lock) =
                lock::lock_path(&lp, Mode::Exclusive, false).map_err(io_err("lock", &lp))?
            else {
                continue;
            };
            if self.index.tree(&name)?.is_some() {
                continue;
            }
            match name.parse::<TreeKey>() {
                Ok(k) => self.discard_tree_dir(&k)?,
                Err(_) => fs::remove_dir_all(ent.path()).map_err(io_err("remove", ent.path()))?,
            }
            lock.unlink();
            tracing::warn!(tree = %name, "removed a tree that had no index row");
            rep.removed_trees.push(name);
        }
        for img in self.index.list()? {
            let Ok(id) = ImageId::try_from(img.id.as_str()) else {
                continue;
            };
            let digest = Digest::of_image(&id);
            if self.blob_path(&digest).exists() {
                continue;
            }
            let Some(lock) = self.image_lock(&digest, Mode::Exclusive, false)? else {
                continue;
            };
            if !self.blob_path(&digest).exists() {
                tracing::warn!(image = %id, "dropped an index row whose blob is missing");
                self.index.delete_image(id.as_str())?;
                rep.dropped_rows.push(img.id);
            }
            drop(lock);
        }
        Ok(rep)
    }

    /// Re-hash a blob: its decompressed content must hash to its ID.
    fn check_blob(&self, id: &ImageId) -> VerifyStatus {
        let f = match self.open_blob(id) {
            Ok(f) => f,
            Err(StoreError::BlobMissing { .. }) => return VerifyStatus::Missing,
            Err(e) => {
                return VerifyStatus::Corrupt {
                    reason: e.to_string(),
                }
            }
        };
        let result = (|| {
            let (_, r) = aci::decompress(io::BufReader::new(f)).map_err(|e| e.to_string())?;
            let mut hr = HashingReader::new(r);
            io::copy(&mut hr, &mut io::sink()).map_err(|e| format!("cannot decompress: {e}"))?;
            hr.finish().map_err(|e| e.to_string())
        })();
        match result {
            Ok(actual) if actual == *id => VerifyStatus::Ok,
            Ok(actual) => VerifyStatus::Corrupt {
                reason: format!("content hashes to {actual}"),
            },
            Err(reason) => VerifyStatus::Corrupt { reason },
        }
    }

    /// Re-hash the blobs of `ids` (every image if empty) and the trees made
    /// from them; with `drop_corrupt`, remove what is corrupt (unless held)
    /// and reconcile orphans.
    pub fn verify(&self, ids: &[ImageId], opts: VerifyOptions) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        if opts.drop_corrupt {
            report.orphans = self.reconcile_orphans()?;
        }
        let ids: Vec<ImageId> = if ids.is_empty() {
            self.index
                .list()?
                .into_iter()
                .filter_map(|r| ImageId::try_from(r.id.as_str()).ok())
                .collect()
        } else {
            for id in ids {
                if !self.index.has_image(id.as_str())? {
                    return Err(StoreError::NotFound {
                        reference: id.to_string(),
                    });
                }
            }
            ids.to_vec()
        };
        let mut tree_keys = Vec::new();
        for id in &ids {
            let status = self.check_blob(id);
            if status != VerifyStatus::Ok {
                tracing::debug!(image = %id, ?status, "blob verification failed");
            }
            report.images.push((id.clone(), status));
            for t in self.index.trees_using(id.as_str())? {
                if !tree_keys.contains(&t.key) {
                    tree_keys.push(t.key);
                }
            }
        }
        for key in tree_keys {
            let Ok(k) = key.parse::<TreeKey>() else {
                continue;
            };
            let Some(row) = self.index.tree(&key)? else {
                continue;
            };
            // Shared: gc cannot remove the tree while we read it.
            let lp = self.root.join("locks/tree").join(&key);
            let status = {
                let _l = lock::lock_wait(&lp, Mode::Shared).map_err(io_err("lock", &lp))?;
                let dir = self.tree_dir(&k);
                if !dir.exists() {
                    VerifyStatus::Missing
                } else {
                    match crate::fsops::hash_tree(&dir, Some(&["manifest", "rootfs"])) {
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
                }
            };
            report.trees.push((key, status));
        }
        if opts.drop_corrupt {
            for (key, status) in &report.trees {
                if *status != VerifyStatus::Ok && self.try_remove_tree(key)?.is_some() {
                    report.dropped.push(key.clone());
                }
            }
            for (id, status) in &report.images {
                if *status != VerifyStatus::Ok {
                    match self.remove(id) {
                        Ok(_) => report.dropped.push(id.to_string()),
                        Err(StoreError::Busy { .. }) | Err(StoreError::InUse { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(report)
    }
}
