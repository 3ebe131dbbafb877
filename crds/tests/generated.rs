//! The committed CRD YAML must be exactly what the types generate: the schema
//! has one source, the Rust types.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    // The chart's copies are checked too: they are never hand-copied.
    for dir in [
        root.join("yaml"),
        root.join("../charts/mlctl-operator/crds"),
    ] {
        for (file, generated) in mlctl_crds::crd_yamls().unwrap() {
            let path = dir.join(&file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != generated {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated CRDs differ from the committed files {stale:?}.\n\
         Regenerate them with:\n\n    cargo run -p mlctl-crds --bin crdgen\n\n\
         and commit the result."
    );
}

#[test]
fn generated_crds_carry_the_api_conventions() {
    let yamls = mlctl_crds::crd_yamls().unwrap();
    let all: String = yamls.iter().map(|(_, y)| y.as_str()).collect();
    for needle in [
        "shortNames:\n    - rm",
        "shortNames:\n    - fp",
        "categories:\n    - mlctl",
        "x-kubernetes-list-type: map",
        "x-kubernetes-validations",
        "specReplicasPath: .spec.replicas",
        "labelSelectorPath: .status.selector",
        "status: {}",
    ] {
        assert!(all.contains(needle), "generated CRDs lack {needle:?}");
    }
}
