//! A shim library that exports the MediaTek Neuron Adapter C functions on top of the shadowattn
//! simulator, so the Neuron backend's real dynamic-loading code runs end to end on any machine.
//!
//! Models are validated like a driver would (operand types, sizes, call order) and compiled on
//! the simulator profile named by `SHADOWATTN_NEURON_SHIM_SOC` (default `dimensity-9300`).
//! See [`sys`] for the exported functions and fault injection.

pub mod model;
pub mod sys;
