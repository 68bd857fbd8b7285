//! PingSource schedules as Knative users write them: every form robfig/cron's standard parser
//! accepts is accepted with its meaning, what it refuses is refused with a reason, and the next
//! tick is the one robfig/cron computes — except across daylight-saving changes, where Ember keeps
//! its documented rule (see `Schedule`). The cases are those of robfig/cron's own parser and
//! spec tests, rewritten as tables, plus Ember's 6-field form with leading seconds.
//!
//! Tables are text, one case a line, columns separated by `|`; `#` starts a comment line.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use ember_sources::ping::{PingConfig, PingError, Schedule};

fn parse(schedule: &str) -> Schedule {
    Schedule::parse(schedule, Tz::UTC).unwrap_or_else(|e| panic!("{schedule:?}: {e}"))
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// The rows of a table: its non-empty, non-comment lines split at `|` and trimmed.
fn rows(table: &str) -> impl Iterator<Item = Vec<&str>> {
    table
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split('|').map(str::trim).collect())
}

/// The first `n` ticks after `from`.
fn ticks(schedule: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    std::iter::successors(schedule.next_after(from), |t| schedule.next_after(*t))
        .take(n)
        .collect()
}

/// Schedule | an equivalent schedule in plain lists.
const ACCEPTED: &str = r"
    # Single-number steps: `n/step` is `n-max/step`.
    0/15 * * * *             | 0,15,30,45 * * * *
    5/15 * * * *             | 5,20,35,50 * * * *
    */15 * * * *             | 0,15,30,45 * * * *
    50/3 * * * *             | 50,53,56,59 * * * *
    0 1/2 * * *              | 0 1,3,5,7,9,11,13,15,17,19,21,23 * * *
    20-35/15 * * * *         | 20,35 * * * *
    5 4 * * 1/2              | 5 4 * * 1,3,5
    # `?` is `*`, in any field.
    0 0 ? * MON              | 0 0 * * 1
    ? ? ? ? ?                | * * * * *
    # Names, in any case, in lists, ranges and with steps.
    0 0 1 jan-MAR,Dec *      | 0 0 1 1,2,3,12 *
    0 9 * * mon-fri          | 0 9 * * 1-5
    0 0 * Feb Mon/2          | 0 0 * 2 1,3,5
    30 08 15 Jul ?           | 30 8 15 7 *
    # Leading zeros; empty list items are skipped, as robfig does.
    00 09 * * *              | 0 9 * * *
    1,,3, * * * *            | 1,3 * * * *
    # Descriptors.
    @yearly                  | 0 0 1 1 *
    @annually                | 0 0 1 1 *
    @monthly                 | 0 0 1 * *
    @weekly                  | 0 0 * * 0
    @daily                   | 0 0 * * *
    @midnight                | 0 0 * * *
    @hourly                  | 0 * * * *
    # A zone prefix, followed by one space or more (UTC here).
    CRON_TZ=UTC 5 * * * *    | 5 * * * *
    CRON_TZ=UTC  5 * * * *   | 5 * * * *
    TZ=UTC  @midnight        | 0 0 * * *
    # Ember's 6-field form: a leading seconds field.
    0 5 * * * *              | 5 * * * *
    * 5 * * * *              | 0-59 5 * * * *
    15/35 20-35/15 * * * *   | 15,50 20,35 * * * *
    CRON_TZ=UTC  0 5 * * * * | 5 * * * *
";

#[test]
fn accepts_what_knative_accepts_with_its_meaning() {
    let from = at("2024-02-27T22:58:00Z");
    for row in rows(ACCEPTED) {
        let (schedule, meaning) = (row[0], row[1]);
        assert_eq!(
            ticks(&parse(schedule), from, 60),
            ticks(&parse(meaning), from, 60),
            "{schedule:?} should mean {meaning:?}"
        );
    }
    // Surrounding whitespace is ignored.
    assert_eq!(
        ticks(&parse("  */5 * * * *\n"), from, 10),
        ticks(&parse("0-59/5 * * * *"), from, 10)
    );
}

