//! A cycle-approximate NPU simulator, in three parts that answer different questions, each
//! using only the parts before it:
//!
//! - [`npu`]: **the NPU model.** SoC profiles as TOML data with a source for every number, the
//!   NPU's numerics, functional execution (the golden interpreter with the NPU's rounding),
//!   the tile-level cost model of one graph execution, the `sim` backend ([`SimBackend`]) on a
//!   simulated clock, and the graphs of published measurements.
//! - [`predict`]: **performance predictions** on a profile: the CPU cores' step model, a
//!   layer's prices for the pipeline model of `shadowattn-pipeline`, the NPU-only attention
//!   strategies, a whole model's prefill and decode, the SoC as a `DeviceModel`
//!   ([`SimulatedSoc`]), and timelines as Perfetto traces.
//! - [`fit`]: **fitting and validating profiles** against vendor cost models and published
//!   measurements: the launch fit to the paper's figures, the fit to Qualcomm's estimator and its
//!   graph grids, the validation per graph family, and writing a fitted profile.
//!
//! `tests/layers.rs` checks that no part uses one after it.

pub mod error;
pub mod fit;
pub mod npu;
pub mod predict;

pub use error::{Result, SimError};
pub use npu::backend::{ExecutionMode, SimBackend};
pub use npu::launch::{LaunchChoice, LaunchPath};
pub use npu::profile::SocProfile;
pub use predict::device::SimulatedSoc;
