//! Measurement providers: a Prometheus instant query and a web (JSON over
//! HTTP GET) endpoint. Each turns one request into a number, no data, or an
//! error message that names the endpoint and what to fix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mlctl_crds::common::parse_duration;
use mlctl_crds::http::{HttpHeader, TlsConfig};
use mlctl_crds::rankingmodel::{
    InterleavePrometheus, MetricProvider, PrometheusProvider, WebProvider,
};
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::Vars;
use super::client::{Clients, Tls};
use super::guard::AllowList;
use super::secrets::{self, Source};

/// Request timeout when the provider sets none (and the operator's
/// `--analysis-timeout-max` is not lower).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read; bigger ones are an error (a query for one number
/// never needs more).
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Characters of a response body logged (at debug level) when it is refused.
const LOGGED_BODY_CHARS: usize = 512;
/// The `errorType`s Prometheus's HTTP API defines; others are not repeated.
const PROMETHEUS_ERROR_TYPES: &[&str] = &[
    "bad_data",
    "timeout",
    "canceled",
    "execution",
    "internal",
    "unavailable",
    "not_found",
    "not_acceptable",
];

/// Takes measurements: builds each request from the provider (credentials
/// from Secrets in the model's namespace), checks where it goes against the
/// allow-list, and turns the response into a number or a fixed-form error
/// that never repeats the response body. Cheap to clone.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

struct Inner {
    allow: Arc<AllowList>,
    clients: Clients,
    secrets: Arc<dyn Source>,
    timeout_max: Duration,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("allow", &self.inner.allow)
            .field("timeout_max", &self.inner.timeout_max)
            .finish_non_exhaustive()
    }
}

/// A request ready to send.
struct Request {
    /// `web <url>` or `prometheus <address>`, for messages.
    endpoint: String,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    basic_auth: Option<(String, String)>,
    tls: Tls,
    timeout: Duration,
}

impl Prober {
    /// A prober connecting only where `allow` permits, with every timeout at
    /// most `timeout_max`, reading credentials from `secrets`.
    pub fn new(allow: AllowList, timeout_max: Duration, secrets: Arc<dyn Source>) -> Self {
        let allow = Arc::new(allow);
        Prober {
            inner: Arc::new(Inner {
                clients: Clients::new(allow.clone()),
                allow,
                secrets,
                timeout_max,
            }),
        }
    }

    /// One measurement: Ok(Some(v)) a number, Ok(None) no data, Err a message
    /// naming the endpoint.
    pub async fn measure(
        &self,
        provider: &MetricProvider,
        vars: &Vars,
    ) -> Result<Option<f64>, String> {
        match (&provider.prometheus, &provider.web) {
            (Some(p), None) => self.prometheus(p, vars).await,
            (None, Some(w)) => self.web(w, vars).await,
            _ => Err("the metric's provider must set exactly one of prometheus, web or job".into()),
        }
    }

    /// The provider's timeout (default 10s), never above `--analysis-timeout-max`.
    pub fn timeout(&self, field: &str, text: Option<&str>) -> Result<Duration, String> {
        let asked = match text {
            None => DEFAULT_TIMEOUT,
            Some(t) => parse_duration(t).map_err(|e| format!("{field}: {e}"))?,
        };
        Ok(asked.min(self.inner.timeout_max))
    }

    async fn tls(
        &self,
        namespace: &str,
        config: Option<&TlsConfig>,
        field: &str,
    ) -> Result<Tls, String> {
        Tls::read(self.inner.secrets.as_ref(), namespace, config, field).await
    }

