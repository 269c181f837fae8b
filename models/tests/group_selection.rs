//! Selection shared by a GQA group (`Sharing::PerGroup`): every head of a group attends over the
//! same keys; the set is the top of the sum of the heads' softmax probabilities (checked against
//! an f64 reference with each head's own logit scale, for exact scores and the INT8 pilot); the
//! group keeps the mean of its heads' ratios; a group of one head selects and attends exactly
//! like `Sharing::PerHead`. Synthetic chunks, then SmolLM2-135M's real heads, where the harness
//! also selects exactly what the sparse-attention core's executor selects per group (the model
//! comes from `bash ci/model.sh`; skipped locally with a reason when absent, required in CI).

use shadowattn_cpu::fast::FastCpuBackend;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{AttentionInputs, AttentionShape, ComputeBackend, KeyBudget, Selection};
use shadowattn_models::attention::{
    head_scores, pilot_scores, PilotScores, Ranking, Sharing, Sparse,
};
use shadowattn_models::eval::{calibrate, windows};
use shadowattn_models::model::Attention;
use shadowattn_models::{Gguf, Model, Tokenizer};
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::calibration::{absmax_scale, BucketGrid, Calibration, RatioConfig};
use shadowattn_sparse_attn::cost_table::CostTable;
use shadowattn_sparse_attn::pilot::{head_scales, int8_accumulator_range, PilotOutput, PilotUnit};
use shadowattn_sparse_attn::select::Granularity;
use shadowattn_sparse_attn::setup::FUSED_HEADS;
use shadowattn_sparse_attn::shadow::{ShadowAttention, ShadowConfig};
use shadowattn_test_support::{smollm2_or_skip, target_dir};
use std::path::PathBuf;

const GPL: &str = "/usr/share/common-licenses/GPL-3";
const APACHE: &str = "/usr/share/common-licenses/Apache-2.0";
/// The relative error bound of the exp2 approximation in the group ranking's weights
/// (`shadowattn_hal::group`, step 2: "within 1.5·10⁻⁴ of 2^f").
const EXP2_ERROR: f64 = 1.5e-4;

/// A seeded chunk: head `h`'s queries are scaled by `1 + 0.6 h` (so pilot heads pick different
/// buckets and logit scales), and every head of a group prefers other keys.
fn chunk(q_heads: usize, kv_heads: usize, len: usize, dim: usize, seed: u64) -> [Vec<f32>; 3] {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let q: Vec<f32> = (0..q_heads * len * dim)
        .map(|i| next() * 2.0 * (1.0 + 0.6 * (i / (len * dim)) as f32))
        .collect();
    let k: Vec<f32> = (0..kv_heads * len * dim).map(|_| next() * 2.0).collect();
    let v: Vec<f32> = (0..kv_heads * len * dim).map(|_| next()).collect();
    [q, k, v]
}

fn grid_for(inputs: &AttentionInputs<'_>) -> BucketGrid {
    BucketGrid::new(absmax_scale(inputs.q()), absmax_scale(inputs.k()), 1, 0.5).unwrap()
}

/// Exact scores, the INT32 pilot and the INT8-output pilot (range from the chunk itself).
fn rankings(inputs: &AttentionInputs<'_>) -> [Ranking; 3] {
    let acc_range = int8_accumulator_range(*inputs).unwrap();
    [
        Ranking::Exact,
        Ranking::int32_pilot(grid_for(inputs)),
        Ranking::Pilot {
            grid: grid_for(inputs),
            output: PilotOutput::Int8 { acc_range },
            center_keys: false,
        },
    ]
}

/// Each query head's scores as f64 `[rows, keys]` and its logit scale, under `ranking`.
fn scored_heads(
    compute: &dyn ComputeBackend,
    inputs: &AttentionInputs<'_>,
    ranking: &Ranking,
) -> Vec<(Vec<f64>, f64)> {
    let s = inputs.shape();
    match ranking {
        Ranking::Exact => (0..s.q_heads)
            .map(|h| {
                let d = head_scores(inputs, h).into_iter().map(f64::from).collect();
                (d, f64::from(s.scale))
            })
            .collect(),
        Ranking::Pilot { grid, output, .. } => head_scales(grid, inputs)
            .iter()
            .enumerate()
            .map(|(h, hs)| {
                let d = match pilot_scores(compute, grid, *output, inputs, h, hs).unwrap() {
                    PilotScores::I32(v) => v.into_iter().map(f64::from).collect(),
                    PilotScores::I8(v) => v.into_iter().map(f64::from).collect(),
                };
                let (q, k) = grid.bucket(hs.bucket);
                (d, f64::from(output.score_scale(q, k)) * f64::from(s.scale))
            })
            .collect(),
    }
}

