//! What `soc fit` measures of an NPU's numerics and refusals, by running probe graphs on it.
//!
//! The probe runs on any [`NpuBackend`] (`soc fit` gives it QNN with the fitted socModel
//! configured; the tests give it simulators), and decides from the outputs alone:
//!
//! - **Integer rounding** ([`RuleCounts`]): quantized MatMuls of every accumulator a·b
//!   (a ∈ [−128, 127], b ∈ [1, 127], K = 1) at the ten output scales of
//!   [`REQUANTIZE_SCALES`], and a Cast of halves and fractions from f32 to INT32. Each output is
//!   compared with what the golden interpreter computes under each rule of
//!   [`IntegerRounding`]. The rule that equals every output is the NPU's; where none does, the
//!   nearest (fewest differing outputs) is written and the source says so, with the counts.
//! - **f32 computed in f16** ([`FloatCounts`]): an f32 MatMul and Add whose inputs are small
//!   integers plus δ < half an f16 step, so f16 drops every δ and its results are exact
//!   integers while the f32 results keep the δ: rounding the inputs to f16 moves every output
//!   by far more than any f32 kernel's accumulation error, and an f16 kernel has no rounding of
//!   its own to add. Each output is compared with the f32 reference (the golden interpreter)
//!   and the f16 reference (the simulator's f16 twin of the graph, what `f32_as_f16 = true`
//!   computes). Decision rule: an output whose references lie at least [`INFORMATIVE_FACTOR`]
//!   (8) times the probe's kernel tolerance (2⁻²⁰ relative) apart is *informative*; it is
//!   *like f16* if it lies within a quarter of that gap ([`GAP_MARGIN`]) of the f16 reference,
//!   *like f32* if within a quarter of the gap of the f32 reference, else neither.
//!   `f32_as_f16` is true when more outputs are like f16 than like f32, and decided when every
//!   informative output is like the winner. Softmax is not used: HTP's f16 Softmax kernel
//!   approximates (on socModel 52 its outputs are several percent from both references at
//!   logits from 0 to 600), so it would blur the decision without informing it.
//! - **Refusals** ([`LimitProbe`]): `check_support` on graphs in the form each `[limits]` key
//!   names (for `float_ops`: f16 MatMul, Softmax, Mul, Add, Transpose and Reshape, f32
//!   MatMul, Softmax, Mul and Add, and a Cast from f32 to f16; f32 Transpose and Reshape, which
//!   it leaves alone, are probed to show where it stops). A key is set to false when the NPU
//!   refuses every graph of it; each graph has a control (the same op in an accepted form)
//!   whose refusal the source notes, as it means the whole op is refused.

use crate::error::Result;
use crate::fit::profile_edit::{Plain, Section};
use crate::npu::functional::Computation;
use crate::npu::numerics::IntegerRounding;
use crate::npu::profile::NpuNumerics;
use half::f16;
use shadowattn_cpu::reference::graph as interpreter;
use shadowattn_hal::{
    DType, Graph, GraphBuilder, HalError, HostTensor, NpuBackend, OutType, QuantParams,
    Quantization, TensorDesc,
};

/// Output scales of the requantization probe (input scales 0.05 and 0.04, so multipliers
/// m = 0.002 / scale from 0.26 down to 1.5·10⁻⁴, both signs of HTP's pre-shift).
pub const REQUANTIZE_SCALES: [f32; 10] = [
    0.0077, 0.013, 0.029, 0.071, 0.16, 0.29, 0.83, 2.3, 5.9, 13.1,
];

/// Scale of the requantization probe's first input.
pub const REQUANTIZE_A_SCALE: f32 = 0.05;
/// Scale of the requantization probe's second input.
pub const REQUANTIZE_B_SCALE: f32 = 0.04;

/// An output is informative when its f32 and f16 references differ by at least this many
/// times the probe's kernel tolerance ([`Probe::kernel_tolerance`]) of the larger reference.
pub const INFORMATIVE_FACTOR: f64 = 8.0;

/// Kernel tolerance of probes whose f16 results are exact (integer-valued f16 sums): an f32
/// kernel's accumulation error, 2⁻²⁰ relative.
const EXACT_F16_TOLERANCE: f64 = 1.0 / 1_048_576.0;

/// An output is like a reference when it lies within this fraction of the references' gap.
pub const GAP_MARGIN: f64 = 0.25;

/// A probe graph with its inputs.
#[derive(Clone, Debug)]
pub struct Probe {
    /// What it probes (`i8 MatMul requantized at scale 0.29`).
    pub label: String,
    /// The graph (one output).
    pub graph: Graph,
    /// Its inputs.
    pub inputs: Vec<HostTensor>,
    /// Relative error an f32 or f16 kernel may add beyond its reference (float probes).
    pub kernel_tolerance: f64,
}

impl Probe {
    /// The golden interpreter's output under `rules`, as exact values.
    pub fn reference(&self, rounding: IntegerRounding) -> Result<Vec<f64>> {
        let views: Vec<_> = self.inputs.iter().map(|t| t.view()).collect();
        let out = interpreter::run_with(&self.graph, &views, rounding.rules())?;
        Ok(values(&out[0]))
    }

    /// The output of the graph computed as an NPU with `numerics` computes it.
    pub fn computed_as(&self, numerics: &NpuNumerics) -> Result<Vec<f64>> {
        let views: Vec<_> = self.inputs.iter().map(|t| t.view()).collect();
        let mut out = HostTensor::zeros(
            self.graph
                .output_descs()
                .next()
                .cloned()
                .unwrap_or_else(|| TensorDesc::new(DType::F32, [0usize; 0])),
        )?;
        Computation::of(&self.graph, numerics).execute(
            &self.graph,
            &views,
            &mut [out.view_mut()],
        )?;
        Ok(values(&out))
    }

