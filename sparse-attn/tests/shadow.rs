//! The whole shadowAttn flow: calibration, bank, bucketed pilot, planned pipeline, fallback.

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    AttentionShape, BudgetRule, ComputeBackend, GroupScores, KeyBudget, NpuBackend, ScoreData,
    ScoreMatrix,
};
use shadowattn_simulator::SimBackend;
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::calibration::{Calibration, LayerSample, ModelShape, RatioConfig};
use shadowattn_sparse_attn::cost_table::CostTable;
use shadowattn_sparse_attn::metrics::{evaluate, relative_l2, topk_recall};
use shadowattn_sparse_attn::pilot::{int8_accumulator_range, PilotOutput, PilotUnit};
use shadowattn_sparse_attn::setup::{CoreSetup, MissingBank, FUSED_HEADS};
use shadowattn_sparse_attn::shadow::{
    ChunkMode, Granularity, Schedule, ShadowAttention, ShadowConfig,
};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use shadowattn_test_support::fake_npu::{Execution, FakeNpu};

const Q_HEADS: usize = 6;
const KV_HEADS: usize = 2;
const D: usize = 32;
const Q_LEN: usize = 32;
const KV_LEN: usize = 256;

fn model() -> ModelShape {
    ModelShape {
        name: "synthetic".into(),
        layers: 2,
        q_heads: Q_HEADS,
        kv_heads: KV_HEADS,
        head_dim: D,
    }
}

fn chunk(seed: u64, kv_len: usize) -> SyntheticChunk {
    SyntheticChunk::generate(SyntheticSpec {
        shape: AttentionShape::causal(Q_HEADS, KV_HEADS, Q_LEN, kv_len, D),
        planted_fraction: 0.08,
        signal: 1.0,
        seed,
    })
    .unwrap()
}

fn calibration(global_ratio: f32, importance: Vec<Vec<f64>>) -> Calibration {
    let samples: Vec<SyntheticChunk> = (0..4).map(|s| chunk(100 + s, KV_LEN)).collect();
    let layer_samples: Vec<LayerSample<'_>> = samples
        .iter()
        .enumerate()
        .map(|(i, c)| LayerSample {
            layer: i % 2,
            q: &c.q,
            k: &c.k[..],
            rows: 0,
        })
        .map(|mut s| {
            // Use the first Q_LEN rows of K so Q and K samples have the same row count.
            s.rows = Q_LEN;
            s
        })
        .collect::<Vec<_>>();
    // K samples must hold `rows` rows per KV head: take them from each chunk.
    let ks: Vec<Vec<f32>> = samples
        .iter()
        .map(|c| {
            (0..KV_HEADS)
                .flat_map(|kv| c.k[kv * KV_LEN * D..kv * KV_LEN * D + Q_LEN * D].to_vec())
                .collect()
        })
        .collect();
    let layer_samples: Vec<LayerSample<'_>> = layer_samples
        .into_iter()
        .zip(&ks)
        .map(|(s, k)| LayerSample { k, ..s })
        .collect();
    let cfg = RatioConfig {
        global_ratio,
        min_ratio: global_ratio.min(0.05),
        importance_clamp: (1e-3, 1e3),
    };
    // The even rule: these tests hold the core to per-row selections.
    Calibration {
        budget: BudgetRule::EVEN,
        ..Calibration::calibrate(model(), &layer_samples, &importance, cfg, 1, 0.5).unwrap()
    }
}

fn uniform_importance() -> Vec<Vec<f64>> {
    vec![vec![1.0; Q_HEADS]; 2]
}

fn spec() -> BankSpec {
    BankSpec {
        q_len: Q_LEN,
        kv_len: KV_LEN,
        head_dim: D,
        fused: FUSED_HEADS.to_vec(),
        output: PilotOutput::Int32,
        unit: PilotUnit::Head,
    }
}

/// The pilot as NPUs build it: requantized INT8 scores (the simulated NPUs, like HTP, have no
/// INT32 MatMul output), scaled from a sample chunk of another seed.
fn int8_spec() -> BankSpec {
    let sample = chunk(99, KV_LEN);
    BankSpec {
        output: PilotOutput::Int8 {
            acc_range: int8_accumulator_range(sample.inputs()).unwrap(),
        },
        ..spec()
    }
}

