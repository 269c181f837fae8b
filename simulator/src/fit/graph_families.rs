//! Graph families for comparing the cost model with a vendor's estimates: a graph described by
//! a few numbers ([`GraphSpec`]), grids of them, and the graph each one builds.
//!
//! Every family is a batched MatMul `[1, h, M, K] · [1, h, K, N]` (`h` fused heads), optionally
//! followed by Softmax on the last axis, or by Softmax and P·V (NPU-Full INT8 attention). Integer MatMuls write requantized 8-bit outputs (HTP
//! has no INT32 MatMul output); the INT8 pilot is the i8 family with the second input
//! transposed (`[1, h, N, K]`, keys as rows). The second input is either passed at execution
//! (dynamic) or a constant of the graph (STATIC), as weights are.

use crate::error::{Result, SimError};
use crate::npu::graphs::PilotGraph;
use crate::predict::npu_strategies::npu_full_int8_graph;
use shadowattn_hal::{
    f16, DType, Graph, GraphBuilder, HostTensor, OutType, QuantParams, Quantization, TensorDesc,
};
use std::fmt;

/// What follows the MatMul.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tail {
    /// Nothing: the MatMul output is the graph output.
    None,
    /// Softmax over the last axis.
    Softmax,
    /// The rest of NPU-Full INT8 attention: the i8 Q·Kᵀ (keys as rows), Softmax, then P·V with
    /// V shaped as K ([`crate::predict::npu_strategies::npu_full_int8_graph`], not causal).
    Attention,
    /// The group pilot with its ranking summed on the NPU
    /// ([`crate::npu::graphs::group_pilot_graph`]): `heads` fused GQA groups of this many query
    /// heads, `m` query rows per head, `n` keys, `k` head dimensions.
    GroupPilot(usize),
}

/// How the MatMul's second input reaches the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Second {
    /// A graph input, passed at every execution.
    Dynamic,
    /// A constant (STATIC) tensor of the graph.
    Static,
}

/// One graph of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GraphSpec {
    /// Element type of the MatMul's inputs and output (`f16`, `f32`, `i8`, `u8`).
    pub dtype: DType,
    /// What follows the MatMul.
    pub tail: Tail,
    /// How the second input reaches the graph.
    pub second: Second,
    /// The second input is `[1, h, N, K]` (transposed, as the pilot's keys).
    pub transpose_b: bool,
    /// Fused heads (the batch dimension).
    pub heads: usize,
    /// Rows of the first input.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of the output.
    pub n: usize,
}

impl GraphSpec {
    /// The INT8 pilot: `heads` fused heads of `q_len` rows against `kv_len` keys of `head_dim`.
    pub fn pilot(heads: usize, q_len: usize, kv_len: usize, head_dim: usize) -> Self {
        GraphSpec {
            dtype: DType::I8,
            tail: Tail::None,
            second: Second::Dynamic,
            transpose_b: true,
            heads,
            m: q_len,
            k: head_dim,
            n: kv_len,
        }
    }

    /// The family this graph belongs to: everything but the sizes.
    pub fn family(&self) -> Family {
        Family {
            dtype: self.dtype,
            tail: self.tail,
            second: self.second,
            transpose_b: self.transpose_b,
        }
    }

