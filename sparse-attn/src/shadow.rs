//! shadowAttn for one prefill chunk of one layer: bucketed INT8 pilot on the NPU backend,
//! top-k and sparse attention on the compute backend, run as a three-stage pipeline.
//!
//! Per chunk: each head's actual Q/K scales pick the nearest bucket; heads are grouped by bucket
//! into fused launches; the planner orders launches and heads; an NPU thread runs the launches in
//! plan order and hands each head's scores through a bounded queue to `cpu_workers` threads that
//! run top-k and sparse attention. Each head's result depends only on its own data, so the output
//! is identical whatever the schedule and thread count. A launch that fails on the NPU makes its
//! heads fall back to dense attention, which the result reports. Decode steps (one query row) use
//! dense attention.

use crate::bank::GraphBank;
use crate::calibration::{absmax_scale, Calibration};
use crate::error::{Result, SparseAttnError};
use crate::pilot::PilotOutput;
use crate::planner::{fifo, plan, CostTable, Launch, Plan, StageCosts};
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, EventKind, FigureSource, HeadsView,
    HostTensor, KeyBudget, ProfileEvent, ScoreData, ScoreMatrix, Selection,
};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;
use std::time::Instant;

/// How top-k groups query rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// Each query row keeps its own top `ceil(r · valid)` keys.
    Row,
    /// Blocks of this many query rows keep the top `ceil(r · valid entries)` of the whole block
    /// (the paper artifact's accuracy simulation); every row keeps at least `min_keys`.
    Block(usize),
}

/// How the pipeline is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// The planner's greedy order (FIFO when greedy is not better).
    Planned,
    /// Launches by bucket, heads by index.
    Fifo,
}

/// Settings of the online stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShadowConfig {
    /// Fewest keys a query row keeps.
    pub min_keys: usize,
    /// Row or block top-k.
    pub granularity: Granularity,
    /// CPU worker threads for top-k and sparse attention.
    pub cpu_workers: usize,
    /// Capacity of the queue between the NPU thread and the workers, in heads.
    pub queue_depth: usize,
    /// Pipeline order.
    pub schedule: Schedule,
    /// Whether one-row chunks (decode steps) use dense attention.
    pub decode_dense: bool,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            min_keys: 1,
            granularity: Granularity::Row,
            cpu_workers: 1,
            queue_depth: 4,
            schedule: Schedule::Planned,
            decode_dense: true,
        }
    }
}

/// What happened to one head.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadReport {
    /// Query head.
    pub head: usize,
    /// Its actual Q scale in this chunk.
    pub q_scale: f32,
    /// Its KV head's actual K scale in this chunk.
    pub k_scale: f32,
    /// The bucket its pilot ran in (`None` for dense heads).
    pub bucket: Option<usize>,
    /// Calibrated fraction of keys kept.
    pub ratio: f32,
    /// Keys kept over all rows.
    pub kept: usize,
    /// Whether it fell back to dense attention.
    pub fallback: bool,
}

/// How a chunk was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkMode {
    /// shadowAttn: pilot, top-k, sparse attention.
    Sparse,
    /// Dense attention for a decode step.
    DenseDecode,
    /// Dense attention because the graph bank could not be built.
    DenseNoBank,
}

/// The result of one chunk.
#[derive(Clone, Debug)]
pub struct ChunkResult {
    /// Attention output, `[q_heads, q_len, head_dim]`.
    pub output: Vec<f32>,
    /// Selected keys per head (every valid key for dense heads).
    pub selections: Vec<Selection>,
    /// Per-head report.
    pub heads: Vec<HeadReport>,
    /// The fused launches.
    pub launches: Vec<Launch>,
    /// The plan that ordered them (`None` for dense chunks).
    pub plan: Option<Plan>,
    /// How the chunk was computed.
    pub mode: ChunkMode,
    /// Why heads fell back to dense attention, if any did.
    pub fallback: Option<String>,
    /// NPU events from the backend and measured CPU stage events.
    pub events: Vec<ProfileEvent>,
}

/// shadowAttn over a graph bank, a calibration and a compute backend.
#[derive(Debug)]
pub struct ShadowAttention<'c> {
    bank: std::result::Result<GraphBank, String>,
    calibration: Calibration,
    compute: &'c dyn ComputeBackend,
    costs: CostTable,
    config: ShadowConfig,
}

