//! The one error type of the OpenCL backend.

pub use shadowattn_hal::library::{LibraryError, LoadAttempt};
use shadowattn_hal::HalError;
use thiserror::Error;

/// Result alias for the OpenCL backend.
pub type Result<T, E = OpenClError> = std::result::Result<T, E>;

/// Registry name of the backend.
pub const BACKEND_NAME: &str = "opencl";

/// Everything that can go wrong in the OpenCL backend.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum OpenClError {
    /// No candidate library could be used (every attempt and its reason), or one that cannot be
    /// opened or lacks a required symbol.
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// The library loaded but reports no platform (no driver or ICD installed).
    #[error("{library}: no OpenCL platform ({status}); install a driver or an ICD (on Debian: pocl-opencl-icd)")]
    NoPlatform {
        /// The library.
        library: String,
        /// The status name returned by clGetPlatformIDs, or why the list is empty.
        status: String,
    },
    /// No device matches the selection.
    #[error("no OpenCL device matches {wanted}; available:\n{}", if available.is_empty() { "  (none)".to_string() } else { available.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n") })]
    NoDevice {
        /// The selection, in words.
        wanted: String,
        /// `platform/device: name` of every device found.
        available: Vec<String>,
    },
    /// An OpenCL call that returned an error status.
    #[error("{call} failed with {name} ({code})")]
    Call {
        /// The function.
        call: &'static str,
        /// The status code.
        code: i32,
        /// Its name.
        name: &'static str,
    },
    /// A program that does not build; the compiler's log.
    #[error("OpenCL program does not build on {device} ({status}):\n{log}")]
    Build {
        /// The device.
        device: String,
        /// The status name.
        status: &'static str,
        /// The build log.
        log: String,
    },
    /// A buffer larger than the device's single-allocation limit.
    #[error("buffer `{buffer}` needs {bytes} bytes but at most {limit} are allowed per buffer on {device} (CL_DEVICE_MAX_MEM_ALLOC_SIZE or the backend's cap); use smaller chunks")]
    BufferTooLarge {
        /// The buffer's role.
        buffer: &'static str,
        /// Bytes needed.
        bytes: u64,
        /// The limit: the device's, or a smaller cap from the options.
        limit: u64,
        /// The device.
        device: String,
    },
    /// FP16 storage asked for on a device without `cl_khr_fp16`.
    #[error("{device} does not report cl_khr_fp16: FP16 storage is unavailable (use Storage::F32 or Storage::Auto)")]
    NoFp16 {
        /// The device.
        device: String,
    },
    /// An option that the device cannot honour.
    #[error("option `{option}`: {detail}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        detail: String,
    },
    /// A HAL error.
    #[error(transparent)]
    Hal(#[from] HalError),
}

impl From<OpenClError> for HalError {
    fn from(e: OpenClError) -> Self {
        match e {
            OpenClError::Hal(h) => h,
            OpenClError::Call { call, code, name } => HalError::Vendor {
                backend: BACKEND_NAME.into(),
                call: call.into(),
                code: i64::from(code),
                message: name.into(),
            },
            OpenClError::Build { status, log, .. } => HalError::Vendor {
                backend: BACKEND_NAME.into(),
                call: "clBuildProgram".into(),
                code: i64::from(crate::sys::Status::BUILD_PROGRAM_FAILURE.0),
                message: format!("{status}: {log}"),
            },
            e @ OpenClError::BufferTooLarge { .. } => {
                HalError::invalid_argument("inputs", e.to_string())
            }
            OpenClError::Library(e) => e.into_hal(BACKEND_NAME),
            e @ OpenClError::NoFp16 { .. } => HalError::NotProvided {
                backend: BACKEND_NAME.into(),
                feature: e.to_string(),
            },
            other => HalError::Unavailable {
                backend: BACKEND_NAME.into(),
                detail: other.to_string(),
            },
        }
    }
}
