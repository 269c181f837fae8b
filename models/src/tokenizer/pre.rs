//! Pre-tokenizers of byte-level BPE vocabularies, chosen by `tokenizer.ggml.pre` with llama.cpp's
//! names and semantics: the text goes through a list of split patterns in turn, each applied to
//! every piece the previous one left; what a pattern matches and what lies between its matches
//! both become pieces. BPE then never merges across a piece's edges.

use crate::error::{ModelError, Result};
use fancy_regex::Regex;

/// GPT-2's pattern: contractions (lower case), an optional space and letters, numbers or other
/// symbols, then whitespace (the last run before a non-space is left to start the next piece).
/// llama.cpp lists it without the final `|\s+`; a whitespace character that alternative would
/// take is the gap between two matches there, a piece of its own all the same.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's pattern (llama.cpp's case-insensitive contractions spelt out per letter, as it does):
/// one leading non-letter non-digit before letters, at most three digits, punctuation runs that
/// keep their trailing newlines, whitespace up to the last newline of a run.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's pattern: Llama 3's with every digit a piece of its own.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pattern families implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// llama.cpp's fallback for a missing or `default` value: punctuation runs, GPT-2, number
    /// runs, then runs of three ASCII digits.
    Default,
    /// GPT-2's pattern alone.
    Gpt2,
    /// Every number character alone, then GPT-2's pattern (SmolLM, StarCoder).
    Smollm,
    /// Llama 3's pattern.
    Llama3,
    /// Qwen2's pattern.
    Qwen2,
}

impl Family {
    fn patterns(self) -> &'static [&'static str] {
        match self {
            Family::Default => &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
            Family::Gpt2 => &[GPT2],
            Family::Smollm => &[r"\p{N}", GPT2],
            Family::Llama3 => &[LLAMA3],
            Family::Qwen2 => &[QWEN2],
        }
    }
}

/// What a `tokenizer.ggml.pre` value selects in llama.cpp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreSpec {
    /// The split patterns.
    pub family: Family,
    /// A piece that is itself in the vocabulary is that token, whatever the merges would make.
    pub ignore_merges: bool,
    /// Whether BOS is added when `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos: bool,
}

const fn spec(family: Family) -> PreSpec {
    PreSpec {
        family,
        ignore_merges: false,
        add_bos: false,
    }
}

/// Each implemented value of `tokenizer.ggml.pre`, with what llama.cpp's vocabulary loader sets
/// for it (the flags that change decoding only, like `clean_spaces`, play no part here).
const SPECS: &[(&str, PreSpec)] = &[
    ("default", spec(Family::Default)),
    ("gpt-2", spec(Family::Gpt2)),
    ("phi-2", spec(Family::Gpt2)),
    ("mpt", spec(Family::Gpt2)),
    ("olmo", spec(Family::Gpt2)),
    ("smollm", spec(Family::Smollm)),
    ("starcoder", spec(Family::Smollm)),
    ("refact", spec(Family::Smollm)),
    ("command-r", spec(Family::Smollm)),
    ("codeshell", spec(Family::Smollm)),
    ("exaone", spec(Family::Smollm)),
    ("minerva-7b", spec(Family::Smollm)),
    ("llama-bpe", LLAMA3_SPEC),
    ("llama3", LLAMA3_SPEC),
    ("llama-v3", LLAMA3_SPEC),
    ("falcon3", LLAMA3_SPEC),
    ("falcon-h1", LLAMA3_SPEC),
    ("pixtral", LLAMA3_SPEC),
    ("dbrx", spec(Family::Llama3)),
    ("smaug-bpe", spec(Family::Llama3)),
    ("qwen2", spec(Family::Qwen2)),
    ("deepseek-r1-qwen", spec(Family::Qwen2)),
    ("megrez", spec(Family::Qwen2)),
    ("stablelm2", spec(Family::Qwen2)),
    ("hunyuan", spec(Family::Qwen2)),
];

const LLAMA3_SPEC: PreSpec = PreSpec {
    family: Family::Llama3,
    ignore_merges: true,
    add_bos: true,
};

/// The pre-tokenizer a `tokenizer.ggml.pre` value names; `None` (the key is absent) is llama.cpp's
/// `default`.
pub(crate) fn lookup(pre: Option<&str>) -> Result<PreSpec> {
    let name = pre.unwrap_or("default");
    SPECS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, s)| s)
        .ok_or_else(|| ModelError::Unsupported {
            detail: format!(
                "BPE pre-tokenizer `{name}` (tokenizer.ggml.pre); implemented: {}",
                supported().join(", ")
            ),
        })
}

/// The implemented `tokenizer.ggml.pre` values.
pub(crate) fn supported() -> Vec<&'static str> {
    SPECS.iter().map(|&(n, _)| n).collect()
}

/// A compiled pre-tokenizer.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    stages: Vec<Regex>,
}

