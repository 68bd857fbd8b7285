//! The PingSource run loop on tokio's paused clock: ticks at the right instants (UTC, seconds,
//! descriptors, `@every`, DST in Berlin and New York), no duplicates across restarts, the
//! missed-tick policies (counted and logged), and retries of a refusing sink; the source's
//! counters follow.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{PingEvent, read_prepared};
use ember_event::CloudEvent;
use ember_event::sink::{Answers, EventSink, Prepared, Refused};
use ember_sources::ping::{
    AnchoredClock, Clock, MissedTicks, PING_EVENT_TYPE, PingConfig, TickStore, ValidPing, run,
};
use tokio::sync::watch;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn ping(schedule: &str, timezone: Option<&str>, missed: MissedTicks) -> ValidPing {
    PingConfig {
        namespace: "default".into(),
        name: "tick".into(),
        schedule: schedule.into(),
        timezone: timezone.map(Into::into),
        missed,
        ..PingConfig::default()
    }
    .validate()
    .unwrap()
}

/// An accepted event and the clock reading when the sink accepted it.
type Accepted = (PingEvent, DateTime<Utc>);

/// Records accepted events with the clock reading at acceptance; refuses while `down_until`
/// is in the future.
#[derive(Clone)]
struct RecordingSink {
    clock: AnchoredClock,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    attempts: Arc<Mutex<Vec<PingEvent>>>,
    refuse_first: Arc<AtomicUsize>,
    /// Refusals for good (as a URL's 400) before any other answer.
    reject_first: Arc<AtomicUsize>,
    down_until: Option<DateTime<Utc>>,
}

impl RecordingSink {
    fn new(clock: AnchoredClock) -> Self {
        Self {
            clock,
            accepted: Arc::default(),
            attempts: Arc::default(),
            refuse_first: Arc::default(),
            reject_first: Arc::default(),
            down_until: None,
        }
    }
    fn times(&self) -> Vec<DateTime<Utc>> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _)| e.time)
            .collect()
    }
}

impl RecordingSink {
    fn send_one(&self, prepared: &Prepared) -> Result<(), Refused> {
        let event = read_prepared(prepared);
        self.attempts.lock().unwrap().push(event.clone());
        if self
            .reject_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Refused::never("answered 400 Bad Request"));
        }
        let refuse = self
            .refuse_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse || self.down_until.is_some_and(|t| self.clock.now() < t) {
            return Err(Refused::later("broker unavailable", Duration::ZERO));
        }
        self.accepted
            .lock()
            .unwrap()
            .push((event, self.clock.now()));
        Ok(())
    }
}

impl EventSink for RecordingSink {
    fn prepare(&self, event: CloudEvent) -> Result<Prepared, Refused> {
        Ok(Prepared::Event(Box::new(event)))
    }

    fn send<'a>(&'a self, batch: &'a [&'a Prepared]) -> Answers<'a> {
        Box::pin(async move { batch.iter().map(|p| self.send_one(p)).collect() })
    }

    fn name(&self) -> &str {
        "recording"
    }
}

/// A log writer for one test: everything logged on this thread while the guard lives.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines_with(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A source's counters: (fired, late, retried, skipped).
fn counters(ping: &ValidPing) -> (u64, u64, u64, u64) {
    let m = ping.metrics();
    (m.fired(), m.late(), m.retried(), m.skipped())
}

/// Runs `ping` for `duration` of (paused) tokio time, then shuts it down.
async fn run_for(
    ping: &ValidPing,
    sink: &RecordingSink,
    store: &TickStore,
    clock: AnchoredClock,
    duration: Duration,
) {
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run(
        ping.clone(),
        Arc::new(sink.clone()),
        store.clone(),
        clock,
        shutdown,
    ));
    tokio::time::sleep(duration).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Runs `schedule` from `start` for `duration` with a fresh store; returns the fired times.
async fn fired(
    schedule: &str,
    zone: Option<&str>,
    start: &str,
    duration: Duration,
) -> Vec<DateTime<Utc>> {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc(start));
    let sink = RecordingSink::new(clock);
    run_for(
        &ping(schedule, zone, MissedTicks::Skip),
        &sink,
        &store,
        clock,
        duration,
    )
    .await;
    // Each tick was emitted when it was due, not later.
    for (event, at) in sink.accepted.lock().unwrap().iter() {
        assert_eq!(*at, event.time, "tick delivered late");
    }
    sink.times()
}

fn times(list: &[&str]) -> Vec<DateTime<Utc>> {
    list.iter().map(|s| utc(s)).collect()
}

