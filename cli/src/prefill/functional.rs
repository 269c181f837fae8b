//! `shadowattn prefill --functional`: the prefill's real numbers with every linear layer on the
//! NPU backend, against the host's forward pass on the same tokens.

use crate::eval::read;
use crate::progress::progress_bar;
use shadowattn_hal::{ComputeBackend, NpuBackend};
use shadowattn_models::attention::Dense;
use shadowattn_models::eval::windows;
use shadowattn_models::npu_linear::NpuLinears;
use shadowattn_models::{Gguf, Llama, Tokenizer};
use std::error::Error;
use std::path::Path;
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

/// Runs the first `len` tokens of `text` through `model_path` twice — linear layers as NPU
/// graphs of `chunk` rows on `npu`, and on the host — with dense attention on `compute`, and
/// prints the comparison.
pub fn run(
    model_path: &Path,
    text: &Path,
    len: usize,
    chunk: usize,
    npu: &dyn NpuBackend,
    compute: &dyn ComputeBackend,
) -> Res<Comparison> {
    let started = Instant::now();
    let gguf = Gguf::open(model_path)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let model = Llama::from_gguf(&gguf)?;
    drop(gguf);
    let ids = tokenizer.encode(&read(&text.to_path_buf())?)?;
    let tokens = windows(&ids, len, tokenizer.bos, 1)?.remove(0);
    let n = tokens.len();
    let rows = chunk.min(n);
    let bar = progress_bar(model.config.layers);
    bar.set_message("compiling the linear layers");
    let mut linears = NpuLinears::compile(&model, npu, rows, &mut |_| bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "functional: every layer's linear layers on {} as {} static FP16 graphs of {rows} rows (weights STATIC), compiled in {:.1} s; attention dense FP32 on {}; output head on the host",
        npu.name(),
        linears.graph_count(),
        linears.compile_s(),
        compute.name()
    );
    println!(
        "functional_tokens: {n} (the first {n} tokens of {})",
        text.display()
    );
    let mut dense = Dense { compute };
    let npu_hidden = model.forward_with(&tokens, &mut linears, &mut dense)?;
    let host_hidden = model.forward(&tokens, &mut dense)?;
    let ppl = |hidden: &[f32]| {
        // The mean negative log-likelihood of every next token.
        model.nll(hidden, &tokens, 0).0.exp()
    };
    let vocab = model.config.vocab;
    let c = compare(
        &model.logits(&npu_hidden, n),
        &model.logits(&host_hidden, n),
        vocab,
        ppl(&npu_hidden),
        ppl(&host_hidden),
    );
    println!(
        "logits_max_abs_diff: {:.4} ({:.4} of the host logits' RMS {:.3})",
        c.max_abs_diff,
        c.max_abs_diff / c.host_rms,
        c.host_rms
    );
    println!(
        "logits_top1_agreement: {}/{} (positions whose most likely next token is the same)",
        c.top1_agree, c.positions
    );
    println!(
        "ppl_npu: {:.4} (linear layers on {}; {} graph executions)",
        c.npu_ppl,
        npu.name(),
        linears.launches()
    );
    println!(
        "ppl_host: {:.4} (linear layers on the host, f32)",
        c.host_ppl
    );
    println!(
        "ppl_diff_pct: {:+.3}",
        (c.npu_ppl / c.host_ppl - 1.0) * 100.0
    );
    println!(
        "functional_ms: {:.0} (wall time on this machine)",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(c)
}
