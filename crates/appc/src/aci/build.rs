//! Building an ACI from a directory holding `manifest` and `rootfs/`.
//!
//! Reproducible: the same directory gives the same bytes (and so the same
//! image ID) whatever the order `readdir` returns, the user running the build
//! or the clock, when `mtime` is fixed:
//!
//! - entries are `manifest`, `rootfs/`, then rootfs depth first, each
//!   directory's names sorted bytewise, a directory before its content;
//! - owners are numeric (no user or group names), modes keep setuid/setgid/
//!   sticky, xattrs are stored as PAX `SCHILY.xattr.*` records in name order;
//! - extended headers have a fixed name and no time stamps; the gzip header
//!   has neither name nor time.
//!
//! Nothing is ever opened but regular files: device nodes, fifos and
//! sockets are archived from `lstat` alone (`actool build` opens every file,
//! and hangs forever on a rootfs holding `/dev/console` or a fifo). Regular
//! files are opened `O_NOFOLLOW|O_NONBLOCK|O_NOCTTY` and checked with
//! `fstat` to be the file that was listed. Symlinks are stored, never
//! followed. Sockets cannot be represented in tar: they are skipped with a
//! warning. Files with several links in the tree become tar hard links to
//! their first occurrence.
//!
//! The SHA-512 of the tar stream (the image ID) is computed as it is written,
//! so the ID costs no second read.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha512};

use super::pgzip::ParGzWriter;
use super::{AciError, Compression, IO_BUF};
use crate::manifest::ImageManifest;
use crate::types::ImageId;

/// How [`build`] writes an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub compression: Compression,
    /// Compression level; `None` is the tool's default (gzip 6, bzip2 9,
    /// xz 6, zstd 3). Clamped to what the encoder accepts.
    pub level: Option<u32>,
    /// One modification time (seconds since the epoch) for every entry, for
    /// reproducible images; `None` keeps each file's own.
    pub mtime: Option<u64>,
    /// Compression threads; 0 means one per core.
    pub threads: usize,
    /// Replace `out` if it exists.
    pub overwrite: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            compression: Compression::Gzip,
            level: None,
            mtime: None,
            threads: 0,
            overwrite: false,
        }
    }
}

/// What [`build`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    pub image_id: ImageId,
    /// Bytes of the image file.
    pub compressed_size: u64,
    /// Bytes of the tar stream.
    pub tar_size: u64,
    /// Tar entries (extended headers not counted).
    pub entries: u64,
    /// What was left out, and why (sockets, unknown file types).
    pub warnings: Vec<String>,
}

/// Build an ACI from `dir` (holding exactly `manifest` and `rootfs/`) into
/// `out`, atomically: a temporary file in `out`'s directory, fsynced, then
/// renamed over `out`. The manifest is validated strictly before anything is
/// written. An existing `out` is refused unless `opts.overwrite`.
pub fn build(dir: &Path, out: &Path, opts: &BuildOptions) -> Result<BuildReport, AciError> {
    let manifest_path = dir.join("manifest");
    let rootfs_path = dir.join("rootfs");
    check_layout(dir)?;
    let manifest = fs::read(&manifest_path).map_err(|e| AciError::io("read", &manifest_path, e))?;
    ImageManifest::from_json(&manifest)?;

    if !opts.overwrite && fs::symlink_metadata(out).is_ok() {
        return Err(AciError::Exists { path: out.into() });
    }
    let (tmp_path, file) = create_temp(out)?;
    let result = write_image(&manifest_path, &manifest, &rootfs_path, file, opts).and_then(
        |(report, file)| {
            file.sync_all()
                .map_err(|e| AciError::io("fsync", &tmp_path, e))?;
            drop(file);
            install(&tmp_path, out, opts.overwrite)?;
            Ok(report)
        },
    );
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

/// `dir` must hold `manifest` (a regular file) and `rootfs` (a directory),
/// and nothing else.
fn check_layout(dir: &Path) -> Result<(), AciError> {
    let meta = fs::metadata(dir).map_err(|e| AciError::io("stat", dir, e))?;
    if !meta.is_dir() {
        return Err(AciError::Layout {
            path: dir.into(),
            reason: "not a directory".into(),
        });
    }
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| AciError::io("read directory", dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| AciError::io("read directory", dir, e))?;
    names.sort();
    for name in &names {
        if name != "manifest" && name != "rootfs" {
            return Err(AciError::Layout {
                path: dir.join(name),
                reason: "unexpected: an image directory holds only manifest and rootfs/".into(),
            });
        }
    }
    for (name, want_dir) in [("manifest", false), ("rootfs", true)] {
        let p = dir.join(name);
        let m = fs::symlink_metadata(&p).map_err(|e| AciError::io("stat", &p, e))?;
        let ok = if want_dir {
            m.file_type().is_dir()
        } else {
            m.file_type().is_file()
        };
        if !ok {
            return Err(AciError::Layout {
                path: p,
                reason: if want_dir {
                    "must be a directory (not a symlink)".into()
                } else {
                    "must be a regular file (not a symlink)".into()
                },
            });
        }
    }
    Ok(())
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn create_temp(out: &Path) -> Result<(PathBuf, File), AciError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| AciError::Layout {
            path: out.into(),
            reason: "the output needs a file name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(AciError::io("create", tmp, e)),
        }
    }
}

