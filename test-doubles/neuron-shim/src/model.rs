//! The shim's models, compilations and executions, validated like a driver: a bad operand type,
//! a wrong size or an out-of-order call gets the Neuron result code a real adapter returns.
//! Each operation's operand rules are NNAPI's (the Neuron Adapter's operation set), checked when
//! the operation is added as the NNAPI runtime does; `DRIVER-RULES.md` gives every rule's source.

use shadowattn_hal::{
    CompiledGraph, DType, Graph, GraphBuilder, NpuBackend, Op, OutType, Quantization, TensorDesc,
    TensorView, TensorViewMut, ValueId,
};
use shadowattn_neuron::sys::{OperandCode, OperationCode, ResultCode};
use shadowattn_simulator::SimBackend;
use std::collections::HashMap;
use std::sync::Mutex;

type R<T> = Result<T, ResultCode>;

/// One operand as added by the client.
#[derive(Clone, Debug)]
struct Operand {
    code: OperandCode,
    dims: Vec<u32>,
    scale: f32,
    zero_point: i32,
    value: Option<Vec<u8>>,
}

fn is_scalar(code: OperandCode) -> bool {
    matches!(code.0, 0 | 1 | 2 | 6 | 10)
}

fn element_bytes(code: OperandCode) -> Option<usize> {
    Some(match code.0 {
        0..=4 => 4,
        5 | 6 | 14 => 1,
        7 | 8 | 10 | 12 => 2,
        _ => return None,
    })
}

impl Operand {
    fn bytes(&self) -> usize {
        let n: usize = self.dims.iter().map(|&d| d as usize).product();
        n * element_bytes(self.code).unwrap_or(0)
    }

    fn desc(&self) -> R<TensorDesc> {
        let shape: Vec<usize> = self.dims.iter().map(|&d| d as usize).collect();
        let q = |dt: DType, zp: i32| {
            TensorDesc::new(dt, shape.clone()).with_quant(Quantization::per_tensor(self.scale, zp))
        };
        Ok(match self.code {
            OperandCode::TENSOR_FLOAT32 => TensorDesc::new(DType::F32, shape),
            OperandCode::TENSOR_FLOAT16 => TensorDesc::new(DType::F16, shape),
            OperandCode::TENSOR_QUANT8_ASYMM => q(DType::U8, self.zero_point),
            OperandCode::TENSOR_QUANT8_ASYMM_SIGNED => q(DType::I8, self.zero_point),
            OperandCode::TENSOR_QUANT16_SYMM => q(DType::I16, 0),
            OperandCode::TENSOR_QUANT16_ASYMM => q(DType::U16, self.zero_point),
            OperandCode::TENSOR_INT32 if self.scale > 0.0 => q(DType::I32, 0),
            OperandCode::TENSOR_INT32 => TensorDesc::new(DType::I32, shape),
            _ => return Err(ResultCode::BAD_DATA),
        })
    }

    fn scalar_i32(&self) -> R<i32> {
        let v = self.value.as_ref().ok_or(ResultCode::BAD_DATA)?;
        Ok(i32::from_ne_bytes(
            v.get(..4)
                .ok_or(ResultCode::BAD_DATA)?
                .try_into()
                .map_err(|_| ResultCode::BAD_DATA)?,
        ))
    }

    fn scalar_f32(&self) -> R<f32> {
        if self.code == OperandCode::FLOAT16 {
            let v = self.value.as_ref().ok_or(ResultCode::BAD_DATA)?;
            let b: [u8; 2] = v
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or(ResultCode::BAD_DATA)?;
            return Ok(half::f16::from_ne_bytes(b).to_f32());
        }
        Ok(f32::from_bits(self.scalar_i32()? as u32))
    }

    fn scalar_bool(&self) -> R<bool> {
        Ok(self
            .value
            .as_ref()
            .and_then(|v| v.first())
            .ok_or(ResultCode::BAD_DATA)?
            != &0)
    }

    fn i32_list(&self) -> R<Vec<usize>> {
        let v = self.value.as_ref().ok_or(ResultCode::BAD_DATA)?;
        v.chunks_exact(4)
            .map(|c| {
                usize::try_from(i32::from_ne_bytes(c.try_into().expect("4 bytes")))
                    .map_err(|_| ResultCode::BAD_DATA)
            })
            .collect()
    }
}