fn all_keys(shape: &AttentionShape) -> Selection {
    let mut s = Selection::new();
    for i in 0..shape.q_len {
        let keys: Vec<u32> = (0..shape.valid_keys(i) as u32).collect();
        s.push_row(&keys);
    }
    s
}

/// One head's slice of the chunk as single-head inputs.
fn head_inputs<'a>(inputs: &AttentionInputs<'a>, h: usize) -> AttentionInputs<'a> {
    let s = inputs.shape;
    let kv = s.kv_head_of(h);
    let (qn, kn) = (s.q_len * s.head_dim, s.kv_len * s.head_dim);
    AttentionInputs {
        q: &inputs.q[h * qn..(h + 1) * qn],
        k: &inputs.k[kv * kn..(kv + 1) * kn],
        v: &inputs.v[kv * kn..(kv + 1) * kn],
        shape: AttentionShape {
            q_heads: 1,
            kv_heads: 1,
            ..s
        },
    }
}

/// Work handed from the NPU thread to the CPU workers.
enum Work {
    /// A head's scores, `[q_len, kv_len]` (unpadded).
    Scores { head: usize, scores: Scores },
    /// A head whose pilot failed.
    Failed { head: usize },
}

enum Scores {
    I32(Vec<i32>),
    I8(Vec<i8>),
}

struct HeadOutcome {
    head: usize,
    output: Vec<f32>,
    selection: Selection,
    fallback: bool,
    event: ProfileEvent,
}

impl<'c> ShadowAttention<'c> {
    /// shadowAttn over a built (or loaded) bank.
    pub fn new(
        bank: GraphBank,
        calibration: Calibration,
        compute: &'c dyn ComputeBackend,
        costs: CostTable,
        config: ShadowConfig,
    ) -> Result<Self> {
        if bank.grid() != &calibration.grid {
            return Err(SparseAttnError::config(
                "bank",
                "the bank was built for another bucket grid than the calibration's",
            ));
        }
        if bank.spec().head_dim != calibration.model.head_dim {
            return Err(SparseAttnError::config(
                "bank.head_dim",
                format!(
                    "bank head_dim {} vs model head_dim {}",
                    bank.spec().head_dim,
                    calibration.model.head_dim
                ),
            ));
        }
        Self::with_bank(Ok(bank), calibration, compute, costs, config)
    }

    /// Builds the bank on `npu` and returns shadowAttn over it; when the NPU cannot compile the
    /// bank, every chunk falls back to dense attention on `compute` and reports why.
    pub fn build(
        npu: &dyn shadowattn_hal::NpuBackend,
        spec: crate::bank::BankSpec,
        calibration: Calibration,
        compute: &'c dyn ComputeBackend,
        costs: CostTable,
        config: ShadowConfig,
    ) -> Result<Self> {
        match GraphBank::build(npu, &calibration.grid, spec) {
            Ok(bank) => Self::new(bank, calibration, compute, costs, config),
            Err(e) => Self::without_bank(
                format!("{} could not compile the graph bank: {e}", npu.name()),
                calibration,
                compute,
                costs,
                config,
            ),
        }
    }

    /// shadowAttn whose bank could not be built: every chunk runs dense and reports `reason`.
    pub fn without_bank(
        reason: String,
        calibration: Calibration,
        compute: &'c dyn ComputeBackend,
        costs: CostTable,
        config: ShadowConfig,
    ) -> Result<Self> {
        Self::with_bank(Err(reason), calibration, compute, costs, config)
    }

    fn with_bank(
        bank: std::result::Result<GraphBank, String>,
        calibration: Calibration,
        compute: &'c dyn ComputeBackend,
        costs: CostTable,
        config: ShadowConfig,
    ) -> Result<Self> {
        calibration.validate()?;
        costs.validate()?;
        if config.cpu_workers == 0 || config.queue_depth == 0 {
            return Err(SparseAttnError::config(
                "cpu_workers/queue_depth",
                "must be at least 1",
            ));
        }
        if config.granularity == Granularity::Block(0) {
            return Err(SparseAttnError::config(
                "granularity",
                "blocks need at least one row",
            ));
        }
        if let Ok(b) = &bank {
            for &f in b.fused_counts() {
                costs.npu(f)?;
            }
        }
        Ok(ShadowAttention {
            bank,
            calibration,
            compute,
            costs,
            config,
        })
    }

