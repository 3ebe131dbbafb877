//! `peer.json` (docs/runtime-contract.md, "Comparing with the canary"): parsed and
//! validated without I/O, so every rule of the contract's table is a unit test.
//! Anything wrong means `off`, with a reason the watcher logs once per change.

use std::time::Duration;

use serde::Deserialize;

/// What this pod does with the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Score, answer, then compare with the canary in the background.
    Shadow,
    /// Merge the stable and canary rankings into the response.
    Interleave,
}

impl Mode {
    /// The `mode` value (and the `mode` metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Interleave => "interleave",
        }
    }
}

/// A valid shadow or interleave config.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    /// Shadow or interleave.
    pub mode: Mode,
    /// The stable revision the config is for (`from`).
    pub from: String,
    /// `version` label of the peer metrics.
    pub stable_version: String,
    /// `canary_version` label of the peer metrics.
    pub canary_version: String,
    /// The canary's `:rank` URL.
    pub url: reqwest::Url,
    /// Percent of `:rank` requests compared, 1–100.
    pub sample: u32,
    /// Cut-off of the `@k` measures, 1–1000.
    pub k: usize,
    /// Bound on one call to the canary.
    pub timeout: Duration,
}

/// What a `peer.json` means for a pod of one revision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// `mode: off`, or no file.
    Off,
    /// The file cannot be used; the pod is off and logs the reason.
    Invalid(String),
    /// A valid config for another revision (the canary's own pods).
    OtherRevision {
        /// The config's `from`.
        from: String,
    },
    /// This pod compares with the canary.
    Active(PeerConfig),
}

/// The file as written, every field optional so that a missing one is named.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    mode: Option<String>,
    from: Option<String>,
    stable_version: Option<String>,
    canary_version: Option<String>,
    url: Option<String>,
    sample: Option<u64>,
    k: Option<u64>,
    timeout_ms: Option<u64>,
}

/// `k` when the file does not give it.
pub const DEFAULT_K: usize = 10;

/// The longest version accepted: the impression id stores each with a one-byte
/// length, and a Kubernetes label value is at most 63 characters anyway.
pub const MAX_VERSION_BYTES: usize = 128;

/// Decides what `contents` (None: no file) means for a pod of `revision`.
pub fn decide(contents: Option<&[u8]>, revision: &str) -> Decision {
    let Some(bytes) = contents else {
        return Decision::Off;
    };
    match validate(bytes) {
        Ok(None) => Decision::Off,
        Ok(Some(config)) if config.from != revision => {
            Decision::OtherRevision { from: config.from }
        }
        Ok(Some(config)) => Decision::Active(config),
        Err(why) => Decision::Invalid(why),
    }
}

/// Parses and checks a config: `Ok(None)` for `mode: off`.
fn validate(bytes: &[u8]) -> Result<Option<PeerConfig>, String> {
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("not a peer config: {e}"))?;
    let mode = match raw.mode.as_deref() {
        Some("off") => return Ok(None),
        Some("shadow") => Mode::Shadow,
        Some("interleave") => Mode::Interleave,
        Some(other) => {
            return Err(format!(
                "unknown mode {other:?}; expected off, shadow or interleave"
            ));
        }
        None => return Err("\"mode\" is missing".into()),
    };
    let from = required(raw.from, "from")?;
    let stable_version = version(raw.stable_version, "stableVersion")?;
    let canary_version = version(raw.canary_version, "canaryVersion")?;
    let url = canary_url(&required(raw.url, "url")?)?;
    let sample = in_range(raw.sample, "sample", 1, 100)?;
    let k = match raw.k {
        None => DEFAULT_K as u64,
        Some(_) => in_range(raw.k, "k", 1, 1000)?,
    };
    let timeout_ms = in_range(raw.timeout_ms, "timeoutMs", 1, 60_000)?;
    Ok(Some(PeerConfig {
        mode,
        from,
        stable_version,
        canary_version,
        url,
        sample: u32::try_from(sample).map_err(|e| e.to_string())?,
        k: usize::try_from(k).map_err(|e| e.to_string())?,
        timeout: Duration::from_millis(timeout_ms),
    }))
}

fn required(value: Option<String>, field: &str) -> Result<String, String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("\"{field}\" is missing or empty")),
    }
}

fn version(value: Option<String>, field: &str) -> Result<String, String> {
    let v = required(value, field)?;
    if v.len() > MAX_VERSION_BYTES {
        return Err(format!(
            "\"{field}\" is {} bytes long; at most {MAX_VERSION_BYTES}",
            v.len()
        ));
    }
    Ok(v)
}

fn in_range(value: Option<u64>, field: &str, min: u64, max: u64) -> Result<u64, String> {
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(format!("\"{field}\" is {v}; it must be {min}–{max}")),
        None => Err(format!("\"{field}\" is missing")),
    }
}

