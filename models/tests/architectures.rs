//! Every architecture the harness runs, on tiny GGUF files written here: random weights in
//! Hugging Face's layout, stored the way llama.cpp's converter stores them (Llama's Q/K rows
//! permuted for adjacent-pair RoPE, Qwen2's Q/K/V biases, Phi-3's fused QKV and gate/up rows,
//! Llama 3's `rope_freqs`, tied or separate output heads), loaded and run by the real loader and
//! forward pass, and compared with an independent float64 forward pass written here from the
//! models' definitions (HF's `rotate_half` RoPE, biases, SwiGLU, causal GQA softmax).
//!
//! Also: what the kernels do not compute is refused by name.

use shadowattn_cpu::CpuBackend;
use shadowattn_models::attention::Dense;
use shadowattn_models::gguf::Value;
use shadowattn_models::{Gguf, GgufWriter, Model, ModelConfig, ModelError};

/// A deterministic generator of weights in [−1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// `rows × cols` weights scaled by 1/√cols (activations stay O(1) through the layers),
    /// rounded to f32 as the file stores them.
    fn matrix(&mut self, rows: usize, cols: usize) -> Vec<f64> {
        let s = 1.0 / (cols as f64).sqrt();
        (0..rows * cols)
            .map(|_| f64::from((self.next() * s) as f32))
            .collect()
    }

    /// Norm weights around 1.
    fn norm(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| f64::from((1.0 + 0.3 * self.next()) as f32))
            .collect()
    }

    fn bias(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| f64::from((0.5 * self.next()) as f32))
            .collect()
    }
}

/// A model variant: what the file says and how its weights are stored.
#[derive(Clone, Debug)]
struct Spec {
    arch: &'static str,
    layers: usize,
    hidden: usize,
    q_heads: usize,
    kv_heads: usize,
    ffn: usize,
    vocab: usize,
    rope_base: f64,
    /// Rotated dimensions (`rope.dimension_count`); `None` rotates the whole head.
    rope_dims: Option<usize>,
    /// Linear RoPE scaling factor (`rope.scaling.type = linear`).
    linear_scaling: Option<f64>,
    /// Llama 3's per-frequency divisors (`rope_freqs.weight`).
    freq_factors: Option<Vec<f64>>,
    /// Q/K/V biases (Qwen2).
    qkv_bias: bool,
    /// Fused `attn_qkv` and gate/up `ffn_up` (Phi-3).
    fused: bool,
    /// Q/K rows stored permuted for adjacent-pair RoPE (llama.cpp's converter does it for
    /// `llama` only).
    permuted: bool,
    /// Output head tied to the embedding (no `output.weight`).
    tied: bool,
    context: usize,
    sliding_window: Option<usize>,
    eps: f64,
}

impl Spec {
    fn head_dim(&self) -> usize {
        self.hidden / self.q_heads
    }

    fn rot(&self) -> usize {
        self.rope_dims.unwrap_or(self.head_dim())
    }
}

fn llama() -> Spec {
    Spec {
        arch: "llama",
        layers: 2,
        hidden: 32,
        q_heads: 4,
        kv_heads: 2,
        ffn: 40,
        vocab: 48,
        rope_base: 10_000.0,
        rope_dims: None,
        linear_scaling: None,
        freq_factors: None,
        qkv_bias: false,
        fused: false,
        permuted: true,
        tied: false,
        context: 64,
        sliding_window: None,
        eps: 1e-5,
    }
}

/// Llama 3.x: `rope_freqs` divisors, tied head (Llama 3.2 1B/3B), a large base. The converter
/// derives divisors of 1 for high frequencies and up to the scaling factor for low ones; these
/// reach higher frequencies so that 24 positions turn them measurably.
fn llama3() -> Spec {
    Spec {
        rope_base: 500_000.0,
        freq_factors: Some(vec![1.0, 2.5, 8.0, 20.0]),
        tied: true,
        ..llama()
    }
}

/// Qwen2 / Qwen2.5 / Qwen1.5: Q/K/V biases, NeoX RoPE, tied head (the 0.5B models).
fn qwen2() -> Spec {
    Spec {
        arch: "qwen2",
        permuted: false,
        rope_base: 1_000_000.0,
        qkv_bias: true,
        tied: true,
        eps: 1e-6,
        ..llama()
    }
}

