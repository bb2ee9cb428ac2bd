//! File-system helpers that work through directory fds and never follow a
//! symlink: removing, copying and hashing trees, durable writes.
//!
//! Trees hold image content, so every name in them is untrusted: a symlink
//! may point anywhere on the host. Every path is therefore resolved one
//! component at a time from a directory fd with `O_NOFOLLOW` (or with
//! `AT_SYMLINK_NOFOLLOW` for metadata), and files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, so nothing is ever read or written through a
//! symlink (the CVE-2018-15664 / CVE-2014-9356 class: a symlink planted in
//! an image redirects a runtime's copy or write onto the host).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;
use sha2::{Digest as _, Sha512};

/// Open the directory `name` in `dir`, refusing a symlink.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open a directory by path (the path is ours: the store or a caller's
/// destination; only the last component is refused as a symlink).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// The names in a directory (without `.` and `..`), sorted bytewise.
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let dup = rfs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for ent in rfs::Dir::read_from(&dup)? {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// Remove `name` in `dir`, recursively, never following a symlink.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let Some(st) = stat_at(dir, name)? else {
        return Ok(());
    };
    if file_type(&st) != FileType::Directory {
        return Ok(rfs::unlinkat(dir, name, AtFlags::empty())?);
    }
    let sub = open_dir_at(dir, name)?;
    for n in list(sub.as_fd())? {
        remove_at(sub.as_fd(), &n)?;
    }
    drop(sub);
    Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Remove a path (file or tree) if it exists.
