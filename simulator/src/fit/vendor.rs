//! Fitting a profile's free NPU parameters to a vendor cost model's estimates (Qualcomm's
//! finalize-time "hextimate" cycles), and the graph grids the fit and its validation use.
//!
//! The fit minimizes a robust (Cauchy) loss of the log errors `e = ln(simulated / vendor)`,
//! `Σ c²·ln(1 + (e/c)²)` with `c` = [`LOSS_SCALE`] — relative error, so a 2,000-cycle graph
//! counts as much as a 2M-cycle one, and errors well past `c` count less than squared: the few
//! graphs QNN costs by a strategy the model does not have (f16 MatMuls with N ≤ 128 cost more
//! than with N = 256) do not pull every parameter — with Nelder-Mead in the logarithms of the parameters (they stay positive; the model's
//! `max(compute, dma)` branches give it no useful gradient), restarted from its best point
//! until a restart no longer improves it.

use crate::error::{Result, SimError};
use crate::fit::graph_families::{Family, GraphSpec, Grid, Second, Tail};
use crate::npu::cost::graph_cost;
use crate::npu::profile::{real, Real, SocProfile, Sourced};
use argmin::core::{CostFunction, Error as ArgminError, Executor, State};
use argmin::solver::neldermead::NelderMead;
use shadowattn_hal::{DType, Graph};
use std::fmt;
use toml::Spanned;

/// The scale of the fit's robust loss: log errors up to about this count as squared.
pub const LOSS_SCALE: f64 = 0.1;

/// One vendor estimate: a graph and its accelerator cycles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// The graph.
    pub spec: GraphSpec,
    /// The vendor's estimate, accelerator cycles.
    pub cycles: f64,
}

/// A free parameter of the NPU cost model that a fit determines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Parameter {
    /// `npu.fixed_cycles`.
    FixedCycles,
    /// `npu.dma_bytes_per_cycle`.
    DmaBytesPerCycle,
    /// `npu.input_cycles_per_element`.
    InputCyclesPerElement,
    /// `npu.output_cycles_per_element`.
    OutputCyclesPerElement,
    /// `npu.matrix.int8.cycles_per_tile`.
    Int8CyclesPerTile,
    /// `npu.matrix.fp16.cycles_per_tile`.
    Fp16CyclesPerTile,
    /// `npu.matrix.requantized_output_cycles_per_element`.
    RequantizedOutputCyclesPerElement,
    /// `npu.vector.softmax_ops`.
    SoftmaxOps,
    /// `npu.vector.node_fixed_cycles`.
    NodeFixedCycles,
    /// `npu.vector.transpose_cycles_per_element`.
    TransposeCyclesPerElement,
    /// `npu.matrix.int8.node_fixed_cycles`.
    Int8NodeFixedCycles,
    /// `npu.matrix.fp16.node_fixed_cycles`.
    Fp16NodeFixedCycles,
    /// `npu.vector.elementwise_ops`.
    ElementwiseOps,
    /// `npu.vector.requantize_ops`.
    RequantizeOps,
    /// `npu.matrix.fused_relayout_cycles`.
    FusedRelayoutCycles,
}

/// Every parameter `soc fit` determines, in the order it reports them.
pub const FREE_PARAMETERS: [Parameter; 15] = [
    Parameter::FixedCycles,
    Parameter::DmaBytesPerCycle,
    Parameter::InputCyclesPerElement,
    Parameter::OutputCyclesPerElement,
    Parameter::Int8CyclesPerTile,
    Parameter::Fp16CyclesPerTile,
    Parameter::RequantizedOutputCyclesPerElement,
    Parameter::SoftmaxOps,
    Parameter::NodeFixedCycles,
    Parameter::TransposeCyclesPerElement,
    Parameter::Int8NodeFixedCycles,
    Parameter::Fp16NodeFixedCycles,
    Parameter::ElementwiseOps,
    Parameter::RequantizeOps,
    Parameter::FusedRelayoutCycles,
];

