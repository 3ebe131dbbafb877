//! Peer mode: the stable pods compare themselves with the canary on a sample of
//! `:rank` requests, in the background (shadow) or in the response
//! (interleave), as `peer.json` says (docs/runtime-contract.md, "Comparing with
//! the canary"). The file is re-read every second; without it nothing runs and
//! the request path pays one atomic load.

mod canary;
mod config;
mod impression;
mod interleave;
mod measures;
mod metrics;
mod route;
mod shadow;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::HeaderMap;
use tokio::sync::mpsc;
use tracing::{info, warn};

use config::{Decision, PeerConfig};
pub use metrics::PeerMetrics;
use metrics::Series;
pub use route::{feedback, rank};
use shadow::ShadowJob;

/// How often the config file is read again.
const POLL: Duration = Duration::from_secs(1);

/// An applied config, shared by the requests it samples and the shadow jobs they
/// queue (a job finishes under the config it started with).
#[derive(Debug)]
pub struct Active {
    /// The config.
    pub config: PeerConfig,
    /// Its metric series.
    series: Series,
    /// Calls to the canary.
    client: reqwest::Client,
    /// The shadow queue (shadow mode).
    queue: Option<mpsc::Sender<ShadowJob>>,
}

/// The peer state of one server.
#[derive(Debug)]
pub struct Peer {
    /// `MODEL_REVISION`, compared with the config's `from`.
    revision: String,
    /// True while a config is active: the only thing the request path reads when
    /// there is none.
    on: AtomicBool,
    current: RwLock<Option<Arc<Active>>>,
    /// The peer metric families.
    pub metrics: PeerMetrics,
}

impl Peer {
    /// Peer state that stays off until [`Peer::watch`] applies a config.
    pub fn new(revision: &str, metrics: PeerMetrics) -> Peer {
        Peer {
            revision: revision.to_owned(),
            on: AtomicBool::new(false),
            current: RwLock::new(None),
            metrics,
        }
    }

    /// The config to apply to a `:rank` request, if it is sampled: not when peer
    /// mode is off, never for a request that comes from a peer, and otherwise for
    /// `sample` percent of requests.
    pub fn sample(&self, headers: &HeaderMap) -> Option<Arc<Active>> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        if headers.contains_key(canary::PEER_HEADER) {
            return None;
        }
        let active = self.current.read().ok()?.clone()?;
        (rand::random_range(0..100u32) < active.config.sample).then_some(active)
    }

    /// Reads `path` now and every second after, applying each change; runs until
    /// the runtime stops.
    pub async fn watch(self: Arc<Self>, path: PathBuf) {
        let client = match canary::client() {
            Ok(c) => c,
            Err(e) => {
                warn!("peer mode disabled: cannot build the HTTP client: {e}");
                return;
            }
        };
        let queue = shadow::start_workers();
        let mut last: Option<Result<Option<Vec<u8>>, String>> = None;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // The kubelet swaps a symlink to update a ConfigMap volume; reading the
            // small file each time sees every swap, whatever its timestamps.
            let contents = read(&path).await;
            if last.as_ref() == Some(&contents) {
                continue;
            }
            let decision = match &contents {
                Ok(bytes) => config::decide(bytes.as_deref(), &self.revision),
                Err(why) => Decision::Invalid(why.clone()),
            };
            self.apply(&path, decision, &client, &queue);
            last = Some(contents);
        }
    }

    /// Makes `decision` current, logs it and updates `ranker_peer_active`.
    fn apply(
        &self,
        path: &Path,
        decision: Decision,
        client: &reqwest::Client,
        queue: &mpsc::Sender<ShadowJob>,
    ) {
        let path = path.display();
        let config = match decision {
            Decision::Off => {
                info!("peer config {path}: off");
                None
            }
            Decision::Invalid(why) => {
                warn!("peer config {path} is not usable, so this pod compares nothing: {why}");
                None
            }
            Decision::OtherRevision { from } => {
                info!(
                    "peer config {path} is for revision {from:?}; this pod is {:?}: nothing to do",
                    self.revision
                );
                None
            }
            Decision::Active(c) => {
                info!(
                    mode = c.mode.as_str(),
                    url = %c.url,
                    sample = c.sample,
                    k = c.k,
                    timeout_ms = c.timeout.as_millis() as u64,
                    version = %c.stable_version,
                    canary_version = %c.canary_version,
                    "peer config {path} applied"
                );
                Some(c)
            }
        };
        let Ok(mut current) = self.current.write() else {
            return;
        };
        // The old gauge goes first: the new config may have the same labels.
        if let Some(old) = current.take() {
            self.metrics.deactivate(&old.config);
        }
        *current = config.map(|config| {
            let series = self.metrics.activate(&config);
            let queue = matches!(series, Series::Shadow(_)).then(|| queue.clone());
            Arc::new(Active {
                config,
                series,
                client: client.clone(),
                queue,
            })
        });
        self.on.store(current.is_some(), Ordering::Relaxed);
    }
}

/// The file's bytes, None when it does not exist (the ConfigMap volume is
/// optional), or why it cannot be read.
async fn read(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}