/// NNAPI's type abbreviations for the rules below.
const F32: OperandCode = OperandCode::TENSOR_FLOAT32;
const F16: OperandCode = OperandCode::TENSOR_FLOAT16;
const Q8A: OperandCode = OperandCode::TENSOR_QUANT8_ASYMM;
const Q8AS: OperandCode = OperandCode::TENSOR_QUANT8_ASYMM_SIGNED;
const I32T: OperandCode = OperandCode::TENSOR_INT32;

/// `Ok` when `rule` holds, else the driver's refusal.
fn require(rule: bool) -> R<()> {
    if rule {
        Ok(())
    } else {
        Err(ResultCode::BAD_DATA)
    }
}

#[derive(Clone, Debug)]
struct Operation {
    code: OperationCode,
    inputs: Vec<u32>,
    outputs: Vec<u32>,
}

/// A model being built.
#[derive(Debug, Default)]
pub struct ShimModel {
    operands: Vec<Operand>,
    operations: Vec<Operation>,
    inputs: Vec<u32>,
    outputs: Vec<u32>,
    graph: Option<Graph>,
}

impl ShimModel {
    fn open(&self) -> R<()> {
        if self.graph.is_some() {
            Err(ResultCode::BAD_STATE)
        } else {
            Ok(())
        }
    }

