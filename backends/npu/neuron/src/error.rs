//! The one error type of the Neuron backend.

pub use shadowattn_hal::library::{LibraryError, LoadAttempt};
use shadowattn_hal::HalError;
use thiserror::Error;

/// Result alias for the Neuron backend.
pub type Result<T, E = NeuronError> = std::result::Result<T, E>;

/// Registry name of the backend.
pub const BACKEND_NAME: &str = "neuron";

/// Everything that can go wrong in the Neuron backend.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum NeuronError {
    /// No candidate library could be used (every attempt and its reason), or one that cannot be
    /// opened or lacks a required symbol.
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// A runtime older than the oldest whose functions these declarations match.
    #[error("{path}: Neuron runtime {version} is older than {oldest}, the oldest whose functions this backend declares")]
    TooOld {
        /// The library.
        path: String,
        /// Its runtime version.
        version: String,
        /// The oldest accepted.
        oldest: String,
    },
    /// A Neuron call that returned an error code.
    #[error("{call} failed with {name} ({code})")]
    Call {
        /// The function.
        call: &'static str,
        /// The result code.
        code: i32,
        /// Its name.
        name: &'static str,
    },
    /// A graph feature the Neuron adapter cannot express.
    #[error("Neuron backend cannot build node `{node}` ({op}): {detail}")]
    Unsupported {
        /// The node.
        node: String,
        /// The op.
        op: String,
        /// Why.
        detail: String,
    },
    /// A HAL error.
    #[error(transparent)]
    Hal(#[from] HalError),
}

impl From<NeuronError> for HalError {
    fn from(e: NeuronError) -> Self {
        match e {
            NeuronError::Hal(h) => h,
            NeuronError::Call { call, code, name } => HalError::Vendor {
                backend: BACKEND_NAME.into(),
                call: call.into(),
                code: i64::from(code),
                message: name.into(),
            },
            NeuronError::Unsupported { node, op, detail } => HalError::Unsupported {
                backend: BACKEND_NAME.into(),
                node,
                op,
                detail,
            },
            NeuronError::Library(e) => e.into_hal(BACKEND_NAME),
            other => HalError::Unavailable {
                backend: BACKEND_NAME.into(),
                detail: other.to_string(),
            },
        }
    }
}