/// Move the finished temporary file to `out`; without `overwrite`, never
/// replace a file that appeared meanwhile (`RENAME_NOREPLACE`).
fn install(tmp: &Path, out: &Path, overwrite: bool) -> Result<(), AciError> {
    if overwrite {
        fs::rename(tmp, out).map_err(|e| AciError::io("rename into place", out, e))?;
    } else {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, tmp, CWD, out, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => return Err(AciError::Exists { path: out.into() }),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                // A file system without RENAME_NOREPLACE: check, then rename.
                if fs::symlink_metadata(out).is_ok() {
                    return Err(AciError::Exists { path: out.into() });
                }
                fs::rename(tmp, out).map_err(|e| AciError::io("rename into place", out, e))?;
            }
            Err(e) => return Err(AciError::io("rename into place", out, e.into())),
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the rename durable; a failure here loses nothing written.
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Counts the bytes that reach the file.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Out = Counting<BufWriter<File>>;

/// The compressor in front of the output file.
enum Sink {
    None(Out),
    Gzip(ParGzWriter<File>),
    Bzip2(bzip2::write::BzEncoder<Out>),
    Xz(liblzma::write::XzEncoder<Out>),
    Zstd(zstd::stream::write::Encoder<'static, Out>),
}

impl Sink {
    fn new(file: File, opts: &BuildOptions) -> io::Result<Sink> {
        let c = opts.compression;
        let level = opts.level.unwrap_or(c.default_level()).min(c.max_level());
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let out = || -> io::Result<Out> {
            Ok(Counting {
                inner: BufWriter::with_capacity(IO_BUF, file.try_clone()?),
                n: 0,
            })
        };
        Ok(match c {
            Compression::None => Sink::None(out()?),
            Compression::Gzip => Sink::Gzip(ParGzWriter::new(file.try_clone()?, level, threads)?),
            Compression::Bzip2 => Sink::Bzip2(bzip2::write::BzEncoder::new(
                out()?,
                bzip2::Compression::new(level.max(1)),
            )),
            Compression::Xz => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .preset(level)
                    .check(liblzma::stream::Check::Crc64)
                    .threads(threads as u32)
                    .encoder()
                    .map_err(io::Error::other)?;
                Sink::Xz(liblzma::write::XzEncoder::new_stream(out()?, stream))
            }
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out()?, level.max(1) as i32)?;
                e.include_checksum(true)?;
                if threads > 1 {
                    e.multithread(threads as u32)?;
                }
                Sink::Zstd(e)
            }
        })
    }

    /// Flush everything; the compressed size.
    fn finish(self) -> io::Result<u64> {
        let mut out = match self {
            Sink::None(o) => o,
            Sink::Gzip(g) => return g.finish().map(|(_, n)| n),
            Sink::Bzip2(e) => e.finish()?,
            Sink::Xz(e) => e.finish()?,
            Sink::Zstd(e) => e.finish()?,
        };
        out.flush()?;
        Ok(out.n)
    }
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Sink::None(w) => w.write(b),
            Sink::Gzip(w) => w.write(b),
            Sink::Bzip2(w) => w.write(b),
            Sink::Xz(w) => w.write(b),
            Sink::Zstd(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a write failure is reported: the output file.
struct TarOut<'a> {
    sink: Sink,
    sha: Sha512,
    size: u64,
    entries: u64,
    out_path: &'a Path,
}

