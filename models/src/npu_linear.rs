//! A model's linear layers as static NPU graphs: per layer, one graph per [`LinearGroup`] whose
//! weights are STATIC FP16 tensors, FP16 activations of a fixed number of rows, compiled once on
//! any NPU backend and run chunk by chunk (the last chunk padded with zero rows).
//!
//! FP16 because it is what an NPU's matrix unit runs without calibration (HTP computes FP32
//! graphs in FP16 too) and it keeps every model's accuracy; INT8 weights need per-channel
//! scales, which the graph IR's MatMul does not take yet.

mod cache;

use crate::error::Result;
use crate::model::{LinearGroup, Linears, Model};
use cache::{compile_or_load, Origin};
use half::f16;
use shadowattn_hal::{
    CompiledGraph, DType, Graph, GraphBuilder, NpuBackend, OutType, TensorDesc, TensorView,
    TensorViewMut,
};
use std::path::Path;
use std::time::Instant;

pub use cache::CacheRefusal;

/// The graph of `group` in `layer` of `model` for `rows` rows: input `x` `[1, 1, rows, inputs]`,
/// one MatMul per weight against its STATIC transpose `[1, 1, inputs, outputs]`, one output
/// each, all FP16.
pub fn linear_graph(model: &Model, layer: usize, group: LinearGroup, rows: usize) -> Result<Graph> {
    let weights = model.linear_weights(layer, group);
    let inputs = weights[0].inputs;
    let mut b = GraphBuilder::new(format!("layer{layer}_{}_r{rows}", group.name()));
    let x = b.input("x", TensorDesc::new(DType::F16, [1, 1, rows, inputs]))?;
    for w in &weights {
        // Graph B is [inputs, outputs]: the transpose of the model's [outputs, inputs].
        let mut data = Vec::with_capacity(w.inputs * w.outputs * 2);
        for i in 0..w.inputs {
            for o in 0..w.outputs {
                data.extend_from_slice(&f16::from_f32(w.data[o * w.inputs + i]).to_le_bytes());
            }
        }
        let desc = TensorDesc::new(DType::F16, [1, 1, w.inputs, w.outputs]);
        let wv = b.constant(&format!("w_{}", w.name), desc, data)?;
        let y = b.matmul(w.name, x, wv, false, false, OutType::plain(DType::F16))?;
        b.output(y)?;
    }
    Ok(b.build()?)
}

/// A model's linear layers compiled on one NPU backend.
pub struct NpuLinears {
    rows: usize,
    graphs: Vec<Vec<Box<dyn CompiledGraph>>>,
    compile_s: f64,
    loaded: usize,
    refused: Vec<CacheRefusal>,
    launches: usize,
}

impl std::fmt::Debug for NpuLinears {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpuLinears")
            .field("rows", &self.rows)
            .field("graphs", &(self.graphs.len() * LinearGroup::ALL.len()))
            .finish()
    }
}

impl NpuLinears {
    /// Compiles every layer's graphs for chunks of `rows` rows on `npu`, or loads them from
    /// the `cache` folder where an earlier run saved them; `progress` is called after each layer.
    pub fn compile(
        model: &Model,
        npu: &dyn NpuBackend,
        rows: usize,
        cache: Option<&Path>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let started = Instant::now();
        let mut graphs = Vec::with_capacity(model.config.layers);
        let mut loaded = 0;
        let mut refused = Vec::new();
        for l in 0..model.config.layers {
            let mut layer = Vec::with_capacity(LinearGroup::ALL.len());
            for &g in &LinearGroup::ALL {
                let (graph, origin) =
                    compile_or_load(npu, &linear_graph(model, l, g, rows)?, cache)?;
                match origin {
                    Origin::Loaded => loaded += 1,
                    Origin::Refused(refusal) => refused.push(refusal),
                    Origin::Compiled => {}
                }
                layer.push(graph);
            }
            graphs.push(layer);
            progress(l);
        }
        Ok(NpuLinears {
            rows,
            graphs,
            compile_s: started.elapsed().as_secs_f64(),
            loaded,
            refused,
            launches: 0,
        })
    }

    /// Graphs loaded from the cache instead of compiled.
    pub fn loaded(&self) -> usize {
        self.loaded
    }

    /// Cache files that were not used (truncated, damaged, written for another backend…) and
    /// were compiled again: warn about each.
    pub fn refused(&self) -> &[CacheRefusal] {
        &self.refused
    }

    /// Rows of each chunk the graphs take.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Graphs compiled.
    pub fn graph_count(&self) -> usize {
        self.graphs.iter().map(Vec::len).sum()
    }

    /// Wall time of compiling (or loading) them, s.
    pub fn compile_s(&self) -> f64 {
        self.compile_s
    }

    /// Graph executions so far.
    pub fn launches(&self) -> usize {
        self.launches
    }
}

impl Linears for NpuLinears {
    fn apply(
        &mut self,
        layer: usize,
        group: LinearGroup,
        x: &[f32],
        rows: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let index = LinearGroup::ALL
            .iter()
            .position(|&g| g == group)
            .expect("every group is listed");
        let graph = &mut self.graphs[layer][index];
        let in_desc = graph
            .graph()
            .input_descs()
            .next()
            .expect("one input")
            .clone();
        let out_descs: Vec<TensorDesc> = graph.graph().output_descs().cloned().collect();
        let inputs = in_desc.shape[3];
        let chunk = self.rows;
        let mut results: Vec<Vec<f32>> = out_descs
            .iter()
            .map(|d| Vec::with_capacity(rows * d.shape[3]))
            .collect();
        for start in (0..rows).step_by(chunk) {
            let valid = chunk.min(rows - start);
            // The chunk's rows, then zero rows up to the graph's row count.
            let mut x16 = vec![f16::ZERO; chunk * inputs];
            for (d, s) in x16
                .iter_mut()
                .zip(&x[start * inputs..(start + valid) * inputs])
            {
                *d = f16::from_f32(*s);
            }
            let mut outs: Vec<Vec<f16>> = out_descs
                .iter()
                .map(|d| vec![f16::ZERO; d.numel()])
                .collect();
            {
                let input = [TensorView::from_slice(&in_desc, &x16)?];
                let mut views = out_descs
                    .iter()
                    .zip(outs.iter_mut())
                    .map(|(d, o)| TensorViewMut::from_slice(d, o))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                graph.execute(&input, &mut views)?;
            }
            self.launches += 1;
            for ((r, o), d) in results.iter_mut().zip(&outs).zip(&out_descs) {
                r.extend(o[..valid * d.shape[3]].iter().map(|v| v.to_f32()));
            }
        }
        Ok(results)
    }
}