    async fn send(&self, request: Request) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        let Request {
            endpoint,
            url,
            headers,
            basic_auth,
            tls,
            timeout,
        } = request;
        self.inner
            .allow
            .check_url(&url)
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let client = self
            .inner
            .clients
            .get(&tls)
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let mut builder = client
            .get(url)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some((user, password)) = basic_auth {
            builder = builder.basic_auth(user, Some(password));
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                format!("{endpoint}: no answer within {}", humantime(timeout))
            } else if e.is_connect() {
                format!("{endpoint}: cannot connect ({})", root_cause(&e))
            } else if e.is_builder() {
                format!("{endpoint}: invalid request ({})", root_cause(&e))
            } else {
                format!("{endpoint}: request failed ({})", root_cause(&e))
            }
        };
        let mut response = builder.send().await.map_err(failed)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!(
                    "{endpoint}: the response is larger than {} MiB",
                    MAX_BODY_BYTES >> 20
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_redirection() {
            // Not followed: it could send a Secret-sourced header to a host
            // the allow-list never saw.
            return Err(format!(
                "{endpoint}: HTTP {status} (redirects are not followed; use the final URL)"
            ));
        }
        Ok((status, body))
    }

    /// The instant-query request of a Prometheus provider; `field` is its
    /// place in the spec (`prometheus`, `interleave.prometheus`).
    async fn prometheus_request(
        &self,
        field: &str,
        p: &PrometheusProvider,
        vars: &Vars,
    ) -> Result<Request, String> {
        let address = p.address.as_str();
        let endpoint = format!("prometheus {address}");
        let timeout = self.timeout(&format!("{field}.timeout"), p.timeout.as_deref())?;
        let base = format!("{}/api/v1/query", address.trim_end_matches('/'));
        let mut url = Url::parse(&base)
            .map_err(|e| format!("{field}.address {address:?} is not a valid URL: {e}"))?;
        url.query_pairs_mut()
            .append_pair("query", &substitute(&p.query, vars, false));
        let source = self.inner.secrets.as_ref();
        let ns = vars.namespace.as_str();
        let mut headers = Vec::new();
        if let Some(a) = &p.authorization {
            let field = format!("{field}.authorization.credentials");
            let token = secrets::secret(source, ns, &a.credentials, &field).await?;
            let token = secrets::text(token, &field)?;
            let scheme = a.type_.as_deref().unwrap_or("Bearer");
            headers.push((
                reqwest::header::AUTHORIZATION,
                sensitive(&format!("{scheme} {token}"), &field)?,
            ));
        }
        let basic_auth = match &p.basic_auth {
            None => None,
            Some(b) => {
                let user_field = format!("{field}.basicAuth.username");
                let password_field = format!("{field}.basicAuth.password");
                let user = secrets::secret(source, ns, &b.username, &user_field).await?;
                let password = secrets::secret(source, ns, &b.password, &password_field).await?;
                Some((
                    secrets::text(user, &user_field)?,
                    secrets::text(password, &password_field)?,
                ))
            }
        };
        let tls = self
            .tls(ns, p.tls_config.as_ref(), &format!("{field}.tlsConfig"))
            .await?;
        Ok(Request {
            endpoint,
            url,
            headers,
            basic_auth,
            tls,
            timeout,
        })
    }

    /// Runs an instant query; returns the endpoint's name (for messages) and
    /// the response's `data` once the response says `success`.
    async fn instant_query(&self, request: Request) -> Result<(String, Value), String> {
        let endpoint = request.endpoint.clone();
        let (status, body) = self.send(request).await?;
        let data = prometheus_data(&endpoint, status, &body)?;
        Ok((endpoint, data))
    }

    async fn prometheus(&self, p: &PrometheusProvider, vars: &Vars) -> Result<Option<f64>, String> {
        let request = self.prometheus_request("prometheus", p, vars).await?;
        let (endpoint, data) = self.instant_query(request).await?;
        one_number(&endpoint, &data)
    }

    /// An interleave step's instant query returning a vector: each series'
    /// value by the value of its `label` (series without it are summed under "").
    pub async fn prometheus_by_label(
        &self,
        p: &InterleavePrometheus,
        query: &str,
        label: &str,
        vars: &Vars,
    ) -> Result<BTreeMap<String, f64>, String> {
        // The same request as a metric's, with the step's query.
        let as_metric = PrometheusProvider {
            address: p.address.clone(),
            query: query.to_string(),
            timeout: p.timeout.clone(),
            authorization: p.authorization.clone(),
            basic_auth: p.basic_auth.clone(),
            tls_config: p.tls_config.clone(),
        };
        let request = self
            .prometheus_request("interleave.prometheus", &as_metric, vars)
            .await?;
        let (endpoint, data) = self.instant_query(request).await?;
        by_label(&endpoint, &data, label)
    }

    async fn web_headers(
        &self,
        headers: &[HttpHeader],
        vars: &Vars,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let mut out = Vec::with_capacity(headers.len());
        for (i, h) in headers.iter().enumerate() {
            let field = format!("web.headers[{i}]");
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| format!("{field}.name {:?} is not a header name", h.name))?;
            let value = match (&h.value, &h.value_from) {
                (Some(v), _) => HeaderValue::from_str(&substitute(v, vars, false))
                    .map_err(|_| format!("{field}.value is not a valid header value"))?,
                (None, Some(from)) => {
                    let field = format!("{field}.valueFrom.secretKeyRef");
                    let source = self.inner.secrets.as_ref();
                    let bytes =
                        secrets::secret(source, &vars.namespace, &from.secret_key_ref, &field)
                            .await?;
                    sensitive(&secrets::text(bytes, &field)?, &field)?
                }
                (None, None) => return Err(format!("{field} sets neither value nor valueFrom")),
            };
            out.push((name, value));
        }
        Ok(out)
    }

    async fn web(&self, w: &WebProvider, vars: &Vars) -> Result<Option<f64>, String> {
        let url_text = substitute(&w.url, vars, true);
        let endpoint = format!("web {url_text}");
        let timeout = self.timeout("web.timeout", w.timeout.as_deref())?;
        let url = Url::parse(&url_text)
            .map_err(|e| format!("web.url {url_text:?} is not a valid URL: {e}"))?;
        let request = Request {
            headers: self.web_headers(&w.headers, vars).await?,
            tls: self
                .tls(&vars.namespace, w.tls_config.as_ref(), "web.tlsConfig")
                .await?,
            endpoint: endpoint.clone(),
            url,
            basic_auth: None,
            timeout,
        };
        let (status, body) = self.send(request).await?;
        if !status.is_success() {
            log_body(&endpoint, &body);
            return Err(format!("{endpoint}: HTTP {status}"));
        }
        let json: Value = serde_json::from_slice(&body).map_err(|_| {
            log_body(&endpoint, &body);
            format!("{endpoint}: response is not JSON")
        })?;
        let found = json_path(&json, &w.json_path).map_err(|e| format!("{endpoint}: {e}"))?;
        number_at(found, &w.json_path).map_err(|e| format!("{endpoint}: {e}"))
    }
}