/// Phi-3 mini: fused QKV and gate/up, MHA, NeoX RoPE, a sliding window longer than the tests.
fn phi3() -> Spec {
    Spec {
        arch: "phi3",
        permuted: false,
        kv_heads: 4,
        fused: true,
        sliding_window: Some(40),
        ..llama()
    }
}

/// The weights in Hugging Face's layout (`[out, in]` row-major).
struct Weights {
    embed: Vec<f64>,
    layers: Vec<LayerWeights>,
    out_norm: Vec<f64>,
    output: Option<Vec<f64>>,
}

struct LayerWeights {
    attn_norm: Vec<f64>,
    wq: Vec<f64>,
    wk: Vec<f64>,
    wv: Vec<f64>,
    wo: Vec<f64>,
    bias: Option<[Vec<f64>; 3]>,
    ffn_norm: Vec<f64>,
    gate: Vec<f64>,
    up: Vec<f64>,
    down: Vec<f64>,
}

fn weights(s: &Spec, seed: u64) -> Weights {
    let mut r = Rng(seed);
    let (h, d) = (s.hidden, s.head_dim());
    let (q, kv) = (s.q_heads * d, s.kv_heads * d);
    // Embeddings of unit scale, so the first norm sees O(1) values.
    let embed = (0..s.vocab * h)
        .map(|_| f64::from(r.next() as f32))
        .collect();
    let layers = (0..s.layers)
        .map(|_| LayerWeights {
            attn_norm: r.norm(h),
            wq: r.matrix(q, h),
            wk: r.matrix(kv, h),
            wv: r.matrix(kv, h),
            wo: r.matrix(h, q),
            bias: s.qkv_bias.then(|| [r.bias(q), r.bias(kv), r.bias(kv)]),
            ffn_norm: r.norm(h),
            gate: r.matrix(s.ffn, h),
            up: r.matrix(s.ffn, h),
            down: r.matrix(h, s.ffn),
        })
        .collect();
    let out_norm = r.norm(h);
    let output = (!s.tied).then(|| r.matrix(s.vocab, h));
    Weights {
        embed,
        layers,
        out_norm,
        output,
    }
}

