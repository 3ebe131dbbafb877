//! The gate report written by `mlctl eval -o json`, its digest, and the Markdown rendered
//! from it for the pull-request comment and check run (verdict first, then one row per metric).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Deserialize)]
pub struct GateReport {
    /// The model and version the gate was run for (`mlctl eval --model
    /// --candidate-version`).
    #[serde(default)]
    pub subject: Option<ReportSubject>,
    /// The input files by role (qrels, baseline, run, gate).
    #[serde(default)]
    pub inputs: BTreeMap<String, ReportInput>,
    #[serde(default)]
    pub queries: Option<u64>,
    #[serde(default)]
    pub comparison: BTreeMap<String, MetricComparison>,
    pub pass: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReportSubject {
    pub model: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReportInput {
    pub path: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetricComparison {
    pub baseline: f64,
    pub candidate: f64,
    pub delta: f64,
    #[serde(default)]
    pub ci95: Option<[f64; 2]>,
    #[serde(default)]
    pub p_randomization: Option<f64>,
    #[serde(default)]
    pub p_ttest: Option<f64>,
    #[serde(default)]
    pub wins: Option<u64>,
    #[serde(default)]
    pub losses: Option<u64>,
    #[serde(default)]
    pub ties: Option<u64>,
    #[serde(default)]
    pub pass: Option<bool>,
    /// Holm–Bonferroni adjusted p-value (what the gate decides on).
    #[serde(default)]
    pub p_holm: Option<f64>,
    /// The non-inferiority margin of the gate rule.
    #[serde(default)]
    pub min_delta: Option<f64>,
}

/// A report as read from disk: the parsed verdict, the digest of the exact bytes, and
/// the Markdown to show (rendered, or given verbatim with `--gate-report-md`).
#[derive(Debug, Clone)]
pub struct LoadedReport {
    pub report: GateReport,
    pub digest: String,
    pub markdown: String,
    /// Roles of the inputs whose files are not here to check (another CI job
    /// evaluated them); their digests are in the report, which the pull
    /// request records by its digest.
    pub unchecked_inputs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read the gate report {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a gate report written by `mlctl eval -o json` ({source}); \
         expected {{\"pass\": bool, \"comparison\": {{…}}}}"
    )]
    Shape {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the gate report {path} names no model and version, so it could be reused for any \
         promotion; write it with mlctl eval … --model {model} --candidate-version {version} -o json"
    )]
    Unbound {
        path: String,
        model: String,
        version: String,
    },
    #[error(
        "the gate report {path} is for {report_model} {report_version}, not {model} {version}; \
         a report is valid for the promotion it was made for only: run mlctl eval for this one"
    )]
    OtherSubject {
        path: String,
        report_model: String,
        report_version: String,
        model: String,
        version: String,
    },
    #[error(
        "the {role} file {input} changed since the gate report {path} was written (sha256 {actual}, \
         the report says {recorded}); run mlctl eval again"
    )]
    InputChanged {
        path: String,
        role: String,
        input: String,
        recorded: String,
        actual: String,
    },
}

/// What the rendered report is about.
pub struct Subject<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub env: &'a str,
}

pub fn load(
    json: &Path,
    markdown: Option<&Path>,
    subject: &Subject,
) -> Result<LoadedReport, ReportError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ReportError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let bytes = read(json)?;
    let report: GateReport =
        serde_json::from_slice(&bytes).map_err(|source| ReportError::Shape {
            path: json.display().to_string(),
            source,
        })?;
    let unchecked_inputs = check_binding(&report, subject, &json.display().to_string())?;
    let markdown = match markdown {
        Some(path) => String::from_utf8_lossy(&read(path)?).into_owned(),
        None => render_markdown(&report, subject),
    };
    Ok(LoadedReport {
        digest: digest(&bytes),
        report,
        markdown,
        unchecked_inputs,
    })
}

