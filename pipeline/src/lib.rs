//! The layer pipeline of shadowAttn as one schedule model, shared by the planner of the core, the
//! simulator's layer timing and the command-line tool.
//!
//! A layer's work is a set of **units** (query heads today) grouped into **launches**: one NPU
//! graph launch computes the pilot scores of every unit in it. After its launch, each unit goes
//! through the CPU **stages** of a [`Pipeline`], each stage one job made of **steps** (top-k,
//! sparse attention) on a **pool** of CPU workers. The pipeline is data: the executor's own
//! ([`Pipeline::executor`]: top-k and sparse attention in one job on N workers), the paper's
//! ([`Pipeline::paper`]: top-k and sparse attention on two resources), or any other.
//!
//! Dispatch is in order, as the executor's queues are: the NPU runs launches in the plan's
//! launch order, back to back; every pool takes its jobs in the plan's unit order, each on the
//! worker that frees first, never before the job ahead of it started. [`simulate`] turns a plan
//! into a timeline of events; [`plan()`] searches for a good plan (the paper's two-level greedy
//! search, Algorithm 1, kept only when it beats FIFO).
//!
//! ```
//! use shadowattn_pipeline::{fifo, simulate, LayerCosts, Launch, Pipeline, StepCosts};
//!
//! // Two launches of two heads each; every head costs 1 ms of top-k and 3 ms of attention.
//! let launches = vec![Launch::new(0, vec![0, 1]), Launch::new(1, vec![2, 3])];
//! let costs = LayerCosts {
//!     launches: vec![2e6, 2e6],
//!     units: vec![StepCosts { topk_ns: 1e6, attention_ns: 3e6 }; 4],
//! };
//! let pipeline = Pipeline::executor(2)?;
//! let order = fifo(&pipeline, &launches, &costs)?;
//! let timeline = simulate(&pipeline, &launches, &costs, &order)?;
//! // Heads 0 and 1 start at 2 ms on two cores, heads 2 and 3 at 6 ms: done at 10 ms.
//! assert_eq!(timeline.makespan_ns, 10_000_000);
//! # Ok::<(), shadowattn_pipeline::PipelineError>(())
//! ```

mod device;
mod error;
mod planner;
mod pricing;
mod schedule;
mod stages;

pub use device::{
    DeviceModel, LayerPrices, NpuStrategies, NpuStrategyPrice, Placement, SelectionSharing,
};
pub use error::{PipelineError, Result};
pub use planner::{fifo, greedy, plan};
pub use pricing::{CostModel, LayerCosts, StepCosts, UnitWork};
pub use schedule::{simulate, Timeline};
pub use stages::{Launch, Pipeline, Plan, Pool, Stage, Step, Strategy, UnitKind, FUSED_HEADS};
