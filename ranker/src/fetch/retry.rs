//! When to try again: the backoff schedule (exponential with jitter, so that the
//! pods of one rollout do not hammer a recovering store in lockstep) and which
//! HTTP statuses are worth a retry. Pure functions, unit-tested without I/O.

use std::time::Duration;

/// Exponential backoff: attempt `n` (1-based) waits `initial * 2^(n-1)`, capped at
/// `max`, then scaled by a jitter factor in `[0.5, 1.0]` ("equal jitter": never
/// less than half the nominal delay, so a retry storm still spreads out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The nominal (jitter-free) delay after failed attempt `attempt` (1-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << exponent).min(self.max)
    }

    /// The delay after failed attempt `attempt`, with `unit` in `[0, 1)` drawn by
    /// the caller (injected so that tests are deterministic).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let factor = 0.5 + 0.5 * unit.clamp(0.0, 1.0);
        self.nominal(attempt).mul_f64(factor)
    }
}

/// What a failed request means for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 404/410: the object is not there; retrying will not make it appear.
    NotFound,
    /// 401/403: the pod's identity may not read it; retrying will not help.
    Forbidden,
    /// 408, 429, 5xx: the server is busy or broken right now; try again.
    Transient,
    /// Any other 4xx (or unexpected status): the request itself is wrong.
    Rejected,
}

/// Classifies a non-2xx HTTP status.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        404 | 410 => StatusClass::NotFound,
        401 | 403 => StatusClass::Forbidden,
        408 | 429 | 500..=599 => StatusClass::Transient,
        _ => StatusClass::Rejected,
    }
}

/// Parses a duration flag: `90`, `90s`, `500ms`, `5m`, `1h` (plain numbers are
/// seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write e.g. 30s, 500ms, 10m or 1h"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!("{text:?} has unit {other:?}: use ms, s, m or h"));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Formats a duration for log lines: `1.25s`, `250ms`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(10),
    };

    #[test]
    fn nominal_delay_doubles_then_caps() {
        let got: Vec<u128> = (1..=7).map(|n| BACKOFF.nominal(n).as_millis()).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
        // A huge attempt number must not overflow.
        assert_eq!(BACKOFF.nominal(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_between_half_and_full_nominal() {
        for attempt in 1..=6 {
            let nominal = BACKOFF.nominal(attempt);
            assert_eq!(BACKOFF.delay(attempt, 0.0), nominal / 2);
            assert_eq!(BACKOFF.delay(attempt, 1.0), nominal);
            let mid = BACKOFF.delay(attempt, 0.5);
            assert!(mid > nominal / 2 && mid < nominal, "{mid:?} vs {nominal:?}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(404), StatusClass::NotFound);
        assert_eq!(classify_status(410), StatusClass::NotFound);
        assert_eq!(classify_status(403), StatusClass::Forbidden);
        assert_eq!(classify_status(401), StatusClass::Forbidden);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(s), StatusClass::Transient, "{s}");
        }
        for s in [400, 405, 416, 304] {
            assert_eq!(classify_status(s), StatusClass::Rejected, "{s}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(
            parse_duration("5d")
                .unwrap_err()
                .contains("use ms, s, m or h")
        );
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }
}
