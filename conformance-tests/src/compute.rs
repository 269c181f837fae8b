//! Conformance of the compute-kernel trait (`ComputeBackend`): one list of cases, the same for
//! every kernel backend (CPU, OpenCL…), judged against the golden CPU kernels. Quantization and
//! top-k must match exactly; attention within an accumulation-aware float tolerance; bad input
//! must be refused with the right typed error.
//!
//! # Numerical policy the cases pin down
//! - NaN or ±Inf in Q, K or V, or in values to quantize: `InvalidValue`, never a result.
//! - NaN among the scores a row may select from: `InvalidValue`. ±Inf and ±0 are ordered by IEEE
//!   total order (+Inf first, then … +0, −0 …, −Inf last).
//! - Equal scores (including a row of all-equal scores): the lower key indices are kept.
//! - A causal row always sees at least key 0, so no row has an empty prefix; `KeyBudget::Fixed(k)`
//!   with k beyond a row's prefix is `InvalidArgument`, `KeyBudget::Ratio` keeps the whole prefix.
//! - A chunk budget (`ChunkBudget`: per-row shares that follow the attention, anchors, floors,
//!   caps) selects exactly the keys the contract's own rule (`shadowattn_hal::budget`) selects
//!   on the group's ranking, from INT8 heads or from an f16 ranking.

use crate::cases::Group;
use crate::expectations::Suite;
use crate::runner::{compare, result_of, CaseResult, Judged, Outcome, Status};
use crate::tolerance::{Tiers, Tolerance};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    Anchors, AttentionInputs, AttentionShape, BudgetRule, ChunkBudget, ComputeBackend, DType,
    GroupScores, HalError, HeadsView, KeyBudget, RowSplit, ScoreData, ScoreMatrix, Selection,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// Element type of a top-k case's scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreKind {
    /// f32 scores (with ±Inf and ±0 sprinkled in).
    F32,
    /// INT32 accumulators.
    I32,
    /// Requantized INT8 scores.
    I8,
}

/// Bad input that must be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadInput {
    /// NaN in Q (dense attention).
    NanInQ,
    /// +Inf in V (sparse attention).
    InfInV,
    /// An output buffer of the wrong length.
    OutputLength,
    /// A selected key beyond its row's causal prefix.
    KeyOutsidePrefix,
    /// Fewer selections than query heads.
    MissingSelection,
    /// NaN inside a row's prefix of scores.
    NanScore,
    /// `KeyBudget::Fixed(k)` with k beyond a row's prefix.
    FixedKBeyondPrefix,
    /// A zero quantization scale.
    ZeroScale,
    /// Inf among values to quantize.
    InfToQuantize,
}

/// What a compute case runs.
#[derive(Clone, Debug)]
pub enum ComputeCaseKind {
    /// Per-head INT8 quantization, with given scales or computed ones.
    Quantize {
        /// Heads, rows, dim.
        dims: (usize, usize, usize),
        /// Values' amplitude.
        amplitude: f32,
        /// Given scales (some values saturate) instead of max-abs scales.
        given_scales: bool,
    },
    /// Top-k per row.
    TopK {
        /// Score element type.
        kind: ScoreKind,
        /// Rows and columns.
        rows: usize,
        /// Columns (keys).
        cols: usize,
        /// Causal placement (rows at the end of the keys).
        causal: bool,
        /// Distinct score levels (few levels make many ties; 1 makes every score equal).
        levels: u32,
        /// The budget.
        budget: KeyBudget,
    },
    /// A GQA group's keys under a chunk budget: `heads` INT8 heads through `select_group`, or
    /// (with `ranked`) their ranking rounded to f16 through `select`.
    Select {
        /// The rule.
        rule: BudgetRule,
        /// Heads of the group.
        heads: usize,
        /// Whether the backend gets the f16 ranking instead of the heads' scores.
        ranked: bool,
    },
    /// Dense attention.
    Dense {
        /// The chunk.
        shape: AttentionShape,
        /// The size of the scaled logits.
        logits: Logits,
    },
    /// Sparse attention over the exact top-k at `ratio`.
    Sparse {
        /// The chunk.
        shape: AttentionShape,
        /// Fraction of keys kept per row.
        ratio: f32,
        /// The size of the scaled logits.
        logits: Logits,
    },
    /// Sparse attention where each GQA group's heads share one selection (the group's exact
    /// top-k at `ratio`), through `sparse_attention_grouped`: the core's default path.
    SparseGrouped {
        /// The chunk.
        shape: AttentionShape,
        /// Fraction of keys kept per row.
        ratio: f32,
        /// The size of the scaled logits.
        logits: Logits,
    },
    /// Bad input that must be a typed error.
    Rejects(BadInput),
}

