//! `shadowattn prefill --functional`: the prefill's real numbers with every linear layer on the
//! NPU backend, against the host's forward pass on the same tokens.

use crate::eval::read;
use crate::progress::progress_bar;
use shadowattn_hal::{ComputeBackend, NpuBackend};
use shadowattn_models::attention::{CoreAttention, Dense};
use shadowattn_models::eval::{calibrate, windows};
use shadowattn_models::npu_linear::NpuLinears;
use shadowattn_models::{Attention, Gguf, Model, Tokenizer};
use shadowattn_sparse_attn::calibration::{Calibration, RatioConfig};
use shadowattn_sparse_attn::select::Granularity;
use shadowattn_sparse_attn::setup::PilotKind;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

/// How the NPU's logits and perplexity compare with the host's.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Largest |NPU logit − host logit| over every position and token.
    pub max_abs_diff: f64,
    /// Root mean square of the host's logits.
    pub host_rms: f64,
    /// Positions whose most likely next token is the same.
    pub top1_agree: usize,
    /// Positions compared.
    pub positions: usize,
    /// Perplexity of the slice, NPU linear layers.
    pub npu_ppl: f64,
    /// Perplexity of the slice, host linear layers.
    pub host_ppl: f64,
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Compares the logits `[n, vocab]` of the NPU path with the host's.
fn compare(npu: &[f32], host: &[f32], vocab: usize, npu_ppl: f64, host_ppl: f64) -> Comparison {
    let max_abs_diff = npu
        .iter()
        .zip(host)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    let host_rms =
        (host.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / host.len() as f64).sqrt();
    let top1_agree = npu
        .chunks(vocab)
        .zip(host.chunks(vocab))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    Comparison {
        max_abs_diff,
        host_rms,
        top1_agree,
        positions: host.len() / vocab,
        npu_ppl,
        host_ppl,
    }
}

/// shadowAttn in the functional prefill: the sparse-attention core with its pilot on the NPU.
#[derive(Clone, Debug)]
pub struct ShadowRun {
    /// A calibration file for the model (else one is made from `calibration_text`).
    pub calibration: Option<PathBuf>,
    /// Text whose first 256 tokens calibrate when no file is given.
    pub calibration_text: PathBuf,
    /// Uniform kept fraction of a calibration made here.
    pub ratio: f32,
    /// Who shares a key set.
    pub granularity: Granularity,
}

/// The functional prefill to run.
#[derive(Debug)]
pub struct FunctionalRun<'a> {
    /// The GGUF model.
    pub model: &'a Path,
    /// Text whose first `len` tokens run.
    pub text: &'a Path,
    /// Tokens.
    pub len: usize,
    /// Rows per graph execution.
    pub chunk: usize,
    /// shadowAttn beside dense attention, when asked for.
    pub shadow: Option<ShadowRun>,
    /// A folder keeping the compiled linear-layer graphs across runs.
    pub graph_cache: Option<PathBuf>,
}

/// Both forward passes of `tokens` with `attention`: linear layers on the NPU, then on the
/// host; their logits and perplexities compared.
fn both_ways(
    model: &Model,
    tokens: &[u32],
    linears: &mut NpuLinears,
    attention: &mut dyn Attention,
) -> Res<Comparison> {
    let npu_hidden = model.forward_with(tokens, linears, attention)?;
    let host_hidden = model.forward(tokens, attention)?;
    // The perplexity: exp of the mean negative log-likelihood of every next token.
    let ppl = |hidden: &[f32]| model.nll(hidden, tokens, 0).0.exp();
    let n = tokens.len();
    Ok(compare(
        &model.logits(&npu_hidden, n),
        &model.logits(&host_hidden, n),
        model.config.vocab,
        ppl(&npu_hidden),
        ppl(&host_hidden),
    ))
}

/// Prints `c` with every key prefixed by `prefix`.
fn print_comparison(prefix: &str, c: &Comparison, npu: &str, attention: &str) {
    println!(
        "{prefix}logits_max_abs_diff: {:.4} ({:.4} of the host logits' RMS {:.3}; {attention})",
        c.max_abs_diff,
        c.max_abs_diff / c.host_rms,
        c.host_rms
    );
    println!(
        "{prefix}logits_top1_agreement: {}/{} (positions whose most likely next token is the same)",
        c.top1_agree, c.positions
    );
    println!("{prefix}ppl_npu: {:.4} (linear layers on {npu})", c.npu_ppl);
    println!(
        "{prefix}ppl_host: {:.4} (linear layers on the host, f32)",
        c.host_ppl
    );
    println!(
        "{prefix}ppl_diff_pct: {:+.3}",
        (c.npu_ppl / c.host_ppl - 1.0) * 100.0
    );
}