    /// Runs the probe on `npu`: its output, or why `npu` refuses the graph.
    pub fn run_on(&self, npu: &dyn NpuBackend) -> Result<Ran> {
        if let Err(e) = npu.check_support(&self.graph) {
            return refused_or(e);
        }
        let mut compiled = match npu.compile(&self.graph) {
            Ok(c) => c,
            Err(e) => return refused_or(e),
        };
        let views: Vec<_> = self.inputs.iter().map(|t| t.view()).collect();
        let desc = self.graph.output_descs().next().cloned();
        let mut out = HostTensor::zeros(desc.unwrap_or_else(|| TensorDesc::new(DType::F32, [0])))?;
        compiled.execute(&views, &mut [out.view_mut()])?;
        Ok(Ran::Output(values(&out)))
    }
}

fn refused_or(e: HalError) -> Result<Ran> {
    match e {
        HalError::Unsupported { .. } => Ok(Ran::Refused(e.to_string())),
        other => Err(other.into()),
    }
}

/// What running a probe gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Ran {
    /// The output's values.
    Output(Vec<f64>),
    /// The NPU refused the graph (its message).
    Refused(String),
}

fn values(t: &HostTensor) -> Vec<f64> {
    interpreter::decode(t.bytes(), t.desc().dtype)
}

fn quantized(dtype: DType, shape: &[usize], scale: f32) -> TensorDesc {
    TensorDesc::new(dtype, shape.to_vec()).with_quant(Quantization::per_tensor(scale, 0))
}

/// The requantization probe at `out_scale`: an i8 [256, 1] × [1, 127] MatMul of every a ∈
/// [−128, 127] by every b ∈ [1, 127] (32,512 accumulators a·b), requantized to i8.
pub fn requantize_probe(out_scale: f32) -> Result<Probe> {
    let a_desc = quantized(DType::I8, &[1, 1, 256, 1], REQUANTIZE_A_SCALE);
    let b_desc = quantized(DType::I8, &[1, 1, 1, 127], REQUANTIZE_B_SCALE);
    let a: Vec<i8> = (-128..=127).collect();
    let b: Vec<i8> = (1..=127).collect();
    let mut g = GraphBuilder::new("requantize_sweep");
    let x = g.input("a", a_desc.clone())?;
    let y = g.input("b", b_desc.clone())?;
    let out = OutType::quantized(DType::I8, QuantParams::symmetric(out_scale));
    let mm = g.matmul("mm", x, y, false, false, out)?;
    g.output(mm)?;
    Ok(Probe {
        label: format!("i8 MatMul requantized at output scale {out_scale}"),
        graph: g.build()?,
        inputs: vec![
            HostTensor::from_slice(a_desc, &a)?,
            HostTensor::from_slice(b_desc, &b)?,
        ],
        kernel_tolerance: 0.0,
    })
}

/// Values of the Cast probe: halves both ways and fractions, all exact in f16.
const CAST_VALUES: [f32; 16] = [
    2.5, -2.5, -3.75, 0.875, 1.5, -1.5, 0.5, -0.5, 3.25, -3.25, 7.75, -7.25, 100.5, -100.5, 1.25,
    -0.75,
];

/// The Cast probe: f32 halves and fractions to INT32 (golden rounds half away from zero,
/// HTP truncates).
pub fn cast_probe() -> Result<Probe> {
    let desc = TensorDesc::new(DType::F32, [1, 1, 1, CAST_VALUES.len()]);
    let mut g = GraphBuilder::new("cast_probe");
    let x = g.input("x", desc.clone())?;
    let c = g.cast("cast", x, DType::I32)?;
    g.output(c)?;
    Ok(Probe {
        label: "Cast f32 to i32".into(),
        graph: g.build()?,
        inputs: vec![HostTensor::from_slice(desc, &CAST_VALUES)?],
        kernel_tolerance: 0.0,
    })
}

/// The integer-rounding probes: [`requantize_probe`] at every scale, then [`cast_probe`].
pub fn rounding_probes() -> Result<Vec<Probe>> {
    let mut probes = REQUANTIZE_SCALES
        .iter()
        .map(|&s| requantize_probe(s))
        .collect::<Result<Vec<_>>>()?;
    probes.push(cast_probe()?);
    Ok(probes)
}

/// A value of `int + δ` with δ ∈ [8·2⁻¹⁶, 15·2⁻¹⁶], below half the f16 step around any such
/// value for 1 ≤ |int| ≤ 3 (at least 2⁻¹², just above −1): f16 rounds it to `int`.
fn off_f16(int: i32, i: usize) -> f32 {
    int as f32 + (8 + (i * 7) % 8) as f32 / 65536.0
}

/// An integer in ±[1, 3] from `i` (never 0, so δ always rounds away).
fn small_int(i: usize) -> i32 {
    let v = (i * 5 + 3) % 6;
    if v < 3 {
        v as i32 + 1
    } else {
        -(v as i32 - 2)
    }
}

