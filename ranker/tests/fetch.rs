//! `mlctl-ranker fetch` over plain HTTP against a scripted local server: success,
//! retries, refusals, interruptions, timeouts, and that nothing partial is left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_fetch;

use support_fetch::{
    Fetch, Reply, ScriptServer, artifact, closed_port, sha256_hex, tree, wait_for,
};

#[test]
fn downloads_and_verifies_a_file() {
    let body = artifact(300_000);
    let server = ScriptServer::start(vec![Reply::Body(body.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/models/v1/model.txt"))
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", sha256_hex(&body).to_uppercase())
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(std::fs::read(dir.path().join("model.txt")).unwrap(), body);
    assert_eq!(tree(dir.path()), ["model.txt"]);
    assert_eq!(server.requests(), ["GET /models/v1/model.txt HTTP/1.1"]);
    assert!(out.last_line().contains("300000 bytes"), "{}", out.stderr);
    assert!(
        out.last_line().contains(&sha256_hex(&body)),
        "{}",
        out.stderr
    );
    assert!(out.last_line().contains("verified against MODEL_SHA256"));
}

#[test]
fn flags_override_the_environment() {
    let body = artifact(10);
    let server = ScriptServer::start(vec![Reply::Body(body.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", "ftp://nowhere/x")
        .env("MODEL_DIR", "/nonexistent/never")
        .args(["--uri", &server.url("/m.bin")])
        .arg_dir(dir.path())
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(std::fs::read(dir.path().join("m.bin")).unwrap(), body);
}

#[test]
fn retries_server_errors_then_succeeds() {
    let body = artifact(1000);
    let server = ScriptServer::start(vec![
        Reply::Status(500),
        Reply::Status(503),
        Reply::Body(body.clone()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", sha256_hex(&body))
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(server.requests().len(), 3);
    assert_eq!(std::fs::read(dir.path().join("m.txt")).unwrap(), body);
    // One line per attempt, saying why the failed ones failed.
    assert!(out.stderr.contains("attempt 1/5 failed"), "{}", out.stderr);
    assert!(out.stderr.contains("500 Internal Server Error"));
    assert!(out.stderr.contains("503 Service Unavailable"));
    assert!(out.stderr.contains("attempt 3/5: GET"));
}

#[test]
fn not_found_is_not_retried_and_explained() {
    let server = ScriptServer::start(vec![Reply::Status(404)]);
    let dir = tempfile::tempdir().unwrap();
    let termination = tempfile::NamedTempFile::new().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/missing.txt"))
        .env("MODEL_DIR", dir.path())
        .args(["--termination-log".as_ref(), termination.path().as_os_str()])
        .run();
    assert_eq!(out.code, Some(1));
    assert_eq!(server.requests().len(), 1);
    let expected = format!("404 Not Found from {}", server.url("/missing.txt"));
    assert!(out.last_line().contains(&expected), "{}", out.stderr);
    assert!(out.last_line().contains("check spec.model.uri"));
    let message = std::fs::read_to_string(termination.path()).unwrap();
    assert!(message.starts_with(&expected), "{message}");
    assert!(!message.contains('\n'));
    assert!(tree(dir.path()).is_empty());
}

#[test]
fn forbidden_names_the_credentials() {
    let server = ScriptServer::start(vec![Reply::Status(403)]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .run();
    assert_eq!(out.code, Some(1));
    assert_eq!(server.requests().len(), 1);
    assert!(
        out.last_line().contains(&format!(
            "403 Forbidden from {}: the pod's credentials cannot read the object — check spec.runtime.serviceAccountName / the credentials Secret",
            server.url("/m.txt")
        )),
        "{}",
        out.stderr
    );
}

/// A server without range support answers a resume with the whole object (200):
/// the partial bytes are discarded and the download starts over.
#[test]
fn an_interrupted_body_is_retried_from_the_start() {
    let body = artifact(200_000);
    let server = ScriptServer::start(vec![
        Reply::CloseMidBody {
            body: body.clone(),
            sent: 50_000,
        },
        Reply::Body(body.clone()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", sha256_hex(&body))
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.header("range"), [None, Some("bytes=50000-".into())]);
    assert_eq!(std::fs::read(dir.path().join("m.txt")).unwrap(), body);
    assert_eq!(tree(dir.path()), ["m.txt"]);
}

/// A server with range support sends only the rest; the hash still covers the
/// whole file.
#[test]
fn an_interrupted_body_is_resumed_where_it_stopped() {
    let body = artifact(200_000);
    let server = ScriptServer::start(vec![
        Reply::CloseMidBody {
            body: body.clone(),
            sent: 50_000,
        },
        Reply::Ranged(body.clone()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", sha256_hex(&body))
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(server.header("range"), [None, Some("bytes=50000-".into())]);
    assert_eq!(server.header("if-range"), [None, Some("\"1\"".into())]);
    assert!(out.stderr.contains("at byte 50000"), "{}", out.stderr);
    assert_eq!(std::fs::read(dir.path().join("m.txt")).unwrap(), body);
    assert_eq!(tree(dir.path()), ["m.txt"]);
}

#[test]
fn a_body_that_keeps_breaking_leaves_nothing() {
    let body = artifact(100_000);
    let server = ScriptServer::start(vec![Reply::CloseMidBody {
        body: body.clone(),
        sent: 10_000,
    }]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .args(["--max-attempts", "3"])
        .run();
    assert_eq!(out.code, Some(1));
    assert_eq!(server.requests().len(), 3);
    assert!(
        out.last_line().contains(&format!(
            "giving up on {} after 3 attempts",
            server.url("/m.txt")
        )),
        "{}",
        out.stderr
    );
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

#[test]
fn a_mismatch_names_both_hashes_and_leaves_nothing() {
    let body = artifact(5000);
    let server = ScriptServer::start(vec![Reply::Body(body.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let wrong = sha256_hex(b"something else");
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", &wrong)
        .run();
    assert_eq!(out.code, Some(3));
    assert_eq!(
        out.last_line(),
        format!(
            "mlctl-ranker fetch: sha256 mismatch for {}: expected {wrong}, got {}",
            server.url("/m.txt"),
            sha256_hex(&body)
        )
    );
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

#[test]
fn a_silent_server_hits_the_idle_timeout() {
    let server = ScriptServer::start(vec![Reply::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .args(["--idle-timeout", "300ms", "--max-attempts", "2"])
        .run();
    assert_eq!(out.code, Some(1));
    assert_eq!(server.requests().len(), 2);
    assert!(
        out.last_line().contains("after 2 attempts"),
        "{}",
        out.stderr
    );
    assert!(out.last_line().contains("--idle-timeout"), "{}", out.stderr);
    assert!(tree(dir.path()).is_empty());
}

#[test]
fn the_overall_timeout_bounds_everything() {
    let server = ScriptServer::start(vec![Reply::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .args(["--idle-timeout", "1h", "--timeout", "500ms"])
        .run();
    assert_eq!(out.code, Some(4));
    assert!(
        out.last_line().contains(&format!(
            "timed out after 500ms fetching {}",
            server.url("/m.txt")
        )),
        "{}",
        out.stderr
    );
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

#[test]
fn a_verified_file_already_in_place_is_not_downloaded_again() {
    let body = artifact(100);
    let server = ScriptServer::start(vec![Reply::Body(body.clone()), Reply::Status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let fetch = || {
        Fetch::new()
            .env("MODEL_URI", server.url("/m.txt"))
            .env("MODEL_DIR", dir.path())
            .env("MODEL_SHA256", sha256_hex(&body))
            .args(["--max-attempts", "1"])
            .run()
    };
    assert_eq!(fetch().code, Some(0));
    let again = fetch();
    assert_eq!(again.code, Some(0));
    assert!(again.stderr.contains("already present"), "{}", again.stderr);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn leftovers_of_a_killed_run_are_removed() {
    let body = artifact(100);
    let server = ScriptServer::start(vec![Reply::Body(body)]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".mlctl-fetch-1-m.txt.part"), b"half").unwrap();
    std::fs::create_dir(dir.path().join(".mlctl-fetch-1.d")).unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(tree(dir.path()), ["m.txt"]);
}

#[test]
fn https_clients_build_and_connection_errors_are_retried() {
    // Nothing listens: the point is that the TLS client builds (no rustls provider
    // panic) and that a refused connection is a transient, retried failure.
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let out = Fetch::new()
        .env(
            "MODEL_URI",
            format!("https://127.0.0.1:{port}/m.txt?X-Amz-Signature=secret"),
        )
        .env("MODEL_DIR", dir.path())
        .args(["--max-attempts", "2"])
        .run();
    assert_eq!(out.code, Some(1));
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.last_line().contains(&format!(
            "giving up on https://127.0.0.1:{port}/m.txt after 2 attempts"
        )),
        "{}",
        out.stderr
    );
    // The query of a pre-signed URL is a credential and never logged.
    assert!(!out.stderr.contains("secret"), "{}", out.stderr);
}

#[test]
fn invalid_configuration_exits_2_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let termination = tempfile::NamedTempFile::new().unwrap();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "MODEL_URI is not set"),
        (&[("MODEL_URI", "ftp://h/m.txt")], "scheme \"ftp\""),
        (
            &[("MODEL_URI", "http://127.0.0.1:1/dir/")],
            "only s3:// and gs://",
        ),
        (
            &[
                ("MODEL_URI", "http://127.0.0.1:1/m.txt"),
                ("MODEL_SHA256", "abc"),
            ],
            "MODEL_SHA256 \"abc\" is not a sha256",
        ),
        (
            &[
                ("MODEL_URI", "s3://bucket/dir/"),
                (
                    "MODEL_SHA256",
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                ),
            ],
            "a sha256 verifies one file",
        ),
    ];
    for (env, message) in cases {
        let mut fetch = Fetch::new()
            .env("MODEL_DIR", dir.path())
            .args(["--termination-log".as_ref(), termination.path().as_os_str()]);
        for (k, v) in env {
            fetch = fetch.env(k, v);
        }
        let out = fetch.run();
        assert_eq!(out.code, Some(2), "{env:?}");
        assert!(out.last_line().contains(message), "{env:?}: {}", out.stderr);
        let written = std::fs::read_to_string(termination.path()).unwrap();
        assert!(written.contains(message), "{written}");
    }
    assert!(tree(dir.path()).is_empty());
}

/// gs:// goes through object_store's GCS client; a service-account file may name
/// another base URL (as for a GCS emulator), which here is the scripted server.
#[test]
fn gcs_objects_are_fetched_through_the_gcs_client() {
    let body = artifact(4096);
    let server = ScriptServer::start(vec![Reply::Status(503), Reply::Body(body.clone())]);
    let dir = tempfile::tempdir().unwrap();
    // Outside MODEL_DIR, which must hold only the artifact.
    let account = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        account.path(),
        format!(
            r#"{{"private_key": "unused", "private_key_id": "unused", "client_email": "t@example.iam.gserviceaccount.com", "gcs_base_url": "{}", "disable_oauth": true}}"#,
            server.url("")
        ),
    )
    .unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", "gs://bkt/models/m.onnx")
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", sha256_hex(&body))
        .env("GOOGLE_SERVICE_ACCOUNT", account.path())
        .env("GOOGLE_ALLOW_HTTP", "true")
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(std::fs::read(dir.path().join("m.onnx")).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    // The GCS JSON API names the object as one encoded path segment.
    assert!(
        requests[1].starts_with("GET /bkt/models%2Fm%2Eonnx "),
        "{requests:?}"
    );
}

/// The kubelet stops a pod with SIGTERM: the partial download must go with it.
#[test]
fn sigterm_mid_download_removes_the_partial_file() {
    // More than the writer's 1 MiB buffer, so that data reaches the disk.
    let body = artifact(3_000_000);
    let server = ScriptServer::start(vec![Reply::StallMidBody {
        body,
        sent: 2_000_000,
    }]);
    let dir = tempfile::tempdir().unwrap();
    let termination = tempfile::NamedTempFile::new().unwrap();
    let child = Fetch::new()
        .env("MODEL_URI", server.url("/m.txt"))
        .env("MODEL_DIR", dir.path())
        .args(["--termination-log".as_ref(), termination.path().as_os_str()])
        .spawn();
    // The temporary file is there and has data: the download is under way.
    let partial = dir
        .path()
        .join(format!(".mlctl-fetch-{}-m.txt.part", child.id()));
    let started = wait_for(std::time::Duration::from_secs(30), || {
        std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
    });
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(started, "no partial file appeared: {stderr}");
    assert!(killed.success());
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    let message = std::fs::read_to_string(termination.path()).unwrap();
    assert!(message.starts_with("interrupted by SIGTERM"), "{message}");
}

/// The object-store path resumes too: a ranged GET conditional on the ETag.
#[test]
fn gcs_downloads_resume_with_a_conditional_range() {
    let body = artifact(300_000);
    let server = ScriptServer::start(vec![
        Reply::CloseMidBody {
            body: body.clone(),
            sent: 120_000,
        },
        Reply::Ranged(body.clone()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let account = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        account.path(),
        format!(
            r#"{{"private_key": "unused", "private_key_id": "unused", "client_email": "t@example.iam.gserviceaccount.com", "gcs_base_url": "{}", "disable_oauth": true}}"#,
            server.url("")
        ),
    )
    .unwrap();
    let out = Fetch::new()
        .env("MODEL_URI", "gs://bkt/m.txt")
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", sha256_hex(&body))
        .env("GOOGLE_SERVICE_ACCOUNT", account.path())
        .env("GOOGLE_ALLOW_HTTP", "true")
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(server.header("range"), [None, Some("bytes=120000-".into())]);
    assert_eq!(server.header("if-match"), [None, Some("\"1\"".into())]);
    assert_eq!(std::fs::read(dir.path().join("m.txt")).unwrap(), body);
    assert_eq!(tree(dir.path()), ["m.txt"]);
}
