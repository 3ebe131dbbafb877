//! `mlctl-ranker serve`: the HTTP shell around the engine. It binds first and loads
//! the model in the background (liveness answers while a big model loads), reports
//! ready only after a warm-up request, and drains on SIGTERM so a rollout drops
//! no request.

mod app;
mod fast;
mod infer;
mod loaded;
mod metrics;
mod parse;
mod peer;
mod rank;
mod request;
mod respond;
mod routes;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::model::Format;

pub use app::App;
pub use loaded::{LoadFailure, Loaded, load_from_path};

/// `MODEL_FORMAT` values (the operator's names; `custom` means detect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelFormat {
    /// LightGBM text model.
    Lightgbm,
    /// XGBoost JSON or UBJSON.
    Xgboost,
    /// ONNX tree ensemble.
    Onnx,
    /// Detect from the content.
    Custom,
    /// Detect from the content (same as custom).
    Auto,
}

impl From<ModelFormat> for Format {
    fn from(f: ModelFormat) -> Format {
        match f {
            ModelFormat::Lightgbm => Format::Lightgbm,
            ModelFormat::Xgboost => Format::Xgboost,
            ModelFormat::Onnx => Format::Onnx,
            ModelFormat::Custom | ModelFormat::Auto => Format::Auto,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `mlctl-ranker serve`. Every model option also reads the environment
/// variable the operator sets (docs/runtime-contract.md); a flag wins over it.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file, or a directory holding exactly one model file.
    #[arg(long, env = "MODEL_PATH")]
    pub model_path: PathBuf,
    /// The name the model routes answer to (`/v1/models/{name}:rank`).
    #[arg(long, env = "MODEL_NAME", default_value = "model")]
    pub model_name: String,
    /// The model version (responses, metadata and metric labels).
    #[arg(long, env = "MODEL_VERSION", default_value = "unversioned")]
    pub model_version: String,
    /// The artifact format; custom and auto detect it from the content.
    #[arg(long, env = "MODEL_FORMAT", value_enum, default_value = "custom")]
    pub model_format: ModelFormat,
    /// The revision hash (the `ranker_model_info` metric and logs).
    #[arg(long, env = "MODEL_REVISION", default_value = "")]
    pub model_revision: String,
    /// Port to listen on, on all interfaces.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on instead of 0.0.0.0:PORT (tests use 127.0.0.1:0).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Largest request body accepted, in bytes (413 above it). The default fits
    /// 10,000 documents of 136 features written with ~10 characters each.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most documents (or infer rows) in one request (413 above it).
    #[arg(long, default_value_t = 10_000)]
    pub max_documents: usize,
    /// After SIGTERM, how long requests are still accepted while readiness is
    /// false, so that endpoint controllers remove the pod first (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// After the grace period, how long in-flight requests may take to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Log format; the level comes from RUST_LOG (default info; debug logs one line
    /// per request).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// For fault-injection tests only: delay every ranking and infer response by
    /// this long (counted in the latency metric), to prove that a slow version
    /// fails a canary's latency analysis. Never set it in production.
    #[arg(long, env = "RANKER_INJECT_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub inject_delay: Duration,
    /// The peer config (`peer.json`: shadow or interleave with the canary), read
    /// now and every second after; without it the pod never calls a peer.
    #[arg(long, env = "RANKER_PEER_CONFIG")]
    pub peer_config: Option<PathBuf>,
}

/// Parses `5s`, `500ms`, `1m` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 5s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Why the server stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; choose another --listen or PORT")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The model could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadFailure),
    /// The warm-up request failed: the model cannot serve the request path.
    #[error("the warm-up request failed: {0}")]
    Warmup(String),
    /// A second signal arrived while draining.
    #[error("a second signal arrived while draining; exiting without waiting")]
    Forced,
    /// The tokio runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs the server until SIGTERM/SIGINT and a complete drain.
pub fn run(args: Args) -> ExitCode {
    init_logging(args.log_format);
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)
        .and_then(|rt| {
            let r = rt.block_on(serve(args));
            // A model still loading on a blocking thread must not hold up the exit.
            rt.shutdown_timeout(Duration::from_millis(100));
            r
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in a pod's log.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second initialisation (only possible in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Binds, loads in the background, serves, and drains on the first signal.
pub async fn serve(args: Args) -> Result<(), ServeError> {
    let addr = args.listen.unwrap_or(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        args.port,
    ));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    // Installed before anything slow, so an early SIGTERM is not the default kill.
    let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    info!(address = %local, model = %args.model_name, version = %args.model_version, "listening");

    let app = Arc::new(App::new(
        args.model_name.clone(),
        args.model_version.clone(),
        args.model_revision.clone(),
        args.max_body_bytes,
        args.max_documents,
    ));
    if !args.inject_delay.is_zero() {
        warn!(delay = ?args.inject_delay, "--inject-delay: every ranking and infer response is delayed (fault-injection testing only)");
        app.set_inject_delay(args.inject_delay);
    }
    if let Some(path) = args.peer_config.clone() {
        tokio::spawn(app.peer.clone().watch(path));
    }
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<ServeError>(1);
    tokio::spawn(load_in_background(
        app.clone(),
        args.model_path.clone(),
        args.model_format.into(),
        fatal_tx,
    ));

    let graceful = GracefulShutdown::new();
    // Phase 1: serve until the first signal (or a load failure).
    loop {
        tokio::select! {
            accepted = listener.accept() => accept(accepted, &app, &graceful).await,
            _ = sigterm.recv() => { info!("SIGTERM: draining"); break; }
            _ = sigint.recv() => { info!("SIGINT: draining"); break; }
            Some(e) = fatal_rx.recv() => return Err(e),
        }
    }
    // Phase 2: not ready, still serving, while endpoints controllers catch up.
    app.start_draining();
    let grace = tokio::time::sleep(args.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            accepted = listener.accept() => accept(accepted, &app, &graceful).await,
            () = &mut grace => break,
            _ = sigterm.recv() => return Err(ServeError::Forced),
            _ = sigint.recv() => return Err(ServeError::Forced),
        }
    }
    drop(listener);
    // Phase 3: finish in-flight requests; idle kept-alive connections close now.
    let open = graceful.count();
    info!(
        connections = open,
        "grace period over: no longer accepting; finishing in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => info!("drained; exiting"),
        () = tokio::time::sleep(args.drain_timeout) => {
            warn!(timeout = ?args.drain_timeout, "requests still in flight after the drain timeout; exiting");
        }
        _ = sigterm.recv() => return Err(ServeError::Forced),
        _ = sigint.recv() => return Err(ServeError::Forced),
    }
    Ok(())
}

async fn accept(
    accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
    app: &Arc<App>,
    graceful: &GracefulShutdown,
) {
    let stream = match accepted {
        Ok((stream, _)) => stream,
        Err(e) => {
            // Usually out of file descriptors: back off instead of spinning.
            warn!("accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    };
    // Responses are written whole; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let app = app.clone();
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| app::handle(app.clone(), req)),
        );
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection ended with an error: {e}");
        }
    });
}

async fn load_in_background(
    app: Arc<App>,
    path: PathBuf,
    format: Format,
    fatal: tokio::sync::mpsc::Sender<ServeError>,
) {
    let max_documents = app.max_documents;
    let loader_app = app.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<(), ServeError> {
        let loaded = load_from_path(&path, format, max_documents)?;
        info!(
            path = %loaded.path.display(),
            format = loaded.format,
            trees = loaded.trees,
            features = loaded.schema.num_features,
            load_ms = loaded.load_ms,
            revision = %loader_app.revision,
            "model loaded"
        );
        loader_app
            .install(loaded)
            .map_err(|e| ServeError::Warmup(e.to_string()))?;
        info!("warm-up request scored: ready");
        Ok(())
    })
    .await;
    let failure = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(join) => ServeError::Warmup(format!("the loading thread failed: {join}")),
    };
    let _ = fatal.send(failure).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
