//! The container images (docs/images.md): builds them twice with
//! `scripts/images --check-reproducible` (which fails when the digests differ),
//! runs them in a throwaway containerd with `images/verify`, then reads each OCI
//! archive and checks what a pod relies on: the name containerd gives it, the
//! user, entrypoint, command, working directory and OCI labels, and the base
//! layer the three release images share.
//!
//! Needs root; buildah and containerd are installed by scripts/images and images/verify (scripts/install-debs images, node); no
//! cluster. Runs under `MLCTL_E2E=1` (e2e/run), `CI=true` or
//! `MLCTL_E2E_IMAGES=1`; `MLCTL_E2E_IMAGES=0` skips it.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn enabled() -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    match var("MLCTL_E2E_IMAGES").as_str() {
        "0" => false,
        "1" => true,
        _ => var("CI") == "true" || var("MLCTL_E2E") == "1",
    }
}

fn root() -> PathBuf {
    mlctl_e2e::workspace_root()
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(root().join(program))
        .args(args)
        .current_dir(root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed ({status})");
}

fn workspace_field(key: &str) -> String {
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let section = toml.split("[workspace.package]").nth(1).unwrap();
    section
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("[workspace.package] {key} missing"))
}

/// The parts of an OCI archive a node reads: the index entry, manifest, config.
struct Archive {
    path: PathBuf,
    index: Value,
    manifest: Value,
    config: Value,
}

impl Archive {
    fn open(path: &Path) -> Archive {
        let blob = |name: &str| -> Value {
            let out = Command::new("tar")
                .arg("-xOf")
                .arg(path)
                .arg(name)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: no {name}", path.display());
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let digest = |v: &Value| {
            v["digest"]
                .as_str()
                .unwrap()
                .replace("sha256:", "blobs/sha256/")
        };
        let index = blob("index.json");
        assert_eq!(
            index["manifests"].as_array().unwrap().len(),
            1,
            "{}",
            path.display()
        );
        let manifest = blob(&digest(&index["manifests"][0]));
        let config = blob(&digest(&manifest["config"]));
        Archive {
            path: path.to_path_buf(),
            index,
            manifest,
            config,
        }
    }

    fn annotation(&self, key: &str) -> &str {
        self.index["manifests"][0]["annotations"][key]
            .as_str()
            .unwrap_or("")
    }

    fn labels(&self) -> BTreeMap<String, String> {
        serde_json::from_value(self.config["config"]["Labels"].clone()).unwrap_or_default()
    }

    fn strings(&self, key: &str) -> Vec<String> {
        serde_json::from_value(self.config["config"][key].clone()).unwrap_or_default()
    }

    fn layers(&self) -> Vec<String> {
        let layers = self.manifest["layers"].as_array().unwrap();
        layers
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }

    /// The name `ctr images import` gives it, and the user it runs as.
    fn check_name_and_user(&self, name: &str, user: &str) {
        let what = self.path.display();
        assert_eq!(self.annotation("io.containerd.image.name"), name, "{what}");
        assert_eq!(
            self.annotation("org.opencontainers.image.ref.name"),
            name,
            "{what}"
        );
        let actual = self.config["config"]["User"].as_str().unwrap_or("");
        assert_eq!(actual, user, "{what}: the user");
        assert_eq!(self.config["os"], "linux", "{what}");
        assert_eq!(self.config["architecture"], "amd64", "{what}");
    }
}

fn check_release(version: &str) {
    let source = workspace_field("repository");
    let revision = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(root())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut base_layers = Vec::new();
    for (name, cmd) in [
        ("mlctl-operator", vec![]),
        ("mlctl-ranker", vec!["serve".to_string()]),
        ("mlctl", vec![]),
    ] {
        let image = Archive::open(&root().join(format!("target/images/{name}.oci.tar")));
        let what = format!("{name} image");
        image.check_name_and_user(&format!("ghcr.io/mlctl/{name}:{version}"), "65532:65532");
        assert_eq!(
            image.strings("Entrypoint"),
            [format!("/usr/local/bin/{name}")],
            "{what}"
        );
        assert_eq!(image.strings("Cmd"), cmd, "{what}");
        assert_eq!(
            image.config["config"]["WorkingDir"], "/home/nonroot",
            "{what}"
        );
        let labels = image.labels();
        let label = |key: &str| {
            labels
                .get(&format!("org.opencontainers.image.{key}"))
                .cloned()
        };
        assert_eq!(label("title").as_deref(), Some(name), "{what}: {labels:?}");
        assert_eq!(label("version").as_deref(), Some(version), "{what}");
        assert_eq!(label("source"), Some(source.clone()), "{what}");
        assert_eq!(
            label("revision").as_deref(),
            Some(revision.trim()),
            "{what}"
        );
        assert_eq!(label("licenses").as_deref(), Some("Apache-2.0"), "{what}");
        assert!(
            label("description").is_some_and(|d| !d.is_empty()),
            "{what}"
        );
        assert!(
            !labels.contains_key("io.buildah.version"),
            "{what}: {labels:?}"
        );
        let layers = image.layers();
        assert_eq!(layers.len(), 2, "{what}: the base, then the binary");
        base_layers.push(layers[0].clone());
    }
    base_layers.dedup();
    assert_eq!(
        base_layers.len(),
        1,
        "the three images must share one base layer"
    );
}

fn check_e2e() {
    let dir = root().join("target/images/e2e");
    let pause = Archive::open(&dir.join("pause.oci.tar"));
    pause.check_name_and_user("localhost/mlctl-e2e/pause:3.10", "65535:65535");
    assert_eq!(pause.strings("Entrypoint"), ["/pause"]);

    let busybox = Archive::open(&dir.join("busybox.oci.tar"));
    let name = busybox.annotation("io.containerd.image.name").to_string();
    assert!(name.starts_with("localhost/mlctl-e2e/busybox:1."), "{name}");
    busybox.check_name_and_user(&name, "65532:65532");
    assert_eq!(busybox.strings("Cmd"), ["sh"]);
}

#[test]
fn images_build_reproducibly_and_run_as_documented() {
    if !enabled() {
        eprintln!(
            "SKIPPED images: builds and runs the container images; set MLCTL_E2E_IMAGES=1 (CI=true and MLCTL_E2E=1 run it too)"
        );
        return;
    }
    let version = workspace_field("version");

    run("scripts/images", &["--check-reproducible"]);
    run("images/verify", &[]);
    check_release(&version);

    run("scripts/images", &["--e2e", "--check-reproducible"]);
    run("images/verify", &["--e2e"]);
    check_e2e();
}
