//! The KafkaSource (`sources.knative.dev/v1beta1` and `v1`): consumes Kafka topics with
//! librdkafka (rdkafka, bundled) and sends each record, as a CloudEvent, to the source's sink —
//! at least once: an offset is committed only once the sink holds the events of every record up
//! to it in its partition (durably, for a broker of this Ember).
//!
//! - **Consumer group** `consumerGroup` (default `<namespace>.<name>`); `initialOffset`
//!   (`earliest` | `latest`, Knative's default) applies only when the group has no committed
//!   offset. Auto-commit is off.
//! - **Batches, in order.** Records are taken as they come (up to 2,048 at once) and sent to the
//!   sink in the order they were consumed — the next batch is collected and made ready while
//!   one is being settled, never sent before it — so each partition's order holds (`ordering: ordered`
//!   needs nothing more; `unordered` is served the same way). A batch's offsets — the last of
//!   each partition, plus one — are committed once every record of it is settled.
//! - **Backpressure**: when the sink cannot take events now, the partitions of the batch are
//!   paused (librdkafka stops fetching them), the batch is sent again after the wait, and the
//!   partitions resume once it is taken: nothing buffers without bound.
//! - **Poison records**: a record that claims to be a CloudEvent and is not valid, or whose event
//!   the sink refuses for good, is logged with its topic, partition and offset, counted, and
//!   skipped — its offset is committed with the rest; it never blocks its partition.
//! - **Rebalances**: on a revocation the offsets of what is settled are committed synchronously
//!   first.
//! - **Mapping** ([`mapping`]): the Kafka binding, else Knative's `dev.knative.kafka.event`.
//!
//! - **`net`** ([`security`]): TLS and SASL (PLAIN, SCRAM), secrets from Secret documents,
//!   files or environment variables.

mod client_log;
pub mod mapping;
pub mod security;
pub mod sink;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ember_api::sources::{InitialOffset, KafkaSource};
use ember_api::{FieldError, FieldPath, Kind, Resource};
use ember_event::sink::Prepared;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::LogThrottle;
use crate::component::{Handover, Source, SourceContext, SourceError, SourceKind};
use crate::metrics::{Counter, CounterFamily, SourceMetrics};
use client_log::ClientLog;
use mapping::Consumed;

/// Records sent to the sink in one batch at most: one append (one fsync) for up to this many.
/// The source holds at most two batches: one being settled, the next being made ready.
const BATCH: usize = 2048;

/// Builds KafkaSources.
#[derive(Debug, Default)]
pub struct KafkaSourceKind;

impl KafkaSourceKind {
    /// The kind.
    pub fn new() -> Self {
        Self
    }
}

impl SourceKind for KafkaSourceKind {
    fn kind(&self) -> Kind {
        Kind::KafkaSource
    }

    fn build(&self, resource: &Resource) -> Result<Box<dyn Source>, FieldError> {
        let Resource::KafkaSource(k) = resource else {
            return Err(FieldError::new(FieldPath::root(), "not a KafkaSource"));
        };
        let security =
            security::client_settings(k.spec.net.as_deref(), &FieldPath::parse_keys("spec.net"))?;
        Ok(Box::new(Kafka {
            settings: Arc::new(Settings {
                security,
                ..Settings::of(k)
            }),
            metrics: Arc::default(),
        }))
    }
}

/// What one source consumes.
#[derive(Debug, Clone)]
pub struct Settings {
    brokers: String,
    topics: Vec<String>,
    group: String,
    initial: InitialOffset,
    mapping: mapping::Mapping,
    /// `security.protocol`, SASL and TLS settings from `net`.
    security: Vec<(&'static str, String)>,
}

impl Settings {
    /// Reads the resource.
    pub fn of(k: &KafkaSource) -> Self {
        Settings {
            brokers: k.spec.bootstrap_servers.join(","),
            topics: k.spec.topics.clone(),
            group: k
                .spec
                .consumer_group
                .clone()
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| format!("{}.{}", k.metadata.namespace, k.metadata.name)),
            initial: k.spec.initial_offset(),
            mapping: mapping::Mapping::of(k),
            security: Vec::new(),
        }
    }
}

/// One KafkaSource.
struct Kafka {
    settings: Arc<Settings>,
    metrics: Arc<KafkaMetrics>,
}

/// The offsets settled so far (next to read), by topic and partition: what a revocation
/// commits.
#[derive(Default)]
struct Settled(Mutex<HashMap<(String, i32), i64>>);

impl Settled {
    fn list(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
        }
        tpl
    }
}

/// The consumer's context: commits what is settled before partitions are taken away, and
/// writes librdkafka's own lines to Ember's log.
struct Context {
    settled: Arc<Settled>,
    log: ClientLog,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.line(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let tpl = self.settled.list();
            if tpl.count() > 0
                && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
            {
                tracing::warn!(source = %self.log.who(), error = %e, "KafkaSource: committing before a rebalance failed; those records will be read again");
            }
        }
    }
}

