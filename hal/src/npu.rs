//! The NPU graph backend contract: capabilities, compile once, execute many times.

use crate::dtype::DType;
use crate::error::{HalError, Result};
use crate::event::ProfileEvent;
use crate::ir::{Graph, OpKind};
use crate::quant::Quantization;
use crate::tensor::{TensorView, TensorViewMut};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One combination of types an op accepts: inputs of `input` producing an output of `output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Signature {
    /// Type of the inputs.
    pub input: DType,
    /// Type of the (first) output.
    pub output: DType,
}

impl Signature {
    /// Every combination of one of `inputs` with one of `outputs`.
    pub fn all(inputs: &[DType], outputs: &[DType]) -> BTreeSet<Signature> {
        inputs
            .iter()
            .flat_map(|&input| {
                outputs
                    .iter()
                    .map(move |&output| Signature { input, output })
            })
            .collect()
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.input, self.output)
    }
}

/// What an NPU graph backend can build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// For each supported op, the type combinations it accepts: a node is supported when each
    /// input's type, with the type of the node's first output, is one of them.
    pub ops: BTreeMap<OpKind, BTreeSet<Signature>>,
    /// Whether per-axis quantized tensors are accepted.
    pub per_axis_quantization: bool,
    /// Whether compiled graphs can be serialized and loaded back.
    pub serialization: bool,
    /// Largest tensor rank accepted.
    pub max_rank: usize,
    /// Whether f32 graphs are computed in f16 arithmetic (as on HTP); their results are then
    /// judged with f16 tolerances.
    #[serde(default)]
    pub relaxed_f32: bool,
}

impl Capabilities {
    /// Whether `op` takes inputs of type `input` producing an output of type `output`.
    pub fn supports(&self, op: OpKind, input: DType, output: DType) -> bool {
        self.ops
            .get(&op)
            .is_some_and(|s| s.contains(&Signature { input, output }))
    }

    /// Whether `op` takes inputs of type `input` with some output type.
    pub fn accepts_input(&self, op: OpKind, input: DType) -> bool {
        self.ops
            .get(&op)
            .is_some_and(|s| s.iter().any(|sig| sig.input == input))
    }

    /// Checks every node of `graph`; the error names the first unsupported node and why.
    pub fn check(&self, backend: &str, graph: &Graph) -> Result<()> {
        let unsupported = |node: &str, op: OpKind, detail: String| HalError::Unsupported {
            backend: backend.to_string(),
            node: node.to_string(),
            op: op.to_string(),
            detail,
        };
        // Graphs read from files may refer to tensors that do not exist; say so, do not index.
        let value_of = |node: &str, v: crate::ir::ValueId| {
            graph.values().get(v.index()).ok_or_else(|| {
                HalError::invalid_argument(
                    format!("graph `{}`", graph.name()),
                    format!(
                        "node `{node}` refers to tensor {} but the graph has {}",
                        v.index(),
                        graph.values().len()
                    ),
                )
            })
        };
        for node in graph.nodes() {
            let kind = node.op.kind();
            let Some(signatures) = self.ops.get(&kind) else {
                return Err(unsupported(
                    &node.name,
                    kind,
                    "the op is not supported".into(),
                ));
            };
            for &v in node.inputs.iter().chain(&node.outputs) {
                let value = value_of(&node.name, v)?;
                let d = &value.desc;
                if d.rank() > self.max_rank {
                    return Err(unsupported(
                        &node.name,
                        kind,
                        format!(
                            "tensor `{}` has rank {} > {}",
                            value.name,
                            d.rank(),
                            self.max_rank
                        ),
                    ));
                }
                if !self.per_axis_quantization && matches!(d.quant, Quantization::PerAxis { .. }) {
                    return Err(unsupported(
                        &node.name,
                        kind,
                        format!("tensor `{}` is quantized per axis", value.name),
                    ));
                }
            }
            let Some(&first) = node.outputs.first() else {
                continue;
            };
            let output = value_of(&node.name, first)?.desc.dtype;
            for &v in &node.inputs {
                let value = value_of(&node.name, v)?;
                let sig = Signature {
                    input: value.desc.dtype,
                    output,
                };
                if !signatures.contains(&sig) {
                    let accepted: Vec<String> = signatures.iter().map(|s| s.to_string()).collect();
                    return Err(unsupported(
                        &node.name,
                        kind,
                        format!(
                            "input `{}` of type {} with an output of type {output} ({kind} takes {})",
                            value.name,
                            value.desc.dtype,
                            accepted.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An NPU graph backend: builds static graphs from the IR and runs them.
///
/// Object safe, so a backend can be chosen by name at run time (`Box<dyn NpuBackend>`).
pub trait NpuBackend: Send + Sync + std::fmt::Debug {
    /// The backend's registry name (`cpu`, `sim:snapdragon-8-gen-3`, `qnn:htp`, …).
    fn name(&self) -> &str;

    /// Version of the backend or of the vendor library behind it.
    fn version(&self) -> String;

    /// What the backend can build.
    fn capabilities(&self) -> Capabilities;

    /// Builds and compiles a graph; expensive, done once per graph. An unsupported graph is an
    /// [`HalError::Unsupported`] naming the node, never a silent fallback.
    fn compile(&self, graph: &Graph) -> Result<Box<dyn CompiledGraph>>;

    /// Checks, without compiling, that this backend can build `graph`; the error is
    /// [`HalError::Unsupported`] naming the first node it cannot build. The default checks
    /// [`NpuBackend::capabilities`]; backends whose support depends on more than input types
    /// (a vendor validator, output types) refine it.
    fn check_support(&self, graph: &Graph) -> Result<()> {
        self.capabilities().check(self.name(), graph)
    }

    /// Loads a compiled graph from bytes made by [`CompiledGraph::serialize`].
    fn deserialize(&self, bytes: &[u8]) -> Result<Box<dyn CompiledGraph>> {
        let _ = bytes;
        Err(HalError::NotProvided {
            backend: self.name().to_string(),
            feature: "compiled-graph deserialization".into(),
        })
    }
}

/// A compiled, executable graph.
pub trait CompiledGraph: Send + std::fmt::Debug {
    /// The graph this was compiled from (its inputs and outputs are the execution signature).
    fn graph(&self) -> &Graph;

    /// Events recorded while compiling (build, finalize, vendor estimates).
    fn compile_events(&self) -> &[ProfileEvent];

    /// Runs the graph: one buffer per graph input and per graph output, in graph order.
    /// Returns the events of this execution.
    fn execute(
        &mut self,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> Result<Vec<ProfileEvent>>;

    /// Serializes the compiled graph so [`NpuBackend::deserialize`] can load it without recompiling.
    fn serialize(&self) -> Result<Vec<u8>>;
}

/// The backend-specific part of a compiled graph: how to run it and how to save it.
pub trait GraphExecutable: Send + std::fmt::Debug {
    /// Runs `graph` on buffers already checked against it ([`check_io`]); returns the events
    /// of this execution.
    fn run(
        &mut self,
        graph: &Graph,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> Result<Vec<ProfileEvent>>;

    /// The bytes [`NpuBackend::deserialize`] loads back.
    fn serialize(&self, graph: &Graph) -> Result<Vec<u8>>;
}

/// A compiled graph as every backend keeps it: the IR it was compiled from, the events of
/// compiling it, and the backend's executable. Its [`CompiledGraph::execute`] checks the
/// buffers once for every backend.
#[derive(Debug)]
pub struct Compiled<E> {
    graph: Graph,
    compile_events: Vec<ProfileEvent>,
    executable: E,
}

impl<E: GraphExecutable> Compiled<E> {
    /// `executable`, compiled from `graph` with `compile_events`.
    pub fn new(graph: Graph, compile_events: Vec<ProfileEvent>, executable: E) -> Self {
        Compiled {
            graph,
            compile_events,
            executable,
        }
    }

    /// The backend's executable.
    pub fn executable(&self) -> &E {
        &self.executable
    }
}

impl<E: GraphExecutable> CompiledGraph for Compiled<E> {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn compile_events(&self) -> &[ProfileEvent] {
        &self.compile_events
    }

    fn execute(
        &mut self,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> Result<Vec<ProfileEvent>> {
        check_io(&self.graph, inputs, outputs)?;
        self.executable.run(&self.graph, inputs, outputs)
    }

    fn serialize(&self) -> Result<Vec<u8>> {
        self.executable.serialize(&self.graph)
    }
}

/// Checks execution buffers against a graph's inputs and outputs (count, dtype, shape, quantization).
pub fn check_io(
    graph: &Graph,
    inputs: &[TensorView<'_>],
    outputs: &[TensorViewMut<'_>],
) -> Result<()> {
    let count = |what: &str, expected: usize, got: usize| {
        if expected != got {
            return Err(HalError::invalid_argument(
                what,
                format!(
                    "graph `{}` takes {expected} {what} but {got} were given",
                    graph.name()
                ),
            ));
        }
        Ok(())
    };
    count("inputs", graph.inputs().len(), inputs.len())?;
    count("outputs", graph.outputs().len(), outputs.len())?;
    let given = inputs
        .iter()
        .map(|v| v.desc())
        .zip(graph.inputs())
        .chain(outputs.iter().map(|v| v.desc()).zip(graph.outputs()));
    for (desc, &id) in given {
        let value = graph.value(id);
        let want = &value.desc;
        if desc.dtype != want.dtype || desc.shape != want.shape || desc.quant != want.quant {
            return Err(HalError::BufferMismatch {
                tensor: value.name.clone(),
                detail: format!("the graph expects {want} but the buffer is {desc}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GraphBuilder, OutType, TensorDesc};

    fn softmax_graph(dtype: DType) -> Graph {
        let mut b = GraphBuilder::new("g");
        let x = b.input("x", TensorDesc::new(dtype, [2, 4])).unwrap();
        let y = b.softmax("probs", x, 1, 1.0).unwrap();
        let z = b.cast("as_i32", y, DType::I32).unwrap();
        b.output(z).unwrap();
        b.build().unwrap()
    }

    #[test]
    fn capability_check_names_the_unsupported_node() {
        let caps = Capabilities {
            ops: [(
                OpKind::Softmax,
                Signature::all(&[DType::F16], &[DType::F16]),
            )]
            .into_iter()
            .collect(),
            per_axis_quantization: false,
            serialization: false,
            max_rank: 4,
            relaxed_f32: false,
        };
        assert!(caps.supports(OpKind::Softmax, DType::F16, DType::F16));
        assert!(!caps.supports(OpKind::Softmax, DType::F16, DType::F32));
        assert!(!caps.supports(OpKind::Softmax, DType::F32, DType::F32));
        assert!(caps.accepts_input(OpKind::Softmax, DType::F16));
        let e = caps.check("npu-x", &softmax_graph(DType::F32)).unwrap_err();
        assert!(
            matches!(&e, HalError::Unsupported { backend, node, .. } if backend == "npu-x" && node == "probs"),
            "{e}"
        );
        let e = caps.check("npu-x", &softmax_graph(DType::F16)).unwrap_err();
        assert!(
            matches!(&e, HalError::Unsupported { node, .. } if node == "as_i32"),
            "{e}"
        );
    }

    #[test]
    fn output_types_are_part_of_what_a_backend_supports() {
        // An HTP-like NPU: INT8 MatMul only with a requantized 8-bit output, no INT32.
        let caps = Capabilities {
            ops: [(
                OpKind::MatMul,
                Signature::all(&[DType::I8], &[DType::I8, DType::U8]),
            )]
            .into_iter()
            .collect(),
            per_axis_quantization: false,
            serialization: false,
            max_rank: 4,
            relaxed_f32: false,
        };
        let matmul = |out: OutType| {
            let mut b = GraphBuilder::new("g");
            let q8 =
                |n| TensorDesc::new(DType::I8, [n, 4]).with_quant(Quantization::per_tensor(0.1, 0));
            let a = b.input("a", q8(2)).unwrap();
            let c = b.input("c", q8(3)).unwrap();
            let y = b.matmul("mm", a, c, false, true, out).unwrap();
            b.output(y).unwrap();
            b.build().unwrap()
        };
        caps.check(
            "htp",
            &matmul(OutType::quantized(
                DType::I8,
                crate::QuantParams::new(0.5, 0),
            )),
        )
        .unwrap();
        let e = caps
            .check("htp", &matmul(OutType::plain(DType::I32)))
            .unwrap_err();
        assert!(
            matches!(&e, HalError::Unsupported { node, detail, .. } if node == "mm" && detail.contains("output of type i32")),
            "{e}"
        );
        assert!(!caps.supports(OpKind::MatMul, DType::I8, DType::I32));
    }

    #[test]
    fn nan_scales_are_rejected_at_the_input_that_carries_them() {
        let mut b = GraphBuilder::new("g");
        let desc =
            TensorDesc::new(DType::I8, [2]).with_quant(Quantization::per_tensor(f32::NAN, 0));
        let e = b.input("q", desc).unwrap_err();
        assert!(
            matches!(&e, HalError::InvalidQuantization { what, .. } if what == "q"),
            "{e}"
        );
        let x = b.input("x", TensorDesc::new(DType::F32, [2])).unwrap();
        let bad = OutType::quantized(DType::I8, crate::QuantParams::new(f32::NAN, 0));
        let e = b.quantize("quant", x, bad).unwrap_err();
        assert!(
            matches!(&e, HalError::InvalidQuantization { what, .. } if what == "quant"),
            "{e}"
        );
    }
}
