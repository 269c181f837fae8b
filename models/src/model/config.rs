//! A model's shape and constants from its GGUF metadata: the architectures the forward pass
//! runs, and what its kernels do not compute, refused by name.

use super::rope::{Rope, RopeStyle};
use crate::error::{ModelError, Result};
use crate::gguf::{Gguf, Value};

/// The architectures the forward pass runs (GGUF `general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `llama`: Model 1–3.x, SmolLM, TinyLlama, Mistral-style dense models.
    Model,
    /// `qwen2`: Qwen1.5, Qwen2 and Qwen2.5 (biases on the Q, K and V projections).
    Qwen2,
    /// `phi3`: Phi-3 and Phi-3.5 mini (fused QKV and gate/up weights).
    Phi3,
}

/// Architectures known to need what the forward pass does not compute, and what that is.
const REFUSED: &[(&str, &str)] = &[
    (
        "gemma2",
        "attention logit soft-capping, sliding-window layers and a GELU MLP",
    ),
    (
        "gemma3",
        "sliding-window layers, per-head Q/K norms and a GELU MLP",
    ),
    ("gemma", "a GELU MLP and embeddings scaled by √hidden"),
    ("qwen3", "per-head Q/K RMSNorm"),
    ("qwen2moe", "a mixture-of-experts MLP"),
    ("qwen3moe", "a mixture-of-experts MLP"),
    ("phi2", "LayerNorm and attention in parallel with the MLP"),
    (
        "qwen",
        "Qwen (1)'s fused QKV with biases and its own RoPE layout",
    ),
];

/// Metadata (after `<arch>.`) that changes what attention computes, and what it means.
const REFUSED_KEYS: &[(&str, &str)] = &[
    ("attn_logit_softcapping", "attention logit soft-capping"),
    ("final_logit_softcapping", "output logit soft-capping"),
    (
        "attention.scale",
        "an attention scale other than 1/√head_dim",
    ),
    ("embedding_scale", "scaled embeddings"),
    ("residual_scale", "a scaled residual stream"),
    ("logit_scale", "scaled output logits"),
    ("expert_count", "a mixture-of-experts MLP"),
    (
        "attention.layer_norm_epsilon",
        "LayerNorm (the forward pass runs RMSNorm)",
    ),
];

impl Architecture {
    /// Every architecture the forward pass runs.
    pub const ALL: [Architecture; 3] =
        [Architecture::Model, Architecture::Qwen2, Architecture::Phi3];

    /// The architecture named `name` in a GGUF file, or why it does not run.
    pub fn from_name(name: &str) -> Result<Self> {
        if let Some(a) = Self::ALL.into_iter().find(|a| a.name() == name) {
            return Ok(a);
        }
        let supported = Self::ALL.map(Architecture::name).join(", ");
        let detail = match REFUSED.iter().find(|(n, _)| *n == name) {
            Some((_, needs)) => format!(
                "architecture `{name}` needs {needs}, which the forward pass does not compute \
                 (supported: {supported})"
            ),
            None => format!("architecture `{name}` (supported: {supported})"),
        };
        Err(ModelError::Unsupported { detail })
    }

    /// The GGUF name, also the prefix of its metadata keys.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Model => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Phi3 => "phi3",
        }
    }

    /// How RoPE pairs a head's dimensions: llama.cpp's converter permutes Model's Q/K rows so
    /// pairs are adjacent; the others keep Hugging Face's halves.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Architecture::Model => RopeStyle::Adjacent,
            Architecture::Qwen2 | Architecture::Phi3 => RopeStyle::Halves,
        }
    }
}

/// Shape and constants of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The architecture.
    pub architecture: Architecture,
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// MLP inner size.
    pub ffn: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// The rotary position embedding.
    pub rope: Rope,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Training context length (`<arch>.context_length`, at least 1).
    pub context: usize,
    /// The sliding attention window (`<arch>.attention.sliding_window`), if the model has one:
    /// token counts up to it attend exactly as full causal attention does.
    pub sliding_window: Option<usize>,
}