/// One compute-kernel conformance case.
#[derive(Clone, Debug)]
pub struct ComputeCase {
    /// Unique, readable name.
    pub name: String,
    /// `Op` for kernels, `Behaviour` for refusals.
    pub group: Group,
    /// What it runs.
    pub kind: ComputeCaseKind,
}

fn shape(q_heads: usize, kv_heads: usize, q_len: usize, kv_len: usize, d: usize) -> AttentionShape {
    AttentionShape::causal(q_heads, kv_heads, q_len, kv_len, d)
}

/// The chunks every attention case runs on, by name.
fn attention_shapes() -> Vec<(&'static str, AttentionShape)> {
    let mut non_causal = shape(4, 1, 5, 40, 16);
    non_causal.causal = false;
    let mut mid_offset = shape(2, 2, 6, 50, 32);
    mid_offset.q_offset = 10;
    vec![
        ("gqa_9x3_q16_k128_d64", shape(9, 3, 16, 128, 64)),
        ("mha_square_causal_d32", shape(2, 2, 8, 8, 32)),
        ("non_causal_mqa", non_causal),
        ("causal_rows_mid_prefix", mid_offset),
        ("head_dim_1", shape(2, 1, 4, 9, 1)),
        ("head_dim_128_odd_lengths", shape(2, 1, 7, 131, 128)),
        ("decode_row", shape(3, 1, 1, 300, 64)),
    ]
}

/// The size of an attention case's scaled logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Logits {
    /// Q and K uniform in [−2, 2): logits of a few units.
    Noise,
    /// Q and K in [−12, 12): a row's largest logit is about 100, past 88.7 where exp overflows
    /// f32 without the max shift; what trained models reach.
    Large,
    /// Q and K in [−40, 40): logits over 1,000.
    Extreme,
    /// Noise logits shifted by −150 (Q and K share one component of opposite signs): every exp
    /// underflows f32 without the max shift, and a running maximum started at 0 instead of −∞
    /// loses every weight.
    AllNegative,
}

impl Logits {
    /// Amplitude of Q and K (their entries are uniform in [−a, a)).
    fn qk_amplitude(self) -> f32 {
        match self {
            Logits::Noise | Logits::AllNegative => 2.0,
            Logits::Large => 12.0,
            Logits::Extreme => 40.0,
        }
    }

    /// What every scaled logit is shifted by.
    fn shift(self) -> f32 {
        match self {
            Logits::AllNegative => -150.0,
            _ => 0.0,
        }
    }

    /// The label in case names.
    fn label(self) -> &'static str {
        match self {
            Logits::Noise => "",
            Logits::Large => "_large_logits",
            Logits::Extreme => "_extreme_logits",
            Logits::AllNegative => "_negative_logits",
        }
    }
}

/// The logits beyond noise every large-logit case runs.
const LARGE_LOGITS: [Logits; 3] = [Logits::Large, Logits::Extreme, Logits::AllNegative];

/// The chunks the large-logit cases run on: GQA with a long prefix, rows in mid-prefix, a
/// non-causal chunk, and a single decode row.
const LARGE_LOGIT_SHAPES: [&str; 4] = [
    "gqa_9x3_q16_k128_d64",
    "causal_rows_mid_prefix",
    "non_causal_mqa",
    "decode_row",
];

