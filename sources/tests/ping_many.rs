//! Many PingSources on one scheduler, on tokio's paused clock: the ticks of one instant reach
//! a destination in one batch, prepared ahead of their instant; a refusing destination delays
//! only its own sources; sources join and leave while it runs; and every tick is recorded.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{PingEvent, read_prepared};
use ember_event::CloudEvent;
use ember_event::sink::{Answers, EventSink, Prepared, Refused};
use ember_sources::ping::{
    AnchoredClock, Clock, MissedTicks, PingConfig, PingScheduler, Start, TickStore, ValidPing,
};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn ping(name: &str, schedule: &str) -> ValidPing {
    PingConfig {
        namespace: "default".into(),
        name: name.into(),
        schedule: schedule.into(),
        missed: MissedTicks::Skip,
        ..PingConfig::default()
    }
    .validate()
    .unwrap()
}

/// A tick as sent: the event and the clock reading when it was prepared.
#[derive(Debug, Clone)]
struct Sent {
    event: PingEvent,
    prepared_at: DateTime<Utc>,
}

/// One accepted `send` call: the clock reading and the ticks.
type Batch = (DateTime<Utc>, Vec<Sent>);

/// Records each `send` call (clock reading, events); refuses everything while `down`.
struct BatchSink {
    clock: AnchoredClock,
    prepared_at: Mutex<HashMap<String, DateTime<Utc>>>,
    batches: Mutex<Vec<Batch>>,
    down: AtomicBool,
}

impl BatchSink {
    fn new(clock: AnchoredClock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            prepared_at: Mutex::default(),
            batches: Mutex::default(),
            down: AtomicBool::default(),
        })
    }

    fn accepted(&self) -> Vec<Batch> {
        self.batches.lock().unwrap().clone()
    }
}

impl EventSink for BatchSink {
    fn prepare(&self, event: CloudEvent) -> Result<Prepared, Refused> {
        self.prepared_at
            .lock()
            .unwrap()
            .insert(event.id.clone(), self.clock.now());
        Ok(Prepared::Event(Box::new(event)))
    }

    fn send<'a>(&'a self, batch: &'a [&'a Prepared]) -> Answers<'a> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return batch
                    .iter()
                    .map(|_| Err(Refused::later("down", Duration::ZERO)))
                    .collect();
            }
            let prepared_at = self.prepared_at.lock().unwrap();
            let sent = batch
                .iter()
                .map(|p| {
                    let event = read_prepared(p);
                    let prepared_at = prepared_at[&event.id];
                    Sent { event, prepared_at }
                })
                .collect();
            self.batches.lock().unwrap().push((self.clock.now(), sent));
            batch.iter().map(|_| Ok(())).collect()
        })
    }

    fn name(&self) -> &str {
        "batches"
    }
}

async fn start(
    store: &TickStore,
    clock: AnchoredClock,
    pings: Vec<(ValidPing, &Arc<BatchSink>)>,
) -> PingScheduler {
    let scheduler = PingScheduler::start(store.clone(), clock);
    for (ping, sink) in pings {
        let sink: Arc<dyn EventSink> = sink.clone();
        scheduler.add(ping, sink, Start::Restart).await.unwrap();
    }
    scheduler
}

fn source(name: &str) -> String {
    format!("/apis/v1/namespaces/default/pingsources/{name}")
}

