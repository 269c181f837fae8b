//! `shadowattn run`: one synthetic prefill chunk through the whole shadowAttn flow.

use crate::backends::{open_options, DEFAULT_NPU};
use crate::prefill::pick_core;
use crate::selection::SelectionArg;
use clap::{Args, ValueEnum};
use shadowattn_hal::{
    AttentionShape, ComputeBackend, DType, EventKind, NpuBackend, OpKind, ProfileEvent,
};
use shadowattn_pipeline::{
    fifo, simulate, CostModel, LayerCosts, Pipeline, Plan, Timeline, UnitWork,
};
use shadowattn_registry::{ComputeSpec, NpuSpec};
use shadowattn_simulator::baselines::{npu_fp16_flash, npu_full_int8, AttentionChunk};
use shadowattn_simulator::layer::SocCosts;
use shadowattn_simulator::timeline::write_chrome_trace;
use shadowattn_simulator::SocProfile;
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::calibration::{Calibration, LayerSample, ModelShape, RatioConfig};
use shadowattn_sparse_attn::costs::CostTable;
use shadowattn_sparse_attn::metrics::evaluate;
use shadowattn_sparse_attn::pilot::{int8_accumulator_range, PilotOutput};
use shadowattn_sparse_attn::shadow::{ChunkResult, Schedule, ShadowAttention, ShadowConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

/// Pipeline order on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScheduleArg {
    /// The planner's two-level greedy order (FIFO when greedy is not better).
    Planned,
    /// Launches by bucket, heads by index.
    Fifo,
}

/// Output form of the pilot graph.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PilotOutputArg {
    /// Exact INT32 accumulators.
    I32,
    /// Scores requantized to INT8 with a static scale from a sample chunk (what HTP supports).
    I8,
}

/// Options of `shadowattn run`.
#[derive(Args)]
pub struct RunArgs {
    /// NPU graph backend that runs the INT8 pilot (`shadowattn devices` lists them; the
    /// grammar: `cpu`, `sim[:<soc>|:<profile.toml>]`, `qnn[:htp[:<socModel>]]`, `neuron`).
    #[arg(long, default_value = DEFAULT_NPU)]
    npu: NpuSpec,
    /// Compute backend for quantization, top-k and attention (`cpu`,
    /// `cpu-fast[:<threads>][:f16]`, `opencl[:<platform>[:<device>]][:f16]`).
    #[arg(long, default_value = "cpu-fast")]
    compute: ComputeSpec,
    /// Query heads (default: the paper's Qwen2-1.5B-like layer, 12 query / 2 KV heads, d 128).
    #[arg(long, default_value_t = 12)]
    q_heads: usize,
    /// Key/value heads (must divide the query heads).
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    /// Query rows in the chunk.
    #[arg(long, default_value_t = 128)]
    q_len: usize,
    /// Keys (prefix plus chunk).
    #[arg(long, default_value_t = 2048)]
    kv_len: usize,
    /// Head dimension.
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
    /// Which query rows and heads share a key set: `group` (the heads of a GQA group share each
    /// row's set) or `row` (a set per head and row).
    #[arg(long, value_enum, default_value_t = SelectionArg::Group)]
    selection: SelectionArg,
    /// Fraction of each row's valid keys that is kept, in (0, 1] (ignored with --calibration).
    #[arg(long, default_value_t = 0.2)]
    ratio: f32,
    /// A calibration file (`shadowattn-calibration` JSON) for the chunk's model shape.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Layer of the calibration whose ratios are used.
    #[arg(long, default_value_t = 0)]
    layer: usize,
    /// Minimum number of keys per row.
    #[arg(long, default_value_t = 1)]
    min_keys: usize,
    /// Fraction of keys planted as important in the synthetic data.
    #[arg(long, default_value_t = 0.1)]
    planted: f32,
    /// Random seed of the synthetic data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads for top-k and sparse attention on this machine.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Pipeline order.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Planned)]
    schedule: ScheduleArg,
    /// CPU cores of the SoC given to top-k and sparse attention in the simulated timing.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Which core cluster of the SoC profile runs them (`mid`, `prime`).
    #[arg(long, default_value = "mid")]
    core: String,
    /// Write a Perfetto / chrome://tracing timeline of the simulated layer to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Write a Perfetto / chrome://tracing timeline of the compute backend's measured commands
    /// (for `--compute opencl`: queue waits, transfers and kernels) to this file.
    #[arg(long)]
    compute_trace: Option<PathBuf>,
    /// Pilot output: `i8` (default: NPUs requantize integer MatMuls to 8 bits), or `i32` (default
    /// for `--npu cpu`).
    #[arg(long, value_enum)]
    pilot_output: Option<PilotOutputArg>,
}

