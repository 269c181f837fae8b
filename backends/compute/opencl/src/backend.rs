//! The HAL compute backend on OpenCL: quantization, causal top-k, sparse and dense attention.

use crate::device::{self, Device, Selector};
use crate::error::{OpenClError, Result, BACKEND_NAME};
use crate::loader::OpenClLibrary;
use crate::runtime::{build_program, Arg, GpuEvent, Runtime};
use shadowattn_hal::compute::{check_dense_call, check_quantize_call, check_sparse_call};
use shadowattn_hal::{
    AttentionInputs, ComputeBackend, ComputeCapabilities, DType, HalError, HeadsView, KeyBudget,
    ProfileEvent, QuantizedHeads, ScoreData, ScoreMatrix, Selection,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// The OpenCL C source of every kernel.
pub const KERNEL_SOURCE: &str = include_str!("kernels.cl");
const KERNELS: [&str; 4] = ["absmax_heads", "quantize_heads", "topk_rows", "attend"];
/// Largest default work-group: enough lanes for a tile of keys, small enough for mobile GPUs.
const DEFAULT_WORK_GROUP_CAP: usize = 128;

/// How K and V are stored on the device (accumulation is always f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// f16 where the device has `cl_khr_fp16`, else f32.
    #[default]
    Auto,
    /// f32.
    F32,
    /// f16 (halves K/V transfers); needs `cl_khr_fp16`.
    F16,
}

/// How to open the backend.
#[derive(Clone, Debug, Default)]
pub struct OpenClOptions {
    /// The OpenCL library; `None` searches `SHADOWATTN_OPENCL_LIB`, then the usual names.
    pub library: Option<PathBuf>,
    /// Which platform (index or part of its name); `None` for any.
    pub platform: Option<Selector>,
    /// Which device (index within the platform or part of its name); `None` prefers a GPU.
    pub device: Option<Selector>,
    /// K/V storage.
    pub storage: Storage,
    /// Work-group size of every kernel (a power of two within the device's limits); `None`
    /// chooses from the device limits.
    pub work_group_size: Option<usize>,
    /// Record queued/submit/start/end timestamps of every command (see `take_events`).
    pub profiling: bool,
    /// Largest single device buffer, bytes; `None` is the device's `CL_DEVICE_MAX_MEM_ALLOC_SIZE`
    /// (a smaller cap bounds the memory taken from a phone's shared RAM).
    pub max_buffer_bytes: Option<u64>,
    /// Use f16 storage through the core `vload_half` even without `cl_khr_fp16` (testing the
    /// f16 path on devices such as PoCL that lack the extension).
    #[doc(hidden)]
    pub f16_without_extension: bool,
}

/// The compute backend on one OpenCL device.
#[derive(Debug)]
pub struct OpenClBackend {
    lib: Arc<OpenClLibrary>,
    device: Device,
    f16_storage: bool,
    work_group_size: usize,
    track: String,
    runtime: Mutex<Runtime>,
    origin_ns: Mutex<Option<u64>>,
}

/// Every platform's devices found through the library (`options.library` or the search).
pub fn list_devices(
    library: Option<&std::path::Path>,
) -> Result<(Arc<OpenClLibrary>, Vec<Device>)> {
    let lib = OpenClLibrary::find(library)?;
    let devices = device::list(&lib)?;
    Ok((lib, devices))
}