/// The f32 probes, or their f16 twins with `dtype = F16` (refusal probes): MatMul and Add of
/// integers in ±[1, 3] plus δ ∈ [2⁻¹³, 2⁻¹²) (f16 drops δ: its results are exact integers,
/// while every f32 result keeps a sum of δs).
pub fn float_probes(dtype: DType) -> Result<Vec<Probe>> {
    let t = |shape: &[usize]| TensorDesc::new(dtype, shape.to_vec());
    let tensor = |desc: TensorDesc, v: Vec<f32>| -> Result<HostTensor> {
        Ok(match dtype {
            DType::F16 => {
                let h: Vec<f16> = v.into_iter().map(f16::from_f32).collect();
                HostTensor::from_slice(desc, &h)?
            }
            _ => HostTensor::from_slice(desc, &v)?,
        })
    };
    let (m, k, n) = (16, 16, 16);
    let mut probes = Vec::new();

    let mut g = GraphBuilder::new("f32_matmul_probe");
    let (a_desc, b_desc) = (t(&[1, 1, m, k]), t(&[1, 1, k, n]));
    let a = g.input("a", a_desc.clone())?;
    let b = g.input("b", b_desc.clone())?;
    let mm = g.matmul("mm", a, b, false, false, OutType::plain(dtype))?;
    g.output(mm)?;
    let a_values = (0..m * k).map(|i| off_f16(small_int(i), i)).collect();
    let b_values = (0..k * n).map(|i| (1 + (i / 3) % 2) as f32).collect();
    probes.push(Probe {
        label: format!("{dtype} MatMul {m}x{k}x{n}"),
        graph: g.build()?,
        inputs: vec![tensor(a_desc, a_values)?, tensor(b_desc, b_values)?],
        kernel_tolerance: EXACT_F16_TOLERANCE,
    });

    let len = 64;
    let mut g = GraphBuilder::new("f32_add_probe");
    let d = t(&[1, 1, 1, len]);
    let x = g.input("x", d.clone())?;
    let y = g.input("y", d.clone())?;
    let sum = g.add("add", x, y, OutType::plain(dtype))?;
    g.output(sum)?;
    let x_values = (0..len).map(|i| off_f16(small_int(i), i)).collect();
    let y_values = (0..len).map(|i| off_f16(small_int(i + 7), i + 3)).collect();
    probes.push(Probe {
        label: format!("{dtype} Add {len}"),
        graph: g.build()?,
        inputs: vec![tensor(d.clone(), x_values)?, tensor(d, y_values)?],
        kernel_tolerance: EXACT_F16_TOLERANCE,
    });
    Ok(probes)
}

/// How many integer outputs differ from each rounding rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Outputs compared.
    pub outputs: usize,
    /// Of those, how many differ from the golden rule's.
    pub golden_differs: usize,
    /// Of those, how many differ from the htp-v73 rule's.
    pub htp_v73_differs: usize,
}

impl RuleCounts {
    /// The counts of `measured` against each rule's expected outputs.
    pub fn of(measured: &[f64], golden: &[f64], htp_v73: &[f64]) -> Self {
        let differs = |expected: &[f64]| {
            measured
                .iter()
                .zip(expected)
                .filter(|(a, b)| a != b)
                .count()
                + measured.len().abs_diff(expected.len())
        };
        RuleCounts {
            outputs: measured.len(),
            golden_differs: differs(golden),
            htp_v73_differs: differs(htp_v73),
        }
    }

    /// The sum of two counts.
    pub fn plus(self, other: RuleCounts) -> RuleCounts {
        RuleCounts {
            outputs: self.outputs + other.outputs,
            golden_differs: self.golden_differs + other.golden_differs,
            htp_v73_differs: self.htp_v73_differs + other.htp_v73_differs,
        }
    }

    /// The nearest rule (fewest differing outputs; golden on a tie) and whether it equals
    /// every output.
    pub fn nearest(&self) -> (IntegerRounding, bool) {
        if self.htp_v73_differs < self.golden_differs {
            (IntegerRounding::HtpV73, self.htp_v73_differs == 0)
        } else {
            (IntegerRounding::Golden, self.golden_differs == 0)
        }
    }
}

/// How float outputs compare with the f32 and f16 references.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FloatCounts {
    /// Outputs compared.
    pub outputs: usize,
    /// Outputs whose references lie at least [`INFORMATIVE_FACTOR`] kernel tolerances apart.
    pub informative: usize,
    /// Informative outputs within [`GAP_MARGIN`] of the gap of the f16 reference.
    pub like_f16: usize,
    /// Informative outputs within [`GAP_MARGIN`] of the gap of the f32 reference.
    pub like_f32: usize,
    /// Largest |output − f32 reference| relative to the f32 reference's largest magnitude.
    pub error_vs_f32: f64,
    /// Largest |output − f16 reference| relative to the same.
    pub error_vs_f16: f64,
}

