//! SmolLM2-135M end to end (the model comes from `bash ci/model.sh`; skipped locally with a
//! reason when absent, required in CI): the tokenizer on real text, the dense perplexity against
//! the independent NumPy reference, sparse perplexity at 20 % kept, the INT8 pilot's recall on
//! real heads, the harness's pilot equal to the sparse-attention core's executor, and the default budget
//! rule against the even one at the same pairs.

use shadowattn_cpu::fast::FastCpuBackend;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{AttentionInputs, BudgetRule};
use shadowattn_models::attention::{Dense, Ranking, RecallProbe, Sharing, Sparse};
use shadowattn_models::eval::{calibrate, perplexity, qk_samples, windows};
use shadowattn_models::model::Attention;
use shadowattn_models::{Gguf, Model, Tokenizer};
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::calibration::RatioConfig;
use shadowattn_sparse_attn::cost_table::CostTable;
use shadowattn_sparse_attn::pilot::{PilotOutput, PilotUnit};
use shadowattn_sparse_attn::select::Granularity;
use shadowattn_sparse_attn::setup::FUSED_HEADS;
use shadowattn_sparse_attn::shadow::{ShadowAttention, ShadowConfig};
use shadowattn_test_support::{smollm2_or_skip, target_dir};
use std::path::PathBuf;
use std::sync::OnceLock;

const GPL: &str = "/usr/share/common-licenses/GPL-3";
const APACHE: &str = "/usr/share/common-licenses/Apache-2.0";

fn model_path() -> Option<PathBuf> {
    smollm2_or_skip(&target_dir(env!("CARGO_TARGET_TMPDIR")))
}

struct Loaded {
    model: Model,
    tokenizer: Tokenizer,
}

fn loaded() -> Option<&'static Loaded> {
    static MODEL: OnceLock<Option<Loaded>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let g = Gguf::open(&model_path()?).unwrap();
            Some(Loaded {
                model: Model::from_gguf(&g).unwrap(),
                tokenizer: Tokenizer::from_gguf(&g).unwrap(),
            })
        })
        .as_ref()
}

fn text_ids(l: &Loaded, path: &str) -> Vec<u32> {
    l.tokenizer
        .encode(&std::fs::read_to_string(path).unwrap())
        .unwrap()
}

#[test]
fn the_tokenizer_round_trips_real_text() {
    let Some(l) = loaded() else { return };
    let text = std::fs::read_to_string(GPL).unwrap();
    let ids = l.tokenizer.encode(&text).unwrap();
    // The same count and first ids as Hugging Face `tokenizers` with the GGUF vocabulary.
    assert_eq!(ids.len(), 7639);
    assert_eq!(
        &ids[..10],
        [42185, 28807, 35185, 49126, 35696, 45581, 41026, 16997, 13867, 216]
    );
    assert_eq!(l.tokenizer.decode(&ids), text);
}

#[test]
fn dense_and_sparse_perplexity_on_the_first_window() {
    let Some(l) = loaded() else { return };
    let cpu = FastCpuBackend::new(2).unwrap();
    let ids = text_ids(l, GPL);
    let w = windows(&ids, 256, l.tokenizer.bos, 1).unwrap();
    let dense = perplexity(&l.model, &w, &mut Dense { compute: &cpu }).unwrap();
    // models/reference/smollm2_reference.py (NumPy float64, ggml's dequantization, HF tokenizers)
    // gives 21.665113 on the same 255 predictions.
    assert_eq!(dense.scored, 255);
    assert!(
        (dense.ppl - 21.665113).abs() < 2e-3,
        "dense ppl {}",
        dense.ppl
    );
    let c = &l.model.config;
    let uniform = Sparse::uniform(c.layers, c.q_heads, 0.2);
    let oracle = perplexity(
        &l.model,
        &w,
        &mut Sparse::new(&cpu, uniform.clone(), Ranking::Exact),
    )
    .unwrap();
    // Calibration on another text: the bucket grid from its real Q/K scales.
    let calib_ids = text_ids(l, APACHE);
    let imp = vec![vec![1.0; c.q_heads]; c.layers];
    let calib = calibrate(
        &l.model,
        "smollm2",
        &cpu,
        &calib_ids[..256],
        &imp,
        RatioConfig::default(),
        false,
    )
    .unwrap();
    let pilot = perplexity(
        &l.model,
        &w,
        &mut Sparse::new(&cpu, uniform, Ranking::int32_pilot(calib.grid.clone())),
    )
    .unwrap();
    // Guards of the values measured with this configuration (issue 8): 20 % of keys kept in
    // every layer of a 256-token prefill costs about a quarter of the perplexity (early rows
    // keep very few keys); the INT8 pilot with the grid from 256 Apache-2.0 tokens lands within
    // 3 % of the exact top-k. (Re-measured when `ceil(0.2·n)` stopped counting the f32 image of
    // 0.2 as above 1/5: 26.7271 → 26.5867 and 27.4813 → 27.4423.)
    for (what, p, measured) in [("oracle", &oracle, 26.5867), ("pilot", &pilot, 27.4423)] {
        assert!(
            (p.ppl / measured - 1.0).abs() < 0.005,
            "{what} ppl {} vs measured {measured}",
            p.ppl
        );
    }
    // The pilot's recall on real heads.
    let mut probe = RecallProbe {
        compute: &cpu,
        grid: calib.grid,
        output: PilotOutput::Int32,
        center_keys: false,
        ratio: 0.2,
        recalls: Vec::new(),
    };
    l.model.forward(&w[0], &mut probe).unwrap();
    let mean = probe.recalls.iter().map(|r| r.2).sum::<f64>() / probe.recalls.len() as f64;
    assert_eq!(probe.recalls.len(), c.layers * c.q_heads);
    assert!(mean > 0.9, "mean pilot recall {mean}");
}