/// Schedule | what the refusal says.
const REFUSED: &str = r#"
    xyz                            | has 1 fields
    * * * *                        | has 4 fields
    * * * * * * *                  | has 7 fields
    60 0 * * *                     | minute field "60": 60 is above the maximum 59
    0 60 * * *                     | hour field "60": 60 is above the maximum 23
    0 24 * * *                     | hour field "24": 24 is above the maximum 23
    0 0 0 * *                      | day-of-month field "0": 0 is below the minimum 1
    0 0 32 * *                     | day-of-month field "32": 32 is above the maximum 31
    0 0 * 0 *                      | month field "0": 0 is below the minimum 1
    0 0 * 13 *                     | month field "13": 13 is above the maximum 12
    0 0 * * 7                      | day-of-week field "7": 7 is above the maximum 6
    0 0 * * XYZ                    | day-of-week field "XYZ": "XYZ" is not a number or a name
    5 j * * *                      | hour field "j": "j" is not a number
    * 5 j * * *                    | hour field "j"
    0 0 * jan-x *                  | month field "jan-x": "x" is not a number or a name (JAN-DEC)
    0 0 2-x * *                    | day-of-month field "2-x": "x" is not a number
    0 0 * * MON-SUN                | the range "MON-SUN" ends before it starts
    5-3 * * * *                    | the range "5-3" ends before it starts
    5--5 * * * *                   | "5--5" has more than one '-'
    *//2 * * * *                   | "*//2" has more than one '/'
    */0 * * * *                    | the step in "*/0" must be at least 1
    5-10/0 * * * *                 | the step in "5-10/0" must be at least 1
    */-12 * * * *                  | the step in "*/-12" is not a number
    +5 * * * *                     | "+5" is not a number
    *-5 * * * *                    | "*" is not a number
    L * * * *                      | minute field "L"
    0 0 L * *                      | day-of-month field "L"
    0 0 * * 5#3                    | day-of-week field "5#3"
    0 0 15W * *                    | day-of-month field "15W"
    , * * * *                      | minute field ",": has no value
    @unrecognized                  | unknown descriptor "@unrecognized"
    @Daily                         | unknown descriptor "@Daily"
    @every                         | @every: needs a duration
    @every Xm                      | @every: invalid duration "Xm"
    @every 5                       | @every: missing unit in duration "5"
    @every 1d                      | @every: unknown unit "d" in duration "1d"
    @every 0s                      | @every: "0s" is not a positive duration
    @every -5m                     | @every: "-5m" is not a positive duration
    CRON_TZ=Europe/Berlin          | CRON_TZ= must be followed by a time zone, a space
    TZ= * * * * *                  | TZ= must be followed by a time zone
    CRON_TZ=Mars/Olympus * * * * * | CRON_TZ=: unknown IANA time zone "Mars/Olympus"
    TZ=Local * * * * *             | TZ=: unknown IANA time zone "Local"
"#;

#[test]
fn refuses_what_knative_refuses_naming_the_part_and_why() {
    let refused = rows(REFUSED)
        .map(|row| (row[0].to_owned(), row[1].to_owned()))
        .chain([
            ("".to_owned(), "is empty".to_owned()),
            ("  \t".to_owned(), "is empty".to_owned()),
            // The zone ends at the first space, as in robfig.
            (
                "TZ=UTC\t* * * * *".to_owned(),
                r#"TZ=: unknown IANA time zone "UTC\t*""#.to_owned(),
            ),
        ]);
    for (schedule, reason) in refused {
        match Schedule::parse(&schedule, Tz::UTC) {
            Ok(_) => panic!("{schedule:?} was accepted"),
            Err(e) => assert!(
                e.to_string().contains(&reason),
                "{schedule:?}: {e:?} does not say {reason:?}"
            ),
        }
    }
}

