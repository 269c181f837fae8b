//! The one list of conformance cases, the same for every backend.

use crate::seeded::seeded_tensor;
use crate::tolerance::{Tiers, Tolerance};
use serde::{Deserialize, Serialize};
use shadowattn_hal::{DType, Graph, GraphBuilder, OutType, QuantParams, Quantization, TensorDesc};
use shadowattn_sparse_attn::calibration::BucketGrid;
use shadowattn_sparse_attn::pilot::{GroupRanking, PilotOutput, PilotSpec, PilotUnit};
use shadowattn_sparse_attn::setup::{PilotKind, FUSED_HEADS};

/// What part of the stack a case checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// One IR op.
    Op,
    /// A pilot graph of the bucket bank.
    Graph,
    /// A whole shadowAttn layer.
    EndToEnd,
    /// Error behaviour.
    Behaviour,
}

impl Group {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Group::Op => "op",
            Group::Graph => "graph",
            Group::EndToEnd => "end_to_end",
            Group::Behaviour => "behaviour",
        }
    }
}

/// What a case runs.
#[derive(Clone, Debug)]
pub enum CaseKind {
    /// Run a graph on seeded inputs and compare each output with the golden reference.
    Graph {
        /// The graph.
        graph: Graph,
        /// Input seed.
        seed: u64,
        /// The tolerance tiers of each graph output.
        tiers: Vec<Tiers>,
    },
    /// One shadowAttn layer on the backend against dense attention.
    EndToEnd {
        /// Fraction of keys kept.
        ratio: f32,
    },
    /// One shadowAttn layer whose launches fuse several units, each unit with its own keys:
    /// every head must attend with its own selection.
    FusedUnits {
        /// Fraction of keys kept.
        ratio: f32,
        /// Which pilot runs (a per-head pilot on an MHA chunk, a group pilot on GQA groups).
        pilot: PilotKind,
    },
    /// Execution with a wrongly sized buffer must be a typed buffer error.
    BufferMismatch,
    /// A graph the backend declares unsupported must be refused by `compile` with a typed error.
    RefusesUnsupported,
}

/// One conformance case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Unique, readable name.
    pub name: String,
    /// Its group.
    pub group: Group,
    /// What it runs.
    pub kind: CaseKind,
}

fn q(dtype: DType, shape: &[usize], scale: f32, zp: i32) -> TensorDesc {
    TensorDesc::new(dtype, shape.to_vec()).with_quant(Quantization::per_tensor(scale, zp))
}

fn graph_case(
    name: &str,
    group: Group,
    build: impl FnOnce(&mut GraphBuilder) -> Vec<(shadowattn_hal::ValueId, Tiers)>,
) -> Case {
    let mut b = GraphBuilder::new(name);
    let outs = build(&mut b);
    let tiers = outs.iter().map(|(_, t)| *t).collect();
    for (v, _) in &outs {
        b.output(*v).expect("case outputs are valid");
    }
    Case {
        name: name.to_string(),
        group,
        kind: CaseKind::Graph {
            graph: b.build().expect("cases are valid graphs"),
            seed: seed_of(name),
            tiers,
        },
    }
}

/// A case's input seed: FNV-1a of its name, so no two cases share inputs by accident (the
/// name's length did before, shared by every case of equal length).
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A K-long dot product of `dtype`. Acceptable: LiteRT's accumulation-aware rule (10·eps·√K,
/// floors 1e-4 / 1e-5 for f32 and 5e-3 / 1e-3 for f16). Strict: what a backend accumulating in
/// f32 meets — 2·eps·√K over f32 (floors 1e-5 / 1e-6), and for f16 outputs one rounding of the
/// result (2 ulps relative: the f32 accumulation error is far below an f16 ulp).
fn dot_product(dtype: DType, k: usize) -> Tiers {
    let (rtol, atol) = if dtype == DType::F16 {
        (5e-3, 1e-3)
    } else {
        (1e-4, 1e-5)
    };
    let acceptable = Tolerance::AccumulationAware {
        ulps: 10.0,
        rtol,
        atol,
        k,
        dtype,
    };
    let strict = if dtype == DType::F16 {
        Tolerance::Relative { ulps: 2.0, dtype }
    } else {
        Tolerance::AccumulationAware {
            ulps: 2.0,
            rtol: 1e-5,
            atol: 1e-6,
            k,
            dtype,
        }
    };
    Tiers { strict, acceptable }
}

