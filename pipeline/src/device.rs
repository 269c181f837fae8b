//! What a model of the device behind an NPU backend answers (a simulated SoC): the prices of a
//! layer's launches and CPU steps on chosen cores, and the NPU-only attention strategies a user
//! could run instead. Callers ask these questions without knowing how the model is made.

use crate::error::Result;
use crate::pricing::CostModel;
use shadowattn_hal::ir::Graph;
use shadowattn_hal::AttentionShape;

/// Who shares a key set per query row, which picks the top-k cost and the sparse kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionSharing {
    /// A key set per head and row.
    PerHead,
    /// A key set per GQA group and row.
    PerGroup,
    /// A key set per GQA group and row, from a ranking the NPU already reduced over the group's
    /// heads: top-k of one score per key, no exponentials on the CPU.
    PerGroupRanked,
}

impl SelectionSharing {
    /// The sharing of a layer of `q_heads` query and `kv_heads` KV heads when its groups share
    /// their selections: a group of one query head is a key set per head.
    pub fn of_groups(q_heads: usize, kv_heads: usize) -> Self {
        if q_heads > kv_heads {
            SelectionSharing::PerGroup
        } else {
            SelectionSharing::PerHead
        }
    }
}

/// Which CPU cores of the device run top-k and sparse attention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The core cluster by name (`mid`, `prime`); `None` is the mid cluster, or the first one
    /// when the device names none `mid`.
    pub cluster: Option<String>,
    /// How many of its cores.
    pub cores: usize,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            cluster: None,
            cores: 1,
        }
    }
}

/// A device's prices of one layer's pipeline: a [`CostModel`] that also prices dense attention.
pub trait LayerPrices: CostModel {
    /// Dense attention of one head over `pairs` (row, key) pairs on one core, ns.
    fn dense_ns(&self, pairs: u64) -> f64;
}

/// One attention strategy that runs wholly on the NPU, priced as one warm launch.
#[derive(Clone, Debug, PartialEq)]
pub struct NpuStrategyPrice {
    /// Fixed cost of a warm launch, ns.
    pub launch_warm_ns: f64,
    /// Moving inputs and outputs between host and NPU memory, ns.
    pub host_io_ns: f64,
    /// Time on the accelerator, ns.
    pub accelerator_ns: f64,
    /// The flash-attention blocking (query rows, key columns), where the strategy tiles.
    pub blocks: Option<(usize, usize)>,
}

impl NpuStrategyPrice {
    /// The whole launch, ns.
    pub fn total_ns(&self) -> f64 {
        self.launch_warm_ns + self.host_io_ns + self.accelerator_ns
    }
}

/// The NPU-only strategies of one attention chunk, priced on the device.
#[derive(Clone, Debug, PartialEq)]
pub struct NpuStrategies {
    /// NPU-Full INT8 (the paper's baseline): one static graph of all heads.
    pub full_int8: NpuStrategyPrice,
    /// FP16 flash attention on the matrix unit, exponentials on the vector units.
    pub fp16_flash: NpuStrategyPrice,
}

/// A model of the device behind an NPU backend.
pub trait DeviceModel: std::fmt::Debug + Send + Sync {
    /// The device's name.
    fn name(&self) -> &str;

    /// One line on what models it (for listings).
    fn describe(&self) -> String;

    /// The name of the cluster `placement` picks, after checking it exists and has that many
    /// cores.
    fn cluster(&self, placement: &Placement) -> Result<String>;

    /// The prices of chunks of `chunk = (kv_len, head_dim)` on `placement`'s cores, selections
    /// shared as `sharing` and spreading each unit's budget by `split`; `pilots` are the pilot
    /// graphs by fused-head count.
    fn layer_prices(
        &self,
        placement: &Placement,
        pilots: &[(usize, Graph)],
        chunk: (usize, usize),
        sharing: SelectionSharing,
        split: shadowattn_hal::RowSplit,
    ) -> Result<Box<dyn LayerPrices>>;

    /// The NPU-only strategies of a chunk of `shape`.
    fn npu_strategies(&self, shape: &AttentionShape) -> Result<NpuStrategies>;

    /// The same device with the numbers nobody measured on it at each end of their plausible
    /// range, named (`fast`, `slow`); empty when every number is measured.
    fn ends(&self) -> Vec<(&'static str, Box<dyn DeviceModel>)> {
        Vec::new()
    }
}
