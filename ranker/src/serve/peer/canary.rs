//! One call to the canary's `:rank`: the body as the user sent it, the
//! `x-mlctl-peer` header so the canary never forwards it again, a deadline, and
//! the answer reduced to `(id hash, score)` in the canary's order.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use super::config::Mode;
use super::impression::HashedId;

/// The header on calls to the canary; a request carrying it is never compared again.
pub const PEER_HEADER: &str = "x-mlctl-peer";

/// Why a call gave no ranking (the `result` label it counts under).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryFailure {
    /// No complete answer within `timeoutMs`.
    Timeout,
    /// Refused connection, non-200, or an answer that is not a ranking.
    Error(String),
}

/// The outcome of one call, with the answer time when an answer came.
#[derive(Debug)]
pub struct CanaryCall {
    /// `(id hash, score)` in the canary's order; a `null` score is NaN.
    pub ranking: Result<Vec<(u64, f64)>, CanaryFailure>,
    /// From sending to the end of the body, for any HTTP answer.
    pub answered_in: Option<Duration>,
}

/// The client every call shares (connections are pooled). The process-wide TLS
/// provider is ring, as for `fetch`; no proxy from the environment applies to a
/// cluster IP.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

/// Posts `body` to the canary and reads its ranking.
pub async fn call(
    client: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
    body: Bytes,
    mode: Mode,
) -> CanaryCall {
    let started = Instant::now();
    let sent = client
        .post(url)
        .timeout(timeout)
        .header(PEER_HEADER, mode.as_str())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            CanaryFailure::Timeout
        } else {
            CanaryFailure::Error(e.to_string())
        }
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return CanaryCall {
                ranking: Err(failed(e)),
                answered_in: None,
            };
        }
    };
    let status = response.status();
    let text = response.bytes().await;
    let answered_in = Some(started.elapsed());
    let ranking = match text {
        Err(e) => Err(failed(e)),
        Ok(_) if status != reqwest::StatusCode::OK => Err(CanaryFailure::Error(format!(
            "the canary answered {status}"
        ))),
        Ok(bytes) => parse_ranking(&bytes),
    };
    CanaryCall {
        ranking,
        answered_in,
    }
}

/// Reads `{"ranking": [{"id", "score"}]}`; other fields are ignored.
pub fn parse_ranking(body: &[u8]) -> Result<Vec<(u64, f64)>, CanaryFailure> {
    #[derive(Deserialize)]
    struct Answer {
        ranking: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        id: HashedId,
        score: Option<f64>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| CanaryFailure::Error(format!("the canary's answer is not a ranking: {e}")))?;
    Ok(answer
        .ranking
        .into_iter()
        .map(|e| (e.id.0, e.score.unwrap_or(f64::NAN)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::parse::DocId;
    use crate::serve::peer::impression::id_hash;

    fn h(id: DocId) -> u64 {
        id_hash(&id)
    }

    #[test]
    fn a_rank_answer_becomes_hashes_and_scores() {
        let body = br#"{"model":"m","version":"2","ranking":[{"id":"d2","score":1.5},{"id":7,"score":null},{"id":-3,"score":-1}]}"#;
        let r = parse_ranking(body).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (h(DocId::Str("d2".into())), 1.5));
        assert_eq!(r[1].0, h(DocId::UInt(7)));
        assert!(r[1].1.is_nan());
        assert_eq!(r[2], (h(DocId::Int(-3)), -1.0));
    }

    #[test]
    fn anything_else_is_a_canary_error() {
        for body in [
            &b"{}"[..],
            b"not json",
            br#"{"ranking":[{"id":1.5,"score":1}]}"#,
            br#"{"ranking":[{"score":1}]}"#,
        ] {
            let e = parse_ranking(body).unwrap_err();
            assert!(
                matches!(&e, CanaryFailure::Error(m) if m.contains("not a ranking")),
                "{e:?}"
            );
        }
    }
}
