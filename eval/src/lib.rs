//! Offline ranking evaluation for `mlctl eval`: trec_eval-compatible metrics over TREC
//! qrels and runs, and paired significance gates that compare a candidate run with a
//! baseline. Everything except `cli` and `input` is pure and unit-tested without files.

pub mod cli;
pub mod error;
pub mod evaluate;
pub mod gate;
pub mod input;
pub mod metric;
pub mod output;
pub mod parse;
pub mod rng;
pub mod stats;
mod threads;

pub use error::EvalError;
