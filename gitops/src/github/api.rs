//! A thin REST layer over octocrab's HTTP client: octocrab supplies authentication
//! (token or GitHub App installation), the base URL and the transport; this layer adds
//! rate-limit handling (`retry-after`, `x-ratelimit-reset`, secondary limits, backoff),
//! error messages that name the fix, and dry-run (writes are printed, not sent).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "GitHub rejected the credentials (401) while trying to {what}: set GITHUB_TOKEN or GH_TOKEN \
         to a valid token, or check --app-id/--app-key/--installation-id"
    )]
    Unauthorized { what: String },
    #[error(
        "GitHub refused to {what} (403: {message}): the token needs contents, pull requests, \
         issues and commit statuses write access to the repository (classic tokens: the `repo` scope)"
    )]
    Forbidden { what: String, message: String },
    #[error(
        "not found while trying to {what} (404): check --repo, --path and --base, and that the \
         token can see the repository (GitHub answers 404 for private repositories it cannot read)"
    )]
    NotFound { what: String },
    #[error(
        "conflict while trying to {what} (409: {message}): the branch moved while mlctl was \
         writing; re-run the same command, it continues where it stopped"
    )]
    Conflict { what: String, message: String },
    #[error("GitHub rejected the request to {what} as invalid (422: {message})")]
    Unprocessable { what: String, message: String },
    #[error(
        "rate limited while trying to {what}; the limit resets in {wait_secs}s, more than \
         --max-retry-wait allows. Re-run later (the run is safe to repeat)"
    )]
    RateLimited { what: String, wait_secs: u64 },
    #[error("GitHub answered {status} while trying to {what}: {message}")]
    Other {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "GitHub did not answer within {secs}s while trying to {what} (--request-timeout); \
         {}",
        if *repeated { "re-run later" } else { "it may have been done: re-run the same command, it finds what exists and continues" }
    )]
    Timeout {
        what: String,
        secs: u64,
        /// Whether the request was already sent again (a read), so the run
        /// is over; else a write that is never sent twice.
        repeated: bool,
    },
    #[error("cannot reach GitHub while trying to {what}: {source}")]
    Transport {
        what: String,
        #[source]
        source: octocrab::Error,
    },
}

impl ApiError {
    pub fn is_unprocessable(&self) -> bool {
        matches!(self, ApiError::Unprocessable { .. })
    }
}

/// How long to wait before retrying rate-limited or failing requests.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// Longest single wait accepted (for a primary limit whose reset is far away).
    pub max_wait: Duration,
    /// First backoff when GitHub gives no hint (secondary limits: GitHub asks for ≥ 1 minute).
    pub backoff: Duration,
    /// Longest wait for one request, its answer's body included.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_wait: Duration::from_secs(900),
            backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A decoded response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

pub struct Api {
    crab: Octocrab,
    pub owner: String,
    pub repo: String,
    pub dry_run: bool,
    /// Authenticated as a GitHub App installation: check runs are available.
    pub as_app: bool,
    policy: RetryPolicy,
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether (and how long) to wait before retrying, per GitHub's rate-limit documentation.
pub(crate) fn retry_delay(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    attempt: u32,
    policy: &RetryPolicy,
) -> Option<Duration> {
    let backoff = policy.backoff.saturating_mul(2u32.saturating_pow(attempt));
    let secondary = message
        .to_ascii_lowercase()
        .contains("secondary rate limit");
    let primary_exhausted = header_u64(headers, "x-ratelimit-remaining") == Some(0);
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && (secondary || primary_exhausted));
    if limited {
        if let Some(secs) = header_u64(headers, "retry-after") {
            return Some(Duration::from_secs(secs));
        }
        if primary_exhausted && let Some(reset) = header_u64(headers, "x-ratelimit-reset") {
            return Some(Duration::from_secs(reset.saturating_sub(now_secs())));
        }
        return Some(backoff);
    }
    if status.is_server_error() {
        return Some(backoff.min(Duration::from_secs(30)));
    }
    None
}

