//! Properties of PingSource schedules over random input:
//! - parsing never panics, whatever the text, and neither does asking a parsed schedule for
//!   its next tick or counting its ticks;
//! - over random cron schedules and zones, the next ticks are those of a brute-force evaluator
//!   that walks real time minute by minute (second by second for 6-field schedules) and applies
//!   the documented rule directly, and the count of ticks in the window agrees.
//!
//! The brute-force evaluator knows each random schedule's values from how it was generated,
//! not from Ember's parser, so the grammar is checked too. Its rule, from `Schedule`'s docs: an
//! instant fires if its wall-clock reading matches and, for a fixed-time job (one second, one
//! minute and one hour), it is the first instant with that reading; or if it is the first
//! instant after a gap and, for a fixed-time job, a matching reading lies in the gap. Start
//! instants are mostly drawn around one of the zone's offset changes in
//! 2020-2037, so gaps and repeated hours are crossed often; those changes all fall on whole
//! minutes, which is what lets the 5-field walk step a minute at a time.

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike as _, NaiveDateTime, Offset as _, TimeDelta, TimeZone as _, Timelike as _,
    Utc,
};
use chrono_tz::Tz;
use ember_sources::ping::Schedule;
use proptest::prelude::*;

const ZONES: &[Tz] = &[
    Tz::UTC,
    chrono_tz::America::New_York,
    chrono_tz::Europe::London,
    chrono_tz::Europe::Berlin,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Pacific::Chatham,
    chrono_tz::America::St_Johns,
    chrono_tz::America::Santiago,
    chrono_tz::Asia::Kolkata,
];

/// A field's bounds and value names.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "Jan", "feb", "MAR", "apr", "May", "jun", "JUL", "aug", "Sep", "oct", "NOV", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "MON", "Tue", "wed", "THU", "fri", "Sat"],
};

/// A random field: its text, its values (one bit each) and whether it counts as `*`.
#[derive(Debug, Clone)]
struct Field {
    text: String,
    values: u64,
    star: bool,
}

/// A list item of a field within `bounds`, weighted toward `*` by `star_weight`.
fn item(bounds: &'static Bounds, star_weight: u32) -> impl Strategy<Value = Field> {
    let (min, max) = (bounds.min, bounds.max);
    let value = move || min..=max;
    let name_or_number = move |v: u32| -> BoxedStrategy<String> {
        if bounds.names.is_empty() {
            Just(v.to_string()).boxed()
        } else {
            prop_oneof![
                Just(v.to_string()),
                Just(bounds.names[(v - min) as usize].to_owned())
            ]
            .boxed()
        }
    };
    let all = move |step: u32| {
        (min..=max)
            .step_by(step as usize)
            .fold(0u64, |b, v| b | 1 << v)
    };
    prop_oneof![
        star_weight => prop_oneof![Just("*"), Just("?")].prop_map(move |s| Field {
            text: s.to_owned(),
            values: all(1),
            star: true,
        }),
        2 => (1..=max - min + 2).prop_map(move |step| Field {
            text: format!("*/{step}"),
            values: all(step),
            star: step == 1,
        }),
        3 => value().prop_flat_map(name_or_number).prop_map(move |text| {
            let v = numeric(&text, bounds);
            Field { text, values: 1 << v, star: false }
        }),
        2 => (value(), value())
            .prop_map(|(a, b)| (a.min(b), a.max(b)))
            .prop_flat_map(move |(a, b)| (name_or_number(a), name_or_number(b), Just((a, b))))
            .prop_map(|(a, b, (lo, hi))| Field {
                text: format!("{a}-{b}"),
                values: (lo..=hi).fold(0, |bits, v| bits | 1 << v),
                star: false,
            }),
        1 => (value(), value(), 1..=max - min + 1).prop_map(|(a, b, step)| {
            let (lo, hi) = (a.min(b), a.max(b));
            Field {
                text: format!("{lo}-{hi}/{step}"),
                values: (lo..=hi).step_by(step as usize).fold(0, |bits, v| bits | 1 << v),
                star: false,
            }
        }),
        1 => (value(), 1..=max - min + 1).prop_map(move |(a, step)| Field {
            text: format!("{a}/{step}"),
            values: (a..=max).step_by(step as usize).fold(0, |bits, v| bits | 1 << v),
            star: false,
        }),
    ]
}

