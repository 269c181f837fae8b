//! GPT-2-style byte-level BPE built from the vocabulary and merges stored in a GGUF file
//! (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`), with SmolLM2's pre-tokenizer: every digit
//! on its own, then the GPT-2 split pattern, no prefix space.

use crate::error::{ModelError, Result};
use crate::gguf::Gguf;
use fancy_regex::Regex;
use std::collections::HashMap;

/// GPT-2's split pattern (contractions, letters, numbers, other symbols, whitespace).
const SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// A byte-level BPE tokenizer.
#[derive(Debug)]
pub struct Tokenizer {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
    ranks: HashMap<(String, String), usize>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    split: Regex,
    /// Beginning-of-sequence token, if the model adds one.
    pub bos: Option<u32>,
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_chars() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("valid code point");
            next += 1;
            c
        };
    }
    map
}

impl Tokenizer {
    /// The tokenizer stored in a GGUF file.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = g.get("tokenizer.ggml.model").and_then(|v| v.as_str());
        if model != Some("gpt2") {
            return Err(ModelError::Unsupported {
                detail: format!(
                    "tokenizer model {model:?}; only byte-level BPE (`gpt2`) is supported"
                ),
            });
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            g.get(key)
                .and_then(|v| v.as_array())
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect())
                .ok_or_else(|| ModelError::Missing {
                    what: format!("string array `{key}`"),
                })
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| ModelError::Missing {
                what: format!("merge {rank} in `a b` form (got `{m}`)"),
            })?;
            ranks.entry((a.to_string(), b.to_string())).or_insert(rank);
        }
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let byte_to_char = byte_chars();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let add_bos = matches!(
            g.get("tokenizer.ggml.add_bos_token"),
            Some(crate::gguf::Value::Bool(true))
        );
        let bos = g
            .get("tokenizer.ggml.bos_token_id")
            .and_then(|v| v.as_u64())
            .filter(|&id| add_bos && (id as usize) < tokens.len())
            .map(|id| id as u32);
        Ok(Tokenizer {
            ids,
            tokens,
            ranks,
            byte_to_char,
            char_to_byte,
            split: Regex::new(SPLIT).expect("the GPT-2 pattern compiles"),
            bos,
        })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Pre-tokenized pieces: digits one by one, then the GPT-2 pattern within the rest.
    fn pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut out = Vec::new();
        let mut start = 0;
        let flush = |seg: &'t str, out: &mut Vec<&'t str>| {
            let mut pos = 0;
            while pos < seg.len() {
                match self.split.find_from_pos(seg, pos) {
                    Ok(Some(m)) if m.end() > pos => {
                        out.push(&seg[m.start()..m.end()]);
                        pos = m.end();
                    }
                    _ => {
                        out.push(&seg[pos..]);
                        break;
                    }
                }
            }
        };
        for (i, c) in text.char_indices() {
            if c.is_ascii_digit() {
                flush(&text[start..i], &mut out);
                out.push(&text[i..i + c.len_utf8()]);
                start = i + c.len_utf8();
            }
        }
        flush(&text[start..], &mut out);
        out
    }

    /// BPE of one piece's byte-level characters.
    fn bpe(&self, piece: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut symbols: Vec<String> = piece
            .bytes()
            .map(|b| self.byte_to_char[b as usize].to_string())
            .collect();
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", symbols[i], symbols[i + 1]);
            symbols.splice(i..i + 2, [merged]);
        }
        for s in symbols {
            let id = self.ids.get(&s).ok_or_else(|| ModelError::Missing {
                what: format!("vocabulary entry for `{s}`"),
            })?;
            out.push(*id);
        }
        Ok(())
    }

    /// Token ids of `text` (without BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut out = Vec::with_capacity(text.len() / 3);
        for piece in self.pieces(text) {
            if let Some(ids) = cache.get(piece) {
                out.extend_from_slice(ids);
                continue;
            }
            let mut ids = Vec::new();
            self.bpe(piece, &mut ids)?;
            out.extend_from_slice(&ids);
            cache.insert(piece, ids);
        }
        Ok(out)
    }

    /// The text of token ids (bytes that are not UTF-8 are replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if let Some(t) = self.tokens.get(id as usize) {
                bytes.extend(t.chars().filter_map(|c| self.char_to_byte.get(&c)));
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
