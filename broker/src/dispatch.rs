//! Per-trigger dispatch: read the broker's log from the trigger's durable cursor, keep the events
//! its filter matches, and deliver each to the subscriber until it is acknowledged.
//!
//! Guarantees:
//! - at-least-once: the position the broker persists is the lowest offset not yet finished
//!   (delivered, or given up on after the retry policy and recorded as dropped), so a crash
//!   replays at most the in-flight window and what finished since the last cursor write;
//! - bounded: at most `max_in_flight` deliveries per trigger, and a bounded read-ahead;
//! - isolation: the broker's fan-out hands events over without waiting; a trigger whose lane is
//!   full is detached and reads the log on its own until it catches up, so a slow subscriber
//!   holds up only its own trigger — never ingress, never another trigger.
//!
//! What happens after the last failure (dead-letter sinks) and to a reply body is decided in
//! [`Outcome`]; today a final failure is logged and counted as dropped with the event's id.

use std::collections::{BTreeSet, VecDeque};
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
use tokio::sync::{mpsc, oneshot, watch};

use crate::event::{self, CloudEvent};
use crate::fanout::{AttachRequest, Handoff, LaneState, READ_BATCH_BYTES, READ_BATCH_RECORDS};
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
    pub filter: ember_triggers::TriggerFilter,
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
    /// The trigger's lane number (its id in the broker's index).
    pub lane_id: usize,
    /// Events the fan-out hands to this trigger.
    pub lane: mpsc::Receiver<Handoff>,
    /// What the fan-out and this dispatcher share.
    pub state: Arc<LaneState>,
    /// Where to ask the fan-out to be attached again after catching up.
    pub attach: mpsc::Sender<AttachRequest>,
    /// The broker's log, read directly while catching up.
    pub log: EventLog,
    /// The delivery client.
    pub client: HttpClient,
    /// Counters.
    pub stats: Arc<DispatchStats>,
    /// How long in-flight deliveries may finish after shutdown is signalled.
    pub grace: Duration,
}

/// What the catch-up reader sends the dispatcher.
enum CatchUp {
    /// Records read from the log.
    Batch(Vec<(u64, Bytes)>),
    /// Everything below this offset has been sent; the fan-out hands over the rest.
    Attached(u64),
}

impl Dispatcher {
    /// Runs until `shutdown` turns true, then lets in-flight deliveries finish within the grace
    /// period. The dispatcher starts by catching up from its position (the fan-out starts at
    /// the end of the log), then reads its lane; whenever the fan-out detaches it (the lane was
    /// full), it catches up again from the first event it missed.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let start = self.state.position(&AtomicU64::new(0));
        let mut catch_up = Some(self.catch_up(start));
        let mut live = false;
        self.state.set_live(false);

        let mut in_flight = FuturesUnordered::new();
        let mut unfinished = BTreeSet::new();
        let mut buffered = VecDeque::new();
        // The offset after everything this dispatcher has seen, matching or not.
        let mut seen = start;
        let max = self.trigger.max_in_flight.max(1);

        loop {
            let mut lane_done = 0;
            tokio::select! {
                _ = shutdown.changed() => break,
                Some((offset, from_lane)) = in_flight.next(), if !in_flight.is_empty() => {
                    unfinished.remove(&offset);
                    lane_done += usize::from(from_lane);
                }
                item = self.lane.recv(), if live && in_flight.len() < max => match item {
                    Some((offset, event)) => {
                        seen = offset + 1;
                        unfinished.insert(offset);
                        self.state.publish(false, *unfinished.first().unwrap_or(&seen));
                        in_flight.push(self.deliver_one(offset, event, true));
                    }
                    None => break,
                },
                msg = recv_catch_up(&mut catch_up), if !live && buffered.is_empty() => match msg {
                    Some(CatchUp::Batch(batch)) => buffered = batch.into(),
                    Some(CatchUp::Attached(at)) => {
                        seen = seen.max(at);
                        catch_up = None;
                        live = true;
                    }
                    None => break, // the log was closed
                },
            }
            while in_flight.len() < max {
                let Some((offset, record)) = buffered.pop_front() else {
                    break;
                };
                seen = offset + 1;
                if let Some(event) = self.decode_matching(offset, &record) {
                    unfinished.insert(offset);
                    self.state
                        .publish(false, *unfinished.first().unwrap_or(&seen));
                    in_flight.push(self.deliver_one(offset, Arc::new(event), false));
                }
            }
            let low = unfinished.first().copied().unwrap_or(seen);
            self.state.publish(in_flight.is_empty(), low);
            self.state.set_live(live);
            // Only after the new low-water mark is published may a handed-over event count
            // as finished (see `LaneState::position`).
            for _ in 0..lane_done {
                self.state.finished_handoff();
            }
            if live && !self.state.is_attached() && self.lane.is_empty() {
                // The fan-out gave up on this lane: read on our own from what it could not
                // hand over.
                live = false;
                self.state.set_live(false);
                let from = self.state.detached_at();
                seen = seen.max(from);
                catch_up = Some(self.catch_up(from));
            }
        }

