//! One subject at one size: converge, settle, idle, restart, churn, delete.
//! Every wait is a watch with a deadline; the only sleeps are the deliberate
//! settle and idle windows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;

use crate::converge::{self, Observations};
use crate::objects::{self, Template};
use crate::process::Proc;
use crate::requests::Window;
use crate::subject::{Controller, Subject};
use crate::{Args, namespace};
use mlctl_e2e::audit::{Audit, Write};

/// What every phase needs.
pub struct Ctx<'a> {
    pub client: &'a Client,
    pub audit: &'a Audit,
    pub template: &'a Template,
    pub args: &'a Args,
    pub log_dir: &'a Path,
}

/// Figures of one subject at one size.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Run {
    pub subject: String,
    pub models: usize,
    /// Objects the bench created (models, or their children, or Rollouts + Services + HPAs).
    pub objects: usize,
    /// First create to last create.
    pub create_secs: f64,
    /// First create to all Healthy (floor: all Deployments Available).
    pub converge_secs: f64,
    /// The process before any model existed, its peak during convergence, after the settle.
    pub rss_idle_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    pub rss_steady_mib: Option<f64>,
    /// (steady − idle) / models.
    pub rss_per_model_kib: Option<f64>,
    /// CPU (user + system) of the process during convergence.
    pub cpu_converge_secs: Option<f64>,
    /// Its API requests during convergence, by verb (reads only when the audit policy logs them).
    pub requests_converge: BTreeMap<String, u64>,
    pub reconciles_converge: Option<f64>,
    /// (GET + LIST) during convergence / reconciles.
    pub reads_per_reconcile: Option<f64>,
    pub idle: Option<Idle>,
    pub restart: Option<Restart>,
    pub churn: Option<Churn>,
    /// Namespace deletion until it was gone (not a figure of the subject: the GC's).
    pub delete_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub secs: u64,
    pub writes: usize,
    /// The first writes, to see what they were.
    pub writes_seen: Vec<String>,
    pub cpu_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// Process start to the edit made right after it being observed.
    pub resume_secs: f64,
    pub rss_peak_mib: f64,
    /// Writes after the restart (to the settle's end) to objects other than the edited model's.
    pub writes_unchanged: usize,
    pub writes_unchanged_by_resource: BTreeMap<String, usize>,
    pub requests: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Churn {
    pub rate: f64,
    pub secs: u64,
    pub edits: usize,
    pub unobserved: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn name_of(w: &Write) -> &str {
    w.object_ref.as_ref().map_or("", |o| o.name.as_str())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Fails early, with the fix, when Argo's CRDs are not installed.
pub async fn require_argo_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "rollouts.argoproj.io",
        "analysisruns.argoproj.io",
        "analysistemplates.argoproj.io",
        "clusteranalysistemplates.argoproj.io",
        "experiments.argoproj.io",
    ] {
        assert!(
            crds.get_opt(name).await.expect("get CRD").is_some(),
            "CRD {name} is not installed: run the bench through `make bench` (scripts/bench-operator applies Argo's manifests/crds)"
        );
    }
}

