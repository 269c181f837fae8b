//! The fits of the launch paths to published figures.
//!
//! The NPU's own parameters are fitted to Qualcomm's cost model by `shadowattn soc fit`
//! ([`crate::fit::vendor`]). What no cost model gives is the host side of a launch: the paper's
//! **Snapdragon 8 Gen 3 (V75) measurement** — a Q×K graph with Q = `[1,H,128,64]`,
//! K = `[1,H,2048,64]` takes 2 / 3 / 4 ms for H = 1 / 2 / 4 fused heads — fits
//! `npu.launch_warm_us` and `npu.host_io_gbps`, the launch time modelled as
//! `warm overhead + host-I/O bytes / host_io_gbps + accelerator time`, the accelerator time from
//! the profile; the graph is the INT8 pilot with INT8 output (HTP has no INT32 MatMul output).
//! Three figures for two parameters: a plausibility check of the launch model, not a
//! validation (the same figures made it).
//!
//! This is the `qnn-copy` path (a QNN graph with client buffers). The `fastrpc` path is fitted
//! the same way to a different measurement: FastRPC no-compute round trips with cached rpcmem
//! buffers on a V81 device, 141 / 321 / 787 µs at 128 B / 1 MiB / 12.45 MB
//! ([`FASTRPC_ROUND_TRIPS_US`]); its slope is also the `qnn-shared` path's per-byte rate.
//!
//! Each fit is a weighted least-squares line (weights 1/measured², i.e. relative error).

use crate::npu::cost::graph_cost_via;
use crate::npu::graphs::int8_pilot_graph;
use crate::npu::launch::LaunchPath;
use crate::npu::profile::{real, SocProfile};

/// The paper's 8 Gen 3 measurements: (fused heads, ms).
pub const SD8GEN3_PAPER_MS: [(usize, f64); 3] = [(1, 2.0), (2, 3.0), (4, 4.0)];

/// FastRPC no-compute round trips with cached rpcmem buffers (V81 device, third-party):
/// (bytes, µs).
pub const FASTRPC_ROUND_TRIPS_US: [(f64, f64); 3] =
    [(128.0, 141.0), (1_048_576.0, 321.0), (12_450_000.0, 787.0)];

/// Fits `(fixed_us, host_gbps)` of the `fastrpc` path to [`FASTRPC_ROUND_TRIPS_US`].
pub fn fit_fastrpc() -> (f64, f64) {
    let (xs, ys): (Vec<f64>, Vec<f64>) = FASTRPC_ROUND_TRIPS_US.iter().copied().unzip();
    let (fixed_us, us_per_byte) = fit_line_relative(&xs, &ys);
    (fixed_us, 1e-3 / us_per_byte)
}

/// One fit point: the published figure and the model's prediction.
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

/// Fits the `qnn-copy` path's `(fixed_us, host_gbps)` to the paper's 8 Gen 3 figures.
pub fn fit_sd8gen3(profile: &SocProfile) -> (f64, f64) {
    let (xs, ys): (Vec<f64>, Vec<f64>) = SD8GEN3_PAPER_MS
        .iter()
        .map(|&(h, ms)| {
            let c = graph_cost_via(
                profile,
                &int8_pilot_graph(h, 128, 2048, 64),
                LaunchPath::QnnCopy,
            );
            (c.host_io_bytes as f64, ms * 1e6 - c.accelerator_ns())
        })
        .unzip();
    let (warm_ns, ns_per_byte) = fit_line_relative(&xs, &ys);
    (warm_ns / 1e3, 1.0 / ns_per_byte)
}

/// Predicted vs published figures of the 8 Gen 3 launches.
pub fn fit_points() -> Vec<FitPoint> {
    let g3 = SocProfile::builtin("snapdragon-8-gen-3").expect("built-in profile");
    SD8GEN3_PAPER_MS
        .iter()
        .map(|&(h, ms)| FitPoint {
            label: format!("snapdragon-8-gen-3 INT8 QxK, {h} fused head(s)"),
            reference: ms,
            predicted: graph_cost_via(
                &g3,
                &int8_pilot_graph(h, 128, 2048, 64),
                LaunchPath::QnnCopy,
            )
            .launch_ns(false)
                / 1e6,
            unit: "ms",
        })
        .collect()
}

/// The launch fit as text: the fitted parameters beside the profile's, and each figure.
pub fn fit_report() -> String {
    let g3 = SocProfile::builtin("snapdragon-8-gen-3").expect("built-in profile");
    let (warm, host) = fit_sd8gen3(&g3);
    let copy = g3.npu.launch.costs(LaunchPath::QnnCopy);
    let fast = g3.npu.launch.costs(LaunchPath::Fastrpc);
    let (fast_us, fast_gbps) = fit_fastrpc();
    let mut s = format!(
        "fit snapdragon-8-gen-3 qnn-copy: fixed_us = {warm:.1} (profile {}), host_gbps = {host:.4} (profile {})\n\
         fit fastrpc: fixed_us = {fast_us:.1} (profile {}), host_gbps = {fast_gbps:.2} (profile {})\n",
        real(&copy.fixed_us),
        real(&copy.host_gbps),
        real(&fast.fixed_us),
        real(&fast.host_gbps)
    );
    s.push_str("| figure | reference | predicted | error |\n|---|---|---|---|\n");
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
