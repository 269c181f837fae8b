//! The tile-level cost model of one NPU graph execution.
//!
//! - **Layout**: tensors occupy the elements of the profile's on-chip layout
//!   ([`crate::npu::layout`]): on HTP, rows fold into crouton blocks (a row count that is not a
//!   multiple of 8 is padded eightfold) and channels round up to 32. Every per-element cost
//!   below counts laid-out elements, and MatMul tiles cover the laid-out rows and depths.
//! - **MatMul** runs on the matrix unit, cut into tiles of the profile's shape per dtype
//!   (i8/u8 → the INT8 tile, f16/f32 → the FP16 tile; f32 runs at FP16 rate, as on HTP). Padding a
//!   dimension up to the tile costs a whole tile, as on hardware. A narrow quantized output adds
//!   `requantized_output_cycles_per_element` per output element (read-out and requantization).
//! - **Softmax, Requantize, Quantize, Dequantize, Mul, Add, Cast, Transpose, TopK** run on the
//!   vector units: `node_fixed_cycles + elements · ops_per_element / (units · lanes)`, lanes =
//!   vector bytes / element bytes.
//! - **Reshape** is free (a view).
//! - **Data movement**: graph inputs start in DDR and graph outputs end there; an intermediate
//!   stays on chip when it fits in the usable on-chip memory, else it is spilled and filled. DMA
//!   is double buffered and overlaps compute, so a node takes `max(compute, dma_bytes / rate)`.
//!   A MatMul whose laid-out working set (A, B and its output) exceeds the usable on-chip memory
//!   spills the excess to DDR and fills it back (QNN reports such "intermediate spill/fill").
//!   Every MatMul node also pays its tile path's `node_fixed_cycles`, and an operand read
//!   transposed that is not a constant is transposed on the vector units first
//!   (`transpose_cycles_per_element`).
//! - **Graph I/O conversion**: every graph input is converted on the vector units from the
//!   host's flat layout to the NPU's tiled one (`input_cycles_per_element`), every output back
//!   (`output_cycles_per_element`); an input larger than the usable on-chip memory is converted
//!   through DDR (written and read once more). Constants (STATIC tensors) are laid out when the
//!   graph is compiled: they cost only their DMA, and an NPU computing f32 as f16 stores f32
//!   constants as f16.
//! - **Launch**: every execution pays `fixed_cycles` on the NPU, moves its inputs and outputs
//!   between host and NPU at its launch path's rate, and pays the path's host↔NPU overhead (cold
//!   on the first launch of a graph; [`crate::npu::launch`]). A fused launch (several heads in
//!   one graph) pays these once.

use crate::npu::launch::LaunchPath;
use crate::npu::profile::{count, real, SocProfile, TileProfile};
use shadowattn_hal::{DType, Graph, Node, Op, OpKind, TensorDesc, ValueId};

/// The engine a node runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// The matrix unit (HMX, MDLA).
    Matrix,
    /// The vector units (HVX, MVPU).
    Vector,
    /// Nothing (a view).
    None,
}

/// The modelled cost of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeCost {
    /// Elements of the node's first output.
    pub output_elements: u64,
    /// Node name.
    pub node: String,
    /// Op kind.
    pub op: OpKind,
    /// Engine.
    pub unit: Unit,
    /// Matrix tiles issued (0 for vector ops).
    pub tiles: u64,
    /// Compute cycles on the unit (including a fused requantize pass).
    pub compute_cycles: f64,
    /// Bytes moved between DDR and on-chip memory.
    pub dma_bytes: u64,
    /// Cycles of the node: compute and DMA overlapped.
    pub cycles: f64,
}

/// The modelled cost of one execution of a graph.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphCost {
    /// Per node, in execution order.
    pub nodes: Vec<NodeCost>,
    /// Fixed accelerator cycles per execution.
    pub fixed_cycles: f64,
    /// Cycles converting graph inputs and outputs between the host's and the NPU's layouts.
    pub io_conversion_cycles: f64,
    /// Accelerator cycles: fixed, I/O conversion and every node.
    pub accelerator_cycles: f64,
    /// How the host drives the launch.
    pub path: LaunchPath,
    /// Bytes of graph inputs and outputs moved between host and NPU.
    pub host_io_bytes: u64,
    /// Nanoseconds of that host I/O.
    pub host_io_ns: f64,
    /// Host↔NPU overhead of a warm launch, ns.
    pub launch_warm_ns: f64,
    /// Host↔NPU overhead of a cold launch, ns.
    pub launch_cold_ns: f64,
    /// Simulated compile time, ns.
    pub compile_ns: f64,
    /// NPU clock, Hz.
    pub clock_hz: f64,
}

