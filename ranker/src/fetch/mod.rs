//! `mlctl-ranker fetch`: the storage initializer of docs/runtime-contract.md.
//! Downloads `MODEL_URI` into `MODEL_DIR`, streaming to a hidden temporary file
//! that is renamed into place only once complete and (with `MODEL_SHA256`)
//! verified; retries transient failures with backoff; exits 0 only on success.

mod error;
mod retry;
mod sink;
mod source;
mod uri;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub use error::{FetchError, exit_code};
pub use retry::{Backoff, parse_duration};
pub use sink::{TEMP_PREFIX, hex};
pub use source::install_crypto_provider;
pub use uri::{ModelUri, ObjectScheme, UriError};

use sink::{PartFile, StagingDir, remove_stale, temp_file_name};
use source::{AttemptError, Refusal, Resume, Transport};

/// Options of `mlctl-ranker fetch`. Flags override the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The artifact: s3://bucket/key, gs://bucket/key or http(s)://host/path. A URI
    /// ending in '/' (s3/gs only) downloads every object under that prefix.
    #[arg(long, env = "MODEL_URI")]
    pub uri: Option<String>,
    /// The directory to write into (created if missing); the file keeps the URI's
    /// last path segment as its name.
    #[arg(long, env = "MODEL_DIR", default_value = "/mnt/models")]
    pub dir: PathBuf,
    /// Expected sha256 (64 hex characters) of the artifact; when set, a mismatch
    /// fails the fetch and leaves nothing behind. Single files only.
    #[arg(long, env = "MODEL_SHA256")]
    pub sha256: Option<String>,
    /// Attempts per object before giving up on transient errors (connection
    /// errors, 5xx, 429, truncated bodies, idle timeouts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Overall deadline for the whole fetch, retries included (e.g. 30m, 90s).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Longest wait for response headers or for the next chunk of a body.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Longest wait for a TCP/TLS connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Delay after the first failed attempt; doubles per attempt, with jitter.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub backoff_initial: Duration,
    /// Upper bound of the delay between attempts.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Where the final error goes for Kubernetes to show as the termination
    /// message; written only if the file already exists (the kubelet creates it).
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
}

/// What a successful fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
}

/// Runs `mlctl-ranker fetch` and turns the result into an exit code.
pub fn run(args: Args) -> ExitCode {
    let termination_log = args.termination_log.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(fetch(args)),
        Err(e) => Err(FetchError::Io {
            path: PathBuf::from("<tokio runtime>"),
            source: e,
        }),
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            let message = e.to_string();
            log(&message);
            write_termination_log(&termination_log, &message);
            ExitCode::from(e.exit_code())
        }
    }
}

/// One line to stderr: `kubectl logs -c storage-initializer` shows it.
fn log(line: &str) {
    eprintln!("mlctl-ranker fetch: {line}");
}

/// Kubernetes shows this file's content as the container's termination message
/// (how `mlctl describe` can say why a pod never started). Only an existing file
/// is written: outside a pod there is no such file, and creating one in /dev would
/// be wrong.
fn write_termination_log(path: &Path, message: &str) {
    let written = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(message.as_bytes()));
    if let Err(e) = written
        && e.kind() != io::ErrorKind::NotFound
    {
        log(&format!(
            "cannot write the termination message to {}: {e}",
            path.display()
        ));
    }
}

/// Downloads and verifies; the whole contract except the exit code.
pub async fn fetch(args: Args) -> Result<Summary, FetchError> {
    install_crypto_provider();
    let raw_uri = args
        .uri
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or(FetchError::NoUri)?;
    let uri = ModelUri::parse(raw_uri)?;
    let expected = match args.sha256.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) if v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()) => {
            Some(v.to_ascii_lowercase())
        }
        Some(v) => return Err(FetchError::BadSha256 { value: v.into() }),
    };
    if uri.is_prefix() && expected.is_some() {
        return Err(FetchError::Sha256ForPrefix {
            uri: uri.to_string(),
        });
    }
    fs::create_dir_all(&args.dir).map_err(|e| FetchError::io(&args.dir, e))?;
    for stale in remove_stale(&args.dir).map_err(|e| FetchError::io(&args.dir, e))? {
        log(&format!(
            "removed {} left by an earlier run",
            stale.display()
        ));
    }
    let transport =
        Transport::for_uri(&uri, args.connect_timeout).map_err(|reason| FetchError::Client {
            uri: uri.to_string(),
            reason,
        })?;
    let policy = Policy {
        max_attempts: args.max_attempts,
        backoff: Backoff {
            initial: args.backoff_initial,
            max: args.backoff_max,
        },
        idle: args.idle_timeout,
    };
    let job = Job {
        uri: &uri,
        transport: &transport,
        policy: &policy,
        dir: &args.dir,
    };
    let work = async {
        match expected.as_deref() {
            _ if uri.is_prefix() => job.fetch_prefix().await,
            expected => job.fetch_file(expected).await,
        }
    };
    // Dropping `work` (timeout, signal) drops its temporary files, which removes
    // them: nothing partial survives either way.
    tokio::select! {
        result = tokio::time::timeout(args.timeout, work) => {
            result.unwrap_or_else(|_| Err(FetchError::Timeout {
                uri: uri.to_string(),
                after: retry::human(args.timeout),
            }))
        }
        signal = shutdown_signal() => Err(FetchError::Interrupted { uri: uri.to_string(), signal }),
    }
}