/// Reads `<arch>.<suffix>` metadata.
struct Meta<'g> {
    g: &'g Gguf,
    arch: &'static str,
}

impl Meta<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn get(&self, suffix: &str) -> Option<&Value> {
        self.g.get(&self.key(suffix))
    }

    fn usize(&self, suffix: &str) -> Result<usize> {
        self.get(suffix)
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| ModelError::Missing {
                what: format!("positive integer `{}`", self.key(suffix)),
            })
    }

    fn usize_or(&self, suffix: &str, default: usize) -> Result<usize> {
        match self.get(suffix) {
            None => Ok(default),
            Some(_) => self.usize(suffix),
        }
    }

    fn f32(&self, suffix: &str, default: Option<f32>) -> Result<f32> {
        match (self.get(suffix).map(Value::as_f64), default) {
            (Some(Some(v)), _) if v.is_finite() && v > 0.0 => Ok(v as f32),
            (None, Some(d)) => Ok(d),
            _ => Err(ModelError::Missing {
                what: format!("positive number `{}`", self.key(suffix)),
            }),
        }
    }

    /// Refuses metadata that changes what attention or the MLP computes.
    fn refuse_unsupported(&self) -> Result<()> {
        for (suffix, meaning) in REFUSED_KEYS {
            let Some(value) = self.get(suffix) else {
                continue;
            };
            let inert = match value {
                Value::U64(0) | Value::I64(0) => true,
                Value::F64(v) => *v == 0.0,
                _ => false,
            };
            if !inert {
                return Err(ModelError::Unsupported {
                    detail: format!(
                        "`{}` = {value:?}: {meaning}, which the forward pass does not compute",
                        self.key(suffix)
                    ),
                });
            }
        }
        Ok(())
    }
}

impl ModelConfig {
    /// The configuration of a GGUF file from its metadata (and the small RoPE-factor tensor
    /// when the file has one), before any weight loads.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let name = g
            .get("general.architecture")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::Missing {
                what: "string `general.architecture`".into(),
            })?;
        let architecture = Architecture::from_name(name)?;
        let meta = Meta {
            g,
            arch: architecture.name(),
        };
        meta.refuse_unsupported()?;
        let hidden = meta.usize("embedding_length")?;
        let q_heads = meta.usize("attention.head_count")?;
        let kv_heads = meta.usize_or("attention.head_count_kv", q_heads)?;
        if !q_heads.is_multiple_of(kv_heads) {
            return Err(ModelError::Unsupported {
                detail: format!("{q_heads} query heads over {kv_heads} KV heads"),
            });
        }
        let head_dim = head_dim(&meta, hidden, q_heads)?;
        let embed_info = g.tensor("token_embd.weight")?;
        let sliding_window = match meta.get("attention.sliding_window") {
            None => None,
            Some(_) => Some(meta.usize("attention.sliding_window")?),
        };
        Ok(ModelConfig {
            architecture,
            layers: meta.usize("block_count")?,
            hidden,
            ffn: meta.usize("feed_forward_length")?,
            q_heads,
            kv_heads,
            head_dim,
            vocab: embed_info.dims.get(1).copied().unwrap_or(0) as usize,
            rope: rope(&meta, architecture.rope_style(), head_dim)?,
            norm_eps: meta.f32("attention.layer_norm_rms_epsilon", None)?,
            context: meta.usize("context_length")?,
            sliding_window,
        })
    }

    /// Query width `q_heads · head_dim`.
    pub fn q_dim(&self) -> usize {
        self.q_heads * self.head_dim
    }

    /// Key (and value) width `kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// The most tokens one pass takes: the context length, or the sliding window when shorter
    /// (past it the model attends to a window, which the kernels do not compute).
    pub fn max_tokens(&self) -> usize {
        self.sliding_window
            .map_or(self.context, |w| w.min(self.context))
    }

    /// Where [`ModelConfig::max_tokens`] comes from.
    pub fn max_tokens_source(&self) -> String {
        let arch = self.architecture.name();
        match self.sliding_window {
            Some(w) if w < self.context => format!(
                "the GGUF metadata `{arch}.attention.sliding_window`: longer passes attend to a \
                 sliding window, which the kernels do not compute"
            ),
            _ => format!("the GGUF metadata `{arch}.context_length`"),
        }
    }

    /// Checks that `value` tokens (what `argument` asks for) fit [`ModelConfig::max_tokens`].
    pub fn check_tokens(&self, argument: &str, value: usize) -> Result<()> {
        if value > self.max_tokens() {
            return Err(ModelError::PastContext {
                argument: argument.to_string(),
                value,
                limit: self.max_tokens(),
                origin: self.max_tokens_source(),
            });
        }
        Ok(())
    }
}

