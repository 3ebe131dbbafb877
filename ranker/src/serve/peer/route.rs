//! The request path of peer mode: a sampled `:rank` request (shadowed after its
//! answer, or interleaved with the canary's answer) and `POST /v1/feedback`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::Active;
use super::canary::{self, CanaryFailure};
use super::config::Mode;
use super::impression::{self, HashedId, id_hash};
use super::interleave::{Team, body_seed, team_draft};
use super::metrics::Series;
use super::shadow::{self, ShadowJob};
use crate::serve::app::{App, Scored};
use crate::serve::parse::DocId;
use crate::serve::rank::StableRanking;
use crate::serve::respond::{Resp, error, json, reject, to_json};

/// Answers a sampled `:rank` request (`active` came from [`super::Peer::sample`]).
pub async fn rank(
    app: &App,
    active: Arc<Active>,
    req: Request<Incoming>,
    name: &str,
) -> (Resp, Option<Scored>) {
    let (model, body) = match app.admit(req, name, None).await {
        Ok(admitted) => admitted,
        Err(refusal) => return (refusal.into_response(), None),
    };
    if active.config.mode == Mode::Interleave {
        return interleave(app, active, model, body).await;
    }
    match app.rank_keeping(model, &body) {
        Ok((mut scored, ranking)) => {
            if let Some(queue) = &active.queue
                && !ranking.order.is_empty()
            {
                let job = ShadowJob {
                    active: active.clone(),
                    body,
                    ranking,
                };
                shadow::enqueue(queue, job);
            }
            (
                json(StatusCode::OK, std::mem::take(&mut scored.body)),
                Some(scored),
            )
        }
        Err(r) => (reject(r), None),
    }
}

async fn interleave(
    app: &App,
    active: Arc<Active>,
    model: &crate::serve::Loaded,
    body: Bytes,
) -> (Resp, Option<Scored>) {
    let Series::Interleave(series) = &active.series else {
        return (
            error(StatusCode::INTERNAL_SERVER_ERROR, "peer mode mismatch"),
            None,
        );
    };
    let config = &active.config;
    // The canary works while this pod scores: the user waits for the slower of
    // the two, not their sum.
    let call = tokio::spawn(canary::call(
        active.client.clone(),
        config.url.clone(),
        config.timeout,
        body.clone(),
        Mode::Interleave,
    ));
    let (mut scored, ranking) = match app.rank_keeping(model, &body) {
        Ok(kept) => kept,
        Err(r) => {
            call.abort();
            return (reject(r), None);
        }
    };
    let canary_ranking = match call.await {
        Ok(c) => c.ranking,
        Err(e) => Err(CanaryFailure::Error(format!("the canary call failed: {e}"))),
    };
    let merged = canary_ranking.and_then(|c| {
        let seed = body_seed(&body);
        merged_body(app, config, &ranking, &c, seed).map_err(CanaryFailure::Error)
    });
    match merged {
        Ok(merged) => {
            series.interleaved.inc();
            (json(StatusCode::OK, merged), Some(scored))
        }
        Err(failure) => {
            match failure {
                CanaryFailure::Timeout => series.timeout.inc(),
                CanaryFailure::Error(why) => {
                    tracing::debug!(url = %config.url, "interleaving failed: {why}");
                    series.canary_error.inc()
                }
            };
            (
                json(StatusCode::OK, std::mem::take(&mut scored.body)),
                Some(scored),
            )
        }
    }
}

#[derive(Serialize)]
struct InterleavedResponse<'a> {
    model: &'a str,
    version: &'a str,
    ranking: Vec<InterleavedEntry<'a>>,
    interleaving: Interleaving<'a>,
}

#[derive(Serialize)]
struct InterleavedEntry<'a> {
    id: &'a DocId,
    score: f64,
    team: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Interleaving<'a> {
    impression: String,
    stable_version: &'a str,
    canary_version: &'a str,
}

