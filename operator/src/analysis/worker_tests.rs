use std::time::{Duration, Instant};

use super::super::provider::tests::{Server, prober, prometheus, vars, vector};
use super::*;

fn worker(per_host: usize) -> Worker {
    let settings = Settings {
        per_host_concurrency: per_host,
        ..Settings::default()
    };
    Worker::new(prober(), &settings)
}

fn model(name: &str, revision: &str) -> ModelKey {
    ModelKey {
        namespace: "shop".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        revision: revision.into(),
        started_at: Some(Timestamp::from_second(1_000).unwrap()),
    }
}

fn job(address: &str, due_at: i64) -> Job {
    Job {
        subject: Subject::Metric {
            name: "error-rate".into(),
            step: None,
            due_at: Timestamp::from_second(due_at).unwrap(),
        },
        task: Task::Metric(prometheus(address, None)),
    }
}

/// Waits (with a deadline) until the worker says `name` has a result.
async fn landed(rx: &mut broadcast::Receiver<(String, String)>, name: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, landed) = rx.recv().await.unwrap();
            if landed == name {
                return;
            }
        }
    })
    .await
    .expect("the measurement lands");
}

#[tokio::test]
async fn black_holed_hosts_stall_neither_the_reconcile_nor_other_models() {
    let black_hole = Server::start(None, "").await;
    let healthy = Server::start(Some(200), &vector(&["0.5"])).await;
    let worker = worker(4);
    let mut rx = worker.subscribe();

    let started = Instant::now();
    for i in 0..16 {
        let polled = worker.poll(
            &model(&format!("m{i}"), "r1"),
            &vars(),
            vec![job(&black_hole.url(), 0)],
        );
        assert!(polled.finished.is_empty());
        assert_eq!(polled.in_flight.len(), 1);
    }
    let wanted = job(&healthy.url(), 0);
    let polled = worker.poll(&model("healthy", "r1"), &vars(), vec![wanted.clone()]);
    assert!(polled.finished.is_empty());
    let took = started.elapsed();
    assert!(took < Duration::from_millis(200), "polling took {took:?}");

    landed(&mut rx, "healthy").await;
    let polled = worker.poll(&model("healthy", "r1"), &vars(), vec![wanted.clone()]);
    assert_eq!(polled.finished.len(), 1);
    assert_eq!(polled.finished[0].subject, wanted.subject);
    assert_eq!(polled.finished[0].reading, Reading::Value(Ok(Some(0.5))));
    assert!(polled.in_flight.is_empty());

    // At most 4 requests at once to the black-holed host; the other 12 wait
    // for a permit (their timeout is 30 s), holding none of the global ones.
    black_hole.wait_for_requests(4).await;
    assert_eq!(black_hole.requests.lock().unwrap().len(), 4);
    assert_eq!(healthy.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_result_is_kept_for_its_subject_and_canary_only() {
    let server = Server::start(Some(200), &vector(&["1"])).await;
    let worker = worker(4);
    let mut rx = worker.subscribe();
    let first = job(&server.url(), 100);
    let a = model("m", "r1");

    assert!(
        worker
            .poll(&a, &vars(), vec![first.clone()])
            .finished
            .is_empty()
    );
    landed(&mut rx, "m").await;
    // Until status moves on (the write may conflict), the same result is
    // offered again; a status write with resourceVersion records it once.
    for _ in 0..2 {
        let polled = worker.poll(&a, &vars(), vec![first.clone()]);
        assert_eq!(polled.finished.len(), 1);
    }
    // Status recorded it: the next measurement is due later, the old result is gone.
    let next = job(&server.url(), 160);
    let polled = worker.poll(&a, &vars(), vec![next.clone()]);
    assert!(polled.finished.is_empty());
    assert!(polled.in_flight.contains(&next.subject));
    landed(&mut rx, "m").await;
    assert_eq!(server.requests.lock().unwrap().len(), 2);

    // The canary was replaced: the result taken for r1 is not offered for r2.
    let b = model("m", "r2");
    let polled = worker.poll(&b, &vars(), vec![next.clone()]);
    assert!(polled.finished.is_empty(), "a result of the old canary");
    assert!(
        polled.in_flight.contains(&next.subject),
        "measured again for r2"
    );
    landed(&mut rx, "m").await;
    assert_eq!(
        worker.poll(&b, &vars(), vec![next.clone()]).finished.len(),
        1
    );

    // An edited provider is a different measurement.
    let mut edited = next.clone();
    edited.task = Task::Metric(prometheus(&format!("{}/", server.url()), None));
    assert!(worker.poll(&b, &vars(), vec![edited]).finished.is_empty());

    // A model without measurements keeps nothing.
    worker.forget("shop", "m");
    assert!(worker.poll(&b, &vars(), vec![next]).finished.is_empty());
}

#[tokio::test]
async fn the_landed_stream_names_the_model_to_reconcile() {
    use futures::StreamExt;
    let server = Server::start(Some(200), &vector(&["1"])).await;
    let worker = worker(4);
    let mut landed = Box::pin(worker.landed());
    worker.poll(&model("m", "r1"), &vars(), vec![job(&server.url(), 0)]);
    let next = tokio::time::timeout(Duration::from_secs(10), landed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next, ObjectRef::new("m").within("shop"));
}
