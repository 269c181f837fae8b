//! The one call into `matrixmultiply`'s raw-pointer SGEMM, behind extent checks.

#![allow(unsafe_code)]

/// `y[m×n] = x[m×k] · w[n×k]ᵀ` (all row-major).
///
/// # Panics
/// When a slice is shorter than its extents say (a bug in the caller, not user input).
pub fn sgemm_xwt(x: &[f32], w: &[f32], y: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(
        x.len() >= m * k && w.len() >= n * k && y.len() >= m * n,
        "gemm extents"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: x holds m×k elements (row stride k), w holds n×k (read as the k×n matrix wᵀ with
    // row stride 1 and column stride k), y holds m×n (row stride n); all checked above, and y
    // does not alias x or w (a &mut borrow).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            1,
            k as isize,
            0.0,
            y.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
