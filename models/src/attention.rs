//! Attention implementations the forward pass can use: dense, exact top-k (the oracle), the
//! shadowAttn INT8 pilot with bucketed static scales (either ranking selecting per query head or
//! per GQA group), and head/layer ablation for importance.

use crate::error::{ModelError, Result};
use crate::model::{matmul_t, Attention};
use shadowattn_cpu::reference::arith::{Golden, IntegerRules};
use shadowattn_hal::{
    AttentionInputs, BudgetRule, ChunkBudget, ComputeBackend, DType, GroupScores, KeyBudget,
    QuantParams, RankedRows, ScoreData, ScoreMatrix, Selection,
};
use shadowattn_sparse_attn::calibration::BucketGrid;
use shadowattn_sparse_attn::pilot::{
    head_scales, quantize_keys, quantize_queries, with_centered_keys, HeadScales, PilotOutput,
};
use shadowattn_sparse_attn::select::Granularity;

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
    /// grid bucket nearest to the head's own scales, INT32 accumulation, ranked on `output`: the
    /// accumulators themselves, or requantized to INT8 by the golden rule (the NPU's real
    /// output form; `shadowattn_cpu::reference::arith`).
    Pilot {
        /// The bucket grid.
        grid: BucketGrid,
        /// What the pilot outputs.
        output: PilotOutput,
        /// Whether each KV head's mean key is subtracted before K is quantized
        /// ([`shadowattn_sparse_attn::calibration::center_keys`]; the grid must be calibrated
        /// so).
        center_keys: bool,
    },
}

impl Ranking {
    /// The pilot on `grid` ranking on its exact INT32 accumulators.
    pub fn int32_pilot(grid: BucketGrid) -> Self {
        Ranking::Pilot {
            grid,
            output: PilotOutput::Int32,
            center_keys: false,
        }
    }

    /// The pilot of `calibration` (its grid and key centering) with `output`.
    pub fn pilot(
        calibration: &shadowattn_sparse_attn::calibration::Calibration,
        output: PilotOutput,
    ) -> Self {
        Ranking::Pilot {
            grid: calibration.grid.clone(),
            output,
            center_keys: calibration.center_keys,
        }
    }

    /// The inputs the ranking's pilot sees: `inputs`, or with centered keys (in `keys`).
    fn pilot_view<'a>(
        &self,
        inputs: &AttentionInputs<'a>,
        keys: &'a mut Vec<f32>,
    ) -> Result<AttentionInputs<'a>> {
        match self {
            Ranking::Pilot {
                center_keys: true, ..
            } => Ok(with_centered_keys(inputs, keys)?),
            _ => Ok(*inputs),
        }
    }
}

/// Which query heads share one key set per query row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Every query head ranks its own scores and keeps its own top `ratio` of each row (the
    /// core's `Granularity::Row`).
    PerHead,
    /// The query heads of a GQA group (those reading one KV head) keep one key set per row,
    /// ranked by the sum over the heads of their softmax probabilities
    /// ([`shadowattn_hal::group`]), with the mean of the heads' ratios as the group's ratio
    /// (the core's `Granularity::Group`).
    PerGroup,
}

/// Sparse attention: each query row keeps the top `ratio` of its causal prefix (per layer and
/// head, or per layer and GQA group: [`Sharing`]) under a [`Ranking`], then exact softmax·V
/// over the kept keys.
#[derive(Debug)]
pub struct Sparse<'a> {
    /// The kernels.
    pub compute: &'a dyn ComputeBackend,
    /// Fraction of keys kept, `[layer][query head]`.
    pub ratios: Vec<Vec<f32>>,
    /// How keys are ranked.
    pub ranking: Ranking,
    /// Whether each head or each GQA group selects.
    pub sharing: Sharing,
    /// Fewest keys any row keeps.
    pub min_keys: usize,
    /// How each unit's keys are spread over its rows.
    pub rule: BudgetRule,
    /// Every selection made, `[layer][query head]`, when recording (for recall measurements);
    /// with [`Sharing::PerGroup`] each head's is its group's.
    pub recorded: Option<Vec<Vec<Selection>>>,
    /// The (row, key) pairs attended and the valid ones, over every head of every call.
    pub pairs: KeptPairs,
}

