//! The pod lifecycle commands that need no daemon: list, status, stop,
//! logs, enter, rm, gc, cat-manifest, export. Each reads the pod directory
//! and its lock (berth-pod) and nothing else.

use clap::Args;

use crate::globals::GlobalArgs;
use crate::Outcome;

/// `berth list`.
#[derive(Debug, Args)]
pub struct ListArgs {}

/// `berth status`.
#[derive(Debug, Args)]
pub struct StatusArgs {}

/// `berth stop`.
#[derive(Debug, Args)]
pub struct StopArgs {}

/// `berth logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {}

/// `berth enter`.
#[derive(Debug, Args)]
pub struct EnterArgs {}

/// `berth rm`.
#[derive(Debug, Args)]
pub struct RmArgs {}

/// `berth gc`.
#[derive(Debug, Args)]
pub struct GcArgs {}

/// `berth cat-manifest`.
#[derive(Debug, Args)]
pub struct CatManifestArgs {}

/// `berth export`.
#[derive(Debug, Args)]
pub struct ExportArgs {}

macro_rules! not_yet {
    ($($f:ident: $t:ty),*) => {$(
        pub fn $f(_g: &GlobalArgs, _a: &$t) -> anyhow::Result<Outcome> {
            anyhow::bail!("not implemented yet")
        }
    )*};
}
not_yet!(list: ListArgs, status: StatusArgs, stop: StopArgs, logs: LogsArgs, enter: EnterArgs,
    rm: RmArgs, gc: GcArgs, cat_manifest: CatManifestArgs, export: ExportArgs);
