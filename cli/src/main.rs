//! `mlctl`: drive RankingModel rollouts and FeaturePipelines from a terminal
//! or a CI pipeline, and gate models on offline ranking metrics.

mod cmd;
mod exit;
// Used by the cluster commands as they land (get, status, promote, pipeline ...).
#[allow(dead_code)]
mod kube;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    std::process::ExitCode::from(cmd::run(cli))
}
