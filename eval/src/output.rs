//! Renders results as a terminal table, JSON, or a Markdown pull-request comment.
//! Pure: every function returns a String.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::evaluate::Evaluation;
use crate::gate::Comparison;

/// The p-value that decides a rule, named in the JSON so consumers need not guess.
pub const GATING_P: &str = "p_holm (p_randomization, Holm-adjusted across the gate's rules)";

/// A JSON object that keeps insertion order (metrics as requested, queries sorted).
struct Ordered<'a, V>(Vec<(&'a str, V)>);

impl<V: Serialize> Serialize for Ordered<'_, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct MetricJson<'a> {
    mean: f64,
    per_query: Ordered<'a, f64>,
}

#[derive(Serialize)]
struct ComparisonJson {
    baseline: f64,
    candidate: f64,
    delta: f64,
    ci95: [f64; 2],
    p_randomization: f64,
    p_ttest: f64,
    wins: usize,
    losses: usize,
    ties: usize,
    pass: bool,
    p_holm: f64,
    alpha: f64,
    min_delta: f64,
    require_improvement: bool,
}

/// What a gate report is about, so that it cannot be reused for another
/// promotion: the model and candidate version it was made for, and the
/// digest of every input file. Consumers (`mlctl promote --gitops`) check
/// them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Provenance {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Input files by role (qrels, baseline, run, gate), in that order.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "in_order")]
    pub inputs: Vec<(&'static str, InputFile)>,
}

/// The RankingModel and the version the gate was run for.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub version: String,
}

/// An input file as it was on disk.
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: String,
    /// SHA-256 of the file's bytes (what `sha256sum` prints), lower-case hex.
    pub sha256: String,
}

fn in_order<S: Serializer>(
    inputs: &[(&'static str, InputFile)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    Ordered(inputs.iter().map(|(role, file)| (*role, file)).collect()).serialize(serializer)
}

#[derive(Serialize)]
struct ReportJson<'a> {
    #[serde(flatten)]
    provenance: &'a Provenance,
    queries: usize,
    metrics: Ordered<'a, MetricJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison: Option<Ordered<'a, ComparisonJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gating_p: Option<&'static str>,
}

/// `{"queries": N, "metrics": {...}}`, plus `comparison`, `pass` and `gating_p` when a
/// gate was evaluated. `names[m]` is the display name of `eval.metrics[m]`.
pub fn json(eval: &Evaluation, names: &[String], comparisons: Option<&[Comparison]>) -> String {
    json_with(eval, names, comparisons, &Provenance::default())
}

/// [`json`] with the report's `subject` and `inputs` first.
pub fn json_with(
    eval: &Evaluation,
    names: &[String],
    comparisons: Option<&[Comparison]>,
    provenance: &Provenance,
) -> String {
    let metrics = Ordered(
        names
            .iter()
            .enumerate()
            .map(|(m, name)| {
                let per_query = Ordered(
                    eval.qids
                        .iter()
                        .map(|q| q.as_str())
                        .zip(eval.scores[m].iter().copied())
                        .collect(),
                );
                (
                    name.as_str(),
                    MetricJson {
                        mean: eval.mean(m),
                        per_query,
                    },
                )
            })
            .collect(),
    );
    let comparison = comparisons.map(|cs| {
        Ordered(
            cs.iter()
                .map(|c| {
                    let name = name_of(eval, names, c);
                    (
                        name,
                        ComparisonJson {
                            baseline: c.baseline,
                            candidate: c.candidate,
                            delta: c.delta,
                            ci95: [c.ci95.0, c.ci95.1],
                            p_randomization: c.p_randomization,
                            p_ttest: c.p_ttest,
                            wins: c.wins,
                            losses: c.losses,
                            ties: c.ties,
                            pass: c.pass,
                            p_holm: c.p_holm,
                            alpha: c.rule.alpha,
                            min_delta: c.rule.min_delta,
                            require_improvement: c.rule.require_improvement,
                        },
                    )
                })
                .collect(),
        )
    });
    let report = ReportJson {
        provenance,
        queries: eval.qids.len(),
        metrics,
        comparison,
        pass: comparisons.map(all_pass),
        gating_p: comparisons.map(|_| GATING_P),
    };
    // Serializing plain structs of numbers and strings into a String cannot fail.
    serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
}

fn name_of<'a>(eval: &Evaluation, names: &'a [String], c: &Comparison) -> &'a str {
    eval.metrics
        .iter()
        .position(|m| *m == c.rule.metric)
        .and_then(|m| names.get(m))
        .map_or("", String::as_str)
}

