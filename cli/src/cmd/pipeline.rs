//! `mlctl pipeline run|backfill|status`: ask the operator for a run or a
//! backfill of a FeaturePipeline through its request annotations, follow it
//! with a watch, and show where a pipeline stands.

use std::cell::RefCell;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use mlctl_crds::FeaturePipeline;
use mlctl_crds::requests::{BACKFILL, RUN};
use mlctl_gitops::terminal::{escape_controls, escape_json_controls};

use crate::exit;
use crate::kube::{CliError, FEATURE_PIPELINE, KubeArgs, Resource, Target};

/// Most intervals one backfill may have (the operator refuses more).
pub const MAX_BACKFILL_INTERVALS: u64 = 1000;
/// Label on every run: the pipeline it belongs to.
const PIPELINE_LABEL: &str = "mlctl.io/pipeline";
/// Label on every run: what started it (`manual` for `mlctl.io/run`).
const TRIGGER_LABEL: &str = "mlctl.io/trigger";
/// Annotation on a manual run: the `mlctl.io/run` value that asked for it.
const REQUEST_ANNOTATION: &str = "mlctl.io/request";

const JOB: Resource = Resource {
    singular: "job",
    plural: "jobs",
    group: "batch",
    short: "jobs",
};
const SPARK_APPLICATION: Resource = Resource {
    singular: "sparkapplication",
    plural: "sparkapplications",
    group: "sparkoperator.k8s.io",
    short: "sparkapplications",
};

/// Run, backfill and inspect FeaturePipelines.
#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    #[command(subcommand)]
    command: PipelineCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PipelineCommand {
    /// Start one run of a scheduled pipeline now (the mlctl.io/run request).
    /// With --wait, follow the run: 0 succeeded, 10 failed, 12 timed out. A
    /// success is reported once the pipeline's status records it (lastRun or
    /// lastSuccessfulTime), so `mlctl pipeline status` agrees right after.
    Run(RunArgs),
    /// Run the pipeline over past intervals: [--from, --to) cut into --step
    /// slices, at most --max-parallel at once. Intervals already done by an
    /// earlier identical backfill are not run again. With --wait, follow it:
    /// 0 succeeded, 10 failed, 12 timed out.
    Backfill(BackfillArgs),
    /// Show a pipeline's trigger, phase, Ready/Fresh/Degraded, watermark age
    /// against the freshness objective, runs, schema and backfill progress.
    Status(StatusArgs),
}

/// How to wait for a run or a backfill.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
struct PipelineWait {
    /// Follow the run (or backfill) until it finishes; the exit code tells how
    /// it ended: 0 succeeded, 10 failed, 12 timed out.
    #[arg(short, long)]
    wait: bool,
    /// With --wait: the longest wait, e.g. 30s, 10m, 1h. Reaching it exits 12.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration_arg)]
    timeout: Duration,
    /// Print no progress lines on stderr while waiting (the result on stdout stays).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The FeaturePipeline.
    name: String,
    #[command(flatten)]
    wait: PipelineWait,
    #[command(flatten)]
    kube: KubeArgs,
}

#[derive(Debug, clap::Args)]
struct BackfillArgs {
    /// The FeaturePipeline.
    name: String,
    /// Start of the first interval, RFC 3339 (e.g. 2026-11-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    from: Timestamp,
    /// End of the last interval (exclusive), RFC 3339; after --from.
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    to: Timestamp,
    /// Length of one interval, e.g. 1h, 30m, 24h (at least 1s). The range may
    /// hold at most 1000 intervals.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    step: Duration,
    /// Runs at most in parallel.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
    max_parallel: i32,
    #[command(flatten)]
    wait: PipelineWait,
    #[command(flatten)]
    kube: KubeArgs,
}

/// Output of `pipeline status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A summary for people.
    Text,
    /// The whole object as JSON.
    Json,
    /// The whole object as YAML.
    Yaml,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The FeaturePipeline.
    name: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    output: Format,
    #[command(flatten)]
    kube: KubeArgs,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    mlctl_crds::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_time_arg(text: &str) -> Result<Timestamp, String> {
    text.parse().map_err(|e| {
        format!("{text:?} is not an RFC 3339 time ({e}); write e.g. 2026-11-01T00:00:00Z")
    })
}

/// Runs `mlctl pipeline ...`.
pub async fn run(args: &PipelineArgs) -> Result<u8, CliError> {
    match &args.command {
        PipelineCommand::Run(a) => run_now(a).await,
        PipelineCommand::Backfill(a) => backfill(a).await,
        PipelineCommand::Status(a) => status(a).await,
    }
}

fn target<'a>(verb: &'static str, name: &'a str, ns: &'a str) -> Target<'a> {
    Target {
        verb,
        resource: FEATURE_PIPELINE,
        name: Some(name),
        namespace: Some(ns),
    }
}

