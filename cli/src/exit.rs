//! The exit-code contract of `mlctl` (also printed by `mlctl help exit-codes`).

/// Success: the command did what was asked, or the awaited state was reached.
pub const SUCCESS: u8 = 0;
/// An error: API, network, not found, invalid input found by `lint`.
pub const ERROR: u8 = 1;
/// Wrong usage: unknown flags, missing arguments, unreadable input files.
pub const USAGE: u8 = 2;

/// Converts an exit code returned by a library entry point (which uses `i32`
/// like `std::process::exit`) into the byte the process returns.
pub fn from_i32(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(ERROR)
}
