//! `mlctl lint`: offline validation of manifests.

use std::io::Read;
use std::path::PathBuf;

use mlctl_crds::validate::{Outcome, validate_document};
use serde::Deserialize;

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Manifest files (multi-document YAML or JSON); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print nothing when everything is valid.
    #[arg(short, long)]
    quiet: bool,
}

/// One finding, ready to print as `file:document: field: message`.
struct Finding {
    file: String,
    document: usize,
    text: String,
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
    for f in &findings {
        println!("{}:{}: {}", f.file, f.document, f.text);
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

fn read_input(path: &PathBuf) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

/// Lints every document of one file; returns how many mlctl objects it held.
fn lint_text(file: &str, text: &str, findings: &mut Vec<Finding>) -> usize {
    let mut checked = 0;
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value = match serde_json::Value::deserialize(document) {
            Ok(value) => value,
            Err(err) => {
                findings.push(Finding {
                    file: file.to_string(),
                    document: number,
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
                document: number,
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
    fn yaml_syntax_errors_are_findings_with_the_document_number() {
        let text = "apiVersion: v1\nkind: ConfigMap\n---\nkey: [unclosed\n";
        let mut findings = Vec::new();
        lint_text("f.yaml", text, &mut findings);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].document, 2);
        assert!(findings[0].text.starts_with("not valid YAML"));
    }
}
