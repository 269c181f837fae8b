//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): the pre-tokenizer's pieces are mapped byte
//! by byte to GPT-2's printable characters, then merged by the rank of each pair in
//! `tokenizer.ggml.merges` (lowest rank first, ties to the leftmost pair), as llama.cpp does.

use super::merge::merge;
use super::pre::{PreSpec, PreTokenizer};
use super::{TokenType, Vocab};
use crate::error::{ModelError, Result};
use crate::gguf::Gguf;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::HashMap;

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

/// A byte-level BPE model.
#[derive(Debug)]
pub(crate) struct Bpe {
    /// Rank of each merge, keyed `left right` as stored in the file.
    ranks: HashMap<String, usize>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    pre: PreTokenizer,
    ignore_merges: bool,
}

impl Bpe {
    pub(crate) fn from_gguf(g: &Gguf, spec: PreSpec) -> Result<Self> {
        let merges = super::strings(g, "tokenizer.ggml.merges")?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte; the pair is looked up
            // as `left right`, which is the line itself.
            if !m.bytes().skip(1).any(|b| b == b' ') {
                return Err(ModelError::Missing {
                    what: format!("merge {rank} in `a b` form (got `{m}`)"),
                });
            }
            // The first rank of a pair listed twice stands.
            ranks.entry(m.clone()).or_insert(rank);
        }
        let byte_to_char = byte_chars();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Bpe {
            ranks,
            byte_to_char,
            char_to_byte,
            pre: PreTokenizer::new(spec.family),
            ignore_merges: spec.ignore_merges,
        })
    }

    /// Token ids of `text`.
    pub(crate) fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
        for piece in self.pre.split(text)? {
            if let Some(ids) = cache.get(piece) {
                out.extend_from_slice(ids);
                continue;
            }
            let mut ids = Vec::new();
            self.piece(vocab, piece, &mut ids)?;
            out.extend_from_slice(&ids);
            cache.insert(piece, ids);
        }
        Ok(())
    }

    /// BPE of one piece's byte-level characters.
    fn piece(&self, vocab: &Vocab, piece: &str, out: &mut Vec<u32>) -> Result<()> {
        let word: String = piece
            .bytes()
            .map(|b| self.byte_to_char[b as usize])
            .collect();
        if self.ignore_merges {
            if let Some(id) = vocab.id(&word) {
                out.push(id);
                return Ok(());
            }
        }
        let key = RefCell::new(String::new());
        let symbols = merge(&word, |l, r, _| {
            let mut k = key.borrow_mut();
            k.clear();
            k.push_str(l);
            k.push(' ');
            k.push_str(r);
            self.ranks.get(k.as_str()).map(|&rank| Reverse(rank))
        });
        for range in symbols {
            let s = &word[range];
            if let Some(id) = vocab.id(s) {
                out.push(id);
                continue;
            }
            // What the merges made is not a token: one token per byte, as llama.cpp does.
            for c in s.chars() {
                let id =
                    vocab
                        .id(c.encode_utf8(&mut [0; 4]))
                        .ok_or_else(|| ModelError::Missing {
                            what: format!("vocabulary entry for `{c}` (byte of `{s}`)"),
                        })?;
                out.push(id);
            }
        }
        Ok(())
    }

    /// The bytes of token ids, as llama.cpp's detokenizer gives them without special tokens:
    /// each character of a normal token mapped back to its byte, user-defined tokens as they
    /// are, byte tokens to their byte, control and unknown tokens to nothing.
    pub(crate) fn decode(&self, vocab: &Vocab, ids: &[u32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(t) = vocab.tokens.get(id as usize) else {
                continue;
            };
            match vocab.token_type(id) {
                TokenType::Normal => {
                    bytes.extend(t.chars().filter_map(|c| self.char_to_byte.get(&c)));
                }
                TokenType::UserDefined => bytes.extend(t.bytes()),
                TokenType::Byte => bytes.extend(super::byte_of(t)),
                TokenType::Other => {}
            }
        }
        bytes
    }
}
