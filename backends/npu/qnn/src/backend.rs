//! The safe layer and the HAL `NpuBackend` over QNN.
//!
//! Handles are owned by RAII values freed in dependency order: a compiled graph owns its context;
//! contexts keep the shared backend (device, backend, log) alive; the library itself is never
//! unloaded. Every QNN call of one backend is serialized by a mutex, since QNN documents no
//! thread safety for concurrent calls on one handle.

use crate::error::{QnnError, Result, BACKEND_NAME};
use crate::loader::QnnLibrary;
use crate::sys::calls::{self, Event, GraphOptions, OpDef, ParamDef, RawHandle, TensorDef};
use crate::sys::{DataType, LogLevel, ProfileEventType, ProfileLevel, ScaleOffset, TensorType};
use serde::{Deserialize, Serialize};
use shadowattn_hal::track;
use shadowattn_hal::{
    Capabilities, Compiled, CompiledGraph, DType, EventKind, FigureSource, Graph, GraphExecutable,
    HalError, NpuBackend, Op, OpKind, ProfileEvent, Quantization, Signature, TensorDesc,
    TensorView, TensorViewMut,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Float precision of HTP graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// Float graphs run in FP32 where the SoC can (most run FP16 math anyway).
    Fp32,
    /// Float graphs run in FP16.
    Fp16,
}

/// Options of the QNN backend, with defaults for every field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QnnOptions {
    /// Library path; `None` searches (see [`QnnLibrary::find`]).
    pub library: Option<PathBuf>,
    /// QNN SoC model (52 = SA8255, 57 = SM8650); `None` keeps the library's default.
    pub soc_model: Option<u32>,
    /// Minimum HTP architecture (68, 69, 73, 75, 79, …); a SoC model overrides it.
    pub arch: Option<u32>,
    /// Float precision; `None` keeps the library's default.
    pub precision: Option<Precision>,
    /// VTCM size in MB (0 = maximum); `None` keeps the default.
    pub vtcm_mb: Option<u32>,
    /// Finalize optimization level (1–3); `None` keeps the default.
    pub optimization_level: Option<u32>,
}

/// Backend, device and log of one open backend; freed together, last.
#[derive(Debug)]
struct Shared {
    lib: Arc<QnnLibrary>,
    log: RawHandle,
    backend: RawHandle,
    device: RawHandle,
    lock: Mutex<()>,
    options: QnnOptions,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = calls::device_free(&self.lib, self.device);
        let _ = calls::backend_free(&self.lib, self.backend);
        let _ = calls::log_free(&self.lib, self.log);
    }
}

/// A context and the graph inside it; freed when dropped.
#[derive(Debug)]
struct Context {
    shared: Arc<Shared>,
    handle: RawHandle,
}

impl Drop for Context {
    fn drop(&mut self) {
        let _g = self.shared.lock();
        let _ = calls::context_free(&self.shared.lib, self.handle);
    }
}

/// A profile; freed when dropped.
struct Profile<'a> {
    shared: &'a Shared,
    handle: RawHandle,
}

impl<'a> Profile<'a> {
    fn new(shared: &'a Shared) -> Result<Self> {
        let handle = calls::profile_create(&shared.lib, shared.backend, ProfileLevel::BASIC)?;
        Ok(Profile { shared, handle })
    }

    fn events(&self) -> Result<Vec<Event>> {
        calls::profile_events(&self.shared.lib, self.handle)
    }
}

impl Drop for Profile<'_> {
    fn drop(&mut self) {
        let _ = calls::profile_free(&self.shared.lib, self.handle);
    }
}

/// Qualcomm's finalize-time cost-model estimate of one execution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorEstimate {
    /// Simulated accelerator cycles.
    pub cycles: u64,
    /// Lower estimate.
    pub cycles_lower: u64,
    /// Upper estimate.
    pub cycles_upper: u64,
    /// Simulated time, µs.
    pub micros: u64,
}

fn find_event(events: &[Event], event_type: ProfileEventType) -> Option<&Event> {
    events.iter().find_map(|e| {
        if e.event_type == event_type.0 {
            Some(e)
        } else {
            find_event(&e.sub, event_type)
        }
    })
}

