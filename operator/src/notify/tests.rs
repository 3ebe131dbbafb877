//! The notifier: default reasons, the body, the retry policy, the lanes'
//! order and independence, the queue bound, and real HTTP to a server on
//! 127.0.0.1 (Secrets from a static source).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use futures::future::BoxFuture;
use mlctl_crds::http::{HeaderValueSource, HttpHeader, SecretKeyRef};
use mlctl_crds::notify::{Notification, UrlSource, Webhook};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::payload::{self, MODEL_MILESTONES, PIPELINE_MILESTONES};
use super::*;
use crate::analysis::guard::{AllowEntry, AllowList};
use crate::analysis::secrets::{Kind as SecretKind, StaticSource};

fn subscription(name: &str, events: &[&str]) -> Notification {
    Notification {
        name: name.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        webhook: Webhook {
            url: Some("http://127.0.0.1:9/hook".into()),
            ..Webhook::default()
        },
    }
}

fn subject(name: &str, subs: Vec<Notification>) -> Subject {
    Subject {
        kind: Kind::RankingModel,
        namespace: "shop".into(),
        name: name.into(),
        uid: "u-1".into(),
        notifications: subs,
        version: Some("v2".into()),
        stable_version: Some("v1".into()),
        canary_version: Some("v2".into()),
        step: Some(2),
        weight: Some(50),
    }
}

fn transition(reason: &'static str, message: &str) -> Transition {
    Transition {
        warning: false,
        reason,
        message: message.into(),
    }
}

#[test]
fn an_empty_event_list_takes_the_kinds_milestones() {
    let all = subscription("s", &[]);
    for reason in [
        "CanaryStarted",
        "StepCompleted",
        "Paused",
        "RolloutAborted",
        "Promoted",
    ] {
        assert!(payload::wants(&all, Kind::RankingModel, reason), "{reason}");
    }
    for reason in ["ScaledDown", "DriftRepaired", "NotificationFailed", "Stale"] {
        assert!(
            !payload::wants(&all, Kind::RankingModel, reason),
            "{reason}"
        );
    }
    for reason in ["Stale", "WithinObjective", "RunsFailing"] {
        assert!(
            payload::wants(&all, Kind::FeaturePipeline, reason),
            "{reason}"
        );
    }
    assert!(!payload::wants(&all, Kind::FeaturePipeline, "Promoted"));
    let some = subscription("s", &["Promoted", "ScaledDown"]);
    assert!(payload::wants(&some, Kind::RankingModel, "ScaledDown"));
    assert!(!payload::wants(&some, Kind::RankingModel, "StepCompleted"));
    // Every default is a CamelCase reason the CRD's rule would accept.
    for r in MODEL_MILESTONES.iter().chain(PIPELINE_MILESTONES) {
        assert!(r.starts_with(|c: char| c.is_ascii_uppercase()), "{r}");
        assert!(r.chars().all(|c| c.is_ascii_alphanumeric()), "{r}");
    }
}

#[test]
fn the_body_is_slack_text_plus_the_event_fields() {
    let s = subject("ranker", vec![]);
    let event = payload::Event {
        reason: "Promoted",
        message: "version v2 <!channel> & co serves all traffic",
        warning: false,
        time: jiff::Timestamp::from_second(1_800_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    };
    let body = payload::body(&s, "slack", "u-1-7", &event);
    assert_eq!(
        body["text"],
        "shop/ranker: Promoted v2 — version v2 &lt;!channel&gt; &amp; co serves all traffic"
    );
    let m = &body["mlctl"];
    assert_eq!(m["kind"], "RankingModel");
    assert_eq!(m["namespace"], "shop");
    assert_eq!(m["name"], "ranker");
    assert_eq!(m["reason"], "Promoted");
    assert_eq!(m["type"], "Normal");
    assert_eq!(m["subscription"], "slack");
    assert_eq!(m["id"], "u-1-7");
    assert_eq!(m["time"], "2027-01-15T08:00:00Z");
    assert_eq!(m["message"], event.message, "unescaped for machines");
    assert_eq!(m["stableVersion"], "v1");
    assert_eq!(m["canaryVersion"], "v2");
    assert_eq!(m["step"], 2);
    assert_eq!(m["weight"], 50);
    // A pipeline has no version fields, and a warning says so.
    let p = Subject {
        kind: Kind::FeaturePipeline,
        version: None,
        stable_version: None,
        canary_version: None,
        step: None,
        weight: None,
        ..subject("clicks", vec![])
    };
    let stale = payload::Event {
        warning: true,
        reason: "Stale",
        message: "too old",
        ..event
    };
    let body = payload::body(&p, "pager", "x", &stale);
    assert_eq!(body["text"], ":warning: shop/clicks: Stale — too old");
    assert_eq!(body["mlctl"]["type"], "Warning");
    assert!(body["mlctl"].get("version").is_none(), "{body}");
}

#[test]
fn a_subject_is_built_only_for_objects_with_subscriptions() {
    let mut model: RankingModelFixture = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlctl.io/v1alpha1",
        "kind": "RankingModel",
        "metadata": {"name": "ranker", "namespace": "shop", "uid": "u-9"},
        "spec": {
            "model": {"version": "v3", "uri": "s3://m/v3", "format": "onnx"},
            "runtime": {"image": "img:1"},
        },
    }))
    .expect("a model");
    let status = mlctl_crds::RankingModelStatus::default();
    assert_eq!(Subject::model(&model, &status), None);
    model.spec.notifications = vec![subscription("slack", &[])];
    let s = Subject::model(&model, &status).expect("subscribed");
    assert_eq!((s.namespace.as_str(), s.name.as_str()), ("shop", "ranker"));
    assert_eq!(s.version.as_deref(), Some("v3"));
    assert_eq!(s.canary_version, None);
}

