//! Per-trigger dispatch: read the broker's log from the trigger's durable cursor, keep the events
//! its filter matches, and deliver each to the subscriber until it is acknowledged.
//!
//! Guarantees:
//! - at-least-once: the persisted cursor is the lowest offset not yet finished (delivered, or
//!   given up on after the retry policy and recorded as dropped), so a crash replays at most
//!   the in-flight window and the events read since the last cursor write;
//! - bounded: at most `max_in_flight` deliveries per trigger, and a bounded read-ahead;
//! - isolation: each trigger reads the log on its own, so a slow subscriber holds up only its
//!   own trigger — never ingress, never another trigger.
//!
//! What happens after the last failure (dead-letter sinks) and to a reply body is decided in
//! [`Outcome`]; today a final failure is logged and counted as dropped with the event's id.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, watch};

use crate::cursor::CursorStore;
use crate::event::{self, CloudEvent};
use crate::http_binding;
use crate::log::{EventLog, LogReader};
use crate::retry::{DeliveryPolicy, is_retryable_status};

/// The HTTP client deliveries go through (keep-alive connection pool shared by all triggers).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Builds the delivery client.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// The most response body read from a subscriber (the rest is discarded with the connection).
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Records read from the log at once.
const READ_BATCH_RECORDS: usize = 256;
/// Bytes read from the log at once.
const READ_BATCH_BYTES: usize = 1 << 20;
/// How often a changed cursor is written to disk.
const CURSOR_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How events are sent to the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryFormat {
    /// Attributes as `ce-` headers, data as the body (the default).
    #[default]
    Binary,
    /// The whole event as `application/cloudevents+json`.
    Json,
}

/// A trigger as the dispatcher runs it.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// The trigger's name (unique within its broker's namespace); names its cursor.
    pub name: String,
    /// Which events it wants.
    pub filter: ember_triggers::Filter,
    /// Where matching events go.
    pub subscriber: Uri,
    /// Retries, backoff and per-attempt timeout.
    pub policy: DeliveryPolicy,
    /// Binary or structured JSON.
    pub format: DeliveryFormat,
    /// Deliveries in flight at once.
    pub max_in_flight: usize,
}

/// Counters a dispatcher keeps (read by tests and, later, metrics).
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Events the subscriber acknowledged.
    pub delivered: AtomicU64,
    /// Events given up on after the retry policy.
    pub dropped: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
}

/// The end of one event's delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx from the subscriber.
    Delivered,
    /// Every attempt failed, or the failure was not retryable.
    Failed {
        /// The last HTTP status, if a response arrived.
        status: Option<StatusCode>,
        /// What went wrong last.
        reason: String,
    },
}

/// One trigger's dispatch loop and what it needs.
pub struct Dispatcher {
    /// `namespace/broker`, for logs.
    pub broker: String,
    /// The trigger.
    pub trigger: TriggerConfig,
    /// The broker's log.
    pub log: EventLog,
    /// Where the trigger's position is kept.
    pub cursors: Arc<CursorStore>,
    /// The delivery client.
    pub client: HttpClient,
    /// The trigger's current position (lowest unfinished offset), shared with the broker's
    /// retention task.
    pub position: Arc<AtomicU64>,
    /// Counters.
    pub stats: Arc<DispatchStats>,
    /// How long in-flight deliveries may finish after shutdown is signalled.
    pub grace: Duration,
}

impl Dispatcher {
    /// Runs until `shutdown` turns true, then lets in-flight deliveries finish within the grace
    /// period and persists the cursor.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let reader = self.log.reader(self.position.load(Ordering::Acquire));
        // The reader clamps a position outside the log (deleted, or cut off by recovery).
        let start = reader.position();
        self.position.store(start, Ordering::Release);
        // A small read-ahead channel: reading never blocks on delivery, and memory stays bounded.
        let (batches_tx, mut batches) = mpsc::channel(2);
        let read_task = tokio::spawn(read_ahead(reader, batches_tx));

