//! What a user chooses about the QNN backend, and the graph options it becomes.

use crate::sys::calls::GraphOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Float precision of HTP graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// Float graphs run in FP32 where the SoC can (most run FP16 math anyway).
    Fp32,
    /// Float graphs run in FP16.
    Fp16,
}

/// Options of the QNN backend, with defaults for every field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QnnOptions {
    /// Library path; `None` searches (see [`QnnLibrary::find`](crate::QnnLibrary::find)).
    pub library: Option<PathBuf>,
    /// QNN SoC model (52 = SA8255, 57 = SM8650); `None` keeps the library's default.
    pub soc_model: Option<u32>,
    /// Minimum HTP architecture (68, 69, 73, 75, 79, …); a SoC model overrides it.
    pub arch: Option<u32>,
    /// Float precision; `None` keeps the library's default.
    pub precision: Option<Precision>,
    /// VTCM size in MB (0 = maximum); `None` keeps the default.
    pub vtcm_mb: Option<u32>,
    /// Finalize optimization level (1–3); `None` keeps the default.
    pub optimization_level: Option<u32>,
    /// rpcmem library path; `None` searches (see [`RpcMemLibrary::find`](crate::RpcMemLibrary::find)).
    #[serde(default)]
    pub rpcmem_library: Option<PathBuf>,
    /// Never register shared memory: graph I/O always goes through client buffers.
    #[serde(default)]
    pub client_buffers_only: bool,
}

impl QnnOptions {
    /// The graph options these options set at graph creation.
    pub(super) fn graph_options(&self) -> GraphOptions {
        GraphOptions {
            precision: self.precision.map(|p| match p {
                Precision::Fp32 => 0,
                Precision::Fp16 => 1,
            }),
            vtcm_mb: self.vtcm_mb,
            optimization_level: self.optimization_level,
        }
    }
}