/// `<arch>.attention.key_length` (equal to `value_length`), else `hidden / q_heads`.
fn head_dim(meta: &Meta<'_>, hidden: usize, q_heads: usize) -> Result<usize> {
    let d = match meta.get("attention.key_length") {
        Some(_) => meta.usize("attention.key_length")?,
        None if hidden.is_multiple_of(q_heads) => hidden / q_heads,
        None => {
            return Err(ModelError::Unsupported {
                detail: format!("hidden {hidden} over {q_heads} query heads"),
            })
        }
    };
    let dv = meta.usize_or("attention.value_length", d)?;
    if dv != d {
        return Err(ModelError::Unsupported {
            detail: format!("key length {d} differs from value length {dv}"),
        });
    }
    if !d.is_multiple_of(2) {
        return Err(ModelError::Unsupported {
            detail: format!("odd head dimension {d}"),
        });
    }
    Ok(d)
}

/// The RoPE of the metadata: base, rotated dimensions, linear scaling and Model 3's per-frequency
/// factors (`rope_freqs.weight`); YaRN and LongRoPE are refused by name.
fn rope(meta: &Meta<'_>, style: RopeStyle, head_dim: usize) -> Result<Rope> {
    let dims = meta.usize_or("rope.dimension_count", head_dim)?;
    if !dims.is_multiple_of(2) || dims > head_dim {
        return Err(ModelError::Unsupported {
            detail: format!(
                "`{}` = {dims}: RoPE must rotate an even number of dimensions up to the head's {head_dim}",
                meta.key("rope.dimension_count")
            ),
        });
    }
    let scaling = meta
        .get("rope.scaling.type")
        .map(|v| v.as_str().unwrap_or("(not a string)"));
    let position_scale = match scaling {
        None | Some("none") => 1.0,
        Some("linear") => 1.0 / meta.f32("rope.scaling.factor", None)?,
        Some(other) => {
            return Err(ModelError::Unsupported {
                detail: format!(
                    "`{}` = `{other}`: only linear RoPE scaling (and Model 3's `rope_freqs`) is computed",
                    meta.key("rope.scaling.type")
                ),
            })
        }
    };
    for long in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if meta.g.tensor(long).is_ok() {
            return Err(ModelError::Unsupported {
                detail: format!(
                    "tensor `{long}`: LongRoPE (the 128k-context variants) is not computed; \
                     use a short-context variant"
                ),
            });
        }
    }
    let factors = match meta.g.tensor("rope_freqs.weight") {
        Err(_) => None,
        Ok(info) => {
            if info.dims != [dims as u64 / 2] {
                return Err(ModelError::Unsupported {
                    detail: format!(
                        "tensor `rope_freqs.weight` has dims {:?}, expected [{}]",
                        info.dims,
                        dims / 2
                    ),
                });
            }
            let f = meta.g.dequantize("rope_freqs.weight")?;
            if let Some(bad) = f.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(ModelError::Unsupported {
                    detail: format!(
                        "`rope_freqs.weight` holds the factor {bad}; factors must be positive"
                    ),
                });
            }
            Some(f)
        }
    };
    Ok(Rope {
        style,
        dims,
        base: meta.f32("rope.freq_base", Some(10_000.0))?,
        position_scale,
        factors,
    })
}