/// Every compute case, in a fixed order.
pub fn compute_cases() -> Vec<ComputeCase> {
    let mut cases = Vec::new();
    let op = |name: String, kind| ComputeCase {
        name,
        group: Group::Op,
        kind,
    };
    for (name, dims, amplitude, given_scales) in [
        ("quantize_single_value", (1, 1, 1), 1.0, false),
        ("quantize_4x16x64_maxabs", (4, 16, 64), 3.0, false),
        ("quantize_4x16x64_given_scales", (4, 16, 64), 3.0, true),
        ("quantize_3x7x33_tiny_values", (3, 7, 33), 1e-3, false),
    ] {
        cases.push(op(
            name.into(),
            ComputeCaseKind::Quantize {
                dims,
                amplitude,
                given_scales,
            },
        ));
    }
    for kind in [ScoreKind::F32, ScoreKind::I32, ScoreKind::I8] {
        for (label, causal, levels, budget) in [
            (
                "ratio20_causal",
                true,
                1000,
                KeyBudget::Ratio {
                    ratio: 0.2,
                    min_keys: 4,
                },
            ),
            (
                "ratio20_ties",
                true,
                5,
                KeyBudget::Ratio {
                    ratio: 0.2,
                    min_keys: 4,
                },
            ),
            (
                "all_equal_scores",
                true,
                1,
                KeyBudget::Ratio {
                    ratio: 0.3,
                    min_keys: 1,
                },
            ),
            ("fixed1_non_causal", false, 1000, KeyBudget::Fixed(1)),
            (
                "ratio1_keeps_all",
                true,
                1000,
                KeyBudget::Ratio {
                    ratio: 1.0,
                    min_keys: 1,
                },
            ),
        ] {
            cases.push(op(
                format!("topk_{}_{label}", format!("{kind:?}").to_lowercase()),
                ComputeCaseKind::TopK {
                    kind,
                    rows: 16,
                    cols: 200,
                    causal,
                    levels,
                    budget,
                },
            ));
        }
    }
    for (label, rule) in select_rules() {
        for (heads, ranked) in [(1, false), (3, false), (3, true)] {
            let from = if ranked { "f16_ranking" } else { "int8" };
            cases.push(op(
                format!("select_{label}_{heads}heads_{from}"),
                ComputeCaseKind::Select {
                    rule,
                    heads,
                    ranked,
                },
            ));
        }
    }
    for (name, s) in attention_shapes() {
        cases.push(op(
            format!("dense_{name}"),
            ComputeCaseKind::Dense {
                shape: s,
                logits: Logits::Noise,
            },
        ));
        for ratio in [0.05f32, 0.2, 1.0] {
            cases.push(op(
                format!("sparse_{}pct_{name}", (ratio * 100.0).round()),
                ComputeCaseKind::Sparse {
                    shape: s,
                    ratio,
                    logits: Logits::Noise,
                },
            ));
        }
    }
    for (name, s) in attention_shapes() {
        for logits in [Logits::Noise, Logits::Large, Logits::AllNegative] {
            cases.push(op(
                format!("sparse_grouped_20pct{}_{name}", logits.label()),
                ComputeCaseKind::SparseGrouped {
                    shape: s,
                    ratio: 0.2,
                    logits,
                },
            ));
        }
    }
    for logits in LARGE_LOGITS {
        for (name, s) in attention_shapes()
            .into_iter()
            .filter(|(name, _)| LARGE_LOGIT_SHAPES.contains(name))
        {
            let label = logits.label();
            cases.push(op(
                format!("dense{label}_{name}"),
                ComputeCaseKind::Dense { shape: s, logits },
            ));
            cases.push(op(
                format!("sparse_20pct{label}_{name}"),
                ComputeCaseKind::Sparse {
                    shape: s,
                    ratio: 0.2,
                    logits,
                },
            ));
        }
    }
    for bad in [
        BadInput::NanInQ,
        BadInput::InfInV,
        BadInput::OutputLength,
        BadInput::KeyOutsidePrefix,
        BadInput::MissingSelection,
        BadInput::NanScore,
        BadInput::FixedKBeyondPrefix,
        BadInput::ZeroScale,
        BadInput::InfToQuantize,
    ] {
        cases.push(ComputeCase {
            name: format!("rejects_{bad:?}").to_lowercase(),
            group: Group::Behaviour,
            kind: ComputeCaseKind::Rejects(bad),
        });
    }
    cases
}

/// Seeded uniform values in [−amp, amp).
pub fn seeded_values(seed: u64, n: usize, amp: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * amp
        })
        .collect()
}

