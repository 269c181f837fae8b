//! The group pilot: one launch unit per GQA group (its heads' rows stacked against the group's
//! keys, sent once), its ranking summed on the CPU or on the NPU.

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, GroupScores, HostTensor, KeyBudget,
    NpuBackend, ScoreData, ScoreMatrix, Selection,
};
use shadowattn_sparse_attn::calibration::{
    BucketGrid, Calibration, LayerSample, ModelShape, RatioConfig,
};
use shadowattn_sparse_attn::error::SparseAttnError;
use shadowattn_sparse_attn::metrics::topk_recall;
use shadowattn_sparse_attn::pilot::{
    int8_accumulator_range, GroupRanking, PilotOutput, PilotSpec, PilotUnit,
};
use shadowattn_sparse_attn::setup::{CoreSetup, PilotKind};
use shadowattn_sparse_attn::shadow::{ChunkMode, Granularity, ShadowAttention, ShadowConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use shadowattn_test_support::fake_npu::{Execution, FakeNpu};

const Q_HEADS: usize = 6;
const KV_HEADS: usize = 2;
const GROUP: usize = Q_HEADS / KV_HEADS;
const D: usize = 32;
const Q_LEN: usize = 32;
const KV_LEN: usize = 256;

fn chunk(seed: u64, q_len: usize, kv_len: usize) -> SyntheticChunk {
    SyntheticChunk::generate(SyntheticSpec {
        shape: AttentionShape::causal(Q_HEADS, KV_HEADS, q_len, kv_len, D),
        planted_fraction: 0.08,
        signal: 1.0,
        seed,
    })
    .unwrap()
}

/// A calibration from chunks of other seeds (uniform 20 % ratios), with an INT8 output range.
fn calibration() -> Calibration {
    let samples: Vec<SyntheticChunk> = (0..4).map(|s| chunk(100 + s, Q_LEN, Q_LEN)).collect();
    let layer_samples: Vec<LayerSample<'_>> = samples
        .iter()
        .map(|c| LayerSample {
            layer: 0,
            q: &c.q,
            k: &c.k,
            rows: Q_LEN,
        })
        .collect();
    let model = ModelShape {
        name: "synthetic".into(),
        layers: 1,
        q_heads: Q_HEADS,
        kv_heads: KV_HEADS,
        head_dim: D,
    };
    let cfg = RatioConfig {
        global_ratio: 0.2,
        min_ratio: 0.2,
        importance_clamp: (1e-3, 1e3),
    };
    let mut c =
        Calibration::calibrate(model, &layer_samples, &[vec![1.0; Q_HEADS]], cfg, 1, 0.5).unwrap();
    c.pilot_acc_range = Some(int8_accumulator_range(chunk(99, Q_LEN, KV_LEN).inputs()).unwrap());
    // The even rule: the group pilot is held to per-head pilots' per-row selections.
    c.budget = shadowattn_hal::BudgetRule::EVEN;
    c
}

/// The core with `pilot`; with `one_bucket` the grid is its mean scales alone, so both groups
/// share a bucket and run as one fused launch of two units.
fn core_with<'c>(
    npu: &dyn NpuBackend,
    compute: &'c dyn ComputeBackend,
    (pilot, granularity): (PilotKind, Granularity),
    one_bucket: bool,
) -> Result<ShadowAttention<'c>, SparseAttnError> {
    let mut calib = calibration();
    if one_bucket {
        let (q, k) = calib.grid.bucket(calib.grid.len() / 2);
        calib.grid = BucketGrid::new(q, k, 0, 0.5).unwrap();
    }
    let output = PilotOutput::int8_of(&calib).unwrap();
    Ok(CoreSetup::new(npu, calib, Q_LEN, KV_LEN)
        .pilot_output(output)
        .config(ShadowConfig {
            granularity,
            cpu_workers: 2,
            ..ShadowConfig::default()
        })
        .pilot(pilot)
        .build(compute)?
        .shadow)
}

