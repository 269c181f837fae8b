//! Tests of the whole-model prediction: it is the sum of its layers and chunks, each strategy's
//! attention is what its own model prices, and the timeline nests.

use super::*;
use crate::predict::cpu_model::attention_ns;
use crate::predict::layer::PrefillLayer;
use crate::predict::placement::StagePlacement;

fn soc() -> SocProfile {
    SocProfile::builtin("snapdragon-8-gen-3").unwrap()
}

fn spec(shape: &str, prompt_len: usize, ratio: f32) -> PrefillSpec {
    let shape = TransformerShape::preset(shape).unwrap();
    PrefillSpec {
        ratios: vec![vec![ratio; shape.q_heads]; shape.layers],
        shape,
        prompt_len,
        chunk_len: 256,
        placement: StagePlacement::uniform(soc().core("mid").unwrap(), 1),
        kernels: KernelSet::OURS,
        sharing: SelectionSharing::PerGroup,
        dense_layers: Vec::new(),
        pilot_fused: shadowattn_pipeline::FUSED_HEADS.to_vec(),
        pilot: crate::npu::graphs::PilotGraph::Head,
        budget: shadowattn_hal::BudgetRule::EVEN,
        decode_steps: 0,
        linear: LinearPrecision::W8A8,
        linear_graphs: LinearGraphs::PerMatmul,
        linear_tile: 256,
    }
}

