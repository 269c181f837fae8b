//! Attention implementations the forward pass can use: dense, exact top-k (the oracle), the
//! shadowAttn INT8 pilot with bucketed static scales, and head/layer ablation for importance.

use crate::error::{ModelError, Result};
use crate::llama::{matmul_t, Attention};
use shadowattn_hal::{
    AttentionInputs, ComputeBackend, HeadsView, KeyBudget, ScoreData, ScoreMatrix, Selection,
};
use shadowattn_sparse_attn::calibration::{absmax_scale, BucketGrid};

/// Full softmax attention on a compute backend.
#[derive(Debug)]
pub struct Dense<'a> {
    /// The kernels.
    pub compute: &'a dyn ComputeBackend,
}

impl Attention for Dense<'_> {
    fn attend(&mut self, _: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        Ok(self.compute.dense_attention(inputs, out)?)
    }
}

/// How keys are ranked before the top-k.
#[derive(Clone, Debug, PartialEq)]
pub enum Ranking {
    /// Exact f32 scores q·k (the oracle).
    Exact,
    /// shadowAttn's pilot: Q and K of each head quantized to INT8 with the static scales of the
    /// grid bucket nearest to the head's own scales, INT32 accumulation.
    Int8Pilot(BucketGrid),
}

/// Sparse attention: each query row keeps the top `ratio` of its causal prefix (per layer and
/// head) under a [`Ranking`], then exact softmax·V over the kept keys.
#[derive(Debug)]
pub struct Sparse<'a> {
    /// The kernels.
    pub compute: &'a dyn ComputeBackend,
    /// Fraction of keys kept, `[layer][query head]`.
    pub ratios: Vec<Vec<f32>>,
    /// How keys are ranked.
    pub ranking: Ranking,
    /// Fewest keys any row keeps.
    pub min_keys: usize,
    /// Every selection made, `[layer][head]`, when recording (for recall measurements).
    pub recorded: Option<Vec<Vec<Selection>>>,
}

impl<'a> Sparse<'a> {
    /// Sparse attention with `ratios` and `ranking`.
    pub fn new(compute: &'a dyn ComputeBackend, ratios: Vec<Vec<f32>>, ranking: Ranking) -> Self {
        Sparse {
            compute,
            ratios,
            ranking,
            min_keys: 1,
            recorded: None,
        }
    }

    /// The same ratio for every head of `layers` layers of `heads` heads.
    pub fn uniform(layers: usize, heads: usize, ratio: f32) -> Vec<Vec<f32>> {
        vec![vec![ratio; heads]; layers]
    }
}

/// Exact scores `[rows, keys]` of query head `h` (f32 SGEMM).
pub fn head_scores(inputs: &AttentionInputs<'_>, h: usize) -> Vec<f32> {
    let s = inputs.shape;
    let d = s.head_dim;
    let kv = s.kv_head_of(h);
    let q = &inputs.q[h * s.q_len * d..][..s.q_len * d];
    let k = &inputs.k[kv * s.kv_len * d..][..s.kv_len * d];
    matmul_t(q, k, s.q_len, d, s.kv_len)
}

/// INT32 pilot scores of head `h` with static scales `(q_scale, k_scale)`: INT8 products summed
/// exactly (each partial sum of at most head_dim products of |q|,|k| ≤ 128 is an integer below
/// 2^24, so the f32 SGEMM is exact).
pub fn pilot_scores(
    compute: &dyn ComputeBackend,
    inputs: &AttentionInputs<'_>,
    h: usize,
    (q_scale, k_scale): (f32, f32),
) -> Result<Vec<i32>> {
    let s = inputs.shape;
    let d = s.head_dim;
    if d > 1024 {
        return Err(ModelError::Unsupported {
            detail: format!("head_dim {d}: INT8 pilot sums are exact in f32 up to 1024"),
        });
    }
    let kv = s.kv_head_of(h);
    let q = &inputs.q[h * s.q_len * d..][..s.q_len * d];
    let k = &inputs.k[kv * s.kv_len * d..][..s.kv_len * d];
    let q8 = compute.quantize_heads(HeadsView::new(q, 1, s.q_len, d)?, Some(&[q_scale]))?;
    let k8 = compute.quantize_heads(HeadsView::new(k, 1, s.kv_len, d)?, Some(&[k_scale]))?;
    let qf: Vec<f32> = q8.data.iter().map(|&v| f32::from(v)).collect();
    let kf: Vec<f32> = k8.data.iter().map(|&v| f32::from(v)).collect();
    Ok(matmul_t(&qf, &kf, s.q_len, d, s.kv_len)
        .into_iter()
        .map(|v| v as i32)
        .collect())
}

