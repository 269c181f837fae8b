//! The golden reference: arithmetic rules, an IR interpreter and attention kernels, written for
//! clarity, not speed. Every other backend is judged against this module.

pub mod arith;
pub mod graph;
pub mod kernels;
