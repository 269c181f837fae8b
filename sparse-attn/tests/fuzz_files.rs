//! Fuzzing the calibration file reader and the graph-bank loader (stable-toolchain fuzzing:
//! proptest mutations of valid files, the seed corpus). Any input must load or give a typed
//! error, never panic; a bank file that is not exactly the one written is refused before any
//! of its bytes reach the backend's parser. A longer run: `PROPTEST_CASES=100000 cargo test -p shadowattn-sparse-attn --test fuzz_files`.

use proptest::prelude::*;
use shadowattn_cpu::CpuBackend;
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::calibration::{
    BucketGrid, Calibration, LayerSample, ModelShape, RatioConfig,
};
use shadowattn_sparse_attn::pilot::{PilotOutput, PilotUnit};
use shadowattn_sparse_attn::SparseAttnError;
use shadowattn_test_support::counting_npu::CountingNpu;

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

fn bank_grid() -> BucketGrid {
    BucketGrid::new(0.02, 0.03, 0, 0.5).unwrap()
}

fn bank_spec() -> BankSpec {
    BankSpec {
        q_len: 2,
        kv_len: 4,
        head_dim: 4,
        fused: vec![1],
        output: PilotOutput::Int32,
        unit: PilotUnit::Head,
    }
}

fn bank_seed() -> Vec<u8> {
    GraphBank::build(&CpuBackend::new(), &bank_grid(), bank_spec())
        .unwrap()
        .serialize()
        .unwrap()
}

/// Loads `bytes` on a counting CPU backend named `backend`: the bank (or the error) and how many
/// times bytes reached the backend's parser.
fn load_counting(
    bytes: &[u8],
    backend: Option<&str>,
) -> (Result<GraphBank, SparseAttnError>, usize) {
    let npu = match backend {
        Some(name) => CountingNpu::named(CpuBackend::new(), name),
        None => CountingNpu::new(CpuBackend::new()),
    };
    let loaded = GraphBank::load(&npu, &bank_grid(), bank_spec(), bytes);
    (loaded, npu.deserializes())
}

#[test]
fn the_seed_bank_loads_and_parses_each_graph_once() {
    let seed = bank_seed();
    let (bank, parsed) = load_counting(&seed, None);
    let bank = bank.unwrap();
    assert_eq!(parsed, bank.len());
    assert_eq!(bank.serialize().unwrap(), seed);
}

#[test]
fn truncated_and_foreign_banks_never_reach_the_parser() {
    let seed = bank_seed();
    for len in 0..seed.len() {
        let (loaded, parsed) = load_counting(&seed[..len], None);
        assert!(loaded.is_err(), "truncated to {len} bytes");
        assert_eq!(parsed, 0, "truncated to {len} bytes");
    }
    // A bank written by another backend: the CPU could parse its graphs, but must not be asked.
    let (loaded, parsed) = load_counting(&seed, Some("qnn:htp"));
    assert_eq!(parsed, 0);
    let e = loaded.unwrap_err().to_string();
    assert!(
        e.contains("written by `cpu ") && e.contains("not `qnn:htp "),
        "{e}"
    );
    // A bank of this backend compiled for another spec (longer chunks): the CPU could parse it,
    // but its subject names other graphs.
    let other = GraphBank::build(
        &CpuBackend::new(),
        &bank_grid(),
        BankSpec {
            kv_len: 8,
            ..bank_spec()
        },
    )
    .unwrap()
    .serialize()
    .unwrap();
    let (loaded, parsed) = load_counting(&other, None);
    assert_eq!(parsed, 0);
    let e = loaded.unwrap_err().to_string();
    assert!(e.contains("compiled from other graphs"), "{e}");
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

    /// A mutated bank loads as the identical bank (the mutation changed nothing) or is refused
    /// before its backend parses a byte of it.
    #[test]
    fn mutated_banks_load_identically_or_never_reach_the_parser(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6)) {
        let seed = bank_seed();
        let bytes = mutate(&seed, &edits);
        let (loaded, parsed) = load_counting(&bytes, None);
        match loaded {
            Ok(bank) => {
                prop_assert_eq!(&bytes, &seed);
                prop_assert_eq!(bank.serialize().unwrap(), seed);
            }
            Err(e) => {
                prop_assert_ne!(&bytes, &seed);
                prop_assert_eq!(parsed, 0, "refused after parsing: {}", e);
            }
        }
    }
}
