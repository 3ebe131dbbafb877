//! Responses: JSON bodies and the one error format, `{"error", "model", "version"}`
//! (the served model and version are added by [`super::app::handle`]).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::parse::Reject;

/// The response type of every handler.
pub type Resp = Response<Full<Bytes>>;

#[derive(Serialize)]
pub(super) struct ErrorBody<'a> {
    pub error: &'a str,
    /// The served model and version (added by [`super::app::handle`]), so a client of a
    /// Service in front of several versions knows which one refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'a str>,
}

/// The message of an [`error`] response, kept as a response extension so that
/// [`super::app::handle`] can add the served model and version to the body.
#[derive(Debug, Clone)]
pub(super) struct ErrorMessage(pub String);

/// A JSON response.
pub(super) fn json(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A `{"error": ...}` response.
pub fn error(status: StatusCode, message: &str) -> Resp {
    let body = serde_json::to_vec(&ErrorBody {
        error: message,
        model: None,
        version: None,
    })
    .unwrap_or_default();
    let mut r = json(status, body);
    r.extensions_mut().insert(ErrorMessage(message.to_owned()));
    r
}

pub(super) fn to_json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the response: {e}"),
        ),
    }
}

/// A refusal before any scoring (kept small: a whole response in an `Err` is large).
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, message: &str) -> Refusal {
        Refusal {
            status,
            message: message.to_owned(),
        }
    }
    pub(super) fn into_response(self) -> Resp {
        error(self.status, &self.message)
    }
}

pub(super) fn reject(r: Reject) -> Resp {
    match r {
        Reject::BadRequest(m) => error(StatusCode::BAD_REQUEST, &m),
        Reject::TooLarge(m) => error(StatusCode::PAYLOAD_TOO_LARGE, &m),
    }
}

/// `{"status": "ok"}`.
pub(super) fn error_free_ok() -> Resp {
    json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}
