//! What HTP accepts: one node at a time through backendValidateOpConfig, and the probe of every
//! signature the IR can express.

use super::translate::{op_def, value_defs};
use super::QnnBackend;
use crate::error::{QnnError, Result};
use crate::sys::calls::{self, TensorDef};
use shadowattn_hal::{Capabilities, DType, Graph, OpKind, Quantization, Signature, TensorDesc};
use std::collections::{BTreeMap, BTreeSet};

impl QnnBackend {
    /// Whether QNN accepts `node` of `graph` (backendValidateOpConfig).
    pub(super) fn validate_node(
        &self,
        graph: &Graph,
        node: &shadowattn_hal::Node,
        defs: &mut [TensorDef],
    ) -> Result<()> {
        let mut op = op_def(graph, node)?;
        let _g = self.shared.lock();
        calls::validate_op(&self.shared.lib, self.shared.backend, &mut op, defs).map_err(
            |e| match e {
                QnnError::Call { code, message, .. } => QnnError::Unsupported {
                    node: node.name.clone(),
                    op: node.op.kind().to_string(),
                    detail: format!(
                        "backendValidateOpConfig refused it (QNN error {code}: {message})"
                    ),
                },
                other => other,
            },
        )
    }

    /// Every (op, input type, output type) the IR can express, put to backendValidateOpConfig.
    pub(super) fn probe_capabilities(&self) -> Capabilities {
        let mut ops: BTreeMap<OpKind, BTreeSet<Signature>> = BTreeMap::new();
        for op in OpKind::ALL {
            for input in DType::ALL {
                for output in DType::ALL {
                    let Some(graph) = probe_graph(op, input, output) else {
                        continue;
                    };
                    let Ok(mut defs) = value_defs(&graph) else {
                        continue;
                    };
                    let ok = graph
                        .nodes()
                        .iter()
                        .all(|n| self.validate_node(&graph, n, &mut defs).is_ok());
                    if ok {
                        ops.entry(op)
                            .or_default()
                            .insert(Signature { input, output });
                    }
                }
            }
        }
        Capabilities {
            ops,
            per_axis_quantization: false,
            serialization: true,
            max_rank: 5,
            // HTP computes f32 graphs in f16 (the emulator inserts casts).
            relaxed_f32: true,
        }
    }
}

/// The probe graph of `op` taking inputs of type `input` to an output of type `output`, or
/// `None` where the IR itself has no such node.
fn probe_graph(op: OpKind, input: DType, output: DType) -> Option<Graph> {
    use shadowattn_hal::{GraphBuilder, OutType};
    let quant = |d: DType| match d {
        DType::F32 | DType::F16 => Quantization::None,
        DType::I32 => Quantization::per_tensor(0.01, 0),
        DType::U8 | DType::U16 => Quantization::per_tensor(0.05, 8),
        _ => Quantization::per_tensor(0.05, 0),
    };
    // The output forms the IR may accept for this type: plain, or quantized per tensor.
    let outs = [
        OutType::plain(output),
        OutType {
            dtype: output,
            quant: quant(output),
        },
    ];
    outs.into_iter().find_map(|out| {
        let mut b = GraphBuilder::new("probe");
        let desc =
            |shape: &[usize]| TensorDesc::new(input, shape.to_vec()).with_quant(quant(input));
        let x = b.input("x", desc(&[1, 1, 4, 8])).ok()?;
        let y = match op {
            OpKind::MatMul => {
                let w = b.input("w", desc(&[1, 1, 4, 8])).ok()?;
                b.matmul("op", x, w, false, true, out).ok()?
            }
            OpKind::Requantize => b.requantize("op", x, out).ok()?,
            OpKind::Quantize => b.quantize("op", x, out).ok()?,
            OpKind::Dequantize => b.dequantize("op", x, output).ok()?,
            OpKind::Softmax => b.softmax("op", x, 3, 1.0).ok()?,
            OpKind::TopK => b.topk("op", x, 2).ok()?.0,
            OpKind::Mul => b.mul("op", x, x, out).ok()?,
            OpKind::Add => b.add("op", x, x, out).ok()?,
            OpKind::Reshape => b.reshape("op", x, &[1, 4, 8]).ok()?,
            OpKind::Transpose => b.transpose("op", x, &[0, 1, 3, 2]).ok()?,
            OpKind::Cast => b.cast("op", x, output).ok()?,
        };
        (b.desc(y).ok()?.dtype == output).then_some(())?;
        b.output(y).ok()?;
        b.build().ok()
    })
}
