//! SoC profiles: the physical parameters of an NPU and the CPU cores beside it, as TOML data.
//!
//! Every number is written `{ value = …, source = "…" }`; the source starts with one of
//! `measured`, `vendor claim`, `code/doc`, `derived` or `assumption`, so a reader can tell how
//! much to trust it. Unknown keys, missing fields, non-positive values and physically impossible
//! combinations are errors naming the file, the key and the line.

use crate::error::{Result, SimError};
use crate::npu::launch::{LaunchChoice, LaunchPath, LaunchProfile};
use crate::npu::layout::Layout;
use crate::npu::numerics::IntegerRounding;
use serde::Deserialize;
use shadowattn_hal::OpKind;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// Prefixes a `source` string must start with.
pub const SOURCE_KINDS: [&str; 5] = [
    "measured",
    "vendor claim",
    "code/doc",
    "derived",
    "assumption",
];

/// A number and where it comes from.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sourced<T> {
    /// The number.
    pub value: T,
    /// Where it comes from (see [`SOURCE_KINDS`]).
    pub source: String,
}

/// A sourced real number with its position in the file.
pub type Real = Spanned<Sourced<f64>>;
/// A sourced count with its position in the file.
pub type Count = Spanned<Sourced<u64>>;

/// Value of a sourced real.
pub fn real(x: &Real) -> f64 {
    x.get_ref().value
}

/// Value of a sourced count.
pub fn count(x: &Count) -> u64 {
    x.get_ref().value
}

/// A whole SoC profile.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocProfile {
    /// Short name used on the command line (`snapdragon-8-gen-3`).
    pub name: String,
    /// Marketing name and part number.
    pub soc: String,
    /// NPU architecture (`HTP V75`, `APU 790`).
    pub npu_arch: String,
    /// Ops this NPU cannot run (default: none).
    #[serde(default)]
    pub unsupported_ops: Vec<OpKind>,
    /// Forms of supported ops its compiler refuses (default: none).
    #[serde(default)]
    pub limits: NpuLimits,
    /// How it computes where that differs from the golden reference (default: as it).
    #[serde(default)]
    pub numerics: NpuNumerics,
    /// The NPU.
    pub npu: NpuProfile,
    /// The CPU cores available to the pipeline.
    pub cpu: CpuProfile,
    /// The launch paths predictions use (the caller's choice, not part of the file).
    #[serde(skip)]
    pub launch_choice: LaunchChoice,
}

/// Forms of an op the NPU's compiler refuses although it runs the op; each default accepts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpuLimits {
    /// Integer MatMuls may write INT32 accumulators (HTP and NNAPI-rules drivers: no; they
    /// requantize to 8 or 16 bits).
    #[serde(default = "accepted")]
    pub int32_matmul_output: bool,
    /// Requantize may read an INT32 tensor.
    #[serde(default = "accepted")]
    pub requantize_from_int32: bool,
    /// Softmax may run over any axis (HTP: the last one only).
    #[serde(default = "accepted")]
    pub softmax_any_axis: bool,
    /// Ops from float to float tensors (f16, or f32 that HTP computes as f16) run; false
    /// refuses every node with a float input and a float output but an f32 Transpose or
    /// Reshape, leaving Quantize, Dequantize and float-to-integer Casts (QNN socModel 95,
    /// SAR2230P: false, "The SocModel doesn't support FP16").
    #[serde(default = "accepted")]
    pub float_ops: bool,
    /// Where these come from.
    #[serde(default = "unstated")]
    pub source: String,
}

fn accepted() -> bool {
    true
}

fn unstated() -> String {
    "none stated: every form of a supported op is accepted".into()
}

impl NpuLimits {
    /// Every limit by its `[limits]` key, with whether the NPU accepts it.
    pub fn entries(&self) -> [(&'static str, bool); 4] {
        [
            ("int32_matmul_output", self.int32_matmul_output),
            ("requantize_from_int32", self.requantize_from_int32),
            ("softmax_any_axis", self.softmax_any_axis),
            ("float_ops", self.float_ops),
        ]
    }

    /// The keys of the limits the NPU refuses (set to false).
    pub fn refused(&self) -> Vec<&'static str> {
        self.entries()
            .into_iter()
            .filter(|(_, accepted)| !accepted)
            .map(|(key, _)| key)
            .collect()
    }
}