#[tokio::test(start_paused = true)]
async fn fires_every_quarter_hour_in_utc_with_the_knative_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:07:00Z"));
    let sink = RecordingSink::new(clock);
    let ping = PingConfig {
        namespace: "shop".into(),
        name: "report".into(),
        schedule: "*/15 * * * *".into(),
        content_type: Some("application/json".into()),
        data: Some(r#"{"run":true}"#.into()),
        extensions: vec![("team".into(), "payments".into())],
        ..PingConfig::default()
    }
    .validate()
    .unwrap();
    run_for(&ping, &sink, &store, clock, Duration::from_secs(HOUR)).await;

    assert_eq!(
        sink.times(),
        times(&[
            "2025-01-01T10:15:00Z",
            "2025-01-01T10:30:00Z",
            "2025-01-01T10:45:00Z",
            "2025-01-01T11:00:00Z"
        ])
    );
    let accepted = sink.accepted.lock().unwrap();
    let mut ids = Vec::new();
    for (event, at) in accepted.iter() {
        assert_eq!(*at, event.time);
        assert_eq!(event.r#type, PING_EVENT_TYPE);
        assert_eq!(event.source, "/apis/v1/namespaces/shop/pingsources/report");
        assert_eq!(event.content_type.as_deref(), Some("application/json"));
        assert_eq!(event.data.as_deref(), Some(&br#"{"run":true}"#[..]));
        assert_eq!(
            event.extensions,
            vec![("team".to_owned(), "payments".to_owned())]
        );
        assert_eq!(
            uuid::Uuid::parse_str(&event.id).unwrap().get_version_num(),
            4
        );
        ids.push(event.id.clone());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each tick has a fresh id");
    assert_eq!(
        store.last_fired("shop", "report").unwrap(),
        Some(utc("2025-01-01T11:00:00Z"))
    );
}

#[tokio::test(start_paused = true)]
async fn fires_a_seconds_schedule() {
    let got = fired(
        "*/10 * * * * *",
        None,
        "2025-01-01T10:00:03Z",
        Duration::from_secs(35),
    )
    .await;
    assert_eq!(
        got,
        times(&[
            "2025-01-01T10:00:10Z",
            "2025-01-01T10:00:20Z",
            "2025-01-01T10:00:30Z"
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn fires_an_hourly_descriptor() {
    let got = fired(
        "@hourly",
        None,
        "2025-01-01T10:07:00Z",
        Duration::from_secs(3 * HOUR),
    )
    .await;
    assert_eq!(
        got,
        times(&[
            "2025-01-01T11:00:00Z",
            "2025-01-01T12:00:00Z",
            "2025-01-01T13:00:00Z"
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn berlin_spring_forward_fires_a_missing_time_at_the_end_of_the_gap() {
    // 2025-03-30: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that night.
    let got = fired(
        "30 2 * * *",
        Some("Europe/Berlin"),
        "2025-03-29T00:00:00Z",
        Duration::from_secs(3 * DAY),
    )
    .await;
    assert_eq!(
        got,
        times(&[
            "2025-03-29T01:30:00Z", // 02:30 CET
            "2025-03-30T01:00:00Z", // 03:00 CEST: first instant after the gap
            "2025-03-31T00:30:00Z", // 02:30 CEST
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn berlin_fall_back_fires_a_repeated_time_once_at_its_first_occurrence() {
    // 2025-10-26: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let got = fired(
        "30 2 * * *",
        Some("Europe/Berlin"),
        "2025-10-25T00:00:00Z",
        Duration::from_secs(3 * DAY),
    )
    .await;
    assert_eq!(
        got,
        times(&[
            "2025-10-25T00:30:00Z", // 02:30 CEST
            "2025-10-26T00:30:00Z", // 02:30 CEST, first pass; not again at 01:30Z (CET)
            "2025-10-27T01:30:00Z", // 02:30 CET
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn new_york_spring_forward_fires_a_missing_time_at_the_end_of_the_gap() {
    // 2025-03-09: 02:00 EST jumps to 03:00 EDT.
    let got = fired(
        "30 2 * * *",
        Some("America/New_York"),
        "2025-03-08T00:00:00Z",
        Duration::from_secs(3 * DAY),
    )
    .await;
    assert_eq!(
        got,
        times(&[
            "2025-03-08T07:30:00Z", // 02:30 EST
            "2025-03-09T07:00:00Z", // 03:00 EDT
            "2025-03-10T06:30:00Z", // 02:30 EDT
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn new_york_fall_back_fires_a_repeated_time_once_and_an_interval_on_both_passes() {
    // 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:00-01:59 happens twice.
    let got = fired(
        "30 1 * * *",
        Some("America/New_York"),
        "2025-11-01T00:00:00Z",
        Duration::from_secs(3 * DAY),
    )
    .await;
    assert_eq!(
        got,
        times(&[
            "2025-11-01T05:30:00Z", // 01:30 EDT
            "2025-11-02T05:30:00Z", // 01:30 EDT, first pass only
            "2025-11-03T06:30:00Z", // 01:30 EST
        ])
    );
    // 2:30 is not repeated in New York: the night of the change is unremarkable.
    let got = fired(
        "30 2 * * *",
        Some("America/New_York"),
        "2025-11-01T12:00:00Z",
        Duration::from_secs(2 * DAY),
    )
    .await;
    assert_eq!(
        got,
        times(&["2025-11-02T07:30:00Z", "2025-11-03T07:30:00Z"])
    );
    // An interval job fires on both passes through the repeated hour.
    let got = fired(
        "*/30 * * * *",
        Some("America/New_York"),
        "2025-11-02T04:50:00Z",
        Duration::from_secs(2 * HOUR + 20 * MIN),
    )
    .await;
    assert_eq!(
        got,
        times(&[
            "2025-11-02T05:00:00Z", // 01:00 EDT
            "2025-11-02T05:30:00Z", // 01:30 EDT
            "2025-11-02T06:00:00Z", // 01:00 EST
            "2025-11-02T06:30:00Z", // 01:30 EST
            "2025-11-02T07:00:00Z", // 02:00 EST
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn restart_mid_schedule_fires_no_duplicate_in_either_policy() {
    for missed in [
        MissedTicks::Skip,
        MissedTicks::CatchUp {
            window: Duration::from_secs(2 * HOUR),
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = TickStore::open(dir.path()).unwrap();
        let clock = AnchoredClock::starting_at(utc("2025-01-01T10:07:00Z"));
        let sink = RecordingSink::new(clock);
        let ping = ping("*/15 * * * *", None, missed);
        run_for(&ping, &sink, &store, clock, Duration::from_secs(HOUR)).await; // to 11:07
        tokio::time::advance(Duration::from_secs(3 * MIN)).await; // down until 11:10
        let store = TickStore::open(dir.path()).unwrap();
        run_for(&ping, &sink, &store, clock, Duration::from_secs(30 * MIN)).await; // to 11:40
        assert_eq!(
            sink.times(),
            times(&[
                "2025-01-01T10:15:00Z",
                "2025-01-01T10:30:00Z",
                "2025-01-01T10:45:00Z",
                "2025-01-01T11:00:00Z",
                "2025-01-01T11:15:00Z",
                "2025-01-01T11:30:00Z",
            ]),
            "{missed:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn restart_with_the_wall_clock_behind_the_last_tick_does_not_refire_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    store
        .record("default", "tick", utc("2025-01-01T11:00:00Z"))
        .await
        .unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:50:00Z"));
    let sink = RecordingSink::new(clock);
    let ping = ping(
        "*/15 * * * *",
        None,
        MissedTicks::CatchUp {
            window: Duration::from_secs(HOUR),
        },
    );
    run_for(&ping, &sink, &store, clock, Duration::from_secs(30 * MIN)).await;
    assert_eq!(sink.times(), times(&["2025-01-01T11:15:00Z"]));
}

#[tokio::test(start_paused = true)]
async fn skip_fires_nothing_for_the_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:07:00Z"));
    let sink = RecordingSink::new(clock);
    let ping = ping("*/15 * * * *", None, MissedTicks::Skip);
    run_for(&ping, &sink, &store, clock, Duration::from_secs(13 * MIN)).await; // to 10:20
    tokio::time::advance(Duration::from_secs(45 * MIN)).await; // down until 11:05
    let logs = Logs::default();
    let _logs = logs.capture();
    run_for(&ping, &sink, &store, clock, Duration::from_secs(20 * MIN)).await; // to 11:25
    assert_eq!(
        sink.times(),
        times(&["2025-01-01T10:15:00Z", "2025-01-01T11:15:00Z"])
    );
    // 10:30, 10:45 and 11:00 were skipped: counted, and logged in one line.
    assert_eq!(counters(&ping), (2, 0, 0, 3));
    let lines = logs.lines_with("skipped");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    for part in [
        "WARN",
        "source=default/tick",
        "skipped=3",
        "first=2025-01-01 10:30:00 UTC",
        "through=2025-01-01 11:05:00 UTC",
    ] {
        assert!(lines[0].contains(part), "{part:?} not in {}", lines[0]);
    }
}

#[tokio::test(start_paused = true)]
async fn catch_up_fires_each_missed_tick_in_the_window_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:07:00Z"));
    let sink = RecordingSink::new(clock);
    let ping = ping(
        "*/15 * * * *",
        None,
        MissedTicks::CatchUp {
            window: Duration::from_secs(30 * MIN),
        },
    );
    run_for(&ping, &sink, &store, clock, Duration::from_secs(13 * MIN)).await; // to 10:20
    tokio::time::advance(Duration::from_secs(45 * MIN)).await; // down until 11:05
    run_for(&ping, &sink, &store, clock, Duration::from_secs(20 * MIN)).await; // to 11:25
    let accepted: Vec<_> = sink
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(e, at)| (e.time, *at))
        .collect();
    assert_eq!(
        accepted,
        vec![
            (utc("2025-01-01T10:15:00Z"), utc("2025-01-01T10:15:00Z")),
            // 10:30 is older than the 30-minute window at 11:05: skipped.
            (utc("2025-01-01T10:45:00Z"), utc("2025-01-01T11:05:00Z")),
            (utc("2025-01-01T11:00:00Z"), utc("2025-01-01T11:05:00Z")),
            (utc("2025-01-01T11:15:00Z"), utc("2025-01-01T11:15:00Z")),
        ]
    );
    // 10:30 skipped; 10:45 and 11:00 fired late.
    assert_eq!(counters(&ping), (4, 2, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_refused_tick_is_retried_with_the_same_id_not_skipped_or_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:07:00Z"));
    let sink = RecordingSink::new(clock);
    sink.refuse_first.store(3, Ordering::SeqCst);
    let ping = ping("*/15 * * * *", None, MissedTicks::Skip);
    run_for(&ping, &sink, &store, clock, Duration::from_secs(30 * MIN)).await; // to 10:37

    assert_eq!(
        sink.times(),
        times(&["2025-01-01T10:15:00Z", "2025-01-01T10:30:00Z"])
    );
    let attempts = sink.attempts.lock().unwrap();
    assert_eq!(attempts.len(), 5);
    assert!(
        attempts[..4]
            .iter()
            .all(|e| e.id == attempts[0].id && e.time == attempts[0].time)
    );
    // Jittered backoff within 100 ms, 200 ms, 400 ms: accepted within 0.7 s of its instant.
    let accepted_at = sink.accepted.lock().unwrap()[0].1;
    assert!(
        (utc("2025-01-01T10:15:00Z")..=utc("2025-01-01T10:15:00.7Z")).contains(&accepted_at),
        "{accepted_at}"
    );
    // Three refusals retried; 0.7 s after its instant is not late.
    assert_eq!(counters(&ping), (2, 0, 3, 0));
}

#[tokio::test(start_paused = true)]
async fn a_tick_refused_for_good_is_dropped_and_recorded_and_the_next_one_fires() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:07:00Z"));
    let sink = RecordingSink::new(clock);
    sink.reject_first.store(1, Ordering::SeqCst);
    let ping = ping("*/15 * * * *", None, MissedTicks::Skip);
    run_for(&ping, &sink, &store, clock, Duration::from_secs(20 * MIN)).await; // to 10:27
    assert_eq!(sink.attempts.lock().unwrap().len(), 1, "not sent again");
    assert!(sink.times().is_empty());
    assert_eq!(
        store.last_fired("default", "tick").unwrap(),
        Some(utc("2025-01-01T10:15:00Z")),
        "recorded, so it never fires again"
    );
    assert_eq!(counters(&ping), (0, 0, 0, 0));
    assert_eq!(ping.metrics().dropped(), 1);
    // The next tick fires as usual.
    run_for(&ping, &sink, &store, clock, Duration::from_secs(10 * MIN)).await; // to 10:37
    assert_eq!(sink.times(), times(&["2025-01-01T10:30:00Z"]));
}

#[tokio::test(start_paused = true)]
async fn ticks_due_while_the_sink_is_down_fire_in_order_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:05Z"));
    let mut sink = RecordingSink::new(clock);
    sink.down_until = Some(utc("2025-01-01T10:00:37Z"));
    let ping = ping("*/10 * * * * *", None, MissedTicks::Skip);
    run_for(&ping, &sink, &store, clock, Duration::from_secs(50)).await; // to 10:00:55

    let accepted: Vec<_> = sink
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(e, at)| (e.time, *at))
        .collect();
    // Attempts from :10 with jittered waits bounded by 0.1 s doubling up to 10 s: the first
    // after :37 comes within 10 s, and the ticks due meanwhile follow at once.
    let recovered = accepted[0].1;
    assert!(
        (utc("2025-01-01T10:00:37Z")..=utc("2025-01-01T10:00:47Z")).contains(&recovered),
        "{recovered}"
    );
    let caught_up: Vec<_> = (1..=4)
        .map(|tens| utc(&format!("2025-01-01T10:00:{tens}0Z")))
        .filter(|t| *t <= recovered)
        .map(|t| (t, recovered))
        .collect();
    assert_eq!(&accepted[..caught_up.len()], &caught_up[..]);
    assert_eq!(
        accepted.last(),
        Some(&(utc("2025-01-01T10:00:50Z"), utc("2025-01-01T10:00:50Z"))),
        "on time once recovered"
    );
    assert_eq!(accepted.len(), 5, "every tick once, in order: {accepted:?}");
    // At most 0.1 + 0.2 + ... + 6.4 + 10 + 10 s of waiting lies between :10 and :37: at least
    // nine refusals.
    let refused = sink.attempts.lock().unwrap().len() - accepted.len();
    assert!(refused >= 9, "{refused}");
    let late = accepted
        .iter()
        .filter(|(t, at)| (*at - *t).to_std().unwrap() > Duration::from_secs(1))
        .count() as u64;
    assert!(late >= 3, "{accepted:?}");
    assert_eq!(counters(&ping), (5, late, refused as u64, 0));
}

#[tokio::test(start_paused = true)]
async fn every_fires_at_fixed_intervals_counted_from_start_up() {
    let got = fired(
        "@every 10s",
        None,
        "2025-01-01T10:00:00.300Z",
        Duration::from_secs(35),
    )
    .await;
    assert_eq!(
        got,
        times(&[
            "2025-01-01T10:00:10Z",
            "2025-01-01T10:00:20Z",
            "2025-01-01T10:00:30Z"
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn every_starts_a_new_series_after_a_restart_unless_it_catches_up() {
    // Down from 10:02:30 to 10:05:50: the first series' 10:03, 10:04 and 10:05 came due.
    let run_twice = |missed| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = TickStore::open(dir.path()).unwrap();
        let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:00Z"));
        let sink = RecordingSink::new(clock);
        let ping = ping("@every 1m", None, missed);
        run_for(&ping, &sink, &store, clock, Duration::from_secs(150)).await;
        tokio::time::advance(Duration::from_secs(200)).await;
        run_for(&ping, &sink, &store, clock, Duration::from_secs(150)).await; // to 10:08:20
        let accepted: Vec<_> = sink
            .accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(e, at)| (e.time, *at))
            .collect();
        (accepted, counters(&ping))
    };

    // Skip: a new series, one interval after the restart.
    let (accepted, counted) = run_twice(MissedTicks::Skip).await;
    let on_time = |t: &str| (utc(t), utc(t));
    assert_eq!(
        accepted,
        vec![
            on_time("2025-01-01T10:01:00Z"),
            on_time("2025-01-01T10:02:00Z"),
            on_time("2025-01-01T10:06:50Z"),
            on_time("2025-01-01T10:07:50Z"),
        ]
    );
    assert_eq!(counted, (4, 0, 0, 3));

    // Catch up (2 minutes): the first series goes on; its ticks in the window fire at once.
    let (accepted, counted) = run_twice(MissedTicks::CatchUp {
        window: Duration::from_secs(120),
    })
    .await;
    let restart = utc("2025-01-01T10:05:50Z");
    assert_eq!(
        accepted,
        vec![
            on_time("2025-01-01T10:01:00Z"),
            on_time("2025-01-01T10:02:00Z"),
            (utc("2025-01-01T10:04:00Z"), restart),
            (utc("2025-01-01T10:05:00Z"), restart),
            on_time("2025-01-01T10:06:00Z"),
            on_time("2025-01-01T10:07:00Z"),
            on_time("2025-01-01T10:08:00Z"),
        ]
    );
    assert_eq!(counted, (7, 2, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn shutdown_while_retrying_returns_without_recording_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:07:00Z"));
    let mut sink = RecordingSink::new(clock);
    sink.down_until = Some(utc("2025-01-02T00:00:00Z"));
    let ping = ping("*/15 * * * *", None, MissedTicks::Skip);
    run_for(&ping, &sink, &store, clock, Duration::from_secs(10 * MIN)).await; // to 10:17
    assert!(sink.times().is_empty());
    assert!(!sink.attempts.lock().unwrap().is_empty());
    assert_eq!(store.last_fired("default", "tick").unwrap(), None);
}
