//! Notifications against the real local control plane: a model's canary and
//! a pipeline going stale POST to a webhook server this test runs on
//! 127.0.0.1, the URL and a header read from Secrets. The server fails its
//! first requests with 500 and 503; the operator's retries must still
//! deliver every notification, in the order the rollout produced them.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use mlctl_crds::rankingmodel::Phase;
use mlctl_crds::{FeaturePipeline, RankingModel};
use mlctl_e2e::operator::setup;
use mlctl_e2e::{apply_yaml, require_e2e, wait_for, wait_for_list};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const LONG: Duration = Duration::from_secs(120);
const TOKEN: &str = "e2e-notify-token";

/// One request the webhook answered.
#[derive(Debug, Clone)]
struct Received {
    status: u16,
    path: String,
    token: Option<String>,
    body: Value,
}

/// A webhook on 127.0.0.1: answers `failures` first (e.g. 500, 503), then
/// 200 to requests carrying `X-Mlctl-Token: TOKEN`, 401 to others. Stopped
/// when dropped.
struct Webhook {
    port: u16,
    seen: watch::Receiver<Vec<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    async fn start(failures: Vec<u16>) -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, seen) = watch::channel(Vec::new());
        let failures = Arc::new(Mutex::new(VecDeque::from(failures)));
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let Some((head, body)) = read_request(&mut conn).await else {
                    continue;
                };
                let path = head
                    .lines()
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or_default()
                    .to_string();
                let token = head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("x-mlctl-token")
                        .then(|| value.trim().to_string())
                });
                let status = match failures.lock().unwrap().pop_front() {
                    Some(s) => s,
                    None if token.as_deref() == Some(TOKEN) => 200,
                    None => 401,
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                tx.send_modify(|seen| {
                    seen.push(Received {
                        status,
                        path,
                        token,
                        body,
                    });
                });
            }
        });
        Webhook { port, seen, task }
    }

    /// The requests once `done` holds on them; panics after `timeout`
    /// showing what arrived.
    async fn wait(&self, done: impl Fn(&[Received]) -> bool, timeout: Duration) -> Vec<Received> {
        let mut rx = self.seen.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|seen| done(seen))).await;
        let seen = self.seen.borrow().clone();
        assert!(
            matches!(waited, Ok(Ok(_))),
            "the webhook did not get what the test waits for within {timeout:?}; it got:\n{seen:#?}"
        );
        seen
    }
}

/// An HTTP/1.1 request's head and body (by Content-Length).
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Some((head.to_string(), body.to_string()));
            }
        }
    }
}

fn delivered(seen: &[Received]) -> Vec<&Received> {
    seen.iter().filter(|r| r.status == 200).collect()
}

