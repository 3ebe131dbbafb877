//! The images mlctl ships, named in one place: the CRD's default runtime image,
//! the operator's default storage initializer, the chart and the docs all come
//! from here. Tags follow the workspace version, so an image always matches the
//! operator that renders pods around it.

/// Repository of the `mlctl-ranker` image (serving runtime and storage initializer).
pub const RANKER_REPOSITORY: &str = "ghcr.io/mlctl/mlctl-ranker";

/// `mlctl-ranker` image of this release: `spec.runtime.image` when a RankingModel
/// does not set one (a CRD default, so it is written into the object at creation
/// and a later release never changes what an existing model runs).
pub const DEFAULT_RANKER_IMAGE: &str =
    concat!("ghcr.io/mlctl/mlctl-ranker:", env!("CARGO_PKG_VERSION"));

/// Repository of the `mlctl` CLI image.
pub const CLI_REPOSITORY: &str = "ghcr.io/mlctl/mlctl";

/// `mlctl` CLI image of this release: what an analysis `job` provider runs
/// when it names no image (e.g. `mlctl eval` as the measurement).
pub const DEFAULT_CLI_IMAGE: &str = concat!("ghcr.io/mlctl/mlctl:", env!("CARGO_PKG_VERSION"));

/// The storage initializer runs the same image with this argument.
pub const STORAGE_INITIALIZER_ARGS: &[&str] = &["fetch"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_image_is_the_repository_at_the_workspace_version() {
        assert_eq!(
            DEFAULT_RANKER_IMAGE,
            format!("{RANKER_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            DEFAULT_CLI_IMAGE,
            format!("{CLI_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
