//! The one error type of the pipeline model.

use thiserror::Error;

/// Result alias for the pipeline model.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything that can be wrong with a pipeline, its launches, costs or plan.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum PipelineError {
    /// A pipeline description that cannot run (no stage, a step twice or never, a pool of no
    /// workers, a stage on a pool that does not exist).
    #[error("invalid pipeline: {0}")]
    Pipeline(String),
    /// Launches that do not cover every unit exactly once.
    #[error("invalid launches: {0}")]
    Launches(String),
    /// Costs that do not match the launches and units, or are not durations.
    #[error("invalid costs: {0}")]
    Costs(String),
    /// A plan that is not a permutation of the launches and units, or whose unit order does not
    /// follow its launch order.
    #[error("invalid plan: {0}")]
    Plan(String),
    /// A question the device model cannot answer (a core cluster it lacks, a graph it cannot
    /// price).
    #[error("{0}")]
    Device(String),
}
