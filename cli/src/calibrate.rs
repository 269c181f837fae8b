//! `shadowattn calibrate`: writes a calibration file (bucket grid and per-head ratios).

use clap::Args;
use shadowattn_hal::AttentionShape;
use shadowattn_sparse_attn::calibration::{Calibration, LayerSample, ModelShape, RatioConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use std::error::Error;
use std::path::PathBuf;

/// Options of `shadowattn calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Output file (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Model name recorded in the file.
    #[arg(long, default_value = "synthetic")]
    model: String,
    /// Layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Query heads per layer.
    #[arg(long, default_value_t = 9)]
    q_heads: usize,
    /// KV heads per layer.
    #[arg(long, default_value_t = 3)]
    kv_heads: usize,
    /// Head dimension.
    #[arg(long, default_value_t = 64)]
    head_dim: usize,
    /// Mean fraction of keys kept.
    #[arg(long, default_value_t = 0.2)]
    ratio: f32,
    /// Smallest ratio of any head.
    #[arg(long, default_value_t = 0.02)]
    min_ratio: f32,
    /// Per-head importance as JSON `[[layer0 head0, …], …]`; uniform when absent.
    #[arg(long)]
    importance: Option<PathBuf>,
    /// Calibration sample rows (synthetic Q/K per layer).
    #[arg(long, default_value_t = 128)]
    rows: usize,
    /// Seed of the synthetic samples.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How each selecting unit's keys are spread over a chunk's rows (written into the file;
    /// default the measured best).
    #[command(flatten)]
    budget: crate::budget::BudgetArgs,
}

/// Runs the command.
pub fn run(args: &CalibrateArgs) -> Result<(), Box<dyn Error>> {
    let model = ModelShape {
        name: args.model.clone(),
        layers: args.layers,
        q_heads: args.q_heads,
        kv_heads: args.kv_heads,
        head_dim: args.head_dim,
    };
    model.validate()?;
    let importance: Vec<Vec<f64>> = match &args.importance {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{}: not a JSON array of per-layer arrays: {e}",
                    path.display()
                )
            })?
        }
        None => vec![vec![1.0; args.q_heads]; args.layers],
    };
    if importance.len() != args.layers || importance.iter().any(|l| l.len() != args.q_heads) {
        return Err(format!(
            "importance must have {} layers of {} heads",
            args.layers, args.q_heads
        )
        .into());
    }
    let shape = AttentionShape::causal(
        args.q_heads,
        args.kv_heads,
        args.rows,
        args.rows,
        args.head_dim,
    );
    let chunks: Vec<SyntheticChunk> = (0..args.layers)
        .map(|l| {
            SyntheticChunk::generate(SyntheticSpec {
                shape,
                planted_fraction: 0.1,
                signal: 1.0,
                seed: args.seed.wrapping_add(l as u64),
            })
        })
        .collect::<Result<_, _>>()?;
    let samples: Vec<LayerSample<'_>> = chunks
        .iter()
        .enumerate()
        .map(|(layer, c)| LayerSample {
            layer,
            q: &c.q,
            k: &c.k,
            rows: args.rows,
        })
        .collect();
    let cfg = RatioConfig {
        global_ratio: args.ratio,
        min_ratio: args.min_ratio,
        importance_clamp: (1e-6, 1e6),
    };
    let mut calib = Calibration::calibrate(model, &samples, &importance, cfg, 1, 0.5)?;
    calib.budget = args.budget.rule_over(calib.budget)?;
    calib.save(&args.out)?;
    println!(
        "calibration: {} ({} layers x {} heads, {} buckets, mean ratio {}, {})",
        args.out.display(),
        args.layers,
        args.q_heads,
        calib.grid.len(),
        args.ratio,
        crate::budget::describe(&calib.budget)
    );
    Ok(())
}