impl TarOut<'_> {
    fn put(&mut self, b: &[u8]) -> Result<(), AciError> {
        self.sha.update(b);
        self.size += b.len() as u64;
        self.sink
            .write_all(b)
            .map_err(|e| AciError::io("write", self.out_path, e))
    }

    fn pad(&mut self, len: u64) -> Result<(), AciError> {
        let rem = (len % 512) as usize;
        if rem != 0 {
            self.put(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }
}

/// An entry's header fields.
struct Hdr<'p> {
    path: &'p [u8],
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    link: &'p [u8],
    dev: (u32, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Write `v` as NUL-terminated octal filling `field`; false if it does not fit.
fn octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        field[..digits].fill(b'0');
        field[digits] = 0;
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

/// Split a path for ustar's prefix (155) and name (100) fields.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((b"", path));
    }
    let limit = path.len().min(156);
    let i = path[..limit].iter().rposition(|&b| b == b'/')?;
    let (prefix, name) = (&path[..i], &path[i + 1..]);
    (!name.is_empty() && name.len() <= 100 && !prefix.is_empty()).then_some((prefix, name))
}

/// One PAX record: "<len> <key>=<value>\n", where len counts itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn raw_header(
    name: &[u8],
    prefix: &[u8],
    kind: u8,
    h: &Hdr<'_>,
    size: u64,
    pax: &mut Vec<u8>,
) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], u64::from(h.mode));
    if !octal(&mut b[108..116], h.uid) {
        pax_record(pax, b"uid", h.uid.to_string().as_bytes());
    }
    if !octal(&mut b[116..124], h.gid) {
        pax_record(pax, b"gid", h.gid.to_string().as_bytes());
    }
    if !octal(&mut b[124..136], size) {
        pax_record(pax, b"size", size.to_string().as_bytes());
    }
    if !octal(&mut b[136..148], h.mtime) {
        pax_record(pax, b"mtime", h.mtime.to_string().as_bytes());
    }
    b[156] = kind;
    if h.link.len() <= 100 {
        b[157..157 + h.link.len()].copy_from_slice(h.link);
    } else {
        pax_record(pax, b"linkpath", h.link);
    }
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if kind == b'3' || kind == b'4' {
        octal(&mut b[329..337], u64::from(h.dev.0));
        octal(&mut b[337..345], u64::from(h.dev.1));
    }
    b[345..345 + prefix.len()].copy_from_slice(prefix);
    b
}

fn checksum(b: &mut [u8; 512]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
}

impl TarOut<'_> {
    fn header(&mut self, h: &Hdr<'_>) -> Result<(), AciError> {
        let mut pax = Vec::new();
        let (prefix, name) = match split_ustar(h.path) {
            Some(split) => split,
            None => {
                pax_record(&mut pax, b"path", h.path);
                (&b""[..], &h.path[..100])
            }
        };
        let mut main = raw_header(name, prefix, h.kind, h, h.size, &mut pax);
        let mut xattrs = h.xattrs.clone();
        xattrs.sort();
        for (k, v) in &xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut pax, &key, v);
        }
        if !pax.is_empty() {
            let ext = Hdr {
                path: b"",
                kind: b'x',
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                size: 0,
                link: b"",
                dev: (0, 0),
                xattrs: Vec::new(),
            };
            let mut unused = Vec::new();
            let mut x = raw_header(
                b"././@PaxHeader",
                b"",
                b'x',
                &ext,
                pax.len() as u64,
                &mut unused,
            );
            checksum(&mut x);
            self.put(&x)?;
            self.put(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        checksum(&mut main);
        self.entries += 1;
        self.put(&main)
    }
}

