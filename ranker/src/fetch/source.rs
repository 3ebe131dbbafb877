//! The transports: plain http(s) through reqwest, S3 and GCS through
//! `object_store` (standard credential chains, request signing, listing). Both
//! are reduced to one shape, a stream of body chunks, and every failure to an
//! [`AttemptError`] that says whether another attempt can help. Retries are ours,
//! not the libraries', so that each attempt is logged and bounded by our flags.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore, RetryConfig,
};

use super::retry::{StatusClass, classify_status};
use super::uri::{ModelUri, ObjectScheme};

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// Worth another attempt (connection errors, 5xx, 429, truncated bodies, idle
    /// timeouts); the text says what happened.
    Transient(String),
    /// The object does not exist (404/410).
    NotFound(Refusal),
    /// The credentials may not read it (401/403).
    Forbidden(Refusal),
    /// Any other refusal that a retry cannot fix.
    Rejected(Refusal),
    /// A resumed download cannot continue (the object changed, or the server
    /// answered with another range): worth another attempt from the beginning.
    Stale(String),
}

/// Where a retry continues, and which version of the object it must still be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub offset: u64,
    /// A strong ETag or a Last-Modified date from the earlier response.
    pub validator: String,
}

/// A final answer from the server (or from us, before asking it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `403 Forbidden`, or a short reason when there was no HTTP status.
    pub status: String,
    /// What the store said, if anything (may be empty).
    pub detail: String,
}

impl Refusal {
    fn new(status: impl Into<String>, detail: impl Into<String>) -> Refusal {
        Refusal {
            status: status.into(),
            detail: detail.into(),
        }
    }
}

/// Installs ring as rustls's process-wide crypto provider. rustls panics at client
/// build when more than one provider is compiled in and none is chosen (a
/// workspace build unifies features, so aws-lc-rs can appear next to ring).
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A connected client for one `MODEL_URI`.
#[derive(Debug)]
pub enum Transport {
    Http(reqwest::Client),
    Object(Arc<dyn ObjectStore>),
}

/// One object found under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The full object key.
    pub key: String,
    /// The path relative to the prefix, `/`-separated, every segment a safe file
    /// name.
    pub relative: String,
    pub size: u64,
}

/// An open response body.
pub struct Body {
    chunks: BoxStream<'static, Result<Bytes, AttemptError>>,
    /// The length the server announced for this response, to detect truncation.
    pub expected_len: Option<u64>,
    /// The object offset the body starts at: the resume offset when the server
    /// honoured the range, else 0.
    pub start: u64,
    /// What identifies this version of the object, for resuming a later attempt.
    pub validator: Option<String>,
}

impl Body {
    /// The next chunk, `None` at the end; waits at most `idle`.
    pub async fn next_chunk(&mut self, idle: Duration) -> Result<Option<Bytes>, AttemptError> {
        match tokio::time::timeout(idle, self.chunks.next()).await {
            Err(_) => Err(AttemptError::Transient(format!(
                "no data for {} (--idle-timeout)",
                super::retry::human(idle)
            ))),
            Ok(None) => Ok(None),
            Ok(Some(chunk)) => chunk.map(Some),
        }
    }
}

impl Transport {
    /// Builds the client for `uri`; credentials come from the environment.
    ///
    /// Only the connect timeout is given to the clients: the idle timeout is ours,
    /// around every await (see [`Body::next_chunk`]), so that every transport
    /// reports it the same way.
    pub fn for_uri(uri: &ModelUri, connect_timeout: Duration) -> Result<Transport, String> {
        match uri {
            ModelUri::Http { .. } => reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .user_agent(concat!("mlctl-ranker-fetch/", env!("CARGO_PKG_VERSION")))
                .build()
                .map(Transport::Http)
                .map_err(|e| error_chain(&e)),
            ModelUri::Object { scheme, bucket, .. } => {
                let mut options = client_options_from_env(*scheme)
                    .with_connect_timeout(connect_timeout)
                    // A whole-request timeout would cut off a large model mid-body;
                    // the idle timeout and the overall --timeout bound it instead.
                    .with_timeout_disabled();
                if endpoint_is_plain_http() {
                    options = options.with_allow_http(true);
                }
                // Our loop retries (and logs each attempt); the library must not.
                let retry = RetryConfig {
                    max_retries: 0,
                    ..RetryConfig::default()
                };
                let store: Result<Arc<dyn ObjectStore>, _> = match scheme {
                    ObjectScheme::S3 => object_store::aws::AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .with_client_options(options)
                        .with_retry(retry)
                        .build()
                        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
                    ObjectScheme::Gs => object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_bucket_name(bucket)
                        .with_client_options(options)
                        .with_retry(retry)
                        .build()
                        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
                };
                store.map(Transport::Object).map_err(|e| error_chain(&e))
            }
        }
    }

