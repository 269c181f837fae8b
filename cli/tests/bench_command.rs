//! `shadowattn bench`: the table, the JSON records and the profile block on a small shape, and
//! a clear error for every bad option. (Speed is reported, never asserted.)

mod common;
use common::shadowattn;
use common::svg::Chart;

const SMALL: [&str; 9] = [
    "bench",
    "--shapes",
    "4/2/32/64,2/2/16/48",
    "--threads",
    "1,2",
    "--runs",
    "1",
    "--q-len",
    "16",
];

#[test]
fn the_table_and_json_have_every_kernel_shape_and_thread_count() {
    let dir = std::env::temp_dir().join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let mut args = SMALL.to_vec();
    args.extend(["--json", json.to_str().unwrap()]);
    let (code, stdout, stderr) = shadowattn(&args);
    assert_eq!(code, 0, "{stderr}");
    let kernels = [
        "dense",
        "dense-f16",
        "topk-row",
        "topk-group",
        "topk-ranked",
        "topk-group-threshold",
        "topk-ranked-threshold",
        "topk-group-top-p",
        "topk-ranked-top-p",
        "attend-row",
        "attend-group",
        "attend-row-single",
        "attend-row-tiled",
        "attend-group-single",
        "attend-group-tiled",
        "stage-row",
        "stage-group",
        "stage-ranked",
    ];
    // 2/2/16/48 has one query head per KV head: the core selects per head there, so the
    // group kernels are not timed on it.
    let grouped = |k: &str| k.contains("-group") || k.contains("-ranked");
    for k in kernels {
        for shape in ["4/2/32/64", "2/2/16/48"] {
            for t in ["1", "2"] {
                let prefix = format!("{k}\t{shape}\t{t}\t");
                let present = stdout.lines().any(|l| l.starts_with(&prefix));
                let expected = !(grouped(k) && shape == "2/2/16/48");
                assert_eq!(present, expected, "`{prefix}` in:\n{stdout}");
            }
        }
    }
    // Each shape's tile union: at least one row's set, at most the 8 rows' sets side by side.
    for shape in ["4/2/32/64", "2/2/16/48"] {
        let prefix = format!("# {shape}: a lane tile's union of 8 rows' key sets is ");
        let line = stdout.lines().find(|l| l.starts_with(&prefix));
        let factor: f64 = line
            .and_then(|l| l[prefix.len()..].split('x').next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("no union line for {shape} in:\n{stdout}"));
        assert!((1.0..=8.0).contains(&factor), "{factor}");
    }
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let per_shape_threads = kernels.len() * 2 * 2;
    let groups_left_out = kernels.iter().filter(|k| grouped(k)).count() * 2;
    assert_eq!(records.len(), per_shape_threads - groups_left_out);
    for r in &records {
        let ms = r["median_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && ms.is_finite(), "{r}");
        assert!(r["peak_gflops"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["q_len"], 16);
        match r["kernel"].as_str().unwrap() {
            "dense" => assert_eq!(r["dense_over"].as_f64(), Some(1.0)),
            k if k.starts_with("topk-") => {
                assert!(
                    r["gflops"].is_null() && r["ranked_keys"].as_u64().unwrap() > 0,
                    "{r}"
                )
            }
            _ => {
                let f = r["peak_fraction"].as_f64().unwrap();
                assert!(f > 0.0 && f < 1.5, "{r}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn profile_cpu_prints_every_field_the_simulator_reads() {
    let mut args = SMALL.to_vec();
    args[4] = "1";
    // The median of three runs: one run of these tiny shapes, preempted once on a loaded
    // machine, measured a fraction below the printed 0.001.
    args[6] = "3";
    args.push("--profile-cpu");
    let (code, stdout, stderr) = shadowattn(&args);
    assert_eq!(code, 0, "{stderr}");
    let block = stdout
        .split("[[cpu.cores]]")
        .nth(1)
        .expect("a [[cpu.cores]] block");
    for key in [
        "fp32_gflops",
        "dense_efficiency",
        "sparse_row_efficiency",
        "sparse_tiled_efficiency",
        "sparse_group_efficiency",
        "topk_cycles_per_key",
        "group_topk_cycles_per_key",
        "ranked_topk_cycles_per_key",
        "threshold_topk_cycles_per_key",
        "ranked_threshold_topk_cycles_per_key",
        "top_p_topk_cycles_per_key",
        "ranked_top_p_topk_cycles_per_key",
    ] {
        let line = block
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{block}"));
        let value: f64 = line
            .split("value = ")
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no value in {line}"));
        assert!(value.is_finite() && value > 0.0, "{line}");
        assert!(line.contains("source = \"measured"), "{line}");
    }
}

#[test]
fn the_plot_has_a_group_per_shape_and_threads_and_a_bar_per_whole_attention() {
    let dir = std::env::temp_dir().join(format!("bench-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("bench.json"), dir.join("bench.svg"));
    let mut args = SMALL.to_vec();
    args.extend([
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let (code, stdout, stderr) = shadowattn(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("# plot: "), "{stdout}");
    let chart = Chart::read(&svg);
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    // Dense attention and the whole CPU stages; top-k and sparse attention alone stay in the
    // table.
    let legend = chart.legend();
    let names: Vec<&str> = legend.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "dense",
            "dense-f16",
            "stage-row",
            "stage-group",
            "stage-ranked"
        ]
    );
    let texts = chart.texts();
    let unit = ["µs", "ms", "s"]
        .into_iter()
        .find(|u| texts.contains(&&*format!("median time of one call ({u})")))
        .unwrap_or_else(|| panic!("no time axis in {texts:?}"));
    let per_unit = match unit {
        "µs" => 1e-3,
        "ms" => 1.0,
        _ => 1e3,
    };
    // A group per shape and thread count, labelled with both.
    let labels: Vec<(f64, &str)> = chart
        .named("text")
        .filter(|t| {
            (t.text.contains('/') && !t.text.contains(' '))
                || t.text.ends_with("thread")
                || t.text.ends_with("threads")
        })
        .map(|t| (t.num("x"), t.text.as_str()))
        .collect();
    let mut groups: Vec<(f64, String, u64)> = Vec::new();
    for pair in labels.chunks(2) {
        assert_eq!(pair[0].0, pair[1].0, "{labels:?}");
        let threads = pair[1].1.split(' ').next().unwrap().parse().unwrap();
        groups.push((pair[0].0, pair[0].1.to_string(), threads));
    }
    let expected = [
        ("4/2/32/64", 1),
        ("2/2/16/48", 1),
        ("4/2/32/64", 2),
        ("2/2/16/48", 2),
    ];
    let got: Vec<(&str, u64)> = groups.iter().map(|g| (g.1.as_str(), g.2)).collect();
    assert_eq!(got, expected);
    // A bar per kernel in every group, the group kernels only where a KV head has several
    // query heads; each as tall as its median in the JSON, on one scale.
    let mut bars = Vec::new();
    for (kernel, fill) in &legend {
        let found = chart.bars(fill);
        let want = if kernel.starts_with("dense") || kernel == "stage-row" {
            4
        } else {
            2
        };
        assert_eq!(found.len(), want, "{kernel}");
        for r in found {
            let centre = r.num("x") + r.num("width") / 2.0;
            let g = groups
                .iter()
                .min_by(|a, b| (a.0 - centre).abs().total_cmp(&(b.0 - centre).abs()))
                .unwrap();
            let record = records
                .iter()
                .find(|j| {
                    let shape = format!(
                        "{}/{}/{}/{}",
                        j["q_heads"], j["kv_heads"], j["head_dim"], j["kv_len"]
                    );
                    j["kernel"] == kernel.as_str() && shape == g.1 && j["threads"] == g.2
                })
                .unwrap_or_else(|| panic!("no record of {kernel} on {g:?}"));
            let ms = record["median_ms"].as_f64().unwrap();
            bars.push((
                r.num("height"),
                ms / per_unit,
                kernel.clone(),
                g.1.clone(),
                g.2,
            ));
        }
    }
    let tallest = bars.iter().max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    let px_per_unit = tallest.0 / tallest.1;
    for b in &bars {
        assert!(
            (b.0 - b.1 * px_per_unit).abs() <= 1.0,
            "{b:?} vs {tallest:?}"
        );
    }
}

#[test]
fn bad_options_are_clear_errors() {
    for (args, code, needle) in [
        (
            &["bench", "--shapes", "5/2/32/64"][..],
            2,
            "cannot be grouped",
        ),
        (&["bench", "--shapes", "12/2/128"][..], 2, "Q/KV/D/KEYS"),
        (&["bench", "--shapes", "0/1/8/8"][..], 2, "Q/KV/D/KEYS"),
        (&["bench", "--kernels", "nope"][..], 2, "kernels: dense"),
        (&["bench", "--runs", "0"][..], 2, "runs"),
        (
            &["bench", "--ratio", "0", "--shapes", "2/1/8/16"][..],
            1,
            "--ratio",
        ),
        (
            &["bench", "--threads", "0", "--shapes", "2/1/8/16"][..],
            1,
            "--threads 0",
        ),
        (
            &["bench", "--shapes", "2/1/8/16", "--q-len", "32"][..],
            1,
            "--q-len 32",
        ),
        (
            &["bench", "--shapes", "2/2/8/16", "--profile-cpu"][..],
            1,
            "several query heads per KV head",
        ),
        (
            &[
                "bench",
                "--shapes",
                "2/1/8/16",
                "--threads",
                "2",
                "--profile-cpu",
            ][..],
            1,
            "--threads 1",
        ),
        (
            &[
                "bench",
                "--shapes",
                "2/1/8/16",
                "--kernels",
                "dense,attend-row-single,attend-row-tiled",
                "--profile-cpu",
            ][..],
            1,
            "`attend-group`",
        ),
    ] {
        let (got, _, stderr) = shadowattn(args);
        assert_eq!(got, code, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