impl Default for NpuLimits {
    fn default() -> Self {
        NpuLimits {
            int32_matmul_output: true,
            requantize_from_int32: true,
            softmax_any_axis: true,
            float_ops: true,
            source: unstated(),
        }
    }
}

/// How the NPU computes where it differs from the golden reference.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpuNumerics {
    /// f32 graphs compute in f16: inputs rounded to f16, every op in f16, outputs widened.
    #[serde(default)]
    pub f32_as_f16: bool,
    /// How integer results are rounded: `golden` (default) or `htp-v73`.
    #[serde(default)]
    pub integer_rounding: IntegerRounding,
    /// Where this comes from.
    #[serde(default = "exact")]
    pub source: String,
}

fn exact() -> String {
    "none stated: computes as the golden reference".into()
}

impl Default for NpuNumerics {
    fn default() -> Self {
        NpuNumerics {
            f32_as_f16: false,
            integer_rounding: IntegerRounding::Golden,
            source: exact(),
        }
    }
}

/// Physical parameters of the NPU.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpuProfile {
    /// Clock in GHz.
    pub clock_ghz: Real,
    /// On-chip memory (VTCM, SRAM) in bytes.
    pub onchip_bytes: Count,
    /// Fraction of on-chip memory one working set may use (½ with double buffering).
    pub onchip_usable_fraction: Real,
    /// Peak DDR bandwidth in GB/s.
    pub ddr_gbps: Real,
    /// Effective DMA rate between DDR and on-chip memory, bytes per NPU cycle.
    pub dma_bytes_per_cycle: Real,
    /// Fixed accelerator cycles of every graph execution (setup, sync, tails).
    pub fixed_cycles: Real,
    /// Vector-unit cycles per element of converting a graph input from the host's flat layout
    /// to the NPU's tiled one (constants are converted when the graph is compiled).
    pub input_cycles_per_element: Real,
    /// Vector-unit cycles per element of converting a graph output back to the flat layout.
    pub output_cycles_per_element: Real,
    /// How tensors are laid out on chip (absent: flat, no padding beyond the tiles).
    #[serde(default)]
    pub layout: Option<Spanned<Sourced<Layout>>>,
    /// How the host drives a launch, and what each way costs.
    pub launch: LaunchProfile,
    /// Fixed cost of compiling (finalizing) one graph, ms.
    pub compile_base_ms: Real,
    /// Additional compile cost per node, ms.
    pub compile_per_node_ms: Real,
    /// Matrix unit.
    pub matrix: MatrixProfile,
    /// Vector units.
    pub vector: VectorProfile,
}

/// The matrix unit's tile per data type.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixProfile {
    /// INT8 × INT8 → INT32 tile.
    pub int8: TileProfile,
    /// FP16 × FP16 tile (f32 graphs run as f16).
    pub fp16: TileProfile,
    /// Cycles to read out, requantize and store one element of an INT8 MatMul's 8/16-bit output.
    pub requantized_output_cycles_per_element: Real,
    /// Cycles of the relayout HTP's compiler inserts between the heads of a fused INT8 MatMul
    /// with keys as rows over 512–1024 keys (absent: none; `simulator/socs/qnn/RULES.md` §6).
    #[serde(default)]
    pub fused_relayout_cycles: Option<Real>,
}

/// One matrix-unit micro-op: `[m, k] · [k, n]` in `cycles_per_tile` cycles.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileProfile {
    /// Rows of the activation tile.
    pub m: Count,
    /// Columns of the output tile.
    pub n: Count,
    /// Depth of the tile.
    pub k: Count,
    /// Cycles per tile, pipelined.
    pub cycles_per_tile: Real,
    /// Fixed cycles of every MatMul node on this tile path (configuration, drain).
    pub node_fixed_cycles: Real,
}

