//! The threaded pipeline of one prepared chunk: a launcher thread runs the launches in plan
//! order and hands each head's scores, in plan order, through a bounded queue to CPU workers
//! that select keys and attend to them. A failed launch makes its heads fall back to dense
//! attention. Each head's result depends only on its own data, so the output is the same
//! whatever the thread count.

use crate::bank::GraphBank;
use crate::error::{Result, SparseAttnError};
use crate::pilot::PilotOutput;
use crate::prepare::{placement, unit_heads, PreparedChunk};
use crate::select::{select, Granularity, SelectionRule};
use shadowattn_hal::{track, BudgetRule, ChunkBudget};
use shadowattn_hal::{
    AttentionInputs, ComputeBackend, EventKind, FigureSource, GroupScores, HalError, HostTensor,
    ProfileEvent, ScoreData, ScoreMatrix, Selection,
};
use shadowattn_pipeline::{Launch, Step};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Mutex;
use std::time::Instant;

/// A launch that failed on the NPU; its heads fell back to dense attention.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchFailure {
    /// Index of the launch.
    pub launch: usize,
    /// Its bucket.
    pub bucket: usize,
    /// Its heads.
    pub heads: Vec<usize>,
    /// What the backend said.
    pub error: HalError,
}

impl std::fmt::Display for LaunchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NPU launch of bucket {} ({} heads) failed: {}",
            self.bucket,
            self.heads.len(),
            self.error
        )
    }
}

/// What the CPU side does with each head's scores.
#[derive(Clone, Copy, Debug)]
pub struct Work<'a> {
    /// The kernels.
    pub compute: &'a dyn ComputeBackend,
    /// The chunk.
    pub inputs: AttentionInputs<'a>,
    /// The layer's per-head ratios.
    pub ratios: &'a [f32],
    /// Fewest keys a row keeps.
    pub min_keys: usize,
    /// Row or block top-k.
    pub granularity: Granularity,
    /// How each unit's keys are spread over its rows.
    pub budget: BudgetRule,
    /// CPU worker threads.
    pub workers: usize,
    /// Capacity of the queue between the launcher and the workers, in heads.
    pub queue_depth: usize,
}

/// One head's result.
#[derive(Debug)]
pub struct HeadOutcome {
    /// Query head.
    pub head: usize,
    /// Its output, `[q_len, head_dim]`.
    pub output: Vec<f32>,
    /// Its selected keys (every valid key after a fallback).
    pub selection: Selection,
    /// Whether it fell back to dense attention.
    pub fallback: bool,
    /// Its measured steps.
    pub events: Vec<ProfileEvent>,
}

/// The results of a chunk run through the pipeline.
#[derive(Debug)]
pub struct Executed {
    /// One outcome per head, indexed by head.
    pub heads: Vec<HeadOutcome>,
    /// The NPU backend's events, in launch order, then the launcher's measured launches.
    pub npu_events: Vec<ProfileEvent>,
    /// The launches that failed.
    pub failures: Vec<LaunchFailure>,
}

/// A head's scores on their way to a worker.
enum Scores {
    I32(Vec<i32>),
    I8(Vec<i8>),
    /// Its group's ranking, reduced on the NPU, stands for its scores.
    InRanking,
    /// The head's launch failed.
    Failed,
}

/// One head's part of a job: its scores and the factor that makes them softmax logits.
struct HeadJob {
    head: usize,
    logit_scale: f32,
    scores: Scores,
}

/// What one worker takes from the queue: one head, or every head of a GQA group when the group
/// shares its selection (sent once its last head's scores arrive), with the group's ranking when
/// the NPU reduced it.
struct Job {
    heads: Vec<HeadJob>,
    ranking: Option<Vec<half::f16>>,
}

