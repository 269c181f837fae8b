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
    /// The longest sequence the model takes (prompt plus generated tokens).
    pub context_len: usize,
    /// Where `context_len` comes from (a config file and key, or a GGUF metadata key).
    pub context_source: String,
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

/// A built-in shape: name, sizes, gate activation, context length and its source.
struct Preset {
    name: &'static str,
    /// layers, hidden, ffn, q_heads, kv_heads, head_dim, vocab
    sizes: [usize; 7],
    activation: Activation,
    context_len: usize,
    context_source: &'static str,
}

/// PhoneLM's context length: `max_position_embeddings` 2048 of the `mllmTeam/PhoneLM-*`
/// `config.json` files on Hugging Face (the PhoneLM repository trains with `context_size: 2048`;
/// nothing in the project's reference files states it).
const PHONELM_CONTEXT: &str = "config.json of mllmTeam/PhoneLM-0.5B-Instruct and \
    mllmTeam/PhoneLM-1.5B-Instruct on Hugging Face: max_position_embeddings";

/// The context length of the Qwen models the project's reference gives
/// (`/work/shared/reference/paper-facts.md`, "Model configurations": context 32768 for
/// Qwen2-1.5B / Qwen2.5-1.5B, Qwen1.5-1.8B and Qwen1.5-0.5B, from their `config.json`).
const QWEN_CONTEXT: &str = "the models' published config.json (paper-facts.md, \
    \"Model configurations\": context 32768)";

/// Qwen2-0.5B's context length: not in the reference files; `max_position_embeddings` 32768
/// of the instruction-tuned model's `config.json` (the 32K the Qwen2 model card gives the
/// 0.5B and 1.5B models; the base model's file says 131072, past what it was trained on).
const QWEN2_05B_CONTEXT: &str =
    "config.json of Qwen/Qwen2-0.5B-Instruct on Hugging Face: max_position_embeddings";

/// The paper's four models by shape (Table 5 gives heads, KV heads, head dim and layers; the
/// hidden, MLP and vocabulary sizes are the models' published configurations).
/// PhoneLM: the `mllmTeam/PhoneLM-{0.5B,1.5B}-Instruct` `config.json` files (ReLU gate); Qwen2:
/// the Qwen2 technical report (arXiv 2407.10671, Table 1) and its `config.json` (SiLU gate,
/// the embedding padded to 151,936 rows).
/// Qwen2.5-1.5B, Qwen1.5-1.8B and Qwen1.5-0.5B (the models of the public on-device
/// measurements): their published `config.json` files (Qwen1.5's biases on Q/K/V cost nothing
/// here). Each context length names its source ([`TransformerShape::context_source`]).
const PRESETS: [Preset; 7] = [
    Preset {
        name: "phonelm-0.5b",
        sizes: [24, 1024, 4864, 16, 16, 64, 49152],
        activation: Activation::Relu,
        context_len: 2048,
        context_source: PHONELM_CONTEXT,
    },
    Preset {
        name: "phonelm-1.5b",
        sizes: [19, 2560, 6816, 16, 16, 160, 49152],
        activation: Activation::Relu,
        context_len: 2048,
        context_source: PHONELM_CONTEXT,
    },
    Preset {
        name: "qwen2-0.5b",
        sizes: [24, 896, 4864, 14, 2, 64, 151_936],
        activation: Activation::Silu,
        context_len: 32768,
        context_source: QWEN2_05B_CONTEXT,
    },
    Preset {
        name: "qwen2-1.5b",
        sizes: [28, 1536, 8960, 12, 2, 128, 151_936],
        activation: Activation::Silu,
        context_len: 32768,
        context_source: QWEN_CONTEXT,
    },
    Preset {
        name: "qwen2.5-1.5b",
        sizes: [28, 1536, 8960, 12, 2, 128, 151_936],
        activation: Activation::Silu,
        context_len: 32768,
        context_source: QWEN_CONTEXT,
    },
    Preset {
        name: "qwen1.5-1.8b",
        sizes: [24, 2048, 5504, 16, 16, 128, 151_936],
        activation: Activation::Silu,
        context_len: 32768,
        context_source: QWEN_CONTEXT,
    },
    Preset {
        name: "qwen1.5-0.5b",
        sizes: [24, 1024, 2816, 16, 16, 64, 151_936],
        activation: Activation::Silu,
        context_len: 32768,
        context_source: QWEN_CONTEXT,
    },
];

impl TransformerShape {
    /// The names of the built-in shapes.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|p| p.name).collect()
    }

    /// A built-in shape by name (case-insensitive: `Qwen2-1.5B` is `qwen2-1.5b`).
    pub fn preset(name: &str) -> Result<Self> {
        let key = name.to_ascii_lowercase();
        let p = PRESETS
            .iter()
            .find(|p| p.name == key)
            .ok_or_else(|| SimError::UnknownModel {
                name: name.to_string(),
                known: Self::preset_names().join(", "),
            })?;
        let [layers, hidden, ffn, q_heads, kv_heads, head_dim, vocab] = p.sizes;
        Ok(TransformerShape {
            name: p.name.to_string(),
            layers,
            hidden,
            ffn,
            q_heads,
            kv_heads,
            head_dim,
            vocab,
            activation: p.activation,
            context_len: p.context_len,
            context_source: p.context_source.to_string(),
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
                ("context_len", self.context_len),
            ],
            self.q_heads,
            self.kv_heads,
        )
    }

    /// Checks that `value` tokens (what `argument` asks for) fit the model's context.
    pub fn check_tokens(&self, argument: &str, value: usize) -> Result<()> {
        if value > self.context_len {
            return Err(SimError::PastContext {
                argument: argument.to_string(),
                value,
                model: self.name.clone(),
                limit: self.context_len,
                origin: self.context_source.clone(),
            });
        }
        Ok(())
    }

    /// INT8 weight bytes of one layer's linear layers.
    pub fn layer_weight_bytes(&self) -> u64 {
        let attn = self.head_dim * (self.q_heads + self.kv_heads) * 2 * self.hidden;
        (attn + 3 * self.hidden * self.ffn) as u64
    }
}
