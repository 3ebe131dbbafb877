//! Requeue delays: per-object exponential backoff with full jitter after a
//! failed reconcile, and ±10% jitter for periodic requeues, so that objects
//! failing for a shared reason (the API server, a provider) do not retry in
//! lockstep and a broken object does not retry every few seconds forever.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::{Lookup, ObjectRef};

/// Backoff of the first failure.
pub const BASE: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const CAP: Duration = Duration::from_secs(300);
/// Shortest delay a jittered backoff returns: never an immediate retry.
const FLOOR: Duration = Duration::from_millis(100);

/// The upper bound of the delay after the `failures`-th consecutive
/// failure (1-based): `base`, doubled per failure, at most `cap`.
pub fn backoff_ceiling(failures: u32, base: Duration, cap: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(cap)
}

/// Full jitter (the delay is uniform below the ceiling), with `unit` the
/// random draw in [0, 1).
fn full_jitter(ceiling: Duration, unit: f64) -> Duration {
    ceiling
        .mul_f64(unit.clamp(0.0, 1.0))
        .max(FLOOR.min(ceiling))
}

/// `period` ±10% with `unit` the random draw in [0, 1).
fn jitter_by(period: Duration, unit: f64) -> Duration {
    period.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// A periodic requeue ±10%, so that objects created together do not stay in
/// step.
pub fn jittered(period: Duration) -> Duration {
    jitter_by(period, rand::random::<f64>())
}

/// Consecutive failures per object; cleared when the object reconciles.
pub struct Backoff<K: Lookup>
where
    K::DynamicType: Eq + Hash,
{
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<ObjectRef<K>, u32>>,
}

impl<K: Lookup> Default for Backoff<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn default() -> Self {
        Self::new(BASE, CAP)
    }
}

impl<K: Lookup> Backoff<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// A backoff from `base` to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a failure of `object` and returns how long to wait.
    pub fn failed(&self, object: &ObjectRef<K>) -> Duration {
        self.failed_with(object, rand::random::<f64>())
    }

    fn failed_with(&self, object: &ObjectRef<K>, unit: f64) -> Duration {
        let failures = match self.failures.lock() {
            Ok(mut map) => {
                let count = map.entry(object.clone()).or_insert(0);
                *count = count.saturating_add(1);
                *count
            }
            // A poisoned map: back off as far as allowed rather than hot-loop.
            Err(_) => u32::MAX,
        };
        full_jitter(backoff_ceiling(failures, self.base, self.cap), unit)
    }

    /// Forgets the failures of `object` (it reconciled).
    pub fn succeeded(&self, object: &ObjectRef<K>) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(object);
        }
    }

    /// Consecutive failures of `object`.
    pub fn failures(&self, object: &ObjectRef<K>) -> u32 {
        self.failures
            .lock()
            .ok()
            .and_then(|map| map.get(object).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    #[test]
    fn the_ceiling_doubles_from_one_second_to_five_minutes() {
        let schedule: Vec<u64> = (1..=12)
            .map(|n| backoff_ceiling(n, BASE, CAP).as_secs())
            .collect();
        assert_eq!(schedule, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff_ceiling(u32::MAX, BASE, CAP), CAP);
        assert_eq!(backoff_ceiling(0, BASE, CAP), BASE);
    }

    #[test]
    fn full_jitter_spreads_below_the_ceiling_and_never_retries_at_once() {
        let ceiling = Duration::from_secs(8);
        assert_eq!(full_jitter(ceiling, 0.0), FLOOR);
        assert_eq!(full_jitter(ceiling, 0.5), Duration::from_secs(4));
        assert!(full_jitter(ceiling, 0.999_999) < ceiling);
        assert_eq!(full_jitter(ceiling, 7.0), ceiling, "a bad draw is clamped");
    }

    #[test]
    fn periodic_jitter_is_ten_percent_either_way() {
        let period = Duration::from_secs(100);
        assert_eq!(jitter_by(period, 0.0), Duration::from_secs(90));
        assert_eq!(jitter_by(period, 0.5), Duration::from_secs(100));
        assert!(jitter_by(period, 0.999_999) < Duration::from_secs(110));
        for _ in 0..1000 {
            let d = jittered(period);
            assert!(d >= Duration::from_secs(90) && d < Duration::from_secs(110));
        }
    }

    #[test]
    fn failures_are_counted_per_object_and_reset_on_success() {
        let backoff = Backoff::<ConfigMap>::default();
        let a = ObjectRef::new("a").within("ns");
        let b = ObjectRef::new("b").within("ns");
        let delays: Vec<Duration> = (0..10).map(|_| backoff.failed_with(&a, 0.5)).collect();
        assert_eq!(
            delays.iter().map(Duration::as_millis).collect::<Vec<_>>(),
            [
                500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128_000, 150_000
            ]
        );
        assert_eq!(backoff.failures(&a), 10);
        // Another object starts at the base.
        assert_eq!(backoff.failed_with(&b, 0.5), Duration::from_millis(500));
        backoff.succeeded(&a);
        assert_eq!(backoff.failures(&a), 0);
        assert_eq!(backoff.failed_with(&a, 0.5), Duration::from_millis(500));
        assert_eq!(backoff.failures(&b), 1, "b's count is its own");
        for _ in 0..100 {
            let d = backoff.failed(&b);
            assert!(d >= FLOOR && d < CAP);
        }
    }
}
