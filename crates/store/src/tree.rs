//! The tree store: an image rendered once with all its dependencies, shared
//! read-only by the pods that use it.
//!
//! ## Rendering order (appc spec, ace.md "Filesystem Setup")
//! Dependencies are resolved from the store (by `imageID` when given, else
//! by name and labels: the most recently imported match), recursively, and
//! laid down depth first, each image after its own dependencies, in the
//! order they are listed: for `A -> [B, C]`, `C -> [D]` the layers are
//! B, D, C, A; an image reached by two paths is laid down twice (once per
//! path). A cycle (possible through names) is refused with the chain.
//!
//! ## Path whitelists
//! A layer reached through the chain `A -> C -> D` is filtered by the
//! `pathWhitelist` of D, C and A (each one that is non-empty): a path is
//! kept only if every one of them lists it exactly, or, for a directory, if
//! it is an ancestor of a path one of them lists (a listed file needs its
//! directories). Nothing else is kept: not the content of a listed
//! directory, which must be listed itself ("a complete and absolute set").
//!
//! ## Override rules, and why layers are staged
//! A later layer replaces a path a former one left, whatever it was; a
//! directory over a directory merges. A *symlink* in a lower layer where the
//! upper has a directory is removed and replaced, never followed.
//! `berth_appc::aci::extract` refuses to write through symlinks (good) and
//! wants an empty target, so it cannot lay a layer over another. Each layer
//! is therefore extracted (securely) into its own staging directory, then
//! moved over the tree with `renameat` through directory fds, opened with
//! `O_NOFOLLOW`: a whole subtree moves in one rename when nothing is below
//! it in the tree, so the merge costs little more than the extraction. The
//! first layer, when unfiltered, is extracted straight into the tree.
//!
//! ## Keys and completeness
//! A tree's key hashes its layers (image IDs and whitelists), so a newer
//! dependency gives a new tree. A tree is rendered in the process's temp
//! dir, hashed (content hash in `hash`, and in the index row written after
//! the rename), then renamed to `tree/<key>/`: a tree that exists was
//! complete when it was renamed, and its content (`manifest`, `rootfs/`) is
//! never written again.
//!
//! ## Rendered by the import
//! An image without dependencies and without a path whitelist is its own
//! tree: the import can extract it while it streams in (decompressing once,
//! see `import.rs`), into a directory of the process's temp dir. Once the
//! image is stored, [`Store::render_staged`] takes that directory through
//! the same locks and checks as any render, and finishes it as
//! `render_into` would have (manifest, hash, markers, rename, row); only the
//! content hash takes each file's digest from the extraction instead of
//! reading the file back. Anything else (dependencies, a tree already
//! there, a failed import) leaves the staged directory to be removed.
//!
//! ## Durability without syncing the file system
//! A rename is durable before the data of the files it moves (ext4's
//! delayed allocation, and the index's own fsync commits the rename, not
//! the tree's data): after a power loss `tree/<key>/` and its row may be
//! there with empty or truncated files. Rendering used to `syncfs` before
//! the rename to rule that out, which costs the writeback of the whole
//! tree (and of anything else dirty on that file system) on every render.
//! A tree is only a cache, re-derivable from the verified blobs, so it is
//! not synced any more; instead its `durable` file says how far it can be
//! trusted (it is outside the content hash):
//!
//! - `boot <id>`: rendered during the boot whose
//!   `/proc/sys/kernel/random/boot_id` is `<id>`. Within that boot the page
//!   cache is the truth, so the tree is whole. Losing unsynced data takes a
//!   crash of the machine, hence a reboot, hence another boot id;
//! - `synced`: checked after a reboot (or rendered without a boot id, then
//!   with a `syncfs` first): the content was read back from the disk and
//!   matched the recorded hash, and the marker was written and fsynced.
//!
//! Anything else (another boot's id, an empty or missing file: its data or
//! its name lost in the crash too) means "unknown": the first render after
//! the reboot re-hashes the tree against its row under the render lock,
//! keeps it (marking it `synced`) when it matches, and otherwise deletes it
//! and renders it again; [`Store::tree_lease`] refuses such a tree until a
//! render has settled it. The cost of durability is paid once per tree per
//! crash-prone reboot, not on every render.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use berth_appc::aci::{self, AciError, DevicePolicy, ExtractOptions};
use berth_appc::manifest::Dependency;
use berth_appc::{ImageId, ImageManifest};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use sha2::{Digest as _, Sha512};