    /// `NeuronModel_addOperand`.
    pub fn add_operand(
        &mut self,
        code: i32,
        dims: Option<&[u32]>,
        scale: f32,
        zero_point: i32,
    ) -> R<()> {
        self.open()?;
        let code = OperandCode(code);
        let dims = dims.unwrap_or(&[]).to_vec();
        if element_bytes(code).is_none() {
            return Err(ResultCode::BAD_DATA);
        }
        if is_scalar(code) != dims.is_empty() || dims.contains(&0) {
            return Err(ResultCode::BAD_DATA);
        }
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(ResultCode::BAD_DATA);
        }
        self.operands.push(Operand {
            code,
            dims,
            scale,
            zero_point,
            value: None,
        });
        Ok(())
    }

    /// `NeuronModel_setOperandValue` (the shim always copies).
    pub fn set_value(&mut self, index: i32, value: &[u8]) -> R<()> {
        self.open()?;
        let op = usize::try_from(index)
            .ok()
            .and_then(|i| self.operands.get_mut(i))
            .ok_or(ResultCode::BAD_DATA)?;
        let expected = if is_scalar(op.code) {
            element_bytes(op.code).unwrap_or(0)
        } else {
            op.bytes()
        };
        if value.len() != expected {
            return Err(ResultCode::BAD_DATA);
        }
        op.value = Some(value.to_vec());
        Ok(())
    }

    /// `NeuronModel_addOperation`.
    pub fn add_operation(&mut self, code: i32, inputs: &[u32], outputs: &[u32]) -> R<()> {
        self.open()?;
        let known = [0, 6, 18, 22, 25, 37, 45, 72, 90, 102];
        if !known.contains(&code) {
            return Err(ResultCode::BAD_DATA);
        }
        if inputs
            .iter()
            .chain(outputs)
            .any(|&i| i as usize >= self.operands.len())
        {
            return Err(ResultCode::BAD_DATA);
        }
        self.validate_operation(OperationCode(code), inputs, outputs)?;
        self.operations.push(Operation {
            code: OperationCode(code),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        });
        Ok(())
    }

    /// The operand rules of one operation (NNAPI's `validate` of each operation, run by
    /// `addOperation`): operand counts, each operand's type, outputs of the input's type, ranks.
    fn validate_operation(&self, code: OperationCode, ins: &[u32], outs: &[u32]) -> R<()> {
        let t = |i: &u32| self.operands[*i as usize].code;
        let rank = |i: &u32| self.operands[*i as usize].dims.len();
        let counts = |n_in: &[usize], n_out: usize| {
            require(n_in.contains(&ins.len()) && outs.len() == n_out)
        };
        let input = |k: usize| ins.get(k).map(t).ok_or(ResultCode::BAD_DATA);
        let output = |k: usize| outs.get(k).map(t).ok_or(ResultCode::BAD_DATA);
        let at_most_rank_4 = || require(rank(&ins[0]) <= 4);
        match code {
            OperationCode::BATCH_MATMUL => {
                counts(&[4], 1)?;
                let lhs = input(0)?;
                // Quantized inputs need the same quantized output: no TENSOR_INT32 accumulators,
                // and unsigned QUANT8_ASYMM is not a BATCH_MATMUL type.
                require([F16, F32, Q8AS, I32T].contains(&lhs))?;
                require(input(1)? == lhs && output(0)? == lhs)?;
                require(input(2)? == OperandCode::BOOL && input(3)? == OperandCode::BOOL)
            }
            OperationCode::SOFTMAX => {
                counts(&[2, 3], 1)?;
                let x = input(0)?;
                require([F32, F16, Q8A, Q8AS].contains(&x) && output(0)? == x)?;
                let beta = if x == F16 {
                    OperandCode::FLOAT16
                } else {
                    OperandCode::FLOAT32
                };
                require(input(1)? == beta)?;
                require(ins.len() == 2 || input(2)? == OperandCode::INT32)?;
                at_most_rank_4()
            }
            OperationCode::ADD | OperationCode::MUL => {
                counts(&[3], 1)?;
                let x = input(0)?;
                require([F32, F16, Q8A, Q8AS, I32T].contains(&x))?;
                require(input(1)? == x && output(0)? == x && input(2)? == OperandCode::INT32)?;
                require(rank(&ins[0]) <= 4 && rank(&ins[1]) <= 4)?;
                if code == OperationCode::MUL && (x == Q8A || x == Q8AS) {
                    let s = |i: u32| self.operands[i as usize].scale;
                    require(s(outs[0]) > s(ins[0]) * s(ins[1]))?;
                }
                Ok(())
            }
            OperationCode::TRANSPOSE => {
                counts(&[2], 1)?;
                let x = input(0)?;
                require([F32, F16, Q8A, Q8AS].contains(&x) && output(0)? == x)?;
                require(input(1)? == I32T)?;
                at_most_rank_4()
            }
            OperationCode::RESHAPE => {
                counts(&[2], 1)?;
                let x = input(0)?;
                require([F32, F16, Q8A, Q8AS, I32T].contains(&x) && output(0)? == x)?;
                require(input(1)? == I32T)?;
                at_most_rank_4()
            }
            OperationCode::QUANTIZE => {
                counts(&[1], 1)?;
                require([F16, F32].contains(&input(0)?) && [Q8A, Q8AS].contains(&output(0)?))
            }
            OperationCode::DEQUANTIZE => {
                counts(&[1], 1)?;
                require([Q8A, Q8AS].contains(&input(0)?) && [F16, F32].contains(&output(0)?))?;
                at_most_rank_4()
            }
            OperationCode::CAST => {
                counts(&[1], 1)?;
                let (x, y) = (input(0)?, output(0)?);
                let convertible = [F16, F32, I32T, Q8A];
                // Other types cast only to themselves.
                require((convertible.contains(&x) && convertible.contains(&y)) || x == y)
            }
            OperationCode::TOPK_V2 => {
                counts(&[2], 2)?;
                let x = input(0)?;
                require(
                    [F16, F32, I32T, Q8A, Q8AS].contains(&x) && input(1)? == OperandCode::INT32,
                )?;
                require(output(0)? == x && output(1)? == I32T)
            }
            _ => Err(ResultCode::BAD_DATA),
        }
    }

    /// `NeuronModel_identifyInputsAndOutputs`.
    pub fn identify(&mut self, inputs: &[u32], outputs: &[u32]) -> R<()> {
        self.open()?;
        if inputs
            .iter()
            .chain(outputs)
            .any(|&i| i as usize >= self.operands.len())
            || outputs.is_empty()
        {
            return Err(ResultCode::BAD_DATA);
        }
        self.inputs = inputs.to_vec();
        self.outputs = outputs.to_vec();
        Ok(())
    }

    /// `NeuronModel_finish`: validates the model by building the simulator graph.
    pub fn finish(&mut self) -> R<()> {
        self.open()?;
        self.graph = Some(self.translate()?);
        Ok(())
    }

    /// The simulator graph of the finished model; every rule it breaks is `BAD_DATA`.
    fn translate(&self) -> R<Graph> {
        let mut b = GraphBuilder::new("neuron_model");
        let mut ids: HashMap<u32, ValueId> = HashMap::new();
        for (n, &i) in self.inputs.iter().enumerate() {
            let op = &self.operands[i as usize];
            if op.value.is_some() || is_scalar(op.code) {
                return Err(ResultCode::BAD_DATA);
            }
            ids.insert(
                i,
                b.input(&format!("in{n}"), op.desc()?)
                    .map_err(|_| ResultCode::BAD_DATA)?,
            );
        }
        for (n, o) in self.operations.iter().enumerate() {
            self.translate_operation(&mut b, &mut ids, &format!("op{n}"), o)?;
        }
        for &o in &self.outputs {
            b.output(*ids.get(&o).ok_or(ResultCode::BAD_DATA)?)
                .map_err(|_| ResultCode::BAD_DATA)?;
        }
        b.build().map_err(|_| ResultCode::BAD_DATA)
    }

    /// Operation `o` as node `name`: its data inputs (values so far, or constants of the
    /// model), its outputs checked against the operands the model declared.
    fn translate_operation(
        &self,
        b: &mut GraphBuilder,
        ids: &mut HashMap<u32, ValueId>,
        name: &str,
        o: &Operation,
    ) -> R<()> {
        let out_desc = |k: usize| {
            o.outputs
                .get(k)
                .map(|&i| self.operands[i as usize].desc())
                .ok_or(ResultCode::BAD_DATA)?
        };
        let (op, data_inputs) = self.op_of(o)?;
        let mut inputs = Vec::with_capacity(data_inputs.len());
        for i in data_inputs {
            inputs.push(self.value_of(b, ids, i)?);
        }
        let expected_outputs = if matches!(op, Op::TopK { .. }) { 2 } else { 1 };
        if o.outputs.len() != expected_outputs {
            return Err(ResultCode::BAD_DATA);
        }
        let out_type = out_desc(0).map(|d| OutType {
            dtype: d.dtype,
            quant: d.quant,
        })?;
        let outs = b
            .add_node(name, op, &inputs, Some(out_type))
            .map_err(|_| ResultCode::BAD_DATA)?;
        for (k, &v) in outs.iter().enumerate() {
            if b.desc(v).map_err(|_| ResultCode::BAD_DATA)?.shape != out_desc(k)?.shape {
                return Err(ResultCode::BAD_DATA);
            }
            ids.insert(o.outputs[k], v);
        }
        Ok(())
    }

    /// The value of operand `i`: made so far, or (a tensor operand given a value) a constant of
    /// the model, added once.
    fn value_of(
        &self,
        b: &mut GraphBuilder,
        ids: &mut HashMap<u32, ValueId>,
        i: u32,
    ) -> R<ValueId> {
        if let Some(&v) = ids.get(&i) {
            return Ok(v);
        }
        let op = &self.operands[i as usize];
        let bytes = op.value.clone().ok_or(ResultCode::BAD_DATA)?;
        if is_scalar(op.code) {
            return Err(ResultCode::BAD_DATA);
        }
        let v = b
            .constant(&format!("const{i}"), op.desc()?, bytes)
            .map_err(|_| ResultCode::BAD_DATA)?;
        ids.insert(i, v);
        Ok(v)
    }

    /// The IR op of operation `o` and the operand indices of its data inputs (its parameters
    /// read from their scalar or list operands, each with the count of inputs its code takes).
    fn op_of(&self, o: &Operation) -> R<(Op, Vec<u32>)> {
        let operand = |k: usize| {
            o.inputs
                .get(k)
                .map(|&i| &self.operands[i as usize])
                .ok_or(ResultCode::BAD_DATA)
        };
        // The operand index of data input `k` (a tensor, not a parameter).
        let data = |k: usize| o.inputs.get(k).copied().ok_or(ResultCode::BAD_DATA);
        let out_dtype = || {
            o.outputs
                .first()
                .map(|&i| self.operands[i as usize].desc())
                .ok_or(ResultCode::BAD_DATA)?
                .map(|d| d.dtype)
        };
        let n = o.inputs.len();
        Ok(match o.code {
            OperationCode::BATCH_MATMUL if n == 4 => (
                Op::MatMul {
                    transpose_a: operand(2)?.scalar_bool()?,
                    transpose_b: operand(3)?.scalar_bool()?,
                },
                vec![data(0)?, data(1)?],
            ),
            OperationCode::SOFTMAX if (2..=3).contains(&n) => {
                let rank = operand(0)?.dims.len();
                let axis = if n == 3 {
                    operand(2)?.scalar_i32()?
                } else {
                    -1
                };
                let axis = if axis < 0 { rank as i32 + axis } else { axis };
                (
                    Op::Softmax {
                        axis: usize::try_from(axis).map_err(|_| ResultCode::BAD_DATA)?,
                        beta: operand(1)?.scalar_f32()?,
                    },
                    vec![data(0)?],
                )
            }
            OperationCode::ADD | OperationCode::MUL if n == 3 => {
                if operand(2)?.scalar_i32()? != 0 {
                    return Err(ResultCode::BAD_DATA);
                }
                let op = if o.code == OperationCode::ADD {
                    Op::Add
                } else {
                    Op::Mul
                };
                (op, vec![data(0)?, data(1)?])
            }
            OperationCode::TRANSPOSE if n == 2 => (
                Op::Transpose {
                    perm: operand(1)?.i32_list()?,
                },
                vec![data(0)?],
            ),
            OperationCode::RESHAPE if n == 2 => (
                Op::Reshape {
                    shape: operand(1)?.i32_list()?,
                },
                vec![data(0)?],
            ),
            OperationCode::TOPK_V2 if n == 2 => {
                let k =
                    usize::try_from(operand(1)?.scalar_i32()?).map_err(|_| ResultCode::BAD_DATA)?;
                (Op::TopK { k }, vec![data(0)?])
            }
            OperationCode::QUANTIZE if n == 1 => (Op::Quantize, vec![data(0)?]),
            OperationCode::DEQUANTIZE if n == 1 => (
                Op::Dequantize {
                    dtype: out_dtype()?,
                },
                vec![data(0)?],
            ),
            OperationCode::CAST if n == 1 => (
                Op::Cast {
                    dtype: out_dtype()?,
                },
                vec![data(0)?],
            ),
            _ => return Err(ResultCode::BAD_DATA),
        })
    }
}

