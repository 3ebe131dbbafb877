//! What a failed test prints: every object in its namespace (found through
//! discovery, so custom resources are included), the namespace's Events in time
//! order, the logs of the containers that really ran (pods on the real node;
//! kwok's pods have none), and the tail of each control-plane component's log.

use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, LogParams},
    discovery::{Discovery, Scope, verbs},
};

const COMPONENT_LOGS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// Prints the objects and Events of `namespace` and the component logs to stderr.
/// Never panics: it runs while a test is already failing.
pub async fn dump_on_failure(client: &Client, namespace: &str) {
    eprintln!("\n======== e2e failure dump: namespace {namespace} ========");
    print_objects(client, namespace).await;
    print_events(client, namespace).await;
    print_container_logs(client, namespace, 200).await;
    print_component_logs(40);
    eprintln!("======== end of dump ({namespace}) ========\n");
}

async fn print_objects(client: &Client, namespace: &str) {
    let discovery = match Discovery::new(client.clone()).run().await {
        Ok(discovery) => discovery,
        Err(e) => {
            eprintln!("(discovery failed, no objects dumped: {e})");
            return;
        }
    };
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if capabilities.scope != Scope::Namespaced
                || !capabilities.supports_operation(verbs::LIST)
                // Events are printed separately, in time order.
                || resource.kind == "Event"
            {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            let Ok(list) = api.list(&ListParams::default()).await else {
                continue;
            };
            for mut object in list.items {
                let name = object.metadata.name.clone().unwrap_or_default();
                if resource.kind == "ConfigMap" && name == "kube-root-ca.crt" {
                    continue;
                }
                object.metadata.managed_fields = None;
                let yaml = serde_yaml_ng::to_string(&object)
                    .unwrap_or_else(|e| format!("<unprintable: {e}>"));
                eprintln!(
                    "---- {} {}/{name}\n{yaml}",
                    resource.kind, resource.api_version
                );
            }
        }
    }
}

async fn print_events(client: &Client, namespace: &str) {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut list = match events.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            eprintln!("(listing events failed: {e})");
            return;
        }
    };
    let time = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
            .unwrap_or_default()
    };
    list.sort_by_key(time);
    eprintln!("---- Events in {namespace} ({})", list.len());
    for event in &list {
        eprintln!(
            "{:<30} {:<8} {:<24} {}/{}: {}",
            time(event),
            event.type_.as_deref().unwrap_or(""),
            event.reason.as_deref().unwrap_or(""),
            event.involved_object.kind.as_deref().unwrap_or(""),
            event.involved_object.name.as_deref().unwrap_or(""),
            event.message.as_deref().unwrap_or("").trim_end(),
        );
    }
}

/// Prints the last `lines` lines of each container of the namespace's pods
/// that ran on a real node (the operator under fault tests, rankers), and of
/// its previous instance when it restarted.
async fn print_container_logs(client: &Client, namespace: &str, lines: i64) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return;
    };
    for pod in list.items {
        let on_real_node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.starts_with("kwok-"));
        if !on_real_node {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        for c in statuses {
            let runs: &[bool] = if c.restart_count > 0 {
                &[true, false]
            } else {
                &[false]
            };
            for &previous in runs {
                let params = LogParams {
                    container: Some(c.name.clone()),
                    tail_lines: Some(lines),
                    previous,
                    ..LogParams::default()
                };
                let which = if previous { " (previous)" } else { "" };
                match pods.logs(&name, &params).await {
                    Ok(text) => eprintln!(
                        "---- last {lines} log lines of {name}/{}{which}\n{}",
                        c.name,
                        text.trim_end()
                    ),
                    Err(e) => eprintln!("(logs of {name}/{}{which}: {e})", c.name),
                }
            }
        }
    }
}

/// Prints the last `lines` lines of each control-plane component's log.
pub fn print_component_logs(lines: usize) {
    let dir = crate::cluster_dir().join("logs");
    for component in COMPONENT_LOGS {
        print_file_tail(&dir.join(format!("{component}.log")), lines);
    }
}

/// Prints the last `lines` lines of a file (reading at most its last 256 KiB).
pub fn print_file_tail(path: &Path, lines: usize) {
    eprintln!("---- last {lines} lines of {}", path.display());
    match tail(path, lines) {
        Ok(text) => eprintln!("{text}"),
        Err(e) => eprintln!("(cannot read it: {e})"),
    }
}

fn tail(path: &Path, lines: usize) -> std::io::Result<String> {
    const WINDOW: u64 = 256 * 1024;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let path = std::env::temp_dir().join(format!("mlctl-e2e-tail-{}", std::process::id()));
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2).unwrap(), "c\nd");
        assert_eq!(tail(&path, 10).unwrap(), "a\nb\nc\nd");
        std::fs::remove_file(&path).unwrap();
    }
}
