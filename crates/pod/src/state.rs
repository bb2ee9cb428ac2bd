//! Pod directories and their states, with no daemon: a pod's state is which
//! directory it sits in and whether its lock is held, nothing else.
//!
//! | directory          | lock held           | lock free                   |
//! |--------------------|---------------------|-----------------------------|
//! | `embryo/`          | Embryo              | Embryo (abandoned, gc)      |
//! | `prepare/`         | Preparing           | AbortedPrepare (gc)         |
//! | `prepared/`        | Prepared (starting) | Prepared                    |
//! | `run/`             | Running             | Exited                      |
//! | `exited-garbage/`  | Deleting            | ExitedGarbage               |
//! | `garbage/`         | Deleting            | Garbage                     |
//!
//! The lock is a `flock(2)` on the pod directory itself. A flock belongs to
//! the open file description, so it survives the renames that move a pod
//! between states and dies with the process, whatever way it dies: a
//! `kill -9` of `berth run` turns Running into Exited by itself, and
//! `berth gc` finds it. Every transition is one `rename(2)` made while
//! holding the lock, so each state is all-or-nothing.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fsutil;
use crate::layout;

/// The directories under `<dir>/pods/`, in the order pods move through them.
const STATE_DIRS: [&str; 6] = [
    "embryo",
    "prepare",
    "prepared",
    "run",
    "exited-garbage",
    "garbage",
];

/// Name of the file that records when a pod was marked as garbage.
const MARKED: &str = "gc-marked";

/// A pod's state, as directory + lock say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodState {
    Embryo,
    Preparing,
    AbortedPrepare,
    Prepared,
    Running,
    Exited,
    ExitedGarbage,
    Garbage,
    Deleting,
}

impl PodState {
    pub fn as_str(self) -> &'static str {
        match self {
            PodState::Embryo => "embryo",
            PodState::Preparing => "preparing",
            PodState::AbortedPrepare => "aborted-prepare",
            PodState::Prepared => "prepared",
            PodState::Running => "running",
            PodState::Exited => "exited",
            PodState::ExitedGarbage => "exited-garbage",
            PodState::Garbage => "garbage",
            PodState::Deleting => "deleting",
        }
    }

    /// Running: some process holds the pod.
    pub fn is_running(self) -> bool {
        self == PodState::Running
    }

    /// Finished for good (its apps ran, or it was marked for deletion).
    pub fn is_exited(self) -> bool {
        matches!(self, PodState::Exited | PodState::ExitedGarbage)
    }
}

