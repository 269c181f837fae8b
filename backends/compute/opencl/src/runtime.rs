//! The safe layer over the raw calls: RAII handles, one context with its in-order profiling queue,
//! the program built once, reusable device buffers and the timestamps of every command.

use crate::device::Device;
use crate::error::{OpenClError, Result};
use crate::loader::OpenClLibrary;
use crate::sys::calls::{self, Kind, RawHandle};
use crate::sys::{MemFlags, ProfilingInfo, QueueProperties};
use shadowattn_hal::{EventKind, FigureSource, ProfileEvent};
use std::collections::HashMap;
use std::sync::Arc;

/// Timestamps kept between takes; later commands are counted, not stored, so a long run that
/// never takes its events holds bounded memory.
pub const MAX_KEPT_EVENTS: usize = 1 << 16;

/// An owned reference to an OpenCL object, released on drop.
#[derive(Debug)]
pub(crate) struct Owned {
    lib: Arc<OpenClLibrary>,
    kind: Kind,
    handle: RawHandle,
}

impl Owned {
    fn new(lib: &Arc<OpenClLibrary>, kind: Kind, handle: RawHandle) -> Self {
        Owned {
            lib: lib.clone(),
            kind,
            handle,
        }
    }

    pub(crate) fn raw(&self) -> RawHandle {
        self.handle
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // A failed release cannot be handled in drop; the object leaks at worst.
        let _ = calls::release(&self.lib, self.kind, self.handle);
    }
}

/// Timestamps of one OpenCL command on the device clock, nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuEvent {
    /// What ran (`write q`, `attend`…).
    pub name: String,
    /// Transfer or compute.
    pub kind: EventKind,
    /// The host enqueued it.
    pub queued_ns: u64,
    /// It was submitted to the device.
    pub submitted_ns: u64,
    /// The device started it.
    pub started_ns: u64,
    /// The device finished it.
    pub ended_ns: u64,
}

impl GpuEvent {
    /// HAL events relative to `origin_ns` (device clock): the wait from queued to start on
    /// `<track> queue`, the execution from start to end on `track`.
    pub fn to_profile_events(&self, track: &str, origin_ns: u64) -> [ProfileEvent; 2] {
        let rel = |t: u64| t.saturating_sub(origin_ns);
        [
            ProfileEvent {
                name: format!("{} (queued)", self.name),
                kind: EventKind::Launch,
                track: format!("{track} queue"),
                start_ns: rel(self.queued_ns),
                duration_ns: self.started_ns.saturating_sub(self.queued_ns),
                cycles: None,
                source: FigureSource::Measured,
            },
            ProfileEvent {
                name: self.name.clone(),
                kind: self.kind,
                track: track.to_string(),
                start_ns: rel(self.started_ns),
                duration_ns: self.ended_ns.saturating_sub(self.started_ns),
                cycles: None,
                source: FigureSource::Measured,
            },
        ]
    }
}

/// A kernel argument.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    /// The buffer of this role.
    Buffer(&'static str),
    /// A `uint`.
    U32(u32),
    /// A `float`.
    F32(f32),
    /// This many bytes of `__local` memory.
    Local(usize),
}

#[derive(Debug)]
struct Buffer {
    mem: Owned,
    bytes: usize,
}

/// Builds `source` for `device` in `context`; a failure carries the compiler's log.
pub(crate) fn build_program(
    lib: &Arc<OpenClLibrary>,
    context: &Owned,
    device: &Device,
    source: &str,
    options: &str,
) -> Result<Owned> {
    let program = Owned::new(
        lib,
        Kind::Program,
        calls::create_program(lib, context.raw(), source)?,
    );
    if let Err(status) = calls::build_program(lib, program.raw(), device.handle, options) {
        let log = calls::build_log(lib, program.raw(), device.handle)
            .unwrap_or_else(|e| format!("(no build log: {e})"));
        return Err(OpenClError::Build {
            device: device.name.clone(),
            status: status.name(),
            log,
        });
    }
    Ok(program)
}

/// One device's context, queue, program, kernels and buffers.
#[derive(Debug)]
pub(crate) struct Runtime {
    lib: Arc<OpenClLibrary>,
    device: Device,
    // Field order is drop order: commands and objects before the queue and the context.
    pending: Vec<(String, EventKind, Owned)>,
    buffers: HashMap<&'static str, Buffer>,
    kernels: HashMap<&'static str, Owned>,
    _program: Owned,
    queue: Owned,
    context: Owned,
    profiling: bool,
    max_buffer_bytes: u64,
    events: Vec<GpuEvent>,
    dropped_events: u64,
}