impl Work<'_> {
    /// The budget of a key set `heads` share: the mean of their ratios.
    fn shared_budget(&self, heads: impl ExactSizeIterator<Item = usize>) -> ChunkBudget {
        let n = heads.len() as f32;
        ChunkBudget {
            ratio: heads.map(|h| self.ratios[h]).sum::<f32>() / n,
            min_keys: self.min_keys,
            rule: self.budget,
        }
    }

    /// Query heads per job: the GQA group's size when the group shares its selection.
    fn heads_per_job(&self) -> usize {
        let s = self.inputs.shape();
        match self.granularity {
            Granularity::Group => s.q_heads / s.kv_heads,
            Granularity::Row | Granularity::Block(_) => 1,
        }
    }
}

/// Runs `prepared` on `bank`'s graphs and `work`'s kernels.
pub fn run_plan(
    bank: &mut GraphBank,
    prepared: &PreparedChunk,
    work: &Work<'_>,
) -> Result<Executed> {
    let origin = Instant::now();
    let (jobs_tx, jobs_rx) = sync_channel::<Job>(work.queue_depth);
    let jobs_rx = Mutex::new(jobs_rx);
    let (done_tx, done_rx) = channel::<Result<Vec<HeadOutcome>>>();
    let launched = std::thread::scope(|scope| {
        let launcher = scope.spawn(|| launch_all(bank, prepared, work, origin, jobs_tx));
        for worker in 0..work.workers {
            let (rx, tx) = (&jobs_rx, done_tx.clone());
            scope.spawn(move || run_worker(work, worker, origin, rx, tx));
        }
        launcher.join()
    });
    drop(done_tx);
    let (npu_events, failures) =
        launched.map_err(|_| SparseAttnError::Invariant("the launcher thread panicked".into()))?;
    let heads = work.inputs.shape().q_heads;
    let mut by_head: Vec<Option<HeadOutcome>> = (0..heads).map(|_| None).collect();
    for outcomes in done_rx {
        for o in outcomes? {
            let head = o.head;
            if by_head[head].replace(o).is_some() {
                return Err(SparseAttnError::Invariant(format!(
                    "head {head} finished twice"
                )));
            }
        }
    }
    let done = by_head.iter().filter(|o| o.is_some()).count();
    let heads = by_head.into_iter().flatten().collect::<Vec<_>>();
    if done != work.inputs.shape().q_heads {
        return Err(SparseAttnError::Invariant(format!(
            "{done} of {} heads finished",
            work.inputs.shape().q_heads
        )));
    }
    Ok(Executed {
        heads,
        npu_events,
        failures,
    })
}