impl GraphCost {
    /// Accelerator time in ns.
    pub fn accelerator_ns(&self) -> f64 {
        self.accelerator_cycles / self.clock_hz * 1e9
    }

    /// Wall time of one launch in ns, warm or cold.
    pub fn launch_ns(&self, cold: bool) -> f64 {
        let overhead = if cold {
            self.launch_cold_ns
        } else {
            self.launch_warm_ns
        };
        overhead + self.host_io_ns + self.accelerator_ns()
    }

    /// Total DMA bytes of all nodes.
    pub fn dma_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.dma_bytes).sum()
    }
}

/// Bytes of one element of `dtype` as the NPU computes it (f32 as f16 where it does so).
fn compute_bytes(profile: &SocProfile, dtype: DType) -> usize {
    if dtype == DType::F32 && profile.numerics.f32_as_f16 {
        2
    } else {
        dtype.size_bytes()
    }
}

/// Elements `desc` occupies in the profile's on-chip layout.
fn laid_out(profile: &SocProfile, desc: &TensorDesc) -> usize {
    profile.layout().elements(&desc.shape)
}

fn vector_cycles(profile: &SocProfile, elements: usize, elem_bytes: usize, ops: f64) -> f64 {
    let v = &profile.npu.vector;
    let lanes = (count(&v.width_bits) / 8) as f64 / elem_bytes.max(1) as f64;
    elements as f64 * ops / (count(&v.units) as f64 * lanes)
}

fn tiles(tile: &TileProfile, batches: usize, m: usize, n: usize, k: usize) -> u64 {
    let t = |d: usize, s: u64| (d as u64).div_ceil(s);
    batches as u64 * t(m, count(&tile.m)) * t(n, count(&tile.n)) * t(k, count(&tile.k))
}

/// Cycles of converting `graph`'s inputs and outputs between the host's flat layout and the
/// NPU's: vector work per element, or for an input over the usable on-chip memory, the round trip
/// of its converted copy through DDR when that takes longer.
fn io_conversion_cycles(profile: &SocProfile, graph: &Graph) -> f64 {
    let npu = &profile.npu;
    let usable = profile.usable_onchip_bytes();
    let dma_rate = real(&npu.dma_bytes_per_cycle);
    let inputs: f64 = graph
        .input_descs()
        .map(|d| {
            let b = d.size_bytes() as u64;
            let convert = laid_out(profile, d) as f64 * real(&npu.input_cycles_per_element);
            let spill = if b > usable { 2 * b } else { 0 };
            convert.max(spill as f64 / dma_rate)
        })
        .sum();
    let outputs: f64 = graph
        .output_descs()
        .map(|d| laid_out(profile, d) as f64 * real(&npu.output_cycles_per_element))
        .sum();
    inputs + outputs
}

/// Models one execution of `graph` on `profile`, launched on the profile's graph path.
pub fn graph_cost(profile: &SocProfile, graph: &Graph) -> GraphCost {
    graph_cost_via(profile, graph, profile.graph_path())
}

/// Models one execution of `graph` on `profile`, launched on `path`.
pub fn graph_cost_via(profile: &SocProfile, graph: &Graph, path: LaunchPath) -> GraphCost {
    let npu = &profile.npu;
    let mut residency = Residency::new(profile, graph);
    let nodes: Vec<NodeCost> = graph
        .nodes()
        .iter()
        .map(|node| node_cost(profile, graph, node, &mut residency))
        .collect();
    let fixed = real(&npu.fixed_cycles);
    let host_io_bytes: u64 = graph
        .input_descs()
        .chain(graph.output_descs())
        .map(|d| d.size_bytes() as u64)
        .sum();
    let io_conversion = io_conversion_cycles(profile, graph);
    GraphCost {
        accelerator_cycles: fixed + io_conversion + nodes.iter().map(|n| n.cycles).sum::<f64>(),
        nodes,
        fixed_cycles: fixed,
        io_conversion_cycles: io_conversion,
        path,
        host_io_bytes,
        host_io_ns: npu.launch.io_ns(path, host_io_bytes),
        launch_warm_ns: npu.launch.warm_ns(path),
        launch_cold_ns: npu.launch.cold_ns(path),
        compile_ns: (real(&npu.compile_base_ms)
            + real(&npu.compile_per_node_ms) * graph.nodes().len() as f64)
            * 1e6,
        clock_hz: profile.npu_hz(),
    }
}