impl Parameter {
    /// The parameter's dotted key in a profile.
    pub fn key(self) -> &'static str {
        match self {
            Parameter::FixedCycles => "npu.fixed_cycles",
            Parameter::DmaBytesPerCycle => "npu.dma_bytes_per_cycle",
            Parameter::InputCyclesPerElement => "npu.input_cycles_per_element",
            Parameter::OutputCyclesPerElement => "npu.output_cycles_per_element",
            Parameter::Int8CyclesPerTile => "npu.matrix.int8.cycles_per_tile",
            Parameter::Fp16CyclesPerTile => "npu.matrix.fp16.cycles_per_tile",
            Parameter::RequantizedOutputCyclesPerElement => {
                "npu.matrix.requantized_output_cycles_per_element"
            }
            Parameter::SoftmaxOps => "npu.vector.softmax_ops",
            Parameter::NodeFixedCycles => "npu.vector.node_fixed_cycles",
            Parameter::TransposeCyclesPerElement => "npu.vector.transpose_cycles_per_element",
            Parameter::Int8NodeFixedCycles => "npu.matrix.int8.node_fixed_cycles",
            Parameter::Fp16NodeFixedCycles => "npu.matrix.fp16.node_fixed_cycles",
            Parameter::ElementwiseOps => "npu.vector.elementwise_ops",
            Parameter::RequantizeOps => "npu.vector.requantize_ops",
            Parameter::FusedRelayoutCycles => "npu.matrix.fused_relayout_cycles",
        }
    }

    fn slot(self, p: &mut SocProfile) -> &mut Real {
        let n = &mut p.npu;
        match self {
            Parameter::FixedCycles => &mut n.fixed_cycles,
            Parameter::DmaBytesPerCycle => &mut n.dma_bytes_per_cycle,
            Parameter::InputCyclesPerElement => &mut n.input_cycles_per_element,
            Parameter::OutputCyclesPerElement => &mut n.output_cycles_per_element,
            Parameter::Int8CyclesPerTile => &mut n.matrix.int8.cycles_per_tile,
            Parameter::Fp16CyclesPerTile => &mut n.matrix.fp16.cycles_per_tile,
            Parameter::RequantizedOutputCyclesPerElement => {
                &mut n.matrix.requantized_output_cycles_per_element
            }
            Parameter::SoftmaxOps => &mut n.vector.softmax_ops,
            Parameter::NodeFixedCycles => &mut n.vector.node_fixed_cycles,
            Parameter::TransposeCyclesPerElement => &mut n.vector.transpose_cycles_per_element,
            Parameter::Int8NodeFixedCycles => &mut n.matrix.int8.node_fixed_cycles,
            Parameter::Fp16NodeFixedCycles => &mut n.matrix.fp16.node_fixed_cycles,
            Parameter::ElementwiseOps => &mut n.vector.elementwise_ops,
            Parameter::RequantizeOps => &mut n.vector.requantize_ops,
            Parameter::FusedRelayoutCycles => {
                n.matrix.fused_relayout_cycles.get_or_insert_with(|| {
                    Spanned::new(
                        0..0,
                        Sourced {
                            value: Self::FusedRelayoutCycles.first_guess(),
                            source: "assumption: the fit's first guess".into(),
                        },
                    )
                })
            }
        }
    }

    /// An order-of-magnitude guess, the fit's second start: a few thousand cycles of fixed
    /// costs, HMX's 16 cycles per tile (Hexagon QEMU's MX rate), a DMA rate of about 20 B per
    /// cycle (≈ 30 GB/s at 1.5 GHz), a tenth of a cycle per element of layout work.
    pub fn first_guess(self) -> f64 {
        match self {
            Parameter::FixedCycles => 3000.0,
            Parameter::DmaBytesPerCycle => 20.0,
            Parameter::InputCyclesPerElement => 0.05,
            Parameter::OutputCyclesPerElement => 0.01,
            Parameter::Int8CyclesPerTile | Parameter::Fp16CyclesPerTile => 16.0,
            Parameter::RequantizedOutputCyclesPerElement => 0.2,
            Parameter::SoftmaxOps => 12.0,
            Parameter::NodeFixedCycles => 2000.0,
            Parameter::TransposeCyclesPerElement => 0.3,
            Parameter::Int8NodeFixedCycles | Parameter::Fp16NodeFixedCycles => 1000.0,
            Parameter::ElementwiseOps => 1.0,
            Parameter::RequantizeOps => 3.0,
            Parameter::FusedRelayoutCycles => 50_000.0,
        }
    }

    /// The parameter's value in `p`.
    pub fn get(self, p: &SocProfile) -> f64 {
        real(self.slot(&mut p.clone()))
    }

    /// Sets the parameter's value in `p`.
    pub fn set(self, p: &mut SocProfile, value: f64) {
        self.slot(p).get_mut().value = value;
    }
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A graph's vendor estimate beside the profile's prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Residual {
    /// The graph.
    pub spec: GraphSpec,
    /// The vendor's estimate, cycles.
    pub reference: f64,
    /// The simulator's prediction, cycles.
    pub predicted: f64,
}

