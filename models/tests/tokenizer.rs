//! The tokenizers on tiny vocabularies written here as GGUF files. Every expected id list is
//! worked out by hand from the algorithm's definition (llama.cpp's `llama-vocab.cpp`), never by
//! running the code under test: the comment above each case says how.
//!
//! BPE pre-tokenizers are observed through a "merge everything" vocabulary: every substring of
//! the text is a token and every split of every substring is a merge, so BPE turns each piece
//! the pre-tokenizer leaves into exactly one token, the piece itself, and the ids spell out
//! the pieces.

use shadowattn_models::{Gguf, ModelError, Tokenizer};

mod common;
use common::Writer;

/// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others
/// (control characters, space, 0x7F–0xA0, 0xAD) for U+0100 onwards in byte order.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + rank).unwrap()
    }
}

fn byte_level(s: &str) -> String {
    s.bytes().map(byte_char).collect()
}

/// A byte-level BPE vocabulary in which every piece merges into one token (see the module doc).
struct Observer {
    tokens: Vec<String>,
    merges: Vec<String>,
}

impl Observer {
    fn new(text: &str) -> Self {
        let chars: Vec<char> = byte_level(text).chars().collect();
        let mut tokens: Vec<String> = Vec::new();
        let mut merges = Vec::new();
        for len in 1..=chars.len() {
            for start in 0..=chars.len() - len {
                let s: String = chars[start..start + len].iter().collect();
                if tokens.contains(&s) {
                    continue;
                }
                for k in 1..len {
                    let a: String = chars[start..start + k].iter().collect();
                    let b: String = chars[start + k..start + len].iter().collect();
                    merges.push(format!("{a} {b}"));
                }
                tokens.push(s);
            }
        }
        Observer { tokens, merges }
    }

    /// The ids of pieces (each must be a substring of the text).
    fn ids(&self, pieces: &[&str]) -> Vec<u32> {
        pieces
            .iter()
            .map(|p| {
                let t = byte_level(p);
                self.tokens
                    .iter()
                    .position(|x| *x == t)
                    .expect("a substring") as u32
            })
            .collect()
    }

    fn gguf(&self, pre: Option<&str>) -> Writer {
        let mut w = Writer::default();
        w.kv_str("tokenizer.ggml.model", "gpt2");
        if let Some(pre) = pre {
            w.kv_str("tokenizer.ggml.pre", pre);
        }
        let tokens: Vec<&str> = self.tokens.iter().map(String::as_str).collect();
        let merges: Vec<&str> = self.merges.iter().map(String::as_str).collect();
        w.kv_strs("tokenizer.ggml.tokens", &tokens)
            .kv_strs("tokenizer.ggml.merges", &merges);
        w
    }
}

fn load(w: &Writer) -> Result<Tokenizer, ModelError> {
    Tokenizer::from_gguf(&Gguf::parse(w.bytes()).unwrap())
}

/// `text` through the pre-tokenizer `pre` must leave exactly `pieces`.
fn assert_pieces(pre: Option<&str>, text: &str, pieces: &[&str]) {
    assert_eq!(pieces.concat(), text, "the expected pieces cover the text");
    let o = Observer::new(text);
    let t = load(&o.gguf(pre)).unwrap();
    assert_eq!(
        t.encode(text).unwrap(),
        o.ids(pieces),
        "{pre:?} on {text:?}"
    );
    assert_eq!(t.decode(&o.ids(pieces)), text);
}

// --- BPE pre-tokenizers -------------------------------------------------------------------

#[test]
fn smollm_splits_every_number_character_then_runs_gpt2() {
    // `\p{N}` isolates "1", "2" and "½" (a number, No: GPT-2 alone would keep " ½" together);
    // GPT-2's pattern splits the rest: "a", " ", then " b" (optional space + letters), "'s"
    // (lower-case contraction), " ok".
    assert_pieces(
        Some("smollm"),
        "a12 ½ b's ok",
        &["a", "1", "2", " ", "½", " b", "'s", " ok"],
    );
}

