//! The OpenCL compute-kernel backend: quantization, causal top-k, sparse and dense attention on a
//! GPU (Adreno, Mali) behind the HAL's `ComputeBackend` trait, with `libOpenCL.so` loaded at run
//! time. On machines without a GPU, PoCL runs the same kernels on the CPU (correctness only).
//!
//! Layers: `sys` (hand-written declarations from the Khronos specification and thin call
//! wrappers — all `unsafe` is there and in [`loader`]), [`loader`] (explicit path →
//! `SHADOWATTN_OPENCL_LIB` → candidate names), [`device`] (listing and choosing devices),
//! `runtime` (RAII handles, buffers reused across calls, command timestamps) and [`backend`].
//!
//! Why not the `opencl3`/`cl3` crates: their dynamic loading is process-global and configured
//! only through `OPENCL_DYLIB_PATH`, so a backend could neither take an explicit library path
//! nor report every path it tried, as the vendor NPU backends do.

pub mod backend;
pub mod device;
pub mod error;
pub mod loader;
mod runtime;
pub(crate) mod sys;

pub use backend::{list_devices, OpenClBackend, OpenClOptions, Storage, KERNEL_SOURCE};
pub use device::{Device, Selector};
pub use error::{LibraryError, OpenClError, Result, BACKEND_NAME};
pub use loader::OpenClLibrary;
pub use runtime::{GpuEvent, MAX_KEPT_EVENTS};
pub use sys::DeviceType;
