//! Client-side rate limits with priority, a tower layer in the controllers'
//! kube client (like client-go's QPS/burst, but by class).
//!
//! A storm of events (10,000 models created at once, a relist after an API
//! server restart) makes thousands of reconciles want to write at once; the
//! API server's priority-and-fairness queues all of one client's requests in
//! one flow. Here each class has its own token bucket, so status writes —
//! what users and `mlctl wait` read — never queue behind child applies, and
//! Events (the least urgent) never take the applies' budget:
//!
//! | class  | requests                                  | budget            |
//! |--------|-------------------------------------------|-------------------|
//! | watch  | `?watch=true` (long-running)              | unlimited         |
//! | status | PATCH/PUT of a `/status` subresource      | qps, burst        |
//! | events | anything under `/events`                  | qps/4, burst/4    |
//! | other  | applies, deletes, GETs, LISTs             | qps, burst        |
//!
//! A bucket reserves a slot for every request (the wait is `deficit / qps`),
//! so requests of one class leave in the order they came.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use std::task::{Context, Poll};
use std::time::Duration;
use tower::buffer::Buffer;

use http::{Method, Request};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// The request classes, each with its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Watches: long-running, never limited.
    Watch,
    /// Status subresource writes.
    Status,
    /// Event writes.
    Events,
    /// Everything else.
    Other,
}

impl Class {
    /// The class of a request.
    pub fn of<B>(request: &Request<B>) -> Class {
        let uri = request.uri();
        let path = uri.path();
        let query = uri.query().unwrap_or("");
        if request.method() == Method::GET
            && query
                .split('&')
                .any(|p| p == "watch=true" || p == "watch=1")
        {
            Class::Watch
        } else if is_events(path) {
            Class::Events
        } else if matches!(*request.method(), Method::PATCH | Method::PUT)
            && path.ends_with("/status")
        {
            Class::Status
        } else {
            Class::Other
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::Watch => "watch",
            Class::Status => "status",
            Class::Events => "events",
            Class::Other => "other",
        }
    }
}

/// Whether `path` names Events (core or events.k8s.io), whatever the
/// namespace is called.
fn is_events(path: &str) -> bool {
    if path.starts_with("/apis/events.k8s.io/") {
        return true;
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    let mut segments = rest.split('/');
    match segments.next() {
        Some("namespaces") => {
            let _namespace = segments.next();
            segments.next() == Some("events")
        }
        first => first == Some("events"),
    }
}

/// A token bucket that reserves: every request takes a token now, and waits
/// for as long as the bucket is in deficit.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(qps: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        Bucket {
            rate: qps.max(0.001),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token; returns how long the caller must wait for it.
    fn reserve(&self, now: Instant) -> Duration {
        let Ok(mut state) = self.state.lock() else {
            return Duration::ZERO;
        };
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.burst);
        let left = refilled - 1.0;
        *state = (left, now.max(last));
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        }
    }
}

/// Label of the throttling counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// Request class.
    pub class: String,
}

/// The budgets of one client. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Limits {
    status: Arc<Bucket>,
    events: Arc<Bucket>,
    other: Arc<Bucket>,
    waited: Family<ClassLabels, Counter<f64>>,
}

impl Limits {
    /// `qps` requests per second per class (events a quarter), bursts of
    /// `burst`.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst);
        Limits {
            status: Arc::new(Bucket::new(qps, burst)),
            events: Arc::new(Bucket::new(qps / 4.0, burst / 4.0)),
            other: Arc::new(Bucket::new(qps, burst)),
            waited: Family::default(),
        }
    }

    /// Seconds requests waited for their budget, by class (registered as
    /// `mlctl_client_throttled_seconds_total`).
    pub fn waited(&self) -> Family<ClassLabels, Counter<f64>> {
        self.waited.clone()
    }

    /// How long a request of `class` starting at `now` waits.
    pub fn reserve(&self, class: Class, now: Instant) -> Duration {
        let bucket = match class {
            Class::Watch => return Duration::ZERO,
            Class::Status => &self.status,
            Class::Events => &self.events,
            Class::Other => &self.other,
        };
        let wait = bucket.reserve(now);
        if !wait.is_zero() {
            self.waited
                .get_or_create(&ClassLabels {
                    class: class.label().to_string(),
                })
                .inc_by(wait.as_secs_f64());
        }
        wait
    }
}