fn reasons(seen: &[Received]) -> Vec<String> {
    delivered(seen)
        .iter()
        .map(|r| {
            r.body["mlctl"]["reason"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// The model: 2 replicas, a 50% step and a 2s pause; its notifications go
/// to the webhook whose URL and token are in Secret `hook`.
fn model(version: &str) -> String {
    format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model:
    version: "{version}"
    uri: s3://models/ranker/{version}/model.onnx
    format: onnx
  runtime:
    image: ghcr.io/mlctl/onnx-runtime:0.1.0
  replicas: 2
  rollout:
    steps:
      - setWeight: 50
      - pause: {{duration: 2s}}
  notifications:
    - name: ops
      webhook:
        urlFrom: {{secretKeyRef: {{name: hook, key: url}}}}
        headers:
          - name: X-Mlctl-Token
            valueFrom: {{secretKeyRef: {{name: hook, key: token}}}}
        timeout: 5s
"#
    )
}

fn secret(port: u16, path: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: hook
stringData:
  url: http://127.0.0.1:{port}{path}
  token: {TOKEN}
"#
    )
}

#[tokio::test]
async fn a_canary_notifies_its_milestones_in_order_through_webhook_failures() {
    require_e2e!();
    let (client, ns, operator, _) = setup("notify-canary").await;
    // The first two requests fail (500, then 503): the first notification
    // is delivered by retries, and everything after it waits its turn.
    let hook = Webhook::start(vec![500, 503]).await;
    apply_yaml(
        &client,
        ns.name(),
        &secret(hook.port, "/services/T0/B0/ranker"),
    )
    .await;
    apply_yaml(&client, ns.name(), &model("v1")).await;
    let api: Api<RankingModel> = ns.api();
    let stable = |version: &'static str| {
        move |m: Option<&RankingModel>| {
            m.and_then(|m| m.status.as_ref()).is_some_and(|s| {
                s.stable.as_ref().is_some_and(|st| st.version == version)
                    && s.canary.is_none()
                    && s.phase == Some(Phase::Healthy)
            })
        }
    };
    wait_for(&api, "ranker", stable("v1"), LONG).await;
    // v1's Promoted arrived (after the retried Deploying) before v2 starts.
    hook.wait(|seen| reasons(seen).len() >= 2, LONG).await;
    let patch =
        json!({"spec": {"model": {"version": "v2", "uri": "s3://models/ranker/v2/model.onnx"}}});
    api.patch("ranker", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(&api, "ranker", stable("v2"), LONG).await;
    let seen = hook
        .wait(
            |seen| {
                delivered(seen).iter().any(|r| {
                    r.body["mlctl"]["reason"] == "Promoted" && r.body["mlctl"]["version"] == "v2"
                })
            },
            LONG,
        )
        .await;

    assert_eq!(
        reasons(&seen),
        [
            "Deploying",
            "Promoted",
            "CanaryStarted",
            "StepCompleted",
            "StepCompleted",
            "Promoted"
        ],
        "{seen:#?}"
    );
    // The two failures were retried; nothing was refused for the header.
    let statuses: Vec<u16> = seen.iter().map(|r| r.status).collect();
    assert_eq!(statuses[..2], [500, 503], "{statuses:?}");
    assert_eq!(
        seen.len(),
        8,
        "two failed attempts and six deliveries: {statuses:?}"
    );
    for r in &seen {
        assert_eq!(
            r.token.as_deref(),
            Some(TOKEN),
            "the header from Secret hook"
        );
        assert_eq!(r.path, "/services/T0/B0/ranker", "the URL from Secret hook");
    }
    // The retried request is the same notification (same id).
    assert_eq!(seen[0].body["mlctl"]["id"], seen[2].body["mlctl"]["id"]);

    // The Slack-compatible body, and the fields for other receivers.
    let ok = delivered(&seen);
    let step = &ok[3].body;
    let m = &step["mlctl"];
    assert_eq!(m["kind"], "RankingModel");
    assert_eq!(m["namespace"], ns.name());
    assert_eq!(m["name"], "ranker");
    assert_eq!(m["subscription"], "ops");
    assert_eq!(m["type"], "Normal");
    assert_eq!(m["stableVersion"], "v1");
    assert_eq!(m["canaryVersion"], "v2");
    assert_eq!(m["weight"], 50, "{step}");
    let text = step["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "{}/ranker: StepCompleted v2 — canary v2: step 1/2",
            ns.name()
        )),
        "{text}"
    );
    let promoted = &ok[5].body;
    assert_eq!(
        promoted["text"].as_str().unwrap(),
        format!(
            "{}/ranker: Promoted v2 — {}",
            ns.name(),
            promoted["mlctl"]["message"].as_str().unwrap()
        )
    );
    assert!(promoted["mlctl"]["time"].as_str().unwrap().ends_with('Z'));

    let metrics = operator
        .wait_for_metrics(
            |m| m.contains("mlctl_notifications_total{outcome=\"sent\"} 6"),
            LONG,
        )
        .await;
    assert!(
        metrics.contains("mlctl_notifications_total{outcome=\"sent\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlctl_notification_retries_total 2"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("mlctl_notifications_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    // The URL is a credential: never in the operator's log.
    let log = std::fs::read_to_string(&operator.log).unwrap();
    assert!(
        !log.contains("/services/T0/B0/ranker"),
        "the URL leaked into the log"
    );
    assert!(
        log.contains("notification not delivered; retrying"),
        "the retries are logged"
    );
    drop(hook);
    ns.finish().await;
}

#[tokio::test]
async fn a_pipeline_going_stale_notifies_only_the_reasons_it_lists() {
    require_e2e!();
    let (client, ns, operator, _) = setup("notify-stale").await;
    let hook = Webhook::start(vec![503]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let watermark = k8s_openapi::jiff::Timestamp::from_second(now)
        .unwrap()
        .to_string();
    // A run reports a watermark of now; 20s later the features are stale.
    let yaml = format!(
        r#"apiVersion: mlctl.io/v1alpha1
kind: FeaturePipeline
metadata:
  name: clicks
spec:
  trigger:
    schedule: {{cron: "0 0 1 1 *"}}
  engine:
    container:
      image: busybox:1.36
      podMetadata:
        annotations:
          mlctl.io/e2e-termination-message: '{{"watermark":"{watermark}"}}'
  features:
    entityKeys: [doc_id]
    schemaVersion: 1
    fields: [{{name: ctr, dtype: float32}}]
  freshness: {{maxStaleness: 20s}}
  retries: {{backoffLimit: 0}}
  notifications:
    - name: pager
      events: [Stale]
      webhook:
        url: http://127.0.0.1:{port}/pager
        headers:
          - name: X-Mlctl-Token
            valueFrom: {{secretKeyRef: {{name: hook, key: token}}}}
    - name: broken
      events: [Stale]
      webhook:
        urlFrom: {{secretKeyRef: {{name: hook, key: nope}}}}
"#,
        port = hook.port
    );
    apply_yaml(&client, ns.name(), &secret(hook.port, "/unused")).await;
    apply_yaml(&client, ns.name(), &yaml).await;
    let pipelines: Api<FeaturePipeline> = ns.api();
    let patch = json!({"metadata": {"annotations": {"mlctl.io/run": watermark}}});
    pipelines
        .patch("clicks", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let fresh = |status: &'static str| {
        move |p: Option<&FeaturePipeline>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.conditions.get("Fresh"))
                .is_some_and(|c| c.status == status)
        }
    };
    wait_for(&pipelines, "clicks", fresh("True"), LONG).await;
    wait_for(&pipelines, "clicks", fresh("False"), LONG).await;
    let seen = hook.wait(|seen| !delivered(seen).is_empty(), LONG).await;
    // WithinObjective (fresh) came first but is not in `events`: only
    // Stale, delivered after a 503.
    assert_eq!(reasons(&seen), ["Stale"], "{seen:#?}");
    assert_eq!(seen[0].status, 503);
    let body = &delivered(&seen)[0].body;
    assert_eq!(body["mlctl"]["kind"], "FeaturePipeline");
    assert_eq!(body["mlctl"]["type"], "Warning");
    assert_eq!(body["mlctl"]["subscription"], "pager");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(":warning: {}/clicks: Stale — ", ns.name())),
        "{text}"
    );
    assert!(text.contains("more than maxStaleness 20s"), "{text}");

    // A subscription whose Secret lacks the key fails at once, saying which
    // field to fix, on the pipeline itself; the other one was unaffected.
    let events: Api<Event> = ns.api();
    let failed = |list: &[Event]| {
        list.iter()
            .find(|e| e.reason.as_deref() == Some("NotificationFailed"))
            .cloned()
    };
    let list = wait_for_list(
        &events,
        watcher::Config::default(),
        |l: &[Event]| failed(l).is_some(),
        LONG,
    )
    .await;
    let event = failed(&list).unwrap();
    let note = event.note.unwrap_or_default();
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.regarding.and_then(|r| r.name).as_deref(),
        Some("clicks")
    );
    assert!(
        note.contains("\"broken\" of Stale was not delivered: webhook.urlFrom.secretKeyRef: Secret \"hook\" has no key \"nope\""),
        "{note}"
    );
    let metrics = operator
        .wait_for_metrics(
            |m| m.contains("mlctl_notifications_total{outcome=\"failed\"} 1"),
            LONG,
        )
        .await;
    assert!(
        metrics.contains("mlctl_notifications_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlctl_notifications_total{outcome=\"sent\"} 1"),
        "{metrics}"
    );
    drop(hook);
    ns.finish().await;
}