impl Residual {
    /// `ln(predicted / reference)`.
    pub fn log_error(&self) -> f64 {
        (self.predicted / self.reference).ln()
    }

    /// `predicted / reference − 1`.
    pub fn relative_error(&self) -> f64 {
        self.predicted / self.reference - 1.0
    }
}

/// The result of a fit.
#[derive(Clone, Debug)]
pub struct Fit {
    /// The base profile with the fitted values.
    pub profile: SocProfile,
    /// Each fitted parameter and its value.
    pub values: Vec<(Parameter, f64)>,
    /// Every observation with the fitted profile's prediction.
    pub residuals: Vec<Residual>,
}

/// The observations' graphs, built once.
fn graphs(observations: &[Observation]) -> Result<Vec<Graph>> {
    observations.iter().map(|o| o.spec.graph()).collect()
}

/// `profile`'s predictions of every observation.
pub fn residuals(profile: &SocProfile, observations: &[Observation]) -> Result<Vec<Residual>> {
    let graphs = graphs(observations)?;
    Ok(residuals_of(profile, observations, &graphs))
}

fn residuals_of(profile: &SocProfile, obs: &[Observation], graphs: &[Graph]) -> Vec<Residual> {
    obs.iter()
        .zip(graphs)
        .map(|(o, g)| Residual {
            spec: o.spec,
            reference: o.cycles,
            predicted: graph_cost(profile, g).accelerator_cycles,
        })
        .collect()
}

/// The objective: the robust loss of a profile with the parameters at `exp(log_values)`.
struct Objective<'a> {
    base: &'a SocProfile,
    parameters: &'a [Parameter],
    observations: &'a [Observation],
    graphs: &'a [Graph],
}

impl Objective<'_> {
    fn profile(&self, log_values: &[f64]) -> SocProfile {
        let mut p = self.base.clone();
        for (&param, &x) in self.parameters.iter().zip(log_values) {
            param.set(&mut p, x.exp());
        }
        p
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, log_values: &Self::Param) -> std::result::Result<f64, ArgminError> {
        let p = self.profile(log_values);
        Ok(residuals_of(&p, self.observations, self.graphs)
            .iter()
            .map(|r| LOSS_SCALE.powi(2) * (r.log_error() / LOSS_SCALE).powi(2).ln_1p())
            .sum())
    }
}

/// Fits `parameters` of `base` to `observations`.
pub fn fit(
    base: &SocProfile,
    parameters: &[Parameter],
    observations: &[Observation],
) -> Result<Fit> {
    if observations.len() < parameters.len() {
        return Err(SimError::Fit(format!(
            "{} observations cannot determine {} parameters",
            observations.len(),
            parameters.len()
        )));
    }
    if let Some(o) = observations
        .iter()
        .find(|o| !(o.cycles.is_finite() && o.cycles > 0.0))
    {
        return Err(SimError::Fit(format!(
            "the estimate of {} is {} cycles; estimates must be positive",
            o.spec, o.cycles
        )));
    }
    let graphs = graphs(observations)?;
    let objective = Objective {
        base,
        parameters,
        observations,
        graphs: &graphs,
    };
    // Several starts: an order-of-magnitude guess of each parameter at ×1/10, ×1/3, ×1 and ×3;
    // the model's max() branches make the loss surface rough enough that one start can stall
    // in a poor basin. None is the base's value: a refit whose base is the previous fit (as
    // ci/fit-profiles.sh does for socModel 52) then reproduces it, digit for digit.
    let guess = |scale: f64| -> Vec<f64> {
        parameters
            .iter()
            .map(|p| (p.first_guess() * scale).ln())
            .collect()
    };
    let starts = [guess(1.0 / 10.0), guess(1.0 / 3.0), guess(1.0), guess(3.0)];
    let mut best = (starts[0].clone(), f64::INFINITY);
    for start in starts {
        let found = descend(&objective, start)?;
        if found.1 < best.1 {
            best = found;
        }
    }
    let best = best.0;
    let profile = objective.profile(&best);
    Ok(Fit {
        values: parameters.iter().map(|&p| (p, p.get(&profile))).collect(),
        residuals: residuals_of(&profile, observations, &graphs),
        profile,
    })
}