use crate::digest::Digest;
use crate::fsops;
use crate::index::{self, IndexError, TreeRow};
use crate::lock::{self, FileLock, Mode as LockMode};
use crate::store::{io_err, prepare_target, ImageRef, Store, StoreError};

/// Most layers a tree may have (an image reached through many paths is
/// rendered once per path; this bounds a hostile dependency graph).
pub const MAX_LAYERS: usize = 256;

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("dependency {dependency} of image {needed_by} is not in the store; fetch it first")]
    MissingDependency {
        dependency: String,
        needed_by: String,
    },
    #[error("dependency {dependency} of image {needed_by} does not match: {reason}")]
    DependencyMismatch {
        dependency: String,
        needed_by: String,
        reason: String,
    },
    #[error("dependency cycle: {chain}")]
    Cycle { chain: String },
    #[error("image {image} has more than {MAX_LAYERS} layers with its dependencies")]
    TooManyLayers { image: ImageId },
    #[error("cannot render image {image}")]
    Extract {
        image: ImageId,
        #[source]
        source: AciError,
    },
    #[error("the blob of image {image} is corrupt (it hashes to {actual}); remove the image and fetch it again")]
    Corrupt { image: ImageId, actual: ImageId },
    #[error("cannot {op} {} while rendering", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the manifest of image {image} does not parse")]
    Manifest {
        image: ImageId,
        #[source]
        source: berth_appc::ManifestError,
    },
    #[error("tree {key} is not in the store; render its image again")]
    NotRendered { key: String },
    #[error("{0:?} is not a tree key")]
    BadKey(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

fn tio(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> TreeError {
    let path = path.into();
    move |source| TreeError::Io { op, path, source }
}

/// How a layer is extracted for a tree (by a render, or by an import that
/// renders): its rootfs only, owners kept, device nodes made when root.
pub(crate) fn extract_options() -> ExtractOptions {
    ExtractOptions {
        rootfs_only: true,
        devices: if rustix::process::geteuid().is_root() {
            DevicePolicy::Create
        } else {
            DevicePolicy::Skip
        },
        preserve_owners: true,
    }
}

/// The file in a tree saying whether its content is known to be durable
/// (see "Durability without syncing the file system" above).
const DURABLE: &str = "durable";
const SYNCED: &str = "synced";

/// This boot's id, if the kernel tells (Linux with /proc).
fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// Whether the tree in `dir` is known whole: rendered during this boot, or
/// checked (and synced) since.
pub(crate) fn settled(dir: &Path) -> bool {
    let Ok(s) = fs::read_to_string(dir.join(DURABLE)) else {
        return false;
    };
    let s = s.trim();
    s == SYNCED
        || s.strip_prefix("boot ")
            .is_some_and(|b| Some(b) == boot_id().as_deref())
}

/// Sync the file system holding `dir`, then mark the tree `synced`
/// (written aside, fsynced, renamed over the marker, directory fsynced).
pub(crate) fn mark_synced(dir: &Path) -> io::Result<()> {
    let fd = fsops::open_dir(dir)?;
    rfs::syncfs(&fd)?;
    let tmp = dir.join(".durable.new");
    let mut f = fs::File::create(&tmp)?;
    io::Write::write_all(&mut f, format!("{SYNCED}\n").as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(DURABLE))?;
    fsops::fsync_dir(dir)
}

/// Write a fresh tree's `durable` file. No syncfs: the tree is trusted
/// for this boot only, until a later render checks it (see the module
/// doc). Without a boot id, sync.
pub(crate) fn write_durable_marker(work: &Path) -> Result<(), StoreError> {
    let dp = work.join(DURABLE);
    let marker = match boot_id() {
        Some(b) => format!("boot {b}\n"),
        None => {
            let fd = fsops::open_dir(work)
                .map_err(tio("open", work))
                .map_err(StoreError::from)?;
            rfs::syncfs(&fd).map_err(|e| StoreError::from(tio("sync", work)(e.into())))?;
            format!("{SYNCED}\n")
        }
    };
    fs::write(&dp, marker)
        .map_err(tio("write", &dp))
        .map_err(StoreError::from)?;
    Ok(())
}

/// The name of a rendered tree: `deps-sha512-` and 64 hex digits (an ACI
/// and its dependencies), or `oci-sha256-` and 64 hex digits (an OCI layer
/// chain).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeKey(String);

impl TreeKey {
    /// For keys this crate computed.
    pub(crate) fn new_unchecked(s: String) -> TreeKey {
        TreeKey(s)
    }

    /// Whether this is the tree of an OCI layer chain.
    pub fn is_oci(&self) -> bool {
        self.0.starts_with("oci-sha256-")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TreeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TreeKey {
    type Err = TreeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .strip_prefix("deps-sha512-")
            .or_else(|| s.strip_prefix("oci-sha256-"))
        {
            Some(h)
                if h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(TreeKey(s.to_string()))
            }
            _ => Err(TreeError::BadKey(s.to_string())),
        }
    }
}

/// A rendered tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreePath {
    pub key: TreeKey,
    /// `tree/<key>`, holding `rootfs/`, `manifest`, `hash`, `layers`.
    pub path: PathBuf,
    /// The image rendered (the top layer).
    pub image: ImageId,
    /// Every layer, bottom first.
    pub layers: Vec<ImageId>,
}

impl TreePath {
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.path.join("manifest")
    }
}