impl std::fmt::Display for PodState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a pod operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no pod matches {0:?} (see \"berth list\")")]
    NotFound(String),
    #[error("{prefix:?} matches several pods ({}): give more of the UUID", .matches.join(", "))]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
    #[error("a pod UUID (or a prefix of one) is needed")]
    EmptyUuid,
    #[error("pod {uuid} is {state}: {why}")]
    WrongState {
        uuid: String,
        state: PodState,
        why: &'static str,
    },
    #[error("pod {0} is busy: another berth process holds it")]
    Busy(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PodError + 'a {
    move |source| PodError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The pods of a berth data directory.
#[derive(Debug, Clone)]
pub struct Pods {
    root: PathBuf,
}

/// A pod found on disk (a snapshot: it may move on while you look).
#[derive(Debug)]
pub struct Pod {
    pub uuid: String,
    pub dir: PathBuf,
    pub state: PodState,
    /// The lock, when this process holds it.
    lock: Option<File>,
}

impl Pods {
    /// `<data_dir>/pods`, with its state directories (created if missing).
    pub fn open(data_dir: &Path) -> Result<Pods, PodError> {
        let root = data_dir.join("pods");
        for d in STATE_DIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("cannot create", &p))?;
        }
        Ok(Pods { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A new pod in `embryo/`, locked by this process, with a fresh UUID.
    pub fn create(&self) -> Result<Pod, PodError> {
        loop {
            let uuid = new_uuid().map_err(io_err("cannot read", Path::new("/dev/urandom")))?;
            let dir = self.state_dir("embryo").join(&uuid);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("cannot create", &dir)(e)),
            }
            let lock = File::open(&dir).map_err(io_err("cannot open", &dir))?;
            lock.lock().map_err(io_err("cannot lock", &dir))?;
            return Ok(Pod {
                uuid,
                dir,
                state: PodState::Embryo,
                lock: Some(lock),
            });
        }
    }

    /// Every pod, in no particular order. Pods that move while being
    /// listed are reported in one of their states.
    pub fn list(&self) -> Result<Vec<Pod>, PodError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Later states first: a pod renamed during the walk from an earlier
        // directory to a later one is then seen at least once.
        for d in STATE_DIRS.iter().rev() {
            let sd = self.state_dir(d);
            let entries = match fs::read_dir(&sd) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("cannot read", &sd)(e)),
            };
            for e in entries {
                let e = e.map_err(io_err("cannot read", &sd))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if !is_uuid(&name) || seen.contains(&name) {
                    continue;
                }
                if let Some(pod) = self.probe(d, &name)? {
                    seen.insert(name);
                    out.push(pod);
                }
            }
        }
        Ok(out)
    }

    /// Look at one pod directory and tell its state (None: it moved away).
    fn probe(&self, state_dir: &str, uuid: &str) -> Result<Option<Pod>, PodError> {
        let dir = self.state_dir(state_dir).join(uuid);
        let f = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot open", &dir)(e)),
        };
        let held = match f.try_lock_shared() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", &dir)(e)),
        };
        let state = match (state_dir, held) {
            ("embryo", _) => PodState::Embryo,
            ("prepare", true) => PodState::Preparing,
            ("prepare", false) => PodState::AbortedPrepare,
            ("prepared", _) => PodState::Prepared,
            ("run", true) => PodState::Running,
            ("run", false) => PodState::Exited,
            ("exited-garbage", false) => PodState::ExitedGarbage,
            ("garbage", false) => PodState::Garbage,
            (_, _) => PodState::Deleting,
        };
        Ok(Some(Pod {
            uuid: uuid.to_string(),
            dir,
            state,
            lock: None,
        }))
    }

    /// The pod whose UUID is `prefix` or starts with it (the short form
    /// `berth list` prints is enough).
    pub fn find(&self, prefix: &str) -> Result<Pod, PodError> {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            return Err(PodError::EmptyUuid);
        }
        let prefix = prefix.to_ascii_lowercase();
        let mut matches: Vec<Pod> = self
            .list()?
            .into_iter()
            .filter(|p| p.uuid.starts_with(&prefix))
            .collect();
        match matches.len() {
            0 => Err(PodError::NotFound(prefix)),
            1 => Ok(matches.remove(0)),
            _ => {
                if let Some(i) = matches.iter().position(|p| p.uuid == prefix) {
                    return Ok(matches.remove(i));
                }
                let mut uuids: Vec<String> = matches.into_iter().map(|p| p.uuid).collect();
                uuids.sort();
                Err(PodError::Ambiguous {
                    prefix,
                    matches: uuids,
                })
            }
        }
    }

    /// Move `pod` (whose lock this process holds) to `to`.
    fn rename(&self, pod: &mut Pod, to: &str, state: PodState) -> Result<(), PodError> {
        let target = self.state_dir(to).join(&pod.uuid);
        fs::rename(&pod.dir, &target).map_err(io_err("cannot move", &pod.dir))?;
        pod.dir = target;
        pod.state = state;
        Ok(())
    }

    /// Embryo -> Preparing (stage0 starts writing the pod).
    pub fn begin_prepare(&self, pod: &mut Pod) -> Result<(), PodError> {
        self.expect(pod, PodState::Embryo, "only a new pod can be prepared")?;
        self.rename(pod, "prepare", PodState::Preparing)
    }

    /// Preparing -> Prepared (`berth prepare`); the lock is released.
    pub fn finish_prepare(&self, pod: &mut Pod) -> Result<(), PodError> {
        self.expect(pod, PodState::Preparing, "only a preparing pod")?;
        sync_dir(&pod.dir);
        self.rename(pod, "prepared", PodState::Prepared)?;
        pod.lock = None;
        Ok(())
    }

    /// Preparing -> Running (`berth run`), the lock kept: the caller execs
    /// stage1 with it.
    pub fn start_prepared_now(&self, pod: &mut Pod) -> Result<(), PodError> {
        self.expect(pod, PodState::Preparing, "only a preparing pod")?;
        sync_dir(&pod.dir);
        self.rename(pod, "run", PodState::Running)
    }

    /// Prepared -> Running (`berth run-prepared`): exactly once, whoever
    /// gets the lock first wins; the others are told the pod moved on.
    pub fn start_prepared(&self, pod: &mut Pod) -> Result<(), PodError> {
        if pod.state != PodState::Prepared {
            return Err(PodError::WrongState {
                uuid: pod.uuid.clone(),
                state: pod.state,
                why: "only a prepared pod can be started (a pod runs once)",
            });
        }
        self.try_lock(pod)?;
        self.rename(pod, "run", PodState::Running)
    }

    fn expect(&self, pod: &Pod, state: PodState, why: &'static str) -> Result<(), PodError> {
        if pod.state != state || pod.lock.is_none() {
            return Err(PodError::WrongState {
                uuid: pod.uuid.clone(),
                state: pod.state,
                why,
            });
        }
        Ok(())
    }

    /// Take the lock of a pod found by `find`/`list`, without waiting; the
    /// state is re-read under the lock.
    /// Another process holding the pod, or the pod having moved on since
    /// it was found (started, deleted), is [`PodError::Busy`].
    pub fn try_lock(&self, pod: &mut Pod) -> Result<(), PodError> {
        let f = File::open(&pod.dir).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                PodError::Busy(pod.uuid.clone())
            } else {
                io_err("cannot open", &pod.dir)(e)
            }
        })?;
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(PodError::Busy(pod.uuid.clone())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", &pod.dir)(e)),
        }
        // Locked: check it is still where we saw it (not moved on and gone).
        if !pod.dir.exists() {
            return Err(PodError::Busy(pod.uuid.clone()));
        }
        pod.lock = Some(f);
        Ok(())
    }

    /// Mark an unlocked finished pod (Exited, AbortedPrepare, expired
    /// Prepared, abandoned Embryo) as garbage. Returns false when the pod
    /// is not markable (running, already marked) or moved meanwhile.
    pub fn mark_garbage(&self, pod: &mut Pod) -> Result<bool, PodError> {
        let to = match pod.state {
            PodState::Exited => ("exited-garbage", PodState::ExitedGarbage),
            PodState::AbortedPrepare | PodState::Prepared | PodState::Embryo => {
                ("garbage", PodState::Garbage)
            }
            _ => return Ok(false),
        };
        match self.try_lock(pod) {
            Ok(()) => {}
            Err(PodError::Busy(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.rename(pod, to.0, to.1)?;
        let marked = pod.dir.join(MARKED);
        let _ = fsutil::write_number(&marked, fsutil::now_ms());
        pod.lock = None;
        Ok(true)
    }

    /// When a garbage pod was marked (its grace period starts then).
    pub fn marked_at(&self, pod: &Pod) -> Option<SystemTime> {
        if let Ok(Some(ms)) = fsutil::read_number::<u64>(&pod.dir.join(MARKED)) {
            return Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        }
        // Killed between the rename and the marker: the rename changed the
        // directory's ctime, which is close enough.
        fs::metadata(&pod.dir).ok().and_then(|m| {
            use std::os::unix::fs::MetadataExt;
            let secs = m.ctime();
            (secs > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
        })
    }

    /// Delete a pod for good: lock it, unmount whatever is still mounted
    /// under it (lazily, so a busy mount never makes this fail), move it
    /// to `garbage/` if it is not there, then remove the directory. Only
    /// unlocked pods that are not Running/Preparing are deleted.
    pub fn delete(&self, pod: &mut Pod) -> Result<(), PodError> {
        match pod.state {
            PodState::Running | PodState::Preparing => {
                return Err(PodError::WrongState {
                    uuid: pod.uuid.clone(),
                    state: pod.state,
                    why: "stop it first (berth stop)",
                })
            }
            PodState::Deleting => return Err(PodError::Busy(pod.uuid.clone())),
            _ => {}
        }
        if pod.lock.is_none() {
            self.try_lock(pod)?;
        }
        if !pod.dir.starts_with(self.state_dir("garbage"))
            && !pod.dir.starts_with(self.state_dir("exited-garbage"))
        {
            self.rename(pod, "garbage", PodState::Deleting)?;
        }
        pod.state = PodState::Deleting;
        unmount_below(&pod.dir);
        // The lock is on the directory being removed; holding it while
        // removing is fine (the inode lives until the fd closes).
        fs::remove_dir_all(&pod.dir).map_err(io_err("cannot remove", &pod.dir))?;
        pod.lock = None;
        Ok(())
    }
}

impl Pod {
    /// The lock fd, for stage0 to hand to stage1 across exec.
    pub fn lock_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.lock.as_ref().map(|f| f.as_fd())
    }

    /// Give up the lock without closing it (stage0 before exec keeps it
    /// open in the exec'd process).
    pub fn into_lock(self) -> Option<File> {
        self.lock
    }

    /// Creation time (from the `created` file stage0 writes).
    pub fn created(&self) -> Option<SystemTime> {
        ms_file(&self.dir.join(layout::CREATED))
    }

    /// Start time (from the `started` file the supervisor writes).
    pub fn started(&self) -> Option<SystemTime> {
        ms_file(&self.dir.join(layout::STARTED))
    }

    /// The supervisor's PID (the `berth run` process), while recorded.
    pub fn supervisor_pid(&self) -> Option<i32> {
        fsutil::read_number(&self.dir.join(layout::PPID))
            .ok()
            .flatten()
    }

    /// The pod's PID 1 as the host sees it.
    pub fn pid(&self) -> Option<i32> {
        fsutil::read_number(&self.dir.join(layout::PID))
            .ok()
            .flatten()
    }

    /// The pod's exit code, once the supervisor recorded it.
    pub fn exit_code(&self) -> Option<i32> {
        fsutil::read_number(&self.dir.join(layout::EXIT))
            .ok()
            .flatten()
    }
}

fn ms_file(p: &Path) -> Option<SystemTime> {
    fsutil::read_number::<u64>(p)
        .ok()
        .flatten()
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Unmount everything mounted at or below `dir` (deepest first, lazily).
/// Pods normally keep their mounts in their own mount namespace, which the
/// kernel tears down with the pod; this is for what escaped (a copy made by
/// a tool, a bind made by hand) so deletion never fails with EBUSY.
pub fn unmount_below(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let canon = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(&canon))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A random (version 4) UUID in its usual text form.
fn new_uuid() -> io::Result<String> {
    let mut b = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The text form of a UUID (lowercase hex).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4_text() {
        let u = new_uuid().unwrap();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        assert_ne!(new_uuid().unwrap(), u);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/x\134"), "/x\\");
    }

    #[test]
    fn lifecycle_moves_by_rename_under_the_lock() {
        let t = tempfile::tempdir().unwrap();
        let pods = Pods::open(t.path()).unwrap();
        let mut p = pods.create().unwrap();
        assert_eq!(p.state, PodState::Embryo);
        pods.begin_prepare(&mut p).unwrap();
        assert_eq!(pods.find(&p.uuid[..8]).unwrap().state, PodState::Preparing);
        pods.finish_prepare(&mut p).unwrap();
        let mut found = pods.find(&p.uuid).unwrap();
        assert_eq!(found.state, PodState::Prepared);
        pods.start_prepared(&mut found).unwrap();
        assert_eq!(pods.find(&p.uuid).unwrap().state, PodState::Running);
        // A second start of the same pod is refused.
        let mut again = pods.find(&p.uuid).unwrap();
        assert!(matches!(
            pods.start_prepared(&mut again),
            Err(PodError::WrongState { .. })
        ));
        // Running pods are neither marked nor deleted.
        assert!(!pods.mark_garbage(&mut again).unwrap());
        assert!(pods.delete(&mut again).is_err());
        drop(found); // the "process" ends: the lock goes with it
        let mut exited = pods.find(&p.uuid).unwrap();
        assert_eq!(exited.state, PodState::Exited);
        assert!(pods.mark_garbage(&mut exited).unwrap());
        let mut g = pods.find(&p.uuid).unwrap();
        assert_eq!(g.state, PodState::ExitedGarbage);
        assert!(pods.marked_at(&g).is_some());
        pods.delete(&mut g).unwrap();
        assert!(matches!(pods.find(&p.uuid), Err(PodError::NotFound(_))));
    }

    #[test]
    fn an_abandoned_prepare_is_garbage() {
        let t = tempfile::tempdir().unwrap();
        let pods = Pods::open(t.path()).unwrap();
        let mut p = pods.create().unwrap();
        pods.begin_prepare(&mut p).unwrap();
        let uuid = p.uuid.clone();
        drop(p);
        let mut a = pods.find(&uuid).unwrap();
        assert_eq!(a.state, PodState::AbortedPrepare);
        assert!(pods.mark_garbage(&mut a).unwrap());
        assert_eq!(pods.find(&uuid).unwrap().state, PodState::Garbage);
    }

    #[test]
    fn prefixes_must_be_unique() {
        let t = tempfile::tempdir().unwrap();
        let pods = Pods::open(t.path()).unwrap();
        for u in [
            "aaaaaaaa-0000-4000-8000-000000000001",
            "aaaaaaaa-0000-4000-8000-000000000002",
        ] {
            fs::create_dir(t.path().join("pods/prepared").join(u)).unwrap();
        }
        assert!(matches!(pods.find("aaaa"), Err(PodError::Ambiguous { .. })));
        assert_eq!(
            pods.find("aaaaaaaa-0000-4000-8000-000000000002")
                .unwrap()
                .uuid,
            "aaaaaaaa-0000-4000-8000-000000000002"
        );
        assert!(matches!(pods.find("b"), Err(PodError::NotFound(_))));
        assert!(matches!(pods.find(""), Err(PodError::EmptyUuid)));
    }
}