fn shadow<'c>(
    npu: &dyn NpuBackend,
    compute: &'c dyn ComputeBackend,
    calib: Calibration,
    config: ShadowConfig,
) -> ShadowAttention<'c> {
    shadow_with(npu, compute, calib, config, spec())
}

fn shadow_with<'c>(
    npu: &dyn NpuBackend,
    compute: &'c dyn ComputeBackend,
    calib: Calibration,
    config: ShadowConfig,
    spec: BankSpec,
) -> ShadowAttention<'c> {
    assert_eq!(spec.fused, FUSED_HEADS, "the builder's fused counts");
    CoreSetup::new(npu, calib, spec.q_len, spec.kv_len)
        .pilot_output(spec.output)
        .config(config)
        .build(compute)
        .unwrap()
        .shadow
}

fn dense(compute: &dyn ComputeBackend, c: &SyntheticChunk) -> Vec<f32> {
    let mut out = vec![0.0; c.inputs().output_len()];
    compute.dense_attention(c.inputs(), &mut out).unwrap();
    out
}

#[test]
fn bucketed_int8_pilot_recalls_the_planted_top_k() {
    let cpu = CpuBackend::new();
    // Per-head recall is a per-row selection's measure: a shared set serves its group.
    let mut sa = shadow(
        &cpu,
        &cpu,
        calibration(0.2, uniform_importance()),
        ShadowConfig {
            granularity: Granularity::Row,
            ..ShadowConfig::default()
        },
    );
    let mut recalls = Vec::new();
    for seed in [1, 2, 3] {
        let c = chunk(seed, KV_LEN);
        let r = sa.run_chunk(0, c.inputs()).unwrap();
        assert_eq!(r.mode, ChunkMode::Sparse);
        assert!(r.fallback().is_none());
        let acc = evaluate(c.inputs(), &r.selections, &r.output, &dense(&cpu, &c), &cpu).unwrap();
        assert!((acc.kept_fraction - 0.2).abs() < 0.02, "{acc:?}");
        assert!(acc.oracle_mass_mean + 1e-9 >= acc.mass_mean);
        recalls.push(acc.recall_mean);
        // Each launch's heads share a bucket, and fused counts come from the bank.
        for l in &r.launches {
            assert!([1, 2, 4].contains(&l.units.len()));
            for &h in &l.units {
                assert_eq!(r.heads[h].bucket(), Some(l.bucket));
            }
        }
    }
    let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
    assert!(mean >= 0.97, "INT8 bucketed pilot recall {recalls:?}");
}

#[test]
fn keeping_every_key_reproduces_dense_attention() {
    let cpu = CpuBackend::new();
    let mut sa = shadow(
        &cpu,
        &cpu,
        calibration(1.0, uniform_importance()),
        ShadowConfig::default(),
    );
    let c = chunk(9, 200);
    let r = sa.run_chunk(1, c.inputs()).unwrap();
    assert!(relative_l2(&r.output, &dense(&cpu, &c)) <= 1e-6);
}

#[test]
fn output_is_identical_for_every_schedule_and_thread_count() {
    let cpu = CpuBackend::new();
    let calib = calibration(
        0.15,
        vec![vec![5.0, 1.0, 2.0, 0.5, 3.0, 1.0], vec![1.0; Q_HEADS]],
    );
    let c = chunk(4, KV_LEN);
    let mut sa = shadow(
        &cpu,
        &cpu,
        calib,
        ShadowConfig {
            cpu_workers: 1,
            ..ShadowConfig::default()
        },
    );
    let reference = sa.run_chunk(0, c.inputs()).unwrap();
    for workers in [1, 2, 3, 8] {
        for schedule in [Schedule::Planned, Schedule::Fifo] {
            for queue_depth in [1, 16] {
                let cfg = ShadowConfig {
                    cpu_workers: workers,
                    schedule,
                    queue_depth,
                    ..ShadowConfig::default()
                };
                sa.set_config(cfg).unwrap();
                let r = sa.run_chunk(0, c.inputs()).unwrap();
                assert_eq!(r.output, reference.output, "{cfg:?}");
                assert_eq!(r.selections, reference.selections, "{cfg:?}");
            }
        }
    }
}

