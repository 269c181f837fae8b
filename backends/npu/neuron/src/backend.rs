//! The safe layer and the HAL `NpuBackend` over the Neuron adapter.
//!
//! A compiled graph owns its model, its compilation and every constant operand value (the
//! adapter references values over 128 bytes instead of copying them); Drop frees the
//! compilation before the model. Each execution creates, runs and frees one NeuronExecution.

use crate::error::{NeuronError, Result, BACKEND_NAME};
use crate::loader::NeuronLibrary;
use crate::sys::calls::{self, RawHandle};
use crate::sys::{OperandCode, OperationCode};
use shadowattn_hal::track;
use shadowattn_hal::{
    Capabilities, Compiled, CompiledGraph, DType, EventKind, FigureSource, Graph, GraphExecutable,
    Node, NpuBackend, Op, OpKind, ProfileEvent, Quantization, Signature, TensorDesc, TensorView,
    TensorViewMut,
};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Options of the Neuron backend.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NeuronOptions {
    /// Library path; `None` searches (see [`NeuronLibrary::find`]).
    pub library: Option<PathBuf>,
}

/// The Neuron backend: a MediaTek adapter library behind the HAL.
#[derive(Debug, Clone)]
pub struct NeuronBackend {
    lib: Arc<NeuronLibrary>,
}

