//! A controller under test as a local process: started with its log in the
//! run directory, its resident memory sampled every second from /proc (the
//! peak between two instants is what a restart or a convergence costs), its
//! CPU time read from /proc/<pid>/stat.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One RSS sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    rss_kib: u64,
}

/// A running controller process, killed when dropped.
pub struct Proc {
    child: Child,
    samples: Arc<Mutex<Vec<Sample>>>,
    sampler: tokio::task::JoinHandle<()>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `command`, logging to `log` (appended: a restart keeps the first log).
    pub fn start(mut command: Command, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let pid = child.id();
        let sink = samples.clone();
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(rss_kib) = rss_kib(pid) else { break };
                sink.lock().expect("samples lock").push(Sample {
                    at: Instant::now(),
                    rss_kib,
                });
            }
        });
        Proc {
            child,
            samples,
            sampler,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB.
    pub fn rss_now_kib(&self) -> u64 {
        rss_kib(self.pid()).unwrap_or(0)
    }

    /// The largest sampled RSS since `from` (and the current value).
    pub fn rss_peak_since_kib(&self, from: Instant) -> u64 {
        let samples = self.samples.lock().expect("samples lock");
        samples
            .iter()
            .filter(|s| s.at >= from)
            .map(|s| s.rss_kib)
            .max()
            .unwrap_or(0)
            .max(self.rss_now_kib())
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.pid()).unwrap_or(0.0)
    }

    /// Exits if the process has died, with its log tail: a controller that
    /// crashed mid-phase makes every later figure meaningless.
    pub fn check_alive(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            mlctl_e2e::print_file_tail(&self.log, 40);
            panic!(
                "{what}: the process exited ({status}); log: {}",
                self.log.display()
            );
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        mlctl_e2e::signal(self.child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            // A child process has no watch: polling its exit is the only way.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sampler.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// utime + stime of /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s:
/// USER_HZ is 100 on every Linux architecture we run on).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