/// A pod's claim on a tree: a shared flock on `locks/tree/<key>` (gc and
/// remove need it exclusively, so they skip or refuse the tree), plus a row
/// naming the holder, for messages. Released on drop, and by the kernel
/// when the process dies.
///
/// The lock's fd is close-on-exec; a process that execs (stage0 into
/// stage1) and must keep the lease clears that flag on [`TreeLease::fd`].
#[derive(Debug)]
pub struct TreeLease<'s> {
    store: &'s Store,
    key: TreeKey,
    holder: String,
    lock: FileLock,
}

impl TreeLease<'_> {
    pub fn key(&self) -> &TreeKey {
        &self.key
    }
    pub fn holder(&self) -> &str {
        &self.holder
    }
    /// The locked file's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.lock.fd()
    }
}

impl Drop for TreeLease<'_> {
    fn drop(&mut self) {
        let _ = self
            .store
            .index
            .remove_lease(self.key.as_str(), &self.holder, std::process::id());
    }
}

/// An image's rootfs extracted by its import (see `import.rs`), waiting to
/// become its tree: `work/rootfs/` is laid, `files` has the content digest
/// of every regular file written there.
#[derive(Debug)]
pub(crate) struct Staged {
    pub image: ImageId,
    pub work: PathBuf,
    pub files: fsops::KnownContent,
}

/// A path whitelist, normalized to paths relative to the rootfs.
#[derive(Debug)]
pub(crate) struct Whitelist {
    paths: HashSet<Vec<u8>>,
    ancestors: HashSet<Vec<u8>>,
    sorted: Vec<Vec<u8>>,
}

impl Whitelist {
    pub(crate) fn new(list: &[String]) -> Whitelist {
        let mut paths = HashSet::new();
        let mut ancestors = HashSet::new();
        for p in list {
            let mut comps: Vec<&[u8]> = Vec::new();
            for c in p.as_bytes().split(|&b| b == b'/') {
                match c {
                    b"" | b"." => {}
                    b".." => {
                        comps.pop();
                    }
                    c => comps.push(c),
                }
            }
            for i in 0..comps.len() {
                ancestors.insert(comps[..i].join(&b'/'));
            }
            paths.insert(comps.join(&b'/'));
        }
        let mut sorted: Vec<Vec<u8>> = paths.iter().cloned().collect();
        sorted.sort();
        Whitelist {
            paths,
            ancestors,
            sorted,
        }
    }

    fn allows(&self, rel: &[u8], is_dir: bool) -> bool {
        self.paths.contains(rel) || (is_dir && self.ancestors.contains(rel))
    }
}

fn allowed(filter: &[Arc<Whitelist>], rel: &[u8], is_dir: bool) -> bool {
    filter.iter().all(|w| w.allows(rel, is_dir))
}

/// One layer of a tree: an image and the whitelists filtering it.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub id: ImageId,
    pub filter: Vec<Arc<Whitelist>>,
}

fn describe(dep: &Dependency) -> String {
    let r = ImageRef::Name {
        name: dep.image_name.clone(),
        labels: dep
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.clone()))
            .collect(),
    };
    match &dep.image_id {
        Some(id) => format!("{:?} ({id})", r.to_string()),
        None => format!("{:?}", r.to_string()),
    }
}

