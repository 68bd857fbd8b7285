//! The cron grammar — robfig/cron's standard parser, which Knative's PingSource uses, plus Ember's
//! leading seconds field — and matching in wall-clock time: one bit set per field, the search
//! for the next matching wall-clock time, and counting matches in a wall-clock range. Time
//! zones are not this module's concern: [`schedule`](super::schedule) maps wall-clock times to
//! instants.
//!
//! # Grammar
//! Fields are separated by whitespace: `minute hour day-of-month month day-of-week`, or six with
//! a leading `second` (Ember's extension; robfig's standard parser takes exactly five). Each
//! field is a comma-separated list of items:
//! - `*` or `?`: every value; `*/n` or `?/n`: every n-th value from the field's minimum;
//! - `a`, `a-b`, `a-b/n`; and `a/n`, which means `a-max/n` (so `5/15` in the minute field is
//!   5, 20, 35, 50);
//! - months may be named `JAN`–`DEC` and days of the week `SUN`–`SAT`, in any case; Sunday
//!   is 0 and 7 is refused.
//!
//! Bounds: second and minute 0–59, hour 0–23, day of month 1–31, month 1–12, day of week 0–6.
//!
//! When both day fields are restricted, a day matches if *either* does; when either starts with
//! `*` or `?` (without a step above 1), both must match. So `0 0 1,15 * MON` fires on the 1st,
//! the 15th and every Monday, and `0 0 */10 * SUN` only on Sundays that are the 1st, 11th, 21st
//! or 31st.
//!
//! Descriptors (case-sensitive, as robfig's): `@yearly` = `@annually` = `0 0 1 1 *`, `@monthly`
//! = `0 0 1 * *`, `@weekly` = `0 0 * * 0`, `@daily` = `@midnight` = `0 0 * * *`, `@hourly` =
//! `0 * * * *`, and `@every DURATION` with a Go duration (`90s`, `1h30m`, `1.5h`).
//!
//! # Where Ember is stricter than robfig
//! robfig reads some malformed input rather than refusing it; Ember refuses it with a reason:
//! a value with a sign (`+5`), an item such as `*-5` (robfig ignores the `-5`), a field with no
//! value at all (`,`), and `@every` with a duration of zero or less (robfig: every second).
//! Empty items inside a list (`1,,2`) are skipped, as robfig does.

use chrono::{Datelike as _, NaiveDate, NaiveDateTime, NaiveTime, Timelike as _};

use super::go_duration;

/// Why a schedule was refused. The message names the part of the schedule and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Nothing but whitespace.
    #[error("is empty; write e.g. \"*/5 * * * *\" or \"@hourly\"")]
    Empty,
    /// `CRON_TZ=`/`TZ=` without a zone and a schedule after it.
    #[error(
        "{prefix} must be followed by a time zone, a space and the schedule, e.g. \"{prefix}Europe/Berlin 0 9 * * *\""
    )]
    ZonePrefix {
        /// `CRON_TZ=` or `TZ=`.
        prefix: &'static str,
    },
    /// The zone named by the prefix is not in the IANA database.
    #[error("{prefix}: unknown IANA time zone {zone:?}")]
    UnknownZone {
        /// `CRON_TZ=` or `TZ=`.
        prefix: &'static str,
        /// The zone as written.
        zone: String,
    },
    /// Not 5 (or 6) fields.
    #[error(
        "has {0} fields; a cron schedule has 5 (minute hour day-of-month month day-of-week), \
         or 6 with a leading seconds field"
    )]
    FieldCount(usize),
    /// A field did not parse.
    #[error("{field} field {text:?}: {reason}")]
    Field {
        /// `second`, `minute`, `hour`, `day-of-month`, `month` or `day-of-week`.
        field: &'static str,
        /// The field as written.
        text: String,
        /// Why it was refused.
        reason: String,
    },
    /// `@` followed by something that is not a descriptor.
    #[error(
        "unknown descriptor {0:?}; expected @yearly, @annually, @monthly, @weekly, @daily, \
         @midnight, @hourly or @every DURATION"
    )]
    Descriptor(String),
    /// `@every` with a duration that is not a positive Go duration.
    #[error("@every: {0}")]
    Every(String),
}

