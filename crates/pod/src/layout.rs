//! Names of the files in a pod directory: the contract between stage0
//! (which writes the first ones), stage1 (which writes the run's facts) and
//! the lifecycle commands (which read them with no daemon to ask).
//!
//! ```text
//! <pod dir>/
//!   pod                 the appc pod manifest (JSON), as `berth cat-manifest` prints it
//!   plan.json           the stage0 -> stage1 plan (see `plan`)
//!   created             creation time, unix milliseconds (stage0)
//!   started             time the supervisor started the pod (stage1)
//!   ppid                host PID of the supervisor (= the `berth run` process)
//!   pid                 host PID of the pod's PID 1, a child of `ppid`
//!   ready               exists once every app has been started (status --wait-ready)
//!   exit                the pod's exit code, written by the supervisor as it ends
//!   apps/<app>/manifest the app's image manifest
//!   apps/<app>/rootfs   the app's root: overlay mount point, or the copy
//!   apps/<app>/upper    overlay upper dir (what the app wrote)
//!   apps/<app>/work     overlay work dir
//!   apps/<app>/status.json  the app's [`AppStatus`](crate::status::AppStatus), replaced atomically
//!   apps/<app>/log      the app's stdout and stderr (capped; the previous part in log.1)
//!   volumes/<name>/     empty volumes
//! ```
//!
//! Every file stage1 writes is written atomically (temp file + rename), so a
//! reader sees the old or the new content, never half of it.

use std::path::{Path, PathBuf};

pub const POD_MANIFEST: &str = "pod";
pub const CREATED: &str = "created";
pub const STARTED: &str = "started";
pub const PPID: &str = "ppid";
pub const PID: &str = "pid";
pub const READY: &str = "ready";
pub const EXIT: &str = "exit";
pub const APPS: &str = "apps";
pub const VOLUMES: &str = "volumes";

/// Paths of one app's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDir(PathBuf);

impl AppDir {
    pub fn new(pod_dir: &Path, app: &str) -> AppDir {
        AppDir(pod_dir.join(APPS).join(app))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn manifest(&self) -> PathBuf {
        self.0.join("manifest")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }
    pub fn status(&self) -> PathBuf {
        self.0.join("status.json")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("log")
    }
    /// The previous part of a capped log.
    pub fn log_old(&self) -> PathBuf {
        self.0.join("log.1")
    }
}

/// `volumes/<name>` of an empty volume.
pub fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join(VOLUMES).join(name)
}