    /// The graph bank, if it could be built.
    pub fn bank(&self) -> Option<&GraphBank> {
        self.bank.as_ref().ok()
    }

    /// The settings.
    pub fn config(&self) -> &ShadowConfig {
        &self.config
    }

    /// Replaces the settings (validated as in construction).
    pub fn set_config(&mut self, config: ShadowConfig) -> Result<()> {
        if config.cpu_workers == 0
            || config.queue_depth == 0
            || config.granularity == Granularity::Block(0)
        {
            return Err(SparseAttnError::config(
                "config",
                "workers, queue depth and block rows must be at least 1",
            ));
        }
        self.config = config;
        Ok(())
    }

    fn check_chunk(&self, layer: usize, inputs: &AttentionInputs<'_>) -> Result<()> {
        let s = inputs.shape;
        s.validate()?;
        AttentionInputs::new(inputs.q, inputs.k, inputs.v, s)?;
        let m = &self.calibration.model;
        if (s.q_heads, s.kv_heads, s.head_dim) != (m.q_heads, m.kv_heads, m.head_dim) {
            return Err(SparseAttnError::config(
                "chunk",
                format!(
                    "the calibration is for `{}` ({} query heads, {} KV heads, head_dim {}); the chunk has {}, {}, {}",
                    m.name, m.q_heads, m.kv_heads, m.head_dim, s.q_heads, s.kv_heads, s.head_dim
                ),
            ));
        }
        self.calibration.layer_ratios(layer)?;
        Ok(())
    }

    fn dense(
        &self,
        inputs: AttentionInputs<'_>,
        mode: ChunkMode,
        reason: Option<String>,
        layer: usize,
    ) -> Result<ChunkResult> {
        let mut output = vec![0.0; inputs.output_len()];
        self.compute.dense_attention(inputs, &mut output)?;
        let ratios = self.calibration.layer_ratios(layer)?;
        let s = inputs.shape;
        let selection = all_keys(&s);
        let heads = (0..s.q_heads)
            .map(|h| HeadReport {
                head: h,
                q_scale: absmax_scale(head_inputs(&inputs, h).q),
                k_scale: absmax_scale(head_inputs(&inputs, h).k),
                bucket: None,
                ratio: ratios[h],
                kept: selection.indices.len(),
                fallback: reason.is_some(),
            })
            .collect();
        Ok(ChunkResult {
            output,
            selections: vec![selection; s.q_heads],
            heads,
            launches: Vec::new(),
            plan: None,
            mode,
            fallback: reason,
            events: Vec::new(),
        })
    }

