//! A PingSource schedule: the instants at which it fires.
//!
//! A schedule is what Knative's PingSource accepts (robfig/cron's standard parser; grammar in
//! [`cron`](super::cron)): an optional `CRON_TZ=Zone ` or `TZ=Zone ` prefix, then five cron
//! fields, six with Ember's leading seconds field, or a descriptor (`@daily`, `@every 90s`).
//! Surrounding whitespace is ignored. The zone database is chrono-tz's; instants are exchanged in
//! UTC, and the zone only decides which wall-clock times match.
//!
//! # The zone
//! A `CRON_TZ=`/`TZ=` prefix names the zone; otherwise it is the PingSource's `spec.timezone`,
//! or UTC. Knative turns `spec.timezone` into such a prefix itself, so a schedule with a prefix
//! *and* a `spec.timezone` is refused by [`PingConfig::validate`](super::PingConfig::validate)
//! rather than resolved by a precedence rule.
//!
//! # `@every`
//! `@every d` fires every `d` (whole seconds, at least one) counted from the instant it is asked
//! about: [`Schedule::next_after`]`(t)` is `t` rounded down to the second, plus `d`. The run loop
//! asks about the last tick, so ticks keep a fixed interval; each start of Ember starts a new
//! series from start-up, as robfig/cron does (see [`PingScheduler`](super::PingScheduler) for missed ticks).
//!
//! # Daylight saving time
//! A schedule matches wall-clock times; a change of the zone's offset makes some wall-clock
//! times occur twice and others not at all. A schedule whose second, minute and hour fields
//! each hold one value (e.g. `30 2 * * *`, `@daily`) is a *fixed-time* job; any other (e.g.
//! `*/15 * * * *`, `0 1,2 * * *`, `@hourly`) is an *interval* job.
//! - **Spring forward (gap)**, e.g. 02:00 → 03:00: a fixed-time job whose time does not exist
//!   that day fires once, at the first instant after the gap (03:00 local); an interval job
//!   simply has no ticks inside the gap.
//! - **Fall back (overlap)**, e.g. 03:00 → 02:00: a fixed-time job whose time occurs twice fires
//!   once, at the first occurrence (the earlier UTC instant); an interval job fires on both
//!   passes through the repeated hour (every matching instant in real time).
//!
//! Put as a rule on instants: an instant fires if its wall-clock reading matches and (for a
//! fixed-time job) it is the first instant with that reading, or if it is the first instant
//! after a gap and (for a fixed-time job) a matching wall-clock time lies in the gap. Successive
//! ticks are therefore strictly increasing in real time. (robfig/cron differs here: it skips a
//! fixed time that falls in a gap, and fires it on both passes through a repeated hour.)

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDateTime, Offset as _, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;

use super::cron::{self, Fields, ScheduleError, Spec};

/// A parsed schedule and the time zone it is evaluated in.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    kind: Kind,
    zone: Tz,
    zone_in_expression: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    Fields { fields: Fields, fixed_time: bool },
    Every(TimeDelta),
}

const SECOND: TimeDelta = TimeDelta::seconds(1);
const DAY: TimeDelta = TimeDelta::days(1);
/// How close to either end of chrono's range (±262,000 years) a schedule still has ticks: the
/// search works in wall-clock time, a zone offset and up to nine years away from the instant.
const EDGE: TimeDelta = TimeDelta::days(3700);

/// The earliest and latest instants a schedule considers.
fn bounds() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        DateTime::<Utc>::MIN_UTC + EDGE,
        DateTime::<Utc>::MAX_UTC - EDGE,
    )
}

impl Schedule {
    /// Parses `expression`, evaluated in the zone of its `CRON_TZ=`/`TZ=` prefix if it has one,
    /// else in `zone`.
    pub fn parse(expression: &str, zone: Tz) -> Result<Self, ScheduleError> {
        let text = expression.trim();
        let prefixed = ["CRON_TZ=", "TZ="]
            .into_iter()
            .find_map(|prefix| text.strip_prefix(prefix).map(|rest| (prefix, rest)));
        let (zone, text, zone_in_expression) = match prefixed {
            None => (zone, text, false),
            Some((prefix, rest)) => {
                let Some((name, rest)) = rest.split_once(' ') else {
                    return Err(ScheduleError::ZonePrefix { prefix });
                };
                if name.is_empty() {
                    return Err(ScheduleError::ZonePrefix { prefix });
                }
                let zone = name.parse::<Tz>().map_err(|_| ScheduleError::UnknownZone {
                    prefix,
                    zone: name.to_owned(),
                })?;
                (zone, rest.trim_start(), true)
            }
        };
        let kind = match cron::parse(text)? {
            Spec::Fields(fields) => Kind::Fields {
                fixed_time: fields.is_fixed_time(),
                fields,
            },
            Spec::Every(seconds) => Kind::Every(TimeDelta::seconds(seconds as i64)),
        };
        Ok(Self {
            expression: expression.to_owned(),
            kind,
            zone,
            zone_in_expression,
        })
    }

