//! What `shadowattn bench` times: one chunk's inputs and INT8 pilot scores per shape, and each
//! kernel of the CPU stage as one call on the fast CPU backend.

use shadowattn_cpu::fast::{simd, FastCpuBackend, KvStorage, SparseKernel};
use shadowattn_hal::{
    AttentionInputs, AttentionShape, BudgetRule, ChunkBudget, ComputeBackend, GroupScores,
    KeyBudget, RowSplit, ScoreData, ScoreMatrix, Selection,
};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use std::error::Error;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

/// A kernel of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Dense causal attention (our FlashAttention-style kernel).
    Dense,
    /// The same with K and V stored as f16 (converted on each call).
    DenseF16,
    /// Top-k of every head's INT8 pilot scores, row by row.
    TopkRow,
    /// The group ranking (sum of the heads' softmax probabilities) and top-k, INT8 scores.
    TopkGroup,
    /// Top-k of each group's ranking as the NPU reduces it (f16 probabilities, `--pilot
    /// group`): no exponentials on the CPU.
    TopkRanked,
    /// `topk-group` under a mass split (`shadowattn_hal::budget`): the group ranking, then
    /// the chunk's keys spread over its rows by the split.
    TopkGroupSplit(MassSplit),
    /// `topk-ranked` under a mass split.
    TopkRankedSplit(MassSplit),
    /// Sparse attention alone, a key set per head and row.
    AttendRow,
    /// Sparse attention alone, a key set per GQA group and row.
    AttendGroup,
    /// `attend-row` with one query row at a time.
    AttendRowSingle,
    /// `attend-row` in lane tiles of up to eight rows.
    AttendRowTiled,
    /// `attend-group` with one query row (and its group's heads) at a time.
    AttendGroupSingle,
    /// `attend-group` in lane tiles.
    AttendGroupTiled,
    /// The CPU stage with per-row selection: top-k then sparse attention.
    StageRow,
    /// The CPU stage with the shared selection: group ranking, top-k, sparse attention.
    StageGroup,
    /// The CPU stage of the group pilot ranked on the NPU: top-k of the f16 ranking, sparse
    /// attention.
    StageRanked,
    /// ggml's flash attention (`ggml_flash_attn_ext`), no mask, F32 K/V.
    #[cfg(feature = "ggml")]
    Ggml,
    /// ggml's flash attention, no mask, F16 K/V.
    #[cfg(feature = "ggml")]
    GgmlF16,
    /// llama.cpp's non-flash attention through ggml: `mul_mat(k, q)`, causal `soft_max_ext`,
    /// `mul_mat(vᵀ, p)`, F16 K/V; ggml's own choice of matmul (llamafile's GEMM on x86).
    #[cfg(feature = "ggml")]
    GgmlMaterialized,
    /// The same with ggml's reference matmul: every score and output element one
    /// `ggml_vec_dot_f16` (the dense baseline of the mllm port of shadowAttn).
    #[cfg(feature = "ggml")]
    GgmlMaterializedVecDot,
}

