//! `mlctl-ranker predict`: offline scoring of a feature matrix read from a `.npy`
//! file (float32/float64, C order) or a header-less CSV, one score per line on
//! stdout. The readers are here; loading and scoring are the library's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::engine::Scorer;
use crate::model::{Format, LoadError, load};

/// Options of `mlctl-ranker predict`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model artifact (LightGBM text, XGBoost JSON/UBJSON, ONNX).
    #[arg(long)]
    pub model: PathBuf,
    /// The artifact's format; `auto` detects it from the content.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Rows to score: `.npy` (float32 or float64, shape [N, F], C order) or CSV
    /// without a header (an empty cell or `nan` is a missing value).
    #[arg(long)]
    pub input: PathBuf,
    /// Threads to score with (large inputs are split into contiguous ranges).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Print `scored N rows in S s` on stderr (scoring only, after loading).
    #[arg(long)]
    pub timing: bool,
}

/// Why `predict` failed; each message names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The model or input file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The model does not load.
    #[error("{path}: {source}")]
    Load {
        /// The model file.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: LoadError,
    },
    /// The input is not a usable matrix.
    #[error("{path}: {source}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: InputError,
    },
    /// The input's rows do not have the model's number of columns.
    #[error(
        "{path}: rows have {got} columns but the model expects {want}; pass the model's features in its column order"
    )]
    Columns {
        /// The input file.
        path: PathBuf,
        /// Columns in the input.
        got: usize,
        /// Features the model takes.
        want: usize,
    },
    /// Writing the scores failed (e.g. the reader of stdout went away).
    #[error("cannot write the scores: {0}")]
    Write(#[source] std::io::Error),
}

/// A malformed `.npy` or CSV input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    /// The `.npy` header is not one this reader understands.
    #[error("not a usable .npy file: {0}")]
    Npy(String),
    /// A CSV cell is not a number.
    #[error(
        "line {line}, column {column}: {cell:?} is not a number (write missing values as an empty cell or nan)"
    )]
    CsvCell {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The cell's text.
        cell: String,
    },
    /// A CSV line has a different number of cells than the first.
    #[error(
        "line {line} has {got} columns but line 1 has {want}; every row needs the same columns"
    )]
    CsvRagged {
        /// 1-based line.
        line: usize,
        /// Cells on this line.
        got: usize,
        /// Cells on the first line.
        want: usize,
    },
}

/// A matrix of rows as read: f32 stays f32 (scored with f32 inputs), else f64.
#[derive(Debug, PartialEq)]
pub enum Matrix {
    /// float32 values, row-major.
    F32 {
        /// Values.
        values: Vec<f32>,
        /// Columns per row.
        columns: usize,
    },
    /// float64 values, row-major.
    F64 {
        /// Values.
        values: Vec<f64>,
        /// Columns per row.
        columns: usize,
    },
}

impl Matrix {
    /// Columns per row.
    pub fn columns(&self) -> usize {
        match self {
            Matrix::F32 { columns, .. } | Matrix::F64 { columns, .. } => *columns,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            Matrix::F32 { values, columns } => values.len().checked_div(*columns).unwrap_or(0),
            Matrix::F64 { values, columns } => values.len().checked_div(*columns).unwrap_or(0),
        }
    }
}