    /// Starts downloading `key` (ignored for http, where the URI is the object),
    /// from `resume.offset` if given and the object is still the same version.
    pub async fn open(
        &self,
        uri: &ModelUri,
        key: &str,
        resume: Option<&Resume>,
    ) -> Result<Body, AttemptError> {
        use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
        match (self, uri) {
            (Transport::Http(client), ModelUri::Http { url }) => {
                let mut request = client.get(url.clone());
                if let Some(resume) = resume {
                    // If-Range: a server whose object changed sends it whole (200).
                    request = request
                        .header(RANGE, format!("bytes={}-", resume.offset))
                        .header(IF_RANGE, &resume.validator);
                }
                let response = request.send().await.map_err(reqwest_error)?;
                let status = response.status();
                if resume.is_some() && matches!(status.as_u16(), 412 | 416) {
                    return Err(AttemptError::Stale(format!(
                        "{status} to a resumed request"
                    )));
                }
                if !status.is_success() {
                    return Err(status_error(
                        status.as_u16(),
                        status.to_string(),
                        String::new(),
                    ));
                }
                let header = |name| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                        .map(str::to_string)
                };
                let validator = header(ETAG)
                    .filter(|etag| !etag.starts_with("W/"))
                    .or_else(|| header(LAST_MODIFIED));
                let start = if status.as_u16() == 206 {
                    let range = header(CONTENT_RANGE).unwrap_or_default();
                    let wanted = resume.map_or(0, |r| r.offset);
                    match content_range_start(&range) {
                        Some(start) if start == wanted => start,
                        _ => {
                            return Err(AttemptError::Stale(format!(
                                "206 with Content-Range {range:?}, expected bytes {wanted}-"
                            )));
                        }
                    }
                } else {
                    0
                };
                let expected_len = response.content_length();
                let chunks = futures::stream::unfold(response, |mut response| async move {
                    match response.chunk().await {
                        Ok(Some(chunk)) => Some((Ok(chunk), response)),
                        Ok(None) => None,
                        Err(e) => Some((Err(reqwest_error(e)), response)),
                    }
                });
                Ok(Body {
                    chunks: chunks.boxed(),
                    expected_len,
                    start,
                    validator,
                })
            }
            (Transport::Object(store), _) => {
                let path = object_path(key)?;
                let options = match resume {
                    Some(resume) => GetOptions {
                        range: Some(GetRange::Offset(resume.offset)),
                        if_match: Some(resume.validator.clone()),
                        ..GetOptions::default()
                    },
                    None => GetOptions::default(),
                };
                let result = match store.get_opts(&path, options).await {
                    Ok(result) => result,
                    Err(e @ object_store::Error::Precondition { .. }) if resume.is_some() => {
                        return Err(AttemptError::Stale(error_chain(&e)));
                    }
                    Err(e) => {
                        return Err(match object_error(e) {
                            AttemptError::Rejected(r) if resume.is_some() => {
                                AttemptError::Stale(format!("{}: {}", r.status, r.detail))
                            }
                            other => other,
                        });
                    }
                };
                let start = result.range.start;
                if start != resume.map_or(0, |r| r.offset) {
                    return Err(AttemptError::Stale(format!(
                        "the store sent bytes from {start}, not the requested offset"
                    )));
                }
                let expected_len = Some(result.range.end - start);
                let validator = result.meta.e_tag.clone();
                let chunks = result.into_stream().map(|c| c.map_err(object_error));
                Ok(Body {
                    chunks: chunks.boxed(),
                    expected_len,
                    start,
                    validator,
                })
            }
            (Transport::Http(_), ModelUri::Object { .. }) => Err(AttemptError::Rejected(
                Refusal::new("internal error: an http client for an object-store URI", ""),
            )),
        }
    }

    /// Lists every object under `prefix` (a key that is empty or ends in `/`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, AttemptError> {
        let Transport::Object(store) = self else {
            return Err(AttemptError::Rejected(Refusal::new(
                "internal error: listing over plain http",
                "",
            )));
        };
        let prefix_path = object_path(prefix)?;
        let mut stream = store.list(Some(&prefix_path));
        let mut listed = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(object_error)?;
            let Some(parts) = meta.location.prefix_match(&prefix_path) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
            if parts.is_empty() {
                continue; // the prefix itself, e.g. a console-made "folder" marker
            }
            if let Some(bad) = parts.iter().find(|p| !is_safe_segment(p)) {
                return Err(AttemptError::Rejected(Refusal::new(
                    format!(
                        "object {} has path segment {bad:?}, which cannot be a file name",
                        meta.location
                    ),
                    "",
                )));
            }
            listed.push(Listed {
                key: meta.location.to_string(),
                relative: parts.join("/"),
                size: meta.size,
            });
        }
        // Zero-byte "folder" markers (`dir/sub/`) come back as `dir/sub` next to
        // `dir/sub/x`: a file and a directory cannot share one name, and the marker
        // carries nothing, so it goes.
        let dirs: Vec<String> = listed
            .iter()
            .filter_map(|l| l.relative.rsplit_once('/').map(|(d, _)| d.to_string()))
            .collect();
        listed.retain(|l| {
            !(l.size == 0
                && dirs
                    .iter()
                    .any(|d| d == &l.relative || d.starts_with(&format!("{}/", l.relative))))
        });
        listed.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(listed)
    }
}