/// A compilation of a finished model on the simulator.
#[derive(Debug)]
pub struct ShimCompilation {
    graph: Graph,
    compiled: Option<Mutex<Box<dyn CompiledGraph>>>,
}

impl ShimCompilation {
    /// `NeuronCompilation_create`.
    pub fn create(model: &ShimModel) -> R<Self> {
        let graph = model.graph.clone().ok_or(ResultCode::BAD_STATE)?;
        Ok(ShimCompilation {
            graph,
            compiled: None,
        })
    }

    /// `NeuronCompilation_finish`: compiles on the simulator (`SHADOWATTN_NEURON_SHIM_SOC`,
    /// default `dimensity-9300`).
    pub fn finish(&mut self) -> R<()> {
        if self.compiled.is_some() {
            return Err(ResultCode::BAD_STATE);
        }
        let sim = SimBackend::builtin(&shim_soc()).map_err(|_| ResultCode::OP_FAILED)?;
        let compiled = sim
            .compile(&self.graph)
            .map_err(|_| ResultCode::OP_FAILED)?;
        self.compiled = Some(Mutex::new(compiled));
        Ok(())
    }
}

/// The simulated SoC the shim compiles for: `SHADOWATTN_NEURON_SHIM_SOC`, default
/// `dimensity-9300`.
pub fn shim_soc() -> String {
    std::env::var("SHADOWATTN_NEURON_SHIM_SOC").unwrap_or_else(|_| "dimensity-9300".into())
}