impl Source for Kafka {
    fn metrics(&self) -> Arc<dyn SourceMetrics> {
        self.metrics.clone()
    }

    fn take_over(&mut self, previous: Handover) {
        if let Some(m) = previous.take::<Arc<KafkaMetrics>>() {
            self.metrics = m;
        }
    }

    fn run(
        self: Box<Self>,
        mut cx: SourceContext,
    ) -> BoxFuture<'static, Result<Handover, SourceError>> {
        Box::pin(async move {
            let settled = Arc::new(Settled::default());
            let mut config = ClientConfig::new();
            for (key, value) in &self.settings.security {
                config.set(*key, value);
            }
            let consumer: StreamConsumer<Context> = config
                .set("bootstrap.servers", &self.settings.brokers)
                .set("group.id", &self.settings.group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // A member that is gone (Ember killed) holds its partitions at most this long.
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "3000")
                .set(
                    "auto.offset.reset",
                    match self.settings.initial {
                        InitialOffset::Earliest => "earliest",
                        InitialOffset::Latest => "latest",
                    },
                )
                .set("client.id", format!("ember-{}", cx.id))
                .create_with_context(Context {
                    settled: settled.clone(),
                    log: ClientLog::new(cx.id.to_string(), self.metrics.errors.clone()),
                })
                .map_err(|e| SourceError::new(format!("creating the Kafka consumer: {e}")))?;
            let topics: Vec<&str> = self.settings.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|e| SourceError::new(format!("subscribing to {topics:?}: {e}")))?;
            cx.ready();
            tracing::info!(source = %cx.id, brokers = %self.settings.brokers, topics = ?self.settings.topics, group = %self.settings.group, "KafkaSource consuming");
            let log: LogThrottle<()> = LogThrottle::new(Duration::from_secs(10));
            // Two stages: while one batch is being settled (appended, synced), the next is
            // collected and made ready, so the sink's disk and this task's CPU work overlap.
            let mut upcoming = None;
            loop {
                let batch = match upcoming.take() {
                    Some(b) => b,
                    None => match self.collect(&cx, &consumer, &log).await {
                        Some(b) => self.prepare(&cx, b),
                        None => break,
                    },
                };
                let settling = async {
                    let stopped = self.settle(&cx, &consumer, batch).await;
                    // Committed as soon as settled, not when the next batch is in.
                    let tpl = settled.list();
                    if !stopped && tpl.count() > 0 {
                        let _ = consumer.commit(&tpl, CommitMode::Async);
                    }
                    stopped
                };
                let (stopped, next) = tokio::join!(settling, async {
                    let b = self.collect(&cx, &consumer, &log).await?;
                    Some(self.prepare(&cx, b))
                });
                if stopped {
                    break;
                }
                match next {
                    Some(b) => upcoming = Some(b),
                    None if cx.shutdown.is_requested() => break,
                    None => {}
                }
            }
            // Stopping: what is settled is committed before the consumer leaves its group.
            let tpl = settled.list();
            if tpl.count() > 0
                && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
            {
                tracing::warn!(source = %cx.id, error = %e, "KafkaSource: final commit failed; the last records will be read again");
            }
            Ok(Handover::new(self.metrics.clone()))
        })
    }
}

/// A record as the source keeps it.
fn consumed(m: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(Bytes::copy_from_slice)))
                .collect()
        })
        .unwrap_or_default();
    Consumed {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        record: mapping::record(m.key(), m.payload(), headers),
    }
}

/// A batch made ready to send: its events, and the offset after the last record of each of
/// its partitions.
struct Batch {
    pending: Vec<(Consumed, Prepared)>,
    next: HashMap<(String, i32), i64>,
}