async fn connect(kube: &KubeArgs) -> Result<(Client, String, Api<FeaturePipeline>), CliError> {
    let (client, ns) = kube.client().await?;
    let api = Api::namespaced(client.clone(), &ns);
    Ok((client, ns, api))
}

async fn get(
    api: &Api<FeaturePipeline>,
    name: &str,
    ns: &str,
) -> Result<FeaturePipeline, CliError> {
    api.get(name)
        .await
        .map_err(|e| CliError::from_kube(e, &target("get", name, ns)))
}

async fn annotate(
    api: &Api<FeaturePipeline>,
    name: &str,
    ns: &str,
    key: &str,
    value: &str,
) -> Result<(), CliError> {
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| CliError::from_kube(e, &target("patch", name, ns)))?;
    Ok(())
}

/// A request timestamp: RFC 3339 with nanoseconds, so two never collide.
fn request_timestamp() -> String {
    format!("{:.9}", Timestamp::now())
}

fn progress(enabled: bool, line: &str) {
    if enabled {
        eprintln!("{}", escape_controls(line));
    }
}

/// `mlctl pipeline run NAME`.
async fn run_now(args: &RunArgs) -> Result<u8, CliError> {
    let (client, ns, api) = connect(&args.kube).await?;
    let name = args.name.as_str();
    let pipeline = get(&api, name, &ns).await?;
    if pipeline.spec.trigger.streaming.is_some() {
        return Err(CliError::Refused(format!(
            "featurepipeline {name:?} is streaming: it runs continuously, so there is nothing to start; \
             mlctl pipeline run applies to scheduled pipelines"
        )));
    }
    let value = request_timestamp();
    annotate(&api, name, &ns, RUN, &value).await?;
    eprintln!("featurepipeline/{name}: requested {RUN}={value}");
    if !args.wait.wait {
        return Ok(exit::SUCCESS);
    }
    let spark = pipeline.spec.engine.spark.is_some();
    follow_run(&client, &api, &ns, name, &value, spark, &args.wait).await
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunOutcome {
    Succeeded,
    Failed,
}

/// The outcome of a finished Job or SparkApplication (as JSON), `None`
/// while it runs.
fn run_outcome(spark: bool, object: &serde_json::Value) -> Option<RunOutcome> {
    let status = object.get("status")?;
    if spark {
        let state = status.pointer("/applicationState/state")?.as_str()?;
        return match state {
            "COMPLETED" => Some(RunOutcome::Succeeded),
            "FAILED" | "SUBMISSION_FAILED" => Some(RunOutcome::Failed),
            _ => None,
        };
    }
    let conditions = status.get("conditions")?.as_array()?;
    let is_true = |kind: &str| {
        conditions.iter().any(|c| {
            c.get("type").and_then(|t| t.as_str()) == Some(kind)
                && c.get("status").and_then(|s| s.as_str()) == Some("True")
        })
    };
    if is_true("Complete") {
        Some(RunOutcome::Succeeded)
    } else if is_true("Failed") {
        Some(RunOutcome::Failed)
    } else {
        None
    }
}

/// When a finished Job (`completionTime`) or SparkApplication
/// (`terminationTime`) ended.
fn run_finished_at(spark: bool, object: &serde_json::Value) -> Option<Timestamp> {
    let field = if spark {
        "/status/terminationTime"
    } else {
        "/status/completionTime"
    };
    object.pointer(field)?.as_str()?.parse().ok()
}

/// Whether the pipeline's status shows that `run` succeeded: it is the last
/// run, Succeeded, or `lastSuccessfulTime` reached the run's end (a newer run
/// may already be the last one). Until then `mlctl pipeline status` would
/// contradict a success exit code (the Job completes before the operator
/// records it; `Fresh` may be True from an earlier run).
fn status_shows_success(
    pipeline: &FeaturePipeline,
    run: &str,
    finished: Option<Timestamp>,
) -> bool {
    let Some(status) = &pipeline.status else {
        return false;
    };
    let last_is_run = status
        .last_run
        .as_ref()
        .is_some_and(|r| r.name == run && r.phase == "Succeeded");
    let success_recorded = match (&status.last_successful_time, finished) {
        (Some(at), Some(finished)) => at.0 >= finished,
        _ => false,
    };
    last_is_run || success_recorded
}

/// Follows the run the operator starts for request `value`: a watch on the
/// pipeline's manual runs (Jobs, or SparkApplications for the spark engine)
/// until the one annotated with the request finishes; after a success, a
/// watch on the pipeline until its status records it, so that the exit code
/// and the status read next agree.
async fn follow_run(
    client: &Client,
    pipelines: &Api<FeaturePipeline>,
    ns: &str,
    name: &str,
    value: &str,
    spark: bool,
    wait: &PipelineWait,
) -> Result<u8, CliError> {
    let (resource, api_resource) = if spark {
        let ar = ApiResource {
            group: "sparkoperator.k8s.io".into(),
            version: "v1beta2".into(),
            api_version: "sparkoperator.k8s.io/v1beta2".into(),
            kind: "SparkApplication".into(),
            plural: "sparkapplications".into(),
        };
        (SPARK_APPLICATION, ar)
    } else {
        (JOB, ApiResource::erase::<Job>(&()))
    };
    let runs: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &api_resource);
    let selector = format!("{PIPELINE_LABEL}={name},{TRIGGER_LABEL}=manual");
    let stream = watcher(runs, watcher::Config::default().labels(&selector)).applied_objects();
    let show = !wait.no_progress;
    let mut seen: Option<String> = None;
    let follow = async {
        let mut stream = std::pin::pin!(stream);
        while let Some(object) = stream.try_next().await? {
            if object
                .annotations()
                .get(REQUEST_ANNOTATION)
                .map(String::as_str)
                != Some(value)
            {
                continue;
            }
            let run = object.name_any();
            if seen.as_deref() != Some(run.as_str()) {
                progress(show, &format!("featurepipeline/{name}: run {run} started"));
                seen = Some(run.clone());
            }
            let json = serde_json::to_value(&object).unwrap_or_default();
            if let Some(outcome) = run_outcome(spark, &json) {
                return Ok(Some((run, outcome, run_finished_at(spark, &json))));
            }
        }
        Ok::<_, watcher::Error>(None)
    };
    let deadline = tokio::time::Instant::now() + wait.timeout;
    let outcome = tokio::time::timeout_at(deadline, follow).await;
    match outcome {
        Ok(Ok(Some((run, RunOutcome::Failed, _)))) => {
            println!("{run} Failed");
            Ok(exit::FAILED)
        }
        Ok(Ok(Some((run, RunOutcome::Succeeded, finished)))) => {
            progress(
                show,
                &format!(
                    "featurepipeline/{name}: run {run} succeeded; waiting for the status to record it"
                ),
            );
            let recorded = |p: Option<&FeaturePipeline>| {
                p.is_none_or(|p| status_shows_success(p, &run, finished))
            };
            match tokio::time::timeout_at(
                deadline,
                await_condition(pipelines.clone(), name, recorded),
            )
            .await
            {
                Ok(Ok(Some(_))) => {
                    println!("{run} Succeeded");
                    Ok(exit::SUCCESS)
                }
                Ok(Ok(None)) => Err(CliError::Refused(format!(
                    "featurepipeline {name:?} was deleted while waiting"
                ))),
                Ok(Err(kube::runtime::wait::Error::ProbeFailed(err))) => {
                    Err(watch_error(err, FEATURE_PIPELINE, ns))
                }
                Err(_elapsed) => {
                    println!(
                        "featurepipeline/{name}: timed out after {}: run {run} succeeded, but status.lastRun / lastSuccessfulTime do not show it yet (is the operator running? mlctl pipeline status {name})",
                        human(
                            SignedDuration::try_from(wait.timeout).unwrap_or(SignedDuration::MAX)
                        )
                    );
                    Ok(exit::TIMED_OUT)
                }
            }
        }
        Ok(Ok(None)) => Err(CliError::Refused(format!(
            "the watch of {} ended before run of featurepipeline {name:?} finished",
            resource.qualified()
        ))),
        Ok(Err(err)) => Err(watch_error(err, resource, ns)),
        Err(_elapsed) => {
            let state = match &seen {
                Some(run) => format!("run {run} still running"),
                None => format!(
                    "no run for {RUN}={value} appeared (is the operator running? mlctl pipeline status {name})"
                ),
            };
            println!(
                "featurepipeline/{name}: timed out after {}: {state}",
                human(SignedDuration::try_from(wait.timeout).unwrap_or(SignedDuration::MAX))
            );
            Ok(exit::TIMED_OUT)
        }
    }
}

