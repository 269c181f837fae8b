//! The real-model harness: a GGUF reader and writer ([`gguf`]), the tokenizer stored in the file
//! (byte-level BPE or SentencePiece, [`tokenizer`]), the forward pass of Llama, Qwen2 and Phi-3
//! models with pluggable attention ([`model`]), attention implementations — dense, exact top-k,
//! shadowAttn's INT8 pilot, ablation — ([`attention`]) and perplexity, ablation importance and
//! calibration samples ([`eval`]), and the linear layers as static NPU graphs on any backend
//! ([`npu_linear`]).

pub mod attention;
pub mod error;
pub mod eval;
mod gemm;
pub mod gguf;
pub mod model;
pub mod npu_linear;
pub mod tokenizer;

pub use error::{ModelError, Result};
pub use gguf::Gguf;
pub use gguf::GgufWriter;
pub use model::{Architecture, Attention, LinearGroup, Linears, Model, ModelConfig};
pub use tokenizer::Tokenizer;
