//! The prefill's timeline under construction.

use shadowattn_hal::track;
use shadowattn_hal::{EventKind, FigureSource, ProfileEvent};

/// A timeline under construction on a clock of whole nanoseconds (so that nested slices nest
/// exactly); the stage totals are kept unrounded beside it.
pub(super) struct Trace {
    pub(super) on: bool,
    pub(super) cores: usize,
    pub(super) now: u64,
    pub(super) events: Vec<ProfileEvent>,
}

impl Trace {
    pub(super) fn new(on: bool, cores: usize) -> Self {
        Trace {
            on,
            cores,
            now: 0,
            events: Vec::new(),
        }
    }

    pub(super) fn tracks(&self, npu: bool) -> Vec<String> {
        let cpus = (0..self.cores).map(track::cpu);
        if npu {
            std::iter::once(track::NPU.to_string())
                .chain(cpus)
                .collect()
        } else {
            cpus.collect()
        }
    }

    pub(super) fn push(
        &mut self,
        name: &str,
        kind: EventKind,
        track: String,
        start: u64,
        end: u64,
    ) {
        if self.on && end > start {
            self.events.push(ProfileEvent {
                name: name.to_string(),
                kind,
                track,
                start_ns: start,
                duration_ns: end - start,
                cycles: None,
                source: FigureSource::Simulated,
            });
        }
    }

    /// A step of `ns` from now on the NPU (`npu`) or spread over every core; advances the clock.
    pub(super) fn step(&mut self, name: &str, npu: bool, ns: f64) {
        let (start, end) = (self.now, self.now + ns.round() as u64);
        let kind = if npu {
            EventKind::Launch
        } else {
            EventKind::ComputeStage
        };
        let tracks = if npu {
            vec![track::NPU.to_string()]
        } else {
            self.tracks(false)
        };
        for track in tracks {
            self.push(name, kind, track, start, end);
        }
        self.now = end;
    }

    /// Events timed from now (a planned attention pipeline); advances the clock by `ns`.
    pub(super) fn extend(&mut self, events: &[ProfileEvent], ns: f64) {
        if self.on {
            let origin = self.now;
            self.events.extend(events.iter().map(|e| ProfileEvent {
                start_ns: e.start_ns + origin,
                ..e.clone()
            }));
        }
        self.now += ns.round() as u64;
    }

    /// `name` from `start` to now on the NPU track and every core's (a chunk or a layer).
    pub(super) fn span(&mut self, name: &str, start: u64) {
        for track in self.tracks(true) {
            self.push(name, EventKind::ComputeStage, track, start, self.now);
        }
    }

    /// The events, parents before their children.
    pub(super) fn finish(mut self) -> Vec<ProfileEvent> {
        self.events.sort_by(|a, b| {
            (a.start_ns, std::cmp::Reverse(a.duration_ns))
                .cmp(&(b.start_ns, std::cmp::Reverse(b.duration_ns)))
        });
        self.events
    }
}