/// Seeded Q, K (logits of size `logits`) and V (amplitude 1) of a chunk. A shift sets the first
/// component of every Q row to −c and of every K row to c, with c²·scale the shift.
fn qkv(s: &AttentionShape, seed: u64, logits: Logits) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let a = logits.qk_amplitude();
    let mut q = seeded_values(seed, s.q_heads * s.q_len * s.head_dim, a);
    let mut k = seeded_values(seed + 1, s.kv_heads * s.kv_len * s.head_dim, a);
    let shift = logits.shift();
    if shift != 0.0 {
        let c = (shift.abs() / s.scale).sqrt();
        q.chunks_exact_mut(s.head_dim).for_each(|row| row[0] = -c);
        k.chunks_exact_mut(s.head_dim).for_each(|row| row[0] = c);
    }
    (
        q,
        k,
        seeded_values(seed + 2, s.kv_heads * s.kv_len * s.head_dim, 1.0),
    )
}

fn failed(why: impl Into<String>) -> Outcome {
    Outcome::failed(why)
}

/// One compared output: tiers, golden values, the type a backend writes and the row length.
fn output(tiers: Tiers, expected: Vec<f64>, dtype: DType, row_len: usize) -> Judged {
    Judged {
        tiers,
        expected,
        dtype,
        row_len,
    }
}

fn as_f64<T: Copy + Into<f64>>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&x| x.into()).collect()
}

fn quantize(
    backend: &dyn ComputeBackend,
    dims: (usize, usize, usize),
    amp: f32,
    given: bool,
) -> Outcome {
    let (heads, rows, dim) = dims;
    let mut x = seeded_values(7, heads * rows * dim, amp);
    // Head 0's scale is exactly 2^-5 (its max is 127·2^-5), so ±0.5 and ±2.5 steps are exact
    // half-way points that must round away from zero; a zero head takes scale 1.
    let step = 1.0 / 32.0;
    for (i, v) in [127.0, 2.5, -2.5, 0.5, -0.5, 1.5, -126.5]
        .into_iter()
        .enumerate()
    {
        if i < rows * dim {
            x[i] = v * step;
        }
    }
    if heads > 2 {
        x[rows * dim..2 * rows * dim]
            .iter_mut()
            .for_each(|v| *v = 0.0);
    }
    let view = HeadsView::new(&x, heads, rows, dim).expect("case dims are valid");
    // Given scales: 2^-5 for head 0, then scales below max/127 so that some values saturate.
    let scales: Vec<f32> = (0..heads)
        .map(|h| {
            if h == 0 {
                step
            } else {
                amp / (90.0 + 7.0 * h as f32)
            }
        })
        .collect();
    let scales = given.then_some(scales.as_slice());
    let want = CpuBackend::new()
        .quantize_heads(view, scales)
        .expect("golden");
    let judged = [
        output(
            Tiers::single(Tolerance::Exact),
            as_f64(want.data()),
            DType::I8,
            dim,
        ),
        output(
            Tiers::single(Tolerance::Exact),
            as_f64(want.scales()),
            DType::F32,
            1,
        ),
    ];
    match backend.quantize_heads(view, scales) {
        Ok(got) => compare(&judged, &[as_f64(got.data()), as_f64(got.scales())]),
        Err(e) => failed(format!("quantize_heads failed: {e}")),
    }
}

fn topk(
    backend: &dyn ComputeBackend,
    kind: ScoreKind,
    (rows, cols): (usize, usize),
    causal: bool,
    levels: u32,
    budget: KeyBudget,
) -> Outcome {
    let raw = seeded_values(11, rows * cols, 1.0);
    let lv = levels as f32;
    let f: Vec<f32> = raw
        .iter()
        .enumerate()
        .map(|(i, x)| match (levels > 1, i % 53) {
            (true, 3) => f32::INFINITY,
            (true, 4) => f32::NEG_INFINITY,
            (true, 5) => -0.0,
            (true, 6) => 0.0,
            _ if levels <= 1 => 0.5,
            _ => ((x * lv).floor() / lv).max(-1.0),
        })
        .collect();
    let i32s: Vec<i32> = f
        .iter()
        .map(|x| (x.clamp(-1.0, 1.0) * 1e6) as i32)
        .collect();
    let i8s: Vec<i8> = f
        .iter()
        .map(|x| (x.clamp(-1.0, 1.0) * 127.0) as i8)
        .collect();
    let data = match kind {
        ScoreKind::F32 => ScoreData::F32(&f),
        ScoreKind::I32 => ScoreData::I32(&i32s),
        ScoreKind::I8 => ScoreData::I8(&i8s),
    };
    let m = ScoreMatrix::new(data, rows, cols, cols - rows, causal).expect("valid score matrix");
    let want = CpuBackend::new().topk(m, budget).expect("golden");
    judge_selection(&want, backend.topk(m, budget), "topk")
}