/// The launcher: every launch in plan order, then its units' jobs to the queue in plan order.
fn launch_all(
    bank: &mut GraphBank,
    prepared: &PreparedChunk,
    work: &Work<'_>,
    origin: Instant,
    jobs: SyncSender<Job>,
) -> (Vec<ProfileEvent>, Vec<LaunchFailure>) {
    let spec = bank.spec().clone();
    let s = work.inputs.shape();
    let mut events = Vec::new();
    let mut measured = Vec::new();
    let mut failures = Vec::new();
    let mut order = prepared.plan.unit_order.iter().copied();
    let per_job = work.heads_per_job();
    let per_unit = spec.unit.heads();
    let (row0, key0) = placement(bank, &s);
    let mut waiting: Vec<Vec<HeadJob>> = (0..s.kv_heads).map(|_| Vec::new()).collect();
    'launches: for &li in &prepared.plan.launch_order {
        let launch: &Launch = &prepared.launches[li];
        let start = origin.elapsed().as_nanos() as u64;
        let result = run_launch(bank, launch, &prepared.inputs[li]);
        let end = origin.elapsed().as_nanos() as u64;
        measured.push(ProfileEvent {
            name: format!(
                "pilot launch {li} (bucket {}, {} {:?})",
                launch.bucket,
                if per_unit > 1 { "groups" } else { "heads" },
                launch.units
            ),
            kind: EventKind::Launch,
            track: track::LAUNCHER.into(),
            start_ns: start,
            duration_ns: end.saturating_sub(start).max(1),
            cycles: None,
            source: FigureSource::Measured,
        });
        let units: Vec<usize> = order.by_ref().take(launch.units.len()).collect();
        let output = match result {
            Ok((output, ev)) => {
                events.extend(ev);
                Some(output)
            }
            Err(error) => {
                failures.push(LaunchFailure {
                    launch: li,
                    bucket: launch.bucket,
                    heads: launch
                        .units
                        .iter()
                        .flat_map(|&u| unit_heads(spec.unit, u))
                        .collect(),
                    error,
                });
                None
            }
        };
        let k_scale = bank.grid().bucket(launch.bucket).1;
        // Each head's Q was quantized with its own bucket's scale.
        let logit_scale = |h: usize| {
            let q_scale = bank.grid().bucket(prepared.scales[h].bucket).0;
            shadowattn_hal::group::logit_scale(spec.output.score_scale(q_scale, k_scale), s.scale)
        };
        for u in units {
            let slot = launch
                .units
                .iter()
                .position(|&x| x == u)
                .expect("the plan keeps each launch's units together");
            let ranking = match (&output, spec.unit.npu_ranking()) {
                (Some(t), Some(_)) => {
                    let at = slot * spec.q_len * spec.kv_len;
                    let data = &t.as_slice::<half::f16>().expect("f16 ranking")[at..];
                    Some(unpad(data, spec.kv_len, (row0, key0), s.q_len, s.kv_len))
                }
                _ => None,
            };
            for (gh, h) in unit_heads(spec.unit, u).enumerate() {
                let scores = match (&output, &ranking) {
                    (None, _) => Scores::Failed,
                    (Some(_), Some(_)) => Scores::InRanking,
                    (Some(t), None) => {
                        let at = (slot * per_unit + gh) * spec.q_len * spec.kv_len;
                        let corner = (row0, key0);
                        match spec.output {
                            PilotOutput::Int32 => Scores::I32(unpad(
                                &t.as_slice::<i32>().expect("i32 scores")[at..],
                                spec.kv_len,
                                corner,
                                s.q_len,
                                s.kv_len,
                            )),
                            PilotOutput::Int8 { .. } => Scores::I8(unpad(
                                &t.as_slice::<i8>().expect("i8 scores")[at..],
                                spec.kv_len,
                                corner,
                                s.q_len,
                                s.kv_len,
                            )),
                        }
                    }
                };
                let group = s.kv_head_of(h);
                waiting[group].push(HeadJob {
                    head: h,
                    logit_scale: logit_scale(h),
                    scores,
                });
                if waiting[group].len() == per_job {
                    let mut heads = std::mem::take(&mut waiting[group]);
                    heads.sort_by_key(|j| j.head);
                    let ranking = ranking.clone();
                    if jobs.send(Job { heads, ranking }).is_err() {
                        break 'launches;
                    }
                }
            }
        }
    }
    events.extend(measured);
    (events, failures)
}

/// One launch: its scores and the backend's events.
fn run_launch(
    bank: &mut GraphBank,
    launch: &Launch,
    inputs: &crate::prepare::LaunchInputs,
) -> std::result::Result<(HostTensor, Vec<ProfileEvent>), HalError> {
    let graph = bank
        .graph_mut(launch.bucket, launch.units.len())
        .expect("preparation found every launch's graph");
    let out_desc = graph
        .graph()
        .output_descs()
        .next()
        .expect("pilot graphs output scores")
        .clone();
    let mut scores = HostTensor::zeros(out_desc)?;
    let events = graph.execute(&inputs.views(), &mut [scores.view_mut()])?;
    Ok((scores, events))
}

