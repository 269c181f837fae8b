//! IR to QNN: HAL values as QNN tensor definitions, HAL nodes as QNN op definitions.

use crate::error::{QnnError, Result};
use crate::sys::calls::{OpDef, ParamDef, TensorDef};
use crate::sys::{DataType, ScaleOffset, TensorType};
use shadowattn_hal::{DType, Graph, Op, OpKind, Quantization, TensorDesc};
use std::ffi::CString;

/// The QNN type and quantization of a HAL tensor.
fn qnn_type(desc: &TensorDesc, what: &str, op: OpKind) -> Result<(DataType, Option<ScaleOffset>)> {
    let unsupported = |detail: String| QnnError::Unsupported {
        node: what.to_string(),
        op: op.to_string(),
        detail,
    };
    let so = |scale: f32, zp: i32| Some(ScaleOffset { scale, offset: -zp });
    Ok(match (&desc.quant, desc.dtype) {
        (Quantization::PerAxis { .. }, _) => {
            return Err(unsupported(
                "per-axis quantization is not mapped by this backend".into(),
            ))
        }
        (_, DType::F32) => (DataType::FLOAT_32, None),
        (_, DType::F16) => (DataType::FLOAT_16, None),
        (Quantization::PerTensor(p), DType::I8) => {
            (DataType::SFIXED_POINT_8, so(p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::U8) => {
            (DataType::UFIXED_POINT_8, so(p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::I16) => {
            (DataType::SFIXED_POINT_16, so(p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::U16) => {
            (DataType::UFIXED_POINT_16, so(p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::I32) => {
            (DataType::SFIXED_POINT_32, so(p.scale, p.zero_point))
        }
        (Quantization::None, DType::I8) => (DataType::INT_8, None),
        (Quantization::None, DType::U8) => (DataType::UINT_8, None),
        (Quantization::None, DType::I16) => (DataType::INT_16, None),
        (Quantization::None, DType::U16) => (DataType::UINT_16, None),
        (Quantization::None, DType::I32) => (DataType::INT_32, None),
    })
}

/// The QNN tensor definition of value `name` of type `desc`, read or written by an `op` node.
fn tensor_def(
    name: &str,
    desc: &TensorDesc,
    tensor_type: TensorType,
    op: OpKind,
) -> Result<TensorDef> {
    let (data_type, quant) = qnn_type(desc, name, op)?;
    let dims = desc
        .shape
        .iter()
        .map(|&d| u32::try_from(d))
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| QnnError::Unsupported {
            node: name.to_string(),
            op: op.to_string(),
            detail: format!("dimension of {desc} exceeds 32 bits"),
        })?;
    Ok(TensorDef {
        name: cstring(name)?,
        tensor_type,
        data_type,
        dims,
        quant,
        id: 0,
        static_data: None,
    })
}

/// `s` as a C string: QNN names cannot hold NUL bytes.
pub(super) fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| QnnError::InvalidName {
        name: s.to_string(),
    })
}

/// Test builds only: `SHADOWATTN_QNN_MISENCODE=<QNN op type>` encodes that op with a parameter
/// HTP does not know — an encoding bug of the kind `backendValidateOpConfig` refuses — so tests
/// can check that the conformance suite fails on it instead of counting skips.
#[cfg(feature = "fault-injection")]
fn misencode(type_name: &std::ffi::CStr, mut params: Vec<ParamDef>) -> Vec<ParamDef> {
    let wanted = std::env::var("SHADOWATTN_QNN_MISENCODE").unwrap_or_default();
    if type_name.to_str() == Ok(wanted.as_str()) {
        params.push(ParamDef::U32(c"misencoded_parameter".into(), 1));
    }
    params
}

/// The QNN op for an IR node; tensors are indices into the graph's value table.
pub(super) fn op_def(graph: &Graph, node: &shadowattn_hal::Node) -> Result<OpDef> {
    let name = cstring(&node.name)?;
    let (type_name, params): (&std::ffi::CStr, Vec<ParamDef>) = match &node.op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => (
            c"MatMul",
            vec![
                ParamDef::Bool(c"transpose_in0".into(), *transpose_a),
                ParamDef::Bool(c"transpose_in1".into(), *transpose_b),
            ],
        ),
        Op::Requantize => (c"Convert", vec![]),
        Op::Quantize => (c"Quantize", vec![]),
        Op::Dequantize { .. } => (c"Dequantize", vec![]),
        Op::Softmax { axis, beta } => (
            c"Softmax",
            vec![
                ParamDef::U32(c"axis".into(), *axis as u32),
                ParamDef::F32(c"beta".into(), *beta),
            ],
        ),
        Op::TopK { k } => (c"TopK", vec![ParamDef::U32(c"k".into(), *k as u32)]),
        Op::Mul => (c"ElementWiseMultiply", vec![]),
        Op::Add => (c"ElementWiseAdd", vec![]),
        Op::Reshape { .. } => (c"Reshape", vec![]),
        Op::Transpose { perm } => {
            let data: Vec<u8> = perm
                .iter()
                .flat_map(|&p| (p as u32).to_ne_bytes())
                .collect();
            let perm_tensor = TensorDef {
                name: cstring(&format!("{}:perm", node.name))?,
                tensor_type: TensorType::STATIC,
                data_type: DataType::UINT_32,
                dims: vec![perm.len() as u32],
                quant: None,
                id: 0,
                static_data: Some(data),
            };
            (
                c"Transpose",
                vec![ParamDef::TensorU32(c"perm".into(), perm_tensor)],
            )
        }
        Op::Cast { .. } => (c"Cast", vec![]),
    };
    let _ = graph;
    #[cfg(feature = "fault-injection")]
    let params = misencode(type_name, params);
    Ok(OpDef {
        name,
        type_name: type_name.into(),
        params,
        inputs: node.inputs.iter().map(|v| v.index()).collect(),
        outputs: node.outputs.iter().map(|v| v.index()).collect(),
    })
}

/// Tensor definitions for every value of `graph` (inputs APP_WRITE, constants STATIC with their
/// data, outputs APP_READ, others NATIVE).
pub(super) fn value_defs(graph: &Graph) -> Result<Vec<TensorDef>> {
    let producer_op = |i: usize| {
        graph
            .nodes()
            .iter()
            .find(|n| n.inputs.iter().chain(&n.outputs).any(|v| v.index() == i))
            .map(|n| n.op.kind())
            .unwrap_or(OpKind::Reshape)
    };
    graph
        .values()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let id = shadowattn_hal::ValueId(i as u32);
            let constant = graph.constant(id);
            let tt = if graph.inputs().contains(&id) {
                TensorType::APP_WRITE
            } else if constant.is_some() {
                TensorType::STATIC
            } else if graph.outputs().contains(&id) {
                TensorType::APP_READ
            } else {
                TensorType::NATIVE
            };
            let mut def = tensor_def(&v.name, &v.desc, tt, producer_op(i))?;
            def.static_data = constant.map(<[u8]>::to_vec);
            Ok(def)
        })
        .collect()
}

/// The definitions of `graph`'s inputs then outputs, taken from its value table `defs`.
pub(super) fn io_defs(graph: &Graph, defs: &[TensorDef]) -> Vec<TensorDef> {
    graph
        .inputs()
        .iter()
        .chain(graph.outputs())
        .map(|v| defs[v.index()].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowattn_cpu::reference::arith;
    use shadowattn_hal::QuantParams;

    /// A real value as QNN reads a quantized element: (q + offset) × scale.
    fn qnn_real(q: i64, so: ScaleOffset) -> f64 {
        (q as f64 + f64::from(so.offset)) * f64::from(so.scale)
    }

    /// Every quantized type with zero points of both signs, at the ends and the middle of its
    /// range: QNN must read each stored integer as the golden reference dequantizes it. A sign
    /// slip on the offset moves every value by 2·zero_point·scale, which only an asymmetric
    /// zero point shows.
    #[test]
    fn qnn_offsets_read_every_quantized_value_as_the_golden_reference() {
        let cases = [
            (
                DType::I8,
                DataType::SFIXED_POINT_8,
                -7,
                [-128i64, -7, 0, 127],
            ),
            (DType::I8, DataType::SFIXED_POINT_8, 5, [-128, 0, 5, 127]),
            (DType::U8, DataType::UFIXED_POINT_8, 128, [0, 127, 128, 255]),
            (DType::U8, DataType::UFIXED_POINT_8, 3, [0, 3, 100, 255]),
            (
                DType::I16,
                DataType::SFIXED_POINT_16,
                -300,
                [-32768, -300, 0, 32767],
            ),
            (
                DType::U16,
                DataType::UFIXED_POINT_16,
                40000,
                [0, 39999, 40000, 65535],
            ),
            (
                DType::I32,
                DataType::SFIXED_POINT_32,
                -11,
                [-100_000, -11, 0, 100_000],
            ),
        ];
        for (dtype, want_type, zp, stored) in cases {
            let p = QuantParams::new(0.037, zp);
            let desc = TensorDesc::new(dtype, [1, 4])
                .with_quant(Quantization::per_tensor(p.scale, p.zero_point));
            let (data_type, so) = qnn_type(&desc, "x", OpKind::MatMul).unwrap();
            assert_eq!(data_type, want_type, "{dtype}");
            let so = so.expect("a quantized tensor carries its scale and offset");
            for q in stored {
                let golden = arith::dequantize(q as f64, p, DType::F32);
                let qnn = qnn_real(q, so);
                assert!(
                    (qnn - golden).abs() <= 1e-6 * golden.abs().max(1.0),
                    "{dtype} zero point {zp}: QNN reads {q} as {qnn}, the golden reference as {golden}"
                );
            }
        }
    }

    /// A value this backend cannot map is refused naming the op that reads it, not another
    /// node of the graph.
    #[test]
    fn an_unmappable_value_names_the_op_that_reads_it() {
        let mut b = shadowattn_hal::GraphBuilder::new("two_nodes");
        let x = b.input("x", TensorDesc::new(DType::F32, [2, 3])).unwrap();
        let cast = b.cast("cast", x, DType::F16).unwrap();
        let y = b
            .input(
                "y",
                TensorDesc::new(DType::I8, [2, 3]).with_quant(Quantization::PerAxis {
                    axis: 0,
                    scales: vec![0.1, 0.2],
                    zero_points: vec![0, 0],
                }),
            )
            .unwrap();
        let dq = b.dequantize("dq", y, DType::F32).unwrap();
        b.output(cast).unwrap();
        b.output(dq).unwrap();
        let e = value_defs(&b.build().unwrap()).unwrap_err();
        assert!(
            matches!(&e, QnnError::Unsupported { node, op, .. } if node == "y" && op == "Dequantize"),
            "{e:?}"
        );
    }

    /// Float tensors carry no quantization; per-axis quantization is refused by name.
    #[test]
    fn floats_carry_no_offset_and_per_axis_is_refused() {
        let (t, so) = qnn_type(&TensorDesc::new(DType::F16, [2]), "x", OpKind::Softmax).unwrap();
        assert_eq!((t, so.is_none()), (DataType::FLOAT_16, true));
        let per_axis = TensorDesc::new(DType::I8, [2, 3]).with_quant(Quantization::PerAxis {
            axis: 0,
            scales: vec![0.1, 0.2],
            zero_points: vec![0, 0],
        });
        let e = qnn_type(&per_axis, "w", OpKind::MatMul).unwrap_err();
        assert!(e.to_string().contains("per-axis"), "{e}");
    }
}