/// A measured event whose duration is QNN's own µs figure of `event_type` in `events`, or the
/// wall time `wall_ns` where QNN reports none.
fn timed_event(
    name: String,
    kind: EventKind,
    track: &str,
    events: &[Event],
    event_type: ProfileEventType,
    wall_ns: u64,
) -> ProfileEvent {
    ProfileEvent {
        name,
        kind,
        track: track.into(),
        start_ns: 0,
        duration_ns: find_event(events, event_type)
            .map(|e| e.value * 1000)
            .unwrap_or(wall_ns),
        cycles: None,
        source: FigureSource::Measured,
    }
}

fn estimate_from(events: &[Event]) -> Option<VendorEstimate> {
    let v = |t| find_event(events, t).map(|e| e.value);
    Some(VendorEstimate {
        cycles: v(ProfileEventType::HTP_SIM_EXEC_CYCLES)?,
        cycles_lower: v(ProfileEventType::HTP_SIM_EXEC_LOWER_CYCLES).unwrap_or(0),
        cycles_upper: v(ProfileEventType::HTP_SIM_EXEC_UPPER_CYCLES).unwrap_or(0),
        micros: v(ProfileEventType::HTP_SIM_EXEC_TIME_US).unwrap_or(0),
    })
}

/// The QNN type and quantization of a HAL tensor.
fn qnn_type(desc: &TensorDesc, what: &str, op: OpKind) -> Result<(DataType, Option<ScaleOffset>)> {
    let unsupported = |detail: String| QnnError::Unsupported {
        node: what.to_string(),
        op: op.to_string(),
        detail,
    };
    let so = |scale: f32, zp: i32| Some(ScaleOffset { scale, offset: -zp });
    Ok(match (&desc.quant, desc.dtype) {
        (Quantization::PerAxis { .. }, _) => {
            return Err(unsupported(
                "per-axis quantization is not mapped by this backend".into(),
            ))
        }
        (_, DType::F32) => (DataType::FLOAT_32, None),
        (_, DType::F16) => (DataType::FLOAT_16, None),
        (Quantization::PerTensor(p), DType::I8) => {
            (DataType::SFIXED_POINT_8, so(p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::U8) => {
            (DataType::UFIXED_POINT_8, so(p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::I16) => {
            (DataType::SFIXED_POINT_16, so(p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::U16) => {
            (DataType::UFIXED_POINT_16, so(p.scale, p.zero_point))
        }
        (Quantization::PerTensor(p), DType::I32) => {
            (DataType::SFIXED_POINT_32, so(p.scale, p.zero_point))
        }
        (Quantization::None, DType::I8) => (DataType::INT_8, None),
        (Quantization::None, DType::U8) => (DataType::UINT_8, None),
        (Quantization::None, DType::I16) => (DataType::INT_16, None),
        (Quantization::None, DType::U16) => (DataType::UINT_16, None),
        (Quantization::None, DType::I32) => (DataType::INT_32, None),
    })
}

fn tensor_def(
    name: &str,
    desc: &TensorDesc,
    tensor_type: TensorType,
    op: OpKind,
) -> Result<TensorDef> {
    let (data_type, quant) = qnn_type(desc, name, op)?;
    let dims = desc
        .shape
        .iter()
        .map(|&d| u32::try_from(d))
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| QnnError::Unsupported {
            node: name.to_string(),
            op: op.to_string(),
            detail: format!("dimension of {desc} exceeds 32 bits"),
        })?;
    Ok(TensorDef {
        name: cstring(name)?,
        tensor_type,
        data_type,
        dims,
        quant,
        id: 0,
        static_data: None,
    })
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| QnnError::InvalidName {
        name: s.to_string(),
    })
}

/// Test builds only: `SHADOWATTN_QNN_MISENCODE=<QNN op type>` encodes that op with a parameter
/// HTP does not know — an encoding bug of the kind `backendValidateOpConfig` refuses — so tests
/// can check that the conformance suite fails on it instead of counting skips.
#[cfg(feature = "fault-injection")]
fn misencode(type_name: &std::ffi::CStr, mut params: Vec<ParamDef>) -> Vec<ParamDef> {
    let wanted = std::env::var("SHADOWATTN_QNN_MISENCODE").unwrap_or_default();
    if type_name.to_str() == Ok(wanted.as_str()) {
        params.push(ParamDef::U32(c"misencoded_parameter".into(), 1));
    }
    params
}

/// The QNN op for an IR node; tensors are indices into the graph's value table.
fn op_def(graph: &Graph, node: &shadowattn_hal::Node) -> Result<OpDef> {
    let name = cstring(&node.name)?;
    let (type_name, params): (&std::ffi::CStr, Vec<ParamDef>) = match &node.op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => (
            c"MatMul",
            vec![
                ParamDef::Bool(c"transpose_in0".into(), *transpose_a),
                ParamDef::Bool(c"transpose_in1".into(), *transpose_b),
            ],
        ),
        Op::Requantize => (c"Convert", vec![]),
        Op::Quantize => (c"Quantize", vec![]),
        Op::Dequantize { .. } => (c"Dequantize", vec![]),
        Op::Softmax { axis, beta } => (
            c"Softmax",
            vec![
                ParamDef::U32(c"axis".into(), *axis as u32),
                ParamDef::F32(c"beta".into(), *beta),
            ],
        ),
        Op::TopK { k } => (c"TopK", vec![ParamDef::U32(c"k".into(), *k as u32)]),
        Op::Mul => (c"ElementWiseMultiply", vec![]),
        Op::Add => (c"ElementWiseAdd", vec![]),
        Op::Reshape { .. } => (c"Reshape", vec![]),
        Op::Transpose { perm } => {
            let data: Vec<u8> = perm
                .iter()
                .flat_map(|&p| (p as u32).to_ne_bytes())
                .collect();
            let perm_tensor = TensorDef {
                name: cstring(&format!("{}:perm", node.name))?,
                tensor_type: TensorType::STATIC,
                data_type: DataType::UINT_32,
                dims: vec![perm.len() as u32],
                quant: None,
                id: 0,
                static_data: Some(data),
            };
            (
                c"Transpose",
                vec![ParamDef::TensorU32(c"perm".into(), perm_tensor)],
            )
        }
        Op::Cast { .. } => (c"Cast", vec![]),
    };
    let _ = graph;
    #[cfg(feature = "fault-injection")]
    let params = misencode(type_name, params);
    Ok(OpDef {
        name,
        type_name: type_name.into(),
        params,
        inputs: node.inputs.iter().map(|v| v.index()).collect(),
        outputs: node.outputs.iter().map(|v| v.index()).collect(),
    })
}

/// Tensor definitions for every value of `graph` (inputs APP_WRITE, constants STATIC with their
/// data, outputs APP_READ, others NATIVE).
fn value_defs(graph: &Graph) -> Result<Vec<TensorDef>> {
    let producer_op = |i: usize| {
        graph
            .nodes()
            .iter()
            .find(|n| n.inputs.iter().chain(&n.outputs).any(|v| v.index() == i))
            .map(|n| n.op.kind())
            .unwrap_or(OpKind::Reshape)
    };
    graph
        .values()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let id = shadowattn_hal::ValueId(i as u32);
            let constant = graph.constant(id);
            let tt = if graph.inputs().contains(&id) {
                TensorType::APP_WRITE
            } else if constant.is_some() {
                TensorType::STATIC
            } else if graph.outputs().contains(&id) {
                TensorType::APP_READ
            } else {
                TensorType::NATIVE
            };
            let mut def = tensor_def(&v.name, &v.desc, tt, producer_op(i))?;
            def.static_data = constant.map(<[u8]>::to_vec);
            Ok(def)
        })
        .collect()
}

/// The QNN backend: Qualcomm's HTP library behind the HAL.
#[derive(Debug)]
pub struct QnnBackend {
    shared: Arc<Shared>,
    capabilities: OnceLock<Capabilities>,
    version: String,
}

impl QnnBackend {
    /// Opens the library (or reuses the process's one) and creates a backend and device.
    pub fn open(options: QnnOptions) -> Result<Self> {
        let lib = QnnLibrary::find(options.library.as_deref())?;
        let level = if std::env::var_os(crate::loader::ENV_VERBOSE).is_some() {
            LogLevel::DEBUG
        } else {
            LogLevel::WARN
        };
        let log = calls::log_create(&lib, level)?;
        let backend = match calls::backend_create(&lib, log) {
            Ok(b) => b,
            Err(e) => {
                let _ = calls::log_free(&lib, log);
                return Err(e);
            }
        };
        let device = match calls::device_create(&lib, log, options.soc_model, options.arch) {
            Ok(d) => d,
            Err(e) => {
                let _ = calls::backend_free(&lib, backend);
                let _ = calls::log_free(&lib, log);
                return Err(e);
            }
        };
        let api = lib.api_version();
        let build = calls::backend_build_id(&lib).unwrap_or_default();
        let version = format!(
            "core API {}.{}.{}, HTP API {}.{}.{}, build {build}",
            api.core.major,
            api.core.minor,
            api.core.patch,
            api.backend.major,
            api.backend.minor,
            api.backend.patch
        );
        Ok(QnnBackend {
            shared: Arc::new(Shared {
                lib,
                log,
                backend,
                device,
                lock: Mutex::new(()),
                options,
            }),
            capabilities: OnceLock::new(),
            version,
        })
    }

    /// The library in use.
    pub fn library(&self) -> &QnnLibrary {
        &self.shared.lib
    }

    /// Options in effect.
    pub fn options(&self) -> &QnnOptions {
        &self.shared.options
    }

    fn graph_options(&self) -> GraphOptions {
        let o = &self.shared.options;
        GraphOptions {
            precision: o.precision.map(|p| match p {
                Precision::Fp32 => 0,
                Precision::Fp16 => 1,
            }),
            vtcm_mb: o.vtcm_mb,
            optimization_level: o.optimization_level,
        }
    }

    /// Whether QNN accepts `node` of `graph` (backendValidateOpConfig).
    fn validate_node(
        &self,
        graph: &Graph,
        node: &shadowattn_hal::Node,
        defs: &mut [TensorDef],
    ) -> Result<()> {
        let mut op = op_def(graph, node)?;
        let _g = self.shared.lock();
        calls::validate_op(&self.shared.lib, self.shared.backend, &mut op, defs).map_err(
            |e| match e {
                QnnError::Call { code, message, .. } => QnnError::Unsupported {
                    node: node.name.clone(),
                    op: node.op.kind().to_string(),
                    detail: format!(
                        "backendValidateOpConfig refused it (QNN error {code}: {message})"
                    ),
                },
                other => other,
            },
        )
    }

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
        let handle = calls::graph_create(lib, context.handle, &name, &self.graph_options())?;
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
        let estimate = estimate_from(&finalize_events);
        let mut compile_events = vec![timed_event(
            format!("qnn finalize {}", graph.name()),
            EventKind::Compile,
            "compile",
            &finalize_events,
            ProfileEventType::FINALIZE,
            wall_ns,
        )];
        if let Some(e) = estimate {
            compile_events.push(ProfileEvent {
                name: format!(
                    "qnn estimate {} ({} cycles, {}..{})",
                    graph.name(),
                    e.cycles,
                    e.cycles_lower,
                    e.cycles_upper
                ),
                kind: EventKind::Launch,
                track: track::NPU.into(),
                start_ns: 0,
                duration_ns: e.micros * 1000,
                cycles: Some(e.cycles),
                source: FigureSource::VendorEstimate,
            });
        }
        drop(_g);
        let io = io_defs(graph, &defs);
        Ok(QnnGraph::new(
            graph.clone(),
            compile_events,
            QnnProgram {
                context,
                graph_handle: handle,
                io,
                estimate,
            },
        ))
    }
}

