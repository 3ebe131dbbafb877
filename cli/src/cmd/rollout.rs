//! Rollout control: `status`, `promote`, `abort`, `retry`, `rollback` and
//! `set-version`, and the watch that follows a rollout to its outcome.

use std::io::IsTerminal;
use std::time::Duration;

use std::cell::RefCell;

use kube::api::{Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::runtime::watcher;
use kube::{Api, Client};
use mlctl_crds::RankingModel;
use mlctl_crds::rankingmodel::HistoryEntry;
use mlctl_crds::requests;
use mlctl_gitops::terminal::escape_controls;

use super::state::{self, State, Until};
use crate::exit;
use crate::kube::{CliError, KubeArgs, RANKING_MODEL, Target};

/// How to wait: shared by every command with `--wait`.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct WaitArgs {
    /// Follow the rollout until it ends (see --until); the exit code tells how
    /// it ended: 0 done/healthy, 10 failed, 11 paused for a person, 12 timed out.
    #[arg(short, long)]
    pub wait: bool,
    /// With --wait: the longest wait, e.g. 30s, 10m, 1h. Reaching it exits 12.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print no progress lines on stderr while waiting (the summary on stdout stays).
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    mlctl_crds::parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Kind: rm (rankingmodel, rankingmodels).
    #[arg(value_parser = ["rm", "rankingmodel", "rankingmodels"], hide_possible_values = true)]
    kind: String,
    /// The RankingModel.
    name: String,
    /// What --wait waits for. done and healthy: 0 Healthy, 10 failed, 11 as soon
    /// as it pauses for a person. paused: 0 when it pauses for a person (or
    /// finished Healthy without pausing), 10 failed. A pause with a duration and
    /// waiting for features are progress: the wait goes on.
    #[arg(long, value_enum, default_value = "done", requires = "wait")]
    until: Until,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    pub(super) kube: KubeArgs,
}

/// Arguments of `promote`, `abort` and `retry` in cluster mode.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct RequestArgs {
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, clap::Args)]
pub struct SetVersionArgs {
    /// The RankingModel.
    name: String,
    /// The new spec.model.version (e.g. 2026-11-20.3).
    #[arg(long)]
    version: String,
    /// Where the artifact is (s3://, gs://, http(s)://, pvc://).
    #[arg(long)]
    uri: String,
    /// SHA-256 of the artifact (64 hex characters). Without it spec.model.sha256
    /// is removed, since the old digest cannot match a new artifact.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    kube: KubeArgs,
}

/// What a request annotation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Promote,
    PromoteFull,
    Abort,
    Retry,
}

impl Request {
    fn annotation(self) -> &'static str {
        match self {
            Request::Promote => requests::PROMOTE,
            Request::PromoteFull => requests::PROMOTE_FULL,
            Request::Abort => requests::ABORT,
            Request::Retry => requests::RETRY,
        }
    }

    /// Refuses a request the model's state makes meaningless.
    fn check(self, model: &RankingModel) -> Result<(), CliError> {
        let name = model.metadata.name.as_deref().unwrap_or("?");
        let status = model.status.as_ref();
        let canary = status.and_then(|s| s.canary.as_ref());
        let stable = status
            .and_then(|s| s.stable.as_ref())
            .map(|s| s.version.as_str())
            .unwrap_or("none");
        let aborted = canary.is_some_and(|c| c.aborted_at.is_some());
        match self {
            Request::Promote | Request::PromoteFull if canary.is_none() => {
                Err(CliError::Refused(format!(
                    "nothing to promote: rankingmodel {name:?} has no canary (stable {stable} serves all traffic); start one with mlctl set-version"
                )))
            }
            Request::Promote | Request::PromoteFull if aborted => Err(CliError::Refused(format!(
                "nothing to promote: the canary of rankingmodel {name:?} was aborted; start it again with mlctl retry {name}"
            ))),
            Request::Abort if canary.is_none() || aborted => Err(CliError::Refused(format!(
                "nothing to abort: rankingmodel {name:?} has no running canary (stable {stable})"
            ))),
            Request::Retry if !aborted => Err(CliError::Refused(format!(
                "nothing to retry: rankingmodel {name:?} has no aborted canary (mlctl retry restarts a canary that was aborted)"
            ))),
            _ => Ok(()),
        }
    }
}

