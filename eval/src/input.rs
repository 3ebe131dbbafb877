//! Reading qrels and runs from disk (plain or gzip, detected by magic bytes) and the
//! whole load → parse → evaluate pipeline, shared by the CLI and the benchmark.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::EvalError;
use crate::evaluate::{Evaluation, Settings, evaluate};
use crate::metric::MetricSpec;
use crate::parse::{ParseError, duplicate_lines, parse_qrels, parse_run};

/// Reads a whole file, transparently decompressing gzip.
pub fn read_input(path: &Path) -> Result<Vec<u8>, EvalError> {
    let read_err = |source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(read_err)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(read_err)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn malformed(path: &Path) -> impl Fn(ParseError) -> EvalError + '_ {
    move |e| EvalError::Malformed {
        path: path.to_path_buf(),
        line: e.line,
        reason: e.reason,
    }
}

/// Reads the files concurrently, parses them and evaluates every run on the same
/// query set (see [`evaluate`]).
pub fn load_and_evaluate(
    qrels_path: &Path,
    run_paths: &[PathBuf],
    metrics: &[MetricSpec],
    settings: &Settings,
) -> Result<Vec<Evaluation>, EvalError> {
    let (qrels_buf, run_bufs) = std::thread::scope(|s| {
        let runs: Vec<_> = run_paths
            .iter()
            .map(|p| s.spawn(move || read_input(p)))
            .collect();
        let qrels = read_input(qrels_path);
        let runs: Result<Vec<Vec<u8>>, EvalError> = runs
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
            })
            .collect();
        (qrels, runs)
    });
    let (qrels_buf, run_bufs) = (qrels_buf?, run_bufs?);
    let qrels = parse_qrels(&qrels_buf).map_err(malformed(qrels_path))?;
    let mut runs = std::thread::scope(|s| {
        let handles: Vec<_> = run_bufs
            .iter()
            .zip(run_paths)
            .map(|(buf, path)| {
                let qrels = &qrels;
                s.spawn(move || parse_run(buf, qrels).map_err(malformed(path)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    evaluate(&qrels, &mut runs, metrics, settings).map_err(|dup| {
        let path = run_paths[dup.run].clone();
        let lines = duplicate_lines(&run_bufs[dup.run], &dup.qid, &dup.docid);
        EvalError::DuplicateDocument {
            path,
            line: lines.get(1).copied().unwrap_or(0),
            first_line: lines.first().copied(),
            qid: String::from_utf8_lossy(&dup.qid).into_owned(),
            docid: String::from_utf8_lossy(&dup.docid).into_owned(),
        }
    })
}