/// Checks every recorded selection of one layer against the f64 reference: the heads of a group
/// share one selection, of the group's mean ratio, whose every key's summed probability is at
/// least every other key's (within the fixed-point ranking's error), and the output is sparse
/// attention over it. Returns the largest violation seen (0 when none).
fn check_layer(
    compute: &dyn ComputeBackend,
    inputs: &AttentionInputs<'_>,
    ranking: &Ranking,
    ratios: &[f32],
    min_keys: usize,
    recorded: &[Selection],
    out: &[f32],
) -> f64 {
    let s = inputs.shape();
    let group = s.q_heads / s.kv_heads;
    assert_eq!(recorded.len(), s.q_heads);
    let heads = scored_heads(compute, inputs, ranking);
    let mut worst = 0.0f64;
    for g in 0..s.kv_heads {
        let members = g * group..(g + 1) * group;
        let sel = &recorded[members.start];
        for h in members.clone() {
            assert_eq!(&recorded[h], sel, "head {h} left its group {g}'s selection");
        }
        let ratio = ratios[members.clone()].iter().sum::<f32>() / group as f32;
        let budget = KeyBudget::Ratio { ratio, min_keys };
        for i in 0..s.q_len {
            let n = s.valid_keys(i);
            let row = sel.row(i);
            assert_eq!(
                row.len(),
                budget.keys_for(i, n).unwrap(),
                "group {g} row {i}"
            );
            let mut c = vec![0.0f64; n];
            for (d, sigma) in &heads[members.clone()] {
                let d = &d[i * s.kv_len..i * s.kv_len + n];
                let max = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = d.iter().map(|x| (sigma * (x - max)).exp()).collect();
                let z: f64 = e.iter().sum();
                for (c, e) in c.iter_mut().zip(&e) {
                    *c += e / z;
                }
            }
            let mut kept = vec![false; n];
            for &j in row {
                kept[j as usize] = true;
            }
            let lowest_kept = row.iter().map(|&j| c[j as usize]).fold(f64::MAX, f64::min);
            let best_dropped = (0..n)
                .filter(|&j| !kept[j])
                .map(|j| c[j])
                .fold(0.0, f64::max);
            // Weights are 2^20-fixed-point approximations of 2^x: each head's probability is off
            // by 2^-21 absolute (rounding) and relatively by the exp2 approximation, in the
            // weight and again in its normaliser, plus n·2^-21 (the normaliser's rounding).
            let unit = f64::from(1u32 << 20);
            let relative = 2.0 * EXP2_ERROR + n as f64 / (2.0 * unit) + 1e-6;
            let tol = group as f64 / unit + relative * (best_dropped + lowest_kept);
            worst = worst.max(best_dropped - lowest_kept - tol);
        }
    }
    // The output is the sparse attention of every head over its group's selection.
    let mut want = vec![0f32; out.len()];
    CpuBackend::new()
        .sparse_attention(*inputs, recorded, &mut want)
        .unwrap();
    let err = max_diff(&want, out);
    assert!(
        err < 1e-5,
        "output differs from attention over the group's selection by {err}"
    );
    worst
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}

fn label(ranking: &Ranking) -> &'static str {
    match ranking {
        Ranking::Exact => "exact",
        Ranking::Pilot {
            output: PilotOutput::Int32,
            ..
        } => "int8-pilot",
        Ranking::Pilot { .. } => "int8-out-pilot",
    }
}

fn attend(
    compute: &dyn ComputeBackend,
    inputs: AttentionInputs<'_>,
    ranking: Ranking,
    sharing: Sharing,
    ratios: &[f32],
    min_keys: usize,
) -> (Vec<Selection>, Vec<f32>) {
    let mut sparse = Sparse::new(compute, vec![ratios.to_vec()], ranking).with_sharing(sharing);
    sparse.min_keys = min_keys;
    sparse.recorded = Some(Vec::new());
    let mut out = vec![0f32; inputs.output_len()];
    sparse.attend(0, inputs, &mut out).unwrap();
    (sparse.recorded.unwrap().remove(0), out)
}

