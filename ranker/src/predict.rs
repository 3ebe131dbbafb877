//! `mlctl-ranker predict`: offline scoring of a feature matrix (owned by the engine work).

use std::process::ExitCode;

/// Options of `mlctl-ranker predict`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Scores a file of rows and prints one score per line.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("mlctl-ranker predict: not built yet");
    ExitCode::FAILURE
}
