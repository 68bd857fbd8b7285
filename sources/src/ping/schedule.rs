//! A cron schedule in an IANA time zone: the instants at which a PingSource fires.
//!
//! Parsing and the search for the next occurrence are croner's (5 fields, an optional leading
//! seconds field, `@hourly`-style descriptors); the zone database is chrono-tz's. Instants are
//! exchanged in UTC; the zone only decides which wall-clock times match.
//!
//! # Daylight saving time (croner 4, tested in `tests/ping.rs`)
//! croner tells apart *fixed-time* patterns (a single value in each of the second, minute and
//! hour fields, e.g. `30 2 * * *`) and *interval/wildcard* patterns (`*` or `*/n` in one of
//! them, e.g. `*/15 * * * *`):
//! - **Spring forward (gap)**, e.g. 02:00 → 03:00: a fixed-time job whose time does not exist
//!   that day fires once, at the first instant after the gap (03:00 local); an interval job
//!   simply has no ticks inside the gap.
//! - **Fall back (overlap)**, e.g. 03:00 → 02:00: a fixed-time job whose time occurs twice fires
//!   once, at the first occurrence (the earlier UTC instant); an interval job fires on both
//!   passes through the repeated hour (every matching instant in real time).
//!
//! Successive ticks are always strictly increasing in real (UTC) time.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::CronParser;

/// A parsed cron expression and the time zone it is evaluated in.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// Parses `expression` (croner syntax, seconds optional) in `zone`.
    pub(crate) fn parse(expression: &str, zone: Tz) -> Result<Self, croner::errors::CronError> {
        let cron = CronParser::new().parse(expression)?;
        Ok(Self {
            expression: expression.to_owned(),
            cron,
            zone,
        })
    }

    /// The first scheduled instant strictly after `after`, or `None` if the pattern never
    /// matches again (e.g. `0 0 30 2 *`; croner gives up after year 5000).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The cron expression as the user wrote it.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is evaluated in (UTC unless configured).
    pub fn zone(&self) -> Tz {
        self.zone
    }
}