fn core<'c>(
    npu: &dyn NpuBackend,
    compute: &'c dyn ComputeBackend,
    pilot: PilotKind,
    granularity: Granularity,
) -> Result<ShadowAttention<'c>, SparseAttnError> {
    core_with(npu, compute, (pilot, granularity), false)
}

fn group_spec(fused: usize, ranking: GroupRanking) -> PilotSpec {
    PilotSpec {
        fused,
        unit: PilotUnit::Group {
            heads: GROUP,
            ranking,
        },
        q_len: 8,
        kv_len: 32,
        head_dim: 16,
        q_scale: 0.05,
        k_scale: 0.04,
        output: PilotOutput::Int8 {
            acc_range: 127.0 * 60.0,
        },
    }
}

fn execute(npu: &dyn NpuBackend, spec: &PilotSpec, inputs: &[HostTensor]) -> HostTensor {
    let graph = spec.graph().unwrap();
    let mut compiled = npu.compile(&graph).unwrap();
    let mut out = HostTensor::zeros(graph.output_descs().next().unwrap().clone()).unwrap();
    let views: Vec<_> = inputs.iter().map(HostTensor::view).collect();
    compiled.execute(&views, &mut [out.view_mut()]).unwrap();
    out
}

/// Seeded INT8 data.
fn int8_data(n: usize, seed: u64) -> Vec<i8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 56) as i8
        })
        .collect()
}

/// The NPU-reduced ranking is, for every unit of a fused launch and every row of a chunk placed
/// at the end of the graph's rows and keys, the sum over the group's heads of the softmax of
/// their own scores (the CPU-ranked graph's INT8 output, dequantized) over the row's valid keys,
/// and exactly 0 on the keys the row does not see.
///
/// The attention scale makes one score step 0.15 in logits, so rows span about ±19 in logits:
/// without the softmax's max shift f16 overflows, a wrong scale moves the probabilities by
/// factors, a unit reading its neighbour's rows or a head's rows out of place ranks other keys.
/// Bound: 3 % of each value plus 2⁻¹⁴ (f16 logits of magnitude ≤ 19 are exact to 2⁻⁷ = 0.8 %
/// per probability twice over, one rounding of the f16 sum).
#[test]
fn the_npu_ranking_sums_each_heads_softmax_over_the_rows_valid_keys() {
    let cpu = CpuBackend::new();
    let step = group_spec(2, GroupRanking::Cpu)
        .output
        .score_scale(0.05, 0.04);
    let attention_scale = 0.15 / step;
    let scored = group_spec(2, GroupRanking::Cpu);
    let ranked = group_spec(2, GroupRanking::Npu { attention_scale });
    let (units, rows, keys, d) = (2, GROUP * 8, 32, 16);
    let q = HostTensor::from_slice(
        ranked
            .graph()
            .unwrap()
            .input_descs()
            .next()
            .unwrap()
            .clone(),
        &int8_data(units * rows * d, 1),
    )
    .unwrap();
    let k = HostTensor::from_slice(
        ranked
            .graph()
            .unwrap()
            .input_descs()
            .nth(1)
            .unwrap()
            .clone(),
        &int8_data(units * keys * d, 2),
    )
    .unwrap();
    let scores = execute(&cpu, &scored, &[q.clone(), k.clone()]);
    let scores = scores.as_slice::<i8>().unwrap();
    // A chunk of 5 rows over 20 keys, placed at the end of the graph's 8 rows and 32 keys.
    let (q_len, kv_len) = (5, 20);
    let (row0, key0) = (8 - q_len, 32 - kv_len);
    let mask = ranked.key_mask(kv_len).unwrap();
    let mask_desc = ranked
        .graph()
        .unwrap()
        .input_descs()
        .nth(2)
        .unwrap()
        .clone();
    let mask = HostTensor::from_slice(mask_desc, &mask).unwrap();
    // Each head's Q-scale factor (its bucket's Q scale over its unit's): 1, 1/2, 1/4.
    let factor = |h: usize| 0.5f32.powi(h as i32);
    let factors: Vec<half::f16> = (0..units * GROUP)
        .map(|x| half::f16::from_f32(factor(x % GROUP)))
        .collect();
    let factor_desc = ranked
        .graph()
        .unwrap()
        .input_descs()
        .nth(3)
        .unwrap()
        .clone();
    let factors = HostTensor::from_slice(factor_desc, &factors).unwrap();
    let ranking = execute(&cpu, &ranked, &[q, k, mask, factors]);
    let ranking = ranking.as_slice::<half::f16>().unwrap();
    let mut largest_logit = 0.0f64;
    for u in 0..units {
        for i in 0..q_len {
            let row = row0 + i;
            let valid = kv_len - q_len + i + 1;
            let mut want = vec![0.0f64; keys];
            for h in 0..GROUP {
                let at = ((u * GROUP + h) * 8 + row) * keys;
                let logits: Vec<f64> = (key0..key0 + valid)
                    .map(|j| {
                        f64::from(scores[at + j]) * f64::from(step * attention_scale * factor(h))
                    })
                    .collect();
                let max = logits.iter().copied().fold(f64::MIN, f64::max);
                largest_logit =
                    largest_logit.max(logits.iter().map(|l| l.abs()).fold(0.0, f64::max));
                let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                for (j, l) in (key0..).zip(&logits) {
                    want[j] += (l - max).exp() / total;
                }
            }
            let got = &ranking[(u * 8 + row) * keys..][..keys];
            for j in 0..keys {
                let g = f64::from(got[j].to_f32());
                let seen = j >= key0 && j < key0 + valid;
                if !seen {
                    assert_eq!(
                        g, 0.0,
                        "unit {u} row {i} key {j}: a key the row does not see"
                    );
                    continue;
                }
                assert!(
                    (g - want[j]).abs() <= 0.03 * want[j] + 1.0 / 16384.0,
                    "unit {u} row {i} key {j}: {g} vs {}",
                    want[j]
                );
            }
            let sum: f64 = got.iter().map(|x| f64::from(x.to_f32())).sum();
            assert!((sum - GROUP as f64).abs() < 0.03, "row sum {sum}");
        }
    }
    assert!(largest_logit > 15.0, "logits span only ±{largest_logit}");
}