/// llama.cpp's converter permutation of Llama's Q/K rows: within each head, HF row
/// `j·(d/2) + i` (half `j`, pair `i`) becomes row `2i + j`, so adjacent rows pair up.
fn permute(w: &[f64], heads: usize, d: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..d / 2 {
                let src = (h * d + j * d / 2 + i) * cols;
                let dst = (h * d + 2 * i + j) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The GGUF file of `w` as llama.cpp's converter writes model `s`.
fn gguf(s: &Spec, w: &Weights) -> GgufWriter {
    let a = s.arch;
    let (h, d) = (s.hidden, s.head_dim());
    let (q, kv) = (s.q_heads * d, s.kv_heads * d);
    let mut g = GgufWriter::new();
    let u = |v: usize| Value::U64(v as u64);
    g.metadata("general.architecture", Value::Str(a.into()))
        .metadata(&format!("{a}.block_count"), u(s.layers))
        .metadata(&format!("{a}.embedding_length"), u(h))
        .metadata(&format!("{a}.feed_forward_length"), u(s.ffn))
        .metadata(&format!("{a}.attention.head_count"), u(s.q_heads))
        .metadata(&format!("{a}.attention.head_count_kv"), u(s.kv_heads))
        .metadata(&format!("{a}.context_length"), u(s.context))
        .metadata(&format!("{a}.rope.freq_base"), Value::F64(s.rope_base))
        .metadata(
            &format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F64(s.eps),
        );
    if let Some(n) = s.rope_dims {
        g.metadata(&format!("{a}.rope.dimension_count"), u(n));
    }
    if let Some(f) = s.linear_scaling {
        g.metadata(
            &format!("{a}.rope.scaling.type"),
            Value::Str("linear".into()),
        )
        .metadata(&format!("{a}.rope.scaling.factor"), Value::F64(f));
    }
    if let Some(window) = s.sliding_window {
        g.metadata(&format!("{a}.attention.sliding_window"), u(window));
    }
    let mut t = |name: &str, shape: &[usize], data: &[f64]| {
        g.tensor_f32(name, shape, &f32s(data)).unwrap();
    };
    t("token_embd.weight", &[s.vocab, h], &w.embed);
    if let Some(f) = &s.freq_factors {
        t("rope_freqs.weight", &[f.len()], f);
    }
    for (l, lw) in w.layers.iter().enumerate() {
        let p = |n: &str| format!("blk.{l}.{n}");
        t(&p("attn_norm.weight"), &[h], &lw.attn_norm);
        let (wq, wk) = if s.permuted {
            (
                permute(&lw.wq, s.q_heads, d, h),
                permute(&lw.wk, s.kv_heads, d, h),
            )
        } else {
            (lw.wq.clone(), lw.wk.clone())
        };
        if s.fused {
            let qkv: Vec<f64> = [wq, wk, lw.wv.clone()].concat();
            t(&p("attn_qkv.weight"), &[q + 2 * kv, h], &qkv);
            let gate_up: Vec<f64> = [lw.gate.clone(), lw.up.clone()].concat();
            t(&p("ffn_up.weight"), &[2 * s.ffn, h], &gate_up);
        } else {
            t(&p("attn_q.weight"), &[q, h], &wq);
            t(&p("attn_k.weight"), &[kv, h], &wk);
            t(&p("attn_v.weight"), &[kv, h], &lw.wv);
            t(&p("ffn_gate.weight"), &[s.ffn, h], &lw.gate);
            t(&p("ffn_up.weight"), &[s.ffn, h], &lw.up);
        }
        if let Some([bq, bk, bv]) = &lw.bias {
            t(&p("attn_q.bias"), &[q], bq);
            t(&p("attn_k.bias"), &[kv], bk);
            t(&p("attn_v.bias"), &[kv], bv);
        }
        t(&p("attn_output.weight"), &[h, q], &lw.wo);
        t(&p("ffn_norm.weight"), &[h], &lw.ffn_norm);
        t(&p("ffn_down.weight"), &[h, s.ffn], &lw.down);
    }
    t("output_norm.weight", &[h], &w.out_norm);
    if let Some(o) = &w.output {
        t("output.weight", &[s.vocab, h], o);
    }
    g
}

// ---- The float64 reference, from the models' Hugging Face definitions ----

fn linear(x: &[f64], w: &[f64], b: Option<&[f64]>, rows: usize, inp: usize) -> Vec<f64> {
    let out = w.len() / inp;
    let mut y = vec![0.0; rows * out];
    for t in 0..rows {
        for o in 0..out {
            let dot: f64 = (0..inp).map(|i| x[t * inp + i] * w[o * inp + i]).sum();
            y[t * out + o] = dot + b.map_or(0.0, |b| b[o]);
        }
    }
    y
}

fn rms(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    x.chunks(w.len())
        .flat_map(|row| {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            row.iter().zip(w).map(move |(v, w)| v * inv * w)
        })
        .collect()
}

/// HF's `apply_rotary_pos_emb` with `rotate_half` on the first `rot` dimensions of every head:
/// `x·cos + rotate_half(x)·sin`, `inv_freq[i] = base^(−2i/rot) / factor[i]`, positions divided by
/// the linear scaling factor.
fn rope(s: &Spec, x: &mut [f64], heads: usize) {
    let (d, rot) = (s.head_dim(), s.rot());
    let scale = s.linear_scaling.unwrap_or(1.0);
    for (t, row) in x.chunks_mut(heads * d).enumerate() {
        for head in row.chunks_mut(d) {
            let orig = head.to_vec();
            for j in 0..rot {
                let i = j % (rot / 2);
                let factor = s.freq_factors.as_ref().map_or(1.0, |f| f[i]);
                let inv = s.rope_base.powf(-2.0 * i as f64 / rot as f64) / factor;
                let angle = t as f64 / scale * inv;
                let rotated = if j < rot / 2 {
                    -orig[j + rot / 2]
                } else {
                    orig[j - rot / 2]
                };
                head[j] = orig[j] * angle.cos() + rotated * angle.sin();
            }
        }
    }
}

/// Causal softmax(q·kᵀ/√d)·v, query head `h` reading KV head `h / (q_heads / kv_heads)`;
/// `[rows, heads·d]` layouts.
fn attention(s: &Spec, q: &[f64], k: &[f64], v: &[f64], n: usize) -> Vec<f64> {
    let d = s.head_dim();
    let group = s.q_heads / s.kv_heads;
    let (qw, kw) = (s.q_heads * d, s.kv_heads * d);
    let mut out = vec![0.0; n * qw];
    for h in 0..s.q_heads {
        let g = h / group;
        for t in 0..n {
            let qi = &q[t * qw + h * d..][..d];
            let logits: Vec<f64> = (0..=t)
                .map(|u| {
                    let kj = &k[u * kw + g * d..][..d];
                    qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt()
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|z| (z - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (u, p) in e.iter().enumerate() {
                for c in 0..d {
                    out[t * qw + h * d + c] += p / sum * v[u * kw + g * d + c];
                }
            }
        }
    }
    out
}

/// Logits `[n, vocab]` of `tokens` under the reference forward pass.
fn reference_logits(s: &Spec, w: &Weights, tokens: &[u32]) -> Vec<f64> {
    let (n, h) = (tokens.len(), s.hidden);
    let mut x: Vec<f64> = tokens
        .iter()
        .flat_map(|&t| w.embed[t as usize * h..][..h].to_vec())
        .collect();
    for lw in &w.layers {
        let a = rms(&x, &lw.attn_norm, s.eps);
        let b = lw.bias.as_ref();
        let mut q = linear(&a, &lw.wq, b.map(|b| b[0].as_slice()), n, h);
        let mut k = linear(&a, &lw.wk, b.map(|b| b[1].as_slice()), n, h);
        let v = linear(&a, &lw.wv, b.map(|b| b[2].as_slice()), n, h);
        rope(s, &mut q, s.q_heads);
        rope(s, &mut k, s.kv_heads);
        let att = attention(s, &q, &k, &v, n);
        let o = linear(&att, &lw.wo, None, n, s.q_heads * s.head_dim());
        x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
        let m = rms(&x, &lw.ffn_norm, s.eps);
        let gate = linear(&m, &lw.gate, None, n, h);
        let up = linear(&m, &lw.up, None, n, h);
        let act: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        let down = linear(&act, &lw.down, None, n, s.ffn);
        x.iter_mut().zip(&down).for_each(|(x, o)| *x += o);
    }
    let last = rms(&x, &w.out_norm, s.eps);
    linear(&last, w.output.as_ref().unwrap_or(&w.embed), None, n, h)
}

/// Logits of the harness on the file.
fn harness_logits(file: &GgufWriter, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
    let g = Gguf::parse(file.to_bytes()?)?;
    let model = Model::from_gguf(&g)?;
    let cpu = CpuBackend::new();
    let hidden = model.forward(tokens, &mut Dense { compute: &cpu })?;
    Ok(model.logits(&hidden, tokens.len()))
}

fn tokens(s: &Spec, n: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7 + 3) % s.vocab) as u32).collect()
}

/// The largest |harness − reference| over the largest |reference|.
fn relative_error(s: &Spec, seed: u64, n: usize) -> f64 {
    let w = weights(s, seed);
    let toks = tokens(s, n);
    let got = harness_logits(&gguf(s, &w), &toks).unwrap();
    let want = reference_logits(s, &w, &toks);
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{}: non-finite logits",
        s.arch
    );
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.5,
        "{}: the logits are too small to test ({scale})",
        s.arch
    );
    got.iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
        / scale
}

