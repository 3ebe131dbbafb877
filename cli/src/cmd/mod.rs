//! Command-line definitions and dispatch.

mod describe;
#[cfg(test)]
mod docs;
mod get;
mod lint;
mod pipeline;
mod rollout;
mod state;
mod version;

use clap::{Parser, Subcommand};

use crate::exit;
use crate::kube::{CliError, KubeArgs};
use rollout::{Request, RequestArgs, WaitArgs};

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
    /// List RankingModels (rm) or FeaturePipelines (fp) as a table, JSON, YAML
    /// or names.
    Get(get::GetArgs),
    /// Show a RankingModel's versions, current step, analysis, history,
    /// conditions and recent events.
    Describe(describe::DescribeArgs),
    /// Show where a RankingModel's rollout stands; with --wait, follow it and
    /// exit with its outcome (0 healthy, 10 failed, 11 paused, 12 timed out).
    Status(rollout::StatusArgs),
    /// Start a rollout: set spec.model to a new version.
    SetVersion(rollout::SetVersionArgs),
    /// Continue a canary paused for a person (the next step), or with --full
    /// skip the remaining steps. With --gitops: open a pull request that changes
    /// the version in the GitOps repository.
    Promote(PromoteArgs),
    /// Abort a canary: all traffic back to stable at once.
    Abort(NamedRequestArgs),
    /// Restart an aborted canary from its first step.
    Retry(NamedRequestArgs),
    /// Roll a model back to the previous promoted version (or --to VERSION)
    /// from status.history, skipping canary steps. With --gitops: by a forward
    /// pull request.
    Rollback(RollbackArgs),
    /// Print the client's version and the operator's (when a cluster is reachable).
    Version(version::VersionArgs),
    /// Run, backfill and inspect FeaturePipelines: `pipeline run NAME --wait`,
    /// `pipeline backfill NAME --from T --to T --step 1h`, `pipeline status NAME`.
    Pipeline(pipeline::PipelineArgs),
    /// Print a shell completion script: mlctl completion bash > /etc/bash_completion.d/mlctl
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print help for a command (`mlctl help status`) or a topic: `mlctl help
    /// exit-codes` prints the exit-code contract.
    Help {
        /// A command path (e.g. `status`) or `exit-codes`.
        topic: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct NamedRequestArgs {
    /// The RankingModel.
    name: String,
    #[command(flatten)]
    request: RequestArgs,
}

#[derive(Debug, clap::Args)]
struct PromoteArgs {
    /// The RankingModel (cluster mode; with --gitops use --model).
    #[arg(required_unless_present = "gitops")]
    name: Option<String>,
    /// Skip the remaining steps and analysis: the canary becomes stable as soon
    /// as its pods are ready.
    #[arg(long, conflicts_with = "gitops")]
    full: bool,
    #[command(flatten)]
    request: RequestArgs,
    /// Open a pull request in the GitOps repository instead of acting on the cluster.
    #[arg(long)]
    gitops: bool,
    #[command(flatten)]
    gitops_args: mlctl_gitops::cli::PromoteArgs,
}

#[derive(Debug, clap::Args)]
struct RollbackArgs {
    /// The RankingModel (cluster mode; with --gitops use --model).
    #[arg(required_unless_present = "gitops")]
    name: Option<String>,
    /// Version to roll back to (default: the previous promoted version).
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    kube: KubeArgs,
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
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "mlctl", &mut std::io::stdout());
            exit::SUCCESS
        }
        cluster => cluster_command(cluster),
    }
}

/// Runs a command that talks to the cluster, on a single-threaded runtime.
fn cluster_command(command: Command) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return exit::ERROR;
        }
    };
    match runtime.block_on(dispatch(command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

async fn dispatch(command: Command) -> Result<u8, CliError> {
    // `required_unless_present = "gitops"` guarantees a name in cluster mode.
    let name = |name: Option<String>| {
        name.ok_or_else(|| CliError::Usage("a RankingModel NAME is required".to_string()))
    };
    match command {
        Command::Get(args) => get::run(&args).await,
        Command::Describe(args) => describe::run(&args).await,
        Command::Status(args) => rollout::status(&args).await,
        Command::SetVersion(args) => rollout::set_version(&args).await,
        Command::Promote(args) => {
            let request = if args.full {
                Request::PromoteFull
            } else {
                Request::Promote
            };
            rollout::request(&name(args.name)?, request, &args.request).await
        }
        Command::Abort(args) => rollout::request(&args.name, Request::Abort, &args.request).await,
        Command::Retry(args) => rollout::request(&args.name, Request::Retry, &args.request).await,
        Command::Rollback(args) => {
            rollout::rollback(
                &name(args.name)?,
                args.to.as_deref(),
                &args.wait,
                &args.kube,
            )
            .await
        }
        Command::Version(args) => Ok(version::run(&args).await),
        Command::Pipeline(args) => pipeline::run(&args).await,
        Command::Lint(_) | Command::Eval(_) | Command::Help { .. } | Command::Completion { .. } => {
            Err(CliError::Usage("not a cluster command".to_string()))
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
