//! `shadowattn calibrate` without `--model`: a calibration of a synthetic model (planted Q/K
//! samples per layer, per-head importance given or uniform).

use super::CalibrateArgs;
use shadowattn_hal::AttentionShape;
use shadowattn_sparse_attn::calibration::{Calibration, LayerSample, ModelShape, RatioConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use std::error::Error;

/// Writes the synthetic calibration of `args`' shape.
pub(super) fn run(args: &CalibrateArgs) -> Result<(), Box<dyn Error>> {
    let layers = args.layers.unwrap_or(2);
    let q_heads = args.q_heads.unwrap_or(9);
    let kv_heads = args.kv_heads.unwrap_or(3);
    let head_dim = args.head_dim.unwrap_or(64);
    let rows = args.rows.unwrap_or(128);
    let seed = args.seed.unwrap_or(1);
    let model = ModelShape {
        name: args.name.clone().unwrap_or_else(|| "synthetic".into()),
        layers,
        q_heads,
        kv_heads,
        head_dim,
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
        None => vec![vec![1.0; q_heads]; layers],
    };
    if importance.len() != layers || importance.iter().any(|l| l.len() != q_heads) {
        return Err(format!("importance must have {layers} layers of {q_heads} heads").into());
    }
    let shape = AttentionShape::causal(q_heads, kv_heads, rows, rows, head_dim);
    let chunks: Vec<SyntheticChunk> = (0..layers)
        .map(|l| {
            SyntheticChunk::generate(SyntheticSpec {
                shape,
                planted_fraction: 0.1,
                signal: 1.0,
                seed: seed.wrapping_add(l as u64),
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
            rows,
        })
        .collect();
    let cfg = RatioConfig {
        global_ratio: args.ratio,
        min_ratio: args.min_ratio.unwrap_or(0.02),
        importance_clamp: (1e-6, 1e6),
    };
    let mut calib = Calibration::calibrate(model, &samples, &importance, cfg, 1, 0.5)?;
    calib.budget = args.budget.rule_over(calib.budget)?;
    calib.save(&args.out)?;
    println!(
        "calibration: {} ({layers} layers x {q_heads} heads, {} buckets, mean ratio {}, {})",
        args.out.display(),
        calib.grid.len(),
        args.ratio,
        crate::budget::describe(&calib.budget)
    );
    Ok(())
}
