//! The example CI workflows parse, and every flag they pass to `mlctl promote --gitops`
//! exists, so the examples cannot drift from the flags.

// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use clap::{Args, Command};
use mlctl_gitops::cli::PromoteArgs;
use serde_yaml_ng::Value;

fn run_scripts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            for (key, value) in map {
                if key.as_str() == Some("run")
                    && let Some(script) = value.as_str()
                {
                    out.push(script.replace("\\\n", " "));
                }
                run_scripts(value, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| run_scripts(v, out)),
        _ => {}
    }
}

#[test]
fn workflows_use_existing_promote_flags() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ci");
    let known = PromoteArgs::augment_args(Command::new("promote"));
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let workflow: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            workflow.get("jobs").is_some(),
            "{}: no jobs",
            path.display()
        );
        let mut scripts = Vec::new();
        run_scripts(&workflow, &mut scripts);
        for line in scripts.iter().flat_map(|s| s.lines()) {
            let Some(command) = line.trim().strip_prefix("mlctl promote --gitops") else {
                continue;
            };
            for flag in command
                .split_whitespace()
                .filter_map(|w| w.strip_prefix("--"))
            {
                assert!(
                    known.get_arguments().any(|a| a.get_long() == Some(flag)),
                    "{}: unknown flag --{flag}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "found only {checked} flags to check");
}
