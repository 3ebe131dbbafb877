//! Every example manifest is valid and round-trips through the typed API.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mlctl_crds::validate::{Outcome, validate_document};
use mlctl_crds::{FeaturePipeline, RankingModel};
use serde::Deserialize;

#[test]
fn examples_are_valid_and_typed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).unwrap();
            if let Outcome::Checked { problems, kind, .. } = validate_document(&value) {
                assert!(problems.is_empty(), "{}: {problems:?}", path.display());
                match kind.as_str() {
                    "RankingModel" => {
                        serde_json::from_value::<RankingModel>(value).unwrap();
                    }
                    "FeaturePipeline" => {
                        serde_json::from_value::<FeaturePipeline>(value).unwrap();
                    }
                    other => panic!("unexpected kind {other}"),
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 4, "expected the four examples, saw {seen}");
}
