"""Independent dense reference for the Rust harness: SmolLM2 perplexity in NumPy.

Reads the GGUF with ggml's own Python package (`gguf`, its dequantization), tokenizes with
Hugging Face `tokenizers` (a BPE rebuilt from the GGUF vocabulary and merges), runs the Llama
forward pass in float64 NumPy and prints the token count and the perplexity of the same windows
the Rust harness scores (non-overlapping, every prediction). Used by `ci/model-reference.sh`.

usage: smollm2_reference.py MODEL.gguf TEXT WINDOW MAX_WINDOWS
"""

import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import Tokenizer, decoders, models, pre_tokenizers


def field(reader, key):
    f = reader.fields[key]
    if len(f.types) == 1 and f.types[0].name == "STRING":
        return bytes(f.parts[f.data[0]]).decode()
    if f.types[0].name == "ARRAY":
        return [bytes(f.parts[i]).decode() for i in f.data]
    return f.parts[f.data[0]][0]


def weights(reader):
    out = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float64)
        out[t.name] = w.reshape([int(d) for d in reversed(t.shape)])
    return out


def tokenizer(reader):
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, base):
    # x: [T, heads, d]; adjacent pairs (GGUF's permuted Q/K rows).
    t, _, d = x.shape
    inv = base ** (-np.arange(0, d, 2) / d)
    ang = np.arange(t)[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def nll(reader, w, ids):
    layers = int(field(reader, "llama.block_count"))
    hq = int(field(reader, "llama.attention.head_count"))
    hkv = int(field(reader, "llama.attention.head_count_kv"))
    eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
    base = float(field(reader, "llama.rope.freq_base"))
    emb = w["token_embd.weight"]
    x = emb[ids]
    t, hidden = x.shape
    d = hidden // hq
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for l in range(layers):
        p = lambda s: w[f"blk.{l}.{s}.weight"]
        h = rms(x, p("attn_norm"), eps)
        q = rope((h @ p("attn_q").T).reshape(t, hq, d), base)
        k = rope((h @ p("attn_k").T).reshape(t, hkv, d), base)
        v = (h @ p("attn_v").T).reshape(t, hkv, d)
        att = np.empty((t, hq, d))
        for head in range(hq):
            kv = head // (hq // hkv)
            s = q[:, head] @ k[:, kv].T / np.sqrt(d) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            att[:, head] = (s / s.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + att.reshape(t, hidden) @ p("attn_output").T
        h = rms(x, p("ffn_norm"), eps)
        g = h @ p("ffn_gate").T
        x = x + ((g / (1 + np.exp(-g))) * (h @ p("ffn_up").T)) @ p("ffn_down").T
    x = rms(x, w["output_norm.weight"], eps)
    logits = x[:-1] @ emb.T
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
    return float((lse - logits[np.arange(t - 1), ids[1:]]).sum()), t - 1


def main():
    model, text_path, window, max_windows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    reader = GGUFReader(model)
    text = open(text_path, encoding="utf-8").read()
    ids = tokenizer(reader).encode(text).ids
    print(f"tokens: {len(ids)}")
    print(f"first_ids: {' '.join(map(str, ids[:32]))}")
    w = weights(reader)
    total, count = 0.0, 0
    chunks = [ids[i : i + window] for i in range(0, len(ids), window)]
    chunks = [c for c in chunks if len(c) >= max(window // 4, 2)][:max_windows]
    for c in chunks:
        s, n = nll(reader, w, np.array(c))
        total += s
        count += n
    print(f"windows: {len(chunks)}")
    print(f"scored: {count}")
    print(f"ppl: {np.exp(total / count):.6f}")


if __name__ == "__main__":
    main()
