//! Shadow mode: after the stable pod has answered, a copy of the request and its
//! ranking goes on a bounded queue; a few workers call the canary and record how
//! far its ranking is from the stable's. The user's response never waits, and
//! when the queue is full the copy is dropped and counted.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};

use super::Active;
use super::canary::{self, CanaryFailure};
use super::config::Mode;
use super::impression::id_hash;
use super::measures;
use super::metrics::{Series, ShadowSeries};
use crate::serve::rank::StableRanking;

/// Copies waiting for a worker; beyond this they are dropped (counted).
pub const QUEUE_CAPACITY: usize = 256;

/// Workers calling the canary at once.
pub const WORKERS: usize = 4;

/// One answered request to compare.
#[derive(Debug)]
pub struct ShadowJob {
    /// The config (and its metric series) when the request was answered.
    pub active: Arc<Active>,
    /// The request body as received.
    pub body: Bytes,
    /// The stable's answer.
    pub ranking: StableRanking,
}

/// Starts the workers; the returned sender is the queue.
pub fn start_workers() -> mpsc::Sender<ShadowJob> {
    let (tx, rx) = mpsc::channel::<ShadowJob>(QUEUE_CAPACITY);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..WORKERS {
        let rx = rx.clone();
        tokio::spawn(async move {
            loop {
                // The lock is held only while waiting for the next job.
                let job = rx.lock().await.recv().await;
                match job {
                    Some(job) => compare(job).await,
                    None => return,
                }
            }
        });
    }
    tx
}

/// Queues a copy without waiting; a full queue drops it (counted).
pub fn enqueue(queue: &mpsc::Sender<ShadowJob>, job: ShadowJob) {
    if let Err(e) = queue.try_send(job) {
        let job = match e {
            mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => job,
        };
        if let Some(series) = shadow_series(&job.active) {
            series.dropped.inc();
        }
    }
}

fn shadow_series(active: &Active) -> Option<&ShadowSeries> {
    match &active.series {
        Series::Shadow(s) => Some(s),
        Series::Interleave(_) => None,
    }
}

async fn compare(job: ShadowJob) {
    let Some(series) = shadow_series(&job.active) else {
        return;
    };
    let config = &job.active.config;
    let call = canary::call(
        job.active.client.clone(),
        config.url.clone(),
        config.timeout,
        job.body,
        Mode::Shadow,
    )
    .await;
    if let Some(d) = call.answered_in {
        series.canary_duration.observe(d.as_secs_f64());
    }
    let canary_ranking = match call.ranking {
        Ok(r) => r,
        Err(CanaryFailure::Timeout) => {
            series.timeout.inc();
            return;
        }
        Err(CanaryFailure::Error(why)) => {
            tracing::debug!(url = %config.url, "shadow call failed: {why}");
            series.canary_error.inc();
            return;
        }
    };
    let r = &job.ranking;
    let stable: Vec<(u64, f64)> = r
        .order
        .iter()
        .filter_map(|&i| Some((id_hash(r.ids.get(i)?), *r.scores.get(i)?)))
        .collect();
    // O(n log n) in the documents: cheap enough to run on the worker task.
    match measures::compare(&stable, &canary_ranking, config.k) {
        Some(a) => {
            series.ndcg.observe(a.ndcg);
            series.overlap.observe(a.overlap);
            series.kendall_tau.observe(a.kendall_tau);
            if let Some(shift) = a.score_shift {
                series.score_shift.observe(shift);
            }
            series.compared.inc();
        }
        None => {
            tracing::debug!(url = %config.url, "the canary ranked none of the stable's documents");
            series.canary_error.inc();
        }
    }
}