/// The CPU-ranked group pilot selects exactly what the group rule selects from per-head pilots
/// at the group's bucket: the stacked rows of every head, the group's keys sent once, every unit
/// of a fused launch reading its own rows.
#[test]
fn the_cpu_ranked_group_pilot_selects_what_per_head_pilots_at_its_bucket_would() {
    let cpu = CpuBackend::new();
    for one_bucket in [false, true] {
        let pilot = (PilotKind::GroupCpuRanked, Granularity::Group);
        let mut sa = core_with(&cpu, &cpu, pilot, one_bucket).unwrap();
        check_cpu_ranked(&cpu, &mut sa, one_bucket);
    }
}

fn check_cpu_ranked(cpu: &CpuBackend, sa: &mut ShadowAttention<'_>, one_bucket: bool) {
    let bank_spec = sa.bank().unwrap().spec().clone();
    assert!(matches!(
        bank_spec.unit,
        PilotUnit::Group {
            heads: GROUP,
            ranking: GroupRanking::Cpu
        }
    ));
    let grid = sa.bank().unwrap().grid().clone();
    for seed in [1, 2] {
        let c = chunk(seed, Q_LEN, KV_LEN);
        let inputs = c.inputs();
        let r = sa.run_chunk(0, inputs).unwrap();
        assert_eq!(r.mode, ChunkMode::Sparse);
        assert_eq!(
            r.unit_work(&inputs.shape()).len(),
            KV_HEADS,
            "work per group"
        );
        assert_eq!(
            r.launch_sizes().iter().sum::<usize>(),
            KV_HEADS,
            "one unit per group"
        );
        if one_bucket {
            assert_eq!(
                r.launch_sizes(),
                vec![KV_HEADS],
                "both groups in one launch"
            );
        }
        for g in 0..KV_HEADS {
            let unit = r
                .launches
                .iter()
                .find(|l| l.units.contains(&g))
                .unwrap()
                .bucket;
            // The graph's static Q scale: the bucket nearest the group's largest head scale.
            let members = &r.heads[g * GROUP..(g + 1) * GROUP];
            let q_max = members.iter().map(|h| h.q_scale).fold(0.0f32, f32::max);
            assert_eq!(unit, grid.nearest(q_max, members[0].k_scale), "group {g}");
            // Each head's Q at its own bucket's scale, as the per-head pilot quantizes it.
            let specs: Vec<PilotSpec> = members
                .iter()
                .map(|h| PilotSpec {
                    fused: 1,
                    unit: PilotUnit::Head,
                    ..bank_spec.pilot(&grid, h.bucket().unwrap(), 1)
                })
                .collect();
            assert!(specs.iter().all(|p| p.k_scale == grid.bucket(unit).1));
            let want = group_selection_from_head_pilots(cpu, &specs, &inputs, g);
            for h in g * GROUP..(g + 1) * GROUP {
                assert_eq!(r.selections[h], want, "head {h} of group {g}");
            }
        }
        assert!(
            r.output.iter().any(|x| x.abs() > 1e-3),
            "not an all-zero output"
        );
    }
}