fn watch_error(err: watcher::Error, resource: Resource, ns: &str) -> CliError {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => CliError::from_kube(
            e,
            &Target {
                verb: "watch",
                resource,
                name: None,
                namespace: Some(ns),
            },
        ),
        other => CliError::Api {
            verb: "watch",
            resource: resource.qualified(),
            message: crate::kube::chain(&other),
        },
    }
}

/// A checked backfill request, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BackfillRequest {
    from: Timestamp,
    to: Timestamp,
    step: String,
    max_parallel: i32,
    intervals: u64,
}

/// Checks `--from`, `--to` and `--step` together; the error names the flag.
fn check_backfill(
    from: Timestamp,
    to: Timestamp,
    step: Duration,
    step_text: &str,
    max_parallel: i32,
) -> Result<BackfillRequest, CliError> {
    if from >= to {
        return Err(CliError::Usage(format!(
            "--from ({from}) must be before --to ({to})"
        )));
    }
    let step_secs = step.as_secs();
    if step_secs < 1 {
        return Err(CliError::Usage(format!(
            "--step {step_text} is shorter than 1s; use e.g. --step 1h"
        )));
    }
    let span = to.duration_since(from).as_secs().unsigned_abs();
    let intervals = span.div_ceil(step_secs);
    if intervals > MAX_BACKFILL_INTERVALS {
        return Err(CliError::Usage(format!(
            "--from {from} --to {to} --step {step_text} makes {intervals} intervals; at most {MAX_BACKFILL_INTERVALS} are allowed: use a longer --step or split the range"
        )));
    }
    Ok(BackfillRequest {
        from,
        to,
        step: step_text.to_string(),
        max_parallel,
        intervals,
    })
}

