//! The graph IR: a small, explicit op set over typed, shaped, quantized tensors, and a builder
//! that validates every node as it is added.
//!
//! The op set is defined once, in one table (`ir/ops.rs`): each [`Op`] variant's
//! documentation is its rule, and [`OpKind`], the arity, the builder methods of
//! [`GraphBuilder`] and the inference of each node's outputs (`ir/infer.rs`) come from it.
//!
//! All tensors are row-major. "Quantized" means an integer tensor with per-tensor
//! [`Quantization`] (real value = scale · (q − zero point)). Rounding and saturation are defined
//! once by the golden CPU backend (`shadowattn-cpu`, module `reference::arith`).

pub mod binary;
mod builder;
mod infer;
mod ops;

pub use builder::GraphBuilder;
pub use infer::broadcast_shapes;
pub use ops::{Op, OpKind};

#[cfg(test)]
mod constant_tests;

use crate::dtype::DType;
use crate::error::{HalError, Result};
use crate::quant::{QuantParams, Quantization};
use crate::tensor::TensorDesc;
use serde::{Deserialize, Serialize};

/// Identifies a tensor (a graph input or a node output) inside one graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueId(pub u32);

impl ValueId {
    /// Index into [`Graph::values`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The element type and quantization requested for a node's output.
#[derive(Clone, Debug, PartialEq)]
pub struct OutType {
    /// Output data type.
    pub dtype: DType,
    /// Output quantization.
    pub quant: Quantization,
}

impl OutType {
    /// A plain (unquantized) output type.
    pub fn plain(dtype: DType) -> Self {
        OutType {
            dtype,
            quant: Quantization::None,
        }
    }

    /// A per-tensor quantized output type.
    pub fn quantized(dtype: DType, params: QuantParams) -> Self {
        OutType {
            dtype,
            quant: Quantization::PerTensor(params),
        }
    }
}

/// A tensor in a graph: its name and descriptor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Value {
    /// Unique name within the graph.
    pub name: String,
    /// Type, shape and quantization.
    pub desc: TensorDesc,
}

/// One operation in a graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Unique name within the graph; errors name it.
    pub name: String,
    /// The operation and its attributes.
    pub op: Op,
    /// Input tensors.
    pub inputs: Vec<ValueId>,
    /// Output tensors.
    pub outputs: Vec<ValueId>,
}

/// A constant (STATIC) tensor of a graph: its data is part of the graph, not passed at execution.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constant {
    /// The tensor it fills.
    pub value: ValueId,
    /// Its elements as little-endian bytes, as a [`crate::HostTensor`] holds them.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Constant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constant")
            .field("value", &self.value)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Constant bytes as one lowercase hexadecimal string in serialized graphs.
mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::fmt::Write;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(text, "{b:02x}");
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("constant bytes: odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom(format!("constant bytes: bad hex at {i}")))
            })
            .collect()
    }
}

/// A validated, static graph: fixed shapes, fixed quantization, nodes in execution order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    name: String,
    values: Vec<Value>,
    nodes: Vec<Node>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    #[serde(default)]
    constants: Vec<Constant>,
}

impl Graph {
    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every tensor of the graph, indexed by [`ValueId::index`].
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// One tensor.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    /// Nodes in execution (topological) order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Graph inputs, in the order buffers are passed to execution.
    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// Graph outputs, in the order buffers are passed to execution.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    /// Constant (STATIC) tensors, in the order they were declared.
    pub fn constants(&self) -> &[Constant] {
        &self.constants
    }

    /// The data of `id` if it is a constant tensor.
    pub fn constant(&self, id: ValueId) -> Option<&[u8]> {
        self.constants
            .iter()
            .find(|c| c.value == id)
            .map(|c| c.bytes.as_slice())
    }

    /// Descriptors of the graph inputs, in order.
    pub fn input_descs(&self) -> impl Iterator<Item = &TensorDesc> {
        self.inputs.iter().map(|&v| &self.value(v).desc)
    }

    /// Descriptors of the graph outputs, in order.
    pub fn output_descs(&self) -> impl Iterator<Item = &TensorDesc> {
        self.outputs.iter().map(|&v| &self.value(v).desc)
    }

