//! The stage0 -> stage1 plan: everything stage1 needs to run a pod, as plain
//! data, written once by stage0 into the pod directory (`plan.json`).
//!
//! Stage0 does every decision that needs the store, the fetcher or the
//! command line (which image, which tree, which environment after the
//! precedence rules, which volumes); stage1 only executes. So stage1 never
//! opens the store, and a prepared pod runs the same way tomorrow as today.
//!
//! The file is versioned: stage1 refuses a plan whose `version` it does not
//! know, with a message naming both versions, rather than guessing.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The plan format this build writes and reads.
pub const PLAN_VERSION: u32 = 1;

/// File name of the plan inside the pod directory.
pub const PLAN_FILE: &str = "plan.json";

/// How the pod gets its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// Share the caller's network namespace.
    Host,
    /// A new network namespace with only `lo` (brought up).
    None,
}

impl NetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetMode::Host => "host",
            NetMode::None => "none",
        }
    }
}

/// What an app's exit makes PID 1 do (per app; rkt never had this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart: the app's exit is final.
    No,
    /// Restart after a non-zero exit or a death by signal, at most `max`
    /// times (`None`: without limit).
    OnFailure { max: Option<u32> },
    /// Restart after every exit, until the pod is stopped.
    Always,
}

/// A pod-level volume, already checked by stage0 (a host source exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePlan {
    pub name: String,
    #[serde(flatten)]
    pub kind: VolumeKindPlan,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VolumeKindPlan {
    /// Bind mount of a host path.
    Host {
        source: PathBuf,
        read_only: bool,
        /// rbind (true, the default) or plain bind.
        recursive: bool,
    },
    /// A fresh directory under the pod directory (`volumes/<name>`), made
    /// by stage1 with this mode and owner, shared by every app mounting it.
    Empty {
        /// Permission bits, e.g. 0o755.
        mode: u32,
        uid: u32,
        gid: u32,
        read_only: bool,
    },
}

/// One mount of a volume into an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// The pod volume's name (a key of `PodPlan::volumes`).
    pub volume: String,
    /// Absolute path inside the app's rootfs. Created if missing (as a
    /// directory, or an empty file when the source is a file); resolved
    /// inside the rootfs, never through a symlink out of it.
    pub target: String,
    /// Read-only even if the volume is not (the mount point's readOnly).
    pub read_only: bool,
}

/// One app of the pod, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlan {
    /// The app's name in the pod (an appc ACName, unique in the pod).
    pub name: String,
    /// The image's name and ID, for `list` and messages.
    pub image_name: String,
    pub image_id: String,
    /// For a Docker/OCI image, its manifest digest (`sha256:<hex>`), by
    /// which the store finds it again (`image_id` is then the appc ID the
    /// pod manifest gives it). Absent for an ACI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_image: Option<String>,
    /// The rendered tree's rootfs in the store: the read-only lower layer
    /// of the app's overlay (or the source of the copy without overlay).
    pub tree: PathBuf,
    /// The store's key of that tree (`deps-sha512-...`), for gc messages.
    pub tree_key: String,
    /// argv: `exec` of the image (or `--exec`) plus the app's arguments.
    pub exec: Vec<String>,
    /// User and group as the manifest or `--user`/`--group` gave them: a
    /// number, or a name looked up in the app rootfs's /etc/passwd and
    /// /etc/group (stage1 resolves them, inside the rootfs).
    pub user: String,
    pub group: String,
    pub supplementary_gids: Vec<u32>,
    /// Absolute path inside the rootfs; "/" when the image says nothing.
    pub working_directory: String,
    /// The final environment in order, after the precedence rules (image,
    /// then `--inherit-env`, `--set-env-file`, `--set-env`), plus the
    /// executor's own (AC_APP_NAME, PATH default, ...).
    pub env: Vec<(String, String)>,
    /// Event handlers (argv), run in the app's rootfs with its user and
    /// environment: pre-start before the app, post-stop after it exits.
    pub pre_start: Option<Vec<String>>,
    pub post_stop: Option<Vec<String>>,
    pub mounts: Vec<MountPlan>,
    pub restart: RestartPolicy,
    /// Mount the app's rootfs read-only.
    pub readonly_rootfs: bool,
    /// Signal `berth stop` sends to this app first (15 = SIGTERM).
    pub stop_signal: i32,
}

