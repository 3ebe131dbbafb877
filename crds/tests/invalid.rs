//! Every manifest of the invalid table (`crds/testdata/invalid/`) is refused
//! by the offline validator with the message its first line expects. The e2e
//! suite runs the same table through a real API server.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mlctl_crds::validate::{Outcome, validate_document};

fn table() -> Vec<(String, String, serde_json::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/invalid");
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a `# expect:` first line", path.display()))
            .to_string();
        let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        cases.push((path.display().to_string(), expect, doc));
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

#[test]
fn every_invalid_manifest_is_refused_with_its_message() {
    let cases = table();
    assert!(cases.len() >= 40, "the table shrank to {}", cases.len());
    let mut failures = Vec::new();
    for (path, expect, doc) in &cases {
        let Outcome::Checked { problems, .. } = validate_document(doc) else {
            failures.push(format!("{path}: not recognised as an mlctl object"));
            continue;
        };
        if !problems
            .iter()
            .any(|p| p.to_string().contains(expect.as_str()))
        {
            failures.push(format!("{path}: expected {expect:?}, got {problems:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn each_invalid_manifest_breaks_only_its_own_rule() {
    // A case that trips several rules would prove nothing about the one it names.
    for (path, expect, doc) in table() {
        let Outcome::Checked { problems, .. } = validate_document(&doc) else {
            continue;
        };
        let unrelated: Vec<_> = problems
            .iter()
            .filter(|p| !p.to_string().contains(expect.as_str()))
            .collect();
        assert!(
            unrelated.len() <= 1,
            "{path}: more than the expected problem: {problems:?}"
        );
    }
}