    /// Re-checks every node, as the builder did; use it on graphs that were deserialized.
    pub fn validate(&self) -> Result<()> {
        let rebuilt = GraphBuilder::replay(self)?;
        if rebuilt != *self {
            return Err(HalError::invalid_argument(
                format!("graph `{}`", self.name),
                "the graph's recorded tensor types differ from what its nodes produce",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q8(shape: &[usize], scale: f32) -> TensorDesc {
        TensorDesc::new(DType::I8, shape.to_vec()).with_quant(Quantization::per_tensor(scale, 0))
    }

    #[test]
    fn pilot_graph_builds_with_inferred_shapes() {
        let mut b = GraphBuilder::new("pilot");
        let q = b.input("q", q8(&[1, 2, 128, 64], 0.05)).unwrap();
        let k = b.input("k", q8(&[1, 2, 256, 64], 0.1)).unwrap();
        let s = b
            .matmul("qk", q, k, false, true, OutType::plain(DType::I32))
            .unwrap();
        let s8 = b
            .requantize(
                "scores",
                s,
                OutType::quantized(DType::I8, QuantParams::symmetric(2.0)),
            )
            .unwrap();
        b.output(s8).unwrap();
        let g = b.build().unwrap();
        let acc = &g.value(s).desc;
        assert_eq!(acc.shape, vec![1, 2, 128, 256]);
        assert_eq!(acc.quant, Quantization::per_tensor(0.05 * 0.1, 0));
        assert_eq!(g.nodes().len(), 2);
        g.validate().unwrap();
    }

    #[test]
    fn matmul_mismatches_name_the_node() {
        let mut b = GraphBuilder::new("g");
        let a = b.input("a", TensorDesc::new(DType::F32, [2, 3])).unwrap();
        let c = b.input("c", TensorDesc::new(DType::F32, [4, 5])).unwrap();
        let e = b
            .matmul("mm", a, c, false, false, OutType::plain(DType::F32))
            .unwrap_err();
        assert!(
            matches!(&e, HalError::ShapeMismatch { node, .. } if node == "mm"),
            "{e}"
        );
        assert!(e.to_string().contains("K = 3"), "{e}");
        let h = b.input("h", TensorDesc::new(DType::F16, [3, 5])).unwrap();
        let e = b
            .matmul("mm2", a, h, false, false, OutType::plain(DType::F32))
            .unwrap_err();
        assert!(
            matches!(&e, HalError::DTypeMismatch { node, .. } if node == "mm2"),
            "{e}"
        );
    }

    #[test]
    fn integer_matmul_needs_quantized_8bit_inputs() {
        let mut b = GraphBuilder::new("g");
        let a = b.input("a", TensorDesc::new(DType::I8, [2, 3])).unwrap();
        let c = b.input("c", q8(&[3, 2], 1.0)).unwrap();
        let e = b
            .matmul("mm", a, c, false, false, OutType::plain(DType::I32))
            .unwrap_err();
        assert!(e.to_string().contains("per-tensor quantized"), "{e}");
        let w = b
            .input(
                "w",
                TensorDesc::new(DType::I16, [3, 2]).with_quant(Quantization::per_tensor(1.0, 0)),
            )
            .unwrap();
        let a8 = b.input("a8", q8(&[2, 3], 1.0)).unwrap();
        assert!(b
            .matmul("mm3", a8, w, false, false, OutType::plain(DType::I32))
            .is_err());
        let e = b
            .matmul("mm4", a8, c, false, false, OutType::plain(DType::I8))
            .unwrap_err();
        assert!(e.to_string().contains("without quantization"), "{e}");
    }

    #[test]
    fn bad_attributes_are_rejected() {
        let mut b = GraphBuilder::new("g");
        let x = b.input("x", TensorDesc::new(DType::F32, [2, 8])).unwrap();
        assert!(b.softmax("s", x, 2, 1.0).is_err());
        assert!(b.softmax("s", x, 1, f32::NAN).is_err());
        assert!(b.topk("t", x, 9).is_err());
        assert!(b.topk("t", x, 0).is_err());
        assert!(b.reshape("r", x, &[3, 5]).is_err());
        assert!(b.reshape("r", x, &[16, 0]).is_err());
        assert!(b.transpose("p", x, &[0, 0]).is_err());
        assert!(b.transpose("p", x, &[1]).is_err());
        assert!(b.dequantize("d", x, DType::F32).is_err());
        assert!(b.quantize("qz", x, OutType::plain(DType::I8)).is_err());
        let (v, i) = b.topk("t", x, 3).unwrap();
        assert_eq!(b.desc(v).unwrap().shape, vec![2, 3]);
        assert_eq!(b.desc(i).unwrap().dtype, DType::I32);
        assert!(b
            .input("t:values", TensorDesc::new(DType::F32, [1]))
            .is_err());
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shapes(&[5], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shapes(&[2, 3], &[4]), None);
        let mut b = GraphBuilder::new("g");
        let x = b.input("x", TensorDesc::new(DType::F32, [2, 3])).unwrap();
        let y = b.input("y", TensorDesc::new(DType::F32, [4])).unwrap();
        let e = b.add("add", x, y, OutType::plain(DType::F32)).unwrap_err();
        assert!(
            matches!(&e, HalError::ShapeMismatch { node, .. } if node == "add"),
            "{e}"
        );
    }

    #[test]
    fn transpose_moves_the_quantization_axis() {
        let mut b = GraphBuilder::new("g");
        let x = b
            .input(
                "x",
                TensorDesc::new(DType::I8, [2, 3]).with_quant(Quantization::PerAxis {
                    axis: 1,
                    scales: vec![1.0, 2.0, 3.0],
                    zero_points: vec![0; 3],
                }),
            )
            .unwrap();
        let t = b.transpose("t", x, &[1, 0]).unwrap();
        let d = b.desc(t).unwrap();
        assert_eq!(d.shape, vec![3, 2]);
        assert!(matches!(d.quant, Quantization::PerAxis { axis: 0, .. }));
    }

    #[test]
    fn tampered_graphs_fail_validation() {
        let mut b = GraphBuilder::new("g");
        let x = b.input("x", TensorDesc::new(DType::F32, [2, 3])).unwrap();
        let y = b.softmax("s", x, 1, 1.0).unwrap();
        b.output(y).unwrap();
        let mut g = b.build().unwrap();
        g.validate().unwrap();
        g.values[1].desc.shape = vec![3, 2];
        assert!(g.validate().is_err());
        assert!(GraphBuilder::new("empty").build().is_err());
    }
}
