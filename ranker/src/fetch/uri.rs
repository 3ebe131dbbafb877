//! `MODEL_URI` parsing: which store, which bucket/key, and which file name the
//! artifact gets in `MODEL_DIR`. The file name rule mirrors the operator's
//! `artifact_source` (operator/src/render/workload.rs) so that `MODEL_PATH` and the
//! downloaded file always agree.

use std::fmt;

/// An object store reached through `object_store` (credentials, signing, listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectScheme {
    /// Amazon S3 or any S3-compatible server (`AWS_ENDPOINT_URL`).
    S3,
    /// Google Cloud Storage.
    Gs,
}

impl fmt::Display for ObjectScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectScheme::S3 => "s3",
            ObjectScheme::Gs => "gs",
        })
    }
}

/// A parsed `MODEL_URI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `s3://bucket/key` or `gs://bucket/key`; a key that is empty or ends in `/`
    /// is a prefix (every object under it is downloaded).
    Object {
        scheme: ObjectScheme,
        bucket: String,
        key: String,
    },
    /// `http://…` or `https://…`: one file (the full URL, query included, is
    /// requested, so pre-signed URLs work).
    Http { url: reqwest::Url },
}

/// Why a `MODEL_URI` cannot be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error(
        "MODEL_URI {uri:?} has scheme {scheme:?}, which the storage initializer cannot fetch: use s3://, gs://, http:// or https:// (pvc:// claims are mounted by the operator, not fetched)"
    )]
    UnsupportedScheme { uri: String, scheme: String },
    #[error(
        "MODEL_URI {uri:?} has no scheme: write it as s3://bucket/key, gs://bucket/key or https://host/path"
    )]
    NoScheme { uri: String },
    #[error("MODEL_URI {uri:?} names no bucket: write it as {scheme}://<bucket>/<key>")]
    NoBucket { uri: String, scheme: ObjectScheme },
    #[error("MODEL_URI {uri:?} is not a valid URL: {reason}")]
    BadUrl { uri: String, reason: String },
    #[error(
        "MODEL_URI {uri:?} ends in '/' (a prefix), which only s3:// and gs:// can list: point it at one file"
    )]
    HttpPrefix { uri: String },
    #[error(
        "MODEL_URI {uri:?} ends in {segment:?}, which is not a file name: point it at one file"
    )]
    BadFileName { uri: String, segment: String },
}

impl ModelUri {
    /// Parses `uri` (as `spec.model.uri`).
    pub fn parse(uri: &str) -> Result<ModelUri, UriError> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(UriError::NoScheme { uri: uri.into() });
        };
        let object_scheme = match scheme {
            "s3" => Some(ObjectScheme::S3),
            "gs" => Some(ObjectScheme::Gs),
            "http" | "https" => None,
            other => {
                return Err(UriError::UnsupportedScheme {
                    uri: uri.into(),
                    scheme: other.into(),
                });
            }
        };
        let parsed = match object_scheme {
            Some(scheme) => {
                // The operator ignores `?` and `#` when it derives MODEL_PATH; so do we.
                let rest = rest.split(['?', '#']).next().unwrap_or(rest);
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(UriError::NoBucket {
                        uri: uri.into(),
                        scheme,
                    });
                }
                ModelUri::Object {
                    scheme,
                    bucket: bucket.into(),
                    key: key.into(),
                }
            }
            None => {
                let url = reqwest::Url::parse(uri).map_err(|e| UriError::BadUrl {
                    uri: uri.into(),
                    reason: e.to_string(),
                })?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(UriError::BadUrl {
                        uri: uri.into(),
                        reason: "no host".into(),
                    });
                }
                ModelUri::Http { url }
            }
        };
        match (&parsed, parsed.file_name()) {
            (ModelUri::Http { .. }, None) => Err(UriError::HttpPrefix { uri: uri.into() }),
            (_, Some(name)) if name == "." || name == ".." => Err(UriError::BadFileName {
                uri: uri.into(),
                segment: name,
            }),
            _ => Ok(parsed),
        }
    }

    /// The name the artifact gets in `MODEL_DIR`: the URI path's last segment, as
    /// written (no percent-decoding, like the operator). `None` for a prefix.
    pub fn file_name(&self) -> Option<String> {
        let path = match self {
            ModelUri::Object { key, .. } => key.as_str(),
            ModelUri::Http { url } => url.path(),
        };
        let last = path.rsplit('/').next().unwrap_or("");
        (!last.is_empty()).then(|| last.to_string())
    }

    /// Whether this URI names every object under a prefix rather than one file.
    pub fn is_prefix(&self) -> bool {
        self.file_name().is_none()
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelUri::Object {
                scheme,
                bucket,
                key,
            } => write!(f, "{scheme}://{bucket}/{key}"),
            // Never print the query: pre-signed URLs carry credentials there.
            ModelUri::Http { url } => {
                write!(
                    f,
                    "{}://{}{}",
                    url.scheme(),
                    url.host_str().unwrap_or(""),
                    url.port().map(|p| format!(":{p}")).unwrap_or_default()
                )?;
                f.write_str(url.path())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(scheme: ObjectScheme, bucket: &str, key: &str) -> ModelUri {
        ModelUri::Object {
            scheme,
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn object_uris_split_into_bucket_and_key() {
        let cases = [
            (
                "s3://b/model.txt",
                object(ObjectScheme::S3, "b", "model.txt"),
            ),
            (
                "s3://b/a/b/m.json",
                object(ObjectScheme::S3, "b", "a/b/m.json"),
            ),
            ("gs://bk/dir/", object(ObjectScheme::Gs, "bk", "dir/")),
            ("gs://bk", object(ObjectScheme::Gs, "bk", "")),
            (
                "s3://b/m.txt?versionId=3",
                object(ObjectScheme::S3, "b", "m.txt"),
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(ModelUri::parse(uri), Ok(want), "{uri}");
        }
    }

    #[test]
    fn file_names_match_the_operators_model_path() {
        let cases = [
            ("s3://b/a/b/m.json", Some("m.json")),
            ("s3://b/dir/", None),
            ("gs://b", None),
            ("https://h/x/model.onnx?sig=1", Some("model.onnx")),
            ("https://h/x/my%20model.txt", Some("my%20model.txt")),
        ];
        for (uri, want) in cases {
            let parsed = ModelUri::parse(uri).unwrap();
            assert_eq!(parsed.file_name().as_deref(), want, "{uri}");
            assert_eq!(parsed.is_prefix(), want.is_none(), "{uri}");
        }
    }

    #[test]
    fn bad_uris_name_the_problem() {
        let err = |uri| ModelUri::parse(uri).unwrap_err().to_string();
        assert!(err("ftp://h/m.txt").contains("scheme \"ftp\""));
        assert!(err("pvc://claim/m.txt").contains("mounted by the operator"));
        assert!(err("/models/m.txt").contains("no scheme"));
        assert!(err("s3:///m.txt").contains("names no bucket"));
        assert!(err("https://h/dir/").contains("only s3:// and gs://"));
        assert!(err("https://h").contains("only s3:// and gs://"));
        assert!(err("http://[::1/m").contains("not a valid URL"));
        assert!(err("s3://b/x/..").contains("not a file name"));
    }

    #[test]
    fn display_hides_the_query_of_presigned_urls() {
        let uri = ModelUri::parse("https://h:8443/m.txt?X-Amz-Signature=secret").unwrap();
        assert_eq!(uri.to_string(), "https://h:8443/m.txt");
    }
}