    /// Runs one chunk of `layer`.
    pub fn run_chunk(&mut self, layer: usize, inputs: AttentionInputs<'_>) -> Result<ChunkResult> {
        self.check_chunk(layer, &inputs)?;
        let s = inputs.shape;
        if s.q_len == 1 && self.config.decode_dense {
            return self.dense(inputs, ChunkMode::DenseDecode, None, layer);
        }
        let bank = match &mut self.bank {
            Ok(b) => b,
            Err(reason) => {
                let reason = format!("no graph bank: {reason}");
                return self.dense(inputs, ChunkMode::DenseNoBank, Some(reason), layer);
            }
        };
        let spec = bank.spec().clone();
        if s.q_len > spec.q_len || s.kv_len > spec.kv_len {
            return Err(SparseAttnError::config(
                "chunk",
                format!(
                    "{} query rows x {} keys exceed the bank's {} x {}; build a bank for longer chunks",
                    s.q_len, s.kv_len, spec.q_len, spec.kv_len
                ),
            ));
        }
        let ratios = self.calibration.layer_ratios(layer)?.to_vec();
        let grid = bank.grid().clone();
        let d = s.head_dim;

        // Buckets from each head's actual scales.
        let q_scales: Vec<f32> = (0..s.q_heads)
            .map(|h| absmax_scale(head_inputs(&inputs, h).q))
            .collect();
        let k_scales: Vec<f32> = (0..s.kv_heads)
            .map(|kv| absmax_scale(&inputs.k[kv * s.kv_len * d..(kv + 1) * s.kv_len * d]))
            .collect();
        let buckets: Vec<usize> = (0..s.q_heads)
            .map(|h| grid.nearest(q_scales[h], k_scales[s.kv_head_of(h)]))
            .collect();
        let mut by_bucket: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (h, &b) in buckets.iter().enumerate() {
            by_bucket.entry(b).or_default().push(h);
        }
        let mut launches = Vec::new();
        for (&bucket, heads) in &by_bucket {
            let mut rest = heads.as_slice();
            for f in bank.split(heads.len()) {
                let (now, later) = rest.split_at(f);
                launches.push(Launch {
                    bucket,
                    heads: now.to_vec(),
                });
                rest = later;
            }
        }

        // Plan.
        let valid: u64 = (0..s.q_len).map(|i| s.valid_keys(i) as u64).sum();
        let pairs = |r: f32| -> u64 {
            (0..s.q_len)
                .map(|i| {
                    let n = s.valid_keys(i);
                    KeyBudget::Ratio {
                        ratio: r,
                        min_keys: self.config.min_keys,
                    }
                    .keys_for(i, n)
                    .unwrap_or(n) as u64
                })
                .sum()
        };
        let costs = StageCosts {
            npu: launches
                .iter()
                .map(|l| self.costs.npu(l.heads.len()))
                .collect::<Result<_>>()?,
            topk: vec![self.costs.topk(valid); s.q_heads],
            qkv: ratios
                .iter()
                .map(|&r| self.costs.attention(pairs(r)))
                .collect(),
        };
        let plan = match self.config.schedule {
            Schedule::Planned => plan(&launches, &costs)?,
            Schedule::Fifo => fifo(&launches, &costs)?,
        };
        let cpu_rank: HashMap<usize, usize> = plan
            .cpu_order
            .iter()
            .enumerate()
            .map(|(i, &h)| (h, i))
            .collect();

        // Quantize per launch with the bucket's static scales, padded to the bank's shape.
        let mut k_cache: HashMap<(usize, u32), Vec<i8>> = HashMap::new();
        let mut launch_inputs = Vec::with_capacity(launches.len());
        for l in &launches {
            let (qs, ks) = grid.bucket(l.bucket);
            let f = l.heads.len();
            let pilot = spec.pilot(&grid, l.bucket, f).graph()?;
            let mut descs = pilot.input_descs();
            let mut q_in = HostTensor::zeros(descs.next().expect("q").clone())?;
            let mut k_in = HostTensor::zeros(descs.next().expect("k").clone())?;
            {
                let q_dst = q_in.as_mut_slice::<i8>()?;
                for (slot, &h) in l.heads.iter().enumerate() {
                    let qh = head_inputs(&inputs, h).q;
                    let q8 = self
                        .compute
                        .quantize_heads(HeadsView::new(qh, 1, s.q_len, d)?, Some(&[qs]))?;
                    q_dst[slot * spec.q_len * d..][..s.q_len * d].copy_from_slice(&q8.data);
                }
            }
            {
                let k_dst = k_in.as_mut_slice::<i8>()?;
                for (slot, &h) in l.heads.iter().enumerate() {
                    let kv = s.kv_head_of(h);
                    let k8 = match k_cache.entry((kv, ks.to_bits())) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            let kh = head_inputs(&inputs, h).k;
                            let view = HeadsView::new(kh, 1, s.kv_len, d)?;
                            e.insert(self.compute.quantize_heads(view, Some(&[ks]))?.data)
                        }
                    };
                    k_dst[slot * spec.kv_len * d..][..s.kv_len * d].copy_from_slice(k8);
                }
            }
            launch_inputs.push((q_in, k_in));
        }

        // The pipeline.
        let compute = self.compute;
        let config = self.config;
        let graphs = bank.graphs_mut();
        let origin = Instant::now();
        let (tx, rx) = sync_channel::<Work>(config.queue_depth);
        let rx = Mutex::new(rx);
        let outcomes: Mutex<Vec<Result<HeadOutcome>>> = Mutex::new(Vec::new());
        let npu_log: Mutex<(Vec<ProfileEvent>, Option<String>)> = Mutex::new((Vec::new(), None));
        std::thread::scope(|scope| {
            let npu_log = &npu_log;
            let launches = &launches;
            let launch_inputs = &launch_inputs;
            let plan = &plan;
            let cpu_rank = &cpu_rank;
            scope.spawn(move || {
                for &li in &plan.launch_order {
                    let l = &launches[li];
                    let mut order = l.heads.clone();
                    order.sort_by_key(|h| cpu_rank[h]);
                    let graph = graphs
                        .get_mut(&(l.bucket, l.heads.len()))
                        .expect("the bank holds every fused count");
                    let (q_in, k_in) = &launch_inputs[li];
                    let out_desc = graph.graph().output_descs().next().expect("scores").clone();
                    let run = HostTensor::zeros(out_desc)
                        .map_err(SparseAttnError::from)
                        .and_then(|mut scores| {
                            let ev = graph
                                .execute(&[q_in.view(), k_in.view()], &mut [scores.view_mut()])?;
                            Ok((scores, ev))
                        });
                    match run {
                        Ok((scores, ev)) => {
                            npu_log.lock().expect("not poisoned").0.extend(ev);
                            for &h in &order {
                                let slot = l
                                    .heads
                                    .iter()
                                    .position(|&x| x == h)
                                    .expect("head in launch");
                                let at = slot * spec.q_len * spec.kv_len;
                                let scores = match spec.output {
                                    PilotOutput::Int32 => Scores::I32(unpad(
                                        &scores.as_slice::<i32>().expect("i32 scores")[at..],
                                        spec.kv_len,
                                        s.q_len,
                                        s.kv_len,
                                    )),
                                    PilotOutput::Int8 { .. } => Scores::I8(unpad(
                                        &scores.as_slice::<i8>().expect("i8 scores")[at..],
                                        spec.kv_len,
                                        s.q_len,
                                        s.kv_len,
                                    )),
                                };
                                if tx.send(Work::Scores { head: h, scores }).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            npu_log
                                .lock()
                                .expect("not poisoned")
                                .1
                                .get_or_insert_with(|| {
                                    format!(
                                        "NPU launch of bucket {} ({} heads) failed: {e}",
                                        l.bucket,
                                        l.heads.len()
                                    )
                                });
                            for &h in &order {
                                if tx.send(Work::Failed { head: h }).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
            for w in 0..config.cpu_workers {
                let rx = &rx;
                let outcomes = &outcomes;
                let ratios = &ratios;
                let inputs = &inputs;
                scope.spawn(move || loop {
                    let work = match rx.lock().expect("not poisoned").recv() {
                        Ok(work) => work,
                        Err(_) => return,
                    };
                    let start = origin.elapsed();
                    let outcome = process(
                        compute,
                        &config,
                        inputs,
                        ratios,
                        work,
                        w,
                        start.as_nanos() as u64,
                        origin,
                    );
                    outcomes.lock().expect("not poisoned").push(outcome);
                });
            }
        });

        let mut output = vec![0.0; inputs.output_len()];
        let mut selections = vec![Selection::new(); s.q_heads];
        let mut fell_back = vec![false; s.q_heads];
        let (mut events, fallback) = npu_log.into_inner().expect("not poisoned");
        let mut done = 0;
        for outcome in outcomes.into_inner().expect("not poisoned") {
            let o = outcome?;
            output[o.head * s.q_len * d..(o.head + 1) * s.q_len * d].copy_from_slice(&o.output);
            selections[o.head] = o.selection;
            fell_back[o.head] = o.fallback;
            events.push(o.event);
            done += 1;
        }
        if done != s.q_heads {
            return Err(SparseAttnError::config(
                "pipeline",
                format!("{done} of {} heads finished", s.q_heads),
            ));
        }
        let heads = (0..s.q_heads)
            .map(|h| HeadReport {
                head: h,
                q_scale: q_scales[h],
                k_scale: k_scales[s.kv_head_of(h)],
                bucket: (!fell_back[h]).then_some(buckets[h]),
                ratio: ratios[h],
                kept: selections[h].indices.len(),
                fallback: fell_back[h],
            })
            .collect();
        Ok(ChunkResult {
            output,
            selections,
            heads,
            launches,
            plan: Some(plan),
            mode: ChunkMode::Sparse,
            fallback,
            events,
        })
    }
}

/// The first `rows` rows and `cols` columns of a row-major matrix with `stride` columns.
fn unpad<T: Copy>(padded: &[T], stride: usize, rows: usize, cols: usize) -> Vec<T> {
    (0..rows)
        .flat_map(|i| padded[i * stride..i * stride + cols].iter().copied())
        .collect()
}

/// Top-k keys of one head's `[q_len, kv_len]` scores.
fn select(
    compute: &dyn ComputeBackend,
    config: &ShadowConfig,
    shape: &AttentionShape,
    scores: &Scores,
    ratio: f32,
) -> Result<Selection> {
    let data = match scores {
        Scores::I32(v) => ScoreData::I32(v),
        Scores::I8(v) => ScoreData::I8(v),
    };
    let budget = KeyBudget::Ratio {
        ratio,
        min_keys: config.min_keys,
    };
    let matrix = ScoreMatrix {
        data,
        rows: shape.q_len,
        cols: shape.kv_len,
        q_offset: shape.q_offset,
        causal: shape.causal,
    };
    match config.granularity {
        Granularity::Row => Ok(compute.topk(matrix, budget)?),
        Granularity::Block(block) => {
            // Each row's own best min(min_keys, valid) keys, for the per-row floor.
            let floor_sel = compute.topk(
                matrix,
                KeyBudget::Ratio {
                    ratio: f32::MIN_POSITIVE,
                    min_keys: config.min_keys,
                },
            )?;
            let value = |i: usize, j: usize| -> i32 {
                match scores {
                    Scores::I32(v) => v[i * shape.kv_len + j],
                    Scores::I8(v) => i32::from(v[i * shape.kv_len + j]),
                }
            };
            let mut sel = Selection::new();
            for start in (0..shape.q_len).step_by(block) {
                let rows: Vec<usize> = (start..(start + block).min(shape.q_len)).collect();
                let mut flat = vec![i32::MIN; rows.len() * shape.kv_len];
                let mut valid = 0;
                for (r, &i) in rows.iter().enumerate() {
                    for j in 0..shape.valid_keys(i) {
                        flat[r * shape.kv_len + j] = value(i, j);
                        valid += 1;
                    }
                }
                let k = budget.keys_for(start, valid)?;
                let whole = ScoreMatrix {
                    data: ScoreData::I32(&flat),
                    rows: 1,
                    cols: flat.len(),
                    q_offset: 0,
                    causal: false,
                };
                let picked = compute.topk(whole, KeyBudget::Fixed(k))?;
                for (r, &i) in rows.iter().enumerate() {
                    let lo = (r * shape.kv_len) as u32;
                    let hi = lo + shape.valid_keys(i) as u32;
                    let mut keys: Vec<u32> = picked
                        .row(0)
                        .iter()
                        .filter(|&&x| x >= lo && x < hi)
                        .map(|&x| x - lo)
                        .collect();
                    // Every row keeps at least min_keys: its own best keys.
                    let floor = config.min_keys.min(shape.valid_keys(i));
                    for &j in floor_sel.row(i) {
                        if keys.len() >= floor {
                            break;
                        }
                        if !keys.contains(&j) {
                            keys.push(j);
                        }
                    }
                    keys.sort_unstable();
                    sel.push_row(&keys);
                }
            }
            Ok(sel)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn process(
    compute: &dyn ComputeBackend,
    config: &ShadowConfig,
    inputs: &AttentionInputs<'_>,
    ratios: &[f32],
    work: Work,
    worker: usize,
    start_ns: u64,
    origin: Instant,
) -> Result<HeadOutcome> {
    let (head, scores) = match work {
        Work::Scores { head, scores } => (head, Some(scores)),
        Work::Failed { head } => (head, None),
    };
    let one = head_inputs(inputs, head);
    let mut output = vec![0.0; one.output_len()];
    let (selection, fallback, name) = match scores {
        Some(scores) => {
            let selection = select(compute, config, &one.shape, &scores, ratios[head])?;
            compute.sparse_attention(one, std::slice::from_ref(&selection), &mut output)?;
            (
                selection,
                false,
                format!("top-k + sparse attention h{head}"),
            )
        }
        None => {
            compute.dense_attention(one, &mut output)?;
            (
                all_keys(&one.shape),
                true,
                format!("dense fallback h{head}"),
            )
        }
    };
    let end = origin.elapsed().as_nanos() as u64;
    Ok(HeadOutcome {
        head,
        output,
        selection,
        fallback,
        event: ProfileEvent {
            name,
            kind: EventKind::ComputeStage,
            track: format!("cpu{worker}"),
            start_ns,
            duration_ns: end.saturating_sub(start_ns).max(1),
            cycles: None,
            source: FigureSource::Measured,
        },
    })
}
