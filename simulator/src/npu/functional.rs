//! The simulator's functional model: the golden interpreter, except for the integer MatMul the
//! pilot is (one INT8 × INT8 MatMul to INT32 accumulators or requantized 8-bit scores), which
//! runs on the fast kernels' exact SIMD INT8 dot product (AVX2 / NEON / portable). Its
//! accumulators are exact i32 sums and it requantizes with the same rules the interpreter is
//! given, so it equals the interpreter bit for bit. Every path rounds integers as the profile's
//! `[numerics] integer_rounding` says ([`crate::npu::numerics`]).
//!
//! An NPU that computes f32 graphs in f16 (HTP V73 does: `[numerics] f32_as_f16` of its
//! profile) runs the graph's f16 twin: every f32 tensor an f16 one, f32 inputs rounded to f16
//! on the way in and f16 results widened on the way out, as the casts HTP inserts do.

use crate::npu::numerics::IntegerRounding;
use crate::npu::profile::NpuNumerics;
use shadowattn_cpu::fast::simd::dot_i8;
use shadowattn_cpu::reference::arith::IntegerRules;
use shadowattn_cpu::reference::graph as interpreter;
use shadowattn_hal::{
    check_io, DType, Graph, GraphBuilder, HostTensor, Op, OutType, QuantParams, Quantization,
    Result, TensorDesc, TensorView, TensorViewMut, ValueId,
};

/// How a compiled graph computes its results; chosen once, when the graph is compiled.
#[derive(Clone, Debug)]
pub struct Computation {
    path: Path,
    /// The NPU's integer rounding, applied on every path.
    rounding: IntegerRounding,
}

#[derive(Clone, Debug)]
enum Path {
    /// The golden interpreter.
    Interpreted,
    /// The fast exact integer MatMul (the graph is one i8 × i8 MatMul).
    IntMatMul(IntMatMul),
    /// The graph's f16 twin, for NPUs that compute f32 as f16.
    F16(Graph),
}

impl Computation {
    /// How `graph` computes on an NPU computing as `numerics` says.
    pub fn of(graph: &Graph, numerics: &NpuNumerics) -> Computation {
        let has_f32 = graph.values().iter().any(|v| v.desc.dtype == DType::F32);
        let twin = (numerics.f32_as_f16 && has_f32)
            .then(|| f16_twin(graph))
            .flatten();
        let path = match twin {
            Some(twin) => Path::F16(twin),
            None => IntMatMul::of(graph).map_or(Path::Interpreted, Path::IntMatMul),
        };
        Computation {
            path,
            rounding: numerics.integer_rounding,
        }
    }

