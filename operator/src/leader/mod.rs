//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one of
//! several operator processes writes. As in client-go, expiry is judged by
//! the local clock from when this process last saw the record change (no
//! trust in other machines' clocks), and every update is a compare-and-swap
//! on the resourceVersion.
//!
//! Holding the lease opens a [`Fence`] until the start of the last
//! successful renewal plus the renew deadline — strictly before any other
//! process can see the lease expire (its clock starts when it sees that
//! renewal, and it waits the whole lease duration). The controllers' client
//! checks the fence on every write, so a leader that stalls (a hung renewal,
//! a paused process) stops writing before a standby can start.

mod fence;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;
use tracing::{info, warn};

pub use fence::{Fence, FenceLayer, FencedService, FencedWrite, MethodLabels};

/// The three durations of an election, checked against each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// Timings that cannot keep two leaders apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid leader election timing: the lease duration ({lease_duration:?}) must be longer \
     than the renew deadline ({renew_deadline:?}), which must be longer than the retry period \
     ({retry_period:?}); e.g. --lease-duration-seconds=15 --lease-renew-deadline-seconds=10 \
     --lease-retry-seconds=2"
)]
pub struct TimingError {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

impl LeaseTiming {
    /// `lease_duration > renew_deadline > retry_period > 0`: the leader stops
    /// writing at the renew deadline, `lease_duration - renew_deadline` before
    /// anyone else may take over, and has time for several renewal attempts
    /// before that.
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, TimingError> {
        if lease_duration > renew_deadline
            && renew_deadline > retry_period
            && !retry_period.is_zero()
        {
            Ok(LeaseTiming {
                lease_duration,
                renew_deadline,
                retry_period,
            })
        } else {
            Err(TimingError {
                lease_duration,
                renew_deadline,
                retry_period,
            })
        }
    }

    /// How long a lease is valid without renewal.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long after the start of its last successful renewal the leader
    /// may write.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// Time between attempts.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// Bound of one attempt (a GET and an update): half the renew deadline,
    /// so that a hung call leaves time for another try before the fence
    /// closes.
    pub fn attempt_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }
}

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// This process's identity (pod name, or host and pid).
    pub identity: String,
    /// Durations.
    pub timing: LeaseTiming,
}

/// The calls the elector makes on Leases: a trait so that tests can stand in
/// for the API server.
pub trait LeaseApi {
    /// The Lease, or `None` when it does not exist.
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<Lease>, kube::Error>> + Send;
    /// Creates it (409 when it exists).
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
    /// Replaces it (409 when its resourceVersion is not the stored one).
    fn replace(
        &self,
        name: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
}

impl LeaseApi for Api<Lease> {
    async fn get(&self, name: &str) -> Result<Option<Lease>, kube::Error> {
        self.get_opt(name).await
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        Api::create(self, &PostParams::default(), lease).await
    }

    async fn replace(&self, name: &str, lease: &Lease) -> Result<Lease, kube::Error> {
        Api::replace(self, name, &PostParams::default(), lease).await
    }
}

/// Whether this process holds the lease after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold it.
    Leader,
    /// Someone else does, and their lease has not expired in our eyes.
    Follower {
        /// Their identity.
        holder: String,
    },
    /// The lease changed between our read and our write (409): nobody can
    /// say who holds it until the next read.
    Conflict,
}

/// Why [`Elector::hold`] returned: in either case the fence is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SteppedDown {
    /// Another process holds the lease.
    Lost {
        /// Its identity.
        holder: String,
    },
    /// Renewals failed until the renew deadline passed.
    Lapsed,
}

/// Runs the election and keeps the [`Fence`] of this process.
pub struct Elector<A> {
    api: A,
    config: LeaseConfig,
    fence: Fence,
    /// The lease record as last seen, and when (local clock) it was first
    /// seen in that state.
    observed: Option<(LeaseSpec, Instant)>,
    last_attempt: Option<Instant>,
}

impl<A: LeaseApi> Elector<A> {
    /// An elector for the Lease `config.name`; `fence` is opened while this
    /// process leads (pass the one the controllers' client checks).
    pub fn new(api: A, config: LeaseConfig, fence: Fence) -> Self {
        Self {
            api,
            config,
            fence,
            observed: None,
            last_attempt: None,
        }
    }