/// A request timestamp: RFC 3339 with nanoseconds, so two never collide.
pub fn request_timestamp() -> String {
    format!("{:.9}", k8s_openapi::jiff::Timestamp::now())
}

fn target<'a>(verb: &'static str, name: &'a str, namespace: &'a str) -> Target<'a> {
    Target {
        verb,
        resource: RANKING_MODEL,
        name: Some(name),
        namespace: Some(namespace),
    }
}

async fn get_model(
    api: &Api<RankingModel>,
    name: &str,
    ns: &str,
) -> Result<RankingModel, CliError> {
    api.get(name)
        .await
        .map_err(|e| CliError::from_kube(e, &target("get", name, ns)))
}

async fn patch_model(
    api: &Api<RankingModel>,
    name: &str,
    ns: &str,
    patch: serde_json::Value,
) -> Result<RankingModel, CliError> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| CliError::from_kube(e, &target("patch", name, ns)))
}

async fn connect(kube: &KubeArgs) -> Result<(Client, String, Api<RankingModel>), CliError> {
    let (client, ns) = kube.client().await?;
    let api = Api::namespaced(client.clone(), &ns);
    Ok((client, ns, api))
}

/// `mlctl status rm NAME`.
pub async fn status(args: &StatusArgs) -> Result<u8, CliError> {
    let (_, ns, api) = connect(&args.kube).await?;
    let model = get_model(&api, &args.name, &ns).await?;
    if !args.wait.wait {
        let state = state::classify(&model, None);
        println!("{}", escape_controls(&state::summary(&model, &state, &ns)));
        return Ok(state.snapshot_code());
    }
    follow(&api, &ns, &args.name, &args.wait, args.until, None, None).await
}

/// `mlctl promote|abort|retry NAME`.
pub async fn request(name: &str, request: Request, args: &RequestArgs) -> Result<u8, CliError> {
    let (_, ns, api) = connect(&args.kube).await?;
    let model = get_model(&api, name, &ns).await?;
    request.check(&model)?;
    let annotation = request.annotation();
    let value = request_timestamp();
    patch_model(
        &api,
        name,
        &ns,
        serde_json::json!({"metadata": {"annotations": {annotation: value}}}),
    )
    .await?;
    eprintln!("rankingmodel/{name}: requested {annotation}={value}");
    if !args.wait.wait {
        return Ok(exit::SUCCESS);
    }
    let handled = Some((annotation, value.as_str()));
    follow(&api, &ns, name, &args.wait, Until::Done, handled, None).await
}

/// `mlctl set-version NAME --version V --uri U`.
pub async fn set_version(args: &SetVersionArgs) -> Result<u8, CliError> {
    check_version(&args.version)?;
    check_uri(&args.uri)?;
    if let Some(sha) = &args.sha256
        && !(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(CliError::Usage(format!(
            "--sha256 {sha:?} must be 64 hex characters (the output of sha256sum)"
        )));
    }
    let (_, ns, api) = connect(&args.kube).await?;
    let model = get_model(&api, &args.name, &ns).await?;
    let patch = serde_json::json!({"spec": {"model": {
        "version": args.version, "uri": args.uri, "sha256": args.sha256,
    }}});
    let patched = patch_model(&api, &args.name, &ns, patch).await?;
    let before = model.spec.model.version;
    eprintln!(
        "rankingmodel/{}: spec.model.version {before} -> {} (generation {})",
        args.name,
        args.version,
        patched.metadata.generation.unwrap_or_default()
    );
    if !args.wait.wait {
        return Ok(exit::SUCCESS);
    }
    follow(
        &api,
        &ns,
        &args.name,
        &args.wait,
        Until::Done,
        None,
        Some(&args.version),
    )
    .await
}

