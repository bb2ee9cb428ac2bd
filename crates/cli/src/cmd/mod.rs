//! One module per command group; `run` dispatches.

pub mod discover;
pub mod fetch;
pub mod image;
pub mod oci;
pub mod store;
pub mod trust;
pub mod version;

use crate::globals::{Cli, Command};
use crate::Outcome;

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    tracing::debug!(
        dir = %cli.global.dir.display(),
        insecure = %cli.global.insecure_options,
        "global options"
    );
    match cli.command {
        Command::Image(cmd) => image::run(&cli.global, cmd),
        Command::Fetch(args) => fetch::run(&cli.global, &args),
        Command::Trust(cmd) => trust::run(&cli.global, cmd),
        Command::Version(args) => version::run(&args),
    }
}

/// Output formats for commands that a script may want to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout.
    Json,
}
