//! Five-field cron expressions and their next due times in a time zone.
//!
//! Syntax (as Kubernetes CronJobs accept it): `minute hour day-of-month month
//! day-of-week`, each a `*`, a value, a range `a-b`, a step `*/n`, `a/n` or
//! `a-b/n`, or a comma list of these; months `JAN`–`DEC` and days `SUN`–`SAT`
//! by name (any case); day-of-week 7 is Sunday; `?` is `*`. Macros: `@yearly`
//! (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`.
//! When both day fields are restricted a day matches either (classic cron).
//!
//! Daylight saving time: a time that does not exist (the spring-forward gap)
//! runs at the same offset after the gap (02:30 → 03:30); a time that exists
//! twice (fall back) runs once, at its first occurrence.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parse error naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct CronError {
    /// The expression.
    pub expr: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_restricted: bool,
    dow_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// How far ahead a schedule is searched (covers `0 0 29 2 MON`, which can
/// skip 28 years, with room to spare).
const SEARCH_DAYS: i64 = 366 * 30;

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    names_start: u32,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_start: 0,
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_start: 0,
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        names_start: 0,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        names_start: 1,
    },
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &DAYS,
        names_start: 0,
    },
];

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(spec.names_start + i as u32);
    }
    let value: u32 = text.parse().map_err(|_| {
        format!(
            "the {} field has {text:?}, which is not a number{}",
            spec.name,
            if spec.names.is_empty() {
                String::new()
            } else {
                format!(" or a name such as {}", spec.names[0])
            }
        )
    })?;
    if value < spec.min || value > spec.max {
        return Err(format!(
            "the {} field has {value}, outside {}-{}",
            spec.name, spec.min, spec.max
        ));
    }
    Ok(value)
}