/// Nelder-Mead from `start`, restarted from its best point (a fresh simplex) until a restart
/// improves the loss by less than a millionth; returns the point and its loss.
fn descend(objective: &Objective<'_>, start: Vec<f64>) -> Result<(Vec<f64>, f64)> {
    let mut best_cost = objective.cost(&start).unwrap_or(f64::INFINITY);
    let mut best = start;
    for round in 0..12 {
        let step = if round % 2 == 0 { 0.7 } else { 0.2 };
        let simplex = std::iter::once(best.clone())
            .chain((0..best.len()).map(|i| {
                let mut v = best.clone();
                v[i] += step;
                v
            }))
            .collect();
        let solver = NelderMead::new(simplex)
            .with_sd_tolerance(1e-10)
            .map_err(|e| SimError::Fit(e.to_string()))?;
        let run = Executor::new(
            Objective {
                graphs: objective.graphs,
                ..*objective
            },
            solver,
        )
        .configure(|s| s.max_iters(4000))
        .run()
        .map_err(|e| SimError::Fit(e.to_string()))?;
        let state = run.state();
        let cost = state.get_best_cost();
        let Some(point) = state.get_best_param() else {
            break;
        };
        let improved = cost < best_cost * (1.0 - 1e-6);
        if cost < best_cost {
            best = point.clone();
            best_cost = cost;
        }
        if !improved && round > 0 {
            break;
        }
    }
    Ok((best, best_cost))
}

/// A named set of graphs: the families the fit sees, or those held out of it.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilySet {
    /// What the set is and why.
    pub name: &'static str,
    /// Its graphs.
    pub specs: Vec<GraphSpec>,
}

fn grid(family: Family, heads: &[usize], m: &[usize], k: &[usize], n: &[usize]) -> Vec<GraphSpec> {
    Grid {
        dtypes: vec![family.dtype],
        tails: vec![family.tail],
        seconds: vec![family.second],
        transpose_b: vec![family.transpose_b],
        heads: heads.to_vec(),
        m: m.to_vec(),
        k: k.to_vec(),
        n: n.to_vec(),
    }
    .specs()
}

/// NPU-ranked group pilots of `group` heads per group, d 64: `units` fused groups of `m` rows
/// over `n` keys.
fn group_pilots(group: usize, units: &[usize], m: &[usize], n: &[usize]) -> Vec<GraphSpec> {
    let pilot = family(DType::I8, Tail::GroupPilot(group), Second::Dynamic, true);
    grid(pilot, units, m, &[64], n)
}

fn family(dtype: DType, tail: Tail, second: Second, transpose_b: bool) -> Family {
    Family {
        dtype,
        tail,
        second,
        transpose_b,
    }
}

/// How many graphs a grid holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridSize {
    /// The designed grid: every regime of each family.
    Full,
    /// A few graphs per family, for CI.
    Small,
}

impl GridSize {
    /// The values of one axis at this size: `full` for the designed grid, else `small`.
    fn pick(self, full: &'static [usize], small: &'static [usize]) -> &'static [usize] {
        match self {
            GridSize::Full => full,
            GridSize::Small => small,
        }
    }
}