/// The key of a tree made of `layers`.
pub(crate) fn tree_key(layers: &[Layer]) -> TreeKey {
    let mut h = Sha512::new();
    h.update(b"berth tree v1\n");
    for l in layers {
        h.update(l.id.as_str().as_bytes());
        h.update(b"\n");
        for w in &l.filter {
            h.update(b"whitelist\n");
            for p in &w.sorted {
                h.update(p);
                h.update(b"\0");
            }
            h.update(b"\n");
        }
        h.update(b"end\n");
    }
    let hex: String = h.finalize()[..32]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    TreeKey(format!("deps-sha512-{hex}"))
}

fn merr<'p>(op: &'static str, path: &'p [u8]) -> impl FnOnce(io::Error) -> TreeError + 'p {
    move |source| TreeError::Io {
        op,
        path: PathBuf::from(format!("rootfs/{}", String::from_utf8_lossy(path))),
        source,
    }
}

/// Move the content of the staging directory `src` over the tree `dst`,
/// keeping only what `filter` allows; `rel` is `src`'s path in the rootfs.
///
/// CVE-2014-9356 / CVE-2018-15664 class: a lower layer may leave a symlink
/// (to `/`, to the host's `/etc`...) where an upper layer has a directory.
/// Every directory here is opened relative to its parent's fd with
/// `O_NOFOLLOW`, so a symlink is never entered: when the upper entry is a
/// directory and the tree has a symlink (or any non-directory) there, the
/// symlink is unlinked and the directory moved in its place; a non-directory
/// replaces whatever is there with one `renameat`, which replaces the name
/// itself, never what a symlink points at.
pub(crate) fn merge(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    rel: &[u8],
    filter: &[Arc<Whitelist>],
) -> Result<(), TreeError> {
    for name in fsops::list(src).map_err(merr("list", rel))? {
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(&name);
        let Some(st) = fsops::stat_at(src, &name).map_err(merr("stat", &child))? else {
            continue;
        };
        let is_dir = fsops::file_type(&st) == FileType::Directory;
        if !allowed(filter, &child, is_dir) {
            continue;
        }
        let existing = fsops::stat_at(dst, &name).map_err(merr("stat", &child))?;
        let existing_dir = existing
            .as_ref()
            .is_some_and(|e| fsops::file_type(e) == FileType::Directory);
        if is_dir && existing_dir {
            let s = fsops::open_dir_at(src, &name).map_err(merr("open", &child))?;
            let d = fsops::open_dir_at(dst, &name).map_err(merr("open", &child))?;
            merge(s.as_fd(), d.as_fd(), &child, filter)?;
            fsops::copy_meta(s.as_fd(), d.as_fd()).map_err(merr("set the metadata of", &child))?;
            continue;
        }
        if existing_dir {
            // A non-directory replaces a directory: the whole subtree goes.
            fsops::remove_at(dst, &name).map_err(merr("remove", &child))?;
        } else if is_dir && existing.is_some() {
            // A directory replaces a file or a symlink: unlink it, never follow.
            rfs::unlinkat(dst, name.as_slice(), AtFlags::empty())
                .map_err(|e| merr("remove", &child)(e.into()))?;
        }
        if is_dir && !filter.is_empty() {
            // Only part of this subtree may be kept: build it entry by entry.
            rfs::mkdirat(dst, name.as_slice(), Mode::from_raw_mode(0o700))
                .map_err(|e| merr("create", &child)(e.into()))?;
            let s = fsops::open_dir_at(src, &name).map_err(merr("open", &child))?;
            let d = fsops::open_dir_at(dst, &name).map_err(merr("open", &child))?;
            merge(s.as_fd(), d.as_fd(), &child, filter)?;
            fsops::copy_meta(s.as_fd(), d.as_fd()).map_err(merr("set the metadata of", &child))?;
        } else {
            rfs::renameat(src, name.as_slice(), dst, name.as_slice())
                .map_err(|e| merr("move", &child)(e.into()))?;
        }
    }
    Ok(())
}

