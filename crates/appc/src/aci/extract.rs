//! Extracting an ACI into an empty directory, without ever writing outside it.
//!
//! Every entry first goes through the same layout checker as
//! [`validate`](super::validate) (no `..`, no absolute paths, no duplicates,
//! no path through a symlink, hard links only to earlier entries inside
//! rootfs/); the first problem stops the extraction. That is the first line.
//! The second does not trust the checker (nor that nobody else writes into
//! the target meanwhile): every path is resolved inside the target one
//! component at a time, from a directory fd, with `O_NOFOLLOW`, so no
//! symlink, whoever made it and whenever, is ever followed; files are created
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, so nothing is ever written through an
//! existing name; metadata is set through the fd that was created, or with
//! `AT_SYMLINK_NOFOLLOW`.
//!
//! Directories are created `0700` and get their real mode, owner, xattrs and
//! mtime at the end, deepest first (so a read-only directory can still be
//! filled, and creating its content does not change its mtime afterwards).
//!
//! An OCI layer ([`extract_layer_with`]) may also hard-link a file of the
//! layers below it: the target is resolved in that lower tree by the same
//! component-by-component, never-follow rule, and the link made to its
//! inode there (see [`LayerOptions::lower`]).
//!
//! On error the target is left partly filled; the caller removes it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use sha2::{Digest as _, Sha512};

use super::read::{
    walk, walk_opts, EntryMeta, Judge, Kind, LayoutChecker, StreamHash, VisitError, Walked,
    MAX_MANIFEST, OPAQUE_MARKER, WHITEOUT_PREFIX,
};
use super::{AciError, Compression, ValidateReport, IO_BUF};
use crate::manifest::ImageManifest;
use crate::types::ImageId;

/// What to do with device nodes (valid in an image, but only root can make
/// them, and a pod rarely needs them: the runtime provides /dev).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// Fail, naming the entry.
    #[default]
    Reject,
    /// Leave them out, listed in [`ExtractReport::skipped`].
    Skip,
    /// `mknod` them (needs CAP_MKNOD).
    Create,
}

/// How [`extract`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Extract only rootfs/'s content, straight into the target (no
    /// `manifest`, no `rootfs` directory level).
    pub rootfs_only: bool,
    pub devices: DevicePolicy,
    /// Give entries their owners from the archive (only when running as root).
    pub preserve_owners: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            rootfs_only: false,
            devices: DevicePolicy::Reject,
            preserve_owners: true,
        }
    }
}

/// What [`extract`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractReport {
    pub image_id: ImageId,
    /// Tar entries read (PAX global headers not counted).
    pub entries: u64,
    /// Entries left out (device nodes under [`DevicePolicy::Skip`]).
    pub skipped: Vec<String>,
}

/// Extract the image read from `r` into `dest`, an existing empty directory.
/// Checks every entry as [`validate`](super::validate) does and stops at the
/// first problem; the manifest is parsed strictly. Never writes outside
/// `dest`, whatever the archive says.
pub fn extract<R: Read>(
    r: R,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport, AciError> {
    let (walked, x) = run(r, dest, opts, None)?;
    Ok(ExtractReport {
        image_id: walked.image_id,
        entries: walked.entries,
        skipped: x.skipped,
    })
}

/// A path inside a layer, as components relative to the layer's root.
pub type LayerPath = Vec<Vec<u8>>;

/// What [`extract_layer`] did, and what it left for the caller to apply to
/// the layers below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    pub compression: Compression,
    /// Tar entries read.
    pub entries: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// `.wh.NAME` entries: the paths (`dir/NAME`) to delete from the lower
    /// layers. Never created in the target.
    pub whiteouts: Vec<LayerPath>,
    /// Directories holding `.wh..wh..opq`: their lower content is hidden.
    pub opaque_dirs: Vec<LayerPath>,
    /// Entries left out (device nodes under [`DevicePolicy::Skip`]).
    pub skipped: Vec<String>,
    /// `sha256:<hex>` of the whole uncompressed tar (end-of-archive blocks
    /// and any padding included): the layer's diff_id, to compare with the
    /// image config's `rootfs.diff_ids`. Only when asked for
    /// ([`LayerOptions::diff_id`]).
    pub diff_id: Option<String>,
}

/// What [`extract_layer_with`] knows of the image beyond this layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions<'a> {
    /// The tree the layers below made (their merged rootfs), if any. A hard
    /// link to a name this layer did not create is then made to that name's
    /// inode in the lower tree (image-spec layer.md: a hard link names a
    /// path of the layer's *resulting* filesystem; umoci and containerd
    /// link to the lower file), so that once the layer is merged over the
    /// tree both names share one inode. The target is resolved in the lower
    /// tree without following any symlink, must not be a directory, and must
    /// not have been deleted by a whiteout or opaque marker that comes
    /// earlier in the layer (umoci applies a layer in archive order).
    /// `dest` must be on the lower tree's filesystem (`linkat` cannot cross
    /// filesystems). `None` (the bottom layer): such a link is refused, as
    /// in an ACI.
    pub lower: Option<BorrowedFd<'a>>,
    /// Hash the uncompressed stream: [`LayerReport::diff_id`]. Costs a
    /// SHA-256 pass, on a thread of its own.
    pub diff_id: bool,
}