fn io_defs(graph: &Graph, defs: &[TensorDef]) -> Vec<TensorDef> {
    graph
        .inputs()
        .iter()
        .chain(graph.outputs())
        .map(|v| defs[v.index()].clone())
        .collect()
}

impl NpuBackend for QnnBackend {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
            .get_or_init(|| self.probe_capabilities())
            .clone()
    }

    fn check_support(&self, graph: &Graph) -> shadowattn_hal::Result<()> {
        graph.validate()?;
        let mut defs = value_defs(graph)?;
        for node in graph.nodes() {
            self.validate_node(graph, node, &mut defs)?;
        }
        Ok(())
    }

    fn compile(&self, graph: &Graph) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        Ok(Box::new(self.compile_qnn(graph)?))
    }

    fn deserialize(&self, bytes: &[u8]) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        Ok(Box::new(self.load_qnn(bytes)?))
    }
}

/// The probe graph of `op` taking inputs of type `input` to an output of type `output`, or
/// `None` where the IR itself has no such node.
fn probe_graph(op: OpKind, input: DType, output: DType) -> Option<Graph> {
    use shadowattn_hal::{GraphBuilder, OutType};
    let quant = |d: DType| match d {
        DType::F32 | DType::F16 => Quantization::None,
        DType::I32 => Quantization::per_tensor(0.01, 0),
        DType::U8 | DType::U16 => Quantization::per_tensor(0.05, 8),
        _ => Quantization::per_tensor(0.05, 0),
    };
    // The output forms the IR may accept for this type: plain, or quantized per tensor.
    let outs = [
        OutType::plain(output),
        OutType {
            dtype: output,
            quant: quant(output),
        },
    ];
    outs.into_iter().find_map(|out| {
        let mut b = GraphBuilder::new("probe");
        let desc =
            |shape: &[usize]| TensorDesc::new(input, shape.to_vec()).with_quant(quant(input));
        let x = b.input("x", desc(&[1, 1, 4, 8])).ok()?;
        let y = match op {
            OpKind::MatMul => {
                let w = b.input("w", desc(&[1, 1, 4, 8])).ok()?;
                b.matmul("op", x, w, false, true, out).ok()?
            }
            OpKind::Requantize => b.requantize("op", x, out).ok()?,
            OpKind::Quantize => b.quantize("op", x, out).ok()?,
            OpKind::Dequantize => b.dequantize("op", x, output).ok()?,
            OpKind::Softmax => b.softmax("op", x, 3, 1.0).ok()?,
            OpKind::TopK => b.topk("op", x, 2).ok()?.0,
            OpKind::Mul => b.mul("op", x, x, out).ok()?,
            OpKind::Add => b.add("op", x, x, out).ok()?,
            OpKind::Reshape => b.reshape("op", x, &[1, 4, 8]).ok()?,
            OpKind::Transpose => b.transpose("op", x, &[0, 1, 3, 2]).ok()?,
            OpKind::Cast => b.cast("op", x, output).ok()?,
        };
        (b.desc(y).ok()?.dtype == output).then_some(())?;
        b.output(y).ok()?;
        b.build().ok()
    })
}

