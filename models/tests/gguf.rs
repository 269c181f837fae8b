//! The GGUF reader on files written here: values read back, hand-computed dequantization, typed
//! errors for every kind of corruption, and a fuzz run (proptest mutations of a valid file) that
//! must never panic. `PROPTEST_CASES=1000000 cargo test --release -p shadowattn-models --test gguf`
//! is the long run.

use proptest::prelude::*;
use shadowattn_models::gguf::{dequantize, Gguf, TensorType, Value};
use shadowattn_models::ModelError;

mod common;
use common::Writer;

fn h(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

/// One Q4_1 block: d = 0.5, m = −1, nibbles j (low) and 15 − j (high).
fn q4_1_block() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(h(0.5));
    b.extend(h(-1.0));
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    b
}

/// One Q8_0 block: d = 0.25, q = −16..16.
fn q8_0_block() -> Vec<u8> {
    let mut b = h(0.25).to_vec();
    b.extend((-16i8..16).map(|q| q as u8));
    b
}

fn sample() -> Vec<u8> {
    let f32s: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    Writer::default()
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 30)
        .kv_f32("llama.rope.freq_base", 100000.0)
        .kv_strs("tokenizer.ggml.tokens", &["a", "b", "ab"])
        .tensor("norm", &[4], 0, &f32s)
        .tensor("w4", &[32, 1], 3, &q4_1_block())
        .tensor("w8", &[32], 8, &q8_0_block())
        .bytes()
}

#[test]
fn values_and_tensors_read_back() {
    let g = Gguf::parse(sample()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(
        g.get("general.architecture").unwrap().as_str(),
        Some("llama")
    );
    assert_eq!(g.get("llama.block_count").unwrap().as_u64(), Some(30));
    assert_eq!(
        g.get("llama.rope.freq_base").unwrap().as_f64(),
        Some(100000.0)
    );
    let toks = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    assert_eq!(
        toks,
        [
            Value::Str("a".into()),
            Value::Str("b".into()),
            Value::Str("ab".into())
        ]
    );
    assert_eq!(g.dequantize("norm").unwrap(), [1.5, -2.0, 0.25, 8.0]);
    let w4 = g.dequantize("w4").unwrap();
    // x[j] = 0.5·j − 1, x[j+16] = 0.5·(15 − j) − 1.
    for j in 0..16 {
        assert_eq!(w4[j], 0.5 * j as f32 - 1.0);
        assert_eq!(w4[j + 16], 0.5 * (15 - j) as f32 - 1.0);
    }
    let w8 = g.dequantize("w8").unwrap();
    assert_eq!(w8, (-16..16).map(|q| 0.25 * q as f32).collect::<Vec<_>>());
    assert_eq!(g.tensor("w4").unwrap().ty, TensorType::Q4_1);
    assert!(matches!(g.tensor("nope"), Err(ModelError::Missing { .. })));
    assert_eq!(dequantize(TensorType::F16, &h(3.0)), [3.0]);
}

/// A Llama header of hidden 8, 2 heads, 1 layer and `context` (absent for `None`), with the
/// embedding the configuration reads its vocabulary from.
fn llama_header(context: Option<u32>) -> Vec<u8> {
    let mut w = Writer::default();
    w.kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 1)
        .kv_u32("llama.embedding_length", 8)
        .kv_u32("llama.feed_forward_length", 16)
        .kv_u32("llama.attention.head_count", 2)
        .kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    if let Some(c) = context {
        w.kv_u32("llama.context_length", c);
    }
    w.tensor("token_embd.weight", &[8, 4], 0, &[0u8; 4 * 8 * 4])
        .bytes()
}

#[test]
fn the_context_length_bounds_token_counts_and_must_be_there() {
    use shadowattn_models::ModelConfig;
    let c = ModelConfig::from_gguf(&Gguf::parse(llama_header(Some(8))).unwrap()).unwrap();
    assert_eq!(c.context, 8);
    c.check_tokens("--window", 8).unwrap();
    let e = c.check_tokens("--window", 9).unwrap_err();
    assert!(
        matches!(&e, ModelError::PastContext { argument, value: 9, limit: 8, origin }
            if argument == "--window" && origin.contains("llama.context_length")),
        "{e:?}"
    );
    for context in [Some(0), None] {
        let e = ModelConfig::from_gguf(&Gguf::parse(llama_header(context)).unwrap()).unwrap_err();
        assert!(
            matches!(&e, ModelError::Missing { what } if what.contains("llama.context_length")),
            "{context:?}: {e:?}"
        );
    }
}

fn parse_err(bytes: Vec<u8>) -> String {
    match Gguf::parse(bytes) {
        Err(e @ ModelError::Gguf { .. }) => e.to_string(),
        other => panic!("expected a GGUF error, got {other:?}"),
    }
}

#[test]
fn corruption_is_a_typed_error_that_says_what() {
    let good = sample();
    let mut b = good.clone();
    b[0] = b'X';
    assert!(parse_err(b).contains("magic"));
    let mut b = good.clone();
    b[4] = 9;
    assert!(parse_err(b).contains("version 9"));
    assert!(parse_err(good[..good.len() - 5].to_vec()).contains("inside the"));
    assert!(parse_err(good[..40].to_vec()).contains("remain"));
    // Absurd counts are refused before anything is allocated.
    let mut b = good.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(parse_err(b).contains("cannot fit"));
    let mut b = good.clone();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(parse_err(b).contains("cannot fit"));
    // Unknown tensor type, too many dims, duplicate names, misaligned data.
    let bad_type = Writer::default().tensor("t", &[4], 77, &[0; 16]).bytes();
    assert!(parse_err(bad_type).contains("GGML type 77"));
    let dims = Writer::default()
        .tensor("t", &[1, 1, 1, 1, 1], 0, &[0; 4])
        .bytes();
    assert!(parse_err(dims).contains("5 dimensions"));
    let dup = Writer::default()
        .tensor("t", &[1], 0, &[0; 4])
        .tensor("t", &[1], 0, &[0; 4])
        .bytes();
    assert!(parse_err(dup).contains("twice"));
    let odd_rows = Writer::default().tensor("t", &[16], 3, &[0; 20]).bytes();
    assert!(parse_err(odd_rows).contains("multiples of 32"));
    let zero = Writer::default().tensor("t", &[0], 0, &[]).bytes();
    assert!(parse_err(zero).contains("empty"));
    let overflow = Writer::default()
        .tensor("t", &[1 << 40, 1 << 40], 0, &[0; 4])
        .bytes();
    assert!(parse_err(overflow).contains("overflowing"));
    let mut w = Writer::default();
    w.kv_u32("general.alignment", 3);
    assert!(parse_err(w.bytes()).contains("alignment"));
    let mut w = Writer::default();
    w.kv_u32("k", 1).kv_u32("k", 2);
    assert!(parse_err(w.bytes()).contains("appears twice"));
    assert!(matches!(
        Gguf::open("/nonexistent/model.gguf".as_ref()),
        Err(ModelError::Io { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Any mutation of a valid file parses or fails with a typed error; what parses dequantizes.
    #[test]
    fn mutated_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = sample();
        for (at, v) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *v;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(g) = Gguf::parse(bytes) {
            for t in g.tensors.clone() {
                let values = g.dequantize(&t.name).unwrap();
                prop_assert_eq!(values.len() as u64, t.elements());
            }
        }
    }
}