/// `mlctl rollback NAME [--to V]` in cluster mode.
pub async fn rollback(
    name: &str,
    to: Option<&str>,
    wait: &WaitArgs,
    kube: &KubeArgs,
) -> Result<u8, CliError> {
    let (_, ns, api) = connect(kube).await?;
    let model = get_model(&api, name, &ns).await?;
    let plan = rollback_plan(&model, to)?;
    let entry = plan.entry.clone();
    let patch = rollback_patch(&model, &plan, &request_timestamp());
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| rollback_error(e, name, &ns))?;
    let from = &model.spec.model.version;
    let line = if plan.was_stable {
        format!(
            "rankingmodel/{name}: rolling back {from} -> {} ({}): canary steps and analysis skipped",
            entry.version, entry.uri
        )
    } else {
        format!(
            "rankingmodel/{name}: {} was never stable (history: {}), so this is no rollback: rolling it out {from} -> {} ({}) as a normal canary, with its steps and analysis",
            entry.version, entry.outcome, entry.version, entry.uri
        )
    };
    eprintln!("{}", escape_controls(&line));
    if !wait.wait {
        return Ok(exit::SUCCESS);
    }
    follow(
        &api,
        &ns,
        name,
        wait,
        Until::Done,
        None,
        Some(&entry.version),
    )
    .await
}

/// History outcomes of a revision that served as stable: `Promoted` (it
/// became stable) and `RolledBack` (the stable one a rollback moved away
/// from). `Aborted` and `Superseded` entries are canaries that never got
/// there: going back to one must not skip its analysis.
const STABLE_OUTCOMES: [&str; 2] = ["Promoted", "RolledBack"];

fn was_stable(entry: &HistoryEntry) -> bool {
    STABLE_OUTCOMES.contains(&entry.outcome.as_str())
}

/// Where `mlctl rollback` goes and how.
#[derive(Debug)]
pub struct RollbackPlan<'a> {
    /// The history entry whose version, URI and digest go back into the spec.
    pub entry: &'a HistoryEntry,
    /// A rollback (steps and analysis skipped) when the version served as
    /// stable; otherwise an ordinary canary rollout of a version named by `--to`.
    pub was_stable: bool,
}

/// The history entry a rollback goes to: `--to V` (an entry where it served
/// as stable preferred), else the most recent version other than the stable
/// one that served as stable.
pub fn rollback_plan<'a>(
    model: &'a RankingModel,
    to: Option<&str>,
) -> Result<RollbackPlan<'a>, CliError> {
    let name = model.metadata.name.as_deref().unwrap_or("?");
    let status = model.status.as_ref();
    let history = status.map(|s| s.history.as_slice()).unwrap_or_default();
    let stable = status
        .and_then(|s| s.stable.as_ref())
        .map(|s| s.version.as_str());
    let known = || {
        let mut versions: Vec<&str> = history.iter().map(|h| h.version.as_str()).collect();
        versions.dedup();
        if versions.is_empty() {
            "none".to_string()
        } else {
            versions.join(", ")
        }
    };
    let entry = match to {
        Some(version) => history
            .iter()
            .find(|h| h.version == version && was_stable(h))
            .or_else(|| history.iter().find(|h| h.version == version))
            .ok_or_else(|| {
                CliError::Refused(format!(
                    "cannot roll back rankingmodel {name:?} to {version}: no such revision in status.history (known: {}); use mlctl set-version with the version's --uri instead",
                    known()
                ))
            })?,
        None => history
            .iter()
            .find(|h| was_stable(h) && Some(h.version.as_str()) != stable)
            .ok_or_else(|| {
                CliError::Refused(format!(
                    "cannot roll back rankingmodel {name:?}: status.history has no earlier version that served as stable (known: {}); name one with --to",
                    known()
                ))
            })?,
    };
    Ok(RollbackPlan {
        entry,
        was_stable: was_stable(entry),
    })
}

/// The merge patch of a rollback. It carries the entry's digest (a `null`
/// only when the entry had none: the current digest cannot match another
/// artifact), the rollback request only for a version that served as stable,
/// and the resourceVersion the plan was made from, so that a model changed in
/// between (a new rollout, another rollback) answers 409 instead of being
/// overwritten.
pub fn rollback_patch(
    model: &RankingModel,
    plan: &RollbackPlan<'_>,
    timestamp: &str,
) -> serde_json::Value {
    let entry = plan.entry;
    let mut metadata = serde_json::Map::new();
    if let Some(rv) = &model.metadata.resource_version {
        metadata.insert("resourceVersion".into(), rv.clone().into());
    }
    if plan.was_stable {
        metadata.insert(
            "annotations".into(),
            serde_json::json!({requests::ROLLBACK: timestamp}),
        );
    }
    serde_json::json!({
        "metadata": metadata,
        "spec": {"model": {"version": entry.version, "uri": entry.uri, "sha256": entry.sha256}},
    })
}