/// Vector units and the cost of each op family in vector ops per element.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorProfile {
    /// Vector units (HVX contexts) working in parallel.
    pub units: Count,
    /// Width of one vector in bits.
    pub width_bits: Count,
    /// Vector ops per element of Softmax (max, exp, sum, divide).
    pub softmax_ops: Real,
    /// Vector ops per element of Requantize, Quantize, Dequantize.
    pub requantize_ops: Real,
    /// Vector ops per element of Mul, Add, Cast.
    pub elementwise_ops: Real,
    /// Vector ops per element and per log2(k) of TopK.
    pub topk_ops: Real,
    /// Fixed cycles of every vector-unit node (setup, reductions' tails).
    pub node_fixed_cycles: Real,
    /// Cycles per element of transposing a MatMul operand that is read transposed and is not
    /// a constant (constants are laid out when the graph is compiled).
    pub transpose_cycles_per_element: Real,
}

/// The CPU cores the pipeline may use.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuProfile {
    /// Core clusters, most capable last.
    pub cores: Vec<CpuCore>,
}

/// One cluster of identical CPU cores.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuCore {
    /// Role (`mid`, `prime`).
    pub name: String,
    /// Core model (`Cortex-A720`).
    pub model: String,
    /// Cores of this kind.
    pub count: Count,
    /// Clock in GHz.
    pub clock_ghz: Real,
    /// Peak FP32 throughput of one core, GFLOP/s.
    pub fp32_gflops: Real,
    /// Peak FP16 throughput of one core, GFLOP/s.
    pub fp16_gflops: Real,
    /// Memory bandwidth one core can draw, GB/s.
    pub mem_gbps: Real,
    /// Core cycles per key examined by top-k selection, a key set per head and row.
    pub topk_cycles_per_key: Real,
    /// Core cycles per key of each head when a GQA group shares its key set: the group's
    /// softmax-probability ranking, then one top-k.
    pub group_topk_cycles_per_key: Real,
    /// Core cycles per key of a GQA group's ranking reduced on the NPU (f16 probabilities): its
    /// top-k alone, each key once per group.
    pub ranked_topk_cycles_per_key: Real,
    /// Core cycles per key of each head of a selection that spreads the budget by one
    /// probability threshold (`shadowattn_hal::budget`, the ranking on the CPU); absent: that
    /// split is not priced on this core.
    #[serde(default)]
    pub threshold_topk_cycles_per_key: Option<Real>,
    /// The same of the NPU-reduced group ranking, per ranked key.
    #[serde(default)]
    pub ranked_threshold_topk_cycles_per_key: Option<Real>,
    /// Core cycles per key of each head of the top-p split (rows sorted), the ranking on the CPU.
    #[serde(default)]
    pub top_p_topk_cycles_per_key: Option<Real>,
    /// The same of the NPU-reduced group ranking, per ranked key.
    #[serde(default)]
    pub ranked_top_p_topk_cycles_per_key: Option<Real>,
    /// Fraction of peak FLOP/s dense attention reaches on this core, in (0, 1].
    pub dense_efficiency: Real,
    /// Fraction of peak FLOP/s sparse attention with a key set per head and row reaches, one
    /// row at a time (each row gathers its own keys).
    pub sparse_row_efficiency: Real,
    /// The same in lane tiles (rows side by side gather the union of their keys once; counted
    /// on the kept pairs, so the union's extra keys are in it).
    pub sparse_tiled_efficiency: Real,
    /// Fraction of peak FLOP/s sparse attention with a key set per GQA group reaches.
    pub sparse_group_efficiency: Real,
    /// Fraction of peak FLOP/s dense attention with the score matrix materialized reaches
    /// (one dot product per score and output element, the softmax a pass of its own).
    pub materialized_efficiency: Real,
}