impl QnnBackend {
    /// Every (op, input type, output type) the IR can express, put to backendValidateOpConfig.
    fn probe_capabilities(&self) -> Capabilities {
        let mut ops: BTreeMap<OpKind, BTreeSet<Signature>> = BTreeMap::new();
        for op in OpKind::ALL {
            for input in DType::ALL {
                for output in DType::ALL {
                    let Some(graph) = probe_graph(op, input, output) else {
                        continue;
                    };
                    let Ok(mut defs) = value_defs(&graph) else {
                        continue;
                    };
                    let ok = graph
                        .nodes()
                        .iter()
                        .all(|n| self.validate_node(&graph, n, &mut defs).is_ok());
                    if ok {
                        ops.entry(op)
                            .or_default()
                            .insert(Signature { input, output });
                    }
                }
            }
        }
        Capabilities {
            ops,
            per_axis_quantization: false,
            serialization: true,
            max_rank: 5,
            // HTP computes f32 graphs in f16 (the emulator inserts casts).
            relaxed_f32: true,
        }
    }
}

/// A graph finalized by QNN.
pub type QnnGraph = Compiled<QnnProgram>;

/// What QNN keeps of a finalized graph: its own context, its handle, the tensors of its inputs
/// and outputs, and Qualcomm's estimate.
#[derive(Debug)]
pub struct QnnProgram {
    context: Context,
    graph_handle: RawHandle,
    io: Vec<TensorDef>,
    estimate: Option<VendorEstimate>,
}

