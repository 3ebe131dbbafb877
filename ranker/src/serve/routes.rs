//! Where a request goes: the ranking, v2 and probe paths, and the method each takes.

use hyper::Method;

/// Where a request goes. Model routes carry the requested name (and version).
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Ready,
    Metrics,
    V2Live,
    V2Ready,
    V2Server,
    Rank(&'a str),
    /// `POST /v1/feedback`: interleaving clicks (not ranking traffic).
    Feedback,
    ModelMetadata(&'a str, Option<&'a str>),
    ModelReady(&'a str, Option<&'a str>),
    Infer(&'a str, Option<&'a str>),
    NotFound,
}

impl Route<'_> {
    /// The one method the path takes (405 with `Allow` otherwise).
    pub fn method(&self) -> Method {
        match self {
            Route::Rank(_) | Route::Infer(..) | Route::Feedback => Method::POST,
            _ => Method::GET,
        }
    }
    /// Only ranking and infer requests are counted in `ranker_requests_total`.
    pub fn counted(&self) -> bool {
        matches!(self, Route::Rank(_) | Route::Infer(..))
    }
}

/// Parses the path; the model name is checked later, by the handler.
pub fn route(path: &str) -> Route<'_> {
    match path {
        "/healthz" => return Route::Healthz,
        "/ready" => return Route::Ready,
        "/metrics" => return Route::Metrics,
        "/v2/health/live" => return Route::V2Live,
        "/v2/health/ready" => return Route::V2Ready,
        "/v2" => return Route::V2Server,
        "/v1/feedback" => return Route::Feedback,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/v1/models/") {
        if let Some(name) = rest.strip_suffix(":rank")
            && !name.is_empty()
            && !name.contains('/')
        {
            return Route::Rank(name);
        }
        return Route::NotFound;
    }
    let Some(rest) = path.strip_prefix("/v2/models/") else {
        return Route::NotFound;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (name, version, tail) = match parts.as_slice() {
        [name, "versions", v, tail @ ..] => (*name, Some(*v), tail),
        [name, tail @ ..] => (*name, None, tail),
        [] => return Route::NotFound,
    };
    if name.is_empty() || version == Some("") {
        return Route::NotFound;
    }
    match tail {
        [] => Route::ModelMetadata(name, version),
        ["ready"] => Route::ModelReady(name, version),
        ["infer"] => Route::Infer(name, version),
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v1/models/m:rank"), Route::Rank("m"));
        assert_eq!(route("/v1/models/m"), Route::NotFound);
        assert_eq!(route("/v1/models/a/b:rank"), Route::NotFound);
        assert_eq!(route("/v1/models/:rank"), Route::NotFound);
        assert_eq!(route("/v2/models/m"), Route::ModelMetadata("m", None));
        assert_eq!(
            route("/v2/models/m/versions/3/infer"),
            Route::Infer("m", Some("3"))
        );
        assert_eq!(route("/v2/models/m/ready"), Route::ModelReady("m", None));
        assert_eq!(route("/v2/models/m/explain"), Route::NotFound);
        assert_eq!(route("/v2/models/"), Route::NotFound);
        assert_eq!(route("/v2/health/ready"), Route::V2Ready);
        assert_eq!(route("/nope"), Route::NotFound);
        assert!(Route::Rank("m").counted() && !Route::Ready.counted());
        assert_eq!(route("/v1/feedback"), Route::Feedback);
        assert!(!Route::Feedback.counted() && Route::Feedback.method() == Method::POST);
    }
}