/// The bound: the harness runs in f32 (unit round-off 6e-8) through two layers of dot products
/// of length ≤ 40 and a softmax; measured 1.5e-7 to 2.5e-7 on every variant here. 1e-5 leaves
/// 40× for other machines' summation orders and is 500× below the smallest wrong-semantics error
/// measured below (`rope_freqs` ignored: 5.6e-3; RoPE on the wrong pairs, missing biases,
/// swapped gate/up rows: 0.06 to 0.24).
const TOLERANCE: f64 = 1e-5;

fn check(s: Spec) {
    // 24 tokens: positions far enough for the low RoPE frequencies and scaling to matter.
    for seed in [1, 2] {
        let err = relative_error(&s, seed, 24);
        eprintln!("{} (seed {seed}): {err:.2e}", s.arch);
        assert!(
            err <= TOLERANCE,
            "{} (seed {seed}): logits {err:.2e} from the reference (bound {TOLERANCE:.0e})",
            s.arch
        );
    }
}

#[test]
fn llama_matches_the_reference() {
    check(llama());
}

#[test]
fn llama3_with_rope_freqs_matches_the_reference() {
    check(llama3());
}

#[test]
fn llama_with_linear_rope_scaling_matches_the_reference() {
    check(Spec {
        linear_scaling: Some(4.0),
        ..llama()
    });
}