/// After | schedule | the next tick (empty: never again). robfig/cron's `TestNext` and
/// `TestNextWithTz`, in UTC where robfig uses the machine's zone.
const NEXT: &str = r"
    2012-07-09T14:45:00Z | 0 0/15 * * * *             | 2012-07-09T15:00:00Z
    2012-07-09T14:59:00Z | 0 0/15 * * * *             | 2012-07-09T15:00:00Z
    2012-07-09T14:59:59Z | 0 0/15 * * * *             | 2012-07-09T15:00:00Z
    # Wrapping around hours, days, months and years.
    2012-07-09T15:45:00Z | 0 20-35/15 * * * *         | 2012-07-09T16:20:00Z
    2012-07-09T23:46:00Z | 0 */15 * * * *             | 2012-07-10T00:00:00Z
    2012-07-09T23:45:00Z | 0 20-35/15 * * * *         | 2012-07-10T00:20:00Z
    2012-07-09T23:35:51Z | 15/35 20-35/15 * * * *     | 2012-07-10T00:20:15Z
    2012-07-09T23:35:51Z | 15/35 20-35/15 1/2 * * *   | 2012-07-10T01:20:15Z
    2012-07-09T23:35:51Z | 15/35 20-35/15 10-12 * * * | 2012-07-10T10:20:15Z
    2012-07-09T23:35:51Z | 15/35 20-35/15 1/2 */2 * * | 2012-07-11T01:20:15Z
    2012-07-09T23:35:51Z | 15/35 20-35/15 * 9-20 * *  | 2012-07-10T00:20:15Z
    2012-07-09T23:35:51Z | 15/35 20-35/15 * 9-20 Jul * | 2012-07-10T00:20:15Z
    2012-07-09T23:35:00Z | 0 0 0 9 Apr-Oct ?          | 2012-08-09T00:00:00Z
    # Both day fields restricted (`*/5` is a restriction): either matches.
    2012-07-09T23:35:00Z | 0 0 0 */5 Apr,Aug,Oct Mon  | 2012-08-01T00:00:00Z
    2012-07-09T23:35:00Z | 0 0 0 */5 Oct Mon          | 2012-10-01T00:00:00Z
    2012-07-09T23:35:00Z | 0 0 0 * Feb Mon            | 2013-02-04T00:00:00Z
    2012-07-09T23:35:00Z | 0 0 0 * Feb Mon/2          | 2013-02-01T00:00:00Z
    2012-12-31T23:59:45Z | 0 * * * * *                | 2013-01-01T00:00:00Z
    # Leap years, and across 2100, which is not one.
    2012-07-09T23:35:00Z | 0 0 0 29 Feb ?             | 2016-02-29T00:00:00Z
    2096-03-01T00:00:00Z | 0 0 29 2 *                 | 2104-02-29T00:00:00Z
    # Never again.
    2012-07-09T23:35:00Z | 0 0 0 30 Feb ?             |
    2012-07-09T23:35:00Z | 0 0 0 31 Apr ?             |
    2012-07-09T23:35:00Z | 0 0 31 2,4,6,9,11 *        |
    # An instant with a fraction of a second.
    2012-07-09T14:59:59.999Z | 0 0/15 * * * *         | 2012-07-09T15:00:00Z
    2012-07-09T15:00:00.001Z | 0/15 * * * *           | 2012-07-09T15:15:00Z
    # A zone.
    2016-01-03T13:09:03+05:30 | TZ=Asia/Kolkata 14 14 * * * | 2016-01-03T14:14:00+05:30
    2016-01-03T04:09:03+05:30 | TZ=Asia/Kolkata 14 14 * * ? | 2016-01-03T14:14:00+05:30
    2016-01-03T14:09:03+05:30 | TZ=Asia/Kolkata 14 14 * * * | 2016-01-03T14:14:00+05:30
    2016-01-03T14:00:00+05:30 | TZ=Asia/Kolkata 14 14 * * ? | 2016-01-03T14:14:00+05:30
    2025-05-31T12:00:00Z | CRON_TZ=Asia/Tokyo 0 9 * * * | 2025-06-01T09:00:00+09:00
    # Where midnight does not exist on the day DST starts.
    2018-10-17T05:00:00-04:00 | TZ=America/Sao_Paulo 0 0 9 10 * ? | 2018-11-10T06:00:00-05:00
    2018-02-14T05:00:00-05:00 | TZ=America/Sao_Paulo 0 0 9 22 * ? | 2018-02-22T07:00:00-05:00
