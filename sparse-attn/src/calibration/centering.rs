//! Key centring: SageAttention's smoothing of K for INT8 Q·Kᵀ.

/// Keys `[heads, rows, d]` with each head's mean key (over its rows) subtracted. Every score
/// of a query row then moves by the same q·k̄, so each row's ranking, and each head's softmax,
/// is unchanged, while the keys' range (and so their quantization step) shrinks: SageAttention's
/// smoothing of K for INT8 Q·Kᵀ.
pub fn center_keys(k: &[f32], rows: usize, d: usize) -> Vec<f32> {
    let mut out = k.to_vec();
    if rows == 0 || d == 0 {
        return out;
    }
    for head in out.chunks_exact_mut(rows * d) {
        let mut mean = vec![0.0f64; d];
        for key in head.chunks_exact(d) {
            for (m, &x) in mean.iter_mut().zip(key) {
                *m += f64::from(x);
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / rows as f64) as f32).collect();
        for key in head.chunks_exact_mut(d) {
            for (x, m) in key.iter_mut().zip(&mean) {
                *x -= m;
            }
        }
    }
    out
}