/// Softmax probabilities, judged against their own magnitude (their error does not grow with
/// the row length: exp and the division each round once, the sum's relative error is shared by
/// the row). Strict 4 ulps, acceptable 32 ulps of `dtype`, each plus as many least steps.
fn probabilities(dtype: DType) -> Tiers {
    Tiers {
        strict: Tolerance::Relative { ulps: 4.0, dtype },
        acceptable: Tolerance::Relative { ulps: 32.0, dtype },
    }
}

/// Softmax probabilities of logits β·x spanning up to `logit_bound` either side of zero: the
/// rounding of β·x and of its distance to the row maximum moves each exponent by up to
/// 2·`logit_bound`·eps, which is a relative error of the probability (d exp(z) = exp(z)·dz), so
/// both tiers of [`probabilities`] widen by that many ulps. At β = 60 over inputs in [−2, 2) that
/// is 240 ulps: 2.9e-5 relative in f32, far below what a softmax that ignores β (probabilities off
/// by orders of magnitude) or skips the max shift (exp overflows to Inf, the row is NaN) gives.
fn scaled_probabilities(dtype: DType, logit_bound: f64) -> Tiers {
    let widen = 2.0 * logit_bound;
    Tiers {
        strict: Tolerance::Relative {
            ulps: 4.0 + widen,
            dtype,
        },
        acceptable: Tolerance::Relative {
            ulps: 32.0 + widen,
            dtype,
        },
    }
}

/// Quantized outputs: strict is the golden rounding exactly; acceptable is one step off, which
/// another correct rounding of the same real value (fixed-point requantization multipliers,
/// round-half-even against round-half-away) produces.
fn quantized() -> Tiers {
    Tiers {
        strict: Tolerance::Exact,
        acceptable: Tolerance::Lsb(1),
    }
}

/// Every op and dtype, edge shapes and non-default attributes: one case table per op family.
fn op_cases() -> Vec<Case> {
    [
        matmul_cases(),
        quantization_cases(),
        softmax_cases(),
        topk_cases(),
        elementwise_cases(),
        layout_cases(),
        cast_cases(),
    ]
    .concat()
}