/// A 409 on the rollback patch: the resourceVersion precondition failed.
fn rollback_error(err: kube::Error, name: &str, ns: &str) -> CliError {
    match &err {
        kube::Error::Api(status) if status.code == 409 => CliError::Refused(format!(
            "rankingmodel {name:?} changed while rolling back (someone or the operator wrote it after it was read); nothing was changed: run mlctl rollback again"
        )),
        _ => CliError::from_kube(err, &target("patch", name, ns)),
    }
}

/// Follows a model with a watch (`await_condition` under a deadline) until
/// its state ends the wait or the deadline passes. `handled`: first wait until
/// the operator handled this request. `awaited`: the spec version the wait is
/// about.
async fn follow(
    api: &Api<RankingModel>,
    ns: &str,
    name: &str,
    wait: &WaitArgs,
    until: Until,
    handled: Option<(&str, &str)>,
    awaited: Option<&str>,
) -> Result<u8, CliError> {
    let progress = RefCell::new(Progress::new(!wait.no_progress));
    let last: RefCell<Option<RankingModel>> = RefCell::new(None);
    let judge = |model: &RankingModel| -> State {
        let pending = handled.is_some_and(|(annotation, value)| {
            model
                .status
                .as_ref()
                .and_then(|s| s.handled_requests.get(annotation))
                .is_none_or(|v| v != value)
        });
        if pending {
            State::Progressing
        } else {
            state::classify(model, awaited)
        }
    };
    let condition = |model: Option<&RankingModel>| -> bool {
        let Some(model) = model else {
            return true; // deleted: nothing left to wait for
        };
        progress.borrow_mut().update(model);
        *last.borrow_mut() = Some(model.clone());
        judge(model).exit_code(until).is_some()
    };
    let deadline = tokio::time::Instant::now() + wait.timeout;
    let outcome = loop {
        let attempt =
            tokio::time::timeout_at(deadline, await_condition(api.clone(), name, &condition)).await;
        match attempt {
            // A dropped connection or an API server restart must not end a
            // long wait: watch again (after a short backoff) until the deadline.
            Ok(Err(kube::runtime::wait::Error::ProbeFailed(err))) if transient(&err) => {
                progress.borrow().note(&format!(
                    "watch interrupted ({}); watching again",
                    crate::kube::chain(&err)
                ));
                let backoff = tokio::time::sleep(Duration::from_secs(1));
                if tokio::time::timeout_at(deadline, backoff).await.is_err() {
                    break tokio::time::timeout_at(deadline, std::future::pending()).await;
                }
            }
            other => break other,
        }
    };
    match outcome {
        Ok(Ok(Some(model))) => {
            let state = judge(&model);
            println!("{}", escape_controls(&state::summary(&model, &state, ns)));
            Ok(state.exit_code(until).unwrap_or(exit::ERROR))
        }
        Ok(Ok(None)) => Err(CliError::Refused(format!(
            "rankingmodel {name:?} was deleted while waiting"
        ))),
        Ok(Err(kube::runtime::wait::Error::ProbeFailed(err))) => Err(match err {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => CliError::from_kube(e, &target("watch", name, ns)),
            other => CliError::Api {
                verb: "watch",
                resource: RANKING_MODEL.qualified(),
                message: crate::kube::chain(&other),
            },
        }),
        Err(_elapsed) => {
            let now = last
                .borrow()
                .as_ref()
                .map(state::progress_line)
                .unwrap_or_else(|| "no status seen".to_string());
            let waiting = match handled {
                Some((annotation, _)) => format!(" (after the request {annotation})"),
                None => String::new(),
            };
            let line = format!(
                "rankingmodel/{name}: timed out after {} waiting for {}{waiting}: {now}",
                humantime(wait.timeout),
                until_text(until)
            );
            println!("{}", escape_controls(&line));
            Ok(exit::TIMED_OUT)
        }
    }
}

