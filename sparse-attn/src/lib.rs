//! The shadowAttn core over the HAL traits: offline calibration, the scale-bucketed graph bank,
//! the INT8 pilot, top-k and sparse attention in a planned three-stage pipeline, accuracy
//! metrics and synthetic workloads. It never names a particular backend.

pub mod bank;
pub mod calibration;
pub mod error;
pub mod metrics;
pub mod pilot;
pub mod planner;
pub mod shadow;
pub mod synthetic;

pub use error::{Result, SparseAttnError};