#[test]
fn the_simulator_as_npu_gives_the_same_result_as_the_cpu() {
    let cpu = CpuBackend::new();
    let sim = SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    let calib = calibration(0.2, uniform_importance());
    let c = chunk(5, 180);
    let a = shadow_with(
        &cpu,
        &cpu,
        calib.clone(),
        ShadowConfig::default(),
        int8_spec(),
    )
    .run_chunk(0, c.inputs())
    .unwrap();
    let mut on_sim = shadow_with(
        &sim,
        &cpu,
        calib,
        ShadowConfig {
            cpu_workers: 2,
            ..ShadowConfig::default()
        },
        int8_spec(),
    );
    let b = on_sim.run_chunk(0, c.inputs()).unwrap();
    assert_eq!(a.output, b.output);
    assert!(
        b.events.iter().any(|e| e.track == "npu"),
        "simulated launches are reported"
    );
    assert_eq!(on_sim.bank().unwrap().len(), 9 * 3);
}

#[test]
fn block_granularity_keeps_the_budget_and_a_floor_per_row() {
    let cpu = CpuBackend::new();
    let cfg = ShadowConfig {
        granularity: Granularity::Block(8),
        min_keys: 2,
        ..ShadowConfig::default()
    };
    let mut sa = shadow(&cpu, &cpu, calibration(0.2, uniform_importance()), cfg);
    let c = chunk(6, KV_LEN);
    let r = sa.run_chunk(0, c.inputs()).unwrap();
    let shape = c.shape;
    let mut kept = 0;
    let mut valid = 0;
    for sel in &r.selections {
        sel.validate_for(0, &shape).unwrap();
        for i in 0..shape.q_len {
            assert!(sel.row(i).len() >= 2);
            kept += sel.row(i).len();
            valid += shape.valid_keys(i);
        }
    }
    let frac = kept as f64 / valid as f64;
    assert!((0.19..0.23).contains(&frac), "{frac}");
    let acc = evaluate(c.inputs(), &r.selections, &r.output, &dense(&cpu, &c), &cpu).unwrap();
    assert!(acc.cosine_mean > 0.95, "{acc:?}");
}

#[test]
fn decode_steps_are_dense() {
    let cpu = CpuBackend::new();
    let mut sa = shadow(
        &cpu,
        &cpu,
        calibration(0.2, uniform_importance()),
        ShadowConfig::default(),
    );
    let c = SyntheticChunk::generate(SyntheticSpec {
        shape: AttentionShape::causal(Q_HEADS, KV_HEADS, 1, 100, D),
        planted_fraction: 0.1,
        signal: 1.0,
        seed: 1,
    })
    .unwrap();
    let r = sa.run_chunk(0, c.inputs()).unwrap();
    assert_eq!(r.mode, ChunkMode::DenseDecode);
    assert_eq!(r.output, dense(&cpu, &c));
}

#[test]
fn npu_failures_fall_back_to_dense_and_say_so() {
    let cpu = CpuBackend::new();
    let calib = calibration(0.2, uniform_importance());
    let c = chunk(7, KV_LEN);
    // Compiles like the CPU, fails every execution.
    let failing = FakeNpu::cpu("failing").executing(Execution::Fails {
        call: "graphExecute",
        code: 1002,
    });
    let mut sa = shadow(
        &failing,
        &cpu,
        calib.clone(),
        ShadowConfig {
            cpu_workers: 2,
            ..ShadowConfig::default()
        },
    );
    let r = sa.run_chunk(0, c.inputs()).unwrap();
    assert_eq!(r.output, dense(&cpu, &c));
    assert!(r.heads.iter().all(|h| h.fallback()));
    let why = r.fallback().unwrap();
    assert!(
        why.contains("graphExecute") && why.contains("1002"),
        "{why}"
    );

    let no_compile = FakeNpu::cpu("failing").failing_compile("graphFinalize", 6000);
    let mut sa = CoreSetup::new(&no_compile, calib, Q_LEN, KV_LEN)
        .pilot_output(spec().output)
        .missing_bank(MissingBank::RunDense)
        .build(&cpu)
        .unwrap()
        .shadow;
    let r = sa.run_chunk(0, c.inputs()).unwrap();
    assert!(
        matches!(r.mode, ChunkMode::DenseNoBank { .. }),
        "{:?}",
        r.mode
    );
    assert_eq!(r.output, dense(&cpu, &c));
    assert!(r.fallback().unwrap().contains("graphFinalize"));
}

