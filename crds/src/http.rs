//! How the operator authenticates to the endpoints a model's analysis reads
//! (Prometheus, web metrics): credentials only from Secrets in the model's
//! namespace, never as plain strings in the spec, and TLS settings. The
//! shapes follow the Prometheus Operator's (`authorization`, `basicAuth`,
//! `tlsConfig`), which platform teams already write.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::common::DNS_SUBDOMAIN_RULE;

/// Longest request timeout a manifest may ask for; the operator also clamps
/// every timeout to its `--analysis-timeout-max` (default 10s).
pub const TIMEOUT_MAX: &str = "60s";

/// CEL rule: a duration (see [`crate::common::DURATION_RULE`]) of at most
/// [`TIMEOUT_MAX`].
pub const TIMEOUT_RULE: &str =
    r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) <= duration('60s')";

/// A key of a Secret in the model's namespace, read by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as the model).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("secretKeyRef.name must be a Secret name (lower-case letters, digits, '-' and '.')"))]
    pub name: String,
    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("secretKeyRef.key must be a Secret data key (letters, digits, '-', '_' and '.')"))]
    pub key: String,
}

/// A key of a ConfigMap in the model's namespace, read by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap (same namespace as the model).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("configMapKeyRef.name must be a ConfigMap name (lower-case letters, digits, '-' and '.')"))]
    pub name: String,
    /// Key in the ConfigMap's data.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("configMapKeyRef.key must be a ConfigMap data key (letters, digits, '-', '_' and '.')"))]
    pub key: String,
}

/// One request header. Credentials (`Authorization`, `Cookie`, API keys)
/// must come from a Secret (`valueFrom.secretKeyRef`); `value` is for the
/// rest and may use the query placeholders.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.value), has(self.valueFrom)].filter(x, x).size() == 1").message("each header sets exactly one of value or valueFrom"),
    validation = Rule::new("!has(self.value) || !(self.name.lowerAscii() in ['authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'api-key', 'x-auth-token'])").message("a credential header (Authorization, Cookie, X-Api-Key, ...) must come from a Secret: use valueFrom.secretKeyRef instead of value"),
)]
pub struct HttpHeader {
    /// Header name, e.g. `Accept`.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[!#$%&\\'*+.^_`|~0-9A-Za-z-]+$')").message("header name must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~)"))]
    pub name: String,
    /// A plain value (placeholders substituted). Not for credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
    /// The value from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderValueSource>,
}

/// Where a header's value comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValueSource {
    /// A key of a Secret in the model's namespace.
    pub secret_key_ref: SecretKeyRef,
}

/// `Authorization: <type> <credentials>` with the credentials from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The scheme (default `Bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9._~+/-]+$') && self.lowerAscii() != 'basic'").message("authorization.type must be a scheme such as Bearer (use basicAuth for Basic)"))]
    pub type_: Option<String>,
    /// The token.
    pub credentials: SecretKeyRef,
}

/// HTTP basic authentication from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// The user name.
    pub username: SecretKeyRef,
    /// The password.
    pub password: SecretKeyRef,
}

/// TLS settings of the connection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// PEM CA bundle that signs the server's certificate (added to the
    /// system roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaSource>,
    /// Name expected in the server's certificate when it differs from the
    /// address's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_name: Option<String>,
    /// Accept any certificate (tests only; the connection is unauthenticated).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// A PEM CA bundle from a Secret or a ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.secret), has(self.configMap)].filter(x, x).size() == 1").message("tlsConfig.ca sets exactly one of secret or configMap"),
)]
pub struct CaSource {
    /// From a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretKeyRef>,
    /// From a ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKeyRef>,
}
