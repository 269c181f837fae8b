//! Concurrency stress of the three-stage executor: many layers, random per-head ratios, random
//! injected NPU failures, 1 to 8 worker threads. No deadlock (a watchdog bounds every run), no
//! lost or duplicated head, output and fallbacks identical to the single-worker run.

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, ComputeCapabilities, HeadsView, KeyBudget,
    QuantizedHeads, ScoreMatrix, Selection,
};
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::calibration::{Calibration, LayerSample, ModelShape, RatioConfig};
use shadowattn_sparse_attn::cost_table::CostTable;
use shadowattn_sparse_attn::pilot::{PilotOutput, PilotUnit};
use shadowattn_sparse_attn::setup::FUSED_HEADS;
use shadowattn_sparse_attn::shadow::{Schedule, ShadowAttention, ShadowConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use shadowattn_test_support::fake_npu::{Execution, FakeNpu};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Under Miri (`ci/miri.sh`) the same test checks the executor's shared state at a size an
/// interpreter can run: two layers of four heads of 8 dimensions, one short chunk each, one
/// seed, 1 and 3 workers, a bank no longer than the chunks (the interpreter computes every
/// padded key). Four heads in two KV groups still give launches of 1, 2 and 4 fused heads.
const MIRI: bool = cfg!(miri);
/// Layers of the model.
const LAYERS: usize = if MIRI { 2 } else { 6 };
const Q_HEADS: usize = if MIRI { 4 } else { 8 };
const KV_HEADS: usize = 2;
const D: usize = if MIRI { 8 } else { 16 };

fn shape(kv_len: usize) -> AttentionShape {
    AttentionShape::causal(Q_HEADS, KV_HEADS, 8, kv_len, D)
}

fn chunk(seed: u64, kv_len: usize) -> SyntheticChunk {
    SyntheticChunk::generate(SyntheticSpec {
        shape: shape(kv_len),
        planted_fraction: 0.1,
        signal: 1.0,
        seed,
    })
    .unwrap()
}

fn calibration(seed: u64) -> Calibration {
    let samples: Vec<SyntheticChunk> = (0..LAYERS).map(|l| chunk(seed + l as u64, 8)).collect();
    let layer: Vec<LayerSample<'_>> = samples
        .iter()
        .enumerate()
        .map(|(l, c)| LayerSample {
            layer: l,
            q: &c.q,
            k: &c.k,
            rows: 8,
        })
        .collect();
    // Random importance gives every head its own ratio.
    let mut s = seed | 1;
    let importance: Vec<Vec<f64>> = (0..LAYERS)
        .map(|_| {
            (0..Q_HEADS)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % 1000) as f64 + 1.0
                })
                .collect()
        })
        .collect();
    let model = ModelShape {
        name: "stress".into(),
        layers: LAYERS,
        q_heads: Q_HEADS,
        kv_heads: KV_HEADS,
        head_dim: D,
    };
    let cfg = RatioConfig {
        global_ratio: 0.25,
        min_ratio: 0.02,
        importance_clamp: (1e-3, 1e4),
    };
    Calibration::calibrate(model, &layer, &importance, cfg, 1, 0.5).unwrap()
}

/// (outputs, fallback heads) of every (layer, chunk), for one worker count and schedule.
type RunResult = Vec<(Vec<f32>, Vec<usize>)>;

fn run(workers: usize, schedule: Schedule, seed: u64, calib: &Calibration) -> RunResult {
    // The golden interpreter whose launches fail pseudo-randomly: whether a launch fails is a
    // hash of the seed and its inputs, so the same launches fail whatever order the plan (made
    // for each worker count) runs them in.
    let npu = FakeNpu::cpu("flaky").executing(Execution::FailsSometimes { seed, one_in: 5 });
    let cpu = CpuBackend::new();
    let (layers, kv_lens): (usize, &[usize]) = if MIRI {
        (LAYERS, &[24])
    } else {
        (LAYERS, &[24, 96, 57])
    };
    let spec = BankSpec {
        q_len: 8,
        kv_len: kv_lens.iter().copied().max().unwrap_or(8),
        head_dim: D,
        fused: FUSED_HEADS.to_vec(),
        output: PilotOutput::Int32,
        unit: PilotUnit::Head,
    };
    let bank = GraphBank::build(&npu, &calib.grid, spec).unwrap();
    let config = ShadowConfig {
        cpu_workers: workers,
        queue_depth: 1 + workers % 3,
        schedule,
        ..ShadowConfig::default()
    };
    let mut sa = ShadowAttention::new(
        bank,
        calib.clone(),
        &cpu,
        CostTable::uniform(&FUSED_HEADS),
        config,
    )
    .unwrap();
    let mut results = Vec::new();
    for layer in 0..layers {
        for (i, &kv_len) in kv_lens.iter().enumerate() {
            let c = chunk(seed * 100 + (layer * 3 + i) as u64, kv_len);
            let r = sa.run_chunk(layer, c.inputs()).unwrap();
            assert_eq!(r.heads.len(), Q_HEADS);
            let mut seen: Vec<usize> = r.heads.iter().map(|h| h.head).collect();
            seen.sort_unstable();
            assert_eq!(
                seen,
                (0..Q_HEADS).collect::<Vec<_>>(),
                "every head exactly once"
            );
            let fallback: Vec<usize> = r
                .heads
                .iter()
                .filter(|h| h.fallback())
                .map(|h| h.head)
                .collect();
            assert_eq!(
                fallback.is_empty(),
                r.fallback().is_none(),
                "fallbacks are reported"
            );
            results.push((r.output, fallback));
        }
    }
    results
}

