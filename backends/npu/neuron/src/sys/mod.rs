//! The raw Neuron layer: C declarations ([`types`]) and thin call wrappers ([`calls`]). All
//! `unsafe` code of this crate is here and in the loader.

pub mod calls;
pub mod status;
pub mod types;

pub use types::*;
