//! shadowattn's backends by name, in one place: each role's backends registered in one file
//! ([`npu`], [`compute`]: names, the list of known backends, opening them), the one grammar of
//! names ([`spec`]) and the options and errors of opening ([`open`]).
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

pub mod compute;
pub mod npu;
pub mod open;
pub mod spec;

pub use compute::{compute_backends, ComputeSpec};
pub use npu::{npu_backends, NpuSpec, OpenedNpu, SocRef, DEFAULT_SOC};
pub use open::{BackendError, OpenOptions};
pub use spec::{BackendSpec, SpecError, GRAMMAR};
