//! Any bytes, as a JSON and as an NDJSON request body: the ingest body parser returns
//! events or an error, never panics, and the events it returns pass `check_event` and are
//! of the stream's identity. The stream is known by a name other than its identity (as a
//! tenant's own stream is), as in `tests/fuzz_parsers.rs`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tributary_core::parse::{
    Arrival, BodyFormat, Limits, Target, check_event, parse_events_within,
};
use tributary_core::{StreamName, Timestamp};

fuzz_target!(|body: &[u8]| {
    let (Ok(name), Ok(id)) = (
        StreamName::new("fuzz"),
        StreamName::new("fuzz__0123456789ab"),
    ) else {
        return;
    };
    let stream = Target {
        id: &id,
        name: &name,
    };
    let arrival = Arrival::new(
        Timestamp::from_millis(1_764_500_000_000),
        Duration::from_secs(300),
    );
    let limits = Limits {
        max_events: 50,
        max_reported_errors: 5,
    };
    for format in [BodyFormat::Json, BodyFormat::Ndjson] {
        if let Ok(events) = parse_events_within(body, format, stream, arrival, limits) {
            assert!(!events.is_empty() && events.len() <= limits.max_events);
            for event in &events {
                assert!(check_event(event).is_ok(), "{event:?}");
                assert_eq!(event.stream, id);
            }
        }
    }
});
