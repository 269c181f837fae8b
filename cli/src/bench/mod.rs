//! `shadowattn bench`: the CPU stage of shadowAttn beside dense attention on the paper's
//! shapes, in one process, kernels interleaved run by run; a table, JSON records, and the
//! measured `[[cpu.cores]]` block of a simulator profile.

mod kernels;

use crate::plot;
use crate::progress::progress_bar;
use clap::Args;
use kernels::{fma_peak_gflops, Backends, Case, Kernel, MassSplit};
use serde_json::json;
use shadowattn_cpu::fast::{simd, FastCpuBackend};
use shadowattn_hal::AttentionShape;
use std::error::Error;
use std::path::PathBuf;
use std::str::FromStr;

type Res<T> = Result<T, Box<dyn Error>>;

/// A benchmark shape: query heads, KV heads, head dimension and keys, as `Q/KV/D/KEYS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchShape {
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    kv_len: usize,
}

impl FromStr for BenchShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || format!("`{s}` is not Q/KV/D/KEYS (e.g. 12/2/128/2048)");
        let [q, kv, d, n] = parts.as_slice() else {
            return Err(bad());
        };
        let num = |x: &str| x.parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(bad);
        let shape = BenchShape {
            q_heads: num(q)?,
            kv_heads: num(kv)?,
            head_dim: num(d)?,
            kv_len: num(n)?,
        };
        if !shape.q_heads.is_multiple_of(shape.kv_heads) {
            return Err(format!(
                "`{s}`: {} query heads cannot be grouped over {} KV heads",
                shape.q_heads, shape.kv_heads
            ));
        }
        Ok(shape)
    }
}

/// The paper's shapes: Qwen2-0.5B-like, Qwen2-1.5B-like and PhoneLM-0.5B-like layers at
/// 1024, 2048 and 4096 keys.
const PAPER_SHAPES: &str = "14/2/64/1024,14/2/64/2048,14/2/64/4096,\
12/2/128/1024,12/2/128/2048,12/2/128/4096,16/16/64/1024,16/16/64/2048,16/16/64/4096";

/// Options of `shadowattn bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Shapes as Q/KV/D/KEYS, comma-separated (default: the paper's nine).
    #[arg(long, value_delimiter = ',', default_value = PAPER_SHAPES)]
    shapes: Vec<BenchShape>,
    /// Thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Query rows in the chunk (the last rows of the keys, causal).
    #[arg(long, default_value_t = 128)]
    q_len: usize,
    /// Fraction of each row's valid keys kept, in (0, 1].
    #[arg(long, default_value_t = 0.2)]
    ratio: f32,
    /// Runs of each kernel per shape and thread count (the median is reported).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// Kernels to time, comma-separated (default: all; `dense` is always timed, for the ratios).
    #[arg(long, value_delimiter = ',', value_parser = parse_kernel)]
    kernels: Vec<Kernel>,
    /// Also write one JSON record per (kernel, shape, threads) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print the `[[cpu.cores]]` block of a simulator profile measured on this machine.
    #[arg(long)]
    profile_cpu: bool,
    /// Draw the whole attentions' median times as an SVG bar chart here: dense, the CPU stages
    /// (top-k then sparse attention) and ggml's, a group of bars per shape and thread count
    /// (top-k and sparse attention alone stay in the table).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// A kernel by its table name.
fn parse_kernel(name: &str) -> Result<Kernel, String> {
    Kernel::all()
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Kernel::all().iter().map(|k| k.name()).collect();
            format!("`{name}` is not a kernel; kernels: {}", names.join(", "))
        })
}

/// One measured (kernel, shape, threads).
struct Record {
    kernel: Kernel,
    shape: AttentionShape,
    threads: usize,
    median_s: f64,
    /// Attention FLOPs of the kernel (0 for top-k alone).
    flops: f64,
    /// Keys it ranks (top-k kernels), over all heads.
    ranked: u64,
    peak_gflops: f64,
}