/// The `mlctl.io/backfill` annotation value.
fn backfill_value(request: &BackfillRequest, requested_at: &str) -> String {
    serde_json::json!({
        "from": request.from.to_string(),
        "to": request.to.to_string(),
        "step": request.step,
        "maxParallel": request.max_parallel,
        "requestedAt": requested_at,
    })
    .to_string()
}

/// `3/24 done, 2 running, 0 failed`.
fn backfill_progress(b: &mlctl_crds::featurepipeline::BackfillStatus) -> String {
    format!(
        "{}/{} done, {} running, {} failed",
        b.succeeded, b.total, b.running, b.failed
    )
}

/// `mlctl pipeline backfill NAME --from T --to T --step D`.
async fn backfill(args: &BackfillArgs) -> Result<u8, CliError> {
    let step_text = humantime_step(args.step);
    let request = check_backfill(args.from, args.to, args.step, &step_text, args.max_parallel)?;
    let (_, ns, api) = connect(&args.kube).await?;
    let name = args.name.as_str();
    let pipeline = get(&api, name, &ns).await?;
    if pipeline.spec.trigger.streaming.is_some() {
        return Err(CliError::Refused(format!(
            "featurepipeline {name:?} is streaming and cannot be backfilled; backfill a scheduled pipeline"
        )));
    }
    let requested_at = request_timestamp();
    let value = backfill_value(&request, &requested_at);
    annotate(&api, name, &ns, BACKFILL, &value).await?;
    eprintln!(
        "featurepipeline/{name}: requested a backfill of {} interval(s) of {} from {} to {}, at most {} at once",
        request.intervals, request.step, request.from, request.to, request.max_parallel
    );
    if !args.wait.wait {
        return Ok(exit::SUCCESS);
    }
    follow_backfill(&api, &ns, name, &requested_at, &args.wait).await
}

/// The step as the operator's duration syntax (`1h30m`, `90s`).
fn humantime_step(step: Duration) -> String {
    let ms = step.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    human(SignedDuration::try_from(step).unwrap_or(SignedDuration::MAX))
}

/// Follows `status.backfill` of the request `requested_at` until it ends.
async fn follow_backfill(
    api: &Api<FeaturePipeline>,
    ns: &str,
    name: &str,
    requested_at: &str,
    wait: &PipelineWait,
) -> Result<u8, CliError> {
    let show = !wait.no_progress;
    let last_line = RefCell::new(String::new());
    let ours = |p: &FeaturePipeline| {
        p.status
            .as_ref()
            .and_then(|s| s.backfill.clone())
            .filter(|b| b.requested_at == requested_at)
    };
    let condition = |p: Option<&FeaturePipeline>| -> bool {
        let Some(p) = p else {
            return true;
        };
        let Some(b) = ours(p) else {
            return false;
        };
        let line = backfill_progress(&b);
        if *last_line.borrow() != line {
            progress(show, &format!("featurepipeline/{name}: backfill {line}"));
            *last_line.borrow_mut() = line;
        }
        b.phase == "Succeeded" || b.phase == "Failed"
    };
    let outcome =
        tokio::time::timeout(wait.timeout, await_condition(api.clone(), name, condition)).await;
    match outcome {
        Ok(Ok(Some(p))) => {
            let Some(b) = ours(&p) else {
                return Err(CliError::Refused(format!(
                    "featurepipeline {name:?} has no backfill status for this request"
                )));
            };
            let detail = b
                .message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            let line = format!(
                "featurepipeline/{name}: backfill {} ({}){detail}",
                b.phase,
                backfill_progress(&b)
            );
            println!("{}", escape_controls(&line));
            Ok(if b.phase == "Succeeded" {
                exit::SUCCESS
            } else {
                exit::FAILED
            })
        }
        Ok(Ok(None)) => Err(CliError::Refused(format!(
            "featurepipeline {name:?} was deleted while waiting"
        ))),
        Ok(Err(kube::runtime::wait::Error::ProbeFailed(err))) => {
            Err(watch_error(err, FEATURE_PIPELINE, ns))
        }
        Err(_elapsed) => {
            let at = last_line.borrow();
            let state = if at.is_empty() {
                "the operator has not taken up the request yet (is it running?)".to_string()
            } else {
                at.clone()
            };
            let line = format!(
                "featurepipeline/{name}: timed out after {} waiting for the backfill: {state}",
                humantime_step(wait.timeout)
            );
            println!("{}", escape_controls(&line));
            Ok(exit::TIMED_OUT)
        }
    }
}