/// A client input buffer: pointer and length.
pub type InputBuffer = (*const u8, usize);
/// A client output buffer: pointer and length.
pub type OutputBuffer = (*mut u8, usize);

/// An execution: its compilation and the client's buffers.
#[derive(Debug)]
pub struct ShimExecution<'c> {
    compilation: &'c ShimCompilation,
    inputs: Vec<Option<InputBuffer>>,
    outputs: Vec<Option<OutputBuffer>>,
}

impl<'c> ShimExecution<'c> {
    /// `NeuronExecution_create`.
    pub fn create(compilation: &'c ShimCompilation) -> R<Self> {
        if compilation.compiled.is_none() {
            return Err(ResultCode::BAD_STATE);
        }
        Ok(ShimExecution {
            compilation,
            inputs: vec![None; compilation.graph.inputs().len()],
            outputs: vec![None; compilation.graph.outputs().len()],
        })
    }

    fn expected(&self, input: bool, index: i32) -> R<(usize, usize)> {
        let ids = if input {
            self.compilation.graph.inputs()
        } else {
            self.compilation.graph.outputs()
        };
        let i = usize::try_from(index)
            .ok()
            .filter(|&i| i < ids.len())
            .ok_or(ResultCode::BAD_DATA)?;
        Ok((i, self.compilation.graph.value(ids[i]).desc.size_bytes()))
    }

