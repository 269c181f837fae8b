//! The one error type of the sparse-attention core.

use shadowattn_hal::HalError;
use shadowattn_pipeline::PipelineError;
use thiserror::Error;

/// Result alias for the sparse-attention core.
pub type Result<T, E = SparseAttnError> = std::result::Result<T, E>;

/// Everything that can go wrong in the sparse-attention core.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum SparseAttnError {
    /// A backend or HAL call failed.
    #[error(transparent)]
    Hal(#[from] HalError),
    /// Launches, costs or a plan that the pipeline model refuses.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A setting or an argument that is out of range.
    #[error("invalid configuration `{field}`: {detail}")]
    InvalidConfig {
        /// The field.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// A calibration (file or in memory) that cannot be used.
    #[error("invalid calibration `{field}`: {detail}")]
    Calibration {
        /// The part of the calibration (`calibration.version`, `ratios`, …).
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// A graph-bank file that cannot be read back.
    #[error("invalid graph bank file: {detail}")]
    BankFile {
        /// What is wrong with the bytes.
        detail: String,
    },
    /// A file that cannot be read or written.
    #[error("cannot {action} {path}: {detail}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: String,
        /// The operating system's message.
        detail: String,
    },
    /// A layer the calibration does not have.
    #[error("layer {layer} does not exist ({layers} layers)")]
    NoLayer {
        /// The layer asked for.
        layer: usize,
        /// Layers of the calibrated model.
        layers: usize,
    },
    /// A chunk that does not fit what shadowAttn was built for (model shape, bank size).
    #[error("the chunk does not fit: {detail}")]
    ChunkMismatch {
        /// What does not fit.
        detail: String,
    },
    /// A broken invariant of the threaded pipeline (a bug, never bad input).
    #[error("pipeline invariant broken: {0}")]
    Invariant(String),
}

impl SparseAttnError {
    /// Shorthand for [`SparseAttnError::InvalidConfig`].
    pub fn config(field: impl Into<String>, detail: impl Into<String>) -> Self {
        SparseAttnError::InvalidConfig {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// Shorthand for [`SparseAttnError::Calibration`].
    pub fn calibration(field: impl Into<String>, detail: impl Into<String>) -> Self {
        SparseAttnError::Calibration {
            field: field.into(),
            detail: detail.into(),
        }
    }
}
