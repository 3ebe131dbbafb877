//! `mlctl-ranker`: the serving runtime of every RankingModel pod.
//!
//! The engine is a library, the server a shell (house rule 18): [`model`] parses
//! artifacts from bytes into one tree-ensemble representation, [`engine`] scores
//! slices of feature rows; [`serve`], [`fetch`] and [`predict`] are the I/O around
//! them. docs/runtime-contract.md is the contract with the operator.

pub mod engine;
pub mod fetch;
pub mod model;
pub mod predict;
pub mod serve;