/// Resolves on SIGTERM (the kubelet stopping the pod) or SIGINT.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default disposition applies; wait forever.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Retry settings for one object.
#[derive(Debug, Clone, Copy)]
struct Policy {
    max_attempts: u32,
    backoff: Backoff,
    idle: Duration,
}

/// Why one attempt failed: remotely (maybe retryable) or on our own disk (never).
enum Failure {
    Remote(AttemptError),
    Local(FetchError),
}

impl From<AttemptError> for Failure {
    fn from(e: AttemptError) -> Failure {
        Failure::Remote(e)
    }
}

struct Job<'a> {
    uri: &'a ModelUri,
    transport: &'a Transport,
    policy: &'a Policy,
    dir: &'a Path,
}

impl Job<'_> {
    async fn fetch_file(&self, expected: Option<&str>) -> Result<Summary, FetchError> {
        let (name, key) = match self.uri {
            ModelUri::Object { key, .. } => (self.uri.file_name(), key.as_str()),
            ModelUri::Http { .. } => (self.uri.file_name(), ""),
        };
        let name = name.ok_or_else(|| FetchError::EmptyPrefix {
            uri: self.uri.to_string(),
        })?;
        let final_path = self.dir.join(&name);
        let shown = self.uri.to_string();
        if let Some(expected) = expected
            && sha256_of_existing(&final_path).await.as_deref() == Some(expected)
        {
            // An init container restarted in the same pod finds its emptyDir full.
            log(&format!(
                "{} is already present with sha256 {expected}; not downloading again",
                final_path.display()
            ));
            return Ok(Summary { files: 1, bytes: 0 });
        }
        let temp = self.dir.join(temp_file_name(&name, std::process::id()));
        let mut part = PartFile::create(temp.clone()).map_err(|e| FetchError::io(&temp, e))?;
        let started = Instant::now();
        self.download(key, &shown, &mut part).await?;
        let actual = part.sha256_hex();
        if let Some(expected) = expected
            && actual != expected
        {
            return Err(FetchError::Mismatch {
                uri: shown,
                expected: expected.into(),
                actual,
            });
        }
        let bytes = part.bytes();
        part.persist(&final_path)
            .map_err(|e| FetchError::io(&final_path, e))?;
        let verified = if expected.is_some() {
            "verified against MODEL_SHA256"
        } else {
            "not verified: MODEL_SHA256 is not set"
        };
        log(&format!(
            "fetched {shown} -> {}: {bytes} bytes in {}, sha256 {actual} ({verified})",
            final_path.display(),
            retry::human(started.elapsed())
        ));
        Ok(Summary { files: 1, bytes })
    }

    async fn fetch_prefix(&self) -> Result<Summary, FetchError> {
        let ModelUri::Object {
            scheme,
            bucket,
            key: prefix,
        } = self.uri
        else {
            return Err(FetchError::Uri(UriError::HttpPrefix {
                uri: self.uri.to_string(),
            }));
        };
        let shown = self.uri.to_string();
        let started = Instant::now();
        let listed = self
            .with_retries(&format!("LIST {shown}"), &shown, async || {
                Ok(self.transport.list(prefix).await?)
            })
            .await?;
        if listed.is_empty() {
            return Err(FetchError::EmptyPrefix { uri: shown });
        }
        log(&format!("{} objects under {shown}", listed.len()));
        let staging = StagingDir::create(self.dir, std::process::id())
            .map_err(|e| FetchError::io(self.dir, e))?;
        let mut total = 0;
        for object in &listed {
            let target = staging.path().join(&object.relative);
            let parent = target.parent().unwrap_or(staging.path()).to_path_buf();
            fs::create_dir_all(&parent).map_err(|e| FetchError::io(&parent, e))?;
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let temp = parent.join(temp_file_name(&name, std::process::id()));
            let mut part = PartFile::create(temp.clone()).map_err(|e| FetchError::io(&temp, e))?;
            let object_uri = format!("{scheme}://{bucket}/{}", object.key);
            let object_started = Instant::now();
            self.download(&object.key, &object_uri, &mut part).await?;
            let (bytes, sha) = (part.bytes(), part.sha256_hex());
            part.persist(&target)
                .map_err(|e| FetchError::io(&target, e))?;
            total += bytes;
            log(&format!(
                "fetched {object_uri} -> {}: {bytes} bytes in {}, sha256 {sha}",
                self.dir.join(&object.relative).display(),
                retry::human(object_started.elapsed())
            ));
        }
        staging
            .commit_into(self.dir)
            .map_err(|e| FetchError::io(self.dir, e))?;
        log(&format!(
            "fetched {} objects under {shown} -> {}: {total} bytes in {}",
            listed.len(),
            self.dir.display(),
            retry::human(started.elapsed())
        ));
        Ok(Summary {
            files: listed.len(),
            bytes: total,
        })
    }

    /// Downloads `key` into `part`, from the beginning on every attempt.
    async fn download(
        &self,
        key: &str,
        shown: &str,
        part: &mut PartFile,
    ) -> Result<(), FetchError> {
        let idle = self.policy.idle;
        let path = part.path().to_path_buf();
        let local = |e| Failure::Local(FetchError::io(&path, e));
        // The version of the object the bytes in `part` came from; a retry with
        // it continues where the last attempt stopped instead of starting over.
        let mut validator: Option<String> = None;
        self.with_retries(&format!("GET {shown}"), shown, async || {
            let resume = match validator.take() {
                Some(validator) if part.bytes() > 0 => Some(Resume {
                    offset: part.bytes(),
                    validator,
                }),
                _ => None,
            };
            match &resume {
                Some(r) => log(&format!("resuming {shown} at byte {}", r.offset)),
                None => part.reset().map_err(local)?,
            }
            let opened =
                tokio::time::timeout(idle, self.transport.open(self.uri, key, resume.as_ref()))
                    .await;
            let mut body = match opened {
                Ok(Ok(body)) => body,
                Ok(Err(AttemptError::Stale(why))) => {
                    // Next attempt starts over (no validator kept).
                    return Err(AttemptError::Transient(format!(
                        "cannot resume ({why}); starting over"
                    ))
                    .into());
                }
                Ok(Err(e)) => {
                    validator = resume.map(|r| r.validator);
                    return Err(e.into());
                }
                Err(_) => {
                    validator = resume.map(|r| r.validator);
                    return Err(AttemptError::Transient(format!(
                        "no response for {} (--idle-timeout)",
                        retry::human(idle)
                    ))
                    .into());
                }
            };
            if body.start != part.bytes() {
                // The server sent the whole object although we asked for the rest
                // (no range support, or If-Range saw a new version).
                part.reset().map_err(local)?;
            }
            validator = body.validator.take();
            let begin = part.bytes();
            while let Some(chunk) = body.next_chunk(idle).await? {
                part.write(&chunk).map_err(local)?;
            }
            let received = part.bytes() - begin;
            match body.expected_len {
                Some(len) if len != received => Err(AttemptError::Transient(format!(
                    "truncated body: got {received} of {len} bytes"
                ))
                .into()),
                _ => Ok(()),
            }
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for good, or runs out of attempts;
    /// logs one line per attempt.
    async fn with_retries<T>(
        &self,
        what: &str,
        shown: &str,
        mut attempt: impl AsyncFnMut() -> Result<T, Failure>,
    ) -> Result<T, FetchError> {
        let max = self.policy.max_attempts;
        let mut number = 1;
        loop {
            log(&format!("attempt {number}/{max}: {what}"));
            let started = Instant::now();
            let why = match attempt().await {
                Ok(value) => return Ok(value),
                Err(Failure::Local(e)) => return Err(e),
                Err(Failure::Remote(AttemptError::Transient(why) | AttemptError::Stale(why))) => {
                    why
                }
                Err(Failure::Remote(AttemptError::NotFound(r))) => {
                    return Err(refused(shown, r, |uri, status, detail| {
                        FetchError::NotFound {
                            uri,
                            status,
                            detail,
                        }
                    }));
                }
                Err(Failure::Remote(AttemptError::Forbidden(r))) => {
                    return Err(refused(shown, r, |uri, status, detail| {
                        FetchError::Forbidden {
                            uri,
                            status,
                            detail,
                        }
                    }));
                }
                Err(Failure::Remote(AttemptError::Rejected(r))) => {
                    return Err(refused(shown, r, |uri, status, detail| {
                        FetchError::Rejected {
                            uri,
                            status,
                            detail,
                        }
                    }));
                }
            };
            if number >= max {
                return Err(FetchError::GaveUp {
                    uri: shown.into(),
                    attempts: number,
                    last: why,
                });
            }
            let delay = self.policy.backoff.delay(number, rand::random::<f64>());
            log(&format!(
                "attempt {number}/{max} failed after {}: {why}; retrying in {}",
                retry::human(started.elapsed()),
                retry::human(delay)
            ));
            tokio::time::sleep(delay).await;
            number += 1;
        }
    }
}

fn refused(
    shown: &str,
    refusal: Refusal,
    make: impl FnOnce(String, String, String) -> FetchError,
) -> FetchError {
    make(shown.into(), refusal.status, refusal.detail)
}

/// The sha256 of a file already at `path`, if there is one (hashed off the async
/// thread so that the timeout and signals still fire during a large file).
async fn sha256_of_existing(path: &Path) -> Option<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || file_sha256(&path))
        .await
        .ok()?
        .ok()
}

/// The sha256 of a file on disk, streamed.
fn file_sha256(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}