/// The graphs a fit is made on (`Full`: 615 graphs), every regime of each family:
///
/// - f16 and i8 MatMuls with a dynamic second input over M 1 / 8 / 32 / 64 / 128 / 256 / 512
///   (rows laid out unfolded, then folded; one HMX tile of rows to several), K 64 … 4096 and
///   N 64 … 2048 (vector-bound to DMA-bound, and the second input spilling out of VTCM): the
///   tile rates, the DMA rate, the layout conversions and the requantized output;
/// - f16 and i8 MatMuls with a STATIC second input at M 1 / 64 / 256, K 512 / 4096, N 512 /
///   2048: what a constant saves (no conversion, no host I/O);
/// - f16 MatMul + Softmax, M 32 / 64 / 128, K 64 / 128 / 1024, N 256 / 512 / 2048: Softmax's
///   vector cost and the per-node setup;
/// - the INT8 pilot itself (i8, keys as rows) with 1 / 2 / 4 / 8 fused heads, 32 / 128 / 512
///   rows, d 64 / 128, 256 … 4096 keys: the graph shadowAttn launches;
/// - the group pilot with its ranking summed on the NPU, 1 / 2 groups of 2 / 4 heads, 32 / 128
///   rows, d 64, 512 / 2048 keys: the only graphs with broadcast Mul / Add and Dequantize;
/// - NPU-Full INT8 attention with 1 / 2 heads, 128 rows, d 64 / 128, 512 / 2048 keys.
///
/// Every size is a power of two or a multiple of 8 ≥ 16 rows (the folded layout) but for the
/// unfolded rows 1 and 8; the held-out families ([`held_out_families`]) are off this grid.
pub fn fit_families(size: GridSize) -> Vec<FamilySet> {
    use DType::{F16, I8};
    use Second::{Dynamic, Static};
    let pick = |full_values, small| size.pick(full_values, small);
    let (m, k, n) = (
        pick(&[1, 8, 32, 64, 128, 256, 512], &[1, 256]),
        pick(&[64, 128, 256, 512, 1024, 4096], &[64, 4096]),
        pick(&[64, 256, 512, 1024, 2048], &[512]),
    );
    let static_grid = |dtype| {
        grid(
            family(dtype, Tail::None, Static, false),
            &[1],
            pick(&[1, 64, 256], &[64]),
            pick(&[512, 4096], &[512]),
            pick(&[512, 2048], &[512]),
        )
    };
    vec![
        FamilySet {
            name: "f16 MatMul, dynamic second input",
            specs: grid(family(F16, Tail::None, Dynamic, false), &[1], m, k, n),
        },
        FamilySet {
            name: "i8 MatMul, dynamic second input, requantized output",
            specs: grid(family(I8, Tail::None, Dynamic, false), &[1], m, k, n),
        },
        FamilySet {
            name: "f16 MatMul, STATIC second input",
            specs: static_grid(F16),
        },
        FamilySet {
            name: "i8 MatMul, STATIC second input",
            specs: static_grid(I8),
        },
        FamilySet {
            name: "f16 MatMul + Softmax",
            specs: grid(
                family(F16, Tail::Softmax, Dynamic, false),
                &[1],
                pick(&[32, 64, 128], &[64]),
                pick(&[64, 128, 1024], &[1024]),
                pick(&[256, 512, 2048], &[512, 2048]),
            ),
        },
        FamilySet {
            name: "INT8 pilot (i8, keys as rows), fused heads",
            specs: grid(
                family(I8, Tail::None, Dynamic, true),
                pick(&[1, 2, 4, 8], &[1, 4]),
                pick(&[32, 128, 512], &[128]),
                pick(&[64, 128], &[64]),
                pick(&[256, 512, 1024, 2048, 4096], &[512, 2048]),
            ),
        },
        FamilySet {
            name: "group pilot, ranking summed on the NPU (groups of 2 / 4 heads)",
            specs: [2, 4]
                .into_iter()
                .flat_map(|g| {
                    group_pilots(
                        g,
                        pick(&[1, 2], &[2]),
                        pick(&[32, 128], &[32]),
                        pick(&[512, 2048], &[512]),
                    )
                })
                .collect(),
        },
        FamilySet {
            name: "NPU-Full INT8 attention (Q·Kᵀ, Softmax, P·V in one graph)",
            specs: grid(
                family(I8, Tail::Attention, Dynamic, true),
                pick(&[1, 2], &[2]),
                &[128],
                pick(&[64, 128], &[64]),
                pick(&[512, 2048], &[512]),
            ),
        },
    ]
}

