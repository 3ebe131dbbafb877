//! Finding, reading and compiling the served model: `MODEL_PATH` may be the file
//! or the directory the storage initializer wrote one file into.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::engine::Scorer;
use crate::model::{self, Ensemble, Format, Precision};

use super::parse::Schema;

/// Why the model could not be loaded; the server exits non-zero with this message.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The path cannot be read.
    #[error("MODEL_PATH {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A directory that does not hold exactly one model file.
    #[error(
        "MODEL_PATH {path} is a directory with {count} files ({names}); it must hold exactly one model file, or point MODEL_PATH at the file"
    )]
    Ambiguous {
        /// The directory.
        path: PathBuf,
        /// How many candidate files.
        count: usize,
        /// Their names.
        names: String,
    },
    /// The bytes are not a servable model.
    #[error("MODEL_PATH {path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// The loader's reason.
        #[source]
        source: model::LoadError,
    },
}

/// A model ready to score, with what the request parsers need.
#[derive(Debug)]
pub struct Loaded {
    /// The compiled model.
    pub scorer: Scorer,
    /// Columns, names and limits for the parsers.
    pub schema: Schema,
    /// Rows are held as f64 for models that compare in f64 (so a decimal in the
    /// request is compared exactly as LightGBM compares it), f32 otherwise.
    pub f64_rows: bool,
    /// `lightgbm`, `xgboost` or `onnx`.
    pub format: &'static str,
    /// Trees scored.
    pub trees: usize,
    /// The file read.
    pub path: PathBuf,
    /// Milliseconds to read, parse and compile.
    pub load_ms: f64,
}

impl Loaded {
    /// Compiles an ensemble for serving.
    pub fn new(ensemble: &Ensemble, max_documents: usize, path: PathBuf, load_ms: f64) -> Loaded {
        Loaded {
            scorer: Scorer::new(ensemble),
            schema: Schema::new(
                ensemble.num_features,
                ensemble.feature_names.clone(),
                max_documents,
            ),
            f64_rows: ensemble.precision == Precision::F64,
            format: ensemble.info.format.family(),
            trees: ensemble.trees.len(),
            path,
            load_ms,
        }
    }
}

/// Reads and loads the model at `path` (a file, or a directory with one file).
pub fn load_from_path(
    path: &Path,
    format: Format,
    max_documents: usize,
) -> Result<Loaded, LoadFailure> {
    let started = Instant::now();
    let file = resolve(path)?;
    let bytes = std::fs::read(&file).map_err(|source| LoadFailure::Io {
        path: file.clone(),
        source,
    })?;
    let ensemble = model::load(&bytes, format).map_err(|source| LoadFailure::Model {
        path: file.clone(),
        source,
    })?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(Loaded::new(&ensemble, max_documents, file, ms))
}

/// The model file: `path` itself, or the one regular file in the directory `path`.
/// Hidden entries are skipped (Kubernetes volumes hold `..data`-style links).
pub fn resolve(path: &Path) -> Result<PathBuf, LoadFailure> {
    let io = |source| LoadFailure::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(path.to_owned());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // metadata() follows symlinks, so a link to a file counts as a file.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(name);
        }
    }
    files.sort();
    match files.as_slice() {
        [one] => Ok(path.join(one)),
        _ => Err(LoadFailure::Ambiguous {
            path: path.to_owned(),
            count: files.len(),
            names: if files.is_empty() {
                "none".into()
            } else {
                files.join(", ")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_with_one_file_resolves_to_it_and_others_are_refused() {
        let dir = std::env::temp_dir().join(format!("mlctl-ranker-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join(".hidden"), "x").unwrap();
        let err = resolve(&dir).unwrap_err().to_string();
        assert!(err.contains("0 files (none)"), "{err}");
        std::fs::write(dir.join("model.txt"), "x").unwrap();
        assert_eq!(resolve(&dir).unwrap(), dir.join("model.txt"));
        assert_eq!(
            resolve(&dir.join("model.txt")).unwrap(),
            dir.join("model.txt")
        );
        std::fs::write(dir.join("other.json"), "x").unwrap();
        let err = resolve(&dir).unwrap_err().to_string();
        assert!(err.contains("2 files (model.txt, other.json)"), "{err}");
        assert!(resolve(&dir.join("absent")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
