//! Test support.

pub mod fake_loader;