fn canary_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("\"url\" {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "\"url\" {text:?} is not an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHADOW: &str = include_str!("../../../../docs/contracts/peer-shadow.json");
    const INTERLEAVE: &str = include_str!("../../../../docs/contracts/peer-interleave.json");
    const OFF: &str = include_str!("../../../../docs/contracts/peer-off.json");

    fn active(text: &str) -> PeerConfig {
        match decide(Some(text.as_bytes()), "5f0c2a9d1e") {
            Decision::Active(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn invalid(text: &str) -> String {
        match decide(Some(text.as_bytes()), "r") {
            Decision::Invalid(why) => why,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn the_contract_fixtures_parse() {
        let shadow = active(SHADOW);
        assert_eq!(shadow.mode, Mode::Shadow);
        assert_eq!(shadow.from, "5f0c2a9d1e");
        assert_eq!(
            (
                shadow.stable_version.as_str(),
                shadow.canary_version.as_str()
            ),
            ("2026-11-20.1", "2026-11-27.2")
        );
        assert_eq!(
            shadow.url.as_str(),
            "http://10.96.14.7/v1/models/search-ranker:rank"
        );
        assert_eq!((shadow.sample, shadow.k), (20, 10));
        assert_eq!(shadow.timeout, Duration::from_secs(1));
        let interleave = active(INTERLEAVE);
        assert_eq!(interleave.mode, Mode::Interleave);
        assert_eq!(interleave.sample, 10);
        assert_eq!(interleave.timeout, Duration::from_millis(250));
        assert_eq!(decide(Some(OFF.as_bytes()), "5f0c2a9d1e"), Decision::Off);
    }

    #[test]
    fn only_the_from_revision_acts() {
        assert_eq!(
            decide(Some(SHADOW.as_bytes()), "canary-rev"),
            Decision::OtherRevision {
                from: "5f0c2a9d1e".into()
            }
        );
        // A pod without MODEL_REVISION never matches (`from` cannot be empty).
        assert!(matches!(
            decide(Some(SHADOW.as_bytes()), ""),
            Decision::OtherRevision { .. }
        ));
        assert_eq!(decide(None, "5f0c2a9d1e"), Decision::Off);
    }

    #[test]
    fn k_defaults_to_10_and_unknown_fields_are_ignored() {
        let text = SHADOW
            .replace("\"k\": 10,", "\"futureField\": {\"x\": 1},")
            .replace("http://10.96.14.7:80", "https://canary.example:8443");
        let c = active(&text);
        assert_eq!(c.k, DEFAULT_K);
        assert_eq!(c.url.port(), Some(8443));
    }

    #[test]
    fn every_rule_of_the_table_refuses_with_a_reason() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "\"mode\": \"shadow\"",
                "\"mode\": \"canary\"",
                "unknown mode \"canary\"",
            ),
            ("\"mode\": \"shadow\",", "", "\"mode\" is missing"),
            ("\"from\": \"5f0c2a9d1e\",", "", "\"from\" is missing"),
            (
                "\"from\": \"5f0c2a9d1e\"",
                "\"from\": \"\"",
                "\"from\" is missing or empty",
            ),
            (
                "\"stableVersion\": \"2026-11-20.1\",",
                "",
                "\"stableVersion\"",
            ),
            (
                "\"canaryVersion\": \"2026-11-27.2\",",
                "",
                "\"canaryVersion\"",
            ),
            (
                "\"sample\": 20",
                "\"sample\": 0",
                "\"sample\" is 0; it must be 1–100",
            ),
            ("\"sample\": 20", "\"sample\": 101", "\"sample\" is 101"),
            ("\"sample\": 20", "\"sample\": 20.5", "not a peer config"),
            ("\"sample\": 20,", "", "\"sample\" is missing"),
            ("\"k\": 10", "\"k\": 0", "\"k\" is 0; it must be 1–1000"),
            ("\"k\": 10", "\"k\": 1001", "\"k\" is 1001"),
            (
                "\"timeoutMs\": 1000",
                "\"timeoutMs\": 0",
                "\"timeoutMs\" is 0",
            ),
            (
                "\"timeoutMs\": 1000",
                "\"timeoutMs\": 60001",
                "\"timeoutMs\" is 60001",
            ),
            (
                "\"timeoutMs\": 1000",
                "\"timeoutMs\": -5",
                "not a peer config",
            ),
            (
                "http://10.96.14.7:80",
                "ftp://10.96.14.7:80",
                "not an http:// or https://",
            ),
            ("http://10.96.14.7:80", "not a url", "\"url\""),
        ];
        for (from, to, want) in cases {
            assert!(SHADOW.contains(from), "{from}");
            let why = invalid(&SHADOW.replace(from, to));
            assert!(why.contains(want), "{from} → {to}: {why}");
        }
        let long = format!("\"stableVersion\": \"{}\"", "v".repeat(129));
        assert!(
            invalid(&SHADOW.replace("\"stableVersion\": \"2026-11-20.1\"", &long))
                .contains("at most 128")
        );
        assert!(invalid("{").contains("not a peer config"));
        assert!(invalid("[]").contains("not a peer config"));
        assert!(invalid("").contains("not a peer config"));
    }

    #[test]
    fn boundaries_are_inclusive() {
        let text = SHADOW
            .replace("\"sample\": 20", "\"sample\": 100")
            .replace("\"k\": 10", "\"k\": 1000")
            .replace("\"timeoutMs\": 1000", "\"timeoutMs\": 60000");
        let c = active(&text);
        assert_eq!(
            (c.sample, c.k, c.timeout),
            (100, 1000, Duration::from_secs(60))
        );
        let text = SHADOW
            .replace("\"sample\": 20", "\"sample\": 1")
            .replace("\"k\": 10", "\"k\": 1")
            .replace("\"timeoutMs\": 1000", "\"timeoutMs\": 1");
        let c = active(&text);
        assert_eq!((c.sample, c.k, c.timeout), (1, 1, Duration::from_millis(1)));
    }
}
