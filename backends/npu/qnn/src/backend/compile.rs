//! Compiling: an IR graph validated node by node, built in a fresh context and finalized, with
//! finalize's time and Qualcomm's estimate as compile events.

use super::estimates::VendorEstimate;
use super::handles::{Context, Profile};
use super::io::register;
use super::profiling::timed_event;
use super::program::{QnnGraph, QnnProgram};
use super::translate::{cstring, io_defs, op_def, value_defs};
use super::QnnBackend;
use crate::error::Result;
use crate::sys::calls;
use crate::sys::ProfileEventType;
use shadowattn_hal::{EventKind, Graph};

impl QnnBackend {
    /// Compiles `graph` into a [`QnnGraph`] (the concrete type, with its vendor estimate).
    pub fn compile_qnn(&self, graph: &Graph) -> Result<QnnGraph> {
        graph.validate()?;
        let mut defs = value_defs(graph)?;
        for node in graph.nodes() {
            self.validate_node(graph, node, &mut defs)?;
        }
        let shared = &self.shared;
        let lib = &shared.lib;
        // Declared before the guard so that, on an early return, the guard is released before
        // the context's Drop takes the lock again.
        let context: Context;
        let _g = shared.lock();
        let started = std::time::Instant::now();
        context = Context {
            shared: shared.clone(),
            handle: calls::context_create(lib, shared.backend, shared.device)?,
        };
        let name = cstring(graph.name())?;
        let graph_options = shared.options.graph_options();
        let handle = calls::graph_create(lib, context.handle, &name, &graph_options)?;
        for d in defs.iter_mut() {
            calls::tensor_create(lib, handle, d)?;
        }
        for node in graph.nodes() {
            let mut op = op_def(graph, node)?;
            calls::add_node(lib, handle, &mut op, &mut defs)?;
        }
        let profile = Profile::new(shared)?;
        calls::graph_finalize(lib, handle, profile.handle)?;
        let finalize_events = profile.events()?;
        drop(profile);
        let wall_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let estimate = VendorEstimate::from_events(&finalize_events);
        let mut compile_events = vec![timed_event(
            format!("qnn finalize {}", graph.name()),
            EventKind::Compile,
            "compile",
            &finalize_events,
            ProfileEventType::FINALIZE,
            wall_ns,
        )];
        if let Some(e) = estimate {
            compile_events.push(e.launch_event(graph.name()));
        }
        let mut io = io_defs(graph, &defs);
        let memory = register(shared, context.handle, graph, &mut io);
        drop(_g);
        Ok(QnnGraph::new(
            graph.clone(),
            compile_events,
            QnnProgram {
                memory,
                context,
                graph_handle: handle,
                io,
                estimate,
            },
        ))
    }
}
