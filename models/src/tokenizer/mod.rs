//! The tokenizer stored in a GGUF file, run as llama.cpp's `llama_tokenize` runs it without
//! parsing special tokens (control tokens in the text are plain text; user-defined tokens are
//! found in it all the same):
//!
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE (`bpe.rs`) after the pre-tokenizer that
//!   `tokenizer.ggml.pre` names (`pre.rs`: SmolLM's, GPT-2's, Llama 3's, Qwen2's, llama.cpp's
//!   default, and their aliases);
//! - `tokenizer.ggml.model = "llama"`: SentencePiece BPE by token score with byte fallback
//!   (`spm.rs`: Llama 2, TinyLlama, Phi-3, Gemma).
//!
//! [`Tokenizer::bos`] is the token to put first, if the model wants one: llama.cpp's default for
//! the vocabulary (SentencePiece and Llama 3 add BOS, other BPE vocabularies do not) unless
//! `tokenizer.ggml.add_bos_token` says otherwise.

mod bpe;
mod merge;
mod pre;
mod spm;

use crate::error::{ModelError, Result};
use crate::gguf::{Gguf, Value};
use std::collections::HashMap;

/// How a token decodes (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenType {
    /// 1, or no types in the file.
    Normal,
    /// 4: literal text.
    UserDefined,
    /// 6: one byte, `<0xXX>`.
    Byte,
    /// Unknown (2), control (3), unused (5) and anything else: no text.
    Other,
}

/// The token strings and their ids.
#[derive(Debug)]
struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    types: Vec<TokenType>,
}

impl Vocab {
    fn from_gguf(g: &Gguf) -> Result<Self> {
        let tokens = strings(g, "tokenizer.ggml.tokens")?;
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if let Some(first) = ids.insert(t.clone(), i as u32) {
                return Err(ModelError::Unsupported {
                    detail: format!("token `{t}` is in the vocabulary twice (ids {first} and {i})"),
                });
            }
        }
        let key = "tokenizer.ggml.token_type";
        let types = match g.get(key) {
            None => vec![TokenType::Normal; tokens.len()],
            Some(v) => {
                let types: Vec<TokenType> = v
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|t| {
                                t.as_u64().map(|t| match t {
                                    1 => TokenType::Normal,
                                    4 => TokenType::UserDefined,
                                    6 => TokenType::Byte,
                                    _ => TokenType::Other,
                                })
                            })
                            .collect()
                    })
                    .filter(|t: &Vec<_>| t.len() >= tokens.len())
                    .ok_or_else(|| ModelError::Missing {
                        what: format!("integer array `{key}` with a type for every token"),
                    })?;
                types
            }
        };
        let mut vocab = Vocab { tokens, ids, types };
        vocab.retype_by_text(g);
        Ok(vocab)
    }

    /// llama.cpp's loader changes some tokens' types by their text: end-of-generation tokens,
    /// and fill-in-the-middle tokens the file does not name, become control tokens (neither
    /// found in the text nor decoded); gpt-oss's `<|channel|>`-like tokens, and `<|end|>` beside
    /// `<|return|>` or `<|flush|>` and `<|call|>`, become user-defined.
    fn retype_by_text(&mut self, g: &Gguf) {
        let mut control: Vec<&str> = EOG.to_vec();
        for (keys, texts) in FIM {
            if keys.iter().all(|k| g.get(k).is_none()) {
                control.extend(*texts);
            }
        }
        for (t, ty) in self.tokens.iter().zip(&mut self.types) {
            if control.contains(&t.as_str()) {
                *ty = TokenType::Other;
            }
            if GPT_OSS_USER_DEFINED.contains(&t.as_str()) {
                *ty = TokenType::UserDefined;
            }
        }
        let has = |t: &str| self.ids.contains_key(t);
        let call = has("<|call|>") || has("<|calls|>");
        if let Some(&end) = self.ids.get("<|end|>") {
            if call && (has("<|return|>") || has("<|flush|>")) {
                self.types[end as usize] = TokenType::UserDefined;
            }
        }
    }

    fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    fn token_type(&self, id: u32) -> TokenType {
        self.types[id as usize]
    }
}

/// Texts llama.cpp takes for end-of-generation tokens (`special_eog_ids`).
const EOG: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle tokens llama.cpp looks for by text when the file names none of the kind
/// (it marks the first it meets; these mark all, which differs only for a vocabulary with two).
const FIM: &[(&[&str], &[&str])] = &[
    (
        &[
            "tokenizer.ggml.fim_pre_token_id",
            "tokenizer.ggml.prefix_token_id",
        ],
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        &[
            "tokenizer.ggml.fim_suf_token_id",
            "tokenizer.ggml.suffix_token_id",
        ],
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        &[
            "tokenizer.ggml.fim_mid_token_id",
            "tokenizer.ggml.middle_token_id",
        ],
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        &["tokenizer.ggml.fim_pad_token_id"],
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        &["tokenizer.ggml.fim_rep_token_id"],
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    (&["tokenizer.ggml.fim_sep_token_id"], &["<|file_sep|>"]),
];

/// Tokens llama.cpp makes user-defined whatever the file says (gpt-oss's).
const GPT_OSS_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// The string array under `key`.
fn strings(g: &Gguf, key: &str) -> Result<Vec<String>> {
    g.get(key)
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect())
        .ok_or_else(|| ModelError::Missing {
            what: format!("string array `{key}`"),
        })
}

