//! The one error type of the model harness.

use shadowattn_hal::HalError;
use shadowattn_sparse_attn::SparseAttnError;
use thiserror::Error;

/// Result alias for the model harness.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file that cannot be read.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        detail: String,
    },
    /// A malformed GGUF file; the byte offset where reading failed.
    #[error("GGUF at byte {offset}: {detail}")]
    Gguf {
        /// Byte offset.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
    /// A required tensor or metadata key that is absent or of the wrong kind.
    #[error("the model has no usable {what}")]
    Missing {
        /// What is missing.
        what: String,
    },
    /// A model whose architecture or shapes this harness does not run.
    #[error("unsupported model: {detail}")]
    Unsupported {
        /// Why.
        detail: String,
    },
    /// A bad argument (window length, text, ratio…).
    #[error("invalid argument `{argument}`: {detail}")]
    InvalidArgument {
        /// The argument.
        argument: &'static str,
        /// Why.
        detail: String,
    },
    /// A token count past the model's context length: the argument that asked for it, the
    /// value, the limit and where the limit comes from.
    #[error(
        "{argument} {value} is past the model's context length of {limit} tokens (from {origin})"
    )]
    PastContext {
        /// What asked for the tokens (a command-line option or a parameter).
        argument: String,
        /// The tokens asked for.
        value: usize,
        /// The model's context length.
        limit: usize,
        /// Where the limit comes from.
        origin: String,
    },
    /// A graph-cache file whose graph is not the one asked for.
    #[error("the cached graph is `{found}`, not `{expected}`")]
    CachedGraph {
        /// The graph in the file.
        found: String,
        /// The graph asked for.
        expected: String,
    },
    /// An error from a backend.
    #[error(transparent)]
    Hal(#[from] HalError),
    /// An error from the sparse-attention core.
    #[error(transparent)]
    SparseAttn(#[from] SparseAttnError),
}

impl ModelError {
    pub(crate) fn gguf(offset: usize, detail: impl Into<String>) -> Self {
        ModelError::Gguf {
            offset,
            detail: detail.into(),
        }
    }
}