#[test]
fn a_group_shares_the_top_of_its_summed_probabilities() {
    let shape = AttentionShape::causal(6, 2, 96, 96, 16);
    let [q, k, v] = chunk(6, 2, 96, 16, 7);
    let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
    let ratios = [0.1, 0.15, 0.35, 0.2, 0.05, 0.3];
    let fast = FastCpuBackend::new(2).unwrap();
    let backends: [&dyn ComputeBackend; 2] = [&CpuBackend::new(), &fast];
    for compute in backends {
        for ranking in rankings(&inputs) {
            let (sel, out) = attend(
                compute,
                inputs,
                ranking.clone(),
                Sharing::PerGroup,
                &ratios,
                4,
            );
            let worst = check_layer(compute, &inputs, &ranking, &ratios, 4, &sel, &out);
            assert!(
                worst <= 0.0,
                "{} {}: a dropped key outranks a kept one by {worst} in summed probability",
                compute.name(),
                label(&ranking)
            );
        }
    }
}

#[test]
fn a_group_of_one_head_selects_and_attends_like_a_head() {
    let shape = AttentionShape::causal(3, 3, 80, 80, 16);
    let [q, k, v] = chunk(3, 3, 80, 16, 11);
    let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
    let ratios = [0.1, 0.25, 0.5];
    let fast = FastCpuBackend::new(2).unwrap();
    let backends: [&dyn ComputeBackend; 2] = [&CpuBackend::new(), &fast];
    for compute in backends {
        for ranking in rankings(&inputs) {
            for min_keys in [1, 4] {
                let head = attend(
                    compute,
                    inputs,
                    ranking.clone(),
                    Sharing::PerHead,
                    &ratios,
                    min_keys,
                );
                let group = attend(
                    compute,
                    inputs,
                    ranking.clone(),
                    Sharing::PerGroup,
                    &ratios,
                    min_keys,
                );
                let what = format!("{} {} min_keys {min_keys}", compute.name(), label(&ranking));
                for (h, (a, b)) in head.0.iter().zip(&group.0).enumerate() {
                    assert_eq!(a.rows(), b.rows(), "{what}: head {h}");
                    if let Some(i) = (0..a.rows()).find(|&i| a.row(i) != b.row(i)) {
                        panic!(
                            "{what}: head {h} row {i} keeps {:?} alone but {:?} as a group of one",
                            a.row(i),
                            b.row(i)
                        );
                    }
                    assert!(a == b, "{what}: head {h}");
                }
                // The golden backend's grouped attention is its per-head attention: bit for bit.
                // The fast one runs a group's heads as the rows of one register-blocked kernel,
                // which rounds differently: within float tolerance.
                if compute.name() == CpuBackend::new().name() {
                    assert!(
                        head.1
                            .iter()
                            .zip(&group.1)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{what}: outputs differ"
                    );
                } else {
                    let err = max_diff(&head.1, &group.1);
                    assert!(err < 1e-5, "{what}: outputs differ by {err}");
                }
            }
        }
    }
}

fn model_path() -> Option<PathBuf> {
    smollm2_or_skip(&target_dir(env!("CARGO_TARGET_TMPDIR")))
}

/// Group-shared sparse attention that checks every layer's selection as it goes.
struct Checked<'a> {
    sparse: Sparse<'a>,
    worst: f64,
}

impl Attention for Checked<'_> {
    fn attend(
        &mut self,
        layer: usize,
        inputs: AttentionInputs<'_>,
        out: &mut [f32],
    ) -> shadowattn_models::Result<()> {
        self.sparse.attend(layer, inputs, out)?;
        let recorded = &self.sparse.recorded.as_ref().unwrap()[layer];
        let w = check_layer(
            self.sparse.compute,
            &inputs,
            &self.sparse.ranking,
            &self.sparse.ratios[layer],
            self.sparse.min_keys,
            recorded,
            out,
        );
        self.worst = self.worst.max(w);
        Ok(())
    }
}

#[test]
fn smollm2_groups_share_the_top_of_their_summed_probabilities() {
    let Some(path) = model_path() else { return };
    let g = Gguf::open(&path).unwrap();
    let model = Model::from_gguf(&g).unwrap();
    let tokenizer = Tokenizer::from_gguf(&g).unwrap();
    drop(g);
    let ids = |p: &str| {
        tokenizer
            .encode(&std::fs::read_to_string(p).unwrap())
            .unwrap()
    };
    let w = windows(&ids(GPL), 128, tokenizer.bos, 1).unwrap();
    let c = model.config.clone();
    assert!(c.kv_heads < c.q_heads, "SmolLM2 is a GQA model");
    let cpu = FastCpuBackend::new(2).unwrap();
    let imp = vec![vec![1.0; c.q_heads]; c.layers];
    let calib = calibrate(
        &model,
        "smollm2",
        &cpu,
        &ids(APACHE)[..128],
        &imp,
        RatioConfig::default(),
        false,
    )
    .map(|c| Calibration {
        // The harness's rule (`Sparse::new`): the even one.
        budget: shadowattn_hal::BudgetRule::EVEN,
        ..c
    })
    .unwrap();
    // Per-head ratios that differ inside every group: the group keeps their mean.
    let ratios: Vec<Vec<f32>> = (0..c.layers)
        .map(|l| {
            (0..c.q_heads)
                .map(|h| 0.05 + 0.05 * ((l + h) % 5) as f32)
                .collect()
        })
        .collect();
    for ranking in [Ranking::Exact, Ranking::int32_pilot(calib.grid.clone())] {
        let mut sparse =
            Sparse::new(&cpu, ratios.clone(), ranking.clone()).with_sharing(Sharing::PerGroup);
        sparse.min_keys = 4;
        sparse.recorded = Some(Vec::new());
        let mut checked = Checked { sparse, worst: 0.0 };
        model.forward(&w[0], &mut checked).unwrap();
        assert_eq!(checked.sparse.recorded.as_ref().unwrap().len(), c.layers);
        assert!(
            checked.worst <= 0.0,
            "{}: a dropped key outranks a kept one by {} in summed probability",
            label(&ranking),
            checked.worst
        );
    }
}

