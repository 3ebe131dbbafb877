//! mlctl eval against pytrec_eval on an MSLR-sized input (10,000 queries x 1,000
//! documents, every document judged 0-4), measured in the same run on the same files.
//!
//!   cargo bench -p mlctl-eval --bench eval_vs_pytrec [-- --queries N --docs M --rounds R]
//!
//! Needs python3 with `pytrec-eval-terrier`. The generated files (~500 MB) go to a
//! temporary directory that is removed at the end. Not a test: `cargo test` never runs it.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mlctl_eval::evaluate::Settings;
use mlctl_eval::input::{DEFAULT_MAX_DECOMPRESSED, load_and_evaluate};
use mlctl_eval::metric::MetricSpec;
use mlctl_eval::rng::Rng;

struct Options {
    queries: usize,
    docs: usize,
    rounds: usize,
    /// Skip pytrec_eval (for profiling the Rust side alone).
    rust_only: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        queries: 10_000,
        docs: 1_000,
        rounds: 3,
        rust_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a positive integer"))
        };
        match arg.as_str() {
            "--queries" => o.queries = value("--queries")?,
            "--docs" => o.docs = value("--docs")?,
            "--rounds" => o.rounds = value("--rounds")?.max(1),
            "--rust-only" => o.rust_only = true,
            // `cargo bench` passes `--bench`; filters are not meaningful here.
            _ => {}
        }
    }
    Ok(o)
}

/// MSLR-WEB10K's label distribution is roughly 52/32/13/2/1 % for labels 0-4.
fn label(rng: &mut Rng) -> u8 {
    match rng.below(100) {
        0..52 => 0,
        52..84 => 1,
        84..97 => 2,
        97..99 => 3,
        _ => 4,
    }
}

fn generate(dir: &Path, o: &Options) -> std::io::Result<(PathBuf, PathBuf)> {
    let qrels_path = dir.join("bench.qrels");
    let run_path = dir.join("bench.run");
    let mut qrels = BufWriter::with_capacity(1 << 20, std::fs::File::create(&qrels_path)?);
    let mut run = BufWriter::with_capacity(1 << 20, std::fs::File::create(&run_path)?);
    let mut rng = Rng::new(20_261_125);
    let mut scores = Vec::with_capacity(o.docs);
    for q in 0..o.queries {
        scores.clear();
        for d in 0..o.docs {
            let l = label(&mut rng);
            writeln!(qrels, "{q} 0 doc{d:07} {l}")?;
            // The score leans on the label, so the metrics are not all near zero.
            let score = f64::from(l) * 0.3 + rng.unit() * 3.0;
            scores.push((score, d));
        }
        scores.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (rank, (score, d)) in scores.iter().enumerate() {
            writeln!(run, "{q} Q0 doc{d:07} {} {score:.6} bench", rank + 1)?;
        }
    }
    qrels.flush()?;
    run.flush()?;
    Ok((qrels_path, run_path))
}

/// CPU time (user + system) of this process so far, from /proc (Linux); the machine
/// may be shared, and CPU time is less disturbed by other load than wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let dir = std::env::temp_dir().join(format!("mlctl-eval-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = bench(&dir, &o);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn bench(dir: &Path, o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!(
        "generating {} queries x {} documents in {}",
        o.queries,
        o.docs,
        dir.display()
    );
    let (qrels, run) = generate(dir, o)?;
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    println!(
        "input: {} queries x {} documents; qrels {:.0} MB, run {:.0} MB",
        o.queries,
        o.docs,
        size(&qrels),
        size(&run)
    );

    let metrics: Vec<MetricSpec> = ["ndcg@10", "ap@10", "rr@10", "p@10", "recall@10"]
        .iter()
        .map(|m| m.parse())
        .collect::<Result<_, _>>()?;
    let mut rust_times = Vec::new();
    let mut evaluation = None;
    let cpu_start = cpu_seconds();
    for _ in 0..o.rounds {
        let start = Instant::now();
        let mut evals = load_and_evaluate(
            &qrels,
            std::slice::from_ref(&run),
            &metrics,
            &Settings::default(),
            DEFAULT_MAX_DECOMPRESSED,
        )?;
        rust_times.push(start.elapsed().as_secs_f64());
        evaluation = evals.pop();
    }
    let rust_cpu = (cpu_seconds() - cpu_start) / o.rounds as f64;
    rust_times.sort_by(f64::total_cmp);
    let rust = rust_times[rust_times.len() / 2];
    println!(
        "mlctl-eval (read + parse + 5 metrics, up to {} threads): wall median {rust:.3} s of {} rounds \
         {rust_times:.3?}; CPU {rust_cpu:.3} s per round",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        o.rounds
    );

    if o.rust_only {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/pytrec_bench.py");
    let start = Instant::now();
    let out = Command::new("python3")
        .arg(&script)
        .arg(&qrels)
        .arg(&run)
        .output()?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "pytrec_eval failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let py: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let field = |k: &str| py[k].as_f64().unwrap_or(f64::NAN);
    let py_total = field("total_seconds");
    let py_cpu = field("cpu_seconds");
    println!(
        "pytrec_eval (parse_qrel/parse_run + evaluate, 1 thread): wall {py_total:.3} s (parse {:.3} s, \
         evaluate {:.3} s; {wall:.3} s with interpreter start); CPU {py_cpu:.3} s",
        field("parse_seconds"),
        field("eval_seconds"),
    );
    println!(
        "ratio: mlctl-eval is {:.1}x faster than pytrec_eval in wall time ({:.1}x in CPU time)",
        py_total / rust,
        py_cpu / rust_cpu
    );

    // The two must agree, or the speed means nothing.
    if let Some(e) = evaluation {
        for (m, spec) in e.metrics.iter().enumerate() {
            let name = spec.to_string();
            if let Some(theirs) = py["means"][name.as_str()].as_f64() {
                let ours = e.mean(m);
                let ok = (ours - theirs).abs() < 1e-9;
                println!(
                    "  {name:<10} mlctl {ours:.6}  pytrec_eval {theirs:.6}  {}",
                    if ok { "agree" } else { "DIFFER" }
                );
            }
        }
    }
    Ok(())
}
