//! Helpers for the fetch tests: run the built binary with a clean environment, a
//! scripted HTTP server on 127.0.0.1 (misbehaving on demand), and a moto S3 server
//! whose process is always killed.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub fn sha256_hex(bytes: &[u8]) -> String {
    mlctl_ranker::fetch::hex(&Sha256::digest(bytes))
}

/// A deterministic artifact of `len` bytes.
pub fn artifact(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// `mlctl-ranker fetch` with only the given environment (nothing inherited, so
/// the developer's AWS_* or MODEL_* cannot leak in).
pub struct Fetch {
    command: Command,
}

impl Fetch {
    pub fn new() -> Fetch {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mlctl-ranker"));
        command.arg("fetch").env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        // Small backoff so retries do not slow the suite; the schedule itself is
        // unit-tested.
        command.args(["--backoff-initial", "20ms", "--backoff-max", "100ms"]);
        Fetch { command }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Fetch {
        self.command.env(key, value);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Fetch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn arg_dir(mut self, dir: &Path) -> Fetch {
        self.command.arg("--dir").arg(dir);
        self
    }

    /// Starts the process without waiting (stderr captured).
    pub fn spawn(mut self) -> std::process::Child {
        self.command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn mlctl-ranker")
    }

    pub fn run(mut self) -> Outcome {
        let Output { status, stderr, .. } = self.command.output().expect("run mlctl-ranker");
        let outcome = Outcome {
            code: status.code(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        eprintln!(
            "--- mlctl-ranker fetch exited {:?}:\n{}",
            outcome.code, outcome.stderr
        );
        outcome
    }
}

pub struct Outcome {
    pub code: Option<i32>,
    pub stderr: String,
}

impl Outcome {
    /// The last line: the result or the error message.
    pub fn last_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or("")
    }
}

/// Every entry under `dir`, recursively, relative and sorted (hidden ones too).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// What the scripted server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this body and its Content-Length.
    Body(Vec<u8>),
    /// This status with an empty body.
    Status(u16),
    /// 200 with this body and ETag "1", or 206 with the rest when asked for a
    /// range from that version.
    Ranged(Vec<u8>),
    /// Announces the full length (and ETag "1"), sends only the first `sent`
    /// bytes, closes.
    CloseMidBody { body: Vec<u8>, sent: usize },
    /// Reads the request and never answers (until the server stops).
    Hang,
    /// Announces the full length, sends the first `sent` bytes, then goes silent.
    StallMidBody { body: Vec<u8>, sent: usize },
}

/// An HTTP/1.1 server on 127.0.0.1 that answers request N with `script[N]` (the
/// last entry repeats). Stopped on drop.
pub struct ScriptServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptServer {
    pub fn start(script: Vec<Reply>) -> ScriptServer {
        assert!(!script.is_empty());
        let std_listener = StdListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let seen = requests.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (mut socket, _) = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => accepted.unwrap(),
                    };
                    let seen = seen.clone();
                    let script = script.clone();
                    tokio::spawn(async move {
                        let Some(request) = read_request(&mut socket).await else {
                            return;
                        };
                        let index = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(request.clone());
                            seen.len() - 1
                        };
                        let reply = script[index.min(script.len() - 1)].clone();
                        answer(&mut socket, reply, &request).await;
                    });
                }
            });
        });
        ScriptServer {
            addr,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Request lines received so far (`GET /m.txt HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        let heads = self.requests.lock().unwrap().clone();
        heads
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_string())
            .collect()
    }

    /// The value of header `name` (lower-case) in each request, if present.
    pub fn header(&self, name: &str) -> Vec<Option<String>> {
        let heads = self.requests.lock().unwrap().clone();
        heads.iter().map(|h| header_value(h, name)).collect()
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

async fn answer(socket: &mut tokio::net::TcpStream, reply: Reply, request: &str) {
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match reply {
        Reply::Body(body) => {
            // Object-store clients (GCS) insist on object metadata headers.
            let head = head("200 OK", body.len()).replacen(
                "\r\n",
                "\r\nLast-Modified: Wed, 02 Dec 2026 00:00:00 GMT\r\nETag: \"1\"\r\n",
                1,
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        }
        Reply::Status(code) => {
            let reason = match code {
                403 => "Forbidden",
                404 => "Not Found",
                429 => "Too Many Requests",
                500 => "Internal Server Error",
                503 => "Service Unavailable",
                _ => "Whatever",
            };
            let _ = socket
                .write_all(head(&format!("{code} {reason}"), 0).as_bytes())
                .await;
        }
        Reply::Ranged(body) => {
            // Honours `Range: bytes=N-` when If-Range names this version ("1").
            let from = header_value(request, "range")
                .filter(|_| {
                    // If-Range (http clients) or If-Match (object stores).
                    let version = header_value(request, "if-range")
                        .or_else(|| header_value(request, "if-match"));
                    version.as_deref() == Some("\"1\"")
                })
                .and_then(|r| {
                    r.strip_prefix("bytes=")?
                        .strip_suffix('-')?
                        .parse::<usize>()
                        .ok()
                });
            let head = match from {
                Some(from) => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\nETag: \"1\"\r\nLast-Modified: Wed, 02 Dec 2026 00:00:00 GMT\r\nConnection: close\r\n\r\n",
                    body.len() - 1,
                    body.len(),
                    body.len() - from
                ),
                None => head("200 OK", body.len()).replacen(
                    "\r\n",
                    "\r\nETag: \"1\"\r\nLast-Modified: Wed, 02 Dec 2026 00:00:00 GMT\r\n",
                    1,
                ),
            };
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body[from.unwrap_or(0)..]).await;
        }
        Reply::CloseMidBody { body, sent } => {
            let head = head("200 OK", body.len()).replacen(
                "\r\n",
                "\r\nETag: \"1\"\r\nLast-Modified: Wed, 02 Dec 2026 00:00:00 GMT\r\n",
                1,
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body[..sent]).await;
            let _ = socket.flush().await;
        }
        Reply::StallMidBody { body, sent } => {
            let _ = socket
                .write_all(head("200 OK", body.len()).as_bytes())
                .await;
            let _ = socket.write_all(&body[..sent]).await;
            let _ = socket.flush().await;
            std::future::pending::<()>().await;
        }
        Reply::Hang => {
            // Held open until the runtime (and with it this task) is dropped.
            std::future::pending::<()>().await;
        }
    }
    let _ = socket.shutdown().await;
}

/// A port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The s3 Python environment from ranker/tools/pyenv, or why it is unavailable.
pub fn s3_venv() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pyenv");
    let output = Command::new(&script)
        .arg("s3")
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} s3 failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let venv = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !venv.join("bin/moto_server").exists() {
        return Err(format!("{} has no bin/moto_server", venv.display()));
    }
    Ok(venv)
}

/// Returns the moto server, or `None` after printing why when it is unavailable
/// outside CI. In CI (`CI=true`) unavailability fails the test: a skip must never
/// pass silently there.
pub fn moto_or_skip(env: &[(&str, &str)]) -> Option<Moto> {
    match s3_venv().and_then(|venv| Moto::start_with_env(&venv, env)) {
        Ok(moto) => Some(moto),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("moto is required in CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: the S3 tests need moto ({why}); run `ranker/tools/pyenv s3`");
            None
        }
    }
}

/// A moto S3 server on 127.0.0.1, killed on drop.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    pub fn start(venv: &Path) -> Result<Moto, String> {
        Moto::start_with_env(venv, &[])
    }

    /// As [`Moto::start`], with extra environment for moto (e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT`, after which it checks credentials).
    pub fn start_with_env(venv: &Path, env: &[(&str, &str)]) -> Result<Moto, String> {
        let port = closed_port();
        let mut child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start moto_server: {e}"))?;
        // Drain stderr so moto never blocks on a full pipe; keep it for errors.
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                }
            });
        }
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not listen on {addr} within 60s: {}",
                    log.lock().unwrap()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    /// Creates `bucket` and puts `objects` (key, bytes) through the S3 API
    /// (moto accepts unsigned requests).
    pub fn seed(&self, bucket: &str, objects: &[(&str, &[u8])]) {
        mlctl_ranker::fetch::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let created = client
                .put(format!("{}/{bucket}", self.endpoint))
                .send()
                .await
                .unwrap();
            assert!(
                created.status().is_success(),
                "create bucket: {}",
                created.status()
            );
            for (key, body) in objects {
                let put = client
                    .put(format!("{}/{bucket}/{key}", self.endpoint))
                    .body(body.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert!(put.status().is_success(), "put {key}: {}", put.status());
            }
        });
    }

    /// `mlctl-ranker fetch` configured for this server with fake credentials.
    pub fn fetch(&self) -> Fetch {
        Fetch::new()
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` until it holds or `timeout` passes; false on timeout.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
