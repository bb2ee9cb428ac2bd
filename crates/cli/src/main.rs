//! # berth: the command line
//!
//! Porcelain only: this crate parses flags with clap, calls the plumbing
//! crates (`berth-appc` now; store, fetch, pod and net as they land) and
//! prints. Nothing here knows a file format.
//!
//! Exit codes follow rkt, so that systemd units and scripts written for it keep
//! working: 0 for success, 1 when a command ran fine but its answer is "no"
//! (`image validate` found a problem), and 254 for berth's own failures, which
//! print exactly one line `berth: <what failed>: <why>` on stderr (the whole
//! chain of causes with `--debug`).
//!
//! Logging policy: `--debug` turns on `debug` level for berth's crates and
//! explains each step on stderr; without it only warnings are shown. Normal
//! output (IDs, tables, JSON) goes to stdout and is never mixed with logs.

mod cmd;
mod globals;

use clap::Parser;
use std::process::ExitCode;

use globals::Cli;

/// What a command tells `main` to exit with when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything went as asked: exit 0.
    Success,
    /// The command ran, and its answer is negative (e.g. an invalid image): exit 1.
    Negative,
    /// Pass on another program's exit status (`berth enter CMD` exits with
    /// CMD's).
    Code(u8),
}

/// Exit status of berth's own failures (rkt's convention).
pub const EXIT_FAILURE: u8 = 254;

fn main() -> ExitCode {
    // `berth stage1 ...` is how stage0 re-executes itself as the pod's
    // supervisor (one binary ships): it bypasses the porcelain entirely.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("stage1")) {
        return berth_stage1::main(std::env::args_os().skip(2).collect());
    }
    let cli = Cli::parse();
    init_logging(cli.global.debug);
    let debug = cli.global.debug;
    match cmd::run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Negative) => ExitCode::from(1),
        Ok(Outcome::Code(code)) => ExitCode::from(code),
        Err(err) => {
            eprintln!("berth: {}", render_error(&err, debug));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `<what failed>: <why>`: the outermost context and the innermost cause, or
/// every link of the chain with `--debug`.
fn render_error(err: &anyhow::Error, debug: bool) -> String {
    let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    if debug || chain.len() <= 2 {
        return chain.join(": ");
    }
    format!("{}: {}", chain[0], chain[chain.len() - 1])
}

fn init_logging(debug: bool) {
    let filter = if debug {
        "berth=debug,berth_appc=debug,warn"
    } else {
        "warn"
    };
    let env_filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rendering_keeps_outer_and_inner() {
        let err = anyhow::anyhow!("permission denied")
            .context("cannot open \"x\"")
            .context("building image");
        assert_eq!(
            render_error(&err, false),
            "building image: permission denied"
        );
        assert_eq!(
            render_error(&err, true),
            "building image: cannot open \"x\": permission denied"
        );
    }
}
