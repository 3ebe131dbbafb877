//! Routing and handlers: the ranking API, the Open Inference Protocol v2, probes
//! and metrics. Each handler owns its request (body bytes and parsed rows), so a
//! second asynchronous call per query (shadow scoring) can be spawned from it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::engine::Scorer;

use super::infer::{self, INPUT_NAME, InferResponse, OUTPUT_NAME, OutputTensor};
use super::loaded::Loaded;
use super::metrics::{Metrics, ModelIdentity};
use super::parse::{self, Feature, Reject};
use super::peer::{self, Peer};
use super::rank::{self, RankResponse, Ranking, StableRanking};
use super::respond::{
    ErrorBody, ErrorMessage, Refusal, error, error_free_ok, json, reject, to_json,
};
use super::routes::{Route, route};

/// A scored request: the response body, the documents scored and the query id.
#[derive(Debug)]
pub struct Scored {
    /// The JSON response body.
    pub body: Vec<u8>,
    /// Documents (rows) scored.
    pub documents: usize,
    /// The `:rank` request's `query`, for the request log line.
    pub query: Option<String>,
    /// Seconds spent parsing and scoring (the rest of the handler is mostly
    /// serialization), for the request log line.
    pub parse_seconds: f64,
    /// Seconds spent in the scorer.
    pub score_seconds: f64,
}

pub use super::respond::Resp;

/// Shared server state.
#[derive(Debug)]
pub struct App {
    /// `MODEL_NAME`: the only name the model routes answer to.
    pub name: String,
    /// `MODEL_VERSION`.
    pub version: String,
    /// `MODEL_REVISION` (metrics and logs).
    pub revision: String,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Most documents per request (also in the loaded model's schema).
    pub max_documents: usize,
    /// Set once, when the model is loaded.
    model: OnceLock<Loaded>,
    /// True once a warm-up request has been scored through the request path.
    warmed: AtomicBool,
    /// True from the first SIGTERM/SIGINT on.
    draining: AtomicBool,
    /// `--inject-delay` in microseconds (fault-injection tests only; 0 = none).
    inject_delay_us: AtomicU64,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Shadow and interleave (off unless `--peer-config` applies a config).
    pub peer: Arc<Peer>,
}

/// Which scorer entry point a row type uses.
trait ScoreRows: Feature {
    fn score(scorer: &Scorer, rows: &[Self], out: &mut [f64]);
}

impl ScoreRows for f32 {
    fn score(scorer: &Scorer, rows: &[f32], out: &mut [f64]) {
        scorer.score_f32(rows, out);
    }
}

impl ScoreRows for f64 {
    fn score(scorer: &Scorer, rows: &[f64], out: &mut [f64]) {
        scorer.score_f64(rows, out);
    }
}

impl App {
    /// A server for one model, not yet loaded.
    pub fn new(
        name: String,
        version: String,
        revision: String,
        max_body_bytes: usize,
        max_documents: usize,
    ) -> App {
        let metrics = Metrics::new(&name, &version);
        let peer = Arc::new(Peer::new(&revision, metrics.peer.clone()));
        App {
            name,
            version,
            revision,
            max_body_bytes,
            max_documents,
            model: OnceLock::new(),
            warmed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            inject_delay_us: AtomicU64::new(0),
            metrics,
            peer,
        }
    }

    /// Installs the loaded model, warms it up through the request path and only
    /// then reports ready. Returns the warm-up's error, if any.
    pub fn install(&self, loaded: Loaded) -> Result<(), Reject> {
        self.metrics.set_model(&ModelIdentity {
            revision: self.revision.clone(),
            format: loaded.format.to_owned(),
            trees: loaded.trees,
            features: loaded.schema.num_features,
        });
        let model = self.model.get_or_init(|| loaded);
        // Within --max-documents, so a small limit does not fail the warm-up.
        let documents = WARMUP_DOCUMENTS.min(self.max_documents);
        let body = warmup_body(model.schema.num_features, documents);
        let scored = self.rank_bytes(model, &body)?;
        if scored.documents != documents || scored.body.is_empty() {
            return Err(Reject::BadRequest(
                "the warm-up request did not rank every document".into(),
            ));
        }
        self.warmed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Loaded and warmed, and not draining.
    pub fn is_ready(&self) -> bool {
        self.warmed.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    /// Delays every ranking and infer response by `delay` (`--inject-delay`,
    /// fault-injection tests only).
    pub fn set_inject_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inject_delay_us.store(us, Ordering::Relaxed);
    }

    /// Readiness goes false at once; requests are still served.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn loaded(&self) -> Option<&Loaded> {
        if self.warmed.load(Ordering::SeqCst) {
            self.model.get()
        } else {
            None
        }
    }

