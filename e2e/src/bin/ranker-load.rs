//! `ranker-load`: the closed-loop HTTP load generator of `ranker/bench/http` (in the
//! e2e crate, so the shipped `mlctl-ranker` package keeps one binary; not
//! shipped). oha 1.16 does not build without a TLS stack, and the benchmark only
//! needs plain HTTP/1.1 keep-alive POSTs, so this is std only: each of C threads
//! sends the same request, waits for the whole response, and records the latency.
//!
//! Usage: ranker-load URL BODY_FILE REQUESTS CONCURRENCY
//! Prints one line: `p50_ms p90_ms p99_ms max_ms requests_per_s non_200`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ranker-load: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, body, requests, concurrency] = args.as_slice() else {
        return Err("usage: ranker-load URL BODY_FILE REQUESTS CONCURRENCY".into());
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or("the URL must start with http://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let body = std::fs::read(body).map_err(|e| format!("{body}: {e}"))?;
    let requests: usize = requests.parse().map_err(|_| "REQUESTS: a number")?;
    let concurrency: usize = concurrency.parse().map_err(|_| "CONCURRENCY: a number")?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);

    let started = Instant::now();
    let per_thread = requests.div_ceil(concurrency.max(1));
    let handles: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let request = request.clone();
            let host = host.to_owned();
            std::thread::spawn(move || worker(&host, &request, per_thread))
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut non_200 = 0usize;
    for h in handles {
        let (l, bad) = h.join().map_err(|_| "a worker thread failed")??;
        latencies.extend(l);
        non_200 += bad;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:.3} {:.3} {:.3} {:.3} {:.1} {}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        latencies.len() as f64 / elapsed,
        non_200
    );
    Ok(())
}

/// Sends `n` requests on one kept-alive connection; returns latencies and the
/// number of non-200 answers.
fn worker(host: &str, request: &[u8], n: usize) -> Result<(Vec<Duration>, usize), String> {
    let stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut latencies = Vec::with_capacity(n);
    let mut bad = 0usize;
    let mut body = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        writer
            .write_all(request)
            .map_err(|e| format!("send: {e}"))?;
        let mut status_line = String::new();
        reader
            .read_line(&mut status_line)
            .map_err(|e| format!("read: {e}"))?;
        let status = status_line.split(' ').nth(1).unwrap_or("");
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().map_err(|_| "bad content-length")?;
            }
        }
        body.resize(length, 0);
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
        latencies.push(t.elapsed());
        if status != "200" {
            bad += 1;
        }
    }
    Ok((latencies, bad))
}