/// (Row, key) pairs a sparse attention kept of the valid ones, summed over heads and calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeptPairs {
    /// Pairs attended.
    pub kept: u64,
    /// Valid (causal) pairs.
    pub valid: u64,
}

impl KeptPairs {
    /// The fraction kept.
    pub fn fraction(&self) -> f64 {
        self.kept as f64 / self.valid.max(1) as f64
    }

    /// Adds `selections` of one head each (`weight` heads per selection) over rows of `shape`.
    fn add(
        &mut self,
        shape: &shadowattn_hal::AttentionShape,
        selections: &[Selection],
        weight: usize,
    ) {
        let valid: u64 = (0..shape.q_len).map(|i| shape.valid_keys(i) as u64).sum();
        for sel in selections {
            self.kept += (sel.kept() * weight) as u64;
            self.valid += valid * weight as u64;
        }
    }
}

impl<'a> Sparse<'a> {
    /// Sparse attention with `ratios` and `ranking`, selecting per head ([`Sharing::PerHead`]),
    /// at least 1 key per row.
    pub fn new(compute: &'a dyn ComputeBackend, ratios: Vec<Vec<f32>>, ranking: Ranking) -> Self {
        Sparse {
            compute,
            ratios,
            ranking,
            sharing: Sharing::PerHead,
            min_keys: 1,
            rule: BudgetRule::EVEN,
            recorded: None,
            pairs: KeptPairs::default(),
        }
    }

    /// The same with `sharing`.
    pub fn with_sharing(mut self, sharing: Sharing) -> Self {
        self.sharing = sharing;
        self
    }

    /// The same with `rule`.
    pub fn with_rule(mut self, rule: BudgetRule) -> Self {
        self.rule = rule;
        self
    }

    /// The budget of a unit with mean `ratio`.
    fn budget(&self, ratio: f32) -> ChunkBudget {
        ChunkBudget {
            ratio,
            min_keys: self.min_keys,
            rule: self.rule,
        }
    }

    /// The same ratio for every head of `layers` layers of `heads` heads.
    pub fn uniform(layers: usize, heads: usize, ratio: f32) -> Vec<Vec<f32>> {
        vec![vec![ratio; heads]; layers]
    }
}

/// Exact scores `[rows, keys]` of query head `h` (f32 SGEMM).
pub fn head_scores(inputs: &AttentionInputs<'_>, h: usize) -> Vec<f32> {
    let s = inputs.shape();
    let k = inputs.k_head(s.kv_head_of(h));
    matmul_t(inputs.q_head(h), k, s.q_len, s.head_dim, s.kv_len)
}

/// One head's pilot scores in the pilot's output form.
#[derive(Clone, Debug, PartialEq)]
pub enum PilotScores {
    /// The INT32 accumulators.
    I32(Vec<i32>),
    /// Requantized INT8 scores.
    I8(Vec<i8>),
}

impl PilotScores {
    /// The scores as the HAL takes them.
    pub fn data(&self) -> ScoreData<'_> {
        match self {
            PilotScores::I32(v) => ScoreData::I32(v),
            PilotScores::I8(v) => ScoreData::I8(v),
        }
    }
}

