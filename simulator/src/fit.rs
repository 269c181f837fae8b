//! The fit of the cost model to published figures (its free physical parameters).
//!
//! Three anchors:
//! 1. **Qualcomm's cost model, socModel 52 (SA8255, V73), FP16**: MatMul `[1,1,64,K]·[1,1,K,512]`
//!    then Softmax, estimated at 48,002 / 63,290 / 119,617 / 450,696 accelerator cycles for
//!    K = 128 / 256 / 1024 / 4096. These graphs are DMA bound in the model; fitted: the sum
//!    `fixed_cycles + node_fixed_cycles` (one vector node) and `dma_bytes_per_cycle`.
//! 2. **Qualcomm's cost model, socModel 52, the INT8 pilot** (Q·Kᵀ requantized to INT8, the form
//!    HTP builds; q 128, d 64), estimated at 28,533 / 95,441 / 180,726 / 264,956 / 605,066
//!    cycles for (heads, keys) = (1, 512), (1, 2048), (2, 2048), (4, 2048), (4, 4096) — read with
//!    `shadowattn qnn-estimates --soc-model 52` on the emulator. These graphs are bound by
//!    producing the requantized output; fitted: `fixed_cycles` and
//!    `requantized_output_cycles_per_element`. Together with anchor 1 this gives
//!    `node_fixed_cycles`.
//! 3. **The paper's Snapdragon 8 Gen 3 (V75) measurement**: a Q×K graph with Q = `[1,H,128,64]`,
//!    K = `[1,H,2048,64]` takes 2 / 3 / 4 ms for H = 1 / 2 / 4 fused heads. Fitted:
//!    `npu.launch_warm_us` and `npu.host_io_gbps`, with the launch time modelled as
//!    `warm overhead + host-I/O bytes / host_io_gbps + accelerator time`, the accelerator time
//!    from the profile; the graph is taken as the INT8 pilot with INT8 output (HTP has no INT32
//!    MatMul output).
//!
//! Each fit is a weighted least-squares line (weights 1/measured², i.e. relative error) in the
//! model's linear parameters, the binding branch of each node's `max(compute, dma)` checked after
//! the fit and the fit repeated with compute-bound nodes moved to the constant side.

use crate::cost::graph_cost;
use crate::profile::{real, SocProfile};
use shadowattn_hal::{DType, Graph, GraphBuilder, OutType, QuantParams, Quantization, TensorDesc};

/// QNN's cost-model estimates for socModel 52: (K, accelerator cycles).
pub const SA8255_QNN_ESTIMATES: [(usize, f64); 4] = [
    (128, 48_002.0),
    (256, 63_290.0),
    (1024, 119_617.0),
    (4096, 450_696.0),
];

/// QNN's cost-model estimates of the INT8 pilot for socModel 52: (heads, keys, cycles), q 128, d 64.
pub const SA8255_QNN_PILOT_ESTIMATES: [(usize, usize, f64); 5] = [
    (1, 512, 28_533.0),
    (1, 2048, 95_441.0),
    (2, 2048, 180_726.0),
    (4, 2048, 264_956.0),
    (4, 4096, 605_066.0),
];

/// The paper's 8 Gen 3 measurements: (fused heads, ms).
pub const SD8GEN3_PAPER_MS: [(usize, f64); 3] = [(1, 2.0), (2, 3.0), (4, 4.0)];

/// The SA8255 anchor graph: FP16 MatMul `[1,1,64,K]·[1,1,K,512]` then Softmax on the last axis.
pub fn matmul_softmax_graph(k: usize) -> Graph {
    let mut b = GraphBuilder::new(format!("matmul_softmax_k{k}"));
    let a = b
        .input("in0", TensorDesc::new(DType::F16, [1, 1, 64, k]))
        .expect("valid");
    let w = b
        .input("in1", TensorDesc::new(DType::F16, [1, 1, k, 512]))
        .expect("valid");
    let mm = b
        .matmul("matmul0", a, w, false, false, OutType::plain(DType::F16))
        .expect("valid");
    let sm = b.softmax("softmax0", mm, 3, 1.0).expect("valid");
    b.output(sm).expect("valid");
    b.build().expect("valid")
}