/// A CPU worker: takes heads from the queue until it closes.
fn run_worker(
    work: &Work<'_>,
    worker: usize,
    origin: Instant,
    jobs: &Mutex<Receiver<Job>>,
    done: Sender<Result<Vec<HeadOutcome>>>,
) {
    loop {
        // The start is read while the queue is held, so starts are in queue order.
        let (job, start) = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(job) => (job, origin.elapsed().as_nanos() as u64),
                Err(_) => return,
            }
        };
        // An error, or a panic in a kernel, is reported and the worker goes on, so the queue
        // never stalls (a worker that died with its job would leave the launcher blocked on a
        // full queue and the chunk hung).
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process(work, worker, origin, start, job)
        }))
        .unwrap_or_else(|panic| Err(SparseAttnError::Invariant(panicked(worker, &*panic))));
        if done.send(outcome).is_err() {
            return;
        }
    }
}

/// What a worker that panicked on a job reports: the panic's message where it has one.
fn panicked(worker: usize, panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("CPU worker {worker} panicked: {message}")
}

/// Selects and attends for one job: its heads one by one, or its group's heads together.
fn process(
    work: &Work<'_>,
    worker: usize,
    origin: Instant,
    start: u64,
    job: Job,
) -> Result<Vec<HeadOutcome>> {
    let clock = Clock {
        origin,
        track: track::cpu(worker),
    };
    if let Some(ranking) = &job.ranking {
        return process_ranked(work, &clock, start, &job.heads, ranking);
    }
    let shared = job.heads.len() > 1
        && job
            .heads
            .iter()
            .any(|j| !matches!(j.scores, Scores::Failed));
    if shared {
        return process_group(work, &clock, start, &job.heads);
    }
    let mut outcomes = Vec::with_capacity(job.heads.len());
    let mut start = start;
    for head in &job.heads {
        outcomes.push(process_head(work, &clock, start, head)?);
        start = clock.now();
    }
    Ok(outcomes)
}

/// A worker's measured events on its own track.
struct Clock {
    origin: Instant,
    track: String,
}

impl Clock {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn event(&self, name: String, start: u64, end: u64) -> ProfileEvent {
        ProfileEvent {
            name,
            kind: EventKind::ComputeStage,
            track: self.track.clone(),
            start_ns: start,
            duration_ns: end.saturating_sub(start).max(1),
            cycles: None,
            source: FigureSource::Measured,
        }
    }
}

/// The head's scores as a score matrix of the chunk (`None` after a failed launch).
fn score_data(scores: &Scores) -> Option<ScoreData<'_>> {
    match scores {
        Scores::I32(v) => Some(ScoreData::I32(v)),
        Scores::I8(v) => Some(ScoreData::I8(v)),
        Scores::InRanking | Scores::Failed => None,
    }
}

/// Selects and attends for one head (or attends densely after a failed launch).
fn process_head(work: &Work<'_>, clock: &Clock, start: u64, job: &HeadJob) -> Result<HeadOutcome> {
    let one = work.inputs.head(job.head);
    let shape = one.shape();
    let mut output = vec![0.0; one.output_len()];
    let (selection, fallback, events) = match score_data(&job.scores) {
        Some(data) => {
            let rule = SelectionRule {
                ratio: work.ratios[job.head],
                min_keys: work.min_keys,
                granularity: work.granularity,
                budget: work.budget,
            };
            let scores = ScoreMatrix::for_chunk(data, &shape)?;
            let selection = select(work.compute, scores, job.logit_scale, rule)?;
            let selected = clock.now();
            work.compute
                .sparse_attention(one, std::slice::from_ref(&selection), &mut output)?;
            let end = clock.now();
            let events = vec![
                clock.event(
                    format!("{} h{}", Step::TopK.name(), job.head),
                    start,
                    selected,
                ),
                clock.event(
                    format!("{} h{}", Step::Attention.name(), job.head),
                    selected,
                    end,
                ),
            ];
            (selection, false, events)
        }
        None => {
            work.compute.dense_attention(one, &mut output)?;
            let events =
                vec![clock.event(format!("dense fallback h{}", job.head), start, clock.now())];
            (Selection::all_keys(&shape), true, events)
        }
    };
    Ok(HeadOutcome {
        head: job.head,
        output,
        selection,
        fallback,
        events,
    })
}