/// Pilot scores of head `h` in the form of `output`: the core's bucket (`scales`) and INT8
/// quantization of Q and K, with the pilot's Q·Kᵀ computed on the host in place of the NPU. The
/// INT8 products are summed exactly: each partial sum of at most head_dim products of
/// |q|,|k| ≤ 128 is an integer below 2^24, so the f32 SGEMM equals the INT32 accumulator. An
/// INT8 output requantizes those by the golden rule, as the CPU backend's pilot graph does.
pub fn pilot_scores(
    compute: &dyn ComputeBackend,
    grid: &BucketGrid,
    output: PilotOutput,
    inputs: &AttentionInputs<'_>,
    h: usize,
    scales: &HeadScales,
) -> Result<PilotScores> {
    let s = inputs.shape();
    let d = s.head_dim;
    if d > 1024 {
        return Err(ModelError::Unsupported {
            detail: format!("head_dim {d}: INT8 pilot sums are exact in f32 up to 1024"),
        });
    }
    let (q_scale, k_scale) = grid.bucket(scales.bucket);
    let widen = |x: Vec<i8>| x.into_iter().map(f32::from).collect::<Vec<f32>>();
    let q = widen(quantize_queries(compute, inputs, h, q_scale)?);
    let k = widen(quantize_keys(compute, inputs, s.kv_head_of(h), k_scale)?);
    let acc: Vec<i32> = matmul_t(&q, &k, s.q_len, d, s.kv_len)
        .into_iter()
        .map(|v| v as i32)
        .collect();
    Ok(match output {
        PilotOutput::Int32 => PilotScores::I32(acc),
        PilotOutput::Int8 { .. } => {
            let out = QuantParams::symmetric(output.score_scale(q_scale, k_scale));
            PilotScores::I8(
                Golden
                    .requantize_accumulators(&acc, q_scale * k_scale, out, DType::I8)
                    .into_iter()
                    .map(|v| v as i8)
                    .collect(),
            )
        }
    })
}

impl Sparse<'_> {
    /// One selection per query head, each from the head's own scores.
    fn select_per_head(
        &self,
        inputs: &AttentionInputs<'_>,
        ratios: &[f32],
    ) -> Result<Vec<Selection>> {
        let s = inputs.shape();
        let mut selections = Vec::with_capacity(s.q_heads);
        let mut keys = Vec::new();
        let pilot_in = self.ranking.pilot_view(inputs, &mut keys)?;
        let scales = match &self.ranking {
            Ranking::Pilot { grid, .. } => head_scales(grid, &pilot_in),
            Ranking::Exact => Vec::new(),
        };
        for (h, &ratio) in ratios.iter().enumerate() {
            let budget = self.budget(ratio);
            let sel = match &self.ranking {
                Ranking::Exact => {
                    let scores = head_scores(inputs, h);
                    let m = ScoreMatrix::for_chunk(ScoreData::F32(&scores), &s)?;
                    self.select_head(m, s.scale, &budget)?
                }
                Ranking::Pilot { grid, output, .. } => {
                    let scores =
                        pilot_scores(self.compute, grid, *output, &pilot_in, h, &scales[h])?;
                    let (q_scale, k_scale) = grid.bucket(scales[h].bucket);
                    let sigma = shadowattn_hal::group::logit_scale(
                        output.score_scale(q_scale, k_scale),
                        s.scale,
                    );
                    let m = ScoreMatrix::for_chunk(scores.data(), &s)?;
                    self.select_head(m, sigma, &budget)?
                }
            };
            selections.push(sel);
        }
        Ok(selections)
    }

    /// One head's keys from its scores `m` (softmax logits `m · logit_scale`), by the core's
    /// per-row rule ([`shadowattn_sparse_attn::select::select`]).
    fn select_head(
        &self,
        m: ScoreMatrix<'_>,
        logit_scale: f32,
        budget: &ChunkBudget,
    ) -> Result<Selection> {
        let rule = shadowattn_sparse_attn::select::SelectionRule {
            ratio: budget.ratio,
            min_keys: budget.min_keys,
            granularity: Granularity::Row,
            budget: budget.rule,
        };
        Ok(shadowattn_sparse_attn::select::select(
            self.compute,
            m,
            logit_scale,
            rule,
        )?)
    }

    /// One selection per KV head, shared by the query heads of its group: the top keys by the
    /// sum of the heads' softmax probabilities, each head's scores turned into logits by its
    /// logit scale (the attention scale for exact scores; the bucket's score scale
    /// ([`PilotOutput::score_scale`]) times it for the pilot's).
    fn select_per_group(
        &self,
        inputs: &AttentionInputs<'_>,
        ratios: &[f32],
    ) -> Result<Vec<Selection>> {
        let s = inputs.shape();
        let group = s.q_heads / s.kv_heads;
        let mut keys = Vec::new();
        let pilot_in = self.ranking.pilot_view(inputs, &mut keys)?;
        let scales = match &self.ranking {
            Ranking::Pilot { grid, .. } => head_scales(grid, &pilot_in),
            Ranking::Exact => Vec::new(),
        };
        let mut shared = Vec::with_capacity(s.kv_heads);
        for g in 0..s.kv_heads {
            let heads = g * group..(g + 1) * group;
            // The mean as the core's executor takes it (f32 sum), so both keep the same counts.
            let ratio = ratios[heads.clone()].iter().sum::<f32>() / group as f32;
            let budget = self.budget(ratio);
            let sel = match &self.ranking {
                Ranking::Exact => {
                    let scores: Vec<Vec<f32>> = heads.map(|h| head_scores(inputs, h)).collect();
                    let matrices = scores
                        .iter()
                        .map(|d| ScoreMatrix::for_chunk(ScoreData::F32(d), &s))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    let logit_scales = vec![s.scale; group];
                    self.compute
                        .select_group(&GroupScores::new(matrices, logit_scales)?, &budget)?
                }
                Ranking::Pilot { grid, output, .. } => {
                    let mut scores = Vec::with_capacity(group);
                    let mut logit_scales = Vec::with_capacity(group);
                    for h in heads {
                        scores.push(pilot_scores(
                            self.compute,
                            grid,
                            *output,
                            &pilot_in,
                            h,
                            &scales[h],
                        )?);
                        let (q_scale, k_scale) = grid.bucket(scales[h].bucket);
                        logit_scales.push(shadowattn_hal::group::logit_scale(
                            output.score_scale(q_scale, k_scale),
                            s.scale,
                        ));
                    }
                    let matrices = scores
                        .iter()
                        .map(|d| ScoreMatrix::for_chunk(d.data(), &s))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    self.compute
                        .select_group(&GroupScores::new(matrices, logit_scales)?, &budget)?
                }
            };
            shared.push(sel);
        }
        Ok(shared)
    }
}

