//! Saved graphs: QNN's context binary behind a header and the IR graph it was compiled from.
//!
//! Layout: magic, the header's length (u64 little-endian), the header (JSON), the IR graph in
//! its binary form, the context binary.

use super::estimates::VendorEstimate;
use super::handles::Context;
use super::io::register;
use super::program::{QnnGraph, QnnProgram};
use super::translate::{cstring, io_defs, value_defs};
use super::QnnBackend;
use crate::error::{QnnError, Result};
use crate::sys::calls;
use serde::{Deserialize, Serialize};
use shadowattn_hal::{Graph, HalError};

const CONTAINER_MAGIC: &[u8; 8] = b"SAQNNCTX";

#[derive(Serialize, Deserialize)]
/// Version 2: the IR graph in its binary form (`graph_bytes` long) between this header and the
/// context binary (version 1 carried it in the header, constants as hex).
struct ContainerHeader {
    version: u32,
    soc_model: Option<u32>,
    graph_bytes: u64,
    io_ids: Vec<u32>,
    estimate: Option<VendorEstimate>,
}

const CONTAINER_VERSION: u32 = 2;

/// A container taken apart: its header, the IR graph and QNN's context binary.
struct Container<'a> {
    header: ContainerHeader,
    graph: Graph,
    binary: &'a [u8],
}

/// A deserialization error saying `detail`.
fn bad(detail: String) -> QnnError {
    QnnError::Deserialize { detail }
}

/// Takes `bytes` apart, checking the magic, every length and the header's version.
fn decode(bytes: &[u8]) -> Result<Container<'_>> {
    let rest = bytes
        .strip_prefix(CONTAINER_MAGIC.as_slice())
        .ok_or_else(|| bad("bad magic".into()))?;
    if rest.len() < 8 {
        return Err(bad("truncated".into()));
    }
    let (len, rest) = rest.split_at(8);
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
    if rest.len() < len {
        return Err(bad("truncated header".into()));
    }
    let (json, rest) = rest.split_at(len);
    let header: ContainerHeader = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if header.version != CONTAINER_VERSION {
        return Err(bad(format!(
            "container version {} is not {CONTAINER_VERSION}; compile the graph again",
            header.version
        )));
    }
    let graph_len = usize::try_from(header.graph_bytes)
        .ok()
        .filter(|&l| l <= rest.len())
        .ok_or_else(|| bad("truncated graph".into()))?;
    let (graph_bytes, binary) = rest.split_at(graph_len);
    let graph = Graph::from_bytes(graph_bytes)?;
    Ok(Container {
        header,
        graph,
        binary,
    })
}

impl QnnProgram {
    /// The container of this program, compiled from `graph`.
    pub(super) fn to_container(&self, graph: &Graph) -> shadowattn_hal::Result<Vec<u8>> {
        let shared = &self.context.shared;
        let binary = {
            let _g = shared.lock();
            calls::context_binary(&shared.lib, self.context.handle)?
        };
        let graph_bytes = graph.to_bytes();
        let header = ContainerHeader {
            version: CONTAINER_VERSION,
            soc_model: shared.options.soc_model,
            graph_bytes: graph_bytes.len() as u64,
            io_ids: self.io.iter().map(|d| d.id).collect(),
            estimate: self.estimate,
        };
        let json = serde_json::to_vec(&header)
            .map_err(|e| HalError::invalid_argument("graph", e.to_string()))?;
        let mut out = CONTAINER_MAGIC.to_vec();
        out.extend((json.len() as u64).to_le_bytes());
        out.extend(json);
        out.extend(graph_bytes);
        out.extend(binary);
        Ok(out)
    }
}

impl QnnBackend {
    /// Loads a graph serialized by
    /// [`CompiledGraph::serialize`](shadowattn_hal::CompiledGraph::serialize) (a QNN context
    /// binary).
    pub fn load_qnn(&self, bytes: &[u8]) -> Result<QnnGraph> {
        let Container {
            header,
            graph,
            binary,
        } = decode(bytes)?;
        if header.soc_model != self.shared.options.soc_model {
            return Err(bad(format!(
                "compiled for SoC model {:?}, this backend targets {:?}; context binaries are SoC specific",
                header.soc_model, self.shared.options.soc_model
            )));
        }
        let defs = value_defs(&graph)?;
        let mut io = io_defs(&graph, &defs);
        if io.len() != header.io_ids.len() {
            return Err(bad("tensor ids do not match the graph".into()));
        }
        for (d, &id) in io.iter_mut().zip(&header.io_ids) {
            d.id = id;
        }
        let shared = &self.shared;
        // Declared before the guard: see `compile_qnn`.
        let context: Context;
        let _g = shared.lock();
        context = Context {
            shared: shared.clone(),
            handle: calls::context_from_binary(&shared.lib, shared.backend, shared.device, binary)?,
        };
        let name = cstring(graph.name())?;
        let graph_handle = calls::graph_retrieve(&shared.lib, context.handle, &name)?;
        let memory = register(shared, context.handle, &graph, &mut io);
        drop(_g);
        Ok(QnnGraph::new(
            graph,
            Vec::new(),
            QnnProgram {
                memory,
                context,
                graph_handle,
                io,
                estimate: header.estimate,
            },
        ))
    }
}