/// A report is valid for the promotion it names only: its model and version
/// must be this promotion's, and every input file it names that is here must
/// still have the digest it had. Returns the roles of inputs not here.
fn check_binding(
    report: &GateReport,
    subject: &Subject,
    path: &str,
) -> Result<Vec<String>, ReportError> {
    let Some(named) = &report.subject else {
        return Err(ReportError::Unbound {
            path: path.to_string(),
            model: subject.model.to_string(),
            version: subject.version.to_string(),
        });
    };
    if named.model != subject.model || named.version != subject.version {
        return Err(ReportError::OtherSubject {
            path: path.to_string(),
            report_model: named.model.clone(),
            report_version: named.version.clone(),
            model: subject.model.to_string(),
            version: subject.version.to_string(),
        });
    }
    let mut unchecked = Vec::new();
    for (role, input) in &report.inputs {
        let Ok(bytes) = std::fs::read(&input.path) else {
            unchecked.push(role.clone());
            continue;
        };
        let actual = digest(&bytes);
        let actual = actual.trim_start_matches("sha256:");
        if !actual.eq_ignore_ascii_case(&input.sha256) {
            return Err(ReportError::InputChanged {
                path: path.to_string(),
                role: role.clone(),
                input: input.path.clone(),
                recorded: input.sha256.clone(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(unchecked)
}

pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::from("sha256:");
    for byte in hash {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn opt(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "–".to_string(), format)
}

/// One-line summary for commit statuses (GitHub caps descriptions at 140 characters).
pub fn status_description(report: &GateReport) -> String {
    let verdict = if report.pass {
        "gate passed"
    } else {
        "gate failed"
    };
    let mut text = verdict.to_string();
    if let Some((metric, cmp)) = report.comparison.iter().next() {
        text = format!(
            "{verdict}: {metric} {:+.4} ({:.4} → {:.4})",
            cmp.delta, cmp.baseline, cmp.candidate
        );
    }
    text.chars().take(140).collect()
}

pub fn render_markdown(report: &GateReport, subject: &Subject) -> String {
    let verdict = if report.pass {
        "✅ Gate passed"
    } else {
        "❌ Gate failed"
    };
    let mut md = format!(
        "### {verdict} — `{}` {} ({})\n\n",
        subject.model, subject.version, subject.env
    );
    if let Some(queries) = report.queries {
        let _ = writeln!(
            md,
            "Evaluated on {queries} queries, candidate vs. baseline.\n"
        );
    }
    if report.comparison.is_empty() {
        md.push_str("The report has no metric comparison.\n");
        return md;
    }
    md.push_str("| metric | baseline | candidate | Δ | 95% CI of Δ | margin | p (randomization) | p (t-test) | p (Holm) | wins / losses / ties | verdict |\n");
    md.push_str("|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|\n");
    for (metric, c) in &report.comparison {
        let ci = c.ci95.map_or_else(
            || "–".to_string(),
            |[lo, hi]| format!("[{lo:+.4}, {hi:+.4}]"),
        );
        let wlt = match (c.wins, c.losses, c.ties) {
            (Some(w), Some(l), Some(t)) => format!("{w} / {l} / {t}"),
            _ => "–".to_string(),
        };
        let verdict = match c.pass {
            Some(true) => "pass",
            Some(false) => "**fail**",
            None => "–",
        };
        let _ = writeln!(
            md,
            "| {metric} | {:.4} | {:.4} | {:+.4} | {ci} | {} | {} | {} | {} | {wlt} | {verdict} |",
            c.baseline,
            c.candidate,
            c.delta,
            opt(c.min_delta, |m| format!("{m:+.4}")),
            opt(c.p_randomization, |p| format!("{p:.4}")),
            opt(c.p_ttest, |p| format!("{p:.4}")),
            opt(c.p_holm, |p| format!("{p:.4}")),
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"queries": 500, "metrics": {}, "comparison": {"ndcg@10": {"baseline": 0.41, "candidate": 0.42, "delta": 0.01, "ci95": [0.002, 0.018], "p_randomization": 0.012, "p_ttest": 0.01, "wins": 120, "losses": 80, "ties": 300, "pass": true}}, "pass": true}"#;

    #[test]
    fn renders_verdict_first_and_a_row_per_metric() {
        let report: GateReport = serde_json::from_str(SAMPLE).unwrap();
        let md = render_markdown(
            &report,
            &Subject {
                model: "m",
                version: "v2",
                env: "prod",
            },
        );
        assert!(md.starts_with("### ✅ Gate passed — `m` v2 (prod)"), "{md}");
        assert!(md.contains("| ndcg@10 | 0.4100 | 0.4200 | +0.0100 | [+0.0020, +0.0180] | – | 0.0120 | 0.0100 | – | 120 / 80 / 300 | pass |"), "{md}");
        assert_eq!(
            status_description(&report),
            "gate passed: ndcg@10 +0.0100 (0.4100 → 0.4200)"
        );
    }

    fn bound(subject: &str, inputs: &str) -> GateReport {
        let text = SAMPLE.replacen('{', &format!("{{{subject}{inputs}"), 1);
        serde_json::from_str(&text).unwrap()
    }

    const FOR_V2: Subject<'static> = Subject {
        model: "m",
        version: "v2",
        env: "prod",
    };

    #[test]
    fn a_report_binds_to_its_model_and_version() {
        let unbound: GateReport = serde_json::from_str(SAMPLE).unwrap();
        let err = check_binding(&unbound, &FOR_V2, "r.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("names no model and version"), "{err}");
        assert!(err.contains("--model m --candidate-version v2"), "{err}");
        let report = bound(r#""subject": {"model": "m", "version": "v1"}, "#, "");
        let err = check_binding(&report, &FOR_V2, "r.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is for m v1, not m v2"), "{err}");
        let report = bound(r#""subject": {"model": "other", "version": "v2"}, "#, "");
        assert!(check_binding(&report, &FOR_V2, "r.json").is_err());
        let report = bound(
            r#""subject": {"model": "m", "namespace": "ranking", "version": "v2"}, "#,
            "",
        );
        assert_eq!(
            check_binding(&report, &FOR_V2, "r.json").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn input_files_that_are_here_must_still_match_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("candidate.run");
        std::fs::write(&run, "q1 Q0 d1 1 2.0 t\n").unwrap();
        let sha = digest(&std::fs::read(&run).unwrap()).replace("sha256:", "");
        let inputs = |sha: &str| {
            format!(
                r#""inputs": {{"run": {{"path": {:?}, "sha256": "{sha}"}}, "qrels": {{"path": "/nonexistent/q", "sha256": "00"}}}}, "#,
                run.display().to_string()
            )
        };
        let subject = r#""subject": {"model": "m", "version": "v2"}, "#;
        let report = bound(subject, &inputs(&sha));
        assert_eq!(
            check_binding(&report, &FOR_V2, "r.json").unwrap(),
            ["qrels"]
        );
        std::fs::write(&run, "q1 Q0 d9 1 2.0 t\n").unwrap();
        let err = check_binding(&report, &FOR_V2, "r.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the run file") && err.contains("changed since"),
            "{err}"
        );
    }

    #[test]
    fn digest_is_of_the_exact_bytes() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