fn predict(spec: &PrefillSpec, strategy: AttentionStrategy) -> PrefillPrediction {
    let soc = soc();
    predict_prefill(&soc, spec, strategy, false).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn the_presets_are_the_papers_models_and_the_measured_ones() {
    let names = TransformerShape::preset_names();
    assert_eq!(names.len(), 7);
    // Table 5 of the paper: query heads, KV heads, head dim, layers.
    for (name, table) in [
        ("PhoneLM-0.5B", [16, 16, 64, 24]),
        ("PhoneLM-1.5B", [16, 16, 160, 19]),
        ("Qwen2-0.5B", [14, 2, 64, 24]),
        ("Qwen2-1.5B", [12, 2, 128, 28]),
        // The published config.json files (../shared/reference/paper-facts.md §7).
        ("Qwen2.5-1.5B", [12, 2, 128, 28]),
        ("Qwen1.5-1.8B", [16, 16, 128, 24]),
        ("Qwen1.5-0.5B", [16, 16, 64, 24]),
    ] {
        let s = TransformerShape::preset(name).unwrap();
        assert_eq!(
            [s.q_heads, s.kv_heads, s.head_dim, s.layers],
            table,
            "{name}"
        );
        s.validate().unwrap();
    }
    let e = TransformerShape::preset("llama-70b")
        .unwrap_err()
        .to_string();
    assert!(e.contains("llama-70b") && e.contains("qwen2-1.5b"), "{e}");
}

#[test]
fn every_preset_has_a_context_length_and_its_source() {
    for name in TransformerShape::preset_names() {
        let s = TransformerShape::preset(name).unwrap();
        assert!(s.context_len > 0, "{name}");
        assert!(s.context_source.contains("config.json"), "{name}");
    }
    // The Qwen models' context from the project's reference (paper-facts.md); PhoneLM's from
    // its config.json.
    for (name, context) in [
        ("qwen2-1.5b", 32768),
        ("qwen2.5-1.5b", 32768),
        ("qwen1.5-1.8b", 32768),
        ("qwen1.5-0.5b", 32768),
        ("phonelm-0.5b", 2048),
    ] {
        assert_eq!(
            TransformerShape::preset(name).unwrap().context_len,
            context,
            "{name}"
        );
    }
    let mut s = TransformerShape::preset("qwen2-0.5b").unwrap();
    s.context_len = 0;
    assert!(s
        .validate()
        .unwrap_err()
        .to_string()
        .contains("context_len"));
}

#[test]
fn a_prompt_past_the_context_is_refused_before_any_work() {
    let shape = TransformerShape::preset("qwen2-1.5b").unwrap();
    shape.check_tokens("--len", 32768).unwrap();
    let e = shape.check_tokens("--len", 32769).unwrap_err();
    assert!(
        matches!(
            &e,
            SimError::PastContext { argument, value: 32769, limit: 32768, origin, .. }
                if argument == "--len" && origin.contains("paper-facts.md")
        ),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .contains("--len 32769 is past the context length of qwen2-1.5b: 32768 tokens"));
    // The spec itself refuses it too, and counts the decode's tokens.
    let soc = soc();
    let mut at = spec("phonelm-0.5b", 2048, 0.2);
    at.validate().unwrap();
    at.decode_steps = 1;
    let e = predict_prefill(&soc, &at, AttentionStrategy::Shadow, false).unwrap_err();
    assert!(
        matches!(
            e,
            SimError::PastContext {
                value: 2049,
                limit: 2048,
                ..
            }
        ),
        "{e:?}"
    );
    let past = spec("phonelm-0.5b", 2049, 0.2);
    let e = predict_prefill(&soc, &past, AttentionStrategy::DenseCpu, false).unwrap_err();
    assert!(
        matches!(&e, SimError::PastContext { argument, .. } if argument == "prompt length"),
        "{e:?}"
    );
}

#[test]
fn the_progress_reaches_every_layer() {
    let soc = soc();
    let s = spec("qwen2-0.5b", 300, 0.2);
    for strategy in AttentionStrategy::ALL {
        let mut seen = Vec::new();
        predict_prefill_with_progress(&soc, &s, strategy, false, &mut |done, total| {
            seen.push((done, total))
        })
        .unwrap();
        assert_eq!(seen.last(), Some(&(24, 24)), "{strategy}");
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{strategy}");
    }
}

#[test]
fn the_time_to_first_token_is_the_sum_of_its_stages() {
    let s = spec("qwen2-0.5b", 512, 0.2);
    for strategy in AttentionStrategy::ALL {
        let p = predict(&s, strategy);
        let st = p.stages;
        let sum = st.linear_ns + st.transfers_ns + st.attention_ns + st.glue_ns + st.lm_head_ns;
        assert!(close(p.ttft_ns(), sum), "{strategy}");
        assert!(st.linear_ns > 0.0 && st.transfers_ns > 0.0 && st.glue_ns > 0.0);
        assert!(st.attention_ns > 0.0 && st.lm_head_ns > 0.0, "{strategy}");
        assert_eq!(p.chunks, 2);
    }
}

#[test]
fn linear_layers_scale_with_layers_and_chunks() {
    // Chunks of equal rows cost the same linear time, and every layer the same.
    let one = predict(&spec("qwen2-0.5b", 256, 0.2), AttentionStrategy::DenseCpu);
    let two = predict(&spec("qwen2-0.5b", 512, 0.2), AttentionStrategy::DenseCpu);
    assert!(close(two.stages.linear_ns, 2.0 * one.stages.linear_ns));
    assert!(close(
        two.stages.transfers_ns,
        2.0 * one.stages.transfers_ns
    ));
    let mut half = spec("qwen2-0.5b", 256, 0.2);
    half.shape.layers = 12;
    half.ratios.truncate(12);
    let half = predict(&half, AttentionStrategy::DenseCpu);
    assert!(close(one.stages.linear_ns, 2.0 * half.stages.linear_ns));
    // Four graphs per layer and chunk, the output head once.
    assert_eq!(two.launches, 24 * 2 * 4 + 1);
    // Beyond the four warm launches, a layer's NPU time grows with its weights: PhoneLM-1.5B's
    // are 5.3 times Qwen2-0.5B's.
    let big = predict(&spec("phonelm-1.5b", 256, 0.2), AttentionStrategy::DenseCpu);
    let soc = soc();
    let warm = soc.npu.launch.warm_ns(soc.graph_path());
    let compute = |p: &PrefillPrediction, layers: f64| p.stages.linear_ns / layers - 4.0 * warm;
    let ratio = compute(&big, 19.0) / compute(&one, 24.0);
    assert!((3.0..6.0).contains(&ratio), "{ratio}");
}

#[test]
fn fp16_graphs_move_twice_the_bytes_of_w8a8_ones() {
    // The fitted profile's FP16 and INT8 tile paths have about the same MAC rate (QNN's
    // estimates), so the difference is the bytes: activations through host memory and the glue.
    let w8 = predict(&spec("qwen2-1.5b", 512, 0.2), AttentionStrategy::DenseCpu);
    let mut fp16 = spec("qwen2-1.5b", 512, 0.2);
    fp16.linear = LinearPrecision::Fp16;
    let fp16 = predict(&fp16, AttentionStrategy::DenseCpu);
    assert!(fp16.ttft_ns() > w8.ttft_ns());
    assert!(close(
        fp16.stages.transfers_ns,
        2.0 * w8.stages.transfers_ns
    ));
    assert!(fp16.stages.glue_ns > w8.stages.glue_ns);
    assert_eq!(fp16.stages.attention_ns, w8.stages.attention_ns);
}

#[test]
fn dense_attention_prices_every_causal_pair_of_every_head_and_layer() {
    let s = spec("qwen2-0.5b", 600, 0.2);
    let soc = soc();
    let core = soc.core("mid").unwrap();
    let p = predict(&s, AttentionStrategy::DenseCpu);
    // Chunks of 256, 256 and 88 rows; row i of the prompt sees i + 1 keys.
    let mut want = 0.0;
    for (start, rows) in [(0usize, 256usize), (256, 256), (512, 88)] {
        let pairs: u64 = (start..start + rows).map(|i| i as u64 + 1).sum();
        let dense = KernelSet::OURS.dense();
        want += attention_ns(core, dense, pairs, start + rows, 64) * 14.0;
    }
    assert!(close(p.stages.attention_ns, want * 24.0));
    assert!(close(p.stages.attention_cpu_ns, p.stages.attention_ns));
    assert_eq!(p.stages.attention_npu_ns, 0.0);
    // Two cores halve it.
    let mut two = s.clone();
    two.placement = StagePlacement::uniform(core, 2);
    assert!(close(
        predict(&two, AttentionStrategy::DenseCpu)
            .stages
            .attention_ns,
        want * 12.0
    ));
}

#[test]
fn shadow_attention_is_the_planned_pipeline_of_every_layer() {
    let mut s = spec("qwen2-1.5b", 1024, 0.2);
    // Layers with other ratios cost otherwise: the calibration's ratios reach the plan.
    for (l, r) in s.ratios.iter_mut().enumerate() {
        r.fill(if l % 2 == 0 { 0.1 } else { 0.4 });
    }
    let soc = soc();
    let core = soc.core("mid").unwrap();
    let p = predict(&s, AttentionStrategy::Shadow);
    let layer = |ratio: f32| {
        PrefillLayer {
            q_heads: 12,
            kv_heads: 2,
            head_dim: 128,
            prompt_len: 1024,
            chunk_len: 256,
            ratios: vec![ratio; 12],
            buckets: vec![0; 12],
            fused: shadowattn_pipeline::FUSED_HEADS.to_vec(),
            cores: 1,
            split: None,
            kernels: KernelSet::OURS,
            sharing: SelectionSharing::PerGroup,
            pilot: PilotGraph::Head,
            budget: shadowattn_hal::BudgetRule::EVEN,
        }
        .predict(&soc, core)
        .unwrap()
        .iter()
        .map(|c| c.layer_ns)
        .sum::<f64>()
    };
    assert!(layer(0.4) > layer(0.1));
    assert!(close(
        p.stages.attention_ns,
        14.0 * (layer(0.1) + layer(0.4))
    ));
    // The NPU runs the pilot while the CPU runs top-k and attention: the path is at most
    // their sum and at least the larger.
    let st = p.stages;
    assert!(st.attention_ns <= st.attention_npu_ns + st.attention_cpu_ns + 1.0);
    assert!(st.attention_ns >= st.attention_npu_ns.max(st.attention_cpu_ns) - 1.0);
    // Keeping fewer keys is cheaper than dense attention on the same core.
    let dense = predict(&spec("qwen2-1.5b", 1024, 0.2), AttentionStrategy::DenseCpu);
    let sparse = predict(&spec("qwen2-1.5b", 1024, 0.2), AttentionStrategy::Shadow);
    assert!(sparse.stages.attention_ns < dense.stages.attention_ns);
    assert!(close(sparse.stages.linear_ns, dense.stages.linear_ns));
}

#[test]
fn the_timeline_nests_and_ends_at_the_time_to_first_token() {
    let s = spec("qwen2-0.5b", 300, 0.2);
    let soc = soc();
    for strategy in AttentionStrategy::ALL {
        let p = predict_prefill(&soc, &s, strategy, true).unwrap();
        assert!(!p.events.is_empty());
        let end = p.events.iter().map(|e| e.end_ns()).max().unwrap();
        // The clock rounds each of a few hundred steps to whole nanoseconds.
        assert!(
            (end as f64 - p.ttft_ns()).abs() < 1e3,
            "{strategy}: {end} vs {}",
            p.ttft_ns()
        );
        let mut tracks: Vec<&str> = p.events.iter().map(|e| e.track.as_str()).collect();
        tracks.sort_unstable();
        tracks.dedup();
        assert_eq!(tracks, ["cpu0", "npu"], "{strategy}");
        for track in tracks {
            let on: Vec<&ProfileEvent> = p.events.iter().filter(|e| e.track == track).collect();
            let layers = on.iter().filter(|e| e.name.starts_with("layer ")).count();
            assert_eq!(layers, 24 * 2, "{strategy} {track}");
            // Any two slices of a track are disjoint or one holds the other.
            for (i, a) in on.iter().enumerate() {
                for b in &on[i + 1..] {
                    let disjoint = a.end_ns() <= b.start_ns || b.end_ns() <= a.start_ns;
                    let nested = (a.start_ns <= b.start_ns && b.end_ns() <= a.end_ns())
                        || (b.start_ns <= a.start_ns && a.end_ns() <= b.end_ns());
                    assert!(disjoint || nested, "{strategy} {track}: {a:?} {b:?}");
                }
            }
        }
    }
    // Without a trace, no events.
    assert!(predict(&s, AttentionStrategy::Shadow).events.is_empty());
}

#[test]
fn decode_is_dense_and_grows_with_the_prefix() {
    let mut s = spec("qwen2-0.5b", 256, 0.2);
    assert_eq!(
        predict(&s, AttentionStrategy::Shadow).decode_ns_per_token,
        0.0
    );
    s.decode_steps = 4;
    let short = predict(&s, AttentionStrategy::Shadow).decode_ns_per_token;
    // Decode is dense whatever the prefill's attention.
    assert_eq!(
        predict(&s, AttentionStrategy::DenseCpu).decode_ns_per_token,
        short
    );
    s.prompt_len = 4096;
    let long = predict(&s, AttentionStrategy::Shadow).decode_ns_per_token;
    assert!(long > short && short > 0.0);
}

#[test]
fn bad_descriptions_are_named() {
    let soc = soc();
    let err = |s: PrefillSpec| {
        predict_prefill(&soc, &s, AttentionStrategy::Shadow, false)
            .unwrap_err()
            .to_string()
    };
    let mut s = spec("qwen2-0.5b", 0, 0.2);
    assert!(err(s.clone()).contains("prompt length 0"));
    s.prompt_len = 64;
    s.ratios.pop();
    assert!(err(s.clone()).contains("ratios for 23 layers, the model has 24"));
    s = spec("qwen2-0.5b", 64, 0.2);
    s.ratios[3].push(0.2);
    assert!(err(s.clone()).contains("layer 3 has 15 ratios for 14 query heads"));
    s = spec("qwen2-0.5b", 64, 0.2);
    s.ratios[1][2] = 1.5;
    assert!(err(s.clone()).contains("outside (0, 1]"));
    s = spec("qwen2-0.5b", 64, 0.2);
    s.shape.kv_heads = 3;
    assert!(err(s).contains("14 query heads cannot be grouped over 3 KV heads"));
}

#[test]
fn a_layer_graph_is_its_four_graphs_in_one_launch_per_tile() {
    let mut per_matmul = spec("qwen2-1.5b", 1024, 0.2);
    per_matmul.chunk_len = 512;
    per_matmul.linear_tile = 256;
    let mut per_layer = per_matmul.clone();
    per_layer.linear_graphs = LinearGraphs::PerLayer;
    let (a, b) = (
        predict(&per_matmul, AttentionStrategy::DenseCpu),
        predict(&per_layer, AttentionStrategy::DenseCpu),
    );
    // Two chunks of two tiles: four graphs per layer and tile, or one per layer and tile plus
    // the last layer's o and MLP; the output head once.
    assert_eq!(a.launches, 2 * 2 * 28 * 4 + 1);
    assert_eq!(b.launches, 2 * 2 * (28 + 1) + 1);
    // The same accelerator work; the overhead of 28·4 − 29 fewer launches per tile saved.
    let soc = soc();
    let warm = soc.npu.launch.warm_ns(soc.graph_path());
    let saved = 4.0 * (28.0 * 4.0 - 29.0) * warm;
    assert!(close(a.stages.linear_ns - b.stages.linear_ns, saved));
    // Its transfers are the boundary tensors: in, the attention output and the residual
    // stream; out, the next Q/K/V and the stream (INT8), per tile of 256 rows; the first
    // layer's graph takes the stream in and gives Q/K/V out, the trailing one gives the stream.
    let (q, kv, hidden) = (12 * 128, 2 * 128, 1536);
    let per_tile = 27 * (2 * hidden + 2 * q + 2 * kv) + (hidden + q + 2 * kv) + (2 * hidden + q);
    let io = soc
        .npu
        .launch
        .io_ns(soc.graph_path(), 4 * 256 * per_tile as u64);
    assert!(
        close(b.stages.transfers_ns, io),
        "{} vs {io}",
        b.stages.transfers_ns
    );
    // Norms and residual adds run inside the graph: less glue on the CPU.
    assert!(b.stages.glue_ns < a.stages.glue_ns / 2.0);
    // A tile of the whole chunk runs each graph once per chunk.
    let mut whole = per_matmul.clone();
    whole.linear_tile = 512;
    assert_eq!(
        predict(&whole, AttentionStrategy::DenseCpu).launches,
        2 * 28 * 4 + 1
    );
}

#[test]
fn dense_layers_cost_what_dense_attention_costs() {
    let dense = predict(&spec("qwen2-0.5b", 512, 0.2), AttentionStrategy::DenseCpu);
    let mut all = spec("qwen2-0.5b", 512, 0.2);
    all.dense_layers = (0..24).collect();
    let p = predict(&all, AttentionStrategy::Shadow);
    assert!(close(p.stages.attention_ns, dense.stages.attention_ns));
    assert_eq!(p.stages.attention_npu_ns, 0.0);
    let mut two = spec("qwen2-0.5b", 512, 0.2);
    let sparse = predict(&two, AttentionStrategy::Shadow);
    two.dense_layers = vec![0, 1];
    let p = predict(&two, AttentionStrategy::Shadow);
    let per_layer = |x: &PrefillPrediction| x.stages.attention_ns / 24.0;
    assert!(close(
        p.stages.attention_ns,
        sparse.stages.attention_ns + 2.0 * (per_layer(&dense) - per_layer(&sparse))
    ));
    two.dense_layers = vec![24];
    let e = predict_prefill(&soc(), &two, AttentionStrategy::Shadow, false).unwrap_err();
    assert!(e.to_string().contains("dense layer 24"), "{e}");
}

#[test]
fn stages_on_their_own_teams_are_priced_on_their_own_cores() {
    let soc = soc();
    let base = spec("qwen2-1.5b", 1024, 0.2);
    let mut split = base.clone();
    split.placement = StagePlacement::uniform(soc.core("mid").unwrap(), 1)
        .with(&soc, "topk=mid:1,attention=prime:1")
        .unwrap();
    let mut prime = base.clone();
    prime.placement = split
        .placement
        .clone()
        .with(&soc, "topk=prime:1,attention=mid:1")
        .unwrap();
    let (b, s, p) = (
        predict(&base, AttentionStrategy::Shadow),
        predict(&split, AttentionStrategy::Shadow),
        predict(&prime, AttentionStrategy::Shadow),
    );
    // Attention on the faster prime core, top-k overlapped on a mid core of its own.
    assert!(s.stages.attention_ns < b.stages.attention_ns);
    // The same top-k work costs more on the slower mid core than on the prime core.
    assert!(s.stages.attention_topk_ns > p.stages.attention_topk_ns);
    // A team over two clusters cannot run a pipeline stage.
    let mut bad = base.clone();
    bad.placement = bad.placement.with(&soc, "attention=prime:1+mid:1").unwrap();
    let e = predict_prefill(&soc, &bad, AttentionStrategy::Shadow, false).unwrap_err();
    assert!(e.to_string().contains("one cluster"), "{e}");
    // The dense team splits heads statically: the slowest member sets the time.
    let mut team = base.clone();
    team.placement = team.placement.with(&soc, "dense=prime:1+mid:1").unwrap();
    let mut mids = base.clone();
    mids.placement = mids.placement.with(&soc, "dense=mid:2").unwrap();
    let (t, m) = (
        predict(&team, AttentionStrategy::DenseCpu),
        predict(&mids, AttentionStrategy::DenseCpu),
    );
    assert!(close(t.stages.attention_ns, m.stages.attention_ns));
}

#[test]
fn launch_paths_price_the_same_graphs_by_their_own_costs() {
    let s = spec("qwen2-0.5b", 512, 0.2);
    let on = |graphs, pilot| {
        let soc = soc().with_launch(crate::npu::launch::LaunchChoice {
            graphs: Some(graphs),
            pilot: Some(pilot),
        });
        predict_prefill(&soc, &s, AttentionStrategy::Shadow, false).unwrap()
    };
    use crate::npu::launch::LaunchPath::{Fastrpc, QnnCopy, QnnShared};
    let (copy, shared, fast) = (
        on(QnnCopy, QnnCopy),
        on(QnnShared, QnnShared),
        on(Fastrpc, Fastrpc),
    );
    assert!(copy.stages.transfers_ns > 10.0 * shared.stages.transfers_ns);
    assert!(copy.stages.linear_ns > shared.stages.linear_ns);
    assert!(shared.stages.linear_ns > fast.stages.linear_ns);
    // The pilot's path moves only attention.
    let pilot_fast = on(QnnCopy, Fastrpc);
    assert_eq!(pilot_fast.stages.linear_ns, copy.stages.linear_ns);
    assert!(pilot_fast.stages.attention_npu_ns < copy.stages.attention_npu_ns);
}

#[test]
fn the_output_head_normalizes_its_row_on_the_glue_team() {
    let s = spec("qwen2-0.5b", 64, 0.2);
    let head = lm_head(&soc(), &s).unwrap();
    let norm = s
        .placement
        .glue
        .split_ns(|core| s.linear.glue_ns(core, s.shape.hidden, &linear::NORM));
    assert!(head.glue_ns > 0.0 && close(head.glue_ns, norm));
    assert!(head.lm_head_ns > 0.0);
}