    /// Parses, scores and serializes a `:rank` body: the whole request path after
    /// the body is read. Returns the response body and the number of documents.
    pub fn rank_bytes(&self, model: &Loaded, body: &[u8]) -> Result<Scored, Reject> {
        self.rank_any(model, body, false).map(|(scored, _)| scored)
    }

    /// As [`App::rank_bytes`], and keeps the ranking for the peer comparison.
    pub(super) fn rank_keeping(
        &self,
        model: &Loaded,
        body: &[u8],
    ) -> Result<(Scored, StableRanking), Reject> {
        self.rank_any(model, body, true)
            .map(|(scored, kept)| (scored, kept.unwrap_or_default()))
    }

    fn rank_any(
        &self,
        model: &Loaded,
        body: &[u8],
        keep: bool,
    ) -> Result<(Scored, Option<StableRanking>), Reject> {
        if model.f64_rows {
            self.rank_typed::<f64>(model, body, keep)
        } else {
            self.rank_typed::<f32>(model, body, keep)
        }
    }

    fn rank_typed<T: ScoreRows>(
        &self,
        model: &Loaded,
        body: &[u8],
        keep: bool,
    ) -> Result<(Scored, Option<StableRanking>), Reject> {
        let started = Instant::now();
        let req = parse::parse_rank::<T>(body, &model.schema)?;
        let parsed = Instant::now();
        let mut scores = vec![0.0f64; req.ids.len()];
        T::score(&model.scorer, &req.rows, &mut scores);
        let scored = Instant::now();
        let order = rank::order(&scores);
        let resp = RankResponse {
            model: &self.name,
            version: &self.version,
            ranking: Ranking {
                ids: &req.ids,
                scores: &scores,
                order: &order,
            },
        };
        // About 40 bytes per ranked document.
        let mut out = Vec::with_capacity(64 + 48 * req.ids.len());
        serde_json::to_writer(&mut out, &resp)
            .map_err(|e| Reject::BadRequest(format!("encoding the response: {e}")))?;
        let scored = Scored {
            body: out,
            documents: req.ids.len(),
            query: req.query,
            parse_seconds: (parsed - started).as_secs_f64(),
            score_seconds: (scored - parsed).as_secs_f64(),
        };
        // Moves, no copy: the buffers are dropped here otherwise.
        let kept = keep.then_some(StableRanking {
            ids: req.ids,
            scores,
            order,
        });
        Ok((scored, kept))
    }

    fn infer_bytes(&self, model: &Loaded, body: &[u8]) -> Result<Scored, Reject> {
        if model.f64_rows {
            self.infer_typed::<f64>(model, body)
        } else {
            self.infer_typed::<f32>(model, body)
        }
    }

    fn infer_typed<T: ScoreRows>(&self, model: &Loaded, body: &[u8]) -> Result<Scored, Reject> {
        let started = Instant::now();
        let req = infer::parse_infer::<T>(body, &model.schema)?;
        let parsed = Instant::now();
        let mut scores = vec![0.0f64; req.num_rows];
        T::score(&model.scorer, &req.rows, &mut scores);
        let scored = Instant::now();
        let resp = InferResponse {
            model_name: &self.name,
            model_version: &self.version,
            id: req.id.as_deref(),
            outputs: [OutputTensor {
                name: OUTPUT_NAME,
                datatype: "FP64",
                shape: [req.num_rows],
                data: &scores,
            }],
        };
        let mut out = Vec::with_capacity(128 + 24 * req.num_rows);
        serde_json::to_writer(&mut out, &resp)
            .map_err(|e| Reject::BadRequest(format!("encoding the response: {e}")))?;
        Ok(Scored {
            body: out,
            documents: req.num_rows,
            query: req.id,
            parse_seconds: (parsed - started).as_secs_f64(),
            score_seconds: (scored - parsed).as_secs_f64(),
        })
    }

