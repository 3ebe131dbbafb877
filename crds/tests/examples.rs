//! Every example manifest under examples/ (recursively: demo/, argocd/, ...)
//! that holds mlctl kinds is valid and round-trips through the typed API.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use mlctl_crds::validate::{Outcome, validate_document};
use mlctl_crds::{FeaturePipeline, RankingModel};
use serde::Deserialize;

/// Every `.yaml` file under `dir`, at any depth, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Documents of mlctl kinds, counted from the text alone (a top-level
/// `apiVersion: mlctl.io/` line), so that a parsing slip cannot lower both
/// sides of the count check at once.
fn mlctl_documents_in_text(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("apiVersion: mlctl.io/"))
        .count()
}

#[test]
fn examples_are_valid_and_typed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (mut seen, mut expected) = (0, 0);
    let mut files_with_objects = Vec::new();
    for path in yaml_files(&dir) {
        let text = std::fs::read_to_string(&path).unwrap();
        expected += mlctl_documents_in_text(&text);
        let mut in_file = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).unwrap();
            let ours = value
                .get("apiVersion")
                .and_then(|v| v.as_str())
                .is_some_and(|v| v.starts_with("mlctl.io/"));
            if !ours {
                continue; // a ConfigMap, an Argo CD Application, a CI workflow
            }
            let Outcome::Checked { problems, kind, .. } = validate_document(&value) else {
                panic!("{}: an mlctl.io document was not checked", path.display());
            };
            assert!(problems.is_empty(), "{}: {problems:?}", path.display());
            match kind.as_str() {
                "RankingModel" => {
                    serde_json::from_value::<RankingModel>(value).unwrap();
                }
                "FeaturePipeline" => {
                    serde_json::from_value::<FeaturePipeline>(value).unwrap();
                }
                "AnalysisTemplate" => {
                    serde_json::from_value::<mlctl_crds::AnalysisTemplate>(value).unwrap();
                }
                other => panic!("{}: unexpected kind {other}", path.display()),
            }
            in_file += 1;
        }
        if in_file > 0 {
            let relative = path.strip_prefix(&dir).unwrap().display().to_string();
            files_with_objects.push(relative);
        }
        seen += in_file;
    }
    assert_eq!(
        seen, expected,
        "checked {seen} mlctl objects, the files hold {expected}"
    );
    // The four top-level examples and the demo, at least.
    assert!(seen >= 5, "expected at least five examples, saw {seen}");
    assert!(
        files_with_objects
            .iter()
            .any(|f| f == "demo/rankingmodel.yaml"),
        "examples/demo/ was not checked: {files_with_objects:?}"
    );
}
