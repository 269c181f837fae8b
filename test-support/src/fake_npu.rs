//! One configurable fake NPU for the tests of code above the HAL: it compiles like the golden
//! CPU interpreter (or accepts any graph), and its compiles and executions fail, or panic, as
//! told. Feature `fake-npu`.

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    Capabilities, CompiledGraph, Graph, HalError, NpuBackend, ProfileEvent, TensorView,
    TensorViewMut,
};

/// What a fake graph does when executed.
#[derive(Clone, Debug, PartialEq)]
pub enum Execution {
    /// Runs on the golden interpreter.
    Runs,
    /// Fails every time with a vendor error of `call` and `code`.
    Fails {
        /// The failing call.
        call: &'static str,
        /// Its status code.
        code: i64,
    },
    /// Fails on about one execution in `one_in`, chosen by a hash of `seed` and the inputs (the
    /// same launches fail whatever order they run in), with the vendor error `execute`, code 5.
    FailsSometimes {
        /// Mixed into the hash.
        seed: u64,
        /// One failure in this many executions, on average.
        one_in: u64,
    },
    /// Panics: the code under test must not execute graphs.
    Panics,
}

/// A fake NPU backend.
#[derive(Clone, Debug)]
pub struct FakeNpu {
    name: &'static str,
    compile_failure: Option<(&'static str, i64)>,
    execution: Execution,
    any_graph: bool,
}

impl FakeNpu {
    /// The golden interpreter under the name `name`: it compiles and runs what the CPU backend
    /// does.
    pub fn cpu(name: &'static str) -> Self {
        FakeNpu {
            name,
            compile_failure: None,
            execution: Execution::Runs,
            any_graph: false,
        }
    }

    /// Accepts every graph without checking it (its executions panic unless told otherwise).
    pub fn any_graph(mut self) -> Self {
        self.any_graph = true;
        self.execution = Execution::Panics;
        self
    }

    /// Every compile fails with a vendor error of `call` and `code`.
    pub fn failing_compile(mut self, call: &'static str, code: i64) -> Self {
        self.compile_failure = Some((call, code));
        self
    }

    /// Executions behave as `execution`.
    pub fn executing(mut self, execution: Execution) -> Self {
        self.execution = execution;
        self
    }

    fn vendor(&self, call: &str, code: i64) -> HalError {
        HalError::Vendor {
            backend: self.name.into(),
            call: call.into(),
            code,
            message: "injected".into(),
        }
    }
}

impl NpuBackend for FakeNpu {
    fn name(&self) -> &str {
        self.name
    }

    fn version(&self) -> String {
        "0".into()
    }

    fn capabilities(&self) -> Capabilities {
        if self.any_graph {
            return Capabilities {
                ops: Default::default(),
                per_axis_quantization: false,
                serialization: false,
                max_rank: 4,
                relaxed_f32: false,
            };
        }
        NpuBackend::capabilities(&CpuBackend::new())
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn CompiledGraph>, HalError> {
        if let Some((call, code)) = self.compile_failure {
            return Err(self.vendor(call, code));
        }
        let inner = match self.any_graph {
            true => None,
            false => Some(CpuBackend::new().compile(graph)?),
        };
        Ok(Box::new(FakeGraph {
            graph: graph.clone(),
            inner,
            npu: self.clone(),
        }))
    }
}

/// A graph of [`FakeNpu`].
#[derive(Debug)]
struct FakeGraph {
    graph: Graph,
    inner: Option<Box<dyn CompiledGraph>>,
    npu: FakeNpu,
}

/// FNV-1a over `seed` and every input byte, then a xorshift round to mix the bits.
fn input_hash(seed: u64, inputs: &[TensorView<'_>]) -> u64 {
    let mut x = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in inputs.iter().flat_map(|t| t.bytes()) {
        x = (x ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

impl CompiledGraph for FakeGraph {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn compile_events(&self) -> &[ProfileEvent] {
        self.inner.as_ref().map_or(&[], |g| g.compile_events())
    }

    fn execute(
        &mut self,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> Result<Vec<ProfileEvent>, HalError> {
        match self.npu.execution {
            Execution::Runs => {}
            Execution::Fails { call, code } => return Err(self.npu.vendor(call, code)),
            Execution::FailsSometimes { seed, one_in } => {
                if input_hash(seed, inputs).is_multiple_of(one_in.max(1)) {
                    return Err(self.npu.vendor("execute", 5));
                }
            }
            Execution::Panics => panic!("{} executed a graph", self.npu.name),
        }
        match &mut self.inner {
            Some(g) => g.execute(inputs, outputs),
            None => panic!("{} accepts any graph and runs none", self.npu.name),
        }
    }

    fn serialize(&self) -> Result<Vec<u8>, HalError> {
        match (&self.inner, &self.npu.execution) {
            (Some(g), Execution::Runs | Execution::FailsSometimes { .. }) => g.serialize(),
            _ => Err(HalError::NotProvided {
                backend: self.npu.name.into(),
                feature: "serialization".into(),
            }),
        }
    }
}
