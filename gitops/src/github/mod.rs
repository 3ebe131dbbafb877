//! Promotion and rollback as pull requests on GitHub (REST API through octocrab).

pub mod api;
mod flow;

pub use flow::{history, open_change, read_base};
