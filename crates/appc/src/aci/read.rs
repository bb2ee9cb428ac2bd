//! Reading ACIs: the hashing reader, the entry walker and the layout checker
//! that [`validate`] and [`extract`](super::extract) share, so the two can
//! never disagree about what is acceptable.
//!
//! The image ID covers *every* decompressed byte, including the tar
//! end-of-archive blocks and any padding after them (`gzip -dc f.aci |
//! sha512sum`). The tar reader stops at the first zero block, so the walker
//! drains the rest of the stream through the hash before it reports the ID.
//!
//! Hashing runs on its own thread: SHA-512 (~600 MB/s) is slower than
//! inflating (~850 MB/s), and doing both on one thread would make `validate`
//! markedly slower than `gzip -dc | sha512sum`, which gets two processes.
//! Blocks are shared with the hashing thread by `Arc`, without copying; the
//! channel is bounded, so memory stays at a few blocks.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256, Sha512};

use super::{decompress, AciError, Compression, IO_BUF};
use crate::error::Problem;
use crate::manifest::ImageManifest;
use crate::types::ImageId;

/// Largest manifest accepted (the spec sets no limit; this one only keeps a
/// hostile image from making us buffer gigabytes).
pub(crate) const MAX_MANIFEST: u64 = 16 << 20;

/// Blocks in flight to the hashing thread.
const HASH_QUEUE: usize = 8;

/// What a [`HashingReader`] hashes the stream with.
#[derive(Clone)]
enum StreamHasher {
    /// An ACI's image ID.
    Sha512(Sha512),
    /// An OCI layer's diff_id.
    Sha256(Sha256),
}

impl StreamHasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            StreamHasher::Sha512(h) => h.update(b),
            StreamHasher::Sha256(h) => h.update(b),
        }
    }
}

/// What [`walk_opts`] hashes the decompressed stream with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamHash {
    /// SHA-512: the ACI image ID ([`Walked::image_id`]).
    ImageId,
    /// SHA-256: an OCI layer's diff_id ([`Walked::diff_id`]).
    DiffId,
    /// Nothing (only counted and classified).
    None,
}

/// A reader that hashes (SHA-512) every byte it passes on, on a second thread
/// once the stream is longer than one block. It also remembers the first
/// error of the reader it wraps, so that callers can tell a corrupt
/// compressed stream from a malformed tar.
pub struct HashingReader<R> {
    inner: R,
    block: Arc<Vec<u8>>,
    pos: usize,
    /// Hashes inline until the second block, then moves to a thread.
    local: Option<StreamHasher>,
    tx: Option<SyncSender<Arc<Vec<u8>>>>,
    worker: Option<JoinHandle<StreamHasher>>,
    total: u64,
    eof: bool,
    eof_delivered: bool,
    error: Option<io::Error>,
    inline_only: bool,
}