/// The interleaved response body, or why the canary's ranking cannot be merged.
fn merged_body(
    app: &App,
    config: &super::config::PeerConfig,
    stable: &StableRanking,
    canary: &[(u64, f64)],
    seed: u64,
) -> Result<Vec<u8>, String> {
    let hashes: Vec<u64> = stable.ids.iter().map(id_hash).collect();
    let canary_order = canary_documents(&hashes, &stable.order, canary)?;
    let merged = team_draft(&stable.order, &canary_order, seed);
    let shown: Vec<(u64, Team)> = merged.iter().map(|&(i, team)| (hashes[i], team)).collect();
    let response = InterleavedResponse {
        model: &app.name,
        version: &app.version,
        ranking: merged
            .iter()
            .filter_map(|&(i, team)| {
                Some(InterleavedEntry {
                    id: stable.ids.get(i)?,
                    score: *stable.scores.get(i)?,
                    team: team.as_str(),
                })
            })
            .collect(),
        interleaving: Interleaving {
            impression: impression::encode(
                &app.name,
                &config.stable_version,
                &config.canary_version,
                &shown,
            ),
            stable_version: &config.stable_version,
            canary_version: &config.canary_version,
        },
    };
    serde_json::to_vec(&response).map_err(|e| format!("encoding the response: {e}"))
}

/// The canary's order as indices into the request's documents. The canary must
/// rank exactly the request's documents; an id given twice is matched occurrence
/// by occurrence, in stable order.
fn canary_documents(
    hashes: &[u64],
    stable_order: &[usize],
    canary: &[(u64, f64)],
) -> Result<Vec<usize>, String> {
    let mut by_hash: HashMap<u64, VecDeque<usize>> = HashMap::with_capacity(hashes.len());
    for &i in stable_order {
        by_hash.entry(hashes[i]).or_default().push_back(i);
    }
    let mut order = Vec::with_capacity(hashes.len());
    for &(hash, _) in canary {
        match by_hash.get_mut(&hash).and_then(VecDeque::pop_front) {
            Some(i) => order.push(i),
            None => return Err("the canary ranked a document the request does not have".into()),
        }
    }
    if order.len() != stable_order.len() {
        return Err(format!(
            "the canary ranked {} of the request's {} documents",
            order.len(),
            stable_order.len()
        ));
    }
    Ok(order)
}

#[derive(Deserialize)]
struct Feedback {
    impression: String,
    clicks: Vec<HashedId>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FeedbackAnswer {
    winner: &'static str,
    canary_clicks: usize,
    stable_clicks: usize,
}

/// `POST /v1/feedback`: credits the clicks of one impression.
pub async fn feedback(app: &App, req: Request<Incoming>) -> Resp {
    let body = match app.read_body(req).await {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    let fb: Feedback = match serde_json::from_slice(&body) {
        Ok(fb) => fb,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "invalid feedback body: {e}; send {{\"impression\": \"i1.…\", \"clicks\": [document ids]}}"
                ),
            );
        }
    };
    let impression = match impression::decode(&app.name, &fb.impression) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let clicks: Vec<u64> = fb.clicks.iter().map(|c| c.0).collect();
    let outcome = impression::credit(&impression, &clicks);
    let winner = outcome.winner();
    let counted = app.peer.metrics.outcome(
        &impression.stable_version,
        &impression.canary_version,
        winner,
        1,
    );
    if !counted {
        tracing::warn!(
            version = %impression.stable_version,
            canary_version = %impression.canary_version,
            "feedback for one version pair too many is answered but not counted"
        );
    }
    to_json(
        StatusCode::OK,
        &FeedbackAnswer {
            winner,
            canary_clicks: outcome.canary_clicks,
            stable_clicks: outcome.stable_clicks,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canary_must_rank_exactly_the_requests_documents() {
        // Documents a, b, a (input order); stable order 2, 0, 1.
        let hashes = [10, 20, 10];
        let stable_order = [2, 0, 1];
        let canary = [(20, 0.0), (10, 0.0), (10, 0.0)];
        // The canary's first "a" is the stable's first "a" (index 2).
        assert_eq!(
            canary_documents(&hashes, &stable_order, &canary),
            Ok(vec![1, 2, 0])
        );
        let missing = [(20, 0.0), (10, 0.0)];
        assert!(
            canary_documents(&hashes, &stable_order, &missing)
                .unwrap_err()
                .contains("2 of the request's 3")
        );
        let extra = [(20, 0.0), (10, 0.0), (10, 0.0), (30, 0.0)];
        assert!(canary_documents(&hashes, &stable_order, &extra).is_err());
        let third_a = [(10, 0.0), (10, 0.0), (10, 0.0)];
        assert!(canary_documents(&hashes, &stable_order, &third_a).is_err());
    }
}