        // Shutdown: let what is in flight finish within the grace period; the position then
        // is exactly the lowest unfinished offset, so nothing unacknowledged is skipped.
        let drain = async {
            while let Some((offset, from_lane)) = in_flight.next().await {
                unfinished.remove(&offset);
                let low = unfinished.first().copied().unwrap_or(seen);
                self.state.publish(in_flight.is_empty(), low);
                if from_lane {
                    self.state.finished_handoff();
                }
            }
        };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            tracing::warn!(
                broker = %self.broker, trigger = %self.trigger.name, unfinished = unfinished.len(),
                "shutdown grace elapsed with deliveries in flight; they will be redelivered"
            );
        }
        // `live` stays as it is: an attached, idle lane is at the fan-out's final position.
        let low = unfinished.first().copied().unwrap_or(seen);
        self.state.publish(unfinished.is_empty(), low);
    }

    /// Starts reading the log on our own from `from`.
    fn catch_up(&self, from: u64) -> (mpsc::Receiver<CatchUp>, AbortOnDrop) {
        let (tx, rx) = mpsc::channel(2);
        let task = tokio::spawn(catch_up(
            self.log.clone(),
            self.lane_id,
            from,
            self.attach.clone(),
            tx,
        ));
        (rx, AbortOnDrop(task))
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
    fn deliver_one(
        &self,
        offset: u64,
        event: Arc<CloudEvent>,
        from_lane: bool,
    ) -> impl Future<Output = (u64, bool)> + 'static {
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
            (offset, from_lane)
        }
    }
}

/// Aborts a task when dropped (the catch-up reader dies with its dispatcher's interest).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn recv_catch_up(
    catch_up: &mut Option<(mpsc::Receiver<CatchUp>, AbortOnDrop)>,
) -> Option<CatchUp> {
    match catch_up {
        Some((rx, _)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads one batch of committed records now (empty when caught up), off the async runtime.
async fn read_now(mut reader: LogReader) -> Option<(LogReader, Vec<(u64, Bytes)>)> {
    tokio::task::spawn_blocking(move || {
        let batch = reader.read_batch(READ_BATCH_RECORDS, READ_BATCH_BYTES);
        batch.ok().map(|b| (reader, b))
    })
    .await
    .ok()
    .flatten()
}

/// A dispatcher's own reader: sends what is committed from `from` on; once caught up, asks the
/// fan-out to attach the lane and sends exactly the records below the offset it answers.
async fn catch_up(
    log: EventLog,
    lane: usize,
    from: u64,
    attach: mpsc::Sender<AttachRequest>,
    out: mpsc::Sender<CatchUp>,
) {
    let mut reader = log.reader(from);
    let mut committed = log.committed();
    let mut resume: Option<u64> = None;
    loop {
        if let Some(resume) = resume
            && reader.position() >= resume
        {
            let _ = out.send(CatchUp::Attached(resume)).await;
            return;
        }
        let Some((r, mut batch)) = read_now(reader).await else {
            return;
        };
        reader = r;
        if let Some(resume) = resume {
            // The fan-out hands over everything from `resume` on.
            batch.retain(|(offset, _)| *offset < resume);
        }
        if !batch.is_empty() {
            if out.send(CatchUp::Batch(batch)).await.is_err() {
                return;
            }
            continue;
        }
        match resume {
            None => {
                let (reply, answer) = oneshot::channel();
                let request = AttachRequest {
                    lane,
                    from: reader.position(),
                    reply,
                };
                if attach.send(request).await.is_err() {
                    return;
                }
                match answer.await {
                    Ok(at) => resume = Some(at),
                    Err(_) => return,
                }
            }
            // Not all of `..resume` is committed-and-read yet: wait for the log.
            Some(_) => {
                if committed.changed().await.is_err() {
                    return;
                }
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