impl<R> std::fmt::Debug for HashingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingReader")
            .field("total", &self.total)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            block: Arc::new(Vec::new()),
            pos: 0,
            local: Some(StreamHasher::Sha512(Sha512::new())),
            tx: None,
            worker: None,
            total: 0,
            eof: false,
            eof_delivered: false,
            error: None,
            inline_only: false,
        }
    }

    /// A reader that only counts and classifies, without hashing: for OCI
    /// layers, whose digest is checked on the compressed bytes instead (a
    /// SHA-512 of every layer would cost a core for nothing).
    pub(crate) fn without_hash(inner: R) -> Self {
        let mut r = HashingReader::new(inner);
        r.local = None;
        r.inline_only = true;
        r
    }

    /// A reader that hashes with SHA-256 instead: an OCI layer's diff_id
    /// (image-spec config.md: the digest of the uncompressed tar), read with
    /// [`HashingReader::finish_sha256`]. On the hashing thread, as SHA-512.
    pub(crate) fn sha256(inner: R) -> Self {
        let mut r = HashingReader::new(inner);
        r.local = Some(StreamHasher::Sha256(Sha256::new()));
        r
    }

    /// Bytes read from the wrapped reader (and hashed) so far.
    pub fn bytes_read(&self) -> u64 {
        self.total
    }

    /// Whether a reader of this one was told "end of stream": a failure
    /// after that means the stream ended too early.
    pub fn hit_eof(&self) -> bool {
        self.eof_delivered
    }

    /// The first error the wrapped reader returned, if any (taken).
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Read the next block from the wrapped reader and hash it. Returns false
    /// at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), "the image stream failed before"));
        }
        let mut buf = vec![0u8; IO_BUF];
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    self.error = Some(e);
                    if n == 0 {
                        return Err(io::Error::new(kind, "reading the image stream failed"));
                    }
                    break;
                }
            }
        }
        if n == 0 {
            return Ok(false);
        }
        buf.truncate(n);
        self.total += n as u64;
        self.block = Arc::new(buf);
        self.pos = 0;
        self.hash_block();
        Ok(true)
    }

    fn hash_block(&mut self) {
        if self.tx.is_none() && self.total as usize > IO_BUF && !self.inline_only {
            self.start_thread();
        }
        match (&self.tx, self.local.as_mut()) {
            (Some(tx), _) => {
                // A send fails only if the hashing thread is gone (a panic in
                // sha2); finish() reports that.
                let _ = tx.send(Arc::clone(&self.block));
            }
            (None, Some(h)) => h.update(self.block.as_slice()),
            (None, None) => {}
        }
    }

    /// Move hashing to its own thread (from the second block on, so small
    /// images never start one). Without a thread, go on hashing inline.
    fn start_thread(&mut self) {
        let Some(local) = &self.local else { return };
        let (tx, rx) = sync_channel::<Arc<Vec<u8>>>(HASH_QUEUE);
        let mut h = local.clone();
        let spawned = std::thread::Builder::new()
            .name("aci-stream-hash".into())
            .spawn(move || {
                for block in rx {
                    h.update(block.as_slice());
                }
                h
            });
        match spawned {
            Ok(handle) => {
                self.worker = Some(handle);
                self.tx = Some(tx);
                self.local = None;
            }
            Err(_) => self.inline_only = true,
        }
    }

    /// Read and hash everything that is left, without copying it anywhere.
    pub fn drain(&mut self) -> io::Result<()> {
        while self.fill()? {}
        Ok(())
    }

    /// Wait for the hash of everything read so far: the image ID.
    pub fn finish(self) -> io::Result<ImageId> {
        let h = match self.finish_hasher()? {
            Some(StreamHasher::Sha512(h)) => h,
            _ => Sha512::new(),
        };
        Ok(ImageId::from_sha512(&h.finalize()))
    }

    /// Wait for the SHA-256 of everything read so far (`sha256:<hex>`), for
    /// a reader made by [`HashingReader::sha256`]; `None` for another.
    pub(crate) fn finish_sha256(self) -> io::Result<Option<String>> {
        Ok(match self.finish_hasher()? {
            Some(StreamHasher::Sha256(h)) => Some(format!(
                "sha256:{}",
                h.finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )),
            _ => None,
        })
    }

    fn finish_hasher(mut self) -> io::Result<Option<StreamHasher>> {
        self.tx = None;
        match self.worker.take() {
            Some(w) => w
                .join()
                .map(Some)
                .map_err(|_| io::Error::other("the hashing thread panicked")),
            None => Ok(self.local.take()),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.block.len() && !self.fill()? {
            self.eof_delivered |= !out.is_empty();
            return Ok(0);
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The kind of a tar entry, as far as ACIs care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
    Other(u8),
}

impl Kind {
    fn of(t: tar::EntryType) -> Kind {
        use tar::EntryType as T;
        match t {
            T::Regular | T::Continuous | T::GNUSparse => Kind::Regular,
            T::Directory => Kind::Dir,
            T::Symlink => Kind::Symlink,
            T::Link => Kind::HardLink,
            T::Char => Kind::Char,
            T::Block => Kind::Block,
            T::Fifo => Kind::Fifo,
            other => Kind::Other(other.as_byte()),
        }
    }
}

/// One entry's metadata, with PAX/GNU extensions applied.
#[derive(Debug, Clone)]
pub(crate) struct EntryMeta {
    /// The entry's path as written in the archive, for messages.
    pub name: String,
    /// The entry's path normalised: components without `.` and empty ones.
    /// `None` when the path is absolute or has a `..` component.
    pub components: Option<Vec<Vec<u8>>>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub link: Option<Vec<u8>>,
    pub dev: (u32, u32),
    /// `SCHILY.xattr.*` PAX records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryMeta {
    fn from_entry<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<EntryMeta> {
        let raw = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let h = e.header();
        let kind = Kind::of(h.entry_type());
        let mode = h.mode()? & 0o7777;
        let uid = h.uid()?;
        let gid = h.gid()?;
        let mut mtime = h.mtime()?;
        let dev = match kind {
            Kind::Char | Kind::Block => (
                h.device_major()?.unwrap_or(0),
                h.device_minor()?.unwrap_or(0),
            ),
            _ => (0, 0),
        };
        let size = e.size();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    // "1700000000.5": whole seconds are all we keep.
                    if let Some(secs) = ext
                        .value()
                        .ok()
                        .and_then(|v| v.split('.').next())
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        mtime = secs;
                    }
                }
            }
        }
        Ok(EntryMeta {
            name: String::from_utf8_lossy(&raw).into_owned(),
            components: normalize(&raw),
            kind,
            mode,
            uid,
            gid,
            mtime,
            size,
            link,
            dev,
            xattrs,
        })
    }
}

