//! The one place where backend names become backends.

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{ComputeBackend, HalError, NpuBackend};

/// Names accepted for NPU graph backends.
pub const NPU_BACKENDS: &[&str] = &["cpu"];

/// Names accepted for compute-kernel backends.
pub const COMPUTE_BACKENDS: &[&str] = &["cpu"];

/// The NPU graph backend called `name`.
pub fn npu_backend(name: &str) -> Result<Box<dyn NpuBackend>, HalError> {
    match name {
        "cpu" => Ok(Box::new(CpuBackend::new())),
        other => Err(HalError::Unavailable {
            backend: other.to_string(),
            detail: format!("unknown NPU backend; known: {}", NPU_BACKENDS.join(", ")),
        }),
    }
}

/// The compute-kernel backend called `name`.
pub fn compute_backend(name: &str) -> Result<Box<dyn ComputeBackend>, HalError> {
    match name {
        "cpu" => Ok(Box::new(CpuBackend::new())),
        other => Err(HalError::Unavailable {
            backend: other.to_string(),
            detail: format!(
                "unknown compute backend; known: {}",
                COMPUTE_BACKENDS.join(", ")
            ),
        }),
    }
}
