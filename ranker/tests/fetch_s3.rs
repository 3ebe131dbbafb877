//! `mlctl-ranker fetch` against a local S3-compatible server (moto in server mode
//! on 127.0.0.1, reached through AWS_ENDPOINT_URL with fake credentials): the
//! object_store path, signing included, for single files, prefixes and refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_fetch;

use support_fetch::{Moto, artifact, moto_or_skip, sha256_hex, tree};

/// One moto for all scenarios: it takes seconds to start, and a single owner
/// guarantees it is killed (a shared static would never be dropped).
#[test]
fn s3_compatible_store() {
    let Some(moto) = moto_or_skip(&[]) else {
        return;
    };
    single_file_matches(&moto);
    single_file_mismatch_leaves_nothing(&moto);
    prefix_downloads_every_object_keeping_relative_paths(&moto);
    a_bare_bucket_is_every_object(&moto);
    an_empty_prefix_is_explained(&moto);
    missing_object_is_a_404_without_retries(&moto);
    missing_bucket_is_a_404(&moto);
}

fn single_file_matches(moto: &Moto) {
    let body = artifact(2_000_000);
    moto.seed("match", &[("models/v1/model.txt", &body)]);
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .fetch()
        .env("MODEL_URI", "s3://match/models/v1/model.txt")
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", sha256_hex(&body))
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(tree(dir.path()), ["model.txt"]);
    assert_eq!(std::fs::read(dir.path().join("model.txt")).unwrap(), body);
    assert!(out.last_line().contains("2000000 bytes"), "{}", out.stderr);
    assert!(out.last_line().contains(&sha256_hex(&body)));
}

fn single_file_mismatch_leaves_nothing(moto: &Moto) {
    let body = artifact(1000);
    moto.seed("mismatch", &[("m.json", &body)]);
    let dir = tempfile::tempdir().unwrap();
    let expected = sha256_hex(b"another model");
    let out = moto
        .fetch()
        .env("MODEL_URI", "s3://mismatch/m.json")
        .env("MODEL_DIR", dir.path())
        .env("MODEL_SHA256", &expected)
        .run();
    assert_eq!(out.code, Some(3));
    assert_eq!(
        out.last_line(),
        format!(
            "mlctl-ranker fetch: sha256 mismatch for s3://mismatch/m.json: expected {expected}, got {}",
            sha256_hex(&body)
        )
    );
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

fn prefix_downloads_every_object_keeping_relative_paths(moto: &Moto) {
    let (a, b, c) = (artifact(10), artifact(20_000), artifact(30));
    moto.seed(
        "prefix",
        &[
            ("ranker/v3/model.txt", &a),
            ("ranker/v3/extra/vocab.json", &b),
            ("ranker/v30/other.txt", &c),
            ("elsewhere.txt", &c),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .fetch()
        .env("MODEL_URI", "s3://prefix/ranker/v3/")
        .env("MODEL_DIR", dir.path())
        .run();
    assert_eq!(out.code, Some(0));
    // Segment-wise prefix: v30 is not under v3.
    assert_eq!(tree(dir.path()), ["extra", "extra/vocab.json", "model.txt"]);
    assert_eq!(std::fs::read(dir.path().join("model.txt")).unwrap(), a);
    assert_eq!(
        std::fs::read(dir.path().join("extra/vocab.json")).unwrap(),
        b
    );
    assert!(
        out.last_line().contains("fetched 2 objects"),
        "{}",
        out.stderr
    );
}

fn a_bare_bucket_is_every_object(moto: &Moto) {
    moto.seed("whole", &[("a.txt", b"a"), ("d/b.txt", b"b")]);
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .fetch()
        .env("MODEL_URI", "s3://whole")
        .env("MODEL_DIR", dir.path())
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(tree(dir.path()), ["a.txt", "d", "d/b.txt"]);
}

fn an_empty_prefix_is_explained(moto: &Moto) {
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .fetch()
        .env("MODEL_URI", "s3://prefix/nothing/here/")
        .env("MODEL_DIR", dir.path())
        .run();
    assert_eq!(out.code, Some(1));
    assert!(
        out.last_line()
            .contains("no objects under s3://prefix/nothing/here/: check spec.model.uri"),
        "{}",
        out.stderr
    );
    assert!(tree(dir.path()).is_empty());
}

fn missing_object_is_a_404_without_retries(moto: &Moto) {
    moto.seed("missing", &[("present.txt", b"x")]);
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .fetch()
        .env("MODEL_URI", "s3://missing/absent.txt")
        .env("MODEL_DIR", dir.path())
        .run();
    assert_eq!(out.code, Some(1));
    assert!(
        out.last_line()
            .contains("404 Not Found from s3://missing/absent.txt: the object does not exist"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("attempt ").count(), 1, "{}", out.stderr);
    assert!(tree(dir.path()).is_empty());
}

fn missing_bucket_is_a_404(moto: &Moto) {
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .fetch()
        .env("MODEL_URI", "s3://no-such-bucket/m.txt")
        .env("MODEL_DIR", dir.path())
        .run();
    assert_eq!(out.code, Some(1));
    assert!(
        out.last_line()
            .contains("404 Not Found from s3://no-such-bucket/m.txt"),
        "{}",
        out.stderr
    );
}

/// A second moto that checks credentials after the two seeding requests: the
/// fetch's fake key is unknown to it, as a wrong Secret would be to S3.
#[test]
fn s3_refusing_the_credentials_is_a_403_without_retries() {
    let Some(moto) = moto_or_skip(&[("INITIAL_NO_AUTH_ACTION_COUNT", "2")]) else {
        return;
    };
    moto.seed("locked", &[("m.txt", b"secret model")]);
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .fetch()
        .env("MODEL_URI", "s3://locked/m.txt")
        .env("MODEL_DIR", dir.path())
        .run();
    assert_eq!(out.code, Some(1));
    assert!(
        out.last_line().contains(
            "403 Forbidden from s3://locked/m.txt: the pod's credentials cannot read the object — check spec.runtime.serviceAccountName / the credentials Secret"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("attempt ").count(), 1, "{}", out.stderr);
    assert!(tree(dir.path()).is_empty());
}