        let mut in_flight = FuturesUnordered::new();
        let mut unfinished = BTreeSet::new();
        let mut buffered = std::collections::VecDeque::new();
        let mut next_offset = start;
        let mut saved = start;
        let mut flush = tokio::time::interval(CURSOR_FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max = self.trigger.max_in_flight.max(1);

        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(offset) = in_flight.next(), if !in_flight.is_empty() => {
                    unfinished.remove(&offset);
                }
                batch = batches.recv(), if buffered.is_empty() => match batch {
                    Some(batch) => buffered = batch,
                    None => break, // the log was closed
                },
                _ = flush.tick() => {
                    saved = self.save_cursor(saved).await;
                }
            }
            while in_flight.len() < max {
                let Some((offset, record)) = buffered.pop_front() else {
                    break;
                };
                next_offset = offset + 1;
                match self.decode_matching(offset, &record) {
                    Some(event) => {
                        unfinished.insert(offset);
                        in_flight.push(self.deliver_one(offset, event));
                    }
                    None => continue,
                }
            }
            let position = unfinished.first().copied().unwrap_or(next_offset);
            self.position.store(position, Ordering::Release);
        }

        read_task.abort();
        // Shutdown: let what is in flight finish within the grace period, then record exactly
        // the lowest unfinished offset, so nothing unacknowledged is skipped.
        let drain = async {
            while let Some(offset) = in_flight.next().await {
                unfinished.remove(&offset);
            }
        };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            tracing::warn!(
                broker = %self.broker, trigger = %self.trigger.name, unfinished = unfinished.len(),
                "shutdown grace elapsed with deliveries in flight; they will be redelivered"
            );
        }
        let position = unfinished.first().copied().unwrap_or(next_offset);
        self.position.store(position, Ordering::Release);
        self.save_cursor(saved).await;
    }

    /// Writes the cursor if it moved since `saved`; returns what is now on disk.
    async fn save_cursor(&self, saved: u64) -> u64 {
        let position = self.position.load(Ordering::Acquire);
        if position == saved {
            return saved;
        }
        let cursors = self.cursors.clone();
        let name = self.trigger.name.clone();
        match tokio::task::spawn_blocking(move || cursors.store(&name, position)).await {
            Ok(Ok(())) => position,
            Ok(Err(e)) => {
                tracing::error!(trigger = %self.trigger.name, error = %e, "writing cursor failed");
                saved
            }
            Err(e) => {
                tracing::error!(trigger = %self.trigger.name, error = %e, "cursor task failed");
                saved
            }
        }
    }

    /// Decodes a record and applies the trigger's filter.
    fn decode_matching(&self, offset: u64, record: &[u8]) -> Option<CloudEvent> {
        match event::decode(record) {
            Ok(e) if self.trigger.filter.matches(&e) => Some(e),
            Ok(_) => None,
            Err(err) => {
                // The log's CRC makes this a bug, not disk damage; skip rather than wedge.
                tracing::error!(broker = %self.broker, offset, error = %err, "undecodable record skipped");
                None
            }
        }
    }

    /// Delivers one event with the retry policy; resolves to its offset once finished.
    fn deliver_one(&self, offset: u64, event: CloudEvent) -> impl Future<Output = u64> + 'static {
        let client = self.client.clone();
        let trigger = self.trigger.clone();
        let stats = self.stats.clone();
        let broker = self.broker.clone();
        async move {
            match deliver(&client, &trigger, &event, &stats).await {
                Outcome::Delivered => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Failed { status, reason } => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        broker = %broker, trigger = %trigger.name, subscriber = %trigger.subscriber,
                        id = %event.id, offset, status = ?status.map(|s| s.as_u16()), %reason,
                        "event dropped: delivery failed and no dead-letter sink is configured"
                    );
                }
            }
            offset
        }
    }
}

async fn read_ahead(
    mut reader: LogReader,
    tx: mpsc::Sender<std::collections::VecDeque<(u64, Bytes)>>,
) {
    loop {
        match reader
            .next_batch(READ_BATCH_RECORDS, READ_BATCH_BYTES)
            .await
        {
            Ok(batch) => {
                if tx.send(batch.into()).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "log reader stopped");
                return;
            }
        }
    }
}

/// Builds the HTTP request for one attempt.
pub fn build_request(
    subscriber: &Uri,
    format: DeliveryFormat,
    event: &CloudEvent,
) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::with_capacity(event.attributes.len() + 6);
    let body = match format {
        DeliveryFormat::Binary => http_binding::encode_binary(event, &mut headers),
        DeliveryFormat::Json => http_binding::encode_structured_json(event, &mut headers),
    };
    headers.insert("prefer", HeaderValue::from_static("reply"));
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = subscriber.clone();
    *req.headers_mut() = headers;
    req
}

/// Delivers one event: the first attempt plus up to `retry` retries for retryable failures.
pub async fn deliver(
    client: &HttpClient,
    trigger: &TriggerConfig,
    event: &CloudEvent,
    stats: &DispatchStats,
) -> Outcome {
    let policy = &trigger.policy;
    let mut retry = 0;
    loop {
        let (retryable, failure) = match attempt(client, trigger, event).await {
            Ok(()) => return Outcome::Delivered,
            Err(failure) => failure,
        };
        retry += 1;
        let wait = if retryable {
            policy.backoff(retry)
        } else {
            None
        };
        let Some(wait) = wait else { return failure };
        stats.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(trigger = %trigger.name, id = %event.id, retry, ?wait, ?failure, "retrying");
        tokio::time::sleep(wait).await;
    }
}

/// One attempt. `Err((retryable, outcome))` on failure.
async fn attempt(
    client: &HttpClient,
    trigger: &TriggerConfig,
    event: &CloudEvent,
) -> Result<(), (bool, Outcome)> {
    let req = build_request(&trigger.subscriber, trigger.format, event);
    let call = async {
        let resp = client.request(req).await?;
        let status = resp.status();
        // Read (a bounded amount of) the body so the connection can be reused.
        let _ = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    };
    match tokio::time::timeout(trigger.policy.timeout, call).await {
        Ok(Ok(status)) if status.is_success() => Ok(()),
        Ok(Ok(status)) => Err((
            is_retryable_status(status.as_u16()),
            Outcome::Failed {
                status: Some(status),
                reason: format!("subscriber answered {status}"),
            },
        )),
        Ok(Err(e)) => Err((
            true,
            Outcome::Failed {
                status: None,
                reason: format!("request failed: {e}"),
            },
        )),
        Err(_) => Err((
            true,
            Outcome::Failed {
                status: None,
                reason: format!("no response within {:?}", trigger.policy.timeout),
            },
        )),
    }
}