impl Kernel {
    /// Every kernel, in table order.
    pub fn all() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut all = vec![
            Kernel::Dense,
            Kernel::DenseF16,
            Kernel::TopkRow,
            Kernel::TopkGroup,
            Kernel::TopkRanked,
            Kernel::TopkGroupSplit(MassSplit::Threshold),
            Kernel::TopkRankedSplit(MassSplit::Threshold),
            Kernel::TopkGroupSplit(MassSplit::TopP),
            Kernel::TopkRankedSplit(MassSplit::TopP),
            Kernel::AttendRow,
            Kernel::AttendGroup,
            Kernel::AttendRowSingle,
            Kernel::AttendRowTiled,
            Kernel::AttendGroupSingle,
            Kernel::AttendGroupTiled,
            Kernel::StageRow,
            Kernel::StageGroup,
            Kernel::StageRanked,
        ];
        #[cfg(feature = "ggml")]
        all.extend([
            Kernel::Ggml,
            Kernel::GgmlF16,
            Kernel::GgmlMaterialized,
            Kernel::GgmlMaterializedVecDot,
        ]);
        all
    }

    /// Whether the kernel selects one key set per GQA group (pointless with one head per group,
    /// where the core selects per head).
    pub fn is_grouped(self) -> bool {
        matches!(
            self,
            Kernel::TopkGroup
                | Kernel::TopkRanked
                | Kernel::TopkGroupSplit(_)
                | Kernel::TopkRankedSplit(_)
                | Kernel::StageRanked
                | Kernel::AttendGroup
                | Kernel::AttendGroupSingle
                | Kernel::AttendGroupTiled
                | Kernel::StageGroup
        )
    }

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Dense => "dense",
            Kernel::DenseF16 => "dense-f16",
            Kernel::TopkRow => "topk-row",
            Kernel::TopkGroup => "topk-group",
            Kernel::TopkRanked => "topk-ranked",
            Kernel::TopkGroupSplit(MassSplit::Threshold) => "topk-group-threshold",
            Kernel::TopkRankedSplit(MassSplit::Threshold) => "topk-ranked-threshold",
            Kernel::TopkGroupSplit(MassSplit::TopP) => "topk-group-top-p",
            Kernel::TopkRankedSplit(MassSplit::TopP) => "topk-ranked-top-p",
            Kernel::AttendRow => "attend-row",
            Kernel::AttendGroup => "attend-group",
            Kernel::AttendRowSingle => "attend-row-single",
            Kernel::AttendRowTiled => "attend-row-tiled",
            Kernel::AttendGroupSingle => "attend-group-single",
            Kernel::AttendGroupTiled => "attend-group-tiled",
            Kernel::StageRow => "stage-row",
            Kernel::StageGroup => "stage-group",
            Kernel::StageRanked => "stage-ranked",
            #[cfg(feature = "ggml")]
            Kernel::Ggml => "ggml-flash-attn",
            #[cfg(feature = "ggml")]
            Kernel::GgmlF16 => "ggml-flash-attn-f16",
            #[cfg(feature = "ggml")]
            Kernel::GgmlMaterialized => "ggml-materialized-f16",
            #[cfg(feature = "ggml")]
            Kernel::GgmlMaterializedVecDot => "ggml-materialized-vecdot-f16",
        }
    }

    /// Whether the kernel times a part of the CPU stage alone (top-k, or sparse attention on
    /// given selections) rather than a whole attention (dense, the stage, ggml's).
    pub fn is_part(self) -> bool {
        matches!(
            self,
            Kernel::TopkRow
                | Kernel::TopkGroup
                | Kernel::TopkRanked
                | Kernel::TopkGroupSplit(_)
                | Kernel::TopkRankedSplit(_)
                | Kernel::AttendRow
                | Kernel::AttendGroup
                | Kernel::AttendRowSingle
                | Kernel::AttendRowTiled
                | Kernel::AttendGroupSingle
                | Kernel::AttendGroupTiled
        )
    }

    /// Whether the kernel is one of ggml's materialized (non-flash) attention graphs.
    pub fn is_ggml_materialized(self) -> bool {
        self.name().starts_with("ggml-materialized")
    }
}

/// A split that reads the ranking's mass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MassSplit {
    /// [`RowSplit::Threshold`].
    Threshold,
    /// [`RowSplit::TopP`].
    TopP,
}

impl MassSplit {
    fn rule(self) -> BudgetRule {
        BudgetRule {
            split: match self {
                MassSplit::Threshold => RowSplit::Threshold,
                MassSplit::TopP => RowSplit::TopP,
            },
            ..BudgetRule::EVEN
        }
    }
}

/// The fast CPU backends the kernels run on, all on one thread count.
pub struct Backends {
    /// The default backend (f32 K/V, the automatic sparse kernel).
    pub compute: FastCpuBackend,
    /// K and V stored as f16.
    pub f16: FastCpuBackend,
    /// Sparse attention one query row at a time.
    pub single: FastCpuBackend,
    /// Sparse attention in lane tiles.
    pub tiled: FastCpuBackend,
}

impl Backends {
    /// The four backends on `threads` threads.
    pub fn new(threads: usize) -> Res<Self> {
        let fast = || FastCpuBackend::new(threads);
        Ok(Backends {
            compute: fast()?,
            f16: fast()?.with_storage(KvStorage::F16),
            single: fast()?.with_sparse_kernel(SparseKernel::Single),
            tiled: fast()?.with_sparse_kernel(SparseKernel::Tiled),
        })
    }
}