impl Record {
    fn gflops(&self) -> f64 {
        self.flops / self.median_s / 1e9
    }
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> Res<()> {
    if !(args.ratio > 0.0 && args.ratio <= 1.0) {
        return Err(format!("--ratio must be in (0, 1], got {}", args.ratio).into());
    }
    if let Some(&t) = args
        .threads
        .iter()
        .find(|&&t| t == 0 || t > FastCpuBackend::MAX_THREADS)
    {
        return Err(format!(
            "--threads {t}: must be in 1..={}",
            FastCpuBackend::MAX_THREADS
        )
        .into());
    }
    let mut kernels = if args.kernels.is_empty() {
        Kernel::all()
    } else {
        args.kernels.clone()
    };
    if !kernels.contains(&Kernel::Dense) {
        kernels.insert(0, Kernel::Dense);
    }
    if args.profile_cpu {
        check_profile_inputs(args, &kernels)?;
    }
    if let Some(path) = &args.plot {
        plot::check_target(path)?;
    }
    let bar = progress_bar(args.shapes.len() * args.threads.len());
    let mut records = Vec::new();
    let mut unions = Vec::new();
    for &threads in &args.threads {
        let peak = fma_peak_gflops(threads);
        let backends = Backends::new(threads)?;
        for shape in &args.shapes {
            bar.set_message(format!(
                "{}/{}/{}/{} on {threads} threads",
                shape.q_heads, shape.kv_heads, shape.head_dim, shape.kv_len
            ));
            let (measured, union) = measure(args, shape, threads, peak, &backends, &kernels)?;
            records.extend(measured);
            if threads == args.threads[0] {
                unions.push((*shape, union));
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    print_table(&records, args.ratio);
    print_unions(&unions);
    if let Some(path) = &args.json {
        write_json(path, &records, args.ratio)?;
    }
    if args.profile_cpu {
        print_profile_block(&records, args);
        print_materialized_efficiency(&records);
    }
    if let Some(path) = &args.plot {
        draw_plot(path, &records, args)?;
    }
    Ok(())
}

/// `--plot`: the whole attentions' medians, a group per shape and thread count in the table's
/// order.
fn draw_plot(path: &std::path::Path, records: &[Record], args: &BenchArgs) -> Res<()> {
    let mut groups: Vec<((AttentionShape, usize), plot::bench::KernelGroup)> = Vec::new();
    for r in records.iter().filter(|r| !r.kernel.is_part()) {
        let key = (r.shape, r.threads);
        let i = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let s = r.shape;
                let mut label = vec![format!(
                    "{}/{}/{}/{}",
                    s.q_heads, s.kv_heads, s.head_dim, s.kv_len
                )];
                if args.threads.len() > 1 {
                    let plural = if r.threads == 1 { "" } else { "s" };
                    label.push(format!("{} thread{plural}", r.threads));
                }
                groups.push((
                    key,
                    plot::bench::KernelGroup {
                        label,
                        times: Vec::new(),
                    },
                ));
                groups.len() - 1
            }
        };
        groups[i]
            .1
            .times
            .push((r.kernel.name().to_string(), r.median_s));
    }
    let threads = match args.threads.as_slice() {
        [1] => ", 1 thread".to_string(),
        [t] => format!(", {t} threads"),
        _ => String::new(),
    };
    let title = format!(
        "Attention on the CPU ({:?}): {}-row causal chunk, {:.0} % kept{threads}",
        simd::isa(),
        args.q_len,
        args.ratio * 100.0
    );
    let groups: Vec<plot::bench::KernelGroup> = groups.into_iter().map(|(_, g)| g).collect();
    plot::bench::draw(path, &title, &groups)?;
    println!(
        "# plot: {} ({} shape and thread groups)",
        path.display(),
        groups.len()
    );
    Ok(())
}

/// Every kernel on one shape and thread count, interleaved run by run.
fn measure(
    args: &BenchArgs,
    shape: &BenchShape,
    threads: usize,
    peak: f64,
    backends: &Backends,
    kernels: &[Kernel],
) -> Res<(Vec<Record>, f64)> {
    if args.q_len > shape.kv_len {
        return Err(format!(
            "--q-len {} exceeds the {} keys of shape {}/{}/{}/{}",
            args.q_len, shape.kv_len, shape.q_heads, shape.kv_heads, shape.head_dim, shape.kv_len
        )
        .into());
    }
    let s = AttentionShape::causal(
        shape.q_heads,
        shape.kv_heads,
        args.q_len,
        shape.kv_len,
        shape.head_dim,
    );
    #[allow(unused_mut)]
    let mut case = Case::new(s, args.ratio, &backends.compute)?;
    #[cfg(feature = "ggml")]
    case.with_ggml(threads)?;
    // With one query head per KV head the core selects per head: a group kernel there would
    // time a path shadowAttn never takes.
    let kernels: Vec<Kernel> = kernels
        .iter()
        .copied()
        .filter(|k| !k.is_grouped() || s.q_heads > s.kv_heads)
        .collect();
    let mut times = vec![Vec::new(); kernels.len()];
    // One warm-up round, then the measured ones.
    for round in 0..=args.runs {
        for (k, &kernel) in kernels.iter().enumerate() {
            let t = case.time(kernel, backends)?;
            if round > 0 {
                times[k].push(t);
            }
        }
    }
    let per_pair = 4.0 * s.head_dim as f64;
    let (row_pairs, group_pairs) = case.kept_pairs();
    let valid = case.dense_pairs();
    let union = case.tile_union(simd::lanes::LANES);
    let records = kernels
        .iter()
        .zip(times)
        .map(|(&kernel, mut t)| {
            t.sort_by(f64::total_cmp);
            let (flops, ranked) = match kernel {
                Kernel::Dense | Kernel::DenseF16 => (per_pair * valid as f64, 0),
                #[cfg(feature = "ggml")]
                Kernel::Ggml | Kernel::GgmlF16 => {
                    (per_pair * (s.q_heads * s.q_len * s.kv_len) as f64, 0)
                }
                // Causal, as `Dense`: the valid pairs (the matmuls also compute the masked ones).
                #[cfg(feature = "ggml")]
                Kernel::GgmlMaterialized | Kernel::GgmlMaterializedVecDot => {
                    (per_pair * valid as f64, 0)
                }
                Kernel::TopkRow | Kernel::TopkGroup | Kernel::TopkGroupSplit(_) => (0.0, valid),
                Kernel::AttendRow | Kernel::AttendRowSingle | Kernel::AttendRowTiled => {
                    (per_pair * row_pairs as f64, 0)
                }
                Kernel::StageRow => (per_pair * row_pairs as f64, valid),
                Kernel::AttendGroup | Kernel::AttendGroupSingle | Kernel::AttendGroupTiled => {
                    (per_pair * group_pairs as f64, 0)
                }
                Kernel::StageGroup => (per_pair * group_pairs as f64, valid),
                // One ranking per group: the keys of its rows once, not once per head.
                Kernel::TopkRanked | Kernel::TopkRankedSplit(_) => {
                    (0.0, valid * s.kv_heads as u64 / s.q_heads as u64)
                }
                Kernel::StageRanked => (
                    per_pair * group_pairs as f64,
                    valid * s.kv_heads as u64 / s.q_heads as u64,
                ),
            };
            Record {
                kernel,
                shape: s,
                threads,
                median_s: t[t.len() / 2],
                flops,
                ranked,
                peak_gflops: peak,
            }
        })
        .collect();
    Ok((records, union))
}

/// The lane tiles' union factor of each shape's per-row selections.
fn print_unions(unions: &[(BenchShape, f64)]) {
    for (s, union) in unions {
        println!(
            "# {}/{}/{}/{}: a lane tile's union of {} rows' key sets is {union:.2}x one row's set (per-row selections)",
            s.q_heads,
            s.kv_heads,
            s.head_dim,
            s.kv_len,
            simd::lanes::LANES
        );
    }
}

/// The dense kernel's median on the record's shape and threads.
fn dense_of<'a>(records: &'a [Record], r: &Record) -> Option<&'a Record> {
    records
        .iter()
        .find(|d| d.kernel == Kernel::Dense && d.shape == r.shape && d.threads == r.threads)
}