#[test]
fn qwen2_with_biases_matches_the_reference() {
    check(qwen2());
}

#[test]
fn qwen15_mha_matches_the_reference() {
    // Qwen1.5 is GGUF architecture `qwen2` with as many KV heads as query heads.
    check(Spec {
        kv_heads: 4,
        tied: false,
        ..qwen2()
    });
}

#[test]
fn qwen2_with_partial_rotary_matches_the_reference() {
    check(Spec {
        rope_dims: Some(4),
        ..qwen2()
    });
}

#[test]
fn phi3_with_fused_weights_matches_the_reference() {
    check(phi3());
}

/// A change of the reference's model from the file's.
type Change = Box<dyn Fn(&mut Spec, &mut Weights)>;

/// The test has teeth: a file whose semantics differ from the reference (each mistake a port of
/// the loader could make) is rejected by the bound.
#[test]
fn wrong_semantics_are_far_outside_the_bound() {
    let cases: Vec<(&str, Spec, Change)> = vec![
        (
            "Llama's Q/K rows not permuted (RoPE on the wrong pairs)",
            Spec {
                permuted: false,
                ..llama()
            },
            Box::new(|_, _| {}),
        ),
        (
            "rope_freqs ignored",
            llama3(),
            Box::new(|s, _| s.freq_factors = None),
        ),
        (
            "linear scaling ignored",
            Spec {
                linear_scaling: Some(4.0),
                ..llama()
            },
            Box::new(|s, _| s.linear_scaling = None),
        ),
        (
            "Q/K/V biases ignored",
            qwen2(),
            Box::new(|_, w| w.layers.iter_mut().for_each(|l| l.bias = None)),
        ),
        (
            "fused gate/up rows swapped",
            phi3(),
            Box::new(|_, w| {
                w.layers
                    .iter_mut()
                    .for_each(|l| std::mem::swap(&mut l.gate, &mut l.up))
            }),
        ),
    ];
    for (what, file_spec, change) in cases {
        let w = weights(&file_spec, 5);
        let toks = tokens(&file_spec, 24);
        let got = harness_logits(&gguf(&file_spec, &w), &toks).unwrap();
        let (mut reference_spec, mut reference_weights) =
            (file_spec.clone(), weights(&file_spec, 5));
        change(&mut reference_spec, &mut reference_weights);
        let want = reference_logits(&reference_spec, &reference_weights, &toks);
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (f64::from(*g) - w).abs())
            .fold(0.0, f64::max)
            / scale;
        eprintln!("{what}: {err:.2e}");
        assert!(
            err > 100.0 * TOLERANCE,
            "{what}: only {err:.2e} from the reference; the bound {TOLERANCE:.0e} would not see it"
        );
    }
}

fn refusal(s: &Spec, edit: impl FnOnce(&mut GgufWriter)) -> String {
    let mut file = gguf(s, &weights(s, 1));
    edit(&mut file);
    let g = Gguf::parse(file.to_bytes().unwrap()).unwrap();
    match Model::from_gguf(&g) {
        Ok(_) => panic!("the model loaded"),
        Err(e) => e.to_string(),
    }
}

/// A change to a valid file.
type Edit = Box<dyn FnOnce(&mut GgufWriter)>;