/// The tree walker's state.
struct Walker<'a, 'o> {
    tar: TarOut<'o>,
    opts: &'a BuildOptions,
    links: HashMap<(u64, u64), Vec<u8>>,
    warnings: Vec<String>,
    buf: Vec<u8>,
}

fn write_image(
    manifest_path: &Path,
    manifest: &[u8],
    rootfs: &Path,
    file: File,
    opts: &BuildOptions,
) -> Result<(BuildReport, File), AciError> {
    let out_path = PathBuf::from("the image being written");
    let sink = Sink::new(
        file.try_clone()
            .map_err(|e| AciError::io("duplicate fd of", &out_path, e))?,
        opts,
    )
    .map_err(|e| AciError::io("start compressing", &out_path, e))?;
    let mut w = Walker {
        tar: TarOut {
            sink,
            sha: Sha512::new(),
            size: 0,
            entries: 0,
            out_path: &out_path,
        },
        opts,
        links: HashMap::new(),
        warnings: Vec::new(),
        buf: vec![0u8; IO_BUF],
    };
    let mmeta =
        fs::symlink_metadata(manifest_path).map_err(|e| AciError::io("stat", manifest_path, e))?;
    let mut h = w.hdr(b"manifest", b'0', &mmeta, manifest_path);
    h.size = manifest.len() as u64;
    w.tar.header(&h)?;
    w.tar.put(manifest)?;
    w.tar.pad(manifest.len() as u64)?;

    let rmeta = fs::symlink_metadata(rootfs).map_err(|e| AciError::io("stat", rootfs, e))?;
    let h = w.hdr(b"rootfs/", b'5', &rmeta, rootfs);
    w.tar.header(&h)?;
    w.dir(rootfs, b"rootfs")?;

    // End of archive: two zero blocks.
    w.tar.put(&[0u8; 1024])?;
    let Walker { tar, warnings, .. } = w;
    let compressed_size = tar
        .sink
        .finish()
        .map_err(|e| AciError::io("write", &out_path, e))?;
    Ok((
        BuildReport {
            image_id: ImageId::from_sha512(&tar.sha.finalize()),
            compressed_size,
            tar_size: tar.size,
            entries: tar.entries,
            warnings,
        },
        file,
    ))
}

