//! The safe layer and the HAL `NpuBackend` over QNN.
//!
//! Handles are owned by RAII values freed in dependency order: a compiled graph owns its context;
//! contexts keep the shared backend (device, backend, log) alive; the library itself is never
//! unloaded. Every QNN call of one backend is serialized by a mutex, since QNN documents no
//! thread safety for concurrent calls on one handle.
//!
//! One job per file: `options` (what a user chooses), `handles` (the RAII owners), `translate`
//! (IR values and nodes as QNN tensors and ops), `capabilities` (what HTP accepts), `compile`
//! (IR graph to finalized graph), `program` (a finalized graph and its execution), `container`
//! (context binaries saved and loaded), `io` (graph I/O in registered shared memory or client
//! buffers), `profiling` (QNN's profile events as HAL events) and
//! `estimates` (Qualcomm's cost-model estimate). This file holds the backend itself.

mod capabilities;
mod compile;
mod container;
mod estimates;
mod handles;
mod io;
mod options;
mod profiling;
mod program;
mod translate;

pub use estimates::{DdrTraffic, VendorEstimate};
pub use io::{ClientReason, IoBuffers};
pub use options::{Precision, QnnOptions};
pub use program::{QnnGraph, QnnProgram};

use crate::error::{Result, BACKEND_NAME};
use crate::loader::QnnLibrary;
use crate::sys::calls;
use handles::Shared;
use shadowattn_hal::{Capabilities, CompiledGraph, Graph, NpuBackend};
use std::sync::{Arc, OnceLock};
use translate::value_defs;

/// The QNN backend: Qualcomm's HTP library behind the HAL.
#[derive(Debug)]
pub struct QnnBackend {
    shared: Arc<Shared>,
    capabilities: OnceLock<Capabilities>,
    version: String,
}

impl QnnBackend {
    /// Opens the library (or reuses the process's one) and creates a backend and device.
    pub fn open(options: QnnOptions) -> Result<Self> {
        let lib = QnnLibrary::find(options.library.as_deref())?;
        let shared = Shared::open(lib, options)?;
        let version = version(&shared.lib);
        *shared.io_state() = io::probe(&shared);
        Ok(QnnBackend {
            shared: Arc::new(shared),
            capabilities: OnceLock::new(),
            version,
        })
    }

    /// The library in use.
    pub fn library(&self) -> &QnnLibrary {
        &self.shared.lib
    }

    /// Options in effect.
    pub fn options(&self) -> &QnnOptions {
        &self.shared.options
    }

    /// How graphs compiled from now on exchange their inputs and outputs: registered shared
    /// memory, or client buffers and why.
    pub fn io_buffers(&self) -> IoBuffers {
        self.shared.io_state().report.clone()
    }

    /// The library's API versions and build, without the graph I/O note of
    /// [`NpuBackend::version`].
    pub fn library_version(&self) -> &str {
        &self.version
    }
}

/// The API versions and build of `lib`, as [`NpuBackend::version`] reports them.
fn version(lib: &QnnLibrary) -> String {
    let api = lib.api_version();
    let build = calls::backend_build_id(lib).unwrap_or_default();
    format!(
        "core API {}.{}.{}, HTP API {}.{}.{}, build {build}",
        api.core.major,
        api.core.minor,
        api.core.patch,
        api.backend.major,
        api.backend.minor,
        api.backend.patch
    )
}

impl NpuBackend for QnnBackend {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    /// The library's versions and how graph I/O is exchanged (`…; graph I/O: registered rpcmem
    /// (zero copy)` or `…; graph I/O: client buffers (copied): <reason>`).
    fn version(&self) -> String {
        format!("{}; graph I/O: {}", self.version, self.io_buffers())
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
            .get_or_init(|| self.probe_capabilities())
            .clone()
    }

    fn check_support(&self, graph: &Graph) -> shadowattn_hal::Result<()> {
        graph.validate()?;
        let mut defs = value_defs(graph)?;
        for node in graph.nodes() {
            self.validate_node(graph, node, &mut defs)?;
        }
        Ok(())
    }

    fn compile(&self, graph: &Graph) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        Ok(Box::new(self.compile_qnn(graph)?))
    }

    fn deserialize(&self, bytes: &[u8]) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        Ok(Box::new(self.load_qnn(bytes)?))
    }
}