/// The INT8 pilot as HTP builds it: Q×Kᵀ of `heads` fused heads, requantized to INT8.
pub fn int8_pilot_graph(heads: usize, q_len: usize, kv_len: usize, head_dim: usize) -> Graph {
    let mut b = GraphBuilder::new(format!("pilot_h{heads}_q{q_len}_k{kv_len}_d{head_dim}"));
    let desc = |rows: usize| {
        TensorDesc::new(DType::I8, [1, heads, rows, head_dim])
            .with_quant(Quantization::per_tensor(0.05, 0))
    };
    let q = b.input("q", desc(q_len)).expect("valid");
    let k = b.input("k", desc(kv_len)).expect("valid");
    let out = OutType::quantized(DType::I8, QuantParams::symmetric(0.5));
    let s = b.matmul("scores", q, k, false, true, out).expect("valid");
    b.output(s).expect("valid");
    b.build().expect("valid")
}

/// One calibration point: the figure and the model's prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct FitPoint {
    /// What was measured.
    pub label: String,
    /// The published figure.
    pub reference: f64,
    /// The model's prediction.
    pub predicted: f64,
    /// Unit of both.
    pub unit: &'static str,
}

impl FitPoint {
    /// Signed relative error of the prediction.
    pub fn relative_error(&self) -> f64 {
        (self.predicted - self.reference) / self.reference
    }
}

/// Weighted least squares for `y = a + b·x` with weights `1/y²`; returns (a, b).
pub fn fit_line_relative(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    let w: Vec<f64> = ys.iter().map(|y| 1.0 / (y * y)).collect();
    let s: f64 = w.iter().sum();
    let sx: f64 = w.iter().zip(xs).map(|(w, x)| w * x).sum();
    let sy: f64 = w.iter().zip(ys).map(|(w, y)| w * y).sum();
    let sxx: f64 = w.iter().zip(xs).map(|(w, x)| w * x * x).sum();
    let sxy: f64 = w.iter().zip(xs).zip(ys).map(|((w, x), y)| w * x * y).sum();
    let b = (s * sxy - sx * sy) / (s * sxx - sx * sx);
    ((sy - b * sx) / s, b)
}

/// The SA8255 fit of the accelerator's free parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sa8255Fit {
    /// `npu.fixed_cycles`.
    pub fixed_cycles: f64,
    /// `npu.vector.node_fixed_cycles`.
    pub node_fixed_cycles: f64,
    /// `npu.dma_bytes_per_cycle`.
    pub dma_bytes_per_cycle: f64,
    /// `npu.matrix.requantized_output_cycles_per_element`.
    pub requantized_output_cycles_per_element: f64,
}

/// Fits `(intercept, cycles per byte)` of DMA-bound graphs, moving compute-bound nodes' compute
/// cycles to the constant side until stable.
fn fit_dma_bound(costs: &[crate::cost::GraphCost], ys: &[f64]) -> (f64, f64) {
    let mut compute_bound = vec![vec![false; costs[0].nodes.len()]; costs.len()];
    let mut fit = (0.0, 1.0);
    for _ in 0..8 {
        let (xs, adj): (Vec<f64>, Vec<f64>) = costs
            .iter()
            .zip(&compute_bound)
            .map(|(c, cb)| {
                c.nodes
                    .iter()
                    .zip(cb)
                    .fold((0.0, 0.0), |(dma, constant), (n, &is_cb)| {
                        if is_cb {
                            (dma, constant + n.compute_cycles)
                        } else {
                            (dma + n.dma_bytes as f64, constant)
                        }
                    })
            })
            .unzip();
        let y_adj: Vec<f64> = ys.iter().zip(&adj).map(|(y, a)| y - a).collect();
        fit = fit_line_relative(&xs, &y_adj);
        let next: Vec<Vec<bool>> = costs
            .iter()
            .map(|c| {
                c.nodes
                    .iter()
                    .map(|n| n.compute_cycles > n.dma_bytes as f64 * fit.1)
                    .collect()
            })
            .collect();
        if next == compute_bound {
            break;
        }
        compute_bound = next;
    }
    fit
}

/// Fits the accelerator parameters to QNN's SA8255 estimates (anchors 1 and 2).
pub fn fit_sa8255(profile: &SocProfile) -> Sa8255Fit {
    let fp16: Vec<_> = SA8255_QNN_ESTIMATES
        .iter()
        .map(|&(k, _)| graph_cost(profile, &matmul_softmax_graph(k)))
        .collect();
    let ys: Vec<f64> = SA8255_QNN_ESTIMATES.iter().map(|&(_, y)| y).collect();
    let (fixed_plus_node, cycles_per_byte) = fit_dma_bound(&fp16, &ys);
    // The pilot is bound by its requantized output: y − tiles·cpt = fixed + c·elements.
    let cpt = real(&profile.npu.matrix.int8.cycles_per_tile);
    let (xs, ys): (Vec<f64>, Vec<f64>) = SA8255_QNN_PILOT_ESTIMATES
        .iter()
        .map(|&(h, k, y)| {
            let c = graph_cost(profile, &int8_pilot_graph(h, 128, k, 64));
            (
                c.nodes[0].output_elements as f64,
                y - c.nodes[0].tiles as f64 * cpt,
            )
        })
        .unzip();
    let (fixed, per_element) = fit_line_relative(&xs, &ys);
    Sa8255Fit {
        fixed_cycles: fixed,
        node_fixed_cycles: fixed_plus_node - fixed,
        dma_bytes_per_cycle: 1.0 / cycles_per_byte,
        requantized_output_cycles_per_element: per_element,
    }
}

