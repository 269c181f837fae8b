//! Output inference of every op: the types and shapes a node produces from its inputs, or the
//! error naming the node and what does not fit. One function per op, named like its builder.

use super::OutType;
use crate::dtype::DType;
use crate::error::{HalError, Result};
use crate::ir::OpKind;
use crate::quant::{QuantParams, Quantization};
use crate::tensor::{ShapeFmt, TensorDesc};

/// The output type an op requires, or an error naming the node.
fn required(node: &str, kind: OpKind, out: Option<&OutType>) -> Result<OutType> {
    out.cloned()
        .ok_or_else(|| HalError::invalid_argument(node, format!("{kind} needs an output type")))
}

/// The inferred output of an op whose caller may give an output type: it must then equal the
/// inferred one.
fn checked(
    node: &str,
    kind: OpKind,
    inferred: TensorDesc,
    out: Option<&OutType>,
) -> Result<Vec<TensorDesc>> {
    if let Some(out) = out {
        if out.dtype != inferred.dtype || out.quant != inferred.quant {
            return Err(HalError::dtype(
                node,
                format!(
                    "{kind} produces {} but {} was requested",
                    inferred,
                    TensorDesc::new(out.dtype, inferred.shape.clone())
                        .with_quant(out.quant.clone())
                ),
            ));
        }
    }
    Ok(vec![inferred])
}

pub(crate) fn matmul(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
    transpose_a: &bool,
    transpose_b: &bool,
) -> Result<Vec<TensorDesc>> {
    let out = required(node, OpKind::MatMul, out)?;
    Ok(vec![infer_matmul(
        node,
        &ins[0],
        &ins[1],
        *transpose_a,
        *transpose_b,
        out,
    )?])
}

pub(crate) fn requantize(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
) -> Result<Vec<TensorDesc>> {
    let x = &ins[0];
    per_tensor_input(node, "input", x)?;
    let out = required(node, OpKind::Requantize, out)?;
    narrow_quantized_output(node, &out)?;
    Ok(vec![
        TensorDesc::new(out.dtype, x.shape.clone()).with_quant(out.quant)
    ])
}

pub(crate) fn quantize(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
) -> Result<Vec<TensorDesc>> {
    let x = &ins[0];
    float_input(node, "input", x)?;
    let out = required(node, OpKind::Quantize, out)?;
    if !out.dtype.is_narrow_integer() || !out.quant.is_quantized() {
        return Err(HalError::dtype(
            node,
            format!(
                "Quantize produces an 8- or 16-bit integer with quantization, not {}",
                out.dtype
            ),
        ));
    }
    Ok(vec![
        TensorDesc::new(out.dtype, x.shape.clone()).with_quant(out.quant)
    ])
}

pub(crate) fn dequantize(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
    dtype: &DType,
) -> Result<Vec<TensorDesc>> {
    let x = &ins[0];
    if !x.dtype.is_integer() || !x.quant.is_quantized() {
        return Err(HalError::dtype(
            node,
            format!("Dequantize needs a quantized integer input, got {x}"),
        ));
    }
    if !dtype.is_float() {
        return Err(HalError::dtype(
            node,
            format!("Dequantize produces f32 or f16, not {dtype}"),
        ));
    }
    checked(
        node,
        OpKind::Dequantize,
        TensorDesc::new(*dtype, x.shape.clone()),
        out,
    )
}

pub(crate) fn softmax(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
    axis: &usize,
    beta: &f32,
) -> Result<Vec<TensorDesc>> {
    let x = &ins[0];
    float_input(node, "input", x)?;
    if *axis >= x.rank() {
        return Err(HalError::shape(
            node,
            format!("softmax axis {axis} is out of range for {x}"),
        ));
    }
    if !beta.is_finite() || *beta <= 0.0 {
        return Err(HalError::invalid_argument(
            format!("{node}.beta"),
            format!("must be finite and positive, got {beta}"),
        ));
    }
    checked(
        node,
        OpKind::Softmax,
        TensorDesc::new(x.dtype, x.shape.clone()),
        out,
    )
}

