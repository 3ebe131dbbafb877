//! When to try a webhook again: exponential backoff with jitter for the
//! failures that may pass (no connection, a timeout, 429, 5xx), never for
//! the ones that will not (any other 4xx, a missing Secret), and never past
//! a bounded number of attempts or time. Pure: the caller brings the clock
//! and the randomness.

use std::time::Duration;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The webhook answered 2xx.
    Sent,
    /// Worth another try (after at least `after`, a 429's Retry-After).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Another try would fail the same way.
    Permanent(String),
}

/// The attempt for an HTTP status (`retry_after`: the response's
/// Retry-After header, if any).
pub fn classify_status(status: u16, retry_after: Option<&str>) -> Attempt {
    match status {
        200..=299 => Attempt::Sent,
        429 => Attempt::Retry {
            why: "HTTP 429 Too Many Requests".into(),
            after: retry_after.and_then(parse_retry_after),
        },
        500..=599 => Attempt::Retry {
            why: format!("HTTP {status}"),
            after: None,
        },
        // 1xx/3xx (redirects are not followed: one could carry a
        // Secret-sourced header elsewhere) and 4xx: the request is wrong.
        _ => Attempt::Permanent(format!("HTTP {status}")),
    }
}

/// Retry-After in seconds (the HTTP-date form is rare for webhooks and is
/// treated as absent: the backoff applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The retry limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// No attempt starts later than this after the first.
    pub window: Duration,
    /// The wait after the first failure; doubled after each.
    pub base: Duration,
    /// The longest wait between two attempts (a Retry-After is honoured
    /// up to the window).
    pub cap: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 6,
            window: Duration::from_secs(300),
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The wait before the next attempt after `failed` attempts (the last
    /// asked for `retry_after`), `elapsed` since the first; None: give up.
    /// `jitter` in [0, 1) spreads the wait over its upper half, so that the
    /// notifications of one outage do not come back together.
    pub fn next_delay(
        &self,
        failed: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        if failed >= self.attempts {
            return None;
        }
        let doubling = 2u32.saturating_pow(failed.saturating_sub(1));
        let backoff = self.base.saturating_mul(doubling).min(self.cap);
        let backoff = backoff.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        let delay = retry_after.map_or(backoff, |r| r.max(backoff));
        (elapsed.saturating_add(delay) <= self.window).then_some(delay)
    }
}
