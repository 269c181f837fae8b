//! A wrapper NPU that counts what reaches its backend's compiler and parser, for the tests that
//! hold a cache file back from `deserialize`. Feature `fake-npu`.

use shadowattn_hal::{Capabilities, CompiledGraph, Graph, HalError, NpuBackend};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An NPU backend that forwards every call to `inner`, counting compiles and deserializations;
/// optionally under another name (to write a cache file "of another backend").
#[derive(Debug)]
pub struct CountingNpu<B> {
    inner: B,
    name: Option<String>,
    compiles: AtomicUsize,
    deserializes: AtomicUsize,
}

impl<B: NpuBackend> CountingNpu<B> {
    /// Counts the calls that reach `inner`.
    pub fn new(inner: B) -> Self {
        CountingNpu {
            inner,
            name: None,
            compiles: AtomicUsize::new(0),
            deserializes: AtomicUsize::new(0),
        }
    }

    /// Counts the calls that reach `inner`, which it calls `name`.
    pub fn named(inner: B, name: &str) -> Self {
        CountingNpu {
            name: Some(name.to_string()),
            ..CountingNpu::new(inner)
        }
    }

    /// Calls of [`NpuBackend::compile`] so far.
    pub fn compiles(&self) -> usize {
        self.compiles.load(Ordering::SeqCst)
    }

    /// Calls of [`NpuBackend::deserialize`] so far: every time bytes reached the parser.
    pub fn deserializes(&self) -> usize {
        self.deserializes.load(Ordering::SeqCst)
    }
}

impl<B: NpuBackend> NpuBackend for CountingNpu<B> {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_else(|| self.inner.name())
    }

    fn version(&self) -> String {
        self.inner.version()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn CompiledGraph>, HalError> {
        self.compiles.fetch_add(1, Ordering::SeqCst);
        self.inner.compile(graph)
    }

    fn check_support(&self, graph: &Graph) -> Result<(), HalError> {
        self.inner.check_support(graph)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Box<dyn CompiledGraph>, HalError> {
        self.deserializes.fetch_add(1, Ordering::SeqCst);
        self.inner.deserialize(bytes)
    }
}
