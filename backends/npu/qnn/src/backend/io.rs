//! Graph inputs and outputs in shared memory: rpcmem buffers registered with `memRegister`, which
//! the DSP reads and writes in place, or client buffers that QNN copies at every execution —
//! with the reason, when shared memory cannot be used.
//!
//! The backend probes once at open (rpcmem library, the `memRegister` slot, one registration in
//! a scratch context); each compiled or loaded graph then registers one buffer per input and
//! output in its own context. A registration that fails later turns the backend to client
//! buffers for the graphs that follow, with that failure as the reason.

use super::handles::Shared;
use crate::error::{LibraryError, QnnError};
use crate::loader::{RpcBuffer, RpcMemLibrary};
use crate::sys::calls::{self, RawHandle, Registered, TensorDef};
use crate::sys::{DataType, TensorType};
use shadowattn_hal::Graph;
use std::fmt;
use std::sync::Arc;

/// How graph inputs and outputs reach QNN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoBuffers {
    /// rpcmem buffers registered with `memRegister`: no copy between the process and the DSP.
    Registered,
    /// Client buffers, which QNN copies at every execution.
    Client {
        /// Why shared memory is not used.
        reason: ClientReason,
    },
}

/// Why graph inputs and outputs go through client buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientReason {
    /// The options ask for client buffers ([`QnnOptions::client_buffers_only`](crate::QnnOptions)).
    Disabled,
    /// No rpcmem library could be opened: every place tried, and why.
    NoRpcMem(String),
    /// The QNN library does not implement `memRegister` or `memDeRegister`.
    NoMemRegister,
    /// The rpcmem allocator failed.
    RpcMem(String),
    /// `memRegister` (or `memDeRegister`) returned an error.
    QnnCall {
        /// The QNN function.
        call: &'static str,
        /// The QNN error code.
        code: u64,
        /// QNN's message.
        message: String,
    },
}

impl fmt::Display for ClientReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientReason::Disabled => f.write_str("shared memory turned off by the options"),
            ClientReason::NoRpcMem(why) => write!(f, "libcdsprpc.so not found: {why}"),
            ClientReason::NoMemRegister => {
                f.write_str("the QNN library does not implement memRegister/memDeRegister")
            }
            ClientReason::RpcMem(why) => write!(f, "rpcmem: {why}"),
            ClientReason::QnnCall {
                call,
                code,
                message,
            } => write!(f, "{call} returned {code:#x} ({code}): {message}"),
        }
    }
}

impl fmt::Display for IoBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoBuffers::Registered => f.write_str("registered rpcmem (zero copy)"),
            IoBuffers::Client { reason } => write!(f, "client buffers (copied): {reason}"),
        }
    }
}

/// The backend's choice: the rpcmem library when graph I/O is registered.
#[derive(Debug)]
pub(super) struct IoState {
    pub(super) rpcmem: Option<Arc<RpcMemLibrary>>,
    pub(super) report: IoBuffers,
}

impl IoState {
    /// Client buffers for `reason`.
    pub(super) fn client(reason: ClientReason) -> Self {
        IoState {
            rpcmem: None,
            report: IoBuffers::Client { reason },
        }
    }
}

