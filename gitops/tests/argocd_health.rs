//! Runs the Argo CD health checks in examples/argocd/health/*.lua with a real Lua 5.1
//! interpreter on the status fixtures in examples/argocd/fixtures/*.json, and checks that
//! the copy embedded in argocd-cm-health.yaml is identical to the tested files.
//!
//! Needs `lua5.1` (run gitops/tests/install-lua.sh). Without it the test is skipped loudly
//! on a developer machine, and fails when the CI environment variable is set.

// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/argocd")
}

/// `Some(())` when lua5.1 can run; `None` to skip (only outside CI).
fn lua_available() -> Option<()> {
    let found = Command::new("lua5.1")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(());
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if in_ci {
        panic!("lua5.1 is not installed but CI is set: run gitops/tests/install-lua.sh first");
    }
    // Written to the real stderr: libtest captures eprintln! of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         SKIPPED: Argo CD health-check tests need lua5.1 (gitops/tests/install-lua.sh)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

/// A Lua table constructor for a JSON value (null becomes nil, as in Argo CD's conversion).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\{}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => {
            format!(
                "{{{}}}",
                items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
            )
        }
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(
                    "[{}] = {}",
                    lua_literal(&Value::String(k.clone())),
                    lua_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs `script` as Argo CD does (a chunk that reads the global `obj` and returns `hs`).
fn run_health(script: &str, obj: &Value) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("check.lua");
    let program = format!(
        "obj = {}\nlocal check = function()\n{script}\nend\nlocal hs = check()\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message))\n",
        lua_literal(obj)
    );
    std::fs::write(&file, program).unwrap();
    let out = Command::new("lua5.1").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

fn check_kind(script_name: &str, fixtures_name: &str, at_least: usize) {
    let script = std::fs::read_to_string(examples().join("health").join(script_name)).unwrap();
    let fixtures: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(examples().join("fixtures").join(fixtures_name)).unwrap(),
    )
    .unwrap();
    assert!(
        fixtures.len() >= at_least,
        "{fixtures_name} has {} cases",
        fixtures.len()
    );
    let mut failures = Vec::new();
    for case in &fixtures {
        let (status, message) = run_health(&script, &case["obj"]);
        let expect = case["expect"].as_str().unwrap();
        let needle = case["message"].as_str().unwrap();
        if status != expect || !message.contains(needle) {
            failures.push(format!(
                "{}: got {status} {message:?}, want {expect} containing {needle:?}",
                case["name"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{script_name}:\n{}",
        failures.join("\n")
    );
}

#[test]
fn ranking_model_health() {
    if lua_available().is_some() {
        check_kind("rankingmodel.lua", "rankingmodel.json", 10);
    }
}

/// The statuses e2e/tests/argocd.rs captured from the operator (Healthy,
/// progressing, paused, aborted by its analysis, aborted by a person); that
/// test fails when they no longer match what the operator writes.
#[test]
fn ranking_model_health_on_captured_statuses() {
    if lua_available().is_some() {
        check_kind("rankingmodel.lua", "rankingmodel-captured.json", 5);
    }
}

#[test]
fn feature_pipeline_health() {
    if lua_available().is_some() {
        check_kind("featurepipeline.lua", "featurepipeline.json", 10);
    }
}

#[test]
fn argocd_cm_embeds_the_tested_scripts() {
    let cm: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(examples().join("argocd-cm-health.yaml")).unwrap(),
    )
    .unwrap();
    for (key, file) in [
        (
            "resource.customizations.health.mlctl.io_RankingModel",
            "rankingmodel.lua",
        ),
        (
            "resource.customizations.health.mlctl.io_FeaturePipeline",
            "featurepipeline.lua",
        ),
    ] {
        let embedded = cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing"));
        let tested = std::fs::read_to_string(examples().join("health").join(file)).unwrap();
        assert_eq!(
            embedded, tested,
            "{key} differs from health/{file}; copy the file into argocd-cm-health.yaml"
        );
    }
}