impl OpenClBackend {
    /// Loads OpenCL, chooses the device, builds the kernels.
    pub fn open(options: OpenClOptions) -> Result<Self> {
        let (lib, devices) = list_devices(options.library.as_deref())?;
        let device = device::select(&devices, options.platform.as_ref(), options.device.as_ref())?;
        let f16_storage = match options.storage {
            Storage::F32 => false,
            Storage::Auto => device.has_fp16(),
            Storage::F16 if device.has_fp16() || options.f16_without_extension => true,
            Storage::F16 => {
                return Err(OpenClError::NoFp16 {
                    device: device.name.clone(),
                })
            }
        };
        let build_options = if f16_storage {
            "-cl-std=CL1.2 -DKV_HALF"
        } else {
            "-cl-std=CL1.2"
        };
        let runtime = Runtime::new(
            &lib,
            &device,
            KERNEL_SOURCE,
            build_options,
            &KERNELS,
            options.profiling,
            options
                .max_buffer_bytes
                .map_or(device.max_mem_alloc_size, |cap| {
                    cap.min(device.max_mem_alloc_size)
                }),
        )?;
        let mut kernel_limit = usize::try_from(device.max_work_group_size).unwrap_or(usize::MAX);
        for k in KERNELS {
            kernel_limit = kernel_limit.min(runtime.kernel_work_group_size(k)?);
        }
        let work_group_size = match options.work_group_size {
            Some(w) if !w.is_power_of_two() => {
                return Err(OpenClError::InvalidOption {
                    option: "work_group_size",
                    detail: format!("{w} is not a power of two (the kernels reduce in trees)"),
                })
            }
            Some(w) if w > kernel_limit => {
                return Err(OpenClError::InvalidOption {
                    option: "work_group_size",
                    detail: format!(
                        "{w} exceeds the {kernel_limit} work-items {} allows for these kernels",
                        device.name
                    ),
                })
            }
            Some(w) => w,
            None => {
                let cap = kernel_limit.clamp(1, DEFAULT_WORK_GROUP_CAP);
                1 << cap.ilog2()
            }
        };
        Ok(OpenClBackend {
            track: format!("opencl:{}", device.name),
            lib,
            device,
            f16_storage,
            work_group_size,
            runtime: Mutex::new(runtime),
            origin_ns: Mutex::new(None),
        })
    }

    /// The device in use.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The library in use.
    pub fn library(&self) -> &OpenClLibrary {
        &self.lib
    }

    /// Whether K and V are stored as f16.
    pub fn f16_storage(&self) -> bool {
        self.f16_storage
    }

    /// The work-group size of every launch.
    pub fn work_group_size(&self) -> usize {
        self.work_group_size
    }

    /// Bytes currently held in reusable device buffers.
    pub fn device_buffer_bytes(&self) -> usize {
        self.lock().buffer_bytes()
    }

    /// Builds more OpenCL C `source` for this device (to check that a kernel compiles here); a
    /// failure carries the compiler's log.
    pub fn build_source(&self, source: &str, options: &str) -> Result<()> {
        let rt = self.lock();
        build_program(&self.lib, rt.context(), &self.device, source, options).map(|_| ())
    }

    /// Raw device timestamps (queued, submit, start, end) of the commands since the last take;
    /// empty unless `profiling` was set. At most [`crate::MAX_KEPT_EVENTS`] are kept between takes.
    pub fn take_gpu_events(&self) -> Vec<GpuEvent> {
        self.lock().take_events().0
    }

    /// Commands since the last take whose timestamps were not kept (beyond [`crate::MAX_KEPT_EVENTS`]).
    pub fn take_gpu_events_counted(&self) -> (Vec<GpuEvent>, u64) {
        self.lock().take_events()
    }

    fn lock(&self) -> MutexGuard<'_, Runtime> {
        // A panic while holding the lock cannot leave the runtime inconsistent for later calls:
        // each call sets every argument and rewrites every buffer it reads.
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the runtime, then waits for its commands; on error, drops them.
    fn with_runtime<T>(&self, f: impl FnOnce(&mut Runtime) -> Result<T>) -> Result<T, HalError> {
        let mut rt = self.lock();
        match f(&mut rt).and_then(|v| rt.finish().map(|_| v)) {
            Ok(v) => Ok(v),
            Err(e) => {
                rt.abandon();
                Err(e.into())
            }
        }
    }

    fn kv_bytes(&self, name: &'static str, data: &[f32]) -> Result<Vec<u8>, HalError> {
        if !self.f16_storage {
            return Ok(bytemuck::cast_slice(data).to_vec());
        }
        let halves = shadowattn_hal::compute::kv_to_f16(name, data)?;
        Ok(bytemuck::cast_slice(&halves).to_vec())
    }

    fn check_u32(what: &str, n: usize) -> Result<u32, HalError> {
        u32::try_from(n).map_err(|_| {
            HalError::invalid_argument(
                what,
                format!("{n} exceeds the 32-bit index range of the kernels"),
            )
        })
    }

