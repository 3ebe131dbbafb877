//! Argument definitions and entry points, flattened into the CLI's `promote` and
//! `rollback` commands. Exit codes: 0 success (including "already promoted"), 1 error,
//! 2 usage, 10 the gate report says the gate failed (refused unless `--force`).

use std::path::PathBuf;

use clap::Args;

use crate::change::{ChangeSpec, FlowError, Outcome, SourceCommit};
use crate::github::api::{Api, RetryPolicy};
use crate::manifest::{Desired, DigestChange};
use crate::record::{self, Action, Record};
use crate::report;
use crate::terminal::escape_controls;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_GATE_FAILED: i32 = 10;

/// Where the manifest lives and how to reach it (shared by promote and rollback).
// `group(skip)`: clap names a derived group after the struct, and the CLI's own
// argument structs are also called PromoteArgs/RollbackArgs, which would clash.
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct TargetArgs {
    /// GitHub repository holding the manifests (OWNER/REPO); the change is a pull request.
    #[arg(long, value_name = "OWNER/REPO", conflicts_with = "git")]
    pub repo: Option<String>,
    /// Any git remote (path or URL) instead of GitHub: clone, commit, push the branch; no PR.
    #[arg(long = "git", value_name = "DIR|URL")]
    pub git: Option<String>,
    /// Path of the manifest file in the repository.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// metadata.name of the RankingModel to change.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Branch the pull request targets [default: main].
    #[arg(long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// Environment name, used in the branch (mlctl/<env>/<model>) and status context [default: prod].
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Label added to the pull request [default: mlctl-promotion].
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Print the diff and the calls that would be made; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Reopen this version's pull request if it was closed without merging.
    #[arg(long)]
    pub reopen: bool,
    /// Digest of the new artifact (64 hex characters); "" removes the key.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Remove spec.model.sha256 instead of setting it.
    #[arg(long, conflicts_with = "sha256")]
    pub no_sha256: bool,
    /// GitHub API URL, for GitHub Enterprise (e.g. https://ghe.example.com/api/v3).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// Authenticate as this GitHub App instead of GITHUB_TOKEN/GH_TOKEN.
    #[arg(long, value_name = "ID", requires = "app_key")]
    pub app_id: Option<u64>,
    /// The GitHub App's private key (PEM file).
    #[arg(long, value_name = "FILE", requires = "app_id")]
    pub app_key: Option<PathBuf>,
    /// The App installation to act as [default: the installation on --repo].
    #[arg(long, value_name = "ID", requires = "app_id")]
    pub installation_id: Option<u64>,
    /// Longest wait for a rate limit to reset, in seconds, before giving up [default: 900].
    #[arg(long, value_name = "SECONDS")]
    pub max_retry_wait: Option<u64>,
    /// Longest wait for one GitHub request, connecting included, in seconds [default: 60].
    /// A read that times out is sent again; a write that may have landed is not.
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
}

impl TargetArgs {
    /// `--request-timeout`, at least a second.
    pub(crate) fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.request_timeout.unwrap_or(60).max(1))
    }
}

/// GitOps flags of `mlctl promote`.
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The model version to promote (spec.model.version).
    #[arg(long = "version", value_name = "VERSION")]
    pub model_version: Option<String>,
    /// The artifact URI of that version (spec.model.uri).
    #[arg(long, value_name = "URI")]
    pub uri: Option<String>,
    /// Gate report written by `mlctl eval -o json`; posted on the PR and as commit statuses.
    #[arg(long, value_name = "FILE")]
    pub gate_report: Option<PathBuf>,
    /// Post this Markdown verbatim instead of rendering it from --gate-report.
    #[arg(long, value_name = "FILE", requires = "gate_report")]
    pub gate_report_md: Option<PathBuf>,
    /// Promote even though the gate report says the gate failed, or re-apply a version
    /// that was merged before and later rolled back.
    #[arg(long)]
    pub force: bool,
    /// The evaluated commit that gets the gate status [env: GITHUB_SHA].
    #[arg(long, value_name = "SHA", env = "GITHUB_SHA", hide_env_values = true)]
    pub source_sha: Option<String>,
    /// Repository of the evaluated commit [default: GITHUB_REPOSITORY, else --repo].
    #[arg(
        long,
        value_name = "OWNER/REPO",
        env = "GITHUB_REPOSITORY",
        hide_env_values = true
    )]
    pub source_repo: Option<String>,
}

/// GitOps flags of `mlctl rollback`.
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Artifact URI of the version to roll back to, when it is not in the promotion history.
    #[arg(long, value_name = "URI")]
    pub uri: Option<String>,
}

#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

fn required<'a>(value: &'a Option<String>, flag: &str) -> Result<&'a str, UsageError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| UsageError(format!("missing required flag {flag}")))
}