/// Extract one OCI image layer (a tar of rootfs-relative paths, in any
/// compression [`decompress`](super::decompress) knows) into `dest`, an
/// existing empty directory, with the same checks and the same
/// never-follow-a-symlink resolution as [`extract`]. Whiteouts are not
/// created but reported, for the caller to apply to the lower layers before
/// it lays this one over them (image-spec layer.md: a whiteout only hides
/// what is *below* its layer). `opts.rootfs_only` is ignored.
///
/// Without a lower tree and without the diff_id: [`extract_layer_with`]
/// and [`LayerOptions::default`].
pub fn extract_layer<R: Read>(
    r: R,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<LayerReport, AciError> {
    extract_layer_with(r, dest, opts, &LayerOptions::default())
}

/// [`extract_layer`] over the tree of the layers below, and/or hashing the
/// layer's diff_id, as `layer` says.
pub fn extract_layer_with<R: Read>(
    r: R,
    dest: &Path,
    opts: &ExtractOptions,
    layer: &LayerOptions<'_>,
) -> Result<LayerReport, AciError> {
    let (walked, x) = run(r, dest, opts, Some(layer))?;
    Ok(LayerReport {
        compression: walked.compression,
        entries: walked.entries,
        tar_size: walked.tar_size,
        whiteouts: x.whiteouts,
        opaque_dirs: x.opaque_dirs,
        skipped: x.skipped,
        diff_id: walked.diff_id,
    })
}

/// `layer`: extracting an OCI layer (else an ACI).
fn run<R: Read>(
    r: R,
    dest: &Path,
    opts: &ExtractOptions,
    layer: Option<&LayerOptions<'_>>,
) -> Result<(Walked, Extractor), AciError> {
    let mut opts = opts.clone();
    if layer.is_some() {
        opts.rootfs_only = false;
    }
    let root = open_target(dest)?;
    let mut x = Extractor::new(root, &opts, false, layer.is_some());
    if let Some(lower) = layer.and_then(|l| l.lower) {
        x.lower = Some(
            lower
                .try_clone_to_owned()
                .map_err(|e| AciError::io("open the tree of the layers below", dest, e))?,
        );
    }
    let mut checker = match layer {
        Some(l) => LayoutChecker::for_layer(l.lower.is_some()),
        None => LayoutChecker::default(),
    };
    let hash = match layer {
        None => StreamHash::ImageId,
        Some(l) if l.diff_id => StreamHash::DiffId,
        Some(_) => StreamHash::None,
    };
    let layer = layer.is_some();
    let walked = walk_opts(r, hash, &mut |e, data| {
        let v = checker.check(e);
        if let Some(reason) = v.problems.into_iter().next() {
            return Err(AciError::Hostile {
                entry: e.name.clone(),
                reason,
            }
            .into());
        }
        x.entry(e, data)
    })?;
    if let Some(p) = checker.finish().into_iter().next() {
        return Err(AciError::Layout {
            path: p.path.into(),
            reason: p.message,
        });
    }
    if !x.manifest_seen && !layer {
        return Err(AciError::Layout {
            path: "manifest".into(),
            reason: "missing (an image needs a manifest file)".into(),
        });
    }
    x.finish_dirs()?;
    Ok((walked, x))
}

/// The SHA-512 of a regular file's content as [`validate_extract`] wrote it,
/// with the inode it wrote it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub dev: u64,
    pub ino: u64,
    /// Bytes written.
    pub len: u64,
    pub sha512: [u8; 64],
}

/// A tree [`validate_extract`] wrote.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub report: ExtractReport,
    /// One per regular file written (hard links share their target's).
    pub files: Vec<FileDigest>,
}

