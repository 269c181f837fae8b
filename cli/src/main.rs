//! `shadowattn`: run shadowAttn prefill attention on a chosen backend pair and report accuracy.

mod registry;

use clap::{Args, Parser, Subcommand};
use shadowattn_hal::{AttentionShape, EventKind, KeyBudget, ProfileEvent};
use shadowattn_simulator::cpu_model::{sparse_attention_ns, topk_ns};
use shadowattn_simulator::layer::{HeadCost, LayerPlan, NpuGroup};
use shadowattn_simulator::profile::{count, CpuCore};
use shadowattn_simulator::timeline::write_chrome_trace;
use shadowattn_simulator::SocProfile;
use shadowattn_sparse_attn::metrics::evaluate;
use shadowattn_sparse_attn::pilot::select_with_per_head_scales;
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "shadowattn",
    version,
    about = "NPU-centric sparse attention for LLMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one prefill attention chunk (synthetic data) sparse and dense; print the error.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// NPU graph backend that runs the INT8 pilot: `cpu`, `sim:<soc>` or `sim:<profile.toml>`.
    #[arg(long, default_value = registry::DEFAULT_NPU)]
    npu: String,
    /// Compute backend for quantization, top-k and attention.
    #[arg(long, default_value = "cpu")]
    compute: String,
    /// Query heads.
    #[arg(long, default_value_t = 9)]
    q_heads: usize,
    /// Key/value heads (must divide the query heads).
    #[arg(long, default_value_t = 3)]
    kv_heads: usize,
    /// Query rows in the chunk.
    #[arg(long, default_value_t = 128)]
    q_len: usize,
    /// Keys (prefix plus chunk).
    #[arg(long, default_value_t = 512)]
    kv_len: usize,
    /// Head dimension.
    #[arg(long, default_value_t = 64)]
    head_dim: usize,
    /// Fraction of each row's valid keys that is kept, in (0, 1].
    #[arg(long, default_value_t = 0.2)]
    ratio: f32,
    /// Minimum number of keys per row.
    #[arg(long, default_value_t = 1)]
    min_keys: usize,
    /// Fraction of keys planted as important in the synthetic data.
    #[arg(long, default_value_t = 0.1)]
    planted: f32,
    /// Random seed of the synthetic data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// CPU cores given to top-k and sparse attention in the simulated layer timing.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Which core cluster of the SoC profile runs them (`mid`, `prime`).
    #[arg(long, default_value = "mid")]
    core: String,
    /// Write a Perfetto / chrome://tracing timeline of the simulated layer to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
}

/// Simulated layer timing: the pilot launches from the simulator, CPU stages from the profile's core model.
struct LayerReport {
    compile_ms: f64,
    npu_ms: f64,
    layer_ms: f64,
    dense_ms: f64,
    events: Vec<ProfileEvent>,
}

/// The core cluster `--core` names, checked against `--cores`.
fn pick_core<'a>(
    soc: &'a SocProfile,
    args: &RunArgs,
) -> Result<&'a CpuCore, Box<dyn std::error::Error>> {
    let core = soc.core(&args.core).ok_or_else(|| {
        let names: Vec<&str> = soc.cpu.cores.iter().map(|c| c.name.as_str()).collect();
        format!(
            "SoC `{}` has no core cluster `{}`; it has: {}",
            soc.name,
            args.core,
            names.join(", ")
        )
    })?;
    let available = count(&core.count) as usize;
    if args.cores == 0 || args.cores > available {
        return Err(format!(
            "--cores {} is outside 1..={available} ({available} `{}` cores on {})",
            args.cores, core.name, soc.name
        )
        .into());
    }
    Ok(core)
}

fn simulate_layer(
    soc: &SocProfile,
    args: &RunArgs,
    shape: &AttentionShape,
    selections: &[shadowattn_hal::Selection],
    pilot_events: &[ProfileEvent],
) -> Result<LayerReport, Box<dyn std::error::Error>> {
    let core = pick_core(soc, args)?;
    let launches: Vec<&ProfileEvent> = pilot_events
        .iter()
        .filter(|e| e.kind == EventKind::Launch)
        .collect();
    let valid: u64 = (0..shape.q_len).map(|i| shape.valid_keys(i) as u64).sum();
    let plan = LayerPlan {
        groups: launches
            .iter()
            .enumerate()
            .map(|(h, e)| NpuGroup {
                heads: vec![h],
                npu_ns: e.duration_ns as f64,
            })
            .collect(),
        cpu_order: (0..shape.q_heads).collect(),
        heads: selections
            .iter()
            .map(|s| HeadCost {
                topk_ns: topk_ns(core, valid, 4),
                attention_ns: sparse_attention_ns(
                    core,
                    s.indices.len() as u64,
                    shape.kv_len,
                    shape.head_dim,
                    false,
                ),
            })
            .collect(),
    };
    let timing = plan.simulate(args.cores)?;
    let dense_per_head = sparse_attention_ns(core, valid, shape.kv_len, shape.head_dim, false);
    // The layer's timeline: launches and CPU stages (graph compiles are reported apart).
    let mut events: Vec<ProfileEvent> = pilot_events
        .iter()
        .filter(|e| e.kind != EventKind::Compile)
        .cloned()
        .collect();
    events.extend(
        timing
            .events
            .into_iter()
            .filter(|e| e.track.starts_with("cpu")),
    );
    let compile_ns: u64 = pilot_events
        .iter()
        .filter(|e| e.kind == EventKind::Compile)
        .map(|e| e.duration_ns)
        .sum();
    Ok(LayerReport {
        compile_ms: compile_ns as f64 / 1e6,
        npu_ms: timing.npu_busy_ns as f64 / 1e6,
        layer_ms: timing.makespan_ns as f64 / 1e6,
        dense_ms: dense_per_head * shape.q_heads as f64 / args.cores as f64 / 1e6,
        events,
    })
}