#[test]
fn gpt2_keeps_digit_runs_and_only_lower_case_contractions() {
    // " 12345" is ` ?\p{N}+`; "'S" is no contraction: "'" alone (` ?[^\s\p{L}\p{N}]+`), "SELF".
    assert_pieces(
        Some("gpt-2"),
        "it's IT'SELF 12345",
        &["it", "'s", " IT", "'", "SELF", " 12345"],
    );
}

#[test]
fn gpt2_whitespace_leaves_its_last_space_to_the_next_word() {
    // `\s+(?!\S)` backs off one space before "Hello"; "\n" before "x" is `\s+` (not ` ?`).
    assert_pieces(Some("gpt-2"), "   Hello\nx", &["  ", " Hello", "\n", "x"]);
}

#[test]
fn default_and_missing_pre_split_punctuation_numbers_then_three_digits() {
    // Stage 1 `[\p{P}$+<=>^~|]+` takes ",!" without the space before it (GPT-2 alone would
    // take " ,!"); GPT-2 splits "ab 12345 " into "ab", " 12345", " "; `\p{N}+` splits " " from
    // "12345"; `[0-9]{3}` cuts "123", "45" is the gap after it.
    let pieces = ["ab", " ", "123", "45", " ", ",!", "x"];
    assert_pieces(Some("default"), "ab 12345 ,!x", &pieces);
    assert_pieces(None, "ab 12345 ,!x", &pieces);
}

#[test]
fn llama3_contractions_ignore_case_and_digits_go_by_three() {
    // "'S" is a contraction whatever its case, so "ELF" starts a new piece; "12345" is
    // `\p{N}{1,3}` twice; the space before it is `\s+` alone (no letter follows).
    assert_pieces(
        Some("llama-bpe"),
        "IT'SELF 12345",
        &["IT", "'S", "ELF", " ", "123", "45"],
    );
}

