//! SentencePiece BPE (`tokenizer.ggml.model = "llama"`) as llama.cpp runs it: spaces become `▁`
//! (with one `▁` in front when `tokenizer.ggml.add_space_prefix`, default true), then, over the
//! whole text, the adjacent pair whose concatenation is the vocabulary entry of highest score
//! (`tokenizer.ggml.scores`) merges first, ties to the leftmost pair. A character that ends up
//! alone and is not in the vocabulary falls back to its UTF-8 bytes as `<0xXX>` tokens.

use super::merge::merge;
use super::{TokenType, Vocab};
use crate::error::{ModelError, Result};
use crate::gguf::{Gguf, Value};
use std::cmp::Ordering;

/// SentencePiece's escaped space.
const SPACE: char = '▁';

/// A vocabulary score, ordered as llama.cpp compares floats (−0 equals +0).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0 + 0.0).total_cmp(&(other.0 + 0.0))
    }
}

/// A SentencePiece model.
#[derive(Debug)]
pub(crate) struct Spm {
    scores: Vec<f32>,
    add_space_prefix: bool,
    /// Token of each byte (`<0xXX>`, or the byte itself for ASCII), if the vocabulary has one.
    byte_tokens: [Option<u32>; 256],
    unk: Option<u32>,
}

impl Spm {
    pub(crate) fn from_gguf(g: &Gguf, vocab: &Vocab) -> Result<Self> {
        let key = "tokenizer.ggml.scores";
        let scores = g
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|v| v.as_f64().map(|s| s as f32)).collect())
            .ok_or_else(|| ModelError::Missing {
                what: format!("number array `{key}` (SentencePiece merges by score)"),
            })?;
        let scores: Vec<f32> = scores;
        if scores.len() < vocab.tokens.len() {
            return Err(ModelError::Missing {
                what: format!(
                    "score for every token (`{key}` has {}, the vocabulary {})",
                    scores.len(),
                    vocab.tokens.len()
                ),
            });
        }
        let add_space_prefix = match g.get("tokenizer.ggml.add_space_prefix") {
            Some(Value::Bool(b)) => *b,
            _ => true,
        };
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = vocab.id(&format!("<0x{b:02X}>")).or_else(|| {
                u8::try_from(b)
                    .ok()
                    .filter(u8::is_ascii)
                    .and_then(|b| vocab.id(char::from(b).encode_utf8(&mut [0; 4])))
            });
        }
        let unk = super::special_id(g, "tokenizer.ggml.unknown_token_id", Some(0), vocab);
        Ok(Spm {
            scores,
            add_space_prefix,
            byte_tokens,
            unk,
        })
    }

    /// Token ids of `text`; `first` says it starts the input or follows a token found in it,
    /// where the space prefix goes.
    pub(crate) fn encode(
        &self,
        vocab: &Vocab,
        text: &str,
        first: bool,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let mut escaped = String::with_capacity(text.len() + 3);
        if self.add_space_prefix && first {
            escaped.push(SPACE);
        }
        escaped.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));
        let symbols = merge(&escaped, |_, _, merged| {
            vocab.id(merged).map(|id| Score(self.scores[id as usize]))
        });
        for range in symbols {
            let s = &escaped[range];
            if let Some(id) = vocab.id(s) {
                out.push(id);
                continue;
            }
            // Only single characters can be left out of the vocabulary (every merge made a
            // token): their bytes, or UNK when a byte has no token.
            let bytes: Option<Vec<u32>> = s.bytes().map(|b| self.byte_tokens[b as usize]).collect();
            match (bytes, self.unk) {
                (Some(ids), _) => out.extend(ids),
                (None, Some(unk)) => out.push(unk),
                (None, None) => {
                    return Err(ModelError::Missing {
                        what: format!("token for `{s}`: no byte tokens and no UNK"),
                    })
                }
            }
        }
        Ok(())
    }

    /// The bytes of token ids, as llama.cpp's detokenizer gives them without special tokens:
    /// `▁` back to a space, byte tokens to their byte, control and unknown tokens to nothing,
    /// and the space the encoder put in front taken off the first token.
    pub(crate) fn decode(&self, vocab: &Vocab, ids: &[u32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let Some(text) = vocab.tokens.get(id as usize) else {
                continue;
            };
            let mut piece = match vocab.token_type(id) {
                TokenType::Normal => text.replace(SPACE, " ").into_bytes(),
                TokenType::Byte => super::byte_of(text).into_iter().collect(),
                TokenType::UserDefined => text.as_bytes().to_vec(),
                TokenType::Other => Vec::new(),
            };
            if i == 0 && self.add_space_prefix && piece.first() == Some(&b' ') {
                piece.remove(0);
            }
            bytes.extend(piece);
        }
        bytes
    }
}
