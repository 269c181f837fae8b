//! What `run` found, as a value, and its one printer: one `key: value` per line.

use super::simulated::SimulatedLayer;
use super::{Res, RunArgs};
use shadowattn_hal::{AttentionShape, ProfileEvent};
use shadowattn_pipeline::Plan;
use shadowattn_simulator::predict::timeline::write_chrome_trace;
use shadowattn_sparse_attn::metrics::AccuracyReport;
use shadowattn_sparse_attn::pilot::{GroupRanking, PilotUnit};

/// The graph bank.
pub(super) struct BankLine {
    /// Compiled graphs.
    pub graphs: usize,
    /// Scale buckets.
    pub buckets: usize,
    /// Fused-unit counts.
    pub fused: Vec<usize>,
    /// What a launch unit is.
    pub unit: PilotUnit,
    /// Wall time of the compilation here, ms.
    pub ms: f64,
}

/// The chunk's accuracy against dense attention.
pub(super) struct Accuracy {
    /// Fraction of valid keys kept.
    pub kept_fraction: f64,
    /// Mean and 5th percentile top-k recall.
    pub recall: (f64, f64),
    /// Attention mass kept, and the exact top-k's.
    pub mass: (f64, f64),
    /// Mean and 95th percentile relative L2 error.
    pub rel_l2: (f64, f64),
    /// Mean cosine similarity.
    pub cosine: f64,
}

impl Accuracy {
    /// The figures `run` prints.
    pub(super) fn of(r: &AccuracyReport) -> Self {
        Accuracy {
            kept_fraction: r.kept_fraction,
            recall: (r.recall_mean, r.recall_p5),
            mass: (r.mass_mean, r.oracle_mass_mean),
            rel_l2: (r.rel_l2_mean, r.rel_l2_p95),
            cosine: r.cosine_mean,
        }
    }
}

/// Times measured on this machine, ms.
pub(super) struct Timing {
    /// The whole chunk.
    pub chunk_ms: f64,
    /// Dense attention.
    pub dense_ms: f64,
    /// The CPU workers' busy time.
    pub stage_ms: f64,
}