    /// Runs `graph` (the graph this computation was made for) on `inputs`, writing `outputs`.
    pub fn execute(
        &self,
        graph: &Graph,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> Result<()> {
        let rules = self.rounding.rules();
        match &self.path {
            Path::Interpreted => interpreter::execute_with(graph, inputs, outputs, rules),
            Path::IntMatMul(mm) => {
                check_io(graph, inputs, &*outputs)?;
                mm.run(
                    inputs[0].bytes(),
                    inputs[1].bytes(),
                    outputs[0].bytes_mut(),
                    rules,
                );
                Ok(())
            }
            Path::F16(twin) => {
                check_io(graph, inputs, &*outputs)?;
                let narrowed = twin
                    .input_descs()
                    .zip(inputs)
                    .map(|(d, v)| {
                        let mut t = HostTensor::zeros(d.clone())?;
                        convert(v.bytes(), v.desc().dtype, d.dtype, t.bytes_mut());
                        Ok(t)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let views: Vec<_> = narrowed.iter().map(|t| t.view()).collect();
                let results = interpreter::run_with(twin, &views, rules)?;
                for (out, r) in outputs.iter_mut().zip(&results) {
                    let to = out.desc().dtype;
                    convert(r.bytes(), r.desc().dtype, to, out.bytes_mut());
                }
                Ok(())
            }
        }
    }
}

/// Runs `graph` on `inputs`, writing `outputs`, with the golden interpreter's results.
pub fn execute(
    graph: &Graph,
    inputs: &[TensorView<'_>],
    outputs: &mut [TensorViewMut<'_>],
) -> Result<()> {
    Computation::of(graph, &NpuNumerics::default()).execute(graph, inputs, outputs)
}

/// Writes `bytes` of type `from` into `dst` as type `to` (f32 ↔ f16 by IEEE rounding; the
/// same type is copied).
fn convert(bytes: &[u8], from: DType, to: DType, dst: &mut [u8]) {
    if from == to {
        dst.copy_from_slice(bytes);
    } else {
        interpreter::encode(&interpreter::decode(bytes, from), to, dst);
    }
}

/// `dtype` as the f16 twin holds it.
fn narrow(dtype: DType) -> DType {
    if dtype == DType::F32 {
        DType::F16
    } else {
        dtype
    }
}

/// `graph` with every f32 tensor made f16, or `None` where the IR cannot express the twin.
fn f16_twin(graph: &Graph) -> Option<Graph> {
    let mut b = GraphBuilder::new(graph.name());
    let mut ids: Vec<Option<ValueId>> = vec![None; graph.values().len()];
    for &v in graph.inputs() {
        let value = graph.value(v);
        let desc = TensorDesc {
            dtype: narrow(value.desc.dtype),
            ..value.desc.clone()
        };
        ids[v.index()] = Some(b.input(&value.name, desc).ok()?);
    }
    for c in graph.constants() {
        let value = graph.value(c.value);
        let desc = TensorDesc {
            dtype: narrow(value.desc.dtype),
            ..value.desc.clone()
        };
        let mut bytes = vec![0; desc.size_bytes()];
        convert(&c.bytes, value.desc.dtype, desc.dtype, &mut bytes);
        ids[c.value.index()] = Some(b.constant(&value.name, desc, bytes).ok()?);
    }
    for node in graph.nodes() {
        let op = match &node.op {
            Op::Dequantize { dtype } => Op::Dequantize {
                dtype: narrow(*dtype),
            },
            Op::Cast { dtype } => Op::Cast {
                dtype: narrow(*dtype),
            },
            other => other.clone(),
        };
        let inputs = node
            .inputs
            .iter()
            .map(|v| ids[v.index()])
            .collect::<Option<Vec<_>>>()?;
        let first = &graph.value(node.outputs[0]).desc;
        let out = op.needs_output_type().then(|| OutType {
            dtype: narrow(first.dtype),
            quant: first.quant.clone(),
        });
        let outs = b.add_node(&node.name, op, &inputs, out).ok()?;
        for (&old, new) in node.outputs.iter().zip(outs) {
            ids[old.index()] = Some(new);
        }
    }
    for &v in graph.outputs() {
        b.output(ids[v.index()]?).ok()?;
    }
    b.build().ok()
}

/// Largest K for which every i8 × i8 sum fits an i32 without saturating (|a·b| ≤ 2^14).
const MAX_K: usize = (i32::MAX as usize) >> 14;

/// A graph that is one integer MatMul of its two inputs into its one output.
#[derive(Clone, Copy, Debug)]
pub struct IntMatMul {
    batches: usize,
    m: usize,
    k: usize,
    n: usize,
    transpose_a: bool,
    transpose_b: bool,
    /// Output type and, for 8-bit outputs, the accumulator and output quantization.
    output: Output,
}

#[derive(Clone, Copy, Debug)]
enum Output {
    I32,
    Requantized {
        dtype: DType,
        acc_scale: f32,
        out: QuantParams,
    },
}

/// Per-tensor parameters with a zero point of 0, the only form the fast path takes.
fn symmetric(desc: &TensorDesc) -> Option<QuantParams> {
    match desc.quant {
        Quantization::PerTensor(p) if p.zero_point == 0 => Some(p),
        _ => None,
    }
}

impl IntMatMul {
    /// The fast path's view of `graph`, if it is exactly one i8 × i8 MatMul it can run.
    fn of(graph: &Graph) -> Option<Self> {
        let [node] = graph.nodes() else { return None };
        let Op::MatMul {
            transpose_a,
            transpose_b,
        } = node.op
        else {
            return None;
        };
        if node.inputs.as_slice() != graph.inputs() || node.outputs.as_slice() != graph.outputs() {
            return None;
        }
        let (a, b) = (
            &graph.value(node.inputs[0]).desc,
            &graph.value(node.inputs[1]).desc,
        );
        let out = &graph.value(node.outputs[0]).desc;
        if a.dtype != DType::I8 || b.dtype != DType::I8 {
            return None;
        }
        let (pa, pb) = (symmetric(a)?, symmetric(b)?);
        let r = out.rank();
        if r < 2 || a.rank() != r || b.rank() != r || a.shape[..r - 2] != out.shape[..r - 2] {
            return None;
        }
        if b.shape[..r - 2] != out.shape[..r - 2] {
            return None;
        }
        let k = if transpose_a {
            a.shape[r - 2]
        } else {
            a.shape[r - 1]
        };
        if k > MAX_K {
            return None;
        }
        let output = match (out.dtype, &out.quant) {
            (DType::I32, Quantization::None) => Output::I32,
            (DType::I8 | DType::U8, Quantization::PerTensor(p)) => Output::Requantized {
                dtype: out.dtype,
                acc_scale: pa.scale * pb.scale,
                out: *p,
            },
            _ => return None,
        };
        Some(IntMatMul {
            batches: out.shape[..r - 2].iter().product(),
            m: out.shape[r - 2],
            k,
            n: out.shape[r - 1],
            transpose_a,
            transpose_b,
            output,
        })
    }

    /// Computes the output bytes from the input bytes (sizes checked by `check_io`).
    fn run(&self, a: &[u8], b: &[u8], out: &mut [u8], rules: &dyn IntegerRules) {
        let (m, k, n) = (self.m, self.k, self.n);
        // Rows of A (m × k) and of Bᵀ (n × k), so every output is one contiguous dot product.
        let mut rows_a = vec![0i8; m * k];
        let mut rows_b = vec![0i8; n * k];
        let mut acc = vec![0i32; m * n];
        for batch in 0..self.batches {
            let a = &a[batch * m * k..(batch + 1) * m * k];
            let b = &b[batch * k * n..(batch + 1) * k * n];
            gather_rows(a, &mut rows_a, m, k, self.transpose_a);
            gather_rows(b, &mut rows_b, n, k, !self.transpose_b);
            for (i, acc_row) in acc.chunks_exact_mut(n).enumerate() {
                let x = &rows_a[i * k..(i + 1) * k];
                for (j, slot) in acc_row.iter_mut().enumerate() {
                    *slot = dot_i8(x, &rows_b[j * k..(j + 1) * k]);
                }
            }
            self.store(&acc, &mut out[batch * m * n * self.output_bytes()..], rules);
        }
    }

    fn output_bytes(&self) -> usize {
        match self.output {
            Output::I32 => 4,
            Output::Requantized { .. } => 1,
        }
    }

    /// Writes accumulators as the output type, requantized by `rules`.
    fn store(&self, acc: &[i32], out: &mut [u8], rules: &dyn IntegerRules) {
        match self.output {
            Output::I32 => {
                for (dst, v) in out.chunks_exact_mut(4).zip(acc) {
                    dst.copy_from_slice(&v.to_ne_bytes());
                }
            }
            Output::Requantized {
                dtype,
                acc_scale,
                out: to,
            } => {
                let q = rules.requantize_accumulators(acc, acc_scale, to, dtype);
                for (dst, &q) in out.iter_mut().zip(&q) {
                    *dst = if dtype == DType::I8 {
                        (q as i8) as u8
                    } else {
                        q as u8
                    };
                }
            }
        }
    }
}

/// `src` as `rows` rows of `k` values: copied when already row-major (`transposed` false),
/// transposed from a k × rows layout otherwise.
fn gather_rows(src: &[u8], dst: &mut [i8], rows: usize, k: usize, transposed: bool) {
    if transposed {
        for (p, line) in src.chunks_exact(rows).enumerate() {
            for (r, &v) in line.iter().enumerate() {
                dst[r * k + p] = v as i8;
            }
        }
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s as i8;
        }
    }
}