/// The byte of a `<0xXX>` token.
fn byte_of(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// A special token's id: the file's if it names a token, else `default` if that does (llama.cpp
/// keeps its default when the file's id is out of range).
fn special_id(g: &Gguf, key: &str, default: Option<u32>, vocab: &Vocab) -> Option<u32> {
    let in_vocab = |id: u64| (id < vocab.tokens.len() as u64).then_some(id as u32);
    g.get(key)
        .and_then(Value::as_u64)
        .and_then(in_vocab)
        .or_else(|| default.and_then(|d| in_vocab(d.into())))
}

#[derive(Debug)]
enum Model {
    Bpe(Box<bpe::Bpe>),
    Spm(Box<spm::Spm>),
}

/// A piece of the input: text to tokenize, or a user-defined token found in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// The user-defined tokens (`tokenizer.ggml.token_type` 4), which llama.cpp finds in the text
/// before tokenizing it even when special tokens are not parsed (MPT's runs of spaces, Qwen2's
/// `<tool_call>`…), longest first.
#[derive(Debug)]
struct UserDefined {
    tokens: Vec<(String, u32)>,
    /// Whitespace after them is dropped (llama.cpp does so for models named Phi-3).
    rstrip: bool,
}

impl UserDefined {
    fn new(g: &Gguf, vocab: &Vocab) -> Self {
        let mut tokens: Vec<(String, u32)> = (0..vocab.tokens.len() as u32)
            .filter(|&id| vocab.token_type(id) == TokenType::UserDefined)
            .map(|id| (vocab.tokens[id as usize].clone(), id))
            .filter(|(t, _)| !t.is_empty())
            .collect();
        tokens.sort_by_key(|(t, id)| (std::cmp::Reverse(t.len()), *id));
        let name = g
            .get("general.name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        UserDefined {
            tokens,
            rstrip: name.contains("phi-3") || name.contains("phi3"),
        }
    }

    /// `text` cut at every occurrence of each token in turn, longest tokens first.
    fn partition<'t>(&self, text: &'t str) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        for (token, id) in &self.tokens {
            let mut next = Vec::with_capacity(fragments.len());
            for f in fragments {
                let Fragment::Text(mut rest) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(at) = rest.find(token.as_str()) {
                    next.push(Fragment::Text(&rest[..at]));
                    next.push(Fragment::Token(*id));
                    rest = &rest[at + token.len()..];
                    if self.rstrip {
                        rest = rest.trim_start_matches(|c| matches!(c, ' ' | '\t'..='\r'));
                    }
                }
                next.push(Fragment::Text(rest));
            }
            next.retain(|f| *f != Fragment::Text(""));
            fragments = next;
        }
        fragments
    }
}

/// A tokenizer read from a GGUF file.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    user_defined: UserDefined,
    /// Beginning-of-sequence token, if the model adds one.
    pub bos: Option<u32>,
}

impl Tokenizer {
    /// The tokenizer stored in a GGUF file.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let spm = match g.get("tokenizer.ggml.model").and_then(Value::as_str) {
            Some("gpt2") => false,
            Some("llama") => true,
            kind => {
                return Err(ModelError::Unsupported {
                    detail: format!(
                        "tokenizer model {} (tokenizer.ggml.model); implemented: `gpt2` \
                         (byte-level BPE), `llama` (SentencePiece)",
                        kind.map_or("absent".to_string(), |k| format!("`{k}`"))
                    ),
                })
            }
        };
        let vocab = Vocab::from_gguf(g)?;
        // llama.cpp's defaults: SentencePiece adds BOS (id 1), byte-level BPE only for the
        // pre-tokenizers that say so (id 11, a leftover of Falcon, unless the file names one).
        let (model, add_bos_default, bos_default) = if spm {
            (
                Model::Spm(Box::new(spm::Spm::from_gguf(g, &vocab)?)),
                true,
                1,
            )
        } else {
            let spec = pre::lookup(g.get("tokenizer.ggml.pre").and_then(Value::as_str))?;
            (
                Model::Bpe(Box::new(bpe::Bpe::from_gguf(g, spec)?)),
                spec.add_bos,
                11,
            )
        };
        let add_bos = match g.get("tokenizer.ggml.add_bos_token") {
            Some(Value::Bool(b)) => *b,
            _ => add_bos_default,
        };
        let bos_id = special_id(g, "tokenizer.ggml.bos_token_id", Some(bos_default), &vocab);
        let no_bos = "BOS token: the model adds one, but `tokenizer.ggml.bos_token_id` names none";
        let bos = match add_bos {
            false => None,
            true => Some(bos_id.ok_or_else(|| ModelError::Missing {
                what: no_bos.into(),
            })?),
        };
        let user_defined = UserDefined::new(g, &vocab);
        Ok(Tokenizer {
            vocab,
            model,
            user_defined,
            bos,
        })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// Token ids of `text` (without BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3);
        // SentencePiece puts its space prefix before the text and after each token found in it.
        let mut after_token = true;
        for fragment in self.user_defined.partition(text) {
            match (fragment, &self.model) {
                (Fragment::Token(id), _) => {
                    out.push(id);
                    after_token = true;
                }
                (Fragment::Text(t), Model::Bpe(m)) => m.encode(&self.vocab, t, &mut out)?,
                (Fragment::Text(t), Model::Spm(m)) => {
                    m.encode(&self.vocab, t, after_token, &mut out)?;
                    after_token = false;
                }
            }
        }
        Ok(out)
    }

    /// The text of token ids (bytes that are not UTF-8 are replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes = match &self.model {
            Model::Bpe(m) => m.decode(&self.vocab, ids),
            Model::Spm(m) => m.decode(&self.vocab, ids),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