impl Store {
    /// The layers of `top`'s tree, bottom first.
    pub(crate) fn plan(&self, top: &ImageId) -> Result<Vec<Layer>, StoreError> {
        let manifest = self.manifest(top)?;
        let mut out = Vec::new();
        let mut chain = Vec::new();
        let mut wl = Vec::new();
        self.visit(top.clone(), manifest, &mut chain, &mut wl, &mut out)?;
        Ok(out)
    }

    fn visit(
        &self,
        id: ImageId,
        manifest: ImageManifest,
        chain: &mut Vec<(ImageId, String)>,
        wl: &mut Vec<Arc<Whitelist>>,
        out: &mut Vec<Layer>,
    ) -> Result<(), StoreError> {
        if out.len() >= MAX_LAYERS || chain.len() >= MAX_LAYERS {
            return Err(TreeError::TooManyLayers { image: id }.into());
        }
        chain.push((id.clone(), manifest.name.to_string()));
        let own = !manifest.path_whitelist.is_empty();
        if own {
            wl.push(Arc::new(Whitelist::new(&manifest.path_whitelist)));
        }
        let needed_by = format!("{:?} ({id})", manifest.name.as_str());
        for dep in &manifest.dependencies {
            let dep_id = self.resolve_dependency(dep, &needed_by)?;
            if chain.iter().any(|(c, _)| *c == dep_id) {
                let mut names: Vec<String> = chain.iter().map(|(_, n)| n.clone()).collect();
                names.push(dep.image_name.to_string());
                return Err(TreeError::Cycle {
                    chain: names.join(" -> "),
                }
                .into());
            }
            let dep_manifest = self.manifest(&dep_id)?;
            self.visit(dep_id, dep_manifest, chain, wl, out)?;
        }
        out.push(Layer {
            id,
            filter: wl.clone(),
        });
        if own {
            wl.pop();
        }
        chain.pop();
        Ok(())
    }