    /// The fence this elector keeps.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.timing.lease_duration.as_secs().max(1))
                    .unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to acquire or renew, without a deadline and without
    /// touching the fence (see [`Elector::attempt`]).
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let Some(existing) = self.api.get(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&lease).await {
                Ok(_) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "created the leader lease");
                    Ok(Attempt::Leader)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        // The other holder's renewTime is never compared with our clock: only
        // whether the record changed, and when we saw it change.
        let now = Instant::now();
        let seen_at = match &self.observed {
            Some((seen, at)) if *seen == spec => *at,
            _ => {
                self.observed = Some((spec.clone(), now));
                now
            }
        };
        let duration = spec
            .lease_duration_seconds
            .map_or(self.config.timing.lease_duration, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            });
        let mine = holder == self.config.identity;
        let expired = holder.is_empty() || now.duration_since(seen_at) > duration;
        if !mine && !expired {
            return Ok(Attempt::Follower { holder });
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut updated = existing;
        updated.spec = Some(self.spec(transitions, acquired));
        match self.api.replace(&self.config.name, &updated).await {
            Ok(_) => {
                if !mine {
                    info!(
                        lease = %self.config.name,
                        identity = %self.config.identity,
                        previous = %holder,
                        transitions,
                        "acquired the leader lease"
                    );
                }
                Ok(Attempt::Leader)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// One bounded attempt; on success opens the fence until its start plus
    /// the renew deadline. `None` when it failed or timed out.
    pub async fn attempt(&mut self) -> Option<Attempt> {
        let started = Instant::now();
        self.last_attempt = Some(started);
        let timeout = self.config.timing.attempt_timeout();
        match tokio::time::timeout(timeout, self.try_acquire_or_renew()).await {
            Ok(Ok(Attempt::Leader)) => {
                // The record we wrote is younger than `started`, so nobody can
                // see it expire before `started + lease_duration`.
                self.fence
                    .open_until(started + self.config.timing.renew_deadline);
                Some(Attempt::Leader)
            }
            Ok(Ok(other)) => Some(other),
            Ok(Err(e)) => {
                warn!(error = %e, lease = %self.config.name, "leader election attempt failed");
                None
            }
            Err(_) => {
                warn!(lease = %self.config.name, ?timeout, "leader election attempt timed out");
                None
            }
        }
    }

    async fn wait_for_next_attempt(&self) {
        if let Some(last) = self.last_attempt {
            tokio::time::sleep_until(last + self.config.timing.retry_period).await;
        }
    }

    /// Waits until this process holds the lease (the fence is then open).
    pub async fn acquire(&mut self) {
        let mut announced = None;
        loop {
            self.wait_for_next_attempt().await;
            match self.attempt().await {
                Some(Attempt::Leader) if self.fence.is_open() => return,
                Some(Attempt::Follower { holder }) if announced.as_ref() != Some(&holder) => {
                    info!(lease = %self.config.name, %holder, "standing by: another process leads");
                    announced = Some(holder);
                }
                _ => {}
            }
        }
    }

    /// Renews the lease every retry period. Returns when another process
    /// holds it or when the renew deadline passed without a renewal — at that
    /// moment, not when a hung call gives up — with the fence revoked.
    pub async fn hold(&mut self) -> SteppedDown {
        enum Step {
            Lapsed,
            Attempted(Option<Attempt>),
        }
        loop {
            let Some(valid_until) = self.fence.valid_until() else {
                return self.step_down(SteppedDown::Lapsed);
            };
            let step = tokio::select! {
                biased;
                () = tokio::time::sleep_until(valid_until) => Step::Lapsed,
                outcome = async {
                    self.wait_for_next_attempt().await;
                    self.attempt().await
                } => Step::Attempted(outcome),
            };
            match step {
                Step::Lapsed => return self.step_down(SteppedDown::Lapsed),
                Step::Attempted(Some(Attempt::Follower { holder })) => {
                    return self.step_down(SteppedDown::Lost { holder });
                }
                // Renewed, or a conflict / failure to retry until the deadline.
                Step::Attempted(_) => {}
            }
        }
    }

    fn step_down(&self, why: SteppedDown) -> SteppedDown {
        self.fence.revoke();
        match &why {
            SteppedDown::Lost { holder } => {
                warn!(lease = %self.config.name, %holder, "lost the leader lease to another process; writes are fenced")
            }
            SteppedDown::Lapsed => warn!(
                lease = %self.config.name,
                renew_deadline = ?self.config.timing.renew_deadline,
                "could not renew the leader lease before the renew deadline; writes are fenced"
            ),
        }
        why
    }

    /// Gives the lease up so that a standby takes over without waiting for
    /// it to expire (graceful shutdown). Revokes the fence first: nothing is
    /// written after the standby may start.
    pub async fn release(&mut self) {
        self.fence.revoke();
        let timeout = self.config.timing.attempt_timeout();
        match tokio::time::timeout(timeout, self.try_release()).await {
            Ok(Ok(true)) => info!(lease = %self.config.name, "released the leader lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(error = %e, "could not release the leader lease"),
            Err(_) => warn!(?timeout, "releasing the leader lease timed out"),
        }
    }

    async fn try_release(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get(&self.config.name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api.replace(&self.config.name, &lease).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
