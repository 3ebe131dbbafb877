//! `mlctl-ranker fetch`: the storage initializer (owned by the fetch work).

use std::process::ExitCode;

/// Options of `mlctl-ranker fetch`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Downloads and verifies one artifact.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("mlctl-ranker fetch: not built yet");
    ExitCode::FAILURE
}
