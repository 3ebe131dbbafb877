//! The write fence: a deadline until which this process may write, kept by
//! the elector, and a tower layer in the controllers' kube client that refuses
//! every non-read request once it has passed. It sits below the controllers,
//! so no status patch, apply, delete or Event can get out after leadership
//! lapsed, whatever the controllers are doing when it does.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{Method, Request};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// Never opened, or lapsed and stepped down from: no deadline.
const CLOSED: u64 = 0;
/// Stepped down for good: the fence never opens again in this process.
const REVOKED: u64 = u64::MAX;

/// Label of the refused-writes counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// HTTP method of the refused request.
    pub method: String,
}

/// Shared deadline of the right to write. Cloning shares it.
#[derive(Clone)]
pub struct Fence {
    inner: Arc<FenceState>,
}

struct FenceState {
    /// Deadlines are stored as nanoseconds since this instant, so that one
    /// atomic holds them and the check on every request takes no lock.
    epoch: Instant,
    valid_until: AtomicU64,
    refused: Family<MethodLabels, Counter>,
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fence")
            .field("valid_until", &self.valid_until())
            .finish()
    }
}

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

impl Fence {
    /// A closed fence: nothing may write until the elector opens it.
    pub fn new() -> Self {
        Fence {
            inner: Arc::new(FenceState {
                epoch: Instant::now(),
                valid_until: AtomicU64::new(CLOSED),
                refused: Family::default(),
            }),
        }
    }

    fn to_nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.inner.epoch).as_nanos();
        u64::try_from(nanos)
            .unwrap_or(REVOKED - 1)
            .clamp(1, REVOKED - 1)
    }

    /// Allows writes until `deadline` (never moves an earlier deadline back,
    /// never reopens a revoked fence).
    pub fn open_until(&self, deadline: Instant) {
        let new = self.to_nanos(deadline);
        let _ =
            self.inner
                .valid_until
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                    (current != REVOKED && new > current).then_some(new)
                });
    }

    /// Closes the fence for the rest of the process's life.
    pub fn revoke(&self) {
        self.inner.valid_until.store(REVOKED, Ordering::SeqCst);
    }

    /// The current deadline; `None` when never opened or revoked.
    pub fn valid_until(&self) -> Option<Instant> {
        match self.inner.valid_until.load(Ordering::SeqCst) {
            CLOSED | REVOKED => None,
            nanos => Some(self.inner.epoch + std::time::Duration::from_nanos(nanos)),
        }
    }

    /// The deadline when a write may start now.
    pub fn permit(&self) -> Option<Instant> {
        self.valid_until().filter(|until| Instant::now() < *until)
    }

    /// Whether a write may start now.
    pub fn is_open(&self) -> bool {
        self.permit().is_some()
    }

    /// Refused writes by HTTP method (registered as
    /// `mlctl_fenced_writes_total`).
    pub fn refused_writes(&self) -> Family<MethodLabels, Counter> {
        self.inner.refused.clone()
    }

    fn count_refusal(&self, method: &Method) {
        self.inner
            .refused
            .get_or_create(&MethodLabels {
                method: method.as_str().to_string(),
            })
            .inc();
    }
}

/// A write the fence refused, or one still unanswered when leadership lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedWrite {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Whether the request had been handed to the transport (and was then
    /// abandoned at the deadline) rather than refused before sending.
    pub in_flight: bool,
}

impl fmt::Display for FencedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.in_flight {
            "abandoned unanswered"
        } else {
            "refused"
        };
        write!(
            f,
            "{} {} {what}: this process no longer holds a valid leader lease",
            self.method, self.path
        )
    }
}

impl std::error::Error for FencedWrite {}

/// Whether a request changes something (reads and watches are always allowed:
/// a standby keeps its caches warm).
fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Tower layer that puts a [`Fence`] in front of a kube client's service.
#[derive(Clone, Debug)]
pub struct FenceLayer {
    fence: Fence,
}

impl FenceLayer {
    /// A layer checking `fence`.
    pub fn new(fence: Fence) -> Self {
        FenceLayer { fence }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = FencedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FencedService {
            inner,
            fence: self.fence.clone(),
        }
    }
}

