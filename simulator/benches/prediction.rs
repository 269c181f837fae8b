//! The real cost of a prediction: compiling and predicting one whole layer's prefill plan, and a
//! whole model's.
//!
//! The paper's Qwen2-1.5B shape (12 query heads, 2 KV heads, head_dim 128, 28 layers), a
//! 4096-token prefill in chunks of 128 query rows (32 chunks, causal keys growing 128..4096), on
//! the simulated Snapdragon 8 Gen 3: for every chunk, build the pilot graph of each fused count
//! (4, 2, 1), price it with the cost model (`graph_cost`), price every head's top-k and sparse
//! attention, and plan the chunk's launches (`shadowattn_pipeline::plan`).
use divan::Bencher;
use shadowattn_simulator::predict::cpu_model::{KernelSet, SelectionSharing};
use shadowattn_simulator::predict::layer::PrefillLayer;
use shadowattn_simulator::SocProfile;

fn main() {
    divan::main();
}

const LAYERS: usize = 28;
const Q_HEADS: usize = 12;

/// Layer `layer` of the prefill: heads spread over the 9 buckets differently in every layer.
fn layer(layer: usize, cores: usize) -> PrefillLayer {
    PrefillLayer {
        q_heads: Q_HEADS,
        kv_heads: 2,
        head_dim: 128,
        prompt_len: 4096,
        chunk_len: 128,
        ratios: (0..Q_HEADS)
            .map(|h| 0.1 + 0.02 * ((h + layer) % 10) as f32)
            .collect(),
        buckets: (0..Q_HEADS).map(|h| (h * 5 + layer) % 9 % 4).collect(),
        fused: shadowattn_pipeline::FUSED_HEADS.to_vec(),
        cores,
        split: None,
        kernels: KernelSet::OURS,
        sharing: SelectionSharing::PerGroup,
        pilot: shadowattn_simulator::npu::graphs::PilotGraph::Head,
        budget: shadowattn_hal::BudgetRule::EVEN,
    }
}

/// One layer: 32 chunks, each with its pilot graphs priced and its launches planned.
#[divan::bench(args = [1, 4])]
fn predict_layer(bencher: Bencher, cores: usize) {
    let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
    let core = soc.core("mid").unwrap().clone();
    let spec = layer(0, cores);
    bencher.bench(|| divan::black_box(&spec).predict(&soc, &core).unwrap());
}

/// The whole model: 28 layers of 32 chunks.
#[divan::bench(args = [1, 4], sample_count = 20)]
fn predict_model(bencher: Bencher, cores: usize) {
    let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
    let core = soc.core("mid").unwrap().clone();
    let specs: Vec<PrefillLayer> = (0..LAYERS).map(|l| layer(l, cores)).collect();
    bencher.bench(|| {
        divan::black_box(&specs)
            .iter()
            .map(|s| s.predict(&soc, &core).unwrap().len())
            .sum::<usize>()
    });
}