/// The group rule over per-head INT8 pilots (one spec per head of group `g`, at its bucket).
fn group_selection_from_head_pilots(
    cpu: &CpuBackend,
    specs: &[PilotSpec],
    inputs: &AttentionInputs<'_>,
    g: usize,
) -> Selection {
    let s = inputs.shape();
    let pad = |data: &[i8], rows: usize, padded: usize| {
        assert_eq!(data.len(), rows * s.head_dim);
        let mut v = data.to_vec();
        v.resize(padded * s.head_dim, 0);
        v
    };
    let mut scores = Vec::new();
    let mut logits = Vec::new();
    for (h, spec) in (g * GROUP..(g + 1) * GROUP).zip(specs) {
        let graph = spec.graph().unwrap();
        let descs: Vec<_> = graph.input_descs().cloned().collect();
        let k8 =
            shadowattn_sparse_attn::pilot::quantize_keys(cpu, inputs, g, spec.k_scale).unwrap();
        let k = HostTensor::from_slice(descs[1].clone(), &pad(&k8, s.kv_len, spec.kv_len)).unwrap();
        let q8 =
            shadowattn_sparse_attn::pilot::quantize_queries(cpu, inputs, h, spec.q_scale).unwrap();
        let q = HostTensor::from_slice(descs[0].clone(), &pad(&q8, s.q_len, spec.q_len)).unwrap();
        let out = execute(cpu, spec, &[q, k]);
        let all = out.as_slice::<i8>().unwrap();
        let mine: Vec<i8> = (0..s.q_len)
            .flat_map(|i| all[i * spec.kv_len..i * spec.kv_len + s.kv_len].to_vec())
            .collect();
        scores.push(mine);
        let dequant = spec.output.score_scale(spec.q_scale, spec.k_scale);
        logits.push(shadowattn_hal::group::logit_scale(dequant, s.scale));
    }
    let matrices = scores
        .iter()
        .map(|v| ScoreMatrix::for_chunk(ScoreData::I8(v), &s).unwrap())
        .collect();
    cpu.topk_group(
        &GroupScores::new(matrices, logits).unwrap(),
        KeyBudget::Ratio {
            ratio: 0.2,
            min_keys: 1,
        },
    )
    .unwrap()
}

