//! The shadowAttn core over the HAL traits: the INT8 pilot graph, accuracy metrics and synthetic
//! workloads. It never names a particular backend.

pub mod error;
pub mod metrics;
pub mod pilot;
pub mod synthetic;

pub use error::{Result, SparseAttnError};
