//! The validating graph builder: every node is checked as it is added, and a deserialized graph
//! is checked by replaying it. The typed methods (`matmul`, `softmax`, …) come from the op
//! table in [`super::ops`].

use super::{Constant, Graph, Node, Op, OutType, Value, ValueId};
use crate::error::{HalError, Result};
use crate::tensor::{HostTensor, TensorDesc};
use std::collections::{HashMap, HashSet};

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
                constants: Vec::new(),
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

    /// Declares a constant (STATIC) tensor holding `bytes`, the elements as a
    /// [`crate::HostTensor`] of `desc` holds them.
    pub fn constant(&mut self, name: &str, desc: TensorDesc, bytes: Vec<u8>) -> Result<ValueId> {
        desc.validate(name)?;
        if bytes.len() != desc.size_bytes() {
            return Err(HalError::invalid_argument(
                name,
                format!(
                    "a constant of {desc} holds {} bytes but {} were given",
                    desc.size_bytes(),
                    bytes.len()
                ),
            ));
        }
        self.claim_name(name)?;
        let id = self.push_value(name.to_string(), desc);
        self.graph.constants.push(Constant { value: id, bytes });
        Ok(id)
    }

    /// Declares a constant tensor with the descriptor and data of `tensor`.
    pub fn constant_tensor(&mut self, name: &str, tensor: &HostTensor) -> Result<ValueId> {
        self.constant(name, tensor.desc().clone(), tensor.bytes().to_vec())
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
        let outs = op.infer(name, &descs, out.as_ref())?;
        for (i, d) in outs.iter().enumerate() {
            d.validate(&op.output_name(name, i))?;
        }
        self.claim_name(name)?;
        let extra: Vec<String> = (0..outs.len())
            .map(|i| op.output_name(name, i))
            .filter(|n| n != name)
            .collect();
        for n in &extra {
            self.claim_name(n)?;
        }
        let outputs: Vec<ValueId> = outs
            .into_iter()
            .enumerate()
            .map(|(i, d)| self.push_value(op.output_name(name, i), d))
            .collect();
        self.graph.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.clone(),
        });
        Ok(outputs)
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
    pub(super) fn replay(graph: &Graph) -> Result<Graph> {
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
            } else if let Some(bytes) = graph.constant(id) {
                b.constant(&value.name, value.desc.clone(), bytes.to_vec())?;
            } else if let Some(&ni) = producer.get(&id) {
                let node = &graph.nodes[ni];
                if node.outputs.first() != Some(&id) {
                    continue;
                }
                for &v in &node.inputs {
                    if v.index() >= graph.values.len() {
                        return Err(HalError::invalid_argument(
                            node.name.clone(),
                            format!(
                                "node `{}` refers to tensor {} but the graph has {}",
                                node.name,
                                v.index(),
                                graph.values.len()
                            ),
                        ));
                    }
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