/// Measures `subject` with `n` models; `extras`: also idle and churn.
pub async fn run(ctx: &Ctx<'_>, subject: Subject, n: usize, extras: bool) -> Run {
    let ns = format!("bench-{}-{n}", subject.name());
    namespace::fresh(ctx.client, &ns).await;
    let controller = Controller::new(subject, &ns, ctx.log_dir);
    let mut proc = match &controller {
        Some(c) => Some(c.start().await),
        None => None,
    };
    let objects = subject.objects(n, ctx.template);
    let mut run = Run {
        subject: subject.name().into(),
        models: n,
        objects: objects.len(),
        ..Run::default()
    };
    // Deliberate: the empty caches' baseline, once the process has listed.
    if proc.is_some() {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let idle_kib = proc.as_ref().map(Proc::rss_now_kib);
    let cpu_before = proc.as_ref().map(Proc::cpu_secs);
    let reconciles_before = match &controller {
        Some(c) => c.reconciles().await,
        None => None,
    };

    let (ar, ready) = subject.converged();
    let mark = ctx.audit.mark();
    let started = Instant::now();
    let waiting = tokio::spawn(converge::all_ready(
        ctx.client.clone(),
        ns.clone(),
        ar.clone(),
        n,
        ready,
        ctx.args.converge_timeout(n),
        format!("{} {} ready (N={n})", subject.name(), ar.kind),
    ));
    let timeout = ctx.args.converge_timeout(n);
    tokio::time::timeout(
        timeout,
        converge::create_all(ctx.client, &ns, objects, ctx.args.clients),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "creating the {} objects of {} (N={n}) took more than {timeout:?}",
            run.objects,
            subject.name()
        )
    });
    run.create_secs = started.elapsed().as_secs_f64();
    let converged = waiting.await.unwrap_or_else(|e| panic!("{e}"));
    run.converge_secs = converged.duration_since(started).as_secs_f64();
    eprintln!(
        "    converged in {:.1}s (creates took {:.1}s)",
        run.converge_secs, run.create_secs
    );

    if let (Some(proc), Some(c)) = (proc.as_mut(), &controller) {
        proc.check_alive("convergence");
        let window = Window::since(ctx.audit, mark, subject.agent());
        run.requests_converge = window.by_verb();
        run.rss_peak_mib = Some(mib(proc.rss_peak_since_kib(started)));
        run.cpu_converge_secs = Some(proc.cpu_secs() - cpu_before.unwrap_or(0.0));
        let reconciles = c
            .reconciles()
            .await
            .zip(reconciles_before)
            .map(|(a, b)| a - b);
        run.reconciles_converge = reconciles;
        run.reads_per_reconcile = window
            .reads()
            .zip(reconciles)
            .map(|(r, k)| r as f64 / k.max(1.0));
        // Deliberate: the settle window before the steady figure.
        tokio::time::sleep(Duration::from_secs(ctx.args.settle_secs)).await;
        proc.check_alive("settle");
        let steady = proc.rss_now_kib();
        run.rss_steady_mib = Some(mib(steady));
        run.rss_idle_mib = idle_kib.map(mib);
        run.rss_per_model_kib = idle_kib.map(|i| steady.saturating_sub(i) as f64 / n as f64);
    }

    if let (Some(p), Some(c)) = (proc.take(), &controller) {
        let mut p = p;
        if extras && ctx.args.idle_secs > 0 {
            run.idle = Some(idle(ctx, &mut p, subject).await);
        }
        let (restart, p) = restart(ctx, p, c, &ns).await;
        run.restart = Some(restart);
        proc = Some(p);
        if extras && ctx.args.churn_secs > 0 {
            run.churn = Some(churn(ctx, subject, &ns, n).await);
        }
    }

    eprintln!("    deleting namespace {ns}");
    run.delete_secs = namespace::delete(ctx.client, &ns).await.as_secs_f64();
    if let Some(p) = proc {
        p.stop(Duration::from_secs(30)).await;
    }
    run
}

async fn idle(ctx: &Ctx<'_>, proc: &mut Proc, subject: Subject) -> Idle {
    let secs = ctx.args.idle_secs;
    eprintln!("    idle window: {secs}s with nothing changing");
    let mark = ctx.audit.mark();
    let cpu = proc.cpu_secs();
    // Deliberate: the idle window is the measurement.
    tokio::time::sleep(Duration::from_secs(secs)).await;
    proc.check_alive("idle window");
    let window = Window::since(ctx.audit, mark, subject.agent());
    let writes = window.writes();
    Idle {
        secs,
        writes: writes.len(),
        writes_seen: writes
            .iter()
            .take(20)
            .map(|w| format!("{} {} {}", w.verb, w.resource(), name_of(w)))
            .collect(),
        cpu_secs: proc.cpu_secs() - cpu,
    }
}

/// Applies the churn edit to `name`; returns the new generation.
async fn edit(ctx: &Ctx<'_>, subject: Subject, ns: &str, name: &str, k: usize) -> i64 {
    let (ar, _) = subject.converged();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let patch = objects::settings_edit(subject == Subject::Argo, k);
    let o = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("edit {} {ns}/{name}: {e}", ar.kind));
    o.metadata.generation.unwrap_or(0)
}