fn print_table(records: &[Record], ratio: f32) {
    println!(
        "# fast CPU kernels ({:?}), causal chunk, {:.0} % kept, INT8 pilot scores; FMA peak of the kernels' instruction set",
        simd::isa(),
        ratio * 100.0
    );
    println!("# group kernels only on shapes with several query heads per KV head (the core selects per head otherwise)");
    println!(
        "kernel\tshape\tthreads\tmedian_ms\tgflops\tpeak_fraction\tns_per_ranked_key\tdense_over"
    );
    for r in records {
        let s = r.shape;
        let dense = dense_of(records, r).map_or(f64::NAN, |d| d.median_s / r.median_s);
        let per_key = if r.ranked > 0 && r.flops == 0.0 {
            format!("{:.3}", r.median_s * 1e9 / r.ranked as f64)
        } else {
            "-".into()
        };
        let (gflops, frac) = if r.flops > 0.0 {
            (
                format!("{:.1}", r.gflops()),
                format!("{:.3}", r.gflops() / r.peak_gflops),
            )
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "{}\t{}/{}/{}/{}\t{}\t{:.3}\t{gflops}\t{frac}\t{per_key}\t{dense:.2}",
            r.kernel.name(),
            s.q_heads,
            s.kv_heads,
            s.head_dim,
            s.kv_len,
            r.threads,
            r.median_s * 1e3,
        );
    }
}