type RankingModelFixture = mlctl_crds::RankingModel;

#[test]
fn only_passing_failures_are_retried() {
    use retry::classify_status;
    assert_eq!(classify_status(200, None), Attempt::Sent);
    assert_eq!(classify_status(204, None), Attempt::Sent);
    for status in [500, 502, 503, 504] {
        assert!(
            matches!(classify_status(status, None), Attempt::Retry { .. }),
            "{status}"
        );
    }
    assert_eq!(
        classify_status(429, Some("7")),
        Attempt::Retry {
            why: "HTTP 429 Too Many Requests".into(),
            after: Some(Duration::from_secs(7)),
        }
    );
    for status in [301, 400, 401, 403, 404, 410] {
        assert_eq!(
            classify_status(status, None),
            Attempt::Permanent(format!("HTTP {status}"))
        );
    }
}

#[test]
fn the_backoff_doubles_with_jitter_up_to_its_limits() {
    let p = Policy::default();
    let zero = Duration::ZERO;
    // No jitter draw: the upper end of each wait.
    assert_eq!(
        p.next_delay(1, None, zero, 1.0),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        p.next_delay(2, None, zero, 1.0),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        p.next_delay(5, None, zero, 1.0),
        Some(Duration::from_secs(16))
    );
    // The lowest draw halves it.
    assert_eq!(
        p.next_delay(2, None, zero, 0.0),
        Some(Duration::from_secs(1))
    );
    // Capped.
    let long = Policy {
        attempts: 20,
        window: Duration::from_secs(3600),
        ..p
    };
    assert_eq!(
        long.next_delay(12, None, zero, 1.0),
        Some(Duration::from_secs(60))
    );
    // Retry-After is honoured when longer than the backoff.
    assert_eq!(
        p.next_delay(1, Some(Duration::from_secs(30)), zero, 1.0),
        Some(Duration::from_secs(30))
    );
    // Out of attempts, or past the window.
    assert_eq!(p.next_delay(6, None, zero, 1.0), None);
    assert_eq!(p.next_delay(1, None, Duration::from_secs(300), 1.0), None);
    assert_eq!(
        p.next_delay(1, Some(Duration::from_secs(600)), zero, 1.0),
        None
    );
}

/// A transport that answers from a script per message and records every
/// attempt; a message scripted with `None` never answers.
#[derive(Default)]
struct Script {
    plan: Mutex<HashMap<String, VecDeque<Option<Attempt>>>>,
    attempts: Mutex<Vec<String>>,
    sent: Mutex<Vec<String>>,
}

impl Script {
    fn plan(self, message: &str, answers: Vec<Option<Attempt>>) -> Self {
        if let Ok(mut p) = self.plan.lock() {
            p.insert(message.into(), answers.into());
        }
        self
    }
}

fn message_of(d: &Delivery) -> String {
    let body: Value = serde_json::from_slice(&d.body).unwrap_or_default();
    body["mlctl"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl Transport for Script {
    fn post<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Attempt> {
        let message = message_of(d);
        if let Ok(mut a) = self.attempts.lock() {
            a.push(message.clone());
        }
        let answer = self
            .plan
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&message).and_then(VecDeque::pop_front))
            .unwrap_or(Some(Attempt::Sent));
        Box::pin(async move {
            let Some(answer) = answer else {
                return futures::future::pending().await;
            };
            if answer == Attempt::Sent
                && let Ok(mut s) = self.sent.lock()
            {
                s.push(message);
            }
            answer
        })
    }
}