/// The Neuron operand code, scale and zero point of a HAL tensor.
fn operand(desc: &TensorDesc, node: &str, op: OpKind) -> Result<(OperandCode, f32, i32)> {
    let unsupported = |detail: String| NeuronError::Unsupported {
        node: node.to_string(),
        op: op.to_string(),
        detail,
    };
    match (&desc.quant, desc.dtype) {
        (Quantization::PerAxis { .. }, _) => {
            Err(unsupported("per-axis quantization is not mapped".into()))
        }
        (_, DType::F32) => Ok((OperandCode::TENSOR_FLOAT32, 0.0, 0)),
        (_, DType::F16) => Ok((OperandCode::TENSOR_FLOAT16, 0.0, 0)),
        (Quantization::PerTensor(p), DType::I8) => Ok((
            OperandCode::TENSOR_QUANT8_ASYMM_SIGNED,
            p.scale,
            p.zero_point,
        )),
        (Quantization::PerTensor(p), DType::U8) => {
            Ok((OperandCode::TENSOR_QUANT8_ASYMM, p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::I16) if p.zero_point == 0 => {
            Ok((OperandCode::TENSOR_QUANT16_SYMM, p.scale, 0))
        }
        (Quantization::PerTensor(p), DType::U16) => {
            Ok((OperandCode::TENSOR_QUANT16_ASYMM, p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::I32) => Ok((OperandCode::TENSOR_INT32, p.scale, 0)),
        (Quantization::None, DType::I32) => Ok((OperandCode::TENSOR_INT32, 0.0, 0)),
        (q, d) => Err(unsupported(format!(
            "no Neuron operand type for {d} with {q:?}"
        ))),
    }
}

/// Each of `types` to itself: the operations whose output has the input's type.
fn same_type(types: &[DType]) -> BTreeSet<Signature> {
    types
        .iter()
        .map(|&t| Signature {
            input: t,
            output: t,
        })
        .collect()
}

/// What a Neuron (NNAPI-rules) driver accepts of the ops this backend maps, as (input, output)
/// types; `test-doubles/neuron-shim/DRIVER-RULES.md` gives each rule's source. Quantized
/// BATCH_MATMUL writes the inputs' quantized type, never INT32 accumulators, and takes only
/// signed 8-bit; SOFTMAX, ADD, MUL, TRANSPOSE, RESHAPE and TOPK_V2 write their input's type;
/// CAST converts among f16, f32, i32 and u8 only.
fn mapped_capabilities() -> Capabilities {
    use DType::{F16, F32, I32, I8, U8};
    let convertible = [F16, F32, I32, U8];
    let cast: BTreeSet<Signature> = Signature::all(&convertible, &convertible)
        .into_iter()
        .chain(same_type(&DType::ALL))
        .collect();
    let ops = [
        (OpKind::MatMul, same_type(&[F32, F16, I8])),
        (OpKind::Softmax, same_type(&[F32, F16])),
        (OpKind::Quantize, Signature::all(&[F32, F16], &[U8, I8])),
        (OpKind::Dequantize, Signature::all(&[U8, I8], &[F32, F16])),
        (OpKind::TopK, same_type(&[F16, F32, I32, U8, I8])),
        (OpKind::Mul, same_type(&[F32, F16, U8, I8, I32])),
        (OpKind::Add, same_type(&[F32, F16, U8, I8, I32])),
        (OpKind::Reshape, same_type(&[F32, F16, U8, I8, I32])),
        (OpKind::Transpose, same_type(&[F32, F16, U8, I8])),
        (OpKind::Cast, cast),
    ];
    Capabilities {
        ops: ops.into_iter().collect(),
        per_axis_quantization: false,
        serialization: false,
        max_rank: 4,
        relaxed_f32: false,
    }
}

impl NeuronBackend {
    /// Opens the adapter library.
    pub fn open(options: NeuronOptions) -> Result<Self> {
        Ok(NeuronBackend {
            lib: NeuronLibrary::find(options.library.as_deref())?,
        })
    }

    /// The library in use.
    pub fn library(&self) -> &NeuronLibrary {
        &self.lib
    }

    fn build(&self, graph: &Graph) -> Result<NeuronGraph> {
        self.capabilities().check(BACKEND_NAME, graph)?;
        graph.validate()?;
        let lib = &self.lib;
        let mut model = ModelBuilder {
            model: Model {
                lib: lib.clone(),
                handle: calls::model_create(lib)?,
            },
            constants: Vec::new(),
            next: graph.values().len() as u32,
        };
        model.add_values(graph)?;
        for node in graph.nodes() {
            model.add_operation(graph, node)?;
        }
        let ins: Vec<u32> = graph.inputs().iter().map(|v| v.index() as u32).collect();
        let outs: Vec<u32> = graph.outputs().iter().map(|v| v.index() as u32).collect();
        let handle = model.model.handle;
        calls::identify_io(lib, handle, &ins, &outs)?;
        calls::model_finish(lib, handle)?;
        let started = Instant::now();
        let compilation = Compilation {
            lib: lib.clone(),
            handle: calls::compilation_create(lib, handle)?,
        };
        calls::compilation_finish(lib, compilation.handle)?;
        let compile_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Ok(NeuronGraph::new(
            graph.clone(),
            vec![ProfileEvent {
                name: format!("neuron compile {}", graph.name()),
                kind: EventKind::Compile,
                track: track::COMPILE.into(),
                start_ns: 0,
                duration_ns: compile_ns.max(1),
                cycles: None,
                source: FigureSource::Measured,
            }],
            NeuronProgram {
                compilation,
                model: model.model,
                _constants: model.constants,
            },
        ))
    }
}

/// A Neuron model under construction: its operands (the graph's values, then the constant
/// operands its operations need) and the bytes of every constant, which must outlive it.
struct ModelBuilder {
    model: Model,
    constants: Vec<Vec<u8>>,
    /// Index of the next operand.
    next: u32,
}

impl ModelBuilder {
    /// One operand per graph value, and the values of the graph's constants.
    fn add_values(&mut self, graph: &Graph) -> Result<()> {
        let (lib, handle) = (&self.model.lib, self.model.handle);
        for (i, v) in graph.values().iter().enumerate() {
            let kind = graph
                .nodes()
                .iter()
                .find(|n| n.inputs.iter().chain(&n.outputs).any(|x| x.index() == i))
                .map_or(OpKind::Reshape, |n| n.op.kind());
            let (code, scale, zp) = operand(&v.desc, &v.name, kind)?;
            let dims: Vec<u32> = v.desc.shape.iter().map(|&d| d as u32).collect();
            calls::add_operand(lib, handle, code, &dims, scale, zp)?;
        }
        for c in graph.constants() {
            let bytes = c.bytes.clone();
            calls::set_operand_value(lib, handle, c.value.index() as u32, &bytes)?;
            self.constants.push(bytes);
        }
        Ok(())
    }

    /// A new constant operand of `code` and `dims` holding `bytes`; its index.
    fn constant(&mut self, code: OperandCode, dims: &[u32], bytes: Vec<u8>) -> Result<u32> {
        let (lib, handle) = (&self.model.lib, self.model.handle);
        calls::add_operand(lib, handle, code, dims, 0.0, 0)?;
        let index = self.next;
        self.next += 1;
        calls::set_operand_value(lib, handle, index, &bytes)?;
        self.constants.push(bytes);
        Ok(index)
    }

    /// A scalar INT32 constant.
    fn int32(&mut self, value: i32) -> Result<u32> {
        self.constant(OperandCode::INT32, &[], value.to_ne_bytes().to_vec())
    }

    /// A 1-D INT32 tensor constant.
    fn int32s(&mut self, values: &[usize]) -> Result<u32> {
        let bytes = values
            .iter()
            .flat_map(|&x| (x as i32).to_ne_bytes())
            .collect();
        self.constant(OperandCode::TENSOR_INT32, &[values.len() as u32], bytes)
    }

    /// The operation of `node`, its attributes as constant operands after its inputs.
    fn add_operation(&mut self, graph: &Graph, node: &Node) -> Result<()> {
        let (code, extra): (OperationCode, Vec<u32>) = match &node.op {
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => (
                OperationCode::BATCH_MATMUL,
                vec![
                    self.constant(OperandCode::BOOL, &[], vec![u8::from(*transpose_a)])?,
                    self.constant(OperandCode::BOOL, &[], vec![u8::from(*transpose_b)])?,
                ],
            ),
            Op::Softmax { axis, beta } => {
                // beta has the input's float type (FLOAT16 for an f16 input).
                let beta = if graph.value(node.inputs[0]).desc.dtype == DType::F16 {
                    let bytes = half::f16::from_f32(*beta).to_ne_bytes().to_vec();
                    self.constant(OperandCode::FLOAT16, &[], bytes)?
                } else {
                    self.constant(OperandCode::FLOAT32, &[], beta.to_ne_bytes().to_vec())?
                };
                (
                    OperationCode::SOFTMAX,
                    vec![beta, self.int32(*axis as i32)?],
                )
            }
            Op::Mul => (OperationCode::MUL, vec![self.int32(0)?]),
            Op::Add => (OperationCode::ADD, vec![self.int32(0)?]),
            Op::Transpose { perm } => (OperationCode::TRANSPOSE, vec![self.int32s(perm)?]),
            Op::Reshape { shape } => (OperationCode::RESHAPE, vec![self.int32s(shape)?]),
            Op::TopK { k } => (OperationCode::TOPK_V2, vec![self.int32(*k as i32)?]),
            Op::Quantize => (OperationCode::QUANTIZE, vec![]),
            Op::Dequantize { .. } => (OperationCode::DEQUANTIZE, vec![]),
            Op::Cast { .. } => (OperationCode::CAST, vec![]),
            Op::Requantize => {
                return Err(NeuronError::Unsupported {
                    node: node.name.clone(),
                    op: "Requantize".into(),
                    detail: "the Neuron adapter has no requantize operation".into(),
                })
            }
        };
        let ins: Vec<u32> = node
            .inputs
            .iter()
            .map(|v| v.index() as u32)
            .chain(extra)
            .collect();
        let outs: Vec<u32> = node.outputs.iter().map(|v| v.index() as u32).collect();
        calls::add_operation(&self.model.lib, self.model.handle, code, &ins, &outs)
    }
}

impl NpuBackend for NeuronBackend {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    fn version(&self) -> String {
        let v = self.lib.version();
        let devices = match self.lib.devices() {
            [] => String::new(),
            names => format!(", device {}", names.join(", ")),
        };
        format!(
            "Neuron runtime {}.{}.{}{devices} ({})",
            v.major,
            v.minor,
            v.patch,
            self.lib.path()
        )
    }

    fn capabilities(&self) -> Capabilities {
        mapped_capabilities()
    }

    fn compile(&self, graph: &Graph) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        Ok(Box::new(self.build(graph)?))
    }
}

/// A NeuronModel; freed when dropped.
#[derive(Debug)]
struct Model {
    lib: Arc<NeuronLibrary>,
    handle: RawHandle,
}

impl Drop for Model {
    fn drop(&mut self) {
        calls::model_free(&self.lib, self.handle);
    }
}

/// A NeuronCompilation; freed when dropped.
#[derive(Debug)]
struct Compilation {
    lib: Arc<NeuronLibrary>,
    handle: RawHandle,
}

impl Drop for Compilation {
    fn drop(&mut self) {
        calls::compilation_free(&self.lib, self.handle);
    }
}

/// A NeuronExecution; freed when dropped.
struct Execution<'a> {
    lib: &'a NeuronLibrary,
    handle: RawHandle,
}

impl Drop for Execution<'_> {
    fn drop(&mut self) {
        calls::execution_free(self.lib, self.handle);
    }
}

/// A compiled Neuron graph.
pub type NeuronGraph = Compiled<NeuronProgram>;

/// What the adapter keeps of a compiled graph. Field order is drop order: the compilation goes
/// before the model, the constant operand values (which the model references) last.
#[derive(Debug)]
pub struct NeuronProgram {
    compilation: Compilation,
    model: Model,
    _constants: Vec<Vec<u8>>,
}

impl GraphExecutable for NeuronProgram {
    fn run(
        &mut self,
        graph: &Graph,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> shadowattn_hal::Result<Vec<ProfileEvent>> {
        let lib = &*self.model.lib;
        let started = Instant::now();
        let execution = Execution {
            lib,
            handle: calls::execution_create(lib, self.compilation.handle)?,
        };
        for (i, v) in inputs.iter().enumerate() {
            calls::set_input(lib, execution.handle, i as u32, v.bytes())?;
        }
        for (i, v) in outputs.iter_mut().enumerate() {
            calls::set_output(lib, execution.handle, i as u32, v.bytes_mut())?;
        }
        calls::compute(lib, execution.handle)?;
        drop(execution);
        Ok(vec![ProfileEvent {
            name: format!("neuron execute {}", graph.name()),
            kind: EventKind::Launch,
            track: track::NPU.into(),
            start_ns: 0,
            duration_ns: u64::try_from(started.elapsed().as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            cycles: None,
            source: FigureSource::Measured,
        }])
    }

    fn serialize(&self, _: &Graph) -> shadowattn_hal::Result<Vec<u8>> {
        Err(shadowattn_hal::HalError::NotProvided {
            backend: BACKEND_NAME.into(),
            feature: "compiled-network serialization".into(),
        })
    }
}