impl Kafka {
    /// Waits for records and takes what has arrived, up to [`BATCH`]; `None` once the source
    /// is stopping.
    async fn collect(
        &self,
        cx: &SourceContext,
        consumer: &StreamConsumer<Context>,
        log: &LogThrottle<()>,
    ) -> Option<Vec<Consumed>> {
        let mut shutdown = cx.shutdown.clone();
        loop {
            let first = tokio::select! {
                _ = shutdown.requested() => return None,
                m = consumer.recv() => m,
            };
            let mut batch = Vec::with_capacity(BATCH);
            match first {
                Ok(m) => batch.push(consumed(&m)),
                Err(e) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    if log.allow((), tokio::time::Instant::now()).is_some() {
                        tracing::warn!(source = %cx.id, error = %e, "KafkaSource: consumer error");
                    }
                    continue;
                }
            }
            // Whatever else has arrived already joins the batch.
            while batch.len() < BATCH {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(consumed(&m)),
                    _ => break,
                }
            }
            return Some(batch);
        }
    }

    /// Maps each record to its event and makes it ready for the sink; a record that can never
    /// be an event is skipped (its offset still counts as settled).
    fn prepare(&self, cx: &SourceContext, batch: Vec<Consumed>) -> Batch {
        self.metrics
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for c in &batch {
            let at = next.entry((c.topic.clone(), c.partition)).or_insert(0);
            *at = (*at).max(c.offset + 1);
        }
        let mut pending: Vec<(Consumed, Prepared)> = Vec::with_capacity(batch.len());
        for c in batch {
            match self.settings.mapping.event_of(&c).and_then(|e| {
                cx.sink
                    .prepare(e)
                    .map_err(|r| format!("the sink refuses it: {}", r.reason))
            }) {
                Ok(p) => pending.push((c, p)),
                Err(why) => self.skip(cx, &c, &why),
            }
        }
        Batch { pending, next }
    }

    /// Sends a batch until every record of it is settled, pausing its partitions while the
    /// sink cannot take events; records the offsets settled. `true` when it stopped early
    /// because the source is stopping (those offsets stay unsettled).
    async fn settle(
        &self,
        cx: &SourceContext,
        consumer: &StreamConsumer<Context>,
        batch: Batch,
    ) -> bool {
        let Batch { pending, next } = batch;
        let mut paused: Option<TopicPartitionList> = None;
        let settled = crate::settle::until_settled(cx.sink.as_ref(), pending, cx.shutdown.clone(), |_| {
            self.metrics.sink_retries.fetch_add(1, Ordering::Relaxed);
            if paused.is_none() {
                let mut tpl = TopicPartitionList::new();
                for (t, p) in next.keys() {
                    tpl.add_partition(t, *p);
                }
                if consumer.pause(&tpl).is_ok() {
                    self.metrics.pauses.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(source = %cx.id, partitions = tpl.count(), "KafkaSource: the sink cannot take events now; partitions paused");
                    paused = Some(tpl);
                }
            }
        })
        .await;
        self.metrics
            .sent
            .fetch_add(settled.held.len() as u64, Ordering::Relaxed);
        for (c, why) in &settled.refused {
            self.skip(cx, c, why);
        }
        if settled.stopped {
            // Stopping: these records stay unsettled, their offsets uncommitted.
            return true;
        }
        if let Some(tpl) = paused {
            let _ = consumer.resume(&tpl);
            tracing::info!(source = %cx.id, "KafkaSource: partitions resumed");
        }
        let settled = consumer.context().settled.clone();
        let mut s = settled.0.lock().unwrap_or_else(|e| e.into_inner());
        for (k, o) in next {
            let at = s.entry(k).or_insert(o);
            *at = (*at).max(o);
        }
        false
    }

    /// Logs and counts a record that can never become an event; its offset is settled.
    fn skip(&self, cx: &SourceContext, c: &Consumed, why: &str) {
        self.metrics.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(source = %cx.id, topic = %c.topic, partition = c.partition, offset = c.offset, error = %why, "KafkaSource: record can never become an event; skipped");
    }
}

/// A KafkaSource's counters.
#[derive(Debug, Default)]
pub struct KafkaMetrics {
    received: AtomicU64,
    sent: AtomicU64,
    skipped: AtomicU64,
    sink_retries: AtomicU64,
    pauses: AtomicU64,
    errors: Arc<AtomicU64>,
}

static RECORDS: CounterFamily = CounterFamily {
    name: "ember_kafka_records",
    help: "Records a KafkaSource consumed, by outcome: received; sent (the sink holds the event); skipped (it can never be an event).",
};
static SINK_RETRIES: CounterFamily = CounterFamily {
    name: "ember_kafka_sink_retries",
    help: "Times a KafkaSource's sink could not take a batch yet and it was sent again.",
};
static PAUSES: CounterFamily = CounterFamily {
    name: "ember_kafka_pauses",
    help: "Times a KafkaSource paused its partitions because its sink could not take events.",
};
static ERRORS: CounterFamily = CounterFamily {
    name: "ember_kafka_consumer_errors",
    help: "Errors the Kafka client reported (brokers down, a failed fetch; librdkafka retries on its own).",
};

impl SourceMetrics for KafkaMetrics {
    fn counters(&self) -> Vec<Counter> {
        let c = Counter::read;
        vec![
            c(&RECORDS, vec![("outcome", "received")], &self.received),
            c(&RECORDS, vec![("outcome", "sent")], &self.sent),
            c(&RECORDS, vec![("outcome", "skipped")], &self.skipped),
            c(&SINK_RETRIES, vec![], &self.sink_retries),
            c(&PAUSES, vec![], &self.pauses),
            c(&ERRORS, vec![], &self.errors),
        ]
    }
}
