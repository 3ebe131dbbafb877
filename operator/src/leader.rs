//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one of
//! several operator processes writes. As in client-go, expiry is judged by
//! the local clock from when this process last saw the record change (no
//! trust in other machines' clocks), and every update is a compare-and-swap
//! on the resourceVersion.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tracing::{info, warn};

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// This process's identity (pod name, or host and pid).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews, and others retry.
    pub retry_period: Duration,
}

/// Tracks the lease record as this process last saw it.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<(String, Instant)>,
}

/// Whether this process holds the lease after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// We hold it.
    Leader,
    /// Someone else does.
    Follower,
}

impl Elector {
    /// An elector for the Lease `config.name` in the namespace of `api`.
    pub fn new(api: Api<Lease>, config: LeaseConfig) -> Self {
        Self {
            api,
            config,
            observed: None,
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to acquire or renew.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let existing = match self.api.get_opt(&self.config.name).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(0, None)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Attempt::Leader),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Follower),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = format!(
            "{holder}/{:?}",
            spec.renew_time.as_ref().map(|t| t.0.as_microsecond())
        );
        let now = Instant::now();
        match &self.observed {
            Some((seen, _)) if *seen == record => {}
            _ => self.observed = Some((record, now)),
        }
        let seen_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
        let duration = spec
            .lease_duration_seconds
            .map_or(self.config.lease_duration, |s| {
                Duration::from_secs(s.max(0) as u64)
            });
        let mine = holder == self.config.identity;
        let expired = holder.is_empty() || now.duration_since(seen_at) > duration;
        if !mine && !expired {
            return Ok(Attempt::Follower);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut updated = existing.clone();
        updated.spec = Some(self.spec(transitions, acquired));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                if !mine {
                    info!(previous = %holder, "acquired the leader lease");
                }
                Ok(Attempt::Leader)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Follower),
            Err(e) => Err(e),
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leader) => return,
                Ok(Attempt::Follower) => {}
                Err(e) => warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the lease lasts;
    /// returns then (the caller must stop writing at once).
    pub async fn hold(&mut self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leader) => last_renewal = Instant::now(),
                Ok(Attempt::Follower) => {
                    warn!("lost the leader lease to another process");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "could not renew the leader lease");
                    // Stop before the lease can expire in others' eyes.
                    if last_renewal.elapsed() + self.config.retry_period
                        >= self.config.lease_duration
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up so that a standby takes over without waiting for
    /// it to expire (graceful shutdown).
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %e, "could not release the leader lease");
        } else {
            info!("released the leader lease");
        }
    }
}
