//! `mlctl`: drive RankingModel rollouts and FeaturePipelines from a terminal
//! or a CI pipeline, and gate models on offline ranking metrics.

mod cmd;
mod exit;
mod kube;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    std::process::ExitCode::from(cmd::run(cli))
}
