//! GitOps promotion for `mlctl promote --gitops` and `mlctl rollback --gitops`: a lossless
//! manifest edit, then a branch + commit + pull request on GitHub (or a pushed branch on any
//! git host), with the gate report where the reviewer looks.

mod auth;
pub mod change;
pub mod cli;
pub mod git;
pub mod github;
pub mod manifest;
pub mod record;
pub mod redact;
pub mod report;
pub mod terminal;
pub mod yaml_limits;