/// Fits `(launch_warm_us, host_io_gbps)` to the paper's 8 Gen 3 figures.
pub fn fit_sd8gen3(profile: &SocProfile) -> (f64, f64) {
    let (xs, ys): (Vec<f64>, Vec<f64>) = SD8GEN3_PAPER_MS
        .iter()
        .map(|&(h, ms)| {
            let c = graph_cost(profile, &int8_pilot_graph(h, 128, 2048, 64));
            (c.host_io_bytes as f64, ms * 1e6 - c.accelerator_ns())
        })
        .unzip();
    let (warm_ns, ns_per_byte) = fit_line_relative(&xs, &ys);
    (warm_ns / 1e3, 1.0 / ns_per_byte)
}

/// Predicted vs published figures for both anchors.
pub fn fit_points() -> Vec<FitPoint> {
    let sa = SocProfile::builtin("sa8255").expect("built-in profile");
    let g3 = SocProfile::builtin("snapdragon-8-gen-3").expect("built-in profile");
    let mut points: Vec<FitPoint> = SA8255_QNN_ESTIMATES
        .iter()
        .map(|&(k, cycles)| FitPoint {
            label: format!("sa8255 FP16 MatMul [64,{k}]x[{k},512] + Softmax"),
            reference: cycles,
            predicted: graph_cost(&sa, &matmul_softmax_graph(k)).accelerator_cycles,
            unit: "cycles",
        })
        .collect();
    points.extend(
        SA8255_QNN_PILOT_ESTIMATES
            .iter()
            .map(|&(h, k, cycles)| FitPoint {
                label: format!("sa8255 INT8 pilot {h} head(s), q128 k{k} d64"),
                reference: cycles,
                predicted: graph_cost(&sa, &int8_pilot_graph(h, 128, k, 64)).accelerator_cycles,
                unit: "cycles",
            }),
    );
    points.extend(SD8GEN3_PAPER_MS.iter().map(|&(h, ms)| FitPoint {
        label: format!("snapdragon-8-gen-3 INT8 QxK, {h} fused head(s)"),
        reference: ms,
        predicted: graph_cost(&g3, &int8_pilot_graph(h, 128, 2048, 64)).launch_ns(false) / 1e6,
        unit: "ms",
    }));
    points
}

/// The calibration table as text, with the fitted parameters.
pub fn fit_report() -> String {
    let sa = SocProfile::builtin("sa8255").expect("built-in profile");
    let g3 = SocProfile::builtin("snapdragon-8-gen-3").expect("built-in profile");
    let fit = fit_sa8255(&sa);
    let (warm, host) = fit_sd8gen3(&g3);
    let mut s = String::new();
    s.push_str(&format!(
        "fit sa8255: fixed_cycles = {:.0} (profile {}), node_fixed_cycles = {:.0} (profile {}), dma_bytes_per_cycle = {:.3} (profile {}), requantized_output_cycles_per_element = {:.4} (profile {})\n",
        fit.fixed_cycles,
        real(&sa.npu.fixed_cycles),
        fit.node_fixed_cycles,
        real(&sa.npu.vector.node_fixed_cycles),
        fit.dma_bytes_per_cycle,
        real(&sa.npu.dma_bytes_per_cycle),
        fit.requantized_output_cycles_per_element,
        real(&sa.npu.matrix.requantized_output_cycles_per_element),
    ));
    s.push_str(&format!(
        "fit snapdragon-8-gen-3: launch_warm_us = {warm:.1} (profile {}), host_io_gbps = {host:.4} (profile {})\n",
        real(&g3.npu.launch_warm_us),
        real(&g3.npu.host_io_gbps)
    ));
    s.push_str("| anchor | reference | predicted | error |\n|---|---|---|---|\n");
    for p in fit_points() {
        s.push_str(&format!(
            "| {} | {:.4} {u} | {:.4} {u} | {:+.1} % |\n",
            p.label,
            p.reference,
            p.predicted,
            p.relative_error() * 100.0,
            u = p.unit
        ));
    }
    s
}
