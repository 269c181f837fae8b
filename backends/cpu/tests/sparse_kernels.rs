//! Both sparse-attention kernels of the fast backend (one row at a time, and lane tiles that
//! gather the union of up to eight rows' keys) against the golden reference on the selections
//! that break tiles: rows whose key sets differ completely, chunks anywhere in the key range
//! (not only at the tail), large logits, partial tiles, f16 storage, per-row and shared sets.

use proptest::prelude::*;
use shadowattn_cpu::fast::{Arithmetic, FastCpuBackend, KvStorage, SparseKernel};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{AttentionInputs, AttentionShape, ComputeBackend, Selection};
use shadowattn_test_support::{close_f32, noise};

/// How each row picks its keys among its valid ones.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// A seeded pseudo-random subset of about `percent` % (at least one key).
    Random { percent: u64 },
    /// Keys congruent to the row modulo 4: neighbouring rows share no key.
    Disjoint,
    /// One key per row, different for every row where the prefix allows.
    One,
}

fn mix(a: u64, b: u64) -> u64 {
    let x = (a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 31)
}

/// Row `i`'s keys (ascending, not empty) among its `n` valid keys.
fn pick(p: Pick, seed: u64, i: usize, n: usize) -> Vec<u32> {
    let mut keys: Vec<u32> = match p {
        Pick::Random { percent } => (0..n as u32)
            .filter(|&j| mix(seed ^ i as u64, u64::from(j)) % 100 < percent)
            .collect(),
        Pick::Disjoint => (0..n as u32).filter(|j| *j as usize % 4 == i % 4).collect(),
        Pick::One => vec![(mix(seed, i as u64) % n as u64) as u32],
    };
    if keys.is_empty() {
        keys.push(n as u32 - 1);
    }
    keys
}

/// One selection per `sets` (query heads, or KV heads when shared) over the chunk's rows.
fn selections(s: &AttentionShape, sets: usize, p: Pick, seed: u64) -> Vec<Selection> {
    (0..sets)
        .map(|h| {
            let mut sel = Selection::new();
            for i in 0..s.q_len {
                sel.push_row(&pick(p, seed ^ (h as u64) << 32, i, s.valid_keys(i)));
            }
            sel
        })
        .collect()
}

fn pick_strategy() -> impl Strategy<Value = Pick> {
    prop_oneof![
        (1u64..100).prop_map(|percent| Pick::Random { percent }),
        Just(Pick::Disjoint),
        Just(Pick::One),
    ]
}

/// Shapes with a chunk placed anywhere in the keys: `q_offset` from 0 to the tail.
fn shapes() -> impl Strategy<Value = AttentionShape> {
    (
        prop::sample::select(vec![1usize, 2, 3, 6, 7, 8, 9, 12]),
        1usize..3,
        1usize..20,
        0usize..120,
        prop::sample::select(vec![1usize, 3, 8, 31, 64, 128]),
        0.0f64..=1.0,
    )
        .prop_map(|(group, kv_heads, q_len, prefix, head_dim, at)| {
            let mut s =
                AttentionShape::causal(group * kv_heads, kv_heads, q_len, q_len + prefix, head_dim);
            s.q_offset = (prefix as f64 * at) as usize;
            s
        })
}

/// The fast backend on `threads` threads with `kernel` and `storage`.
fn fast(threads: usize, kernel: SparseKernel, storage: KvStorage) -> FastCpuBackend {
    FastCpuBackend::new(threads)
        .unwrap()
        .with_sparse_kernel(kernel)
        .with_storage(storage)
}

