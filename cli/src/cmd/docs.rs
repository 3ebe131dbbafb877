//! docs/cli.md: the CLI reference, generated from the clap definitions and
//! kept in sync by a test.

use clap::CommandFactory;

use super::Cli;
use crate::exit;

/// Width the reference is wrapped at (fixed, so the output does not depend on
/// the terminal).
const WIDTH: usize = 100;

/// The command that rewrites docs/cli.md.
pub const REGENERATE: &str = "MLCTL_UPDATE_DOCS=1 cargo test -p mlctl --bin mlctl cli_reference";

/// The whole reference page.
pub fn reference() -> String {
    let mut root = Cli::command().term_width(WIDTH).max_term_width(WIDTH);
    root.build();
    let mut out = String::from(
        "# mlctl command reference\n\n<!-- Generated from the clap definitions in cli/src; do not edit.\n",
    );
    out.push_str(&format!("     Regenerate with: {REGENERATE} -->\n\n"));
    out.push_str("## Exit codes\n\n| Code | Meaning |\n|---:|---|\n");
    for (code, meaning) in exit::CONTRACT {
        out.push_str(&format!("| {code} | {meaning} |\n"));
    }
    out.push('\n');
    section(&mut root, &mut out, "mlctl");
    out
}

fn section(command: &mut clap::Command, out: &mut String, path: &str) {
    let help = command
        .clone()
        .term_width(WIDTH)
        .max_term_width(WIDTH)
        .render_long_help()
        .to_string();
    let heading = if path == "mlctl" { "##" } else { "###" };
    out.push_str(&format!("{heading} `{path}`\n\n```text\n"));
    for line in help.trim_end().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("```\n\n");
    let names: Vec<String> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        if let Some(sub) = command.find_subcommand_mut(&name) {
            section(sub, out, &format!("{path} {name}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_reference_is_in_sync_with_docs_cli_md() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
        let generated = reference();
        if std::env::var_os("MLCTL_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/cli.md is out of date with the clap definitions; regenerate it with:\n  {REGENERATE}"
        );
    }

    #[test]
    fn the_reference_covers_every_verb_and_the_exit_codes() {
        let text = reference();
        for verb in [
            "get",
            "describe",
            "status",
            "set-version",
            "promote",
            "abort",
            "retry",
            "rollback",
            "version",
            "completion",
            "lint",
        ] {
            assert!(text.contains(&format!("### `mlctl {verb}`")), "{verb}");
        }
        assert!(text.contains("| 12 | timed out"));
    }
}
