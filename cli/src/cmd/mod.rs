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
use crate::kube::{CliError, GlobalClusterArgs, KubeArgs};
use rollout::{Request, RequestArgs, WaitArgs};

/// Run search-ranking models in production on Kubernetes.
#[derive(Debug, Parser)]
#[command(
    name = "mlctl",
    version,
    about,
    long_about = None,
    disable_help_subcommand = true,
    after_help = "Cluster options go before or after the command, as with kubectl: --kubeconfig FILE, --context NAME, -n/--namespace NAMESPACE, and -A/--all-namespaces for get (mlctl -n search get rm).\n\nExit codes: 0 success, 1 error, 2 usage, 10 rollout failed, 11 paused for a person, 12 timed out (mlctl help exit-codes).\n\nText from the cluster or GitHub (messages, event notes, reasons) is printed with its control characters escaped: an ESC shows as \\x1b instead of acting on the terminal."
)]
pub struct Cli {
    #[command(flatten)]
    cluster: GlobalClusterArgs,
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
    /// Roll a model back to the previous version that served as stable (or --to
    /// VERSION) from status.history, with its digest, skipping canary steps and
    /// analysis. With --gitops: by a forward pull request.
    ///
    /// Only a version whose history says it served as stable (Promoted or
    /// RolledBack) is rolled back to; an Aborted or Superseded canary never
    /// passed its analysis, so naming one with --to rolls it out as a normal
    /// canary, steps and analysis included (the output says so). The spec
    /// change is made only if the model did not change since it was read;
    /// otherwise run the command again.
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
    /// Version to roll back to (default: the newest version other than the
    /// stable one that served as stable). It must be in status.history; one
    /// that never became stable is rolled out as a canary, not rolled back to.
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
    if let Err(message) = check_all_namespaces(&cli) {
        eprintln!("error: {message}");
        return exit::USAGE;
    }
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

/// `-A` is a `get` option made global so that `mlctl -A get rm` works; clap
/// then accepts it on every command and cannot apply get's "not with a NAME"
/// rule when it came before the verb, so both are checked here.
fn check_all_namespaces(cli: &Cli) -> Result<(), String> {
    if !cli.cluster.all_namespaces {
        return Ok(());
    }
    match &cli.command {
        Command::Get(args) if args.name.is_some() => Err(
            "-A/--all-namespaces lists every namespace and cannot go with a NAME; drop -A or the NAME (use -n NAMESPACE for one object)".to_string(),
        ),
        Command::Get(_) => Ok(()),
        _ => Err(
            "-A/--all-namespaces applies to mlctl get only; pick one namespace with -n NAMESPACE".to_string(),
        ),
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
            // API server messages are remote text.
            let text = err.to_string();
            eprintln!("error: {}", mlctl_gitops::terminal::escape_controls(&text));
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(line: &[&str]) -> Cli {
        let mut args = vec!["mlctl"];
        args.extend_from_slice(line);
        match Cli::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(err) => panic!("{line:?} does not parse: {err}"),
        }
    }

    /// The cluster options the command itself will use.
    fn kube_of(cli: &Cli) -> &KubeArgs {
        match &cli.command {
            Command::Get(args) => &args.kube,
            Command::Describe(args) => &args.kube,
            Command::Status(args) => &args.kube,
            Command::Abort(args) => &args.request.kube,
            other => panic!("no cluster options in {other:?}"),
        }
    }

    #[test]
    fn the_definition_passes_clap_checks() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cluster_options_go_before_or_after_the_verb() {
        for line in [
            &["-n", "ns", "get", "rm"][..],
            &["get", "rm", "-n", "ns"],
            &["get", "-n", "ns", "rm"],
            &["--namespace=ns", "describe", "rm", "x"],
            &["-n", "ns", "status", "rm", "x"],
            &["-n", "ns", "abort", "x"],
        ] {
            let cli = parse(line);
            assert_eq!(kube_of(&cli).namespace.as_deref(), Some("ns"), "{line:?}");
        }
        let cli = parse(&["--context", "c", "describe", "rm", "x"]);
        assert_eq!(kube_of(&cli).context.as_deref(), Some("c"));
        let cli = parse(&["--kubeconfig", "/k", "--context", "c", "get", "fp"]);
        assert_eq!(
            kube_of(&cli).kubeconfig.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        assert_eq!(kube_of(&cli).context.as_deref(), Some("c"));
        // As with kubectl, the last one given wins.
        let cli = parse(&["-n", "a", "get", "rm", "-n", "b"]);
        assert_eq!(kube_of(&cli).namespace.as_deref(), Some("b"));
    }

    #[test]
    fn all_namespaces_goes_before_get_but_not_with_a_name_or_another_verb() {
        for line in [&["-A", "get", "rm"][..], &["get", "rm", "-A"]] {
            let cli = parse(line);
            let Command::Get(args) = &cli.command else {
                panic!("not get")
            };
            assert!(args.all_namespaces, "{line:?}");
            assert_eq!(check_all_namespaces(&cli), Ok(()));
        }
        // clap's own conflict check still holds after the verb.
        assert!(Cli::try_parse_from(["mlctl", "get", "rm", "x", "-A"]).is_err());
        let named = check_all_namespaces(&parse(&["-A", "get", "rm", "x"]));
        assert!(named.is_err_and(|e| e.contains("NAME")));
        let status = check_all_namespaces(&parse(&["-A", "status", "rm", "x"]));
        assert!(status.is_err_and(|e| e.contains("mlctl get only")));
        assert_eq!(run(parse(&["status", "rm", "x", "-A"])), exit::USAGE);
    }

    #[test]
    fn offline_commands_accept_cluster_options_and_keep_them_out_of_their_help() {
        let cli = parse(&["-n", "ns", "lint", "f.yaml"]);
        assert!(matches!(cli.command, Command::Lint(_)));
        let mut command = Cli::command();
        command.build();
        for offline in ["lint", "eval", "completion"] {
            let Some(sub) = command.find_subcommand_mut(offline) else {
                panic!("no {offline}")
            };
            let help = sub.render_long_help().to_string();
            assert!(!help.contains("--namespace"), "{offline}:\n{help}");
            assert!(!help.contains("--kubeconfig"), "{offline}:\n{help}");
        }
        // Cluster commands still document them, and the top-level help says
        // where they may go.
        let Some(get) = command.find_subcommand_mut("get") else {
            panic!("no get")
        };
        let help = get.render_long_help().to_string();
        assert!(
            help.contains("--namespace") && help.contains("--all-namespaces"),
            "{help}"
        );
        let top = Cli::command().render_long_help().to_string();
        assert!(top.contains("before or after the command"), "{top}");
    }
}
