//! `rank-traffic` against a real `mlctl-ranker serve` on 127.0.0.1 (no cluster):
//! it sends at the rate asked, records what each answer says, and counts a
//! refusing model and a server that goes away as failures. Needs the built
//! ranker (`cargo build -p mlctl-ranker`); cargo builds rank-traffic itself.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mlctl_e2e::operator::target_dir;
use mlctl_e2e::traffic::{Record, read_records, window};
use mlctl_e2e::{unique_suffix, workspace_root};

const RANK_TRAFFIC: &str = env!("CARGO_BIN_EXE_rank-traffic");
/// Long enough for any step on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn ranker_binary() -> PathBuf {
    let path = target_dir().join("debug/mlctl-ranker");
    assert!(
        path.is_file(),
        "{} missing: `cargo build -p mlctl-ranker` first",
        path.display()
    );
    path
}

/// A child process killed on drop, its stderr lines collected by a thread.
struct Process {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Process {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line for which `pick` returns something.
    fn wait_line<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let found = pick(&line);
                    self.seen.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(_) => panic!(
                    "no {what} on stderr within {DEADLINE:?}:\n{}",
                    self.stderr_text()
                ),
            }
        }
    }

    /// Everything it wrote to stderr so far.
    fn stderr_text(&mut self) -> String {
        self.seen.extend(self.stderr.try_iter());
        self.seen.join("\n")
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}", self.child.id());
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {DEADLINE:?}:\n{}",
                self.child.id(),
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mlctl-ranker serve` on 127.0.0.1:0, ready (GET /ready = 200).
struct Ranker {
    process: Process,
    addr: String,
}

impl Ranker {
    fn start(model: &Path, extra: &[&str]) -> Self {
        let mut command = Command::new(ranker_binary());
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--model-path")
            .arg(model)
            .args(["--model-name", "m", "--model-version", "v1"])
            .args(["--model-format", "lightgbm"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null());
        let mut process = Process::spawn(&mut command);
        let addr = process.wait_line("\"listening\" log line", listening_address);
        let mut ranker = Self { process, addr };
        let deadline = Instant::now() + DEADLINE;
        while get_status(&ranker.addr, "/ready") != Some(200) {
            assert!(
                Instant::now() < deadline,
                "not ready within {DEADLINE:?}:\n{}",
                ranker.process.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ranker
    }

    fn rank_url(&self, model: &str) -> String {
        format!("http://{}/v1/models/{model}:rank", self.addr)
    }
}

fn listening_address(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    (fields.get("message")?.as_str()? == "listening")
        .then(|| fields.get("address")?.as_str().map(str::to_string))?
}

/// The status of a plain HTTP GET, or None when nothing answers.
fn get_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

fn golden(name: &str) -> PathBuf {
    workspace_root().join("ranker/golden").join(name)
}

fn demo(name: &str) -> PathBuf {
    workspace_root().join("examples/demo").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = target_dir().join("traffic-gen");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}", unique_suffix()))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// rank-traffic's `--out` records and its one-line stdout summary.
struct Outcome {
    records: Vec<Record>,
    summary: serde_json::Value,
    stderr: String,
}

/// Runs rank-traffic until it exits by itself (`--duration` in `args`).
fn run_traffic(url: &str, rows: &Path, args: &[&str]) -> Outcome {
    let out = scratch("records.jsonl");
    let started = Instant::now();
    let output = Command::new(RANK_TRAFFIC)
        .args(["--url", url, "--rows"])
        .arg(rows)
        .arg("--out")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "rank-traffic failed:\n{stderr}");
    eprintln!("rank-traffic ran {:?}:\n{stderr}", started.elapsed());
    outcome(&out, &output.stdout, stderr)
}

fn outcome(out: &Path, stdout: &[u8], stderr: String) -> Outcome {
    let stdout = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one summary line on stdout: {stdout}");
    let summary = serde_json::from_str(lines[0]).unwrap();
    Outcome {
        records: read_records(out),
        summary,
        stderr,
    }
}

/// The figures of the summary that the records must reproduce exactly.
fn assert_summary_matches_records(outcome: &Outcome) {
    let records = &outcome.records;
    let failed = records.iter().filter(|r| r.failed()).count() as u64;
    let mut by_version = BTreeMap::<String, u64>::new();
    let mut by_status = BTreeMap::<String, u64>::new();
    for r in records {
        if let Some(v) = &r.version {
            *by_version.entry(v.clone()).or_default() += 1;
        }
        *by_status.entry(r.status.to_string()).or_default() += 1;
    }
    let max = records.iter().map(|r| r.ms).fold(0.0, f64::max);
    let expected = serde_json::json!({
        "sent": records.len(),
        "ok": records.len() as u64 - failed,
        "failed": failed,
        "by_version": by_version,
        "by_status": by_status,
    });
    let s = &outcome.summary;
    for key in ["sent", "ok", "failed", "by_version", "by_status"] {
        assert_eq!(s[key], expected[key], "summary {key}: {s}");
    }
    let max_ms = s["max_ms"].as_f64().unwrap();
    assert!((max_ms - max).abs() < 0.001, "max_ms {max_ms} vs {max}");
    let (p50, p99) = (s["p50_ms"].as_f64().unwrap(), s["p99_ms"].as_f64().unwrap());
    assert!(p50 <= p99 && p99 <= max_ms, "percentiles out of order: {s}");
}

#[test]
fn sends_at_the_rate_asked_and_records_every_answer() {
    let ranker = Ranker::start(&golden("lgb_lambdarank.txt"), &[]);
    let stats = scratch("stats.json");
    let outcome = run_traffic(
        &ranker.rank_url("m"),
        &golden("lgb_lambdarank.case.json"),
        &[
            "--rate",
            "100",
            "--duration",
            "2s",
            "--stats",
            stats.to_str().unwrap(),
        ],
    );
    let records = &outcome.records;
    // Open loop: exactly rate × duration requests are due, whatever the answers.
    assert_eq!(records.len(), 200, "{}", outcome.stderr);
    let all = window(records, 0, u64::MAX);
    assert_eq!(all.failed, 0, "{all}");
    assert_eq!(all.share("v1"), 1.0, "{all}");
    assert!(records.iter().all(|r| r.status == 200 && r.error.is_none()));
    assert_summary_matches_records(&outcome);
    // Paced, not sent in a burst: 1.99 s from the first to the last send, and
    // each half second gets its 50 (tolerance: scheduling on a loaded machine).
    let first = records.iter().map(|r| r.t).min().unwrap();
    let last = records.iter().map(|r| r.t).max().unwrap();
    assert!(
        (1900..=2300).contains(&(last - first)),
        "sends span {} ms",
        last - first
    );
    for quarter in 0..4 {
        let from = first + quarter * 500;
        let n = window(records, from, from + 500).sent;
        assert!((35..=65).contains(&n), "{n} sends in [{from}, +500 ms)");
    }
    assert!(
        outcome.stderr.contains(&format!(
            "rank-traffic: sending 100/s to {}",
            ranker.rank_url("m")
        )),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("| last 1s: v1 "),
        "a progress line: {}",
        outcome.stderr
    );
    // The stats file holds the final figures at exit.
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(
        (stats["sent"].as_u64(), stats["ok"].as_u64()),
        (Some(200), Some(200)),
        "{stats}"
    );
    assert_eq!(stats["by_version"]["v1"], 200, "{stats}");
}

#[test]
fn a_model_that_refuses_the_rows_fails_every_request_with_its_reason() {
    // The demo's bad version: 7 features, and the demo's rows have 8.
    let ranker = Ranker::start(&demo("models/search-ranker-v3-missing-feature.txt"), &[]);
    let outcome = run_traffic(
        &ranker.rank_url("m"),
        &demo("queries.json"),
        &["--rate", "100", "--duration", "1s", "--progress", "0"],
    );
    let all = window(&outcome.records, 0, u64::MAX);
    assert_eq!((all.sent, all.failed), (100, 100), "{all}");
    for r in &outcome.records {
        assert_eq!(r.status, 400, "{r:?}");
        let error = r.error.as_deref().unwrap_or_default();
        assert!(error.contains("8 features, the model has 7"), "{r:?}");
    }
    assert_summary_matches_records(&outcome);
    assert!(
        !outcome.stderr.contains("| total"),
        "--progress 0 prints no progress: {}",
        outcome.stderr
    );

    // A model name the server does not serve: 404 with the server's reason.
    let outcome = run_traffic(
        &ranker.rank_url("other"),
        &demo("queries.json"),
        &["--rate", "50", "--duration", "200ms", "--progress", "0"],
    );
    assert_eq!(outcome.records.len(), 10);
    for r in &outcome.records {
        assert_eq!(r.status, 404, "{r:?}");
        assert!(
            r.error.as_deref().unwrap_or_default().contains("\"other\""),
            "{r:?}"
        );
    }
    assert_summary_matches_records(&outcome);
}

/// Reads the `--stats` file once it exists and parses.
fn read_stats(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn wait_for_stats(path: &Path, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !read_stats(path).is_some_and(|s| done(&s)) {
        assert!(
            Instant::now() < deadline,
            "{what} not seen in {} within {DEADLINE:?}: {:?}",
            path.display(),
            read_stats(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_server_that_goes_away_counts_as_failed_requests_and_sigterm_stops_cleanly() {
    let mut ranker = Ranker::start(
        &golden("lgb_lambdarank.txt"),
        &["--shutdown-grace", "200ms", "--drain-timeout", "1s"],
    );
    let (out, stats) = (scratch("records.jsonl"), scratch("stats.json"));
    let mut command = Command::new(RANK_TRAFFIC);
    command
        .args(["--url", &ranker.rank_url("m"), "--rate", "100", "--rows"])
        .arg(golden("lgb_lambdarank.case.json"))
        .arg("--out")
        .arg(&out)
        .arg("--stats")
        .arg(&stats)
        .args(["--progress", "200ms"])
        .stdout(Stdio::piped());
    let mut traffic = Process::spawn(&mut command);
    traffic.wait_line("ready line", |l| {
        l.starts_with("rank-traffic: sending").then_some(())
    });
    wait_for_stats(&stats, "30 answers", |s| s["ok"].as_u64() >= Some(30));

    let sigterm_ms = unix_ms();
    ranker.process.sigterm();
    let status = ranker.process.wait_exit();
    let gone_ms = unix_ms();
    assert!(status.success(), "the ranker drains and exits 0: {status}");
    // 20 requests sent after the exit recorded (the file is flushed every tick).
    let deadline = Instant::now() + DEADLINE;
    while read_records(&out).iter().filter(|r| r.t >= gone_ms).count() < 20 {
        assert!(
            Instant::now() < deadline,
            "no 20 records after the server exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    traffic.sigterm();
    let status = traffic.wait_exit();
    let stderr = traffic.stderr_text();
    assert!(
        status.success(),
        "rank-traffic exits 0 on SIGTERM: {status}\n{stderr}"
    );
    let mut stdout = Vec::new();
    traffic
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let outcome = outcome(&out, &stdout, stderr);
    assert_summary_matches_records(&outcome);

    let records = &outcome.records;
    let before = window(records, 0, sigterm_ms);
    assert!(before.sent >= 30, "{before}");
    assert_eq!(
        before.failed, 0,
        "everything sent before SIGTERM is served: {before}"
    );
    assert_eq!(before.share("v1"), 1.0, "{before}");
    let after = window(records, gone_ms, u64::MAX);
    assert!(after.sent >= 20 && after.failed == after.sent, "{after}");
    for r in records.iter().filter(|r| r.t >= gone_ms) {
        assert_eq!(r.status, 0, "{r:?}");
        let error = r.error.as_deref().unwrap_or_default();
        assert!(error.starts_with("connect: "), "{r:?}");
    }
    eprintln!("before SIGTERM: {before}\nafter the server exited: {after}");
}

/// What a stand-in server saw on one connection.
struct Connection {
    head: String,
    /// Bytes the client sent after the first request (a second request).
    more: usize,
}

/// Serves every connection on its own thread: answers the first request per
/// `answer(connection number)` (None: closes without answering), then reads to
/// the client's end of the connection.
fn stand_in_server(
    answer: fn(usize) -> Option<&'static str>,
) -> (String, mpsc::Receiver<Connection>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let (mut stream, tx) = (stream.unwrap(), tx.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                while reader.read_line(&mut head).unwrap() > 2 {}
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")?
                            .trim()
                            .parse()
                            .ok()
                    })
                    .unwrap();
                reader.read_exact(&mut vec![0; length]).unwrap();
                let Some(body) = answer(n) else {
                    let _ = tx.send(Connection { head, more: 0 });
                    return;
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).unwrap();
                let mut more = Vec::new();
                let _ = reader.read_to_end(&mut more);
                let _ = tx.send(Connection {
                    head,
                    more: more.len(),
                });
            });
        }
    });
    (addr, rx)
}

#[test]
fn every_request_opens_its_own_connection_and_bad_answers_fail() {
    // Connection n: two good answers, a 200 that is no ranking, no answer at all.
    let (addr, connections) = stand_in_server(|n| match n % 4 {
        0 | 1 => Some(r#"{"model":"m","version":"stand-in","ranking":[]}"#),
        2 => Some("hello"),
        _ => None,
    });
    let outcome = run_traffic(
        &format!("http://{addr}/v1/models/m:rank"),
        &golden("lgb_lambdarank.case.json"),
        &["--rate", "50", "--duration", "400ms", "--progress", "0"],
    );
    assert_eq!(outcome.records.len(), 20);
    let seen: Vec<Connection> = (0..20)
        .map(|i| {
            connections
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("only {i} connections for 20 requests"))
        })
        .collect();
    for c in &seen {
        assert!(
            c.head
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{}",
            c.head
        );
        assert_eq!(c.more, 0, "a second request on one connection");
    }
    let all = window(&outcome.records, 0, u64::MAX);
    assert_eq!(
        (all.sent, all.failed, all.share("stand-in")),
        (20, 10, 0.5),
        "{all}"
    );
    let count = |f: &dyn Fn(&Record) -> bool| outcome.records.iter().filter(|r| f(r)).count();
    let malformed = count(&|r| {
        r.status == 200
            && r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("malformed 200 response"))
    });
    assert_eq!(malformed, 5, "{:?}", outcome.records);
    assert_eq!(
        count(&|r| r.status == 0 && r.error.is_some()),
        5,
        "{:?}",
        outcome.records
    );
    assert_summary_matches_records(&outcome);
}

#[test]
fn bad_arguments_exit_2_naming_the_flag() {
    for (args, flag) in [
        (&["--rate", "0"][..], "--rate"),
        (&["--rate", "10", "--rows", "/nonexistent.json"], "--rows"),
        (&["--rate", "10", "--docs", "none"], "--docs"),
    ] {
        let output = Command::new(RANK_TRAFFIC)
            .args(["--url", "http://127.0.0.1:9/v1/models/m:rank"])
            .args([
                "--rows",
                golden("lgb_lambdarank.case.json").to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
