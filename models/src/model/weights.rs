//! The model's tensors from a GGUF file, in one layout for every architecture: fused QKV and
//! gate/up weights (Phi-3) are split, biases are kept where the file has them (Qwen2's Q/K/V).

use super::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::gguf::Gguf;

/// One transformer block's weights, `[outputs, inputs]` row-major.
pub(super) struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    pub wo: Vec<f32>,
    /// Biases of the Q, K, V and output projections, where the file has them.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub bo: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Vec<f32>,
    pub w_up: Vec<f32>,
    pub w_down: Vec<f32>,
}

/// Every weight of the model.
pub(super) struct Weights {
    pub embed: Vec<f32>,
    pub layers: Vec<Layer>,
    pub out_norm: Vec<f32>,
    /// The output head; `None` when it is tied to the embedding.
    pub output: Option<Vec<f32>>,
}

/// Reads tensors of the shapes the configuration implies.
struct Loader<'g> {
    g: &'g Gguf,
}

impl Loader<'_> {
    fn has(&self, name: &str) -> bool {
        self.g.tensor(name).is_ok()
    }

    /// The tensor `name`, which must have `shape` (outermost first).
    fn load(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let info = self.g.tensor(name)?;
        let want: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        if info.dims != want {
            return Err(ModelError::Unsupported {
                detail: format!(
                    "tensor `{name}` has dims {:?}, expected {want:?}",
                    info.dims
                ),
            });
        }
        self.g.dequantize(name)
    }

    fn optional(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.load(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The rows of `[Σ rows, inputs]` tensor `name` split into blocks of `rows[i]` rows each.
    fn split<const N: usize>(
        &self,
        name: &str,
        rows: [usize; N],
        inputs: usize,
    ) -> Result<[Vec<f32>; N]> {
        let all = self.load(name, &[rows.iter().sum(), inputs])?;
        let mut rest = all.as_slice();
        Ok(rows.map(|r| {
            let (head, tail) = rest.split_at(r * inputs);
            rest = tail;
            head.to_vec()
        }))
    }
}

impl Weights {
    /// Loads every weight of `config` from `g`.
    pub fn from_gguf(g: &Gguf, config: &ModelConfig) -> Result<Self> {
        let loader = Loader { g };
        let c = config;
        let embed = loader.load("token_embd.weight", &[c.vocab, c.hidden])?;
        let layers = (0..c.layers)
            .map(|l| layer(&loader, c, l))
            .collect::<Result<Vec<_>>>()?;
        Ok(Weights {
            embed,
            layers,
            out_norm: loader.load("output_norm.weight", &[c.hidden])?,
            output: loader.optional("output.weight", &[c.vocab, c.hidden])?,
        })
    }
}

fn layer(loader: &Loader<'_>, c: &ModelConfig, l: usize) -> Result<Layer> {
    let p = |s: &str| format!("blk.{l}.{s}");
    let (h, q, kv, ffn) = (c.hidden, c.q_dim(), c.kv_dim(), c.ffn);
    let [wq, wk, wv]: [Vec<f32>; 3] = if loader.has(&p("attn_qkv.weight")) {
        loader.split(&p("attn_qkv.weight"), [q, kv, kv], h)?
    } else {
        [
            loader.load(&p("attn_q.weight"), &[q, h])?,
            loader.load(&p("attn_k.weight"), &[kv, h])?,
            loader.load(&p("attn_v.weight"), &[kv, h])?,
        ]
    };
    if loader.has(&p("attn_qkv.bias")) {
        return Err(ModelError::Unsupported {
            detail: format!("tensor `{}`: a fused QKV bias", p("attn_qkv.bias")),
        });
    }
    let [w_gate, w_up]: [Vec<f32>; 2] = if loader.has(&p("ffn_gate.weight")) {
        [
            loader.load(&p("ffn_gate.weight"), &[ffn, h])?,
            loader.load(&p("ffn_up.weight"), &[ffn, h])?,
        ]
    } else if loader.g.tensor(&p("ffn_up.weight"))?.dims == [h as u64, 2 * ffn as u64] {
        // Phi-3: `ffn_up` holds the gate rows, then the up rows.
        loader.split(&p("ffn_up.weight"), [ffn, ffn], h)?
    } else {
        return Err(ModelError::Missing {
            what: format!(
                "tensor `{}` (or a fused gate/up `{}` of {} rows)",
                p("ffn_gate.weight"),
                p("ffn_up.weight"),
                2 * ffn
            ),
        });
    };
    Ok(Layer {
        attn_norm: loader.load(&p("attn_norm.weight"), &[h])?,
        wq,
        wk,
        wv,
        wo: loader.load(&p("attn_output.weight"), &[h, q])?,
        bq: loader.optional(&p("attn_q.bias"), &[q])?,
        bk: loader.optional(&p("attn_k.bias"), &[kv])?,
        bv: loader.optional(&p("attn_v.bias"), &[kv])?,
        bo: loader.optional(&p("attn_output.bias"), &[h])?,
        ffn_norm: loader.load(&p("ffn_norm.weight"), &[h])?,
        w_gate,
        w_up,
        w_down: loader.load(&p("ffn_down.weight"), &[h, ffn])?,
    })
}