impl QnnProgram {
    /// Qualcomm's cost-model estimate, when the SoC model has one.
    pub fn estimate(&self) -> Option<VendorEstimate> {
        self.estimate
    }
}

const CONTAINER_MAGIC: &[u8; 8] = b"SAQNNCTX";

#[derive(Serialize, Deserialize)]
/// Version 2: the IR graph in its binary form (`graph_bytes` long) between this header and the
/// context binary (version 1 carried it in the header, constants as hex).
struct ContainerHeader {
    version: u32,
    soc_model: Option<u32>,
    graph_bytes: u64,
    io_ids: Vec<u32>,
    estimate: Option<VendorEstimate>,
}

const CONTAINER_VERSION: u32 = 2;

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
        let shared = &self.context.shared;
        let binary = {
            let _g = shared.lock();
            calls::context_binary(&shared.lib, self.context.handle)?
        };
        let graph_bytes = graph.to_bytes();
        let header = ContainerHeader {
            version: CONTAINER_VERSION,
            soc_model: shared.options.soc_model,
            graph_bytes: graph_bytes.len() as u64,
            io_ids: self.io.iter().map(|d| d.id).collect(),
            estimate: self.estimate,
        };
        let json = serde_json::to_vec(&header)
            .map_err(|e| HalError::invalid_argument("graph", e.to_string()))?;
        let mut out = CONTAINER_MAGIC.to_vec();
        out.extend((json.len() as u64).to_le_bytes());
        out.extend(json);
        out.extend(graph_bytes);
        out.extend(binary);
        Ok(out)
    }
}

