//! A fresh namespace per test, so tests run in parallel without seeing each
//! other's objects. It is deleted when the test ends; when the test panics, the
//! guard first dumps the namespace's objects, Events and the component logs.

use std::{collections::BTreeMap, path::PathBuf};

use k8s_openapi::{NamespaceResourceScope, api::core::v1::Namespace};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, ObjectMeta, PostParams},
};

use crate::{admin_config, dump};

/// A namespace owned by one test. Call [`TestNamespace::finish`] at the end of
/// the test; if the test panics first, `Drop` dumps the namespace and deletes it.
///
/// Set `MLCTL_E2E_KEEP_NAMESPACES=1` to keep the namespace of a failed test for
/// inspection (`e2e/cluster kubectl -n <name> get all`).
pub struct TestNamespace {
    client: Client,
    name: String,
    extra_logs: Vec<PathBuf>,
    finished: bool,
}

impl TestNamespace {
    /// Creates `e2e-<prefix>-<unique>` labelled `mlctl.io/e2e=true`.
    pub async fn new(client: &Client, prefix: &str) -> Self {
        Self::with_labels(client, prefix, &[]).await
    }

    /// Like [`TestNamespace::new`], enforcing a PodSecurity level (`privileged`,
    /// `baseline` or `restricted`) through the namespace labels.
    pub async fn with_pod_security(client: &Client, prefix: &str, level: &str) -> Self {
        Self::with_labels(
            client,
            prefix,
            &[
                ("pod-security.kubernetes.io/enforce", level),
                ("pod-security.kubernetes.io/enforce-version", "latest"),
                ("pod-security.kubernetes.io/warn", level),
            ],
        )
        .await
    }

    /// Like [`TestNamespace::new`], with extra labels.
    pub async fn with_labels(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Self {
        let name = namespace_name(prefix);
        let mut all_labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all_labels.insert("mlctl.io/e2e".into(), "true".into());
        all_labels.insert("mlctl.io/e2e-test".into(), sanitize(prefix, 63));
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all_labels),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        eprintln!("test namespace: {name}");
        Self {
            client: client.clone(),
            name,
            extra_logs: Vec::new(),
            finished: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An `Api` for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Also print the tail of this file when the test fails (e.g. the log of an
    /// operator process the test started).
    pub fn dump_log_on_failure(&mut self, path: impl Into<PathBuf>) {
        self.extra_logs.push(path.into());
    }

    /// Prints the namespace's objects, Events and the component logs now.
    pub async fn dump(&self) {
        dump::dump_on_failure(&self.client, &self.name).await;
        for log in &self.extra_logs {
            dump::print_file_tail(log, 80);
        }
    }

    /// Ends a successful test: deletes the namespace (its finalization runs in
    /// the background; nothing waits for it).
    pub async fn finish(mut self) {
        self.finished = true;
        delete_namespace(&self.client, &self.name).await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let failed = std::thread::panicking();
        let keep = failed && std::env::var("MLCTL_E2E_KEEP_NAMESPACES").is_ok_and(|v| v == "1");
        if !failed {
            eprintln!(
                "warning: TestNamespace {} dropped without finish(); deleting it",
                self.name
            );
        }
        let name = self.name.clone();
        let logs = std::mem::take(&mut self.extra_logs);
        // Drop cannot await, and the test's runtime may be unwinding: do the
        // async clean-up on a thread with its own runtime and its own client
        // (a client's connections belong to the runtime that made them).
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for the clean-up");
            runtime.block_on(async move {
                let client =
                    Client::try_from(admin_config().await).expect("a kube client for the clean-up");
                if failed {
                    dump::dump_on_failure(&client, &name).await;
                    for log in &logs {
                        dump::print_file_tail(log, 80);
                    }
                }
                if keep {
                    eprintln!("keeping namespace {name} (MLCTL_E2E_KEEP_NAMESPACES=1)");
                } else {
                    delete_namespace(&client, &name).await;
                }
            });
        });
        // A panic in the clean-up must not become a double panic (an abort).
        if cleanup.join().is_err() {
            eprintln!(
                "clean-up of test namespace {} failed (see above)",
                self.name
            );
        }
    }
}

async fn delete_namespace(client: &Client, name: &str) {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => eprintln!("warning: deleting test namespace {name}: {e}"),
    }
}

fn namespace_name(prefix: &str) -> String {
    let suffix = crate::unique_suffix();
    // A namespace name is a DNS label: at most 63 characters.
    let room = 63 - "e2e--".len() - suffix.len();
    format!("e2e-{}-{suffix}", sanitize(prefix, room))
}

/// Lower-case alphanumerics and '-', trimmed to `max` characters, not ending in '-'.
fn sanitize(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "test".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_dns_labels() {
        for prefix in ["deploy", "A_B c!", "", &"x".repeat(100), "---"] {
            let name = namespace_name(prefix);
            assert!(name.len() <= 63, "{name}");
            assert!(name.starts_with("e2e-"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.ends_with('-'), "{name}");
        }
        assert_ne!(namespace_name("a"), namespace_name("a"));
    }
}