impl Walker<'_, '_> {
    fn hdr<'p>(&self, path: &'p [u8], kind: u8, m: &fs::Metadata, fs_path: &Path) -> Hdr<'p> {
        Hdr {
            path,
            kind,
            mode: m.mode() & 0o7777,
            uid: u64::from(m.uid()),
            gid: u64::from(m.gid()),
            mtime: self
                .opts
                .mtime
                .unwrap_or_else(|| u64::try_from(m.mtime()).unwrap_or(0)),
            size: 0,
            link: b"",
            dev: (0, 0),
            xattrs: xattrs(fs_path),
        }
    }

    /// Archive the content of `dir` (whose own entry is written), sorted.
    fn dir(&mut self, dir: &Path, tar_dir: &[u8]) -> Result<(), AciError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| AciError::io("read directory", dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| AciError::io("read directory", dir, e))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let fs_path = dir.join(&name);
            let mut tar_path = tar_dir.to_vec();
            tar_path.push(b'/');
            tar_path.extend_from_slice(name.as_bytes());
            self.entry(&fs_path, tar_path)?;
        }
        Ok(())
    }

    fn entry(&mut self, fs_path: &Path, mut tar_path: Vec<u8>) -> Result<(), AciError> {
        let m = fs::symlink_metadata(fs_path).map_err(|e| AciError::io("stat", fs_path, e))?;
        let ft = m.file_type();
        if ft.is_dir() {
            tar_path.push(b'/');
            let h = self.hdr(&tar_path, b'5', &m, fs_path);
            self.tar.header(&h)?;
            tar_path.pop();
            return self.dir(fs_path, &tar_path);
        }
        if ft.is_socket() {
            self.warnings.push(format!(
                "{}: socket skipped (tar cannot hold sockets)",
                fs_path.display()
            ));
            return Ok(());
        }
        let kind = if ft.is_file() {
            b'0'
        } else if ft.is_symlink() {
            b'2'
        } else if ft.is_char_device() {
            b'3'
        } else if ft.is_block_device() {
            b'4'
        } else if ft.is_fifo() {
            b'6'
        } else {
            self.warnings
                .push(format!("{}: unknown file type, skipped", fs_path.display()));
            return Ok(());
        };
        if m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                let first = first.clone();
                let mut h = self.hdr(&tar_path, b'1', &m, fs_path);
                h.link = &first;
                h.xattrs.clear();
                return self.tar.header(&h);
            }
            self.links.insert((m.dev(), m.ino()), tar_path.clone());
        }
        let mut h = self.hdr(&tar_path, kind, &m, fs_path);
        match kind {
            b'2' => {
                let target =
                    fs::read_link(fs_path).map_err(|e| AciError::io("read link", fs_path, e))?;
                let target = target.as_os_str().as_bytes().to_vec();
                h.link = &target;
                self.tar.header(&h)
            }
            b'3' | b'4' => {
                let rdev = m.rdev() as rustix::fs::Dev;
                h.dev = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
                self.tar.header(&h)
            }
            b'6' => self.tar.header(&h),
            _ => self.file(fs_path, h, &m),
        }
    }

    fn file(
        &mut self,
        fs_path: &Path,
        mut h: Hdr<'_>,
        listed: &fs::Metadata,
    ) -> Result<(), AciError> {
        let open_err = |e| AciError::io("open", fs_path, e);
        // O_NONBLOCK: if a fifo was swapped in since lstat, open must not
        // hang; O_NOFOLLOW: nor may a symlink swapped in be followed.
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::NONBLOCK
                    | rustix::fs::OFlags::NOCTTY)
                    .bits() as i32,
            )
            .open(fs_path)
            .map_err(open_err)?;
        let m = f.metadata().map_err(|e| AciError::io("stat", fs_path, e))?;
        if !m.is_file() || m.ino() != listed.ino() || m.dev() != listed.dev() {
            return Err(AciError::io(
                "archive",
                fs_path,
                io::Error::other("the file was replaced while the image was being built"),
            ));
        }
        h.size = m.len();
        self.tar.header(&h)?;
        let mut left = h.size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(AciError::io(
                        "read",
                        fs_path,
                        io::Error::other("the file shrank while the image was being built"),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AciError::io("read", fs_path, e)),
            };
            let chunk = std::mem::take(&mut self.buf);
            let r = self.tar.put(&chunk[..n]);
            self.buf = chunk;
            r?;
            left -= n as u64;
        }
        self.tar.pad(h.size)
    }
}

/// The extended attributes of `path` (not following a symlink), every
/// namespace the caller can read. None where the file system has none.
fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    // Linux caps a list and a value at 64 KiB (XATTR_LIST_MAX, XATTR_SIZE_MAX).
    let mut list = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(path, &mut list[..]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; 65536];
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            out.push((name.to_vec(), value[..len].to_vec()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths() {
        let mut v = Vec::new();
        pax_record(&mut v, b"path", b"a");
        assert_eq!(v, b"9 path=a\n");
        let mut v = Vec::new();
        let long = vec![b'x'; 95];
        pax_record(&mut v, b"path", &long);
        assert_eq!(v.len(), 105);
        assert!(v.starts_with(b"105 path="));
    }

    #[test]
    fn ustar_split() {
        assert_eq!(split_ustar(b"a/b"), Some((&b""[..], &b"a/b"[..])));
        let mut p = vec![b'd'; 120];
        p.extend_from_slice(b"/file");
        assert_eq!(split_ustar(&p), Some((&p[..120], &b"file"[..])));
        assert_eq!(split_ustar(&[b'x'; 150]), None);
    }
}
