//! A graph finalized by QNN, and its execution.

use super::estimates::VendorEstimate;
use super::handles::{Context, Profile};
use super::profiling::timed_event;
use crate::sys::calls::{self, RawHandle, TensorDef};
use crate::sys::ProfileEventType;
use shadowattn_hal::{
    track, Compiled, EventKind, Graph, GraphExecutable, ProfileEvent, TensorView, TensorViewMut,
};

/// A graph finalized by QNN.
pub type QnnGraph = Compiled<QnnProgram>;

/// What QNN keeps of a finalized graph: its own context, its handle, the tensors of its inputs
/// and outputs, and Qualcomm's estimate.
#[derive(Debug)]
pub struct QnnProgram {
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
        let mut ins: Vec<(&mut TensorDef, &[u8])> = in_defs
            .iter_mut()
            .zip(inputs)
            .map(|(d, v)| (d, v.bytes()))
            .collect();
        let mut outs: Vec<(&mut TensorDef, &mut [u8])> = out_defs
            .iter_mut()
            .zip(outputs.iter_mut())
            .map(|(d, v)| (d, v.bytes_mut()))
            .collect();
        calls::graph_execute(
            &shared.lib,
            self.graph_handle,
            &mut ins,
            &mut outs,
            profile.handle,
        )?;
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