/// [`validate`](super::validate) and [`extract`] in one pass over the
/// stream, for importers that want the image both judged and on disk
/// without decompressing it twice.
///
/// The [`ValidateReport`] is exactly what `validate` gives for the same
/// stream (the same checker sees every entry). Extraction follows the rules
/// of [`extract`], entry by entry, and stops for good at the first entry
/// the checker or the extractor refuses, or at the first write error; the
/// stream is still read to its end for the report. The second result says
/// how the extraction ended; on `Err` `dest` is left partly filled, and the
/// caller removes it. Nothing is written outside `dest` in any case.
///
/// `Err` (outer) only for what makes the stream unreadable, as `validate`.
pub fn validate_extract<R: Read>(
    r: R,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<(ValidateReport, Result<Extracted, AciError>), AciError> {
    let mut x = match open_target(dest) {
        Ok(root) => Ok(Extractor::new(root, opts, true, false)),
        Err(e) => Err(e),
    };
    let mut judge = Judge::default();
    let walked = walk(r, &mut |e, data| {
        let verdict = judge.entry(e, data)?;
        let Ok(extractor) = x.as_mut() else {
            return Ok(());
        };
        let done = match verdict {
            Err(reason) => Err(AciError::Hostile {
                entry: e.name.clone(),
                reason,
            }),
            Ok(Some(manifest)) => extractor.manifest_bytes(e, manifest),
            Ok(None) => match extractor.entry(e, data) {
                Ok(()) => Ok(()),
                Err(VisitError::Aci(err)) => Err(err),
                // The stream's fault: the walk classifies it, and the image
                // is refused anyway.
                Err(VisitError::Data(err)) => return Err(VisitError::Data(err)),
            },
        };
        if let Err(err) = done {
            x = Err(err);
        }
        Ok(())
    })?;
    let report = judge.report(walked);
    let extracted = x.and_then(|mut x| {
        if let Some(p) = report.problems.first() {
            return Err(AciError::Layout {
                path: p.path.clone().into(),
                reason: p.message.clone(),
            });
        }
        if !x.manifest_seen {
            return Err(AciError::Layout {
                path: "manifest".into(),
                reason: "missing (an image needs a manifest file)".into(),
            });
        }
        x.finish_dirs()?;
        let files = match x.digests.take() {
            Some(h) => h.finish()?,
            None => Vec::new(),
        };
        Ok(Extracted {
            report: ExtractReport {
                image_id: report.image_id.clone(),
                entries: report.entries,
                skipped: x.skipped,
            },
            files,
        })
    });
    Ok((report, extracted))
}

/// Open `dest`, which must be an existing empty directory.
fn open_target(dest: &Path) -> Result<OwnedFd, AciError> {
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| AciError::io("open the target directory", dest, e.into()))?;
    let mut listing = rfs::Dir::read_from(&root)
        .map_err(|e| AciError::io("read the target directory", dest, e.into()))?;
    for ent in listing.by_ref() {
        let ent = ent.map_err(|e| AciError::io("read the target directory", dest, e.into()))?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Err(AciError::Layout {
                path: dest.into(),
                reason: "the extraction target must be an empty directory".into(),
            });
        }
    }
    Ok(root)
}

/// Metadata to apply to a directory once everything is extracted.
struct DirMeta {
    /// Path relative to the target (empty: the target itself).
    path: Vec<Vec<u8>>,
    entry: String,
    meta: EntryMeta,
    /// A parent the layer left out, given the lower tree's metadata; an
    /// entry of the layer for the same directory wins.
    implicit: bool,
}

struct Extractor {
    root: OwnedFd,
    /// The directories of the last parent resolved: `chain[i]` is the fd of
    /// the path made of the first `i + 1` components, with its name.
    chain: Vec<(Vec<u8>, OwnedFd)>,
    opts: ExtractOptions,
    owners: bool,
    dirs: Vec<DirMeta>,
    /// Non-directories extracted so far (paths relative to the target): the
    /// only things a hard link may point at.
    created: HashSet<Vec<u8>>,
    skipped: Vec<String>,
    buf: Vec<u8>,
    manifest_seen: bool,
    /// Hashes the content of every regular file written, when asked for.
    digests: Option<ContentHasher>,
    /// Extracting an OCI layer (see [`extract_layer`]).
    layer: bool,
    /// The tree of the layers below, for hard links into it
    /// ([`LayerOptions::lower`]).
    lower: Option<OwnedFd>,
    whiteouts: Vec<LayerPath>,
    opaque_dirs: Vec<LayerPath>,
}

/// Messages to the content-hashing thread.
enum Piece {
    /// The next bytes of the current file.
    Data(Vec<u8>),
    /// The current file is complete: its inode and length.
    End { dev: u64, ino: u64, len: u64 },
}

/// Blocks in flight to the content-hashing thread (each at most `IO_BUF`).
const CONTENT_QUEUE: usize = 16;

/// SHA-512 of each file's content, on a thread of its own: hashing is about
/// as costly as the extraction's own work (creating and writing files), so
/// on the extracting thread it would nearly double the pass; a bounded queue
/// of copies of what was written keeps memory at a few megabytes.
struct ContentHasher {
    tx: Option<SyncSender<Piece>>,
    worker: Option<std::thread::JoinHandle<Vec<FileDigest>>>,
    /// Without a thread (spawning failed): hash inline.
    inline: Option<(Sha512, Vec<FileDigest>)>,
}