#[test]
fn llama3_newlines_and_punctuation_runs() {
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*` takes "!!" with both newlines; `\s*[\r\n]+` takes whitespace up
    // to the last newline of the run ("  \n", "\n\n", "\n" — where `\s+(?!\S)` would have
    // taken "\n" alone, then "\n " before "b"); " x" is one non-letter + letters.
    assert_pieces(
        Some("llama-bpe"),
        "a!!\n\n  \n x\n\ny\n  b",
        &["a", "!!\n\n", "  \n", " x", "\n\n", "y", "\n", " ", " b"],
    );
}

#[test]
fn llama3_leading_spaces_symbols_and_non_ascii_letters() {
    // Three spaces before a word: `\s+(?!\S)` takes two, the third leads " Hello"; "$" and "\t"
    // lead the letters after them (`[^\r\n\p{L}\p{N}]?\p{L}+`); "Äpfel" and " über" are letters.
    assert_pieces(
        Some("llama-bpe"),
        "   Hello$x\tÄpfel über",
        &["  ", " Hello", "$x", "\tÄpfel", " über"],
    );
}

#[test]
fn qwen2_is_llama3_with_single_digits() {
    assert_pieces(
        Some("qwen2"),
        "IT'SELF 12345",
        &["IT", "'S", "ELF", " ", "1", "2", "3", "4", "5"],
    );
    // The aliases llama.cpp maps to the same patterns.
    assert_pieces(Some("deepseek-r1-qwen"), "a 12", &["a", " ", "1", "2"]);
    assert_pieces(Some("llama3"), "a 1234", &["a", " ", "123", "4"]);
}

// --- BPE merges ---------------------------------------------------------------------------

/// A byte-level vocabulary with explicit tokens and merges (one piece: no spaces in the text).
fn bpe(pre: &str, tokens: &[&str], merges: &[&str]) -> Writer {
    let mut w = Writer::default();
    w.kv_str("tokenizer.ggml.model", "gpt2")
        .kv_str("tokenizer.ggml.pre", pre)
        .kv_strs("tokenizer.ggml.tokens", tokens)
        .kv_strs("tokenizer.ggml.merges", merges);
    w
}

#[test]
fn bpe_merges_lowest_rank_first_and_leftmost_on_ties() {
    let tokens = ["a", "b", "c", "ab", "bc", "aa"];
    // "b c" has rank 0, "a b" rank 1: a|b|c → a|bc, and "a bc" is no merge.
    let t = load(&bpe("gpt-2", &tokens, &["b c", "a b"])).unwrap();
    assert_eq!(t.encode("abc").unwrap(), [0, 4]);
    // Swapped ranks: ab|c.
    let t = load(&bpe("gpt-2", &tokens, &["a b", "b c"])).unwrap();
    assert_eq!(t.encode("abc").unwrap(), [3, 2]);
    // "aaa": both pairs are "a a"; the leftmost merges, leaving aa|a.
    let t = load(&bpe("gpt-2", &tokens, &["a a"])).unwrap();
    assert_eq!(t.encode("aaa").unwrap(), [5, 0]);
}

#[test]
fn llama3_takes_a_piece_in_the_vocabulary_whole() {
    // "abc" is a token but no merge makes it: Llama 3 (llama.cpp's `ignore_merges`) takes the
    // piece whole; GPT-2 merges "a b" and stops at ab|c.
    let tokens = ["a", "b", "c", "ab", "abc"];
    let mut w = bpe("llama-bpe", &tokens, &["a b"]);
    w.kv_u32("tokenizer.ggml.bos_token_id", 0);
    let t = load(&w).unwrap();
    assert_eq!(t.encode("abc").unwrap(), [4]);
    let t = load(&bpe("gpt-2", &tokens, &["a b"])).unwrap();
    assert_eq!(t.encode("abc").unwrap(), [3, 2]);
}

#[test]
fn user_defined_tokens_are_found_before_pre_tokenizing() {
    // Token 3 "  " (two spaces) is user-defined (type 4), as MPT's space runs are: the text is cut
    // around it first, so "a" and "b" are tokenized alone and the raw spaces are that token.
    let mut w = bpe("gpt-2", &["a", "b", "Ġ", "  "], &[]);
    w.kv_i32s("tokenizer.ggml.token_type", &[1, 1, 1, 4]);
    let t = load(&w).unwrap();
    assert_eq!(t.encode("a  b").unwrap(), [0, 3, 1]);
    assert_eq!(t.encode("a b").unwrap(), [0, 2, 1]);
    assert_eq!(t.decode(&[0, 3, 1]), "a  b");
}

#[test]
fn end_of_generation_and_unnamed_fim_tokens_are_control_whatever_their_type() {
    // llama.cpp makes "</s>" (an end-of-generation text) and "<|fim_prefix|>" (a FIM text, when
    // the file names no FIM prefix token) control tokens even if typed user-defined (4), as in
    // Phi-3's file: they are not found in the text but tokenized as text, byte by byte here
    // (no merges; GPT-2 pieces "a", "</", "s", ">"), and decode to nothing.
    let chars = [
        "a", "<", "/", "s", ">", "|", "f", "_", "p", "i", "m", "r", "e", "x",
    ];
    let mut tokens = chars.to_vec();
    tokens.extend(["</s>", "<|fim_prefix|>", "<t>"]);
    let mut types = vec![1; chars.len()];
    types.extend([4, 4, 4]);
    let with = |fim_key: bool| {
        let mut w = bpe("gpt-2", &tokens, &[]);
        w.kv_i32s("tokenizer.ggml.token_type", &types);
        if fim_key {
            w.kv_u32("tokenizer.ggml.fim_pre_token_id", 15);
        }
        load(&w).unwrap()
    };
    let t = with(false);
    assert_eq!(t.encode("a</s>").unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(t.decode(&[14]), "");
    // An ordinary user-defined token is found: a <t>.
    assert_eq!(t.encode("a<t>").unwrap(), [0, 16]);
    // "<|fim_prefix|>" is text, one byte token per character, while no key names a FIM prefix
    // token; with the key it is user-defined again.
    assert_eq!(
        t.encode("<|fim_prefix|>").unwrap(),
        [1, 5, 6, 9, 10, 7, 8, 11, 12, 6, 9, 13, 5, 4]
    );
    assert_eq!(with(true).encode("<|fim_prefix|>").unwrap(), [15]);
}

#[test]
fn gpt_oss_tokens_and_end_beside_return_and_call_are_user_defined() {
    // llama.cpp makes "<|start|>" user-defined whatever its type, and "<|end|>" too when
    // "<|return|>" and "<|call|>" are in the vocabulary (gpt-oss); without them "<|end|>" is an
    // end-of-generation (control) token, so text: "<|", "end", "|>", one byte token per character.
    let tokens = [
        "<",
        "|",
        "e",
        "n",
        "d",
        ">",
        "s",
        "t",
        "a",
        "r",
        "<|end|>",
        "<|start|>",
        "<|return|>",
        "<|call|>",
    ];
    let types = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 3, 3];
    let load_first = |n: usize| {
        let mut w = bpe("gpt-2", &tokens[..n], &[]);
        w.kv_i32s("tokenizer.ggml.token_type", &types[..n]);
        load(&w).unwrap()
    };
    let t = load_first(14);
    assert_eq!(t.encode("<|end|>").unwrap(), [10]);
    assert_eq!(t.encode("<|start|>").unwrap(), [11]);
    let t = load_first(12);
    assert_eq!(t.encode("<|end|>").unwrap(), [0, 1, 2, 3, 4, 1, 5]);
    assert_eq!(t.encode("<|start|>").unwrap(), [11]);
}

// --- SentencePiece ------------------------------------------------------------------------

const UNK: u32 = 0;
const BOS: u32 = 1;
/// Id of the byte token `<0xXX>` in [`spm`]'s vocabulary.
fn byte_id(b: u8) -> u32 {
    3 + u32::from(b)
}

/// A SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then `pieces` with
/// their scores (ids from 259 on).
fn spm(pieces: &[(&str, f32)]) -> Writer {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut scores = vec![0.0, 0.0, 0.0];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(6);
    }
    for (p, s) in pieces {
        tokens.push((*p).into());
        scores.push(*s);
        types.push(1);
    }
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut w = Writer::default();
    w.kv_str("tokenizer.ggml.model", "llama")
        .kv_strs("tokenizer.ggml.tokens", &tokens)
        .kv_f32s("tokenizer.ggml.scores", &scores)
        .kv_i32s("tokenizer.ggml.token_type", &types)
        .kv_u32("tokenizer.ggml.bos_token_id", BOS);
    w
}

const P: u32 = 259;

#[test]
fn spm_merges_the_highest_score_first() {
    // Scores: "ab" 1, "bc" 2. Pairs of "abc" (no space prefix): ab (1), bc (2) → bc first; then
    // "abc" is no token: a|bc.
    let mut w = spm(&[("a", 0.0), ("b", 0.0), ("c", 0.0), ("ab", 1.0), ("bc", 2.0)]);
    w.kv_bool("tokenizer.ggml.add_space_prefix", false);
    let t = load(&w).unwrap();
    assert_eq!(t.encode("abc").unwrap(), [P, P + 4]);
    // Higher score to "ab": ab|c.
    let mut w = spm(&[("a", 0.0), ("b", 0.0), ("c", 0.0), ("ab", 3.0), ("bc", 2.0)]);
    w.kv_bool("tokenizer.ggml.add_space_prefix", false);
    let t = load(&w).unwrap();
    assert_eq!(t.encode("abc").unwrap(), [P + 3, P + 2]);
}

#[test]
fn spm_ties_go_to_the_leftmost_pair() {
    // "aaa": pairs (0,1) and (1,2) are both "aa" (score 1): the left one merges, aa|a.
    let mut w = spm(&[("a", 0.0), ("aa", 1.0)]);
    w.kv_bool("tokenizer.ggml.add_space_prefix", false);
    let t = load(&w).unwrap();
    assert_eq!(t.encode("aaa").unwrap(), [P + 1, P]);
}

#[test]
fn spm_space_prefix_on_by_default_and_off_by_the_key() {
    let pieces = [("a", 0.0), ("b", 0.0), ("▁", 0.0), ("▁a", 1.0), ("▁b", 1.0)];
    // Default (key absent): "a b" → "▁a▁b" → ▁a|▁b.
    let t = load(&spm(&pieces)).unwrap();
    assert_eq!(t.encode("a b").unwrap(), [P + 3, P + 4]);
    assert_eq!(t.decode(&[P + 3, P + 4]), "a b");
    assert!(t.encode("").unwrap().is_empty(), "no prefix on empty text");
    // Off: "a▁b" → a|▁b.
    let mut w = spm(&pieces);
    w.kv_bool("tokenizer.ggml.add_space_prefix", false);
    let t = load(&w).unwrap();
    assert_eq!(t.encode("a b").unwrap(), [P, P + 4]);
    assert_eq!(t.decode(&[P, P + 4]), "a b");
}

#[test]
fn spm_byte_fallback_for_a_character_not_in_the_vocabulary() {
    // "é" is not a piece: its UTF-8 bytes C3 A9 as <0xC3> <0xA9>, after "▁a".
    let t = load(&spm(&[("a", 0.0), ("▁", 0.0), ("▁a", 1.0)])).unwrap();
    let ids = t.encode("aé").unwrap();
    assert_eq!(ids, [P + 2, byte_id(0xC3), byte_id(0xA9)]);
    assert_eq!(t.decode(&ids), "aé");
}

#[test]
fn spm_unknown_without_byte_tokens() {
    // No byte tokens: "é" is UNK (id 0, llama.cpp's default), decoded as nothing.
    let mut w = Writer::default();
    w.kv_str("tokenizer.ggml.model", "llama")
        .kv_strs("tokenizer.ggml.tokens", &["<unk>", "<s>", "</s>", "a"])
        .kv_f32s("tokenizer.ggml.scores", &[0.0; 4])
        .kv_i32s("tokenizer.ggml.token_type", &[2, 3, 3, 1])
        .kv_bool("tokenizer.ggml.add_space_prefix", false);
    let t = load(&w).unwrap();
    assert_eq!(t.encode("aé").unwrap(), [3, UNK]);
    assert_eq!(t.decode(&[3, UNK]), "a");
}

#[test]
fn spm_space_prefix_after_a_user_defined_token() {
    // "<t>" is user-defined: "a<t>b" is "a", <t>, "b", and llama.cpp puts the space prefix
    // before the text and after the token: ▁a <t> ▁b.
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "▁b", "<t>"]
        .map(String::from)
        .to_vec();
    tokens.extend(["▁▁b".to_string()]);
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let scores = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 2.0];
    let types = [2, 3, 3, 1, 1, 1, 1, 1, 4, 1];
    let build = |name: &str| {
        let mut w = Writer::default();
        w.kv_str("general.name", name)
            .kv_str("tokenizer.ggml.model", "llama")
            .kv_strs("tokenizer.ggml.tokens", &tokens)
            .kv_f32s("tokenizer.ggml.scores", &scores)
            .kv_i32s("tokenizer.ggml.token_type", &types);
        load(&w).unwrap()
    };
    let t = build("Llama");
    assert_eq!(t.encode("a<t>b").unwrap(), [6, 8, 7]);
    // Whitespace after the token stays: " b" → "▁▁b" with the prefix.
    assert_eq!(t.encode("a<t> b").unwrap(), [6, 8, 9]);
    // llama.cpp drops it for models named Phi-3: "b" → "▁b".
    assert_eq!(build("Phi3").encode("a<t> b").unwrap(), [6, 8, 7]);
}

// --- BOS ----------------------------------------------------------------------------------

#[test]
fn bos_follows_llama_cpp_defaults_and_the_key() {
    // SentencePiece adds BOS unless told not to.
    assert_eq!(load(&spm(&[])).unwrap().bos, Some(BOS));
    let mut w = spm(&[]);
    w.kv_bool("tokenizer.ggml.add_bos_token", false);
    assert_eq!(load(&w).unwrap().bos, None);

    let bpe_with = |pre: &str, add: Option<bool>| {
        let mut w = bpe(pre, &["a", "b", "<s>"], &[]);
        w.kv_u32("tokenizer.ggml.bos_token_id", 2);
        if let Some(add) = add {
            w.kv_bool("tokenizer.ggml.add_bos_token", add);
        }
        load(&w).unwrap().bos
    };
    // GPT-2-style BPE does not add BOS unless told to; Llama 3 does unless told not to.
    assert_eq!(bpe_with("smollm", None), None);
    assert_eq!(bpe_with("smollm", Some(true)), Some(2));
    assert_eq!(bpe_with("llama-bpe", None), Some(2));
    assert_eq!(bpe_with("llama-bpe", Some(false)), None);
    assert_eq!(bpe_with("qwen2", None), None);
}

#[test]
fn bos_wanted_but_not_in_the_vocabulary_is_an_error() {
    // add_bos_token true, no bos_token_id, and llama.cpp's BPE default (11) is past the end.
    let mut w = bpe("gpt-2", &["a"], &[]);
    w.kv_bool("tokenizer.ggml.add_bos_token", true);
    let e = load(&w).unwrap_err();
    assert!(
        matches!(&e, ModelError::Missing { what } if what.contains("bos_token_id")),
        "{e}"
    );
}

// --- Typed errors -------------------------------------------------------------------------

#[test]
fn an_unknown_pre_tokenizer_is_unsupported_and_lists_the_known_ones() {
    let e = load(&bpe("tekken", &["a"], &[])).unwrap_err();
    let ModelError::Unsupported { detail } = &e else {
        panic!("{e}")
    };
    for name in [
        "`tekken`",
        "smollm",
        "gpt-2",
        "llama-bpe",
        "qwen2",
        "default",
    ] {
        assert!(detail.contains(name), "{detail}");
    }
}

#[test]
fn an_unknown_or_missing_model_is_unsupported() {
    let mut w = Writer::default();
    w.kv_str("tokenizer.ggml.model", "bert")
        .kv_strs("tokenizer.ggml.tokens", &["a"]);
    let e = load(&w).unwrap_err();
    assert!(
        matches!(&e, ModelError::Unsupported { detail } if detail.contains("`bert`") && detail.contains("`llama`")),
        "{e}"
    );
    let mut w = Writer::default();
    w.kv_strs("tokenizer.ggml.tokens", &["a"]);
    let e = load(&w).unwrap_err();
    assert!(matches!(&e, ModelError::Unsupported { .. }), "{e}");
}

#[test]
fn sentencepiece_without_scores_or_short_arrays_is_an_error() {
    let mut w = Writer::default();
    w.kv_str("tokenizer.ggml.model", "llama")
        .kv_strs("tokenizer.ggml.tokens", &["<unk>", "a"]);
    let e = load(&w).unwrap_err();
    assert!(
        matches!(&e, ModelError::Missing { what } if what.contains("tokenizer.ggml.scores")),
        "{e}"
    );
    let mut w = Writer::default();
    w.kv_str("tokenizer.ggml.model", "llama")
        .kv_strs("tokenizer.ggml.tokens", &["<unk>", "a"])
        .kv_f32s("tokenizer.ggml.scores", &[0.0]);
    assert!(matches!(load(&w), Err(ModelError::Missing { .. })));
}

#[test]
fn a_duplicate_token_or_a_merge_without_a_space_is_an_error() {
    assert!(matches!(
        load(&bpe("gpt-2", &["a", "a"], &[])),
        Err(ModelError::Unsupported { .. })
    ));
    assert!(matches!(
        load(&bpe("gpt-2", &["a", "b"], &["ab"])),
        Err(ModelError::Missing { .. })
    ));
}