impl FloatCounts {
    /// The counts of `measured` against the f32 and f16 references of a probe whose kernels
    /// may add `tolerance` relative error ([`Probe::kernel_tolerance`]).
    pub fn of(measured: &[f64], f32_ref: &[f64], f16_ref: &[f64], tolerance: f64) -> Self {
        let scale = f32_ref
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()))
            .max(1e-30);
        let mut c = FloatCounts {
            outputs: measured.len(),
            ..FloatCounts::default()
        };
        for ((&y, &r32), &r16) in measured.iter().zip(f32_ref).zip(f16_ref) {
            let (e32, e16) = ((y - r32).abs(), (y - r16).abs());
            // NaN errors count as the largest possible.
            c.error_vs_f32 = c
                .error_vs_f32
                .max(if e32.is_nan() { f64::INFINITY } else { e32 });
            c.error_vs_f16 = c
                .error_vs_f16
                .max(if e16.is_nan() { f64::INFINITY } else { e16 });
            let gap = (r32 - r16).abs();
            if gap == 0.0 || gap < INFORMATIVE_FACTOR * tolerance * r32.abs().max(r16.abs()) {
                continue;
            }
            c.informative += 1;
            if e16 <= GAP_MARGIN * gap {
                c.like_f16 += 1;
            } else if e32 <= GAP_MARGIN * gap {
                c.like_f32 += 1;
            }
        }
        c.error_vs_f32 /= scale;
        c.error_vs_f16 /= scale;
        c
    }

    /// The sum of two counts (largest errors of either).
    pub fn plus(self, other: FloatCounts) -> FloatCounts {
        FloatCounts {
            outputs: self.outputs + other.outputs,
            informative: self.informative + other.informative,
            like_f16: self.like_f16 + other.like_f16,
            like_f32: self.like_f32 + other.like_f32,
            error_vs_f32: self.error_vs_f32.max(other.error_vs_f32),
            error_vs_f16: self.error_vs_f16.max(other.error_vs_f16),
        }
    }

    /// Whether f32 computes as f16 (more outputs like f16 than like f32) and whether every
    /// informative output agrees.
    pub fn f32_as_f16(&self) -> (bool, bool) {
        let as_f16 = self.like_f16 > self.like_f32;
        let winner = if as_f16 { self.like_f16 } else { self.like_f32 };
        (as_f16, self.informative > 0 && winner == self.informative)
    }
}

/// One graph of a `[limits]` key's probe, and a control graph that differs only in the form
/// the key names.
#[derive(Clone, Debug)]
pub struct LimitProbe {
    /// The `[limits]` key.
    pub key: &'static str,
    /// A graph in the form the key names.
    pub probe: Probe,
    /// The same op in a form the NPUs the simulator models accept.
    pub control: Probe,
    /// Whether `key = false` refuses this graph; false for a graph the limit leaves alone,
    /// probed to show where it stops (f32 Transpose and Reshape for `float_ops`).
    pub in_limit: bool,
}

fn single(label: &str, graph: Graph) -> Probe {
    Probe {
        label: label.into(),
        inputs: graph
            .input_descs()
            .map(|d| HostTensor::zeros(d.clone()))
            .collect::<std::result::Result<_, _>>()
            .unwrap_or_default(),
        graph,
        kernel_tolerance: 0.0,
    }
}

fn matmul_graph(input: DType, out: OutType) -> Result<Graph> {
    let mut g = GraphBuilder::new("limit_matmul");
    let q = |shape: &[usize]| match input {
        DType::F32 | DType::F16 => TensorDesc::new(input, shape.to_vec()),
        _ => quantized(input, shape, 0.05),
    };
    let a = g.input("a", q(&[1, 1, 4, 8]))?;
    let b = g.input("b", q(&[1, 1, 4, 8]))?;
    let y = g.matmul("mm", a, b, false, true, out)?;
    g.output(y)?;
    Ok(g.build()?)
}

fn requantize_graph(input: DType) -> Result<Graph> {
    let mut g = GraphBuilder::new("limit_requantize");
    let x = g.input("x", quantized(input, &[2, 50], 1e-3))?;
    let y = g.requantize(
        "rq",
        x,
        OutType::quantized(DType::I8, QuantParams::symmetric(0.02)),
    )?;
    g.output(y)?;
    Ok(g.build()?)
}

fn softmax_graph(dtype: DType, axis: usize) -> Result<Graph> {
    let mut g = GraphBuilder::new("limit_softmax");
    let x = g.input("x", TensorDesc::new(dtype, [2, 5, 3]))?;
    let y = g.softmax("softmax", x, axis, 1.0)?;
    g.output(y)?;
    Ok(g.build()?)
}

fn elementwise_graph(dtype: DType, mul: bool) -> Result<Graph> {
    let mut g = GraphBuilder::new("limit_elementwise");
    let d = TensorDesc::new(dtype, [1, 1, 4, 8]);
    let x = g.input("x", d.clone())?;
    let y = g.input("y", d)?;
    let z = if mul {
        g.mul("mul", x, y, OutType::plain(dtype))?
    } else {
        g.add("add", x, y, OutType::plain(dtype))?
    };
    g.output(z)?;
    Ok(g.build()?)
}

/// A Transpose, or with `reshape` a Reshape, of a [1, 1, 4, 8] tensor.
fn transpose_graph(dtype: DType, reshape: bool) -> Result<Graph> {
    let mut g = GraphBuilder::new("limit_transpose");
    let x = g.input("x", TensorDesc::new(dtype, [1, 1, 4, 8]))?;
    let y = if reshape {
        g.reshape("r", x, &[1, 4, 8])?
    } else {
        g.transpose("t", x, &[0, 1, 3, 2])?
    };
    g.output(y)?;
    Ok(g.build()?)
}

fn cast_graph(from: DType, to: DType) -> Result<Graph> {
    let mut g = GraphBuilder::new("limit_cast");
    let x = g.input("x", TensorDesc::new(from, [1, 1, 4, 8]))?;
    let y = g.cast("c", x, to)?;
    g.output(y)?;
    Ok(g.build()?)
}

