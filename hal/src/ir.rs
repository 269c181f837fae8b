//! The graph IR: a small, explicit op set over typed, shaped, quantized tensors, and a builder
//! that validates every node as it is added.
//!
//! # Op semantics
//!
//! All tensors are row-major. "Quantized" means an integer tensor with per-tensor [`Quantization`]
//! (real value = scale · (q − zero point)). Rounding and saturation are defined once by the golden
//! CPU backend (`shadowattn-cpu`, module `reference::arith`).
//!
//! | op | inputs → outputs | rule |
//! |---|---|---|
//! | [`Op::MatMul`] | A `[..., M, K]`, B `[..., K, N]` → `[..., M, N]` | batch dims equal; transpose flags swap the last two dims of A or B. Float: both f32 or both f16, output f32 or f16. Quantized: A, B i8/u8 per-tensor; output i32 (the exact accumulator Σ(a−za)(b−zb), scale sa·sb, zero point 0) or an 8/16-bit quantized type (the accumulator requantized) |
//! | [`Op::Requantize`] | quantized → quantized, same shape | q' = sat(round((q − z)·s/s') + z') |
//! | [`Op::Quantize`] | float → quantized (per tensor or per axis) | q = sat(round(x/s) + z) |
//! | [`Op::Dequantize`] | quantized → float | x = s·(q − z) |
//! | [`Op::Softmax`] | float → float | y = exp(β(x − max)) / Σ exp(β(x − max)) along `axis` |
//! | [`Op::TopK`] | any `[..., L]` → values `[..., k]`, indices i32 `[..., k]` | largest first; equal values: lower index first |
//! | [`Op::Mul`], [`Op::Add`] | two tensors, NumPy broadcasting | float: same float type in and out; quantized: computed on real values, requantized to the output; i32 without quantization: saturating |
//! | [`Op::Reshape`] | any → same data, new shape | element count unchanged |
//! | [`Op::Transpose`] | any → permuted dims | output dim i = input dim `perm[i]` |
//! | [`Op::Cast`] | any → another dtype | numeric conversion of stored values (quantization ignored); float → int rounds and saturates |

