//! Controllers, one per kind.

pub mod rankingmodel;