impl Attention for Sparse<'_> {
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        let s = inputs.shape();
        let ratios = self
            .ratios
            .get(layer)
            .filter(|r| r.len() == s.q_heads)
            .ok_or_else(|| ModelError::InvalidArgument {
                argument: "ratios",
                detail: format!("no ratios for layer {layer} with {} heads", s.q_heads),
            })?;
        let selections = match self.sharing {
            Sharing::PerHead => {
                let selections = self.select_per_head(&inputs, ratios)?;
                self.compute.sparse_attention(inputs, &selections, out)?;
                self.pairs.add(&s, &selections, 1);
                selections
            }
            Sharing::PerGroup => {
                let shared = self.select_per_group(&inputs, ratios)?;
                self.compute
                    .sparse_attention_grouped(inputs, &shared, out)?;
                self.pairs.add(&s, &shared, s.q_heads / s.kv_heads);
                if self.recorded.is_none() {
                    return Ok(());
                }
                shadowattn_hal::group::per_head(&inputs, &shared)
            }
        };
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
            let per_head = inputs.shape().q_len * inputs.shape().head_dim;
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
    /// What the pilot outputs.
    pub output: PilotOutput,
    /// Whether the pilot centers keys (as [`Ranking::Pilot`]).
    pub center_keys: bool,
    /// Fraction of keys kept.
    pub ratio: f32,
    /// Mean row recall of every head seen, `(layer, head, recall)`.
    pub recalls: Vec<(usize, usize, f64)>,
}