    /// Builds the graph; sizes of zero and dtypes outside the families are errors.
    pub fn graph(&self) -> Result<Graph> {
        let bad = |detail: String| SimError::Shape(format!("graph {self}: {detail}"));
        if [self.heads, self.m, self.k, self.n].contains(&0) {
            return Err(bad("every size must be at least 1".into()));
        }
        if self.tail == Tail::Attention {
            if (self.dtype, self.second, self.transpose_b) != (DType::I8, Second::Dynamic, true) {
                return Err(bad(
                    "NPU-Full attention is an i8 graph of dynamic Q, K and V with keys as rows \
                     (i8, dynamic, transposed second input)"
                        .into(),
                ));
            }
            return npu_full_int8_graph(self.heads, self.m, self.n, self.k, false);
        }
        if let Tail::GroupPilot(group) = self.tail {
            if (self.dtype, self.second, self.transpose_b) != (DType::I8, Second::Dynamic, true)
                || group == 0
            {
                return Err(bad(
                    "the group pilot is an i8 graph of dynamic Q and K with keys as rows and at \
                     least one head per group"
                        .into(),
                ));
            }
            let pilot = PilotGraph::Group {
                heads: group,
                ranked_on_npu: true,
            };
            return Ok(pilot.graph(self.heads, self.m, self.n, self.k));
        }
        let (a_desc, b_desc, out) = match self.dtype {
            DType::F16 | DType::F32 => (
                TensorDesc::new(self.dtype, self.a_shape()),
                TensorDesc::new(self.dtype, self.b_shape()),
                OutType::plain(self.dtype),
            ),
            DType::I8 => (
                quantized(DType::I8, self.a_shape(), 0.05, 0),
                quantized(DType::I8, self.b_shape(), 0.05, 0),
                OutType::quantized(DType::I8, QuantParams::symmetric(0.5)),
            ),
            DType::U8 => (
                quantized(DType::U8, self.a_shape(), 0.05, 128),
                quantized(DType::U8, self.b_shape(), 0.05, 128),
                OutType::quantized(DType::U8, QuantParams::new(0.5, 128)),
            ),
            other => return Err(bad(format!("no family of {other} MatMuls"))),
        };
        let mut b = GraphBuilder::new(self.to_string());
        let x = b.input("in0", a_desc)?;
        let w = match self.second {
            Second::Dynamic => b.input("in1", b_desc)?,
            Second::Static => b.constant_tensor("in1", &constant_data(b_desc)?)?,
        };
        let mut y = b.matmul("matmul0", x, w, false, self.transpose_b, out)?;
        if self.tail == Tail::Softmax {
            y = b.softmax("softmax0", y, 3, 1.0)?;
        }
        b.output(y)?;
        Ok(b.build()?)
    }

    fn a_shape(&self) -> [usize; 4] {
        [1, self.heads, self.m, self.k]
    }

    fn b_shape(&self) -> [usize; 4] {
        if self.transpose_b {
            [1, self.heads, self.n, self.k]
        } else {
            [1, self.heads, self.k, self.n]
        }
    }
}

impl fmt::Display for GraphSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} h{} m{} k{} n{}",
            self.family(),
            self.heads,
            self.m,
            self.k,
            self.n
        )
    }
}

/// A family of graphs: everything of a [`GraphSpec`] but its sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    /// Element type.
    pub dtype: DType,
    /// What follows the MatMul.
    pub tail: Tail,
    /// How the second input reaches the graph.
    pub second: Second,
    /// The second input is transposed.
    pub transpose_b: bool,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} matmul", self.dtype)?;
        if self.transpose_b {
            write!(f, " bT")?;
        }
        if self.second == Second::Static {
            write!(f, " static")?;
        }
        match self.tail {
            Tail::None => {}
            Tail::Softmax => write!(f, " +softmax")?,
            Tail::Attention => write!(f, " +softmax +P·V (NPU-Full attention)")?,
            Tail::GroupPilot(g) => write!(f, " +group ranking (g{g})")?,
        }
        Ok(())
    }
}

fn quantized(dtype: DType, shape: [usize; 4], scale: f32, zero_point: i32) -> TensorDesc {
    TensorDesc::new(dtype, shape).with_quant(Quantization::per_tensor(scale, zero_point))
}

/// Deterministic, bounded data for a constant tensor (a cost model does not read it, but the
/// graph must carry real bytes).
fn constant_data(desc: TensorDesc) -> Result<HostTensor> {
    let mut t = HostTensor::zeros(desc)?;
    match t.desc().dtype {
        DType::F32 => {
            for (i, v) in t.as_mut_slice::<f32>()?.iter_mut().enumerate() {
                *v = ((i * 7919) % 257) as f32 / 128.0 - 1.0;
            }
        }
        DType::F16 => {
            for (i, v) in t.as_mut_slice::<f16>()?.iter_mut().enumerate() {
                *v = f16::from_f32(((i * 7919) % 257) as f32 / 128.0 - 1.0);
            }
        }
        _ => {
            for (i, v) in t.bytes_mut().iter_mut().enumerate() {
                *v = ((i * 7919) % 251) as u8;
            }
        }
    }
    Ok(t)
}