/// MatMul: float with transposes and STATIC weights, integer with exact and requantized outputs.
fn matmul_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // MatMul: 1-sized, non-multiples of tile sizes, long K; f32, f16, transposes.
    for dtype in [DType::F32, DType::F16] {
        for (m, k, n, ta, tb) in [
            (1, 1, 1, false, false),
            (65, 33, 17, false, true),
            (4, 1000, 8, true, false),
            (9, 20, 6, true, true),
        ] {
            let name = format!(
                "matmul_{dtype}_{m}x{k}x{n}{}{}",
                if ta { "_ta" } else { "" },
                if tb { "_tb" } else { "" }
            );
            cases.push(graph_case(&name, Group::Op, |b| {
                let a = b
                    .input(
                        "a",
                        TensorDesc::new(dtype, if ta { [1, 1, k, m] } else { [1, 1, m, k] }),
                    )
                    .unwrap();
                let w = b
                    .input(
                        "b",
                        TensorDesc::new(dtype, if tb { [1, 1, n, k] } else { [1, 1, k, n] }),
                    )
                    .unwrap();
                vec![(
                    b.matmul("mm", a, w, ta, tb, OutType::plain(dtype)).unwrap(),
                    dot_product(dtype, k),
                )]
            }));
        }
    }
    // MatMul with a constant (STATIC) second input, as weights are: the data is in the graph.
    for dtype in [DType::F32, DType::F16] {
        let name = format!("matmul_{dtype}_static_b_65x33x17");
        cases.push(graph_case(&name, Group::Op, |b| {
            let a = b
                .input("a", TensorDesc::new(dtype, [1, 1, 65, 33]))
                .unwrap();
            let data = seeded_tensor(&TensorDesc::new(dtype, [1, 1, 33, 17]), seed_of(&name) ^ 1);
            let w = b.constant_tensor("b", &data).unwrap();
            vec![(
                b.matmul("mm", a, w, false, false, OutType::plain(dtype))
                    .unwrap(),
                dot_product(dtype, 33),
            )]
        }));
    }
    let name = "matmul_i8_i8_static_b_17x40x9";
    cases.push(graph_case(name, Group::Op, |b| {
        let a = b
            .input("a", q(DType::I8, &[1, 2, 17, 40], 0.05, 0))
            .unwrap();
        let data = seeded_tensor(&q(DType::I8, &[1, 2, 9, 40], 0.04, 0), seed_of(name) ^ 1);
        let w = b.constant_tensor("b", &data).unwrap();
        let out = OutType::quantized(DType::I8, QuantParams::symmetric(0.05 * 0.04 * 500.0));
        vec![(b.matmul("mm", a, w, false, true, out).unwrap(), quantized())]
    }));
    // Integer MatMul: exact accumulators, requantized 8-bit outputs (±1 LSB).
    for (m, k, n) in [(1, 1, 1), (17, 40, 9)] {
        cases.push(graph_case(
            &format!("matmul_i8_i32_{m}x{k}x{n}"),
            Group::Op,
            |b| {
                let a = b.input("a", q(DType::I8, &[1, 2, m, k], 0.05, 0)).unwrap();
                let w = b.input("b", q(DType::I8, &[1, 2, n, k], 0.04, 0)).unwrap();
                vec![(
                    b.matmul("mm", a, w, false, true, OutType::plain(DType::I32))
                        .unwrap(),
                    Tiers::single(Tolerance::Exact),
                )]
            },
        ));
        cases.push(graph_case(
            &format!("matmul_i8_i8_{m}x{k}x{n}"),
            Group::Op,
            |b| {
                let a = b.input("a", q(DType::I8, &[1, 2, m, k], 0.05, 0)).unwrap();
                let w = b.input("b", q(DType::I8, &[1, 2, n, k], 0.04, 0)).unwrap();
                let out =
                    OutType::quantized(DType::I8, QuantParams::symmetric(0.05 * 0.04 * 500.0));
                vec![(b.matmul("mm", a, w, false, true, out).unwrap(), quantized())]
            },
        ));
        cases.push(graph_case(
            &format!("matmul_u8_u8_{m}x{k}x{n}"),
            Group::Op,
            |b| {
                let a = b
                    .input("a", q(DType::U8, &[1, 1, m, k], 0.05, 128))
                    .unwrap();
                let w = b
                    .input("b", q(DType::U8, &[1, 1, k, n], 0.04, 120))
                    .unwrap();
                let out = OutType::quantized(DType::U8, QuantParams::new(0.05 * 0.04 * 800.0, 128));
                vec![(
                    b.matmul("mm", a, w, false, false, out).unwrap(),
                    quantized(),
                )]
            },
        ));
    }
    // Asymmetric INT8 with nonzero zero points of both signs: a sign slip in an offset
    // translation moves every accumulator by za·Σb or zb·Σa.
    for (label, out) in [
        ("i32", OutType::plain(DType::I32)),
        (
            "i8",
            OutType::quantized(DType::I8, QuantParams::new(0.05 * 0.04 * 600.0, 5)),
        ),
    ] {
        let tiers = if label == "i32" {
            Tiers::single(Tolerance::Exact)
        } else {
            quantized()
        };
        cases.push(graph_case(
            &format!("matmul_i8_asymmetric_zero_points_{label}_17x40x9"),
            Group::Op,
            |b| {
                let a = b
                    .input("a", q(DType::I8, &[1, 2, 17, 40], 0.05, -7))
                    .unwrap();
                let w = b.input("b", q(DType::I8, &[1, 2, 9, 40], 0.04, 3)).unwrap();
                vec![(b.matmul("mm", a, w, false, true, out).unwrap(), tiers)]
            },
        ));
    }
    cases
}