/// Which values of a graph have a copy on chip as its nodes run in order.
struct Residency<'g> {
    graph: &'g Graph,
    usable: u64,
    f32_as_f16: bool,
    on_chip: Vec<bool>,
}

impl<'g> Residency<'g> {
    /// Nothing on chip yet.
    fn new(profile: &SocProfile, graph: &'g Graph) -> Self {
        Residency {
            graph,
            usable: profile.usable_onchip_bytes(),
            f32_as_f16: profile.numerics.f32_as_f16,
            on_chip: vec![false; graph.values().len()],
        }
    }

    /// Bytes of a value in DDR: constants of an NPU computing f32 as f16 are stored as f16.
    fn stored(&self, v: ValueId) -> u64 {
        let d = &self.graph.value(v).desc;
        let b = d.size_bytes() as u64;
        if self.f32_as_f16 && d.dtype == DType::F32 && self.graph.constant(v).is_some() {
            b / 2
        } else {
            b
        }
    }

    /// The DMA bytes of `node`: inputs not on chip read, outputs that do not fit (or leave the
    /// graph) written; what fits stays on chip.
    fn traffic(&mut self, node: &Node) -> u64 {
        let mut dma: u64 = 0;
        for &v in &node.inputs {
            if !self.on_chip[v.index()] {
                let b = self.stored(v);
                dma += b;
                self.on_chip[v.index()] = b <= self.usable;
            }
        }
        for &v in &node.outputs {
            let b = self.graph.value(v).desc.size_bytes() as u64;
            let fits = b <= self.usable;
            if !fits || self.graph.outputs().contains(&v) {
                dma += b;
            }
            self.on_chip[v.index()] = fits;
        }
        dma
    }
}

/// The cost of one node, its DMA from `residency`.
fn node_cost(
    profile: &SocProfile,
    graph: &Graph,
    node: &Node,
    residency: &mut Residency<'_>,
) -> NodeCost {
    let npu = &profile.npu;
    let ins: Vec<&TensorDesc> = node.inputs.iter().map(|&v| &graph.value(v).desc).collect();
    let out = &graph.value(node.outputs[0]).desc;
    let mut dma = residency.traffic(node);
    let elem_bytes = ins
        .iter()
        .map(|d| d.dtype.size_bytes())
        .chain([out.dtype.size_bytes()])
        .max()
        .unwrap_or(1);
    let elements = laid_out(profile, out).max(laid_out(profile, ins[0]));
    let vec_ops = |ops: f64| vector_cycles(profile, elements, elem_bytes, ops);
    let v = &npu.vector;
    let (unit, tile_count, compute) = match &node.op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            let (t, cycles, reread) = matmul_cycles(
                profile,
                graph,
                node,
                (*transpose_a, *transpose_b),
                residency.usable,
            );
            dma += reread;
            (Unit::Matrix, t, cycles)
        }
        Op::Softmax { .. } => (Unit::Vector, 0, vec_ops(real(&v.softmax_ops))),
        Op::Requantize | Op::Quantize | Op::Dequantize { .. } => {
            (Unit::Vector, 0, vec_ops(real(&v.requantize_ops)))
        }
        Op::Mul | Op::Add | Op::Cast { .. } | Op::Transpose { .. } => {
            (Unit::Vector, 0, vec_ops(real(&v.elementwise_ops)))
        }
        Op::TopK { k } => {
            let per = real(&v.topk_ops) * (*k as f64).log2().max(1.0);
            (
                Unit::Vector,
                0,
                vector_cycles(profile, laid_out(profile, ins[0]), elem_bytes, per),
            )
        }
        Op::Reshape { .. } => (Unit::None, 0, 0.0),
    };
    let setup = if unit == Unit::Vector {
        real(&v.node_fixed_cycles)
    } else {
        0.0
    };
    let cycles = setup + compute.max(dma as f64 / real(&npu.dma_bytes_per_cycle));
    NodeCost {
        output_elements: out.numel() as u64,
        node: node.name.clone(),
        op: node.op.kind(),
        unit,
        tiles: tile_count,
        compute_cycles: compute,
        dma_bytes: dma,
        cycles,
    }
}

