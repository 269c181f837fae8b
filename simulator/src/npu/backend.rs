//! The simulator as an NPU graph backend: functional results equal to the golden interpreter's
//! ([`crate::npu::functional`]), timing from the cost model, on a simulated device clock.

use crate::error::Result;
use crate::npu::cost::{graph_cost_via, GraphCost, Unit};
use crate::npu::profile::SocProfile;
use serde::{Deserialize, Serialize};
use shadowattn_hal::track;
use shadowattn_hal::{
    Capabilities, Compiled, CompiledGraph, DType, EventKind, FigureSource, Graph, GraphExecutable,
    HalError, NpuBackend, Op, OpKind, ProfileEvent, Signature, TensorView, TensorViewMut,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Ops that move data without computing on it: `[limits] float_ops = false` leaves them alone
/// on f32 tensors (socModel 95 accepts an f32 Transpose, not an f16 one).
fn moves_data(op: OpKind) -> bool {
    matches!(op, OpKind::Transpose | OpKind::Reshape)
}

/// Whether executions compute results or only time them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionMode {
    /// Compute outputs (bit-exact with the CPU reference) and time them.
    Functional,
    /// Only time executions; output buffers are left untouched. For fast sweeps.
    TimingOnly,
}

/// A simulated NPU described by a SoC profile.
#[derive(Clone, Debug)]
pub struct SimBackend {
    name: String,
    profile: Arc<SocProfile>,
    capabilities: Arc<Capabilities>,
    mode: ExecutionMode,
    clock_ns: Arc<AtomicU64>,
}

impl SimBackend {
    /// A functional simulator of `profile`.
    pub fn new(profile: SocProfile) -> Self {
        // Every op but the profile's unsupported ones, with any types but the forms its limits
        // refuse; built once per backend.
        let limits = &profile.limits;
        let refused = |op: OpKind, s: &Signature| match op {
            OpKind::MatMul => !limits.int32_matmul_output && s.output == DType::I32,
            OpKind::Requantize => !limits.requantize_from_int32 && s.input == DType::I32,
            _ => false,
        } || (!limits.float_ops
            && s.input.is_float()
            && s.output.is_float()
            && !(moves_data(op) && s.input == DType::F32 && s.output == DType::F32));
        let capabilities = Capabilities {
            ops: OpKind::ALL
                .into_iter()
                .filter(|op| !profile.unsupported_ops.contains(op))
                .map(|op| {
                    let mut sigs = Signature::all(&DType::ALL, &DType::ALL);
                    sigs.retain(|s| !refused(op, s));
                    (op, sigs)
                })
                .collect(),
            per_axis_quantization: true,
            serialization: true,
            max_rank: 5,
            relaxed_f32: profile.numerics.f32_as_f16,
        };
        SimBackend {
            name: format!("sim:{}", profile.name),
            profile: Arc::new(profile),
            capabilities: Arc::new(capabilities),
            mode: ExecutionMode::Functional,
            clock_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A functional simulator of a built-in profile.
    pub fn builtin(soc: &str) -> Result<Self> {
        Ok(Self::new(SocProfile::builtin(soc)?))
    }

    /// The same simulator in another execution mode (sharing its clock).
    pub fn with_mode(mut self, mode: ExecutionMode) -> Self {
        self.mode = mode;
        self
    }

    /// The SoC profile.
    pub fn profile(&self) -> &SocProfile {
        &self.profile
    }

    /// The simulated device clock: end of the last launch, ns.
    pub fn now_ns(&self) -> u64 {
        self.clock_ns.load(Ordering::SeqCst)
    }

    /// The modelled cost of `graph` without compiling it, launched on the profile's pilot path
    /// (what the core launches on an NPU is the pilot).
    pub fn cost(&self, graph: &Graph) -> GraphCost {
        graph_cost_via(&self.profile, graph, self.profile.pilot_path())
    }
}

impl SimBackend {
    /// Why the profile's limits refuse `node`, if they do.
    fn refusal(&self, graph: &Graph, node: &shadowattn_hal::Node) -> Option<String> {
        let limits = &self.profile.limits;
        let input = |i: usize| &graph.value(node.inputs[i]).desc;
        let output = &graph.value(node.outputs[0]).desc;
        let float = |values: &[shadowattn_hal::ValueId]| {
            values.iter().any(|&v| graph.value(v).desc.dtype.is_float())
        };
        let f32_moved = moves_data(node.op.kind())
            && node
                .inputs
                .iter()
                .chain(&node.outputs)
                .all(|&v| graph.value(v).desc.dtype == DType::F32);
        if !limits.float_ops && float(&node.inputs) && float(&node.outputs) && !f32_moved {
            return Some(
                "this NPU runs no op from float to float tensors (it has no FP16 unit)".into(),
            );
        }
        match node.op {
            Op::MatMul { .. }
                if !limits.int32_matmul_output
                    && input(0).dtype.is_integer()
                    && output.dtype == DType::I32 =>
            {
                Some("this NPU has no INT32 MatMul output: integer MatMuls requantize to 8 or 16 bits".into())
            }
            Op::Requantize if !limits.requantize_from_int32 && input(0).dtype == DType::I32 => {
                Some("this NPU does not requantize from an INT32 tensor".into())
            }
            Op::Softmax { axis, .. } if !limits.softmax_any_axis && axis + 1 != input(0).rank() => {
                Some(format!(
                    "over axis {axis} of a rank-{} tensor: this NPU runs Softmax over the last axis only",
                    input(0).rank()
                ))
            }
            _ => None,
        }
    }
}

const FORMAT: &str = "shadowattn-sim-graph";
/// 2: the graph in its binary form after a JSON header line (1 was all JSON, constants as hex).
const FORMAT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct SerializedGraph {
    format: String,
    version: u32,
    soc: String,
}

impl NpuBackend for SimBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> String {
        format!("{} ({})", env!("CARGO_PKG_VERSION"), self.profile.npu_arch)
    }

    fn capabilities(&self) -> Capabilities {
        (*self.capabilities).clone()
    }

    fn check_support(&self, graph: &Graph) -> shadowattn_hal::Result<()> {
        for node in graph.nodes() {
            if let Some(why) = self.refusal(graph, node) {
                return Err(HalError::Unsupported {
                    backend: self.name.clone(),
                    node: node.name.clone(),
                    op: node.op.kind().to_string(),
                    detail: format!("{why} ({})", self.profile.limits.source),
                });
            }
        }
        self.capabilities.check(&self.name, graph)
    }

    fn compile(&self, graph: &Graph) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        self.check_support(graph)?;
        graph.validate()?;
        let cost = self.cost(graph);
        let event = ProfileEvent {
            name: format!("compile {}", graph.name()),
            kind: EventKind::Compile,
            track: track::COMPILE.into(),
            start_ns: self.now_ns(),
            duration_ns: cost.compile_ns.round() as u64,
            cycles: None,
            source: FigureSource::Simulated,
        };
        Ok(Box::new(SimGraph::new(
            graph.clone(),
            vec![event],
            SimProgram {
                cost,
                launches: 0,
                computation: crate::npu::functional::Computation::of(graph, &self.profile.numerics),
                backend: self.clone(),
            },
        )))
    }