impl ContentHasher {
    fn new() -> ContentHasher {
        let (tx, rx) = sync_channel::<Piece>(CONTENT_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("aci-content".into())
            .spawn(move || {
                let mut out = Vec::new();
                let mut sha = Sha512::new();
                for piece in rx {
                    match piece {
                        Piece::Data(d) => sha.update(&d),
                        Piece::End { dev, ino, len } => out.push(FileDigest {
                            dev,
                            ino,
                            len,
                            sha512: std::mem::take(&mut sha).finalize().into(),
                        }),
                    }
                }
                out
            });
        match spawned {
            Ok(w) => ContentHasher {
                tx: Some(tx),
                worker: Some(w),
                inline: None,
            },
            Err(_) => ContentHasher {
                tx: None,
                worker: None,
                inline: Some((Sha512::new(), Vec::new())),
            },
        }
    }

    fn send(&mut self, piece: Piece) {
        if let Some((sha, out)) = self.inline.as_mut() {
            match piece {
                Piece::Data(d) => sha.update(&d),
                Piece::End { dev, ino, len } => out.push(FileDigest {
                    dev,
                    ino,
                    len,
                    sha512: std::mem::take(sha).finalize().into(),
                }),
            }
        } else if let Some(tx) = &self.tx {
            // Fails only if the thread is gone (a panic): finish() says so.
            let _ = tx.send(piece);
        }
    }

    fn data(&mut self, bytes: &[u8]) {
        if let Some((sha, _)) = self.inline.as_mut() {
            sha.update(bytes);
        } else {
            self.send(Piece::Data(bytes.to_vec()));
        }
    }

    fn finish(mut self) -> Result<Vec<FileDigest>, AciError> {
        if let Some((_, out)) = self.inline.take() {
            return Ok(out);
        }
        self.tx = None;
        self.worker
            .take()
            .map(|w| w.join())
            .unwrap_or(Ok(Vec::new()))
            .map_err(|_| AciError::Read(io::Error::other("the content hashing thread panicked")))
    }
}

impl Extractor {
    fn new(root: OwnedFd, opts: &ExtractOptions, digests: bool, layer: bool) -> Extractor {
        Extractor {
            root,
            chain: Vec::new(),
            opts: opts.clone(),
            owners: opts.preserve_owners && rustix::process::geteuid().is_root(),
            dirs: Vec::new(),
            created: HashSet::new(),
            skipped: Vec::new(),
            buf: vec![0u8; IO_BUF],
            manifest_seen: false,
            digests: digests.then(ContentHasher::new),
            layer,
            lower: None,
            whiteouts: Vec::new(),
            opaque_dirs: Vec::new(),
        }
    }
}

fn ex(op: &'static str, entry: &str, e: impl Into<io::Error>) -> AciError {
    AciError::Extract {
        op,
        entry: entry.to_string(),
        source: e.into(),
    }
}

fn hostile(entry: &str, reason: impl Into<String>) -> AciError {
    AciError::Hostile {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Open `name`, a directory inside `dir`, without following a symlink.
//
// CVE-2018-15664 (docker cp: a symlink swapped in between the check of a path
// and its use) and CVE-2021-30465 (runc: symlink exchange on a mount target)
// are the race this avoids: each component is opened relative to the fd of
// the one before, with O_NOFOLLOW, so there is no window in which a path
// string is re-resolved through a symlink.
fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

impl Extractor {
    /// The fd of the directory `parent` (relative to the target), creating
    /// missing directories (tar archives may leave parents out).
    fn parent(&mut self, parent: &[Vec<u8>], entry: &str) -> Result<BorrowedFd<'_>, AciError> {
        let common = self
            .chain
            .iter()
            .zip(parent)
            .take_while(|((have, _), want)| have == *want)
            .count();
        self.chain.truncate(common);
        for (i, c) in parent.iter().enumerate().skip(common) {
            let base = self
                .chain
                .last()
                .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
            let fd = match open_dir_at(base, c) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let created = match rfs::mkdirat(base, c.as_slice(), Mode::from_raw_mode(0o755))
                    {
                        Ok(()) => true,
                        Err(Errno::EXIST) => false,
                        Err(e) => return Err(ex("create the parent directory of", entry, e)),
                    };
                    let fd = open_dir_at(base, c).map_err(|e| self.walk_error(entry, c, e))?;
                    if created {
                        self.keep_lower_meta(&parent[..=i]);
                    }
                    fd
                }
                Err(e) => return Err(self.walk_error(entry, c, e)),
            };
            self.chain.push((c.clone(), fd));
        }
        Ok(self
            .chain
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd()))
    }

    /// A layer that leaves out a parent directory changes nothing about it
    /// (umoci and Docker write into the existing one): the staged stand-in
    /// gets the lower tree's mode, owner and mtime at the end, so the merge
    /// puts back what was there instead of a 0755 root directory.
    fn keep_lower_meta(&mut self, path: &[Vec<u8>]) {
        let Some(lower) = self.lower.as_ref() else {
            return;
        };
        // Resolved like everything else: never through a symlink.
        let Ok(mut cur) = open_dir_at(lower.as_fd(), b".") else {
            return;
        };
        for c in path {
            match open_dir_at(cur.as_fd(), c) {
                Ok(fd) => cur = fd,
                Err(_) => return,
            }
        }
        let Ok(st) = rfs::fstat(&cur) else {
            return;
        };
        let name = path
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("/");
        self.dirs.push(DirMeta {
            path: path.to_vec(),
            entry: name.clone(),
            meta: EntryMeta {
                name,
                components: None,
                kind: Kind::Dir,
                mode: st.st_mode & 0o7777,
                uid: st.st_uid.into(),
                gid: st.st_gid.into(),
                mtime: u64::try_from(st.st_mtime).unwrap_or(0),
                size: 0,
                link: None,
                dev: (0, 0),
                xattrs: Vec::new(),
            },
            implicit: true,
        });
    }

    fn walk_error(&self, entry: &str, c: &[u8], e: Errno) -> AciError {
        match e {
            // CVE-2014-9356 / CVE-2014-6407 (docker: image tars writing through
            // symlinks and hard links planted by earlier entries): a parent that
            // is a symlink (ELOOP under O_NOFOLLOW) or not a directory is
            // refused, never followed.
            Errno::LOOP | Errno::NOTDIR => hostile(
                entry,
                format!(
                    "path goes through {:?}, which is a symlink or not a directory",
                    String::from_utf8_lossy(c)
                ),
            ),
            e => ex("open the parent directory of", entry, e),
        }
    }

    /// Where an entry goes, relative to the target; `None` to leave it out.
    fn target<'a>(&self, comps: &'a [Vec<u8>]) -> Option<&'a [Vec<u8>]> {
        if self.opts.rootfs_only {
            match comps.first().map(Vec::as_slice) {
                Some(b"rootfs") => Some(&comps[1..]),
                _ => None,
            }
        } else {
            Some(comps)
        }
    }

    fn entry(&mut self, e: &EntryMeta, data: &mut dyn Read) -> Result<(), VisitError> {
        let Some(comps) = e.components.as_deref() else {
            // The checker has refused these already; never reached.
            return Err(hostile(&e.name, "path escapes the image").into());
        };
        if comps.is_empty() {
            return Ok(()); // "./": the archive's root, i.e. the target itself
        }
        if self.layer {
            let (last, parent) = comps.split_last().expect("non-empty");
            // `.wh..wh.*` directories are AUFS's bookkeeping (hard link
            // dirs): nothing in them is part of the image.
            if parent.iter().any(|c| c.starts_with(b".wh..wh.")) {
                return Ok(());
            }
            if last.as_slice() == OPAQUE_MARKER {
                self.opaque_dirs.push(parent.to_vec());
                return Ok(());
            }
            if let Some(target) = last.strip_prefix(WHITEOUT_PREFIX) {
                // `.wh..wh.*` other than the opaque marker is AUFS's own
                // bookkeeping (hard link dirs): never part of the image.
                if !target.starts_with(WHITEOUT_PREFIX) {
                    let mut path = parent.to_vec();
                    path.push(target.to_vec());
                    self.whiteouts.push(path);
                }
                return Ok(());
            }
        } else if comps.len() == 1 && comps[0] == b"manifest" {
            return self.manifest(e, data);
        }
        let Some(rel) = self.target(comps) else {
            return Ok(());
        };
        if rel.is_empty() {
            // rootfs/ itself under rootfs_only: its metadata goes to the target.
            self.dirs.push(DirMeta {
                path: Vec::new(),
                entry: e.name.clone(),
                meta: e.clone(),
                implicit: false,
            });
            return Ok(());
        }
        let (name, parent) = rel.split_last().expect("non-empty");
        let name = name.clone();
        match e.kind {
            Kind::Dir => self.dir(e, rel, parent, &name).map_err(Into::into),
            Kind::Regular => self.file(e, rel, parent, &name, data),
            Kind::Symlink => self.symlink(e, rel, parent, &name).map_err(Into::into),
            Kind::HardLink => self.hard_link(e, rel, parent, &name).map_err(Into::into),
            Kind::Char | Kind::Block => match self.opts.devices {
                DevicePolicy::Reject => Err(AciError::Device {
                    entry: e.name.clone(),
                }
                .into()),
                DevicePolicy::Skip => {
                    self.skipped.push(e.name.clone());
                    Ok(())
                }
                DevicePolicy::Create => self.special(e, rel, parent, &name).map_err(Into::into),
            },
            Kind::Fifo => self.special(e, rel, parent, &name).map_err(Into::into),
            Kind::Other(_) => Err(hostile(&e.name, "unsupported entry type").into()),
        }
    }

    fn manifest(&mut self, e: &EntryMeta, data: &mut dyn Read) -> Result<(), VisitError> {
        if e.size > MAX_MANIFEST {
            return Err(hostile(
                &e.name,
                format!("manifest larger than {MAX_MANIFEST} bytes"),
            )
            .into());
        }
        let mut bytes = Vec::with_capacity(e.size as usize);
        data.read_to_end(&mut bytes).map_err(VisitError::Data)?;
        if (bytes.len() as u64) < e.size {
            return Err(VisitError::Data(io::ErrorKind::UnexpectedEof.into()));
        }
        self.manifest_bytes(e, &bytes).map_err(Into::into)
    }

    /// The manifest entry, its bytes already read: parsed strictly, and
    /// written unless only the rootfs is extracted.
    fn manifest_bytes(&mut self, e: &EntryMeta, bytes: &[u8]) -> Result<(), AciError> {
        ImageManifest::from_json(bytes).map_err(AciError::Manifest)?;
        self.manifest_seen = true;
        if self.opts.rootfs_only {
            return Ok(());
        }
        let name = b"manifest".to_vec();
        let f = self.create_file(e, &[], &name)?;
        let mut f = File::from(f);
        f.write_all(bytes)
            .map_err(|err| ex("write", &e.name, err))?;
        self.file_meta(e, f.as_fd())?;
        self.created.insert(name);
        Ok(())
    }

    /// `O_CREAT|O_EXCL|O_NOFOLLOW`: never opens an existing file, never
    /// follows a symlink (CVE-2014-6407: docker wrote image files through
    /// symlinks planted by earlier entries).
    fn create_file(
        &mut self,
        e: &EntryMeta,
        parent: &[Vec<u8>],
        name: &[u8],
    ) -> Result<OwnedFd, AciError> {
        let dir = self.parent(parent, &e.name)?;
        rfs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|err| ex("create", &e.name, err))
    }

    fn file(
        &mut self,
        e: &EntryMeta,
        rel: &[Vec<u8>],
        parent: &[Vec<u8>],
        name: &[u8],
        data: &mut dyn Read,
    ) -> Result<(), VisitError> {
        let fd = self.create_file(e, parent, name)?;
        let mut f = File::from(fd);
        // The bytes are hashed as they are written, so that a tree's content
        // hash needs no second read of what was just extracted.
        let mut left = e.size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => return Err(VisitError::Data(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(VisitError::Data(err)),
            };
            f.write_all(&self.buf[..n])
                .map_err(|err| ex("write", &e.name, err))?;
            if let Some(h) = self.digests.as_mut() {
                h.data(&self.buf[..n]);
            }
            left -= n as u64;
        }
        self.file_meta(e, f.as_fd())?;
        if let Some(h) = self.digests.as_mut() {
            // Keyed by inode: a tree walk finds the file (and its hard
            // links) by what it stats, whatever the order of the archive.
            let st = rfs::fstat(&f).map_err(|err| ex("stat", &e.name, err))?;
            h.send(Piece::End {
                dev: st.st_dev,
                ino: st.st_ino,
                len: e.size,
            });
        }
        self.created.insert(rel.join(&b'/'));
        Ok(())
    }

    /// Owner, then mode (chown clears setuid), then xattrs (chown and writes
    /// clear security.capability), then mtime: through the file's own fd.
    fn file_meta(&self, e: &EntryMeta, fd: BorrowedFd<'_>) -> Result<(), AciError> {
        if self.owners {
            let (uid, gid) = ids(e)?;
            rfs::fchown(fd, Some(uid), Some(gid)).map_err(|err| ex("chown", &e.name, err))?;
        }
        rfs::fchmod(fd, Mode::from_raw_mode(e.mode)).map_err(|err| ex("chmod", &e.name, err))?;
        for (k, v) in &e.xattrs {
            match rfs::fsetxattr(fd, k.as_slice(), v, XattrFlags::empty()) {
                Ok(()) | Err(Errno::OPNOTSUPP) => {}
                Err(err) => return Err(ex("set an xattr on", &e.name, err)),
            }
        }
        rfs::futimens(fd, &times(e)).map_err(|err| ex("set the mtime of", &e.name, err))
    }

    fn dir(
        &mut self,
        e: &EntryMeta,
        rel: &[Vec<u8>],
        parent: &[Vec<u8>],
        name: &[u8],
    ) -> Result<(), AciError> {
        let dir = self.parent(parent, &e.name)?;
        // 0700 until the end: nobody else can enter while it is being filled.
        match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                // Created earlier as a missing parent: fine if a directory.
                let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|err| ex("stat", &e.name, err))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    return Err(hostile(&e.name, "exists already and is not a directory"));
                }
            }
            Err(err) => return Err(ex("create the directory", &e.name, err)),
        }
        self.dirs.push(DirMeta {
            path: rel.to_vec(),
            entry: e.name.clone(),
            meta: e.clone(),
            implicit: false,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        e: &EntryMeta,
        rel: &[Vec<u8>],
        parent: &[Vec<u8>],
        name: &[u8],
    ) -> Result<(), AciError> {
        let target = e.link.clone().unwrap_or_default();
        let owners = self.owners;
        let dir = self.parent(parent, &e.name)?;
        // symlinkat never follows anything and fails on an existing name. The
        // link is only ever created: no later entry is written through it
        // (every path is resolved with O_NOFOLLOW), so its target, absolute or
        // not, is harmless here (CVE-2014-9356).
        rfs::symlinkat(target.as_slice(), dir, name)
            .map_err(|err| ex("create the symlink", &e.name, err))?;
        if owners {
            let (uid, gid) = ids(e)?;
            rfs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|err| ex("chown", &e.name, err))?;
        }
        for (k, v) in &e.xattrs {
            if k.starts_with(b"user.") {
                continue; // the kernel allows user.* on regular files and directories only
            }
            set_xattr_nofollow(dir, name, k, v)
                .map_err(|err| ex("set an xattr on", &e.name, err))?;
        }
        rfs::utimensat(dir, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| ex("set the mtime of", &e.name, err))?;
        self.created.insert(rel.join(&b'/'));
        Ok(())
    }

    fn hard_link(
        &mut self,
        e: &EntryMeta,
        rel: &[Vec<u8>],
        parent: &[Vec<u8>],
        name: &[u8],
    ) -> Result<(), AciError> {
        let target = e.link.as_deref().and_then(super::read::normalize);
        let Some(rel_target) = target.as_deref().and_then(|t| self.target(t)) else {
            return Err(hostile(&e.name, "hard link outside rootfs/"));
        };
        let key = rel_target.join(&b'/');
        if !self.created.contains(&key) {
            // CVE-2014-6407 (docker: hard links in image tars to host files):
            // a hard link may only name a non-directory this extraction made
            // (or, for an OCI layer, one of the layers below: see
            // `hard_link_lower`).
            if self.skipped.iter().any(|s| {
                super::read::normalize(s.as_bytes())
                    .as_deref()
                    .and_then(|t| self.target(t))
                    .is_some_and(|t| t.join(&b'/') == key)
            }) {
                self.skipped.push(e.name.clone());
                return Ok(());
            }
            if self.layer && self.lower.is_some() {
                let rel_target = rel_target.to_vec();
                return self.hard_link_lower(e, rel, &rel_target, parent, name);
            }
            return Err(hostile(
                &e.name,
                "hard link to something this extraction did not create",
            ));
        }
        let (tname, tparent) = rel_target.split_last().expect("non-empty");
        // Resolve the target's directory afresh, again without following
        // symlinks; it exists, since the target was extracted.
        let mut tdir = open_dir_at(self.root.as_fd(), b".")
            .map_err(|err| ex("open the target directory for", &e.name, err))?;
        for c in tparent {
            tdir = open_dir_at(tdir.as_fd(), c).map_err(|err| self.walk_error(&e.name, c, err))?;
        }
        let tname = tname.clone();
        let dir = self.parent(parent, &e.name)?;
        // linkat without AT_SYMLINK_FOLLOW links the name itself, never what
        // a symlink there would point at.
        let result = rfs::linkat(&tdir, tname.as_slice(), dir, name, AtFlags::empty());
        result.map_err(|err| ex("create the hard link", &e.name, err))?;
        self.created.insert(rel.join(&b'/'));
        Ok(())
    }

    /// An OCI layer's hard link to `target`, a name this layer did not
    /// create: linked to that name's inode in the tree of the layers below
    /// ([`LayerOptions::lower`]). The staged link is later moved into the
    /// tree by the caller's merge, so both names end up sharing the inode.
    fn hard_link_lower(
        &mut self,
        e: &EntryMeta,
        rel: &[Vec<u8>],
        target: &[Vec<u8>],
        parent: &[Vec<u8>],
        name: &[u8],
    ) -> Result<(), AciError> {
        let shown = String::from_utf8_lossy(e.link.as_deref().unwrap_or_default()).into_owned();
        let missing = || {
            hostile(
                &e.name,
                format!(
                    "hard link to {shown:?}, which neither this layer nor the layers below have"
                ),
            )
        };
        // umoci applies a layer's entries in archive order: a whiteout (of
        // the target or a parent) or an opaque marker (in a parent) that
        // comes before the link has already deleted the lower name, and
        // the link fails. One that comes after it leaves the link, which
        // keeps the inode alive (as here: the caller applies whiteouts to
        // the lower tree after the extraction, to the names only).
        let whited_out = self
            .whiteouts
            .iter()
            .any(|w| target.starts_with(w.as_slice()))
            || self
                .opaque_dirs
                .iter()
                .any(|o| target.len() > o.len() && target.starts_with(o.as_slice()));
        if whited_out {
            return Err(hostile(
                &e.name,
                format!("hard link to {shown:?}, which an earlier whiteout of this layer deleted"),
            ));
        }
        let (tname, tparent) = target.split_last().expect("non-empty");
        let lower = self.lower.as_ref().expect("a lower tree");
        // CVE-2014-6407 (docker: hard links in image tars to host files,
        // e.g. through a symlink an earlier layer left): the target is
        // resolved in the lower tree one component at a time, from its
        // directory fd, with O_NOFOLLOW, so a symlink on the way (`a/b/f`
        // where the lower `a` is a symlink to `/etc`) is refused, never
        // followed; `..` and absolute names were refused by the checker.
        // The link can only ever name an inode inside the lower tree.
        let mut tdir = open_dir_at(lower.as_fd(), b".")
            .map_err(|err| ex("open the layers below for", &e.name, err))?;
        for c in tparent {
            tdir = match open_dir_at(tdir.as_fd(), c) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Err(missing()),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(hostile(
                        &e.name,
                        format!(
                            "hard link to {shown:?}, whose path goes through {:?}, which is a \
                             symlink or not a directory in the layers below (never followed)",
                            String::from_utf8_lossy(c)
                        ),
                    ))
                }
                Err(err) => return Err(ex("open the layers below for", &e.name, err)),
            };
        }
        let st = match rfs::statat(&tdir, tname.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(missing()),
            Err(err) => return Err(ex("stat the hard link target of", &e.name, err)),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(hostile(
                &e.name,
                format!("hard link to {shown:?}, a directory in the layers below"),
            ));
        }
        let dir = self.parent(parent, &e.name)?;
        // Without AT_SYMLINK_FOLLOW: a symlink there is linked itself, as
        // umoci does, never what it points at.
        match rfs::linkat(&tdir, tname.as_slice(), dir, name, AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Err(missing()),
            Err(Errno::XDEV) => {
                return Err(ex(
                    "create the hard link",
                    &e.name,
                    io::Error::new(
                        io::ErrorKind::CrossesDevices,
                        "the tree of the layers below is on another filesystem than the \
                         extraction target, and a hard link cannot join two filesystems",
                    ),
                ))
            }
            Err(err) => return Err(ex("create the hard link", &e.name, err)),
        }
        self.created.insert(rel.join(&b'/'));
        Ok(())
    }

    /// Fifos and device nodes: created, never opened.
    fn special(
        &mut self,
        e: &EntryMeta,
        rel: &[Vec<u8>],
        parent: &[Vec<u8>],
        name: &[u8],
    ) -> Result<(), AciError> {
        let (ft, dev) = match e.kind {
            Kind::Char => (FileType::CharacterDevice, rfs::makedev(e.dev.0, e.dev.1)),
            Kind::Block => (FileType::BlockDevice, rfs::makedev(e.dev.0, e.dev.1)),
            _ => (FileType::Fifo, 0),
        };
        let owners = self.owners;
        let dir = self.parent(parent, &e.name)?;
        rfs::mknodat(dir, name, ft, Mode::from_raw_mode(e.mode & 0o777), dev)
            .map_err(|err| ex("create the node", &e.name, err))?;
        if owners {
            let (uid, gid) = ids(e)?;
            rfs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|err| ex("chown", &e.name, err))?;
        }
        chmod_nofollow(dir, name, e.mode).map_err(|err| ex("chmod", &e.name, err))?;
        for (k, v) in &e.xattrs {
            set_xattr_nofollow(dir, name, k, v)
                .map_err(|err| ex("set an xattr on", &e.name, err))?;
        }
        rfs::utimensat(dir, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| ex("set the mtime of", &e.name, err))?;
        self.created.insert(rel.join(&b'/'));
        Ok(())
    }

    /// Give directories their metadata, deepest (latest) first.
    fn finish_dirs(&mut self) -> Result<(), AciError> {
        self.chain.clear();
        let dirs = std::mem::take(&mut self.dirs);
        let explicit: HashSet<&[Vec<u8>]> = dirs
            .iter()
            .filter(|d| !d.implicit)
            .map(|d| d.path.as_slice())
            .collect();
        for d in dirs.iter().rev() {
            if d.implicit && explicit.contains(d.path.as_slice()) {
                continue;
            }
            let mut fd: Option<OwnedFd> = None;
            for c in &d.path {
                let base = fd.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
                fd = Some(open_dir_at(base, c).map_err(|err| self.walk_error(&d.entry, c, err))?);
            }
            let fd = fd.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
            self.file_meta(&d.meta, fd)?;
        }
        Ok(())
    }
}