/// The most keys (`n`) at which HTP's compiler relayouts the heads of a fused INT8 MatMul with
/// dynamic keys as rows (QNN's `non-free ForceFormat crouton->crouton`), and the fewest bytes
/// of one head's keys: on socModel 52 the relayout appears for key counts that are multiples
/// of 8 from 48,000 B (80 × 600) to 1,024 keys, and not at 38,400 B (128 × 300) or 32,768 B
/// (64 × 512), past 1,024 keys, or at key counts that are not multiples of 8
/// (`simulator/socs/qnn/RULES.md` §6).
const RELAYOUT_MAX_KEYS: usize = 1024;
/// See [`RELAYOUT_MAX_KEYS`]: 40 KiB lies between the largest head without a relayout and the
/// smallest with one.
const RELAYOUT_MIN_HEAD_BYTES: usize = 40 << 10;

/// Whether `node`, a MatMul of `batches` heads, `n` output columns and depth `k`, is a fused
/// INT8 MatMul with dynamic keys as rows whose heads HTP's compiler relayouts.
fn relayouts_between_heads(
    graph: &Graph,
    node: &Node,
    batches: usize,
    (n, k): (usize, usize),
) -> bool {
    let Op::MatMul { transpose_b, .. } = node.op else {
        return false;
    };
    let keys = &graph.value(node.inputs[1]).desc;
    batches >= 2
        && transpose_b
        && keys.dtype.is_integer()
        && graph.constant(node.inputs[1]).is_none()
        && n.is_multiple_of(8)
        && n <= RELAYOUT_MAX_KEYS
        && n * k * keys.dtype.size_bytes() >= RELAYOUT_MIN_HEAD_BYTES
}

/// A MatMul on the matrix unit: its tiles over the laid-out rows and depths, its cycles (tiles,
/// transposes of non-constant operands on the vector units, requantized output) and the DMA
/// bytes of spilling and filling what of its laid-out working set exceeds `usable` bytes.
fn matmul_cycles(
    profile: &SocProfile,
    graph: &Graph,
    node: &Node,
    (transpose_a, transpose_b): (bool, bool),
    usable: u64,
) -> (u64, f64, u64) {
    let npu = &profile.npu;
    let layout = profile.layout();
    let a = &graph.value(node.inputs[0]).desc;
    let out = &graph.value(node.outputs[0]).desc;
    let r = a.rank();
    let batches: usize = out.shape[..r - 2].iter().product();
    let (m, n) = (out.shape[r - 2], out.shape[r - 1]);
    let k = if transpose_a {
        a.shape[r - 2]
    } else {
        a.shape[r - 1]
    };
    let tile = if a.dtype.is_integer() {
        &npu.matrix.int8
    } else {
        &npu.matrix.fp16
    };
    let elem = compute_bytes(profile, a.dtype);
    let t = tiles(
        tile,
        batches,
        layout.rows(m, elem),
        layout.channels(n),
        layout.channels(k),
    );
    let mut cycles = real(&tile.node_fixed_cycles) + t as f64 * real(&tile.cycles_per_tile);
    // Operands read transposed are transposed on the vector units, unless constant.
    for (operand, transposed) in [(0, transpose_a), (1, transpose_b)] {
        if transposed && graph.constant(node.inputs[operand]).is_none() {
            let desc = &graph.value(node.inputs[operand]).desc;
            cycles +=
                laid_out(profile, desc) as f64 * real(&npu.vector.transpose_cycles_per_element);
        }
    }
    if relayouts_between_heads(graph, node, batches, (n, k)) {
        cycles += npu.matrix.fused_relayout_cycles.as_ref().map_or(0.0, real);
    }
    if out.dtype.is_integer() && out.dtype != DType::I32 {
        // Read out per laid-out output row: unfolded rows pay their padding here.
        let rows = layout.rows(m, out.dtype.size_bytes());
        let elements = batches * rows * layout.channels(n);
        cycles += elements as f64 * real(&npu.matrix.requantized_output_cycles_per_element);
    }
    // The working set as laid out on chip; what exceeds the usable memory is spilled and
    // filled back. Constants stream from DDR once (their read is the node's DMA) and do not
    // count.
    let working: u64 = [node.inputs[0], node.inputs[1], node.outputs[0]]
        .into_iter()
        .filter(|&v| graph.constant(v).is_none())
        .map(|v| {
            let d = &graph.value(v).desc;
            (laid_out(profile, d) * compute_bytes(profile, d.dtype)) as u64
        })
        .sum();
    (t, cycles, 2 * working.saturating_sub(usable))
}