/// The NPU-reduced ranking keeps the CPU-summed ranking's keys (f16 probabilities against the
/// exact fixed-point sum: ties and near-ties may swap) on chunks of the bank's size and shorter
/// ones placed at the end of its rows and keys, on the golden backend and the simulator.
#[test]
fn the_npu_ranking_keeps_the_cpu_rankings_keys_on_every_chunk_size() {
    let cpu = CpuBackend::new();
    let sim = shadowattn_simulator::SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    let npus: [&dyn NpuBackend; 2] = [&cpu, &sim];
    for (npu, one_bucket) in npus.into_iter().flat_map(|n| [(n, false), (n, true)]) {
        let ranked = |pilot| core_with(npu, &cpu, (pilot, Granularity::Group), one_bucket);
        let mut on_cpu = ranked(PilotKind::GroupCpuRanked).unwrap();
        let mut on_npu = ranked(PilotKind::GroupNpuRanked).unwrap();
        for (seed, q_len, kv_len) in [(1, Q_LEN, KV_LEN), (2, 20, 200), (3, 7, 7)] {
            let c = chunk(seed, q_len, kv_len);
            let a = on_cpu.run_chunk(0, c.inputs()).unwrap();
            let b = on_npu.run_chunk(0, c.inputs()).unwrap();
            assert!(b.fallback().is_none(), "{:?}", b.fallback());
            if one_bucket {
                assert_eq!(
                    b.launch_sizes(),
                    vec![KV_HEADS],
                    "both groups in one launch"
                );
            }
            let mut recalls = Vec::new();
            for h in 0..Q_HEADS {
                assert_eq!(
                    b.selections[h],
                    b.selections[h / GROUP * GROUP],
                    "shared by the group"
                );
                for i in 0..q_len {
                    recalls.push(topk_recall(b.selections[h].row(i), a.selections[h].row(i)));
                }
            }
            let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
            let worst = recalls.iter().copied().fold(1.0, f64::min);
            assert!(
                mean >= 0.98 && worst >= 0.75,
                "{} chunk {q_len}x{kv_len}: recall mean {mean}, worst {worst}",
                npu.name()
            );
            let l2 = shadowattn_sparse_attn::metrics::relative_l2(&b.output, &a.output);
            assert!(
                l2 < 0.02,
                "{} chunk {q_len}x{kv_len}: outputs differ by {l2}",
                npu.name()
            );
        }
    }
}

/// A failed group launch makes every head of its groups attend densely, and says so.
#[test]
fn a_failed_group_launch_falls_back_for_all_its_heads() {
    let cpu = CpuBackend::new();
    let failing = FakeNpu::cpu("failing").executing(Execution::Fails {
        call: "graphExecute",
        code: 1002,
    });
    for pilot in [PilotKind::GroupCpuRanked, PilotKind::GroupNpuRanked] {
        let mut sa = core(&failing, &cpu, pilot, Granularity::Group).unwrap();
        let c = chunk(7, Q_LEN, KV_LEN);
        let r = sa.run_chunk(0, c.inputs()).unwrap();
        let mut dense = vec![0.0; c.inputs().output_len()];
        cpu.dense_attention(c.inputs(), &mut dense).unwrap();
        assert_eq!(r.output, dense, "{pilot:?}");
        assert!(r.heads.iter().all(|h| h.fallback()), "{pilot:?}");
        assert_eq!(
            r.failures.iter().map(|f| f.heads.len()).sum::<usize>(),
            Q_HEADS,
            "{pilot:?}: every head of the failed groups"
        );
        assert!(r.fallback().unwrap().contains("graphExecute"));
    }
}

/// What cannot run gets a typed error that names it: a group pilot without shared selections, a
/// chunk whose rows are not its last keys for the NPU ranking, the NPU ranking of INT32 scores,
/// a mask beyond f16.
#[test]
fn what_the_group_pilot_cannot_run_is_refused_by_name() {
    let cpu = CpuBackend::new();
    for pilot in [PilotKind::GroupCpuRanked, PilotKind::GroupNpuRanked] {
        let e = core(&cpu, &cpu, pilot, Granularity::Row).unwrap_err();
        assert!(e.to_string().contains("granularity"), "{e}");
    }
    let mut sa = core(&cpu, &cpu, PilotKind::GroupNpuRanked, Granularity::Group).unwrap();
    let c = chunk(3, Q_LEN, KV_LEN);
    let mut shape = c.inputs().shape();
    shape.q_offset = 10;
    let inputs = AttentionInputs::new(&c.q, &c.k, &c.v, shape).unwrap();
    let e = sa.run_chunk(0, inputs).unwrap_err();
    assert!(
        matches!(e, SparseAttnError::ChunkMismatch { .. }) && e.to_string().contains("last keys"),
        "{e}"
    );
    let mut spec = group_spec(
        1,
        GroupRanking::Npu {
            attention_scale: 0.1,
        },
    );
    spec.output = PilotOutput::Int32;
    assert!(spec
        .graph()
        .unwrap_err()
        .to_string()
        .contains("INT8-output"));
    spec.output = PilotOutput::Int8 { acc_range: 1e9 };
    assert!(spec.graph().unwrap_err().to_string().contains("f16"));
}

