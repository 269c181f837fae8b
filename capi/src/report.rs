//! The report of one chunk: what happened to each head (its bucket, kept keys, fallback), the
//! launches, measured and simulated times, the selected keys, and the profiling events for
//! the caller's own timeline.

use crate::error::{c_text, guard, shadowattn_status, ApiError};
use crate::sys;
use shadowattn_hal::{EventKind, FigureSource};
use shadowattn_sparse_attn::pilot::{GroupRanking, PilotUnit};
use shadowattn_sparse_attn::shadow::{ChunkMode, ChunkResult, HeadPath};
use std::ffi::{c_char, CString};

/// The head ran the pilot, top-k and sparse attention.
pub const SHADOWATTN_HEAD_SPARSE: u32 = 0;
/// The head ran dense attention as asked (a decode step).
pub const SHADOWATTN_HEAD_DENSE: u32 = 1;
/// The head fell back to dense attention (its launch failed, or there is no bank).
pub const SHADOWATTN_HEAD_FALLBACK: u32 = 2;

/// The chunk ran shadowAttn.
pub const SHADOWATTN_CHUNK_SPARSE: u32 = 0;
/// The chunk was a decode step and ran dense.
pub const SHADOWATTN_CHUNK_DENSE_DECODE: u32 = 1;
/// The chunk ran dense because the graph bank could not be built.
pub const SHADOWATTN_CHUNK_DENSE_NO_BANK: u32 = 2;

/// The pilot's launch unit was one query head.
pub const SHADOWATTN_PILOT_UNIT_HEAD: u32 = 0;
/// The pilot's launch unit was one GQA group; the CPU summed its heads' probabilities.
pub const SHADOWATTN_PILOT_UNIT_GROUP_CPU_RANKED: u32 = 1;
/// The pilot's launch unit was one GQA group; the NPU summed its heads' probabilities.
pub const SHADOWATTN_PILOT_UNIT_GROUP_NPU_RANKED: u32 = 2;

/// What happened to one head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct shadowattn_head_info {
    /// Query head.
    pub head: u32,
    /// `SHADOWATTN_HEAD_SPARSE`, `_DENSE` or `_FALLBACK`.
    pub path: u32,
    /// The scale bucket its pilot ran in (sparse heads; 0 otherwise).
    pub bucket: u32,
    /// Keys kept over all its rows.
    pub kept: u32,
    /// Its actual Q scale in this chunk.
    pub q_scale: f32,
    /// Its KV head's actual K scale in this chunk.
    pub k_scale: f32,
    /// Its calibrated fraction of keys kept.
    pub ratio: f32,
}

const _: () = assert!(std::mem::size_of::<shadowattn_head_info>() == 28);

/// Times of one chunk, ns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct shadowattn_times {
    /// Wall time of the call on this machine.
    pub measured_ns: u64,
    /// The plan's projected layer time under the context's cost model (the simulator's, for a
    /// `sim:` NPU); 0 for dense chunks.
    pub projected_ns: u64,
    /// Simulated NPU time of the launches (events the simulator reported); 0 elsewhere.
    pub simulated_npu_ns: u64,
}

/// One profiling event. Its strings live as long as the report.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shadowattn_event {
    /// What happened.
    pub name: *const c_char,
    /// The engine (`npu`, `launcher`, `cpu0`, …).
    pub track: *const c_char,
    /// 0 compile, 1 launch, 2 transfer, 3 compute stage.
    pub kind: u32,
    /// 0 measured here, 1 simulated, 2 a vendor's estimate.
    pub source: u32,
    /// Start, ns, from the reporter's own origin.
    pub start_ns: u64,
    /// Duration, ns.
    pub duration_ns: u64,
    /// Engine cycles, or `UINT64_MAX` when the source gives none.
    pub cycles: u64,
}

const _: () = assert!(std::mem::size_of::<shadowattn_event>() == 48);

/// The report of one chunk (opaque, immutable: readable from any thread).
pub struct shadowattn_report {
    result: ChunkResult,
    measured_ns: u64,
    fallback: Option<CString>,
    strings: Vec<(CString, CString)>,
}

impl shadowattn_report {
    pub(crate) fn new(result: ChunkResult, measured_ns: u64) -> Self {
        let fallback = result.fallback().map(|f| c_text(&f));
        let strings = result
            .events
            .iter()
            .map(|e| (c_text(&e.name), c_text(&e.track)))
            .collect();
        shadowattn_report {
            result,
            measured_ns,
            fallback,
            strings,
        }
    }
}

impl shadowattn_report {
    /// The selected keys of every head.
    pub(crate) fn selections(&self) -> &[shadowattn_hal::Selection] {
        &self.result.selections
    }
}

/// Frees a report (NULL is ignored).
#[no_mangle]
pub extern "C" fn shadowattn_report_free(report: *mut shadowattn_report) {
    let _ = guard(|| {
        sys::free(report);
        Ok(())
    });
}

/// How the chunk ran: `SHADOWATTN_CHUNK_SPARSE`, `_DENSE_DECODE` or `_DENSE_NO_BANK` into `*out`.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn shadowattn_report_mode(
    report: *const shadowattn_report,
    out: *mut u32,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        let mode = match r.result.mode {
            ChunkMode::Sparse => SHADOWATTN_CHUNK_SPARSE,
            ChunkMode::DenseDecode => SHADOWATTN_CHUNK_DENSE_DECODE,
            ChunkMode::DenseNoBank { .. } => SHADOWATTN_CHUNK_DENSE_NO_BANK,
        };
        sys::put(out, mode, "out")
    })
}