fn ids(e: &EntryMeta) -> Result<(rfs::Uid, rfs::Gid), AciError> {
    let uid = u32::try_from(e.uid).map_err(|_| hostile(&e.name, "uid out of range"))?;
    let gid = u32::try_from(e.gid).map_err(|_| hostile(&e.name, "gid out of range"))?;
    Ok((rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid)))
}

fn times(e: &EntryMeta) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(e.mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Linux has no `fchmodat(AT_SYMLINK_NOFOLLOW)` (rustix does not expose
/// fchmodat2): open the node itself with `O_PATH|O_NOFOLLOW` (which opens
/// nothing: no device driver runs), check what it is, and chmod it through
/// its `/proc/self/fd` link, which names exactly that inode.
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(io::Error::other("replaced by a symlink"));
    }
    let mode = Mode::from_raw_mode(mode & 0o7777);
    match rfs::chmod(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(), mode) {
        // No /proc: the node was created a moment ago in a directory only we
        // can write to (0700 until the end); chmod it by name.
        Err(Errno::NOENT) => rfs::chmodat(dir, name, mode, AtFlags::empty())?,
        r => r?,
    }
    Ok(())
}

/// `lsetxattr` on `name` in `dir`, through `/proc/self/fd/<dir>/<name>`: the
/// last component is not followed. EOPNOTSUPP is not an error.
fn set_xattr_nofollow(dir: BorrowedFd<'_>, name: &[u8], k: &[u8], v: &[u8]) -> io::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    match rfs::lsetxattr(path.as_slice(), k, v, XattrFlags::empty()) {
        Ok(()) | Err(Errno::OPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