fn numeric(text: &str, bounds: &Bounds) -> u32 {
    bounds
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
        .map(|i| bounds.min + i as u32)
        .unwrap_or_else(|| text.parse().unwrap())
}

/// A field of one to three items.
fn field(bounds: &'static Bounds, star_weight: u32) -> impl Strategy<Value = Field> {
    prop::collection::vec(item(bounds, star_weight), 1..=3).prop_map(|items| Field {
        text: items
            .iter()
            .map(|i| i.text.as_str())
            .collect::<Vec<_>>()
            .join(","),
        values: items.iter().fold(0, |b, i| b | i.values),
        star: items.iter().any(|i| i.star),
    })
}

/// A single value, often in the small hours where offset changes happen.
fn fixed(bounds: &'static Bounds, small: u32) -> impl Strategy<Value = Field> {
    prop_oneof![4 => 0..=small, 1 => bounds.min..=bounds.max].prop_map(|v| Field {
        text: v.to_string(),
        values: 1 << v,
        star: false,
    })
}

#[derive(Debug, Clone)]
struct Cron {
    second: Option<Field>,
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

impl Cron {
    fn text(&self) -> String {
        let mut fields: Vec<&str> = Vec::new();
        if let Some(s) = &self.second {
            fields.push(&s.text);
        }
        for f in [&self.minute, &self.hour, &self.dom, &self.month, &self.dow] {
            fields.push(&f.text);
        }
        fields.join(" ")
    }

    fn second_values(&self) -> u64 {
        self.second.as_ref().map_or(1, |s| s.values)
    }

    fn is_fixed_time(&self) -> bool {
        self.second_values().count_ones() == 1
            && self.minute.values.count_ones() == 1
            && self.hour.values.count_ones() == 1
    }

    fn matches(&self, t: NaiveDateTime) -> bool {
        let has = |bits: u64, v: u32| bits >> v & 1 == 1;
        let dom = has(self.dom.values, t.day());
        let dow = has(self.dow.values, t.weekday().num_days_from_sunday());
        let day = if self.dom.star || self.dow.star {
            dom && dow
        } else {
            dom || dow
        };
        day && has(self.month.values, t.month())
            && has(self.hour.values, t.hour())
            && has(self.minute.values, t.minute())
            && has(self.second_values(), t.second())
    }

    /// Whether instant `u` fires, by the documented rule.
    fn fires(&self, zone: Tz, u: DateTime<Utc>) -> bool {
        let reading = u.with_timezone(&zone).naive_local();
        let first_with_reading = match zone.from_local_datetime(&reading) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t == u,
            LocalResult::None => unreachable!("an instant's own reading exists"),
        };
        let fixed = self.is_fixed_time();
        if self.matches(reading) && (!fixed || first_with_reading) {
            return true;
        }
        let second = TimeDelta::seconds(1);
        let before = (u - second).with_timezone(&zone).naive_local();
        if fixed && reading - before > second {
            // `u` ends a gap: the readings skipped are those after `before`, before `reading`.
            let mut t = before + second;
            while t < reading {
                if self.matches(t) {
                    return true;
                }
                t += second;
            }
        }
        false
    }
}

fn cron(with_seconds: bool) -> impl Strategy<Value = Cron> {
    let second = if with_seconds {
        prop_oneof![
            field(&SECOND, 2).prop_map(Some),
            fixed(&SECOND, 0).prop_map(Some)
        ]
        .boxed()
    } else {
        Just(None).boxed()
    };
    let time = prop_oneof![
        (field(&MINUTE, 2), field(&HOUR, 3)),
        // Fixed-time jobs, often at the hours offsets change.
        (fixed(&MINUTE, 59), fixed(&HOUR, 3)),
    ];
    (
        second,
        time,
        field(&DOM, 6),
        field(&MONTH, 8),
        field(&DOW, 5),
    )
        .prop_map(|(second, (minute, hour), dom, month, dow)| Cron {
            second,
            minute,
            hour,
            dom,
            month,
            dow,
        })
}