pub(crate) fn remove_all(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        // std's remove_dir_all does not follow symlinks (CVE-2022-21658 fixed).
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// fsync a directory, making the renames into it durable.
pub(crate) fn fsync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

fn stat_times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Copy the extended attributes of `src` to `dst` (both fds of regular
/// files or directories). File systems without xattrs are not an error.
pub(crate) fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rfs::flistxattr(src, &mut names[..]) {
        Ok(n) => n,
        Err(Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let len = match rfs::fgetxattr(src, name, &mut value[..]) {
            Ok(len) => len,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        match rfs::fsetxattr(dst, name, &value[..len], rfs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Give `dst` the owner (as root), mode, xattrs and times of `src`; both
/// are fds of regular files or directories.
pub(crate) fn copy_meta(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let st = rfs::fstat(src)?;
    if rustix::process::geteuid().is_root() {
        rfs::fchown(
            dst,
            Some(rfs::Uid::from_raw(st.st_uid)),
            Some(rfs::Gid::from_raw(st.st_gid)),
        )?;
    }
    // After chown, which clears setuid/setgid.
    rfs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    copy_xattrs(src, dst)?;
    rfs::futimens(dst, &stat_times(&st))?;
    Ok(())
}

/// chmod a node that is not a regular file or directory (a device or a
/// fifo) without following a symlink: `O_PATH|O_NOFOLLOW` opens no device,
/// and the chmod goes through `/proc/self/fd`, which names that inode.
fn chmod_node(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if file_type(&rfs::fstat(&fd)?) == FileType::Symlink {
        return Err(io::Error::other("replaced by a symlink"));
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(rfs::chmod(
        proc_path.as_str(),
        Mode::from_raw_mode(mode & 0o7777),
    )?)
}

/// (dev, ino) of a multiply-linked source file -> where its first copy
/// went: the directory (components from the destination root) and name.
type LinkMap = HashMap<(u64, u64), (Vec<Vec<u8>>, Vec<u8>)>;

/// Copies a tree, hard links kept as hard links.
struct Copier {
    root_is_root: bool,
    links: LinkMap,
    dst_root: OwnedFd,
}

/// Copy the content of directory `src` into the existing directory `dst`
/// (which should be empty): regular files, directories, symlinks, devices
/// and fifos with owners (as root), modes, xattrs (files and directories)
/// and times; sockets are skipped. `dst`'s own metadata becomes `src`'s.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let s = open_dir(src)?;
    let d = open_dir(dst)?;
    let mut c = Copier {
        root_is_root: rustix::process::geteuid().is_root(),
        links: HashMap::new(),
        dst_root: open_dir(dst)?,
    };
    let mut rel = Vec::new();
    c.copy_dir(s.as_fd(), d.as_fd(), &mut rel)?;
    copy_meta(s.as_fd(), d.as_fd())
}

impl Copier {
    fn copy_dir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        rel: &mut Vec<Vec<u8>>,
    ) -> io::Result<()> {
        for name in list(src)? {
            let Some(st) = stat_at(src, &name)? else {
                continue;
            };
            let ft = file_type(&st);
            match ft {
                FileType::Directory => {
                    rfs::mkdirat(dst, name.as_slice(), Mode::from_raw_mode(0o700))?;
                    let s = open_dir_at(src, &name)?;
                    let d = open_dir_at(dst, &name)?;
                    rel.push(name);
                    self.copy_dir(s.as_fd(), d.as_fd(), rel)?;
                    rel.pop();
                    copy_meta(s.as_fd(), d.as_fd())?;
                }
                FileType::RegularFile => {
                    if st.st_nlink > 1 {
                        if let Some((dir, first)) = self.links.get(&(st.st_dev, st.st_ino)) {
                            let mut fd = open_dir_at(self.dst_root.as_fd(), b".")?;
                            for c in dir {
                                fd = open_dir_at(fd.as_fd(), c)?;
                            }
                            // No AT_SYMLINK_FOLLOW: links the name itself.
                            rfs::linkat(
                                &fd,
                                first.as_slice(),
                                dst,
                                name.as_slice(),
                                AtFlags::empty(),
                            )?;
                            continue;
                        }
                        self.links
                            .insert((st.st_dev, st.st_ino), (rel.clone(), name.clone()));
                    }
                    let s = File::from(rfs::openat(
                        src,
                        name.as_slice(),
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?);
                    let mut d = File::from(rfs::openat(
                        dst,
                        name.as_slice(),
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )?);
                    io::copy(&mut (&s), &mut d)?;
                    copy_meta(s.as_fd(), d.as_fd())?;
                }
                FileType::Symlink => {
                    let target = rfs::readlinkat(src, name.as_slice(), Vec::new())?;
                    rfs::symlinkat(target.as_c_str(), dst, name.as_slice())?;
                    self.node_meta(dst, &name, &st, false)?;
                }
                FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                    if ft != FileType::Fifo && !self.root_is_root {
                        tracing::debug!(name = %String::from_utf8_lossy(&name), "device node not copied (not root)");
                        continue;
                    }
                    rfs::mknodat(
                        dst,
                        name.as_slice(),
                        ft,
                        Mode::from_raw_mode(st.st_mode & 0o777),
                        st.st_rdev,
                    )?;
                    self.node_meta(dst, &name, &st, true)?;
                }
                _ => {
                    tracing::debug!(name = %String::from_utf8_lossy(&name), "socket or unknown file type not copied");
                }
            }
        }
        Ok(())
    }

    fn node_meta(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
        chmod: bool,
    ) -> io::Result<()> {
        if self.root_is_root {
            rfs::chownat(
                dir,
                name,
                Some(rfs::Uid::from_raw(st.st_uid)),
                Some(rfs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if chmod {
            chmod_node(dir, name, st.st_mode)?;
        }
        rfs::utimensat(dir, name, &stat_times(st), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}

/// The content hash and disk usage of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeDigest {
    /// `sha512-<hex>` over every entry, sorted by path.
    pub hash: String,
    /// Bytes on disk (512-byte blocks), each inode counted once.
    pub size: u64,
}

/// Hash the entries of `dir` named in `top` (all of them if `None`),
/// recursively: for each entry, sorted by path, its path, type, mode,
/// owner, then its content (regular files), target (symlinks), device
/// number (devices) and xattrs (files and directories). Times are left out:
/// a tree is never written once complete, and copies keep them anyway.
///
/// Format v2: the walk (metadata, in path order) goes into one SHA-512; a
/// regular file's record holds its size and its index among the files, and
/// its content is hashed on its own, by worker threads (one per core, at
/// most 8), so a big tree hashes at the speed of all the cores rather than
/// one. The result is SHA-512 of a version tag, the walk's digest, then
/// each file's content digest and length, in index order.
pub(crate) fn hash_tree(dir: &Path, top: Option<&[&str]>) -> io::Result<TreeDigest> {
    hash_tree_known(dir, top, &KnownContent::new())
}

/// Content digests already known, by (dev, ino): SHA-512 and length.
pub(crate) type KnownContent = HashMap<(u64, u64), ([u8; 64], u64)>;

/// [`hash_tree`], taking the content digest of a regular file from `known`
/// when its inode is there with the same size, instead of reading it: a
/// tree just extracted had its files hashed as they were written, so only
/// the metadata walk is left. The result is the same as `hash_tree`'s, by
/// construction: the walk and the record of each file are unchanged, only
/// where a file's digest comes from differs.
pub(crate) fn hash_tree_known(
    dir: &Path,
    top: Option<&[&str]>,
    known: &KnownContent,
) -> io::Result<TreeDigest> {
    let root = open_dir(dir)?;
    let names: Vec<Vec<u8>> = match top {
        Some(t) => t.iter().map(|s| s.as_bytes().to_vec()).collect(),
        None => list(root.as_fd())?,
    };
    let mut sorted = names;
    sorted.sort();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    // Open files in flight are bounded by the queue (plus one per worker).
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<(usize, File)>(64);
    let job_rx = std::sync::Mutex::new(job_rx);
    let (res_tx, res_rx) = std::sync::mpsc::channel::<(usize, io::Result<([u8; 64], u64)>)>();
    let (walked, results) = std::thread::scope(|sc| {
        for _ in 0..workers {
            let res_tx = res_tx.clone();
            let job_rx = &job_rx;
            sc.spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((i, f))) = job else { break };
                    if res_tx.send((i, hash_content(f, &mut buf))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(res_tx);
        let mut h = Hasher {
            sha: Sha512::new(),
            seen: HashSet::new(),
            size: 0,
            files: 0,
            jobs: job_tx,
            known,
            preset: Vec::new(),
        };
        let walked = (|| {
            for name in sorted {
                if stat_at(root.as_fd(), &name)?.is_some() {
                    h.entry(root.as_fd(), &name, &name)?;
                }
            }
            Ok::<_, io::Error>(())
        })();
        let Hasher {
            sha,
            size,
            files,
            jobs,
            preset,
            ..
        } = h;
        drop(jobs);
        let mut digests: Vec<Option<([u8; 64], u64)>> = vec![None; files];
        for (i, d) in preset {
            digests[i] = Some(d);
        }
        let mut failed = None;
        for (i, r) in res_rx.iter() {
            match r {
                Ok(d) => digests[i] = Some(d),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        (
            walked.map(|()| (sha.finalize(), size)),
            match failed {
                Some(e) => Err(e),
                None => Ok(digests),
            },
        )
    });
    let (walk_digest, size) = walked?;
    let digests = results?;
    let mut top = Sha512::new();
    top.update(b"berth tree hash v2\n");
    top.update(walk_digest);
    for d in digests {
        // Every file sent was answered, or the error above returned.
        let (d, len) = d.ok_or_else(|| io::Error::other("a file of the tree was not hashed"))?;
        top.update(d);
        top.update(len.to_le_bytes());
    }
    let mut hex = String::with_capacity(128);
    for b in top.finalize() {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    Ok(TreeDigest {
        hash: format!("sha512-{hex}"),
        size,
    })
}

/// SHA-512 and length of what `f` holds.
fn hash_content(mut f: File, buf: &mut [u8]) -> io::Result<([u8; 64], u64)> {
    let mut sha = Sha512::new();
    let mut total = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        sha.update(&buf[..n]);
    }
    Ok((sha.finalize().into(), total))
}

struct Hasher<'k> {
    sha: Sha512,
    seen: HashSet<(u64, u64)>,
    size: u64,
    /// Regular files handed to the workers so far.
    files: usize,
    jobs: std::sync::mpsc::SyncSender<(usize, File)>,
    known: &'k KnownContent,
    /// Files whose digest came from `known`, by index.
    preset: Vec<(usize, ([u8; 64], u64))>,
}

impl Hasher<'_> {
    fn field(&mut self, tag: u8, data: &[u8]) {
        self.sha.update([tag]);
        self.sha.update((data.len() as u64).to_le_bytes());
        self.sha.update(data);
    }

    fn xattrs(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut names = vec![0u8; 64 * 1024];
        let n = match rfs::flistxattr(fd, &mut names[..]) {
            Ok(n) => n,
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut list: Vec<&[u8]> = names[..n]
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        list.sort();
        let mut value = vec![0u8; 64 * 1024];
        for name in list {
            let len = match rfs::fgetxattr(fd, name, &mut value[..]) {
                Ok(len) => len,
                Err(Errno::NODATA) => continue,
                Err(e) => return Err(e.into()),
            };
            self.field(b'x', name);
            let v = value[..len].to_vec();
            self.field(b'v', &v);
        }
        Ok(())
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> io::Result<()> {
        let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let ft = file_type(&st);
        let t = match ft {
            FileType::Directory => b'd',
            FileType::RegularFile => b'f',
            FileType::Symlink => b'l',
            FileType::CharacterDevice => b'c',
            FileType::BlockDevice => b'b',
            FileType::Fifo => b'p',
            _ => b's',
        };
        if self.seen.insert((st.st_dev, st.st_ino)) {
            self.size += st.st_blocks as u64 * 512;
        }
        self.field(b'P', path);
        self.field(t, &[]);
        self.field(b'm', &(st.st_mode & 0o7777).to_le_bytes());
        self.field(b'o', &st.st_uid.to_le_bytes());
        self.field(b'g', &st.st_gid.to_le_bytes());
        match ft {
            FileType::Directory => {
                let sub = open_dir_at(dir, name)?;
                self.xattrs(sub.as_fd())?;
                for n in list(sub.as_fd())? {
                    let mut p = path.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(&n);
                    self.entry(sub.as_fd(), &n, &p)?;
                }
            }
            FileType::RegularFile => {
                let f = File::from(rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?);
                self.xattrs(f.as_fd())?;
                self.sha.update(b"C");
                self.sha.update((st.st_size as u64).to_le_bytes());
                // The content is hashed by a worker; its digest and the
                // length read (a file that changed size under us hashes
                // differently anyway) go in at this index.
                self.sha.update((self.files as u64).to_le_bytes());
                match self.known.get(&(st.st_dev, st.st_ino)) {
                    Some(&(d, len)) if len == st.st_size as u64 => {
                        self.preset.push((self.files, (d, len)));
                    }
                    _ => self
                        .jobs
                        .send((self.files, f))
                        .map_err(|_| io::Error::other("the hashing threads stopped"))?,
                }
                self.files += 1;
            }
            FileType::Symlink => {
                let target: CString = rfs::readlinkat(dir, name, Vec::new())?;
                self.field(b'T', target.as_bytes());
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                self.field(b'r', &st.st_rdev.to_le_bytes());
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn copy_and_hash_agree() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/f"), b"hello").unwrap();
        fs::hard_link(src.join("a/b/f"), src.join("a/g")).unwrap();
        symlink("/etc/passwd", src.join("a/link")).unwrap();
        let dst = d.path().join("dst");
        fs::create_dir(&dst).unwrap();
        copy_tree(&src, &dst).unwrap();
        let hs = hash_tree(&src, None).unwrap();
        let hd = hash_tree(&dst, None).unwrap();
        assert_eq!(hs.hash, hd.hash);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(dst.join("a/g")).unwrap().ino(),
            fs::metadata(dst.join("a/b/f")).unwrap().ino()
        );
        assert_eq!(
            fs::read_link(dst.join("a/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        fs::write(dst.join("a/b/f"), b"hellO").unwrap();
        assert_ne!(hash_tree(&dst, None).unwrap().hash, hs.hash);
        let root = open_dir(d.path()).unwrap();
        remove_at(root.as_fd(), b"dst").unwrap();
        assert!(!dst.exists());
    }
}