#[test]
fn bad_input_gets_typed_errors() {
    let cpu = CpuBackend::new();
    let calib = calibration(0.2, uniform_importance());
    let mut sa = shadow(&cpu, &cpu, calib.clone(), ShadowConfig::default());
    // Longer than the bank.
    let long = chunk(1, KV_LEN + 1);
    let e = sa.run_chunk(0, long.inputs()).unwrap_err();
    assert!(e.to_string().contains("exceed the bank"), "{e}");
    // Another model.
    let other = SyntheticChunk::generate(SyntheticSpec {
        shape: AttentionShape::causal(4, 2, Q_LEN, 64, D),
        planted_fraction: 0.1,
        signal: 1.0,
        seed: 1,
    })
    .unwrap();
    let e = sa.run_chunk(0, other.inputs()).unwrap_err();
    assert!(e.to_string().contains("calibration is for"), "{e}");
    // No such layer.
    let c = chunk(1, 64);
    assert!(sa
        .run_chunk(2, c.inputs())
        .unwrap_err()
        .to_string()
        .contains("layer 2"));
    // NaN in the queries.
    let mut nan = chunk(1, 64);
    nan.q[3] = f32::NAN;
    assert!(sa.run_chunk(0, nan.inputs()).is_err());
    // Settings and bank mismatches.
    assert!(sa
        .set_config(ShadowConfig {
            cpu_workers: 0,
            ..ShadowConfig::default()
        })
        .is_err());
    let bank = GraphBank::build(
        &cpu,
        &calib.grid,
        BankSpec {
            head_dim: 16,
            ..spec()
        },
    )
    .unwrap();
    assert!(ShadowAttention::new(
        bank,
        calib.clone(),
        &cpu,
        CostTable::uniform(&FUSED_HEADS),
        ShadowConfig::default()
    )
    .is_err());
    assert!(GraphBank::build(
        &cpu,
        &calib.grid,
        BankSpec {
            fused: vec![2, 4],
            ..spec()
        }
    )
    .is_err());
    let bank = GraphBank::build(&cpu, &calib.grid, spec()).unwrap();
    assert!(ShadowAttention::new(
        bank,
        calib,
        &cpu,
        CostTable::uniform(&[1]),
        ShadowConfig::default()
    )
    .is_err());
}

#[test]
fn banks_round_trip_and_check_what_they_hold() {
    let cpu = CpuBackend::new();
    let sim = SimBackend::builtin("sa8255").unwrap();
    let calib = calibration(0.2, uniform_importance());
    for (npu, spec) in [(&cpu as &dyn NpuBackend, spec()), (&sim, int8_spec())] {
        let bank = GraphBank::build(npu, &calib.grid, spec.clone()).unwrap();
        assert_eq!(bank.split(7), vec![4, 2, 1]);
        let bytes = bank.serialize().unwrap();
        let loaded = GraphBank::load(npu, &calib.grid, spec.clone(), &bytes).unwrap();
        assert_eq!(loaded.len(), bank.len());
        let e = GraphBank::load(
            npu,
            &calib.grid,
            BankSpec {
                kv_len: 128,
                ..spec.clone()
            },
            &bytes,
        )
        .unwrap_err();
        assert!(e.to_string().contains("compiled from other graphs"), "{e}");
        assert!(
            GraphBank::load(npu, &calib.grid, spec.clone(), &bytes[..bytes.len() - 3]).is_err()
        );
        assert!(GraphBank::load(npu, &calib.grid, spec, b"not a bank").is_err());
    }
}

