//! The exit-code contract of `mlctl` (also printed by `mlctl help exit-codes`
//! and in the README). CI pipelines act on these codes, so they never change
//! meaning: a new situation gets a new code or maps onto an existing one.

/// Success: the command did what was asked, the model is healthy, or the
/// awaited (`--until`) state was reached.
pub const SUCCESS: u8 = 0;
/// An error: API, network, not found, a refused request, invalid input found
/// by `lint`.
pub const ERROR: u8 = 1;
/// Wrong usage: unknown flags, missing arguments, unreadable input files.
pub const USAGE: u8 = 2;
/// The rollout failed: the canary was aborted (analysis, progress deadline or a
/// person), rolled back, or the model is Degraded.
pub const FAILED: u8 = 10;
/// The rollout is paused, waiting for a person (`mlctl promote` or `mlctl
/// abort`): an indefinite pause step or an inconclusive analysis.
pub const PAUSED: u8 = 11;
/// `--timeout` passed before the awaited state was reached. A timeout never
/// exits 0.
pub const TIMED_OUT: u8 = 12;

/// Every code with a one-line meaning, in order (rendered by `mlctl help
/// exit-codes`, the README and docs/cli.md).
pub const CONTRACT: [(u8, &str); 6] = [
    (
        SUCCESS,
        "success: done, healthy, or the --until state was reached",
    ),
    (
        ERROR,
        "error: API or network error, not found, forbidden, request refused (e.g. nothing to promote)",
    ),
    (
        USAGE,
        "usage: unknown flag, missing or invalid argument, unreadable file",
    ),
    (
        FAILED,
        "the rollout failed: aborted (analysis, progress deadline, a person), rolled back, Degraded",
    ),
    (
        PAUSED,
        "paused for a person: an indefinite pause step or an inconclusive analysis (mlctl promote / abort)",
    ),
    (
        TIMED_OUT,
        "timed out: --timeout passed before the awaited state (never 0)",
    ),
];

/// The contract as text, for `mlctl help exit-codes`.
pub fn contract_text() -> String {
    let mut out = String::from("Exit codes of mlctl (a stable contract for CI pipelines):\n\n");
    for (code, meaning) in CONTRACT {
        out.push_str(&format!("  {code:>2}  {meaning}\n"));
    }
    out.push_str(
        "\nA command that waits (--wait, status --wait) ends with 10 as soon as the rollout \
         fails and, unless it waits --until paused, with 11 as soon as the rollout pauses \
         for a person, so a CI job never hangs on a human.\n",
    );
    out
}

/// Converts an exit code returned by a library entry point (which uses `i32`
/// like `std::process::exit`) into the byte the process returns.
pub fn from_i32(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_lists_every_code_once_in_order() {
        let codes: Vec<u8> = CONTRACT.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, vec![0, 1, 2, 10, 11, 12]);
        let text = contract_text();
        for (code, meaning) in CONTRACT {
            assert!(text.contains(&format!("{code:>2}  {meaning}")), "{text}");
        }
    }

    #[test]
    fn out_of_range_library_codes_are_errors() {
        assert_eq!(from_i32(10), FAILED);
        assert_eq!(from_i32(-1), ERROR);
        assert_eq!(from_i32(300), ERROR);
    }
}
