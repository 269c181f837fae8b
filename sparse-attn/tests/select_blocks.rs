//! Block top-k against a brute-force oracle: which keys each row keeps, not only how many, on
//! integer scores with ties, chunks anywhere in the key range, causal or not.

use proptest::prelude::*;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{BudgetRule, KeyBudget, ScoreData, ScoreMatrix};
use shadowattn_sparse_attn::select::{select, Granularity, SelectionRule};

/// The keys of `row` (its first `n` scores) ranked best first, ties to the lower key.
fn ranked(row: &[i32], n: usize) -> Vec<u32> {
    let mut keys: Vec<u32> = (0..n as u32).collect();
    keys.sort_by(|&a, &b| row[b as usize].cmp(&row[a as usize]).then(a.cmp(&b)));
    keys
}

/// What block top-k keeps, by sorting: each block of `block` rows keeps its best k of all its
/// valid (row, key) entries (ties to the lower row, then key), k from the ratio of the block's
/// entries; then each row is topped up from its own best `min_keys`, in key order.
fn oracle(
    m: &ScoreMatrix<'_>,
    v: &[i32],
    ratio: f32,
    min_keys: usize,
    block: usize,
) -> Vec<Vec<u32>> {
    let cols = m.cols();
    let mut out = Vec::new();
    for start in (0..m.rows()).step_by(block) {
        let rows: Vec<usize> = (start..(start + block).min(m.rows())).collect();
        let mut entries: Vec<(i32, usize, u32)> = Vec::new();
        for (r, &i) in rows.iter().enumerate() {
            for j in 0..m.valid_keys(i) {
                entries.push((v[i * cols + j], r, j as u32));
            }
        }
        let k = KeyBudget::Ratio { ratio, min_keys }
            .keys_for(start, entries.len())
            .unwrap();
        entries.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        for (r, &i) in rows.iter().enumerate() {
            let n = m.valid_keys(i);
            let mut keys: Vec<u32> = entries[..k]
                .iter()
                .filter(|e| e.1 == r)
                .map(|e| e.2)
                .collect();
            let floor = min_keys.min(n);
            let mut own: Vec<u32> = ranked(&v[i * cols..], n)
                .into_iter()
                .take(floor.max(1).min(n))
                .collect();
            own.sort_unstable();
            for j in own {
                if keys.len() >= floor {
                    break;
                }
                if !keys.contains(&j) {
                    keys.push(j);
                }
            }
            keys.sort_unstable();
            out.push(keys);
        }
    }
    out
}

fn chunks() -> impl Strategy<Value = (usize, usize, usize, bool, Vec<i32>)> {
    (
        1usize..12,
        0usize..40,
        0.0f64..=1.0,
        any::<bool>(),
        1i32..300,
    )
        .prop_flat_map(|(rows, prefix, at, causal, levels)| {
            let cols = rows + prefix;
            let offset = (prefix as f64 * at) as usize;
            (
                Just(rows),
                Just(cols),
                Just(offset),
                Just(causal),
                proptest::collection::vec(-levels..levels, rows * cols),
            )
        })
}

proptest! {
    #[test]
    fn block_top_k_keeps_the_keys_a_sort_keeps(
        (rows, cols, offset, causal, scores) in chunks(),
        block in 1usize..6,
        ratio in 0.01f32..1.0,
        min_keys in 0usize..4,
        as_i8 in any::<bool>(),
    ) {
        let narrow: Vec<i8> = scores.iter().map(|&x| x.clamp(-128, 127) as i8).collect();
        let values: Vec<i32> = if as_i8 { narrow.iter().map(|&x| i32::from(x)).collect() } else { scores.clone() };
        let data = if as_i8 { ScoreData::I8(&narrow) } else { ScoreData::I32(&scores) };
        let m = ScoreMatrix::new(data, rows, cols, offset, causal).unwrap();
        let rule = SelectionRule {
            ratio,
            min_keys,
            granularity: Granularity::Block(block),
            budget: BudgetRule::EVEN,
        };
        let got = select(&CpuBackend::new(), m, 1.0, rule).unwrap();
        let want = oracle(&m, &values, ratio, min_keys, block);
        for (i, keys) in want.iter().enumerate() {
            prop_assert_eq!(got.row(i), keys.as_slice(), "row {}", i);
        }
    }
}
