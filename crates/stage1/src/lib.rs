//! # berth-stage1: what runs a pod
//!
//! (Being written.)

use std::ffi::OsString;
use std::process::ExitCode;

/// Entry point of `berth stage1 ARGS...` (hidden; stage0 execs it).
pub fn main(args: Vec<OsString>) -> ExitCode {
    eprintln!("berth: stage1 is not built yet ({args:?})");
    ExitCode::from(254)
}
