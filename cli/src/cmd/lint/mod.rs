//! `mlctl lint`: offline validation of manifests. Problems go to stdout as
//! `file:LINE: field: message`, one a line, so editors and CI annotations can
//! jump to them; the count goes to stderr, like any status message.

mod locate;

use std::io::{Read, Write};
use std::path::PathBuf;

use mlctl_crds::validate::{Outcome, validate_document};
use serde::Deserialize;

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Manifest files (multi-document YAML or JSON); `-` reads standard input.
    /// Each input may have at most 8 MiB and 5,000,000 nodes once its YAML
    /// aliases are expanded (an alias bomb is a finding, not a hang).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print nothing when everything is valid.
    #[arg(short, long)]
    quiet: bool,
}

/// One finding, ready to print as `file:line: field: message`.
struct Finding {
    file: String,
    /// The line of the offending field's key (1-based); for a missing field the
    /// line of its nearest ancestor that is there; the document's first line for
    /// a problem with the whole object.
    line: usize,
    text: String,
}

impl Finding {
    /// The finding as one line: a message with line breaks in it (a YAML
    /// error, a CEL message) would otherwise break `file:LINE:` parsing and
    /// run into the next finding.
    fn line_text(&self) -> String {
        let text = self
            .text
            .trim_end()
            .replace("\r\n", " ")
            .replace(['\n', '\r'], " ");
        format!("{}:{}: {text}\n", self.file, self.line)
    }
}

pub fn run(args: &LintArgs) -> u8 {
    let mut findings = Vec::new();
    let mut checked = 0usize;
    for path in &args.files {
        let display = path.display().to_string();
        let text = match read_input(path) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("error: cannot read {display}: {err}");
                return exit::USAGE;
            }
        };
        checked += lint_text(&display, &text, &mut findings);
    }
    // All findings, then a flush, then the summary: when stdout and stderr
    // share a terminal or a `2>&1` pipe, the summary comes last on a line of
    // its own. A closed stdout (`| head`) is no reason to panic.
    let mut stdout = std::io::stdout().lock();
    let written = findings
        .iter()
        .try_for_each(|f| stdout.write_all(f.line_text().as_bytes()))
        .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(err) = written
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write the findings: {err}");
        return exit::ERROR;
    }
    if findings.is_empty() {
        if !args.quiet {
            eprintln!("{checked} mlctl object(s) checked: no problems");
        }
        exit::SUCCESS
    } else {
        eprintln!(
            "{checked} mlctl object(s) checked: {} problem(s)",
            findings.len()
        );
        exit::ERROR
    }
}

/// Reads a whole input, refusing one past [`LIMITS`]'s size without reading
/// the rest.
fn read_input(path: &PathBuf) -> std::io::Result<String> {
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path)?)
    };
    let limit = LIMITS.max_bytes;
    let mut text = String::new();
    reader.take(limit as u64 + 1).read_to_string(&mut text)?;
    if text.len() > limit {
        return Err(std::io::Error::other(format!(
            "larger than {limit} bytes, the most mlctl lint reads from one input"
        )));
    }
    Ok(text)
}

/// Input size and alias expansion allowed: a manifest that expands to
/// millions of nodes (an alias bomb) is a finding, not a hang.
const LIMITS: mlctl_gitops::yaml_limits::YamlLimits = mlctl_gitops::yaml_limits::DEFAULT_LIMITS;