    fn resolve_dependency(&self, dep: &Dependency, needed_by: &str) -> Result<ImageId, StoreError> {
        let missing = || TreeError::MissingDependency {
            dependency: describe(dep),
            needed_by: needed_by.to_string(),
        };
        let labels: Vec<(String, String)> = dep
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.clone()))
            .collect();
        let info = match &dep.image_id {
            Some(id) => self.get(id)?.ok_or_else(missing)?,
            None => match self.lookup(&ImageRef::Name {
                name: dep.image_name.clone(),
                labels: labels.clone(),
            }) {
                Ok(info) => info,
                Err(StoreError::NotFound { .. }) => return Err(missing().into()),
                Err(e) => return Err(e),
            },
        };
        let mismatch = |reason: String| TreeError::DependencyMismatch {
            dependency: describe(dep),
            needed_by: needed_by.to_string(),
            reason,
        };
        if info.name != dep.image_name {
            return Err(mismatch(format!(
                "image {} is named {:?}",
                info.id,
                info.name.as_str()
            ))
            .into());
        }
        for (k, v) in &labels {
            if info.labels.get(k) != Some(v.as_str()) {
                return Err(
                    mismatch(format!("image {} does not have the label {k}={v}", info.id)).into(),
                );
            }
        }
        Ok(info.id)
    }

    fn tree_lock_path(&self, key: &TreeKey) -> PathBuf {
        self.root.join("locks/tree").join(key.as_str())
    }

    pub(crate) fn tree_dir(&self, key: &TreeKey) -> PathBuf {
        self.root.join("tree").join(key.as_str())
    }

    pub(crate) fn lease_unchecked(
        &self,
        key: &TreeKey,
        holder: &str,
    ) -> Result<TreeLease<'_>, StoreError> {
        let p = self.tree_lock_path(key);
        let lock = lock::lock_wait(&p, LockMode::Shared).map_err(io_err("lock", &p))?;
        self.index.add_lease(
            key.as_str(),
            holder,
            std::process::id(),
            index::to_millis(SystemTime::now()),
        )?;
        Ok(TreeLease {
            store: self,
            key: key.clone(),
            holder: holder.to_string(),
            lock,
        })
    }

    /// Lease a rendered tree for `holder` (a pod UUID...): while the lease
    /// lives, gc and remove leave the tree and its images alone.
    pub fn tree_lease(&self, key: &TreeKey, holder: &str) -> Result<TreeLease<'_>, StoreError> {
        let lease = self.lease_unchecked(key, holder)?;
        let dir = self.tree_dir(key);
        // A tree not known durable (see the module doc) must be checked by
        // a render first.
        if !dir.exists() || self.index.tree(key.as_str())?.is_none() || !settled(&dir) {
            return Err(TreeError::NotRendered {
                key: key.to_string(),
            }
            .into());
        }
        Ok(lease)
    }

    /// Render `id` with its dependencies (once: an existing tree is reused)
    /// and return where it is. Nothing holds the tree after this returns:
    /// a pod should use [`Store::render_leased`].
    pub fn render(&self, id: &ImageId) -> Result<TreePath, StoreError> {
        self.render_leased(id, "render").map(|(p, _)| p)
    }

    /// Render `id` (or reuse its tree) and lease the tree for `holder`,
    /// with no window in which gc could remove it.
    pub fn render_leased(
        &self,
        id: &ImageId,
        holder: &str,
    ) -> Result<(TreePath, TreeLease<'_>), StoreError> {
        self.render_staged(id, holder, None)
    }

    /// [`Store::render_leased`], using `staged` (the image extracted by its
    /// import) instead of extracting the blob again when the tree is the
    /// image alone: no dependencies and no path whitelist, so the tree's
    /// rootfs is exactly the image's. Otherwise `staged` is left unused
    /// (the caller removes it), as when the tree exists already.
    pub(crate) fn render_staged(
        &self,
        id: &ImageId,
        holder: &str,
        staged: Option<Staged>,
    ) -> Result<(TreePath, TreeLease<'_>), StoreError> {
        let layers = self.plan(id)?;
        let staged = staged.filter(
            |s| matches!(layers.as_slice(), [only] if only.filter.is_empty() && only.id == s.image),
        );
        let key = tree_key(&layers);
        let mut ids: Vec<&ImageId> = layers.iter().map(|l| &l.id).collect();
        ids.sort();
        ids.dedup();
        // Shared image locks: gc and remove skip (or refuse) these images
        // until the tree is in place and leased.
        let mut image_locks = Vec::new();
        for i in &ids {
            image_locks.push(self.image_lock(&Digest::of_image(i), LockMode::Shared, true)?);
        }
        for i in &ids {
            if !self.index.has_image(i.as_str())? {
                return Err(StoreError::NotFound {
                    reference: i.to_string(),
                });
            }
        }
        let lease = self.lease_unchecked(&key, holder)?;
        let dir = self.tree_dir(&key);
        let row = self.index.tree(key.as_str())?;
        if !dir.exists() || row.is_none() || !settled(&dir) {
            let p = self.root.join("locks/render").join(key.as_str());
            let _render = lock::lock_wait(&p, LockMode::Exclusive).map_err(io_err("lock", &p))?;
            self.ensure_tree(&key, &layers, id, &dir, staged)?;
        }
        let now = index::to_millis(SystemTime::now());
        let strs: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        self.index.touch(&strs, now)?;
        drop(image_locks);
        Ok((
            TreePath {
                key,
                path: dir,
                image: id.clone(),
                layers: layers.into_iter().map(|l| l.id).collect(),
            },
            lease,
        ))
    }

    /// Under the render lock: make `tree/<key>` and its row exist.
    fn ensure_tree(
        &self,
        key: &TreeKey,
        layers: &[Layer],
        top: &ImageId,
        dir: &Path,
        staged: Option<Staged>,
    ) -> Result<(), StoreError> {
        let row = self.index.tree(key.as_str())?;
        if dir.exists() {
            if let Some(row) = row {
                if settled(dir) {
                    return Ok(());
                }
                // Not known durable (rendered before a reboot, maybe a
                // crash): keep it if it still hashes as recorded.
                match fsops::hash_tree(dir, Some(&["manifest", "rootfs"])) {
                    Ok(d) if d.hash == row.content_hash => {
                        mark_synced(dir).map_err(io_err("sync", dir))?;
                        return Ok(());
                    }
                    _ => {
                        tracing::warn!(tree = %key, "rendering again a tree that does not match its hash after a reboot");
                        // The row stays until render_tree replaces it: a row
                        // without its directory is "not rendered" anyway.
                        self.discard_tree_dir(key)?;
                        return self.render_tree(key, layers, top, dir, staged);
                    }
                }
            }
            // Renamed into place, then the process died before the row:
            // keep the tree if it is what its hash file says.
            let recorded = fs::read_to_string(dir.join("hash")).unwrap_or_default();
            match fsops::hash_tree(dir, Some(&["manifest", "rootfs"])) {
                Ok(d) if d.hash == recorded.trim() => {
                    if !settled(dir) {
                        mark_synced(dir).map_err(io_err("sync", dir))?;
                    }
                    self.index.insert_tree(&TreeRow {
                        key: key.to_string(),
                        image_id: top.to_string(),
                        size: d.size,
                        content_hash: d.hash,
                        rendered_at: index::to_millis(SystemTime::now()),
                        layers: layers.iter().map(|l| l.id.to_string()).collect(),
                    })?;
                    return Ok(());
                }
                _ => {
                    tracing::warn!(tree = %key, "removing a tree left without its index row and not matching its hash");
                    self.discard_tree_dir(key)?;
                }
            }
        }
        self.render_tree(key, layers, top, dir, staged)
    }

    /// Move `tree/<key>` out of sight (into our temp dir), then delete it.
    pub(crate) fn discard_tree_dir(&self, key: &TreeKey) -> Result<(), StoreError> {
        let dir = self.tree_dir(key);
        let dead = self.tmp.fresh("dead-");
        match fs::rename(&dir, &dead) {
            Ok(()) => fsops::remove_all(&dead).map_err(io_err("remove", &dead)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("move away", &dir)(e)),
        }
    }

    fn extract_layer(&self, id: &ImageId, into: &Path) -> Result<(), StoreError> {
        let blob = self.open_blob(id)?;
        let report =
            aci::extract(io::BufReader::new(blob), into, &extract_options()).map_err(|source| {
                TreeError::Extract {
                    image: id.clone(),
                    source,
                }
            })?;
        if report.image_id != *id {
            return Err(TreeError::Corrupt {
                image: id.clone(),
                actual: report.image_id,
            }
            .into());
        }
        Ok(())
    }

    fn render_tree(
        &self,
        key: &TreeKey,
        layers: &[Layer],
        top: &ImageId,
        dir: &Path,
        staged: Option<Staged>,
    ) -> Result<(), StoreError> {
        let (work, laid) = match staged {
            Some(s) => (s.work, Ok(s.files)),
            None => {
                let work = self.tmp.fresh("tree-");
                let laid = self.render_into(&work, layers);
                (work, laid.map(|()| fsops::KnownContent::new()))
            }
        };
        let finished = laid.and_then(|known| self.finish_tree(&work, layers, top, &known));
        let result = finished.and_then(|digest| {
            match fs::rename(&work, dir) {
                Ok(()) => {}
                // Rendered by someone else meanwhile (the render lock makes
                // this unlikely): theirs is as good as ours.
                Err(e) if dir.exists() => {
                    tracing::debug!(tree = %key, error = %e, "tree appeared while rendering; keeping the other copy");
                }
                Err(e) => return Err(io_err("move the tree into", dir)(e)),
            }
            let parent = self.root.join("tree");
            fsops::fsync_dir(&parent).map_err(io_err("fsync", &parent))?;
            self.index.insert_tree(&TreeRow {
                key: key.to_string(),
                image_id: top.to_string(),
                size: digest.size,
                content_hash: digest.hash,
                rendered_at: index::to_millis(SystemTime::now()),
                layers: layers.iter().map(|l| l.id.to_string()).collect(),
            })?;
            Ok(())
        });
        let _ = fsops::remove_all(&work);
        result
    }

    /// Lay `layers` into `work/rootfs/` (`work` is created).
    fn render_into(&self, work: &Path, layers: &[Layer]) -> Result<(), StoreError> {
        let rootfs = work.join("rootfs");
        fs::create_dir(work)
            .map_err(tio("create", work))
            .map_err(StoreError::from)?;
        fs::create_dir(&rootfs)
            .map_err(tio("create", &rootfs))
            .map_err(StoreError::from)?;
        let t0 = std::time::Instant::now();
        for (i, layer) in layers.iter().enumerate() {
            if i == 0 && layer.filter.is_empty() {
                self.extract_layer(&layer.id, &rootfs)?;
                continue;
            }
            let stage = self.tmp.fresh("layer-");
            fs::create_dir(&stage)
                .map_err(tio("create", &stage))
                .map_err(StoreError::from)?;
            let merged = self.extract_layer(&layer.id, &stage).and_then(|()| {
                let s = fsops::open_dir(&stage).map_err(tio("open", &stage))?;
                let d = fsops::open_dir(&rootfs).map_err(tio("open", &rootfs))?;
                merge(s.as_fd(), d.as_fd(), b"", &layer.filter)?;
                // The upper layer's rootfs/ metadata wins too.
                fsops::copy_meta(s.as_fd(), d.as_fd())
                    .map_err(tio("set the metadata of", &rootfs))?;
                Ok(())
            });
            let _ = fsops::remove_all(&stage);
            merged?;
        }
        tracing::debug!(extract = ?t0.elapsed(), "layers laid");
        Ok(())
    }

    /// Complete the tree in `work` whose `rootfs/` is laid: its manifest,
    /// content hash (file digests from `known` where it has them), layers
    /// and durability marker.
    fn finish_tree(
        &self,
        work: &Path,
        layers: &[Layer],
        top: &ImageId,
        known: &fsops::KnownContent,
    ) -> Result<fsops::TreeDigest, StoreError> {
        let manifest = self.manifest_bytes(top)?;
        let mp = work.join("manifest");
        fs::write(&mp, &manifest)
            .map_err(tio("write", &mp))
            .map_err(StoreError::from)?;
        let t1 = std::time::Instant::now();
        let digest = fsops::hash_tree_known(work, Some(&["manifest", "rootfs"]), known)
            .map_err(tio("hash", work))
            .map_err(StoreError::from)?;
        let t2 = std::time::Instant::now();
        let hp = work.join("hash");
        fs::write(&hp, format!("{}\n", digest.hash))
            .map_err(tio("write", &hp))
            .map_err(StoreError::from)?;
        let ids: Vec<&str> = layers.iter().map(|l| l.id.as_str()).collect();
        let lp = work.join("layers");
        let json = serde_json::to_vec_pretty(&ids).unwrap_or_default();
        fs::write(&lp, json)
            .map_err(tio("write", &lp))
            .map_err(StoreError::from)?;
        write_durable_marker(work)?;
        tracing::debug!(hash = ?(t2 - t1), rest = ?t2.elapsed(), known = known.len(), "tree finished");
        Ok(digest)
    }

    /// Render `id` with its dependencies (through the tree store) and copy
    /// the result into `dir` (missing or empty): `manifest` and `rootfs/`,
    /// or with `rootfs_only` the rootfs's content.
    pub fn render_to(
        &self,
        id: &ImageId,
        dir: &Path,
        rootfs_only: bool,
    ) -> Result<TreePath, StoreError> {
        let (tree, _lease) = self.render_leased(id, "render-to")?;
        copy_out(&tree.rootfs(), dir, rootfs_only, |m| {
            fs::copy(tree.manifest_path(), m).map_err(io_err("write", m))?;
            Ok(())
        })?;
        Ok(tree)
    }
}

