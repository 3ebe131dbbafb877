//! A JSON metric endpoint for `web` analysis providers: answers every
//! request with `{"value": <v>}` (after a delay, or never), counts the
//! requests, and stops when dropped. Bound to 127.0.0.1 only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the endpoint answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// `{"value": v}` after the delay.
    After(Duration),
    /// Accepts the connection and never answers (a black hole that holds
    /// the socket open).
    Never,
}

/// The running endpoint.
pub struct ValueServer {
    /// `http://<host>:<port>/value`.
    pub url: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ValueServer {
    /// On a free port of 127.0.0.1, answering `value` at once.
    pub async fn start(value: f64) -> Self {
        Self::bind(0, "127.0.0.1", value, Answer::After(Duration::ZERO)).await
    }

    /// On 127.0.0.1:`port` (0: a free one), named `host` in the URL (e.g.
    /// the node's address, which pods reach it at).
    pub async fn bind(port: u16, host: &str, value: f64, answer: Answer) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        let port = listener.local_addr().expect("local address").port();
        let url = format!("http://{host}:{port}/value");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                let delay = match answer {
                    Answer::Never => {
                        held.push(socket);
                        continue;
                    }
                    Answer::After(delay) => delay,
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let body = format!("{{\"value\": {value}}}");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        ValueServer { url, hits, task }
    }

    /// Requests accepted so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for ValueServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
