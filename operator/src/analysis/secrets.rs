//! The Secrets and ConfigMaps an analysis request needs (header values,
//! Prometheus credentials, CA bundles), read in the model's namespace with a
//! short cache so that a measurement every few seconds is not an API call
//! every few seconds, and a rotated Secret is picked up within the TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use mlctl_crds::http::SecretKeyRef;

/// How long a read Secret or ConfigMap (or its absence) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Objects kept before expired ones are dropped.
const CACHE_MAX: usize = 1024;

/// Which kind of object holds the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Secret,
    ConfigMap,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }
}

/// An object's data by key; None when the object does not exist.
pub type Data = Option<Arc<BTreeMap<String, Vec<u8>>>>;

/// Reads Secrets and ConfigMaps. Err is a short reason (e.g. forbidden).
pub trait Source: Send + Sync {
    fn data<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Data, String>>;
}

/// One key of a Secret or ConfigMap; the error names `field` and says what
/// is missing, never what the object holds.
pub async fn value(
    source: &dyn Source,
    kind: Kind,
    namespace: &str,
    name: &str,
    key: &str,
    field: &str,
) -> Result<Vec<u8>, String> {
    let what = kind.as_str();
    let data = source
        .data(kind, namespace, name)
        .await
        .map_err(|e| format!("{field}: cannot read {what} {name:?}: {e}"))?
        .ok_or_else(|| format!("{field}: {what} {name:?} not found in namespace {namespace:?}"))?;
    data.get(key)
        .cloned()
        .ok_or_else(|| format!("{field}: {what} {name:?} has no key {key:?}"))
}

/// A Secret key's value.
pub async fn secret(
    source: &dyn Source,
    namespace: &str,
    r: &SecretKeyRef,
    field: &str,
) -> Result<Vec<u8>, String> {
    value(source, Kind::Secret, namespace, &r.name, &r.key, field).await
}

/// A Secret value as header/credential text: UTF-8, without the trailing
/// newline `kubectl create secret --from-file` leaves.
pub fn text(bytes: Vec<u8>, field: &str) -> Result<String, String> {
    let text = String::from_utf8(bytes).map_err(|_| format!("{field}: the value is not UTF-8"))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

type Key = (Kind, String, String);

/// Reads through the API, caching each object (or its absence) for [`CACHE_TTL`].
pub struct KubeSource {
    client: kube::Client,
    cache: Mutex<HashMap<Key, (Instant, Data)>>,
}

impl KubeSource {
    /// A source reading with `client`.
    pub fn new(client: kube::Client) -> Self {
        KubeSource {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &Key) -> Option<Data> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, data)| data.clone())
    }

    fn store(&self, key: Key, data: Data) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            }
            cache.insert(key, (Instant::now(), data));
        }
    }

    async fn fetch(&self, kind: Kind, namespace: &str, name: &str) -> Result<Data, kube::Error> {
        Ok(match kind {
            Kind::Secret => Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await?
                .map(|s| {
                    let data = s.data.unwrap_or_default().into_iter();
                    Arc::new(data.map(|(k, v)| (k, v.0)).collect())
                }),
            Kind::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await?
                .map(|c| {
                    let text = c.data.unwrap_or_default().into_iter();
                    let binary = c.binary_data.unwrap_or_default().into_iter();
                    Arc::new(
                        text.map(|(k, v)| (k, v.into_bytes()))
                            .chain(binary.map(|(k, v)| (k, v.0)))
                            .collect(),
                    )
                }),
        })
    }
}

impl Source for KubeSource {
    fn data<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Data, String>> {
        Box::pin(async move {
            let key = (kind, namespace.to_string(), name.to_string());
            if let Some(data) = self.cached(&key) {
                return Ok(data);
            }
            let data = self
                .fetch(kind, namespace, name)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 403 => format!(
                        "the operator may not read {}s in this namespace (RBAC: get {})",
                        kind.as_str(),
                        kind.as_str().to_ascii_lowercase() + "s"
                    ),
                    kube::Error::Api(s) => format!("HTTP {} {}", s.code, s.reason),
                    _ => "the API server did not answer".to_string(),
                })?;
            self.store(key, data.clone());
            Ok(data)
        })
    }
}

/// Fixed objects (tests, and a Prober without a cluster).
#[derive(Debug, Default, Clone)]
pub struct StaticSource {
    objects: HashMap<Key, Arc<BTreeMap<String, Vec<u8>>>>,
}

impl StaticSource {
    /// Adds (or replaces) `key` of the object `kind`/`namespace`/`name`.
    pub fn with(
        mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        key: &str,
        value: &[u8],
    ) -> Self {
        let entry = self
            .objects
            .entry((kind, namespace.into(), name.into()))
            .or_default();
        Arc::make_mut(entry).insert(key.into(), value.to_vec());
        self
    }
}

impl Source for StaticSource {
    fn data<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Data, String>> {
        let found = self
            .objects
            .get(&(kind, namespace.to_string(), name.to_string()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}
