//! The `mlctl eval` command: argument definitions and the thin shell around the pure
//! core (read files → evaluate → compare → render → exit code).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{EvalError, exit};
use crate::evaluate::{QueryPolicy, Settings};
use crate::gate::{self, Resampling};
use crate::input::{load_and_evaluate, read_input};
use crate::metric::{DEFAULT_METRICS, Gain, MetricSpec, parse_metric_arg};
use crate::output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Evaluate a TREC run against qrels with trec_eval's metric definitions, or gate a
/// candidate run against a baseline with paired significance tests.
///
/// Exit codes: 0 pass (or plain evaluation done), 10 gate failed, 1 error (unreadable
/// or malformed input), 2 usage error (bad flags, metric names or gate file).
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Judgments in TREC qrels format (`qid 0 docid rel`); gzip accepted.
    #[arg(long, value_name = "FILE")]
    pub qrels: PathBuf,

    /// The run to evaluate, in TREC format (`qid Q0 docid rank score tag`); gzip
    /// accepted. With --baseline this is the candidate.
    #[arg(long, value_name = "FILE")]
    pub run: PathBuf,

    /// The incumbent's run to compare with; needs --gate.
    #[arg(long, value_name = "FILE", requires = "gate")]
    pub baseline: Option<PathBuf>,

    /// YAML gate file: per metric, min_delta, alpha and require_improvement.
    #[arg(long, value_name = "FILE", requires = "baseline")]
    pub gate: Option<PathBuf>,

    /// Metric to compute (repeatable or comma-separated): ndcg@K, ndcg_linear@K,
    /// ndcg_exp@K, ap@K, rr@K, p@K, recall@K. Default: ndcg@10, ap@10, rr@10, p@10,
    /// recall@10 (with a gate: the gate's metrics). Gate metrics are always added.
    #[arg(long = "metric", short = 'm', value_name = "METRIC", value_delimiter = ',',
          value_parser = parse_metric_arg)]
    pub metrics: Vec<MetricSpec>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Also write a Markdown summary (for a pull-request comment) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Gain of `ndcg@K`: linear (label, trec_eval's ndcg_cut) or exp (2^label - 1, as
    /// LightGBM/XGBoost). `ndcg_linear@K` and `ndcg_exp@K` ignore this flag.
    #[arg(long, value_enum, default_value_t = Gain::Linear)]
    pub gain: Gain,

    /// Smallest label that counts as relevant for ap, rr, p and recall.
    #[arg(
        long,
        value_name = "LABEL",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub relevance_threshold: i32,

    /// A judged query absent from a run: score it 0, or skip it (in every run).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = QueryPolicy::Zero)]
    pub missing_queries: QueryPolicy,

    /// A judged query with no relevant document: score it 0, or skip it.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = QueryPolicy::Zero)]
    pub no_relevant: QueryPolicy,

    /// Rounds of the paired randomization test.
    #[arg(long, value_name = "B", default_value_t = 10_000)]
    pub permutations: usize,

    /// Resamples of the bootstrap confidence interval.
    #[arg(long, value_name = "B", default_value_t = 10_000)]
    pub bootstrap: usize,

    /// Seed of the randomization test and the bootstrap (same seed, same p-values).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// The RankingModel this gate is for (metadata.name). With
    /// --candidate-version, the gate's JSON report names them (next to the
    /// sha256 of every input file), so that `mlctl promote --gitops
    /// --gate-report` refuses it for another model or version.
    #[arg(long, value_name = "NAME", requires_all = ["candidate_version", "baseline"])]
    pub model: Option<String>,

    /// The RankingModel's namespace, recorded with --model.
    #[arg(long, value_name = "NAMESPACE", requires = "model")]
    pub model_namespace: Option<String>,

    /// The candidate's version (the spec.model.version it will be promoted as).
    #[arg(long, value_name = "VERSION", requires = "model")]
    pub candidate_version: Option<String>,

    /// The most bytes a gzipped input may decompress to (each file), e.g. 500M,
    /// 8G or a number of bytes; past it the evaluation stops with an error.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub max_decompressed_size: u64,
}

/// A byte size: a number with an optional K, M, G or T suffix (powers of
/// 1024; `Ki`, `KiB` and `KB` mean the same).
fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!("{text:?}: use a number of bytes with an optional K, M, G or T suffix (e.g. 500M)")
    };
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim_end_matches(['B', 'i']) {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(invalid()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(invalid)
}

/// Runs `mlctl eval`; returns the process exit code.
pub fn run(args: &EvalArgs) -> i32 {
    match execute(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mlctl eval: {err}");
            err.exit_code()
        }
    }
}