fn retry() -> Option<Attempt> {
    Some(Attempt::Retry {
        why: "HTTP 503".into(),
        after: None,
    })
}

fn notifier(script: Arc<Script>, settings: Settings) -> (Notifier, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (
        Notifier::new(settings, script, metrics.clone(), None),
        metrics,
    )
}

#[tokio::test(start_paused = true)]
async fn a_retry_is_not_overtaken_and_other_objects_go_on() {
    let script =
        Arc::new(Script::default().plan("a1", vec![retry(), retry(), Some(Attempt::Sent)]));
    let (n, metrics) = notifier(script.clone(), Settings::default());
    let a = subject("a", vec![subscription("hook", &[])]);
    let b = subject("b", vec![subscription("hook", &[])]);
    let r = ObjectReference::default();
    n.notify(&a, &r, &transition("CanaryStarted", "a1"));
    n.notify(&a, &r, &transition("StepCompleted", "a2"));
    n.notify(&b, &r, &transition("CanaryStarted", "b1"));
    // Not a milestone: no notification.
    n.notify(&b, &r, &transition("ScaledDown", "b-ignored"));
    n.drain(Duration::from_secs(600)).await;
    let sent = script.sent.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(n.pending(), 0);
    let pos = |m: &str| sent.iter().position(|s| s == m);
    assert!(pos("a1") < pos("a2"), "{sent:?}");
    // b1 did not wait for a1's retries.
    assert!(pos("b1") < pos("a1"), "{sent:?}");
    assert_eq!(sent.len(), 3, "{sent:?}");
    let attempts = script
        .attempts
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    assert_eq!(
        attempts.iter().filter(|m| *m == "a1").count(),
        3,
        "{attempts:?}"
    );
    let text = metrics.encode();
    assert!(
        text.contains("mlctl_notifications_total{outcome=\"sent\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("mlctl_notification_retries_total 2"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_not_retried_and_retries_stop_at_the_limit() {
    let script = Arc::new(
        Script::default()
            .plan("gone", vec![Some(Attempt::Permanent("HTTP 404".into()))])
            .plan("down", vec![retry(); 10]),
    );
    let settings = Settings {
        retry: Policy {
            attempts: 3,
            ..Policy::default()
        },
        ..Settings::default()
    };
    let (n, metrics) = notifier(script.clone(), settings);
    let r = ObjectReference::default();
    n.notify(
        &subject("x", vec![subscription("one", &[])]),
        &r,
        &transition("Promoted", "gone"),
    );
    n.notify(
        &subject("y", vec![subscription("one", &[])]),
        &r,
        &transition("Promoted", "down"),
    );
    n.drain(Duration::from_secs(600)).await;
    let attempts = script
        .attempts
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    assert_eq!(attempts.iter().filter(|m| *m == "gone").count(), 1);
    assert_eq!(attempts.iter().filter(|m| *m == "down").count(), 3);
    let text = metrics.encode();
    assert!(
        text.contains("mlctl_notifications_total{outcome=\"failed\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("mlctl_notification_retries_total 2"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_and_a_stuck_webhook_is_dropped_at_shutdown() {
    let script = Arc::new(Script::default().plan("stuck", vec![None]));
    let settings = Settings {
        queue: 2,
        ..Settings::default()
    };
    let (n, metrics) = notifier(script.clone(), settings);
    let s = subject("x", vec![subscription("one", &[])]);
    let r = ObjectReference::default();
    n.notify(&s, &r, &transition("Promoted", "stuck"));
    n.notify(&s, &r, &transition("Promoted", "second"));
    n.notify(&s, &r, &transition("Promoted", "third"));
    assert_eq!(n.pending(), 2);
    let text = metrics.encode();
    assert!(
        text.contains("mlctl_notifications_total{outcome=\"dropped\"} 1"),
        "{text}"
    );
    let started = tokio::time::Instant::now();
    n.drain(Duration::from_secs(5)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    let text = metrics.encode();
    assert!(
        text.contains("mlctl_notifications_total{outcome=\"dropped\"} 3"),
        "{text}"
    );
    // The second waited behind the stuck one (same lane): never attempted.
    let attempts = script
        .attempts
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    assert_eq!(attempts, vec!["stuck".to_string()]);
}

/// A webhook on 127.0.0.1 answering `statuses` in turn (then 200), keeping
/// each request's head and body.
async fn webhook(
    statuses: Vec<u16>,
) -> (
    u16,
    Arc<Mutex<Vec<(String, String)>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut statuses = VecDeque::from(statuses);
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let Ok(n) = conn.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let l = l.to_ascii_lowercase();
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_string(), body.to_string());
                    }
                }
            };
            if let Ok(mut l) = log.lock() {
                l.push((head, body));
            }
            let status = statuses.pop_front().unwrap_or(200);
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    (port, seen, task)
}

fn secret_ref(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

fn delivery(webhook: Webhook) -> Delivery {
    Delivery {
        namespace: "shop".into(),
        webhook,
        body: br#"{"text":"hi"}"#.to_vec(),
    }
}

fn secret_webhook() -> Webhook {
    Webhook {
        url_from: Some(UrlSource {
            secret_key_ref: secret_ref("hook", "url"),
        }),
        headers: vec![HttpHeader {
            name: "X-Token".into(),
            value_from: Some(HeaderValueSource {
                secret_key_ref: secret_ref("hook", "token"),
            }),
            ..HttpHeader::default()
        }],
        ..Webhook::default()
    }
}

#[tokio::test]
async fn http_posts_json_with_the_secret_url_and_header() {
    let (port, seen, server) = webhook(vec![503]).await;
    let url = format!("http://127.0.0.1:{port}/services/T0/B0/secret-path\n");
    let secrets = StaticSource::default()
        .with(SecretKind::Secret, "shop", "hook", "url", url.as_bytes())
        .with(SecretKind::Secret, "shop", "hook", "token", b"s3cret");
    let allow = AllowList::new(
        vec!["127.0.0.1/32".parse::<AllowEntry>().expect("entry")],
        "cluster.local",
    );
    let http = HttpTransport::new(allow, Arc::new(secrets));
    let d = delivery(secret_webhook());
    assert_eq!(
        http.post(&d).await,
        Attempt::Retry {
            why: "HTTP 503".into(),
            after: None
        }
    );
    assert_eq!(http.post(&d).await, Attempt::Sent);
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 2);
    let (head, body) = &seen[1];
    assert!(
        head.starts_with("POST /services/T0/B0/secret-path HTTP/1.1"),
        "{head}"
    );
    let head = head.to_ascii_lowercase();
    assert!(head.contains("x-token: s3cret"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body, r#"{"text":"hi"}"#);
    server.abort();
}

#[tokio::test]
async fn bad_settings_fail_at_once_naming_the_field_never_the_url() {
    let url = "https://hooks.example.com/services/T0/B0/secret-path";
    let secrets = StaticSource::default()
        .with(SecretKind::Secret, "shop", "hook", "url", url.as_bytes())
        .with(
            SecretKind::Secret,
            "shop",
            "bad",
            "url",
            b"not a url secret-path",
        );
    let allow = AllowList::new(vec![AllowEntry::InCluster], "cluster.local");
    let http = HttpTransport::new(allow, Arc::new(secrets));
    let cases = [
        (
            Webhook {
                url: Some("http://receiver.shop/secret-path".into()),
                url_from: None,
                ..secret_webhook()
            },
            "webhook.headers[0] (X-Token).valueFrom.secretKeyRef: Secret \"hook\" has no key \"token\"",
        ),
        (
            Webhook {
                url_from: Some(UrlSource {
                    secret_key_ref: secret_ref("hook", "url"),
                }),
                ..Webhook::default()
            },
            "--notification-allow",
        ),
        (
            Webhook {
                url_from: Some(UrlSource {
                    secret_key_ref: secret_ref("bad", "url"),
                }),
                ..Webhook::default()
            },
            "webhook.urlFrom.secretKeyRef: the value is not an http:// or https:// URL",
        ),
        (
            Webhook {
                url_from: Some(UrlSource {
                    secret_key_ref: secret_ref("missing", "url"),
                }),
                ..Webhook::default()
            },
            "webhook.urlFrom.secretKeyRef: Secret \"missing\" not found",
        ),
    ];
    for (webhook, want) in cases {
        match http.post(&delivery(webhook)).await {
            Attempt::Permanent(why) => {
                assert!(why.contains(want), "{why}");
                assert!(!why.contains("secret-path"), "the URL leaked: {why}");
            }
            other => panic!("want a permanent failure, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried_without_the_url() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let allow = AllowList::new(
        vec!["127.0.0.1/32".parse::<AllowEntry>().expect("entry")],
        "cluster.local",
    );
    let http = HttpTransport::new(allow, Arc::new(StaticSource::default()));
    let d = delivery(Webhook {
        url: Some(format!("http://127.0.0.1:{port}/secret-path")),
        ..Webhook::default()
    });
    match http.post(&d).await {
        Attempt::Retry { why, .. } => {
            assert!(why.starts_with("cannot connect"), "{why}");
            assert!(!why.contains("secret-path"), "{why}");
        }
        other => panic!("want a retry, got {other:?}"),
    }
}