const FUSED: [usize; 3] = [4, 2, 1];

/// A calibration from synthetic samples (other seeds than the evaluated chunk), uniform ratios.
fn synthetic_calibration(args: &RunArgs, model: &ModelShape) -> Res<Calibration> {
    let shape = AttentionShape::causal(
        args.q_heads,
        args.kv_heads,
        args.q_len,
        args.q_len,
        args.head_dim,
    );
    let chunks: Vec<SyntheticChunk> = (0..4)
        .map(|i| {
            SyntheticChunk::generate(SyntheticSpec {
                shape,
                planted_fraction: args.planted,
                signal: 1.0,
                seed: args.seed.wrapping_add(1000 + i),
            })
        })
        .collect::<Result<_, _>>()?;
    let samples: Vec<LayerSample<'_>> = chunks
        .iter()
        .map(|c| LayerSample {
            layer: 0,
            q: &c.q,
            k: &c.k,
            rows: args.q_len,
        })
        .collect();
    let ratio_config = RatioConfig {
        global_ratio: args.ratio,
        min_ratio: args.ratio,
        importance_clamp: (1e-6, 1e6),
    };
    let importance = vec![vec![1.0; args.q_heads]];
    Ok(Calibration::calibrate(
        model.clone(),
        &samples,
        &importance,
        ratio_config,
        1,
        0.5,
    )?)
}

/// The simulated SoC: its prices for the layer and the cores that run the CPU steps.
struct Simulated<'a> {
    soc: &'a SocProfile,
    costs: SocCosts,
    cores: usize,
}

impl Simulated<'_> {
    /// The pipeline of the SoC's cores.
    fn pipeline(&self) -> Res<Pipeline> {
        Ok(Pipeline::executor(self.cores)?)
    }

    /// `result`'s launches and heads priced on the SoC, with the keys each head really kept.
    fn costs(&self, result: &ChunkResult, shape: &AttentionShape) -> Res<LayerCosts> {
        let valid_keys: u64 = (0..shape.q_len).map(|i| shape.valid_keys(i) as u64).sum();
        let work: Vec<UnitWork> = result
            .selections
            .iter()
            .map(|s| UnitWork {
                valid_keys,
                kept_pairs: s.kept() as u64,
            })
            .collect();
        Ok(LayerCosts::priced(&self.costs, &result.launches, &work)?)
    }

    /// The layer as the SoC would run `order`.
    fn layer(&self, result: &ChunkResult, costs: &LayerCosts, order: &Plan) -> Res<Timeline> {
        Ok(simulate(&self.pipeline()?, &result.launches, costs, order)?)
    }
}

/// The pilot's output form, with an INT8 scale from a sample chunk (another seed) when needed.
fn pilot_output(args: &RunArgs, npu: &dyn NpuBackend, shape: &AttentionShape) -> Res<PilotOutput> {
    // NPUs requantize integer MatMuls to 8 bits (HTP has no INT32 output), and the simulator
    // models them; only the golden CPU backend keeps exact INT32 scores by default.
    let choice = args.pilot_output.unwrap_or(match args.npu {
        NpuSpec::Cpu => PilotOutputArg::I32,
        _ => PilotOutputArg::I8,
    });
    Ok(match choice {
        PilotOutputArg::I32 => {
            if !npu
                .capabilities()
                .supports(OpKind::MatMul, DType::I8, DType::I32)
            {
                return Err(format!(
                    "{} has no INT32 output for an INT8 MatMul (its capabilities): use --pilot-output i8",
                    npu.name()
                )
                .into());
            }
            PilotOutput::Int32
        }
        PilotOutputArg::I8 => {
            let sample = SyntheticChunk::generate(SyntheticSpec {
                shape: *shape,
                planted_fraction: args.planted,
                signal: 1.0,
                seed: args.seed.wrapping_add(2000),
            })?;
            PilotOutput::Int8 {
                acc_range: int8_accumulator_range(sample.inputs())?,
            }
        }
    })
}

