//! `mlctl-ranker serve`: the HTTP shell around the engine (owned by the server work).

use std::process::ExitCode;

/// Options of `mlctl-ranker serve`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the server until SIGTERM.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("mlctl-ranker serve: not built yet");
    ExitCode::FAILURE
}