impl Attention for RecallProbe<'_> {
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        let s = inputs.shape();
        let budget = KeyBudget::Ratio {
            ratio: self.ratio,
            min_keys: 1,
        };
        let ranking = Ranking::Pilot {
            grid: self.grid.clone(),
            output: self.output,
            center_keys: self.center_keys,
        };
        let mut keys = Vec::new();
        let pilot_in = ranking.pilot_view(&inputs, &mut keys)?;
        for (h, scales) in head_scales(&self.grid, &pilot_in).iter().enumerate() {
            let exact = head_scores(&inputs, h);
            let m = ScoreMatrix::for_chunk(ScoreData::F32(&exact), &s)?;
            let want = self.compute.topk(m, budget)?;
            let pilot = pilot_scores(self.compute, &self.grid, self.output, &pilot_in, h, scales)?;
            let got = self
                .compute
                .topk(ScoreMatrix::for_chunk(pilot.data(), &s)?, budget)?;
            let recall: f64 = (0..s.q_len)
                .map(|i| shadowattn_sparse_attn::metrics::topk_recall(got.row(i), want.row(i)))
                .sum::<f64>()
                / s.q_len as f64;
            self.recalls.push((layer, h, recall));
        }
        Ok(self.compute.dense_attention(inputs, out)?)
    }
}

/// Dense attention that, on the way, measures the attention mass each selecting unit (a query
/// head, or a GQA group with [`Sharing::PerGroup`]) keeps at every ratio of the allocation grid
/// (`shadowattn_sparse_attn::allocation`): per query row, the probabilities (exact scores; a
/// group's are its heads' mean) of the keys the budget rule keeps at that ratio (its anchors and
/// best ranked keys, as many as [`ChunkBudget::plan`] gives the row), averaged over rows.
#[derive(Debug)]
pub struct MassProbe<'a> {
    /// The kernels.
    pub compute: &'a dyn ComputeBackend,
    /// Whether each head or each GQA group selects.
    pub sharing: Sharing,
    /// Fewest keys any row keeps.
    pub min_keys: usize,
    /// How each unit's keys are spread over its rows.
    pub rule: BudgetRule,
    /// Sums of kept mass `[layer][unit][grid point]` over the rows seen so far.
    pub sums: Vec<Vec<Vec<f64>>>,
    /// Rows seen per layer.
    pub rows: Vec<usize>,
}

impl MassProbe<'_> {
    /// The mean kept-mass curves `[layer][unit]`.
    pub fn curves(&self) -> Vec<Vec<shadowattn_sparse_attn::allocation::MassCurve>> {
        self.sums
            .iter()
            .zip(&self.rows)
            .map(|(units, &n)| {
                units
                    .iter()
                    .map(|c| c.iter().map(|m| m / n.max(1) as f64).collect())
                    .collect()
            })
            .collect()
    }
}

/// Row-wise softmax probabilities of `scores` `[rows, keys]` times `scale` over each row's
/// causal prefix of `valid(i)` keys (the rest 0).
fn probabilities(
    scores: &[f32],
    keys: usize,
    scale: f32,
    valid: impl Fn(usize) -> usize,
) -> Vec<f64> {
    let mut p = vec![0.0; scores.len()];
    for (i, (row, out)) in scores
        .chunks_exact(keys)
        .zip(p.chunks_exact_mut(keys))
        .enumerate()
    {
        let n = valid(i);
        let logits: Vec<f64> = row[..n].iter().map(|&x| f64::from(x * scale)).collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        for (o, l) in out.iter_mut().zip(&logits) {
            *o = (l - max).exp() / sum;
        }
    }
    p
}