fn digest_change(target: &TargetArgs) -> Result<DigestChange, UsageError> {
    match (&target.sha256, target.no_sha256) {
        (_, true) => Ok(DigestChange::Remove),
        (Some(d), false) if d.is_empty() => Ok(DigestChange::Remove),
        (Some(d), false) if d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(DigestChange::Set(d.to_ascii_lowercase()))
        }
        (Some(d), false) => Err(UsageError(format!(
            "--sha256 must be 64 hex characters (got {} characters)",
            d.len()
        ))),
        (None, false) => Ok(DigestChange::Unspecified),
    }
}

/// Validated target flags.
struct Target<'a> {
    model: &'a str,
    path: &'a str,
    base: &'a str,
    env: &'a str,
    label: &'a str,
}

fn target(args: &TargetArgs) -> Result<Target<'_>, UsageError> {
    if args.repo.is_none() && args.git.is_none() {
        return Err(UsageError(
            "missing required flag --repo OWNER/REPO (or --git DIR|URL for other git hosts)".into(),
        ));
    }
    if let Some(repo) = &args.repo
        && repo.split('/').filter(|p| !p.is_empty()).count() != 2
    {
        return Err(UsageError(format!(
            "--repo must be OWNER/REPO, got {repo:?}"
        )));
    }
    Ok(Target {
        model: required(&args.model, "--model NAME")?,
        path: required(&args.path, "--path PATH")?,
        base: args.base.as_deref().unwrap_or("main"),
        env: args.env.as_deref().unwrap_or("prod"),
        label: args.label.as_deref().unwrap_or("mlctl-promotion"),
    })
}

fn finish(result: Result<Outcome, FlowError>) -> i32 {
    match result {
        Ok(Outcome::AlreadyDone(message)) => {
            println!("{}", escape_controls(&message));
            EXIT_OK
        }
        Ok(Outcome::PullRequest { number, url }) => {
            eprintln!("pull request #{number} is ready for review");
            println!("{url}");
            EXIT_OK
        }
        Ok(Outcome::Pushed { branch }) => {
            println!("pushed branch {branch}; open a merge request for it on your git host");
            EXIT_OK
        }
        Ok(Outcome::DryRun) => EXIT_OK,
        Err(error) => {
            // The last line of defence: no error may print a URL's credentials.
            let text = crate::redact::url_credentials(&error.to_string());
            eprintln!("error: {}", escape_controls(&text));
            EXIT_ERROR
        }
    }
}

fn usage(error: UsageError) -> i32 {
    eprintln!("error: {}", error.0);
    EXIT_USAGE
}

/// The GitHub token, taken from GITHUB_TOKEN or GH_TOKEN (kept apart from the flags so
/// that it never appears in `--help`, `Debug` output or logs, and so tests can inject one).
#[derive(Clone, Default)]
pub struct Credentials {
    token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_some() {
            "<redacted>"
        } else {
            "<none>"
        };
        f.debug_struct("Credentials")
            .field("token", &token)
            .finish()
    }
}

impl Credentials {
    pub fn from_env() -> Credentials {
        let token = ["GITHUB_TOKEN", "GH_TOKEN"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|value| !value.trim().is_empty());
        Credentials { token }
    }

