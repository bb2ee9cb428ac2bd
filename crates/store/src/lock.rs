//! Locks between berth processes, and each process's private temp directory.
//!
//! Every lock is a `flock(2)` on a file (or directory) of the store. A flock
//! belongs to an open file description, so it dies with the process that
//! holds it, whatever way it dies: a `kill -9` never leaves a stale lock,
//! and that is why the store uses nothing else for "in use".
//!
//! | lock                         | shared by                       | exclusive by                         |
//! |------------------------------|---------------------------------|--------------------------------------|
//! | `locks/image/<digest>`       | a render using the image        | import (commit), remove, gc, adopt   |
//! | `locks/tree/<key>`           | a pod's [`TreeLease`], a render | gc and remove (try only: skip if held)|
//! | `locks/render/<key>`         | -                               | the one process rendering that tree  |
//! | `tmp/<proc>/` (the dir)      | -                               | the process owning it                |
//!
//! Lock files of removed trees and images are unlinked by the remover while
//! it holds the exclusive lock. A process that opened the file just before
//! would then lock an orphan inode, so [`lock_path`] checks, once it holds
//! the lock, that the path still names the inode it locked, and starts over
//! otherwise.
//!
//! [`TreeLease`]: crate::TreeLease

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// A held flock; released on drop (or when the process dies).
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Remove the lock file while still holding the lock (the object it
    /// guards is gone), then release it.
    pub(crate) fn unlink(self) {
        let _ = fs::remove_file(&self.path);
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }
}

fn same_inode(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(now.ino() == held.ino() && now.dev() == held.dev()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Lock `path` (created if missing). With `wait == false`, `Ok(None)` when
/// another process holds a conflicting lock.
pub(crate) fn lock_path(path: &Path, mode: Mode, wait: bool) -> io::Result<Option<FileLock>> {
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)?;
        let got = match (mode, wait) {
            (Mode::Shared, true) => file.lock_shared().map(|()| true),
            (Mode::Exclusive, true) => file.lock().map(|()| true),
            (m, false) => {
                let r = if m == Mode::Shared {
                    file.try_lock_shared()
                } else {
                    file.try_lock()
                };
                match r {
                    Ok(()) => Ok(true),
                    Err(TryLockError::WouldBlock) => Ok(false),
                    Err(TryLockError::Error(e)) => Err(e),
                }
            }
        }?;
        if !got {
            return Ok(None);
        }
        if same_inode(&file, path)? {
            return Ok(Some(FileLock {
                file,
                path: path.to_path_buf(),
            }));
        }
        // Unlinked (and maybe re-created) behind our back: try again.
    }
}

/// Try a lock a few times before giving up. A lock just released can stay
/// held for a moment: a child being spawned by any thread of the releasing
/// process shares its open file descriptions between fork and exec (the
/// flock belongs to the description, not the fd), so "held" right after a
/// release may be a phantom. `attempts` tries, `delay` apart.
pub(crate) fn try_lock_for(
    path: &Path,
    mode: Mode,
    attempts: u32,
    delay: std::time::Duration,
) -> io::Result<Option<FileLock>> {
    for i in 0..attempts.max(1) {
        if i > 0 {
            std::thread::sleep(delay);
        }
        if let Some(l) = lock_path(path, mode, false)? {
            return Ok(Some(l));
        }
    }
    Ok(None)
}

/// Blocking lock, never `None`.
pub(crate) fn lock_wait(path: &Path, mode: Mode) -> io::Result<FileLock> {
    lock_path(path, mode, true)?.ok_or_else(|| io::Error::other("lock not acquired"))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other process or thread uses at the same time.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// This process's private directory under `tmp/`, locked for its lifetime.
/// Everything half-written (downloads, blobs being imported, trees being
/// rendered) lives in one; [`clean_stale`] removes those of dead processes.
#[derive(Debug)]
pub(crate) struct TmpDir {
    path: PathBuf,
    _lock: File,
}

impl TmpDir {
    pub(crate) fn create(tmp_root: &Path) -> io::Result<TmpDir> {
        loop {
            let path = tmp_root.join(unique_name(""));
            fs::DirBuilder::new().mode(0o700).create(&path)?;
            // Until we hold its lock, the directory looks abandoned: another
            // process's clean_stale may lock and remove it at any moment
            // (between our mkdir and open, or between open and lock). Each of
            // those ends in a retry with a new name, never in an error.
            let dir = match File::open(&path) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match dir.try_lock() {
                Ok(()) => {}
                // Another process's clean_stale got it first and removes it.
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(e),
            }
            if same_inode(&dir, &path)? {
                return Ok(TmpDir { path, _lock: dir });
            }
        }
    }

    /// Remove the directory now (its Drop will not run in a process that
    /// execs).
    pub(crate) fn remove_now(&self) {
        let _ = fs::remove_dir_all(&self.path);
    }

    /// A fresh path inside this directory (nothing is created).
    pub(crate) fn fresh(&self, prefix: &str) -> PathBuf {
        self.path.join(unique_name(prefix))
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Remove the temp directories under `tmp_root` whose owner is gone (their
/// lock is free). Returns the names removed.
pub(crate) fn clean_stale(tmp_root: &Path) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for ent in fs::read_dir(tmp_root)? {
        let ent = ent?;
        let path = ent.path();
        let name = ent.file_name().to_string_lossy().into_owned();
        if !ent.file_type()?.is_dir() {
            let _ = fs::remove_file(&path);
            removed.push(name);
            continue;
        }
        let Ok(dir) = File::open(&path) else { continue };
        match dir.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if same_inode(&dir, &path)? {
            tracing::debug!(dir = %path.display(), "removing the temp directory of a process that is gone");
            crate::fsops::remove_all(&path)?;
            removed.push(name);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cleaner running in another process may remove a temp directory in
    /// the instant between its mkdir and its lock: creating one must retry,
    /// never fail (seen as "opening the image store: No such file or
    /// directory" when `image gc` raced `fetch`).
    #[test]
    fn temp_dirs_survive_a_concurrent_cleaner() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cleaner = {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    clean_stale(&root).unwrap();
                }
            })
        };
        for _ in 0..2000 {
            let t = TmpDir::create(&root).expect("creating a temp dir while a cleaner runs");
            assert!(t.path.is_dir());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        cleaner.join().unwrap();
    }

    #[test]
    fn exclusive_excludes_shared() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let a = lock_path(&p, Mode::Shared, false).unwrap().unwrap();
        let _b = lock_path(&p, Mode::Shared, false).unwrap().unwrap();
        assert!(lock_path(&p, Mode::Exclusive, false).unwrap().is_none());
        drop(a);
        drop(_b);
        let x = lock_path(&p, Mode::Exclusive, false).unwrap().unwrap();
        x.unlink();
        assert!(!p.exists());
    }

    #[test]
    fn stale_tmp_dirs_are_cleaned_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let live = TmpDir::create(d.path()).unwrap();
        fs::create_dir(d.path().join("dead")).unwrap();
        fs::write(d.path().join("dead/f"), b"x").unwrap();
        let removed = clean_stale(d.path()).unwrap();
        assert_eq!(removed, vec!["dead".to_string()]);
        assert!(live.path.exists());
    }
}