    fn deserialize(&self, bytes: &[u8]) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        let bad = |detail: String| HalError::Deserialize {
            backend: self.name.clone(),
            detail,
        };
        let (file, graph): (SerializedGraph, _) = shadowattn_hal::ir::binary::header_of(bytes)
            .map_err(|e| bad(format!("not a serialized simulator graph: {e}")))?;
        if file.format != FORMAT || file.version != FORMAT_VERSION {
            return Err(bad(format!(
                "format `{}` version {} is not `{FORMAT}` version {FORMAT_VERSION}",
                file.format, file.version
            )));
        }
        if file.soc != self.profile.name {
            return Err(bad(format!(
                "compiled for SoC `{}`, not `{}`; compiled graphs are SoC specific",
                file.soc, self.profile.name
            )));
        }
        self.compile(&graph.graph()?)
    }
}

/// A graph compiled for the simulator.
pub type SimGraph = Compiled<SimProgram>;

/// What the simulator keeps of a compiled graph: its modelled cost and launch count.
#[derive(Debug)]
pub struct SimProgram {
    cost: GraphCost,
    launches: u64,
    computation: crate::npu::functional::Computation,
    backend: SimBackend,
}

impl SimProgram {
    /// The modelled cost of one execution.
    pub fn cost(&self) -> &GraphCost {
        &self.cost
    }
}

fn ns(x: f64) -> u64 {
    x.max(0.0).round() as u64
}

/// Events of one launch starting at `t0` (ns) with the given cost.
pub fn launch_events(name: &str, cost: &GraphCost, cold: bool, t0: u64) -> Vec<ProfileEvent> {
    let overhead = if cold {
        cost.launch_cold_ns
    } else {
        cost.launch_warm_ns
    };
    let ev = |name: String, kind, track: &str, start: f64, dur: f64, cycles| ProfileEvent {
        name,
        kind,
        track: track.to_string(),
        start_ns: t0 + ns(start),
        duration_ns: ns(dur).max(1),
        cycles,
        source: FigureSource::Simulated,
    };
    let to_ns = |cycles: f64| cycles / cost.clock_hz * 1e9;
    let mut events = vec![ev(
        name.to_string(),
        EventKind::Launch,
        track::NPU,
        0.0,
        cost.launch_ns(cold),
        Some(cost.accelerator_cycles.round() as u64),
    )];
    events.push(ev(
        format!("host io {} B", cost.host_io_bytes),
        EventKind::Transfer,
        track::HOST_IO,
        overhead,
        cost.host_io_ns,
        None,
    ));
    let mut t = overhead + cost.host_io_ns + to_ns(cost.fixed_cycles);
    for node in &cost.nodes {
        let dur = to_ns(node.cycles);
        if node.dma_bytes > 0 {
            events.push(ev(
                format!("dma {} ({} B)", node.node, node.dma_bytes),
                EventKind::Transfer,
                track::DMA,
                t,
                dur,
                None,
            ));
        }
        let track = match node.unit {
            Unit::Matrix => Some(track::MATRIX),
            Unit::Vector => Some(track::VECTOR),
            Unit::None => None,
        };
        if let Some(track) = track {
            events.push(ev(
                format!("{} ({})", node.node, node.op),
                EventKind::ComputeStage,
                track,
                t,
                to_ns(node.compute_cycles).min(dur),
                Some(node.compute_cycles.round() as u64),
            ));
        }
        t += dur;
    }
    events
}

impl GraphExecutable for SimProgram {
    fn run(
        &mut self,
        graph: &Graph,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> shadowattn_hal::Result<Vec<ProfileEvent>> {
        if self.backend.mode == ExecutionMode::Functional {
            self.computation.execute(graph, inputs, outputs)?;
        }
        let cold = self.launches == 0;
        self.launches += 1;
        let duration = ns(self.cost.launch_ns(cold));
        let t0 = self.backend.clock_ns.fetch_add(duration, Ordering::SeqCst);
        Ok(launch_events(graph.name(), &self.cost, cold, t0))
    }

    fn serialize(&self, graph: &Graph) -> shadowattn_hal::Result<Vec<u8>> {
        let header = SerializedGraph {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            soc: self.backend.profile.name.clone(),
        };
        Ok(shadowattn_hal::ir::binary::with_header(&header, graph))
    }
}
