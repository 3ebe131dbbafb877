//! `mlctl lint` as a user runs it: the binary, real files, exit codes.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn mlctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlctl"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn examples_lint_clean() {
    let examples = [
        "rankingmodel-basic.yaml",
        "rankingmodel-canary.yaml",
        "featurepipeline-spark.yaml",
        "featurepipeline-container.yaml",
    ];
    let out = mlctl()
        .arg("lint")
        .args(examples.iter().map(|e| repo().join("examples").join(e)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 mlctl object(s) checked"));
}

#[test]
fn the_invalid_table_is_refused_with_each_message() {
    let dir = repo().join("crds/testdata/invalid");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap();
        let out = mlctl().arg("lint").arg(&path).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{}: {stdout}", path.display());
        // `file:document: field: message`
        let prefix = format!("{}:1: ", path.display());
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(expect)),
            "{}: expected a line `{prefix}…{expect}…`, got:\n{stdout}",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 40);
}

#[test]
fn stdin_multi_document_input_names_the_document() {
    let good = std::fs::read_to_string(repo().join("examples/rankingmodel-basic.yaml")).unwrap();
    let bad = good.replace("format: lightgbm", "format: sklearn");
    let mut child = mlctl()
        .args(["lint", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write!(child.stdin.take().unwrap(), "{good}\n---\n{bad}").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.starts_with("-:2: spec.model.format: Unsupported value: \"sklearn\""),
        "{stdout}"
    );
}

#[test]
fn unknown_fields_are_errors() {
    let good = std::fs::read_to_string(repo().join("examples/rankingmodel-basic.yaml")).unwrap();
    let typo = good.replace("  replicas: 3", "  replicas: 3\n  replica: 3");
    let dir = std::env::temp_dir().join(format!("mlctl-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("typo.yaml");
    std::fs::write(&file, typo).unwrap();
    let out = mlctl().arg("lint").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(":1: spec.replica: unknown field"),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let out = mlctl().arg("lint").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = mlctl()
        .args(["lint", "/nonexistent/manifest.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/manifest.yaml")
    );
}