impl Attention for MassProbe<'_> {
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        use shadowattn_sparse_attn::allocation::{grid_ratio, STEPS};
        let s = inputs.shape();
        let valid = |i: usize| {
            if s.causal {
                (s.q_offset + i + 1).min(s.kv_len)
            } else {
                s.kv_len
            }
        };
        let probs: Vec<Vec<f64>> = (0..s.q_heads)
            .map(|h| probabilities(&head_scores(&inputs, h), s.kv_len, s.scale, valid))
            .collect();
        let units: Vec<Vec<f64>> = match self.sharing {
            Sharing::PerHead => probs,
            Sharing::PerGroup => {
                let group = s.q_heads / s.kv_heads;
                probs
                    .chunks(group)
                    .map(|heads| {
                        (0..heads[0].len())
                            .map(|j| heads.iter().map(|p| p[j]).sum::<f64>() / group as f64)
                            .collect()
                    })
                    .collect()
            }
        };
        if self.sums.len() <= layer {
            self.sums.resize(layer + 1, Vec::new());
            self.rows.resize(layer + 1, 0);
        }
        let sums = &mut self.sums[layer];
        sums.resize(units.len(), vec![0.0; STEPS]);
        for (unit, p) in units.iter().enumerate() {
            let rows = RankedRows::from_rows(
                (0..s.q_len).map(|i| &p[i * s.kv_len..i * s.kv_len + valid(i)]),
                self.rule.anchors,
                true,
            )?;
            for (g, slot) in sums[unit].iter_mut().enumerate() {
                let budget = ChunkBudget {
                    ratio: grid_ratio(g + 1),
                    min_keys: self.min_keys,
                    rule: self.rule,
                };
                let kept = budget.plan(&rows)?;
                *slot += kept
                    .iter()
                    .enumerate()
                    .map(|(i, &k)| rows.kept_mass(i, k).unwrap_or(0.0))
                    .sum::<f64>();
            }
        }
        self.rows[layer] += s.q_len;
        Ok(self.compute.dense_attention(inputs, out)?)
    }
}

/// The sparse-attention core itself (`ShadowAttention`: graph bank on an NPU backend, planner,
/// threaded executor) as the model's attention. A chunk that falls back to dense attention is an
/// error here: a perplexity labelled sparse must not be dense.
#[derive(Debug)]
pub struct CoreAttention<'c> {
    /// The executor.
    pub shadow: shadowattn_sparse_attn::shadow::ShadowAttention<'c>,
    /// The (row, key) pairs attended and the valid ones, over every head of every chunk.
    pub pairs: KeptPairs,
}

impl<'c> CoreAttention<'c> {
    /// The core for prefill chunks of `window` rows, assembled by
    /// [`shadowattn_sparse_attn::setup::CoreSetup`]: `calibration`'s graph bank (its INT8
    /// output) compiled on `npu`, two CPU workers on `compute`, uniform stage costs, selections
    /// shared by `granularity`, at least `min_keys` keys per row, the keys ranked by `pilot`.
    pub fn build(
        npu: &dyn shadowattn_hal::NpuBackend,
        compute: &'c dyn ComputeBackend,
        calibration: shadowattn_sparse_attn::calibration::Calibration,
        window: usize,
        (granularity, pilot): (Granularity, shadowattn_sparse_attn::setup::PilotKind),
        min_keys: usize,
    ) -> Result<Self> {
        use shadowattn_sparse_attn::setup::CoreSetup;
        use shadowattn_sparse_attn::shadow::ShadowConfig;
        let output = PilotOutput::int8_of(&calibration)?;
        let config = ShadowConfig {
            cpu_workers: 2,
            min_keys,
            granularity,
            ..ShadowConfig::default()
        };
        let core = CoreSetup::new(npu, calibration, window, window)
            .pilot_output(output)
            .config(config)
            .pilot(pilot)
            .build(compute)?;
        Ok(CoreAttention {
            pairs: KeptPairs::default(),
            shadow: core.shadow,
        })
    }
}

impl CoreAttention<'_> {
    /// The pilot's launch unit (`h`, `g6`, `g6r`: see
    /// [`shadowattn_sparse_attn::pilot::PilotUnit::label`]).
    pub fn pilot_label(&self) -> String {
        self.shadow
            .bank()
            .map_or_else(|| "no bank".into(), |b| b.spec().unit.label())
    }
}

impl Attention for CoreAttention<'_> {
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        let r = self.shadow.run_chunk(layer, inputs)?;
        if let Some(why) = r.fallback() {
            return Err(ModelError::InvalidArgument {
                argument: "npu",
                detail: format!("layer {layer} fell back to dense attention: {why}"),
            });
        }
        out.copy_from_slice(&r.output);
        self.pairs.add(&inputs.shape(), &r.selections, 1);
        Ok(())
    }
}