impl Attention for Sparse<'_> {
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        let s = inputs.shape;
        let ratios = self
            .ratios
            .get(layer)
            .filter(|r| r.len() == s.q_heads)
            .ok_or_else(|| ModelError::InvalidArgument {
                argument: "ratios",
                detail: format!("no ratios for layer {layer} with {} heads", s.q_heads),
            })?;
        let mut selections = Vec::with_capacity(s.q_heads);
        for (h, &ratio) in ratios.iter().enumerate() {
            let budget = KeyBudget::Ratio {
                ratio,
                min_keys: self.min_keys,
            };
            let sel = match &self.ranking {
                Ranking::Exact => {
                    let scores = head_scores(&inputs, h);
                    let m = ScoreMatrix::causal(
                        ScoreData::F32(&scores),
                        s.q_len,
                        s.kv_len,
                        s.q_offset,
                    )?;
                    self.compute.topk(m, budget)?
                }
                Ranking::Int8Pilot(grid) => {
                    let d = s.head_dim;
                    let kv = s.kv_head_of(h);
                    let qs = absmax_scale(&inputs.q[h * s.q_len * d..][..s.q_len * d]);
                    let ks = absmax_scale(&inputs.k[kv * s.kv_len * d..][..s.kv_len * d]);
                    let bucket = grid.bucket(grid.nearest(qs, ks));
                    let scores = pilot_scores(self.compute, &inputs, h, bucket)?;
                    let m = ScoreMatrix::causal(
                        ScoreData::I32(&scores),
                        s.q_len,
                        s.kv_len,
                        s.q_offset,
                    )?;
                    self.compute.topk(m, budget)?
                }
            };
            selections.push(sel);
        }
        self.compute.sparse_attention(inputs, &selections, out)?;
        if let Some(rec) = &mut self.recorded {
            if rec.len() <= layer {
                rec.resize(layer + 1, Vec::new());
            }
            rec[layer] = selections;
        }
        Ok(())
    }
}

/// Dense attention with one head's output (or a whole layer's) zeroed: the ablation that
/// measures importance.
#[derive(Debug)]
pub struct Ablated<'a> {
    /// The kernels.
    pub compute: &'a dyn ComputeBackend,
    /// The layer ablated.
    pub layer: usize,
    /// The head ablated; `None` zeroes the whole layer's attention.
    pub head: Option<usize>,
}

impl Attention for Ablated<'_> {
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        self.compute.dense_attention(inputs, out)?;
        if layer == self.layer {
            let per_head = inputs.shape.q_len * inputs.shape.head_dim;
            match self.head {
                Some(h) => out[h * per_head..(h + 1) * per_head].fill(0.0),
                None => out.fill(0.0),
            }
        }
        Ok(())
    }
}

/// Dense attention that, on the way, compares the INT8 pilot's top-k with the exact top-k of
/// the same size on every head: the recall of the pilot on real heads.
#[derive(Debug)]
pub struct RecallProbe<'a> {
    /// The kernels.
    pub compute: &'a dyn ComputeBackend,
    /// The bucket grid of the pilot.
    pub grid: BucketGrid,
    /// Fraction of keys kept.
    pub ratio: f32,
    /// Mean row recall of every head seen, `(layer, head, recall)`.
    pub recalls: Vec<(usize, usize, f64)>,
}

impl Attention for RecallProbe<'_> {
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        let s = inputs.shape;
        let d = s.head_dim;
        let budget = KeyBudget::Ratio {
            ratio: self.ratio,
            min_keys: 1,
        };
        for h in 0..s.q_heads {
            let exact = head_scores(&inputs, h);
            let m = ScoreMatrix::causal(ScoreData::F32(&exact), s.q_len, s.kv_len, s.q_offset)?;
            let want = self.compute.topk(m, budget)?;
            let kv = s.kv_head_of(h);
            let qs = absmax_scale(&inputs.q[h * s.q_len * d..][..s.q_len * d]);
            let ks = absmax_scale(&inputs.k[kv * s.kv_len * d..][..s.kv_len * d]);
            let pilot = pilot_scores(
                self.compute,
                &inputs,
                h,
                self.grid.bucket(self.grid.nearest(qs, ks)),
            )?;
            let m = ScoreMatrix::causal(ScoreData::I32(&pilot), s.q_len, s.kv_len, s.q_offset)?;
            let got = self.compute.topk(m, budget)?;
            let recall: f64 = (0..s.q_len)
                .map(|i| shadowattn_sparse_attn::metrics::topk_recall(got.row(i), want.row(i)))
                .sum::<f64>()
                / s.q_len as f64;
            self.recalls.push((layer, h, recall));
        }
        Ok(self.compute.dense_attention(inputs, out)?)
    }
}

/// The sparse-attention core itself (`ShadowAttention`: graph bank on an NPU backend, planner,
/// threaded executor) as the model's attention. A chunk that falls back to dense attention is an
/// error here: a perplexity labelled sparse must not be dense.
#[derive(Debug)]
pub struct Core<'c> {
    /// The executor.
    pub shadow: shadowattn_sparse_attn::shadow::ShadowAttention<'c>,
}

impl Attention for Core<'_> {
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        let r = self
            .shadow
            .run_chunk(layer, inputs)
            .map_err(|e| ModelError::InvalidArgument {
                argument: "npu",
                detail: e.to_string(),
            })?;
        if let Some(why) = r.fallback {
            return Err(ModelError::InvalidArgument {
                argument: "npu",
                detail: format!("layer {layer} fell back to dense attention: {why}"),
            });
        }
        out.copy_from_slice(&r.output);
        Ok(())
    }
}