/// Parses one field into a bit set, and whether it was `*` (or `?`).
fn parse_field(text: &str, spec: &FieldSpec) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!(
                        "the {} field has step {s:?}; a step is a positive number",
                        spec.name
                    )
                })?;
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if step.is_none() && item == text {
                star = true;
            }
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(a, spec)?, parse_value(b, spec)?);
            if a > b {
                return Err(format!(
                    "the {} field has the range {range:?} whose start is after its end",
                    spec.name
                ));
            }
            (a, b)
        } else {
            let a = parse_value(range, spec)?;
            (a, if step.is_some() { spec.max } else { a })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Cron {
    /// Parses a five-field expression or a macro.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let err = |reason: String| CronError {
            expr: expr.to_string(),
            reason,
        };
        let trimmed = expr.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => {
                return Err(err(format!(
                    "unknown macro {m}; use @yearly, @monthly, @weekly, @daily or @hourly, or five fields"
                )));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "it has {} fields; use five (minute hour day-of-month month day-of-week), e.g. \"*/30 * * * *\"",
                fields.len()
            )));
        }
        let mut parsed = [(0u64, false); 5];
        for (i, (text, spec)) in fields.iter().zip(FIELDS.iter()).enumerate() {
            parsed[i] = parse_field(text, spec).map_err(err)?;
        }
        let mut dow = parsed[4].0;
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & !(1 << 7);
        }
        Ok(Cron {
            minutes: parsed[0].0,
            hours: parsed[1].0 as u32,
            days_of_month: parsed[2].0 as u32,
            months: parsed[3].0 as u16,
            days_of_week: dow as u8,
            dom_restricted: !parsed[2].1,
            dow_restricted: !parsed[4].1,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first due time strictly after `after`, in `tz`; `None` when the
    /// expression never fires (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        let start_minute = i32::from(local.hour()) * 60 + i32::from(local.minute());
        let mut date = local.date();
        for day in 0..SEARCH_DAYS {
            if self.day_matches(date) {
                for hour in 0..24i8 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60i8 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        if day == 0 && i32::from(hour) * 60 + i32::from(minute) < start_minute {
                            continue;
                        }
                        let civil = DateTime::new(
                            date.year(),
                            date.month(),
                            date.day(),
                            hour,
                            minute,
                            0,
                            0,
                        )
                        .ok()?;
                        let Ok(zoned) = tz.to_ambiguous_zoned(civil).compatible() else {
                            continue;
                        };
                        let t = zoned.timestamp();
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
            date = date.checked_add(1.day()).ok()?;
        }
        None
    }

    /// Due times in `(after, until]`, at most `limit` of them, and whether
    /// there were more.
    pub fn due_between(
        &self,
        after: Timestamp,
        until: Timestamp,
        tz: &TimeZone,
        limit: usize,
    ) -> (Vec<Timestamp>, bool) {
        let mut out = Vec::new();
        let mut t = after;
        while let Some(next) = self.next_after(t, tz) {
            if next > until {
                return (out, false);
            }
            if out.len() == limit {
                return (out, true);
            }
            out.push(next);
            t = next;
        }
        (out, false)
    }
}

/// The time zone of a schedule: UTC when unset.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None | Some("") | Some("UTC") | Some("Etc/UTC") => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|e| {
            format!(
                "spec.trigger.schedule.timeZone {name:?} is not a known IANA time zone ({e}); use a name such as Europe/Berlin or UTC"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(expr: &str, after: &str, tz: &str) -> String {
        let tz = time_zone(Some(tz)).unwrap();
        Cron::parse(expr)
            .unwrap()
            .next_after(ts(after), &tz)
            .unwrap()
            .to_string()
    }

    #[test]
    fn every_minute_and_steps() {
        assert_eq!(
            next("* * * * *", "2026-11-25T10:00:00Z", "UTC"),
            "2026-11-25T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-11-25T10:00:30Z", "UTC"),
            "2026-11-25T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-25T10:16:00Z", "UTC"),
            "2026-11-25T10:30:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-11-25T10:26:00Z", "UTC"),
            "2026-11-25T10:45:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-11-25T13:00:00Z", "UTC"),
            "2026-11-25T17:00:00Z"
        );
    }

    #[test]
    fn lists_ranges_and_names() {
        // 2026-11-25 is a Wednesday.
        assert_eq!(
            next("0 8 * * MON-FRI", "2026-11-27T09:00:00Z", "UTC"),
            "2026-11-30T08:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jan,jul *", "2026-11-25T00:00:00Z", "UTC"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("30 6 * * 7", "2026-11-25T00:00:00Z", "UTC"),
            "2026-11-29T06:30:00Z"
        );
        assert_eq!(
            next("0,30 1,13 * * *", "2026-11-25T01:30:00Z", "UTC"),
            "2026-11-25T13:00:00Z"
        );
    }

    #[test]
    fn macros() {
        let after = "2026-11-25T10:20:00Z";
        assert_eq!(next("@hourly", after, "UTC"), "2026-11-25T11:00:00Z");
        assert_eq!(next("@daily", after, "UTC"), "2026-11-26T00:00:00Z");
        assert_eq!(next("@weekly", after, "UTC"), "2026-11-29T00:00:00Z");
        assert_eq!(next("@monthly", after, "UTC"), "2026-12-01T00:00:00Z");
        assert_eq!(next("@yearly", after, "UTC"), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn month_ends_and_leap_days() {
        assert_eq!(
            next("0 0 31 * *", "2026-11-25T00:00:00Z", "UTC"),
            "2026-12-31T00:00:00Z"
        );
        assert_eq!(
            next("0 0 31 * *", "2027-01-31T00:00:00Z", "UTC"),
            "2027-03-31T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-11-25T00:00:00Z", "UTC"),
            "2028-02-29T00:00:00Z"
        );
        let never = Cron::parse("0 0 30 2 *").unwrap();
        assert_eq!(
            never.next_after(ts("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 1st, or any Friday: Friday 2026-11-27 comes first.
        assert_eq!(
            next("0 0 1 * FRI", "2026-11-25T00:00:00Z", "UTC"),
            "2026-11-27T00:00:00Z"
        );
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 09:00 in Berlin is 08:00 UTC in winter.
        assert_eq!(
            next("0 9 * * *", "2026-11-25T10:00:00Z", "Europe/Berlin"),
            "2026-11-26T08:00:00Z"
        );
        // Spring forward 2026-03-29: 02:30 does not exist in Berlin; it runs
        // at 03:30 local (01:30 UTC).
        assert_eq!(
            next("30 2 * * *", "2026-03-28T12:00:00Z", "Europe/Berlin"),
            "2026-03-29T01:30:00Z"
        );
        // Fall back 2026-10-25: 02:30 exists twice; it runs once, at the
        // first one (00:30 UTC), and next on the 26th.
        assert_eq!(
            next("30 2 * * *", "2026-10-24T12:00:00Z", "Europe/Berlin"),
            "2026-10-25T00:30:00Z"
        );
        assert_eq!(
            next("30 2 * * *", "2026-10-25T00:30:00Z", "Europe/Berlin"),
            "2026-10-26T01:30:00Z"
        );
        // Every 15 minutes across the gap: no time is skipped twice or repeated.
        let tz = time_zone(Some("Europe/Berlin")).unwrap();
        let cron = Cron::parse("*/15 * * * *").unwrap();
        let (due, more) = cron.due_between(
            ts("2026-03-29T00:40:00Z"),
            ts("2026-03-29T01:20:00Z"),
            &tz,
            100,
        );
        let due: Vec<String> = due.iter().map(ToString::to_string).collect();
        assert_eq!(
            due,
            [
                "2026-03-29T00:45:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:15:00Z"
            ]
        );
        assert!(!more);
    }

    #[test]
    fn due_between_is_bounded() {
        let cron = Cron::parse("* * * * *").unwrap();
        let (due, more) = cron.due_between(
            ts("2026-11-25T00:00:00Z"),
            ts("2026-11-25T10:00:00Z"),
            &TimeZone::UTC,
            5,
        );
        assert_eq!(due.len(), 5);
        assert!(more);
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        for (expr, want) in [
            ("* * * *", "use five"),
            ("61 * * * *", "minute field has 61, outside 0-59"),
            ("* * * FOO *", "month field has \"FOO\""),
            ("*/0 * * * *", "a step is a positive number"),
            ("5-1 * * * *", "start is after its end"),
            ("@every 5m", "unknown macro"),
        ] {
            let e = Cron::parse(expr).unwrap_err().to_string();
            assert!(e.contains(want), "{expr}: {e}");
        }
        let e = time_zone(Some("Mars/Olympus")).unwrap_err();
        assert!(e.contains("timeZone"), "{e}");
    }
}
