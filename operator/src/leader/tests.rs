//! The elector against an in-memory Lease store, on tokio's paused clock:
//! time only moves when every task waits, so the schedules below are exact.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use kube::core::Status;

use super::*;

/// The API server's Lease store: one Lease, optimistic concurrency on a
/// resourceVersion counter.
#[derive(Default)]
struct Store {
    lease: Option<Lease>,
    version: u64,
}

/// What one client of the store does differently.
#[derive(Default)]
struct Faults {
    /// Every call hangs forever.
    hang: AtomicBool,
    /// The next N replaces answer 409 without writing.
    conflicts: AtomicU32,
    /// Replaces take this long (ms) before they write.
    replace_delay_ms: AtomicU32,
}

#[derive(Clone)]
struct FakeLeases {
    store: Arc<Mutex<Store>>,
    faults: Arc<Faults>,
}

impl FakeLeases {
    fn new(store: &Arc<Mutex<Store>>) -> Self {
        FakeLeases {
            store: store.clone(),
            faults: Arc::new(Faults::default()),
        }
    }

    async fn maybe_hang(&self) {
        if self.faults.hang.load(Ordering::SeqCst) {
            futures::future::pending::<()>().await;
        }
    }
}

fn conflict() -> kube::Error {
    kube::Error::Api(
        Status::failure("the object has been modified", "Conflict")
            .with_code(409)
            .boxed(),
    )
}

fn store_lease(store: &Mutex<Store>, lease: &Lease) -> Result<Lease, kube::Error> {
    let mut store = store.lock().map_err(|_| conflict())?;
    store.version += 1;
    let mut stored = lease.clone();
    stored.metadata.resource_version = Some(store.version.to_string());
    store.lease = Some(stored.clone());
    Ok(stored)
}

impl LeaseApi for FakeLeases {
    async fn get(&self, _name: &str) -> Result<Option<Lease>, kube::Error> {
        self.maybe_hang().await;
        Ok(self.store.lock().map_err(|_| conflict())?.lease.clone())
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.maybe_hang().await;
        if self.store.lock().map_err(|_| conflict())?.lease.is_some() {
            return Err(conflict());
        }
        store_lease(&self.store, lease)
    }

    async fn replace(&self, _name: &str, lease: &Lease) -> Result<Lease, kube::Error> {
        self.maybe_hang().await;
        let delay = self.faults.replace_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay.into())).await;
        if self
            .faults
            .conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(conflict());
        }
        let current = self
            .store
            .lock()
            .map_err(|_| conflict())?
            .lease
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current != lease.metadata.resource_version {
            return Err(conflict());
        }
        store_lease(&self.store, lease)
    }
}

fn timing() -> LeaseTiming {
    LeaseTiming::new(
        Duration::from_secs(15),
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
    .expect("client-go's defaults are valid")
}

fn elector(store: &Arc<Mutex<Store>>, identity: &str) -> (Elector<FakeLeases>, FakeLeases) {
    let api = FakeLeases::new(store);
    let config = LeaseConfig {
        name: "mlctl-operator".into(),
        identity: identity.into(),
        timing: timing(),
    };
    (Elector::new(api.clone(), config, Fence::new()), api)
}

fn spec(store: &Mutex<Store>) -> LeaseSpec {
    store
        .lock()
        .expect("store")
        .lease
        .as_ref()
        .and_then(|l| l.spec.clone())
        .unwrap_or_default()
}

/// Puts a lease held by `holder` into the store, as another process would.
fn foreign_lease(store: &Mutex<Store>, holder: &str, renew: Timestamp, transitions: i32) {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("mlctl-operator".into()),
            resource_version: store
                .lock()
                .expect("store")
                .lease
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(renew)),
            renew_time: Some(MicroTime(renew)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    };
    store_lease(store, &lease).expect("store the foreign lease");
}

