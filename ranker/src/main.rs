//! `mlctl-ranker`: parse the command line, run one subcommand.

use clap::{Parser, Subcommand};

/// The mlctl serving runtime: scores LightGBM, XGBoost and ONNX rankers.
#[derive(Parser)]
#[command(name = "mlctl-ranker", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a model over HTTP (the ranking API, Open Inference Protocol v2, metrics).
    Serve(mlctl_ranker::serve::Args),
    /// Download a model artifact and verify its sha256 (the storage initializer).
    Fetch(mlctl_ranker::fetch::Args),
    /// Score a matrix of feature rows offline and print one score per line.
    Predict(mlctl_ranker::predict::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => mlctl_ranker::serve::run(args),
        Command::Fetch(args) => mlctl_ranker::fetch::run(args),
        Command::Predict(args) => mlctl_ranker::predict::run(args),
    }
}