/// Split an archive path into its components, dropping empty and `.` ones.
/// `None` for an absolute path or one with a `..` component.
pub(crate) fn normalize(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    if raw.first() == Some(&b'/') {
        return None;
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

fn join(components: &[Vec<u8>]) -> Vec<u8> {
    components.join(&b'/')
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What the layout checker says about one entry.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Problems with this entry (reasons, without the entry name).
    pub problems: Vec<String>,
    /// Acceptable but notable: device nodes.
    pub warnings: Vec<String>,
}

/// The rules of spec/aci.md plus the safety rules of an extractor, applied
/// entry by entry in archive order (a hard link may only name an entry that
/// came before it, as in tar itself).
#[derive(Debug, Default)]
pub(crate) struct LayoutChecker {
    seen: HashMap<Vec<u8>, Kind>,
    manifest: bool,
    rootfs: bool,
    /// Checking an OCI layer: paths are rootfs-relative (no `manifest`, no
    /// `rootfs/`), and whiteout names are checked.
    layer: bool,
    /// An OCI layer over the layers below: a hard link may name a path this
    /// layer does not have (the extractor looks for it below).
    lower: bool,
}

/// The prefix of an OCI whiteout file (image-spec layer.md).
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of an OCI opaque-directory marker.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

impl LayoutChecker {
    /// A checker for an OCI layer instead of an ACI; `lower`: laid over
    /// the tree of the layers below, where a hard link may find its target
    /// (see [`LayerOptions::lower`](super::LayerOptions::lower)).
    pub fn for_layer(lower: bool) -> LayoutChecker {
        LayoutChecker {
            layer: true,
            lower,
            ..LayoutChecker::default()
        }
    }

    pub fn check(&mut self, e: &EntryMeta) -> Verdict {
        let mut v = Verdict::default();
        // Absolute names and `..` components: the "tar slip" class, where
        // an archive entry names a path outside the directory it is
        // extracted into (for links, CVE-2014-9356 and CVE-2014-6407 in
        // docker). Refused outright, never "sanitised" into something else.
        let Some(c) = &e.components else {
            if e.name.starts_with('/') {
                v.problems.push("absolute path".into());
            } else {
                v.problems.push("path contains \"..\"".into());
            }
            return v;
        };
        if let Kind::Other(t) = e.kind {
            v.problems
                .push(format!("unsupported entry type {:?}", char::from(t)));
        }
        if c.is_empty() {
            // "." or "./": the archive's top directory; harmless if a directory.
            if e.kind != Kind::Dir {
                v.problems
                    .push("the archive root must be a directory".into());
            }
            return v;
        }
        match c[0].as_slice() {
            _ if self.layer => {
                let last = c[c.len() - 1].as_slice();
                if let Some(target) = last.strip_prefix(WHITEOUT_PREFIX) {
                    // A whiteout names a sibling in a lower layer; `.wh..`
                    // or `.wh.` would delete the parent or the directory
                    // itself (an escape in a naive implementation).
                    if matches!(target, b"" | b"." | b"..") {
                        v.problems.push(format!("whiteout of {:?}", lossy(target)));
                    }
                    // `.wh..wh.plnk/` and the like are AUFS's own
                    // directories, left out whole by the extractor.
                    if e.kind == Kind::Dir && !target.starts_with(WHITEOUT_PREFIX) {
                        v.problems.push("a whiteout must not be a directory".into());
                    }
                }
            }
            b"manifest" => {
                if c.len() > 1 {
                    v.problems
                        .push("path goes through \"manifest\", which must be a file".into());
                } else if e.kind != Kind::Regular {
                    v.problems.push("manifest must be a regular file".into());
                } else {
                    self.manifest = true;
                }
            }
            b"rootfs" => {
                if c.len() == 1 {
                    if e.kind != Kind::Dir {
                        v.problems.push("rootfs must be a directory".into());
                    } else {
                        self.rootfs = true;
                    }
                }
            }
            other => v.problems.push(format!(
                "unexpected top-level entry {:?} (an image holds only manifest and rootfs/)",
                lossy(other)
            )),
        }
        let key = join(c);
        if self.seen.contains_key(&key) {
            v.problems.push("duplicate entry".into());
        }
        for i in 1..c.len() {
            match self.seen.get(&join(&c[..i])) {
                None | Some(Kind::Dir) => {}
                Some(Kind::Symlink) => v.problems.push(format!(
                    "path goes through the symlink {:?}",
                    lossy(&join(&c[..i]))
                )),
                Some(_) => v.problems.push(format!(
                    "path goes through {:?}, which is not a directory",
                    lossy(&join(&c[..i]))
                )),
            }
        }
        match e.kind {
            Kind::HardLink => self.check_hard_link(e, &mut v),
            // A layer's symlinks may point anywhere: they are resolved
            // inside the rootfs at run time, and rendering never follows one.
            Kind::Symlink if self.layer && e.link.as_deref().unwrap_or_default().is_empty() => {
                v.problems.push("symlink without a target".into());
            }
            Kind::Symlink if self.layer => {}
            Kind::Symlink => check_symlink(c, e.link.as_deref().unwrap_or_default(), &mut v),
            Kind::Char | Kind::Block => v.warnings.push(format!(
                "device node {}:{} (created only by extraction as root, when asked)",
                e.dev.0, e.dev.1
            )),
            _ => {}
        }
        // A hard link takes the kind of its target for later parent checks.
        let kind = match e.kind {
            Kind::HardLink => Kind::Regular,
            k => k,
        };
        self.seen.entry(key).or_insert(kind);
        v
    }

    fn check_hard_link(&self, e: &EntryMeta, v: &mut Verdict) {
        let target = e.link.as_deref().unwrap_or_default();
        let shown = lossy(target);
        if target.is_empty() {
            v.problems.push("hard link without a target".into());
            return;
        }
        let Some(t) = normalize(target) else {
            v.problems
                .push(format!("hard link to {shown:?}, outside the image"));
            return;
        };
        if self.layer && t.is_empty() {
            v.problems
                .push(format!("hard link to {shown:?}, the layer's root"));
            return;
        }
        if !self.layer && (t.len() < 2 || t[0] != b"rootfs") {
            v.problems
                .push(format!("hard link to {shown:?}, outside rootfs/"));
            return;
        }
        match self.seen.get(&join(&t)) {
            // Maybe a file of the layers below, where the extractor looks
            // for it (never through a symlink). Not through a symlink or a
            // file of this layer, though: that path would not lead to the
            // lower file in the layer's resulting filesystem.
            None if self.lower => {
                if e.components.as_deref() == Some(t.as_slice()) {
                    v.problems.push(format!("hard link to {shown:?}, itself"));
                    return;
                }
                for i in 1..t.len() {
                    match self.seen.get(&join(&t[..i])) {
                        None | Some(Kind::Dir) => {}
                        Some(k) => {
                            v.problems.push(format!(
                                "hard link to {shown:?}, through {:?}, which is {} in this layer",
                                lossy(&join(&t[..i])),
                                if *k == Kind::Symlink {
                                    "a symlink"
                                } else {
                                    "not a directory"
                                }
                            ));
                            return;
                        }
                    }
                }
            }
            None => v.problems.push(format!(
                "hard link to {shown:?}, which is not an earlier entry"
            )),
            Some(Kind::Dir) => v
                .problems
                .push(format!("hard link to {shown:?}, a directory")),
            Some(_) => {}
        }
    }

    /// Problems that only the end of the archive reveals.
    pub fn finish(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.layer {
            return p;
        }
        if !self.manifest {
            p.push(Problem::new(
                "manifest",
                "missing (an image needs a manifest file)",
            ));
        }
        if !self.rootfs {
            p.push(Problem::new(
                "rootfs",
                "missing (an image needs a rootfs/ directory entry)",
            ));
        }
        p
    }
}

/// A symlink may point anywhere inside the rootfs. Absolute targets are fine:
/// at run time they resolve against the rootfs (`/..` is `/`). A relative
/// target that climbs above the rootfs is reported: it is meaningless inside
/// the image and a classic means of escaping an extractor.
fn check_symlink(c: &[Vec<u8>], target: &[u8], v: &mut Verdict) {
    if target.is_empty() {
        v.problems.push("symlink without a target".into());
        return;
    }
    if target.first() == Some(&b'/') {
        return;
    }
    // The symlink's directory, relative to rootfs/.
    let mut depth = c.len().saturating_sub(2) as isize;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    v.problems.push(format!(
                        "symlink target {:?} escapes rootfs/",
                        lossy(target)
                    ));
                    return;
                }
            }
            _ => depth += 1,
        }
    }
}