/// Selects one key set for a GQA group from the scores of its heads whose launch succeeded,
/// at the mean of their ratios, and attends with it; heads whose launch failed attend densely.
fn process_group(
    work: &Work<'_>,
    clock: &Clock,
    start: u64,
    heads: &[HeadJob],
) -> Result<Vec<HeadOutcome>> {
    let s = work.inputs.shape();
    let ranked: Vec<&HeadJob> = heads
        .iter()
        .filter(|j| !matches!(j.scores, Scores::Failed))
        .collect();
    let matrices = ranked
        .iter()
        .map(|j| {
            let data = score_data(&j.scores).expect("failed heads were left out");
            ScoreMatrix::for_chunk(data, &s)
        })
        .collect::<shadowattn_hal::Result<Vec<_>>>()?;
    let scales = ranked.iter().map(|j| j.logit_scale).collect();
    let budget = work.shared_budget(ranked.iter().map(|j| j.head));
    let selection = work
        .compute
        .select_group(&GroupScores::new(matrices, scales)?, &budget)?;
    attend_group(work, clock, (start, clock.now()), heads, selection)
}

/// Selects one key set for a GQA group from the ranking the NPU reduced, at the mean of its
/// heads' ratios, and attends with it.
fn process_ranked(
    work: &Work<'_>,
    clock: &Clock,
    start: u64,
    heads: &[HeadJob],
    ranking: &[half::f16],
) -> Result<Vec<HeadOutcome>> {
    let s = work.inputs.shape();
    let budget = work.shared_budget(heads.iter().map(|j| j.head));
    let selection = work.compute.select(
        ScoreMatrix::for_chunk(ScoreData::F16(ranking), &s)?,
        &budget,
    )?;
    attend_group(work, clock, (start, clock.now()), heads, selection)
}

/// Attends a GQA group's heads with their shared `selection` (selected at `times.1`, the job
/// having started at `times.0`); heads whose launch failed attend densely.
fn attend_group(
    work: &Work<'_>,
    clock: &Clock,
    (start, selected): (u64, u64),
    heads: &[HeadJob],
    selection: Selection,
) -> Result<Vec<HeadOutcome>> {
    let s = work.inputs.shape();
    let group = s.kv_head_of(heads[0].head);
    let members = work.inputs.group(group);
    let mut output = vec![0.0; members.output_len()];
    work.compute.sparse_attention_grouped(
        members,
        std::slice::from_ref(&selection),
        &mut output,
    )?;
    let end = clock.now();
    let first = group * (s.q_heads / s.kv_heads);
    let per_head = s.q_len * s.head_dim;
    let mut outcomes = Vec::with_capacity(heads.len());
    for (slot, out) in output.chunks_exact(per_head).enumerate() {
        let head = first + slot;
        let job = heads.iter().find(|j| j.head == head).ok_or_else(|| {
            SparseAttnError::Invariant(format!("group {group} lacks head {head}"))
        })?;
        if matches!(job.scores, Scores::Failed) {
            outcomes.push(process_head(work, clock, clock.now(), job)?);
            continue;
        }
        let events = vec![
            clock.event(
                format!("{} h{head} (group {group})", Step::TopK.name()),
                start,
                selected,
            ),
            clock.event(
                format!("{} h{head} (group {group})", Step::Attention.name()),
                selected,
                end,
            ),
        ];
        outcomes.push(HeadOutcome {
            head,
            output: out.to_vec(),
            selection: selection.clone(),
            fallback: false,
            events,
        });
    }
    Ok(outcomes)
}

/// The `rows` × `cols` block at `(row0, col0)` of a row-major matrix with `stride` columns.
fn unpad<T: Copy>(
    padded: &[T],
    stride: usize,
    (row0, col0): (usize, usize),
    rows: usize,
    cols: usize,
) -> Vec<T> {
    (row0..row0 + rows)
        .flat_map(|i| {
            padded[i * stride + col0..i * stride + col0 + cols]
                .iter()
                .copied()
        })
        .collect()
}