/// Runs `f` on a thread and fails if it does not finish in time (a deadlock).
fn within<T: Send + 'static>(seconds: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(seconds))
        .expect("the executor did not finish: deadlock or hang")
}

#[test]
fn any_worker_count_gives_the_sequential_result_under_injected_failures() {
    let (seeds, schedules, workers, timeout): (&[u64], &[Schedule], &[usize], u64) = if MIRI {
        (&[3], &[Schedule::Planned], &[3], 3600)
    } else {
        (
            &[3, 17],
            &[Schedule::Fifo, Schedule::Planned],
            &[2, 3, 4, 5, 6, 7, 8],
            60,
        )
    };
    for &seed in seeds {
        let calib = Arc::new(calibration(seed));
        for &schedule in schedules {
            // The injected failures hit the same launches whatever their order (the plan is
            // made for each worker count): the one-worker run is the reference.
            let c = calib.clone();
            let sequential = within(timeout, move || run(1, schedule, seed, &c));
            let failures: usize = sequential.iter().map(|(_, f)| f.len()).sum();
            assert!(failures > 0, "the failure injection must fire");
            assert!(
                sequential.iter().any(|(_, f)| f.is_empty()),
                "and not everywhere"
            );
            for &workers in workers {
                let c = calib.clone();
                let got = within(timeout, move || run(workers, schedule, seed, &c));
                assert!(
                    got == sequential,
                    "{schedule:?} with {workers} workers differs from one worker"
                );
            }
        }
    }
}

/// The golden kernels, but sparse attention panics: a kernel bug in a CPU worker.
#[derive(Debug)]
struct PanickingKernels(CpuBackend);

impl ComputeBackend for PanickingKernels {
    fn name(&self) -> &str {
        "panicking"
    }
    fn capabilities(&self) -> ComputeCapabilities {
        self.0.capabilities()
    }
    fn quantize_heads(
        &self,
        x: HeadsView<'_>,
        scales: Option<&[f32]>,
    ) -> shadowattn_hal::Result<QuantizedHeads> {
        self.0.quantize_heads(x, scales)
    }
    fn topk(
        &self,
        scores: ScoreMatrix<'_>,
        budget: KeyBudget,
    ) -> shadowattn_hal::Result<Selection> {
        self.0.topk(scores, budget)
    }
    fn sparse_attention(
        &self,
        _: AttentionInputs<'_>,
        _: &[Selection],
        _: &mut [f32],
    ) -> shadowattn_hal::Result<()> {
        panic!("index out of bounds in an injected kernel bug")
    }
    fn dense_attention(
        &self,
        inputs: AttentionInputs<'_>,
        out: &mut [f32],
    ) -> shadowattn_hal::Result<()> {
        self.0.dense_attention(inputs, out)
    }
}

/// A kernel that panics in every CPU worker is an error of the chunk that names the panic,
/// never a hang (the launcher blocked on a full queue no worker drains).
#[test]
fn a_panicking_kernel_is_an_error_not_a_hang() {
    let calib = Arc::new(calibration(5));
    let (kv_len, workers, timeout): (usize, &[usize], u64) = if MIRI {
        (24, &[2], 3600)
    } else {
        (96, &[1, 2, 4], 60)
    };
    for &workers in workers {
        let c = calib.clone();
        let e = within(timeout, move || {
            let npu = FakeNpu::cpu("steady");
            let kernels = PanickingKernels(CpuBackend::new());
            let spec = BankSpec {
                q_len: 8,
                kv_len,
                head_dim: D,
                fused: FUSED_HEADS.to_vec(),
                output: PilotOutput::Int32,
                unit: PilotUnit::Head,
            };
            let bank = GraphBank::build(&npu, &c.grid, spec).unwrap();
            let config = ShadowConfig {
                cpu_workers: workers,
                queue_depth: 1,
                ..ShadowConfig::default()
            };
            let mut sa = ShadowAttention::new(
                bank,
                (*c).clone(),
                &kernels,
                CostTable::uniform(&FUSED_HEADS),
                config,
            )
            .unwrap();
            sa.run_chunk(0, chunk(9, kv_len).inputs())
                .map(|_| ())
                .unwrap_err()
                .to_string()
        });
        assert!(
            e.contains("panicked") && e.contains("injected kernel bug"),
            "{workers} workers: {e}"
        );
    }
}
