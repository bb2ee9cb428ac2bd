//! What stage1 records about each app while the pod runs, so `berth status`
//! and `berth list` can answer without a daemon.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One app's state, in `apps/<app>/status.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    /// Host PID of the app's current process while it runs.
    pub pid: Option<i32>,
    /// Unix milliseconds of the last start, and of the last exit.
    pub started_ms: Option<u64>,
    pub exited_ms: Option<u64>,
    /// The last exit: the exit code, or 128 + signal for a death by signal.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// How many times PID 1 restarted it (restart policies).
    pub restarts: u32,
    /// True while the app runs (or waits to be restarted).
    pub running: bool,
}

impl AppStatus {
    pub fn load(path: &Path) -> std::io::Result<Option<AppStatus>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic_nosync(path, &json)
    }
}
