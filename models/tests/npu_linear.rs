//! SmolLM2's linear layers as FP16 graphs on the golden CPU backend: equal to the host's f32
//! projections within FP16 rounding, and kept in a graph cache that a second start loads
//! (a damaged file is compiled again, never used, and reported by path).

use shadowattn_cpu::CpuBackend;
use shadowattn_models::npu_linear::NpuLinears;
use shadowattn_models::{Gguf, LinearGroup, Linears, Model};
use shadowattn_test_support::{smollm2_or_skip, target_dir};

fn model() -> Option<Model> {
    let path = smollm2_or_skip(&target_dir(env!("CARGO_TARGET_TMPDIR")))?;
    Some(Model::from_gguf(&Gguf::open(&path).unwrap()).unwrap())
}

/// Rows of a deterministic input in [-1, 1).
fn input(rows: usize, width: usize) -> Vec<f32> {
    (0..rows * width)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

#[test]
fn the_graphs_are_the_projections_and_the_cache_keeps_them() {
    let Some(model) = model() else {
        return;
    };
    let npu = CpuBackend::new();
    let dir = target_dir(env!("CARGO_TARGET_TMPDIR")).join("tmp/npu_linear_cache");
    let _ = std::fs::remove_dir_all(&dir);
    let mut fresh = NpuLinears::compile(&model, &npu, 8, Some(&dir), &mut |_| {}).unwrap();
    assert_eq!((fresh.graph_count(), fresh.loaded()), (120, 0));
    // 11 rows: a full chunk of 8 and a padded one of 3.
    let x = input(11, model.config.hidden);
    let got = fresh.apply(3, LinearGroup::Qkv, &x, 11).unwrap();
    assert_eq!(fresh.launches(), 2);
    for (w, y) in model.linear_weights(3, LinearGroup::Qkv).iter().zip(&got) {
        assert_eq!(y.len(), 11 * w.outputs, "{}", w.name);
        for r in 0..11 {
            for o in 0..w.outputs {
                let exact: f64 = (0..w.inputs)
                    .map(|i| f64::from(x[r * w.inputs + i]) * f64::from(w.data[o * w.inputs + i]))
                    .sum();
                let scale: f64 = (0..w.inputs)
                    .map(|i| {
                        (f64::from(x[r * w.inputs + i]) * f64::from(w.data[o * w.inputs + i])).abs()
                    })
                    .sum();
                // FP16 inputs, weights and output: each rounds by at most 2^-11 relative.
                let bound = 3.0 * 2f64.powi(-11) * scale + 1e-6;
                let y = f64::from(y[r * w.outputs + o]);
                assert!(
                    (y - exact).abs() <= bound,
                    "{} [{r}, {o}]: {y} vs {exact}",
                    w.name
                );
            }
        }
    }
    let mut loaded = NpuLinears::compile(&model, &npu, 8, Some(&dir), &mut |_| {}).unwrap();
    assert_eq!(loaded.loaded(), 120);
    assert_eq!(loaded.apply(3, LinearGroup::Qkv, &x, 11).unwrap(), got);
    // A damaged file is compiled again.
    let first = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&first, b"not a graph").unwrap();
    let again = NpuLinears::compile(&model, &npu, 8, Some(&dir), &mut |_| {}).unwrap();
    assert_eq!(again.loaded(), 119);
    assert_eq!(again.refused().len(), 1);
    assert_eq!(again.refused()[0].path, first);
    assert!(again.refused()[0]
        .to_string()
        .contains(&first.display().to_string()));
    assert!(loaded.refused().is_empty() && fresh.refused().is_empty());
}