    /// The first scheduled instant strictly after `after`, or `None` if the schedule never
    /// matches again (e.g. `0 0 30 2 *`; the search looks nine years ahead).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = whole_second(after);
        match &self.kind {
            Kind::Every(every) => after.checked_add_signed(*every),
            Kind::Fields { fields, fixed_time } => self.next_fields(fields, *fixed_time, after),
        }
    }

    /// How many scheduled instants lie in `after < t <= until`: what [`next_after`] would step
    /// through, computed without stepping (a day at a time), so that counting a long downtime
    /// of a per-second schedule stays cheap.
    ///
    /// [`next_after`]: Self::next_after
    pub fn count_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
        let (after, until) = (whole_second(after), whole_second(until));
        if until <= after {
            return 0;
        }
        match &self.kind {
            Kind::Every(every) => ((until - after).num_seconds() / every.num_seconds()) as u64,
            Kind::Fields { fields, fixed_time } => {
                self.count_fields(fields, *fixed_time, after, until)
            }
        }
    }

    /// The instant to count the next tick from, so that the series whose last tick was `last`
    /// continues without its ticks at or before `from`: for cron fields, the later of the two;
    /// for `@every`, the last tick of that series at or before `from`, so the interval keeps
    /// its phase.
    pub(crate) fn resume(&self, last: DateTime<Utc>, from: DateTime<Utc>) -> DateTime<Utc> {
        if from <= last {
            return last;
        }
        match &self.kind {
            Kind::Every(every) => {
                let last = whole_second(last);
                let step = every.num_seconds();
                let steps = (from - last).num_seconds() / step;
                steps
                    .checked_mul(step)
                    .and_then(TimeDelta::try_seconds)
                    .and_then(|ahead| last.checked_add_signed(ahead))
                    .unwrap_or(from)
            }
            Kind::Fields { .. } => from,
        }
    }

    /// The schedule as the user wrote it.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the schedule is evaluated in (its `CRON_TZ=` prefix's, the configured
    /// one, or UTC).
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether the expression names its zone with a `CRON_TZ=` or `TZ=` prefix.
    pub fn names_zone(&self) -> bool {
        self.zone_in_expression
    }

    /// The interval of an `@every` schedule.
    pub fn every(&self) -> Option<std::time::Duration> {
        match &self.kind {
            Kind::Every(every) => every.to_std().ok(),
            Kind::Fields { .. } => None,
        }
    }

    /// The wall-clock time at instant `t`.
    fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.zone).naive_local()
    }

    /// The instants at which wall-clock time `t` occurs (none in a gap, two in an overlap).
    fn resolve(&self, t: NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        self.zone
            .from_local_datetime(&t)
            .map(|t| t.with_timezone(&Utc))
    }

    /// The zone's offset from UTC at instant `t`, in seconds.
    fn offset(&self, t: DateTime<Utc>) -> i32 {
        self.zone
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// The first instant in `(lo, hi]` whose offset differs from `lo`'s, assuming at most one
    /// change in between (a binary search); `None` if `hi` has `lo`'s offset.
    fn change_within(&self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let before = self.offset(lo);
        if self.offset(hi) == before {
            return None;
        }
        let (mut lo, mut hi) = (lo, hi);
        while hi - lo > SECOND {
            let mid = lo + (hi - lo) / 2;
            let mid = whole_second(mid);
            if self.offset(mid) == before {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }

    /// The first instant in `(lo, hi]` whose offset differs from the one before it, probing a
    /// day at a time (offsets change far less often than that).
    fn next_change(&self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut probe = lo;
        while probe < hi {
            let next = (probe + DAY).min(hi);
            if let Some(change) = self.change_within(probe, next) {
                return Some(change);
            }
            probe = next;
        }
        None
    }

    /// For a wall-clock time in a gap: the instant the gap ends (the offset change) and the
    /// wall-clock time it reads then.
    fn gap_around(&self, t: NaiveDateTime) -> Option<(DateTime<Utc>, NaiveDateTime)> {
        let as_utc = t.and_utc();
        let change = self.change_within(as_utc.checked_sub_signed(DAY)?, as_utc + DAY)?;
        Some((change, self.local(change)))
    }

    fn next_fields(
        &self,
        fields: &Fields,
        fixed_time: bool,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let (earliest, latest) = bounds();
        if after >= latest {
            return None;
        }
        let after = after.max(earliest);
        let here = self.local(after);
        // An interval job fires on the second pass through a repeated hour too. If `after` is
        // in one, the first matching time of that second pass still ahead is a candidate: on the
        // first pass, the whole second pass is ahead; on the second, what follows `here`.
        let mut second_pass = None;
        if !fixed_time && let LocalResult::Ambiguous(first, second) = self.resolve(here) {
            let from = if after == first {
                let change = self.change_within(first, second)?;
                self.local(change)
            } else {
                here + SECOND
            };
            if let Some(t) = fields.next_local(from)
                && let LocalResult::Ambiguous(_, later) = self.resolve(t)
            {
                if after == second {
                    // On the second pass, anything else lies past the repeated hour.
                    return Some(later);
                }
                second_pass = Some(later);
            }
        }
        // The first matching wall-clock time after `here` whose first instant is after `after`.
        let earliest = |t: DateTime<Utc>| Some(second_pass.map_or(t, |s| s.min(t)));
        let mut from = here + SECOND;
        for _ in 0..1000 {
            let Some(t) = fields.next_local(from) else {
                return second_pass;
            };
            let first = match self.resolve(t) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
                LocalResult::None => {
                    let (change, end) = self.gap_around(t)?;
                    if !fixed_time {
                        from = end.max(t + SECOND);
                        continue;
                    }
                    change
                }
            };
            if first > after {
                return earliest(first);
            }
            from = t + SECOND;
        }
        second_pass
    }

    fn count_fields(
        &self,
        fields: &Fields,
        fixed_time: bool,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> u64 {
        // Instants in (after, until], a stretch of constant offset at a time: each stretch is a
        // stretch of wall-clock time too. Then, at each offset change, a fixed-time job gains
        // the tick at the end of a gap that held its time, and loses the second pass through a
        // repeated hour.
        let (earliest, latest) = bounds();
        let (after, until) = (after.clamp(earliest, latest), until.clamp(earliest, latest));
        if until <= after {
            return 0;
        }
        let mut total: i64 = 0;
        let count = |from: NaiveDateTime, to: NaiveDateTime| fields.count_local(from, to) as i64;
        let change_at = |total: &mut i64, change: DateTime<Utc>, before: i32, now: i32| {
            if !fixed_time {
                return;
            }
            let at = change.naive_utc();
            let (old, new) = (
                at + TimeDelta::seconds(before.into()),
                at + TimeDelta::seconds(now.into()),
            );
            if new > old {
                if count(old, new - SECOND) > 0 {
                    *total += 1;
                }
            } else {
                let until_local = until.naive_utc() + TimeDelta::seconds(now.into());
                *total -= count(new, (old - SECOND).min(until_local));
            }
        };

        let mut start = after + SECOND;
        let (before, offset) = (self.offset(after), self.offset(start));
        let here = self.local(start);
        if before != offset {
            change_at(&mut total, start, before, offset);
        } else if fixed_time
            && let LocalResult::Ambiguous(first, second) = self.resolve(here)
            && start == second
            && let Some(change) = self.change_within(first, second)
        {
            // `start` is on the second pass through a repeated hour that began before it.
            let repeated_end =
                change.naive_utc() + TimeDelta::seconds(self.offset(change - SECOND).into());
            let until_local = until.naive_utc() + TimeDelta::seconds(offset.into());
            total -= count(here, (repeated_end - SECOND).min(until_local));
        }
        loop {
            let offset = self.offset(start);
            let change = self.next_change(start, until);
            let end = change.map_or(until, |c| c - SECOND);
            let shift = TimeDelta::seconds(offset.into());
            total += count(start.naive_utc() + shift, end.naive_utc() + shift);
            let Some(change) = change else { break };
            change_at(&mut total, change, offset, self.offset(change));
            start = change;
        }
        total.max(0) as u64
    }
}

/// `t` without its fraction of a second.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t - TimeDelta::nanoseconds(t.timestamp_subsec_nanos().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ends_of_time_do_not_panic() {
        let ends = [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MIN_UTC + DAY,
            DateTime::<Utc>::MAX_UTC - DAY * 2,
            DateTime::<Utc>::MAX_UTC,
        ];
        for zone in [
            Tz::UTC,
            chrono_tz::Pacific::Kiritimati,
            chrono_tz::Etc::GMTPlus12,
            chrono_tz::America::New_York,
        ] {
            for expression in ["* * * * * *", "30 2 * * *", "@every 1s", "0 0 29 2 *"] {
                let schedule = Schedule::parse(expression, zone).unwrap();
                for t in ends {
                    if let Some(next) = schedule.next_after(t) {
                        assert!(next > t);
                    }
                    let later = t.checked_add_signed(DAY).unwrap_or(t);
                    let earlier = t.checked_sub_signed(DAY).unwrap_or(t);
                    schedule.count_between(t, later);
                    schedule.count_between(earlier, t);
                    schedule.resume(earlier, t);
                }
            }
        }
    }
}