impl QnnBackend {
    /// Loads a graph serialized by [`CompiledGraph::serialize`] (a QNN context binary).
    pub fn load_qnn(&self, bytes: &[u8]) -> Result<QnnGraph> {
        let bad = |detail: String| QnnError::Deserialize { detail };
        let rest = bytes
            .strip_prefix(CONTAINER_MAGIC.as_slice())
            .ok_or_else(|| bad("bad magic".into()))?;
        if rest.len() < 8 {
            return Err(bad("truncated".into()));
        }
        let (len, rest) = rest.split_at(8);
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        if rest.len() < len {
            return Err(bad("truncated header".into()));
        }
        let (json, rest) = rest.split_at(len);
        let header: ContainerHeader =
            serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        if header.version != CONTAINER_VERSION {
            return Err(bad(format!(
                "container version {} is not {CONTAINER_VERSION}; compile the graph again",
                header.version
            )));
        }
        let graph_len = usize::try_from(header.graph_bytes)
            .ok()
            .filter(|&l| l <= rest.len())
            .ok_or_else(|| bad("truncated graph".into()))?;
        let (graph_bytes, binary) = rest.split_at(graph_len);
        let graph = Graph::from_bytes(graph_bytes)?;
        if header.soc_model != self.shared.options.soc_model {
            return Err(bad(format!(
                "compiled for SoC model {:?}, this backend targets {:?}; context binaries are SoC specific",
                header.soc_model, self.shared.options.soc_model
            )));
        }
        let defs = value_defs(&graph)?;
        let mut io = io_defs(&graph, &defs);
        if io.len() != header.io_ids.len() {
            return Err(bad("tensor ids do not match the graph".into()));
        }
        for (d, &id) in io.iter_mut().zip(&header.io_ids) {
            d.id = id;
        }
        let shared = &self.shared;
        // Declared before the guard: see `compile_qnn`.
        let context: Context;
        let _g = shared.lock();
        context = Context {
            shared: shared.clone(),
            handle: calls::context_from_binary(&shared.lib, shared.backend, shared.device, binary)?,
        };
        let name = cstring(graph.name())?;
        let graph_handle = calls::graph_retrieve(&shared.lib, context.handle, &name)?;
        drop(_g);
        Ok(QnnGraph::new(
            graph,
            Vec::new(),
            QnnProgram {
                context,
                graph_handle,
                io,
                estimate: header.estimate,
            },
        ))
    }
}