/// Whether a key segment can be used as a file name under `MODEL_DIR`.
pub fn is_safe_segment(segment: &str) -> bool {
    !segment.is_empty() && segment != "." && segment != ".." && !segment.contains(['/', '\0'])
}

/// The HTTP client settings the store's builder would read from the environment
/// (`AWS_ALLOW_HTTP`, `GOOGLE_PROXY_URL`, …). Builders drop them when given
/// explicit options, so they are read here and ours are applied on top.
fn client_options_from_env(scheme: ObjectScheme) -> ClientOptions {
    let prefix = match scheme {
        ObjectScheme::S3 => "AWS_",
        ObjectScheme::Gs => "GOOGLE_",
    };
    std::env::vars()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(prefix)?.to_ascii_lowercase();
            Some((key.parse::<ClientConfigKey>().ok()?, value))
        })
        .fold(ClientOptions::new(), |options, (key, value)| {
            options.with_config(key, value)
        })
}

/// S3-compatible servers are often plain http inside the cluster (MinIO); when the
/// endpoint says `http://` the user has chosen that, so it is allowed without a
/// second switch.
fn endpoint_is_plain_http() -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .any(|v| v.starts_with("http://"))
}

fn object_path(key: &str) -> Result<ObjectPath, AttemptError> {
    ObjectPath::parse(key.trim_end_matches('/')).map_err(|e| {
        AttemptError::Rejected(Refusal::new(
            format!("object key {key:?} is not a valid path"),
            e.to_string(),
        ))
    })
}

fn status_error(status: u16, text: String, detail: String) -> AttemptError {
    match classify_status(status) {
        StatusClass::NotFound => AttemptError::NotFound(Refusal::new(text, detail)),
        StatusClass::Forbidden => AttemptError::Forbidden(Refusal::new(text, detail)),
        StatusClass::Transient if detail.is_empty() => AttemptError::Transient(text),
        StatusClass::Transient => AttemptError::Transient(format!("{text}: {detail}")),
        StatusClass::Rejected => AttemptError::Rejected(Refusal::new(text, detail)),
    }
}

fn reqwest_error(e: reqwest::Error) -> AttemptError {
    // Without the URL: a pre-signed URL's query is a credential.
    let e = e.without_url();
    match e.status() {
        Some(status) => status_error(status.as_u16(), status.to_string(), String::new()),
        // Connection, timeout, truncated and malformed bodies are all worth a retry.
        None => AttemptError::Transient(error_chain(&e)),
    }
}