#[test]
fn the_default_budget_rule_beats_the_even_rule_at_the_same_pairs() {
    let Some(l) = loaded() else { return };
    let cpu = FastCpuBackend::new(2).unwrap();
    let ids = text_ids(l, GPL);
    let w = windows(&ids, 256, l.tokenizer.bos, 1).unwrap();
    let c = &l.model.config;
    let run = |rule: BudgetRule| {
        let uniform = Sparse::uniform(c.layers, c.q_heads, 0.1);
        let mut sparse = Sparse::new(&cpu, uniform, Ranking::Exact)
            .with_sharing(Sharing::PerGroup)
            .with_rule(rule);
        let p = perplexity(&l.model, &w, &mut sparse).unwrap();
        (p.ppl, sparse.pairs)
    };
    let (even, even_pairs) = run(BudgetRule::EVEN);
    let (best, best_pairs) = run(BudgetRule::MEASURED_BEST);
    // Both keep ⌈0.1·n⌉ keys per row summed over the window's rows: the same cost.
    assert_eq!(best_pairs, even_pairs, "the same pairs kept");
    // At 10 % of a 256-token window (dense 21.665) the even rule leaves the early rows one or
    // two keys; the threshold split gives them the keys the late rows do not need. Guards of
    // the values measured here (2026-12-07), 0.5 % like the others, and the gap itself.
    for (what, p, measured) in [("even", even, 52.0748), ("default", best, 25.2309)] {
        assert!(
            (p / measured - 1.0).abs() < 0.005,
            "{what} ppl {p} vs measured {measured}"
        );
    }
    assert!(best < 0.6 * even, "{best} against {even}");
}

/// Captures one layer's attention inputs.
struct Capture {
    layer: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    shape: Option<shadowattn_hal::AttentionShape>,
}

impl Attention for Capture {
    fn attend(
        &mut self,
        layer: usize,
        inputs: AttentionInputs<'_>,
        out: &mut [f32],
    ) -> shadowattn_models::Result<()> {
        if layer == self.layer {
            self.q = inputs.q().to_vec();
            self.k = inputs.k().to_vec();
            self.v = inputs.v().to_vec();
            self.shape = Some(inputs.shape());
        }
        Ok(CpuBackend::new().dense_attention(inputs, out)?)
    }
}

use shadowattn_hal::ComputeBackend;

#[test]
fn the_harness_pilot_selects_what_the_core_executor_selects() {
    let Some(l) = loaded() else { return };
    let cpu = CpuBackend::new();
    let ids = text_ids(l, GPL);
    let tokens = &ids[..96];
    let c = &l.model.config;
    let samples = qk_samples(&l.model, &cpu, tokens).unwrap();
    assert_eq!(samples.len(), c.layers);
    let imp: Vec<Vec<f64>> = (0..c.layers)
        .map(|l| (0..c.q_heads).map(|h| 1.0 + (l * h) as f64).collect())
        .collect();
    let calibrations = [false, true].map(|center_keys| {
        calibrate(
            &l.model,
            "smollm2",
            &cpu,
            tokens,
            &imp,
            RatioConfig::default(),
            center_keys,
        )
        .map(|c| shadowattn_sparse_attn::calibration::Calibration {
            // The harness's rule (`Sparse::new`): the even one.
            budget: BudgetRule::EVEN,
            ..c
        })
        .unwrap()
    });
    // Centered keys have a smaller range: the calibration saw it.
    assert!(calibrations[1].mean_k_scale < calibrations[0].mean_k_scale);
    for (layer, calib) in [0, 7, 29]
        .into_iter()
        .flat_map(|l| calibrations.iter().map(move |c| (l, c)))
    {
        let mut cap = Capture {
            layer,
            q: vec![],
            k: vec![],
            v: vec![],
            shape: None,
        };
        l.model.forward(tokens, &mut cap).unwrap();
        let inputs = AttentionInputs::new(&cap.q, &cap.k, &cap.v, cap.shape.unwrap()).unwrap();
        // The core: bank of pilot graphs (INT32 and INT8 output) on the golden CPU "NPU",
        // per-head ratios, keys centered or not; the harness's pilot with the same grid,
        // output, centering and ratios.
        for output in [PilotOutput::Int32, PilotOutput::int8_of(calib).unwrap()] {
            let spec = BankSpec {
                q_len: 96,
                kv_len: 96,
                head_dim: c.head_dim,
                fused: FUSED_HEADS.to_vec(),
                output,
                unit: PilotUnit::Head,
            };
            let bank = GraphBank::build(&cpu, &calib.grid, spec).unwrap();
            let mut core = ShadowAttention::new(
                bank,
                calib.clone(),
                &cpu,
                CostTable::uniform(&FUSED_HEADS),
                ShadowConfig {
                    granularity: Granularity::Row,
                    ..ShadowConfig::default()
                },
            )
            .unwrap();
            let r = core.run_chunk(layer, inputs).unwrap();
            let ranking = Ranking::pilot(calib, output);
            let mut sparse = Sparse::new(&cpu, calib.ratios.clone(), ranking);
            sparse.recorded = Some(Vec::new());
            let mut out = vec![0f32; inputs.output_len()];
            sparse.attend(layer, inputs, &mut out).unwrap();
            let harness = &sparse.recorded.as_ref().unwrap()[layer];
            let what = format!("layer {layer} {output:?} centered {}", calib.center_keys);
            assert_eq!(&r.selections, harness, "{what}");
            assert_eq!(r.output, out, "{what}");
        }
    }
}
