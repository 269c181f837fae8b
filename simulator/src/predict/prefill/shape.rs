//! The dimensions of the models a prefill prices, and the paper's four as presets.

use crate::error::{check_attention_sizes, Result, SimError};
use crate::predict::cpu_model::EXP_FLOP;

/// The dimensions of a Llama-architecture transformer that price its prefill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformerShape {
    /// Name shown in reports.
    pub name: String,
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Inner size of the gated MLP.
    pub ffn: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads; divides `q_heads`.
    pub kv_heads: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the output head).
    pub vocab: usize,
    /// The gate's activation in the gated MLP.
    pub activation: Activation,
}

/// The activation of the gate of a gated MLP: `down(act(gate(x)) · up(x))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU: Llama, Qwen2).
    Silu,
    /// ReLU (PhoneLM).
    Relu,
}

impl Activation {
    /// FLOP per element of `act(g)·u` with the product's requantization.
    pub(super) fn flop(self) -> f64 {
        match self {
            Activation::Silu => EXP_FLOP + 6.0,
            Activation::Relu => 4.0,
        }
    }
}

/// The paper's four models by shape (Table 5 gives heads, KV heads, head dim and layers; the
/// hidden, MLP and vocabulary sizes are the models' published configurations).
/// PhoneLM: the `mllmTeam/PhoneLM-{0.5B,1.5B}-Instruct` `config.json` files (ReLU gate); Qwen2:
/// the Qwen2 technical report (arXiv 2407.10671, Table 1) and its `config.json` (SiLU gate,
/// the embedding padded to 151,936 rows).
/// Qwen2.5-1.5B, Qwen1.5-1.8B and Qwen1.5-0.5B (the models of the public on-device
/// measurements): their published `config.json` files (Qwen1.5's biases on Q/K/V cost nothing
/// here).
const PRESETS: [(&str, [usize; 7], Activation); 7] = [
    // layers, hidden, ffn, q_heads, kv_heads, head_dim, vocab
    (
        "phonelm-0.5b",
        [24, 1024, 4864, 16, 16, 64, 49152],
        Activation::Relu,
    ),
    (
        "phonelm-1.5b",
        [19, 2560, 6816, 16, 16, 160, 49152],
        Activation::Relu,
    ),
    (
        "qwen2-0.5b",
        [24, 896, 4864, 14, 2, 64, 151_936],
        Activation::Silu,
    ),
    (
        "qwen2-1.5b",
        [28, 1536, 8960, 12, 2, 128, 151_936],
        Activation::Silu,
    ),
    (
        "qwen2.5-1.5b",
        [28, 1536, 8960, 12, 2, 128, 151_936],
        Activation::Silu,
    ),
    (
        "qwen1.5-1.8b",
        [24, 2048, 5504, 16, 16, 128, 151_936],
        Activation::Silu,
    ),
    (
        "qwen1.5-0.5b",
        [24, 1024, 2816, 16, 16, 64, 151_936],
        Activation::Silu,
    ),
];

impl TransformerShape {
    /// The names of the built-in shapes.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|(n, _, _)| *n).collect()
    }

    /// A built-in shape by name (case-insensitive: `Qwen2-1.5B` is `qwen2-1.5b`).
    pub fn preset(name: &str) -> Result<Self> {
        let key = name.to_ascii_lowercase();
        let (n, [layers, hidden, ffn, q_heads, kv_heads, head_dim, vocab], activation) = PRESETS
            .iter()
            .find(|(n, _, _)| *n == key)
            .ok_or_else(|| SimError::UnknownModel {
                name: name.to_string(),
                known: Self::preset_names().join(", "),
            })?;
        Ok(TransformerShape {
            name: n.to_string(),
            layers: *layers,
            hidden: *hidden,
            ffn: *ffn,
            q_heads: *q_heads,
            kv_heads: *kv_heads,
            head_dim: *head_dim,
            vocab: *vocab,
            activation: *activation,
        })
    }

    /// Checks that every size is at least 1 and the heads group.
    pub fn validate(&self) -> Result<()> {
        check_attention_sizes(
            &[
                ("layers", self.layers),
                ("hidden", self.hidden),
                ("ffn", self.ffn),
                ("q_heads", self.q_heads),
                ("kv_heads", self.kv_heads),
                ("head_dim", self.head_dim),
                ("vocab", self.vocab),
            ],
            self.q_heads,
            self.kv_heads,
        )
    }

    /// INT8 weight bytes of one layer's linear layers.
    pub fn layer_weight_bytes(&self) -> u64 {
        let attn = self.head_dim * (self.q_heads + self.kv_heads) * 2 * self.hidden;
        (attn + 3 * self.hidden * self.ffn) as u64
    }
}