/// Whether a watch error is worth watching again: network trouble, server
/// errors, an expired resource version; not 401/403/404.
fn transient(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => status.code >= 500 || status.code == 429,
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                true
            }
            _ => false,
        },
        watcher::Error::WatchError(status) => status.code == 410 || status.code >= 500,
        watcher::Error::NoResourceVersion => false,
    }
}

fn until_text(until: Until) -> &'static str {
    match until {
        Until::Done => "the rollout to end",
        Until::Healthy => "Healthy",
        Until::Paused => "a pause",
    }
}

fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if secs > 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Progress lines on stderr: one whenever the rollout's state line changes.
/// Plain lines (no cursor movement), so logs of CI jobs read well.
struct Progress {
    enabled: bool,
    last: String,
    start: std::time::Instant,
    terminal: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            last: String::new(),
            start: std::time::Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, model: &RankingModel) {
        let line = state::progress_line(model);
        if line != self.last {
            self.note(&line);
            self.last = line;
        }
    }

    fn note(&self, line: &str) {
        if !self.enabled {
            return;
        }
        // Escaped before our own bold: only that one is ours.
        let line = escape_controls(line);
        let elapsed = self.start.elapsed().as_secs();
        if self.terminal {
            // Bold elapsed time on a terminal; no cursor movement anywhere.
            eprintln!("\x1b[1m[{:>3}s]\x1b[0m {line}", elapsed);
        } else {
            eprintln!("[{elapsed:>3}s] {line}");
        }
    }
}

fn check_version(version: &str) -> Result<(), CliError> {
    let bytes = version.as_bytes();
    let ok_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-';
    let ok_end = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(ok_char)
        && ok_end(bytes.first())
        && ok_end(bytes.last())
    {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--version {version:?} must be 1-63 characters of lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. 2026-11-20.3)"
        )))
    }
}