/// The probes of every `[limits]` key.
pub fn limit_probes() -> Result<Vec<LimitProbe>> {
    let i8_out = || OutType::quantized(DType::I8, QuantParams::symmetric(0.5));
    let i8_matmul = || -> Result<Probe> {
        Ok(single(
            "i8 MatMul to i8",
            matmul_graph(DType::I8, i8_out())?,
        ))
    };
    let mut probes = vec![
        LimitProbe {
            key: "int32_matmul_output",
            probe: single(
                "i8 MatMul to an INT32 output",
                matmul_graph(DType::I8, OutType::plain(DType::I32))?,
            ),
            control: i8_matmul()?,
            in_limit: true,
        },
        LimitProbe {
            key: "requantize_from_int32",
            probe: single("Requantize i32 to i8", requantize_graph(DType::I32)?),
            control: single("Requantize i16 to i8", requantize_graph(DType::I16)?),
            in_limit: true,
        },
        LimitProbe {
            key: "softmax_any_axis",
            probe: single(
                "f32 Softmax over axis 1 of 3",
                softmax_graph(DType::F32, 1)?,
            ),
            control: single(
                "f32 Softmax over the last axis",
                softmax_graph(DType::F32, 2)?,
            ),
            in_limit: true,
        },
    ];
    let mut float_ops = Vec::new();
    for dtype in [DType::F16, DType::F32] {
        for (label, graph) in [
            ("MatMul", matmul_graph(dtype, OutType::plain(dtype))?),
            ("Softmax", softmax_graph(dtype, 2)?),
            ("Mul", elementwise_graph(dtype, true)?),
            ("Add", elementwise_graph(dtype, false)?),
            ("Transpose", transpose_graph(dtype, false)?),
            ("Reshape", transpose_graph(dtype, true)?),
        ] {
            let moves_f32 = dtype == DType::F32 && matches!(label, "Transpose" | "Reshape");
            float_ops.push((format!("{dtype} {label}"), graph, !moves_f32));
        }
    }
    float_ops.push((
        "Cast f32 to f16".into(),
        cast_graph(DType::F32, DType::F16)?,
        true,
    ));
    for (label, graph, in_limit) in float_ops {
        probes.push(LimitProbe {
            key: "float_ops",
            probe: single(&label, graph),
            control: i8_matmul()?,
            in_limit,
        });
    }
    Ok(probes)
}

/// What one limit probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitFinding {
    /// The `[limits]` key.
    pub key: &'static str,
    /// The probe graph's label.
    pub label: String,
    /// Why the NPU refused the probe graph, if it did.
    pub refused: Option<String>,
    /// Why the NPU refused the control graph, if it did (then it refuses the op, not only
    /// the form).
    pub control_refused: Option<String>,
    /// The control graph's label.
    pub control_label: String,
    /// Whether `key = false` refuses this graph ([`LimitProbe::in_limit`]).
    pub in_limit: bool,
}

/// Everything a probe of an NPU measured.
#[derive(Clone, Debug)]
pub struct NumericsProbe {
    /// Per rounding probe: its label and counts, or why it was refused.
    pub rounding: Vec<(String, std::result::Result<RuleCounts, String>)>,
    /// Per f32 probe: its label and counts, or why it was refused.
    pub float: Vec<(String, std::result::Result<FloatCounts, String>)>,
    /// Per limit probe.
    pub limits: Vec<LimitFinding>,
}

/// Runs every probe on `npu`.
pub fn probe(npu: &dyn NpuBackend) -> Result<NumericsProbe> {
    let mut rounding = Vec::new();
    for p in rounding_probes()? {
        let counts = match p.run_on(npu)? {
            Ran::Output(y) => Ok(RuleCounts::of(
                &y,
                &p.reference(IntegerRounding::Golden)?,
                &p.reference(IntegerRounding::HtpV73)?,
            )),
            Ran::Refused(why) => Err(why),
        };
        rounding.push((p.label, counts));
    }
    let mut float = Vec::new();
    let as_f16 = NpuNumerics {
        f32_as_f16: true,
        ..NpuNumerics::default()
    };
    for p in float_probes(DType::F32)? {
        let counts = match p.run_on(npu)? {
            Ran::Output(y) => Ok(FloatCounts::of(
                &y,
                &p.reference(IntegerRounding::Golden)?,
                &p.computed_as(&as_f16)?,
                p.kernel_tolerance,
            )),
            Ran::Refused(why) => Err(why),
        };
        float.push((p.label, counts));
    }
    let mut limits = Vec::new();
    for l in limit_probes()? {
        let refusal = |p: &Probe| npu.check_support(&p.graph).err().map(|e| e.to_string());
        limits.push(LimitFinding {
            key: l.key,
            label: l.probe.label.clone(),
            refused: refusal(&l.probe),
            control_refused: refusal(&l.control),
            control_label: l.control.label.clone(),
            in_limit: l.in_limit,
        });
    }
    Ok(NumericsProbe {
        rounding,
        float,
        limits,
    })
}

/// What the probe decides for a profile's `[numerics]` and `[limits]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `[numerics] f32_as_f16`.
    pub f32_as_f16: bool,
    /// `[numerics] integer_rounding`.
    pub integer_rounding: IntegerRounding,
    /// `[numerics] source`.
    pub numerics_source: String,
    /// Every `[limits]` key with whether the NPU accepts it.
    pub limits: Vec<(&'static str, bool)>,
    /// `[limits] source`.
    pub limits_source: String,
}

impl Decision {
    /// The `[limits]` keys the NPU refuses, or `none`.
    pub fn refused_limits(&self) -> String {
        let refused: Vec<&str> = self
            .limits
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(k, _)| *k)
            .collect();
        if refused.is_empty() {
            "none".into()
        } else {
            refused.join(", ")
        }
    }
}

/// The `[numerics] integer_rounding` spelling of a rule.
pub fn rule_name(r: IntegerRounding) -> &'static str {
    match r {
        IntegerRounding::Golden => "golden",
        IntegerRounding::HtpV73 => "htp-v73",
    }
}