#[tokio::test(start_paused = true)]
async fn the_ticks_of_one_instant_reach_their_sink_in_one_batch_prepared_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:00.5Z"));
    let sink = BatchSink::new(clock);
    let pings = (0..100)
        .map(|i| (ping(&format!("p{i}"), "* * * * * *"), &sink))
        .collect();
    let scheduler = start(&store, clock, pings).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // to :03.5
    scheduler.stop().await;

    let batches = sink.accepted();
    assert_eq!(batches.len(), 3, "one batch per second");
    for (second, (at, events)) in (1..).zip(&batches) {
        let instant = utc(&format!("2025-01-01T10:00:0{second}Z"));
        assert_eq!(*at, instant, "sent at the instant");
        assert_eq!(events.len(), 100);
        let mut ids: Vec<_> = events.iter().map(|p| p.event.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 100, "a fresh id per source and tick");
        for p in events {
            assert_eq!(p.event.time, instant);
            assert!(
                p.prepared_at < instant,
                "prepared before its instant, at {}",
                p.prepared_at
            );
        }
    }
    for i in 0..100 {
        assert_eq!(
            store.last_fired("default", &format!("p{i}")).unwrap(),
            Some(utc("2025-01-01T10:00:03Z"))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusing_sink_delays_only_its_own_sources() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:00.5Z"));
    let up = BatchSink::new(clock);
    let down = BatchSink::new(clock);
    down.down.store(true, Ordering::SeqCst);
    let pings = vec![
        (ping("a", "* * * * * *"), &up),
        (ping("b", "* * * * * *"), &down),
        (ping("c", "*/2 * * * * *"), &up),
    ];
    let scheduler = start(&store, clock, pings).await;
    tokio::time::sleep(Duration::from_secs(4)).await; // to :04.5
    down.down.store(false, Ordering::SeqCst);
    // Its retries wait at most 10 s each: it has caught up well before :20.5.
    tokio::time::sleep(Duration::from_secs(16)).await; // to :20.5
    scheduler.stop().await;

    // The healthy sink got every tick on time: a each second, c every other second.
    let on_time: Vec<(DateTime<Utc>, Vec<String>)> = up
        .accepted()
        .into_iter()
        .map(|(at, events)| {
            assert!(events.iter().all(|p| p.event.time == at), "late tick");
            let mut sources: Vec<String> = events.iter().map(|p| p.event.source.clone()).collect();
            sources.sort();
            (at, sources)
        })
        .collect();
    let expected: Vec<(DateTime<Utc>, Vec<String>)> = (1..=20)
        .map(|second| {
            let at = utc(&format!("2025-01-01T10:00:{second:02}Z"));
            let due = if second % 2 == 0 {
                vec![source("a"), source("c")]
            } else {
                vec![source("a")]
            };
            (at, due)
        })
        .collect();
    assert_eq!(on_time, expected);
    // The refusing sink's source caught up in order once it recovered, each tick once.
    let late: Vec<DateTime<Utc>> = down
        .accepted()
        .iter()
        .flat_map(|(_, events)| events.iter().map(|p| p.event.time))
        .collect();
    assert_eq!(
        late,
        (1..=20)
            .map(|s| utc(&format!("2025-01-01T10:00:{s:02}Z")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store.last_fired("default", "b").unwrap(),
        Some(utc("2025-01-01T10:00:20Z"))
    );
}

#[tokio::test(start_paused = true)]
async fn sources_join_and_leave_a_running_scheduler_and_share_its_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:00.5Z"));
    let sink = BatchSink::new(clock);
    let scheduler = start(&store, clock, vec![(ping("a", "* * * * * *"), &sink)]).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // to :02.5
    let shared: Arc<dyn EventSink> = sink.clone();
    scheduler
        .add(ping("b", "* * * * * *"), shared.clone(), Start::Restart)
        .await
        .unwrap();
    let again = scheduler
        .add(ping("b", "* * * * * *"), shared, Start::Restart)
        .await;
    assert!(again.is_err(), "one source per name");
    tokio::time::sleep(Duration::from_secs(2)).await; // to :04.5
    scheduler.remove("default", "a").await;
    scheduler.remove("default", "nobody").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // to :06.5
    scheduler.stop().await;

    let batches: Vec<(DateTime<Utc>, Vec<String>)> = sink
        .accepted()
        .into_iter()
        .map(|(at, events)| {
            let mut sources: Vec<String> = events.iter().map(|p| p.event.source.clone()).collect();
            sources.sort();
            (at, sources)
        })
        .collect();
    let at = |s: u32| utc(&format!("2025-01-01T10:00:0{s}Z"));
    assert_eq!(
        batches,
        vec![
            (at(1), vec![source("a")]),
            (at(2), vec![source("a")]),
            (at(3), vec![source("a"), source("b")]),
            (at(4), vec![source("a"), source("b")]),
            (at(5), vec![source("b")]),
            (at(6), vec![source("b")]),
        ]
    );
    assert_eq!(store.last_fired("default", "a").unwrap(), Some(at(4)));
    assert_eq!(store.last_fired("default", "b").unwrap(), Some(at(6)));
}