/// A credential header value, marked sensitive (kept out of debug output).
fn sensitive(text: &str, field: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| format!("{field}: the value is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A refused response's body goes to the operator log only (debug level,
/// truncated): status and Events never repeat what an endpoint answered.
fn log_body(endpoint: &str, body: &[u8]) {
    tracing::debug!(%endpoint, body = %snippet(body), "analysis response refused");
}

/// `1.5s`, `200ms`, for messages.
fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The innermost error's text (reqwest's top level only says "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The start of a body, for the debug log.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(LOGGED_BODY_CHARS).collect();
    if text.chars().count() > LOGGED_BODY_CHARS {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(empty body)");
    }
    out
}

/// Replaces `{{model}}`, `{{namespace}}`, `{{version}}`, `{{track}}`,
/// `{{stable_version}}` and `{{canary_version}}`; in URLs the values are
/// percent-encoded.
pub fn substitute(template: &str, vars: &Vars, in_url: bool) -> String {
    let encode = |v: &str| {
        if in_url {
            percent_encode(v)
        } else {
            v.to_string()
        }
    };
    template
        .replace("{{model}}", &encode(&vars.model))
        .replace("{{namespace}}", &encode(&vars.namespace))
        .replace("{{version}}", &encode(&vars.version))
        .replace("{{track}}", &encode(&vars.track))
        .replace("{{stable_version}}", &encode(&vars.stable_version))
        .replace("{{canary_version}}", &encode(&vars.canary_version))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `data` of a Prometheus `/api/v1/query` response, or why there is none.
fn prometheus_data(
    endpoint: &str,
    status: reqwest::StatusCode,
    body: &[u8],
) -> Result<Value, String> {
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(_) => {
            log_body(endpoint, body);
            return Err(if status.is_success() {
                format!("{endpoint}: response is not JSON")
            } else {
                format!("{endpoint}: HTTP {status}")
            });
        }
    };
    if json.get("status").and_then(Value::as_str) != Some("success") {
        // Prometheus's `error` text is the body's: logged, not repeated.
        log_body(endpoint, body);
        let kind = json
            .get("errorType")
            .and_then(Value::as_str)
            .filter(|k| PROMETHEUS_ERROR_TYPES.contains(k))
            .map(|k| format!(": {k}"))
            .unwrap_or_default();
        return Err(format!(
            "{endpoint}: the query failed (HTTP {status}{kind}; the operator's debug log has Prometheus's message)"
        ));
    }
    Ok(json.get("data").cloned().unwrap_or(Value::Null))
}

/// The one number of an instant query's `data` (a one-series vector or a
/// scalar); None when the vector is empty.
fn one_number(endpoint: &str, data: &Value) -> Result<Option<f64>, String> {
    let sample_value = |sample: &Value| -> Result<Option<f64>, String> {
        // A sample is [<time>, "<value>"].
        match sample.get(1) {
            Some(Value::String(s)) => parse_number(s)
                .map(Some)
                .ok_or_else(|| format!("{endpoint}: the sample value is not a number")),
            _ => Err(format!("{endpoint}: malformed sample in the response")),
        }
    };
    match data.get("resultType").and_then(Value::as_str) {
        Some("vector") => {
            let series = data
                .get("result")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            match series {
                [] => Ok(None),
                [one] => sample_value(one.get("value").unwrap_or(&Value::Null)),
                many => Err(format!(
                    "{endpoint}: query returned {} series; aggregate it to one, e.g. with sum(...)",
                    many.len()
                )),
            }
        }
        Some("scalar") => sample_value(data.get("result").unwrap_or(&Value::Null)),
        other => Err(format!(
            "{endpoint}: the query returned a {}, not an instant vector or scalar; \
             use an instant query that yields one number",
            other
                .filter(|t| matches!(*t, "matrix" | "string"))
                .unwrap_or("response without a known resultType")
        )),
    }
}

/// An instant query's vector `data` as values by `label`.
fn by_label(endpoint: &str, data: &Value, label: &str) -> Result<BTreeMap<String, f64>, String> {
    if data.get("resultType").and_then(Value::as_str) != Some("vector") {
        return Err(format!(
            "{endpoint}: the query must return an instant vector by {label:?}"
        ));
    }
    let mut out = BTreeMap::new();
    for series in data
        .get("result")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let key = series
            .get("metric")
            .and_then(|m| m.get(label))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let value = series
            .get("value")
            .and_then(|v| v.get(1))
            .and_then(Value::as_str)
            .and_then(parse_number)
            .ok_or_else(|| format!("{endpoint}: malformed sample in the response"))?;
        *out.entry(key).or_insert(0.0) += value;
    }
    Ok(out)
}