use crate::dtype::DType;
use crate::error::{HalError, Result};
use crate::quant::{QuantParams, Quantization};
use crate::tensor::{ShapeFmt, TensorDesc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Identifies a tensor (a graph input or a node output) inside one graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueId(pub u32);

impl ValueId {
    /// Index into [`Graph::values`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The kind of an op, without attributes; used by capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OpKind {
    /// See [`Op::MatMul`].
    MatMul,
    /// See [`Op::Requantize`].
    Requantize,
    /// See [`Op::Quantize`].
    Quantize,
    /// See [`Op::Dequantize`].
    Dequantize,
    /// See [`Op::Softmax`].
    Softmax,
    /// See [`Op::TopK`].
    TopK,
    /// See [`Op::Mul`].
    Mul,
    /// See [`Op::Add`].
    Add,
    /// See [`Op::Reshape`].
    Reshape,
    /// See [`Op::Transpose`].
    Transpose,
    /// See [`Op::Cast`].
    Cast,
}

impl OpKind {
    /// Every op kind.
    pub const ALL: [OpKind; 11] = [
        OpKind::MatMul,
        OpKind::Requantize,
        OpKind::Quantize,
        OpKind::Dequantize,
        OpKind::Softmax,
        OpKind::TopK,
        OpKind::Mul,
        OpKind::Add,
        OpKind::Reshape,
        OpKind::Transpose,
        OpKind::Cast,
    ];
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An operation with its attributes. The module docs define each op's semantics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Batched matrix product.
    MatMul {
        /// Use A's last two dims swapped.
        transpose_a: bool,
        /// Use B's last two dims swapped.
        transpose_b: bool,
    },
    /// Change the quantization of an integer tensor (also called Convert).
    Requantize,
    /// Float to quantized integer.
    Quantize,
    /// Quantized integer to float.
    Dequantize {
        /// The float type produced.
        dtype: DType,
    },
    /// Softmax along one axis.
    Softmax {
        /// The axis to normalise.
        axis: usize,
        /// Multiplier applied to the inputs before exponentiation.
        beta: f32,
    },
    /// The k largest entries of the last axis, with their indices.
    TopK {
        /// How many entries to keep.
        k: usize,
    },
    /// Elementwise product with broadcasting.
    Mul,
    /// Elementwise sum with broadcasting.
    Add,
    /// Same data, new shape.
    Reshape {
        /// The new shape.
        shape: Vec<usize>,
    },
    /// Permutation of dimensions.
    Transpose {
        /// Output dim i is input dim `perm[i]`.
        perm: Vec<usize>,
    },
    /// Numeric conversion to another type.
    Cast {
        /// The type produced.
        dtype: DType,
    },
}

impl Op {
    /// The op's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::MatMul { .. } => OpKind::MatMul,
            Op::Requantize => OpKind::Requantize,
            Op::Quantize => OpKind::Quantize,
            Op::Dequantize { .. } => OpKind::Dequantize,
            Op::Softmax { .. } => OpKind::Softmax,
            Op::TopK { .. } => OpKind::TopK,
            Op::Mul => OpKind::Mul,
            Op::Add => OpKind::Add,
            Op::Reshape { .. } => OpKind::Reshape,
            Op::Transpose { .. } => OpKind::Transpose,
            Op::Cast { .. } => OpKind::Cast,
        }
    }

    /// Number of inputs the op takes.
    pub fn arity(&self) -> usize {
        match self {
            Op::MatMul { .. } | Op::Mul | Op::Add => 2,
            _ => 1,
        }
    }

    /// Whether the caller must give the output type (dtype and quantization) when adding this op.
    pub fn needs_output_type(&self) -> bool {
        matches!(
            self,
            Op::MatMul { .. } | Op::Requantize | Op::Quantize | Op::Mul | Op::Add
        )
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

/// A validated, static graph: fixed shapes, fixed quantization, nodes in execution order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    name: String,
    values: Vec<Value>,
    nodes: Vec<Node>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
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

/// Builds a [`Graph`], validating shapes, dtypes and quantization at every step.
#[derive(Debug)]
pub struct GraphBuilder {
    graph: Graph,
    names: HashSet<String>,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder {
            graph: Graph {
                name: name.into(),
                values: Vec::new(),
                nodes: Vec::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
            },
            names: HashSet::new(),
        }
    }

    /// Descriptor of a tensor added so far.
    pub fn desc(&self, v: ValueId) -> Result<&TensorDesc> {
        self.graph
            .values
            .get(v.index())
            .map(|v| &v.desc)
            .ok_or_else(|| {
                HalError::invalid_argument(
                    format!("value #{}", v.0),
                    "no such tensor in this graph",
                )
            })
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, desc: TensorDesc) -> Result<ValueId> {
        desc.validate(name)?;
        self.claim_name(name)?;
        let id = self.push_value(name.to_string(), desc);
        self.graph.inputs.push(id);
        Ok(id)
    }

    /// Marks a tensor as a graph output.
    pub fn output(&mut self, v: ValueId) -> Result<()> {
        self.desc(v)?;
        if self.graph.outputs.contains(&v) {
            return Err(HalError::invalid_argument(
                self.graph.values[v.index()].name.clone(),
                "already marked as a graph output",
            ));
        }
        self.graph.outputs.push(v);
        Ok(())
    }

    /// Finishes the graph; it needs at least one input and one output.
    pub fn build(self) -> Result<Graph> {
        let what = format!("graph `{}`", self.graph.name);
        if self.graph.inputs.is_empty() {
            return Err(HalError::invalid_argument(what, "the graph has no inputs"));
        }
        if self.graph.outputs.is_empty() {
            return Err(HalError::invalid_argument(what, "the graph has no outputs"));
        }
        Ok(self.graph)
    }

    /// Adds `A·B` (see [`Op::MatMul`]).
    pub fn matmul(
        &mut self,
        name: &str,
        a: ValueId,
        b: ValueId,
        transpose_a: bool,
        transpose_b: bool,
        out: OutType,
    ) -> Result<ValueId> {
        let op = Op::MatMul {
            transpose_a,
            transpose_b,
        };
        self.single(name, op, &[a, b], Some(out))
    }

    /// Adds a requantization to `out` (see [`Op::Requantize`]).
    pub fn requantize(&mut self, name: &str, x: ValueId, out: OutType) -> Result<ValueId> {
        self.single(name, Op::Requantize, &[x], Some(out))
    }

    /// Adds a quantization of a float tensor to `out` (see [`Op::Quantize`]).
    pub fn quantize(&mut self, name: &str, x: ValueId, out: OutType) -> Result<ValueId> {
        self.single(name, Op::Quantize, &[x], Some(out))
    }

    /// Adds a dequantization to float `dtype` (see [`Op::Dequantize`]).
    pub fn dequantize(&mut self, name: &str, x: ValueId, dtype: DType) -> Result<ValueId> {
        self.single(name, Op::Dequantize { dtype }, &[x], None)
    }

    /// Adds a softmax along `axis` (see [`Op::Softmax`]).
    pub fn softmax(&mut self, name: &str, x: ValueId, axis: usize, beta: f32) -> Result<ValueId> {
        self.single(name, Op::Softmax { axis, beta }, &[x], None)
    }

    /// Adds a top-k over the last axis; returns (values, indices) (see [`Op::TopK`]).
    pub fn topk(&mut self, name: &str, x: ValueId, k: usize) -> Result<(ValueId, ValueId)> {
        let outs = self.add_node(name, Op::TopK { k }, &[x], None)?;
        Ok((outs[0], outs[1]))
    }

    /// Adds an elementwise product (see [`Op::Mul`]).
    pub fn mul(&mut self, name: &str, a: ValueId, b: ValueId, out: OutType) -> Result<ValueId> {
        self.single(name, Op::Mul, &[a, b], Some(out))
    }

    /// Adds an elementwise sum (see [`Op::Add`]).
    pub fn add(&mut self, name: &str, a: ValueId, b: ValueId, out: OutType) -> Result<ValueId> {
        self.single(name, Op::Add, &[a, b], Some(out))
    }

    /// Adds a reshape (see [`Op::Reshape`]).
    pub fn reshape(&mut self, name: &str, x: ValueId, shape: &[usize]) -> Result<ValueId> {
        let op = Op::Reshape {
            shape: shape.to_vec(),
        };
        self.single(name, op, &[x], None)
    }

    /// Adds a transpose (see [`Op::Transpose`]).
    pub fn transpose(&mut self, name: &str, x: ValueId, perm: &[usize]) -> Result<ValueId> {
        let op = Op::Transpose {
            perm: perm.to_vec(),
        };
        self.single(name, op, &[x], None)
    }

    /// Adds a numeric cast to `dtype` (see [`Op::Cast`]).
    pub fn cast(&mut self, name: &str, x: ValueId, dtype: DType) -> Result<ValueId> {
        self.single(name, Op::Cast { dtype }, &[x], None)
    }

    /// Adds any op. `out` is required for ops whose [`Op::needs_output_type`] is true; for the
    /// others it may be given and must then equal the inferred type. Returns the output tensors.
    pub fn add_node(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        out: Option<OutType>,
    ) -> Result<Vec<ValueId>> {
        if inputs.len() != op.arity() {
            return Err(HalError::invalid_argument(
                name,
                format!(
                    "{} takes {} inputs, {} given",
                    op.kind(),
                    op.arity(),
                    inputs.len()
                ),
            ));
        }
        let descs = inputs
            .iter()
            .map(|&v| self.desc(v).cloned())
            .collect::<Result<Vec<_>>>()?;
        let outs = infer(name, &op, &descs, out.as_ref())?;
        for (i, d) in outs.iter().enumerate() {
            d.validate(&output_name(name, &op, i))?;
        }
        self.claim_name(name)?;
        let extra: Vec<String> = (0..outs.len())
            .map(|i| output_name(name, &op, i))
            .filter(|n| n != name)
            .collect();
        for n in &extra {
            self.claim_name(n)?;
        }
        let outputs: Vec<ValueId> = outs
            .into_iter()
            .enumerate()
            .map(|(i, d)| self.push_value(output_name(name, &op, i), d))
            .collect();
        self.graph.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.clone(),
        });
        Ok(outputs)
    }

    fn single(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        out: Option<OutType>,
    ) -> Result<ValueId> {
        Ok(self.add_node(name, op, inputs, out)?[0])
    }

    fn claim_name(&mut self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(HalError::invalid_argument(
                "name",
                "names must not be empty",
            ));
        }
        if !self.names.insert(name.to_string()) {
            return Err(HalError::invalid_argument(
                name,
                format!("the name is already used in graph `{}`", self.graph.name),
            ));
        }
        Ok(())
    }

    fn push_value(&mut self, name: String, desc: TensorDesc) -> ValueId {
        let id = ValueId(self.graph.values.len() as u32);
        self.graph.values.push(Value { name, desc });
        id
    }

    /// Rebuilds `graph` node by node, reproducing its value ids.
    fn replay(graph: &Graph) -> Result<Graph> {
        let mut producer: HashMap<ValueId, usize> = HashMap::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            for &o in &n.outputs {
                producer.insert(o, i);
            }
        }
        let mut b = GraphBuilder::new(graph.name.clone());
        for (index, value) in graph.values.iter().enumerate() {
            let id = ValueId(index as u32);
            if graph.inputs.contains(&id) {
                b.input(&value.name, value.desc.clone())?;
            } else if let Some(&ni) = producer.get(&id) {
                let node = &graph.nodes[ni];
                if node.outputs.first() != Some(&id) {
                    continue;
                }
                for &v in &node.inputs {
                    if v.index() >= index {
                        return Err(HalError::invalid_argument(
                            node.name.clone(),
                            "the node reads a tensor that is defined after it",
                        ));
                    }
                }
                let out = OutType {
                    dtype: value.desc.dtype,
                    quant: value.desc.quant.clone(),
                };
                b.add_node(&node.name, node.op.clone(), &node.inputs, Some(out))?;
            } else {
                return Err(HalError::invalid_argument(
                    value.name.clone(),
                    "the tensor is neither a graph input nor produced by a node",
                ));
            }
        }
        for &o in &graph.outputs {
            b.output(o)?;
        }
        b.build()
    }
}