fn execute(args: &EvalArgs) -> Result<i32, EvalError> {
    if args.gate.is_some() && args.permutations == 0 {
        // With no rounds, p = 1 and every non-inferiority rule would pass unexamined.
        return Err(EvalError::Usage("--permutations must be at least 1".into()));
    }
    let rules = match &args.gate {
        Some(path) => {
            let bytes = read_input(path, args.max_decompressed_size)?;
            let text = String::from_utf8_lossy(&bytes);
            gate::parse_gate(&text).map_err(|source| EvalError::GateFile {
                path: path.clone(),
                source,
            })?
        }
        None => Vec::new(),
    };
    let mut metrics: Vec<MetricSpec> = Vec::new();
    let requested = if args.metrics.is_empty() && rules.is_empty() {
        DEFAULT_METRICS.to_vec()
    } else {
        args.metrics.clone()
    };
    for spec in requested.into_iter().chain(rules.iter().map(|r| r.metric)) {
        if !metrics.contains(&spec) {
            metrics.push(spec);
        }
    }
    let names: Vec<String> = metrics.iter().map(MetricSpec::to_string).collect();
    let settings = Settings {
        gain: args.gain,
        relevance_threshold: args.relevance_threshold,
        missing_queries: args.missing_queries,
        no_relevant: args.no_relevant,
    };

    let mut paths = Vec::new();
    if let Some(baseline) = &args.baseline {
        paths.push(baseline.clone());
    }
    paths.push(args.run.clone());
    let mut evaluations = load_and_evaluate(
        &args.qrels,
        &paths,
        &metrics,
        &settings,
        args.max_decompressed_size,
    )?;
    let Some(candidate) = evaluations.pop() else {
        return Err(EvalError::NoQueries("no run was evaluated".into()));
    };
    if candidate.qids.is_empty() {
        return Err(EvalError::NoQueries(format!(
            "{} judges no query that survives --missing-queries {} and --no-relevant {}",
            args.qrels.display(),
            value_name(args.missing_queries),
            value_name(args.no_relevant)
        )));
    }

    let Some(baseline) = evaluations.pop() else {
        let text = match args.output {
            OutputFormat::Table => output::means_table(&candidate, &names),
            OutputFormat::Json => output::json(&candidate, &names, None),
        };
        write_stdout(&text)?;
        if let Some(report) = &args.report {
            let md = output::markdown_means(&candidate, &names, &display(&args.run));
            write_file(report, &md)?;
        }
        return Ok(exit::PASS);
    };

    let resampling = Resampling {
        permutations: args.permutations,
        bootstrap: args.bootstrap,
        seed: args.seed,
    };
    let comparisons = gate::compare(&baseline, &candidate, &rules, &resampling)
        .map_err(|m| EvalError::NoQueries(format!("gate metric {m} was not evaluated")))?;
    let text = match args.output {
        OutputFormat::Table => output::comparison_table(&candidate, &names, &comparisons),
        OutputFormat::Json => {
            output::json_with(&candidate, &names, Some(&comparisons), &provenance(args)?)
        }
    };
    write_stdout(&text)?;
    if let Some(report) = &args.report {
        let ctx = output::ReportContext {
            baseline: &args.baseline.as_deref().map(display).unwrap_or_default(),
            candidate: &display(&args.run),
            settings_line: format!(
                "One-sided paired randomization test ({} sign-flip rounds, seed {}), \
                 Holm–Bonferroni across {} rules; bootstrap CI from {} resamples; paired t-test \
                 for reference. NDCG gain {}, relevance threshold {}, missing queries: {}, \
                 queries without relevant documents: {}.",
                args.permutations,
                args.seed,
                rules.len(),
                args.bootstrap,
                value_name(args.gain),
                args.relevance_threshold,
                value_name(args.missing_queries),
                value_name(args.no_relevant)
            ),
        };
        write_file(
            report,
            &output::markdown(&candidate, &names, &comparisons, &ctx),
        )?;
    }
    Ok(if output::all_pass(&comparisons) {
        exit::PASS
    } else {
        exit::GATE_FAILED
    })
}

/// The report's subject and the digests of its input files.
fn provenance(args: &EvalArgs) -> Result<output::Provenance, EvalError> {
    let subject = match (&args.model, &args.candidate_version) {
        (Some(model), Some(version)) => Some(output::Subject {
            model: model.clone(),
            namespace: args.model_namespace.clone(),
            version: version.clone(),
        }),
        _ => None,
    };
    let files = [
        ("qrels", Some(&args.qrels)),
        ("baseline", args.baseline.as_ref()),
        ("run", Some(&args.run)),
        ("gate", args.gate.as_ref()),
    ];
    let mut inputs = Vec::new();
    for (role, path) in files {
        if let Some(path) = path {
            let sha256 = crate::input::file_sha256(path)?;
            inputs.push((
                role,
                output::InputFile {
                    path: display(path),
                    sha256,
                },
            ));
        }
    }
    Ok(output::Provenance { subject, inputs })
}

/// The flag value as typed on the command line (`exp`, `skip`, ...).
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn write_stdout(text: &str) -> Result<(), EvalError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| EvalError::Write {
            what: "stdout".into(),
            source,
        })
}

fn write_file(path: &Path, text: &str) -> Result<(), EvalError> {
    std::fs::write(path, text).map_err(|source| EvalError::Write {
        what: display(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes_and_the_default_is_the_documented_one() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("16KB"), Ok(16 << 10));
        assert_eq!(parse_size("4G"), Ok(crate::input::DEFAULT_MAX_DECOMPRESSED));
        for bad in ["", "G", "4X", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