#[test]
fn stage_costs_can_be_measured_on_the_device() {
    let cpu = CpuBackend::new();
    let calib = calibration(0.2, uniform_importance());
    let mut bank = GraphBank::build(&cpu, &calib.grid, spec()).unwrap();
    let sample = chunk(11, KV_LEN);
    let table = CostTable::measure(
        &mut bank,
        &cpu,
        sample.inputs(),
        0.2,
        3,
        Granularity::Group,
        BudgetRule::EVEN,
    )
    .unwrap();
    assert_eq!(
        table.npu_ns.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert!(table.npu_ns.values().all(|&t| t > 0.0));
    assert!(
        table.topk_ns_per_key > 0.0 && table.attention_ns_per_pair > 0.0,
        "{table:?}"
    );
    // The simulator reports simulated launch times, which the table takes instead of wall time.
    let sim = SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    let mut sim_bank = GraphBank::build(&sim, &calib.grid, int8_spec()).unwrap();
    let sim_table = CostTable::measure(
        &mut sim_bank,
        &cpu,
        sample.inputs(),
        0.2,
        2,
        Granularity::Row,
        BudgetRule::EVEN,
    )
    .unwrap();
    assert!(
        sim_table.npu_ns[&1] > 1e6,
        "a warm simulated launch costs over a millisecond: {sim_table:?}"
    );
    assert!(sim_table.npu_ns[&4] > sim_table.npu_ns[&1]);
    let mut sa = ShadowAttention::new(bank, calib, &cpu, table, ShadowConfig::default()).unwrap();
    sa.run_chunk(0, sample.inputs()).unwrap();
    assert!(CostTable::measure(
        &mut sim_bank,
        &cpu,
        sample.inputs(),
        0.2,
        0,
        Granularity::Row,
        BudgetRule::EVEN
    )
    .is_err());
}

/// The launch index in a launcher event's name (`pilot launch 3 (bucket …)`).
fn launch_index(name: &str) -> usize {
    name.strip_prefix("pilot launch ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("not a launcher event: {name}"))
}

#[test]
fn the_executor_follows_the_plan_it_was_given() {
    let cpu = CpuBackend::new();
    // Unequal ratios make unequal attention costs, so the greedy order is not the FIFO one.
    let calib = calibration(
        0.15,
        vec![vec![5.0, 1.0, 2.0, 0.5, 3.0, 1.0], vec![1.0; Q_HEADS]],
    );
    let c = chunk(4, KV_LEN);
    let mut sa = shadow(&cpu, &cpu, calib, ShadowConfig::default());
    let mut reordered = false;
    for workers in [1, 3] {
        for schedule in [Schedule::Planned, Schedule::Fifo] {
            sa.set_config(ShadowConfig {
                cpu_workers: workers,
                schedule,
                granularity: Granularity::Row,
                ..ShadowConfig::default()
            })
            .unwrap();
            let r = sa.run_chunk(0, c.inputs()).unwrap();
            let plan = r.plan.clone().unwrap();
            let fifo: Vec<usize> = r.launches.iter().flat_map(|l| l.units.clone()).collect();
            reordered |= plan.unit_order != fifo;
            let launched: Vec<usize> = r
                .events
                .iter()
                .filter(|e| e.track == shadowattn_hal::track::LAUNCHER)
                .map(|e| launch_index(&e.name))
                .collect();
            assert_eq!(
                launched, plan.launch_order,
                "{workers} workers, {schedule:?}"
            );
            // Each head's first step starts no earlier than that of the head before it in the
            // plan: the workers take heads in plan order.
            let start = |h: usize| {
                r.events
                    .iter()
                    .find(|e| e.name == format!("top-k h{h}"))
                    .unwrap_or_else(|| panic!("no top-k event of head {h}"))
                    .start_ns
            };
            for w in plan.unit_order.windows(2) {
                assert!(
                    start(w[0]) <= start(w[1]),
                    "head {} started before head {} ({workers} workers, {schedule:?}, plan {:?})",
                    w[1],
                    w[0],
                    plan.unit_order
                );
            }
            let workers_seen: std::collections::BTreeSet<&str> = r
                .events
                .iter()
                .filter(|e| e.name.starts_with("top-k"))
                .map(|e| e.track.as_str())
                .collect();
            assert!(workers_seen.len() <= workers);
        }
    }
    assert!(
        reordered,
        "the planner never reordered heads: the test shows nothing"
    );
}

#[test]
fn a_gqa_group_shares_the_key_set_its_exact_scores_would_choose() {
    let cpu = CpuBackend::new();
    let calib = calibration(0.2, uniform_importance());
    let mut sa = shadow(&cpu, &cpu, calib, ShadowConfig::default());
    for seed in [1, 2] {
        let c = chunk(seed, KV_LEN);
        let inputs = c.inputs();
        let s = inputs.shape();
        let g = s.q_heads / s.kv_heads;
        let r = sa.run_chunk(0, inputs).unwrap();
        assert_eq!(r.mode, ChunkMode::Sparse);
        let mut recalls = Vec::new();
        for kv in 0..s.kv_heads {
            let heads = kv * g..(kv + 1) * g;
            for h in heads.clone() {
                assert_eq!(
                    r.selections[h],
                    r.selections[kv * g],
                    "head {h} of group {kv}"
                );
            }
            // The group's exact ranking at the same budget: the INT8 pilot must find it.
            let exact: Vec<Vec<f32>> = heads
                .clone()
                .map(|h| inputs.exact_scores(h).unwrap())
                .collect();
            let matrices = exact
                .iter()
                .map(|e| ScoreMatrix::for_chunk(ScoreData::F32(e), &s).unwrap())
                .collect();
            let group = GroupScores::new(matrices, vec![s.scale; g]).unwrap();
            let want = cpu
                .topk_group(
                    &group,
                    KeyBudget::Ratio {
                        ratio: 0.2,
                        min_keys: 1,
                    },
                )
                .unwrap();
            for i in 0..s.q_len {
                recalls.push(topk_recall(r.selections[kv * g].row(i), want.row(i)));
            }
        }
        let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
        // The per-head bound of the INT8 pilot (0.97, above) holds for the group's ranking too.
        assert!(mean >= 0.97, "group recall {mean}");
        // The output is sparse attention with the shared sets, computed by the golden kernels.
        let mut want = vec![0.0; inputs.output_len()];
        cpu.sparse_attention(inputs, &r.selections, &mut want)
            .unwrap();
        assert!(r
            .output
            .iter()
            .zip(&want)
            .all(|(a, b)| (a - b).abs() <= 1e-6 + 1e-5 * b.abs()));
        assert!(
            r.output.iter().any(|x| x.abs() > 1e-3),
            "not an all-zero output"
        );
    }
}

/// The CPU stage's events are measured: on each worker's track they follow one another without
/// overlap, and they take the time the work takes (a constant clock gives every step 1 ns).
/// Per-row selection, so that every job is one head (a GQA group's heads share their steps).
#[test]
fn the_cpu_steps_are_timed_on_each_workers_track() {
    let cpu = CpuBackend::new();
    let c = chunk(6, KV_LEN);
    let mut sa = shadow(
        &cpu,
        &cpu,
        calibration(0.2, uniform_importance()),
        ShadowConfig {
            cpu_workers: 2,
            granularity: Granularity::Row,
            ..ShadowConfig::default()
        },
    );
    let r = sa.run_chunk(0, c.inputs()).unwrap();
    let steps: Vec<_> = r
        .events
        .iter()
        .filter(|e| e.kind == shadowattn_hal::EventKind::ComputeStage)
        .collect();
    assert!(!steps.is_empty(), "no CPU step events");
    let total: u64 = steps.iter().map(|e| e.duration_ns).sum();
    assert!(
        total > 10_000,
        "the CPU steps of {} heads took {total} ns in all",
        Q_HEADS
    );
    let mut tracks: Vec<&str> = steps.iter().map(|e| e.track.as_str()).collect();
    tracks.sort_unstable();
    tracks.dedup();
    for track in tracks {
        let mut on: Vec<_> = steps.iter().filter(|e| e.track == track).collect();
        on.sort_by_key(|e| e.start_ns);
        for pair in on.windows(2) {
            assert!(
                pair[1].start_ns >= pair[0].start_ns + pair[0].duration_ns,
                "{track}: `{}` overlaps `{}`",
                pair[0].name,
                pair[1].name
            );
        }
    }
}