    /// Checks the requested model name (and version) against the served one.
    fn check_model(&self, name: &str, version: Option<&str>) -> Result<(), Refusal> {
        if name != self.name {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                &format!(
                    "model {name:?} is not served here; this server serves {:?}",
                    self.name
                ),
            ));
        }
        if let Some(v) = version
            && v != self.version
        {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                &format!(
                    "version {v:?} of model {name:?} is not served here; this server serves version {:?}",
                    self.version
                ),
            ));
        }
        Ok(())
    }

    fn model_or_503(&self) -> Result<&Loaded, Refusal> {
        self.loaded().ok_or_else(|| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is still loading; retry when /ready answers 200",
            )
        })
    }

    pub(super) async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, Refusal> {
        let max = self.max_body_bytes;
        let too_large = || {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "request body over {max} bytes (the server's --max-body-bytes); split the request"
                ),
            )
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        match Limited::new(req.into_body(), max).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
            )),
        }
    }

    /// The checks before scoring: the model name and version, a loaded model,
    /// and the body within the limits.
    pub(super) async fn admit(
        &self,
        req: Request<Incoming>,
        name: &str,
        version: Option<&str>,
    ) -> Result<(&Loaded, Bytes), Refusal> {
        self.check_model(name, version)?;
        let model = self.model_or_503()?;
        Ok((model, self.read_body(req).await?))
    }

    /// Handles `POST /v1/models/{name}:rank` and `POST /v2/models/{name}/infer`.
    async fn score_route(
        &self,
        req: Request<Incoming>,
        name: &str,
        version: Option<&str>,
        infer: bool,
    ) -> (Resp, Option<Scored>) {
        let (model, body) = match self.admit(req, name, version).await {
            Ok(admitted) => admitted,
            Err(refusal) => return (refusal.into_response(), None),
        };
        // Scored on this task: one request uses one core, and a second task per
        // request would only add a hand-off to the latency (see docs).
        let outcome = if infer {
            self.infer_bytes(model, &body)
        } else {
            self.rank_bytes(model, &body)
        };
        match outcome {
            Ok(mut scored) => (
                json(StatusCode::OK, std::mem::take(&mut scored.body)),
                Some(scored),
            ),
            Err(r) => (reject(r), None),
        }
    }

    fn metadata(&self, name: &str, version: Option<&str>) -> Resp {
        if let Err(r) = self.check_model(name, version) {
            return r.into_response();
        }
        let model = match self.model_or_503() {
            Ok(m) => m,
            Err(r) => return r.into_response(),
        };
        let f = model.schema.num_features as i64;
        let input_type = if model.f64_rows { "FP64" } else { "FP32" };
        let body = serde_json::json!({
            "name": self.name,
            "versions": [self.version],
            "platform": model.format,
            "inputs": [{"name": INPUT_NAME, "datatype": input_type, "shape": [-1, f]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP64", "shape": [-1]}],
        });
        to_json(StatusCode::OK, &body)
    }

    fn readiness(&self, v2: bool) -> Resp {
        if self.is_ready() {
            return if v2 {
                to_json(StatusCode::OK, &serde_json::json!({"ready": true}))
            } else {
                error_free_ok()
            };
        }
        let why = if self.draining.load(Ordering::SeqCst) {
            "draining: the server is shutting down"
        } else {
            "loading the model"
        };
        error(StatusCode::SERVICE_UNAVAILABLE, why)
    }
}

/// Documents in the warm-up request.
const WARMUP_DOCUMENTS: usize = 4;

/// A small `:rank` body with every feature present (zeros) and missing (null).
fn warmup_body(num_features: usize, documents: usize) -> Vec<u8> {
    let mut s = String::from("{\"query\":\"warm-up\",\"documents\":[");
    for d in 0..documents {
        if d > 0 {
            s.push(',');
        }
        s.push_str(&format!("{{\"id\":\"warm-up-{d}\",\"features\":["));
        for i in 0..num_features {
            if i > 0 {
                s.push(',');
            }
            s.push_str(if d % 2 == 0 { "0" } else { "null" });
        }
        s.push_str("]}");
    }
    s.push_str("]}");
    s.into_bytes()
}

/// Serves one request; never fails (errors are responses).
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = route(&path);
    let mut scored: Option<Scored> = None;
    let mut resp = if route == Route::NotFound {
        error(
            StatusCode::NOT_FOUND,
            &format!("no route {path}; see /v1/models/{}:rank", app.name),
        )
    } else if method != route.method() {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} {path}: use {}", route.method()),
        );
        let allow = if route.method() == Method::POST {
            "POST"
        } else {
            "GET"
        };
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        r
    } else {
        match &route {
            Route::Healthz => error_free_ok(),
            Route::V2Live => to_json(StatusCode::OK, &serde_json::json!({"live": true})),
            Route::Ready => app.readiness(false),
            Route::V2Ready => app.readiness(true),
            Route::Metrics => match app.metrics.encode() {
                Ok(text) => {
                    let mut r = Response::new(Full::new(Bytes::from(text)));
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    r
                }
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("encoding metrics: {e}"),
                ),
            },
            Route::V2Server => to_json(
                StatusCode::OK,
                &serde_json::json!({
                    "name": "mlctl-ranker",
                    "version": env!("CARGO_PKG_VERSION"),
                    "extensions": [],
                }),
            ),
            Route::ModelMetadata(name, version) => app.metadata(name, *version),
            Route::ModelReady(name, version) => match app.check_model(name, *version) {
                Err(r) => r.into_response(),
                Ok(()) => app.readiness(true),
            },
            Route::Rank(name) => {
                // Off, this is one atomic load; sampled requests take the peer path.
                let (r, s) = match app.peer.sample(req.headers()) {
                    None => app.score_route(req, name, None, false).await,
                    Some(active) => peer::rank(&app, active, req, name).await,
                };
                scored = s;
                r
            }
            Route::Feedback => peer::feedback(&app, req).await,
            Route::Infer(name, version) => {
                let (r, s) = app.score_route(req, name, *version, true).await;
                scored = s;
                r
            }
            Route::NotFound => error(StatusCode::NOT_FOUND, "not found"),
        }
    };
    if let Some(ErrorMessage(message)) = resp.extensions_mut().remove::<ErrorMessage>() {
        let body = ErrorBody {
            error: &message,
            model: Some(&app.name),
            version: Some(&app.version),
        };
        *resp.body_mut() = Full::new(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()));
    }
    let delay_us = app.inject_delay_us.load(Ordering::Relaxed);
    if delay_us > 0 && route.counted() {
        tokio::time::sleep(Duration::from_micros(delay_us)).await;
    }
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let documents = scored.as_ref().map_or(0, |s| s.documents);
    if route.counted() {
        app.metrics.observe(status, elapsed, documents);
    }
    if app.draining.load(Ordering::SeqCst) {
        // Clients with kept-alive connections reconnect, and reach a pod that is
        // not going away.
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    tracing::debug!(
        %method,
        %path,
        status,
        documents,
        query = scored.as_ref().and_then(|s| s.query.as_deref()).unwrap_or(""),
        ms = elapsed.as_secs_f64() * 1e3,
        parse_ms = scored.as_ref().map_or(0.0, |s| s.parse_seconds * 1e3),
        score_ms = scored.as_ref().map_or(0.0, |s| s.score_seconds * 1e3),
        "request"
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_body_parses() {
        let schema = parse::Schema::new(3, vec![], 10);
        let req = parse::parse_rank::<f32>(&warmup_body(3, WARMUP_DOCUMENTS), &schema).unwrap();
        assert_eq!(req.ids.len(), WARMUP_DOCUMENTS);
        assert_eq!(req.rows[..3], [0.0, 0.0, 0.0]);
        assert!(req.rows[3..6].iter().all(|v| v.is_nan()));
    }
}
