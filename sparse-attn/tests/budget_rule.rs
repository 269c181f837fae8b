//! Budget rules in the core: every pilot and granularity keeps exactly the pairs the rule
//! counts before the scores ([`ChunkBudget::kept_pairs`], what the planner prices), every row
//! within its bounds and with its anchors, and the selection is the HAL's rule applied to the
//! pilot's ranking.

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    Anchors, AttentionShape, BudgetRule, ChunkBudget, ComputeBackend, NpuBackend, RowSplit,
};
use shadowattn_sparse_attn::calibration::{Calibration, LayerSample, ModelShape, RatioConfig};
use shadowattn_sparse_attn::pilot::{int8_accumulator_range, PilotOutput};
use shadowattn_sparse_attn::prepare::unit_work;
use shadowattn_sparse_attn::setup::{CoreSetup, PilotKind};
use shadowattn_sparse_attn::shadow::{Granularity, ShadowConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};

const Q_HEADS: usize = 6;
const KV_HEADS: usize = 2;
const D: usize = 32;
const Q_LEN: usize = 48;
const KV_LEN: usize = 160;

fn chunk(seed: u64, q_len: usize, kv_len: usize) -> SyntheticChunk {
    SyntheticChunk::generate(SyntheticSpec {
        shape: AttentionShape::causal(Q_HEADS, KV_HEADS, q_len, kv_len, D),
        planted_fraction: 0.08,
        signal: 1.0,
        seed,
    })
    .unwrap()
}

/// A calibration from other seeds, per-head ratios 10–30 %, keeping keys by `rule`.
fn calibration(rule: BudgetRule) -> Calibration {
    let samples: Vec<SyntheticChunk> = (0..3).map(|s| chunk(200 + s, Q_LEN, Q_LEN)).collect();
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
        min_ratio: 0.05,
        importance_clamp: (1e-3, 1e3),
    };
    let importance = vec![vec![1.0, 4.0, 0.5, 2.0, 1.0, 8.0]];
    let mut c = Calibration::calibrate(model, &layer_samples, &importance, cfg, 1, 0.5).unwrap();
    c.pilot_acc_range = Some(int8_accumulator_range(chunk(99, Q_LEN, KV_LEN).inputs()).unwrap());
    c.budget = rule;
    c
}

fn rules() -> [BudgetRule; 4] {
    [
        BudgetRule::EVEN,
        BudgetRule {
            split: RowSplit::Threshold,
            ..BudgetRule::EVEN
        },
        BudgetRule {
            split: RowSplit::TopP,
            anchors: Anchors {
                sinks: 2,
                recent: 3,
            },
            floor: 0.5,
            cap: Some(3.0),
        },
        BudgetRule {
            split: RowSplit::Threshold,
            anchors: Anchors {
                sinks: 1,
                recent: 0,
            },
            floor: 0.25,
            cap: None,
        },
    ]
}

#[test]
fn every_pilot_keeps_the_pairs_the_rule_counts_and_each_row_its_anchors() {
    let npu = shadowattn_cpu::CpuBackend::new();
    let compute = CpuBackend::new();
    let fast = shadowattn_cpu::fast::FastCpuBackend::new(2).unwrap();
    let shape = AttentionShape::causal(Q_HEADS, KV_HEADS, Q_LEN, KV_LEN, D);
    let c = chunk(7, Q_LEN, KV_LEN);
    for rule in rules() {
        for (pilot, granularity) in [
            (PilotKind::Head, Granularity::Row),
            (PilotKind::Head, Granularity::Group),
            (PilotKind::GroupCpuRanked, Granularity::Group),
            (PilotKind::GroupNpuRanked, Granularity::Group),
        ] {
            for backend in [&compute as &dyn ComputeBackend, &fast] {
                let calib = calibration(rule);
                let ratios = calib.ratios[0].clone();
                let output = PilotOutput::int8_of(&calib).unwrap();
                let mut core = CoreSetup::new(&npu as &dyn NpuBackend, calib, Q_LEN, KV_LEN)
                    .pilot_output(output)
                    .config(ShadowConfig {
                        granularity,
                        cpu_workers: 2,
                        ..ShadowConfig::default()
                    })
                    .pilot(pilot)
                    .build(backend)
                    .unwrap()
                    .shadow;
                let what = format!("{rule:?} {pilot:?} {granularity:?} {}", backend.name());
                let r = core.run_chunk(0, c.inputs()).unwrap();
                assert!(r.fallback().is_none(), "{what}");
                let unit = r.unit;
                // What the planner priced is what was kept, unit by unit (a per-head unit
                // whose group shares its keys is priced at its own ratio, not the group's).
                if !(pilot == PilotKind::Head && granularity == Granularity::Group) {
                    let priced = unit_work(&shape, unit, &ratios, (1, rule));
                    let kept = r.unit_work(&shape);
                    let priced_pairs: Vec<u64> = priced.iter().map(|w| w.kept_pairs).collect();
                    let kept_pairs: Vec<u64> = kept.iter().map(|w| w.kept_pairs).collect();
                    assert_eq!(kept_pairs, priced_pairs, "{what}");
                }
                for (h, sel) in r.selections.iter().enumerate() {
                    let heads = if granularity == Granularity::Group {
                        let g = Q_HEADS / KV_HEADS;
                        (h / g) * g..(h / g + 1) * g
                    } else {
                        h..h + 1
                    };
                    let ratio = ratios[heads.clone()].iter().sum::<f32>() / heads.len() as f32;
                    let budget = ChunkBudget {
                        ratio,
                        min_keys: 1,
                        rule,
                    };
                    for i in 0..Q_LEN {
                        let n = shape.valid_keys(i);
                        let b = budget.bounds(i, n).unwrap();
                        let row = sel.row(i);
                        assert!(
                            (b.lo..=b.hi).contains(&row.len()),
                            "{what} head {h} row {i}: {} keys, bounds {b:?}",
                            row.len()
                        );
                        let ranked = rule.anchors.ranked(n);
                        for j in (0..n).filter(|j| !ranked.contains(j)) {
                            assert!(row.contains(&(j as u32)), "{what} head {h} row {i}: {j}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_block_granularity_refuses_a_rule_that_follows_the_attention() {
    let npu = shadowattn_cpu::CpuBackend::new();
    let compute = CpuBackend::new();
    let calib = calibration(BudgetRule {
        split: RowSplit::Threshold,
        ..BudgetRule::EVEN
    });
    let output = PilotOutput::int8_of(&calib).unwrap();
    let mut core = CoreSetup::new(&npu as &dyn NpuBackend, calib, Q_LEN, KV_LEN)
        .pilot_output(output)
        .config(ShadowConfig {
            granularity: Granularity::Block(8),
            ..ShadowConfig::default()
        })
        .pilot(PilotKind::Head)
        .build(&compute)
        .unwrap()
        .shadow;
    let e = core
        .run_chunk(0, chunk(7, Q_LEN, KV_LEN).inputs())
        .unwrap_err();
    assert!(e.to_string().contains("budget"), "{e}");
}
