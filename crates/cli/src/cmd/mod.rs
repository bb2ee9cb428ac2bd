//! One module per command group; `run` dispatches.

pub mod discover;
pub mod fetch;
pub mod image;
pub mod oci;
pub mod pods;
pub mod run;
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
        Command::Run(args) => run::run(&cli.global, &args),
        Command::Prepare(args) => run::prepare(&cli.global, &args),
        Command::RunPrepared(args) => run::run_prepared(&cli.global, &args),
        Command::List(args) => pods::list(&cli.global, &args),
        Command::Status(args) => pods::status(&cli.global, &args),
        Command::Stop(args) => pods::stop(&cli.global, &args),
        Command::Logs(args) => pods::logs(&cli.global, &args),
        Command::Enter(args) => pods::enter(&cli.global, &args),
        Command::Rm(args) => pods::rm(&cli.global, &args),
        Command::Gc(args) => pods::gc(&cli.global, &args),
        Command::CatManifest(args) => pods::cat_manifest(&cli.global, &args),
        Command::Export(args) => pods::export(&cli.global, &args),
    }
}

/// Output formats for commands that a script may want to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text (`table` is the same, as rkt's list commands say).
    #[value(alias = "table")]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Print rows as left-aligned columns two spaces apart (the first row is
/// the legend when the caller keeps one).
pub fn write_table(out: &mut impl std::io::Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}
