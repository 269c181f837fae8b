//! The merge loop BPE and SentencePiece share (llama.cpp's `llm_tokenizer_*_session`): the text
//! starts as one symbol per character; the adjacent pair of highest priority merges into one
//! symbol, ties going to the leftmost pair, until no pair has a priority. A heap of candidate
//! pairs with lazy invalidation keeps it O(n log n) on long texts (SentencePiece runs on the
//! whole text at once).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// The symbols left after merging `text`, as byte ranges in order. `priority(left, right,
/// merged)` is the priority of merging two adjacent symbols (`merged` is their concatenation),
/// `None` where they do not merge; the highest merges first.
pub(crate) fn merge<P: Ord>(
    text: &str,
    priority: impl Fn(&str, &str, &str) -> Option<P>,
) -> Vec<Range<usize>> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (start, c) in text.char_indices() {
        let i = symbols.len();
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: None,
        });
        if i > 0 {
            symbols[i - 1].next = Some(i);
        }
    }
    // (priority, leftmost first, left, right, merged length)
    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<_>, symbols: &[Symbol], l: usize, r: usize| {
        let (a, b) = (symbols[l], symbols[r]);
        let left = &text[a.start..a.start + a.len];
        let right = &text[b.start..b.start + b.len];
        let merged = &text[a.start..b.start + b.len];
        if let Some(p) = priority(left, right, merged) {
            heap.push((p, Reverse(l), r, a.len + b.len));
        }
    };
    for i in 1..symbols.len() {
        push(&mut heap, &symbols, i - 1, i);
    }
    while let Some((_, Reverse(l), r, len)) = heap.pop() {
        // A pair is stale once either side has merged with something else: the right side is
        // gone, or one of them has grown.
        let (a, b) = (symbols[l], symbols[r]);
        if a.len == 0 || b.len == 0 || a.next != Some(r) || a.len + b.len != len {
            continue;
        }
        symbols[l].len = len;
        symbols[l].next = b.next;
        symbols[r].len = 0;
        if let Some(n) = b.next {
            symbols[n].prev = Some(l);
        }
        if let Some(p) = symbols[l].prev {
            push(&mut heap, &symbols, p, l);
        }
        if let Some(n) = symbols[l].next {
            push(&mut heap, &symbols, l, n);
        }
    }
    let mut out = Vec::new();
    let mut at = (!symbols.is_empty()).then_some(0);
    while let Some(i) = at {
        let s = symbols[i];
        out.push(s.start..s.start + s.len);
        at = s.next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, pairs: &[(&str, i32)]) -> Vec<String> {
        merge(text, |_, _, m| {
            pairs.iter().find(|(p, _)| *p == m).map(|&(_, s)| s)
        })
        .into_iter()
        .map(|r| text[r].to_string())
        .collect()
    }

    #[test]
    fn highest_priority_first_then_leftmost() {
        // "bc" (3) beats "ab" (1): a|bc|d; then "abcd"? no such pair; "bcd" (2) merges.
        assert_eq!(
            pieces("abcd", &[("ab", 1), ("bc", 3), ("bcd", 2)]),
            ["a", "bcd"]
        );
        // Equal priorities: the leftmost pair first, so "aa" + "a", not "a" + "aa".
        assert_eq!(pieces("aaa", &[("aa", 1)]), ["aa", "a"]);
        assert_eq!(pieces("aaaa", &[("aa", 1), ("aaaa", 1)]), ["aaaa"]);
    }

    #[test]
    fn multibyte_characters_are_single_symbols() {
        assert_eq!(pieces("é▁x", &[("é▁", 1)]), ["é▁", "x"]);
        assert!(pieces("", &[]).is_empty());
    }
}
