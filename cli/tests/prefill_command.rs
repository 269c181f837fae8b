//! `shadowattn prefill`: a whole model's time to first token per attention strategy on the
//! simulated SoC, its breakdown, the speedups, the timeline, and clear errors.

mod common;
use common::svg::Chart;
use shadowattn_test_support::{qnn_emulator_or_skip, smollm2_or_skip, target_dir};
use std::process::{Command, Output};

fn prefill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadowattn"))
        .arg("prefill")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The milliseconds of `key: <ms> (…)`.
fn ms(text: &str, key: &str) -> f64 {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` in\n{text}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn every_strategy_gets_its_time_to_first_token_and_the_speedups() {
    let dir = target_dir(env!("CARGO_TARGET_TMPDIR"));
    let trace = dir.join("tmp/prefill_trace.json");
    let out = prefill(&[
        "--shape",
        "Qwen2-0.5B",
        "--len",
        "600",
        "--decode",
        "2",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "model: qwen2-0.5b (24 layers, hidden 896, MLP 4864, 14 query / 2 KV heads of 64"
        ),
        "{text}"
    );
    assert!(
        text.contains("prompt: 600 tokens in 3 chunk(s) of up to 256 rows"),
        "{text}"
    );
    let shadow = ms(&text, "shadow_ttft_ms");
    let dense = ms(&text, "dense_cpu_ttft_ms");
    for key in [
        "npu_int8_ttft_ms",
        "npu_fp16_fa_ttft_ms",
        "shadow_decode_ms_per_token",
    ] {
        assert!(ms(&text, key) > 0.0, "{key}");
    }
    // The speedup is the ratio of the two printed times (to their printed precision).
    let speedup = ms(&text, "speedup_over_dense_cpu");
    assert!(
        (speedup - dense / shadow).abs() < 0.01,
        "{speedup} vs {dense} / {shadow}"
    );
    assert!(text.contains("speedup_over_npu_int8: "), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    assert!(events.iter().any(|e| e["name"] == "layer 23"));
    assert!(events.iter().any(|e| e["name"] == "qkv"));
}

#[test]
fn a_gguf_model_is_priced_by_its_own_shape() {
    let Some(model) = smollm2_or_skip(&target_dir(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };
    let out = prefill(&[
        "--model",
        model.to_str().unwrap(),
        "--len",
        "256",
        "--attention",
        "shadow,dense-cpu",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "(30 layers, hidden 576, MLP 1536, 9 query / 3 KV heads of 64, vocabulary 49152)"
        ),
        "{text}"
    );
    assert!(!text.contains("npu_int8"), "{text}");
}

/// The value after `key: ` up to the first space.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` in\n{text}"))
        .split_whitespace()
        .next()
        .unwrap()
}

