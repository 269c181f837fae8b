//! The per-head INT8 pilot on the golden CPU backend, measured on planted synthetic attention.

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{AttentionShape, ComputeBackend, KeyBudget};
use shadowattn_sparse_attn::metrics::evaluate;
use shadowattn_sparse_attn::pilot::select_with_per_head_scales;
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};

#[test]
fn int8_pilot_finds_the_exact_top_k_and_full_ratio_equals_dense() {
    let cpu = CpuBackend::new();
    let chunk = SyntheticChunk::generate(SyntheticSpec {
        shape: AttentionShape::causal(4, 2, 32, 256, 32),
        planted_fraction: 0.1,
        signal: 1.0,
        seed: 7,
    })
    .unwrap();
    let inputs = chunk.inputs();
    let mut dense = vec![0.0; inputs.output_len()];
    cpu.dense_attention(inputs, &mut dense).unwrap();

    let budget = KeyBudget::Ratio {
        ratio: 0.2,
        min_keys: 1,
    };
    let picked = select_with_per_head_scales(&cpu, &cpu, inputs, budget).unwrap();
    let mut sparse = vec![0.0; dense.len()];
    cpu.sparse_attention(inputs, &picked.selections, &mut sparse)
        .unwrap();
    let r = evaluate(inputs, &picked.selections, &sparse, &dense, &cpu).unwrap();
    assert!(r.recall_mean >= 0.97, "{r:?}");
    assert!(r.oracle_mass_mean + 1e-12 >= r.mass_mean, "{r:?}");
    assert!(r.cosine_mean > 0.9, "{r:?}");
    assert_eq!(
        picked.events.len(),
        8,
        "one compile and one launch per head"
    );

    let all = KeyBudget::Ratio {
        ratio: 1.0,
        min_keys: 1,
    };
    let picked = select_with_per_head_scales(&cpu, &cpu, inputs, all).unwrap();
    cpu.sparse_attention(inputs, &picked.selections, &mut sparse)
        .unwrap();
    let r = evaluate(inputs, &picked.selections, &sparse, &dense, &cpu).unwrap();
    assert!(r.rel_l2_p95 <= 1e-6, "{r:?}");
    assert_eq!(r.kept_fraction, 1.0);
}
