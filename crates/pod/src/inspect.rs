//! Reading a pod from the outside, with no daemon to ask: which apps it
//! has, what stage1 recorded about them, whether its lock is held and by
//! whom. The lifecycle commands (`list`, `status`, `stop`, `logs`, `enter`,
//! `export`) are built on these.
//!
//! Everything here is a snapshot: a pod may move on while it is read, so
//! callers treat a missing file as "not there yet / not any more", never as
//! an error.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::layout::AppDir;
use crate::plan::{NetMode, PodPlan};
use crate::state::Pod;
use crate::status::AppStatus;

/// One app of a pod as the pod directory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub name: String,
    /// The image's name and ID (unknown for a pod that never got a plan or
    /// a manifest, e.g. an abandoned embryo).
    pub image_name: Option<String>,
    pub image_id: Option<String>,
    /// What stage1 last recorded (None: the app never started).
    pub status: Option<AppStatus>,
}

/// What a pod directory says about the pod, beyond its state.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The plan, once stage0 wrote it.
    pub plan: Option<PodPlan>,
    pub apps: Vec<AppInfo>,
}

impl PodInfo {
    /// Read the apps from `plan.json`, else from the pod manifest (`pod`),
    /// else from the `apps/` directory; a pod with none of them has no apps.
    pub fn read(pod: &Pod) -> PodInfo {
        let plan = PodPlan::load(&pod.dir).ok();
        let mut apps: Vec<AppInfo> = match &plan {
            Some(p) => p
                .apps
                .iter()
                .map(|a| AppInfo {
                    name: a.name.clone(),
                    image_name: Some(a.image_name.clone()),
                    image_id: Some(a.image_id.clone()),
                    status: None,
                })
                .collect(),
            None => apps_from_manifest(&pod.dir).unwrap_or_else(|| apps_from_dirs(&pod.dir)),
        };
        for a in &mut apps {
            a.status = AppStatus::load(&AppDir::new(&pod.dir, &a.name).status())
                .ok()
                .flatten();
        }
        PodInfo { plan, apps }
    }

    /// The pod's network mode, if it has a plan.
    pub fn net(&self) -> Option<NetMode> {
        self.plan.as_ref().map(|p| p.net)
    }

    pub fn app(&self, name: &str) -> Option<&AppInfo> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub fn app_names(&self) -> Vec<&str> {
        self.apps.iter().map(|a| a.name.as_str()).collect()
    }
}

/// The apps named in the appc pod manifest (read leniently: a list must
/// still work for a pod whose manifest a newer berth wrote).
fn apps_from_manifest(dir: &Path) -> Option<Vec<AppInfo>> {
    let bytes = fs::read(dir.join(crate::layout::POD_MANIFEST)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let apps = v.get("apps")?.as_array()?;
    Some(
        apps.iter()
            .filter_map(|a| {
                let s =
                    |o: Option<&serde_json::Value>| o.and_then(|x| x.as_str()).map(String::from);
                Some(AppInfo {
                    name: s(a.get("name"))?,
                    image_name: s(a.get("image").and_then(|i| i.get("name"))),
                    image_id: s(a.get("image").and_then(|i| i.get("id"))),
                    status: None,
                })
            })
            .collect(),
    )
}

fn apps_from_dirs(dir: &Path) -> Vec<AppInfo> {
    let mut names: Vec<String> = fs::read_dir(dir.join(crate::layout::APPS))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|name| AppInfo {
            name,
            image_name: None,
            image_id: None,
            status: None,
        })
        .collect()
}

/// Whether some process holds the lock of the pod directory `dir` (the
/// directory may have been renamed since: pass an open handle's path, or
/// use [`LockProbe`]).
pub fn lock_held(dir: &Path) -> io::Result<bool> {
    LockProbe::open(dir)?.held()
}

/// An open handle on a pod directory, to ask again and again whether its
/// lock is held. The handle follows the directory through the renames that
/// change the pod's state, so the question stays about the same pod.
#[derive(Debug)]
pub struct LockProbe {
    dir: File,
}