/// Says why and how long, then waits (progress goes to stderr).
async fn pause(reason: &str, delay: Duration) {
    let reason = crate::redact::url_credentials(reason);
    eprintln!(
        "{}; retrying in {:.1}s",
        crate::terminal::escape_controls(&reason),
        delay.as_secs_f64()
    );
    tokio::time::sleep(delay).await;
}

fn github_message(body: &Value) -> String {
    let mut message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_string();
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        let details: Vec<String> = errors
            .iter()
            .map(|e| {
                e.get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())
            })
            .collect();
        if !details.is_empty() {
            message = format!("{message}: {}", details.join("; "));
        }
    }
    message
}

impl Api {
    pub fn new(crab: Octocrab, owner: &str, repo: &str, dry_run: bool, policy: RetryPolicy) -> Api {
        Api {
            crab,
            owner: owner.to_string(),
            repo: repo.to_string(),
            dry_run,
            as_app: false,
            policy,
        }
    }

    /// Marks the client as a GitHub App installation (enables check runs).
    pub fn as_app(mut self, as_app: bool) -> Api {
        self.as_app = as_app;
        self
    }

    /// `/repos/{owner}/{repo}` + `rest`.
    pub fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.repo)
    }

    /// A read; 404 is `Ok(None)`.
    pub async fn get(&self, path: &str, what: &str) -> Result<Option<Value>, ApiError> {
        match self.send(Method::GET, path, None, what).await {
            Ok(reply) => Ok(Some(reply.body)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A read whose absence is an error.
    pub async fn get_required(&self, path: &str, what: &str) -> Result<Value, ApiError> {
        self.send(Method::GET, path, None, what)
            .await
            .map(|reply| reply.body)
    }

    /// A write; in dry-run mode it is printed and `Ok(None)` returned.
    pub async fn write(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<Option<Value>, ApiError> {
        if self.dry_run {
            println!("would {method} {path}  # {what}");
            return Ok(None);
        }
        eprintln!("{what}");
        self.send(method, path, Some(body), what)
            .await
            .map(|reply| Some(reply.body))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Reply, ApiError> {
        let mut attempt = 0;
        loop {
            let may_repeat = repeatable(&method) && attempt + 1 < self.policy.max_attempts;
            let answer = tokio::time::timeout(
                self.policy.request_timeout,
                self.attempt(&method, path, body),
            )
            .await;
            let (status, headers, body_json) = match answer {
                Ok(Ok(answer)) => answer,
                // No answer, or half of one: the request may have landed.
                // Reads are safe to repeat; a write is left to the next run,
                // which finds what exists.
                Err(_) | Ok(Err(_)) if may_repeat => {
                    let delay =
                        Duration::from_millis(200).saturating_mul(2u32.saturating_pow(attempt));
                    pause("the connection to GitHub failed or timed out", delay).await;
                    attempt += 1;
                    continue;
                }
                Err(_elapsed) => {
                    return Err(ApiError::Timeout {
                        what: what.to_string(),
                        secs: self.policy.request_timeout.as_secs(),
                        repeated: repeatable(&method),
                    });
                }
                Ok(Err(source)) => {
                    return Err(ApiError::Transport {
                        what: what.to_string(),
                        source,
                    });
                }
            };
            if status.is_success() {
                return Ok(Reply {
                    status,
                    body: body_json,
                });
            }
            let message = github_message(&body_json);
            let retry = retry_delay(status, &headers, &message, attempt, &self.policy);
            let exhausted = attempt + 1 >= self.policy.max_attempts;
            // A rate limit rejects the request before it is acted on, so any
            // method is sent again; a 5xx may come after the write landed
            // (a gateway timing out), so only a repeatable request is.
            let retry =
                retry.filter(|_| !status.is_server_error() || (!exhausted && repeatable(&method)));
            if let Some(delay) = retry {
                if delay > self.policy.max_wait || exhausted {
                    return Err(ApiError::RateLimited {
                        what: what.to_string(),
                        wait_secs: delay.as_secs(),
                    });
                }
                pause(&format!("GitHub answered {status} ({message})"), delay).await;
                attempt += 1;
                continue;
            }
            let what = what.to_string();
            return Err(match status.as_u16() {
                401 => ApiError::Unauthorized { what },
                403 => ApiError::Forbidden { what, message },
                404 => ApiError::NotFound { what },
                409 => ApiError::Conflict { what, message },
                422 => ApiError::Unprocessable { what, message },
                code => ApiError::Other {
                    what,
                    status: code,
                    message,
                },
            });
        }
    }

    /// One request and its whole answer.
    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, HeaderMap, Value), octocrab::Error> {
        let response = match *method {
            Method::GET => self.crab._get(path).await,
            Method::POST => self.crab._post(path, body).await,
            Method::PATCH => self.crab._patch(path, body).await,
            Method::PUT => self.crab._put(path, body).await,
            _ => self.crab._delete(path, body).await,
        }?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, headers, body))
    }
}

/// Whether a request may be sent again when it is unknown whether it took
/// effect (no answer, a timeout, a 5xx). GET reads. PUT replaces a whole
/// resource, and the one PUT mlctl sends (a file's contents) names the blob
/// it replaces: a repeat after it landed is refused with 409, never a second
/// commit. POST creates (a branch, a pull request, a comment, a check run),
/// and PATCH and DELETE are not idempotent by HTTP's definition: sent twice
/// they could act twice, so they are sent once and a re-run of the command
/// finds what exists.
fn repeatable(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::PUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn errors_name_the_fix() {
        let what = || "open the pull request".to_string();
        let cases = [
            (
                ApiError::Unauthorized { what: what() }.to_string(),
                "GITHUB_TOKEN",
            ),
            (
                ApiError::Forbidden {
                    what: what(),
                    message: "Resource not accessible".into(),
                }
                .to_string(),
                "pull requests",
            ),
            (ApiError::NotFound { what: what() }.to_string(), "--repo"),
            (
                ApiError::Conflict {
                    what: what(),
                    message: "sha mismatch".into(),
                }
                .to_string(),
                "re-run",
            ),
            (
                ApiError::RateLimited {
                    what: what(),
                    wait_secs: 3600,
                }
                .to_string(),
                "--max-retry-wait",
            ),
        ];
        for (message, fix) in cases {
            assert!(
                message.contains(fix) && message.contains("open the pull request"),
                "{message}"
            );
        }
        let body = serde_json::json!({"message": "Validation Failed",
            "errors": [{"message": "A pull request already exists for acme:x."}]});
        assert_eq!(
            github_message(&body),
            "Validation Failed: A pull request already exists for acme:x."
        );
    }

    #[test]
    fn only_requests_that_cannot_act_twice_are_repeated_after_no_answer() {
        assert!(repeatable(&Method::GET) && repeatable(&Method::PUT));
        for method in [Method::POST, Method::PATCH, Method::DELETE] {
            assert!(!repeatable(&method), "{method}");
        }
        let write = ApiError::Timeout {
            what: "open the pull request".into(),
            secs: 60,
            repeated: false,
        };
        let text = write.to_string();
        assert!(
            text.contains("within 60s") && text.contains("--request-timeout"),
            "{text}"
        );
        assert!(text.contains("may have been done"), "{text}");
    }

    #[test]
    fn retry_delays_follow_github_headers() {
        let policy = RetryPolicy::default();
        let h = headers(&[("retry-after", "7".into())]);
        assert_eq!(
            retry_delay(StatusCode::TOO_MANY_REQUESTS, &h, "", 0, &policy),
            Some(Duration::from_secs(7))
        );
        let reset = now_secs() + 100;
        let h = headers(&[
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", reset.to_string()),
        ]);
        let wait = retry_delay(
            StatusCode::FORBIDDEN,
            &h,
            "API rate limit exceeded",
            0,
            &policy,
        )
        .unwrap();
        assert!(wait.as_secs() >= 99 && wait.as_secs() <= 100, "{wait:?}");
        let none = HeaderMap::new();
        assert_eq!(
            retry_delay(
                StatusCode::FORBIDDEN,
                &none,
                "You have exceeded a secondary rate limit",
                1,
                &policy
            ),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_delay(
                StatusCode::FORBIDDEN,
                &none,
                "Resource not accessible",
                0,
                &policy
            ),
            None
        );
        assert_eq!(
            retry_delay(StatusCode::NOT_FOUND, &none, "", 0, &policy),
            None
        );
    }
}