/// The telling part of a refusal: what the library logged about it, else the whole message.
fn short_reason(why: &str) -> &str {
    why.rsplit_once("; library log: ")
        .map_or(why, |(_, log)| log)
}

/// `n` with thousands separators.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl NumericsProbe {
    /// The summed rounding counts of the probes that ran.
    pub fn rounding_counts(&self) -> RuleCounts {
        self.rounding
            .iter()
            .filter_map(|(_, c)| c.as_ref().ok())
            .fold(RuleCounts::default(), |a, &b| a.plus(b))
    }

    /// The summed float counts of the probes that ran.
    pub fn float_counts(&self) -> FloatCounts {
        self.float
            .iter()
            .filter_map(|(_, c)| c.as_ref().ok())
            .fold(FloatCounts::default(), |a, &b| a.plus(b))
    }

    /// The decision; `what` names what was probed (`libQnnHtp.so … socModel 62`).
    pub fn decide(&self, what: &str) -> Decision {
        let mut parts = Vec::new();
        // Integer rounding.
        let all = self.rounding_counts();
        let (rule, exact) = all.nearest();
        let (requant, cast): (Vec<_>, Vec<_>) = self
            .rounding
            .iter()
            .partition(|(label, _)| label.contains("MatMul"));
        let sum = |v: &[&(String, std::result::Result<RuleCounts, String>)]| {
            v.iter()
                .filter_map(|(_, c)| c.as_ref().ok())
                .fold(RuleCounts::default(), |a, &b| a.plus(b))
        };
        let describe = |c: RuleCounts| {
            format!(
                "golden differs on {}, htp-v73 on {} of {}",
                thousands(c.golden_differs),
                thousands(c.htp_v73_differs),
                thousands(c.outputs)
            )
        };
        let refused: Vec<String> = self
            .rounding
            .iter()
            .filter_map(|(l, c)| {
                c.as_ref()
                    .err()
                    .map(|why| format!("{l} refused ({})", short_reason(why)))
            })
            .collect();
        let verdict = if all.outputs == 0 {
            "integer rounding not measured (every probe refused): golden".to_string()
        } else if exact {
            format!("integer rounding {}: equals every output", rule_name(rule))
        } else {
            format!(
                "integer rounding {} (nearest; neither rule equals every output)",
                rule_name(rule)
            )
        };
        parts.push(format!(
            "{verdict}: MatMul requantization of every a·b (a in [-128, 127], b in [1, 127]) at {} output scales: {}; Cast f32 to i32 of {} halves and fractions: {}{}",
            requant.iter().filter(|(_, c)| c.is_ok()).count(),
            describe(sum(&requant)),
            CAST_VALUES.len(),
            describe(sum(&cast)),
            if refused.is_empty() { String::new() } else { format!("; {}", refused.join("; ")) }
        ));
        // f32 as f16.
        let f = self.float_counts();
        let (as_f16, decided) = f.f32_as_f16();
        let per_op: Vec<String> = self
            .float
            .iter()
            .map(|(label, c)| match c {
                Ok(c) => format!(
                    "{label}: {} of {} informative outputs like f16, {} like f32, max error {:.1e} vs f32, {:.1e} vs f16",
                    c.like_f16, c.informative, c.like_f32, c.error_vs_f32, c.error_vs_f16
                ),
                Err(why) => format!("{label}: refused ({})", short_reason(why)),
            })
            .collect();
        let f32_as_f16 = as_f16 && f.informative > 0;
        parts.push(format!(
            "f32_as_f16 = {f32_as_f16}{} (an output is like f16 when within {} of the f32–f16 reference gap of the f16 reference, like f32 likewise; informative: references at least {} times 2^-20 relative apart): {}",
            if f.informative == 0 {
                " (not measured: no f32 probe ran)"
            } else if decided {
                ""
            } else {
                " (the majority; the outputs do not all agree)"
            },
            GAP_MARGIN,
            INFORMATIVE_FACTOR,
            per_op.join("; ")
        ));
        let numerics_source = format!("measured: {what}: {}", parts.join("; "));
        // Limits: a key is refused when every graph of it is.
        let mut limits: Vec<(&'static str, bool)> = Vec::new();
        let mut findings = Vec::new();
        for l in &self.limits {
            if limits.iter().any(|(k, _)| *k == l.key) {
                continue;
            }
            let (graphs, outside): (Vec<&LimitFinding>, Vec<&LimitFinding>) = self
                .limits
                .iter()
                .filter(|f| f.key == l.key)
                .partition(|f| f.in_limit);
            let refused: Vec<String> = graphs
                .iter()
                .filter_map(|f| {
                    let why = f.refused.as_deref()?;
                    let control = match &f.control_refused {
                        Some(_) => format!("; its control, {}, is refused too", f.control_label),
                        None => String::new(),
                    };
                    Some(format!("{}: {}{control}", f.label, short_reason(why)))
                })
                .collect();
            let accepted: Vec<&str> = graphs
                .iter()
                .filter(|f| f.refused.is_none())
                .map(|f| f.label.as_str())
                .collect();
            let all_refused = accepted.is_empty();
            limits.push((l.key, !all_refused));
            let mut finding = if all_refused {
                format!("{} = false: refuses {}", l.key, refused.join("; "))
            } else if refused.is_empty() {
                format!("{} = true: accepts {}", l.key, accepted.join(", "))
            } else {
                format!(
                    "{} = true (partly refused): accepts {}; refuses {}",
                    l.key,
                    accepted.join(", "),
                    refused.join("; ")
                )
            };
            if all_refused && !outside.is_empty() {
                let (refused, accepted): (Vec<&LimitFinding>, Vec<&LimitFinding>) =
                    outside.iter().partition(|f| f.refused.is_some());
                let labels = |v: &[&LimitFinding]| {
                    v.iter()
                        .map(|f| f.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if !accepted.is_empty() {
                    finding.push_str(&format!(
                        "; accepts {}, which {} = false leaves alone",
                        labels(&accepted),
                        l.key
                    ));
                }
                if !refused.is_empty() {
                    finding.push_str(&format!(
                        "; also refuses {}, which {} = false leaves alone (the simulator accepts them)",
                        labels(&refused),
                        l.key
                    ));
                }
            }
            findings.push(finding);
        }
        let limits_source = format!("measured: check_support on {what}: {}", findings.join("; "));
        Decision {
            f32_as_f16,
            integer_rounding: if all.outputs == 0 {
                IntegerRounding::Golden
            } else {
                rule
            },
            numerics_source,
            limits,
            limits_source,
        }
    }
}

impl Decision {
    /// The `[limits]` and `[numerics]` tables a fitted profile gets from the probe.
    pub fn sections(&self) -> Vec<Section> {
        let mut limits: Vec<(&'static str, Plain)> = self
            .limits
            .iter()
            .map(|&(k, v)| (k, Plain::Bool(v)))
            .collect();
        limits.push(("source", Plain::Text(self.limits_source.clone())));
        let by = "as `soc fit` probed it (simulator/src/fit/numerics_probe.rs)";
        vec![
            Section {
                table: "limits",
                comment: vec![format!("What its compiler refuses, {by}.")],
                keys: limits,
            },
            Section {
                table: "numerics",
                comment: vec![format!("How it computes, {by}.")],
                keys: vec![
                    ("f32_as_f16", Plain::Bool(self.f32_as_f16)),
                    (
                        "integer_rounding",
                        Plain::Text(rule_name(self.integer_rounding).into()),
                    ),
                    ("source", Plain::Text(self.numerics_source.clone())),
                ],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_outputs(p: &Probe, rule: IntegerRounding) -> Vec<f64> {
        p.reference(rule).unwrap()
    }

    /// The outputs of every rounding probe as `rule` computes them.
    fn rounding_as(rule: IntegerRounding) -> NumericsProbe {
        let rounding = rounding_probes()
            .unwrap()
            .into_iter()
            .map(|p| {
                let y = probe_outputs(&p, rule);
                let c = RuleCounts::of(
                    &y,
                    &probe_outputs(&p, IntegerRounding::Golden),
                    &probe_outputs(&p, IntegerRounding::HtpV73),
                );
                (p.label, Ok(c))
            })
            .collect();
        NumericsProbe {
            rounding,
            float: Vec::new(),
            limits: Vec::new(),
        }
    }

    #[test]
    fn golden_outputs_decide_golden_and_v73_outputs_htp_v73() {
        let golden = rounding_as(IntegerRounding::Golden);
        let c = golden.rounding_counts();
        assert_eq!(c.outputs, 10 * 32_512 + CAST_VALUES.len());
        assert_eq!(c.golden_differs, 0);
        // The probe tells the rules apart on many outputs (requantization and casts).
        assert!(c.htp_v73_differs > 1000, "{c:?}");
        let d = golden.decide("test");
        assert_eq!(d.integer_rounding, IntegerRounding::Golden);
        assert!(d
            .numerics_source
            .contains("integer rounding golden: equals every output"));

        let v73 = rounding_as(IntegerRounding::HtpV73);
        let d = v73.decide("test");
        assert_eq!(d.integer_rounding, IntegerRounding::HtpV73);
        assert_eq!(v73.rounding_counts().htp_v73_differs, 0);
        assert!(d
            .numerics_source
            .starts_with("measured: test: integer rounding htp-v73"));
    }

    #[test]
    fn neither_rule_writes_the_nearest_with_counts() {
        // HTP V73's outputs with some moved by one step: nearest htp-v73, counted.
        let p = requantize_probe(0.29).unwrap();
        let mut y = probe_outputs(&p, IntegerRounding::HtpV73);
        for v in y.iter_mut().step_by(100) {
            *v += 1.0;
        }
        let c = RuleCounts::of(
            &y,
            &probe_outputs(&p, IntegerRounding::Golden),
            &probe_outputs(&p, IntegerRounding::HtpV73),
        );
        assert_eq!(c.htp_v73_differs, 326);
        assert_eq!(c.nearest(), (IntegerRounding::HtpV73, false));
        let probe = NumericsProbe {
            rounding: vec![(p.label, Ok(c))],
            float: Vec::new(),
            limits: Vec::new(),
        };
        let d = probe.decide("x");
        assert!(
            d.numerics_source.contains("nearest; neither rule"),
            "{}",
            d.numerics_source
        );
        assert!(
            d.numerics_source.contains("htp-v73 on 326 of 32,512"),
            "{}",
            d.numerics_source
        );
    }

    fn float_as(numerics: &NpuNumerics) -> FloatCounts {
        float_probes(DType::F32)
            .unwrap()
            .iter()
            .map(|p| {
                FloatCounts::of(
                    &p.computed_as(numerics).unwrap(),
                    &p.reference(IntegerRounding::Golden).unwrap(),
                    &p.computed_as(&NpuNumerics {
                        f32_as_f16: true,
                        ..NpuNumerics::default()
                    })
                    .unwrap(),
                    p.kernel_tolerance,
                )
            })
            .fold(FloatCounts::default(), FloatCounts::plus)
    }

    #[test]
    fn f16_errors_decide_f32_as_f16_and_exact_f32_does_not() {
        let f16 = float_as(&NpuNumerics {
            f32_as_f16: true,
            ..NpuNumerics::default()
        });
        // Nearly every output is informative: the probe's inputs are built for it.
        assert!(f16.informative * 10 >= f16.outputs * 9, "{f16:?}");
        assert_eq!(f16.f32_as_f16(), (true, true), "{f16:?}");
        let f32 = float_as(&NpuNumerics::default());
        assert_eq!(f32.f32_as_f16(), (false, true), "{f32:?}");
        assert_eq!(f32.error_vs_f32, 0.0);
        assert!(f32.error_vs_f16 > 1e-4, "{f32:?}");
    }

    #[test]
    fn outputs_within_the_margin_count_and_halfway_decides_nothing() {
        let p = &float_probes(DType::F32).unwrap()[0];
        let r16 = p
            .computed_as(&NpuNumerics {
                f32_as_f16: true,
                ..NpuNumerics::default()
            })
            .unwrap();
        let r32 = p.reference(IntegerRounding::Golden).unwrap();
        let toward =
            |f: f64| -> Vec<f64> { r16.iter().zip(&r32).map(|(a, b)| a + f * (b - a)).collect() };
        // An f16 kernel a fifth of the gap off the f16 reference: like f16.
        let c = FloatCounts::of(&toward(0.2), &r32, &r16, p.kernel_tolerance);
        assert_eq!(c.f32_as_f16(), (true, true), "{c:?}");
        // An f32 kernel a fifth of the gap off the f32 reference: like f32.
        let c = FloatCounts::of(&toward(0.8), &r32, &r16, p.kernel_tolerance);
        assert_eq!(c.f32_as_f16(), (false, true), "{c:?}");
        // Halfway between the references decides nothing.
        let c = FloatCounts::of(&toward(0.5), &r32, &r16, p.kernel_tolerance);
        assert_eq!((c.like_f16, c.like_f32), (0, 0), "{c:?}");
        assert!(!c.f32_as_f16().1);
    }

    /// The decision of the probe run on a simulator of `profile`.
    fn decided_on(profile: crate::SocProfile) -> Decision {
        let sim = crate::SimBackend::new(profile);
        probe(&sim).unwrap().decide("sim")
    }

    #[test]
    fn a_simulator_probes_as_its_profile_says() {
        // sa8255: htp-v73, f32 as f16, HTP's three limits.
        let sa8255 = crate::SocProfile::builtin("sa8255").unwrap();
        let d = decided_on(sa8255.clone());
        assert_eq!(d.integer_rounding, IntegerRounding::HtpV73);
        assert!(d.f32_as_f16, "{}", d.numerics_source);
        let written: Vec<_> = d.limits.clone();
        assert_eq!(written, sa8255.limits.entries().to_vec());
        assert!(
            d.numerics_source
                .contains("f32 MatMul 16x16x16: 256 of 256 informative outputs like f16"),
            "{}",
            d.numerics_source
        );
        // The same SoC computing as the golden reference, without float arithmetic.
        let mut other = sa8255;
        other.numerics = NpuNumerics::default();
        other.limits.float_ops = false;
        other.limits.softmax_any_axis = true;
        let d = decided_on(other.clone());
        assert_eq!(d.integer_rounding, IntegerRounding::Golden);
        assert!(!d.f32_as_f16);
        assert!(
            d.numerics_source.contains("not measured: no f32 probe ran"),
            "{}",
            d.numerics_source
        );
        // Softmax over axis 1 is refused too: it is a float op.
        other.limits.softmax_any_axis = false;
        assert_eq!(
            d.limits,
            other.limits.entries().to_vec(),
            "{}",
            d.limits_source
        );
        assert!(
            d.limits_source
                .contains("its control, f32 Softmax over the last axis, is refused too"),
            "{}",
            d.limits_source
        );
        // With float arithmetic, f32 computed exactly: f32_as_f16 = false, measured.
        other.limits.float_ops = true;
        let d = decided_on(other);
        assert!(!d.f32_as_f16);
        assert!(
            d.numerics_source
                .contains("f32 Add 64: 0 of 64 informative outputs like f16, 64 like f32"),
            "{}",
            d.numerics_source
        );
    }

    #[test]
    fn the_decision_writes_a_profile_that_says_it() {
        let d = decided_on(crate::SocProfile::builtin("sa8255").unwrap());
        let (_, base) = crate::npu::profile::BUILTIN
            .iter()
            .find(|(n, _)| *n == "sa8255")
            .unwrap();
        let id = crate::fit::profile_edit::Identity {
            name: "probed".into(),
            soc: "Probed".into(),
            npu_arch: "HTP".into(),
            header: vec![],
        };
        let text =
            crate::fit::profile_edit::fitted_profile_text("sa8255", base, &id, &[], &d.sections())
                .unwrap();
        let p = crate::SocProfile::parse("probed", &text).unwrap();
        assert_eq!(p.numerics.source, d.numerics_source);
        assert_eq!(p.limits.source, d.limits_source);
        assert!(
            text.contains("# How it computes, as `soc fit` probed it"),
            "{text}"
        );
        assert!(
            !text.contains("# How HTP computes: f32 graphs in f16."),
            "{text}"
        );
    }

    #[test]
    fn thousands_separates() {
        assert_eq!(thousands(325_136), "325,136");
        assert_eq!(thousands(16), "16");
        assert_eq!(thousands(1_000), "1,000");
    }
}
