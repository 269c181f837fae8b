//! The decoder-only transformer of the GGUF models the harness runs — Model, Qwen2, Phi-3 —
//! (RMSNorm, RoPE, GQA attention with optional Q/K/V biases, SwiGLU MLP, tied or separate
//! output head) with the attention of every layer pluggable.

mod config;
mod rope;
mod weights;

pub use config::{Architecture, ModelConfig};
pub use rope::{Rope, RopeStyle};

use crate::error::{ModelError, Result};
use crate::gguf::Gguf;
use rayon::prelude::*;
use shadowattn_hal::{AttentionInputs, AttentionShape};
use weights::Weights;

/// A model with f32 weights in memory.
pub struct Model {
    /// The model's configuration.
    pub config: ModelConfig,
    weights: Weights,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish()
    }
}

/// What the forward pass asks of an attention implementation.
pub trait Attention {
    /// Attention of one layer's prefill chunk: inputs `[heads, rows, head_dim]`, output the same
    /// layout for the query heads.
    fn attend(&mut self, layer: usize, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()>;
}

/// A group of a layer's linear layers that read the same input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearGroup {
    /// The query, key and value projections of the normalized input.
    Qkv,
    /// The attention output projection.
    O,
    /// The MLP's gate and up projections of the normalized input.
    GateUp,
    /// The MLP's down projection.
    Down,
}

impl LinearGroup {
    /// Every group, in the order a layer runs them.
    pub const ALL: [LinearGroup; 4] = [
        LinearGroup::Qkv,
        LinearGroup::O,
        LinearGroup::GateUp,
        LinearGroup::Down,
    ];

    /// The group's name (`qkv`, `o`, `gate_up`, `down`).
    pub fn name(self) -> &'static str {
        match self {
            LinearGroup::Qkv => "qkv",
            LinearGroup::O => "o",
            LinearGroup::GateUp => "gate_up",
            LinearGroup::Down => "down",
        }
    }
}

/// What the forward pass asks of the linear layers.
pub trait Linears {
    /// `x` (`[rows, inputs]`) times each weight of `group` in `layer`: one `[rows, outputs]`
    /// result per weight, in the order of [`Model::linear_weights`].
    fn apply(
        &mut self,
        layer: usize,
        group: LinearGroup,
        x: &[f32],
        rows: usize,
    ) -> Result<Vec<Vec<f32>>>;
}

/// One weight of a linear layer: `[outputs, inputs]`, row-major.
#[derive(Clone, Copy, Debug)]
pub struct LinearWeight<'a> {
    /// The projection's name (`q`, `k`, `v`, `o`, `gate`, `up`, `down`).
    pub name: &'static str,
    /// The weights.
    pub data: &'a [f32],
    /// Inputs (columns).
    pub inputs: usize,
    /// Outputs (rows).
    pub outputs: usize,
}

/// The linear layers on the host (f32, this crate's SGEMM).
struct HostLinears<'a>(&'a Model);

impl Linears for HostLinears<'_> {
    fn apply(
        &mut self,
        layer: usize,
        group: LinearGroup,
        x: &[f32],
        rows: usize,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .0
            .linear_weights(layer, group)
            .iter()
            .map(|w| matmul_t(x, w.data, rows, w.inputs, w.outputs))
            .collect())
    }
}

/// `y[t, o] = Σ_i x[t, i] · w[o, i]` for `t < rows`.
pub fn matmul_t(x: &[f32], w: &[f32], rows: usize, inner: usize, outs: usize) -> Vec<f32> {
    // Column blocks in parallel: each weight row is packed by one SGEMM only (splitting rows
    // instead would make every block pack the whole weight matrix again).
    let threads = rayon::current_num_threads().max(1);
    let block = outs
        .div_ceil(threads * 2)
        .next_multiple_of(16)
        .max(64)
        .min(outs.max(1));
    let parts: Vec<Vec<f32>> = w
        .par_chunks(block * inner)
        .map(|wb| {
            let cols = wb.len() / inner;
            let mut yb = vec![0f32; rows * cols];
            crate::gemm::sgemm_xwt(x, wb, &mut yb, rows, inner, cols);
            yb
        })
        .collect();
    let mut y = vec![0f32; rows * outs];
    for (b, part) in parts.iter().enumerate() {
        let cols = part.len() / rows.max(1);
        for (t, src) in part.chunks_exact(cols.max(1)).enumerate().take(rows) {
            y[t * outs + b * block..][..cols].copy_from_slice(src);
        }
    }
    y
}

fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = row
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            / d as f64;
        let inv = (1.0 / (ms + f64::from(eps)).sqrt()) as f32;
        for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
            *o = v * inv * w;
        }
    }
}

/// A linear group's `N` results, or a typed error when a [`Linears`] gives another count.
fn results<const N: usize>(outs: Vec<Vec<f32>>) -> Result<[Vec<f32>; N]> {
    let count = outs.len();
    outs.try_into().map_err(|_| ModelError::Unsupported {
        detail: format!("a linear group gave {count} results where {N} were expected"),
    })
}