/// Requantize, Quantize and Dequantize.
fn quantization_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(graph_case("requantize_i8_to_u8", Group::Op, |b| {
        let x = b.input("x", q(DType::I8, &[3, 37], 0.1, 0)).unwrap();
        vec![(
            b.requantize(
                "rq",
                x,
                OutType::quantized(DType::U8, QuantParams::new(0.07, 128)),
            )
            .unwrap(),
            quantized(),
        )]
    }));
    cases.push(graph_case("requantize_i32_to_i8", Group::Op, |b| {
        let x = b.input("x", q(DType::I32, &[2, 50], 1e-6, 0)).unwrap();
        vec![(
            b.requantize(
                "rq",
                x,
                OutType::quantized(DType::I8, QuantParams::symmetric(0.02)),
            )
            .unwrap(),
            quantized(),
        )]
    }));
    for (dtype, to) in [(DType::F32, DType::U8), (DType::F16, DType::I8)] {
        cases.push(graph_case(
            &format!("quantize_{dtype}_to_{to}"),
            Group::Op,
            |b| {
                let x = b.input("x", TensorDesc::new(dtype, [1, 129])).unwrap();
                let zp = if to == DType::U8 { 128 } else { 0 };
                vec![(
                    b.quantize("qz", x, OutType::quantized(to, QuantParams::new(0.02, zp)))
                        .unwrap(),
                    quantized(),
                )]
            },
        ));
    }
    cases.push(graph_case(
        "requantize_i8_asymmetric_to_i8_asymmetric",
        Group::Op,
        |b| {
            let x = b.input("x", q(DType::I8, &[3, 37], 0.1, -20)).unwrap();
            vec![(
                b.requantize(
                    "rq",
                    x,
                    OutType::quantized(DType::I8, QuantParams::new(0.13, 9)),
                )
                .unwrap(),
                quantized(),
            )]
        },
    ));
    for (from, to, zp) in [
        (DType::U8, DType::F32, 100),
        (DType::I8, DType::F16, 0),
        (DType::I8, DType::F32, -13),
    ] {
        cases.push(graph_case(
            &if zp < 0 {
                format!("dequantize_{from}_to_{to}_zero_point_minus{}", -zp)
            } else {
                format!("dequantize_{from}_to_{to}")
            },
            Group::Op,
            |b| {
                let x = b.input("x", q(from, &[2, 65], 0.03, zp)).unwrap();
                vec![(
                    b.dequantize("dq", x, to).unwrap(),
                    Tiers::single(Tolerance::Ulp {
                        ulps: 5.0,
                        dtype: to,
                    }),
                )]
            },
        ));
    }
    cases
}

/// Softmax over every axis, long rows, and β ≠ 1: small, and large enough that exp without the
/// max shift overflows (f32 past logits of 88.7, f16 past 11.1; seeded inputs span [−2, 2)).
fn softmax_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (dtype, shape, axis, beta) in [
        (DType::F32, vec![1, 1, 7, 4096], 3, 1.0),
        (DType::F32, vec![2, 5, 3], 1, 1.0),
        (DType::F16, vec![1, 1, 4, 33], 3, 1.0),
        (DType::F32, vec![1, 1], 1, 1.0),
        (DType::F32, vec![1, 1, 7, 300], 3, 60.0),
        (DType::F32, vec![2, 9, 5], 2, 0.37),
        (DType::F16, vec![1, 1, 4, 33], 3, 8.0),
        (DType::F16, vec![1, 6, 3, 20], 3, 2.5),
    ] {
        let beta_label = if beta == 1.0 {
            String::new()
        } else {
            format!("_beta{}", format!("{beta}").replace('.', "p"))
        };
        let name = format!(
            "softmax_{dtype}_{}_axis{axis}{beta_label}",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        );
        let tiers = if beta == 1.0 {
            probabilities(dtype)
        } else {
            scaled_probabilities(dtype, 2.0 * f64::from(beta))
        };
        cases.push(graph_case(&name, Group::Op, |b| {
            let x = b.input("x", TensorDesc::new(dtype, shape.clone())).unwrap();
            vec![(b.softmax("sm", x, axis, beta).unwrap(), tiers)]
        }));
    }
    cases
}

/// TopK: values and indices.
fn topk_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for k in [1, 17] {
        cases.push(graph_case(
            &format!("topk_f32_k{k}_of_17"),
            Group::Op,
            |b| {
                let x = b
                    .input("x", TensorDesc::new(DType::F32, [1, 1, 3, 17]))
                    .unwrap();
                let (v, i) = b.topk("tk", x, k).unwrap();
                let exact = Tiers::single(Tolerance::Exact);
                vec![(v, exact), (i, exact)]
            },
        ));
    }
    cases
}