/// The budget rules the select cases run: each split, anchors, a floor and a cap.
fn select_rules() -> Vec<(&'static str, BudgetRule)> {
    let anchors = Anchors {
        sinks: 2,
        recent: 5,
    };
    vec![
        (
            "threshold",
            BudgetRule {
                split: RowSplit::Threshold,
                ..BudgetRule::EVEN
            },
        ),
        (
            "threshold_anchors_floor",
            BudgetRule {
                split: RowSplit::Threshold,
                anchors,
                floor: 0.5,
                cap: None,
            },
        ),
        (
            "top_p_cap",
            BudgetRule {
                split: RowSplit::TopP,
                anchors: Anchors::NONE,
                floor: 0.0,
                cap: Some(2.0),
            },
        ),
        (
            "even_anchors",
            BudgetRule {
                anchors,
                ..BudgetRule::EVEN
            },
        ),
    ]
}

/// A group's keys under `rule` at 20 % (at least 2 keys a row): the backend's against the
/// contract's rule on the group's ranking, exactly.
fn select(backend: &dyn ComputeBackend, rule: BudgetRule, heads: usize, ranked: bool) -> Outcome {
    let (rows, cols) = (24, 180);
    let scores: Vec<Vec<i8>> = (0..heads)
        .map(|h| {
            seeded_values(31 + h as u64, rows * cols, 1.0)
                .iter()
                // Few levels: ties inside and across rows.
                .map(|x| ((x * 12.0).round() * 9.0) as i8)
                .collect()
        })
        .collect();
    let matrices = scores
        .iter()
        .map(|s| ScoreMatrix::new(ScoreData::I8(s), rows, cols, cols - rows, true))
        .collect::<Result<Vec<_>, _>>()
        .expect("valid score matrices");
    let sigmas: Vec<f32> = (0..heads).map(|h| 0.02 + 0.01 * h as f32).collect();
    let group = GroupScores::new(matrices, sigmas).expect("a valid group");
    let budget = ChunkBudget {
        ratio: 0.2,
        min_keys: 2,
        rule,
    };
    let ranks = group.ranks();
    let f16: Vec<half::f16> = ranks.iter().map(|&x| half::f16::from_f32(x)).collect();
    let f16_matrix = || {
        ScoreMatrix::new(ScoreData::F16(&f16), rows, cols, cols - rows, true)
            .expect("valid ranking")
    };
    let want = if ranked {
        budget.select(f16_matrix())
    } else {
        budget.select(group.ranks_matrix(&ranks).expect("valid ranking"))
    };
    let want = want.expect("the contract's rule");
    let got = if ranked {
        backend.select(f16_matrix(), &budget)
    } else {
        backend.select_group(&group, &budget)
    };
    judge_selection(&want, got, "select")
}

/// A backend's selection against the wanted one: row offsets and indices exactly (they are u32
/// in memory; I32 holds every value a case produces).
fn judge_selection(want: &Selection, got: Result<Selection, HalError>, call: &str) -> Outcome {
    let offsets =
        |s: &Selection| -> Vec<f64> { s.row_offsets().iter().map(|&o| o as f64).collect() };
    let judged = [
        output(
            Tiers::single(Tolerance::Exact),
            offsets(want),
            DType::I32,
            1,
        ),
        output(
            Tiers::single(Tolerance::Exact),
            as_f64(want.indices()),
            DType::I32,
            1,
        ),
    ];
    match got {
        Ok(got) => compare(&judged, &[offsets(&got), as_f64(got.indices())]),
        Err(e) => failed(format!("{call} failed: {e}")),
    }
}