/// Scores a file of rows and prints one score per line.
pub fn run(args: Args) -> ExitCode {
    match predict(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlctl-ranker predict: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PredictError> {
    std::fs::read(path).map_err(|source| PredictError::Read {
        path: path.to_owned(),
        source,
    })
}

fn predict(args: &Args) -> Result<(), PredictError> {
    let ensemble = load(&read(&args.model)?, args.format).map_err(|source| PredictError::Load {
        path: args.model.clone(),
        source,
    })?;
    let scorer = Scorer::new(&ensemble);
    let matrix = parse_matrix(&read(&args.input)?).map_err(|source| PredictError::Input {
        path: args.input.clone(),
        source,
    })?;
    let rows = matrix.rows();
    if matrix.columns() != scorer.num_features() && rows > 0 {
        return Err(PredictError::Columns {
            path: args.input.clone(),
            got: matrix.columns(),
            want: scorer.num_features(),
        });
    }
    let threads = usize::from(args.threads);
    let mut scores = vec![0.0; rows];
    let started = Instant::now();
    match &matrix {
        Matrix::F32 { values, .. } => scorer.score_f32_parallel(values, &mut scores, threads),
        Matrix::F64 { values, .. } => scorer.score_f64_parallel(values, &mut scores, threads),
    }
    let elapsed = started.elapsed();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    for s in &scores {
        writeln!(out, "{s}").map_err(PredictError::Write)?;
    }
    out.flush().map_err(PredictError::Write)?;
    if args.timing {
        eprintln!("scored {rows} rows in {} s", elapsed.as_secs_f64());
    }
    Ok(())
}

/// `.npy` when the bytes start with its magic, CSV otherwise.
pub fn parse_matrix(bytes: &[u8]) -> Result<Matrix, InputError> {
    if bytes.starts_with(NPY_MAGIC) {
        parse_npy(bytes)
    } else {
        parse_csv(bytes)
    }
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a version 1–3 `.npy` file holding a 2-D float32/float64 C-order array.
pub fn parse_npy(bytes: &[u8]) -> Result<Matrix, InputError> {
    let bad = |m: String| InputError::Npy(m);
    if !bytes.starts_with(NPY_MAGIC) || bytes.len() < 10 {
        return Err(bad("the file does not start with the .npy magic".into()));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => {
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        v => return Err(bad(format!("format version {v} is not 1, 2 or 3"))),
    };
    let data_start = header_start + header_len;
    let header = bytes
        .get(header_start..data_start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("the header is truncated or not text".into()))?;
    let descr = header_value(header, "descr")
        .and_then(|v| v.strip_prefix('\'').or_else(|| v.strip_prefix('"')))
        .and_then(|v| v.get(..3))
        .ok_or_else(|| bad("the header has no 'descr'".into()))?;
    let fortran = header_value(header, "fortran_order")
        .ok_or_else(|| bad("the header has no 'fortran_order'".into()))?;
    if fortran.starts_with("True") {
        return Err(bad(
            "the array is in Fortran order; save it in C order (numpy.ascontiguousarray)".into(),
        ));
    }
    let shape = header_value(header, "shape")
        .and_then(parse_shape)
        .ok_or_else(|| bad("the header has no readable 'shape'".into()))?;
    let [rows, columns] = shape[..] else {
        return Err(bad(format!(
            "the array has {} dimensions, shape {shape:?}; expected 2, shape [rows, features]",
            shape.len()
        )));
    };
    let data = &bytes[data_start.min(bytes.len())..];
    let count = rows.saturating_mul(columns);
    let size = match &descr[1..] {
        "f4" => 4,
        "f8" => 8,
        other => {
            return Err(bad(format!(
                "dtype {descr:?} ({other}) is not float32 or float64; convert with .astype(numpy.float32)"
            )));
        }
    };
    if data.len() != count.saturating_mul(size) {
        return Err(bad(format!(
            "shape [{rows}, {columns}] needs {} data bytes but the file has {}",
            count.saturating_mul(size),
            data.len()
        )));
    }
    let big = match descr.as_bytes()[0] {
        b'<' | b'|' | b'=' => false,
        b'>' => true,
        _ => return Err(bad(format!("dtype {descr:?} has no byte order"))),
    };
    Ok(if size == 4 {
        let values = data
            .chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect();
        Matrix::F32 { values, columns }
    } else {
        let values = data
            .chunks_exact(8)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                if big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                }
            })
            .collect();
        Matrix::F64 { values, columns }
    })
}

/// The text after `'key':` in a `.npy` header dict, trimmed at the start.
fn header_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// `(3, 4)`, `(3,)` or `()` → the dimensions.
fn parse_shape(v: &str) -> Option<Vec<usize>> {
    let inner = v.strip_prefix('(')?.split(')').next()?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse().ok())
        .collect()
}

