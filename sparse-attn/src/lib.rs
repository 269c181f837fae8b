//! The shadowAttn core over the HAL traits: offline calibration ([`calibration`]) and its
//! per-head ratio rules ([`allocation`]), the scale-bucketed graph bank ([`bank`]), the INT8
//! pilot ([`pilot`]), key selection ([`select`]), the stage costs the planner uses
//! ([`cost_table`]), the preparation of a chunk ([`prepare`]) and its threaded pipeline
//! ([`executor`]), tied together by [`shadow::ShadowAttention`]; accuracy metrics and synthetic
//! workloads. It never names a particular backend; the schedule model is `shadowattn-pipeline`'s.

pub mod allocation;
pub mod bank;
pub mod calibration;
pub mod cost_table;
pub mod error;
pub mod executor;
pub mod metrics;
pub mod pilot;
pub mod prepare;
pub mod select;
pub mod setup;
pub mod shadow;
pub mod synthetic;

pub use error::{Result, SparseAttnError};