impl Runtime {
    /// A context and profiling queue on `device`, with `source` built (`options`) and the
    /// kernels `names` created.
    pub(crate) fn new(
        lib: &Arc<OpenClLibrary>,
        device: &Device,
        source: &str,
        options: &str,
        names: &[&'static str],
        profiling: bool,
        max_buffer_bytes: u64,
    ) -> Result<Self> {
        let context = Owned::new(
            lib,
            Kind::Context,
            calls::create_context(lib, device.platform, device.handle)?,
        );
        let props = if profiling {
            QueueProperties::PROFILING_ENABLE
        } else {
            QueueProperties(0)
        };
        let queue = Owned::new(
            lib,
            Kind::Queue,
            calls::create_queue(lib, context.raw(), device.handle, props)?,
        );
        let program = build_program(lib, &context, device, source, options)?;
        let mut kernels = HashMap::new();
        for &name in names {
            let k = calls::create_kernel(lib, program.raw(), name)?;
            kernels.insert(name, Owned::new(lib, Kind::Kernel, k));
        }
        Ok(Runtime {
            lib: lib.clone(),
            device: device.clone(),
            pending: Vec::new(),
            buffers: HashMap::new(),
            kernels,
            _program: program,
            queue,
            context,
            profiling,
            max_buffer_bytes,
            events: Vec::new(),
            dropped_events: 0,
        })
    }

    /// The context (to build further programs in it).
    pub(crate) fn context(&self) -> &Owned {
        &self.context
    }

    /// Largest work-group `kernel` can run with on this device.
    pub(crate) fn kernel_work_group_size(&self, kernel: &'static str) -> Result<usize> {
        calls::kernel_work_group_size(&self.lib, self.kernel(kernel).raw(), self.device.handle)
    }

    fn kernel(&self, name: &'static str) -> &Owned {
        self.kernels
            .get(name)
            .expect("kernels are created with the runtime")
    }

    /// The buffer of `role`, at least `bytes` long: reused when large enough, else replaced.
    fn buffer(&mut self, role: &'static str, bytes: usize, flags: MemFlags) -> Result<RawHandle> {
        let bytes = bytes.max(16);
        if let Some(b) = self.buffers.get(role) {
            if b.bytes >= bytes {
                return Ok(b.mem.raw());
            }
        }
        if bytes as u64 > self.max_buffer_bytes {
            return Err(OpenClError::BufferTooLarge {
                buffer: role,
                bytes: bytes as u64,
                limit: self.max_buffer_bytes,
                device: self.device.name.clone(),
            });
        }
        // Drop the old one first: the device need not hold both.
        self.buffers.remove(role);
        let mem = Owned::new(
            &self.lib,
            Kind::Buffer,
            calls::create_buffer(&self.lib, self.context.raw(), flags, bytes)?,
        );
        let raw = mem.raw();
        self.buffers.insert(role, Buffer { mem, bytes });
        Ok(raw)
    }

    /// Makes sure a buffer of `role` holds at least `bytes` (for kernel outputs).
    pub(crate) fn reserve(&mut self, role: &'static str, bytes: usize) -> Result<()> {
        self.buffer(role, bytes, MemFlags::READ_WRITE).map(|_| ())
    }

    /// Copies `data` into the buffer of `role` (blocking).
    pub(crate) fn upload(&mut self, role: &'static str, data: &[u8]) -> Result<()> {
        let mem = self.buffer(role, data.len(), MemFlags::READ_WRITE)?;
        if data.is_empty() {
            return Ok(());
        }
        let ev = calls::write_buffer(&self.lib, self.queue.raw(), mem, data)?;
        self.record(format!("write {role}"), EventKind::Transfer, ev);
        Ok(())
    }

    /// Copies the start of the buffer of `role` into `out` (blocking).
    pub(crate) fn download(&mut self, role: &'static str, out: &mut [u8]) -> Result<()> {
        let mem = self
            .buffers
            .get(role)
            .map(|b| b.mem.raw())
            .expect("downloads read buffers written in the same call");
        if out.is_empty() {
            return Ok(());
        }
        let ev = calls::read_buffer(&self.lib, self.queue.raw(), mem, out)?;
        self.record(format!("read {role}"), EventKind::Transfer, ev);
        Ok(())
    }

    /// Sets `args` on `kernel` and enqueues `groups` work-groups of `local` work-items.
    pub(crate) fn launch(
        &mut self,
        kernel: &'static str,
        args: &[Arg],
        groups: usize,
        local: usize,
    ) -> Result<()> {
        let k = self.kernel(kernel).raw();
        for (i, arg) in args.iter().enumerate() {
            let i = i as u32;
            match *arg {
                Arg::Buffer(role) => {
                    let mem = self.buffers[role].mem.raw();
                    calls::set_arg_buffer(&self.lib, k, i, mem)?
                }
                Arg::U32(v) => calls::set_arg_scalar(&self.lib, k, i, &v)?,
                Arg::F32(v) => calls::set_arg_scalar(&self.lib, k, i, &v)?,
                Arg::Local(bytes) => calls::set_arg_local(&self.lib, k, i, bytes)?,
            }
        }
        let ev = calls::enqueue_kernel(&self.lib, self.queue.raw(), k, groups * local, local)?;
        self.record(kernel.to_string(), EventKind::ComputeStage, ev);
        Ok(())
    }

    fn record(&mut self, name: String, kind: EventKind, ev: RawHandle) {
        self.pending
            .push((name, kind, Owned::new(&self.lib, Kind::Event, ev)));
    }

    /// Waits for every command of the call; with profiling, keeps their timestamps.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let done = calls::finish(&self.lib, self.queue.raw());
        let pending = std::mem::take(&mut self.pending);
        done?;
        if self.profiling {
            for (name, kind, ev) in pending {
                if self.events.len() >= MAX_KEPT_EVENTS {
                    self.dropped_events += 1;
                    continue;
                }
                let t = |what| calls::event_time(&self.lib, ev.raw(), what);
                self.events.push(GpuEvent {
                    name,
                    kind,
                    queued_ns: t(ProfilingInfo::QUEUED)?,
                    submitted_ns: t(ProfilingInfo::SUBMIT)?,
                    started_ns: t(ProfilingInfo::START)?,
                    ended_ns: t(ProfilingInfo::END)?,
                });
            }
        }
        Ok(())
    }

    /// Drops the commands of a failed call after waiting for them.
    pub(crate) fn abandon(&mut self) {
        let _ = calls::finish(&self.lib, self.queue.raw());
        self.pending.clear();
    }

    /// The timestamps recorded since the last take, and how many commands were not kept.
    pub(crate) fn take_events(&mut self) -> (Vec<GpuEvent>, u64) {
        (
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.dropped_events),
        )
    }

    /// Bytes held in device buffers.
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.buffers.values().map(|b| b.bytes).sum()
    }
}