/// Attention outputs. Acceptable: LiteRT's accumulation-aware rule over the longer of the two
/// reductions (floors 1e-4 / 2e-5), with f16 eps where K/V are stored as f16. Strict: a backend
/// computing in f32 meets 2·eps·√K (floors 1e-5 / 2e-6); one storing K/V as f16 moves each
/// output by at most about an f16 ulp of the values (|V| < 1 here), so |diff| ≤ eps16 and
/// 2·eps16 relative.
fn attention_tolerance(s: &AttentionShape, relaxed: bool) -> Tiers {
    let k = s.kv_len.max(s.head_dim);
    let acceptable = Tolerance::AccumulationAware {
        ulps: 10.0,
        rtol: 1e-4,
        atol: 2e-5,
        k,
        dtype: DType::F32,
    };
    if relaxed {
        let eps16 = crate::tolerance::epsilon(DType::F16);
        Tiers {
            strict: Tolerance::AccumulationAware {
                ulps: 0.0,
                rtol: 2.0 * eps16,
                atol: eps16,
                k,
                dtype: DType::F16,
            },
            acceptable: acceptable.relaxed(),
        }
    } else {
        Tiers {
            strict: Tolerance::AccumulationAware {
                ulps: 2.0,
                rtol: 1e-5,
                atol: 2e-6,
                k,
                dtype: DType::F32,
            },
            acceptable,
        }
    }
}

/// Each GQA group's exact selection at `ratio`: the top-k of the group's ranking of exact scores
/// (`shadowattn_hal::group`), one per KV head.
fn exact_group_selections(inputs: &AttentionInputs<'_>, ratio: f32) -> Vec<Selection> {
    let s = inputs.shape();
    let g = s.q_heads / s.kv_heads;
    let scores: Vec<Vec<f32>> = (0..s.q_heads)
        .map(|h| inputs.exact_scores(h).expect("valid head"))
        .collect();
    (0..s.kv_heads)
        .map(|kv| {
            let heads = (kv * g..(kv + 1) * g)
                .map(|h| ScoreMatrix::for_chunk(ScoreData::F32(&scores[h]), &s))
                .collect::<Result<Vec<_>, _>>()
                .expect("valid score matrices");
            let group = GroupScores::new(heads, vec![s.scale; g]).expect("valid group");
            CpuBackend::new()
                .topk_group(&group, KeyBudget::Ratio { ratio, min_keys: 1 })
                .expect("golden")
        })
        .collect()
}

fn exact_selections(inputs: &AttentionInputs<'_>, ratio: f32) -> Vec<Selection> {
    let s = inputs.shape();
    (0..s.q_heads)
        .map(|h| {
            let scores = inputs.exact_scores(h).expect("valid head");
            let m = ScoreMatrix::new(
                ScoreData::F32(&scores),
                s.q_len,
                s.kv_len,
                s.q_offset,
                s.causal,
            )
            .expect("valid score matrix");
            CpuBackend::new()
                .topk(m, KeyBudget::Ratio { ratio, min_keys: 1 })
                .expect("golden")
        })
        .collect()
}

/// Largest Σ_d |q_d·k_d|·scale over every (query head, row, key) of a chunk: the size of the
/// products a scaled logit sums, which bounds its rounding error.
fn largest_logit_magnitude(q: &[f32], k: &[f32], s: &AttentionShape) -> f64 {
    let d = s.head_dim;
    let mut largest = 0f64;
    for h in 0..s.q_heads {
        let kv = h / (s.q_heads / s.kv_heads);
        for row in q[h * s.q_len * d..(h + 1) * s.q_len * d].chunks_exact(d) {
            for key in k[kv * s.kv_len * d..(kv + 1) * s.kv_len * d].chunks_exact(d) {
                let sum: f64 = row
                    .iter()
                    .zip(key)
                    .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                    .sum();
                largest = largest.max(sum);
            }
        }
    }
    largest * f64::from(s.scale)
}

/// `tiers` with `extra` added to both absolute floors.
fn widened(tiers: Tiers, extra: f64) -> Tiers {
    let widen = |t: Tolerance| match t {
        Tolerance::AccumulationAware {
            ulps,
            rtol,
            atol,
            k,
            dtype,
        } => Tolerance::AccumulationAware {
            ulps,
            rtol,
            atol: atol.max(ulps * crate::tolerance::epsilon(dtype)) + extra,
            k,
            dtype,
        },
        other => other,
    };
    Tiers {
        strict: widen(tiers.strict),
        acceptable: widen(tiers.acceptable),
    }
}

/// `values` rounded to f16 and back: what a backend storing K/V as f16 computes with.
fn stored_as_f16(values: &[f32]) -> Vec<f32> {
    values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect()
}

