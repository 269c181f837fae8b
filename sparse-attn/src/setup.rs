//! The one place a shadowAttn core is assembled: from an NPU backend (and the model of its
//! device, when it has one), a calibration, the largest chunk and the options, it builds or
//! loads the graph bank, chooses the planner's prices by one rule and makes the
//! [`ShadowAttention`] that runs chunks.
//!
//! The pricing rule: a device model (a simulated SoC) prices the layer from the bank's pilot
//! graphs; without one, the prices are the [`TablePricing`] asked for (measured on this machine,
//! or uniform).

use crate::bank::{BankSpec, GraphBank};
use crate::calibration::{BucketGrid, Calibration};
use crate::cost_table::CostTable;
use crate::error::{Result, SparseAttnError};
use crate::pilot::{GroupRanking, PilotOutput, PilotUnit};
use crate::select::Granularity;
use crate::shadow::{ComputeRef, ShadowAttention, ShadowConfig};
use shadowattn_hal::cache_file::write_atomic;
use shadowattn_hal::{AttentionInputs, HalError, NpuBackend};
use shadowattn_pipeline::{CostModel, DeviceModel, LayerPrices, Placement, SelectionSharing};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use shadowattn_pipeline::FUSED_HEADS;

/// The prices used when the NPU backend has no device model.
#[derive(Clone, Copy, Debug)]
pub enum TablePricing<'s> {
    /// One unit per launch and step ([`CostTable::uniform`]): the planner orders by work alone.
    Uniform,
    /// Measured on this machine ([`CostTable::measure`]): the median of `runs` runs of the
    /// bank's graphs and the compute backend's kernels on `sample`, at the mean ratio of
    /// `layer`.
    Measured {
        /// The chunk the kernels run on.
        sample: AttentionInputs<'s>,
        /// The calibration layer whose mean ratio the sparse kernels keep.
        layer: usize,
        /// Runs per figure.
        runs: usize,
    },
}

/// Where a core's prices came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PricingSource {
    /// The device model of the NPU backend, on the named core cluster.
    Device {
        /// What the device model is (its description).
        device: String,
        /// The core cluster.
        cluster: String,
    },
    /// Measured here, the median of `runs` runs.
    Measured {
        /// Runs per figure.
        runs: usize,
    },
    /// One unit per launch and step.
    Uniform,
}

impl fmt::Display for PricingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PricingSource::Device { device, cluster } => {
                write!(f, "device model of {device}, on `{cluster}` cores")
            }
            PricingSource::Measured { runs } => write!(f, "measured here, median of {runs} runs"),
            PricingSource::Uniform => f.write_str("uniform: one unit per launch and step"),
        }
    }
}

/// `device`'s prices of a bank's pilot launches (`spec` over `grid`) and of the CPU steps on
/// `placement`'s cores, selections shared as `sharing` and spreading each unit's budget by
/// `split`: the one rule by which a device model prices a core.
pub fn device_prices(
    device: &dyn DeviceModel,
    placement: &Placement,
    (spec, grid): (&BankSpec, &BucketGrid),
    sharing: SelectionSharing,
    split: shadowattn_hal::RowSplit,
) -> Result<Arc<dyn LayerPrices>> {
    let pilots = spec
        .fused
        .iter()
        .map(|&f| Ok((f, spec.pilot(grid, 0, f).graph()?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::from(device.layer_prices(
        placement,
        &pilots,
        (spec.kv_len, spec.head_dim),
        sharing,
        split,
    )?))
}

/// How a layer of `q_heads` query and `kv_heads` KV heads shares its selections with pilot
/// units `unit` under `granularity`: the one rule a device model prices the CPU steps by.
pub fn selection_sharing(
    unit: PilotUnit,
    granularity: Granularity,
    q_heads: usize,
    kv_heads: usize,
) -> SelectionSharing {
    if unit.npu_ranking().is_some() {
        return SelectionSharing::PerGroupRanked;
    }
    match granularity {
        Granularity::Group => SelectionSharing::of_groups(q_heads, kv_heads),
        Granularity::Row | Granularity::Block(_) => SelectionSharing::PerHead,
    }
}

/// What to do when the NPU backend cannot compile the bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingBank {
    /// Fail with the backend's error.
    Fail,
    /// Make the core anyway: every chunk runs dense attention and says why.
    RunDense,
}

/// How the graph bank came to be.
#[derive(Clone, Debug, PartialEq)]
pub enum BankOrigin {
    /// Compiled here, taking `ms` milliseconds of this machine's time.
    Compiled {
        /// Wall time of the compilation, ms.
        ms: f64,
    },
    /// Compiled here because the cache file could not be used (truncated, damaged, written for
    /// another backend or another bank, unreadable); the file was written again.
    Recompiled {
        /// Wall time of the compilation, ms.
        ms: f64,
        /// The cache file.
        path: PathBuf,
        /// Why it was not used.
        reason: SparseAttnError,
    },
    /// Loaded from the cache file.
    Loaded,
    /// Not built: the backend could not compile it (the core runs dense).
    Missing,
}

impl BankOrigin {
    /// What to warn the user about, if anything: a refused cache file, by path and reason.
    pub fn warning(&self) -> Option<String> {
        match self {
            BankOrigin::Recompiled { path, reason, .. } => Some(format!(
                "graph bank cache {} not used ({reason}); compiled again",
                path.display()
            )),
            _ => None,
        }
    }
}

/// Which pilot a core runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PilotKind {
    /// The group pilot with the NPU-reduced ranking where the backend supports its graph and
    /// the layer has GQA groups that share their selection; else the group pilot ranked on the
    /// CPU for such layers; else the per-head pilot.
    Auto,
    /// One unit per query head, each head carrying its group's K.
    Head,
    /// One unit per GQA group (K sent once); the CPU sums the heads' probabilities.
    GroupCpuRanked,
    /// One unit per GQA group (K sent once); the NPU sums the heads' probabilities at the
    /// model's attention scale `1/√head_dim` and sends one f16 ranking per group.
    GroupNpuRanked,
}

