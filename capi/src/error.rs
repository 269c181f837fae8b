//! Status codes, the last error message of each thread and handle, and the guard that keeps
//! every Rust panic on this side of the boundary.

use shadowattn_hal::HalError;
use shadowattn_registry::{BackendError, SpecError};
use shadowattn_sparse_attn::SparseAttnError;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a call returns: `SHADOWATTN_OK` or one of the `SHADOWATTN_ERROR_*` codes.
#[allow(non_camel_case_types)]
pub type shadowattn_status = i32;

/// Success.
pub const SHADOWATTN_OK: shadowattn_status = 0;
/// A pointer argument is NULL.
pub const SHADOWATTN_ERROR_NULL_ARGUMENT: shadowattn_status = 1;
/// An argument is out of range, not UTF-8, or a buffer's length does not match the shape.
pub const SHADOWATTN_ERROR_INVALID_ARGUMENT: shadowattn_status = 2;
/// The caller was built against a newer header than this library.
pub const SHADOWATTN_ERROR_ABI_VERSION: shadowattn_status = 3;
/// A backend name outside the grammar (the message lists it).
pub const SHADOWATTN_ERROR_BACKEND_NAME: shadowattn_status = 4;
/// A backend that does not load here (its library is missing, too old, …); the message lists
/// every place tried.
pub const SHADOWATTN_ERROR_BACKEND_UNAVAILABLE: shadowattn_status = 5;
/// A backend call failed (a vendor status, a graph the backend cannot build).
pub const SHADOWATTN_ERROR_BACKEND: shadowattn_status = 6;
/// A calibration that cannot be used, or a chunk of another shape than the context's
/// calibration and graph bank.
pub const SHADOWATTN_ERROR_CALIBRATION: shadowattn_status = 7;
/// A file that cannot be read or written.
pub const SHADOWATTN_ERROR_IO: shadowattn_status = 8;
/// A text output buffer is too small; `needed` tells the size.
pub const SHADOWATTN_ERROR_BUFFER_TOO_SMALL: shadowattn_status = 9;
/// An internal error (a bug in the library), caught before it crossed into C.
pub const SHADOWATTN_ERROR_INTERNAL: shadowattn_status = 10;

/// A failure on the Rust side: its status and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The status returned to C.
    pub status: shadowattn_status,
    /// The message `shadowattn_last_error` returns.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: shadowattn_status, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::new(SHADOWATTN_ERROR_NULL_ARGUMENT, format!("`{what}` is NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(SHADOWATTN_ERROR_INVALID_ARGUMENT, message)
    }

    pub(crate) fn buffer_too_small(needed: usize, len: usize) -> Self {
        Self::new(
            SHADOWATTN_ERROR_BUFFER_TOO_SMALL,
            format!("the buffer holds {len} bytes, {needed} are needed"),
        )
    }
}

impl From<HalError> for ApiError {
    fn from(e: HalError) -> Self {
        let status = match &e {
            HalError::Vendor { .. }
            | HalError::Unsupported { .. }
            | HalError::NotProvided { .. } => SHADOWATTN_ERROR_BACKEND,
            HalError::Load { .. } | HalError::Unavailable { .. } => {
                SHADOWATTN_ERROR_BACKEND_UNAVAILABLE
            }
            _ => SHADOWATTN_ERROR_INVALID_ARGUMENT,
        };
        Self::new(status, e.to_string())
    }
}

impl From<SparseAttnError> for ApiError {
    fn from(e: SparseAttnError) -> Self {
        let status = match &e {
            SparseAttnError::Hal(h) => return h.clone().into(),
            SparseAttnError::Calibration { .. }
            | SparseAttnError::NoLayer { .. }
            | SparseAttnError::ChunkMismatch { .. } => SHADOWATTN_ERROR_CALIBRATION,
            SparseAttnError::Io { .. } => SHADOWATTN_ERROR_IO,
            SparseAttnError::Invariant(_) => SHADOWATTN_ERROR_INTERNAL,
            _ => SHADOWATTN_ERROR_INVALID_ARGUMENT,
        };
        Self::new(status, e.to_string())
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        let status = match &e {
            BackendError::Hal(_) => SHADOWATTN_ERROR_INVALID_ARGUMENT,
            _ => SHADOWATTN_ERROR_BACKEND_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        Self::new(SHADOWATTN_ERROR_BACKEND_NAME, e.to_string())
    }
}

impl From<shadowattn_pipeline::PipelineError> for ApiError {
    fn from(e: shadowattn_pipeline::PipelineError) -> Self {
        SparseAttnError::from(e).into()
    }
}

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// `message` as a C string (an interior NUL, impossible in our messages, becomes a space).
pub(crate) fn c_text(message: &str) -> CString {
    CString::new(message.replace('\0', " ")).unwrap_or_default()
}

fn set_last_error(message: &str) {
    let text = c_text(message);
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = text);
}

/// The last failure message of this thread.
pub(crate) fn last_error_text() -> CString {
    LAST_ERROR
        .try_with(|e| e.borrow().clone())
        .unwrap_or_default()
}

/// Pointer to this thread's last failure message, valid until the next failing call on the
/// thread.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Runs one C entry point: its error becomes a status and this thread's last error, and a
/// panic becomes `SHADOWATTN_ERROR_INTERNAL` instead of unwinding into C.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), ApiError>) -> shadowattn_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SHADOWATTN_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            set_last_error(&format!(
                "internal error in libshadowattn (please report it): {what}"
            ));
            SHADOWATTN_ERROR_INTERNAL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("an invariant broke"));
        assert_eq!(status, SHADOWATTN_ERROR_INTERNAL);
        let text = last_error_text().into_string().unwrap();
        assert!(text.contains("an invariant broke"), "{text}");
        assert_eq!(guard(|| Ok(())), SHADOWATTN_OK);
        assert_eq!(
            guard(|| Err(ApiError::null("ctx"))),
            SHADOWATTN_ERROR_NULL_ARGUMENT
        );
        assert_eq!(last_error_text().to_str().unwrap(), "`ctx` is NULL");
    }
}