/// Dense or sparse attention of a seeded chunk (logits of size `logits`) against the
/// golden kernels. A backend storing K/V as f16 is judged against the golden result of its
/// stored K/V. The tolerance widens by what f32 logits may carry at this magnitude: each scaled
/// logit is a d-long sum of products rounded in f32, off by at most (d + 2)·eps·Σ|q·k|·scale
/// (the sum, the scale, the max shift), which moves the softmax weights by a factor of at most
/// e^{±2Δ} and so each output by at most 2Δ·max|V| (first order). The ordinary cases
/// (amplitude 2) keep the accumulation-aware tiers alone, which this worst case would loosen.
/// Which attention an attention case computes.
#[derive(Clone, Copy)]
enum Attention {
    /// Dense.
    Dense,
    /// Sparse over each head's exact top-k at this ratio.
    Sparse(f32),
    /// Sparse over each GQA group's exact top-k at this ratio, shared by its heads.
    Grouped(f32),
}

fn attention(
    backend: &dyn ComputeBackend,
    (s, logits): (AttentionShape, Logits),
    kind: Attention,
    relaxed: bool,
) -> Outcome {
    let (q, k, v) = qkv(&s, 21, logits);
    let inputs = AttentionInputs::new(&q, &k, &v, s).expect("case shapes are valid");
    let rounded = relaxed.then(|| (stored_as_f16(&k), stored_as_f16(&v)));
    let stored = match &rounded {
        Some((k16, v16)) => AttentionInputs::new(&q, k16, v16, s).expect("case shapes are valid"),
        None => inputs,
    };
    let n = inputs.output_len();
    let gold = CpuBackend::new();
    let (mut want, mut got) = (vec![0f32; n], vec![f32::NAN; n]);
    let result = match kind {
        Attention::Dense => {
            gold.dense_attention(stored, &mut want).expect("golden");
            backend.dense_attention(inputs, &mut got)
        }
        Attention::Sparse(r) => {
            let sel = exact_selections(&inputs, r);
            gold.sparse_attention(stored, &sel, &mut want)
                .expect("golden");
            backend.sparse_attention(inputs, &sel, &mut got)
        }
        Attention::Grouped(r) => {
            let sel = exact_group_selections(&inputs, r);
            gold.sparse_attention_grouped(stored, &sel, &mut want)
                .expect("golden");
            backend.sparse_attention_grouped(inputs, &sel, &mut got)
        }
    };
    let mut tiers = attention_tolerance(&s, relaxed);
    if logits != Logits::Noise {
        let logit_error = (s.head_dim + 2) as f64
            * crate::tolerance::epsilon(DType::F32)
            * largest_logit_magnitude(&q, &k, &s);
        let largest_v = v.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
        tiers = widened(tiers, 2.0 * logit_error * largest_v);
    }
    let judged = [output(tiers, as_f64(&want), DType::F32, s.head_dim)];
    match result {
        Ok(()) => compare(&judged, &[as_f64(&got)]),
        Err(e) => failed(format!("attention failed: {e}")),
    }
}