impl PreTokenizer {
    pub(crate) fn new(family: Family) -> Self {
        let stages = family
            .patterns()
            .iter()
            .map(|p| Regex::new(p).expect("the pre-tokenizer patterns compile"))
            .collect();
        PreTokenizer { stages }
    }

    /// The pieces of `text`, in order; they concatenate back to `text`.
    pub(crate) fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>> {
        let mut pieces = vec![text];
        for re in &self.stages {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                split_one(re, piece, &mut next)?;
            }
            pieces = next;
        }
        pieces.retain(|p| !p.is_empty());
        Ok(pieces)
    }
}

/// Matches of `re` within `seg` (nothing outside it is seen) and the gaps between them.
fn split_one<'t>(re: &Regex, seg: &'t str, out: &mut Vec<&'t str>) -> Result<()> {
    let mut gap_start = 0;
    let mut pos = 0;
    while pos < seg.len() {
        let m = re
            .find_from_pos(seg, pos)
            .map_err(|e| ModelError::InvalidArgument {
                argument: "text",
                detail: format!("the pre-tokenizer pattern failed on it: {e}"),
            })?;
        let Some(m) = m else { break };
        if m.end() == m.start() {
            // No pattern here matches empty text; step over one character all the same.
            pos = m.end() + seg[m.end()..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        if m.start() > gap_start {
            out.push(&seg[gap_start..m.start()]);
        }
        out.push(m.as_str());
        gap_start = m.end();
        pos = m.end();
    }
    if gap_start < seg.len() {
        out.push(&seg[gap_start..]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(family: Family, text: &str) -> Vec<String> {
        let pieces = PreTokenizer::new(family).split(text).unwrap();
        assert_eq!(pieces.concat(), text, "the pieces cover the text");
        pieces.into_iter().map(str::to_string).collect()
    }

    // Each expectation below is worked out by hand from the patterns' definitions.

    #[test]
    fn gpt2_keeps_digit_runs_and_lower_case_contractions_only() {
        assert_eq!(
            split(Family::Gpt2, "it's IT'S 12345"),
            ["it", "'s", " IT", "'", "S", " 12345"]
        );
    }

    #[test]
    fn smollm_splits_every_number_character() {
        // `\p{N}` first: "1", "2", "½" are pieces of their own; GPT-2 runs on the rest.
        assert_eq!(
            split(Family::Smollm, "a12 ½ b"),
            ["a", "1", "2", " ", "½", " b"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three_and_ignores_case_in_contractions() {
        assert_eq!(
            split(Family::Llama3, "IT'S 12345"),
            ["IT", "'S", " ", "123", "45"]
        );
    }

    #[test]
    fn llama3_punctuation_keeps_newlines_and_whitespace_ends_at_the_last_newline() {
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*` takes "!!" and both newlines; then `\s*[\r\n]+` takes
        // "  \n" (up to the last newline of the whitespace run), leaving " " + "x" → " x".
        assert_eq!(
            split(Family::Llama3, "a!!\n\n  \n x"),
            ["a", "!!\n\n", "  \n", " x"]
        );
        // A non-letter, non-digit, non-newline character leads a word: "$hello", "\thello".
        assert_eq!(
            split(Family::Llama3, "$hello\thello"),
            ["$hello", "\thello"]
        );
    }

    #[test]
    fn qwen2_is_llama3_with_single_digits() {
        assert_eq!(
            split(Family::Qwen2, "IT'S 12345"),
            ["IT", "'S", " ", "1", "2", "3", "4", "5"]
        );
    }

    #[test]
    fn whitespace_before_a_word_leaves_one_space_for_it() {
        for f in [Family::Gpt2, Family::Llama3, Family::Qwen2] {
            assert_eq!(split(f, "a   b"), ["a", "  ", " b"], "{f:?}");
            assert_eq!(split(f, "a  "), ["a", "  "], "{f:?}");
        }
    }

    #[test]
    fn default_splits_punctuation_then_numbers_then_three_digits() {
        // Stage 1 isolates ",!" (without the space before it); GPT-2 splits "ab 12345 " into
        // "ab", " 12345", " "; stage 3 leaves " " and "12345"; stage 4 cuts "123" off, "45" is
        // the gap after it.
        assert_eq!(
            split(Family::Default, "ab 12345 ,!x"),
            ["ab", " ", "123", "45", " ", ",!", "x"]
        );
    }

    #[test]
    fn unknown_and_missing_values() {
        assert_eq!(lookup(None).unwrap().family, Family::Default);
        assert_eq!(lookup(Some("llama-bpe")).unwrap(), LLAMA3_SPEC);
        let e = lookup(Some("tekken")).unwrap_err().to_string();
        assert!(
            e.contains("`tekken`") && e.contains("qwen2") && e.contains("smollm"),
            "{e}"
        );
    }
}