fn run(args: &RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let npu_choice = registry::npu_backend(&args.npu)?;
    match &npu_choice.soc {
        Some(soc) => {
            pick_core(soc, args)?;
        }
        None if args.trace.is_some() => {
            return Err(
                "--trace needs a simulator NPU backend (sim:<soc>): the timeline is simulated"
                    .into(),
            )
        }
        None => {}
    }
    let npu = npu_choice.backend;
    let compute = registry::compute_backend(&args.compute)?;
    let shape = AttentionShape::causal(
        args.q_heads,
        args.kv_heads,
        args.q_len,
        args.kv_len,
        args.head_dim,
    );
    let chunk = SyntheticChunk::generate(SyntheticSpec {
        shape,
        planted_fraction: args.planted,
        signal: 1.0,
        seed: args.seed,
    })?;
    let budget = KeyBudget::Ratio {
        ratio: args.ratio,
        min_keys: args.min_keys,
    };
    budget.validate()?;
    let inputs = chunk.inputs();

    let t = Instant::now();
    let mut dense = vec![0.0; inputs.output_len()];
    compute.dense_attention(inputs, &mut dense)?;
    let dense_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let picked = select_with_per_head_scales(npu.as_ref(), compute.as_ref(), inputs, budget)?;
    let pilot_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut sparse = vec![0.0; inputs.output_len()];
    compute.sparse_attention(inputs, &picked.selections, &mut sparse)?;
    let sparse_ms = t.elapsed().as_secs_f64() * 1e3;

    let r = evaluate(
        inputs,
        budget,
        &picked.selections,
        &sparse,
        &dense,
        compute.as_ref(),
    )?;
    println!("npu_backend: {} {}", npu.name(), npu.version());
    println!("compute_backend: {}", compute.name());
    println!(
        "shape: q_heads={} kv_heads={} q_len={} kv_len={} head_dim={} q_offset={}",
        shape.q_heads, shape.kv_heads, shape.q_len, shape.kv_len, shape.head_dim, shape.q_offset
    );
    println!(
        "ratio: {} (kept {:.4} of valid keys)",
        args.ratio, r.kept_fraction
    );
    println!("topk_recall_mean: {:.4}", r.recall_mean);
    println!("topk_recall_p5: {:.4}", r.recall_p5);
    println!("attention_mass_mean: {:.4}", r.mass_mean);
    println!("oracle_mass_mean: {:.4}", r.oracle_mass_mean);
    println!("rel_l2_mean: {:.5}", r.rel_l2_mean);
    println!("rel_l2_p95: {:.5}", r.rel_l2_p95);
    println!("cosine_mean: {:.6}", r.cosine_mean);
    println!("time_dense_ms: {dense_ms:.2} (measured, golden reference kernels)");
    println!("time_pilot_ms: {pilot_ms:.2} (measured, includes one graph compile per head)");
    println!("time_sparse_ms: {sparse_ms:.2} (measured)");
    if let Some(soc) = &npu_choice.soc {
        let layer = simulate_layer(soc, args, &shape, &picked.selections, &picked.events)?;
        let who = format!("{} {} core(s) of {}", args.cores, args.core, soc.name);
        println!(
            "sim_compile_ms: {:.1} (simulated graph compiles, one per head: no graph bank yet)",
            layer.compile_ms
        );
        println!(
            "sim_npu_ms: {:.3} (simulated pilot launches, one per head, each a cold first launch)",
            layer.npu_ms
        );
        println!("sim_layer_ms: {:.3} (simulated: pilot overlapped with top-k and sparse attention on {who})", layer.layer_ms);
        println!(
            "sim_dense_cpu_ms: {:.3} (simulated dense attention on {who})",
            layer.dense_ms
        );
        if let Some(path) = &args.trace {
            write_chrome_trace(path, &layer.events)
                .map_err(|e| format!("cannot write trace {}: {e}", path.display()))?;
            println!("trace: {} ({} events)", path.display(), layer.events.len());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