";

/// The same in New York, around its DST changes: after | schedule | next.
const NEXT_IN_NEW_YORK: &str = r"
    2012-11-04T00:00:00-04:00 | 0 0 3 3 * ?     | 2012-12-03T03:00:00-05:00
    # Spring forward (02:00 EST → 03:00 EDT), where robfig agrees.
    2012-03-11T00:00:00-05:00 | 0 0 * * * ?     | 2012-03-11T01:00:00-05:00
    2012-03-11T01:00:00-05:00 | 0 0 * * * ?     | 2012-03-11T03:00:00-04:00
    2012-03-11T03:00:00-04:00 | 0 0 * * * ?     | 2012-03-11T04:00:00-04:00
    2012-03-11T00:00:00-05:00 | 0 0 1 * * ?     | 2012-03-11T01:00:00-05:00
    2012-03-11T01:00:00-05:00 | 0 0 1 * * ?     | 2012-03-12T01:00:00-04:00
    # ... and where Ember's rule differs: a fixed time in the gap fires at its end (robfig
    # skips the day, to 2013-03-11T02:30 and 2012-03-12T02:00).
    2012-03-11T00:00:00-05:00 | 0 30 2 11 Mar ? | 2012-03-11T03:00:00-04:00
    2012-03-11T00:00:00-05:00 | 0 0 2 * * ?     | 2012-03-11T03:00:00-04:00
    2012-03-11T03:00:00-04:00 | 0 0 2 * * ?     | 2012-03-12T02:00:00-04:00
    # Fall back (02:00 EDT → 01:00 EST): an interval job runs on both passes, as in robfig.
    2012-11-04T00:00:00-04:00 | 0 0 * * * ?     | 2012-11-04T01:00:00-04:00
    2012-11-04T01:00:00-04:00 | 0 0 * * * ?     | 2012-11-04T01:00:00-05:00
    2012-11-04T01:00:00-05:00 | 0 0 * * * ?     | 2012-11-04T02:00:00-05:00
    2012-11-04T00:00:00-04:00 | 0 30 2 04 Nov ? | 2012-11-04T02:30:00-05:00
    2012-11-04T00:00:00-04:00 | 0 0 2 * * ?     | 2012-11-04T02:00:00-05:00
    2012-11-04T02:00:00-05:00 | 0 0 2 * * ?     | 2012-11-05T02:00:00-05:00
    2012-11-04T00:00:00-04:00 | 0 0 3 * * ?     | 2012-11-04T03:00:00-05:00
    2012-11-04T00:00:00-04:00 | 0 0 1 * * ?     | 2012-11-04T01:00:00-04:00
    # ... but a fixed time fires once, on the first pass (robfig: again at 01:00 EST).
    2012-11-04T01:00:00-04:00 | 0 0 1 * * ?     | 2012-11-05T01:00:00-05:00
    2012-11-04T01:45:00-04:00 | 0 30 1 04 Nov ? | 2013-11-04T01:30:00-05:00
";

/// Lord Howe moves its clock by half an hour: 02:00 → 02:30 in October, back in April.
const NEXT_ON_LORD_HOWE: &str = r"
    2024-10-06T01:50:00+10:30 | */20 * * * * | 2024-10-06T02:40:00+11:00
    2024-10-06T01:50:00+10:30 | 15 2 * * *   | 2024-10-06T02:30:00+11:00
    2024-04-07T01:50:00+11:00 | */20 * * * * | 2024-04-07T01:40:00+10:30
    2024-04-07T01:45:00+10:30 | 45 1 * * *   | 2024-04-08T01:45:00+10:30
";

#[test]
fn the_next_tick_is_robfigs_but_for_fixed_times_across_dst() {
    for (zone, table) in [
        (Tz::UTC, NEXT),
        (chrono_tz::America::New_York, NEXT_IN_NEW_YORK),
        (chrono_tz::Australia::Lord_Howe, NEXT_ON_LORD_HOWE),
    ] {
        for row in rows(table) {
            let (after, schedule, next) = (row[0], row[1], row[2]);
            let next = (!next.is_empty()).then(|| at(next));
            let got = Schedule::parse(schedule, zone)
                .unwrap_or_else(|e| panic!("{schedule:?}: {e}"))
                .next_after(at(after));
            assert_eq!(got, next, "{schedule:?} in {zone} after {after}");
        }
    }
}