/// Mul and Add with broadcasting, float and quantized.
fn elementwise_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for dtype in [DType::F32, DType::F16] {
        cases.push(graph_case(
            &format!("mul_add_{dtype}_broadcast"),
            Group::Op,
            |b| {
                let x = b.input("x", TensorDesc::new(dtype, [1, 2, 3, 5])).unwrap();
                let y = b.input("y", TensorDesc::new(dtype, [1, 1, 1, 5])).unwrap();
                let m = b.mul("mul", x, y, OutType::plain(dtype)).unwrap();
                vec![(
                    b.add("add", m, x, OutType::plain(dtype)).unwrap(),
                    Tiers::single(Tolerance::Ulp { ulps: 5.0, dtype }),
                )]
            },
        ));
    }
    cases.push(graph_case("add_u8_quantized", Group::Op, |b| {
        let x = b
            .input("x", q(DType::U8, &[1, 1, 4, 9], 0.02, 128))
            .unwrap();
        let y = b
            .input("y", q(DType::U8, &[1, 1, 4, 9], 0.03, 100))
            .unwrap();
        vec![(
            b.add(
                "add",
                x,
                y,
                OutType::quantized(DType::U8, QuantParams::new(0.05, 110)),
            )
            .unwrap(),
            quantized(),
        )]
    }));
    cases
}

/// Reshape and Transpose.
fn layout_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(graph_case("reshape_transpose_f16", Group::Op, |b| {
        let x = b
            .input("x", TensorDesc::new(DType::F16, [1, 2, 3, 4]))
            .unwrap();
        let t = b.transpose("t", x, &[0, 2, 1, 3]).unwrap();
        vec![(
            b.reshape("r", t, &[1, 6, 4]).unwrap(),
            Tiers::single(Tolerance::Exact),
        )]
    }));
    cases.push(graph_case("transpose_f32_4d_cycle", Group::Op, |b| {
        let x = b
            .input("x", TensorDesc::new(DType::F32, [2, 3, 4, 5]))
            .unwrap();
        vec![(
            b.transpose("t", x, &[2, 0, 3, 1]).unwrap(),
            Tiers::single(Tolerance::Exact),
        )]
    }));
    cases.push(graph_case("transpose_i8_4d", Group::Op, |b| {
        let x = b.input("x", q(DType::I8, &[1, 3, 5, 7], 0.1, 0)).unwrap();
        vec![(
            b.transpose("t", x, &[0, 1, 3, 2]).unwrap(),
            Tiers::single(Tolerance::Exact),
        )]
    }));
    cases
}

/// Cast between float and integer types.
fn cast_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (from, to, tol) in [
        (DType::F32, DType::F16, Tiers::single(Tolerance::Exact)),
        (DType::F16, DType::F32, Tiers::single(Tolerance::Exact)),
        (DType::F32, DType::I32, quantized()),
    ] {
        cases.push(graph_case(
            &format!("cast_{from}_to_{to}"),
            Group::Op,
            |b| {
                let x = b.input("x", TensorDesc::new(from, [1, 1, 2, 31])).unwrap();
                vec![(b.cast("c", x, to).unwrap(), tol)]
            },
        ));
    }
    cases
}

/// The scale grid used for graph cases (9 buckets around typical INT8 Q/K scales).
pub fn conformance_grid() -> BucketGrid {
    BucketGrid::new(0.02, 0.03, 1, 0.5).expect("valid grid")
}

fn pilot_cases() -> Vec<Case> {
    let grid = conformance_grid();
    let mut cases = Vec::new();
    for bucket in 0..grid.len() {
        let (q_scale, k_scale) = grid.bucket(bucket);
        // Every fused count of the core's bank, smallest first.
        for fused in FUSED_HEADS.into_iter().rev() {
            for (output, label, tol) in [
                (PilotOutput::Int32, "i32", Tiers::single(Tolerance::Exact)),
                (
                    PilotOutput::Int8 {
                        acc_range: 300.0 * 127.0,
                    },
                    "i8",
                    quantized(),
                ),
            ] {
                let spec = PilotSpec {
                    fused,
                    unit: PilotUnit::Head,
                    q_len: 16,
                    kv_len: 64,
                    head_dim: 32,
                    q_scale,
                    k_scale,
                    output,
                };
                cases.push(pilot_case(
                    format!("pilot_bucket{bucket}_h{fused}_{label}"),
                    &spec,
                    tol,
                ));
            }
        }
    }
    cases
}