fn object_error(e: object_store::Error) -> AttemptError {
    let text = error_chain(&e);
    match &e {
        object_store::Error::NotFound { .. } => {
            AttemptError::NotFound(Refusal::new("404 Not Found", store_said(&text)))
        }
        object_store::Error::PermissionDenied { .. } => {
            AttemptError::Forbidden(Refusal::new("403 Forbidden", store_said(&text)))
        }
        object_store::Error::Unauthenticated { .. } => {
            AttemptError::Forbidden(Refusal::new("401 Unauthorized", store_said(&text)))
        }
        // Statuses object_store has no variant for (400, 429, 5xx) end up here with
        // the status only in the message; connection and body errors have none.
        object_store::Error::Generic { .. } => match status_in(&text) {
            Some(status) => {
                let label = reqwest::StatusCode::from_u16(status)
                    .map_or_else(|_| format!("HTTP {status}"), |s| s.to_string());
                status_error(status, label, store_said(&text))
            }
            None => AttemptError::Transient(text),
        },
        _ => AttemptError::Rejected(Refusal::new("refused", text)),
    }
}

/// The part of an object_store message a user needs: the store's own error code
/// and message (S3 XML `<Code>`/`<Message>`, GCS JSON `"message"`), else the text.
fn store_said(text: &str) -> String {
    let between = |open: &str, close: &str| {
        let (_, rest) = text.split_once(open)?;
        Some(rest.split_once(close)?.0.trim().to_string())
    };
    match (
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => between("\"message\": \"", "\"").unwrap_or_else(|| text.to_string()),
    }
}

/// The first byte position of a `Content-Range: bytes A-B/T` header.
fn content_range_start(header: &str) -> Option<u64> {
    let (first, _) = header.strip_prefix("bytes ")?.split_once('-')?;
    first.trim().parse().ok()
}

/// The HTTP status in an object_store message ("… status code: 503 Service …").
fn status_in(text: &str) -> Option<u16> {
    let (_, after) = text.split_once("status code: ")?;
    after.get(..3)?.parse().ok()
}

/// An error and its sources on one line, without repeating text a wrapper
/// already included.
pub fn error_chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_found_in_object_store_messages() {
        assert_eq!(
            status_in(
                "Generic S3 error: Error performing GET http://x in 1ms - Server returned non-2xx status code: 503 Service Unavailable: "
            ),
            Some(503)
        );
        assert_eq!(status_in("Generic S3 error: connection refused"), None);
    }

    #[test]
    fn the_stores_own_code_and_message_are_kept() {
        let s3 = "Object at location m not found: Error performing GET http://h/b/m in 3ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        assert_eq!(
            store_said(s3),
            "NoSuchKey: The specified key does not exist."
        );
        let gcs = r#"... 403 Forbidden: { "error": { "code": 403, "message": "caller does not have storage.objects.get access" } }"#;
        assert_eq!(
            store_said(gcs),
            "caller does not have storage.objects.get access"
        );
        assert_eq!(store_said("connection refused"), "connection refused");
    }

    #[test]
    fn content_range_starts_are_parsed() {
        assert_eq!(content_range_start("bytes 500-999/1000"), Some(500));
        assert_eq!(content_range_start("bytes */1000"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }

    #[test]
    fn segments_that_would_escape_model_dir_are_unsafe() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(!is_safe_segment(bad), "{bad:?}");
        }
        for good in ["model.txt", ".hidden", "v1..2"] {
            assert!(is_safe_segment(good), "{good:?}");
        }
    }

    #[test]
    fn an_https_client_builds_with_the_ring_provider() {
        install_crypto_provider();
        for uri in [
            "https://example.invalid/m.txt",
            "gs://bucket/m.txt",
            "s3://bucket/m.txt",
        ] {
            let uri = ModelUri::parse(uri).unwrap();
            // GCS without credentials fails at build for a reason that is not TLS.
            match Transport::for_uri(&uri, Duration::from_secs(1)) {
                Ok(_) => {}
                Err(e) => assert!(!e.contains("CryptoProvider"), "{uri}: {e}"),
            }
        }
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