fn output_name(node: &str, op: &Op, index: usize) -> String {
    match (op, index) {
        (Op::TopK { .. }, 0) => format!("{node}:values"),
        (Op::TopK { .. }, _) => format!("{node}:indices"),
        _ => node.to_string(),
    }
}

/// Infers a node's output descriptors, or explains why the node is invalid.
fn infer(
    node: &str,
    op: &Op,
    ins: &[TensorDesc],
    out: Option<&OutType>,
) -> Result<Vec<TensorDesc>> {
    let required = || {
        out.cloned().ok_or_else(|| {
            HalError::invalid_argument(node, format!("{} needs an output type", op.kind()))
        })
    };
    let inferred: Vec<TensorDesc> = match op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => vec![infer_matmul(
            node,
            &ins[0],
            &ins[1],
            *transpose_a,
            *transpose_b,
            required()?,
        )?],
        Op::Requantize => {
            let x = &ins[0];
            per_tensor_input(node, "input", x)?;
            let out = required()?;
            narrow_quantized_output(node, &out)?;
            vec![TensorDesc::new(out.dtype, x.shape.clone()).with_quant(out.quant)]
        }
        Op::Quantize => {
            let x = &ins[0];
            float_input(node, "input", x)?;
            let out = required()?;
            if !out.dtype.is_narrow_integer() || !out.quant.is_quantized() {
                return Err(HalError::dtype(
                    node,
                    format!(
                        "Quantize produces an 8- or 16-bit integer with quantization, not {}",
                        out.dtype
                    ),
                ));
            }
            vec![TensorDesc::new(out.dtype, x.shape.clone()).with_quant(out.quant)]
        }
        Op::Dequantize { dtype } => {
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
            vec![TensorDesc::new(*dtype, x.shape.clone())]
        }
        Op::Softmax { axis, beta } => {
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
            vec![TensorDesc::new(x.dtype, x.shape.clone())]
        }
        Op::TopK { k } => {
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
            vec![
                TensorDesc::new(x.dtype, shape.clone()).with_quant(x.quant.clone()),
                TensorDesc::new(DType::I32, shape),
            ]
        }
        Op::Mul | Op::Add => vec![infer_elementwise(
            node,
            op.kind(),
            &ins[0],
            &ins[1],
            required()?,
        )?],
        Op::Reshape { shape } => {
            let x = &ins[0];
            if matches!(x.quant, Quantization::PerAxis { .. }) {
                return Err(HalError::InvalidQuantization {
                    what: node.to_string(),
                    detail: "Reshape does not take per-axis quantized input".into(),
                });
            }
            let target = TensorDesc::new(x.dtype, shape.clone()).with_quant(x.quant.clone());
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
            vec![target]
        }
        Op::Transpose { perm } => {
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
            vec![TensorDesc::new(x.dtype, shape).with_quant(quant)]
        }
        Op::Cast { dtype } => vec![TensorDesc::new(*dtype, ins[0].shape.clone())],
    };
    if let (Some(out), false) = (out, op.needs_output_type()) {
        let first = &inferred[0];
        if out.dtype != first.dtype || out.quant != first.quant {
            return Err(HalError::dtype(
                node,
                format!(
                    "{} produces {} but {} was requested",
                    op.kind(),
                    first,
                    TensorDesc::new(out.dtype, first.shape.clone()).with_quant(out.quant.clone())
                ),
            ));
        }
    }
    Ok(inferred)
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
