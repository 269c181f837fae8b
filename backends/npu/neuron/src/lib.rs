//! The MediaTek NeuroPilot backend: a Neuron Adapter library loaded at run time, behind the
//! HAL's `NpuBackend` trait.
//!
//! Three layers: [`sys`] (hand-written C declarations with layout checks and thin call
//! wrappers), [`loader`] (finding the library, resolving every symbol once) and [`backend`]
//! (RAII handles and the HAL backend). On machines without MediaTek's library, the simulator's
//! Neuron shim (`simulator/neuron-shim`) exports the same functions.

pub mod backend;
pub mod error;
pub mod loader;
pub mod sys;

pub use backend::{NeuronBackend, NeuronGraph, NeuronOptions};
pub use error::{LibraryError, NeuronError, Result, BACKEND_NAME};
pub use loader::NeuronLibrary;
