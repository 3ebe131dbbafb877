//! The side-by-side table (stdout) and the JSON of one size.

use std::fmt::Write as _;

use serde::Serialize;

use crate::phases::Run;
use crate::requests::VERBS;

/// What the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_mib: u64,
    pub cpu_model: String,
    /// `git describe` of the tree the operator was built from.
    pub commit: String,
    pub date: String,
}

impl Machine {
    pub fn read() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let output = |cmd: &str, args: &[&str]| {
            std::process::Command::new(cmd)
                .args(args)
                .current_dir(mlctl_e2e::workspace_root())
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            mem_total_mib: field(&meminfo, "MemTotal")
                .trim_end_matches(" kB")
                .parse::<u64>()
                .unwrap_or(0)
                / 1024,
            cpu_model: field(&cpuinfo, "model name"),
            commit: output("git", &["describe", "--always", "--dirty"]),
            date: output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        }
    }
}

/// Everything measured at one size.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    pub models: usize,
    pub machine: Machine,
    pub runs: Vec<Run>,
}

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// The table of one size: a column per subject, then the ratios.
pub fn table(result: &SizeResult) -> String {
    let find = |name: &str| result.runs.iter().find(|r| r.subject == name);
    let (floor, mlctl, argo) = (find("floor"), find("mlctl"), find("argo-rollouts"));
    type Metric = (&'static str, usize, Box<dyn Fn(&Run) -> Option<f64>>);
    let mut rows: Vec<Metric> = vec![
        ("objects created", 0, Box::new(|r| Some(r.objects as f64))),
        ("creates done (s)", 1, Box::new(|r| Some(r.create_secs))),
        ("converged (s)", 1, Box::new(|r| Some(r.converge_secs))),
        ("RSS idle (MiB)", 1, Box::new(|r| r.rss_idle_mib)),
        ("RSS peak (MiB)", 1, Box::new(|r| r.rss_peak_mib)),
        ("RSS steady (MiB)", 1, Box::new(|r| r.rss_steady_mib)),
        ("RSS per model (KiB)", 1, Box::new(|r| r.rss_per_model_kib)),
        ("CPU converging (s)", 1, Box::new(|r| r.cpu_converge_secs)),
        ("reconciles", 0, Box::new(|r| r.reconciles_converge)),
        (
            "reads per reconcile",
            2,
            Box::new(|r| r.reads_per_reconcile),
        ),
    ];
    for verb in VERBS {
        rows.push((
            verb_label(verb),
            0,
            Box::new(move |r| r.requests_converge.get(verb).map(|&v| v as f64)),
        ));
    }
    rows.extend::<Vec<Metric>>(vec![
        (
            "restart: resumed (s)",
            1,
            Box::new(|r| r.restart.as_ref().map(|x| x.resume_secs)),
        ),
        (
            "restart: RSS peak (MiB)",
            1,
            Box::new(|r| r.restart.as_ref().map(|x| x.rss_peak_mib)),
        ),
        (
            "restart: writes to unchanged",
            0,
            Box::new(|r| r.restart.as_ref().map(|x| x.writes_unchanged as f64)),
        ),
        (
            "idle: writes",
            0,
            Box::new(|r| r.idle.as_ref().map(|x| x.writes as f64)),
        ),
        (
            "idle: CPU (s)",
            2,
            Box::new(|r| r.idle.as_ref().map(|x| x.cpu_secs)),
        ),
        (
            "churn: edits",
            0,
            Box::new(|r| r.churn.as_ref().map(|x| x.edits as f64)),
        ),
        (
            "churn: unobserved",
            0,
            Box::new(|r| r.churn.as_ref().map(|x| x.unobserved as f64)),
        ),
        (
            "churn: p50 (ms)",
            0,
            Box::new(|r| r.churn.as_ref().map(|x| x.p50_ms)),
        ),
        (
            "churn: p99 (ms)",
            0,
            Box::new(|r| r.churn.as_ref().map(|x| x.p99_ms)),
        ),
        (
            "namespace deleted (s)",
            1,
            Box::new(|r| Some(r.delete_secs)),
        ),
    ]);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## N = {} models ({} cores, {} MiB, {})",
        result.models, result.machine.nproc, result.machine.mem_total_mib, result.machine.commit
    );
    let _ = writeln!(
        out,
        "{:<30} {:>12} {:>12} {:>14} {:>11} {:>11} {:>11}",
        "", "floor", "mlctl", "argo-rollouts", "mlctl/floor", "argo/floor", "argo/mlctl"
    );
    for (label, decimals, get) in &rows {
        let value = |r: Option<&Run>| r.and_then(get);
        let (f, m, a) = (value(floor), value(mlctl), value(argo));
        if f.is_none() && m.is_none() && a.is_none() {
            continue;
        }
        let cell = |v| num(v, *decimals);
        let _ = writeln!(
            out,
            "{:<30} {:>12} {:>12} {:>14} {:>11} {:>11} {:>11}",
            label,
            cell(f),
            cell(m),
            cell(a),
            ratio(m, f),
            ratio(a, f),
            ratio(a, m)
        );
    }
    if mlctl
        .or(argo)
        .is_some_and(|r| !r.requests_converge.contains_key("get"))
    {
        let _ = writeln!(
            out,
            "(reads not counted: the cluster's audit policy logs writes only)"
        );
    }
    out
}

fn verb_label(verb: &str) -> &'static str {
    match verb {
        "get" => "requests: GET",
        "list" => "requests: LIST",
        "watch" => "requests: WATCH",
        "create" => "requests: CREATE",
        "update" => "requests: UPDATE",
        "patch" => "requests: PATCH",
        "delete" => "requests: DELETE",
        _ => "requests: DELETECOLLECTION",
    }
}
