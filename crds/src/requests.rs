//! Request annotations: how people and `mlctl` ask the operator to act.
//!
//! Each value is a timestamp (RFC 3339, the "requestedAt" pattern; `mlctl`
//! writes nanosecond precision so two requests never collide). The operator
//! acts on a value once and records it in `status.handledRequests` under the
//! annotation's name, so `kubectl annotate --overwrite rm/NAME
//! mlctl.io/promote="$(date -u +%FT%TZ)"` alone is enough to drive a rollout.

/// RankingModel: continue a canary paused for a person (an indefinite pause
/// step or an inconclusive analysis): go to the next step.
pub const PROMOTE: &str = "mlctl.io/promote";
/// RankingModel: skip the remaining steps and analysis; the canary becomes
/// stable as soon as its pods are Ready.
pub const PROMOTE_FULL: &str = "mlctl.io/promote-full";
/// RankingModel: abort the canary; all traffic back to stable at once.
pub const ABORT: &str = "mlctl.io/abort";
/// RankingModel: restart an aborted canary from step 0.
pub const RETRY: &str = "mlctl.io/retry";
/// RankingModel: set together with a `spec.model` change by `mlctl rollback`:
/// the change is a rollback, so it skips the canary steps (like a promote-full)
/// and the version it replaces is recorded as `RolledBack` in history.
pub const ROLLBACK: &str = "mlctl.io/rollback";
/// FeaturePipeline: start one run now.
pub const RUN: &str = "mlctl.io/run";
/// FeaturePipeline: a backfill, as JSON
/// `{"from","to","step","maxParallel","requestedAt"}`; handled by `requestedAt`.
pub const BACKFILL: &str = "mlctl.io/backfill";

/// Every RankingModel request annotation.
pub const MODEL_REQUESTS: [&str; 5] = [PROMOTE, PROMOTE_FULL, ABORT, RETRY, ROLLBACK];