/// Reads header-less CSV: one row per line, `,`-separated numbers; an empty cell
/// or `nan` (any case) is missing. Blank lines are skipped.
pub fn parse_csv(bytes: &[u8]) -> Result<Matrix, InputError> {
    let text = String::from_utf8_lossy(bytes);
    let mut values = Vec::new();
    let mut columns = None;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut got = 0;
        for (c, cell) in line.split(',').enumerate() {
            let cell = cell.trim();
            let v = if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
                f64::NAN
            } else {
                cell.parse::<f64>().map_err(|_| InputError::CsvCell {
                    line: line_no,
                    column: c + 1,
                    cell: cell.to_owned(),
                })?
            };
            values.push(v);
            got += 1;
        }
        match columns {
            None => columns = Some(got),
            Some(want) if want != got => {
                return Err(InputError::CsvRagged {
                    line: line_no,
                    got,
                    want,
                });
            }
            Some(_) => {}
        }
    }
    Ok(Matrix::F64 {
        values,
        columns: columns.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.npy` file as numpy writes it (version 1, header padded to 64 bytes).
    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let fortran = if fortran { "True" } else { "False" };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn npy_float32_and_float64_matrices() {
        let m = parse_matrix(&npy(
            "<f4",
            false,
            "(2, 3)",
            &f32_bytes(&[1.0, 2.0, f32::NAN, 4.0, 5.0, 6.5]),
        ))
        .unwrap();
        let Matrix::F32 { values, columns } = &m else {
            panic!("{m:?}")
        };
        assert_eq!((*columns, m.rows()), (3, 2));
        assert_eq!(values[5], 6.5);
        assert!(values[2].is_nan());
        let data: Vec<u8> = [0.25f64, -1.0]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        assert_eq!(
            parse_matrix(&npy(">f8", false, "(1, 2)", &data)).unwrap(),
            Matrix::F64 {
                values: vec![0.25, -1.0],
                columns: 2
            }
        );
    }

    #[test]
    fn npy_errors_name_the_problem_and_both_numbers() {
        let err = |b: Vec<u8>| parse_npy(&b).unwrap_err().to_string();
        let e = err(npy("<i8", false, "(1, 1)", &[0; 8]));
        assert!(e.contains("<i8") && e.contains("float32"), "{e}");
        let e = err(npy("<f4", true, "(1, 1)", &[0; 4]));
        assert!(e.contains("Fortran order"), "{e}");
        let e = err(npy("<f4", false, "(4,)", &[0; 16]));
        assert!(
            e.contains("1 dimensions") && e.contains("expected 2"),
            "{e}"
        );
        let e = err(npy("<f4", false, "(2, 3)", &[0; 20]));
        assert!(
            e.contains("needs 24 data bytes") && e.contains("has 20"),
            "{e}"
        );
        let e = err(b"\x93NUMPY\x09\x00\x00\x00".to_vec());
        assert!(e.contains("version 9"), "{e}");
    }

    #[test]
    fn csv_missing_values_and_errors() {
        let m = parse_csv(b"1,2.5,\n-3e2, NaN ,4\r\n\n").unwrap();
        let Matrix::F64 { values, columns: 3 } = m else {
            panic!("{m:?}")
        };
        assert_eq!(values[..2], [1.0, 2.5]);
        assert!(values[2].is_nan() && values[4].is_nan());
        assert_eq!(values[3], -300.0);
        assert_eq!(
            parse_csv(b"1,2\n3,x\n"),
            Err(InputError::CsvCell {
                line: 2,
                column: 2,
                cell: "x".into()
            })
        );
        let e = parse_csv(b"1,2\n3\n").unwrap_err();
        assert_eq!(
            e,
            InputError::CsvRagged {
                line: 2,
                got: 1,
                want: 2
            }
        );
        assert!(e.to_string().contains("1 columns but line 1 has 2"));
        assert_eq!(parse_csv(b"").unwrap().rows(), 0);
    }
}