/// What [`walk`] hands its visitor's errors back as.
pub(crate) enum VisitError {
    /// Reading the entry's data failed (the stream's fault: classified).
    Data(io::Error),
    /// The visitor itself failed.
    Aci(AciError),
}

impl From<AciError> for VisitError {
    fn from(e: AciError) -> Self {
        VisitError::Aci(e)
    }
}

/// The totals of a complete walk.
#[derive(Debug)]
pub(crate) struct Walked {
    pub image_id: ImageId,
    pub compression: Compression,
    pub entries: u64,
    pub tar_size: u64,
    /// `sha256:<hex>` of the whole decompressed stream, under
    /// [`StreamHash::DiffId`].
    pub diff_id: Option<String>,
}

type Visitor<'v> = dyn FnMut(&EntryMeta, &mut dyn Read) -> Result<(), VisitError> + 'v;

/// Decompress and read the whole archive once, calling `visit` for each
/// entry (PAX global headers excluded) with a reader of its data, then drain
/// and hash the rest of the stream.
pub(crate) fn walk<R: Read>(r: R, visit: &mut Visitor<'_>) -> Result<Walked, AciError> {
    walk_opts(r, StreamHash::ImageId, visit)
}

/// [`walk`], hashing the decompressed stream as `hash` says; without
/// [`StreamHash::ImageId`] the ID in the result is meaningless. Whatever the
/// hash, it covers the whole stream, the end-of-archive blocks and any
/// padding after them included (the walk drains the stream).
pub(crate) fn walk_opts<R: Read>(
    r: R,
    hash: StreamHash,
    visit: &mut Visitor<'_>,
) -> Result<Walked, AciError> {
    let (compression, reader) = decompress(r)?;
    let hr = match hash {
        StreamHash::ImageId => HashingReader::new(reader),
        StreamHash::DiffId => HashingReader::sha256(reader),
        StreamHash::None => HashingReader::without_hash(reader),
    };
    let mut archive = tar::Archive::new(hr);
    let mut entries = 0u64;
    let mut last = String::new();
    let outcome: Result<(), VisitError> = (|| {
        for e in archive.entries().map_err(VisitError::Data)? {
            let mut e = e.map_err(VisitError::Data)?;
            if e.header().entry_type().is_pax_global_extensions() {
                continue;
            }
            let meta = EntryMeta::from_entry(&mut e).map_err(VisitError::Data)?;
            last = meta.name.clone();
            entries += 1;
            visit(&meta, &mut e)?;
        }
        Ok(())
    })();
    let mut hr = archive.into_inner();
    match outcome {
        Ok(()) => {}
        Err(VisitError::Aci(e)) => return Err(e),
        Err(VisitError::Data(e)) => return Err(classify(&mut hr, e, compression, &last)),
    }
    if hr.bytes_read() == 0 {
        return Err(AciError::NotTar {
            reason: "the stream is empty".into(),
        });
    }
    if let Err(e) = hr.drain() {
        return Err(classify(&mut hr, e, compression, &last));
    }
    let tar_size = hr.bytes_read();
    let (image_id, diff_id) = match hash {
        StreamHash::DiffId => (
            ImageId::from_sha512(&Sha512::new().finalize()),
            hr.finish_sha256().map_err(AciError::Read)?,
        ),
        _ => (hr.finish().map_err(AciError::Read)?, None),
    };
    Ok(Walked {
        image_id,
        compression,
        entries,
        tar_size,
        diff_id,
    })
}