fn rejects(backend: &dyn ComputeBackend, bad: BadInput) -> Outcome {
    let s = shape(2, 1, 3, 6, 4);
    let (mut q, k, mut v) = qkv(&s, 5, Logits::Noise);
    let n = s.q_heads * s.q_len * s.head_dim;
    let mut out = vec![0f32; n];
    let prefix_rows = |keys: &[u32]| {
        let mut sel = Selection::new();
        for i in 0..s.q_len {
            sel.push_row(if i == 0 { keys } else { &[0] });
        }
        sel
    };
    let ok = prefix_rows(&[0]);
    let result = match bad {
        BadInput::NanInQ => {
            q[5] = f32::NAN;
            let inputs = AttentionInputs::new(&q, &k, &v, s).expect("shape");
            (backend.dense_attention(inputs, &mut out), "InvalidValue")
        }
        BadInput::InfInV => {
            v[3] = f32::INFINITY;
            let inputs = AttentionInputs::new(&q, &k, &v, s).expect("shape");
            (
                backend.sparse_attention(inputs, &[ok.clone(), ok], &mut out),
                "InvalidValue",
            )
        }
        BadInput::OutputLength => {
            let inputs = AttentionInputs::new(&q, &k, &v, s).expect("shape");
            (
                backend.dense_attention(inputs, &mut out[1..]),
                "BufferMismatch",
            )
        }
        BadInput::KeyOutsidePrefix => {
            let inputs = AttentionInputs::new(&q, &k, &v, s).expect("shape");
            // Row 0 sits at position 3 and sees keys 0..=3.
            let bad = prefix_rows(&[4]);
            (
                backend.sparse_attention(inputs, &[ok, bad], &mut out),
                "InvalidArgument",
            )
        }
        BadInput::MissingSelection => {
            let inputs = AttentionInputs::new(&q, &k, &v, s).expect("shape");
            (
                backend.sparse_attention(inputs, &[ok], &mut out),
                "InvalidArgument",
            )
        }
        BadInput::NanScore => {
            let scores = [1.0, 5.0, f32::NAN, 2.0];
            let m = ScoreMatrix::causal(ScoreData::F32(&scores), 2, 2, 0).expect("scores");
            (
                backend.topk(m, KeyBudget::Fixed(1)).map(|_| ()),
                "InvalidValue",
            )
        }
        BadInput::FixedKBeyondPrefix => {
            let scores = [1.0, 5.0, 0.0, 2.0];
            let m = ScoreMatrix::causal(ScoreData::F32(&scores), 2, 2, 0).expect("scores");
            (
                backend.topk(m, KeyBudget::Fixed(2)).map(|_| ()),
                "InvalidArgument",
            )
        }
        BadInput::ZeroScale => {
            let view = HeadsView::new(&q, 2, 3, 4).expect("view");
            (
                backend.quantize_heads(view, Some(&[0.5, 0.0])).map(|_| ()),
                "InvalidQuantization",
            )
        }
        BadInput::InfToQuantize => {
            q[0] = f32::NEG_INFINITY;
            let view = HeadsView::new(&q, 2, 3, 4).expect("view");
            (
                backend.quantize_heads(view, None).map(|_| ()),
                "InvalidValue",
            )
        }
    };
    let (got, want) = result;
    let variant = |e: &HalError| match e {
        HalError::InvalidValue { .. } => "InvalidValue",
        HalError::BufferMismatch { .. } => "BufferMismatch",
        HalError::InvalidArgument { .. } => "InvalidArgument",
        HalError::InvalidQuantization { .. } => "InvalidQuantization",
        _ => "another error",
    };
    match got {
        Ok(()) => failed(format!("accepted; expected {want}")),
        Err(e) if variant(&e) == want => Outcome::of(Status::Passed),
        Err(e) => failed(format!("expected {want}, got {}: {e}", variant(&e))),
    }
}

/// Runs one compute case on `backend`; backends that store K/V as f16 (their declared
/// capabilities) have attention judged with f16 tolerances. A panic inside the backend is a
/// failure, not an abort.
pub fn run_compute_case(backend: &dyn ComputeBackend, case: &ComputeCase) -> CaseResult {
    let relaxed = backend.capabilities().kv_storage == DType::F16;
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| match &case.kind {
        ComputeCaseKind::Quantize {
            dims,
            amplitude,
            given_scales,
        } => quantize(backend, *dims, *amplitude, *given_scales),
        ComputeCaseKind::TopK {
            kind,
            rows,
            cols,
            causal,
            levels,
            budget,
        } => topk(backend, *kind, (*rows, *cols), *causal, *levels, *budget),
        ComputeCaseKind::Select {
            rule,
            heads,
            ranked,
        } => select(backend, *rule, *heads, *ranked),
        ComputeCaseKind::Dense { shape, logits } => {
            attention(backend, (*shape, *logits), Attention::Dense, relaxed)
        }
        ComputeCaseKind::Sparse {
            shape,
            ratio,
            logits,
        } => attention(
            backend,
            (*shape, *logits),
            Attention::Sparse(*ratio),
            relaxed,
        ),
        ComputeCaseKind::SparseGrouped {
            shape,
            ratio,
            logits,
        } => attention(
            backend,
            (*shape, *logits),
            Attention::Grouped(*ratio),
            relaxed,
        ),
        ComputeCaseKind::Rejects(bad) => rejects(backend, *bad),
    }));
    result_of(
        (Suite::Compute, &case.name, case.group),
        backend.name(),
        started,
        outcome,
    )
}