    pub fn with_token(token: impl Into<String>) -> Credentials {
        Credentials {
            token: Some(token.into()),
        }
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// Runs `mlctl promote --gitops`; returns the process exit code.
pub fn run_promote(args: &PromoteArgs) -> i32 {
    run_promote_with(args, &Credentials::from_env())
}

/// [`run_promote`] with explicit credentials.
pub fn run_promote_with(args: &PromoteArgs, credentials: &Credentials) -> i32 {
    let prepared = (|| -> Result<_, UsageError> {
        let t = target(&args.target)?;
        let version = required(&args.model_version, "--version VERSION")?;
        let uri = required(&args.uri, "--uri URI")?;
        let sha256 = digest_change(&args.target)?;
        Ok((t, version, uri, sha256))
    })();
    let (t, version, uri, sha256) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return usage(error),
    };
    let report = match &args.gate_report {
        None => None,
        Some(path) => {
            let subject = report::Subject {
                model: t.model,
                version,
                env: t.env,
            };
            match report::load(path, args.gate_report_md.as_deref(), &subject) {
                Ok(report) => {
                    if !report.unchecked_inputs.is_empty() {
                        eprintln!(
                            "note: the gate report's {} file(s) are not here to check; the pull \
                             request records the report's digest, which covers theirs",
                            report.unchecked_inputs.join(", ")
                        );
                    }
                    Some(report)
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    return EXIT_ERROR;
                }
            }
        }
    };
    if let Some(loaded) = &report
        && !loaded.report.pass
        && !args.force
    {
        eprintln!(
            "error: the gate report says the gate failed; refusing to promote {} {version} \
             (pass --force to open the pull request anyway)",
            t.model
        );
        return EXIT_GATE_FAILED;
    }
    let source = match (
        &args.source_sha,
        args.source_repo.as_ref().or(args.target.repo.as_ref()),
    ) {
        (Some(sha), Some(repo)) if !sha.is_empty() => Some(SourceCommit {
            repo: repo.clone(),
            sha: sha.clone(),
        }),
        _ => None,
    };
    let spec = ChangeSpec {
        action: Action::Promote,
        model: t.model,
        env: t.env,
        path: t.path,
        base: t.base,
        label: t.label,
        reopen: args.target.reopen,
        force: args.force,
        desired: Desired {
            version: version.to_string(),
            uri: uri.to_string(),
            sha256,
        },
        report: report.as_ref(),
        source,
    };
    run(&args.target, credentials, |host| host.open(&spec))
}

/// Runs `mlctl rollback --gitops [--to VERSION]`; returns the process exit code.
pub fn run_rollback(args: &RollbackArgs, to: Option<&str>) -> i32 {
    run_rollback_with(args, to, &Credentials::from_env())
}

/// [`run_rollback`] with explicit credentials.
pub fn run_rollback_with(args: &RollbackArgs, to: Option<&str>, credentials: &Credentials) -> i32 {
    let t = match target(&args.target) {
        Ok(t) => t,
        Err(error) => return usage(error),
    };
    let explicit_digest = match digest_change(&args.target) {
        Ok(change) => change,
        Err(error) => return usage(error),
    };
    run(&args.target, credentials, |host| {
        let current = host.current_version(t.path, t.base, t.model)?;
        let history = host.history(t.path, t.model, t.env)?;
        let found: Option<Record> = match to {
            Some(version) => history.iter().find(|r| r.version == version).cloned(),
            None => record::previous_passing(&history, &current).cloned(),
        };
        let (version, uri, digest) = match (to, found, &args.uri) {
            (Some(version), None, Some(uri)) => {
                (version.to_string(), uri.clone(), explicit_digest.clone())
            }
            (_, Some(r), uri) => {
                let digest = match (&explicit_digest, &r.sha256) {
                    (DigestChange::Unspecified, Some(d)) => DigestChange::Set(d.clone()),
                    (DigestChange::Unspecified, None) => DigestChange::Remove,
                    (explicit, _) => explicit.clone(),
                };
                (r.version, uri.clone().unwrap_or(r.uri), digest)
            }
            (Some(version), None, None) => {
                return Err(FlowError::Refused(format!(
                    "version {version} is not in the promotion history of {} ({}); pass --uri \
                     (and --sha256) to roll back to it",
                    t.model, t.env
                )));
            }
            (None, None, _) => {
                return Err(FlowError::Refused(format!(
                    "no earlier passing version of {} ({}) in the history of merged mlctl changes; \
                     name one with --to VERSION --uri URI",
                    t.model, t.env
                )));
            }
        };
        let line = format!("rolling back {} from {current} to {version}", t.model);
        eprintln!("{}", escape_controls(&line));
        let spec = ChangeSpec {
            action: Action::Rollback,
            model: t.model,
            env: t.env,
            path: t.path,
            base: t.base,
            label: t.label,
            reopen: args.target.reopen,
            force: true,
            desired: Desired {
                version,
                uri,
                sha256: digest,
            },
            report: None,
            source: None,
        };
        host.open(&spec)
    })
}

/// Either GitHub (through the API) or a git remote (through a clone).
enum Host {
    GitHub {
        api: Box<Api>,
        runtime: tokio::runtime::Runtime,
    },
    Git {
        clone: crate::git::Clone,
        dry_run: bool,
    },
}

impl Host {
    fn open(&self, spec: &ChangeSpec<'_>) -> Result<Outcome, FlowError> {
        match self {
            Host::GitHub { api, runtime } => {
                runtime.block_on(crate::github::open_change(api, spec))
            }
            Host::Git { clone, dry_run } => crate::git::open_change(clone, spec, *dry_run),
        }
    }

    fn current_version(&self, path: &str, base: &str, model: &str) -> Result<String, FlowError> {
        let text = match self {
            Host::GitHub { api, runtime } => {
                runtime.block_on(crate::github::read_base(api, path, base))?
            }
            Host::Git { clone, .. } => crate::git::read_base(clone, path)?,
        };
        Ok(crate::manifest::read_model(&text, model)?.version)
    }

