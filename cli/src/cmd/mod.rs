//! Command-line definitions and dispatch.

mod lint;

use clap::{Parser, Subcommand};

use crate::exit;

/// Run search-ranking models in production on Kubernetes.
#[derive(Debug, Parser)]
#[command(
    name = "mlctl",
    version,
    about,
    long_about = None,
    disable_help_subcommand = true,
    after_help = "Exit codes: 0 success, 1 error, 2 usage, 10 rollout failed, 11 paused for a person, 12 timed out (mlctl help exit-codes)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check RankingModel and FeaturePipeline manifests offline, with the
    /// same schema and CEL rules the API server enforces.
    Lint(lint::LintArgs),
    /// Evaluate a ranking run against judgements, or gate a candidate run
    /// against a baseline with significance tests.
    Eval(mlctl_eval::cli::EvalArgs),
    /// Promote a model: in GitOps mode, open a pull request that changes its
    /// version in the GitOps repository.
    Promote(PromoteArgs),
    /// Roll a model back to an earlier version: in GitOps mode, by a forward
    /// pull request.
    Rollback(RollbackArgs),
    /// Print help for a command (`mlctl help status`) or a topic: `mlctl help
    /// exit-codes` prints the exit-code contract.
    Help {
        /// A command path (e.g. `status`) or `exit-codes`.
        topic: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct PromoteArgs {
    /// Open a pull request in the GitOps repository instead of acting on the cluster.
    #[arg(long)]
    gitops: bool,
    #[command(flatten)]
    gitops_args: mlctl_gitops::cli::PromoteArgs,
}

#[derive(Debug, clap::Args)]
struct RollbackArgs {
    /// Version to roll back to (default: the previous passing version).
    #[arg(long)]
    to: Option<String>,
    /// Open a pull request in the GitOps repository instead of acting on the cluster.
    #[arg(long)]
    gitops: bool,
    #[command(flatten)]
    gitops_args: mlctl_gitops::cli::RollbackArgs,
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Help { topic } => help(&topic),
        Command::Lint(args) => lint::run(&args),
        Command::Eval(args) => exit::from_i32(mlctl_eval::cli::run(&args)),
        Command::Promote(args) if args.gitops => {
            exit::from_i32(mlctl_gitops::cli::run_promote(&args.gitops_args))
        }
        Command::Rollback(args) if args.gitops => exit::from_i32(mlctl_gitops::cli::run_rollback(
            &args.gitops_args,
            args.to.as_deref(),
        )),
        Command::Promote(_) | Command::Rollback(_) => {
            eprintln!(
                "error: only --gitops mode is available in this build; cluster-side promote and rollback come with the rollout-control commands"
            );
            exit::USAGE
        }
    }
}

/// `mlctl help [TOPIC...]`: the exit-code contract, or a command's long help.
fn help(topic: &[String]) -> u8 {
    use clap::CommandFactory;
    if topic.len() == 1 && topic[0] == "exit-codes" {
        print!("{}", exit::contract_text());
        return exit::SUCCESS;
    }
    let mut command = Cli::command();
    command.build();
    let mut current = &mut command;
    for name in topic {
        match current.find_subcommand_mut(name) {
            Some(sub) => current = sub,
            None => {
                eprintln!(
                    "error: no help topic {name:?}; try mlctl help, mlctl help exit-codes or mlctl help <command>"
                );
                return exit::USAGE;
            }
        }
    }
    match current.print_long_help() {
        Ok(()) => exit::SUCCESS,
        Err(_) => exit::ERROR,
    }
}