/// The graph bank alone: the pilot graphs of a bucket grid on an NPU backend, with an optional
/// cache file. [`CoreSetup`] builds its bank through this; so does anything that only needs
/// the bank (a soak test).
#[derive(Clone, Debug)]
pub struct BankSetup<'n> {
    npu: &'n dyn NpuBackend,
    grid: BucketGrid,
    spec: BankSpec,
    cache: Option<PathBuf>,
}

impl<'n> BankSetup<'n> {
    /// The bank of `grid` for chunks of up to `q_len` rows and `kv_len` keys of `head_dim`,
    /// fused counts [`FUSED_HEADS`], the INT8 pilot of `output`.
    pub fn new(
        npu: &'n dyn NpuBackend,
        grid: BucketGrid,
        q_len: usize,
        kv_len: usize,
        head_dim: usize,
        output: PilotOutput,
    ) -> Self {
        BankSetup {
            npu,
            grid,
            spec: BankSpec {
                q_len,
                kv_len,
                head_dim,
                fused: FUSED_HEADS.to_vec(),
                output,
                unit: PilotUnit::Head,
            },
            cache: None,
        }
    }

    /// Launch units of `unit` (default: one query head).
    pub fn unit(mut self, unit: PilotUnit) -> Self {
        self.spec.unit = unit;
        self
    }

    /// Only these fused-unit counts (they must include 1).
    pub fn fused(mut self, fused: &[usize]) -> Self {
        self.spec.fused = fused.to_vec();
        self
    }

    /// Loads the bank from `path` when it holds this bank; else compiles it and writes it
    /// there (backends that cannot serialize compile every time).
    pub fn cache(mut self, path: Option<PathBuf>) -> Self {
        self.cache = path;
        self
    }

    /// What the bank is compiled for.
    pub fn spec(&self) -> &BankSpec {
        &self.spec
    }

    /// Compiles the bank (or loads it from the cache).
    pub fn build(&self) -> Result<(GraphBank, BankOrigin)> {
        let refused = match &self.cache {
            Some(path) => match self.load(path) {
                Ok(Some(bank)) => return Ok((bank, BankOrigin::Loaded)),
                Ok(None) => None,
                Err(reason) => Some((path.clone(), reason)),
            },
            None => None,
        };
        let started = Instant::now();
        let bank = GraphBank::build(self.npu, &self.grid, self.spec.clone())?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if let Some(path) = &self.cache {
            write_cache(&bank, path)?;
        }
        let origin = match refused {
            Some((path, reason)) => BankOrigin::Recompiled { ms, path, reason },
            None => BankOrigin::Compiled { ms },
        };
        Ok((bank, origin))
    }

    /// The bank in `path`; none when there is no such file, else why the file cannot be used.
    fn load(&self, path: &Path) -> Result<Option<GraphBank>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SparseAttnError::Io {
                    action: "read the bank cache",
                    path: path.display().to_string(),
                    detail: e.to_string(),
                })
            }
        };
        GraphBank::load(self.npu, &self.grid, self.spec.clone(), &bytes).map(Some)
    }
}

