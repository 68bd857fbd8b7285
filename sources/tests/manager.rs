//! The source manager, on tokio's paused clock: PingSources and WebhookSources added, replaced
//! and removed while others keep running. A replaced PingSource keeps its tick record by name
//! (same schedule: it continues; new schedule: it counts from now) and its counters; a
//! replaced WebhookSource keeps its dedup window (a redelivery after the change is still
//! dropped), a removed one stops serving its path once its requests in flight are answered, and
//! a resource that does not build leaves the running source alone.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::PingEvent;
use ember_api::{Kind, Resource, ResourceId};
use ember_event::CloudEvent;
use ember_event::sink::{Answers, EventSink, Prepared, Refused};
use ember_sources::ping::{AnchoredClock, Clock, PingSourceKind, TICK_STORE_DIR, TickStore};
use ember_sources::webhook::{WebhookRoutes, WebhookSourceKind};
use ember_sources::{ManagerError, SourceKinds, SourceManager};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::sync::Semaphore;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The one resource in `yaml`.
fn resource(yaml: &str) -> Resource {
    let config = ember_api::load_str("test.yaml", yaml).expect("a valid resource");
    let mut resources = config.resources();
    assert_eq!(resources.len(), 1);
    resources.remove(0).0
}

fn id(kind: Kind, name: &str) -> ResourceId {
    ResourceId {
        kind,
        namespace: "default".into(),
        name: name.into(),
    }
}

fn ping_source(name: &str, schedule: &str, data: &str) -> Resource {
    resource(&format!(
        "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: {name}}}\n\
         spec:\n  schedule: '{schedule}'\n  data: {data}\n  sink: {{uri: 'http://127.0.0.1:1/'}}\n"
    ))
}

/// Records what it is sent, with the clock reading; when gated, each send waits for a permit.
struct RecordingSink {
    clock: Option<AnchoredClock>,
    sent: Mutex<Vec<(DateTime<Utc>, CloudEvent)>>,
    gate: Option<Arc<Semaphore>>,
}

impl RecordingSink {
    fn new(clock: Option<AnchoredClock>) -> Arc<Self> {
        Arc::new(Self {
            clock,
            sent: Mutex::default(),
            gate: None,
        })
    }

    fn gated(gate: Arc<Semaphore>) -> Arc<Self> {
        Arc::new(Self {
            clock: None,
            sent: Mutex::default(),
            gate: Some(gate),
        })
    }

    fn ticks(&self) -> Vec<(DateTime<Utc>, PingEvent)> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(at, e)| (*at, common::read(e)))
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.id.clone())
            .collect()
    }
}

impl EventSink for RecordingSink {
    fn prepare(&self, event: CloudEvent) -> Result<Prepared, Refused> {
        Ok(Prepared::Event(Box::new(event)))
    }

    fn send<'a>(&'a self, batch: &'a [&'a Prepared]) -> Answers<'a> {
        Box::pin(async move {
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            let now = self.clock.map(|c| c.now()).unwrap_or_default();
            let mut sent = self.sent.lock().unwrap();
            for p in batch {
                let Prepared::Event(e) = p else {
                    panic!("prepared here")
                };
                sent.push((now, (**e).clone()));
            }
            batch.iter().map(|_| Ok(())).collect()
        })
    }

    fn name(&self) -> &str {
        "recording"
    }
}

fn manager(kinds: SourceKinds, dir: &tempfile::TempDir) -> SourceManager {
    SourceManager::new(kinds, dir.path())
}

/// A source's counter `family` (e.g. `ember_pingsource_ticks_fired`) as the manager exports
/// it, with `labels`; `None` when the source does not run.
fn counter(
    m: &SourceManager,
    source: &ResourceId,
    family: &str,
    labels: &[(&str, &str)],
) -> Option<u64> {
    let (_, metrics) = m.metrics().into_iter().find(|(id, _)| id == source)?;
    metrics
        .counters()
        .into_iter()
        .find(|c| {
            c.family.name == family
                && c.labels.len() == labels.len()
                && labels.iter().all(|l| c.labels.contains(l))
        })
        .map(|c| c.value)
}