#[test]
fn what_the_kernels_do_not_compute_is_refused_by_name() {
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "gemma2",
            Box::new(|g| {
                g.metadata("general.architecture", Value::Str("gemma2".into()));
            }),
            &["gemma2", "soft-capping", "supported: llama, qwen2, phi3"],
        ),
        (
            "an unknown architecture",
            Box::new(|g| {
                g.metadata("general.architecture", Value::Str("rwkv7".into()));
            }),
            &["rwkv7", "supported: llama, qwen2, phi3"],
        ),
        (
            "soft-capping on a llama",
            Box::new(|g| {
                g.metadata("llama.attn_logit_softcapping", Value::F64(50.0));
            }),
            &["llama.attn_logit_softcapping", "soft-capping"],
        ),
        (
            "YaRN",
            Box::new(|g| {
                g.metadata("llama.rope.scaling.type", Value::Str("yarn".into()));
            }),
            &["llama.rope.scaling.type", "yarn"],
        ),
        (
            "LongRoPE",
            Box::new(|g| {
                g.tensor_f32("rope_factors_long.weight", &[4], &[1.0; 4])
                    .unwrap();
            }),
            &["rope_factors_long.weight", "LongRoPE"],
        ),
        (
            "mixture of experts",
            Box::new(|g| {
                g.metadata("llama.expert_count", Value::U64(8));
            }),
            &["llama.expert_count", "mixture-of-experts"],
        ),
        (
            "odd rotated dimensions",
            Box::new(|g| {
                g.metadata("llama.rope.dimension_count", Value::U64(5));
            }),
            &["llama.rope.dimension_count", "even"],
        ),
    ];
    for (what, edit, needles) in cases {
        let message = refusal(&llama(), edit);
        for needle in needles {
            assert!(
                message.contains(needle),
                "{what}: `{message}` does not say `{needle}`"
            );
        }
    }
}

#[test]
fn a_llama_without_a_gate_says_which_tensor_is_missing() {
    let s = llama();
    let w = weights(&s, 1);
    // Rebuild the file without layer 1's gate.
    let bytes = gguf(&s, &w).to_bytes().unwrap();
    let g = Gguf::parse(bytes).unwrap();
    let mut file = GgufWriter::new();
    for (k, v) in &g.metadata {
        file.metadata(k, v.clone());
    }
    for t in g
        .tensors
        .iter()
        .filter(|t| t.name != "blk.1.ffn_gate.weight")
    {
        file.tensor_raw(&t.name, t.dims.clone(), t.ty, g.raw(t).to_vec())
            .unwrap();
    }
    let g = Gguf::parse(file.to_bytes().unwrap()).unwrap();
    let e = Model::from_gguf(&g).unwrap_err().to_string();
    assert!(e.contains("blk.1.ffn_gate.weight"), "{e}");
}

#[test]
fn the_sliding_window_bounds_token_counts() {
    let s = phi3();
    let bytes = gguf(&s, &weights(&s, 1)).to_bytes().unwrap();
    let g = Gguf::parse(bytes).unwrap();
    let c = ModelConfig::from_gguf(&g).unwrap();
    assert_eq!(
        (c.context, c.sliding_window, c.max_tokens()),
        (64, Some(40), 40)
    );
    c.check_tokens("--window", 40).unwrap();
    let e = c.check_tokens("--window", 41).unwrap_err().to_string();
    assert!(
        e.contains("41") && e.contains("40") && e.contains("phi3.attention.sliding_window"),
        "{e}"
    );
    let model = Model::from_gguf(&g).unwrap();
    let cpu = CpuBackend::new();
    let e = model
        .forward(&tokens(&s, 41), &mut Dense { compute: &cpu })
        .unwrap_err();
    assert!(
        matches!(e, ModelError::PastContext { limit: 40, .. }),
        "{e}"
    );
}