fn check_uri(uri: &str) -> Result<(), CliError> {
    let ok = ["s3://", "gs://", "http://", "https://", "pvc://"]
        .iter()
        .any(|scheme| uri.len() > scheme.len() && uri.starts_with(scheme));
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--uri {uri:?} must start with s3://, gs://, http://, https:// or pvc:// (e.g. s3://models/ranker/2026-11-20.3/model.txt)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(status: serde_json::Value) -> RankingModel {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "RankingModel",
            "metadata": {"name": "ranker", "generation": 1},
            "spec": {"model": {"version": "v3", "uri": "s3://m/v3", "format": "lightgbm"}, "runtime": {"image": "i"}},
            "status": status,
        }))
        .unwrap()
    }

    fn history() -> serde_json::Value {
        serde_json::json!({
            "stable": {"version": "v3", "uri": "s3://m/v3", "revision": "c"},
            "history": [
                {"version": "v3", "uri": "s3://m/v3", "revision": "c", "outcome": "Promoted", "at": "2026-11-25T03:00:00Z"},
                {"version": "v4", "uri": "s3://m/v4", "revision": "d", "outcome": "Aborted", "at": "2026-11-25T02:30:00Z"},
                {"version": "v2", "uri": "s3://m/v2", "sha256": "ab", "revision": "b", "outcome": "Promoted", "at": "2026-11-25T02:00:00Z"},
                {"version": "v1", "uri": "s3://m/v1", "revision": "a", "outcome": "Promoted", "at": "2026-11-25T01:00:00Z"},
            ]
        })
    }

    #[test]
    fn rollback_goes_to_the_previous_version_that_served_as_stable() {
        let m = model(history());
        let plan = rollback_plan(&m, None).unwrap();
        assert_eq!(plan.entry.version, "v2");
        assert!(plan.was_stable);
        assert_eq!(plan.entry.sha256.as_deref(), Some("ab"));
        assert_eq!(
            rollback_plan(&m, Some("v1")).unwrap().entry.uri,
            "s3://m/v1"
        );
    }

    #[test]
    fn a_canary_that_never_became_stable_is_no_rollback_target() {
        // The newest entry other than stable is an aborted canary: the default
        // skips it (and a superseded one) instead of promoting it untested.
        let m = model(serde_json::json!({
            "stable": {"version": "v3", "uri": "s3://m/v3", "revision": "c"},
            "history": [
                {"version": "v5", "uri": "s3://m/v5", "revision": "e", "outcome": "Superseded", "at": "2026-11-25T04:00:00Z"},
                {"version": "v4", "uri": "s3://m/v4", "revision": "d", "outcome": "Aborted", "at": "2026-11-25T03:30:00Z"},
                {"version": "v3", "uri": "s3://m/v3", "revision": "c", "outcome": "Promoted", "at": "2026-11-25T03:00:00Z"},
                {"version": "v2", "uri": "s3://m/v2", "revision": "b", "outcome": "RolledBack", "at": "2026-11-25T02:00:00Z"},
            ]
        }));
        let plan = rollback_plan(&m, None).unwrap();
        assert_eq!((plan.entry.version.as_str(), plan.was_stable), ("v2", true));
        // Named explicitly, an aborted version rolls out as a canary: no
        // rollback request in the patch, so its steps and analysis run.
        let plan = rollback_plan(&m, Some("v4")).unwrap();
        assert_eq!(plan.entry.outcome, "Aborted");
        assert!(!plan.was_stable);
        let patch = rollback_patch(&m, &plan, "t");
        assert!(patch["metadata"].get("annotations").is_none(), "{patch}");
        // With only canaries and the stable one, there is nothing to go back to.
        let only_canaries = model(serde_json::json!({
            "stable": {"version": "v3", "uri": "s3://m/v3", "revision": "c"},
            "history": [
                {"version": "v4", "uri": "s3://m/v4", "revision": "d", "outcome": "Aborted", "at": "2026-11-25T03:30:00Z"},
                {"version": "v3", "uri": "s3://m/v3", "revision": "c", "outcome": "Promoted", "at": "2026-11-25T03:00:00Z"},
            ]
        }));
        let err = rollback_plan(&only_canaries, None).unwrap_err().to_string();
        assert!(
            err.contains("no earlier version that served as stable"),
            "{err}"
        );
        assert!(err.contains("--to"), "{err}");
    }

    #[test]
    fn a_version_both_aborted_and_promoted_rolls_back_as_the_promoted_one() {
        let m = model(serde_json::json!({
            "stable": {"version": "v3", "uri": "s3://m/v3", "revision": "c"},
            "history": [
                {"version": "v3", "uri": "s3://m/v3", "revision": "c", "outcome": "Promoted", "at": "2026-11-25T03:00:00Z"},
                {"version": "v2", "uri": "s3://m/v2", "revision": "b", "outcome": "Aborted", "at": "2026-11-25T02:30:00Z"},
                {"version": "v2", "uri": "s3://m/v2", "sha256": "ab", "revision": "b", "outcome": "Promoted", "at": "2026-11-25T02:00:00Z"},
            ]
        }));
        let plan = rollback_plan(&m, Some("v2")).unwrap();
        assert!(plan.was_stable);
        assert_eq!(plan.entry.sha256.as_deref(), Some("ab"));
    }

    #[test]
    fn the_rollback_patch_keeps_the_digest_and_the_resource_version() {
        let mut m = model(history());
        m.metadata.resource_version = Some("4711".into());
        let plan = rollback_plan(&m, None).unwrap();
        let patch = rollback_patch(&m, &plan, "2026-11-25T03:00:00.000000000Z");
        assert_eq!(
            patch,
            serde_json::json!({
                "metadata": {
                    "resourceVersion": "4711",
                    "annotations": {requests::ROLLBACK: "2026-11-25T03:00:00.000000000Z"},
                },
                "spec": {"model": {"version": "v2", "uri": "s3://m/v2", "sha256": "ab"}},
            })
        );
        // An entry without a digest removes the current one, which cannot
        // match another artifact.
        let plan = rollback_plan(&m, Some("v1")).unwrap();
        let patch = rollback_patch(&m, &plan, "t");
        assert_eq!(patch["spec"]["model"]["sha256"], serde_json::Value::Null);
    }

    #[test]
    fn a_conflict_on_the_rollback_patch_says_to_run_again() {
        let status =
            kube::core::Status::failure("the object has been modified", "Conflict").with_code(409);
        let err = rollback_error(kube::Error::Api(status.boxed()), "ranker", "ns");
        let text = err.to_string();
        assert!(text.contains("changed while rolling back"), "{text}");
        assert!(text.contains("run mlctl rollback again"), "{text}");
        assert_eq!(err.exit_code(), exit::ERROR);
        let forbidden = kube::core::Status::failure("no", "Forbidden").with_code(403);
        let err = rollback_error(kube::Error::Api(forbidden.boxed()), "ranker", "ns");
        assert!(matches!(err, CliError::Forbidden { .. }), "{err:?}");
    }

    #[test]
    fn rollback_refuses_unknown_versions_and_lists_the_known_ones() {
        let m = model(history());
        let err = rollback_plan(&m, Some("v9")).unwrap_err().to_string();
        assert!(
            err.contains("no such revision in status.history (known: v3, v4, v2, v1)"),
            "{err}"
        );
        let empty =
            model(serde_json::json!({"stable": {"version": "v3", "uri": "u", "revision": "c"}}));
        let err = rollback_plan(&empty, None).unwrap_err().to_string();
        assert!(
            err.contains("no earlier version that served as stable"),
            "{err}"
        );
    }

    #[test]
    fn requests_are_refused_in_states_where_they_mean_nothing() {
        let no_canary =
            model(serde_json::json!({"stable": {"version": "v3", "uri": "u", "revision": "c"}}));
        let err = Request::Promote.check(&no_canary).unwrap_err();
        assert!(err.to_string().starts_with("nothing to promote"), "{err}");
        assert_eq!(err.exit_code(), exit::ERROR);
        assert!(Request::Abort.check(&no_canary).is_err());
        assert!(
            Request::Retry
                .check(&no_canary)
                .unwrap_err()
                .to_string()
                .contains("no aborted canary")
        );
        let running = model(
            serde_json::json!({"canary": {"version": "v4", "uri": "u", "revision": "d", "weight": 20, "stepIndex": 1}}),
        );
        assert!(Request::Promote.check(&running).is_ok());
        assert!(Request::PromoteFull.check(&running).is_ok());
        assert!(Request::Abort.check(&running).is_ok());
        assert!(Request::Retry.check(&running).is_err());
        let aborted = model(
            serde_json::json!({"canary": {"version": "v4", "uri": "u", "revision": "d", "weight": 0, "stepIndex": 1, "abortedAt": "2026-11-25T03:00:00Z"}}),
        );
        assert!(Request::Retry.check(&aborted).is_ok());
        assert!(Request::Abort.check(&aborted).is_err());
        assert!(
            Request::Promote
                .check(&aborted)
                .unwrap_err()
                .to_string()
                .contains("mlctl retry")
        );
    }

    #[test]
    fn request_timestamps_have_nanoseconds() {
        let ts = request_timestamp();
        // 2026-11-25T22:40:01.123456789Z
        assert_eq!(ts.len(), 30, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    }

    #[test]
    fn versions_and_uris_are_checked_with_the_flag_named() {
        assert!(check_version("2026-11-20.3").is_ok());
        let err = check_version("V2_").unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
        assert!(err.to_string().starts_with("--version \"V2_\""));
        assert!(check_uri("s3://m/x").is_ok());
        assert!(
            check_uri("ftp://x")
                .unwrap_err()
                .to_string()
                .starts_with("--uri")
        );
        assert!(check_uri("s3://").is_err());
    }

    #[test]
    fn only_transient_watch_errors_are_watched_again() {
        let api = |code: u16| {
            let mut status = kube::core::Status::failure("x", "y");
            status.code = code;
            kube::Error::Api(status.boxed())
        };
        assert!(transient(&watcher::Error::WatchFailed(api(503))));
        assert!(transient(&watcher::Error::InitialListFailed(api(429))));
        assert!(!transient(&watcher::Error::InitialListFailed(api(403))));
        assert!(!transient(&watcher::Error::WatchStartFailed(api(404))));
        let gone = kube::core::Status::failure("too old", "Expired").with_code(410);
        assert!(transient(&watcher::Error::WatchError(gone.boxed())));
        assert!(!transient(&watcher::Error::NoResourceVersion));
    }

    #[test]
    fn timeouts_parse_like_manifest_durations() {
        assert_eq!(parse_timeout("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_timeout("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_timeout("soon").is_err());
        assert_eq!(humantime(Duration::from_secs(600)), "10m");
        assert_eq!(humantime(Duration::from_secs(5)), "5s");
    }
}
