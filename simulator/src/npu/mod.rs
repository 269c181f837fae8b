//! The NPU model: what a SoC's NPU is (its profile), how it computes (numerics, functional
//! execution) and how long one graph execution takes (the cost model), as an NPU backend.

pub mod backend;
pub mod cost;
pub mod functional;
pub mod graphs;
pub mod launch;
pub mod layout;
pub mod numerics;
pub mod profile;
