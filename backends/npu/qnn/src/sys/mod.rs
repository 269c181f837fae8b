//! The raw QNN layer: C declarations ([`types`]) and thin wrappers of each call that turn a
//! status into a `Result` ([`calls`]). All `unsafe` code of this crate is here and in the loader.

pub mod calls;
pub mod types;

pub use types::*;
