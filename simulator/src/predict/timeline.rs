//! Chrome Trace Event JSON export of profiling events (opens in Perfetto and chrome://tracing).
//!
//! Every distinct event track becomes a thread of one process, named after the track; NPU tracks
//! sort first, then CPU cores, then the rest. Events are complete events (`"ph": "X"`) with
//! timestamps in microseconds.

use serde_json::{json, Value};
use shadowattn_hal::track;
use shadowattn_hal::{EventKind, FigureSource, ProfileEvent};
use std::path::Path;

fn kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::Compile => "compile",
        EventKind::Launch => "launch",
        EventKind::Transfer => "transfer",
        EventKind::ComputeStage => "compute",
    }
}

fn source_name(s: FigureSource) -> &'static str {
    match s {
        FigureSource::Measured => "measured",
        FigureSource::Simulated => "simulated",
        FigureSource::VendorEstimate => "vendor estimate",
    }
}

fn track_rank(track: &str) -> (u8, String) {
    let group = if track::is_npu(track) {
        0
    } else if track::is_cpu(track) {
        1
    } else {
        2
    };
    (group, track.to_string())
}

/// The trace as a JSON value.
pub fn chrome_trace(events: &[ProfileEvent]) -> Value {
    let mut tracks: Vec<&str> = events.iter().map(|e| e.track.as_str()).collect();
    tracks.sort_by_key(|t| track_rank(t));
    tracks.dedup();
    let tid = |t: &str| tracks.iter().position(|x| *x == t).expect("track listed") + 1;
    let mut out = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": "shadowattn" }
    })];
    for (i, t) in tracks.iter().enumerate() {
        out.push(json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": i + 1,
            "args": { "name": t }
        }));
        out.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": i + 1,
            "args": { "sort_index": i }
        }));
    }
    for e in events {
        let mut args = json!({ "source": source_name(e.source) });
        if let Some(c) = e.cycles {
            args["cycles"] = json!(c);
        }
        out.push(json!({
            "name": e.name,
            "cat": kind_name(e.kind),
            "ph": "X",
            "ts": e.start_ns as f64 / 1e3,
            "dur": e.duration_ns as f64 / 1e3,
            "pid": 1,
            "tid": tid(&e.track),
            "args": args,
        }));
    }
    json!({ "traceEvents": out, "displayTimeUnit": "ns" })
}

/// Writes the trace to `path`.
pub fn write_chrome_trace(path: &Path, events: &[ProfileEvent]) -> std::io::Result<()> {
    let text = serde_json::to_string(&chrome_trace(events)).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
