//! The lossless editor on a corpus of real-world-shaped manifests. Each `NAME.yaml` has a
//! reviewed golden `NAME.expected.yaml` (or `NAME.refused.txt` when the edit must be refused).
//! Refresh after an intended change with:
//!   UPDATE_GOLDEN=1 cargo test -p mlctl-gitops --test manifest_corpus
//! and review the diff.

use std::path::Path;

use mlctl_gitops::manifest::{Desired, DigestChange, edit_model};

const NEW_DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn desired_for(file: &str) -> Desired {
    Desired {
        version: "2026-12-01.1".into(),
        uri: "s3://models/search-ranker/2026-12-01.1/model.txt".into(),
        sha256: if file.contains("remove-digest") {
            DigestChange::Remove
        } else {
            DigestChange::Set(NEW_DIGEST.into())
        },
    }
}

/// Every line that differs must be one of the target keys (line endings are compared by the
/// golden files; here a last line that gained a line break is not a change).
fn assert_only_target_lines_changed(file: &str, before: &str, after: &str) {
    let before: Vec<&str> = before.lines().collect();
    let after: Vec<&str> = after.lines().collect();
    let diff = similar::TextDiff::configure().diff_slices(&before, &after);
    for change in diff.iter_all_changes() {
        if change.tag() != similar::ChangeTag::Equal {
            let line = change.value().trim_start().trim_start_matches('\u{feff}');
            assert!(
                ["version:", "uri:", "sha256:", "model: {"]
                    .iter()
                    .any(|key| line.starts_with(key)),
                "{file}: unexpected changed line {line:?}"
            );
        }
    }
}

#[test]
fn corpus_edits_match_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".yaml") && !name.ends_with(".expected.yaml")
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 8, "corpus went missing: {inputs:?}");
    for input in inputs {
        let file = input.file_name().unwrap().to_string_lossy().into_owned();
        let stem = file.trim_end_matches(".yaml");
        let expected_path = dir.join(format!("{stem}.expected.yaml"));
        let refused_path = dir.join(format!("{stem}.refused.txt"));
        let before = std::fs::read_to_string(&input).unwrap();
        match edit_model(&before, "search-ranker", &desired_for(&file)) {
            Ok(edit) => {
                assert_ne!(edit.text, before, "{file}: nothing changed");
                assert_only_target_lines_changed(&file, &before, &edit.text);
                if update {
                    std::fs::write(&expected_path, &edit.text).unwrap();
                }
                let expected = std::fs::read_to_string(&expected_path)
                    .unwrap_or_else(|_| panic!("{file}: no golden file; run with UPDATE_GOLDEN=1"));
                assert_eq!(edit.text, expected, "{file}: differs from the golden file");
                // Re-running on the output is a no-op.
                let again = edit_model(&edit.text, "search-ranker", &desired_for(&file)).unwrap();
                assert_eq!(again.text, edit.text, "{file}: second edit changed bytes");
            }
            Err(error) => {
                let message = format!("{error}\n");
                if update {
                    std::fs::write(&refused_path, &message).unwrap();
                }
                let expected = std::fs::read_to_string(&refused_path)
                    .unwrap_or_else(|_| panic!("{file}: refused unexpectedly: {message}"));
                assert_eq!(message, expected, "{file}");
            }
        }
    }
}