/// Every combination of the given values, in order (dtype outermost, `n` innermost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Element types.
    pub dtypes: Vec<DType>,
    /// Tails.
    pub tails: Vec<Tail>,
    /// Second-input kinds.
    pub seconds: Vec<Second>,
    /// Transposed second input or not.
    pub transpose_b: Vec<bool>,
    /// Fused head counts.
    pub heads: Vec<usize>,
    /// Row counts.
    pub m: Vec<usize>,
    /// Inner dimensions.
    pub k: Vec<usize>,
    /// Output columns.
    pub n: Vec<usize>,
}

impl Grid {
    /// The specs of the grid.
    pub fn specs(&self) -> Vec<GraphSpec> {
        let mut out = Vec::new();
        for &dtype in &self.dtypes {
            for &tail in &self.tails {
                for &second in &self.seconds {
                    for &transpose_b in &self.transpose_b {
                        for &heads in &self.heads {
                            for &m in &self.m {
                                for &k in &self.k {
                                    for &n in &self.n {
                                        out.push(GraphSpec {
                                            dtype,
                                            tail,
                                            second,
                                            transpose_b,
                                            heads,
                                            m,
                                            k,
                                            n,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_build_the_graphs_they_name() {
        let s = GraphSpec {
            dtype: DType::F16,
            tail: Tail::Softmax,
            second: Second::Static,
            transpose_b: false,
            heads: 2,
            m: 3,
            k: 5,
            n: 7,
        };
        let g = s.graph().unwrap();
        assert_eq!(g.inputs().len(), 1);
        assert_eq!(g.constants().len(), 1);
        assert_eq!(g.nodes().len(), 2);
        assert_eq!(g.output_descs().next().unwrap().shape, vec![1, 2, 3, 7]);
        assert_eq!(s.to_string(), "f16 matmul static +softmax h2 m3 k5 n7");
        let p = GraphSpec::pilot(4, 128, 2048, 64).graph().unwrap();
        assert_eq!(p.inputs().len(), 2);
        assert_eq!(p.input_descs().nth(1).unwrap().shape, vec![1, 4, 2048, 64]);
        assert_eq!(
            p.output_descs().next().unwrap().dtype,
            DType::I8,
            "HTP has no INT32 MatMul output"
        );
        assert!(GraphSpec { m: 0, ..s }.graph().is_err());
        let full = GraphSpec {
            tail: Tail::Attention,
            ..GraphSpec::pilot(2, 128, 512, 64)
        };
        let g = full.graph().unwrap();
        assert_eq!(g.inputs().len(), 3, "Q, K and V");
        assert_eq!(g.output_descs().next().unwrap().shape, vec![1, 2, 128, 64]);
        assert!(GraphSpec {
            tail: Tail::Attention,
            ..s
        }
        .graph()
        .is_err());
        assert!(GraphSpec {
            dtype: DType::I32,
            ..s
        }
        .graph()
        .is_err());
    }

    #[test]
    fn a_grid_is_every_combination() {
        let g = Grid {
            dtypes: vec![DType::F16, DType::I8],
            tails: vec![Tail::None],
            seconds: vec![Second::Dynamic, Second::Static],
            transpose_b: vec![false],
            heads: vec![1],
            m: vec![1, 64],
            k: vec![64],
            n: vec![32, 64, 128],
        };
        let specs = g.specs();
        assert_eq!(specs.len(), 2 * 2 * 2 * 3);
        assert_eq!(specs[0].n, 32);
        assert_eq!(specs[1].n, 64);
        assert_eq!(specs.last().unwrap().dtype, DType::I8);
    }
}
