//! The validation table against the public on-device measurements
//! (`shadowattn_simulator::fit::phones`): which rows meet the ±25 % target and which
//! measurements lie inside the range the simulator prints are recorded here, as the README's
//! table states them; a row that leaves its band (or enters it) fails until the table is
//! re-measured.

use shadowattn_simulator::fit::phones::{markdown, phone_checks, PhoneCheck};

/// The target: a prediction within ±25 % of its measurement.
const TARGET: f64 = 0.25;

/// Rows within the target today, by a unique part of their label.
const WITHIN_TARGET: [&str; 8] = [
    "qwen2.5-1.5b at 1024 tokens: speedup",
    "qwen2.5-1.5b at 4096 tokens: TTFT, shadowAttn",
    "qwen1.5-1.8b at 2048 tokens: TTFT, shadowAttn",
    "qwen1.5-1.8b at 4096 tokens: TTFT, shadowAttn",
    "qwen1.5-0.5b at 4096 tokens: TTFT, shadowAttn",
    "1 fused head",
    "2 fused head",
    "4 fused head",
];

/// Rows whose measurement lies outside the printed range today.
const OUTSIDE_RANGE: [&str; 16] = [
    "qwen2.5-1.5b at 1024 tokens: TTFT, dense",
    "qwen2.5-1.5b at 1024 tokens: TTFT, shadowAttn",
    "qwen2.5-1.5b at 2048 tokens: TTFT, dense",
    "qwen2.5-1.5b at 2048 tokens: TTFT, shadowAttn",
    "qwen1.5-1.8b at 1024 tokens: TTFT, dense",
    "qwen1.5-1.8b at 1024 tokens: TTFT, shadowAttn",
    "qwen1.5-1.8b at 2048 tokens: TTFT, dense",
    "qwen1.5-1.8b at 2048 tokens: TTFT, shadowAttn",
    "qwen1.5-1.8b at 4096 tokens: TTFT, dense",
    "qwen1.5-0.5b at 1024 tokens: TTFT, dense",
    "qwen1.5-0.5b at 1024 tokens: TTFT, shadowAttn",
    "qwen1.5-0.5b at 2048 tokens: TTFT, dense",
    "qwen1.5-0.5b at 2048 tokens: TTFT, shadowAttn",
    "qwen1.5-0.5b at 4096 tokens: TTFT, dense",
    "naive sparse attention's speedup",
    "estimation's share",
];

fn listed(row: &PhoneCheck, list: &[&str]) -> bool {
    list.iter().any(|k| row.label.contains(k))
}

#[test]
fn the_phones_validation_table_holds() {
    let rows = phone_checks().unwrap();
    println!("{}", markdown(&rows));
    for key in WITHIN_TARGET.iter().chain(&OUTSIDE_RANGE) {
        let n = rows.iter().filter(|r| r.label.contains(key)).count();
        assert_eq!(n, 1, "`{key}` names {n} rows");
    }
    for row in &rows {
        assert_eq!(
            row.within(TARGET),
            listed(row, &WITHIN_TARGET),
            "{}: predicted {:.4} against {:.4} ({:+.1} %)",
            row.label,
            row.predicted,
            row.measured,
            row.relative_error() * 100.0
        );
        assert_eq!(
            row.inside_range(),
            !listed(row, &OUTSIDE_RANGE),
            "{}: measured {:.4}, range {:.4} – {:.4}",
            row.label,
            row.measured,
            row.range.0,
            row.range.1
        );
        assert!(row.range.0 <= row.range.1, "{}", row.label);
        assert!(row.predicted.is_finite() && row.predicted > 0.0 || row.unit.is_empty());
        assert_eq!(row.fitted == "none", !row.label.contains("fused head"));
    }
}
