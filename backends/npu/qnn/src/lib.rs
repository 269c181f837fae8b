//! The Qualcomm QNN backend: QNN's HTP library loaded at run time, behind the HAL's
//! `NpuBackend` trait.
//!
//! Three layers, as in cudarc: [`sys`] (hand-written C declarations with layout checks, and thin
//! call wrappers that turn statuses into `Result`s), [`loader`] (finding, opening and vetting the
//! library) and [`backend`] (RAII handles and the HAL backend).

pub mod backend;
pub mod error;
pub mod loader;
pub mod sys;

pub use backend::{
    ClientReason, DdrTraffic, IoBuffers, Precision, QnnBackend, QnnGraph, QnnOptions,
    VendorEstimate,
};
pub use error::{LibraryError, QnnError, Result, BACKEND_NAME};
pub use loader::{QnnLibrary, RpcBuffer, RpcMemLibrary, StdoutToStderr};
