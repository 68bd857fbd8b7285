//! Many PingSources on one scheduler (`run_many`), on tokio's paused clock: the ticks of one
//! instant reach a sink in one batch, prepared ahead of their instant; a refusing sink delays
//! only its own sources; and every source's ticks are recorded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ember_sources::ping::{
    AnchoredClock, Clock, MissedTicks, PingBatchSink, PingConfig, PingEvent, SinkError, TickStore,
    ValidPing, run_many,
};
use tokio::sync::watch;

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

/// A tick as prepared: the event and the clock reading when it was prepared.
#[derive(Debug, Clone)]
struct Prepared {
    event: PingEvent,
    at: DateTime<Utc>,
}

/// One accepted `send_all` call: the clock reading and the ticks.
type Batch = (DateTime<Utc>, Vec<Prepared>);

/// Records each `send_all` call (clock reading, events); refuses everything while `down`.
#[derive(Clone)]
struct BatchSink {
    clock: AnchoredClock,
    batches: Arc<Mutex<Vec<Batch>>>,
    down: Arc<AtomicBool>,
}

impl BatchSink {
    fn new(clock: AnchoredClock) -> Self {
        Self {
            clock,
            batches: Arc::default(),
            down: Arc::default(),
        }
    }

    fn accepted(&self) -> Vec<Batch> {
        self.batches.lock().unwrap().clone()
    }
}

impl PingBatchSink for BatchSink {
    type Prepared = Prepared;

    fn prepare(&self, event: PingEvent) -> Prepared {
        Prepared {
            event,
            at: self.clock.now(),
        }
    }

    async fn send_all(&self, batch: &[&Prepared]) -> Vec<Result<(), SinkError>> {
        if self.down.load(Ordering::SeqCst) {
            return batch.iter().map(|_| Err(SinkError::new("down"))).collect();
        }
        let events = batch.iter().map(|p| (*p).clone()).collect();
        self.batches
            .lock()
            .unwrap()
            .push((self.clock.now(), events));
        batch.iter().map(|_| Ok(())).collect()
    }
}

async fn run_for(
    pings: Vec<(ValidPing, usize)>,
    sinks: Vec<BatchSink>,
    store: &TickStore,
    clock: AnchoredClock,
    duration: Duration,
) {
    let (stop, shutdown) = watch::channel(false);
    let store = store.clone();
    let task = tokio::spawn(async move { run_many(pings, &sinks, store, clock, shutdown).await });
    tokio::time::sleep(duration).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_ticks_of_one_instant_reach_their_sink_in_one_batch_prepared_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let store = TickStore::open(dir.path()).unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:00.5Z"));
    let sink = BatchSink::new(clock);
    let pings = (0..100)
        .map(|i| (ping(&format!("p{i}"), "* * * * * *"), 0))
        .collect();
    run_for(
        pings,
        vec![sink.clone()],
        &store,
        clock,
        Duration::from_secs(3),
    )
    .await; // to :03.5

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
            assert!(p.at < instant, "prepared before its instant, at {}", p.at);
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
        (ping("a", "* * * * * *"), 0),
        (ping("b", "* * * * * *"), 1),
        (ping("c", "*/2 * * * * *"), 0),
    ];
    let sinks = vec![up.clone(), down.clone()];
    let (stop, shutdown) = watch::channel(false);
    let task = {
        let store = store.clone();
        tokio::spawn(async move { run_many(pings, &sinks, store, clock, shutdown).await })
    };
    tokio::time::sleep(Duration::from_secs(4)).await; // to :04.5
    down.down.store(false, Ordering::SeqCst);
    // Its retries back off 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s: the next after :04.5 is at :07.3.
    tokio::time::sleep(Duration::from_secs(3)).await; // to :07.5
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

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
    let a = "/apis/v1/namespaces/default/pingsources/a".to_owned();
    let c = "/apis/v1/namespaces/default/pingsources/c".to_owned();
    let expected: Vec<(DateTime<Utc>, Vec<String>)> = (1..=7)
        .map(|second| {
            let at = utc(&format!("2025-01-01T10:00:0{second}Z"));
            let due = if second % 2 == 0 {
                vec![a.clone(), c.clone()]
            } else {
                vec![a.clone()]
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
        (1..=7)
            .map(|s| utc(&format!("2025-01-01T10:00:0{s}Z")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store.last_fired("default", "b").unwrap(),
        Some(utc("2025-01-01T10:00:07Z"))
    );
}
