//! The shadowattn hardware abstraction layer: the contract every backend and the sparse-attention
//! core share.
//!
//! - [`dtype`], [`quant`], [`tensor`]: element types, quantization, host tensors.
//! - [`ir`]: the static graph IR and its validating builder.
//! - [`npu`]: the NPU graph backend trait (compile once, execute many times).
//! - [`compute`]: the compute-kernel trait for CPU/GPU (top-k, sparse and dense attention).
//! - [`group`]: the key set a GQA group's heads share, ranked exactly.
//! - [`event`]: profiling events (timed work; a SoC profile is the simulator's).
//! - [`cache_file`]: sealed cache files (digest checked before any parser) written atomically.
//! - [`error`]: the crate's one error type.
//!
//! ```
//! use shadowattn_hal::{DType, GraphBuilder, OutType, Quantization, TensorDesc};
//!
//! // The INT8 pilot of one head: scores = Q·Kᵀ, exact INT32 accumulators.
//! let i8_desc = |rows: usize, scale: f32| {
//!     TensorDesc::new(DType::I8, [1, 1, rows, 64]).with_quant(Quantization::per_tensor(scale, 0))
//! };
//! let mut b = GraphBuilder::new("pilot");
//! let q = b.input("q", i8_desc(128, 0.02))?;
//! let k = b.input("k", i8_desc(2048, 0.05))?;
//! let scores = b.matmul("scores", q, k, false, true, OutType::plain(DType::I32))?;
//! b.output(scores)?;
//! let graph = b.build()?;
//! assert_eq!(graph.value(scores).desc.shape, vec![1, 1, 128, 2048]);
//!
//! // Mismatched shapes are an error that names the node.
//! let mut b = GraphBuilder::new("bad");
//! let q = b.input("q", i8_desc(128, 0.02))?;
//! let k = b.input("k", TensorDesc::new(DType::I8, [1, 1, 2048, 32]).with_quant(Quantization::per_tensor(0.05, 0)))?;
//! let err = b.matmul("scores", q, k, false, true, OutType::plain(DType::I32)).unwrap_err();
//! assert!(err.to_string().contains("node `scores`"));
//! # Ok::<(), shadowattn_hal::HalError>(())
//! ```

pub mod cache_file;
pub mod compute;
pub mod dtype;
pub mod error;
pub mod event;
pub mod ir;
pub mod library;
pub mod npu;
pub mod quant;
pub mod tensor;

pub use cache_file::CacheFileError;
pub use compute::{group, GroupScores};
pub use compute::{
    Anchors, AttentionInputs, AttentionShape, BudgetRule, ChunkBudget, ComputeBackend,
    ComputeCapabilities, HeadsView, KeyBudget, QuantizedHeads, RankedRows, RowSplit, ScoreData,
    ScoreMatrix, Selection,
};
pub use dtype::{DType, Element};
pub use error::{HalError, Result};
pub use event::{track, EventKind, FigureSource, ProfileEvent};
pub use half::f16;
pub use ir::{Constant, Graph, GraphBuilder, Node, Op, OpKind, OutType, Value, ValueId};
pub use npu::{
    check_io, Capabilities, Compiled, CompiledGraph, GraphExecutable, NpuBackend, Signature,
};
pub use quant::{QuantParams, Quantization};
pub use tensor::{HostTensor, TensorDesc, TensorView, TensorViewMut};

/// Declares an integer newtype with named constants, for C enums across FFI (an unknown value
/// from a vendor library stays representable, unlike a Rust `enum`).
#[macro_export]
macro_rules! int_newtype {
    ($(#[$m:meta])* $name:ident($t:ty) { $($(#[$cm:meta])* $c:ident = $v:expr),* $(,)? }) => {
        $(#[$m])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub $t);
        impl $name {
            $($(#[$cm])* pub const $c: $name = $name($v);)*
        }
    };
}
