//! The one error type of the HAL contract.

use thiserror::Error;

/// Result alias for HAL operations.
pub type Result<T, E = HalError> = std::result::Result<T, E>;

/// Everything that can go wrong across the HAL contract.
///
/// Every variant names the graph node, tensor, argument or vendor call that failed, so a user
/// can tell what to fix without reading code.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum HalError {
    /// Tensor shapes that do not fit together at a graph node.
    #[error("shape mismatch at node `{node}`: {detail}")]
    ShapeMismatch {
        /// The node being built or run.
        node: String,
        /// What does not match.
        detail: String,
    },
    /// Data types that do not fit together at a graph node.
    #[error("dtype mismatch at node `{node}`: {detail}")]
    DTypeMismatch {
        /// The node being built or run.
        node: String,
        /// What does not match.
        detail: String,
    },
    /// Quantization parameters that are unusable (NaN, zero or negative scale, zero point out of range…).
    #[error("invalid quantization for `{what}`: {detail}")]
    InvalidQuantization {
        /// The tensor or argument carrying the parameters.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// An argument of a call or an attribute of a node that is out of its valid range.
    #[error("invalid argument `{argument}`: {detail}")]
    InvalidArgument {
        /// The argument or attribute.
        argument: String,
        /// What is wrong.
        detail: String,
    },
    /// Input data that cannot be processed (for example NaN where an order is needed).
    #[error("invalid value in `{what}`: {detail}")]
    InvalidValue {
        /// The tensor or buffer holding the value.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A buffer passed to execution whose size or type does not match the compiled graph.
    #[error("buffer mismatch for tensor `{tensor}`: {detail}")]
    BufferMismatch {
        /// The graph input or output.
        tensor: String,
        /// What does not match.
        detail: String,
    },
    /// A graph uses an op, data type or feature the backend does not support.
    #[error("backend `{backend}` does not support node `{node}` ({op}): {detail}")]
    Unsupported {
        /// The backend that refused.
        backend: String,
        /// The node using the feature.
        node: String,
        /// The op kind.
        op: String,
        /// What exactly is unsupported.
        detail: String,
    },
    /// A backend feature that exists in the contract but not in this backend (for example serialization).
    #[error("backend `{backend}` does not provide {feature}")]
    NotProvided {
        /// The backend.
        backend: String,
        /// The missing feature.
        feature: String,
    },
    /// A vendor library call that returned an error status.
    #[error("{backend}: {call} failed with status {code}: {message}")]
    Vendor {
        /// The backend.
        backend: String,
        /// The vendor function that failed.
        call: String,
        /// The vendor's status code.
        code: i64,
        /// The vendor's message for that code.
        message: String,
    },
    /// A vendor library that no place of the search could load; every attempt and its reason.
    #[error(
        "backend `{backend}` is unavailable: no usable library; tried:\n{}",
        crate::library::Attempts(attempts)
    )]
    Load {
        /// The backend.
        backend: String,
        /// Every place tried, in search order.
        attempts: Vec<crate::library::LoadAttempt>,
    },
    /// A backend that cannot be used here (a library without a symbol, a version too old…).
    #[error("backend `{backend}` is unavailable: {detail}")]
    Unavailable {
        /// The backend.
        backend: String,
        /// Why, including what was tried.
        detail: String,
    },
    /// A cache file refused before any backend parsed it (see [`crate::cache_file`]).
    #[error("refused cache file: {0}")]
    CacheFile(#[from] crate::cache_file::CacheFileError),
    /// Serialized compiled-graph bytes that cannot be read back.
    #[error("cannot deserialize a compiled graph for backend `{backend}`: {detail}")]
    Deserialize {
        /// The backend.
        backend: String,
        /// What is wrong with the bytes.
        detail: String,
    },
}

impl HalError {
    /// Shorthand for [`HalError::InvalidArgument`].
    pub fn invalid_argument(argument: impl Into<String>, detail: impl Into<String>) -> Self {
        HalError::InvalidArgument {
            argument: argument.into(),
            detail: detail.into(),
        }
    }

    /// Shorthand for [`HalError::ShapeMismatch`].
    pub fn shape(node: impl Into<String>, detail: impl Into<String>) -> Self {
        HalError::ShapeMismatch {
            node: node.into(),
            detail: detail.into(),
        }
    }

    /// Shorthand for [`HalError::DTypeMismatch`].
    pub fn dtype(node: impl Into<String>, detail: impl Into<String>) -> Self {
        HalError::DTypeMismatch {
            node: node.into(),
            detail: detail.into(),
        }
    }

    /// Shorthand for [`HalError::InvalidValue`].
    pub fn invalid_value(what: impl Into<String>, detail: impl Into<String>) -> Self {
        HalError::InvalidValue {
            what: what.into(),
            detail: detail.into(),
        }
    }
}