/// Adds `bias` (one value per output) to every row of `y`.
fn add_bias(y: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
    }
}

/// `[rows, heads·d]` → `[heads, rows, d]`.
fn to_heads(x: &[f32], rows: usize, heads: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for t in 0..rows {
        for h in 0..heads {
            out[(h * rows + t) * d..][..d].copy_from_slice(&x[(t * heads + h) * d..][..d]);
        }
    }
    out
}

/// `[heads, rows, d]` → `[rows, heads·d]`.
fn from_heads(x: &[f32], rows: usize, heads: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for t in 0..rows {
        for h in 0..heads {
            out[(t * heads + h) * d..][..d].copy_from_slice(&x[(h * rows + t) * d..][..d]);
        }
    }
    out
}

impl Model {
    /// Loads a model from a GGUF file.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let config = ModelConfig::from_gguf(g)?;
        let weights = Weights::from_gguf(g, &config)?;
        Ok(Model { config, weights })
    }

    /// Runs `tokens` as one prefill chunk (positions 0..n) and returns the final hidden states
    /// `[n, hidden]` after the output norm. `attention` computes every layer's attention.
    pub fn forward(&self, tokens: &[u32], attention: &mut dyn Attention) -> Result<Vec<f32>> {
        self.forward_from(tokens, attention, &mut |_, _| {})
    }

    /// [`Model::forward`] with the linear layers computed by `linears` (on an NPU, for example).
    pub fn forward_with(
        &self,
        tokens: &[u32],
        linears: &mut dyn Linears,
        attention: &mut dyn Attention,
    ) -> Result<Vec<f32>> {
        let mut x = self.embed_tokens(tokens)?;
        for l in 0..self.config.layers {
            self.run_layer(l, &mut x, tokens.len(), linears, attention, &mut |_, _| {})?;
        }
        Ok(self.final_norm(&x))
    }

    /// The weights of `group` in `layer`, in the order [`Linears::apply`] returns its results.
    pub fn linear_weights(&self, layer: usize, group: LinearGroup) -> Vec<LinearWeight<'_>> {
        let c = &self.config;
        let w = &self.weights.layers[layer];
        let (h, q, kv) = (c.hidden, c.q_dim(), c.kv_dim());
        fn weight<'a>(
            name: &'static str,
            data: &'a [f32],
            inputs: usize,
            outputs: usize,
        ) -> LinearWeight<'a> {
            LinearWeight {
                name,
                data,
                inputs,
                outputs,
            }
        }
        match group {
            LinearGroup::Qkv => vec![
                weight("q", &w.wq, h, q),
                weight("k", &w.wk, h, kv),
                weight("v", &w.wv, h, kv),
            ],
            LinearGroup::O => vec![weight("o", &w.wo, q, h)],
            LinearGroup::GateUp => vec![
                weight("gate", &w.w_gate, h, c.ffn),
                weight("up", &w.w_up, h, c.ffn),
            ],
            LinearGroup::Down => vec![weight("down", &w.w_down, c.ffn, h)],
        }
    }

    /// The output head's logits (`[rows, vocab]`) of final hidden states `[rows, hidden]`.
    pub fn logits(&self, hidden: &[f32], rows: usize) -> Vec<f32> {
        let c = &self.config;
        let head = self
            .weights
            .output
            .as_deref()
            .unwrap_or(&self.weights.embed);
        matmul_t(hidden, head, rows, c.hidden, c.vocab)
    }

    /// [`Model::forward`] that shows `inspect(layer, inputs)` each layer's attention inputs.
    pub fn forward_from(
        &self,
        tokens: &[u32],
        attention: &mut dyn Attention,
        inspect: &mut dyn FnMut(usize, AttentionInputs<'_>),
    ) -> Result<Vec<f32>> {
        let mut x = self.embed_tokens(tokens)?;
        self.run_layers(&mut x, tokens.len(), 0, attention, inspect)?;
        Ok(self.final_norm(&x))
    }

    /// The residual stream entering every layer (`[layers][n × hidden]`) under `attention`:
    /// later runs can restart from any layer ([`Model::forward_from_layer`]).
    pub fn layer_inputs(
        &self,
        tokens: &[u32],
        attention: &mut dyn Attention,
    ) -> Result<Vec<Vec<f32>>> {
        let mut x = self.embed_tokens(tokens)?;
        let mut states = Vec::with_capacity(self.config.layers);
        for l in 0..self.config.layers {
            states.push(x.clone());
            self.run_layer(
                l,
                &mut x,
                tokens.len(),
                &mut HostLinears(self),
                attention,
                &mut |_, _| {},
            )?;
        }
        Ok(states)
    }

    /// The final hidden states when the residual stream `x` (`[n × hidden]`) enters layer `from`.
    pub fn forward_from_layer(
        &self,
        mut x: Vec<f32>,
        n: usize,
        from: usize,
        attention: &mut dyn Attention,
    ) -> Result<Vec<f32>> {
        if x.len() != n * self.config.hidden || from > self.config.layers {
            return Err(ModelError::InvalidArgument {
                argument: "x",
                detail: format!("{} values for {n} tokens entering layer {from}", x.len()),
            });
        }
        self.run_layers(&mut x, n, from, attention, &mut |_, _| {})?;
        Ok(self.final_norm(&x))
    }

    fn final_norm(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        rms_norm(x, &self.weights.out_norm, self.config.norm_eps, &mut out);
        out
    }

    fn embed_tokens(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let c = &self.config;
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::InvalidArgument {
                argument: "tokens",
                detail: format!("{n} tokens; the model takes 1 to {}", c.max_tokens()),
            });
        }
        c.check_tokens("tokens", n)?;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(ModelError::InvalidArgument {
                argument: "tokens",
                detail: format!("token id {bad} is outside the {}-token vocabulary", c.vocab),
            });
        }
        let h = c.hidden;
        Ok(tokens
            .iter()
            .flat_map(|&t| self.weights.embed[t as usize * h..][..h].iter().copied())
            .collect())
    }

    fn run_layers(
        &self,
        x: &mut [f32],
        n: usize,
        from: usize,
        attention: &mut dyn Attention,
        inspect: &mut dyn FnMut(usize, AttentionInputs<'_>),
    ) -> Result<()> {
        for l in from..self.config.layers {
            self.run_layer(l, x, n, &mut HostLinears(self), attention, inspect)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_layer(
        &self,
        l: usize,
        x: &mut [f32],
        n: usize,
        linears: &mut dyn Linears,
        attention: &mut dyn Attention,
        inspect: &mut dyn FnMut(usize, AttentionInputs<'_>),
    ) -> Result<()> {
        let c = &self.config;
        let layer = &self.weights.layers[l];
        let (h, d) = (c.hidden, c.head_dim);
        let mut normed = vec![0f32; n * h];
        let shape = AttentionShape::causal(c.q_heads, c.kv_heads, n, n, d);
        rms_norm(x, &layer.attn_norm, c.norm_eps, &mut normed);
        let [mut q, mut k, mut v] = results(linears.apply(l, LinearGroup::Qkv, &normed, n)?)?;
        add_bias(&mut q, layer.bq.as_deref());
        add_bias(&mut k, layer.bk.as_deref());
        add_bias(&mut v, layer.bv.as_deref());
        c.rope.apply(&mut q, c.q_heads, d);
        c.rope.apply(&mut k, c.kv_heads, d);
        let (qh, kh, vh) = (
            to_heads(&q, n, c.q_heads, d),
            to_heads(&k, n, c.kv_heads, d),
            to_heads(&v, n, c.kv_heads, d),
        );
        let inputs = AttentionInputs::new(&qh, &kh, &vh, shape)?;
        inspect(l, inputs);
        let mut att = vec![0f32; n * c.q_dim()];
        attention.attend(l, inputs, &mut att)?;
        let att = from_heads(&att, n, c.q_heads, d);
        let [mut o] = results(linears.apply(l, LinearGroup::O, &att, n)?)?;
        add_bias(&mut o, layer.bo.as_deref());
        x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        rms_norm(x, &layer.ffn_norm, c.norm_eps, &mut normed);
        let [gate, mut up] = results(linears.apply(l, LinearGroup::GateUp, &normed, n)?)?;
        up.iter_mut()
            .zip(&gate)
            .for_each(|(u, g)| *u *= g / (1.0 + (-g).exp()));
        let [down] = results(linears.apply(l, LinearGroup::Down, &up, n)?)?;
        x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        Ok(())
    }

    /// Mean negative log-likelihood (nats) of `tokens[i + 1]` given the hidden state of
    /// `tokens[i]`, over positions `from..n-1`; and the count of predictions scored.
    pub fn nll(&self, hidden: &[f32], tokens: &[u32], from: usize) -> (f64, usize) {
        let c = &self.config;
        let h = c.hidden;
        let head = self
            .weights
            .output
            .as_deref()
            .unwrap_or(&self.weights.embed);
        let n = tokens.len();
        let positions: Vec<usize> = (from..n.saturating_sub(1)).collect();
        // Large chunks: every chunk packs the whole output matrix once.
        let total: f64 = positions
            .chunks(256)
            .map(|chunk| {
                let rows: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&t| hidden[t * h..][..h].iter().copied())
                    .collect();
                let logits = matmul_t(&rows, head, chunk.len(), h, c.vocab);
                chunk
                    .iter()
                    .zip(logits.chunks_exact(c.vocab))
                    .map(|(&t, z)| {
                        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let lse = f64::from(max)
                            + z.iter()
                                .map(|&v| f64::from(v - max).exp())
                                .sum::<f64>()
                                .ln();
                        lse - f64::from(z[tokens[t + 1] as usize])
                    })
                    .sum::<f64>()
            })
            .sum();
        (total / positions.len().max(1) as f64, positions.len())
    }
}