/// Writes `bank` to `path` atomically, owner-only; a backend that cannot serialize writes
/// nothing.
fn write_cache(bank: &GraphBank, path: &Path) -> Result<()> {
    let bytes = match bank.serialize() {
        Ok(bytes) => bytes,
        Err(SparseAttnError::Hal(HalError::NotProvided { .. })) => return Ok(()),
        Err(e) => return Err(e),
    };
    write_atomic(path, &bytes).map_err(|e| SparseAttnError::Io {
        action: "write the bank cache",
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

/// The planner's prices and where they came from.
struct Prices {
    /// The device's prices of the layer, when a device model priced it.
    layer: Option<Arc<dyn LayerPrices>>,
    /// Where they came from.
    source: PricingSource,
    /// What the planner prices with.
    model: Box<dyn CostModel>,
}

/// Everything a shadowAttn core is made of, set with builder calls; [`CoreSetup::build`]
/// assembles it.
#[derive(Clone, Debug)]
pub struct CoreSetup<'s> {
    bank: BankSetup<'s>,
    calibration: Calibration,
    device: Option<&'s dyn DeviceModel>,
    placement: Placement,
    table: TablePricing<'s>,
    config: ShadowConfig,
    missing_bank: MissingBank,
}

/// An assembled core with how it was made.
#[derive(Debug)]
pub struct Core<'c> {
    /// The core.
    pub shadow: ShadowAttention<'c>,
    /// How the bank came to be.
    pub bank: BankOrigin,
    /// Where the planner's prices came from.
    pub pricing: PricingSource,
    /// The device's prices of the layer, when a device model priced it.
    pub prices: Option<Arc<dyn LayerPrices>>,
}

impl<'s> CoreSetup<'s> {
    /// A core of `calibration` on `npu` for chunks of up to `q_len` rows and `kv_len` keys:
    /// the INT8-output pilot of the calibration's accumulator range (INT32 when it has none),
    /// default [`ShadowConfig`], uniform prices, failing when the bank cannot be compiled.
    pub fn new(
        npu: &'s dyn NpuBackend,
        calibration: Calibration,
        q_len: usize,
        kv_len: usize,
    ) -> Self {
        let output = PilotOutput::int8_of(&calibration).unwrap_or(PilotOutput::Int32);
        CoreSetup {
            bank: BankSetup::new(
                npu,
                calibration.grid.clone(),
                q_len,
                kv_len,
                calibration.model.head_dim,
                output,
            ),
            calibration,
            device: None,
            placement: Placement::default(),
            table: TablePricing::Uniform,
            config: ShadowConfig::default(),
            missing_bank: MissingBank::Fail,
        }
    }

    /// The pilot's output form.
    pub fn pilot_output(mut self, output: PilotOutput) -> Self {
        self.bank.spec.output = output;
        self
    }

    /// Which pilot runs: per query head (the default), or per GQA group with its ranking
    /// reduced where `kind` says. A group pilot needs the group granularity.
    pub fn pilot(mut self, kind: PilotKind) -> Self {
        let m = &self.calibration.model;
        let heads = m.q_heads / m.kv_heads.max(1);
        self.bank.spec.unit = match kind {
            PilotKind::Auto => self.auto_unit(heads, m.head_dim),
            PilotKind::Head => PilotUnit::Head,
            PilotKind::GroupCpuRanked => PilotUnit::Group {
                heads,
                ranking: GroupRanking::Cpu,
            },
            PilotKind::GroupNpuRanked => PilotUnit::Group {
                heads,
                ranking: GroupRanking::Npu {
                    attention_scale: 1.0 / (m.head_dim as f32).sqrt(),
                },
            },
        };
        self
    }

    /// The unit [`PilotKind::Auto`] picks for groups of `heads` query heads (under the
    /// configured granularity: set the config before the pilot).
    fn auto_unit(&self, heads: usize, head_dim: usize) -> PilotUnit {
        if heads < 2 || self.config.granularity != Granularity::Group {
            return PilotUnit::Head;
        }
        let ranked = PilotUnit::Group {
            heads,
            ranking: GroupRanking::Npu {
                attention_scale: 1.0 / (head_dim as f32).sqrt(),
            },
        };
        let grid = &self.bank.grid;
        let supported = (0..grid.len()).all(|bucket| {
            let spec = BankSpec {
                unit: ranked,
                ..self.bank.spec.clone()
            };
            spec.pilot(grid, bucket, 1)
                .graph()
                .is_ok_and(|g| self.bank.npu.check_support(&g).is_ok())
        });
        if supported {
            ranked
        } else {
            PilotUnit::Group {
                heads,
                ranking: GroupRanking::Cpu,
            }
        }
    }

    /// The online settings.
    pub fn config(mut self, config: ShadowConfig) -> Self {
        self.config = config;
        self
    }

    /// The bank's cache file (see [`BankSetup::cache`]).
    pub fn cache(mut self, path: Option<PathBuf>) -> Self {
        self.bank = self.bank.cache(path);
        self
    }

    /// The model of the NPU's device, which then prices the layer on `placement`'s cores.
    pub fn device(mut self, device: Option<&'s dyn DeviceModel>, placement: Placement) -> Self {
        self.device = device;
        self.placement = placement;
        self
    }

    /// The prices when there is no device model.
    pub fn table(mut self, table: TablePricing<'s>) -> Self {
        self.table = table;
        self
    }

    /// What to do when the NPU cannot compile the bank.
    pub fn missing_bank(mut self, missing: MissingBank) -> Self {
        self.missing_bank = missing;
        self
    }

    /// What the bank is compiled for.
    pub fn bank_spec(&self) -> &BankSpec {
        self.bank.spec()
    }

    /// The calibration.
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Builds (or loads) the bank, prices the layer and makes the core on `compute`.
    pub fn build<'c>(self, compute: impl Into<ComputeRef<'c>>) -> Result<Core<'c>> {
        let compute = compute.into();
        self.calibration.validate()?;
        self.config.validate()?;
        let (mut bank, origin) = match self.bank.build() {
            Ok(built) => built,
            // A cache that cannot be written is the caller's to fix, whatever the policy.
            Err(e @ SparseAttnError::Io { .. }) => return Err(e),
            Err(e) if self.missing_bank == MissingBank::Fail => return Err(e),
            Err(e) => return self.without_bank(e, compute),
        };
        let prices = self.prices(Some(&mut bank), &compute)?;
        let shadow =
            ShadowAttention::new(bank, self.calibration, compute, prices.model, self.config)?;
        Ok(Core {
            shadow,
            bank: origin,
            pricing: prices.source,
            prices: prices.layer,
        })
    }

    /// The core that runs every chunk dense because the bank failed to compile with `error`.
    fn without_bank<'c>(self, error: SparseAttnError, compute: ComputeRef<'c>) -> Result<Core<'c>> {
        let reason = format!(
            "{} could not compile the graph bank: {error}",
            self.bank.npu.name()
        );
        let prices = self.prices(None, &compute)?;
        let shadow = ShadowAttention::without_bank(
            reason,
            self.calibration,
            compute,
            prices.model,
            self.config,
        )?;
        Ok(Core {
            shadow,
            bank: BankOrigin::Missing,
            pricing: prices.source,
            prices: prices.layer,
        })
    }

    /// The planner's prices by the one rule: the device model's when there is one, else the
    /// table asked for (uniform when there is no bank to measure).
    fn prices(&self, bank: Option<&mut GraphBank>, compute: &ComputeRef<'_>) -> Result<Prices> {
        if let Some(device) = self.device {
            let prices = device_prices(
                device,
                &self.placement,
                (self.bank.spec(), &self.bank.grid),
                self.sharing(),
                self.calibration.budget.split,
            )?;
            let source = PricingSource::Device {
                device: device.describe(),
                cluster: device.cluster(&self.placement)?,
            };
            return Ok(Prices {
                layer: Some(prices.clone()),
                source,
                model: Box::new(prices),
            });
        }
        match (self.table, bank) {
            (
                TablePricing::Measured {
                    sample,
                    layer,
                    runs,
                },
                Some(bank),
            ) => {
                let ratios = self.calibration.layer_ratios(layer)?;
                let mean_ratio = ratios.iter().sum::<f32>() / ratios.len() as f32;
                let table = CostTable::measure(
                    bank,
                    &**compute,
                    sample,
                    mean_ratio,
                    runs,
                    self.config.granularity,
                    self.calibration.budget,
                )?;
                Ok(Prices {
                    layer: None,
                    source: PricingSource::Measured { runs },
                    model: Box::new(table),
                })
            }
            _ => Ok(Prices {
                layer: None,
                source: PricingSource::Uniform,
                model: Box::new(CostTable::uniform(&self.bank.spec().fused)),
            }),
        }
    }

    /// How the layer's selections are shared under the configured granularity.
    fn sharing(&self) -> SelectionSharing {
        let m = &self.calibration.model;
        selection_sharing(
            self.bank.spec.unit,
            self.config.granularity,
            m.q_heads,
            m.kv_heads,
        )
    }
}