/// The graph case `name` of the pilot `spec`, its one output judged by `tiers`.
fn pilot_case(name: String, spec: &PilotSpec, tiers: Tiers) -> Case {
    let graph = spec.graph().expect("valid pilot");
    Case {
        group: Group::Graph,
        kind: CaseKind::Graph {
            graph,
            seed: seed_of(&name),
            tiers: vec![tiers],
        },
        name,
    }
}

/// The group pilot's graphs (three query heads per group, both ranking placements) in two
/// buckets, one and two fused groups. The NPU-reduced ranking's attention scale makes one output
/// step of the scores 0.01 in logits, so a backend's one-step requantization differences (in a
/// key's score and across its row's normalizer) move a probability by at most about 2 % (within
/// the acceptable tier of 32 f16 ulps, 3.1 %; at 0.02 per step `sim:snapdragon-8-gen-2`'s
/// rounding reached 3.5 %), while the softmax and the sum over heads are judged like
/// probabilities.
fn group_pilot_cases() -> Vec<Case> {
    let grid = conformance_grid();
    let output = PilotOutput::Int8 {
        acc_range: 300.0 * 127.0,
    };
    let mut cases = Vec::new();
    for bucket in [0, grid.len() - 1] {
        let (q_scale, k_scale) = grid.bucket(bucket);
        let step = output.score_scale(q_scale, k_scale);
        for fused in [1, 2] {
            for (ranking, label, tiers) in [
                (GroupRanking::Cpu, "i8", quantized()),
                (
                    GroupRanking::Npu {
                        attention_scale: 0.01 / step,
                    },
                    "ranking_f16",
                    probabilities(DType::F16),
                ),
            ] {
                let spec = PilotSpec {
                    fused,
                    unit: PilotUnit::Group { heads: 3, ranking },
                    q_len: 16,
                    kv_len: 64,
                    head_dim: 32,
                    q_scale,
                    k_scale,
                    output,
                };
                cases.push(pilot_case(
                    format!("pilot_group3_bucket{bucket}_g{fused}_{label}"),
                    &spec,
                    tiers,
                ));
            }
        }
    }
    cases
}

/// Every case, in a stable order.
pub fn all_cases() -> Vec<Case> {
    let mut cases = op_cases();
    cases.extend(pilot_cases());
    cases.extend(group_pilot_cases());
    for (name, ratio) in [
        ("shadowattn_layer_ratio_0.2", 0.2),
        ("shadowattn_layer_ratio_1.0", 1.0),
    ] {
        cases.push(Case {
            name: name.into(),
            group: Group::EndToEnd,
            kind: CaseKind::EndToEnd { ratio },
        });
    }
    for (name, pilot) in [
        (
            "shadowattn_layer_fused_heads_each_its_own_keys",
            PilotKind::Head,
        ),
        (
            "shadowattn_layer_fused_groups_each_its_own_keys",
            PilotKind::Auto,
        ),
    ] {
        cases.push(Case {
            name: name.into(),
            group: Group::EndToEnd,
            kind: CaseKind::FusedUnits { ratio: 0.2, pilot },
        });
    }
    cases.push(Case {
        name: "wrong_buffer_is_a_typed_error".into(),
        group: Group::Behaviour,
        kind: CaseKind::BufferMismatch,
    });
    cases.push(Case {
        name: "declared_unsupported_is_refused".into(),
        group: Group::Behaviour,
        kind: CaseKind::RefusesUnsupported,
    });
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_has_its_own_seed() {
        let mut seeds: Vec<u64> = all_cases()
            .iter()
            .filter_map(|c| match c.kind {
                CaseKind::Graph { seed, .. } => Some(seed),
                _ => None,
            })
            .collect();
        let n = seeds.len();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), n, "two cases share a seed");
    }

    #[test]
    fn names_are_unique_and_graphs_valid() {
        let cases = all_cases();
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
        let pilots = cases
            .iter()
            .filter(|c| c.group == Group::Graph && c.name.starts_with("pilot_"))
            .count();
        assert_eq!(pilots, 9 * 3 * 2 + 2 * 2 * 2);
        for c in &cases {
            if let CaseKind::Graph { graph, tiers, .. } = &c.kind {
                graph.validate().unwrap();
                assert_eq!(graph.outputs().len(), tiers.len(), "{}", c.name);
            }
        }
    }
}