/// Name the cause of a failed read: the decoder, the end of the stream, or a
/// malformed tar header.
fn classify<R: Read>(
    hr: &mut HashingReader<R>,
    e: io::Error,
    compression: Compression,
    last: &str,
) -> AciError {
    if let Some(source) = hr.take_error() {
        return match compression {
            Compression::None => AciError::Read(source),
            _ => AciError::Decompress {
                compression,
                source,
            },
        };
    }
    if hr.bytes_read() == 0 {
        return AciError::NotTar {
            reason: "the stream is empty".into(),
        };
    }
    if hr.hit_eof() || e.kind() == io::ErrorKind::UnexpectedEof {
        return AciError::Truncated {
            entry: last.to_string(),
        };
    }
    AciError::NotTar {
        reason: if last.is_empty() {
            e.to_string()
        } else {
            format!("{e} (after entry {last:?})")
        },
    }
}

/// The result of [`validate`].
#[derive(Debug, Clone)]
pub struct ValidateReport {
    pub image_id: ImageId,
    pub compression: Compression,
    /// The parsed manifest, when it is present and valid.
    pub manifest: Option<ImageManifest>,
    /// The manifest's bytes, when present (even if they do not parse).
    pub manifest_bytes: Option<Vec<u8>>,
    /// Everything that makes the image invalid; `path` is the entry's name
    /// (`manifest` for the manifest's own problems).
    pub problems: Vec<Problem>,
    /// Acceptable but notable (device nodes).
    pub warnings: Vec<Problem>,
    /// Tar entries (PAX global headers not counted).
    pub entries: u64,
    /// Bytes of the decompressed stream.
    pub tar_size: u64,
}