    fn attention(
        &self,
        inputs: AttentionInputs<'_>,
        selections: Option<&[Selection]>,
        out: &mut [f32],
    ) -> Result<(), HalError> {
        let s = inputs.shape();
        let d = s.head_dim;
        let wg = self.work_group_size;
        let local_bytes = (2 * d + 2 * wg) * 4;
        if local_bytes as u64 > self.device.local_mem_size {
            return Err(HalError::invalid_argument(
                "head_dim",
                format!(
                    "head_dim {d} needs {local_bytes} bytes of local memory per work-group; {} has {}",
                    self.device.name, self.device.local_mem_size
                ),
            ));
        }
        let (offsets, indices): (Vec<u32>, Vec<u32>) = match selections {
            Some(sels) => {
                let total: usize = sels.iter().map(Selection::kept).sum();
                Self::check_u32("selections", total)?;
                let mut offsets = Vec::with_capacity(s.q_heads * s.q_len + 1);
                let mut indices = Vec::with_capacity(total);
                offsets.push(0u32);
                for sel in sels {
                    for i in 0..s.q_len {
                        indices.extend_from_slice(sel.row(i));
                        offsets.push(indices.len() as u32);
                    }
                }
                (offsets, indices)
            }
            None => (vec![0], vec![0]),
        };
        let dims = [
            Self::check_u32("q_len", s.q_len)?,
            Self::check_u32("kv_len", s.kv_len)?,
            Self::check_u32("head_dim", d)?,
            Self::check_u32("q_heads / kv_heads", s.q_heads / s.kv_heads)?,
            Self::check_u32("q_offset", s.q_offset)?,
        ];
        Self::check_u32("q_heads × q_len", s.q_heads * s.q_len)?;
        let k = self.kv_bytes("k", inputs.k())?;
        let v = self.kv_bytes("v", inputs.v())?;
        self.with_runtime(|rt| {
            rt.upload("q", bytemuck::cast_slice(inputs.q()))?;
            rt.upload("k", &k)?;
            rt.upload("v", &v)?;
            rt.upload("offsets", bytemuck::cast_slice(&offsets))?;
            rt.upload("indices", bytemuck::cast_slice(&indices))?;
            rt.reserve("out", std::mem::size_of_val(out))?;
            rt.launch(
                "attend",
                &[
                    Arg::Buffer("q"),
                    Arg::Buffer("k"),
                    Arg::Buffer("v"),
                    Arg::Buffer("out"),
                    Arg::Buffer("offsets"),
                    Arg::Buffer("indices"),
                    Arg::U32(u32::from(selections.is_some())),
                    Arg::U32(dims[0]),
                    Arg::U32(dims[1]),
                    Arg::U32(dims[2]),
                    Arg::U32(dims[3]),
                    Arg::U32(dims[4]),
                    Arg::U32(u32::from(s.causal)),
                    Arg::F32(s.scale),
                    Arg::Local(d * 4),
                    Arg::Local(d * 4),
                    Arg::Local(wg * 4),
                    Arg::Local(wg * 4),
                ],
                s.q_heads * s.q_len,
                wg,
            )?;
            rt.download("out", bytemuck::cast_slice_mut(out))
        })
    }
}

impl ComputeBackend for OpenClBackend {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    fn capabilities(&self) -> ComputeCapabilities {
        ComputeCapabilities {
            kv_storage: if self.f16_storage {
                DType::F16
            } else {
                DType::F32
            },
        }
    }