/// Captures one layer's attention inputs.
struct Capture {
    layer: usize,
    qkv: [Vec<f32>; 3],
    shape: Option<AttentionShape>,
}

impl Attention for Capture {
    fn attend(
        &mut self,
        layer: usize,
        inputs: AttentionInputs<'_>,
        out: &mut [f32],
    ) -> shadowattn_models::Result<()> {
        if layer == self.layer {
            self.qkv = [
                inputs.q().to_vec(),
                inputs.k().to_vec(),
                inputs.v().to_vec(),
            ];
            self.shape = Some(inputs.shape());
        }
        Ok(CpuBackend::new().dense_attention(inputs, out)?)
    }
}

#[test]
fn smollm2_harness_groups_select_what_the_core_executor_selects() {
    let Some(path) = model_path() else { return };
    let g = Gguf::open(&path).unwrap();
    let model = Model::from_gguf(&g).unwrap();
    let tokenizer = Tokenizer::from_gguf(&g).unwrap();
    drop(g);
    let cpu = CpuBackend::new();
    let ids = tokenizer
        .encode(&std::fs::read_to_string(GPL).unwrap())
        .unwrap();
    let tokens = &ids[..96];
    let c = model.config.clone();
    // Per-head importance that differs inside groups: the group's ratio is a real mean.
    let imp: Vec<Vec<f64>> = (0..c.layers)
        .map(|l| (0..c.q_heads).map(|h| 1.0 + (l * h) as f64).collect())
        .collect();
    let calib = calibrate(
        &model,
        "smollm2",
        &cpu,
        tokens,
        &imp,
        RatioConfig::default(),
        false,
    )
    .map(|c| Calibration {
        // The harness's rule (`Sparse::new`): the even one.
        budget: shadowattn_hal::BudgetRule::EVEN,
        ..c
    })
    .unwrap();
    for layer in [0, 7, 29] {
        let mut cap = Capture {
            layer,
            qkv: Default::default(),
            shape: None,
        };
        model.forward(tokens, &mut cap).unwrap();
        let [q, k, v] = &cap.qkv;
        let inputs = AttentionInputs::new(q, k, v, cap.shape.unwrap()).unwrap();
        for output in [PilotOutput::Int32, PilotOutput::int8_of(&calib).unwrap()] {
            let spec = BankSpec {
                q_len: 96,
                kv_len: 96,
                head_dim: c.head_dim,
                fused: FUSED_HEADS.to_vec(),
                output,
                unit: PilotUnit::Head,
            };
            let bank = GraphBank::build(&cpu, &calib.grid, spec).unwrap();
            let config = ShadowConfig {
                granularity: Granularity::Group,
                ..ShadowConfig::default()
            };
            let mut core = ShadowAttention::new(
                bank,
                calib.clone(),
                &cpu,
                CostTable::uniform(&FUSED_HEADS),
                config,
            )
            .unwrap();
            let r = core.run_chunk(layer, inputs).unwrap();
            let ranking = Ranking::pilot(&calib, output);
            let mut sparse =
                Sparse::new(&cpu, calib.ratios.clone(), ranking).with_sharing(Sharing::PerGroup);
            sparse.recorded = Some(Vec::new());
            let mut out = vec![0f32; inputs.output_len()];
            sparse.attend(layer, inputs, &mut out).unwrap();
            let harness = &sparse.recorded.as_ref().unwrap()[layer];
            assert!(
                &r.selections == harness,
                "layer {layer} {output:?}: selections differ"
            );
            assert!(r.output == out, "layer {layer} {output:?}: outputs differ");
        }
    }
}