/// Every linear layer of SmolLM2 as FP16 graphs on Qualcomm's emulator (`libQnnHtp.so`, SoC
/// model 52) and on the simulated SA8255P, 48 tokens, dense attention: the logits and the
/// slice's perplexity match the host's f32 forward pass. Bounds: the 1 % on perplexity;
/// logits within 5 % of their RMS (FP16 rounds each activation and weight by at most
/// 2⁻¹¹ ≈ 5e-4 relative, about 120 rounded projections feed the residual stream,
/// √120 · 5e-4 ≈ 0.5 % typical, a few times that at the maximum over 2.4 M logits); the same
/// most likely token at ≥ 90 % of the positions. A zero, constant or one-layer-off output
/// moves logits by their RMS and fails all three. Then the same prefill with shadowAttn's core
/// (its INT8-output pilot on the same backend): top-k selection is discontinuous in its inputs,
/// so no tolerance holds against the host there; instead the emulator and the simulator (HTP's
/// integer rounding, the golden FP16 MatMul) must agree to the last printed digit.
#[test]
fn the_functional_prefill_on_the_npu_matches_the_host() {
    let target = target_dir(env!("CARGO_TARGET_TMPDIR"));
    let Some(model) = smollm2_or_skip(&target) else {
        return;
    };
    let Some(qnn) = qnn_emulator_or_skip(&target) else {
        return;
    };
    let mut shadow_runs = Vec::new();
    for npu in ["qnn:htp:52", "sim:sa8255"] {
        let out = Command::new(env!("CARGO_BIN_EXE_shadowattn"))
            .env("SHADOWATTN_QNN_LIB", &qnn)
            .args([
                "prefill",
                "--functional",
                "--len",
                "48",
                "--attention",
                "shadow",
            ])
            .args(["--npu", npu, "--model"])
            .arg(&model)
            .output()
            .expect("the binary runs");
        let text = stdout(&out);
        assert!(
            text.contains("as 120 static FP16 graphs of 48 rows"),
            "{npu}: {text}"
        );
        // Dense, then shadowAttn: each runs the 120 graphs once.
        assert!(
            text.contains("functional_graph_executions: 240"),
            "{npu}: {text}"
        );
        let diff: f64 = field(&text, "logits_max_abs_diff").parse().unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("logits_max_abs_diff"))
            .unwrap();
        let relative: f64 = line
            .split('(')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // FP16 graphs differ from f32 (the graphs ran), by little.
        assert!(diff > 0.0 && relative < 0.05, "{npu}: {line}");
        let (agree, of) = field(&text, "logits_top1_agreement")
            .split_once('/')
            .unwrap();
        let (agree, of): (f64, f64) = (agree.parse().unwrap(), of.parse().unwrap());
        assert!(of == 48.0 && agree >= 0.9 * of, "{npu}: {agree}/{of}");
        let ppl_diff: f64 = field(&text, "ppl_diff_pct").parse().unwrap();
        assert!(ppl_diff.abs() < 1.0, "{npu}: {ppl_diff} %");
        let ppl: f64 = field(&text, "ppl_host").parse().unwrap();
        assert!(ppl > 1.0 && ppl < 100.0, "{npu}: host perplexity {ppl}");
        let backend = npu.split(':').take(2).collect::<Vec<_>>().join(":");
        assert!(
            text.contains(&format!("INT8-output pilot on {backend}")),
            "{npu}: {text}"
        );
        let keys = [
            "shadow_logits_max_abs_diff",
            "shadow_logits_top1_agreement",
            "shadow_ppl_npu",
            "shadow_ppl_host",
        ];
        shadow_runs.push(keys.map(|k| field(&text, k).to_string()));
    }
    assert_eq!(
        shadow_runs[0], shadow_runs[1],
        "the emulator and the simulator disagree"
    );
}