pub(crate) fn topk(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
    k: &usize,
) -> Result<Vec<TensorDesc>> {
    let x = &ins[0];
    let last = *x.shape.last().unwrap_or(&0);
    if *k == 0 || *k > last {
        return Err(HalError::invalid_argument(
            format!("{node}.k"),
            format!("k = {k} must be in 1..={last} (the last dimension of {x})"),
        ));
    }
    if matches!(x.quant, Quantization::PerAxis { .. }) {
        return Err(HalError::InvalidQuantization {
            what: node.to_string(),
            detail: "TopK does not take per-axis quantized input".into(),
        });
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("rank >= 1") = *k;
    let values = TensorDesc::new(x.dtype, shape.clone()).with_quant(x.quant.clone());
    let mut outs = checked(node, OpKind::TopK, values, out)?;
    outs.push(TensorDesc::new(DType::I32, shape));
    Ok(outs)
}

pub(crate) fn mul(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
) -> Result<Vec<TensorDesc>> {
    let out = required(node, OpKind::Mul, out)?;
    Ok(vec![infer_elementwise(
        node,
        OpKind::Mul,
        &ins[0],
        &ins[1],
        out,
    )?])
}

pub(crate) fn add(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
) -> Result<Vec<TensorDesc>> {
    let out = required(node, OpKind::Add, out)?;
    Ok(vec![infer_elementwise(
        node,
        OpKind::Add,
        &ins[0],
        &ins[1],
        out,
    )?])
}

pub(crate) fn reshape(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
    shape: &[usize],
) -> Result<Vec<TensorDesc>> {
    let x = &ins[0];
    if matches!(x.quant, Quantization::PerAxis { .. }) {
        return Err(HalError::InvalidQuantization {
            what: node.to_string(),
            detail: "Reshape does not take per-axis quantized input".into(),
        });
    }
    let target = TensorDesc::new(x.dtype, shape.to_vec()).with_quant(x.quant.clone());
    target.validate(node)?;
    if target.numel() != x.numel() {
        return Err(HalError::shape(
            node,
            format!(
                "cannot reshape {} ({} elements) to {} ({} elements)",
                ShapeFmt(&x.shape),
                x.numel(),
                ShapeFmt(shape),
                target.numel()
            ),
        ));
    }
    checked(node, OpKind::Reshape, target, out)
}

pub(crate) fn transpose(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
    perm: &[usize],
) -> Result<Vec<TensorDesc>> {
    let x = &ins[0];
    let mut seen = vec![false; x.rank()];
    let valid = perm.len() == x.rank()
        && perm
            .iter()
            .all(|&p| p < seen.len() && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(HalError::shape(
            node,
            format!(
                "{perm:?} is not a permutation of the {} dims of {x}",
                x.rank()
            ),
        ));
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let quant = match &x.quant {
        Quantization::PerAxis {
            axis,
            scales,
            zero_points,
        } => Quantization::PerAxis {
            axis: perm.iter().position(|p| p == axis).expect("permutation"),
            scales: scales.clone(),
            zero_points: zero_points.clone(),
        },
        q => q.clone(),
    };
    checked(
        node,
        OpKind::Transpose,
        TensorDesc::new(x.dtype, shape).with_quant(quant),
        out,
    )
}

pub(crate) fn cast(
    node: &str,
    ins: &[TensorDesc],
    out: Option<&OutType>,
    dtype: &DType,
) -> Result<Vec<TensorDesc>> {
    checked(
        node,
        OpKind::Cast,
        TensorDesc::new(*dtype, ins[0].shape.clone()),
        out,
    )
}

fn float_input(node: &str, which: &str, x: &TensorDesc) -> Result<()> {
    if !x.dtype.is_float() {
        return Err(HalError::dtype(
            node,
            format!("{which} must be f32 or f16, got {x}"),
        ));
    }
    Ok(())
}

fn per_tensor_input(node: &str, which: &str, x: &TensorDesc) -> Result<QuantParams> {
    match (&x.quant, x.dtype.is_integer()) {
        (Quantization::PerTensor(p), true) => Ok(*p),
        (Quantization::PerAxis { .. }, true) => Err(HalError::InvalidQuantization {
            what: node.to_string(),
            detail: format!("{which} must be quantized per tensor, not per axis"),
        }),
        _ => Err(HalError::dtype(
            node,
            format!("{which} must be a per-tensor quantized integer, got {x}"),
        )),
    }
}

fn narrow_quantized_output(node: &str, out: &OutType) -> Result<()> {
    if !out.dtype.is_narrow_integer() || out.quant.per_tensor_params().is_none() {
        return Err(HalError::dtype(
            node,
            format!(
                "the output must be an 8- or 16-bit integer quantized per tensor, got {}{}",
                out.dtype,
                if out.quant.is_quantized() {
                    ""
                } else {
                    " without quantization"
                }
            ),
        ));
    }
    Ok(())
}

fn infer_matmul(
    node: &str,
    a: &TensorDesc,
    b: &TensorDesc,
    ta: bool,
    tb: bool,
    out: OutType,
) -> Result<TensorDesc> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra < 2 || ra != rb {
        return Err(HalError::shape(
            node,
            format!("MatMul needs two tensors of equal rank >= 2, got {a} and {b}"),
        ));
    }
    if a.shape[..ra - 2] != b.shape[..rb - 2] {
        return Err(HalError::shape(
            node,
            format!(
                "batch dims differ: {} vs {}",
                ShapeFmt(&a.shape[..ra - 2]),
                ShapeFmt(&b.shape[..rb - 2])
            ),
        ));
    }
    let (m, ka) = if ta {
        (a.shape[ra - 1], a.shape[ra - 2])
    } else {
        (a.shape[ra - 2], a.shape[ra - 1])
    };
    let (kb, n) = if tb {
        (b.shape[rb - 1], b.shape[rb - 2])
    } else {
        (b.shape[rb - 2], b.shape[rb - 1])
    };
    if ka != kb {
        return Err(HalError::shape(
            node,
            format!(
                "inner dimensions differ: A {a}{} has K = {ka}, B {b}{} has K = {kb}",
                if ta { " (transposed)" } else { "" },
                if tb { " (transposed)" } else { "" }
            ),
        ));
    }
    let mut shape = a.shape[..ra - 2].to_vec();
    shape.extend([m, n]);

    if a.dtype.is_float() || b.dtype.is_float() {
        if a.dtype != b.dtype || !a.dtype.is_float() {
            return Err(HalError::dtype(
                node,
                format!(
                    "float MatMul needs both inputs f32 or both f16, got {} and {}",
                    a.dtype, b.dtype
                ),
            ));
        }
        if !out.dtype.is_float() || out.quant.is_quantized() {
            return Err(HalError::dtype(
                node,
                format!(
                    "a float MatMul produces f32 or f16 without quantization, not {}",
                    out.dtype
                ),
            ));
        }
        return Ok(TensorDesc::new(out.dtype, shape));
    }
    for (which, x) in [("A", a), ("B", b)] {
        if !matches!(x.dtype, DType::I8 | DType::U8) {
            return Err(HalError::dtype(
                node,
                format!(
                    "integer MatMul takes i8 or u8 inputs; {which} is {}",
                    x.dtype
                ),
            ));
        }
    }
    let pa = per_tensor_input(node, "A", a)?;
    let pb = per_tensor_input(node, "B", b)?;
    let acc = Quantization::per_tensor(pa.scale * pb.scale, 0);
    match out.dtype {
        DType::I32 => {
            if out.quant.is_quantized() && out.quant != acc {
                return Err(HalError::InvalidQuantization {
                    what: node.to_string(),
                    detail: format!(
                        "an i32 MatMul output carries the accumulator scale {} (A·B scales) and zero point 0",
                        pa.scale * pb.scale
                    ),
                });
            }
            Ok(TensorDesc::new(DType::I32, shape).with_quant(acc))
        }
        _ => {
            narrow_quantized_output(node, &out)?;
            Ok(TensorDesc::new(out.dtype, shape).with_quant(out.quant))
        }
    }
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

fn infer_elementwise(
    node: &str,
    kind: OpKind,
    a: &TensorDesc,
    b: &TensorDesc,
    out: OutType,
) -> Result<TensorDesc> {
    let shape = broadcast_shapes(&a.shape, &b.shape).ok_or_else(|| {
        HalError::shape(
            node,
            format!(
                "{kind} cannot broadcast {} with {}",
                ShapeFmt(&a.shape),
                ShapeFmt(&b.shape)
            ),
        )
    })?;
    let mismatch = || {
        HalError::dtype(
            node,
            format!(
                "{kind} takes two floats of one type, two per-tensor quantized integers, or two plain i32; got {a} and {b} -> {}",
                out.dtype
            ),
        )
    };
    if a.dtype.is_float() || b.dtype.is_float() {
        if a.dtype != b.dtype || out.dtype != a.dtype || out.quant.is_quantized() {
            return Err(mismatch());
        }
        return Ok(TensorDesc::new(out.dtype, shape));
    }
    if !a.quant.is_quantized() && !b.quant.is_quantized() {
        if a.dtype != DType::I32 || b.dtype != DType::I32 || out != OutType::plain(DType::I32) {
            return Err(mismatch());
        }
        return Ok(TensorDesc::new(DType::I32, shape));
    }
    per_tensor_input(node, "first input", a)?;
    per_tensor_input(node, "second input", b)?;
    narrow_quantized_output(node, &out)?;
    Ok(TensorDesc::new(out.dtype, shape).with_quant(out.quant))
}