/// A field's name, bounds, and value names (the name at index `i` is the value `min + i`).
struct Bounds {
    field: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Bounds = Bounds {
    field: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Bounds = Bounds {
    field: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    field: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Bounds = Bounds {
    field: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    field: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Bounds = Bounds {
    field: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed schedule, before any time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    /// Wall-clock fields.
    Fields(Fields),
    /// `@every`: whole seconds, at least one.
    Every(u64),
}

/// The wall-clock times a cron expression matches, one bit per allowed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fields {
    second: u64,
    minute: u64,
    hour: u64,
    day_of_month: u64,
    month: u64,
    day_of_week: u64,
    /// Whether the day-of-month field started with `*` or `?` (without a step above 1); with
    /// `day_of_week_star`, decides between "both day fields match" and "either does".
    day_of_month_star: bool,
    day_of_week_star: bool,
}

/// Parses a schedule without its time-zone prefix (already trimmed).
pub(crate) fn parse(text: &str) -> Result<Spec, ScheduleError> {
    if text.is_empty() {
        return Err(ScheduleError::Empty);
    }
    if text.starts_with('@') {
        return descriptor(text);
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        n => return Err(ScheduleError::FieldCount(n)),
    };
    let (second, _) = field(second, &SECOND)?;
    let (minute, _) = field(rest[0], &MINUTE)?;
    let (hour, _) = field(rest[1], &HOUR)?;
    let (day_of_month, day_of_month_star) = field(rest[2], &DAY_OF_MONTH)?;
    let (month, _) = field(rest[3], &MONTH)?;
    let (day_of_week, day_of_week_star) = field(rest[4], &DAY_OF_WEEK)?;
    Ok(Spec::Fields(Fields {
        second,
        minute,
        hour,
        day_of_month,
        month,
        day_of_week,
        day_of_month_star,
        day_of_week_star,
    }))
}

fn descriptor(text: &str) -> Result<Spec, ScheduleError> {
    let all = |b: &Bounds| span(b.min, b.max, 1);
    let fields = |minute: u64, hour: u64, dom: u64, month: u64, dow: u64| {
        Spec::Fields(Fields {
            second: 1,
            minute,
            hour,
            day_of_month: dom,
            month,
            day_of_week: dow,
            day_of_month_star: dom == all(&DAY_OF_MONTH),
            day_of_week_star: dow == all(&DAY_OF_WEEK),
        })
    };
    let (dom, month, dow) = (all(&DAY_OF_MONTH), all(&MONTH), all(&DAY_OF_WEEK));
    Ok(match text {
        "@yearly" | "@annually" => fields(1, 1, 1 << 1, 1 << 1, dow),
        "@monthly" => fields(1, 1, 1 << 1, month, dow),
        "@weekly" => fields(1, 1, dom, month, 1),
        "@daily" | "@midnight" => fields(1, 1, dom, month, dow),
        "@hourly" => fields(1, all(&HOUR), dom, month, dow),
        "@every" => {
            return Err(ScheduleError::Every(
                "needs a duration, e.g. \"@every 5m\"".into(),
            ));
        }
        _ => match text.strip_prefix("@every ") {
            Some(duration) => every(duration)?,
            None => return Err(ScheduleError::Descriptor(text.to_owned())),
        },
    })
}

/// `@every DURATION`: as robfig, shorter than a second means every second, and a fraction of a
/// second is dropped; unlike robfig, zero and negative durations are refused.
fn every(duration: &str) -> Result<Spec, ScheduleError> {
    let nanos = go_duration::parse(duration).map_err(|e| ScheduleError::Every(e.to_string()))?;
    if nanos <= 0 {
        return Err(ScheduleError::Every(format!(
            "{duration:?} is not a positive duration; write e.g. \"@every 5m\""
        )));
    }
    Ok(Spec::Every((nanos as u64 / 1_000_000_000).max(1)))
}

/// The values `lo..=hi` stepping by `step`, as bits.
fn span(lo: u32, hi: u32, step: u32) -> u64 {
    (lo..=hi)
        .step_by(step as usize)
        .fold(0, |bits, v| bits | 1 << v)
}

/// Parses one field into its bits and whether it counts as `*` for the day-matching rule.
fn field(text: &str, bounds: &Bounds) -> Result<(u64, bool), ScheduleError> {
    let refuse = |reason: String| ScheduleError::Field {
        field: bounds.field,
        text: text.to_owned(),
        reason,
    };
    let (mut bits, mut star) = (0, false);
    for item in text.split(',').filter(|item| !item.is_empty()) {
        let (item_bits, item_star) = range(item, bounds).map_err(refuse)?;
        bits |= item_bits;
        star |= item_star;
    }
    if bits == 0 {
        return Err(refuse("has no value".into()));
    }
    Ok((bits, star))
}

/// One list item: `*`, `?`, `a`, `a-b`, each optionally followed by `/step`.
fn range(item: &str, bounds: &Bounds) -> Result<(u64, bool), String> {
    let (range, step) = match item.split_once('/') {
        Some((_, step)) if step.contains('/') => {
            return Err(format!("{item:?} has more than one '/'"));
        }
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    let step = match step {
        None => 1,
        Some(step) => match number(step) {
            Some(0) => return Err(format!("the step in {item:?} must be at least 1")),
            Some(n) => n,
            None => return Err(format!("the step in {item:?} is not a number")),
        },
    };
    let (lo, hi, star) = if range == "*" || range == "?" {
        (bounds.min, bounds.max, step == 1)
    } else {
        match range.split_once('-') {
            Some((_, hi)) if hi.contains('-') => {
                return Err(format!("{item:?} has more than one '-'"));
            }
            Some((lo, hi)) => (value(lo, bounds)?, value(hi, bounds)?, false),
            // `a/n` is `a-max/n`.
            None if range.len() < item.len() => (value(range, bounds)?, bounds.max, false),
            None => {
                let v = value(range, bounds)?;
                (v, v, false)
            }
        }
    };
    if lo < bounds.min {
        return Err(format!("{lo} is below the minimum {}", bounds.min));
    }
    if hi > bounds.max {
        return Err(format!("{hi} is above the maximum {}", bounds.max));
    }
    if lo > hi {
        return Err(format!("the range {range:?} ends before it starts"));
    }
    Ok((span(lo, hi, step), star))
}

/// A number or, where the field has them, a name (case-insensitive).
fn value(text: &str, bounds: &Bounds) -> Result<u32, String> {
    if let Some(i) = bounds
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        return Ok(bounds.min + i as u32);
    }
    number(text).ok_or_else(|| {
        if bounds.names.is_empty() {
            format!("{text:?} is not a number")
        } else {
            format!(
                "{text:?} is not a number or a name ({}-{})",
                bounds.names[0].to_ascii_uppercase(),
                bounds.names[bounds.names.len() - 1].to_ascii_uppercase()
            )
        }
    })
}

/// Decimal digits only (leading zeros allowed); `None` for anything else or past `u32`.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whether `bit` is set in `bits`.
fn has(bits: u64, bit: u32) -> bool {
    bits >> bit & 1 == 1
}

/// The lowest value `>= from` in `bits`.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    let above = bits.checked_shr(from)?.checked_shl(from)?;
    (above != 0).then(|| above.trailing_zeros())
}

/// Values below `v` in `bits`.
fn count_below(bits: u64, v: u32) -> u64 {
    u64::from((bits & ((1u64 << v) - 1)).count_ones())
}

/// How far ahead [`Fields::next_local`] searches: every satisfiable schedule matches within 8
/// years (29 February in a leap year, across a century that skips one).
const SEARCH_YEARS: i32 = 9;

impl Fields {
    /// A single value in each of second, minute and hour: a job at one time of day (at most),
    /// which daylight-saving changes treat differently from an interval job.
    pub(crate) fn is_fixed_time(&self) -> bool {
        self.second.count_ones() == 1
            && self.minute.count_ones() == 1
            && self.hour.count_ones() == 1
    }

    /// Whether `date` matches the month and day fields.
    fn date_matches(&self, date: NaiveDate) -> bool {
        if !has(self.month, date.month()) {
            return false;
        }
        let dom = has(self.day_of_month, date.day());
        let dow = has(self.day_of_week, date.weekday().num_days_from_sunday());
        if self.day_of_month_star || self.day_of_week_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching wall-clock time at or after `from` (to the second, ignoring any
    /// fraction), or `None` if there is none within [`SEARCH_YEARS`].
    pub(crate) fn next_local(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let last_year = from.year().checked_add(SEARCH_YEARS)?;
        let mut date = from.date();
        let (mut h, mut m, mut s) = (from.hour(), from.minute(), from.second());
        loop {
            if date.year() > last_year {
                return None;
            }
            if !has(self.month, date.month()) {
                date = NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?
                    .checked_add_months(chrono::Months::new(1))?;
                (h, m, s) = (0, 0, 0);
                continue;
            }
            if !self.date_matches(date) {
                date = date.succ_opt()?;
                (h, m, s) = (0, 0, 0);
                continue;
            }
            match next_bit(self.hour, h) {
                None => {
                    date = date.succ_opt()?;
                    (h, m, s) = (0, 0, 0);
                    continue;
                }
                Some(next) if next != h => (h, m, s) = (next, 0, 0),
                Some(_) => {}
            }
            match next_bit(self.minute, m) {
                None => {
                    (h, m, s) = (h + 1, 0, 0);
                    if h == 24 {
                        date = date.succ_opt()?;
                        h = 0;
                    }
                    continue;
                }
                Some(next) if next != m => (m, s) = (next, 0),
                Some(_) => {}
            }
            match next_bit(self.second, s) {
                None => {
                    (m, s) = (m + 1, 0);
                    if m == 60 {
                        (h, m) = (h + 1, 0);
                        if h == 24 {
                            date = date.succ_opt()?;
                            h = 0;
                        }
                    }
                    continue;
                }
                Some(next) => s = next,
            }
            return Some(date.and_time(NaiveTime::from_hms_opt(h, m, s)?));
        }
    }

    /// How many matching wall-clock times lie in `from..=to` (whole seconds).
    pub(crate) fn count_local(&self, from: NaiveDateTime, to: NaiveDateTime) -> u64 {
        if to < from {
            return 0;
        }
        let seconds = |t: NaiveDateTime| (t.hour(), t.minute(), t.second());
        let mut total = 0;
        let mut date = from.date();
        while date <= to.date() {
            if self.date_matches(date) {
                let upto = if date == to.date() {
                    self.count_time_of_day_upto(seconds(to))
                } else {
                    self.count_time_of_day_upto((23, 59, 59))
                };
                let before = if date == from.date() {
                    self.count_time_of_day_before(seconds(from))
                } else {
                    0
                };
                total += upto - before;
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        total
    }

    /// Matching times of day at or before `(h, m, s)`.
    fn count_time_of_day_upto(&self, (h, m, s): (u32, u32, u32)) -> u64 {
        let (seconds, minutes) = (
            u64::from(self.second.count_ones()),
            u64::from(self.minute.count_ones()),
        );
        let mut n = count_below(self.hour, h) * minutes * seconds;
        if has(self.hour, h) {
            n += count_below(self.minute, m) * seconds;
            if has(self.minute, m) {
                n += count_below(self.second, s + 1);
            }
        }
        n
    }

    /// Matching times of day before `(h, m, s)`.
    fn count_time_of_day_before(&self, (h, m, s): (u32, u32, u32)) -> u64 {
        if (h, m, s) == (0, 0, 0) {
            0
        } else if s > 0 {
            self.count_time_of_day_upto((h, m, s - 1))
        } else if m > 0 {
            self.count_time_of_day_upto((h, m - 1, 59))
        } else {
            self.count_time_of_day_upto((h - 1, 59, 59))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Fields {
        match parse(text).unwrap() {
            Spec::Fields(f) => f,
            Spec::Every(_) => panic!("{text} is @every"),
        }
    }

    fn bits(values: &[u32]) -> u64 {
        values.iter().fold(0, |b, v| b | 1 << v)
    }

    #[test]
    fn items_become_bits() {
        for (text, bounds, expected, star) in [
            ("5", &MINUTE, bits(&[5]), false),
            ("5-5", &MINUTE, bits(&[5]), false),
            ("5-7", &MINUTE, bits(&[5, 6, 7]), false),
            ("5-7/2", &MINUTE, bits(&[5, 7]), false),
            ("5-6/2", &MINUTE, bits(&[5]), false),
            ("5-7/1", &MINUTE, bits(&[5, 6, 7]), false),
            ("50/3", &MINUTE, bits(&[50, 53, 56, 59]), false),
            ("5/1", &HOUR, span(5, 23, 1), false),
            ("*", &DAY_OF_WEEK, span(0, 6, 1), true),
            ("?", &DAY_OF_WEEK, span(0, 6, 1), true),
            ("*/1", &DAY_OF_WEEK, span(0, 6, 1), true),
            ("*/2", &DAY_OF_WEEK, bits(&[0, 2, 4, 6]), false),
            ("*/2", &DAY_OF_MONTH, span(1, 31, 2), false),
            ("1,5-7/2,3", &DAY_OF_MONTH, bits(&[1, 3, 5, 7]), false),
            ("1,,3,", &DAY_OF_MONTH, bits(&[1, 3]), false),
            ("2,*/10", &MINUTE, bits(&[0, 2, 10, 20, 30, 40, 50]), false),
            ("1,*", &DAY_OF_WEEK, span(0, 6, 1), true),
            ("jan-MAR,Dec", &MONTH, bits(&[1, 2, 3, 12]), false),
            ("mon-fri", &DAY_OF_WEEK, span(1, 5, 1), false),
            ("Mon/2", &DAY_OF_WEEK, bits(&[1, 3, 5]), false),
            ("007", &HOUR, bits(&[7]), false),
            ("*/100", &MINUTE, bits(&[0]), false),
        ] {
            assert_eq!(
                field(text, bounds),
                Ok((expected, star)),
                "{text} ({})",
                bounds.field
            );
        }
    }

    #[test]
    fn malformed_items_are_refused_with_the_reason() {
        for (text, bounds, reason) in [
            ("60", &MINUTE, "60 is above the maximum 59"),
            ("24", &HOUR, "24 is above the maximum 23"),
            ("0", &DAY_OF_MONTH, "0 is below the minimum 1"),
            ("13", &MONTH, "13 is above the maximum 12"),
            ("7", &DAY_OF_WEEK, "7 is above the maximum 6"),
            ("5-7", &DAY_OF_WEEK, "7 is above the maximum 6"),
            ("5-3", &MINUTE, "the range \"5-3\" ends before it starts"),
            ("5--5", &MINUTE, "\"5--5\" has more than one '-'"),
            ("*//2", &MINUTE, "\"*//2\" has more than one '/'"),
            ("*/0", &MINUTE, "the step in \"*/0\" must be at least 1"),
            ("*/-12", &MINUTE, "the step in \"*/-12\" is not a number"),
            ("*/x", &MINUTE, "the step in \"*/x\" is not a number"),
            ("-5", &MINUTE, "\"\" is not a number"),
            ("+5", &MINUTE, "\"+5\" is not a number"),
            ("*-5", &MINUTE, "\"*\" is not a number"),
            ("jan", &MINUTE, "\"jan\" is not a number"),
            ("jan-x", &MONTH, "\"x\" is not a number or a name (JAN-DEC)"),
            (
                "XYZ",
                &DAY_OF_WEEK,
                "\"XYZ\" is not a number or a name (SUN-SAT)",
            ),
            ("99999999999", &MINUTE, "\"99999999999\" is not a number"),
            (",", &MINUTE, "has no value"),
            ("", &MINUTE, "has no value"),
        ] {
            match field(text, bounds) {
                Err(ScheduleError::Field { reason: got, .. }) => {
                    assert_eq!(got, reason, "{text} ({})", bounds.field)
                }
                other => panic!("{text} ({}): {other:?}", bounds.field),
            }
        }
    }

    #[test]
    fn descriptors_are_their_five_field_equivalents() {
        for (descriptor, fields_of) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            assert_eq!(parse(descriptor), parse(fields_of), "{descriptor}");
        }
        assert_eq!(
            parse("@Daily"),
            Err(ScheduleError::Descriptor("@Daily".into()))
        );
    }

    #[test]
    fn every_rounds_to_whole_seconds_of_at_least_one() {
        for (text, seconds) in [
            ("@every 5m", 300),
            ("@every 1h30m", 5400),
            ("@every 1.5h", 5400),
            ("@every 90s", 90),
            ("@every 1500ms", 1),
            ("@every 2.9s", 2),
            ("@every 500ms", 1),
            ("@every 1ns", 1),
        ] {
            assert_eq!(parse(text), Ok(Spec::Every(seconds)), "{text}");
        }
        for text in [
            "@every",
            "@every ",
            "@every 0",
            "@every 0s",
            "@every -5m",
            "@every 5",
            "@every 1d",
            "@every  5m",
            "@every Xm",
        ] {
            assert!(
                matches!(parse(text), Err(ScheduleError::Every(_))),
                "{text}: {:?}",
                parse(text)
            );
        }
    }

    #[test]
    fn the_day_fields_combine_as_robfig_does() {
        let sunday_15th = NaiveDate::from_ymd_opt(2012, 7, 15).unwrap();
        let friday_15th = NaiveDate::from_ymd_opt(2012, 6, 15).unwrap();
        let monday_9th = NaiveDate::from_ymd_opt(2012, 7, 9).unwrap();
        // Both restricted: either.
        assert!(fields("0 0 1,15 * SUN").date_matches(sunday_15th));
        assert!(fields("0 0 1,15 * SUN").date_matches(friday_15th));
        assert!(!fields("0 0 1,15 * SUN").date_matches(monday_9th));
        // A stepped star is a restriction: either (robfig/cron#70).
        assert!(fields("0 0 */10 * SUN").date_matches(sunday_15th));
        assert!(!fields("0 0 */10 * SUN").date_matches(monday_9th));
        // One starts with a star: both.
        assert!(!fields("0 0 * * MON").date_matches(sunday_15th));
        assert!(fields("0 0 */2 * SUN").date_matches(sunday_15th));
        assert!(fields("0 0 */1 * MON").date_matches(monday_9th));
        assert!(!fields("0 0 */1 * MON").date_matches(sunday_15th));
        assert!(!fields("0 0 1,15 * *").date_matches(monday_9th));
        assert!(fields("0 0 1,15 * ?").date_matches(sunday_15th));
    }

    #[test]
    fn counting_matches_agrees_with_stepping_through_them() {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        for (text, from, to) in [
            ("* * * * * *", "2025-01-01 10:00:00", "2025-01-01 10:00:59"),
            (
                "*/7 */5 * * * *",
                "2025-01-01 10:03:10",
                "2025-01-02 11:00:00",
            ),
            ("30 2 * * *", "2025-01-01 02:30:00", "2025-03-01 02:29:59"),
            (
                "0 9-17 * * MON-FRI",
                "2025-01-01 12:00:01",
                "2025-02-01 00:00:00",
            ),
            (
                "15 10 1,15 * SUN",
                "2024-12-31 23:59:59",
                "2025-12-31 00:00:00",
            ),
            ("0 0 29 2 *", "2023-01-01 00:00:00", "2029-01-01 00:00:00"),
            ("5 4 3 2 *", "2025-02-03 04:05:00", "2025-02-03 04:05:00"),
            ("5 4 3 2 *", "2025-02-03 04:05:01", "2025-02-03 04:05:00"),
        ] {
            let f = fields(text);
            let (from, to) = (at(from), at(to));
            let mut stepped = 0;
            let mut t = from;
            while let Some(next) = f.next_local(t).filter(|n| *n <= to) {
                stepped += 1;
                t = next + chrono::TimeDelta::seconds(1);
            }
            assert_eq!(f.count_local(from, to), stepped, "{text}");
        }
    }
}