/// One shape's inputs, pilot scores and selections, made once and reused by every run.
pub struct Case {
    chunk: SyntheticChunk,
    /// INT8 pilot scores per query head, `[q_len, kv_len]`.
    scores: Vec<Vec<i8>>,
    /// Each head's logit scale for the group ranking.
    sigmas: Vec<f32>,
    /// Each group's ranking as the NPU outputs it, f16 `[q_len, kv_len]` (0 past a row's keys).
    rankings: Vec<Vec<half::f16>>,
    budget: KeyBudget,
    rows: Vec<Selection>,
    groups: Vec<Selection>,
    out: Vec<f32>,
    #[cfg(feature = "ggml")]
    ggml: Vec<shadowattn_ggml::FlashAttention>,
}

impl Case {
    /// The chunk of `shape` (seeded, planted keys) and its INT8 pilot scores: exact scores
    /// requantized with each head's absmax scale, as the NPU's INT8 output is.
    pub fn new(shape: AttentionShape, ratio: f32, compute: &FastCpuBackend) -> Res<Self> {
        let chunk = SyntheticChunk::generate(SyntheticSpec {
            shape,
            planted_fraction: 0.1,
            signal: 2.0,
            seed: 7,
        })?;
        let inputs = chunk.inputs();
        let mut scores = Vec::new();
        let mut sigmas = Vec::new();
        for h in 0..shape.q_heads {
            let exact = head_scores(&inputs, h);
            let absmax = exact.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-30);
            let unit = absmax / 127.0;
            scores.push(exact.iter().map(|x| (x / unit).round() as i8).collect());
            sigmas.push(unit * shape.scale);
        }
        let budget = KeyBudget::Ratio { ratio, min_keys: 4 };
        let mut case = Case {
            chunk,
            scores,
            sigmas,
            rankings: Vec::new(),
            budget,
            rows: Vec::new(),
            groups: Vec::new(),
            out: vec![0.0; shape.q_heads * shape.q_len * shape.head_dim],
            #[cfg(feature = "ggml")]
            ggml: Vec::new(),
        };
        case.rankings = case.group_rankings()?;
        case.rows = case.topk_rows(compute)?;
        case.groups = case.topk_groups(compute)?;
        Ok(case)
    }

    /// The chunk's shape.
    pub fn shape(&self) -> AttentionShape {
        self.chunk.shape
    }

    /// The (row, key) pairs dense attention computes, over all heads.
    pub fn dense_pairs(&self) -> u64 {
        let s = self.shape();
        (0..s.q_len).map(|i| s.valid_keys(i) as u64).sum::<u64>() * s.q_heads as u64
    }

    /// The (row, key) pairs sparse attention computes, per-row and shared selections.
    pub fn kept_pairs(&self) -> (u64, u64) {
        let s = self.shape();
        let g = (s.q_heads / s.kv_heads) as u64;
        let rows = self.rows.iter().map(|x| x.kept() as u64).sum();
        let groups = self.groups.iter().map(|x| x.kept() as u64).sum::<u64>() * g;
        (rows, groups)
    }

    /// How many times one row's key set the union of a lane tile's rows' sets is, over the
    /// per-row selections: Σ |union| · rows / Σ kept over every tile of `rows` consecutive
    /// query rows of a head (the extra keys a tile's lanes compute and mask).
    pub fn tile_union(&self, rows: usize) -> f64 {
        let (mut computed, mut kept) = (0usize, 0usize);
        for sel in &self.rows {
            for t0 in (0..sel.rows()).step_by(rows) {
                let tile = t0..(t0 + rows).min(sel.rows());
                let mut union: Vec<u32> = tile.clone().flat_map(|i| sel.row(i).to_vec()).collect();
                kept += union.len();
                union.sort_unstable();
                union.dedup();
                computed += union.len() * tile.len();
            }
        }
        computed as f64 / kept.max(1) as f64
    }

    fn score_matrix(&self, h: usize) -> Res<ScoreMatrix<'_>> {
        Ok(ScoreMatrix::for_chunk(
            ScoreData::I8(&self.scores[h]),
            &self.shape(),
        )?)
    }

    fn topk_rows(&self, compute: &dyn ComputeBackend) -> Res<Vec<Selection>> {
        (0..self.shape().q_heads)
            .map(|h| Ok(compute.topk(self.score_matrix(h)?, self.budget)?))
            .collect()
    }

    /// The INT8 scores and logit scales of KV group `kv`'s heads.
    fn group_scores(&self, kv: usize) -> Res<GroupScores<'_>> {
        let s = self.shape();
        let g = s.q_heads / s.kv_heads;
        let heads = (kv * g..(kv + 1) * g)
            .map(|h| self.score_matrix(h))
            .collect::<Res<Vec<_>>>()?;
        Ok(GroupScores::new(
            heads,
            self.sigmas[kv * g..(kv + 1) * g].to_vec(),
        )?)
    }

    fn topk_groups(&self, compute: &dyn ComputeBackend) -> Res<Vec<Selection>> {
        (0..self.shape().kv_heads)
            .map(|kv| Ok(compute.topk_group(&self.group_scores(kv)?, self.budget)?))
            .collect()
    }

    /// Each group's ranking (the HAL's exact rule on the INT8 scores) rounded to f16: what the
    /// NPU-reduced ranking hands the CPU.
    fn group_rankings(&self) -> Res<Vec<Vec<half::f16>>> {
        let s = self.shape();
        let mut row = Vec::new();
        (0..s.kv_heads)
            .map(|kv| {
                let group = self.group_scores(kv)?;
                let mut ranking = vec![half::f16::ZERO; s.q_len * s.kv_len];
                for i in 0..s.q_len {
                    group.ranking(i, &mut row);
                    for (r, &x) in ranking[i * s.kv_len..].iter_mut().zip(&row) {
                        *r = half::f16::from_f32(x);
                    }
                }
                Ok(ranking)
            })
            .collect()
    }

    /// The chunk budget of `split` at the case's ratio.
    fn split_budget(&self, split: MassSplit) -> ChunkBudget {
        let KeyBudget::Ratio { ratio, min_keys } = self.budget else {
            unreachable!("the case's budget is a ratio")
        };
        ChunkBudget {
            ratio,
            min_keys,
            rule: split.rule(),
        }
    }

    fn select_groups(&self, compute: &dyn ComputeBackend, split: MassSplit) -> Res<Vec<Selection>> {
        let budget = self.split_budget(split);
        (0..self.shape().kv_heads)
            .map(|kv| Ok(compute.select_group(&self.group_scores(kv)?, &budget)?))
            .collect()
    }

    fn select_ranked(&self, compute: &dyn ComputeBackend, split: MassSplit) -> Res<Vec<Selection>> {
        let (s, budget) = (self.shape(), self.split_budget(split));
        self.rankings
            .iter()
            .map(|r| {
                let m = ScoreMatrix::for_chunk(ScoreData::F16(r), &s)?;
                Ok(compute.select(m, &budget)?)
            })
            .collect()
    }

    fn topk_ranked(&self, compute: &dyn ComputeBackend) -> Res<Vec<Selection>> {
        let s = self.shape();
        self.rankings
            .iter()
            .map(|r| {
                let m = ScoreMatrix::for_chunk(ScoreData::F16(r), &s)?;
                Ok(compute.topk(m, self.budget)?)
            })
            .collect()
    }

    /// Prepares ggml's graphs for this shape on `threads` threads: flash attention with F32
    /// and F16 K/V, no mask; the two materialized graphs, F16 K/V, causal (as our dense kernel).
    #[cfg(feature = "ggml")]
    pub fn with_ggml(&mut self, threads: usize) -> Res<()> {
        use shadowattn_ggml::{FlashAttention, Kernel as G, KvType};
        let s = self.shape();
        self.ggml.clear();
        for (kernel, kv, causal) in [
            (G::Flash, KvType::F32, false),
            (G::Flash, KvType::F16, false),
            (G::Materialized, KvType::F16, s.causal),
            (G::MaterializedVecDot, KvType::F16, s.causal),
        ] {
            let mut fa = FlashAttention::with_kernel(
                kernel, s.q_heads, s.kv_heads, s.q_len, s.kv_len, s.head_dim, causal, kv, threads,
            )?;
            fa.set_inputs(&self.chunk.q, &self.chunk.k, &self.chunk.v)?;
            self.ggml.push(fa);
        }
        Ok(())
    }

    /// Runs `kernel` once on its backend of `b`; returns its wall time in seconds.
    pub fn time(&mut self, kernel: Kernel, b: &Backends) -> Res<f64> {
        let (compute, f16) = (&b.compute, &b.f16);
        let start = Instant::now();
        let inputs = self.chunk.inputs();
        match kernel {
            Kernel::Dense => compute.dense_attention(inputs, &mut self.out)?,
            Kernel::DenseF16 => f16.dense_attention(inputs, &mut self.out)?,
            Kernel::TopkRow => {
                self.rows = self.topk_rows(compute)?;
            }
            Kernel::TopkGroup => {
                self.groups = self.topk_groups(compute)?;
            }
            Kernel::TopkRanked => {
                self.groups = self.topk_ranked(compute)?;
            }
            // Not kept: the attention kernels time the even selections.
            Kernel::TopkGroupSplit(split) => {
                self.select_groups(compute, split)?;
            }
            Kernel::TopkRankedSplit(split) => {
                self.select_ranked(compute, split)?;
            }
            Kernel::AttendRow => compute.sparse_attention(inputs, &self.rows, &mut self.out)?,
            Kernel::AttendGroup => {
                compute.sparse_attention_grouped(inputs, &self.groups, &mut self.out)?
            }
            Kernel::AttendRowSingle => {
                b.single
                    .sparse_attention(inputs, &self.rows, &mut self.out)?
            }
            Kernel::AttendRowTiled => {
                b.tiled
                    .sparse_attention(inputs, &self.rows, &mut self.out)?
            }
            Kernel::AttendGroupSingle => {
                b.single
                    .sparse_attention_grouped(inputs, &self.groups, &mut self.out)?
            }
            Kernel::AttendGroupTiled => {
                b.tiled
                    .sparse_attention_grouped(inputs, &self.groups, &mut self.out)?
            }
            Kernel::StageRow => {
                let rows = self.topk_rows(compute)?;
                compute.sparse_attention(inputs, &rows, &mut self.out)?;
            }
            Kernel::StageGroup => {
                let groups = self.topk_groups(compute)?;
                compute.sparse_attention_grouped(inputs, &groups, &mut self.out)?;
            }
            Kernel::StageRanked => {
                let groups = self.topk_ranked(compute)?;
                compute.sparse_attention_grouped(inputs, &groups, &mut self.out)?;
            }
            #[cfg(feature = "ggml")]
            Kernel::Ggml
            | Kernel::GgmlF16
            | Kernel::GgmlMaterialized
            | Kernel::GgmlMaterializedVecDot => {
                // The order of `with_ggml`.
                let at = match kernel {
                    Kernel::Ggml => 0,
                    Kernel::GgmlF16 => 1,
                    Kernel::GgmlMaterialized => 2,
                    _ => 3,
                };
                match self.ggml.get_mut(at) {
                    Some(fa) => fa.compute()?,
                    None => return Err("ggml was not prepared for this shape".into()),
                }
            }
        }
        Ok(start.elapsed().as_secs_f64())
    }
}

/// Exact unscaled scores of head `h` in f32 (the fast dot product; the pilot's ranking only
/// needs them to INT8 precision).
fn head_scores(inputs: &AttentionInputs<'_>, h: usize) -> Vec<f32> {
    let s = inputs.shape();
    let keys = inputs.k_head(s.kv_head_of(h));
    let mut out = Vec::with_capacity(s.q_len * s.kv_len);
    for i in 0..s.q_len {
        let q = inputs.q_row(h, i);
        out.extend(keys.chunks_exact(s.head_dim).map(|k| simd::dot(q, k)));
    }
    out
}

/// This machine's FMA peak on `threads` threads, GFLOP/s: every thread runs the probe at once.
pub fn fma_peak_gflops(threads: usize) -> f64 {
    const ITERS: usize = 20_000_000;
    let flops_per_thread = (ITERS * 12 * 8 * 2) as f64;
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| std::hint::black_box(simd::fma_peak_probe(ITERS)));
            }
        });
        let gflops = flops_per_thread * threads as f64 / start.elapsed().as_secs_f64() / 1e9;
        best = best.max(gflops);
    }
    best
}