/// Lints every document of one file; returns how many mlctl objects it held.
fn lint_text(file: &str, text: &str, findings: &mut Vec<Finding>) -> usize {
    let mut checked = 0;
    if let Err(err) = LIMITS.check(text) {
        let line = match err {
            mlctl_gitops::yaml_limits::YamlLimitError::TooManyNodes { line, .. } => line,
            mlctl_gitops::yaml_limits::YamlLimitError::TooLarge { .. } => 1,
        };
        findings.push(Finding {
            file: file.to_string(),
            line,
            text: format!("not checked: {err}"),
        });
        return checked;
    }
    // Both parsers count documents alike, so the index pairs them up.
    let located = locate::documents(text);
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let place = located.get(index);
        let first_line = place.map_or(1, |d| d.line_of(""));
        let value = match serde_json::Value::deserialize(document) {
            Ok(value) => value,
            Err(err) => {
                findings.push(Finding {
                    file: file.to_string(),
                    line: err.location().map_or(first_line, |l| l.line()),
                    text: format!("not valid YAML: {err}"),
                });
                // The parser cannot resynchronise after a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        if let Outcome::Checked { problems, .. } = validate_document(&value) {
            checked += 1;
            findings.extend(problems.into_iter().map(|p| Finding {
                file: file.to_string(),
                line: place.map_or(first_line, |d| d.line_of(&p.field)),
                text: p.to_string(),
            }));
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_documents_and_other_kinds_are_skipped() {
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n";
        let mut findings = Vec::new();
        assert_eq!(lint_text("f.yaml", text, &mut findings), 0);
        assert!(findings.is_empty());
    }

    #[test]
    fn an_alias_bomb_is_a_finding_at_the_line_where_it_passes_the_limit() {
        // 400 million nodes from 100 KB once the aliases are expanded; without
        // the limit the loader builds them all (serde_yaml_ng's own
        // repetition limit counts alias jumps, 20 000 here, not nodes).
        let items = vec!["x"; 20_000].join(",");
        let aliases = vec!["*l"; 20_000].join(",");
        let text = format!("kind: ConfigMap\nl: &l [{items}]\nm: [{aliases}]\n");
        let mut findings = Vec::new();
        assert_eq!(lint_text("f.yaml", &text, &mut findings), 0);
        assert_eq!(findings.len(), 1);
        let line = findings[0].line_text();
        assert!(
            line.starts_with("f.yaml:3: not checked: the YAML expands to more than 5000000 nodes"),
            "{line}"
        );
    }

    #[test]
    fn an_input_past_the_size_limit_is_not_read_to_its_end() {
        let path = std::env::temp_dir().join(format!("mlctl-lint-big-{}.yaml", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(LIMITS.max_bytes as u64 + 1).unwrap();
        let err = read_input(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("larger than 8388608 bytes"), "{err}");
    }

    #[test]
    fn yaml_syntax_errors_are_findings_at_their_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\n---\nkey: [unclosed\n";
        let mut findings = Vec::new();
        lint_text("f.yaml", text, &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].text.starts_with("not valid YAML"));
        // libyaml notices the missing `]` at the end of the input.
        assert_eq!(findings[0].line, 5, "{}", findings[0].text);
    }

    const MODEL: &str = "apiVersion: mlctl.io/v1alpha1
kind: RankingModel
metadata:
  name: ranker
spec:
  model:
    version: v1
    uri: s3://m/v1/model.txt
    format: sklearn
  runtime:
    image: ghcr.io/mlctl/runtime:1
  replicas: 2
";

    #[test]
    fn problems_point_at_the_line_of_their_field() {
        let text = format!(
            "{MODEL}---\n{}",
            MODEL.replace("  replicas: 2\n", "  replicas: 2\n  replica: 3\n")
        );
        let mut findings = Vec::new();
        assert_eq!(lint_text("f.yaml", &text, &mut findings), 2);
        let lines: Vec<String> = findings.iter().map(Finding::line_text).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("f.yaml:9: spec.model.format: Unsupported value"),
            "{lines:?}"
        );
        // The second document starts on line 14: its fields count from there.
        assert!(
            lines[1].starts_with("f.yaml:22: spec.model.format:"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("f.yaml:26: spec.replica: unknown field"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_missing_field_points_at_its_parent_in_the_second_document() {
        let text = format!("# header\n---\n{}", MODEL.replace("    version: v1\n", ""));
        let mut findings = Vec::new();
        lint_text("f.yaml", &text, &mut findings);
        let version = findings
            .iter()
            .find(|f| f.text.starts_with("spec.model.version"))
            .map(Finding::line_text);
        assert_eq!(
            version.as_deref(),
            // Line 8 is `model:` (the document starts on line 3 after `---`).
            Some("f.yaml:8: spec.model.version: Required value\n"),
            "{:?}",
            findings.iter().map(Finding::line_text).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_finding_is_one_line_ending_in_a_newline() {
        let finding = Finding {
            file: "f.yaml".into(),
            line: 3,
            text: "spec: \"a  b\" on two\nlines\r\nor three\n".into(),
        };
        assert_eq!(
            finding.line_text(),
            "f.yaml:3: spec: \"a  b\" on two lines or three\n"
        );
    }

    #[test]
    fn the_compare_example_is_clean_and_a_shadow_after_set_weight_is_refused() {
        let example = include_str!("../../../../examples/rankingmodel-compare.yaml");
        let mut findings = Vec::new();
        assert_eq!(lint_text("c.yaml", example, &mut findings), 1);
        let lines: Vec<String> = findings.iter().map(Finding::line_text).collect();
        assert!(lines.is_empty(), "{lines:?}");

        // The shadow step moved after the setWeight.
        let late = example
            .replace("      - shadow: {duration: 10m, sample: 20}\n", "")
            .replace(
                "      - pause: {duration: 10m}\n",
                "      - pause: {duration: 10m}\n      - shadow: {duration: 10m, sample: 20}\n",
            );
        assert_ne!(late, example);
        lint_text("c.yaml", &late, &mut findings);
        let lines: Vec<String> = findings.iter().map(Finding::line_text).collect();
        assert!(
            lines
                .iter()
                .any(|l| l
                    .contains("shadow and interleave steps must come before the first setWeight")),
            "{lines:?}"
        );
    }

    #[test]
    fn the_placement_example_is_clean_and_a_bad_toleration_points_at_its_list() {
        let example = include_str!("../../../../examples/rankingmodel-placement.yaml");
        let mut findings = Vec::new();
        // The PriorityClass beside the model is not ours: one object checked.
        assert_eq!(lint_text("p.yaml", example, &mut findings), 1);
        let lines: Vec<String> = findings.iter().map(Finding::line_text).collect();
        assert!(lines.is_empty(), "{lines:?}");

        let bad = example.replace("operator: Equal", "operator: Exists");
        lint_text("p.yaml", &bad, &mut findings);
        let lines: Vec<String> = findings.iter().map(Finding::line_text).collect();
        let at = bad
            .lines()
            .position(|l| l.trim() == "tolerations:")
            .map(|i| i + 1)
            .unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!(
                "p.yaml:{at}: spec.runtime.tolerations: a toleration with operator Exists"
            )),
            "{lines:?}"
        );
    }
}