    /// `NeuronExecution_setInput`.
    pub fn set_input(&mut self, index: i32, ptr: *const u8, len: usize) -> R<()> {
        let (i, size) = self.expected(true, index)?;
        if len != size {
            return Err(ResultCode::BAD_DATA);
        }
        self.inputs[i] = Some((ptr, len));
        Ok(())
    }

    /// `NeuronExecution_setOutput`.
    pub fn set_output(&mut self, index: i32, ptr: *mut u8, len: usize) -> R<()> {
        let (i, size) = self.expected(false, index)?;
        if len != size {
            return Err(ResultCode::BAD_DATA);
        }
        self.outputs[i] = Some((ptr, len));
        Ok(())
    }

    /// The buffers, once every input and output is set.
    pub fn buffers(&self) -> R<(Vec<InputBuffer>, Vec<OutputBuffer>)> {
        let ins = self
            .inputs
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .ok_or(ResultCode::BAD_STATE)?;
        let outs = self
            .outputs
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .ok_or(ResultCode::BAD_STATE)?;
        Ok((ins, outs))
    }

    /// Runs the graph on the simulator with the given buffer contents.
    pub fn run(&self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> R<()> {
        let g = &self.compilation.graph;
        let in_views: Vec<TensorView<'_>> = g
            .input_descs()
            .zip(inputs)
            .map(|(d, b)| TensorView::new(d, b))
            .collect::<Result<_, _>>()
            .map_err(|_| ResultCode::BAD_DATA)?;
        let out_descs: Vec<&TensorDesc> = g.output_descs().collect();
        let mut out_views: Vec<TensorViewMut<'_>> = out_descs
            .iter()
            .zip(outputs.iter_mut())
            .map(|(d, b)| TensorViewMut::new(d, b))
            .collect::<Result<_, _>>()
            .map_err(|_| ResultCode::BAD_DATA)?;
        let compiled = self
            .compilation
            .compiled
            .as_ref()
            .ok_or(ResultCode::BAD_STATE)?;
        let mut compiled = compiled.lock().map_err(|_| ResultCode::OP_FAILED)?;
        compiled
            .execute(&in_views, &mut out_views)
            .map_err(|_| ResultCode::OP_FAILED)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model with the given operands (code, dims, scale), unfinished.
    fn model(operands: &[(OperandCode, &[u32], f32)]) -> ShimModel {
        let mut m = ShimModel::default();
        for (code, dims, scale) in operands {
            let dims = (!dims.is_empty()).then_some(*dims);
            m.add_operand(code.0, dims, *scale, 0).unwrap();
        }
        m
    }

    fn add(m: &mut ShimModel, op: OperationCode, ins: &[u32], outs: &[u32]) -> R<()> {
        m.add_operation(op.0, ins, outs)
    }

    #[test]
    fn quantized_batch_matmul_needs_a_quantized_output_of_the_inputs_type() {
        let a: &[u32] = &[1, 4, 8];
        let b: &[u32] = &[1, 8, 3];
        let out: &[u32] = &[1, 4, 3];
        let operands = |out_code| {
            model(&[
                (Q8AS, a, 0.1),
                (Q8AS, b, 0.1),
                (OperandCode::BOOL, &[], 0.0),
                (OperandCode::BOOL, &[], 0.0),
                (out_code, out, 0.5),
            ])
        };
        let mut int32 = operands(I32T);
        assert_eq!(
            add(&mut int32, OperationCode::BATCH_MATMUL, &[0, 1, 2, 3], &[4]),
            Err(ResultCode::BAD_DATA)
        );
        let mut int8 = operands(Q8AS);
        assert_eq!(
            add(&mut int8, OperationCode::BATCH_MATMUL, &[0, 1, 2, 3], &[4]),
            Ok(())
        );
        // Unsigned 8-bit is no BATCH_MATMUL type; adj flags must be BOOL scalars.
        let mut unsigned = model(&[
            (Q8A, a, 0.1),
            (Q8A, b, 0.1),
            (OperandCode::BOOL, &[], 0.0),
            (OperandCode::BOOL, &[], 0.0),
            (Q8A, out, 0.5),
        ]);
        assert_eq!(
            add(
                &mut unsigned,
                OperationCode::BATCH_MATMUL,
                &[0, 1, 2, 3],
                &[4]
            ),
            Err(ResultCode::BAD_DATA)
        );
        let mut int_flags = model(&[
            (F32, a, 0.0),
            (F32, b, 0.0),
            (OperandCode::INT32, &[], 0.0),
            (OperandCode::INT32, &[], 0.0),
            (F32, out, 0.0),
        ]);
        assert_eq!(
            add(
                &mut int_flags,
                OperationCode::BATCH_MATMUL,
                &[0, 1, 2, 3],
                &[4]
            ),
            Err(ResultCode::BAD_DATA)
        );
    }

    #[test]
    fn softmax_beta_has_the_inputs_float_type() {
        let x: &[u32] = &[1, 4];
        for (input, beta, ok) in [
            (F16, OperandCode::FLOAT16, true),
            (F16, OperandCode::FLOAT32, false),
            (F32, OperandCode::FLOAT32, true),
            (F32, OperandCode::FLOAT16, false),
        ] {
            let mut m = model(&[(input, x, 0.0), (beta, &[], 0.0), (input, x, 0.0)]);
            let r = add(&mut m, OperationCode::SOFTMAX, &[0, 1], &[2]);
            assert_eq!(r.is_ok(), ok, "{input:?} with beta {beta:?}");
        }
    }

    #[test]
    fn operand_counts_types_and_ranks_are_checked_per_operation() {
        let x: &[u32] = &[2, 3];
        // TOPK_V2 needs int32 indices; QUANTIZE takes floats only; TRANSPOSE refuses INT32.
        let mut topk = model(&[
            (F32, x, 0.0),
            (OperandCode::INT32, &[], 0.0),
            (F32, x, 0.0),
            (F32, x, 0.0),
        ]);
        assert_eq!(
            add(&mut topk, OperationCode::TOPK_V2, &[0, 1], &[2, 3]),
            Err(ResultCode::BAD_DATA)
        );
        let mut quantize = model(&[(Q8AS, x, 0.1), (Q8A, x, 0.1)]);
        assert_eq!(
            add(&mut quantize, OperationCode::QUANTIZE, &[0], &[1]),
            Err(ResultCode::BAD_DATA)
        );
        let mut transpose = model(&[(I32T, x, 0.0), (I32T, &[2], 0.0), (I32T, x, 0.0)]);
        assert_eq!(
            add(&mut transpose, OperationCode::TRANSPOSE, &[0, 1], &[2]),
            Err(ResultCode::BAD_DATA)
        );
        let rank5: &[u32] = &[1, 1, 1, 2, 3];
        let mut deep = model(&[
            (F32, rank5, 0.0),
            (OperandCode::FLOAT32, &[], 0.0),
            (F32, rank5, 0.0),
        ]);
        assert_eq!(
            add(&mut deep, OperationCode::SOFTMAX, &[0, 1], &[2]),
            Err(ResultCode::BAD_DATA)
        );
        let mut add_missing = model(&[(F32, x, 0.0), (F32, x, 0.0), (F32, x, 0.0)]);
        assert_eq!(
            add(&mut add_missing, OperationCode::ADD, &[0, 1], &[2]),
            Err(ResultCode::BAD_DATA)
        );
    }
}
