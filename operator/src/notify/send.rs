//! One attempt at a webhook: the URL and header values read from Secrets
//! in the object's namespace when sending (a rotated Secret applies to the
//! next notification), the allow-list checked before any connection, the
//! analysis requests' HTTP clients (TLS settings, allow-list resolver, no
//! redirects, no proxy). Errors never repeat the URL (it is a credential)
//! nor a header value.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mlctl_crds::common::parse_duration;
use mlctl_crds::notify::Webhook;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::retry::{Attempt, classify_status};
use crate::analysis::client::{Clients, Tls};
use crate::analysis::guard::AllowList;
use crate::analysis::secrets::{self, Source};

/// A webhook's timeout when it sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout (the CRD allows no more).
pub const TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// One notification to one webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Namespace of the object (where its Secrets are read).
    pub namespace: String,
    pub webhook: Webhook,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// Makes one attempt at a delivery.
pub trait Transport: Send + Sync {
    fn post<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Attempt>;
}

/// HTTP(S) POSTs, where the allow-list permits.
pub struct HttpTransport {
    allow: Arc<AllowList>,
    clients: Clients,
    secrets: Arc<dyn Source>,
}

struct Prepared {
    url: Url,
    headers: HeaderMap,
    tls: Tls,
    timeout: Duration,
}

impl HttpTransport {
    /// A transport connecting only where `allow` permits, reading Secrets
    /// from `secrets`.
    pub fn new(allow: AllowList, secrets: Arc<dyn Source>) -> Self {
        let allow = Arc::new(allow);
        HttpTransport {
            clients: Clients::new(allow.clone()),
            allow,
            secrets,
        }
    }

    async fn prepare(&self, d: &Delivery) -> Result<Prepared, String> {
        let w = &d.webhook;
        let source = self.secrets.as_ref();
        let ns = d.namespace.as_str();
        let (text, field) = match (&w.url, &w.url_from) {
            (Some(url), _) => (url.clone(), "webhook.url"),
            (None, Some(from)) => {
                let field = "webhook.urlFrom.secretKeyRef";
                let bytes = secrets::secret(source, ns, &from.secret_key_ref, field).await?;
                (secrets::text(bytes, field)?, field)
            }
            (None, None) => return Err("webhook sets neither url nor urlFrom".into()),
        };
        // The value is never shown: a Slack URL is its own credential.
        let url = Url::parse(text.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| format!("{field}: the value is not an http:// or https:// URL"))?;
        self.allow.check_url(&url).map_err(|e| {
            format!(
                "{field}: {}",
                e.replace("--analysis-allow", "--notification-allow")
            )
        })?;
        let mut headers = HeaderMap::new();
        for (i, h) in w.headers.iter().enumerate() {
            let field = format!("webhook.headers[{i}] ({})", h.name);
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| format!("{field}: not a header name"))?;
            let (text, secret) = match (&h.value, &h.value_from) {
                (Some(v), _) => (v.clone(), false),
                (None, Some(from)) => {
                    let field = format!("{field}.valueFrom.secretKeyRef");
                    let bytes = secrets::secret(source, ns, &from.secret_key_ref, &field).await?;
                    (secrets::text(bytes, &field)?, true)
                }
                (None, None) => return Err(format!("{field}: sets neither value nor valueFrom")),
            };
            let mut value = HeaderValue::from_str(&text)
                .map_err(|_| format!("{field}: the value is not a valid header value"))?;
            value.set_sensitive(secret);
            headers.insert(name, value);
        }
        let timeout = match &w.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => parse_duration(t).map_err(|e| format!("webhook.timeout: {e}"))?,
        }
        .min(TIMEOUT_MAX);
        let tls = Tls::read(source, ns, w.tls_config.as_ref(), "webhook.tlsConfig").await?;
        Ok(Prepared {
            url,
            headers,
            tls,
            timeout,
        })
    }
}

impl Transport for HttpTransport {
    fn post<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let p = match self.prepare(d).await {
                Ok(p) => p,
                Err(why) => return Attempt::Permanent(why),
            };
            let client = match self.clients.get(&p.tls) {
                Ok(c) => c,
                Err(why) => return Attempt::Permanent(why),
            };
            let sent = client
                .post(p.url)
                .headers(p.headers)
                .header(CONTENT_TYPE, "application/json")
                .body(d.body.clone())
                .timeout(p.timeout)
                .send()
                .await;
            match sent {
                Ok(r) => classify_status(
                    r.status().as_u16(),
                    r.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
                ),
                Err(e) => Attempt::Retry {
                    why: describe(e, p.timeout),
                    after: None,
                },
            }
        })
    }
}

/// A request error without its URL, with its causes (connection refused,
/// the allow-list's resolver refusing an address).
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s", timeout.as_secs_f64());
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let e = e.without_url();
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}
