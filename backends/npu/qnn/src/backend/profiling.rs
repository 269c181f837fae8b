//! QNN's profile events read as HAL events: QNN's own duration where it reports one.

use crate::sys::calls::Event;
use crate::sys::ProfileEventType;
use shadowattn_hal::{EventKind, FigureSource, ProfileEvent};

/// The first event of type `event_type` in `events` or, depth first, among their sub-events.
pub(super) fn find_event(events: &[Event], event_type: ProfileEventType) -> Option<&Event> {
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
pub(super) fn timed_event(
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