/// `x` rounded to f16 and back, as f16 storage sees it.
fn rounded_to_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Per-row and shared selections, each kernel, f32 and f16 storage, against the golden
    /// kernels on the same (rounded) K and V, within `close_f32` (2e-5 absolute plus 1e-4
    /// relative: f32 accumulation over at most 128 terms of a weighted mean of unit-scale
    /// values; a wrong key, mask or max shift moves outputs by 1e-2 or more).
    #[test]
    fn both_kernels_equal_the_reference(
        shape in shapes(),
        p in pick_strategy(),
        // Query amplitude 2 gives logits of a few units; 40 gives logits in the hundreds,
        // where a softmax without its max shift overflows.
        q_amp in prop::sample::select(vec![2.0f32, 40.0]),
        seed in any::<u64>(),
        threads in 1usize..3,
    ) {
        let s = shape;
        let q = noise(seed, s.q_heads * s.q_len * s.head_dim, q_amp);
        let k = noise(seed + 1, s.kv_heads * s.kv_len * s.head_dim, 2.0);
        let v = noise(seed + 2, s.kv_heads * s.kv_len * s.head_dim, 1.0);
        let (k16, v16) = (rounded_to_f16(&k), rounded_to_f16(&v));
        let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
        let rounded = AttentionInputs::new(&q, &k16, &v16, s).unwrap();
        let gold = CpuBackend::new();
        let per_row = selections(&s, s.q_heads, p, seed);
        let shared = selections(&s, s.kv_heads, p, seed);
        let mut want_row = vec![0.0; inputs.output_len()];
        let mut want_group = vec![0.0; inputs.output_len()];
        let mut got = vec![0.0; inputs.output_len()];
        for storage in [KvStorage::F32, KvStorage::F16] {
            let reference = if storage == KvStorage::F32 { inputs } else { rounded };
            gold.sparse_attention(reference, &per_row, &mut want_row).unwrap();
            gold.sparse_attention_grouped(reference, &shared, &mut want_group).unwrap();
            prop_assert!(want_row.iter().any(|x| x.abs() > 1e-3), "not an all-zero reference");
            for kernel in [SparseKernel::Single, SparseKernel::Tiled, SparseKernel::Auto] {
                let b = fast(threads, kernel, storage);
                b.sparse_attention(inputs, &per_row, &mut got).unwrap();
                prop_assert!(close_f32(&got, &want_row).is_ok(), "per row, {kernel:?}, {storage:?}: {:?}", close_f32(&got, &want_row));
                b.sparse_attention_grouped(inputs, &shared, &mut got).unwrap();
                prop_assert!(close_f32(&got, &want_group).is_ok(), "shared, {kernel:?}, {storage:?}: {:?}", close_f32(&got, &want_group));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// FP16 softmax·V against the golden f32 kernels. Bound: with u = 2^-11 (f16's unit
    /// roundoff), weights and V rounded once each (2u) and each running sum over at most n
    /// keys rounded at most n times, a lane's error is at most (n + 3)·u·Σ|w·v| / Σw
    /// ≤ (n + 3)·u·max|v|; max|v| = 1 here. A lane summing the wrong keys misses by the
    /// spread of V (about 1); an all-zero output by the mean (checked not small).
    #[test]
    fn fp16_arithmetic_stays_within_its_rounding_bound(
        shape in shapes(),
        p in pick_strategy(),
        seed in any::<u64>(),
        storage in prop::sample::select(vec![KvStorage::F32, KvStorage::F16]),
    ) {
        let s = shape;
        let q = noise(seed, s.q_heads * s.q_len * s.head_dim, 2.0);
        let k = noise(seed + 1, s.kv_heads * s.kv_len * s.head_dim, 2.0);
        let v = noise(seed + 2, s.kv_heads * s.kv_len * s.head_dim, 1.0);
        let (k16, v16) = (rounded_to_f16(&k), rounded_to_f16(&v));
        let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
        // The golden kernels on the values the storage holds (f16 storage rounds K and V).
        let reference = if storage == KvStorage::F16 {
            AttentionInputs::new(&q, &k16, &v16, s).unwrap()
        } else {
            inputs
        };
        let gold = CpuBackend::new();
        let fp16 = fast(1, SparseKernel::Auto, storage).with_arithmetic(Arithmetic::F16);
        let u = 2f32.powi(-11);
        let per_row = selections(&s, s.q_heads, p, seed);
        let shared = selections(&s, s.kv_heads, p, seed);
        for (sets, shared_sets) in [(&per_row, false), (&shared, true)] {
            let (mut want, mut got) = (vec![0.0; inputs.output_len()], vec![0.0; inputs.output_len()]);
            if shared_sets {
                gold.sparse_attention_grouped(reference, sets, &mut want).unwrap();
                fp16.sparse_attention_grouped(inputs, sets, &mut got).unwrap();
            } else {
                gold.sparse_attention(reference, sets, &mut want).unwrap();
                fp16.sparse_attention(inputs, sets, &mut got).unwrap();
            }
            let n = sets.iter().flat_map(|sel| (0..sel.rows()).map(|i| sel.row(i).len())).max().unwrap();
            let bound = (n as f32 + 3.0) * u + 1e-6;
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            prop_assert!(worst <= bound, "shared {shared_sets}: {worst} > {bound} with {n} keys");
        }
    }
}

#[test]
fn fp16_arithmetic_rounds_and_is_parsed_by_name() {
    // Long rows of ones-ish weights: an f16 sum over 2000 keys must differ from the f32 one,
    // or the F16 setting was ignored.
    let s = AttentionShape::causal(2, 1, 8, 2000, 16);
    let q = noise(1, 2 * 8 * 16, 0.1);
    let k = noise(2, 2000 * 16, 0.1);
    let v = noise(3, 2000 * 16, 1.0);
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    let sel = Selection::all_keys(&s);
    let (mut f32_out, mut f16_out) = (
        vec![0.0; inputs.output_len()],
        vec![0.0; inputs.output_len()],
    );
    fast(1, SparseKernel::Tiled, KvStorage::F32)
        .sparse_attention(inputs, &[sel.clone(), sel.clone()], &mut f32_out)
        .unwrap();
    let fp16 = fast(1, SparseKernel::Single, KvStorage::F32).with_arithmetic(Arithmetic::F16);
    assert_eq!(fp16.arithmetic(), Arithmetic::F16);
    fp16.sparse_attention(inputs, &[sel.clone(), sel], &mut f16_out)
        .unwrap();
    let differ = f16_out.iter().zip(&f32_out).filter(|(a, b)| a != b).count();
    assert!(
        differ > f16_out.len() / 2,
        "{differ} of {} differ",
        f16_out.len()
    );
    assert_eq!("f16".parse::<Arithmetic>().unwrap(), Arithmetic::F16);
    assert_eq!("f32".parse::<Arithmetic>().unwrap(), Arithmetic::F32);
    let e = "fp8".parse::<Arithmetic>().unwrap_err();
    assert!(e.to_string().contains("`fp8` is not an arithmetic"), "{e}");
}

#[test]
fn auto_is_the_row_at_a_time_kernel_and_fp16_runs_in_tiles() {
    use SparseKernel::*;
    assert_eq!(Auto.resolve(), Single);
    assert_eq!(Single.resolve(), Single);
    assert_eq!(Tiled.resolve(), Tiled);
    assert_eq!(FastCpuBackend::new(1).unwrap().sparse_kernel(), Auto);
}