pub fn all_pass(comparisons: &[Comparison]) -> bool {
    comparisons.iter().all(|c| c.pass)
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

fn rule_text(c: &Comparison) -> String {
    let d = c.rule.min_delta;
    let margin = if d < 0.0 {
        format!("- {}", -d)
    } else {
        format!("+ {d}")
    };
    if c.rule.require_improvement {
        format!(
            "improvement: above baseline {margin} (α = {})",
            c.rule.alpha
        )
    } else {
        format!(
            "non-inferiority: not below baseline {margin} (α = {})",
            c.rule.alpha
        )
    }
}

/// Left-aligned columns separated by two spaces, kubectl style.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The table of means printed by a plain evaluation.
pub fn means_table(eval: &Evaluation, names: &[String]) -> String {
    let mut rows = vec![vec!["METRIC".to_string(), "MEAN".to_string()]];
    for (m, name) in names.iter().enumerate() {
        rows.push(vec![name.clone(), format!("{:.4}", eval.mean(m))]);
    }
    format!("{}queries: {}\n", table(&rows), eval.qids.len())
}

/// The comparison table printed by a gated evaluation, verdict last (the eye ends there).
pub fn comparison_table(eval: &Evaluation, names: &[String], comparisons: &[Comparison]) -> String {
    let mut rows = vec![
        [
            "METRIC",
            "BASELINE",
            "CANDIDATE",
            "DELTA",
            "CI95",
            "P_RAND",
            "P_HOLM",
            "P_TTEST",
            "W/L/T",
            "RULE",
            "RESULT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in comparisons {
        rows.push(vec![
            name_of(eval, names, c).to_string(),
            format!("{:.4}", c.baseline),
            format!("{:.4}", c.candidate),
            format!("{:+.4}", c.delta),
            format!("[{:+.4}, {:+.4}]", c.ci95.0, c.ci95.1),
            fmt_p(c.p_randomization),
            fmt_p(c.p_holm),
            fmt_p(c.p_ttest),
            format!("{}/{}/{}", c.wins, c.losses, c.ties),
            rule_text(c),
            verdict(c.pass).to_string(),
        ]);
    }
    let failed = comparisons.iter().filter(|c| !c.pass).count();
    format!(
        "{}queries: {}\ngate: {} ({} of {} rules passed)\n",
        table(&rows),
        eval.qids.len(),
        verdict(failed == 0),
        comparisons.len() - failed,
        comparisons.len()
    )
}

/// Context for the Markdown report's header and footer.
pub struct ReportContext<'a> {
    pub baseline: &'a str,
    pub candidate: &'a str,
    pub settings_line: String,
}

/// A Markdown summary for a pull-request comment: the verdict first, then one table per
/// metric, then how the numbers were computed.
pub fn markdown(
    eval: &Evaluation,
    names: &[String],
    comparisons: &[Comparison],
    ctx: &ReportContext<'_>,
) -> String {
    let pass = all_pass(comparisons);
    let failed: Vec<&str> = comparisons
        .iter()
        .filter(|c| !c.pass)
        .map(|c| name_of(eval, names, c))
        .collect();
    let mut out = format!("## mlctl eval gate: **{}**\n\n", verdict(pass));
    out.push_str(&format!(
        "Candidate `{}` against baseline `{}` on {} queries: ",
        ctx.candidate,
        ctx.baseline,
        eval.qids.len()
    ));
    if pass {
        out.push_str(&format!("all {} gate rules passed.\n", comparisons.len()));
    } else {
        out.push_str(&format!(
            "{} of {} gate rules failed ({}).\n",
            failed.len(),
            comparisons.len(),
            failed
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for c in comparisons {
        let name = name_of(eval, names, c);
        out.push_str(&format!("\n### `{name}`: {}\n\n", verdict(c.pass)));
        out.push_str("| | |\n|---|---|\n");
        let rows = [
            ("Rule", rule_text(c)),
            ("Baseline mean", format!("{:.4}", c.baseline)),
            ("Candidate mean", format!("{:.4}", c.candidate)),
            ("Mean delta", format!("{:+.4}", c.delta)),
            (
                "95% bootstrap CI of delta",
                format!("[{:+.4}, {:+.4}]", c.ci95.0, c.ci95.1),
            ),
            ("p, randomization (one-sided)", fmt_p(c.p_randomization)),
            ("p, Holm-adjusted (decides)", fmt_p(c.p_holm)),
            ("p, paired t-test (one-sided)", fmt_p(c.p_ttest)),
            (
                "Wins / losses / ties",
                format!("{} / {} / {}", c.wins, c.losses, c.ties),
            ),
        ];
        for (k, v) in rows {
            out.push_str(&format!("| {k} | {v} |\n"));
        }
    }
    out.push_str(&format!("\n<sub>{}</sub>\n", ctx.settings_line));
    out
}

/// A Markdown table of means, for `--report` without a gate.
pub fn markdown_means(eval: &Evaluation, names: &[String], run: &str) -> String {
    let mut out = format!("## mlctl eval: `{run}` on {} queries\n\n", eval.qids.len());
    out.push_str("| Metric | Mean |\n|---|---|\n");
    for (m, name) in names.iter().enumerate() {
        out.push_str(&format!("| `{name}` | {:.4} |\n", eval.mean(m)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{GateRule, Resampling, compare};

    fn sample() -> (Evaluation, Evaluation, Vec<String>) {
        let metrics = vec!["ndcg@10".parse().unwrap(), "p@5".parse().unwrap()];
        let qids = vec!["2".to_string(), "10".to_string()];
        let base = Evaluation {
            qids: qids.clone(),
            metrics: metrics.clone(),
            scores: vec![vec![0.5, 0.25], vec![0.2, 0.4]],
        };
        let cand = Evaluation {
            qids,
            metrics,
            scores: vec![vec![0.75, 0.25], vec![0.2, 0.2]],
        };
        (base, cand, vec!["ndcg@10".into(), "p@5".into()])
    }

    #[test]
    fn json_has_the_documented_shape_in_order() {
        let (_, cand, names) = sample();
        let text = json(&cand, &names, None);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["queries"], 2);
        assert_eq!(v["metrics"]["ndcg@10"]["mean"], 0.5);
        assert_eq!(v["metrics"]["p@5"]["per_query"]["10"], 0.2);
        assert!(v.get("comparison").is_none() && v.get("pass").is_none());
        // Requested metric order and numeric query order survive serialization.
        assert!(text.find("ndcg@10").unwrap() < text.find("p@5").unwrap());
        assert!(text.find("\"2\"").unwrap() < text.find("\"10\"").unwrap());
    }

    #[test]
    fn comparison_outputs() {
        let (base, cand, names) = sample();
        let rule = |m: &str| GateRule {
            metric: m.parse().unwrap(),
            min_delta: 0.0,
            alpha: 0.05,
            require_improvement: false,
        };
        let cs = compare(
            &base,
            &cand,
            &[rule("ndcg@10"), rule("p@5")],
            &Resampling::default(),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json(&cand, &names, Some(&cs))).unwrap();
        let c = &v["comparison"]["ndcg@10"];
        for key in [
            "baseline",
            "candidate",
            "delta",
            "ci95",
            "p_randomization",
            "p_ttest",
            "wins",
            "losses",
            "ties",
            "pass",
            "p_holm",
        ] {
            assert!(c.get(key).is_some(), "{key}");
        }
        assert_eq!(c["delta"], 0.125);
        assert_eq!(v["pass"], true);
        assert!(v["gating_p"].as_str().unwrap().starts_with("p_holm"));

        let table = comparison_table(&cand, &names, &cs);
        assert!(table.starts_with("METRIC"));
        assert!(
            table.ends_with("gate: PASS (2 of 2 rules passed)\n"),
            "{table}"
        );

        let ctx = ReportContext {
            baseline: "b.run",
            candidate: "c.run",
            settings_line: "seed 42".into(),
        };
        let md = markdown(&cand, &names, &cs, &ctx);
        assert!(md.starts_with("## mlctl eval gate: **PASS**\n"), "{md}");
        assert!(
            md.contains("### `p@5`: PASS") && md.contains("| Wins / losses / ties | 0 / 1 / 1 |")
        );
    }

    #[test]
    fn means_outputs() {
        let (_, cand, names) = sample();
        assert_eq!(
            means_table(&cand, &names),
            "METRIC   MEAN\nndcg@10  0.5000\np@5      0.2000\nqueries: 2\n"
        );
        assert!(markdown_means(&cand, &names, "c.run").contains("| `p@5` | 0.2000 |"));
    }
}