/// Everything `run` reports.
pub(super) struct RunReport {
    /// The NPU backend, name and version.
    pub npu: String,
    /// The compute backend.
    pub compute: String,
    /// The compute backend's measured commands of the reported run.
    pub compute_events: Vec<ProfileEvent>,
    /// The chunk's shape.
    pub shape: AttentionShape,
    /// The graph bank.
    pub bank: BankLine,
    /// Units per launch.
    pub launch_sizes: Vec<usize>,
    /// How each unit's keys were spread over the rows.
    pub budget: String,
    /// Bytes the launches moved between host and NPU: (inputs, outputs).
    pub host_io: (u64, u64),
    /// Where the planner's prices came from.
    pub pricing: String,
    /// The plan.
    pub plan: Plan,
    /// Mean calibrated ratio.
    pub mean_ratio: f64,
    /// Accuracy against dense attention.
    pub accuracy: Accuracy,
    /// Why heads fell back to dense attention.
    pub fallback: Option<String>,
    /// Measured times.
    pub timing: Timing,
    /// The layer on the device model.
    pub simulated: Option<SimulatedLayer>,
    /// The layer on the device with its unmeasured numbers at each end (`fast`, `slow`).
    pub simulated_ends: Vec<(&'static str, SimulatedLayer)>,
}

impl RunReport {
    /// Writes the `--compute-trace` and `--trace` files; each is announced by [`Self::print`].
    pub(super) fn write_traces(&self, args: &RunArgs) -> Res<()> {
        if let Some(path) = &args.compute_trace {
            if self.compute_events.is_empty() {
                return Err(format!(
                    "--compute-trace: the compute backend `{}` records no events (use --compute opencl)",
                    self.compute
                )
                .into());
            }
            write_chrome_trace(path, &self.compute_events)
                .map_err(|e| format!("cannot write trace {}: {e}", path.display()))?;
        }
        if let (Some(path), Some(sim)) = (&args.trace, &self.simulated) {
            write_chrome_trace(path, &sim.trace)
                .map_err(|e| format!("cannot write trace {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Prints the report; `args` names the trace files written.
    pub(super) fn print(&self, args: &RunArgs) {
        if let Some(path) = &args.compute_trace {
            println!(
                "compute_trace: {} ({} measured events of {})",
                path.display(),
                self.compute_events.len(),
                self.compute
            );
        }
        self.print_chunk();
        if let Some(sim) = &self.simulated {
            print_simulated(sim, self, args);
        }
    }

    /// The chunk as it ran here.
    fn print_chunk(&self) {
        let s = &self.shape;
        let a = &self.accuracy;
        println!("npu_backend: {}", self.npu);
        println!("compute_backend: {}", self.compute);
        println!(
            "shape: q_heads={} kv_heads={} q_len={} kv_len={} head_dim={} q_offset={}",
            s.q_heads, s.kv_heads, s.q_len, s.kv_len, s.head_dim, s.q_offset
        );
        println!(
            "bank: {} graphs ({} buckets x fused {:?}), built in {:.1} ms (measured)",
            self.bank.graphs, self.bank.buckets, self.bank.fused, self.bank.ms
        );
        println!("pilot: {}", describe_unit(self.bank.unit));
        let sizes: Vec<String> = self.launch_sizes.iter().map(usize::to_string).collect();
        println!(
            "launches: {} (fused sizes {})",
            self.launch_sizes.len(),
            sizes.join(",")
        );
        let (sent, received) = self.host_io;
        println!(
            "pilot_host_bytes: {} (inputs {sent} + outputs {received}, every launch's graph I/O)",
            sent + received
        );
        println!("costs: {}", self.pricing);
        println!(
            "plan: {:?}, projected {:.3} ms (cost table)",
            self.plan.strategy,
            self.plan.projected_ns / 1e6
        );
        println!(
            "ratio: mean {:.4} (kept {:.4} of valid keys)",
            self.mean_ratio, a.kept_fraction
        );
        println!("budget: {}", self.budget);
        println!(
            "topk_recall_mean: {:.4} (against exact scores under the same rule: per head, or per GQA group when it shares its set)",
            a.recall.0
        );
        println!("topk_recall_p5: {:.4}", a.recall.1);
        println!("attention_mass_mean: {:.4}", a.mass.0);
        println!("oracle_mass_mean: {:.4}", a.mass.1);
        println!("rel_l2_mean: {:.5}", a.rel_l2.0);
        println!("rel_l2_p95: {:.5}", a.rel_l2.1);
        println!("cosine_mean: {:.6}", a.cosine);
        println!("fallback: {}", self.fallback.as_deref().unwrap_or("none"));
        let t = &self.timing;
        println!(
            "time_chunk_ms: {:.2} (measured on this machine: {} kernels plus the NPU backend's pilot execution)",
            t.chunk_ms, self.compute
        );
        println!(
            "time_dense_ms: {:.2} (measured on this machine: {} kernels)",
            t.dense_ms, self.compute
        );
        println!(
            "time_cpu_stage_ms: {:.2} (measured on this machine: top-k and sparse attention, the workers' busy time)",
            t.stage_ms
        );
        println!(
            "speedup_cpu_stage_measured: {:.2} (dense attention / the CPU stage, both measured here)",
            t.dense_ms / t.stage_ms
        );
    }
}

/// What a launch unit of the pilot is, for the report.
fn describe_unit(unit: PilotUnit) -> String {
    match unit {
        PilotUnit::Head => "head (a launch unit per query head, its KV head's keys in every unit)".into(),
        PilotUnit::Group {
            heads,
            ranking: GroupRanking::Cpu,
        } => format!(
            "group-cpu (a launch unit per GQA group: {heads} heads' rows against the group's keys sent once; the CPU sums their softmax probabilities)"
        ),
        PilotUnit::Group {
            heads,
            ranking: GroupRanking::Npu { attention_scale },
        } => format!(
            "group (a launch unit per GQA group: {heads} heads' rows against the group's keys sent once; the NPU sums their softmax probabilities at scale {attention_scale} into one f16 ranking)"
        ),
    }
}

/// The layer on the device model, beside the other strategies.
fn print_simulated(sim: &SimulatedLayer, report: &RunReport, args: &RunArgs) {
    let who = &sim.who;
    let strategy = report.plan.strategy;
    println!(
        "sim_bank_compile_ms: {:.1} (simulated, once per device)",
        sim.compile_ms
    );
    println!(
        "sim_npu_ms: {:.3} (simulated warm pilot launches)",
        sim.planned.npu_busy_ns as f64 / 1e6
    );
    println!("sim_layer_ms: {:.3} (simulated, {strategy:?} plan: pilot overlapped with top-k and sparse attention on {who})", sim.planned.makespan_ns as f64 / 1e6);
    println!(
        "sim_layer_fifo_ms: {:.3} (simulated, FIFO order)",
        sim.fifo.makespan_ns as f64 / 1e6
    );
    println!(
        "sim_dense_cpu_ms: {:.3} (simulated C/G-Full: dense FP32 attention on {who})",
        sim.dense_ns / 1e6
    );
    let full = &sim.npu.full_int8;
    println!(
        "sim_npu_full_int8_ms: {:.3} (simulated NPU-Full INT8: one static graph of all heads, per-tensor scales, INT8 Q·Kᵀ, f16 softmax, u8 P·V; warm launch {:.3} + host I/O {:.3} + NPU {:.3} ms)",
        full.total_ns() / 1e6,
        full.launch_warm_ns / 1e6,
        full.host_io_ns / 1e6,
        full.accelerator_ns / 1e6
    );
    let flash = &sim.npu.fp16_flash;
    let (br, bc) = flash.blocks.unwrap_or_default();
    println!(
        "sim_npu_fp16_flash_ms: {:.3} (simulated NPU FP16 flash attention, matrix unit + exp on the vector units as ggml-hexagon, Br {br} Bc {bc}: warm launch {:.3} + host I/O {:.3} + NPU {:.3} ms)",
        flash.total_ns() / 1e6,
        flash.launch_warm_ns / 1e6,
        flash.host_io_ns / 1e6,
        flash.accelerator_ns / 1e6
    );
    let ranking = sim.ranking();
    let listed: Vec<String> = ranking
        .iter()
        .map(|(name, ns)| format!("{name} {:.3} ms", ns / 1e6))
        .collect();
    println!(
        "sim_fastest: {} (simulated on {} at {} keys: {})",
        ranking[0].0,
        sim.device,
        report.shape.kv_len,
        listed.join(" < ")
    );
    println!(
        "sim_speedup: {:.2} (simulated dense attention on the CPU / shadowAttn layer)",
        sim.dense_ns / sim.planned.makespan_ns as f64
    );
    print_ends(sim, &report.simulated_ends);
    if let Some(path) = &args.trace {
        println!("trace: {} ({} events)", path.display(), sim.trace.len());
    }
}

/// Every strategy's range over the ends of the device's unmeasured numbers, and the ranking at
/// each end.
fn print_ends(sim: &SimulatedLayer, ends: &[(&'static str, SimulatedLayer)]) {
    if ends.is_empty() {
        return;
    }
    for (name, central) in sim.ranking() {
        let at: Vec<f64> = ends
            .iter()
            .filter_map(|(_, e)| e.ranking().into_iter().find(|(n, _)| *n == name))
            .map(|(_, ns)| ns)
            .collect();
        let (lo, hi) = at
            .iter()
            .fold((central, central), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "sim_{}_range_ms: {:.3} – {:.3} ({:.2}× wide; ends of the numbers no phone measured: ARM kernel efficiencies, launch overheads)",
            name.replace(['/', '-'], "_"),
            lo / 1e6,
            hi / 1e6,
            hi / lo
        );
    }
    for (end, layer) in ends {
        let order: Vec<&str> = layer.ranking().iter().map(|(n, _)| *n).collect();
        println!("sim_ranking_at_{end}_end: {}", order.join(" < "));
    }
}