    fn quantize_heads(
        &self,
        x: HeadsView<'_>,
        scales: Option<&[f32]>,
    ) -> Result<QuantizedHeads, HalError> {
        check_quantize_call(&x, scales)?;
        let per_head = Self::check_u32("rows × dim", x.rows() * x.dim())?;
        let total = Self::check_u32("heads × rows × dim", x.data().len())?;
        let wg = self.work_group_size;
        let mut data = vec![0i8; x.data().len()];
        let scales = self.with_runtime(|rt| {
            rt.upload("x", bytemuck::cast_slice(x.data()))?;
            let scales: Vec<f32> = match scales {
                Some(s) => s.to_vec(),
                None => {
                    rt.reserve("absmax", x.heads() * 4)?;
                    rt.launch(
                        "absmax_heads",
                        &[
                            Arg::Buffer("x"),
                            Arg::U32(per_head),
                            Arg::Buffer("absmax"),
                            Arg::Local(wg * 4),
                        ],
                        x.heads(),
                        wg,
                    )?;
                    let mut max = vec![0f32; x.heads()];
                    rt.download("absmax", bytemuck::cast_slice_mut(&mut max))?;
                    // The scale rule in f32 on the host, bit-identical to the golden backend.
                    max.iter()
                        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
                        .collect()
                }
            };
            rt.upload("scales", bytemuck::cast_slice(&scales))?;
            rt.reserve("quantized", x.data().len())?;
            rt.launch(
                "quantize_heads",
                &[
                    Arg::Buffer("x"),
                    Arg::Buffer("scales"),
                    Arg::U32(per_head),
                    Arg::U32(total),
                    Arg::Buffer("quantized"),
                ],
                x.data().len().div_ceil(wg),
                wg,
            )?;
            rt.download("quantized", bytemuck::cast_slice_mut(&mut data))?;
            Ok(scales)
        })?;
        QuantizedHeads::new(data, scales, x.rows(), x.dim())
    }

    fn topk(&self, scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection, HalError> {
        budget.validate()?;
        let cols = Self::check_u32("cols", scores.cols())?;
        let q_offset = Self::check_u32("q_offset", scores.q_offset())?;
        let rows = scores.rows();
        let mut row_k = Vec::with_capacity(rows);
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0usize);
        for i in 0..rows {
            let valid = scores.valid_keys(i);
            scores.ordered_row(i)?;
            let k = budget.keys_for(i, valid)?;
            row_k.push(k as u32);
            offsets.push(offsets[i] + k);
        }
        let total = *offsets.last().expect("rows + 1 offsets");
        Self::check_u32("selected keys", total)?;
        let row_start: Vec<u32> = offsets[..rows].iter().map(|&o| o as u32).collect();
        let (kind, raw): (u32, &[u8]) = match scores.data() {
            ScoreData::F32(d) => (0, bytemuck::cast_slice(d)),
            ScoreData::I32(d) => (1, bytemuck::cast_slice(d)),
            ScoreData::I8(d) => (2, bytemuck::cast_slice(d)),
            ScoreData::F16(d) => (3, bytemuck::cast_slice(d)),
        };
        let wg = self.work_group_size;
        let mut indices = vec![0u32; total];
        self.with_runtime(|rt| {
            rt.upload("scores", raw)?;
            rt.upload("row_k", bytemuck::cast_slice(&row_k))?;
            rt.upload("row_start", bytemuck::cast_slice(&row_start))?;
            rt.reserve("selected", total * 4)?;
            rt.launch(
                "topk_rows",
                &[
                    Arg::Buffer("scores"),
                    Arg::U32(kind),
                    Arg::U32(cols),
                    Arg::U32(q_offset),
                    Arg::U32(u32::from(scores.is_causal())),
                    Arg::Buffer("row_k"),
                    Arg::Buffer("row_start"),
                    Arg::Buffer("selected"),
                    Arg::Local(2 * wg * 4),
                ],
                rows,
                wg,
            )?;
            rt.download("selected", bytemuck::cast_slice_mut(&mut indices))
        })?;
        Selection::from_parts(offsets, indices)
    }

    fn sparse_attention(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<(), HalError> {
        check_sparse_call(&inputs, selections, out)?;
        self.attention(inputs, Some(selections), out)
    }

    fn dense_attention(
        &self,
        inputs: AttentionInputs<'_>,
        out: &mut [f32],
    ) -> Result<(), HalError> {
        check_dense_call(&inputs, out)?;
        self.attention(inputs, None, out)
    }

    fn take_events(&self) -> Vec<ProfileEvent> {
        let events = self.take_gpu_events();
        let mut origin = self.origin_ns.lock().unwrap_or_else(|p| p.into_inner());
        let Some(first) = events.iter().map(|e| e.queued_ns).min() else {
            return Vec::new();
        };
        let origin = *origin.get_or_insert(first);
        events
            .iter()
            .flat_map(|e| e.to_profile_events(&self.track, origin))
            .collect()
    }
}
