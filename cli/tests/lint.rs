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
        "demo/rankingmodel.yaml",
    ];
    let out = mlctl()
        .arg("lint")
        .args(examples.iter().map(|e| repo().join("examples").join(e)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 mlctl object(s) checked"));
}

/// `path:LINE: rest` split up.
fn parse_finding<'a>(line: &'a str, path: &str) -> Option<(usize, &'a str)> {
    let rest = line.strip_prefix(path)?.strip_prefix(':')?;
    let (number, rest) = rest.split_once(": ")?;
    Some((number.parse().ok()?, rest))
}

#[test]
fn the_invalid_table_is_refused_with_each_message_at_its_line() {
    let dir = repo().join("crds/testdata/invalid");
    let (mut count, mut at_the_field) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let expect = lines[0].strip_prefix("# expect: ").unwrap();
        // The document starts after the `# expect:` comment.
        let first = 1 + lines
            .iter()
            .position(|l| !l.starts_with('#') && !l.trim().is_empty() && *l != "---")
            .unwrap();
        let out = mlctl().arg("lint").arg(&path).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{}: {stdout}", path.display());
        let shown = path.display().to_string();
        let Some((number, rest)) = stdout
            .lines()
            .filter_map(|l| parse_finding(l, &shown))
            .find(|(_, rest)| rest.contains(expect))
        else {
            panic!("{shown}: expected a line `{shown}:LINE: …{expect}…`, got:\n{stdout}");
        };
        // The line holds the field's key (its last path step), or is the
        // document's first line when the field is missing or the object.
        let field = rest.split_once(": ").map_or("", |(f, _)| f);
        let key = field
            .rsplit(['.', '['])
            .next()
            .unwrap_or("")
            .trim_end_matches(']');
        let holds_key = !key.is_empty()
            && lines
                .get(number - 1)
                .is_some_and(|l| l.contains(&format!("{key}:")) || key.parse::<usize>().is_ok());
        assert!(
            holds_key || number == first,
            "{shown}: line {number} ({:?}) is neither {field}'s key nor the first line {first}",
            lines.get(number - 1)
        );
        if number != first {
            at_the_field += 1;
        }
        count += 1;
    }
    assert!(count >= 40);
    // Most rules are about a field that is there; pointing all of them at the
    // first line would satisfy the check above, so demand more.
    assert!(
        at_the_field * 2 >= count,
        "only {at_the_field} of {count} point past the first line"
    );
}

#[test]
fn findings_then_the_summary_on_a_shared_stream() {
    let good = std::fs::read_to_string(repo().join("examples/rankingmodel-basic.yaml")).unwrap();
    let dir = std::env::temp_dir().join(format!("mlctl-lint-shared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("two.yaml");
    let bad = good.replace("format: lightgbm", "format: sklearn");
    std::fs::write(&file, format!("{bad}\n---\n{bad}")).unwrap();
    // One pipe for both streams, as a terminal or `2>&1` gives.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec '{}' lint '{}' 2>&1",
            env!("CARGO_BIN_EXE_mlctl"),
            file.display()
        ))
        .output()
        .unwrap();
    let both = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{both}");
    assert!(
        both.ends_with("2 mlctl object(s) checked: 2 problem(s)\n"),
        "{both}"
    );
    let lines: Vec<&str> = both.lines().collect();
    assert_eq!(lines.len(), 3, "{both}");
    let shown = file.display().to_string();
    for line in &lines[..2] {
        assert!(parse_finding(line, &shown).is_some(), "{line:?} in\n{both}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stdin_multi_document_input_names_the_line() {
    let good = std::fs::read_to_string(repo().join("examples/rankingmodel-basic.yaml")).unwrap();
    let bad = good.replace("format: lightgbm", "format: sklearn");
    let mut child = mlctl()
        .args(["lint", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!("{good}\n---\n{bad}");
    write!(child.stdin.take().unwrap(), "{input}").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    // The line of the second document's `format:` key, counted in the input.
    let line = 1 + input
        .lines()
        .position(|l| l.contains("format: sklearn"))
        .unwrap();
    let expected = format!("-:{line}: spec.model.format: Unsupported value: \"sklearn\"");
    assert!(stdout.starts_with(&expected), "{expected} in {stdout}");
}

#[test]
fn unknown_fields_are_errors() {
    let good = std::fs::read_to_string(repo().join("examples/rankingmodel-basic.yaml")).unwrap();
    let typo = good.replace("  replicas: 3", "  replicas: 3\n  replica: 3");
    let dir = std::env::temp_dir().join(format!("mlctl-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("typo.yaml");
    std::fs::write(&file, &typo).unwrap();
    let out = mlctl().arg("lint").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    let line = 1 + typo.lines().position(|l| l == "  replica: 3").unwrap();
    assert!(
        stdout.contains(&format!(":{line}: spec.replica: unknown field")),
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