/// Tower layer putting [`Limits`] in front of a kube client's service.
#[derive(Clone, Debug)]
pub struct ThrottleLayer {
    limits: Limits,
}

impl ThrottleLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        ThrottleLayer { limits }
    }
}

type KubeRequest = Request<kube::client::Body>;

impl<S> Layer<S> for ThrottleLayer
where
    S: Service<KubeRequest> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync + 'static,
    S::Response: Send + 'static,
{
    type Service = Throttled<Buffer<KubeRequest, S::Future>>;

    fn layer(&self, inner: S) -> Self::Service {
        // kube's inner stack is a boxed service, not `Clone`: a buffer (a
        // task owning it, fed by a queue) makes it one, so a delayed request
        // can be dispatched later by a clone.
        Throttled {
            inner: Buffer::new(inner, 1024),
            limits: self.limits.clone(),
        }
    }
}

/// The service [`ThrottleLayer`] builds.
#[derive(Clone, Debug)]
pub struct Throttled<S> {
    inner: S,
    limits: Limits,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<Request<B>> for Throttled<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let wait = self.limits.reserve(Class::of(&request), Instant::now());
        if wait.is_zero() {
            let response = self.inner.call(request);
            return Box::pin(async move { response.await.map_err(Into::into) });
        }
        // The service polled ready is the one to call: take it along and
        // leave a fresh clone behind (tower's pattern for delayed calls).
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            ready.call(request).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("request")
    }

    #[test]
    fn requests_are_classified() {
        let ns = "/apis/mlctl.io/v1alpha1/namespaces/a/rankingmodels";
        assert_eq!(
            Class::of(&request(
                Method::GET,
                &format!("{ns}?watch=true&resourceVersion=1")
            )),
            Class::Watch
        );
        assert_eq!(
            Class::of(&request(Method::PATCH, &format!("{ns}/m/status"))),
            Class::Status
        );
        assert_eq!(
            Class::of(&request(Method::PATCH, &format!("{ns}/m"))),
            Class::Other
        );
        assert_eq!(
            Class::of(&request(Method::GET, &format!("{ns}?labelSelector=x"))),
            Class::Other
        );
        assert_eq!(
            Class::of(&request(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/a/events"
            )),
            Class::Events
        );
        assert_eq!(
            Class::of(&request(Method::POST, "/api/v1/namespaces/a/events")),
            Class::Events
        );
        // A namespace called `events` is not an Event.
        assert_eq!(
            Class::of(&request(
                Method::PATCH,
                "/api/v1/namespaces/events/services/s"
            )),
            Class::Other
        );
        // A GET of a status subresource is a read like any other.
        assert_eq!(
            Class::of(&request(Method::GET, &format!("{ns}/m/status"))),
            Class::Other
        );
    }

    #[test]
    fn a_burst_passes_then_requests_are_spaced_by_the_rate() {
        let limits = Limits::new(10.0, 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limits.reserve(Class::Other, t0), Duration::ZERO);
        }
        // The sixth waits one interval, the seventh two (reservations queue).
        let sixth = limits.reserve(Class::Other, t0);
        let seventh = limits.reserve(Class::Other, t0);
        assert!((sixth.as_secs_f64() - 0.1).abs() < 1e-6, "{sixth:?}");
        assert!((seventh.as_secs_f64() - 0.2).abs() < 1e-6, "{seventh:?}");
        // A second later the bucket has refilled by ten (minus the debt).
        let later = t0 + Duration::from_secs(1);
        assert_eq!(limits.reserve(Class::Other, later), Duration::ZERO);
    }

    #[test]
    fn a_storm_of_applies_does_not_delay_status_writes_or_watches() {
        let limits = Limits::new(10.0, 5);
        let t0 = Instant::now();
        let mut last = Duration::ZERO;
        for _ in 0..1_000 {
            last = limits.reserve(Class::Other, t0);
        }
        assert!(last > Duration::from_secs(90), "{last:?}");
        assert_eq!(limits.reserve(Class::Status, t0), Duration::ZERO);
        assert_eq!(limits.reserve(Class::Watch, t0), Duration::ZERO);
        // Events have their own, smaller budget: a storm of them waits for
        // itself only.
        let mut events = Duration::ZERO;
        for _ in 0..10 {
            events = limits.reserve(Class::Events, t0);
        }
        assert!(events > Duration::from_secs(2), "{events:?}");
        assert_eq!(limits.reserve(Class::Status, t0), Duration::ZERO);
    }
}
