//! The real-model harness: a GGUF reader ([`gguf`]), the tokenizer stored in the file (byte-level
//! BPE or SentencePiece, [`tokenizer`]), the Llama forward pass with pluggable attention
//! ([`llama`]), attention implementations — dense, exact top-k, shadowAttn's INT8 pilot,
//! ablation — ([`attention`]) and perplexity, ablation importance and calibration samples
//! ([`eval`]), and the linear layers as static NPU graphs on any backend ([`npu_linear`]).

pub mod attention;
pub mod error;
pub mod eval;
mod gemm;
pub mod gguf;
pub mod llama;
pub mod npu_linear;
pub mod tokenizer;

pub use error::{ModelError, Result};
pub use gguf::Gguf;
pub use llama::{Attention, LinearGroup, Linears, Llama, LlamaConfig};
pub use tokenizer::Tokenizer;