/// The service [`FenceLayer`] builds.
#[derive(Clone, Debug)]
pub struct FencedService<S> {
    inner: S,
    fence: Fence,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<Request<B>> for FencedService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !is_write(request.method()) {
            let response = self.inner.call(request);
            return Box::pin(async move { response.await.map_err(Into::into) });
        }
        let refusal = |in_flight| FencedWrite {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            in_flight,
        };
        let Some(deadline) = self.fence.permit() else {
            self.fence.count_refusal(request.method());
            let refused = refusal(false);
            return Box::pin(async move { Err(Box::new(refused) as BoxError) });
        };
        // A write not answered by the deadline is dropped: one still queued in
        // the connection pool is then never sent. One already on the wire may
        // land; it started while leadership was valid, and the margin between
        // renew deadline and lease duration covers its delivery.
        let abandoned = refusal(true);
        let response = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, response).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(abandoned) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts the requests that reach it and answers each after `delay`.
    #[derive(Clone)]
    struct Recording {
        sent: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl Service<Request<()>> for Recording {
        type Response = &'static str;
        type Error = Infallible;
        type Future = BoxFuture<Result<&'static str, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            self.sent.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok("sent")
            })
        }
    }

    fn fenced(fence: &Fence, delay: Duration) -> (FencedService<Recording>, Arc<AtomicUsize>) {
        let sent = Arc::new(AtomicUsize::new(0));
        let service = FenceLayer::new(fence.clone()).layer(Recording {
            sent: sent.clone(),
            delay,
        });
        (service, sent)
    }

    async fn send(
        service: &mut FencedService<Recording>,
        method: Method,
    ) -> Result<&'static str, BoxError> {
        futures::future::poll_fn(|cx| service.poll_ready(cx)).await?;
        let request = Request::builder()
            .method(method)
            .uri("/apis/mlctl.io/v1alpha1/namespaces/a/rankingmodels/m/status")
            .body(())
            .map_err(|e| Box::new(e) as BoxError)?;
        service.call(request).await
    }

    fn refused(result: Result<&'static str, BoxError>) -> FencedWrite {
        let error = result.expect_err("the fence must refuse");
        error
            .downcast_ref::<FencedWrite>()
            .cloned()
            .expect("a FencedWrite error")
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_fence_refuses_writes_without_sending_and_lets_reads_through() {
        let fence = Fence::new();
        let (mut service, sent) = fenced(&fence, Duration::ZERO);
        for method in [Method::PATCH, Method::POST, Method::DELETE, Method::PUT] {
            let error = refused(send(&mut service, method.clone()).await);
            assert_eq!(error.method, method.as_str());
            assert!(!error.in_flight);
        }
        assert_eq!(sent.load(Ordering::SeqCst), 0, "no write reached the API");
        assert_eq!(send(&mut service, Method::GET).await.ok(), Some("sent"));
        assert_eq!(sent.load(Ordering::SeqCst), 1);
        let patches = fence
            .refused_writes()
            .get_or_create(&MethodLabels {
                method: "PATCH".into(),
            })
            .get();
        assert_eq!(patches, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_fence_lets_writes_through_until_its_deadline() {
        let fence = Fence::new();
        fence.open_until(Instant::now() + Duration::from_secs(10));
        let (mut service, sent) = fenced(&fence, Duration::ZERO);
        assert_eq!(send(&mut service, Method::PATCH).await.ok(), Some("sent"));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(send(&mut service, Method::DELETE).await.ok(), Some("sent"));
        tokio::time::advance(Duration::from_secs(1)).await;
        refused(send(&mut service, Method::POST).await);
        assert_eq!(sent.load(Ordering::SeqCst), 2);
        assert_eq!(send(&mut service, Method::GET).await.ok(), Some("sent"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_unanswered_at_the_deadline_is_abandoned() {
        let fence = Fence::new();
        fence.open_until(Instant::now() + Duration::from_secs(2));
        let (mut service, _) = fenced(&fence, Duration::from_secs(5));
        let started = Instant::now();
        let error = refused(send(&mut service, Method::PATCH).await);
        assert!(error.in_flight);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    /// Answers every request with an empty ConfigMap and records its method.
    #[derive(Clone, Default)]
    struct FakeApiServer {
        methods: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Service<Request<kube::client::Body>> for FakeApiServer {
        type Response = http::Response<kube::client::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
            if let Ok(mut methods) = self.methods.lock() {
                methods.push(request.method().to_string());
            }
            let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"a"}}"#;
            Box::pin(
                async move { Ok(http::Response::new(kube::client::Body::from(body.to_vec()))) },
            )
        }
    }

    /// The layer as the operator installs it: kube's client surfaces the
    /// refusal as an error of the call, and the API server never sees it.
    #[tokio::test]
    async fn a_fenced_kube_client_refuses_writes_and_reads_on() {
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

        let server = FakeApiServer::default();
        let fence = Fence::new();
        let client = kube::client::ClientBuilder::new(server.clone(), "a")
            .with_layer(&FenceLayer::new(fence.clone()))
            .build();
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "a");
        let patch = PatchParams::apply("mlctl-operator");
        let refusals = [
            api.patch("c", &patch, &Patch::Apply(ConfigMap::default()))
                .await
                .err(),
            api.create(&PostParams::default(), &ConfigMap::default())
                .await
                .err(),
            api.delete("c", &DeleteParams::default()).await.err(),
        ];
        for refusal in refusals {
            match refusal {
                Some(kube::Error::Service(e)) => assert!(e.is::<FencedWrite>(), "{e}"),
                other => panic!("expected a fenced write, got {other:?}"),
            }
        }
        assert!(api.get("c").await.is_ok());
        fence.open_until(Instant::now() + Duration::from_secs(10));
        assert!(
            api.patch("c", &patch, &Patch::Apply(ConfigMap::default()))
                .await
                .is_ok()
        );
        let methods = server.methods.lock().map(|m| m.clone()).unwrap_or_default();
        assert_eq!(methods, ["GET", "PATCH"]);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_only_move_forward_and_revocation_is_final() {
        let fence = Fence::new();
        assert!(!fence.is_open());
        let now = Instant::now();
        fence.open_until(now + Duration::from_secs(10));
        fence.open_until(now + Duration::from_secs(5));
        assert_eq!(fence.valid_until(), Some(now + Duration::from_secs(10)));
        fence.revoke();
        fence.open_until(now + Duration::from_secs(20));
        assert!(!fence.is_open());
        assert_eq!(fence.valid_until(), None);
    }
}