/// Heads of the chunk into `*heads`, fused NPU launches into `*launches`.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn shadowattn_report_counts(
    report: *const shadowattn_report,
    heads: *mut usize,
    launches: *mut usize,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        sys::put(heads, r.result.heads.len(), "heads")?;
        sys::put(launches, r.result.launches.len(), "launches")
    })
}

/// Which pilot ran: `SHADOWATTN_PILOT_UNIT_HEAD`, `_GROUP_CPU_RANKED` or `_GROUP_NPU_RANKED`
/// into `*unit`, and the query heads of one launch unit into `*unit_heads` (dense chunks report
/// the per-head unit).
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn shadowattn_report_pilot(
    report: *const shadowattn_report,
    unit: *mut u32,
    unit_heads: *mut usize,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        let kind = match r.result.unit {
            PilotUnit::Head => SHADOWATTN_PILOT_UNIT_HEAD,
            PilotUnit::Group {
                ranking: GroupRanking::Cpu,
                ..
            } => SHADOWATTN_PILOT_UNIT_GROUP_CPU_RANKED,
            PilotUnit::Group {
                ranking: GroupRanking::Npu { .. },
                ..
            } => SHADOWATTN_PILOT_UNIT_GROUP_NPU_RANKED,
        };
        sys::put(unit, kind, "unit")?;
        sys::put(unit_heads, r.result.unit.heads(), "unit_heads")
    })
}

/// What happened to query head `head`, into `*out`.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_INVALID_ARGUMENT` (no such head).
#[no_mangle]
pub extern "C" fn shadowattn_report_head(
    report: *const shadowattn_report,
    head: usize,
    out: *mut shadowattn_head_info,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        let h =
            r.result.heads.get(head).ok_or_else(|| {
                ApiError::invalid(format!("head {head} of {}", r.result.heads.len()))
            })?;
        let (path, bucket) = match h.path {
            HeadPath::Sparse { bucket } => (SHADOWATTN_HEAD_SPARSE, bucket as u32),
            HeadPath::Dense => (SHADOWATTN_HEAD_DENSE, 0),
            HeadPath::Fallback => (SHADOWATTN_HEAD_FALLBACK, 0),
        };
        let info = shadowattn_head_info {
            head: h.head as u32,
            path,
            bucket,
            kept: h.kept as u32,
            q_scale: h.q_scale,
            k_scale: h.k_scale,
            ratio: h.ratio,
        };
        sys::put(out, info, "out")
    })
}

/// Why heads fell back to dense attention, into `buf` of `len` bytes (an empty string when
/// none did); `*needed` (if not NULL) gets the size needed, NUL included.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_BUFFER_TOO_SMALL`.
#[no_mangle]
pub extern "C" fn shadowattn_report_fallback(
    report: *const shadowattn_report,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        let text = r
            .fallback
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        sys::write_text(buf, len, needed, &text)
    })
}

/// The chunk's times, into `*out`.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn shadowattn_report_times(
    report: *const shadowattn_report,
    out: *mut shadowattn_times,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        let t = r.result.times(r.measured_ns);
        let times = shadowattn_times {
            measured_ns: t.measured_ns,
            projected_ns: t.projected_ns,
            simulated_npu_ns: t.simulated_npu_ns,
        };
        sys::put(out, times, "out")
    })
}

/// The keys query row `row` of head `head` kept, ascending: `*keys` points into the report
/// (valid until it is freed) and `*count` gets their number.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_INVALID_ARGUMENT` (no such head
/// or row).
#[no_mangle]
pub extern "C" fn shadowattn_report_selection(
    report: *const shadowattn_report,
    head: usize,
    row: usize,
    keys: *mut *const u32,
    count: *mut usize,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        let sel = r.result.selections.get(head).ok_or_else(|| {
            ApiError::invalid(format!("head {head} of {}", r.result.selections.len()))
        })?;
        if row >= sel.rows() {
            return Err(ApiError::invalid(format!("row {row} of {}", sel.rows())));
        }
        let kept = sel.row(row);
        sys::put(keys, kept.as_ptr(), "keys")?;
        sys::put(count, kept.len(), "count")
    })
}

/// Number of profiling events of the chunk (the NPU backend's, the launcher's measured launches,
/// the measured CPU steps), into `*out`.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn shadowattn_report_event_count(
    report: *const shadowattn_report,
    out: *mut usize,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        sys::put(out, r.result.events.len(), "out")
    })
}

/// Event `index` of the chunk, into `*out` (its strings live as long as the report).
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_INVALID_ARGUMENT` (no such event).
#[no_mangle]
pub extern "C" fn shadowattn_report_event(
    report: *const shadowattn_report,
    index: usize,
    out: *mut shadowattn_event,
) -> shadowattn_status {
    guard(|| {
        let r = sys::get(report, "report")?;
        let e = r.result.events.get(index).ok_or_else(|| {
            ApiError::invalid(format!("event {index} of {}", r.result.events.len()))
        })?;
        let (name, track) = &r.strings[index];
        let event = shadowattn_event {
            name: name.as_ptr(),
            track: track.as_ptr(),
            kind: match e.kind {
                EventKind::Compile => 0,
                EventKind::Launch => 1,
                EventKind::Transfer => 2,
                EventKind::ComputeStage => 3,
            },
            source: match e.source {
                FigureSource::Measured => 0,
                FigureSource::Simulated => 1,
                FigureSource::VendorEstimate => 2,
            },
            start_ns: e.start_ns,
            duration_ns: e.duration_ns,
            cycles: e.cycles.unwrap_or(u64::MAX),
        };
        sys::put(out, event, "out")
    })
}
