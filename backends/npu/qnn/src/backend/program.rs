//! A graph finalized by QNN, and its execution.

use super::estimates::VendorEstimate;
use super::handles::{Context, Profile};
use super::io::{GraphIo, IoBuffers};
use super::profiling::timed_event;
use crate::sys::calls::{self, InputData, OutputData, RawHandle, TensorDef};
use crate::sys::ProfileEventType;
use shadowattn_hal::{
    track, Compiled, EventKind, Graph, GraphExecutable, HalError, ProfileEvent, TensorView,
    TensorViewMut,
};

/// A graph finalized by QNN.
pub type QnnGraph = Compiled<QnnProgram>;

/// What QNN keeps of a finalized graph: its own context, its handle, the tensors of its inputs
/// and outputs, their memory, and Qualcomm's estimate.
#[derive(Debug)]
pub struct QnnProgram {
    /// Declared before `context`: registered memory is deregistered before the context is freed
    /// (fields drop in declaration order).
    pub(super) memory: GraphIo,
    pub(super) context: Context,
    pub(super) graph_handle: RawHandle,
    pub(super) io: Vec<TensorDef>,
    pub(super) estimate: Option<VendorEstimate>,
}

impl QnnProgram {
    /// Qualcomm's cost-model estimate, when the SoC model has one.
    pub fn estimate(&self) -> Option<VendorEstimate> {
        self.estimate
    }

    /// How this graph exchanges its inputs and outputs.
    pub fn io_buffers(&self) -> IoBuffers {
        self.memory.report()
    }
}

/// `len` bytes do not fit registered memory of `capacity` bytes (the HAL checked the buffers
/// against the graph, so this is a bug).
fn size_mismatch(len: usize, capacity: usize) -> HalError {
    HalError::invalid_argument(
        "buffer",
        format!("{len} bytes do not fit the {capacity}-byte registered buffer"),
    )
}

impl GraphExecutable for QnnProgram {
    fn run(
        &mut self,
        graph: &Graph,
        inputs: &[TensorView<'_>],
        outputs: &mut [TensorViewMut<'_>],
    ) -> shadowattn_hal::Result<Vec<ProfileEvent>> {
        let shared = &self.context.shared;
        let _g = shared.lock();
        let started = std::time::Instant::now();
        let profile = Profile::new(shared)?;
        let n_in = inputs.len();
        let (in_defs, out_defs) = self.io.split_at_mut(n_in);
        match &mut self.memory {
            GraphIo::Client(_) => {
                let mut ins: Vec<(&mut TensorDef, InputData<'_>)> = in_defs
                    .iter_mut()
                    .zip(inputs)
                    .map(|(d, v)| (d, InputData::Client(v.bytes())))
                    .collect();
                let mut outs: Vec<(&mut TensorDef, OutputData<'_>)> = out_defs
                    .iter_mut()
                    .zip(outputs.iter_mut())
                    .map(|(d, v)| (d, OutputData::Client(v.bytes_mut())))
                    .collect();
                calls::graph_execute(
                    &shared.lib,
                    self.graph_handle,
                    &mut ins,
                    &mut outs,
                    profile.handle,
                )?;
            }
            GraphIo::Registered(registered) => {
                let (in_mem, out_mem) = registered.buffers.split_at_mut(n_in);
                for (mem, v) in in_mem.iter_mut().zip(inputs) {
                    let src = v.bytes();
                    let capacity = mem.bytes().len();
                    mem.bytes_mut()
                        .get_mut(..src.len())
                        .ok_or_else(|| size_mismatch(src.len(), capacity))?
                        .copy_from_slice(src);
                }
                let mut ins: Vec<(&mut TensorDef, InputData<'_>)> = in_defs
                    .iter_mut()
                    .zip(in_mem.iter())
                    .map(|(d, m)| (d, InputData::Registered(m)))
                    .collect();
                let mut outs: Vec<(&mut TensorDef, OutputData<'_>)> = out_defs
                    .iter_mut()
                    .zip(out_mem.iter_mut())
                    .map(|(d, m)| (d, OutputData::Registered(m)))
                    .collect();
                calls::graph_execute(
                    &shared.lib,
                    self.graph_handle,
                    &mut ins,
                    &mut outs,
                    profile.handle,
                )?;
                drop(outs);
                for (mem, v) in out_mem.iter().zip(outputs.iter_mut()) {
                    let dst = v.bytes_mut();
                    let src = mem
                        .bytes()
                        .get(..dst.len())
                        .ok_or_else(|| size_mismatch(dst.len(), mem.bytes().len()))?;
                    dst.copy_from_slice(src);
                }
            }
        }
        let events = profile.events()?;
        let wall = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Ok(vec![timed_event(
            format!("qnn execute {}", graph.name()),
            EventKind::Launch,
            track::NPU,
            &events,
            ProfileEventType::EXECUTE,
            wall,
        )])
    }

    fn serialize(&self, graph: &Graph) -> shadowattn_hal::Result<Vec<u8>> {
        self.to_container(graph)
    }
}
