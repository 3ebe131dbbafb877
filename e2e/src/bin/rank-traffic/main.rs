//! `rank-traffic`: the open-loop load generator of the canary tests and the demo.
//! It sends `:rank` queries at a fixed rate for a whole rollout and records every
//! answer (time, latency, status, the model version that answered), so a test can
//! prove "zero failed requests" and "the canary's share follows the weights".
//!
//! Open loop: request i is due at start + i/rate whatever the earlier ones do, so
//! a slow version cannot lower the offered rate (as a closed loop like
//! `ranker-load` would, hiding the latency users see). Each request runs on its
//! own task with `--timeout`, so at most rate × timeout are in flight (keep that
//! under `ulimit -n`).
//!
//! Every request opens a new TCP connection and says `Connection: close`:
//! kube-proxy balances connections, not requests, so kept-alive connections would
//! stay pinned to the pods they first reached and the split would not follow the
//! Service's endpoints as a rollout changes them. Plain HTTP/1.1 only, never
//! through a proxy (it runs inside the node's network namespace).

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use mlctl_e2e::traffic::Record;
use serde::Deserialize;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, watch},
};

mod tally;

use tally::{Progress, Tally};

const USAGE: &str = "\
usage: rank-traffic --url http://HOST:PORT/v1/models/NAME:rank --rate RPS --rows FILE
                    [--docs N] [--duration D] [--timeout D] [--out FILE.jsonl]
                    [--stats FILE.json] [--progress D]

  --url URL       the ranking endpoint (plain http://)
  --rate RPS      requests per second, sent open loop (e.g. 50 or 0.5)
  --rows FILE     JSON {\"rows\": [[num|null, ...], ...]} or a bare [[...], ...]; each
                  request takes the next N rows as its documents
  --docs N        documents per request (default 20)
  --duration D    stop after D (default: on SIGTERM/SIGINT)
  --timeout D     per-request timeout (default 2s)
  --out FILE      one JSON record per request: t, ms, status, version, error
  --stats FILE    the progress figures as JSON, rewritten every tick
  --progress D    a progress line on stderr every D (default 1s; 0 = none)
Durations: 500ms, 2s, 1.5m, 1h (a bare number is seconds).
On exit prints a one-line JSON summary on stdout and exits 0; bad arguments exit 2.";

struct Args {
    url: String,
    rate: f64,
    rows: PathBuf,
    docs: usize,
    duration: Option<Duration>,
    timeout: Duration,
    out: Option<PathBuf>,
    stats: Option<PathBuf>,
    progress: Duration,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rank-traffic: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let bodies = match std::fs::read_to_string(&args.rows)
        .map_err(|e| e.to_string())
        .and_then(|text| Bodies::parse(&text, args.docs))
    {
        Ok(bodies) => bodies,
        Err(e) => {
            eprintln!(
                "rank-traffic: --rows {}: {e}; give a JSON file {{\"rows\": [[num|null, ...], ...]}} or [[...], ...]",
                args.rows.display()
            );
            return ExitCode::from(2);
        }
    };
    let out = match args.out.as_deref().map(File::create).transpose() {
        Ok(file) => file.map(BufWriter::new),
        Err(e) => {
            eprintln!("rank-traffic: --out: cannot create the file: {e}; name a writable path");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rank-traffic: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, bodies, out)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rank-traffic: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut url, mut rate, mut rows) = (None, None, None);
    let mut args = Args {
        url: String::new(),
        rate: 0.0,
        rows: PathBuf::new(),
        docs: 20,
        duration: None,
        timeout: Duration::from_secs(2),
        out: None,
        stats: None,
        progress: Duration::from_secs(1),
    };
    while let Some(arg) = argv.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        let value = match inline.or_else(|| argv.next()) {
            Some(value) => value,
            None => return Err(format!("{flag} needs a value")),
        };
        let duration = |what: &str| {
            parse_duration(&value)
                .ok_or_else(|| format!("{flag}: {value:?} is not a duration; give {what}"))
        };
        match flag.as_str() {
            "--url" => url = Some(value),
            "--rate" => match value.parse::<f64>() {
                Ok(r) if r > 0.0 && r.is_finite() => rate = Some(r),
                _ => {
                    return Err(format!(
                        "--rate: {value:?} is not a rate; give requests per second > 0 (e.g. --rate 50)"
                    ));
                }
            },
            "--rows" => rows = Some(PathBuf::from(value)),
            "--docs" => match value.parse::<usize>() {
                Ok(n) if n > 0 => args.docs = n,
                _ => {
                    return Err(format!(
                        "--docs: {value:?} is not a count; give documents per request > 0 (e.g. --docs 20)"
                    ));
                }
            },
            "--duration" => args.duration = Some(duration("e.g. 30s or 2m")?),
            "--timeout" => match duration("e.g. 2s or 500ms")? {
                d if d.is_zero() => {
                    return Err("--timeout: must be above 0 (e.g. --timeout 2s)".into());
                }
                d => args.timeout = d,
            },
            "--out" => args.out = Some(PathBuf::from(value)),
            "--stats" => args.stats = Some(PathBuf::from(value)),
            "--progress" => args.progress = duration("e.g. 1s, or 0 for no progress lines")?,
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    args.url = url.ok_or("--url is required (http://HOST:PORT/v1/models/NAME:rank)")?;
    if !args.url.starts_with("http://") {
        return Err(format!(
            "--url: {:?}: only plain http:// URLs are supported (no TLS)",
            args.url
        ));
    }
    args.rate = rate.ok_or("--rate is required (requests per second, e.g. --rate 50)")?;
    args.rows = rows.ok_or("--rows is required (a JSON file of feature rows)")?;
    Ok(Some(args))
}

/// `500ms`, `2s`, `1.5m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds = match unit {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * seconds).ok()
}

/// `2s`, `500ms`: how a duration was most likely written.
fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The request bodies: the rows, each already serialized, taken N at a time.
struct Bodies {
    rows: Vec<String>,
    docs: usize,
}

impl Bodies {
    fn parse(text: &str, docs: usize) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let rows = match value {
            serde_json::Value::Object(mut map) => {
                map.remove("rows").ok_or("the object has no \"rows\" key")?
            }
            rows => rows,
        };
        let rows: Vec<Vec<Option<f64>>> = serde_json::from_value(rows)
            .map_err(|e| format!("rows must be arrays of numbers or null: {e}"))?;
        let width = rows.first().map(Vec::len).ok_or("no rows")?;
        if let Some(i) = rows.iter().position(|r| r.len() != width || r.is_empty()) {
            return Err(format!(
                "row {i} has {} values, row 0 has {width}; every row needs the same non-zero count",
                rows[i].len()
            ));
        }
        let rows = rows
            .iter()
            .map(|row| serde_json::to_string(row).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(Self { rows, docs })
    }

    /// Request `i`: query `q-<i>`, the next N rows of the file as `d0`, `d1`, ...
    fn body(&self, i: u64) -> String {
        let len = self.rows.len();
        let first = (u128::from(i) * self.docs as u128 % len as u128) as usize;
        let mut body = format!(r#"{{"query":"q-{i}","documents":["#);
        for k in 0..self.docs {
            let row = &self.rows[(first + k) % len];
            if k > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#"{{"id":"d{k}","features":{row}}}"#));
        }
        body.push_str("]}");
        body
    }
}

async fn run(
    args: Args,
    bodies: Bodies,
    mut out: Option<BufWriter<File>>,
) -> anyhow::Result<String> {
    // Plain HTTP only, but when a build unifies reqwest's features with the
    // operator's (`rustls-no-provider`, e.g. `cargo build -p mlctl-operator -p
    // mlctl-e2e`), building a client without a process-wide rustls provider
    // panics: install kube's ring provider first (a no-op when one is set).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    // Registered before the ready line, so a SIGTERM right after it stops cleanly.
    let mut signals = Signals::new().context("cannot handle SIGTERM/SIGINT")?;
    let (record_tx, mut records) = mpsc::unbounded_channel::<Record>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    eprintln!("rank-traffic: sending {}/s to {}", args.rate, args.url);
    let sender = Sender {
        client,
        url: args.url.clone(),
        bodies,
        rate: args.rate,
        end: args.duration.map(|d| start + d),
        timeout: args.timeout,
        sent: sent.clone(),
    };
    tokio::spawn(sender.run(start, record_tx, stop_rx));

    let tick_every = if args.progress.is_zero() {
        Duration::from_secs(1)
    } else {
        args.progress
    };
    let mut ticks = tokio::time::interval_at((start + tick_every).into(), tick_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let progress_now = || Progress {
        elapsed: start.elapsed(),
        sent: sent.load(Ordering::Relaxed),
        rate: args.rate,
        window: args.progress,
    };
    let mut tally = Tally::default();
    let mut stopping = false;
    loop {
        tokio::select! {
            record = records.recv() => match record {
                Some(record) => {
                    if let Some(out) = out.as_mut() {
                        // One write per line: the buffer then never flushes half
                        // a line, so a test may read the file while it grows.
                        let mut line = serde_json::to_vec(&record)?;
                        line.push(b'\n');
                        out.write_all(&line)?;
                    }
                    tally.add(record);
                }
                // The sender has stopped and every request has its answer.
                None => break,
            },
            _ = ticks.tick() => {
                let progress = progress_now();
                if !args.progress.is_zero() {
                    eprintln!("{}", tally.progress_line(&progress));
                }
                save(&mut out, args.stats.as_deref(), &tally, &progress)?;
                tally.start_interval();
            }
            _ = signals.recv() => {
                if stopping {
                    // The drain is bounded by --timeout anyway; a second signal
                    // means the user does not want to wait for it.
                    if let Some(out) = out.as_mut() {
                        out.flush()?;
                    }
                    anyhow::bail!("second signal: exiting without waiting for the answers in flight");
                }
                stopping = true;
                let _ = stop_tx.send(true);
            }
        }
    }
    let progress = progress_now();
    save(&mut out, args.stats.as_deref(), &tally, &progress)?;
    Ok(serde_json::to_string(&tally.summary(progress.sent))?)
}

/// The open-loop scheduler.
struct Sender {
    client: reqwest::Client,
    url: String,
    bodies: Bodies,
    rate: f64,
    end: Option<Instant>,
    timeout: Duration,
    sent: Arc<AtomicU64>,
}

impl Sender {
    async fn run(
        self,
        start: Instant,
        records: mpsc::UnboundedSender<Record>,
        mut stop: watch::Receiver<bool>,
    ) {
        for i in 0u64.. {
            let due = start + Duration::from_secs_f64(i as f64 / self.rate);
            if self.end.is_some_and(|end| due >= end) {
                break;
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
            self.sent.fetch_add(1, Ordering::Relaxed);
            let (client, url, body) = (self.client.clone(), self.url.clone(), self.bodies.body(i));
            let (timeout, records) = (self.timeout, records.clone());
            tokio::spawn(async move {
                let _ = records.send(send_one(&client, &url, body, timeout).await);
            });
        }
    }
}

async fn send_one(client: &reqwest::Client, url: &str, body: String, timeout: Duration) -> Record {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let started = Instant::now();
    let exchange = async {
        let response = client
            .post(url)
            .header(reqwest::header::CONNECTION, "close")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>((status, response.bytes().await?))
    };
    let result = tokio::time::timeout(timeout, exchange).await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let (status, version, error) = match result {
        Err(_) => (
            0,
            None,
            Some(format!("timeout after {}", show_duration(timeout))),
        ),
        Ok(Err(e)) => (0, None, Some(transport_error(&e))),
        Ok(Ok((status, body))) => {
            let (version, error) = read_answer(status, &body);
            (status, version, error)
        }
    };
    Record {
        t,
        ms,
        status,
        version,
        error,
    }
}

/// `connect: Connection refused (os error 111)`: the stage and the root cause
/// (reqwest's own message only repeats the URL).
fn transport_error(e: &reqwest::Error) -> String {
    let stage = if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "reading the response"
    } else {
        "request"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("{stage}: {cause}")
}

/// The ranker's answer: `{"model","version","ranking"}` on 200, `{"error"}`
/// otherwise. Returns the version that answered and, for a failure, why.
fn read_answer(status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Answer {
        version: Option<String>,
        error: Option<String>,
        ranking: Option<serde::de::IgnoredAny>,
    }
    let answer = serde_json::from_slice::<Answer>(body);
    let snippet = || {
        let text = String::from_utf8_lossy(body);
        text.chars().take(200).collect::<String>()
    };
    match answer {
        Ok(answer) if status == 200 && answer.ranking.is_some() => (answer.version, None),
        Ok(answer) if status == 200 => {
            let why = format!("malformed 200 response (no \"ranking\"): {}", snippet());
            (answer.version, Some(why))
        }
        Err(e) if status == 200 => {
            let why = format!("malformed 200 response ({e}): {}", snippet());
            (None, Some(why))
        }
        Ok(Answer {
            version,
            error: Some(error),
            ..
        }) => (version, Some(error)),
        Ok(answer) => (
            answer.version,
            Some(format!("HTTP {status}: {}", snippet())),
        ),
        Err(_) => (None, Some(format!("HTTP {status}: {}", snippet()))),
    }
}

/// SIGTERM or SIGINT, whichever comes.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Flushes the records and rewrites the stats file (temp file + rename, so a
/// reader never sees half of it).
fn save(
    out: &mut Option<BufWriter<File>>,
    stats: Option<&Path>,
    tally: &Tally,
    progress: &Progress,
) -> anyhow::Result<()> {
    if let Some(out) = out.as_mut() {
        out.flush().context("--out: cannot write the records")?;
    }
    if let Some(path) = stats {
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let text = serde_json::to_string(&tally.stats(progress))?;
        std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, path))
            .with_context(|| format!("--stats: cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn durations_take_the_usual_units() {
        for (text, expected) in [
            ("500ms", Some(Duration::from_millis(500))),
            ("2s", Some(Duration::from_secs(2))),
            ("1.5m", Some(Duration::from_secs(90))),
            ("1h", Some(Duration::from_secs(3600))),
            ("3", Some(Duration::from_secs(3))),
            ("0", Some(Duration::ZERO)),
            ("2x", None),
            ("", None),
            ("-1s", None),
        ] {
            assert_eq!(parse_duration(text), expected, "{text:?}");
        }
    }

    #[test]
    fn bad_arguments_name_the_flag() {
        let base = ["--url", "http://h:1/v1/models/m:rank", "--rows", "r.json"];
        for (extra, flag) in [
            (&["--rate", "0"][..], "--rate"),
            (&["--rate", "fast"], "--rate"),
            (&["--rate", "5", "--docs", "0"], "--docs"),
            (&["--rate", "5", "--timeout", "0"], "--timeout"),
            (&["--rate", "5", "--duration", "soon"], "--duration"),
            (&["--rate", "5", "--progress"], "--progress"),
            (&["--rate", "5", "--bogus", "1"], "--bogus"),
            (&[], "--rate"),
        ] {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            let error = parse(&args).err().unwrap_or_default();
            assert!(error.contains(flag), "{args:?}: {error:?}");
        }
        let https = parse(&["--url", "https://h/", "--rate", "1", "--rows", "r"]).err();
        assert!(https.unwrap_or_default().contains("http://"));
    }

    #[test]
    fn defaults_and_inline_values() {
        let args = parse(&["--url=http://h:1/x", "--rate", "0.5", "--rows", "r.json"])
            .unwrap()
            .unwrap();
        assert_eq!(args.rate, 0.5);
        assert_eq!(args.docs, 20);
        assert_eq!(args.timeout, Duration::from_secs(2));
        assert_eq!(args.progress, Duration::from_secs(1));
        assert_eq!(args.duration, None);
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn requests_take_the_next_rows_in_turn_and_keep_nulls() {
        let bodies =
            Bodies::parse(r#"{"rows": [[1, null], [2.5, 3], [4, 5]], "x": 1}"#, 2).unwrap();
        assert_eq!(
            bodies.body(0),
            r#"{"query":"q-0","documents":[{"id":"d0","features":[1.0,null]},{"id":"d1","features":[2.5,3.0]}]}"#
        );
        assert_eq!(
            bodies.body(1),
            r#"{"query":"q-1","documents":[{"id":"d0","features":[4.0,5.0]},{"id":"d1","features":[1.0,null]}]}"#
        );
        let bare = Bodies::parse("[[7, 8]]", 1).unwrap();
        assert_eq!(
            bare.body(3),
            r#"{"query":"q-3","documents":[{"id":"d0","features":[7.0,8.0]}]}"#
        );
    }

    #[test]
    fn bad_rows_are_refused_with_the_reason() {
        for (text, reason) in [
            ("{}", "no \"rows\""),
            ("[]", "no rows"),
            ("[[1, 2], [3]]", "row 1 has 1 values"),
            (r#"[["a"]]"#, "numbers or null"),
            ("[[1, 2]", "EOF"),
        ] {
            let error = Bodies::parse(text, 1).err().unwrap_or_default();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn answers_give_the_version_and_the_failure() {
        let ok = br#"{"model":"m","version":"v1","ranking":[{"id":"d0","score":1}]}"#;
        assert_eq!(read_answer(200, ok), (Some("v1".into()), None));
        let refused = br#"{"error":"document 0 (id d0): 8 features, the model has 7"}"#;
        assert_eq!(
            read_answer(400, refused),
            (
                None,
                Some("document 0 (id d0): 8 features, the model has 7".into())
            )
        );
        let (version, error) = read_answer(200, b"<html>");
        assert_eq!(version, None);
        assert!(error.unwrap().starts_with("malformed 200 response"));
        let (_, error) = read_answer(200, br#"{"version":"v1"}"#);
        assert!(error.unwrap().contains("no \"ranking\""));
        assert_eq!(
            read_answer(502, b"Bad Gateway"),
            (None, Some("HTTP 502: Bad Gateway".into()))
        );
    }
}
