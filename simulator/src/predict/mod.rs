//! Performance predictions on a SoC profile: the CPU stage, a layer's pipeline, the NPU-only
//! attention strategies, a whole model's prefill and decode, and their timelines.

pub mod cpu_model;
pub mod device;
pub mod layer;
pub mod npu_strategies;
pub mod placement;
pub mod prefill;
pub mod setups;
pub mod timeline;