/// Stops the process, starts it again, edits one model right away, and
/// times until that edit is observed; counts what the new process wrote to
/// everything else by the end of a settle window.
async fn restart(ctx: &Ctx<'_>, proc: Proc, c: &Controller, ns: &str) -> (Restart, Proc) {
    let subject = c.subject;
    let (ar, _) = subject.converged();
    let observations = Observations::default();
    let watch = observations.watch(ctx.client.clone(), ns, &ar);
    let mark = ctx.audit.mark();
    eprintln!("    restart: stopping the process");
    proc.stop(Duration::from_secs(30)).await;
    let started = Instant::now();
    let mut proc = c.start().await;
    let edited = objects::canary_name(0, 5);
    // A value no churn edit uses (and no default is): always a new generation.
    let generation = edit(ctx, subject, ns, &edited, 1_000_000).await;
    let timeout = ctx.args.converge_timeout(0);
    let missing = observations
        .wait_all(&[(edited.clone(), generation)], timeout)
        .await;
    assert_eq!(
        missing,
        0,
        "{} did not observe generation {generation} of {edited} within {timeout:?} of its restart (log: {})",
        subject.name(),
        proc.log.display()
    );
    let resumed = observations
        .observed_at(&edited, generation)
        .expect("observed")
        .duration_since(started);
    watch.abort();
    eprintln!("    resumed after {resumed:.1?}; settling");
    // Deliberate: the writes a restart causes come in its first minutes.
    tokio::time::sleep(Duration::from_secs(ctx.args.settle_secs)).await;
    proc.check_alive("after the restart");
    let window = Window::since(ctx.audit, mark, subject.agent());
    let mut by_resource = BTreeMap::new();
    let unchanged: Vec<_> = window
        .writes()
        .into_iter()
        .filter(|w| {
            name_of(w) != edited
                && !name_of(w).starts_with(&format!("{edited}-"))
                && w.resource() != "events"
                && w.resource() != "leases"
        })
        .collect();
    for w in &unchanged {
        *by_resource.entry(w.resource().to_string()).or_insert(0) += 1;
    }
    let restart = Restart {
        resume_secs: resumed.as_secs_f64(),
        rss_peak_mib: mib(proc.rss_peak_since_kib(started)),
        writes_unchanged: unchanged.len(),
        writes_unchanged_by_resource: by_resource,
        requests: window.by_verb(),
    };
    (restart, proc)
}

/// `rate` edits per second for `secs`, round-robin over the models; the
/// latency of each is edit sent → status.observedGeneration reaching it.
async fn churn(ctx: &Ctx<'_>, subject: Subject, ns: &str, n: usize) -> Churn {
    let (rate, secs) = (ctx.args.churn_rate, ctx.args.churn_secs);
    eprintln!("    churn: {rate} edits/s for {secs}s");
    let (ar, _) = subject.converged();
    let observations = Observations::default();
    let watch = observations.watch(ctx.client.clone(), ns, &ar);
    let total = (rate * secs as f64).round() as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut edits = tokio::task::JoinSet::new();
    for k in 0..total {
        tick.tick().await;
        let name = objects::canary_name(k, n);
        let (client, ns) = (ctx.client.clone(), ns.to_string());
        let patch = objects::settings_edit(subject == Subject::Argo, k + 1);
        let ar = ar.clone();
        // Each edit on its own task: a slow answer must not delay the schedule.
        edits.spawn(async move {
            let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
            let sent = Instant::now();
            let o = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap_or_else(|e| panic!("churn edit {ns}/{name}: {e}"));
            (name, o.metadata.generation.unwrap_or(0), sent)
        });
    }
    let sent: Vec<(String, i64, Instant)> = edits.join_all().await;
    let pending: Vec<(String, i64)> = sent.iter().map(|(n, g, _)| (n.clone(), *g)).collect();
    let unobserved = observations
        .wait_all(&pending, Duration::from_secs(120))
        .await;
    watch.abort();
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(name, g, at)| {
            observations
                .observed_at(name, *g)
                .map(|t| t.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Churn {
        rate,
        secs,
        edits: sent.len(),
        unobserved,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
    }
}