/// The graph families held out of every fit: the graphs shadowAttn and its baselines launch
/// (the INT8 pilot, the group pilot with its ranking on the NPU, NPU-Full INT8 attention, the
/// W8A8 and FP16 linear layers of the prefill presets) and MatMuls with and without Softmax,
/// all at sizes off the fit's grid (rows that are not multiples of 8, depths and key counts
/// that are not powers of two, other head counts); and the dtypes the fit never sees (u8, f32).
pub fn held_out_families(size: GridSize) -> Vec<FamilySet> {
    use DType::{F16, F32, I8, U8};
    use Second::{Dynamic, Static};
    let pick = |full_values, small| size.pick(full_values, small);
    let full = size == GridSize::Full;
    let pilot = family(I8, Tail::None, Dynamic, true);
    let mut pilots = grid(
        pilot,
        pick(&[1, 3, 4], &[3]),
        pick(&[48, 200], &[200]),
        pick(&[80, 128], &[80]),
        pick(&[300, 1000, 3000, 8192], &[1000]),
    );
    if full {
        pilots.extend(grid(pilot, &[1, 3], &[500], &[64], &[1000, 3000]));
    }
    // (hidden, output) pairs of the prefill presets' linear layers: Qwen2-0.5B's Q/O and its
    // MLP up, Qwen2-1.5B's Q/O, Qwen1.5-0.5B's MLP up.
    let linear_shapes: &[(usize, usize)] = if full {
        &[(896, 896), (896, 4864), (1536, 1536), (1024, 2816)]
    } else {
        &[(896, 896)]
    };
    let linear = |dtype| -> Vec<GraphSpec> {
        linear_shapes
            .iter()
            .flat_map(|&(k, n)| {
                grid(
                    family(dtype, Tail::None, Static, false),
                    &[1],
                    pick(&[128, 200], &[200]),
                    &[k],
                    &[n],
                )
            })
            .collect()
    };
    let (m, k, n) = (
        pick(&[3, 100, 200], &[100]),
        pick(&[80, 200, 1000], &[200]),
        pick(&[96, 300, 1500], &[300]),
    );
    let (other_m, other_k, other_n) = (
        pick(&[1, 128], &[128]),
        pick(&[128, 1024], &[1024]),
        pick(&[256, 1024], &[256]),
    );
    vec![
        FamilySet {
            name: "INT8 pilot, off the grid (1 / 3 / 4 heads, odd rows, d 64 / 80 / 128)",
            specs: pilots,
        },
        FamilySet {
            name: "group pilot, ranking summed on the NPU (2 groups of 6 / 7 heads)",
            specs: group_pilots(6, &[2], pick(&[32, 100], &[32]), pick(&[512, 1000], &[512]))
                .into_iter()
                .chain(group_pilots(7, &[2], &[64], pick(&[1024, 2000], &[1024])))
                .collect(),
        },
        FamilySet {
            name: "NPU-Full INT8 attention, off the grid",
            specs: grid(
                family(I8, Tail::Attention, Dynamic, true),
                pick(&[1, 3], &[3]),
                pick(&[96, 200], &[200]),
                pick(&[64, 80], &[80]),
                pick(&[700, 1500], &[700]),
            ),
        },
        FamilySet {
            name: "W8A8 linear layers of the prefill presets (i8, STATIC weights)",
            specs: linear(I8),
        },
        FamilySet {
            name: "FP16 linear layers of the prefill presets (f16, STATIC weights)",
            specs: linear(F16),
        },
        FamilySet {
            name: "f16 MatMul, dynamic, off the grid",
            specs: grid(family(F16, Tail::None, Dynamic, false), &[1], m, k, n),
        },
        FamilySet {
            name: "i8 MatMul, dynamic, off the grid",
            specs: grid(family(I8, Tail::None, Dynamic, false), &[1], m, k, n),
        },
        FamilySet {
            name: "f16 MatMul + Softmax, off the grid",
            specs: grid(
                family(F16, Tail::Softmax, Dynamic, false),
                &[1],
                pick(&[48, 100], &[100]),
                pick(&[80, 200], &[200]),
                pick(&[300, 1500], &[300]),
            ),
        },
        FamilySet {
            name: "u8 MatMul (asymmetric), dynamic",
            specs: grid(
                family(U8, Tail::None, Dynamic, false),
                &[1],
                other_m,
                other_k,
                other_n,
            ),
        },
        FamilySet {
            name: "u8 MatMul (asymmetric), STATIC",
            specs: grid(
                family(U8, Tail::None, Static, false),
                &[1],
                other_m,
                other_k,
                other_n,
            ),
        },
        FamilySet {
            name: "f32 MatMul (computed in f16), dynamic",
            specs: grid(
                family(F32, Tail::None, Dynamic, false),
                &[1],
                other_m,
                other_k,
                other_n,
            ),
        },
        FamilySet {
            name: "f32 MatMul (computed in f16), STATIC",
            specs: grid(
                family(F32, Tail::None, Static, false),
                &[1],
                other_m,
                other_k,
                other_n,
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SocProfile {
        SocProfile::builtin("sa8255").unwrap()
    }

    #[test]
    fn a_fit_recovers_parameters_that_generated_its_observations() {
        // Observations made by a known profile: the fit must find a profile predicting them.
        let mut truth = base();
        Parameter::FixedCycles.set(&mut truth, 3000.0);
        Parameter::InputCyclesPerElement.set(&mut truth, 0.08);
        Parameter::Int8CyclesPerTile.set(&mut truth, 9.0);
        let specs: Vec<GraphSpec> = fit_families(GridSize::Small)
            .into_iter()
            .flat_map(|f| f.specs)
            .collect();
        let observations: Vec<Observation> = residuals(
            &truth,
            &specs
                .iter()
                .map(|&spec| Observation { spec, cycles: 1.0 })
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .into_iter()
        .map(|r| Observation {
            spec: r.spec,
            cycles: r.predicted,
        })
        .collect();
        let params = [
            Parameter::FixedCycles,
            Parameter::InputCyclesPerElement,
            Parameter::Int8CyclesPerTile,
        ];
        let before = residuals(&base(), &observations).unwrap();
        let worst_before = before
            .iter()
            .map(|r| r.log_error().abs())
            .fold(0.0, f64::max);
        assert!(
            worst_before > 0.05,
            "the base must start off: {worst_before}"
        );
        let f = fit(&base(), &params, &observations).unwrap();
        let worst = f
            .residuals
            .iter()
            .map(|r| r.log_error().abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-3, "worst log error after the fit: {worst}");
        assert!(
            (f.values[0].1 - 3000.0).abs() / 3000.0 < 0.01,
            "{:?}",
            f.values
        );
        assert_eq!(Parameter::FixedCycles.get(&f.profile), f.values[0].1);
    }

    #[test]
    fn bad_observations_are_errors() {
        let spec = GraphSpec::pilot(1, 128, 512, 64);
        let few = [Observation { spec, cycles: 1e4 }];
        assert!(matches!(
            fit(&base(), &FREE_PARAMETERS, &few),
            Err(SimError::Fit(_))
        ));
        let zero = vec![Observation { spec, cycles: 0.0 }; FREE_PARAMETERS.len()];
        let e = fit(&base(), &FREE_PARAMETERS, &zero).unwrap_err();
        assert!(e.to_string().contains("must be positive"), "{e}");
    }

    #[test]
    fn the_held_out_families_share_no_graph_with_the_fit() {
        for size in [GridSize::Full, GridSize::Small] {
            let fitted: Vec<GraphSpec> = fit_families(size)
                .into_iter()
                .flat_map(|f| f.specs)
                .collect();
            for set in held_out_families(size) {
                assert!(!set.specs.is_empty(), "{}", set.name);
                for s in &set.specs {
                    assert!(!fitted.contains(s), "{s} is in the fit and held out");
                    s.graph().unwrap();
                }
            }
        }
    }
}
