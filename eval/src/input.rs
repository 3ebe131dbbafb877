//! Reading qrels and runs from disk (plain or gzip, detected by magic bytes) and the
//! whole load → parse → evaluate pipeline, shared by the CLI and the benchmark.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::EvalError;
use crate::evaluate::{DuplicateIn, Evaluation, Settings, evaluate};
use crate::metric::MetricSpec;
use crate::parse::{ParseError, duplicate_lines, parse_qrels, parse_run};
use crate::threads;

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

/// Reads and parses the qrels and every run concurrently, then evaluates every run on
/// the same query set (see [`evaluate`]).
pub fn load_and_evaluate(
    qrels_path: &Path,
    run_paths: &[PathBuf],
    metrics: &[MetricSpec],
    settings: &Settings,
) -> Result<Vec<Evaluation>, EvalError> {
    let paths: Vec<&Path> = std::iter::once(qrels_path)
        .chain(run_paths.iter().map(PathBuf::as_path))
        .collect();
    let mut run_bufs = threads::map_parallel(&paths, |p| read_input(p))
        .into_iter()
        .collect::<Result<Vec<Vec<u8>>, _>>()?;
    let qrels_buf = run_bufs.remove(0);
    let (qrels, runs) = std::thread::scope(|s| {
        let runs: Vec<_> = run_bufs
            .iter()
            .zip(run_paths)
            .map(|(buf, path)| s.spawn(move || parse_run(buf).map_err(malformed(path))))
            .collect();
        let qrels = parse_qrels(&qrels_buf).map_err(malformed(qrels_path));
        let runs: Result<Vec<_>, EvalError> = runs.into_iter().map(threads::join).collect();
        (qrels, runs)
    });
    let (qrels, runs) = (qrels?, runs?);
    evaluate(&qrels, &runs, metrics, settings).map_err(|dup| {
        let (path, lines, what) = match dup.file {
            DuplicateIn::Qrels => (
                qrels_path,
                duplicate_lines::<4>(&qrels_buf, &dup.qid, &dup.docid),
                "judged",
            ),
            DuplicateIn::Run(r) => (
                &*run_paths[r],
                duplicate_lines::<6>(&run_bufs[r], &dup.qid, &dup.docid),
                "retrieved",
            ),
        };
        EvalError::DuplicateDocument {
            path: path.to_path_buf(),
            line: lines.get(1).copied().unwrap_or(0),
            first_line: lines.first().copied(),
            what,
            qid: String::from_utf8_lossy(&dup.qid).into_owned(),
            docid: String::from_utf8_lossy(&dup.docid).into_owned(),
        }
    })
}