/// The CPU workers' busy time in a chunk's measured events, ms: each distinct step once (the
/// heads of a group that shares its selection report the same steps).
fn cpu_stage_ms(events: &[ProfileEvent]) -> f64 {
    let mut steps: Vec<(&str, u64, u64)> = events
        .iter()
        .filter(|e| e.kind == EventKind::ComputeStage && e.track.starts_with("cpu"))
        .map(|e| (e.track.as_str(), e.start_ns, e.duration_ns))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps.iter().map(|s| s.2 as f64).sum::<f64>() / 1e6
}

/// Runs the command.
pub fn run(args: &RunArgs) -> Res<()> {
    let npu_choice = args.npu.open(&open_options())?;
    let core = match &npu_choice.soc {
        Some(soc) => Some(pick_core(soc, &args.core, args.cores)?),
        None if args.trace.is_some() => {
            return Err(
                "--trace needs a simulator NPU backend (sim:<soc>): the timeline is simulated"
                    .into(),
            )
        }
        None => None,
    };
    let npu: &dyn NpuBackend = npu_choice.backend.as_ref();
    let compute_box = args.compute.open(&open_options())?;
    let compute: &dyn ComputeBackend = compute_box.as_ref();
    let shape = AttentionShape::causal(
        args.q_heads,
        args.kv_heads,
        args.q_len,
        args.kv_len,
        args.head_dim,
    );
    shape.validate()?;
    let model = ModelShape {
        name: "synthetic".into(),
        layers: 1,
        q_heads: args.q_heads,
        kv_heads: args.kv_heads,
        head_dim: args.head_dim,
    };
    let calib = match &args.calibration {
        Some(path) => Calibration::load(path, None)?,
        None => synthetic_calibration(args, &model)?,
    };
    calib.layer_ratios(args.layer)?;
    let chunk = SyntheticChunk::generate(SyntheticSpec {
        shape,
        planted_fraction: args.planted,
        signal: 1.0,
        seed: args.seed,
    })?;
    let inputs = chunk.inputs();

    let spec = BankSpec {
        q_len: args.q_len,
        kv_len: args.kv_len,
        head_dim: args.head_dim,
        fused: FUSED.to_vec(),
        output: pilot_output(args, npu, &shape)?,
    };
    let t = Instant::now();
    let mut bank = GraphBank::build(npu, &calib.grid, spec.clone())?;
    let bank_ms = t.elapsed().as_secs_f64() * 1e3;
    let sim_compile_ms: f64 = bank
        .compile_events()
        .iter()
        .filter(|e| {
            e.kind == EventKind::Compile && e.source == shadowattn_hal::FigureSource::Simulated
        })
        .map(|e| e.duration_ns as f64 / 1e6)
        .sum();
    let bank_graphs = bank.len();
    let sim = match (&npu_choice.soc, core) {
        (Some(soc), Some(core)) => {
            let pilots = FUSED
                .iter()
                .map(|&f| Ok((f, spec.pilot(&calib.grid, 0, f).graph()?)))
                .collect::<Res<Vec<_>>>()?;
            Some(Simulated {
                soc,
                costs: SocCosts::new(
                    soc,
                    core,
                    pilots,
                    shape.kv_len,
                    shape.head_dim,
                    args.selection.simulated(&shape),
                ),
                cores: args.cores,
            })
        }
        _ => None,
    };
    let (costs, cost_source): (Box<dyn CostModel>, _) = match &sim {
        Some(sim) => (Box::new(sim.costs.clone()), "simulator cost model"),
        None => {
            let mean_ratio =
                calib.layer_ratios(args.layer)?.iter().sum::<f32>() / args.q_heads as f32;
            let measured = CostTable::measure(
                &mut bank,
                compute,
                inputs,
                mean_ratio,
                5,
                args.selection.granularity(),
            )?;
            (Box::new(measured), "measured here, median of 5 runs")
        }
    };
    let config = ShadowConfig {
        min_keys: args.min_keys,
        granularity: args.selection.granularity(),
        cpu_workers: args.workers,
        schedule: match args.schedule {
            ScheduleArg::Planned => Schedule::Planned,
            ScheduleArg::Fifo => Schedule::Fifo,
        },
        ..ShadowConfig::default()
    };
    let mut shadow = ShadowAttention::new(bank, calib.clone(), compute, costs, config)?;
    // The first run warms every graph it launches; the second is the one reported.
    shadow.run_chunk(args.layer, inputs)?;
    compute.take_events();
    let t = Instant::now();
    let result = shadow.run_chunk(args.layer, inputs)?;
    let chunk_ms = t.elapsed().as_secs_f64() * 1e3;
    let compute_events = compute.take_events();
    if let Some(path) = &args.compute_trace {
        if compute_events.is_empty() {
            return Err(format!(
                "--compute-trace: the compute backend `{}` records no events (use --compute opencl)",
                compute.name()
            )
            .into());
        }
        write_chrome_trace(path, &compute_events)
            .map_err(|e| format!("cannot write trace {}: {e}", path.display()))?;
        println!(
            "compute_trace: {} ({} measured events of {})",
            path.display(),
            compute_events.len(),
            compute.name()
        );
    }
    let t = Instant::now();
    let mut dense = vec![0.0; inputs.output_len()];
    compute.dense_attention(inputs, &mut dense)?;
    let dense_ms = t.elapsed().as_secs_f64() * 1e3;
    let r = evaluate(inputs, &result.selections, &result.output, &dense, compute)?;
    let plan = result.plan.clone().ok_or("the chunk ran dense")?;

    println!("npu_backend: {} {}", npu.name(), npu.version());
    println!("compute_backend: {}", compute.name());
    println!(
        "shape: q_heads={} kv_heads={} q_len={} kv_len={} head_dim={} q_offset={}",
        shape.q_heads, shape.kv_heads, shape.q_len, shape.kv_len, shape.head_dim, shape.q_offset
    );
    println!(
        "bank: {bank_graphs} graphs ({} buckets x fused {:?}), built in {bank_ms:.1} ms (measured)",
        calib.grid.len(),
        FUSED
    );
    let sizes: Vec<String> = result
        .launches
        .iter()
        .map(|l| l.units.len().to_string())
        .collect();
    println!(
        "launches: {} (fused sizes {})",
        result.launches.len(),
        sizes.join(",")
    );
    println!("costs: {cost_source}");
    println!(
        "plan: {:?}, projected {:.3} ms (cost table)",
        plan.strategy,
        plan.projected_ns / 1e6
    );
    println!(
        "ratio: mean {:.4} (kept {:.4} of valid keys)",
        result.heads.iter().map(|h| f64::from(h.ratio)).sum::<f64>() / shape.q_heads as f64,
        r.kept_fraction
    );
    println!(
        "topk_recall_mean: {:.4} (against exact scores under the same rule: per head, or per GQA group when it shares its set)",
        r.recall_mean
    );
    println!("topk_recall_p5: {:.4}", r.recall_p5);
    println!("attention_mass_mean: {:.4}", r.mass_mean);
    println!("oracle_mass_mean: {:.4}", r.oracle_mass_mean);
    println!("rel_l2_mean: {:.5}", r.rel_l2_mean);
    println!("rel_l2_p95: {:.5}", r.rel_l2_p95);
    println!("cosine_mean: {:.6}", r.cosine_mean);
    println!(
        "fallback: {}",
        result.fallback().as_deref().unwrap_or("none")
    );
    println!(
        "time_chunk_ms: {chunk_ms:.2} (measured on this machine: {} kernels plus the NPU backend's pilot execution)",
        compute.name()
    );
    println!(
        "time_dense_ms: {dense_ms:.2} (measured on this machine: {} kernels)",
        compute.name()
    );
    let stage_ms = cpu_stage_ms(&result.events);
    println!(
        "time_cpu_stage_ms: {stage_ms:.2} (measured on this machine: top-k and sparse attention, the workers' busy time)"
    );
    println!(
        "speedup_cpu_stage_measured: {:.2} (dense attention / the CPU stage, both measured here)",
        dense_ms / stage_ms
    );

    if let Some(sim) = &sim {
        let who = format!("{} {} core(s) of {}", args.cores, args.core, sim.soc.name);
        let costs = sim.costs(&result, &shape)?;
        let planned = sim.layer(&result, &costs, &plan)?;
        let fifo_order = fifo(&sim.pipeline()?, &result.launches, &costs)?;
        let fifo_timing = sim.layer(&result, &costs, &fifo_order)?;
        let valid: u64 = (0..shape.q_len).map(|i| shape.valid_keys(i) as u64).sum();
        let dense_sim = sim.costs.dense_ns(valid) * shape.q_heads as f64 / args.cores as f64;
        println!("sim_bank_compile_ms: {sim_compile_ms:.1} (simulated, once per device)");
        println!(
            "sim_npu_ms: {:.3} (simulated warm pilot launches)",
            planned.npu_busy_ns as f64 / 1e6
        );
        println!("sim_layer_ms: {:.3} (simulated, {:?} plan: pilot overlapped with top-k and sparse attention on {who})", planned.makespan_ns as f64 / 1e6, plan.strategy);
        println!(
            "sim_layer_fifo_ms: {:.3} (simulated, FIFO order)",
            fifo_timing.makespan_ns as f64 / 1e6
        );
        println!(
            "sim_dense_cpu_ms: {:.3} (simulated C/G-Full: dense FP32 attention on {who})",
            dense_sim / 1e6
        );
        let chunk = AttentionChunk {
            q_heads: shape.q_heads,
            kv_heads: shape.kv_heads,
            q_len: shape.q_len,
            kv_len: shape.kv_len,
            head_dim: shape.head_dim,
            causal: shape.causal,
        };
        let full = npu_full_int8(sim.soc, &chunk)?;
        let full_ns = full.launch_ns(false);
        println!(
            "sim_npu_full_int8_ms: {:.3} (simulated NPU-Full INT8: one static graph of all heads, per-tensor scales, INT8 Q·Kᵀ, f16 softmax, u8 P·V; warm launch {:.3} + host I/O {:.3} + NPU {:.3} ms)",
            full_ns / 1e6,
            full.launch_warm_ns / 1e6,
            full.host_io_ns / 1e6,
            full.accelerator_ns() / 1e6
        );
        let flash = npu_fp16_flash(sim.soc, &chunk)?;
        let flash_ns = flash.launch_ns();
        println!(
            "sim_npu_fp16_flash_ms: {:.3} (simulated NPU FP16 flash attention, matrix unit + exp on the vector units as ggml-hexagon, Br {} Bc {}: warm launch {:.3} + host I/O {:.3} + NPU {:.3} ms)",
            flash_ns / 1e6,
            flash.blocks.br,
            flash.blocks.bc,
            flash.launch_warm_ns / 1e6,
            flash.host_io_ns / 1e6,
            flash.accelerator_ns() / 1e6
        );
        let shadow_ns = planned.makespan_ns as f64;
        let mut strategies = [
            ("c/g-full", dense_sim),
            ("npu-full-int8", full_ns),
            ("npu-fp16-flash", flash_ns),
            ("shadowattn", shadow_ns),
        ];
        strategies.sort_by(|a, b| a.1.total_cmp(&b.1));
        let ranking: Vec<String> = strategies
            .iter()
            .map(|(name, ns)| format!("{name} {:.3} ms", ns / 1e6))
            .collect();
        println!(
            "sim_fastest: {} (simulated on {} at {} keys: {})",
            strategies[0].0,
            sim.soc.name,
            shape.kv_len,
            ranking.join(" < ")
        );
        println!(
            "sim_speedup: {:.2} (simulated dense attention on the CPU / shadowAttn layer)",
            dense_sim / planned.makespan_ns as f64
        );
        if let Some(path) = &args.trace {
            // NPU launches of the reported run (on the simulator's clock) and the CPU stages, aligned.
            let launches: Vec<&ProfileEvent> = result
                .events
                .iter()
                .filter(|e| e.track.starts_with("npu"))
                .collect();
            let origin = launches.iter().map(|e| e.start_ns).min().unwrap_or(0);
            let mut events: Vec<ProfileEvent> = launches
                .into_iter()
                .map(|e| ProfileEvent {
                    start_ns: e.start_ns - origin,
                    ..e.clone()
                })
                .collect();
            events.extend(
                planned
                    .events
                    .into_iter()
                    .filter(|e| e.track.starts_with("cpu")),
            );
            write_chrome_trace(path, &events)
                .map_err(|e| format!("cannot write trace {}: {e}", path.display()))?;
            println!("trace: {} ({} events)", path.display(), events.len());
        }
    }
    Ok(())
}