/// `Auto` picks the NPU-reduced group pilot where the backend builds it, the CPU-ranked one where
/// the ranking cannot be built (a mask beyond f16 here), and the per-head pilot where heads do
/// not share selections.
#[test]
fn auto_picks_the_group_pilot_the_backend_can_build() {
    let cpu = CpuBackend::new();
    let unit = |sa: &ShadowAttention<'_>| sa.bank().unwrap().spec().unit;
    let sa = core(&cpu, &cpu, PilotKind::Auto, Granularity::Group).unwrap();
    assert!(unit(&sa).npu_ranking().is_some(), "{:?}", unit(&sa));
    let sa = core(&cpu, &cpu, PilotKind::Auto, Granularity::Row).unwrap();
    assert_eq!(unit(&sa), PilotUnit::Head);
    let mut calib = calibration();
    calib.pilot_acc_range = Some(1e9);
    let sa = CoreSetup::new(&cpu, calib.clone(), Q_LEN, KV_LEN)
        .pilot_output(PilotOutput::int8_of(&calib).unwrap())
        .pilot(PilotKind::Auto)
        .build(&cpu)
        .unwrap()
        .shadow;
    assert!(matches!(
        unit(&sa),
        PilotUnit::Group {
            ranking: GroupRanking::Cpu,
            ..
        }
    ));
}

/// The simulator prices prefills with its own group pilot graph: it has the core's nodes, ops
/// and shapes (the scales aside), so both cost the same on every profile.
#[test]
fn the_simulators_group_pilot_is_the_cores() {
    use shadowattn_simulator::npu::graphs::group_pilot_graph;
    for ranked_on_npu in [false, true] {
        for (units, heads, q, k, d) in [(1, 6, 128, 2048, 128), (2, 3, 16, 64, 32)] {
            let ranking = if ranked_on_npu {
                GroupRanking::Npu {
                    attention_scale: 0.1,
                }
            } else {
                GroupRanking::Cpu
            };
            let core = PilotSpec {
                fused: units,
                unit: PilotUnit::Group { heads, ranking },
                q_len: q,
                kv_len: k,
                head_dim: d,
                q_scale: 0.05,
                k_scale: 0.05,
                output: PilotOutput::Int8 {
                    acc_range: 127.0 * 10.0,
                },
            }
            .graph()
            .unwrap();
            let sim = group_pilot_graph(units, heads, (q, k, d), ranked_on_npu);
            let shape = |g: &shadowattn_hal::Graph| -> Vec<(String, Vec<Vec<usize>>)> {
                g.nodes()
                    .iter()
                    .map(|n| {
                        let shapes = n
                            .inputs
                            .iter()
                            .chain(&n.outputs)
                            .map(|&v| g.value(v).desc.shape.clone())
                            .collect();
                        (format!("{:?}", n.op.kind()), shapes)
                    })
                    .collect()
            };
            assert_eq!(
                shape(&core),
                shape(&sim),
                "{units}x{heads} ranked {ranked_on_npu}"
            );
            let descs = |g: &shadowattn_hal::Graph| -> Vec<_> {
                g.input_descs()
                    .chain(g.output_descs())
                    .map(|d| (d.dtype, d.shape.clone()))
                    .collect()
            };
            assert_eq!(descs(&core), descs(&sim));
            for soc in shadowattn_simulator::npu::profile::builtin_names() {
                let p = shadowattn_simulator::npu::profile::SocProfile::builtin(soc).unwrap();
                let cost = |g| shadowattn_simulator::npu::cost::graph_cost(&p, g).launch_ns(false);
                assert_eq!(cost(&core), cost(&sim), "{soc}");
            }
        }
    }
}