/// `mlctl pipeline status NAME`.
async fn status(args: &StatusArgs) -> Result<u8, CliError> {
    let (_, ns, api) = connect(&args.kube).await?;
    let pipeline = get(&api, &args.name, &ns).await?;
    let text = match args.output {
        Format::Text => {
            escape_controls(&render_status(&pipeline, &ns, Timestamp::now())).into_owned()
        }
        Format::Json => serde_json::to_string_pretty(&pipeline)
            .map(|s| escape_json_controls(&s).into_owned() + "\n")
            .map_err(|e| CliError::Output(e.to_string()))?,
        Format::Yaml => {
            serde_yaml_ng::to_string(&pipeline).map_err(|e| CliError::Output(e.to_string()))?
        }
    };
    print!("{text}");
    Ok(exit::SUCCESS)
}

/// A duration for people, to the second: `1h2m3s`, `45s`.
fn human(d: SignedDuration) -> String {
    let secs = d.as_secs().unsigned_abs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = if d.is_negative() {
        "-".to_string()
    } else {
        String::new()
    };
    let empty = out.len();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.len() == empty {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// `2026-11-25T11:30:00Z (30m ago)` or `(in 12m)`.
fn when(t: Timestamp, now: Timestamp) -> String {
    let d = now.duration_since(t);
    if d.is_negative() {
        format!("{t} (in {})", human(-d))
    } else {
        format!("{t} ({} ago)", human(d))
    }
}

/// The text of `mlctl pipeline status`.
fn render_status(p: &FeaturePipeline, ns: &str, now: Timestamp) -> String {
    let name = p.name_any();
    let spec = &p.spec;
    let status = p.status.clone().unwrap_or_default();
    let mut rows: Vec<(&str, String)> = Vec::new();
    let trigger = match (&spec.trigger.schedule, &spec.trigger.streaming) {
        (Some(s), _) => {
            let tz = s.time_zone.as_deref().unwrap_or("UTC");
            let suspended = if s.suspend == Some(true) {
                ", suspended"
            } else {
                ""
            };
            format!("schedule {:?} ({tz}{suspended})", s.cron)
        }
        (None, Some(s)) => format!("streaming ({} replica(s))", s.replicas.unwrap_or(1)),
        (None, None) => "none".to_string(),
    };
    rows.push(("Trigger", trigger));
    rows.push(("Phase", status.phase.clone().unwrap_or_else(|| "-".into())));
    for kind in ["Ready", "Fresh", "Degraded"] {
        let text = match status.conditions.get(kind) {
            Some(c) if c.message.is_empty() => format!("{} ({})", c.status, c.reason),
            Some(c) => format!("{} ({}: {})", c.status, c.reason, c.message),
            None => "Unknown (not reported yet)".to_string(),
        };
        rows.push((kind, text));
    }
    let objective = spec.freshness.as_ref().map(|f| f.max_staleness.clone());
    let watermark = match (&status.watermark, &objective) {
        (Some(w), Some(max)) => {
            let age = human(now.duration_since(w.0));
            format!("{} ({age} old; maxStaleness {max})", w.0)
        }
        (Some(w), None) => format!(
            "{} ({} old; no freshness objective)",
            w.0,
            human(now.duration_since(w.0))
        ),
        (None, Some(max)) => format!("none yet (maxStaleness {max})"),
        (None, None) => "none yet".to_string(),
    };
    rows.push(("Watermark", watermark));
    let last_run = match &status.last_run {
        Some(r) => {
            let mut text = format!("{} {}", r.name, r.phase);
            if let Some(t) = &r.started_at {
                text.push_str(&format!(", started {}", when(t.0, now)));
            }
            if let Some(t) = &r.finished_at {
                text.push_str(&format!(", finished {}", when(t.0, now)));
            }
            if let (Some(read), Some(written)) = (r.rows_read, r.rows_written) {
                text.push_str(&format!(", {read} rows read, {written} written"));
            }
            text
        }
        None => "none".to_string(),
    };
    rows.push(("Last run", last_run));
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref()
            .map(|t| when(t.0, now))
            .unwrap_or_else(|| "-".into())
    };
    rows.push(("Last success", time(&status.last_successful_time)));
    rows.push(("Next run", time(&status.next_schedule_time)));
    rows.push(("Active runs", status.active_runs.unwrap_or(0).to_string()));
    rows.push(("Missed runs", status.missed_runs.unwrap_or(0).to_string()));
    let declared = spec.features.schema_version;
    let fields = spec.features.fields.len();
    let schema = match &status.schema {
        Some(s) if s.version == declared => {
            format!("version {} ({fields} field(s), hash {})", s.version, s.hash)
        }
        Some(s) => format!(
            "version {} written, spec declares {declared} (not run yet; hash {})",
            s.version, s.hash
        ),
        None => format!("version {declared} declared ({fields} field(s)), none written yet"),
    };
    rows.push(("Schema", schema));
    if let Some(b) = &status.backfill {
        let mut text = format!(
            "{} {} ({} to {}, step {}, at most {} at once; requested {})",
            b.phase,
            backfill_progress(b),
            b.from,
            b.to,
            b.step,
            b.max_parallel,
            b.requested_at
        );
        if let Some(m) = &b.message {
            text.push_str(&format!(": {m}"));
        }
        rows.push(("Backfill", text));
    }
    if let Some(m) = &status.message {
        rows.push(("Message", m.clone()));
    }
    let mut out = format!("featurepipeline/{name} in namespace {ns}\n");
    for (key, value) in rows {
        out.push_str(&format!("  {:<13} {value}\n", format!("{key}:")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        args: PipelineArgs,
    }

    fn parse(args: &[&str]) -> Result<PipelineArgs, clap::Error> {
        let mut argv = vec!["mlctl"];
        argv.extend_from_slice(args);
        Test::try_parse_from(argv).map(|t| t.args)
    }

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// `backfill fp --from F --to T --step S` and `extra`.
    fn backfill_args(from: &str, step: &str, extra: &[&str]) -> Result<PipelineArgs, clap::Error> {
        let mut argv = vec![
            "backfill",
            "fp",
            "--from",
            from,
            "--to",
            "2026-11-02T00:00:00Z",
            "--step",
            step,
        ];
        argv.extend_from_slice(extra);
        parse(&argv)
    }

    #[test]
    fn backfill_arguments_parse() {
        let args = backfill_args(
            "2026-11-01T00:00:00Z",
            "1h",
            &["--max-parallel", "2", "--wait"],
        )
        .unwrap();
        let PipelineCommand::Backfill(b) = args.command else {
            panic!("not a backfill");
        };
        assert_eq!(b.step, Duration::from_secs(3600));
        assert_eq!(b.max_parallel, 2);
        assert!(b.wait.wait);
        assert_eq!(b.wait.timeout, Duration::from_secs(600));
        let defaults = backfill_args("2026-11-01T00:00:00Z", "1h", &[]).unwrap();
        let PipelineCommand::Backfill(b) = defaults.command else {
            panic!("not a backfill");
        };
        assert_eq!(b.max_parallel, 1);
        assert!(!b.wait.wait);
    }

    #[test]
    fn bad_flag_values_are_usage_errors_naming_the_flag() {
        let err = backfill_args("yesterday", "1h", &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("--from"), "{text}");
        assert!(text.contains("2026-11-01T00:00:00Z"), "{text}");
        let err = backfill_args("2026-11-01T00:00:00Z", "1 day", &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--step"), "{err}");
        let err =
            backfill_args("2026-11-01T00:00:00Z", "1h", &["--max-parallel", "0"]).unwrap_err();
        assert!(err.to_string().contains("--max-parallel"), "{err}");
        let err = parse(&["run", "fp", "--timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--timeout"), "{err}");
        let err = parse(&["status", "fp", "-o", "xml"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn backfill_range_checks() {
        let from = t("2026-11-01T00:00:00Z");
        let to = t("2026-11-02T00:00:00Z");
        let hour = Duration::from_secs(3600);
        let ok = check_backfill(from, to, hour, "1h", 2).unwrap();
        assert_eq!(ok.intervals, 24);
        // A partial last interval counts.
        let ok = check_backfill(from, to, Duration::from_secs(7 * 3600), "7h", 1).unwrap();
        assert_eq!(ok.intervals, 4);

        let err = check_backfill(to, from, hour, "1h", 1).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
        assert!(err.to_string().contains("--from"), "{err}");
        assert!(err.to_string().contains("--to"), "{err}");
        let err = check_backfill(from, from, hour, "1h", 1).unwrap_err();
        assert!(err.to_string().contains("must be before"), "{err}");

        let err = check_backfill(from, to, Duration::from_millis(500), "500ms", 1).unwrap_err();
        assert!(err.to_string().contains("--step 500ms"), "{err}");

        // 1000 intervals pass, 1001 do not.
        let minute = Duration::from_secs(60);
        let to_1000 = from.checked_add(SignedDuration::from_secs(60_000)).unwrap();
        assert_eq!(
            check_backfill(from, to_1000, minute, "1m", 1)
                .unwrap()
                .intervals,
            1000
        );
        let to_1001 = from.checked_add(SignedDuration::from_secs(60_060)).unwrap();
        let err = check_backfill(from, to_1001, minute, "1m", 1).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
        assert!(err.to_string().contains("1001 intervals"), "{err}");
        assert!(err.to_string().contains("--step"), "{err}");
    }

    #[test]
    fn the_backfill_annotation_is_the_operator_contract() {
        let request = check_backfill(
            t("2026-11-01T00:00:00Z"),
            t("2026-11-01T03:00:00Z"),
            Duration::from_secs(3600),
            "1h",
            2,
        )
        .unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&backfill_value(&request, "2026-11-25T10:00:00.000000001Z"))
                .unwrap();
        assert_eq!(
            value,
            json!({"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T03:00:00Z", "step": "1h",
                   "maxParallel": 2, "requestedAt": "2026-11-25T10:00:00.000000001Z"})
        );
    }

    #[test]
    fn steps_are_written_in_the_operator_syntax() {
        assert_eq!(humantime_step(Duration::from_secs(5400)), "1h30m");
        assert_eq!(humantime_step(Duration::from_secs(3600)), "1h");
        assert_eq!(humantime_step(Duration::from_millis(1500)), "1500ms");
        for text in ["1h30m", "1h", "1500ms", "45s"] {
            let d = mlctl_crds::parse_duration(text).unwrap();
            assert_eq!(mlctl_crds::parse_duration(&humantime_step(d)).unwrap(), d);
        }
    }

    #[test]
    fn request_timestamps_have_nanoseconds() {
        let value = request_timestamp();
        let fraction = value.split('.').nth(1).unwrap();
        assert_eq!(fraction.len(), 10, "{value}"); // 9 digits and Z
        assert!(value.parse::<Timestamp>().is_ok());
    }

    #[test]
    fn job_and_spark_outcomes() {
        let job =
            |kind: &str| json!({"status": {"conditions": [{"type": kind, "status": "True"}]}});
        assert_eq!(
            run_outcome(false, &job("Complete")),
            Some(RunOutcome::Succeeded)
        );
        assert_eq!(run_outcome(false, &job("Failed")), Some(RunOutcome::Failed));
        assert_eq!(run_outcome(false, &job("Suspended")), None);
        assert_eq!(run_outcome(false, &json!({"status": {"active": 1}})), None);
        assert_eq!(run_outcome(false, &json!({})), None);
        let spark = |state: &str| json!({"status": {"applicationState": {"state": state}}});
        assert_eq!(
            run_outcome(true, &spark("COMPLETED")),
            Some(RunOutcome::Succeeded)
        );
        assert_eq!(
            run_outcome(true, &spark("SUBMISSION_FAILED")),
            Some(RunOutcome::Failed)
        );
        assert_eq!(run_outcome(true, &spark("RUNNING")), None);
    }

    #[test]
    fn a_run_succeeds_only_once_the_status_records_it() {
        let finished: Timestamp = "2026-11-25T12:00:05Z".parse().unwrap();
        let job = json!({"status": {"completionTime": "2026-11-25T12:00:05Z",
            "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(run_finished_at(false, &job), Some(finished));
        let spark = json!({"status": {"terminationTime": "2026-11-25T12:00:05Z"}});
        assert_eq!(run_finished_at(true, &spark), Some(finished));
        // What a watch saw after the Job completed, in order: the operator
        // first still shows the earlier state (Fresh True from an earlier run,
        // no lastSuccessfulTime), then the run running, then its success.
        let fresh = json!([{"type": "Fresh", "status": "True", "reason": "WithinObjective",
            "message": "ok", "lastTransitionTime": "2026-11-25T11:00:00Z"}]);
        let sequence = [
            json!({"conditions": fresh}),
            json!({"conditions": fresh, "lastRun": {"name": "clicks-manual-1", "phase": "Running"}}),
            json!({"conditions": fresh, "lastSuccessfulTime": "2026-11-25T11:30:00Z",
                "lastRun": {"name": "clicks-manual-1", "phase": "Running"}}),
            json!({"conditions": fresh, "lastSuccessfulTime": "2026-11-25T12:00:05Z",
                "lastRun": {"name": "clicks-manual-1", "phase": "Succeeded"}}),
        ];
        let shows: Vec<bool> = sequence
            .into_iter()
            .map(|status| {
                status_shows_success(&pipeline(status), "clicks-manual-1", Some(finished))
            })
            .collect();
        assert_eq!(shows, [false, false, false, true]);
        // A scheduled run that started after ours is the last run by then:
        // lastSuccessfulTime at or after our run's end is enough.
        let newer = pipeline(json!({"lastSuccessfulTime": "2026-11-25T12:00:05Z",
            "lastRun": {"name": "clicks-29001", "phase": "Running"}}));
        assert!(status_shows_success(
            &newer,
            "clicks-manual-1",
            Some(finished)
        ));
        assert!(!status_shows_success(&newer, "clicks-manual-1", None));
        assert!(!status_shows_success(
            &pipeline(json!(null)),
            "clicks-manual-1",
            Some(finished)
        ));
    }

    fn pipeline(status: serde_json::Value) -> FeaturePipeline {
        serde_json::from_value(json!({
            "apiVersion": "mlctl.io/v1alpha1", "kind": "FeaturePipeline",
            "metadata": {"name": "clicks", "namespace": "ranking"},
            "spec": {
                "trigger": {"schedule": {"cron": "*/30 * * * *"}},
                "engine": {"container": {"image": "busybox"}},
                "features": {"entityKeys": ["doc_id"], "schemaVersion": 3,
                    "fields": [{"name": "ctr", "dtype": "float32"}]},
                "freshness": {"maxStaleness": "2h"}
            },
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn status_shows_freshness_runs_schema_and_backfill() {
        let p = pipeline(json!({
            "phase": "Succeeded",
            "conditions": [
                {"type": "Fresh", "status": "True", "reason": "WithinObjective", "message": "watermark 30m old",
                 "lastTransitionTime": "2026-11-25T11:40:00Z"},
                {"type": "Degraded", "status": "False", "reason": "RunsSucceed", "message": "",
                 "lastTransitionTime": "2026-11-25T11:40:00Z"}
            ],
            "watermark": "2026-11-25T11:30:00Z",
            "lastSuccessfulTime": "2026-11-25T11:40:00Z",
            "nextScheduleTime": "2026-11-25T12:30:00Z",
            "activeRuns": 1,
            "missedRuns": 2,
            "lastRun": {"name": "clicks-m0123456789", "phase": "Succeeded",
                "startedAt": "2026-11-25T11:35:00Z", "finishedAt": "2026-11-25T11:40:00Z",
                "rowsRead": 10, "rowsWritten": 7},
            "schema": {"version": 2, "hash": "abc"},
            "backfill": {"requestedAt": "r", "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z",
                "step": "1h", "maxParallel": 2, "phase": "Running", "total": 24, "succeeded": 3,
                "failed": 0, "running": 2}
        }));
        let text = render_status(&p, "ranking", t("2026-11-25T12:00:00Z"));
        for want in [
            "featurepipeline/clicks in namespace ranking",
            "Trigger:      schedule \"*/30 * * * *\" (UTC)",
            "Phase:        Succeeded",
            "Ready:        Unknown (not reported yet)",
            "Fresh:        True (WithinObjective: watermark 30m old)",
            "Degraded:     False (RunsSucceed)",
            "Watermark:    2026-11-25T11:30:00Z (30m old; maxStaleness 2h)",
            "Last run:     clicks-m0123456789 Succeeded, started 2026-11-25T11:35:00Z (25m ago), finished 2026-11-25T11:40:00Z (20m ago), 10 rows read, 7 written",
            "Next run:     2026-11-25T12:30:00Z (in 30m)",
            "Active runs:  1",
            "Missed runs:  2",
            "Schema:       version 2 written, spec declares 3 (not run yet; hash abc)",
            "Backfill:     Running 3/24 done, 2 running, 0 failed",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn status_of_a_new_pipeline() {
        let text = render_status(&pipeline(json!({})), "ranking", t("2026-11-25T12:00:00Z"));
        assert!(
            text.contains("Watermark:    none yet (maxStaleness 2h)"),
            "{text}"
        );
        assert!(text.contains("Last run:     none"), "{text}");
        assert!(
            text.contains("version 3 declared (1 field(s)), none written yet"),
            "{text}"
        );
        assert!(!text.contains("Backfill"), "{text}");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(SignedDuration::from_secs(0)), "0s");
        assert_eq!(human(SignedDuration::from_secs(3723)), "1h2m3s");
        assert_eq!(human(SignedDuration::from_secs(-60)), "-1m");
    }
}
