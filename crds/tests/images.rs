//! The image names live in `mlctl_crds::images`; the chart and the CRD default
//! must say the same, so a release bumps them together.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mlctl_crds::images::{DEFAULT_RANKER_IMAGE, RANKER_REPOSITORY};

fn read(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn the_chart_uses_the_ranker_image_at_the_workspace_version() {
    let values = read("charts/mlctl-operator/values.yaml");
    let section = values
        .split("storageInitializer:")
        .nth(1)
        .expect("values.yaml has storageInitializer");
    assert!(
        section.contains(&format!("repository: {RANKER_REPOSITORY}")),
        "charts/mlctl-operator/values.yaml storageInitializer.repository must be {RANKER_REPOSITORY}"
    );
    let chart = read("charts/mlctl-operator/Chart.yaml");
    assert!(
        chart.contains(&format!("appVersion: \"{}\"", env!("CARGO_PKG_VERSION"))),
        "Chart.yaml appVersion must be the workspace version {}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn the_crd_defaults_the_runtime_image() {
    let crd = read("crds/yaml/rankingmodels.mlctl.io.yaml");
    assert!(crd.contains(&format!("default: {DEFAULT_RANKER_IMAGE}")));
}