/// Time | schedule | whether it fires then: robfig/cron's `TestActivation`.
const ACTIVATION: &str = r"
    2012-07-09T15:00:00Z | 0/15 * * * *     | yes
    2012-07-09T15:45:00Z | 0/15 * * * *     | yes
    2012-07-09T15:40:00Z | 0/15 * * * *     | no
    2012-07-09T15:05:00Z | 5/15 * * * *     | yes
    2012-07-09T15:20:00Z | 5/15 * * * *     | yes
    2012-07-09T15:50:00Z | 5/15 * * * *     | yes
    2012-07-15T15:00:00Z | 0/15 * * Jul *   | yes
    2012-07-15T15:00:00Z | 0/15 * * Jun *   | no
    2012-07-15T08:30:00Z | 30 08 ? Jul Sun  | yes
    2012-07-15T08:30:00Z | 30 08 15 Jul ?   | yes
    2012-07-16T08:30:00Z | 30 08 ? Jul Sun  | no
    2012-07-16T08:30:00Z | 30 08 15 Jul ?   | no
    2012-07-09T15:00:00Z | @hourly          | yes
    2012-07-09T15:04:00Z | @hourly          | no
    2012-07-09T15:00:00Z | @daily           | no
    2012-07-09T00:00:00Z | @daily           | yes
    2012-07-09T00:00:00Z | @weekly          | no
    2012-07-08T00:00:00Z | @weekly          | yes
    2012-07-08T01:00:00Z | @weekly          | no
    2012-07-08T00:00:00Z | @monthly         | no
    2012-07-01T00:00:00Z | @monthly         | yes
    # Both day fields restricted: either matches.
    2012-07-15T00:00:00Z | * * 1,15 * Sun   | yes
    2012-06-15T00:00:00Z | * * 1,15 * Sun   | yes
    2012-08-01T00:00:00Z | * * 1,15 * Sun   | yes
    2012-07-15T00:00:00Z | * * */10 * Sun   | yes
    # One starts with a star: both must.
    2012-07-15T00:00:00Z | * * * * Mon      | no
    2012-07-09T00:00:00Z | * * 1,15 * *     | no
    2012-07-15T00:00:00Z | * * 1,15 * *     | yes
    2012-07-15T00:00:00Z | * * */2 * Sun    | yes
";

#[test]
fn fires_at_exactly_the_times_robfig_activates() {
    for row in rows(ACTIVATION) {
        let (time, schedule, fires) = (at(row[0]), row[1], row[2] == "yes");
        let next = parse(schedule).next_after(time - chrono::TimeDelta::seconds(1));
        assert_eq!(
            next == Some(time),
            fires,
            "{schedule:?} at {time}: next is {next:?}"
        );
    }
}

#[test]
fn every_fires_at_fixed_intervals_of_whole_seconds_from_where_it_is_asked() {
    let schedule = parse("@every 1h30m");
    assert_eq!(schedule.every(), Some(std::time::Duration::from_secs(5400)));
    let start = at("2025-01-01T10:07:12.345Z");
    assert_eq!(
        ticks(&schedule, start, 3),
        [
            at("2025-01-01T11:37:12Z"),
            at("2025-01-01T13:07:12Z"),
            at("2025-01-01T14:37:12Z")
        ]
    );
    // Below a second is a second; a fraction of a second is dropped.
    assert_eq!(
        parse("@every 200ms").next_after(start),
        Some(at("2025-01-01T10:07:13Z"))
    );
    assert_eq!(
        parse("@every 2.5s").next_after(start),
        Some(at("2025-01-01T10:07:14Z"))
    );
    // A zone prefix is accepted and changes nothing.
    assert_eq!(
        parse("CRON_TZ=Europe/Berlin @every 10m").next_after(start),
        Some(at("2025-01-01T10:17:12Z"))
    );
    assert_eq!(parse("@daily").every(), None);
}

