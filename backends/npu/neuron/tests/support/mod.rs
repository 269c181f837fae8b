//! Test support.

pub mod shim_loader;
