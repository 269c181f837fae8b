//! The golden CPU backend: a plain interpreter of every IR op (an NPU graph backend that stands
//! in for a real NPU) and the reference attention kernels (a compute backend).
//!
//! The arithmetic rules every backend is judged against are in [`reference::arith`].

pub mod fast;
pub mod reference;

use serde::{Deserialize, Serialize};
use shadowattn_hal::{
    AttentionInputs, Capabilities, Compiled, CompiledGraph, ComputeBackend, ComputeCapabilities,
    DType, EventKind, FigureSource, Graph, GraphExecutable, HalError, HeadsView, KeyBudget,
    NpuBackend, OpKind, ProfileEvent, QuantizedHeads, Result, ScoreMatrix, Selection, Signature,
    TensorView, TensorViewMut,
};
use std::time::Instant;

/// Registry name of the CPU backend.
pub const NAME: &str = "cpu";

const FORMAT: &str = "shadowattn-cpu-graph";
/// 2: the graph in its binary form after a JSON header line (1 was all JSON, constants as hex).
const FORMAT_VERSION: u32 = 2;

/// Everything: every op with every combination of types (built once).
fn capabilities() -> &'static Capabilities {
    static CAPABILITIES: std::sync::OnceLock<Capabilities> = std::sync::OnceLock::new();
    CAPABILITIES.get_or_init(|| Capabilities {
        ops: OpKind::ALL
            .into_iter()
            .map(|op| (op, Signature::all(&DType::ALL, &DType::ALL)))
            .collect(),
        per_axis_quantization: true,
        serialization: true,
        max_rank: 8,
        relaxed_f32: false,
    })
}

/// The golden CPU backend; implements both [`NpuBackend`] and [`ComputeBackend`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// The CPU backend.
    pub fn new() -> Self {
        CpuBackend
    }
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn event(name: &str, kind: EventKind, start: Instant, origin: Instant) -> ProfileEvent {
    ProfileEvent {
        name: name.to_string(),
        kind,
        track: NAME.into(),
        start_ns: u64::try_from(start.duration_since(origin).as_nanos()).unwrap_or(u64::MAX),
        duration_ns: elapsed_ns(start),
        cycles: None,
        source: FigureSource::Measured,
    }
}

impl NpuBackend for CpuBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    fn capabilities(&self) -> Capabilities {
        capabilities().clone()
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn CompiledGraph>> {
        let start = Instant::now();
        capabilities().check(NAME, graph)?;
        graph.validate()?;
        let ev = event(graph.name(), EventKind::Compile, start, start);
        Ok(Box::new(Compiled::new(
            graph.clone(),
            vec![ev],
            Interpreter {
                origin: Instant::now(),
            },
        )))
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Box<dyn CompiledGraph>> {
        let bad = |detail: String| HalError::Deserialize {
            backend: NAME.into(),
            detail,
        };
        let (file, graph): (SerializedGraph, _) = shadowattn_hal::ir::binary::header_of(bytes)
            .map_err(|e| bad(format!("not a serialized graph: {e}")))?;
        if file.format != FORMAT {
            return Err(bad(format!(
                "format is `{}`, expected `{FORMAT}`",
                file.format
            )));
        }
        if file.version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} is not supported (this build reads version {FORMAT_VERSION})",
                file.version
            )));
        }
        self.compile(&graph.graph()?)
    }
}

/// The header of a serialized graph.
#[derive(Serialize, Deserialize)]
struct SerializedGraph {
    format: String,
    version: u32,
}

/// A graph "compiled" for the CPU: the validated IR, interpreted on each execution.
#[derive(Debug)]
struct Interpreter {
    /// Origin of the launch events' clock.
    origin: Instant,
}

impl GraphExecutable for Interpreter {
    fn run(
        &mut self,
        graph: &Graph,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> Result<Vec<ProfileEvent>> {
        let start = Instant::now();
        reference::graph::execute(graph, inputs, outputs)?;
        Ok(vec![event(
            graph.name(),
            EventKind::Launch,
            start,
            self.origin,
        )])
    }

    fn serialize(&self, graph: &Graph) -> Result<Vec<u8>> {
        let header = SerializedGraph {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
        };
        Ok(shadowattn_hal::ir::binary::with_header(&header, graph))
    }
}

impl ComputeBackend for CpuBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> ComputeCapabilities {
        ComputeCapabilities {
            kv_storage: DType::F32,
        }
    }

    fn quantize_heads(&self, x: HeadsView<'_>, scales: Option<&[f32]>) -> Result<QuantizedHeads> {
        reference::kernels::quantize_heads(x, scales)
    }

    fn topk(&self, scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection> {
        reference::kernels::topk(scores, budget)
    }

    fn sparse_attention(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()> {
        reference::kernels::sparse_attention(inputs, selections, out)
    }

    fn dense_attention(&self, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        reference::kernels::dense_attention(inputs, out)
    }
}