impl CpuCore {
    /// The mass splits' selection cycles, by their profile keys.
    pub fn split_cycles(&self) -> [(&'static str, Option<&Real>); 4] {
        [
            (
                "threshold_topk_cycles_per_key",
                self.threshold_topk_cycles_per_key.as_ref(),
            ),
            (
                "ranked_threshold_topk_cycles_per_key",
                self.ranked_threshold_topk_cycles_per_key.as_ref(),
            ),
            (
                "top_p_topk_cycles_per_key",
                self.top_p_topk_cycles_per_key.as_ref(),
            ),
            (
                "ranked_top_p_topk_cycles_per_key",
                self.ranked_top_p_topk_cycles_per_key.as_ref(),
            ),
        ]
    }

    /// The attention kernels' fractions of peak, by their profile keys.
    fn efficiencies(&self) -> [(&'static str, &Real); 5] {
        [
            ("dense_efficiency", &self.dense_efficiency),
            ("sparse_row_efficiency", &self.sparse_row_efficiency),
            ("sparse_tiled_efficiency", &self.sparse_tiled_efficiency),
            ("sparse_group_efficiency", &self.sparse_group_efficiency),
            ("materialized_efficiency", &self.materialized_efficiency),
        ]
    }
}

/// The built-in profiles: (name, TOML text).
pub const BUILTIN: [(&str, &str); 5] = [
    (
        "snapdragon-8-gen-2",
        include_str!("../../socs/snapdragon-8-gen-2.toml"),
    ),
    (
        "snapdragon-8-gen-3",
        include_str!("../../socs/snapdragon-8-gen-3.toml"),
    ),
    (
        "snapdragon-8-elite",
        include_str!("../../socs/snapdragon-8-elite.toml"),
    ),
    (
        "dimensity-9300",
        include_str!("../../socs/dimensity-9300.toml"),
    ),
    ("sa8255", include_str!("../../socs/sa8255.toml")),
];

/// Names of the built-in profiles.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

impl SocProfile {
    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Self> {
        let (_, text) =
            BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| SimError::UnknownSoc {
                    name: name.to_string(),
                    known: builtin_names().join(", "),
                })?;
        Self::parse(&format!("<builtin>/{name}.toml"), text)
    }

    /// Loads and validates a profile file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates profile text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let profile: SocProfile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s)).unwrap_or(0);
            let msg = e.message().to_string();
            let key = msg
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or_else(|| "<document>".into());
            SimError::Profile {
                file: file.to_string(),
                line,
                key,
                detail: msg,
            }
        })?;
        profile.validate(file, text)?;
        Ok(profile)
    }

    /// Every sourced real with its dotted key.
    fn reals(&self) -> Vec<(String, &Real)> {
        let n = &self.npu;
        let mut v: Vec<(String, &Real)> = vec![
            ("npu.clock_ghz".into(), &n.clock_ghz),
            (
                "npu.onchip_usable_fraction".into(),
                &n.onchip_usable_fraction,
            ),
            ("npu.ddr_gbps".into(), &n.ddr_gbps),
            ("npu.dma_bytes_per_cycle".into(), &n.dma_bytes_per_cycle),
            ("npu.fixed_cycles".into(), &n.fixed_cycles),
            (
                "npu.input_cycles_per_element".into(),
                &n.input_cycles_per_element,
            ),
            (
                "npu.output_cycles_per_element".into(),
                &n.output_cycles_per_element,
            ),
            ("npu.compile_base_ms".into(), &n.compile_base_ms),
            ("npu.compile_per_node_ms".into(), &n.compile_per_node_ms),
            (
                "npu.matrix.int8.cycles_per_tile".into(),
                &n.matrix.int8.cycles_per_tile,
            ),
            (
                "npu.matrix.fp16.cycles_per_tile".into(),
                &n.matrix.fp16.cycles_per_tile,
            ),
            (
                "npu.matrix.int8.node_fixed_cycles".into(),
                &n.matrix.int8.node_fixed_cycles,
            ),
            (
                "npu.matrix.fp16.node_fixed_cycles".into(),
                &n.matrix.fp16.node_fixed_cycles,
            ),
            (
                "npu.vector.transpose_cycles_per_element".into(),
                &n.vector.transpose_cycles_per_element,
            ),
            ("npu.vector.softmax_ops".into(), &n.vector.softmax_ops),
            ("npu.vector.requantize_ops".into(), &n.vector.requantize_ops),
            (
                "npu.vector.elementwise_ops".into(),
                &n.vector.elementwise_ops,
            ),
            ("npu.vector.topk_ops".into(), &n.vector.topk_ops),
            (
                "npu.vector.node_fixed_cycles".into(),
                &n.vector.node_fixed_cycles,
            ),
            (
                "npu.matrix.requantized_output_cycles_per_element".into(),
                &n.matrix.requantized_output_cycles_per_element,
            ),
        ];
        if let Some(r) = &n.matrix.fused_relayout_cycles {
            v.push(("npu.matrix.fused_relayout_cycles".into(), r));
        }
        v.extend(n.launch.reals());
        for (i, c) in self.cpu.cores.iter().enumerate() {
            for (k, r) in [
                ("clock_ghz", &c.clock_ghz),
                ("fp32_gflops", &c.fp32_gflops),
                ("fp16_gflops", &c.fp16_gflops),
                ("mem_gbps", &c.mem_gbps),
                ("topk_cycles_per_key", &c.topk_cycles_per_key),
                ("group_topk_cycles_per_key", &c.group_topk_cycles_per_key),
                ("ranked_topk_cycles_per_key", &c.ranked_topk_cycles_per_key),
            ]
            .into_iter()
            .chain(c.efficiencies())
            .chain(
                c.split_cycles()
                    .into_iter()
                    .filter_map(|(k, r)| Some((k, r?))),
            ) {
                v.push((format!("cpu.cores[{i}].{k}"), r));
            }
        }
        v
    }

    /// Every sourced count with its dotted key.
    fn counts(&self) -> Vec<(String, &Count)> {
        let n = &self.npu;
        let mut v: Vec<(String, &Count)> = vec![
            ("npu.onchip_bytes".into(), &n.onchip_bytes),
            ("npu.vector.units".into(), &n.vector.units),
            ("npu.vector.width_bits".into(), &n.vector.width_bits),
        ];
        for (dt, t) in [("int8", &n.matrix.int8), ("fp16", &n.matrix.fp16)] {
            v.push((format!("npu.matrix.{dt}.m"), &t.m));
            v.push((format!("npu.matrix.{dt}.n"), &t.n));
            v.push((format!("npu.matrix.{dt}.k"), &t.k));
        }
        for (i, c) in self.cpu.cores.iter().enumerate() {
            v.push((format!("cpu.cores[{i}].count"), &c.count));
        }
        v
    }

    fn validate(&self, file: &str, text: &str) -> Result<()> {
        let err = |key: &str, span: Range<usize>, detail: String| SimError::Profile {
            file: file.to_string(),
            line: line_of(text, span),
            key: key.to_string(),
            detail,
        };
        let check_source = |key: &str, span: Range<usize>, source: &str| {
            if SOURCE_KINDS.iter().any(|k| source.starts_with(k)) {
                Ok(())
            } else {
                Err(err(
                    key,
                    span,
                    format!(
                        "source \"{source}\" must start with one of: {}",
                        SOURCE_KINDS.join(", ")
                    ),
                ))
            }
        };
        for (key, r) in self.reals() {
            let v = r.get_ref().value;
            if !v.is_finite() || v <= 0.0 {
                return Err(err(
                    &key,
                    r.span(),
                    format!("must be finite and positive, got {v}"),
                ));
            }
            check_source(&key, r.span(), &r.get_ref().source)?;
        }
        for (key, c) in self.counts() {
            if c.get_ref().value == 0 {
                return Err(err(&key, c.span(), "must be at least 1, got 0".into()));
            }
            check_source(&key, c.span(), &c.get_ref().source)?;
        }
        let n = &self.npu;
        if real(&n.onchip_usable_fraction) > 1.0 {
            let r = &n.onchip_usable_fraction;
            return Err(err(
                "npu.onchip_usable_fraction",
                r.span(),
                format!("a fraction cannot exceed 1, got {}", real(r)),
            ));
        }
        let dma_gbps = real(&n.dma_bytes_per_cycle) * real(&n.clock_ghz);
        if dma_gbps > real(&n.ddr_gbps) {
            return Err(err(
                "npu.dma_bytes_per_cycle",
                n.dma_bytes_per_cycle.span(),
                format!(
                    "{} B/cycle at {} GHz is {dma_gbps:.1} GB/s, more than the DDR peak of {} GB/s",
                    real(&n.dma_bytes_per_cycle),
                    real(&n.clock_ghz),
                    real(&n.ddr_gbps)
                ),
            ));
        }
        check_source(
            "npu.launch.default",
            n.launch.default.span(),
            &n.launch.default.get_ref().source,
        )?;
        if let Some(layout) = &n.layout {
            check_source("npu.layout", layout.span(), &layout.get_ref().source)?;
        }
        for (i, c) in self.cpu.cores.iter().enumerate() {
            for (key, e) in c.efficiencies() {
                if real(e) > 1.0 {
                    return Err(err(
                        &format!("cpu.cores[{i}].{key}"),
                        e.span(),
                        format!("a fraction of peak cannot exceed 1, got {}", real(e)),
                    ));
                }
            }
        }
        if !count(&n.vector.width_bits).is_multiple_of(8) {
            return Err(err(
                "npu.vector.width_bits",
                n.vector.width_bits.span(),
                "must be a whole number of bytes".into(),
            ));
        }
        if self.cpu.cores.is_empty() {
            return Err(err(
                "cpu.cores",
                0..0,
                "at least one core cluster is needed".into(),
            ));
        }
        Ok(())
    }

    /// NPU clock in Hz.
    pub fn npu_hz(&self) -> f64 {
        real(&self.npu.clock_ghz) * 1e9
    }

    /// How the NPU lays tensors out on chip.
    pub fn layout(&self) -> Layout {
        self.npu
            .layout
            .as_ref()
            .map_or(Layout::Flat, |l| l.get_ref().value)
    }

    /// On-chip bytes one working set may use.
    pub fn usable_onchip_bytes(&self) -> u64 {
        (count(&self.npu.onchip_bytes) as f64 * real(&self.npu.onchip_usable_fraction)) as u64
    }

    /// The path of every graph launch but the pilot's: the caller's choice, else the profile's
    /// default.
    pub fn graph_path(&self) -> LaunchPath {
        self.launch_choice
            .graphs
            .unwrap_or_else(|| self.npu.launch.default_path())
    }

    /// The path of the pilot's launches: the caller's choice, else the graphs' path.
    pub fn pilot_path(&self) -> LaunchPath {
        self.launch_choice
            .pilot
            .unwrap_or_else(|| self.graph_path())
    }

    /// The profile with the caller's choice of launch paths.
    pub fn with_launch(mut self, choice: LaunchChoice) -> Self {
        self.launch_choice = choice;
        self
    }

    /// The numbers that set how fast the NPU computes (its clock, units and per-op cycles, not
    /// its DDR, DMA or launch path), by key.
    pub fn npu_compute(&self) -> Vec<(String, f64)> {
        let n = &self.npu;
        let mut v: Vec<(String, f64)> = self
            .reals()
            .into_iter()
            .filter(|(k, _)| {
                !k.starts_with("cpu.")
                    && !k.starts_with("npu.launch.")
                    && !matches!(
                        k.as_str(),
                        "npu.ddr_gbps"
                            | "npu.dma_bytes_per_cycle"
                            | "npu.compile_base_ms"
                            | "npu.compile_per_node_ms"
                    )
            })
            .map(|(k, r)| (k, real(r)))
            .collect();
        v.push(("npu.vector.units".into(), count(&n.vector.units) as f64));
        v.push(("npu.onchip_bytes".into(), count(&n.onchip_bytes) as f64));
        v
    }

    /// The built-in profiles (other than this one) whose NPU computes exactly as this one's.
    pub fn compute_twins(&self) -> Vec<String> {
        let mine = self.npu_compute();
        BUILTIN
            .iter()
            .filter(|(name, _)| *name != self.name)
            .filter_map(|(name, _)| SocProfile::builtin(name).ok())
            .filter(|other| other.npu_compute() == mine)
            .map(|other| format!("{} ({})", other.name, other.npu_arch))
            .collect()
    }

    /// The core cluster called `name`.
    pub fn core(&self, name: &str) -> Option<&CpuCore> {
        self.cpu.cores.iter().find(|c| c.name == name)
    }
}
