//! The argument checks every compute backend runs before its kernels.

use super::inputs::{check_scales, AttentionInputs, HeadsView};
use super::scores::Selection;
use crate::error::{HalError, Result};

/// Checks an output buffer's length for `inputs`.
pub fn check_output_len(inputs: &AttentionInputs<'_>, out: &[f32]) -> Result<()> {
    if out.len() != inputs.output_len() {
        return Err(HalError::BufferMismatch {
            tensor: "out".into(),
            detail: format!(
                "expected {} elements, got {}",
                inputs.output_len(),
                out.len()
            ),
        });
    }
    Ok(())
}

/// Errors on any non-finite Q, K or V value (`InvalidValue` naming the tensor and element).
pub fn check_finite(inputs: &AttentionInputs<'_>) -> Result<()> {
    for (name, data) in [("q", inputs.q()), ("k", inputs.k()), ("v", inputs.v())] {
        check_finite_tensor(name, data)?;
    }
    Ok(())
}

/// Errors on any non-finite value of one tensor, as [`check_finite`] does.
pub fn check_finite_tensor(name: &str, data: &[f32]) -> Result<()> {
    match first_non_finite(data) {
        Some(i) => Err(non_finite_value(name, i, data[i])),
        None => Ok(()),
    }
}

/// The error of [`check_finite`] for element `index` of `name`, for kernels that find
/// non-finite values while reading their inputs.
pub fn non_finite_value(name: &str, index: usize, value: f32) -> HalError {
    HalError::invalid_value(name, format!("element {index} is {value}"))
}

/// The index of the first NaN or infinity in `data`. Blocks are tested without an early exit so
/// the test vectorizes (`position` alone runs a value per cycle, a sixth of a dense call on
/// 16/16 heads × 2048 keys); only a block that fails is searched.
pub fn first_non_finite(data: &[f32]) -> Option<usize> {
    const BLOCK: usize = 256;
    data.chunks(BLOCK).enumerate().find_map(|(b, block)| {
        let finite = block.iter().fold(true, |ok, v| ok & v.is_finite());
        if finite {
            None
        } else {
            block
                .iter()
                .position(|v| !v.is_finite())
                .map(|i| b * BLOCK + i)
        }
    })
}

/// Checks a dense-attention call for every backend: shape, output length and finite inputs.
pub fn check_dense_call(inputs: &AttentionInputs<'_>, out: &[f32]) -> Result<()> {
    inputs.shape().validate()?;
    check_output_len(inputs, out)?;
    check_finite(inputs)
}

/// Checks a sparse-attention call: as [`check_dense_call`], plus one valid selection per head.
pub fn check_sparse_call(
    inputs: &AttentionInputs<'_>,
    selections: &[Selection],
    out: &[f32],
) -> Result<()> {
    check_dense_call(inputs, out)?;
    let s = inputs.shape();
    if selections.len() != s.q_heads {
        return Err(HalError::invalid_argument(
            "selections",
            format!(
                "{} selections for {} query heads",
                selections.len(),
                s.q_heads
            ),
        ));
    }
    for (h, sel) in selections.iter().enumerate() {
        sel.validate_for(h, &s)?;
    }
    Ok(())
}

/// Checks a quantization call: finite values, and given scales (one per head, finite, positive).
pub fn check_quantize_call(x: &HeadsView<'_>, scales: Option<&[f32]>) -> Result<()> {
    if let Some(i) = x.data().iter().position(|v| !v.is_finite()) {
        return Err(HalError::invalid_value(
            "heads",
            format!(
                "element {i} is {}; only finite values can be quantized",
                x.data()[i]
            ),
        ));
    }
    if let Some(s) = scales {
        if s.len() != x.heads() {
            return Err(HalError::invalid_argument(
                "scales",
                format!("{} scales for {} heads", s.len(), x.heads()),
            ));
        }
        check_scales(s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::first_non_finite;

    #[test]
    fn finds_the_first_non_finite_value_in_any_block() {
        let n = 1000;
        assert_eq!(first_non_finite(&vec![1.5; n]), None);
        assert_eq!(first_non_finite(&[]), None);
        for at in [0, 1, 255, 256, 257, 511, 999] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut data = vec![-3.0f32; n];
                data[at] = bad;
                // A later bad value must not hide the first one.
                data[n - 1] = f32::NAN;
                assert_eq!(first_non_finite(&data), Some(at), "{bad} at {at}");
            }
        }
        assert_eq!(
            first_non_finite(&[f32::MAX, f32::MIN, f32::MIN_POSITIVE]),
            None
        );
    }
}