#[tokio::test(start_paused = true)]
async fn ping_sources_are_replaced_and_removed_while_another_keeps_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:00.5Z"));
    let mut kinds = SourceKinds::default();
    kinds.register(PingSourceKind::with_clock(clock));
    let m = manager(kinds, &dir);
    let sink = RecordingSink::new(Some(clock));
    let shared: Arc<dyn EventSink> = sink.clone();
    let (p, q) = (id(Kind::PingSource, "p"), id(Kind::PingSource, "q"));
    m.add(&ping_source("p", "* * * * * *", "v1"), shared.clone())
        .await
        .unwrap();
    m.add(&ping_source("q", "* * * * * *", "q"), shared.clone())
        .await
        .unwrap();
    assert!(matches!(
        m.add(&ping_source("q", "* * * * * *", "q"), shared.clone())
            .await,
        Err(ManagerError::AlreadyRunning(_))
    ));
    tokio::time::sleep(Duration::from_secs(2)).await; // to :02.5

    // New data, same schedule: it continues from its last tick.
    m.replace(&ping_source("p", "* * * * * *", "v2"), shared.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await; // to :03.5
    // A resource that does not build leaves the running source alone.
    let bad = m
        .replace(&ping_source("p", "61 * * * *", "v3"), shared.clone())
        .await;
    assert!(
        matches!(&bad, Err(ManagerError::Invalid { error, .. }) if error.path.to_string() == "spec.schedule"),
        "{bad:?}"
    );
    // A new schedule counts from now: the next tick on it is :05, not :04.
    m.replace(&ping_source("p", "*/5 * * * * *", "v4"), shared.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // to :06.5
    assert_eq!(
        counter(&m, &p, "ember_pingsource_ticks_fired", &[]),
        Some(4),
        "counters carried over"
    );
    m.remove(&p).await.unwrap();
    assert_eq!(counter(&m, &p, "ember_pingsource_ticks_fired", &[]), None);
    assert!(matches!(
        m.remove(&p).await,
        Err(ManagerError::NotRunning(_))
    ));
    tokio::time::sleep(Duration::from_secs(2)).await; // to :08.5
    assert_eq!(m.running().await, vec![q.clone()]);
    m.shutdown().await;

    let at = |s: u32| utc(&format!("2025-01-01T10:00:0{s}Z"));
    let ticks = sink.ticks();
    let of = |name: &str| -> Vec<(DateTime<Utc>, DateTime<Utc>, String)> {
        ticks
            .iter()
            .filter(|(_, e)| e.source.ends_with(&format!("/{name}")))
            .map(|(sent, e)| {
                let data = String::from_utf8(e.data.clone().unwrap().to_vec()).unwrap();
                (e.time, *sent, data)
            })
            .collect()
    };
    let on_time = |s: u32, data: &str| (at(s), at(s), data.to_owned());
    assert_eq!(
        of("p"),
        vec![
            on_time(1, "v1"),
            on_time(2, "v1"),
            on_time(3, "v2"),
            on_time(5, "v4"),
        ]
    );
    assert_eq!(
        of("q"),
        (1..=8).map(|s| on_time(s, "q")).collect::<Vec<_>>(),
        "the other source fired every tick on time"
    );
    // The records, by name, outlive the sources.
    let store = TickStore::open(dir.path().join(TICK_STORE_DIR)).unwrap();
    assert_eq!(store.last_fired("default", "p").unwrap(), Some(at(5)));
    assert_eq!(store.last_fired("default", "q").unwrap(), Some(at(8)));
}

#[tokio::test(start_paused = true)]
async fn a_ping_source_added_again_after_removal_does_not_refire_its_recorded_tick() {
    let dir = tempfile::tempdir().unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:00.5Z"));
    let mut kinds = SourceKinds::default();
    kinds.register(PingSourceKind::with_clock(clock));
    let m = manager(kinds, &dir);
    let sink = RecordingSink::new(Some(clock));
    let p = ping_source("p", "*/2 * * * * *", "x");
    m.add(&p, sink.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // to :02.5
    m.remove(&id(Kind::PingSource, "p")).await.unwrap();
    m.add(&p, sink.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // to :04.5
    m.shutdown().await;
    let times: Vec<DateTime<Utc>> = sink.ticks().iter().map(|(_, e)| e.time).collect();
    assert_eq!(
        times,
        vec![utc("2025-01-01T10:00:02Z"), utc("2025-01-01T10:00:04Z")]
    );
}

// ---- WebhookSources ----

const TOKEN: &str = "t0ken";

fn webhook_source(
    name: &str,
    path: &str,
    token_file: &std::path::Path,
    extra_spec: &str,
) -> Resource {
    resource(&format!(
        "apiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: {name}}}\n\
         spec:\n  path: {path}\n  auth: {{bearer: {{tokenFile: {}}}}}\n{extra_spec}  \
         sink: {{uri: 'http://127.0.0.1:1/'}}\n",
        token_file.display()
    ))
}

/// A binary-mode CloudEvent with id `id`, sent to `path` through the route table.
async fn post(routes: &WebhookRoutes, path: &str, id: &str) -> Option<StatusCode> {
    let handler = routes.get(path)?;
    let req = Request::post(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/test")
        .header("ce-type", "com.example.test")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    Some(handler.handle(req).await.status())
}

struct Webhooks {
    _dir: tempfile::TempDir,
    data: tempfile::TempDir,
    token: std::path::PathBuf,
    routes: Arc<WebhookRoutes>,
    manager: SourceManager,
}

fn webhooks() -> Webhooks {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let routes = Arc::new(WebhookRoutes::new());
    let mut kinds = SourceKinds::default();
    kinds.register(WebhookSourceKind::new(routes.clone()));
    let data = tempfile::tempdir().unwrap();
    let manager = manager(kinds, &data);
    Webhooks {
        _dir: dir,
        data,
        token,
        routes,
        manager,
    }
}

#[tokio::test(start_paused = true)]
async fn a_replaced_webhook_source_keeps_its_dedup_window_and_a_removed_one_answers_no_more() {
    let w = webhooks();
    let sink = RecordingSink::new(None);
    let (a, b) = (id(Kind::WebhookSource, "a"), id(Kind::WebhookSource, "b"));
    let with_dedup = "  dedupWindow: 10m\n";
    let source_a = |extra: &str| webhook_source("a", "/hooks/a", &w.token, extra);
    w.manager
        .add(&source_a(with_dedup), sink.clone())
        .await
        .unwrap();
    w.manager
        .add(&webhook_source("b", "/hooks/b", &w.token, ""), sink.clone())
        .await
        .unwrap();
    let accepted = Some(StatusCode::ACCEPTED);
    assert_eq!(post(&w.routes, "/hooks/a", "d-1").await, accepted);
    assert_eq!(post(&w.routes, "/hooks/a", "d-1").await, accepted);
    assert_eq!(sink.ids(), ["d-1"], "the redelivery was dropped");

    // Another path is taken by another source.
    let taken = w
        .manager
        .add(&webhook_source("c", "/hooks/a", &w.token, ""), sink.clone())
        .await;
    assert!(
        matches!(&taken, Err(ManagerError::Start { error, .. }) if error.to_string().contains("served by WebhookSource default/a")),
        "{taken:?}"
    );

    // A longer window, a rate limit: same window, still the same ids in it.
    w.manager
        .replace(
            &source_a("  dedupWindow: 20m\n  rateLimit: {requestsPerSecond: 100}\n"),
            sink.clone(),
        )
        .await
        .unwrap();
    assert_eq!(post(&w.routes, "/hooks/a", "d-1").await, accepted);
    assert_eq!(post(&w.routes, "/hooks/a", "d-2").await, accepted);
    assert_eq!(post(&w.routes, "/hooks/b", "b-1").await, accepted);
    assert_eq!(sink.ids(), ["d-1", "d-2", "b-1"]);
    assert_eq!(
        w.manager
            .metrics()
            .into_iter()
            .find(|(i, _)| *i == a)
            .map(|(_, m)| m
                .counters()
                .iter()
                .find(|c| c.family.name == "ember_webhook_duplicate_events")
                .map(|c| c.value)),
        Some(Some(2)),
        "the counters carried over"
    );

    // A resource that does not build (its secret is gone) leaves the source serving.
    let missing = w.token.with_file_name("missing");
    let bad = w
        .manager
        .replace(
            &webhook_source("a", "/hooks/a", &missing, with_dedup),
            sink.clone(),
        )
        .await;
    assert!(
        matches!(&bad, Err(ManagerError::Invalid { error, .. }) if error.path.to_string() == "spec.auth.bearer.tokenFile"),
        "{bad:?}"
    );
    assert_eq!(post(&w.routes, "/hooks/a", "d-2").await, accepted);
    assert_eq!(sink.ids().len(), 3, "still deduplicated");

    // Moved to another path: the old one is no longer served.
    w.manager
        .replace(
            &webhook_source("a", "/hooks/a2", &w.token, with_dedup),
            sink.clone(),
        )
        .await
        .unwrap();
    assert_eq!(post(&w.routes, "/hooks/a", "d-3").await, None);
    assert_eq!(post(&w.routes, "/hooks/a2", "d-1").await, accepted);
    assert_eq!(sink.ids().len(), 3, "the window followed it");

    // Removed: its path is not served, the other source's is, and the journal is complete.
    w.manager.remove(&a).await.unwrap();
    assert_eq!(post(&w.routes, "/hooks/a2", "d-4").await, None);
    assert_eq!(post(&w.routes, "/hooks/b", "b-2").await, accepted);
    assert_eq!(w.routes.paths(), ["/hooks/b"]);
    let journal = w.data.path().join("webhooks/default/a.dedup");
    let lines = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.contains(" d-1\n") && lines.contains(" d-2\n"),
        "{lines}"
    );

    // Added again: the journal is read back, so d-1 is still a redelivery.
    w.manager
        .add(&source_a(with_dedup), sink.clone())
        .await
        .unwrap();
    assert_eq!(post(&w.routes, "/hooks/a", "d-1").await, accepted);
    assert_eq!(sink.ids(), ["d-1", "d-2", "b-1", "b-2"]);
    w.manager.shutdown().await;
    assert!(w.routes.paths().is_empty());
    assert_eq!(w.manager.running().await, vec![]);
    let _ = b;
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_finish_across_a_replace_and_removal_waits_for_them() {
    let w = webhooks();
    let gate = Arc::new(Semaphore::new(0));
    let sink = RecordingSink::gated(gate.clone());
    let source = |extra: &str| webhook_source("a", "/hooks/a", &w.token, extra);
    let a = id(Kind::WebhookSource, "a");
    w.manager
        .add(&source("  dedupWindow: 10m\n"), sink.clone())
        .await
        .unwrap();
    let routes = w.routes.clone();
    let first = tokio::spawn(async move { post(&routes, "/hooks/a", "slow").await });
    tokio::task::yield_now().await;
    // The request waits in the sink while the source is replaced.
    w.manager
        .replace(&source("  dedupWindow: 5m\n"), sink.clone())
        .await
        .unwrap();
    assert!(!first.is_finished());
    let routes = w.routes.clone();
    let second = tokio::spawn(async move { post(&routes, "/hooks/a", "new").await });
    tokio::task::yield_now().await;

    // Removal waits until both have their answer.
    let manager = Arc::new(w.manager);
    let mut remover = {
        let manager = manager.clone();
        let a = a.clone();
        tokio::spawn(async move { manager.remove(&a).await })
    };
    // A minute of (paused) time passes while nothing else can happen.
    let waited = tokio::time::timeout(Duration::from_secs(60), &mut remover).await;
    assert!(waited.is_err(), "removal returned with requests in flight");
    assert_eq!(
        w.routes.get("/hooks/a").map(|_| ()),
        None,
        "no new requests"
    );
    gate.add_permits(2);
    assert_eq!(first.await.unwrap(), Some(StatusCode::ACCEPTED));
    assert_eq!(second.await.unwrap(), Some(StatusCode::ACCEPTED));
    remover.await.unwrap().unwrap();
    // Both ids reached the journal, closed by the removal.
    let lines = std::fs::read_to_string(w.data.path().join("webhooks/default/a.dedup")).unwrap();
    assert!(
        lines.contains(" slow\n") && lines.contains(" new\n"),
        "{lines}"
    );
}

#[tokio::test(start_paused = true)]
async fn sources_added_together_start_together_or_not_at_all_when_one_does_not_build() {
    let dir = tempfile::tempdir().unwrap();
    let clock = AnchoredClock::starting_at(utc("2025-01-01T10:00:00.5Z"));
    let mut kinds = SourceKinds::default();
    kinds.register(PingSourceKind::with_clock(clock));
    let m = manager(kinds, &dir);
    let sink: Arc<dyn EventSink> = RecordingSink::new(Some(clock));
    let good = |name: &str| (ping_source(name, "* * * * * *", "x"), sink.clone());
    let bad = m
        .add_all(vec![
            good("a"),
            (ping_source("b", "61 * * * *", "x"), sink.clone()),
        ])
        .await;
    assert!(matches!(bad, Err(ManagerError::Invalid { .. })), "{bad:?}");
    let twice = m.add_all(vec![good("a"), good("a")]).await;
    assert!(
        matches!(twice, Err(ManagerError::AlreadyRunning(_))),
        "{twice:?}"
    );
    assert!(m.running().await.is_empty(), "nothing started");
    m.add_all((0..50).map(|i| good(&format!("p{i}"))).collect())
        .await
        .unwrap();
    assert_eq!(m.running().await.len(), 50);
    assert_eq!(m.metrics().len(), 50);
    m.shutdown().await;
}
