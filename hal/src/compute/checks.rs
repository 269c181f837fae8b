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
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(HalError::invalid_value(
                name,
                format!("element {i} is {}", data[i]),
            ));
        }
    }
    Ok(())
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