impl ValidateReport {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty() && self.manifest.is_some()
    }
}

/// Read a manifest entry's bytes, refusing absurd sizes.
fn read_manifest(data: &mut dyn Read, size: u64) -> Result<Result<Vec<u8>, String>, io::Error> {
    if size > MAX_MANIFEST {
        return Ok(Err(format!(
            "the manifest is {size} bytes; more than {MAX_MANIFEST} is refused"
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    data.read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the manifest entry is cut short",
        ));
    }
    Ok(Ok(bytes))
}

/// What a walk gathers for a [`ValidateReport`], entry by entry: the
/// layout checker's verdicts and the manifest's bytes. Shared by
/// [`validate`] and [`validate_extract`](super::validate_extract), so that
/// importing with or without extracting judges an image the same way.
#[derive(Default)]
pub(crate) struct Judge {
    checker: LayoutChecker,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    manifest_bytes: Option<Vec<u8>>,
}

impl Judge {
    /// Check one entry. `Ok(None)`: the entry has no problem (and is not
    /// the manifest); `Ok(Some(bytes))`: it is the manifest, whose bytes
    /// were read from `data`; `Err(reason)`: its first problem (all of them
    /// are recorded).
    pub(crate) fn entry(
        &mut self,
        e: &EntryMeta,
        data: &mut dyn Read,
    ) -> Result<Result<Option<&[u8]>, String>, VisitError> {
        let v = self.checker.check(e);
        let first = v.problems.first().cloned();
        self.problems
            .extend(v.problems.into_iter().map(|m| Problem::new(&e.name, m)));
        self.warnings
            .extend(v.warnings.into_iter().map(|m| Problem::new(&e.name, m)));
        if let Some(reason) = first {
            return Ok(Err(reason));
        }
        if e.kind == Kind::Regular && e.components.as_deref() == Some(&[b"manifest".to_vec()]) {
            match read_manifest(data, e.size).map_err(VisitError::Data)? {
                Ok(bytes) => {
                    self.manifest_bytes = Some(bytes);
                    return Ok(Ok(self.manifest_bytes.as_deref()));
                }
                Err(m) => {
                    self.problems.push(Problem::new(&e.name, m.clone()));
                    return Ok(Err(m));
                }
            }
        }
        Ok(Ok(None))
    }

    /// The report of a complete walk: adds what only the end reveals (a
    /// missing manifest or rootfs/) and parses the manifest.
    pub(crate) fn report(self, walked: Walked) -> ValidateReport {
        let Judge {
            checker,
            mut problems,
            warnings,
            manifest_bytes,
        } = self;
        // A missing manifest is already explained if one was present but bad.
        let bad_manifest = problems.iter().any(|q| is_manifest_entry(&q.path));
        problems.extend(
            checker
                .finish()
                .into_iter()
                .filter(|p| !(p.path == "manifest" && bad_manifest)),
        );
        let mut manifest = None;
        if let Some(bytes) = &manifest_bytes {
            match ImageManifest::from_json(bytes) {
                Ok(m) => manifest = Some(m),
                Err(err) => problems.extend(
                    err.problems
                        .into_iter()
                        .map(|p| Problem::new("manifest", p.to_string())),
                ),
            }
        }
        ValidateReport {
            image_id: walked.image_id,
            compression: walked.compression,
            manifest,
            manifest_bytes,
            problems,
            warnings,
            entries: walked.entries,
            tar_size: walked.tar_size,
        }
    }
}

/// Stream the whole archive once: hash it, check its layout and every entry,
/// parse the manifest. `Err` only for what makes the stream unreadable;
/// everything else is in [`ValidateReport::problems`].
pub fn validate<R: Read>(r: R) -> Result<ValidateReport, AciError> {
    let mut judge = Judge::default();
    let walked = walk(r, &mut |e, data| judge.entry(e, data).map(|_| ()))?;
    Ok(judge.report(walked))
}

fn is_manifest_entry(name: &str) -> bool {
    normalize(name.as_bytes()).is_some_and(|c| c.first().is_some_and(|f| f == b"manifest"))
}

/// Just the manifest's bytes: stops reading as soon as it has them (the
/// manifest normally comes first). Does not hash and does not check the rest
/// of the archive; use [`validate`] for that.
pub fn read_manifest_bytes<R: Read>(r: R) -> Result<Vec<u8>, AciError> {
    let (compression, reader) = decompress(r)?;
    let mut hr = HashingReader::new(reader);
    let mut last = String::new();
    let found: Result<Option<Vec<u8>>, VisitError> = (|| {
        let mut archive = tar::Archive::new(&mut hr);
        for e in archive.entries().map_err(VisitError::Data)? {
            let mut e = e.map_err(VisitError::Data)?;
            let raw = e.path_bytes().into_owned();
            last = lossy(&raw);
            if normalize(&raw).as_deref() != Some(&[b"manifest".to_vec()]) {
                continue;
            }
            if Kind::of(e.header().entry_type()) != Kind::Regular {
                return Err(AciError::Hostile {
                    entry: last.clone(),
                    reason: "manifest must be a regular file".into(),
                }
                .into());
            }
            let size = e.size();
            return match read_manifest(&mut e, size).map_err(VisitError::Data)? {
                Ok(bytes) => Ok(Some(bytes)),
                Err(reason) => Err(AciError::Hostile {
                    entry: last.clone(),
                    reason,
                }
                .into()),
            };
        }
        Ok(None)
    })();
    match found {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) if hr.bytes_read() == 0 => Err(AciError::NotTar {
            reason: "the stream is empty".into(),
        }),
        Ok(None) => Err(AciError::Layout {
            path: "manifest".into(),
            reason: "missing (an image needs a manifest file)".into(),
        }),
        Err(VisitError::Aci(e)) => Err(e),
        Err(VisitError::Data(e)) => Err(classify(&mut hr, e, compression, &last)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(
            normalize(b"./rootfs//a/./b/"),
            Some(vec![b"rootfs".to_vec(), b"a".to_vec(), b"b".to_vec()])
        );
        assert_eq!(normalize(b"rootfs/../x"), None);
        assert_eq!(normalize(b"/rootfs/x"), None);
        assert_eq!(normalize(b"./"), Some(vec![]));
    }

    #[test]
    fn symlink_escape() {
        let c = normalize(b"rootfs/a/b").unwrap();
        let mut v = Verdict::default();
        check_symlink(&c, b"../x", &mut v);
        check_symlink(&c, b"/../../etc", &mut v);
        assert!(v.problems.is_empty());
        check_symlink(&c, b"../../x", &mut v);
        assert_eq!(v.problems.len(), 1);
    }

    #[test]
    fn hashing_reader_hashes_everything() {
        let data: Vec<u8> = (0..(3 * IO_BUF + 17)).map(|i| (i % 251) as u8).collect();
        let mut hr = HashingReader::new(&data[..]);
        let mut first = [0u8; 1000];
        hr.read_exact(&mut first).unwrap();
        hr.drain().unwrap();
        assert_eq!(hr.bytes_read(), data.len() as u64);
        let id = hr.finish().unwrap();
        assert_eq!(id, ImageId::from_sha512(&Sha512::digest(&data)));
    }
}
