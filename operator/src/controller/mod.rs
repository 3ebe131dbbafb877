//! Controllers, one per kind.

pub mod featurepipeline;
pub mod rankingmodel;
