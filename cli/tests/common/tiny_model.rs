//! Tiny random-weight GGUF models of each architecture the harness runs, with a vocabulary of
//! single bytes (byte-level BPE for Qwen2, SentencePiece byte fallback for Phi-3), so commands
//! can run end to end on a non-Llama model in a second.

use shadowattn_models::gguf::Value;
use shadowattn_models::GgufWriter;
use std::path::Path;

/// Layers, query heads and KV heads of every tiny model.
pub const SHAPE: (usize, usize, usize) = (2, 4, 2);
const HIDDEN: usize = 64;
const FFN: usize = 96;

/// The architectures a tiny model can have.
#[derive(Clone, Copy, Debug)]
pub enum Arch {
    /// `qwen2`: Q/K/V biases, byte-level BPE with the `qwen2` pre-tokenizer.
    Qwen2,
    /// `phi3`: fused QKV and gate/up, SentencePiece with byte fallback.
    Phi3,
}

/// GPT-2's printable character of every byte.
fn byte_chars() -> Vec<String> {
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
                char::from(b).to_string()
            } else {
                next += 1;
                char::from_u32(next - 1).expect("valid").to_string()
            }
        })
        .collect()
}

fn strs(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::Str).collect())
}

/// Writes the tiny model of `arch` to `path` (weights from `seed`).
pub fn write(arch: Arch, path: &Path, seed: u64) {
    let (layers, q_heads, kv_heads) = SHAPE;
    let d = HIDDEN / q_heads;
    let (q, kv) = (q_heads * d, kv_heads * d);
    let name = match arch {
        Arch::Qwen2 => "qwen2",
        Arch::Phi3 => "phi3",
    };
    let mut g = GgufWriter::new();
    let u = |v: usize| Value::U64(v as u64);
    let key = |k: &str| format!("{name}.{k}");
    g.metadata("general.architecture", Value::Str(name.into()))
        .metadata("general.name", Value::Str(format!("tiny-{name}")))
        .metadata(&key("block_count"), u(layers))
        .metadata(&key("embedding_length"), u(HIDDEN))
        .metadata(&key("feed_forward_length"), u(FFN))
        .metadata(&key("attention.head_count"), u(q_heads))
        .metadata(&key("attention.head_count_kv"), u(kv_heads))
        .metadata(&key("context_length"), u(1024))
        .metadata(&key("rope.freq_base"), Value::F64(10_000.0))
        .metadata(&key("attention.layer_norm_rms_epsilon"), Value::F64(1e-6));
    let vocab = match arch {
        Arch::Qwen2 => {
            let tokens = byte_chars();
            g.metadata("tokenizer.ggml.model", Value::Str("gpt2".into()))
                .metadata("tokenizer.ggml.pre", Value::Str("qwen2".into()))
                .metadata("tokenizer.ggml.merges", Value::Array(vec![]));
            let n = tokens.len();
            g.metadata("tokenizer.ggml.tokens", strs(tokens));
            n
        }
        Arch::Phi3 => {
            let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
            tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
            let mut types = vec![Value::I64(2), Value::I64(3), Value::I64(3)];
            types.extend((0..256).map(|_| Value::I64(6)));
            let n = tokens.len();
            g.metadata("tokenizer.ggml.model", Value::Str("llama".into()))
                .metadata("tokenizer.ggml.tokens", strs(tokens))
                .metadata(
                    "tokenizer.ggml.scores",
                    Value::Array(vec![Value::F64(0.0); n]),
                )
                .metadata("tokenizer.ggml.token_type", Value::Array(types))
                .metadata("tokenizer.ggml.bos_token_id", u(1))
                .metadata("tokenizer.ggml.add_bos_token", Value::Bool(true));
            n
        }
    };
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut random = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    };
    let w = |rows: usize, cols: usize| (vec![rows, cols], 1.0 / (cols as f32).sqrt());
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, (shape, scale): (Vec<usize>, f32)| {
        let n = shape.iter().product();
        let data = if scale == 0.0 {
            vec![1.0; n]
        } else {
            random(n, scale)
        };
        tensors.push((name, shape, data));
    };
    let ones = |n: usize| (vec![n], 0.0);
    // Small embeddings: the tied output head then gives logits of σ ≈ 0.8, a perplexity near
    // the vocabulary size.
    add("token_embd.weight".into(), (vec![vocab, HIDDEN], 0.1));
    for l in 0..layers {
        let p = |s: &str| format!("blk.{l}.{s}");
        add(p("attn_norm.weight"), ones(HIDDEN));
        match arch {
            Arch::Qwen2 => {
                add(p("attn_q.weight"), w(q, HIDDEN));
                add(p("attn_k.weight"), w(kv, HIDDEN));
                add(p("attn_v.weight"), w(kv, HIDDEN));
                add(p("attn_q.bias"), (vec![q], 0.3));
                add(p("attn_k.bias"), (vec![kv], 0.3));
                add(p("attn_v.bias"), (vec![kv], 0.3));
                add(p("ffn_gate.weight"), w(FFN, HIDDEN));
                add(p("ffn_up.weight"), w(FFN, HIDDEN));
            }
            Arch::Phi3 => {
                add(p("attn_qkv.weight"), w(q + 2 * kv, HIDDEN));
                add(p("ffn_up.weight"), w(2 * FFN, HIDDEN));
            }
        }
        add(p("attn_output.weight"), w(HIDDEN, q));
        add(p("ffn_norm.weight"), ones(HIDDEN));
        add(p("ffn_down.weight"), w(HIDDEN, FFN));
    }
    add("output_norm.weight".into(), ones(HIDDEN));
    for (name, shape, data) in &tensors {
        g.tensor_f32(name, shape, data).expect("consistent shapes");
    }
    g.write(path).expect("writable test directory");
}