#[test]
fn the_writer_round_trips_metadata_and_tensors() {
    let mut file = GgufWriter::new();
    file.metadata("a.u", Value::U64(7))
        .metadata("a.big", Value::U64(1 << 40))
        .metadata("a.neg", Value::I64(-3))
        .metadata("a.f", Value::F64(0.5))
        .metadata("a.third", Value::F64(1.0 / 3.0))
        .metadata("a.b", Value::Bool(true))
        .metadata(
            "a.arr",
            Value::Array(vec![Value::U64(1), Value::U64(1 << 33)]),
        )
        .metadata(
            "a.strs",
            Value::Array(vec![Value::Str("x".into()), Value::Str("yz".into())]),
        );
    file.tensor_f32("t", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    let g = Gguf::parse(file.to_bytes().unwrap()).unwrap();
    assert_eq!(g.get("a.u"), Some(&Value::U64(7)));
    assert_eq!(g.get("a.big"), Some(&Value::U64(1 << 40)));
    assert_eq!(g.get("a.neg"), Some(&Value::I64(-3)));
    assert_eq!(g.get("a.f"), Some(&Value::F64(0.5)));
    assert_eq!(g.get("a.third"), Some(&Value::F64(1.0 / 3.0)));
    assert_eq!(g.get("a.b"), Some(&Value::Bool(true)));
    assert_eq!(
        g.get("a.arr"),
        Some(&Value::Array(vec![Value::U64(1), Value::U64(1 << 33)]))
    );
    assert_eq!(g.tensor("t").unwrap().dims, [3, 2]);
    assert_eq!(g.dequantize("t").unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // Mixed array types and wrong data sizes are typed errors.
    let mut bad = GgufWriter::new();
    bad.metadata(
        "m",
        Value::Array(vec![Value::U64(1), Value::Str("x".into())]),
    );
    assert!(matches!(
        bad.to_bytes(),
        Err(ModelError::InvalidArgument { .. })
    ));
    assert!(matches!(
        GgufWriter::new().tensor_f32("t", &[2, 2], &[1.0]),
        Err(ModelError::InvalidArgument { .. })
    ));
}

/// `Model::from_gguf` on the llama file with `edit` applied.
fn load_edited(edit: impl FnOnce(&mut GgufWriter)) -> Result<Model, ModelError> {
    let s = llama();
    let mut file = gguf(&s, &weights(&s, 1));
    edit(&mut file);
    Model::from_gguf(&Gguf::parse(file.to_bytes().unwrap()).unwrap())
}

#[test]
fn metadata_values_out_of_range_are_refused_and_defaults_apply() {
    let message = |edit: Edit| match load_edited(edit) {
        Ok(_) => panic!("the model loaded"),
        Err(e) => e.to_string(),
    };
    // Counts must be positive.
    let e = message(Box::new(|g| {
        g.metadata("llama.block_count", Value::U64(0));
    }));
    assert!(e.contains("positive integer `llama.block_count`"), "{e}");
    // The RMSNorm epsilon must be a positive finite number, and there is no default.
    for bad in [0.0, -1e-5, f64::INFINITY] {
        let e = message(Box::new(move |g| {
            g.metadata("llama.attention.layer_norm_rms_epsilon", Value::F64(bad));
        }));
        assert!(
            e.contains("llama.attention.layer_norm_rms_epsilon"),
            "{bad}: {e}"
        );
    }
    let e = message(Box::new(|g| {
        g.remove("llama.attention.layer_norm_rms_epsilon");
    }));
    assert!(
        e.contains("positive number `llama.attention.layer_norm_rms_epsilon`"),
        "{e}"
    );
    // A missing RoPE base is llama.cpp's default, 10000.
    let m = load_edited(|g| {
        g.remove("llama.rope.freq_base");
    })
    .unwrap();
    assert_eq!(m.config.rope.base, 10_000.0);
    // hidden must divide into the query heads when no key length is given.
    let e = message(Box::new(|g| {
        g.metadata("llama.attention.head_count", Value::U64(6));
    }));
    assert!(e.contains("hidden 32 over 6 query heads"), "{e}");
    // RoPE rotates at most the head's dimensions.
    let e = message(Box::new(|g| {
        g.metadata("llama.rope.dimension_count", Value::U64(10));
    }));
    assert!(e.contains("up to the head's 8"), "{e}");
    // Llama 3's factors must be positive.
    for bad in [0.0f32, -2.0, f32::NAN] {
        let e = message(Box::new(move |g| {
            g.tensor_f32("rope_freqs.weight", &[4], &[1.0, 2.0, bad, 4.0])
                .unwrap();
        }));
        assert!(e.contains("factors must be positive"), "{bad}: {e}");
    }
}

#[test]
fn inert_values_of_refused_keys_load() {
    // llama.cpp writes these keys as 0 when a model does not use the feature.
    let m = load_edited(|g| {
        g.metadata("llama.expert_count", Value::U64(0))
            .metadata("llama.attn_logit_softcapping", Value::F64(0.0));
    });
    assert!(m.is_ok(), "{:?}", m.err());
}

#[test]
fn a_sliding_window_as_long_as_the_context_names_the_context_length() {
    let s = Spec {
        sliding_window: Some(64),
        ..phi3()
    };
    let g = Gguf::parse(gguf(&s, &weights(&s, 1)).to_bytes().unwrap()).unwrap();
    let c = ModelConfig::from_gguf(&g).unwrap();
    assert_eq!(c.max_tokens(), 64);
    assert_eq!(
        c.max_tokens_source(),
        "the GGUF metadata `phi3.context_length`"
    );
}

/// The GGUF type code of the only metadata value of a file with key `k`.
fn type_code_of(value: Value) -> u32 {
    let mut w = GgufWriter::new();
    w.metadata("k", value);
    let bytes = w.to_bytes().unwrap();
    // Magic, version, tensor count, metadata count, then the key (u64 length + "k").
    u32::from_le_bytes(bytes[24 + 8 + 1..][..4].try_into().unwrap())
}

#[test]
fn the_writer_picks_the_narrowest_type_llama_cpp_writes() {
    assert_eq!(type_code_of(Value::U64(7)), 4);
    assert_eq!(type_code_of(Value::U64(1 << 40)), 10);
    assert_eq!(type_code_of(Value::I64(-3)), 5);
    assert_eq!(type_code_of(Value::I64(1 << 40)), 11);
    assert_eq!(type_code_of(Value::I64(-(1 << 40))), 11);
    assert_eq!(type_code_of(Value::F64(0.5)), 6);
    assert_eq!(type_code_of(Value::F64(f64::NAN)), 6);
    assert_eq!(type_code_of(Value::F64(1.0 / 3.0)), 12);
    let mut w = GgufWriter::new();
    w.metadata("k", Value::I64(-(1 << 40)));
    let g = Gguf::parse(w.to_bytes().unwrap()).unwrap();
    assert_eq!(g.get("k"), Some(&Value::I64(-(1 << 40))));
}

#[test]
fn the_writer_refuses_malformed_tensors_and_writes_files() {
    let raw = |dims: Vec<u64>, bytes: usize| {
        GgufWriter::new()
            .tensor_raw(
                "t",
                dims,
                shadowattn_models::gguf::TensorType::F32,
                vec![0; bytes],
            )
            .map(|_| ())
    };
    assert!(raw(vec![2], 8).is_ok());
    assert!(matches!(
        raw(vec![2], 12),
        Err(ModelError::InvalidArgument { .. })
    ));
    assert!(matches!(
        raw(vec![], 4),
        Err(ModelError::InvalidArgument { .. })
    ));
    assert!(matches!(
        raw(vec![1; 5], 4),
        Err(ModelError::InvalidArgument { .. })
    ));
    assert!(raw(vec![1; 4], 4).is_ok());
    let mut w = GgufWriter::new();
    w.tensor_f32("t", &[1], &[2.5]).unwrap();
    assert!(matches!(
        w.tensor_f32("t", &[1], &[1.0]),
        Err(ModelError::InvalidArgument { .. })
    ));
    let path = std::env::temp_dir().join(format!("writer-{}.gguf", std::process::id()));
    w.write(&path).unwrap();
    assert_eq!(Gguf::open(&path).unwrap().dequantize("t").unwrap(), [2.5]);
    std::fs::remove_file(&path).ok();
    let e = w
        .write(std::path::Path::new("/nonexistent-dir/x.gguf"))
        .unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }), "{e}");
}