    fn history(&self, path: &str, model: &str, env: &str) -> Result<Vec<Record>, FlowError> {
        Ok(match self {
            Host::GitHub { api, runtime } => {
                runtime.block_on(crate::github::history(api, model, env))?
            }
            Host::Git { clone, .. } => crate::git::history(clone, path, model, env)?,
        })
    }
}

/// Builds the host and runs `work` on a thread of its own, so that the CLI may call us
/// from inside its own async runtime.
fn run<F>(args: &TargetArgs, credentials: &Credentials, work: F) -> i32
where
    F: FnOnce(&Host) -> Result<Outcome, FlowError> + Send,
{
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| -> i32 {
            let host = match connect(args, credentials) {
                Ok(host) => host,
                Err(Connect::Usage(error)) => return usage(error),
                Err(Connect::Failed(message)) => {
                    let text = crate::redact::url_credentials(&message);
                    eprintln!("error: {}", escape_controls(&text));
                    return EXIT_ERROR;
                }
            };
            finish(work(&host))
        });
        handle.join().unwrap_or(EXIT_ERROR)
    })
}

pub(crate) enum Connect {
    Usage(UsageError),
    Failed(String),
}

fn connect(args: &TargetArgs, credentials: &Credentials) -> Result<Host, Connect> {
    let base = args.base.as_deref().unwrap_or("main");
    if let Some(remote) = &args.git {
        let clone = crate::git::clone(remote, base).map_err(|e| Connect::Failed(e.to_string()))?;
        return Ok(Host::Git {
            clone,
            dry_run: args.dry_run,
        });
    }
    let repo = args.repo.as_deref().unwrap_or_default();
    let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Connect::Failed(format!("cannot start the async runtime: {e}")))?;
    let crab = runtime.block_on(crate::auth::client(args, credentials, owner, name))?;
    let policy = RetryPolicy {
        max_wait: std::time::Duration::from_secs(args.max_retry_wait.unwrap_or(900)),
        request_timeout: args.request_timeout(),
        ..RetryPolicy::default()
    };
    Ok(Host::GitHub {
        api: Box::new(
            Api::new(crab, owner, name, args.dry_run, policy).as_app(args.app_id.is_some()),
        ),
        runtime,
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// A copy of how the CLI wraps our flags, down to its struct names (clap derives a group
    /// named after each struct, so same-named structs clash unless ours skip the group).
    mod host {
        #[derive(Debug, clap::Parser)]
        pub struct Cli {
            #[command(subcommand)]
            pub command: Command,
        }

        #[derive(Debug, clap::Subcommand)]
        pub enum Command {
            Promote(PromoteArgs),
            Rollback(RollbackArgs),
        }

        #[derive(Debug, clap::Args)]
        pub struct PromoteArgs {
            #[arg(long)]
            pub gitops: bool,
            #[arg(long)]
            pub full: bool,
            #[arg(long)]
            pub wait: bool,
            #[arg(short = 'n', long)]
            pub namespace: Option<String>,
            #[arg(long)]
            pub context: Option<String>,
            #[arg(long)]
            pub kubeconfig: Option<String>,
            #[command(flatten)]
            pub gitops_args: super::PromoteArgs,
        }

        #[derive(Debug, clap::Args)]
        pub struct RollbackArgs {
            #[arg(long)]
            pub to: Option<String>,
            #[arg(long)]
            pub gitops: bool,
            #[arg(long)]
            pub wait: bool,
            #[command(flatten)]
            pub gitops_args: super::RollbackArgs,
        }
    }

    #[test]
    fn flags_flatten_into_the_cli_commands_without_clashes() {
        host::Cli::command().debug_assert();
        let cli = host::Cli::try_parse_from([
            "mlctl",
            "promote",
            "--gitops",
            "--repo",
            "acme/gitops",
            "--path",
            "m.yaml",
            "--model",
            "search-ranker",
            "--version",
            "2026-12-01.1",
            "--uri",
            "s3://b/k",
            "--no-sha256",
        ])
        .unwrap();
        let host::Command::Promote(promote) = cli.command else {
            panic!("not promote")
        };
        let args = promote.gitops_args;
        assert_eq!(args.model_version.as_deref(), Some("2026-12-01.1"));
        assert_eq!(digest_change(&args.target).unwrap(), DigestChange::Remove);
        let cli = host::Cli::try_parse_from([
            "mlctl", "rollback", "--gitops", "--to", "v1", "--git", "/r",
        ])
        .unwrap();
        let host::Command::Rollback(rollback) = cli.command else {
            panic!("not rollback")
        };
        assert_eq!(rollback.gitops_args.target.git.as_deref(), Some("/r"));
    }

    #[test]
    fn credentials_never_show_the_token() {
        let shown = format!("{:?}", Credentials::with_token("ghp_secret"));
        assert!(!shown.contains("ghp_secret"), "{shown}");
    }
}