/// Copy a rendered tree into `dir` (missing or empty): `manifest` (written
/// by `manifest`) and `rootfs/`, or with `rootfs_only` the rootfs's content.
/// On failure `dir` is left empty.
pub(crate) fn copy_out(
    rootfs: &Path,
    dir: &Path,
    rootfs_only: bool,
    manifest: impl FnOnce(&Path) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    prepare_target(dir, false)?;
    let result = (|| {
        if rootfs_only {
            fsops::copy_tree(rootfs, dir).map_err(io_err("copy the tree into", dir))
        } else {
            manifest(&dir.join("manifest"))?;
            let r = dir.join("rootfs");
            fs::create_dir(&r).map_err(io_err("create", &r))?;
            fsops::copy_tree(rootfs, &r).map_err(io_err("copy the tree into", &r))
        }
    })();
    if result.is_err() {
        let _ = crate::store::empty_dir(dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitelist_semantics() {
        let w = Whitelist::new(&[
            "/etc/ca/crt".into(),
            "/usr/bin/app".into(),
            "/etc/systemd/system/".into(),
        ]);
        assert!(w.allows(b"etc/ca/crt", false));
        assert!(w.allows(b"etc", true));
        assert!(!w.allows(b"etc", false));
        assert!(w.allows(b"etc/systemd/system", true));
        assert!(!w.allows(b"etc/systemd/system/x.service", false));
        assert!(!w.allows(b"etc/passwd", false));
        assert!(w.allows(b"", true));
    }
}
