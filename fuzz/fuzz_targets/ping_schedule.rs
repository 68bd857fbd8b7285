//! Fuzzes PingSource schedule parsing from source text: parsing arbitrary UTF-8 must never
//! panic; a schedule that parses must answer where its next tick is, from instants around a
//! daylight-saving change and a leap day, without panicking, with a tick strictly later than
//! the instant asked about, and counted as exactly one tick by `count_between`.

#![no_main]

use chrono::{DateTime, Utc};
use ember_sources::ping::Schedule;
use libfuzzer_sys::fuzz_target;

/// Just before New York springs forward, inside the hour it repeats, and on a leap day.
const INSTANTS: [&str; 3] = [
    "2025-03-09T06:59:59Z",
    "2025-11-02T05:30:00.5Z",
    "2024-02-29T23:59:59Z",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schedule) = Schedule::parse(text, chrono_tz::America::New_York) else {
        return;
    };
    for instant in INSTANTS {
        let Ok(t) = instant.parse::<DateTime<Utc>>() else {
            return;
        };
        if let Some(next) = schedule.next_after(t) {
            assert!(next > t, "{text:?}: {next} after {t}");
            assert_eq!(schedule.count_between(t, next), 1, "{text:?} from {t}");
        }
    }
});
