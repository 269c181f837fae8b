//! The one error type of the sparse-attention core.

use shadowattn_hal::HalError;
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
    /// A configuration value that is out of range.
    #[error("invalid configuration `{field}`: {detail}")]
    InvalidConfig {
        /// The field.
        field: String,
        /// What is wrong.
        detail: String,
    },
}

impl SparseAttnError {
    /// Shorthand for [`SparseAttnError::InvalidConfig`].
    pub fn config(field: impl Into<String>, detail: impl Into<String>) -> Self {
        SparseAttnError::InvalidConfig {
            field: field.into(),
            detail: detail.into(),
        }
    }
}