impl LockProbe {
    pub fn open(dir: &Path) -> io::Result<LockProbe> {
        Ok(LockProbe {
            dir: File::open(dir)?,
        })
    }

    /// A path that reaches the pod directory through this handle
    /// (`/proc/self/fd/N`), wherever renames have moved it since.
    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()))
    }

    /// True while another process holds the lock (shared or exclusive
    /// would both block an exclusive taker; pods only use exclusive).
    pub fn held(&self) -> io::Result<bool> {
        match self.dir.try_lock_shared() {
            Ok(()) => {
                self.dir.unlock()?;
                Ok(false)
            }
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Wait until the lock is free, at most `timeout` (None: forever).
    /// Returns false on timeout. The wait is a blocking shared `flock` in
    /// a helper thread, so the caller wakes the moment the holder lets go
    /// (or dies) instead of polling; on timeout the thread is left blocked
    /// and dies with the process.
    pub fn wait_released(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let f = self.dir.try_clone()?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = f.lock_shared().and_then(|()| f.unlock());
            let _ = tx.send(r);
        });
        let r = match timeout {
            None => rx.recv().map_err(io::Error::other)?,
            Some(t) => match rx.recv_timeout(t) {
                Ok(r) => r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(false),
                Err(e) => return Err(io::Error::other(e)),
            },
        };
        r.map(|()| true)
    }
}

/// Whether process `pid` has the directory `dir` open: the supervisor of a
/// running pod keeps its lock fd on the pod directory for the pod's life,
/// so this tells the real supervisor from an unrelated process that got a
/// recycled PID (which cannot have that directory open by chance).
pub fn holds_dir(pid: i32, dir: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(canon) = fs::canonicalize(dir) else {
        return false;
    };
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| e.ok())
        .filter_map(|e| fs::read_link(e.path()).ok())
        .any(|target| target == canon)
}

/// The parent PID of `pid` (from `/proc/<pid>/stat`), if it is alive.
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The inode identifying a namespace of `pid` (`/proc/<pid>/ns/<kind>`).
pub fn namespace_id(pid: i32, kind: &str) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

/// Wait, polling every `every`, until `done()` is true or `timeout` passes
/// (None: forever). Returns whether `done()` became true.
pub fn poll_until(
    timeout: Option<Duration>,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if let Some(t) = timeout {
            let spent = start.elapsed();
            if spent >= t {
                return false;
            }
            std::thread::sleep(every.min(t - spent));
        } else {
            std::thread::sleep(every);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Pods;

    #[test]
    fn apps_come_from_the_manifest_without_a_plan() {
        let t = tempfile::tempdir().unwrap();
        let pods = Pods::open(t.path()).unwrap();
        let p = pods.create().unwrap();
        fs::write(
            p.dir.join("pod"),
            r#"{"acKind":"PodManifest","acVersion":"0.8.11","apps":[
                {"name":"web","image":{"name":"example.com/web","id":"sha512-aa"}}]}"#,
        )
        .unwrap();
        let info = PodInfo::read(&p);
        assert_eq!(info.app_names(), ["web"]);
        assert_eq!(info.apps[0].image_name.as_deref(), Some("example.com/web"));
        assert!(info.net().is_none());
    }

    #[test]
    fn lock_probe_sees_the_holder_and_its_release() {
        let t = tempfile::tempdir().unwrap();
        let pods = Pods::open(t.path()).unwrap();
        let p = pods.create().unwrap();
        let probe = LockProbe::open(&p.dir).unwrap();
        assert!(probe.held().unwrap());
        assert!(holds_dir(std::process::id() as i32, &p.dir));
        assert!(!probe
            .wait_released(Some(Duration::from_millis(50)))
            .unwrap());
        let dir = p.dir.clone();
        drop(p);
        assert!(!lock_held(&dir).unwrap());
        assert!(probe.wait_released(None).unwrap());
    }
}