#[test]
fn timings_must_keep_the_renew_deadline_inside_the_lease() {
    let s = Duration::from_secs;
    assert!(LeaseTiming::new(s(15), s(10), s(2)).is_ok());
    for (lease, renew, retry) in [
        (10, 10, 2),
        (15, 16, 2),
        (15, 2, 2),
        (15, 10, 0),
        (4, 10, 1),
    ] {
        let error = LeaseTiming::new(s(lease), s(renew), s(retry))
            .expect_err("must be refused")
            .to_string();
        assert!(
            error.contains("must be longer than the renew deadline"),
            "{error}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_elector_creates_the_lease_and_opens_its_fence_until_the_renew_deadline() {
    let store = Arc::new(Mutex::new(Store::default()));
    let (mut a, _) = elector(&store, "a");
    let start = Instant::now();
    a.acquire().await;
    assert_eq!(
        a.fence().valid_until(),
        Some(start + Duration::from_secs(10))
    );
    let spec = spec(&store);
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.lease_duration_seconds, Some(15));
}

#[tokio::test(start_paused = true)]
async fn a_follower_never_takes_a_lease_that_its_holder_renews() {
    let store = Arc::new(Mutex::new(Store::default()));
    let (mut b, _) = elector(&store, "b");
    foreign_lease(&store, "a", Timestamp::now(), 0);
    for _ in 0..30 {
        assert_eq!(
            b.attempt().await,
            Some(Attempt::Follower { holder: "a".into() })
        );
        assert!(!b.fence().is_open());
        tokio::time::advance(Duration::from_secs(2)).await;
        // "a" renews: its renewTime is whatever its clock says.
        foreign_lease(&store, "a", Timestamp::now(), 0);
    }
    assert_eq!(spec(&store).holder_identity.as_deref(), Some("a"));
}

/// Another machine's renewTime, far in the future or the past, neither
/// extends nor shortens the lease: expiry is the lease duration after this
/// process saw the record last change, on its own clock.
#[tokio::test(start_paused = true)]
async fn the_holders_clock_does_not_matter_only_when_the_record_was_seen_to_change() {
    for skewed in [
        Timestamp::from_second(4_102_444_800).expect("2100-01-01"),
        Timestamp::from_second(0).expect("1970-01-01"),
    ] {
        let store = Arc::new(Mutex::new(Store::default()));
        let (mut b, _) = elector(&store, "b");
        foreign_lease(&store, "a", skewed, 3);
        let seen = Instant::now();
        assert!(matches!(b.attempt().await, Some(Attempt::Follower { .. })));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(
            matches!(b.attempt().await, Some(Attempt::Follower { .. })),
            "not expired at exactly the lease duration (renewTime {skewed})"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            b.attempt().await,
            Some(Attempt::Leader),
            "renewTime {skewed}"
        );
        assert!(seen.elapsed() > Duration::from_secs(15));
    }
}

#[tokio::test(start_paused = true)]
async fn taking_over_an_expired_lease_counts_a_transition_and_resets_acquire_time() {
    let store = Arc::new(Mutex::new(Store::default()));
    let old = Timestamp::from_second(1_000_000).expect("a time");
    foreign_lease(&store, "a", old, 3);
    let (mut b, _) = elector(&store, "b");
    let start = Instant::now();
    b.acquire().await;
    // Seen at 0, expired after 15 s, noticed at the next retry.
    assert_eq!(start.elapsed(), Duration::from_secs(16));
    let spec = spec(&store);
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(4));
    assert_ne!(spec.acquire_time, Some(MicroTime(old)));
    // Renewing keeps the count and the acquire time.
    let acquired = spec.acquire_time.clone();
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(b.attempt().await, Some(Attempt::Leader));
    let renewed = self::spec(&store);
    assert_eq!(renewed.lease_transitions, Some(4));
    assert_eq!(renewed.acquire_time, acquired);
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_update_neither_acquires_nor_renews() {
    let store = Arc::new(Mutex::new(Store::default()));
    let (mut b, api) = elector(&store, "b");
    foreign_lease(&store, "", Timestamp::now(), 1);
    api.faults.conflicts.store(1, Ordering::SeqCst);
    assert_eq!(b.attempt().await, Some(Attempt::Conflict));
    assert!(!b.fence().is_open());
    assert_eq!(spec(&store).holder_identity.as_deref(), Some(""));
    assert_eq!(b.attempt().await, Some(Attempt::Leader));
    let valid_until = b.fence().valid_until();

    // As leader: a conflict on renewal does not extend the fence.
    tokio::time::advance(Duration::from_secs(2)).await;
    api.faults.conflicts.store(1, Ordering::SeqCst);
    assert_eq!(b.attempt().await, Some(Attempt::Conflict));
    assert_eq!(b.fence().valid_until(), valid_until);
}

/// The heart of it: a renewal that hangs keeps the old leader from writing
/// before the lease can expire for the standby; at no instant may both
/// fences be open.
#[tokio::test(start_paused = true)]
async fn a_hung_renewal_closes_the_fence_before_a_standby_can_take_over() {
    let store = Arc::new(Mutex::new(Store::default()));
    let (mut a, a_api) = elector(&store, "a");
    let (mut b, _) = elector(&store, "b");
    let a_fence = a.fence().clone();
    let b_fence = b.fence().clone();
    let start = Instant::now();
    a.acquire().await;
    let leader = tokio::spawn(async move {
        let why = a.hold().await;
        (why, Instant::now())
    });
    let standby = tokio::spawn(async move {
        b.acquire().await;
        Instant::now()
    });
    // Let a renew a few times, then its API calls hang from t=7.
    tokio::time::sleep(Duration::from_secs(7)).await;
    a_api.faults.hang.store(true, Ordering::SeqCst);
    let mut both_open = Vec::new();
    // Sample both fences every 50 ms until after the takeover (b does not
    // renew: its fence, opened at about 22 s, lasts until about 32 s).
    while start.elapsed() < Duration::from_secs(30) {
        if a_fence.is_open() && b_fence.is_open() {
            both_open.push(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b_fence.is_open(), "the standby leads by now");
    assert!(
        both_open.is_empty(),
        "two leaders could write at {both_open:?}"
    );
    let (why, stepped_down) = leader.await.expect("leader task");
    let took_over = standby.await.expect("standby task");
    assert_eq!(why, SteppedDown::Lapsed);
    // Last successful renewal started at 6 s: the fence closes at 16 s, the
    // standby (which saw that renewal at 6 s) takes over after 6 + 15 s.
    assert_eq!(stepped_down - start, Duration::from_secs(16));
    assert!(
        took_over - start > Duration::from_secs(21),
        "{:?}",
        took_over - start
    );
    assert!(!a_fence.is_open());
    assert!(a_fence.valid_until().is_none(), "revoked");
}

/// A renewal slower than the renew deadline that finally lands does not
/// keep the leader writing past its deadline.
#[tokio::test(start_paused = true)]
async fn a_slow_renewal_is_abandoned_at_the_deadline() {
    let store = Arc::new(Mutex::new(Store::default()));
    let (mut a, api) = elector(&store, "a");
    let start = Instant::now();
    a.acquire().await;
    api.faults.replace_delay_ms.store(12_000, Ordering::SeqCst);
    let why = a.hold().await;
    assert_eq!(why, SteppedDown::Lapsed);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert!(!a.fence().is_open());
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_sees_another_holder_steps_down_at_once() {
    let store = Arc::new(Mutex::new(Store::default()));
    let (mut a, _) = elector(&store, "a");
    a.acquire().await;
    // Someone (an admin, a split-brained peer) wrote another holder.
    foreign_lease(&store, "b", Timestamp::now(), 1);
    let start = Instant::now();
    let why = a.hold().await;
    assert_eq!(why, SteppedDown::Lost { holder: "b".into() });
    assert!(start.elapsed() <= Duration::from_secs(2));
    assert!(!a.fence().is_open());
}

#[tokio::test(start_paused = true)]
async fn release_hands_over_without_waiting_for_expiry() {
    let store = Arc::new(Mutex::new(Store::default()));
    let (mut a, _) = elector(&store, "a");
    let (mut b, _) = elector(&store, "b");
    a.acquire().await;
    assert!(matches!(b.attempt().await, Some(Attempt::Follower { .. })));
    tokio::time::advance(Duration::from_secs(1)).await;
    a.release().await;
    assert!(
        !a.fence().is_open(),
        "the fence closes before the lease is given up"
    );
    assert_eq!(spec(&store).holder_identity, None);
    let start = Instant::now();
    b.acquire().await;
    assert!(start.elapsed() <= Duration::from_secs(2));
    assert_eq!(spec(&store).holder_identity.as_deref(), Some("b"));
    assert_eq!(spec(&store).lease_transitions, Some(1));
}

#[tokio::test(start_paused = true)]
async fn release_leaves_a_lease_someone_else_holds_alone() {
    let store = Arc::new(Mutex::new(Store::default()));
    let (mut a, _) = elector(&store, "a");
    foreign_lease(&store, "b", Timestamp::now(), 0);
    a.release().await;
    assert_eq!(spec(&store).holder_identity.as_deref(), Some("b"));
}