/// The whole pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    /// [`PLAN_VERSION`] when written.
    pub version: u32,
    pub uuid: String,
    pub hostname: String,
    pub net: NetMode,
    /// Overlay the app rootfs over its tree (true), or copy the tree into
    /// the pod (false, `--no-overlay`). Stage1 falls back to copying, with
    /// a warning, where overlayfs cannot be mounted.
    pub overlay: bool,
    /// `--interactive`: one app, attached to a pseudo-terminal.
    pub interactive: bool,
    /// Prefix every output line with the app's name (default when the pod
    /// has several apps and `--no-prefix` was not given).
    pub prefix_output: bool,
    /// Grace between the stop signal and SIGKILL, in milliseconds.
    pub stop_timeout_ms: u64,
    /// Size cap of each app's kept log, in bytes.
    pub log_max_bytes: u64,
    pub volumes: Vec<VolumePlan>,
    pub apps: Vec<AppPlan>,
}

/// Why a plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("reading the pod plan {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the pod plan {path} is not valid: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the pod plan {path} has version {found}, this berth knows version {PLAN_VERSION} \
         (prepare the pod again with this berth)"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("the pod plan is inconsistent: {0}")]
    Invalid(String),
}

impl PodPlan {
    /// Read and check `pod_dir/plan.json`.
    pub fn load(pod_dir: &std::path::Path) -> Result<PodPlan, PlanError> {
        let path = pod_dir.join(PLAN_FILE);
        let bytes = std::fs::read(&path).map_err(|source| PlanError::Io {
            path: path.clone(),
            source,
        })?;
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(&bytes).map_err(|source| PlanError::Json {
            path: path.clone(),
            source,
        })?;
        if v.version != PLAN_VERSION {
            return Err(PlanError::Version {
                path,
                found: v.version,
            });
        }
        let plan: PodPlan = serde_json::from_slice(&bytes).map_err(|source| PlanError::Json {
            path: path.clone(),
            source,
        })?;
        plan.check()?;
        Ok(plan)
    }

    /// The rules stage1 relies on: at least one app, unique app and volume
    /// names, mounts naming known volumes at absolute targets, one app when
    /// interactive, non-empty exec.
    pub fn check(&self) -> Result<(), PlanError> {
        let bad = |m: String| Err(PlanError::Invalid(m));
        if self.apps.is_empty() {
            return bad("a pod needs at least one app".into());
        }
        if self.interactive && self.apps.len() != 1 {
            return bad(format!(
                "--interactive needs exactly one app, the pod has {}",
                self.apps.len()
            ));
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.apps {
            if !names.insert(a.name.as_str()) {
                return bad(format!("two apps are named {:?}", a.name));
            }
            if a.exec.is_empty() {
                return bad(format!("app {:?} has nothing to execute", a.name));
            }
            if !a.working_directory.starts_with('/') {
                return bad(format!(
                    "app {:?}: working directory {:?} is not absolute",
                    a.name, a.working_directory
                ));
            }
        }
        let mut vols = std::collections::HashSet::new();
        for v in &self.volumes {
            if !vols.insert(v.name.as_str()) {
                return bad(format!("two volumes are named {:?}", v.name));
            }
        }
        for a in &self.apps {
            for m in &a.mounts {
                if !vols.contains(m.volume.as_str()) {
                    return bad(format!(
                        "app {:?} mounts volume {:?}, which the pod does not have",
                        a.name, m.volume
                    ));
                }
                if !m.target.starts_with('/') {
                    return bad(format!(
                        "app {:?}: mount target {:?} is not absolute",
                        a.name, m.target
                    ));
                }
            }
        }
        Ok(())
    }

    /// Write the plan to `pod_dir/plan.json` (temp file, fsync, rename).
    pub fn save(&self, pod_dir: &std::path::Path) -> Result<(), PlanError> {
        self.check()?;
        let path = pod_dir.join(PLAN_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|source| PlanError::Json {
            path: path.clone(),
            source,
        })?;
        crate::fsutil::write_atomic(&path, &json).map_err(|source| PlanError::Io { path, source })
    }
}