/// Schedule | after | until.
const COUNTED: &str = r"
    * * * * * *                      | 2025-01-01T10:00:00.5Z | 2025-01-01T10:01:00Z
    @every 7s                        | 2025-01-01T10:00:00.5Z | 2025-01-01T10:01:00Z
    */10 * * * *                     | 2025-03-29T00:00:00Z   | 2025-04-01T00:00:00Z
    TZ=Europe/Berlin */10 * * * *    | 2025-03-29T00:00:00Z   | 2025-04-01T00:00:00Z
    TZ=Europe/Berlin 30 2 * * *      | 2025-03-29T00:00:00Z   | 2025-11-01T00:00:00Z
    TZ=America/New_York */30 1 * * * | 2025-11-01T00:00:00Z   | 2025-11-04T00:00:00Z
    TZ=America/New_York 30 1 * * *   | 2025-11-02T05:45:00Z   | 2025-11-04T00:00:00Z
    TZ=America/New_York 30 1 * * *   | 2025-11-02T05:30:00Z   | 2025-11-02T06:30:00Z
    # From the second pass through the repeated hour: 01:30 EST does not fire.
    TZ=America/New_York 30 1 * * *   | 2025-11-02T06:10:00Z   | 2025-11-04T00:00:00Z
    TZ=America/New_York */20 1 * * * | 2025-11-02T06:10:00Z   | 2025-11-02T07:00:00Z
    TZ=Australia/Lord_Howe 15 2 * * * | 2024-01-01T00:00:00Z  | 2025-01-01T00:00:00Z
    0 0 29 2 *                       | 2023-01-01T00:00:00Z   | 2033-01-01T00:00:00Z
";

#[test]
fn counting_ticks_agrees_with_stepping_through_them() {
    for row in rows(COUNTED) {
        let (schedule, from, until) = (parse(row[0]), at(row[1]), at(row[2]));
        let stepped = std::iter::successors(schedule.next_after(from), |t| schedule.next_after(*t))
            .take_while(|t| *t <= until)
            .count() as u64;
        assert_eq!(schedule.count_between(from, until), stepped, "{}", row[0]);
        assert_eq!(schedule.count_between(until, from), 0);
    }
}

#[test]
fn the_zone_is_the_prefixs_and_may_not_also_be_set_in_spec_timezone() {
    let config = |schedule: &str, timezone: Option<&str>| PingConfig {
        namespace: "default".into(),
        name: "nightly".into(),
        schedule: schedule.into(),
        timezone: timezone.map(Into::into),
        ..PingConfig::default()
    };
    for (schedule, zone) in [
        ("CRON_TZ=Europe/Berlin 0 9 * * *", chrono_tz::Europe::Berlin),
        ("TZ=America/New_York @daily", chrono_tz::America::New_York),
        ("TZ=Asia/Tokyo 0 5 * * * *", chrono_tz::Asia::Tokyo),
    ] {
        let valid = config(schedule, None).validate().unwrap();
        assert_eq!(valid.schedule().zone(), zone, "{schedule}");
        assert!(valid.schedule().names_zone());
    }
    let valid = config("0 9 * * *", Some("Asia/Tokyo")).validate().unwrap();
    assert_eq!(valid.schedule().zone(), chrono_tz::Asia::Tokyo);
    assert!(!valid.schedule().names_zone());
    assert_eq!(
        valid.schedule().next_after(at("2024-12-31T12:00:00Z")),
        Some(at("2025-01-01T09:00:00+09:00"))
    );

    // Knative puts spec.timezone into the schedule as CRON_TZ= itself, so both cannot be set,
    // even to the same zone.
    for timezone in ["Europe/Berlin", "Asia/Tokyo"] {
        let err = config("CRON_TZ=Europe/Berlin 0 9 * * *", Some(timezone))
            .validate()
            .unwrap_err();
        assert!(matches!(err, PingError::TimezoneTwice { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("spec.timezone: "), "{message}");
        assert!(message.contains("spec.schedule"), "{message}");
    }
}
