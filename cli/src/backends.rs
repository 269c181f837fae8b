//! How the command-line tool opens the backends its options name.

use shadowattn_registry::OpenOptions;

/// The default NPU backend: the simulator with the paper's phone.
pub const DEFAULT_NPU: &str = "sim:snapdragon-8-gen-3";

/// Libraries from the loaders' own search (explicit paths come from their environment
/// variables); OpenCL records its commands so `--compute-trace` can draw them.
pub fn open_options() -> OpenOptions {
    OpenOptions {
        opencl_profiling: true,
        ..OpenOptions::default()
    }
}
