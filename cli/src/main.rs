//! `shadowattn`: run shadowAttn prefill attention on a chosen backend pair and report accuracy.

mod registry;

use clap::{Args, Parser, Subcommand};
use shadowattn_hal::{AttentionShape, KeyBudget};
use shadowattn_sparse_attn::metrics::evaluate;
use shadowattn_sparse_attn::pilot::select_with_per_head_scales;
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
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
    /// NPU graph backend that runs the INT8 pilot.
    #[arg(long, default_value = "cpu")]
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
}

fn run(args: &RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let npu = registry::npu_backend(&args.npu)?;
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