/// A number as Prometheus and JSON APIs write it: `0.5`, `1e3`, `NaN`, `+Inf`, `-Inf`.
fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    match t {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ if t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => t.parse().ok(),
        _ => None,
    }
}

#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Parses the supported JSON-path subset: optional `$`, `.key`, `[0]`,
/// `['key']` / `["key"]`, and a leading bare key (`data.ndcg`).
fn parse_json_path(path: &str) -> Result<Vec<Segment>, String> {
    let bad = |at: usize, why: &str| {
        Err(format!(
            "jsonPath {path:?} at position {}: {why}; write e.g. $.data.ndcg, $.items[0].value or $['a key']",
            at + 1
        ))
    };
    let chars: Vec<char> = path.trim().chars().collect();
    let mut i = usize::from(chars.first() == Some(&'$'));
    let mut segments = Vec::new();
    let key_len = |from: usize| {
        chars.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|c| !matches!(c, '.' | '[')).count()
        })
    };
    if i == 0 && !matches!(chars.first(), Some('.' | '[') | None) {
        let len = key_len(0);
        segments.push(Segment::Key(chars[..len].iter().collect()));
        i = len;
    }
    while let Some(&c) = chars.get(i) {
        match c {
            '.' => {
                let len = key_len(i + 1);
                if len == 0 {
                    return bad(i, "a `.` needs a key after it");
                }
                segments.push(Segment::Key(chars[i + 1..i + 1 + len].iter().collect()));
                i += 1 + len;
            }
            '[' => {
                let Some(close) = chars[i..].iter().position(|c| *c == ']').map(|p| p + i) else {
                    return bad(i, "`[` is not closed by `]`");
                };
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                let quoted = ['\'', '"']
                    .iter()
                    .any(|q| inner.len() >= 2 && inner.starts_with(*q) && inner.ends_with(*q));
                if quoted {
                    segments.push(Segment::Key(inner[1..inner.len() - 1].to_string()));
                } else if let Ok(index) = inner.parse::<usize>() {
                    segments.push(Segment::Index(index));
                } else {
                    return bad(i, "brackets hold an index (0, 1, …) or a quoted key");
                }
                i = close + 1;
            }
            _ => return bad(i, "expected `.` or `[`"),
        }
    }
    Ok(segments)
}

/// The value at `path` in `json`.
fn json_path<'a>(json: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut here = json;
    let mut walked = String::from("$");
    for segment in parse_json_path(path)? {
        let next = match &segment {
            Segment::Key(key) => here.get(key.as_str()),
            Segment::Index(index) => here.get(*index),
        };
        let Some(next) = next else {
            let what = match &segment {
                Segment::Key(key) => format!("no key {key:?}"),
                Segment::Index(index) => format!("no index {index}"),
            };
            return Err(format!(
                "jsonPath {path:?}: {what} in the {} at {walked}",
                kind(here)
            ));
        };
        match &segment {
            Segment::Key(key) => walked.push_str(&format!("[{key:?}]")),
            Segment::Index(index) => walked.push_str(&format!("[{index}]")),
        }
        here = next;
    }
    Ok(here)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A number, a numeric string, or null (no data).
fn number_at(v: &Value, path: &str) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("jsonPath {path:?}: the number {n} does not fit a float")),
        Value::String(s) => parse_number(s)
            .map(Some)
            .ok_or_else(|| format!("jsonPath {path:?} points at a string that is not a number")),
        other => Err(format!(
            "jsonPath {path:?} points at {} {}, not a number; point it at the numeric field",
            if matches!(other, Value::Array(_) | Value::Object(_)) {
                "an"
            } else {
                "a"
            },
            kind(other)
        )),
    }
}

#[cfg(test)]
#[path = "provider_tests.rs"]
pub(crate) mod tests;