/// A failed rpcmem search as one line: every attempt and its reason.
fn search_failure(e: &QnnError) -> String {
    match e {
        QnnError::Library(LibraryError::Load { attempts, .. }) => attempts
            .iter()
            .map(|a| format!("{} ({}): {}", a.path, a.origin, a.reason))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// Why registration failed, from the error of an rpcmem or QNN call.
fn reason_of(e: QnnError) -> ClientReason {
    match e {
        QnnError::Call {
            call,
            code,
            message,
        } => ClientReason::QnnCall {
            call,
            code,
            message,
        },
        QnnError::MissingFunction(_) => ClientReason::NoMemRegister,
        other => ClientReason::RpcMem(other.to_string()),
    }
}

/// Decides how `shared`'s graphs exchange I/O: opens rpcmem, checks the `memRegister` slots and
/// registers one scratch buffer in a scratch context. Takes the backend's lock.
pub(super) fn probe(shared: &Shared) -> IoState {
    if shared.options.client_buffers_only {
        return IoState::client(ClientReason::Disabled);
    }
    let rpcmem = match RpcMemLibrary::find(shared.options.rpcmem_library.as_deref()) {
        Ok(l) => l,
        Err(e) => return IoState::client(ClientReason::NoRpcMem(search_failure(&e))),
    };
    let table = shared.lib.functions();
    if table.mem_register.is_none() || table.mem_de_register.is_none() {
        return IoState::client(ClientReason::NoMemRegister);
    }
    let lib = &shared.lib;
    let _g = shared.lock();
    let context = match calls::context_create(lib, shared.backend, shared.device) {
        Ok(c) => c,
        Err(e) => return IoState::client(ClientReason::RpcMem(format!("probe context: {e}"))),
    };
    let mut def = TensorDef {
        name: c"shadowattn_io_probe".into(),
        tensor_type: TensorType::APP_WRITE,
        data_type: DataType::UINT_8,
        dims: vec![1],
        quant: None,
        id: 0,
        static_data: None,
    };
    let result = RpcBuffer::alloc(&rpcmem, 1)
        .and_then(|buffer| calls::mem_register(lib, context, &mut def, buffer))
        .and_then(|registered| calls::mem_de_register(lib, registered));
    let _ = calls::context_free(lib, context);
    match result {
        Ok(()) => IoState {
            rpcmem: Some(rpcmem),
            report: IoBuffers::Registered,
        },
        Err(e) => IoState::client(reason_of(e)),
    }
}

/// One graph's inputs then outputs in registered shared memory; deregistered (and freed) when
/// dropped, which must happen before the graph's context is freed.
#[derive(Debug)]
pub(super) struct RegisteredIo {
    shared: Arc<Shared>,
    pub(super) buffers: Vec<Registered>,
}

impl Drop for RegisteredIo {
    fn drop(&mut self) {
        if self.buffers.is_empty() {
            // Nothing to deregister, and the lock may be held by the caller (`register`).
            return;
        }
        let _g = self.shared.lock();
        for r in self.buffers.drain(..) {
            let _ = calls::mem_de_register(&self.shared.lib, r);
        }
    }
}

/// How one graph exchanges its inputs and outputs.
#[derive(Debug)]
pub(super) enum GraphIo {
    /// Registered shared memory, one buffer per input then output.
    Registered(RegisteredIo),
    /// Client buffers, for this reason.
    Client(ClientReason),
}

impl GraphIo {
    /// What this graph uses.
    pub(super) fn report(&self) -> IoBuffers {
        match self {
            GraphIo::Registered(_) => IoBuffers::Registered,
            GraphIo::Client(reason) => IoBuffers::Client {
                reason: reason.clone(),
            },
        }
    }
}

/// Registers one rpcmem buffer per input and output of `graph` (definitions `io`, inputs first)
/// in `context`, when the backend registers graph I/O. A failure frees what was registered,
/// turns the backend to client buffers and gives this graph client buffers, with the reason.
/// The caller holds the backend's lock.
pub(super) fn register(
    shared: &Arc<Shared>,
    context: RawHandle,
    graph: &Graph,
    io: &mut [TensorDef],
) -> GraphIo {
    let rpcmem = {
        let state = shared.io_state();
        match (&state.rpcmem, &state.report) {
            (Some(l), _) => l.clone(),
            (None, IoBuffers::Client { reason }) => return GraphIo::Client(reason.clone()),
            (None, IoBuffers::Registered) => return GraphIo::Client(ClientReason::NoMemRegister),
        }
    };
    let sizes: Vec<usize> = graph
        .input_descs()
        .chain(graph.output_descs())
        .map(|d| d.size_bytes())
        .collect();
    let mut done = RegisteredIo {
        shared: shared.clone(),
        buffers: Vec::with_capacity(io.len()),
    };
    for (def, &size) in io.iter_mut().zip(&sizes) {
        let registered = RpcBuffer::alloc(&rpcmem, size)
            .and_then(|buffer| calls::mem_register(&shared.lib, context, def, buffer));
        match registered {
            Ok(r) => done.buffers.push(r),
            Err(e) => {
                // The caller holds the lock that `done`'s Drop would take.
                for r in done.buffers.drain(..) {
                    let _ = calls::mem_de_register(&shared.lib, r);
                }
                let reason = reason_of(e);
                *shared.io_state() = IoState::client(reason.clone());
                return GraphIo::Client(reason);
            }
        }
    }
    GraphIo::Registered(done)
}