#[test]
fn bad_requests_are_clear_errors() {
    let err = |args: &[&str], code: i32, want: &str| {
        let out = prefill(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    };
    err(&[], 2, "--model <MODEL>");
    err(
        &["--shape", "gpt-5"],
        1,
        "unknown model shape `gpt-5`; built in: phonelm-0.5b",
    );
    err(
        &["--shape", "qwen2-0.5b", "--npu", "cpu"],
        1,
        "simulated SoC",
    );
    err(
        &["--shape", "qwen2-0.5b", "--ratio", "0"],
        1,
        "--ratio 0 is outside (0, 1]",
    );
    err(
        &["--shape", "qwen2-0.5b", "--len", "0"],
        1,
        "prompt length 0",
    );
    err(
        &["--shape", "qwen2-0.5b", "--cores", "9"],
        1,
        "--core mid --cores 9: 9 cores is outside 1..=5",
    );
    err(
        &["--shape", "qwen2-0.5b", "--attention", "magic"],
        2,
        "magic",
    );
    err(
        &["--shape", "qwen2-0.5b", "--setup", "phone"],
        2,
        "unknown setup `phone`; known: paper, mllm-port, llm-npu",
    );
    err(
        &["--shape", "qwen2-0.5b", "--launch-path", "usb"],
        2,
        "unknown launch path `usb`; known: qnn-copy, qnn-shared, fastrpc",
    );
    err(
        &["--shape", "qwen2-0.5b", "--placement", "topk=prime:2"],
        1,
        "--placement topk=prime:2: CPU placement: team `prime:2`: 2 threads on `prime`, which has 1 core(s)",
    );
    err(
        &["--shape", "qwen2-0.5b", "--placement", "pack=mid:1"],
        1,
        "placement names stage `pack`; stages: topk, attention, dense, glue",
    );
    err(
        &["--shape", "qwen2-0.5b", "--dense-layers", "0,24"],
        1,
        "dense layer 24 is not a layer of the model's 24",
    );
    err(
        &["--shape", "qwen2-0.5b", "--linear-tile", "0"],
        1,
        "linear tile 0",
    );
    err(
        &[
            "--shape",
            "qwen2-0.5b",
            "--len",
            "256,512",
            "--trace",
            "t.json",
        ],
        1,
        "--trace runs one prompt: give one --len, not 2",
    );
    err(
        &["--shape", "qwen2-0.5b", "--len", "256,0"],
        1,
        "prompt length 0",
    );
    err(
        &[
            "--shape",
            "qwen2-0.5b",
            "--plot",
            "/no/such/folder/ttft.svg",
        ],
        1,
        "cannot write the plot /no/such/folder/ttft.svg: no folder /no/such/folder",
    );
    // A folder where the file should be: refused when written, naming the path.
    let dir = target_dir(env!("CARGO_TARGET_TMPDIR")).join("tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.to_str().unwrap();
    err(
        &["--shape", "qwen2-0.5b", "--len", "64", "--plot", dir],
        1,
        &format!("cannot write the plot {dir}: "),
    );
}

/// The bars of a TTFT chart: `(strategy, prompt tokens)` → segment heights in px, bottom up.
type Bars = std::collections::BTreeMap<(String, usize), Vec<f64>>;

/// Every stacked bar of `chart`, named by the strategy under it and the group under that.
fn ttft_bars(chart: &Chart, segments: &[(String, String)], lens: &[usize]) -> Bars {
    let texts: Vec<_> = chart.named("text").collect();
    // Group labels (`N tokens`) and bar labels (strategies) are centred under their bars.
    let groups: Vec<(f64, usize)> = texts
        .iter()
        .filter_map(|t| Some((t.num("x"), t.text.strip_suffix(" tokens")?.parse().ok()?)))
        .collect();
    assert_eq!(
        groups.iter().map(|g| g.1).collect::<Vec<_>>(),
        lens,
        "a group per length"
    );
    let mut bars = Bars::new();
    for (_, fill) in segments {
        for r in chart.bars(fill) {
            let centre = r.num("x") + r.num("width") / 2.0;
            let strategy = texts
                .iter()
                .filter(|t| ["shadow", "dense-cpu", "npu-int8", "npu-fp16-fa"].contains(&&*t.text))
                .min_by(|a, b| {
                    (a.num("x") - centre)
                        .abs()
                        .total_cmp(&(b.num("x") - centre).abs())
                })
                .expect("a strategy under every bar");
            assert!((strategy.num("x") - centre).abs() <= 1.0, "bar at {centre}");
            let len = groups
                .iter()
                .min_by(|a, b| (a.0 - centre).abs().total_cmp(&(b.0 - centre).abs()))
                .unwrap()
                .1;
            bars.entry((strategy.text.clone(), len))
                .or_default()
                .push(r.num("height"));
        }
    }
    bars
}

#[test]
fn the_plot_stacks_each_strategys_ttft_from_its_stages_for_every_length() {
    let dir = target_dir(env!("CARGO_TARGET_TMPDIR")).join("tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("prefill-plot-{}.svg", std::process::id()));
    let text = stdout(&prefill(&[
        "--shape",
        "qwen2-0.5b",
        "--len",
        "600,1500",
        "--attention",
        "shadow,dense-cpu,npu-int8",
        "--plot",
        path.to_str().unwrap(),
    ]));
    // A report per length, in turn.
    let reports: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(reports.len(), 2, "{text}");
    for (report, len) in reports.iter().zip(["600", "1500"]) {
        assert!(
            report.contains(&format!("prompt: {len} tokens")),
            "{report}"
        );
        assert!(report.contains("prediction_ms: "), "{report}");
    }
    let chart = Chart::read(&path);
    std::fs::remove_file(&path).unwrap();
    let legend = chart.legend();
    let names: Vec<&str> = legend.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        ["linear", "transfers", "attention", "glue", "output head"]
    );
    assert!(chart.texts().contains(&"time to first token (ms)"));
    let bars = ttft_bars(&chart, &legend, &[600, 1500]);
    // A bar per strategy and length, each with a segment per stage.
    assert_eq!(bars.len(), 6, "{bars:?}");
    assert!(bars.values().all(|b| b.len() == 5), "{bars:?}");
    // Each bar is as tall as the strategy's printed TTFT, on one scale (each of its five
    // segments rounded to a pixel).
    let heights: Vec<(f64, f64)> = reports
        .iter()
        .zip([600, 1500])
        .flat_map(|(report, len)| {
            let bars = &bars;
            ["shadow", "dense_cpu", "npu_int8"].map(move |key| {
                let height: f64 = bars[&(key.replace('_', "-"), len)].iter().sum();
                (height, ms(report, &format!("{key}_ttft_ms")))
            })
        })
        .collect();
    let tallest = heights
        .iter()
        .copied()
        .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    assert!(tallest.0 > 200.0, "{heights:?}");
    for (height, ms) in &heights {
        assert!(
            (height - ms * tallest.0 / tallest.1).abs() <= 3.0,
            "{heights:?}"
        );
    }
    // Linear layers and transfers do not depend on the attention strategy.
    for len in [600, 1500] {
        let shadow = &bars[&("shadow".to_string(), len)];
        let dense = &bars[&("dense-cpu".to_string(), len)];
        assert_eq!(shadow[..2], dense[..2]);
        assert!(dense[2] > shadow[2], "dense attention is the taller");
    }
}

#[test]
fn a_setup_reproduces_a_measured_configuration_and_prints_its_range() {
    let text = stdout(&prefill(&[
        "--shape",
        "qwen2.5-1.5b",
        "--len",
        "1024",
        "--setup",
        "mllm-port",
        "--attention",
        "shadow,dense-cpu",
    ]));
    for want in [
        "setup: mllm-port",
        "top-k on 2 mid (Cortex-A720); sparse attention on 1 prime (Cortex-X4); dense attention on 1 prime (Cortex-X4) + 3 mid (Cortex-A720)",
        "dense layers: [0, 1]; pilot Head, launches of [12, 1] fused units",
        "launch: graphs qnn-shared (QNN graph execute, registered shared buffers), pilot fastrpc",
        "2 chunk(s) of up to 512 rows, linear graphs per layer",
        "tiles of up to 256 rows",
        "ranking_at_fast_end: ",
        "ranking_at_slow_end: ",
    ] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    // Each strategy's range holds its own prediction.
    for key in ["shadow", "dense_cpu"] {
        let central = ms(&text, &format!("{key}_ttft_ms"));
        let range = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}_ttft_range_ms: ")))
            .unwrap();
        let bounds: Vec<f64> = range
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .take(2)
            .collect();
        assert!(
            bounds[0] <= central && central <= bounds[1],
            "{key}: {range}"
        );
        assert!(
            bounds[1] > bounds[0] * 1.05,
            "{key}: a range of nothing: {range}"
        );
    }
    // An explicit option wins over the setup's.
    let text = stdout(&prefill(&[
        "--shape",
        "qwen2.5-1.5b",
        "--len",
        "512",
        "--setup",
        "mllm-port",
        "--pilot-path",
        "qnn-copy",
        "--dense-layers",
        "3",
        "--attention",
        "shadow",
    ]));
    assert!(text.contains("pilot qnn-copy"), "{text}");
    assert!(text.contains("dense layers: [3]"), "{text}");
}

#[test]
fn fp16_softmax_v_prices_our_sparse_kernels_faster_and_leaves_dense_alone() {
    let run = |arith: &str| {
        stdout(&prefill(&[
            "--shape",
            "qwen2-1.5b",
            "--len",
            "1024",
            "--attention",
            "shadow,dense-cpu",
            "--cpu-arith",
            arith,
        ]))
    };
    let (f32_run, f16_run) = (run("f32"), run("f16"));
    assert!(
        f32_run.contains("cpu kernels: shadowattn cpu-fast (FP32);"),
        "{f32_run}"
    );
    assert!(
        f16_run.contains("cpu kernels: shadowattn cpu-fast (sparse softmax·V FP16);"),
        "{f16_run}"
    );
    assert!(ms(&f16_run, "shadow_ttft_ms") < ms(&f32_run, "shadow_ttft_ms"));
    assert_eq!(
        ms(&f16_run, "dense_cpu_ttft_ms"),
        ms(&f32_run, "dense_cpu_ttft_ms")
    );
    let bad = prefill(&["--cpu-arith", "fp8"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`fp8` is not an arithmetic"));
}

/// A prompt past the model's context is refused at once (it used to price 390,625 chunks for
/// minutes), naming the option, the value, the limit and where the limit comes from.
#[test]
fn a_prompt_past_the_context_is_refused_at_once() {
    let out = prefill(&["--shape", "qwen2-1.5b", "--len", "100000000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--len 100000000 is past the context length of qwen2-1.5b: 32768 tokens")
            && stderr.contains("paper-facts.md"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // One past PhoneLM's 2048, and the decode's tokens count.
    let out = prefill(&["--shape", "phonelm-0.5b", "--len", "2049"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--len 2049 is past the context length of phonelm-0.5b: 2048 tokens")
            && stderr.contains("mllmTeam/PhoneLM-0.5B-Instruct")
            && stderr.contains("max_position_embeddings"),
        "{stderr}"
    );
    let out = prefill(&["--shape", "phonelm-0.5b", "--len", "2000", "--decode", "49"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--len + --decode 2049 is past the context length of phonelm-0.5b"),
        "{stderr}"
    );
}

/// Exactly the context is a prompt like any other (PhoneLM's 2048 tokens: eight chunks), with
/// or without decode steps.
#[test]
fn a_prompt_of_exactly_the_context_is_priced() {
    for (len, decode) in [("2048", "0"), ("2000", "48")] {
        let out = prefill(&[
            "--shape",
            "phonelm-0.5b",
            "--len",
            len,
            "--decode",
            decode,
            "--attention",
            "dense-cpu",
        ]);
        let text = stdout(&out);
        assert!(
            text.contains(&format!("prompt: {len} tokens in 8 chunk(s)")),
            "{text}"
        );
        assert!(ms(&text, "dense_cpu_ttft_ms") > 0.0, "{text}");
        // Not a terminal: no progress bar on stderr.
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `--context-len` prices prompts past the model's context, as the paper's PhoneLM runs are,
/// and bounds them itself, naming itself as the limit's source.
#[test]
fn a_given_context_length_replaces_the_models() {
    let args = |len: &'static str| {
        [
            "--shape",
            "phonelm-0.5b",
            "--len",
            len,
            "--context-len",
            "4096",
            "--attention",
            "dense-cpu",
        ]
    };
    let out = prefill(&args("3840"));
    let text = stdout(&out);
    assert!(text.contains("prompt: 3840 tokens"), "{text}");
    let out = prefill(&args("4097"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--len 4097 is past the context length of phonelm-0.5b: 4096 tokens (from --context-len)"),
        "{stderr}"
    );
}

/// A GGUF model is bounded by its own `llama.context_length`.
#[test]
fn a_gguf_prompt_past_its_context_length_is_refused() {
    let Some(model) = smollm2_or_skip(&target_dir(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };
    let out = prefill(&["--model", model.to_str().unwrap(), "--len", "8193"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--len 8193 is past the context length of")
            && stderr.contains(": 8192 tokens (from the GGUF metadata `llama.context_length`"),
        "{stderr}"
    );
}
