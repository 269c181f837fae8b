//! shadowattn's backends by name, in one place: the grammar of backend specs ([`spec`]), the
//! list of known backends ([`catalog`]) and opening what a spec names ([`open`]).
//!
//! ```
//! use shadowattn_registry::{ComputeSpec, NpuSpec, OpenOptions};
//!
//! let npu: NpuSpec = "sim:sa8255".parse()?;
//! let opened = npu.open(&OpenOptions::default())?;
//! assert_eq!(opened.backend.name(), "sim:sa8255");
//! let compute: ComputeSpec = "cpu-fast:2:f16".parse()?;
//! assert_eq!(compute.to_string(), "cpu-fast:2:f16");
//! assert!("cpu-fast:0".parse::<ComputeSpec>().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod catalog;
pub mod open;
pub mod spec;

pub use catalog::{compute_backends, npu_backends};
pub use open::{BackendError, OpenOptions, OpenedNpu};
pub use spec::{BackendSpec, ComputeSpec, NpuSpec, SocRef, SpecError, DEFAULT_SOC, GRAMMAR};
