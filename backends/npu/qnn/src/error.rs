//! The one error type of the QNN backend.

use shadowattn_hal::HalError;
use thiserror::Error;

/// Result alias for the QNN backend.
pub type Result<T, E = QnnError> = std::result::Result<T, E>;

pub use shadowattn_hal::library::{LibraryError, LoadAttempt};

/// Everything that can go wrong in the QNN backend.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum QnnError {
    /// No candidate library could be used (every attempt), or one that does not open or lacks a
    /// required symbol.
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// A library whose providers are unusable (wrong API version, none for this backend).
    #[error("{path}: {detail}")]
    Provider {
        /// The library.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A function-table slot that is NULL in this library.
    #[error("the QNN library does not implement `{0}`")]
    MissingFunction(&'static str),
    /// A QNN call that returned an error status.
    #[error("{call} failed with QNN error {code}: {message}")]
    Call {
        /// The QNN function.
        call: &'static str,
        /// The error code (low 16 bits of the status).
        code: u64,
        /// `errorGetMessage` text, and the last error logged by the library if any.
        message: String,
    },
    /// A graph feature this backend cannot express.
    #[error("QNN backend cannot build node `{node}` ({op}): {detail}")]
    Unsupported {
        /// The node.
        node: String,
        /// The op kind.
        op: String,
        /// Why.
        detail: String,
    },
    /// A graph, node or tensor name that C cannot carry (it holds a NUL byte).
    #[error("name `{name}` contains a NUL byte")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Serialized graph bytes that cannot be read back.
    #[error("invalid serialized QNN graph: {detail}")]
    Deserialize {
        /// What is wrong with the bytes.
        detail: String,
    },
    /// A context binary larger than this process can address.
    #[error("the context binary has {bytes} bytes, more than fit in memory")]
    ContextBinaryTooLarge {
        /// Its size as QNN reported it.
        bytes: u64,
    },
    /// A shared-memory (rpcmem) call that failed.
    #[error("{call} failed: {detail}")]
    SharedMemory {
        /// The rpcmem function.
        call: &'static str,
        /// What happened.
        detail: String,
    },
    /// An error from the HAL (graph validation, buffers).
    #[error(transparent)]
    Hal(#[from] HalError),
}

/// Registry name of the backend.
pub const BACKEND_NAME: &str = "qnn:htp";

impl From<QnnError> for HalError {
    fn from(e: QnnError) -> Self {
        match e {
            QnnError::Hal(h) => h,
            QnnError::Call {
                call,
                code,
                message,
            } => HalError::Vendor {
                backend: BACKEND_NAME.into(),
                call: call.into(),
                code: code as i64,
                message,
            },
            QnnError::Unsupported { node, op, detail } => HalError::Unsupported {
                backend: BACKEND_NAME.into(),
                node,
                op,
                detail,
            },
            e @ QnnError::InvalidName { .. } => HalError::invalid_argument("name", e.to_string()),
            QnnError::Deserialize { detail } => HalError::Deserialize {
                backend: BACKEND_NAME.into(),
                detail,
            },
            e @ QnnError::ContextBinaryTooLarge { .. } => {
                HalError::invalid_value("context binary", e.to_string())
            }
            QnnError::Library(e) => e.into_hal(BACKEND_NAME),
            other => HalError::Unavailable {
                backend: BACKEND_NAME.into(),
                detail: other.to_string(),
            },
        }
    }
}
