//! Reading qrels and runs from disk (plain or gzip, detected by magic bytes) and the
//! whole load → parse → evaluate pipeline, shared by the CLI and the benchmark.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::EvalError;
use crate::evaluate::{DuplicateIn, Evaluation, Settings, evaluate};
use crate::metric::MetricSpec;
use crate::parse::{ParseError, duplicate_lines, parse_qrels, parse_run};
use crate::threads;

/// The default of `--max-decompressed-size`: far above real qrels and runs (a
/// run of 10,000 queries × 1,000 documents is ~500 MB), far below what a few
/// megabytes of gzip can expand to (over 1,000:1).
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 4 << 30;

/// Reads a whole file, transparently decompressing gzip up to `max_decompressed`
/// bytes: a gzip bomb fails with [`EvalError::TooLarge`] once past the limit,
/// before it fills the memory.
pub fn read_input(path: &Path, max_decompressed: u64) -> Result<Vec<u8>, EvalError> {
    let read_err = |source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let raw = read_file(path).map_err(read_err)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let capacity = (raw.len() as u64).saturating_mul(4).min(max_decompressed);
        let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .take(max_decompressed.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(read_err)?;
        if out.len() as u64 > max_decompressed {
            return Err(EvalError::TooLarge {
                path: path.to_path_buf(),
                limit: max_decompressed,
            });
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// SHA-256 of a file's bytes as on disk (what `sha256sum` prints), read in
/// blocks: the gate report names its inputs by it.
pub fn file_sha256(path: &Path) -> Result<String, EvalError> {
    use sha2::{Digest, Sha256};
    let read_err = |source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut hash = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hash.update(&block[..n]);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Files at least this large are read by several threads at once.
const PARALLEL_READ: u64 = 32 << 20;

/// Reads a file; a large regular file is read in parts by parallel threads, because
/// copying hundreds of megabytes out of the page cache (and faulting in the memory it
/// goes to) is a large share of an evaluation, and one core would do it alone.
fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    read_in_parts(path, PARALLEL_READ)
}

fn read_in_parts(path: &Path, min_parallel: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() < min_parallel {
        return std::fs::read(path);
    }
    let len = usize::try_from(meta.len()).map_err(std::io::Error::other)?;
    // Zeroed allocation of this size maps fresh pages: nothing is written twice.
    let mut buf = vec![0u8; len];
    let part = len
        .div_ceil(threads::cores())
        .max(PARALLEL_READ as usize / 2);
    let parts: Vec<(usize, &mut [u8])> = buf
        .chunks_mut(part)
        .enumerate()
        .map(|(i, p)| (i * part, p))
        .collect();
    let file = &file;
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|(offset, part)| s.spawn(move || file.read_exact_at(part, offset as u64)))
            .collect();
        handles.into_iter().try_for_each(threads::join)
    })?;
    Ok(buf)
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
    max_decompressed: u64,
) -> Result<Vec<Evaluation>, EvalError> {
    let paths: Vec<&Path> = std::iter::once(qrels_path)
        .chain(run_paths.iter().map(PathBuf::as_path))
        .collect();
    let mut run_bufs = threads::map_parallel(&paths, |p| read_input(p, max_decompressed))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_in_parallel_parts_gives_the_file() {
        let path = std::env::temp_dir().join(format!("mlctl-eval-read-{}", std::process::id()));
        let data: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let read = read_in_parts(&path, 1000).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read, data);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        // 64 MiB of zeros compress to ~64 KB: a 1000:1 bomb, made here.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 17, "{}", bomb.len());
        let path = std::env::temp_dir().join(format!("mlctl-eval-bomb-{}.gz", std::process::id()));
        std::fs::write(&path, &bomb).unwrap();
        let limited = read_input(&path, 1 << 20);
        let whole = read_input(&path, 64 << 20);
        std::fs::remove_file(&path).unwrap();
        let err = limited.unwrap_err();
        assert!(
            matches!(err, EvalError::TooLarge { limit, .. } if limit == 1 << 20),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("more than 1048576 bytes"), "{text}");
        assert!(text.contains("--max-decompressed-size"), "{text}");
        // Exactly at the limit is fine.
        assert_eq!(whole.unwrap().len(), 64 << 20);
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err =
            read_input(Path::new("/nonexistent/run.txt"), DEFAULT_MAX_DECOMPRESSED).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/run.txt: "),
            "{err}"
        );
    }
}