/// The instants in `year` at which `zone`'s offset changes (at most one a day).
fn offset_changes(zone: Tz, year: i32) -> Vec<DateTime<Utc>> {
    let offset = |t: i64| {
        let t = DateTime::from_timestamp(t, 0).unwrap();
        zone.offset_from_utc_datetime(&t.naive_utc()).fix()
    };
    let mut changes = Vec::new();
    let mut day = Utc
        .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let end = Utc
        .with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    while day < end {
        let next = day + 86400;
        if offset(day) != offset(next) {
            let (mut lo, mut hi) = (day, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(day) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            changes.push(DateTime::from_timestamp(hi, 0).unwrap());
        }
        day = next;
    }
    changes
}

/// A start instant (whole seconds) `back` before one of the zone's offset changes (after it, if
/// negative), or
/// anywhere in 2020-2037 for zones without them (and now and then for the others).
fn start(zone: Tz, year: i32, pick: usize, back: i64, anywhere: bool) -> DateTime<Utc> {
    let changes = offset_changes(zone, year);
    if anywhere || changes.is_empty() {
        let base = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
        return base + TimeDelta::seconds((back * 7919).rem_euclid(365 * 86400));
    }
    changes[pick % changes.len()] - TimeDelta::seconds(back)
}

/// Compares Ember's ticks in `(from, from + window]` with the brute-force walk's.
fn check(
    cron: &Cron,
    zone: Tz,
    from: DateTime<Utc>,
    window: TimeDelta,
) -> Result<(), TestCaseError> {
    let text = format!("CRON_TZ={} {}", zone.name(), cron.text());
    let schedule = Schedule::parse(&text, Tz::UTC)
        .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
    let until = from + window;
    let step = if cron.second.is_some() {
        TimeDelta::seconds(1)
    } else {
        TimeDelta::minutes(1)
    };
    let mut expected = Vec::new();
    // Both walks start on a whole minute for 5-field schedules.
    let mut u = if cron.second.is_some() {
        from + step
    } else {
        from - TimeDelta::seconds(from.second().into()) + step
    };
    while u <= until {
        if cron.fires(zone, u) {
            expected.push(u);
        }
        u += step;
    }
    let actual: Vec<_> =
        std::iter::successors(schedule.next_after(from), |t| schedule.next_after(*t))
            .take_while(|t| *t <= until)
            .take(expected.len() + 1)
            .collect();
    if actual != expected {
        let at = actual
            .iter()
            .zip(&expected)
            .position(|(a, e)| a != e)
            .unwrap_or(actual.len().min(expected.len()));
        return Err(TestCaseError::fail(format!(
            "{text} from {from}: tick {at} is {:?}, the walk says {:?} ({} ticks, the walk {})",
            actual.get(at),
            expected.get(at),
            actual.len(),
            expected.len()
        )));
    }
    prop_assert_eq!(
        schedule.count_between(from, until),
        expected.len() as u64,
        "{} from {}",
        text,
        from
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsing_any_text_never_panics(text in ".{0,64}", zone in prop::sample::select(ZONES)) {
        let _ = Schedule::parse(&text, zone);
    }

    #[test]
    fn parsing_cron_like_text_never_panics_nor_does_using_it(
        text in "(CRON_TZ=Europe/Berlin |TZ=UTC |@every |@)?[0-9*?/,\\- a-zA-Z]{0,40}",
        secs in 0i64..8_000_000_000,
    ) {
        if let Ok(schedule) = Schedule::parse(&text, chrono_tz::America::New_York) {
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            if let Some(next) = schedule.next_after(t) {
                prop_assert!(next > t);
                prop_assert_eq!(schedule.count_between(t, next), 1);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn ticks_agree_with_a_minute_by_minute_walk(
        cron in cron(false),
        zone in prop::sample::select(ZONES),
        year in 2020i32..2037,
        pick in 0usize..4,
        back in prop_oneof![-7200i64..7200, -86400i64..2 * 86400],
        anywhere in prop::bool::weighted(0.2),
    ) {
        let from = start(zone, year, pick, back, anywhere);
        check(&cron, zone, from, TimeDelta::days(2))?;
    }

    #[test]
    fn ticks_agree_with_a_second_by_second_walk(
        cron in cron(true),
        zone in prop::sample::select(ZONES),
        year in 2020i32..2037,
        pick in 0usize..4,
        back in -3600i64..3 * 3600,
        anywhere in prop::bool::weighted(0.2),
    ) {
        let from = start(zone, year, pick, back, anywhere);
        check(&cron, zone, from, TimeDelta::hours(3))?;
    }
}