/// The calibration of the shadowAttn run: the file's, or one made on the calibration text.
fn shadow_calibration(
    model: &Model,
    tokenizer: &Tokenizer,
    compute: &dyn ComputeBackend,
    run: &ShadowRun,
) -> Res<Calibration> {
    let c = &model.config;
    if let Some(path) = &run.calibration {
        return crate::calibrate::load_for_model(
            path,
            [c.layers, c.q_heads, c.kv_heads, c.head_dim],
        );
    }
    let ids = tokenizer.encode(&read(&run.calibration_text)?)?;
    let window = windows(&ids, 256, tokenizer.bos, 1)?.remove(0);
    let cfg = RatioConfig {
        global_ratio: run.ratio,
        min_ratio: run.ratio,
        importance_clamp: (1e-8, 1e8),
    };
    let uniform = vec![vec![1.0; c.q_heads]; c.layers];
    Ok(calibrate(
        model, "model", compute, &window, &uniform, cfg, true,
    )?)
}

/// Runs the first `len` tokens of `text` through `model_path` twice — linear layers as NPU
/// graphs of `chunk` rows on `npu`, and on the host — with dense attention on `compute` (and
/// with shadowAttn's core, its pilot on `npu`, when asked), and prints the comparisons.
pub fn run(
    run: &FunctionalRun<'_>,
    npu: &dyn NpuBackend,
    compute: &dyn ComputeBackend,
) -> Res<Comparison> {
    let started = Instant::now();
    let gguf = Gguf::open(run.model)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let model = Model::from_gguf(&gguf)?;
    drop(gguf);
    let ids = tokenizer.encode(&read(&run.text.to_path_buf())?)?;
    let tokens = windows(&ids, run.len, tokenizer.bos, 1)?.remove(0);
    let (text, chunk) = (run.text, run.chunk);
    let n = tokens.len();
    let rows = chunk.min(n);
    let bar = progress_bar(model.config.layers);
    bar.set_message("compiling the linear layers");
    let mut linears =
        NpuLinears::compile(&model, npu, rows, run.graph_cache.as_deref(), &mut |_| {
            bar.inc(1)
        })?;
    bar.finish_and_clear();
    for refusal in linears.refused() {
        eprintln!("warning: {refusal}");
    }
    println!(
        "functional: every layer's linear layers on {} as {} static FP16 graphs of {rows} rows (weights STATIC), {} compiled and {} loaded from the cache in {:.1} s; attention dense FP32 on {}; output head on the host",
        npu.name(),
        linears.graph_count(),
        linears.graph_count() - linears.loaded(),
        linears.loaded(),
        linears.compile_s(),
        compute.name()
    );
    println!(
        "functional_tokens: {n} (the first {n} tokens of {})",
        text.display()
    );
    let c = both_ways(&model, &tokens, &mut linears, &mut Dense { compute })?;
    print_comparison("", &c, npu.name(), "dense attention");
    if let Some(shadow_run) = &run.shadow {
        let calibration = shadow_calibration(&model, &tokenizer, compute, shadow_run)?;
        let mean_ratio = calibration.ratios.iter().flatten().sum::<f32>()
            / calibration
                .ratios
                .iter()
                .map(Vec::len)
                .sum::<usize>()
                .max(1) as f32;
        let mut core = CoreAttention::build(
            npu,
            compute,
            calibration,
            n,
            (shadow_run.granularity, PilotKind::Head),
            1,
        )?;
        let s = both_ways(&model, &tokens, &mut linears, &mut core)?;
        let label = format!(
            "shadowAttn core, INT8-output pilot on {}, mean ratio {mean_ratio:.3}",
            npu.name()
        );
        print_comparison("shadow_", &s, npu.name(), &label);
        println!(
            "shadow_vs_dense_pct: {:+.3} (perplexity, both with the linear layers on {})",
            (s.npu_ppl / c.npu_ppl - 1.0) * 100.0,
            npu.name()
        );
    }
    println!(
        "functional_graph_executions: {} (linear layers)",
        linears.launches()
    );
    println!(
        "functional_ms: {:.0} (wall time on this machine)",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(c)
}
