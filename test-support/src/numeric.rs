//! Numeric helpers of the kernel tests: deterministic test data, and float results held to the
//! golden reference within a tolerance.

/// `n` deterministic pseudo-random values in `[-amp, amp)`, one sequence per `seed` (a 64-bit
/// LCG: the tests need no random-number crate, and the same seed gives the same data on every
/// machine).
pub fn noise(seed: u64, n: usize, amp: f32) -> Vec<f32> {
    const A: u64 = 6364136223846793005;
    const C: u64 = 1442695040888963407;
    // One LCG step from the seed: a bijection, so distinct seeds start distinct sequences (the
    // odd increment gives the full period from any state; no state needs forcing odd).
    let mut s = seed.wrapping_mul(A).wrapping_add(C);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(A).wrapping_add(C);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * amp
        })
        .collect()
}

/// `got` within `atol + rtol·|want|` of `want`, element by element. Lengths must match and a NaN
/// is never close; the error names the first element out of bounds.
pub fn close(got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} values vs golden {}", got.len(), want.len()));
    }
    for (i, (a, e)) in got.iter().zip(want).enumerate() {
        // False for a NaN (where `d > bound` would let it through).
        let within = (a - e).abs() <= atol + rtol * e.abs();
        if !within {
            return Err(format!("[{i}] {a} vs golden {e}"));
        }
    }
    Ok(())
}

/// [`close`] with the bound of the fast CPU kernels' tests: f32 accumulation against the golden
/// reference's f64 (`atol` 2e-5, `rtol` 1e-4).
pub fn close_f32(got: &[f32], want: &[f32]) -> Result<(), String> {
    close(got, want, 2e-5, 1e-4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_deterministic_in_range_and_differs_by_seed() {
        let a = noise(7, 1000, 3.0);
        assert_eq!(a, noise(7, 1000, 3.0));
        assert_ne!(a, noise(8, 1000, 3.0));
        assert!(a.iter().all(|x| (-3.0..3.0).contains(x)));
        assert!(a.iter().any(|&x| x < -2.5) && a.iter().any(|&x| x > 2.5));
        assert_eq!(noise(0, 3, 1.0).len(), 3);
        // Neighbouring seeds (one case's q, k, v) start different sequences.
        let firsts: std::collections::HashSet<u32> = (0..1000)
            .map(|seed| noise(seed, 1, 1.0)[0].to_bits())
            .collect();
        assert!(firsts.len() > 990, "{}", firsts.len());
    }

    #[test]
    fn close_holds_the_bound_and_rejects_nan_and_other_lengths() {
        let want = [1.0, -2.0, 0.0];
        assert!(close(&[1.1, -2.2, 0.05], &want, 0.05, 0.1).is_ok());
        let e = close(&[1.0, -2.0, 0.06], &want, 0.05, 0.1).unwrap_err();
        assert_eq!(e, "[2] 0.06 vs golden 0");
        assert!(close(&[1.0, f32::NAN, 0.0], &want, 1.0, 1.0).is_err());
        assert!(close(&[1.0, -2.0], &want, 1.0, 1.0).is_err());
        assert!(close_f32(&[0.0; 3], &want).is_err(), "an all-zero output");
        assert!(close_f32(&[1.0 + 1e-4, -2.0, 1e-5], &want).is_ok());
    }
}
