//! A cycle-approximate NPU simulator: an NPU graph backend whose results come from the golden
//! CPU interpreter and whose timing comes from a tile-level cost model of a SoC profile.
//!
//! - [`profile`]: SoC profiles as TOML data, every number with its source.
//! - [`cost`]: the cost model of one graph execution.
//! - [`backend`]: [`SimBackend`], the `NpuBackend` implementation on a simulated clock.
//! - [`functional`]: its results: the golden interpreter, with an exact fast integer MatMul.
//! - [`cpu_model`], [`layer`]: CPU step costs, and the prices of a layer's launches and steps
//!   for the pipeline model of `shadowattn-pipeline`.
//! - [`baselines`]: what a user would otherwise run on the NPU: NPU-Full INT8 attention as one
//!   static graph, and FP16 flash attention on the matrix and vector units.
//! - [`prefill`]: a whole model's prefill (linear layers as NPU graphs, attention by any
//!   strategy, the CPU glue between them) and its dense decode.
//! - [`device`]: the SoC as the pipeline's `DeviceModel` (a layer's prices, the NPU-only
//!   strategies) for callers that do not name the profile.
//! - [`timeline`]: Chrome Trace Event (Perfetto) export.
//! - [`fit`]: the fit of the cost model to published figures (not the ratio calibration of the
//!   core).

pub mod backend;
pub mod baselines;
pub mod cost;
pub mod cpu_model;
pub mod device;
pub mod error;
pub mod fit;
pub mod functional;
pub mod grid;
pub mod layer;
pub mod numerics;
pub mod prefill;
pub mod profile;
pub mod profile_edit;
pub mod timeline;
pub mod validation;
pub mod vendor_fit;

pub use backend::{ExecutionMode, SimBackend};
pub use device::SimulatedSoc;
pub use error::{Result, SimError};
pub use profile::SocProfile;
