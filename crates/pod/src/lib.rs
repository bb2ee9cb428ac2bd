//! # berth-pod: pods on disk
//!
//! A pod is a directory under `<dir>/pods/<state>/<uuid>/` and a lock; there
//! is no daemon to ask, so everything `list`, `status`, `stop`, `enter`,
//! `rm` and `gc` need is in that directory (see [`layout`]).
//!
//! - [`plan`]: the typed, versioned stage0 -> stage1 plan.
//! - [`layout`]: the names of the files in a pod directory.
//! - [`status`]: what stage1 records about each app.
//! - [`inspect`], [`enter`], [`export`]: reading a pod from the outside,
//!   joining a running app, an exited app's files as one directory.
//! - [`state`]: pod directories, their states as (directory, lock held?),
//!   transitions by atomic rename under the lock, UUID prefix lookup.
//!
//! This crate never sees the image store: stage0 hands it rendered paths and
//! manifests as plain data.

pub mod enter;
pub mod export;
pub mod fsutil;
pub mod inspect;
pub mod layout;
pub mod plan;
pub mod state;
pub mod status;

pub use plan::{AppPlan, MountPlan, NetMode, PodPlan, RestartPolicy, VolumeKindPlan, VolumePlan};
pub use state::{Pod, PodError, PodState, Pods};
pub use status::AppStatus;
