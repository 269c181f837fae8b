//! Fuzzing the calibration file reader and the graph-bank loader (stable-toolchain fuzzing:
//! proptest mutations of valid files, the seed corpus). Any input must load or give a typed
//! error, never panic. A longer run: `PROPTEST_CASES=100000 cargo test -p shadowattn-sparse-attn --test fuzz_files`.

use proptest::prelude::*;
use shadowattn_cpu::CpuBackend;
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::calibration::{
    BucketGrid, Calibration, LayerSample, ModelShape, RatioConfig,
};
use shadowattn_sparse_attn::pilot::{PilotOutput, PilotUnit};

fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(pos, byte, kind) in edits {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let at = pos % v.len();
        match kind % 3 {
            0 => v[at] = byte,
            1 => v.insert(at, byte),
            _ => {
                v.remove(at);
            }
        }
    }
    v
}

fn calibration_seed() -> String {
    let model = ModelShape {
        name: "m".into(),
        layers: 2,
        q_heads: 4,
        kv_heads: 2,
        head_dim: 4,
    };
    let q = vec![0.5f32; 4 * 3 * 4];
    let k = vec![-1.0f32; 2 * 3 * 4];
    let samples = [
        LayerSample {
            layer: 0,
            q: &q,
            k: &k,
            rows: 3,
        },
        LayerSample {
            layer: 1,
            q: &q,
            k: &k,
            rows: 3,
        },
    ];
    let imp = vec![vec![1.0, 2.0, 3.0, 4.0], vec![4.0, 3.0, 2.0, 1.0]];
    Calibration::calibrate(model, &samples, &imp, RatioConfig::default(), 1, 0.5)
        .unwrap()
        .to_json()
}

fn bank_seed() -> Vec<u8> {
    let grid = BucketGrid::new(0.02, 0.03, 0, 0.5).unwrap();
    let spec = BankSpec {
        q_len: 2,
        kv_len: 4,
        head_dim: 4,
        fused: vec![1],
        output: PilotOutput::Int32,
        unit: PilotUnit::Head,
    };
    GraphBank::build(&CpuBackend::new(), &grid, spec)
        .unwrap()
        .serialize()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(shadowattn_test_support::proptest_cases(512)))]
    #[test]
    fn mutated_calibration_files_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..10)) {
        let bytes = mutate(calibration_seed().as_bytes(), &edits);
        if let Ok(c) = Calibration::from_json(&String::from_utf8_lossy(&bytes), None) {
            // A calibration that loads is consistent.
            prop_assert!(c.validate().is_ok());
            prop_assert!(!c.grid.is_empty());
        }
    }

    #[test]
    fn mutated_banks_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6)) {
        let bytes = mutate(&bank_seed(), &edits);
        let grid = BucketGrid::new(0.02, 0.03, 0, 0.5).unwrap();
        let spec = BankSpec { q_len: 2, kv_len: 4, head_dim: 4, fused: vec![1], output: PilotOutput::Int32, unit: PilotUnit::Head };
        let _ = GraphBank::load(&CpuBackend::new(), &grid, spec, &bytes);
    }
}