fn write_json(path: &PathBuf, records: &[Record], ratio: f32) -> Res<()> {
    let items: Vec<_> = records
        .iter()
        .map(|r| {
            let dense = dense_of(records, r).map(|d| d.median_s / r.median_s);
            json!({
                "kernel": r.kernel.name(),
                "q_heads": r.shape.q_heads,
                "kv_heads": r.shape.kv_heads,
                "head_dim": r.shape.head_dim,
                "q_len": r.shape.q_len,
                "kv_len": r.shape.kv_len,
                "threads": r.threads,
                "ratio": ratio,
                "isa": format!("{:?}", simd::isa()),
                "median_ms": r.median_s * 1e3,
                "gflops": (r.flops > 0.0).then(|| r.gflops()),
                "peak_gflops": r.peak_gflops,
                "peak_fraction": (r.flops > 0.0).then(|| r.gflops() / r.peak_gflops),
                "ranked_keys": r.ranked,
                "dense_over": dense,
            })
        })
        .collect();
    std::fs::write(path, serde_json::to_string_pretty(&items)?)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Median over the single-thread records of `kernel` of `f` (group kernels run only on shapes
/// whose GQA groups have several heads).
fn median_of(records: &[Record], kernel: Kernel, f: impl Fn(&Record) -> f64) -> Option<f64> {
    let mut v: Vec<f64> = records
        .iter()
        .filter(|r| r.kernel == kernel && r.threads == 1)
        .map(f)
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// The `[[cpu.cores]]` block of this machine: per-core peak and the kernels' measured fractions
/// of it (medians over the single-thread shapes).
/// Refuses `--profile-cpu` when the run would leave a field of the block unmeasured.
fn check_profile_inputs(args: &BenchArgs, kernels: &[Kernel]) -> Res<()> {
    if !args.threads.contains(&1) {
        return Err("--profile-cpu needs a single-thread run (--threads 1)".into());
    }
    let needed = [
        Kernel::AttendRowSingle,
        Kernel::AttendRowTiled,
        Kernel::AttendGroup,
        Kernel::TopkRow,
        Kernel::TopkGroup,
    ];
    if let Some(k) = needed.iter().find(|k| !kernels.contains(k)) {
        return Err(format!("--profile-cpu needs the kernel `{}` in --kernels", k.name()).into());
    }
    if !args.shapes.iter().any(|s| s.q_heads > s.kv_heads) {
        return Err(
            "--profile-cpu needs a shape with several query heads per KV head \
            (the group kernels), e.g. 12/2/128/2048"
                .into(),
        );
    }
    Ok(())
}

fn print_profile_block(records: &[Record], args: &BenchArgs) {
    let peak = records
        .iter()
        .find(|r| r.threads == 1)
        .map_or(f64::NAN, |r| r.peak_gflops);
    let frac = |k| median_of(records, k, |r| r.gflops() / r.peak_gflops).unwrap_or(f64::NAN);
    let ns_key =
        |k| median_of(records, k, |r| r.median_s * 1e9 / r.ranked as f64).unwrap_or(f64::NAN);
    let shapes: Vec<String> = args
        .shapes
        .iter()
        .map(|s| format!("{}/{}/{}/{}", s.q_heads, s.kv_heads, s.head_dim, s.kv_len))
        .collect();
    let source = format!(
        "measured: shadowattn bench --threads 1 --ratio {} --shapes {} (median over the shapes; group kernels over those with several heads per KV head)",
        args.ratio,
        shapes.join(",")
    );
    println!();
    println!("[[cpu.cores]]");
    println!("name = \"this-machine\"");
    println!("model = \"{:?} host\"", simd::isa());
    println!("count = {{ value = 1, source = \"one core measured\" }}");
    println!("fp32_gflops = {{ value = {peak:.1}, source = \"measured: FMA peak probe of the kernels' instruction set, 1 thread\" }}");
    for (field, kernel) in [
        ("dense_efficiency", Kernel::Dense),
        ("sparse_row_efficiency", Kernel::AttendRowSingle),
        ("sparse_tiled_efficiency", Kernel::AttendRowTiled),
        ("sparse_group_efficiency", Kernel::AttendGroup),
    ] {
        println!(
            "{field} = {{ value = {:.3}, source = \"{source}\" }}",
            frac(kernel)
        );
    }
    match host_clock_ghz() {
        Some(ghz) => {
            println!("clock_ghz = {{ value = {ghz:.2}, source = \"code/doc: the nominal cpu MHz of /proc/cpuinfo (under a boost clock the cycles below are a lower bound)\" }}");
            for (field, kernel) in [
                ("topk_cycles_per_key", Kernel::TopkRow),
                ("group_topk_cycles_per_key", Kernel::TopkGroup),
                ("ranked_topk_cycles_per_key", Kernel::TopkRanked),
                (
                    "threshold_topk_cycles_per_key",
                    Kernel::TopkGroupSplit(MassSplit::Threshold),
                ),
                (
                    "ranked_threshold_topk_cycles_per_key",
                    Kernel::TopkRankedSplit(MassSplit::Threshold),
                ),
                (
                    "top_p_topk_cycles_per_key",
                    Kernel::TopkGroupSplit(MassSplit::TopP),
                ),
                (
                    "ranked_top_p_topk_cycles_per_key",
                    Kernel::TopkRankedSplit(MassSplit::TopP),
                ),
            ] {
                println!(
                    "{field} = {{ value = {:.2}, source = \"{source}; ns per key x clock\" }}",
                    ns_key(kernel) * ghz
                );
            }
        }
        None => println!(
            "# no clock in /proc/cpuinfo: top-k costs here are {:.3} (per row), {:.3} (group) and {:.3} (NPU-reduced group ranking) ns per key",
            ns_key(Kernel::TopkRow),
            ns_key(Kernel::TopkGroup),
            ns_key(Kernel::TopkRanked)
        ),
    }
}

/// FLOP per (row, key) pair as the simulator prices attention (`cpu_model::attention_ns`):
/// `q·k` and `p·v` at `4·d`, plus 8 for the exponential.
fn simulator_pair_flop(head_dim: usize) -> f64 {
    4.0 * head_dim as f64 + 8.0
}

/// Fraction of the FMA peak of `r` at the simulator's FLOP rule: `(4·d + 8)` per valid pair.
fn simulator_fraction(r: &Record) -> f64 {
    let per_pair = 4.0 * r.shape.head_dim as f64;
    let pairs = r.flops / per_pair;
    pairs * simulator_pair_flop(r.shape.head_dim) / r.median_s / 1e9 / r.peak_gflops
}

/// After the profile block, as TOML comments: ggml's materialized (llama.cpp non-flash)
/// attention's fraction of the same FMA peak, per single-thread shape and median/min/max,
/// beside our dense kernel's, both at the simulator's `(4·d + 8)` FLOP per valid pair (the
/// table's `peak_fraction` counts `4·d`).
fn print_materialized_efficiency(records: &[Record]) {
    let kernels: Vec<Kernel> = Kernel::all()
        .into_iter()
        .filter(|k| k.is_ggml_materialized())
        .filter(|&k| records.iter().any(|r| r.kernel == k && r.threads == 1))
        .collect();
    if kernels.is_empty() {
        return;
    }
    println!();
    println!("# ggml materialized attention (llama.cpp without flash attention: mul_mat(K f16, Q->f16), causal soft_max_ext, mul_mat(V^T f16, P->f16)), 1 thread");
    println!("# fraction of the fp32_gflops FMA peak above at (4*d + 8) FLOP per valid (row, key) pair, the simulator's rule; dense = our dense kernel in the same run, same rule");
    println!("# kernel\tshape\tmedian_ms\tpeak_fraction\tdense_peak_fraction");
    for &kernel in &kernels {
        for r in records
            .iter()
            .filter(|r| r.kernel == kernel && r.threads == 1)
        {
            let s = r.shape;
            let dense = dense_of(records, r).map_or(f64::NAN, simulator_fraction);
            println!(
                "# {}\t{}/{}/{}/{}\t{:.3}\t{:.4}\t{dense:.4}",
                kernel.name(),
                s.q_heads,
                s.kv_heads,
                s.head_dim,
                s.kv_len,
                r.median_s * 1e3,
                simulator_fraction(r),
            );
        }
    }
    let spread = |kernel: Kernel| {
        let mut v: Vec<f64> = records
            .iter()
            .filter(|r| r.kernel == kernel && r.threads == 1)
            .map(simulator_fraction)
            .collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    for kernel in kernels.iter().copied().chain([Kernel::Dense]) {
        let (median, min, max) = spread(kernel);
        println!(
            "# {}: peak_fraction median {median:.4} min {min:.4} max {max:.4} over the shapes",
            kernel.name()
        );
    }
}

/// This machine's clock from `/proc/cpuinfo` (the largest `cpu MHz`), GHz.
fn host_clock_ghz() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        .map(|mhz| mhz / 1000.0)
}
