//! What the C API's tests share: a calibration of synthetic samples.

use shadowattn_hal::AttentionShape;
use shadowattn_sparse_attn::calibration::{Calibration, LayerSample, ModelShape, RatioConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};

/// A one-layer calibration of `q_heads` × `kv_heads`, head_dim `d`, uniform `ratio`, from three
/// synthetic samples of 16 rows (seeds `seed..seed + 3`).
pub fn calibration(
    q_heads: usize,
    kv_heads: usize,
    d: usize,
    ratio: f32,
    seed: u64,
) -> Calibration {
    let samples: Vec<SyntheticChunk> = (0..3)
        .map(|i| {
            SyntheticChunk::generate(SyntheticSpec {
                shape: AttentionShape::causal(q_heads, kv_heads, 16, 16, d),
                planted_fraction: 0.1,
                signal: 1.0,
                seed: seed + i,
            })
            .unwrap()
        })
        .collect();
    let layer: Vec<LayerSample<'_>> = samples
        .iter()
        .map(|c| LayerSample {
            layer: 0,
            q: &c.q,
            k: &c.k,
            rows: 16,
        })
        .collect();
    let model = ModelShape {
        name: "capi".into(),
        layers: 1,
        q_heads,
        kv_heads,
        head_dim: d,
    };
    let cfg = RatioConfig {
        global_ratio: ratio,
        min_ratio: ratio,
        importance_clamp: (1e-6, 1e6),
    };
    Calibration::calibrate(model, &layer, &[vec![1.0; q_heads]], cfg, 1, 0.5).unwrap()
}
