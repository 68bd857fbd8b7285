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
//! After the last failed attempt an event goes to the dead-letter sink, with the
//! `knativeerror*` extensions; without one (or if that fails too) it is counted and logged as
//! dropped with its id. A 200 carrying a CloudEvent is a reply, appended to the same broker
//! with its TTL decremented; a 200 with any other body is a success without a reply.

use std::collections::{BTreeSet, HashMap, VecDeque};
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

use crate::fanout::{AttachRequest, Handoff, LaneState, READ_BATCH_BYTES, READ_BATCH_RECORDS};
use crate::log::{EventLog, LogReader};
use crate::retry::{DeliveryPolicy, is_retryable_status};
use crate::throttle::LogThrottle;
use ember_event::http_binding;
use ember_event::{self as event, CloudEvent, CloudEventExt};

/// The HTTP client deliveries go through (keep-alive connection pool shared by all triggers).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Builds the delivery client.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(4096)
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
    /// Deliveries in flight at once (for an ordered trigger: events under way, running or
    /// waiting behind an earlier event with the same partition key).
    pub max_in_flight: usize,
    /// One event at a time per `partitionkey` (events without one share a single sequence),
    /// in log order; different keys do not wait for each other.
    pub ordered: bool,
    /// Where events go after the last failed attempt (`delivery.deadLetterSink`).
    pub dead_letter: Option<Uri>,
    /// The longest `Retry-After` honoured (`delivery.retryAfterMax`).
    pub retry_after_max: Duration,
    /// A limit on requests in flight to the subscriber shared by every trigger delivering
    /// there (`ember.dev/subscriber-max-in-flight`); a permit is held for one attempt.
    pub subscriber_limit: Option<Arc<tokio::sync::Semaphore>>,
}

/// Counters a dispatcher keeps (read by tests and, later, metrics).
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Events the subscriber acknowledged.
    pub delivered: AtomicU64,
    /// Events given up on: delivery and dead-lettering (if configured) both failed.
    pub dropped: AtomicU64,
    /// Events the dead-letter sink accepted after delivery failed.
    pub dead_lettered: AtomicU64,
    /// Reply events appended to the broker.
    pub replies: AtomicU64,
    /// Reply events not appended because their TTL ran out.
    pub replies_expired: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// 200 responses whose body was not a CloudEvent: successes with no reply.
    pub replies_ignored: AtomicU64,
    /// Failed attempts are logged once per interval per trigger.
    pub attempt_log: LogThrottle,
    /// Replies that could not be used are logged once per interval per trigger.
    pub reply_log: LogThrottle,
}

/// The end of one event's delivery to the subscriber.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx from the subscriber, with the reply event when it sent one.
    Delivered {
        /// A CloudEvent in a 200 response.
        reply: Option<CloudEvent>,
    },
    /// Every attempt failed, or the failure was not retryable.
    Failed(Failure),
}

/// One trigger's dispatch loop and what it needs.
pub struct Dispatcher {
    /// `namespace/broker`, for logs.
    pub broker: Arc<str>,
    /// The trigger (shared with its deliveries in flight).
    pub trigger: Arc<TriggerConfig>,
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
    /// period. The dispatcher reads its lane at once if the broker attached it at start (its
    /// trigger was near the end of the log); otherwise it first catches up from its position.
    /// Whenever the fan-out detaches it (the lane was full), it catches up again from the first
    /// event it missed.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let start = self.state.position(&AtomicU64::new(0));
        let mut live = self.state.is_live();
        let mut catch_up = (!live).then(|| self.catch_up(start));
        self.state.set_live(live);

        let mut in_flight: FuturesUnordered<Delivery> = FuturesUnordered::new();
        // Ordered triggers: partition keys with an event under way, and the events waiting
        // behind it.
        let mut keys: HashMap<String, VecDeque<Pending>> = HashMap::new();
        let mut waiting = 0usize;
        let mut unfinished = BTreeSet::new();
        let mut buffered = VecDeque::new();
        // The offset after everything this dispatcher has seen, matching or not.
        let mut seen = start;
        let max = self.trigger.max_in_flight.max(1);

        loop {
            let mut lane_done = 0;
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    unfinished.remove(&done.offset);
                    lane_done += usize::from(done.from_lane);
                    if let Some(key) = done.key {
                        match keys.get_mut(&key).and_then(VecDeque::pop_front) {
                            Some((offset, event, from_lane)) => {
                                waiting -= 1;
                                in_flight.push(self.deliver_one(offset, event, from_lane, Some(key)));
                            }
                            None => {
                                keys.remove(&key);
                            }
                        }
                    }
                }
                item = self.lane.recv(), if live && in_flight.len() + waiting < max => match item {
                    Some((offset, event)) => {
                        seen = offset + 1;
                        unfinished.insert(offset);
                        self.state.publish(false, *unfinished.first().unwrap_or(&seen));
                        waiting += self.launch(&mut in_flight, &mut keys, (offset, event, true));
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
            while in_flight.len() + waiting < max {
                let Some((offset, record)) = buffered.pop_front() else {
                    break;
                };
                seen = offset + 1;
                if let Some(event) = self.decode_matching(offset, &record) {
                    unfinished.insert(offset);
                    self.state
                        .publish(false, *unfinished.first().unwrap_or(&seen));
                    waiting +=
                        self.launch(&mut in_flight, &mut keys, (offset, Arc::new(event), false));
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
            // Events waiting behind a partition key are not started: they stay unfinished.
            while let Some(done) = in_flight.next().await {
                unfinished.remove(&done.offset);
                let low = unfinished.first().copied().unwrap_or(seen);
                self.state.publish(in_flight.is_empty(), low);
                if done.from_lane {
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

    /// Starts delivering an event, or — for an ordered trigger whose partition key already has
    /// an event under way — queues it behind that one. Returns how many events it queued.
    fn launch(
        &self,
        in_flight: &mut FuturesUnordered<Delivery>,
        keys: &mut HashMap<String, VecDeque<Pending>>,
        (offset, event, from_lane): Pending,
    ) -> usize {
        if !self.trigger.ordered {
            in_flight.push(self.deliver_one(offset, event, from_lane, None));
            return 0;
        }
        let key = partition_key(&event);
        if let Some(queue) = keys.get_mut(&key) {
            queue.push_back((offset, event, from_lane));
            return 1;
        }
        keys.insert(key.clone(), VecDeque::new());
        in_flight.push(self.deliver_one(offset, event, from_lane, Some(key)));
        0
    }

    /// Delivers one event with the retry policy, then appends its reply or dead-letters it;
    /// resolves once finished.
    fn deliver_one(
        &self,
        offset: u64,
        event: Arc<CloudEvent>,
        from_lane: bool,
        key: Option<String>,
    ) -> Delivery {
        let client = self.client.clone();
        let trigger = self.trigger.clone();
        let stats = self.stats.clone();
        let broker = self.broker.clone();
        let log = self.log.clone();
        Box::pin(async move {
            match deliver(&client, &trigger, &event, &stats).await {
                Outcome::Delivered { reply } => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some(reply) = reply {
                        append_reply(&broker, &log, &event, reply, &stats).await;
                    }
                }
                Outcome::Failed(failure) => {
                    dead_letter(&client, &broker, &trigger, &event, offset, failure, &stats).await;
                }
            }
            Done {
                offset,
                from_lane,
                key,
            }
        })
    }
}

/// Appends a reply to the broker: its `knativebrokerttl` is the original's minus one, and a
/// reply whose TTL runs out is dropped (this ends reply loops).
async fn append_reply(
    broker: &str,
    log: &EventLog,
    original: &CloudEvent,
    mut reply: CloudEvent,
    stats: &DispatchStats,
) {
    let ttl = original
        .attribute(event::BROKER_TTL)
        .and_then(|t| t.parse::<i32>().ok())
        .unwrap_or(event::DEFAULT_BROKER_TTL);
    if ttl <= 1 {
        stats.replies_expired.fetch_add(1, Ordering::Relaxed);
        tracing::info!(broker, id = %reply.id, in_reply_to = %original.id, "reply dropped: knativebrokerttl exhausted");
        return;
    }
    // `stamp_ingress` decrements a present TTL: start from the original's.
    reply.attributes.insert(
        event::BROKER_TTL.into(),
        event::AttributeValue {
            attr: Some(event::Attr::CeInteger(ttl)),
        },
    );
    if let Err(e) = event::stamp_ingress(&mut reply, &event::now_rfc3339()) {
        tracing::warn!(broker, id = %reply.id, error = %e, "reply dropped");
        return;
    }
    let record = reply.encode_to_bytes();
    // The reply is owed to the subscriber: wait out a full append queue rather than drop it.
    loop {
        match log.append(vec![record.clone()]).await {
            Ok(_) => {
                stats.replies.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(crate::log::AppendError::Full) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                tracing::error!(broker, id = %reply.id, error = %e, "reply could not be stored");
                return;
            }
        }
    }
}

/// After the last failure: to the dead-letter sink (with the same retry policy) when there is
/// one; otherwise — or if that fails too — recorded as dropped, with the event's id.
async fn dead_letter(
    client: &HttpClient,
    broker: &str,
    trigger: &TriggerConfig,
    event: &CloudEvent,
    offset: u64,
    failure: Failure,
    stats: &DispatchStats,
) {
    let status = failure.response.as_ref().map(|r| r.status.as_u16());
    let Some(sink) = &trigger.dead_letter else {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            broker, trigger = %trigger.name, subscriber = %trigger.subscriber, id = %event.id,
            offset, status, reason = %failure.reason,
            "event dropped: delivery failed and no dead-letter sink is configured"
        );
        return;
    };
    let dead = dead_letter_event(event, &trigger.subscriber, &failure);
    match send(client, sink, trigger, &dead, stats).await {
        Ok(_) => {
            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(broker, trigger = %trigger.name, id = %event.id, %sink, status, "event dead-lettered");
        }
        Err(dlq) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                broker, trigger = %trigger.name, id = %event.id, offset, %sink,
                delivery = %failure.reason, dead_letter = %dlq.reason,
                "event dropped: delivery and dead-lettering both failed"
            );
        }
    }
}

/// An event to deliver: offset, event, and whether the fan-out handed it over.
type Pending = (u64, Arc<CloudEvent>, bool);

/// A delivery under way.
type Delivery = std::pin::Pin<Box<dyn Future<Output = Done> + Send>>;

/// A finished delivery.
struct Done {
    offset: u64,
    from_lane: bool,
    /// The partition key it held (ordered triggers).
    key: Option<String>,
}

/// The CloudEvents `partitionkey` extension; events without one share the key `""`.
fn partition_key(event: &CloudEvent) -> String {
    event
        .attribute("partitionkey")
        .map(|k| k.into_owned())
        .unwrap_or_default()
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

/// A subscriber's (or dead-letter sink's) answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (at most 1 MiB is read).
    pub body: Bytes,
}

/// Why sending to a destination failed for good.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The last response, when one arrived.
    pub response: Option<Response>,
    /// What went wrong last.
    pub reason: String,
}

/// Delivers one event to the trigger's subscriber: the first attempt plus up to `retry`
/// retries for retryable failures. Any 2xx is a success. A 200 whose body is one CloudEvent is
/// a reply; a 200 with any other body is a success with no reply — Knative's data plane lets a
/// recipient answer 200 "with or without a response payload", and most services answer
/// `{"ok":true}`. 202, 204 and other 2xx are never replies.
pub async fn deliver(
    client: &HttpClient,
    trigger: &TriggerConfig,
    event: &CloudEvent,
    stats: &DispatchStats,
) -> Outcome {
    match send(client, &trigger.subscriber, trigger, event, stats).await {
        Ok(resp) if resp.status == StatusCode::OK && !resp.body.is_empty() => Outcome::Delivered {
            reply: reply_in(&resp, trigger, event, stats),
        },
        Ok(_) => Outcome::Delivered { reply: None },
        Err(failure) => Outcome::Failed(failure),
    }
}

/// The reply a 200 carries, if its body is one CloudEvent. A body that only looks like an
/// attempt at one (a CloudEvents content type, or `ce-specversion`) but does not decode is
/// logged at `warn` (once per interval per trigger); anything else is an ordinary payload.
fn reply_in(
    resp: &Response,
    trigger: &TriggerConfig,
    event: &CloudEvent,
    stats: &DispatchStats,
) -> Option<CloudEvent> {
    let problem = match http_binding::decode_request(&resp.headers, resp.body.clone()) {
        Ok(mut events) if events.len() == 1 => return events.pop(),
        Ok(events) => format!(
            "{} events in the reply: a reply is a single event",
            events.len()
        ),
        Err(e) => e.to_string(),
    };
    stats.replies_ignored.fetch_add(1, Ordering::Relaxed);
    let content_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let meant_as_event = resp.headers.contains_key("ce-specversion")
        || content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/cloudevents");
    if meant_as_event {
        if let Some(suppressed) = stats.reply_log.allow() {
            tracing::warn!(
                trigger = %trigger.name, subscriber = %trigger.subscriber, id = %event.id,
                reason = %problem, suppressed,
                "delivered, but the subscriber's reply is not a valid CloudEvent: reply ignored"
            );
        }
    } else {
        tracing::debug!(
            trigger = %trigger.name, id = %event.id,
            "delivered; the 200 body is not a CloudEvent, so there is no reply"
        );
    }
    None
}

/// Sends `event` to `target` with the trigger's retry policy; `Ok` with the 2xx response.
/// Each failed attempt that will be retried is logged at `warn` — at most once per interval
/// per trigger, with the count of the lines left out.
pub async fn send(
    client: &HttpClient,
    target: &Uri,
    trigger: &TriggerConfig,
    event: &CloudEvent,
    stats: &DispatchStats,
) -> Result<Response, Failure> {
    let on_retry = |attempt: u32, failure: &Failure, wait: Duration| {
        if let Some(suppressed) = stats.attempt_log.allow() {
            tracing::warn!(
                trigger = %trigger.name, %target, id = %event.id, attempt,
                status = failure.response.as_ref().map(|r| r.status.as_u16()),
                reason = %failure.reason, retry_in = ?wait, suppressed,
                "delivery attempt failed; will retry"
            );
        }
    };
    with_retries(&trigger.policy, trigger.retry_after_max, stats, on_retry, || {
        attempt(client, target, trigger, event)
    })
    .await
    .inspect_err(|f| tracing::debug!(trigger = %trigger.name, %target, id = %event.id, reason = %f.reason, "giving up"))
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's retries are used up,
/// sleeping [`next_wait`] between attempts (on tokio's clock, so tests can pause it) after
/// telling `on_retry` the failed attempt's number (1-based), its failure and the wait.
pub async fn with_retries<F, Fut>(
    policy: &DeliveryPolicy,
    retry_after_max: Duration,
    stats: &DispatchStats,
    mut on_retry: impl FnMut(u32, &Failure, Duration),
    mut attempt: F,
) -> Result<Response, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response, (bool, Failure)>>,
{
    let mut retry = 0;
    loop {
        let (retryable, failure) = match attempt().await {
            Ok(resp) => return Ok(resp),
            Err(failure) => failure,
        };
        retry += 1;
        let wait = retryable
            .then(|| next_wait(policy, retry, failure.response.as_ref(), retry_after_max))
            .flatten();
        let Some(wait) = wait else {
            return Err(failure);
        };
        stats.retries.fetch_add(1, Ordering::Relaxed);
        on_retry(retry, &failure, wait);
        tokio::time::sleep(wait).await;
    }
}

/// The wait before retry `k` (1-based) after a retryable failure, or `None` when the retries
/// are used up: the policy's backoff, or longer when a 429/503 asks for it with `Retry-After`
/// (honoured up to `retry_after_max`).
pub fn next_wait(
    policy: &DeliveryPolicy,
    k: u32,
    response: Option<&Response>,
    retry_after_max: Duration,
) -> Option<Duration> {
    let backoff = policy.backoff(k)?;
    Some(match response.and_then(retry_after) {
        Some(asked) => backoff.max(asked.min(retry_after_max)),
        None => backoff,
    })
}

/// The wait a 429 or 503 asks for with `Retry-After` (delta-seconds or an HTTP-date).
pub fn retry_after(resp: &Response) -> Option<Duration> {
    if !matches!(resp.status.as_u16(), 429 | 503) {
        return None;
    }
    let value = resp
        .headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// One attempt. `Err((retryable, failure))` on failure.
async fn attempt(
    client: &HttpClient,
    target: &Uri,
    trigger: &TriggerConfig,
    event: &CloudEvent,
) -> Result<Response, (bool, Failure)> {
    // Only the subscriber's shared limit applies here (a dead-letter sink is another host).
    let _permit = match &trigger.subscriber_limit {
        Some(limit) if target == &trigger.subscriber => limit.clone().acquire_owned().await.ok(),
        _ => None,
    };
    let req = build_request(target, trigger.format, event);
    let call = async {
        let resp = client.request(req).await?;
        let (parts, body) = resp.into_parts();
        // Read (a bounded amount of) the body: a reply, or error data for the dead-letter sink.
        let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        Ok::<_, hyper_util::client::legacy::Error>(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    let failure = |response, reason| Failure { response, reason };
    match tokio::time::timeout(trigger.policy.timeout, call).await {
        Ok(Ok(resp)) if resp.status.is_success() => Ok(resp),
        Ok(Ok(resp)) => {
            let status = resp.status;
            Err((
                is_retryable_status(status.as_u16()),
                failure(Some(resp), format!("{target} answered {status}")),
            ))
        }
        Ok(Err(e)) => Err((
            true,
            failure(None, format!("request to {target} failed: {e}")),
        )),
        Err(_) => Err((
            true,
            failure(
                None,
                format!(
                    "no response from {target} within {:?}",
                    trigger.policy.timeout
                ),
            ),
        )),
    }
}

/// The most characters of `knativeerrordata`.
const ERROR_DATA_MAX_CHARS: usize = 1024;

/// The event as sent to a dead-letter sink: the original with `knativeerrordest` (the
/// subscriber), `knativeerrorcode` (the last status, when there was one) and
/// `knativeerrordata` (the last response body, base64, at most 1024 characters).
pub fn dead_letter_event(event: &CloudEvent, subscriber: &Uri, failure: &Failure) -> CloudEvent {
    use base64::Engine as _;
    let mut dead = event.clone();
    dead.attributes.insert(
        "knativeerrordest".into(),
        event::string_value(subscriber.to_string()),
    );
    if let Some(resp) = &failure.response {
        dead.attributes.insert(
            "knativeerrorcode".into(),
            event::string_value(resp.status.as_u16().to_string()),
        );
        if !resp.body.is_empty() {
            let mut data = base64::engine::general_purpose::STANDARD.encode(&resp.body);
            data.truncate(ERROR_DATA_MAX_CHARS);
            dead.attributes
                .insert("knativeerrordata".into(), event::string_value(data));
        }
    }
    dead
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::BackoffPolicy;

    fn response(status: u16, retry_after: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::new(),
        }
    }

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            retry: 3,
            backoff_policy: BackoffPolicy::Linear,
            backoff_delay: Duration::from_millis(100),
            ..Default::default()
        }
    }

    #[test]
    fn retry_after_delta_seconds_is_honoured_up_to_the_maximum() {
        let max = Duration::from_secs(5);
        let r = response(429, Some("2"));
        assert_eq!(
            next_wait(&policy(), 1, Some(&r), max),
            Some(Duration::from_secs(2))
        );
        let r = response(503, Some("60"));
        assert_eq!(next_wait(&policy(), 1, Some(&r), max), Some(max));
        // Never shorter than the backoff, and retries still run out.
        let r = response(503, Some("0"));
        assert_eq!(
            next_wait(&policy(), 2, Some(&r), max),
            Some(Duration::from_millis(200))
        );
        assert_eq!(next_wait(&policy(), 4, Some(&r), max), None);
    }

    #[test]
    fn retry_after_http_date_is_honoured() {
        let at = chrono::Utc::now() + chrono::Duration::seconds(30);
        let r = response(
            503,
            Some(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        );
        let wait = next_wait(&policy(), 1, Some(&r), Duration::from_secs(3600)).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    #[test]
    fn retry_after_counts_only_on_429_and_503() {
        let r = response(500, Some("60"));
        assert_eq!(
            next_wait(&policy(), 1, Some(&r), Duration::from_secs(3600)),
            Some(Duration::from_millis(100))
        );
        let r = response(429, Some("soon"));
        assert_eq!(
            next_wait(&policy(), 1, Some(&r), Duration::from_secs(3600)),
            Some(Duration::from_millis(100))
        );
    }

    /// Runs `with_retries` against scripted attempt results on a paused clock; returns when
    /// each attempt happened (ms after the first) and the result.
    async fn schedule(
        policy: DeliveryPolicy,
        mut script: Vec<Result<u16, (u16, Option<&'static str>)>>,
    ) -> (Vec<u128>, Result<Response, Failure>) {
        let start = tokio::time::Instant::now();
        let times = std::sync::Mutex::new(Vec::new());
        script.reverse();
        let script = std::sync::Mutex::new(script);
        let stats = DispatchStats::default();
        let result = with_retries(
            &policy,
            Duration::from_secs(10),
            &stats,
            |_, _, _| {},
            || {
                times.lock().unwrap().push(start.elapsed().as_millis());
                let next = script.lock().unwrap().pop().unwrap_or(Ok(200));
                async move {
                    match next {
                        Ok(status) => Ok(response(status, None)),
                        Err((status, retry_after)) => Err((
                            is_retryable_status(status),
                            Failure {
                                response: Some(response(status, retry_after)),
                                reason: String::new(),
                            },
                        )),
                    }
                }
            },
        )
        .await;
        (times.into_inner().unwrap(), result)
    }

    #[tokio::test(start_paused = true)]
    async fn linear_schedule_on_the_clock() {
        let (times, result) = schedule(
            policy(),
            vec![Err((503, None)), Err((500, None)), Err((429, None))],
        )
        .await;
        assert_eq!(times, [0, 100, 300, 600]);
        assert!(result.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn exponential_schedule_on_the_clock_then_gives_up() {
        let policy = DeliveryPolicy {
            backoff_policy: BackoffPolicy::Exponential,
            ..policy()
        };
        let (times, result) = schedule(policy, vec![Err((503, None)); 10]).await;
        // delay × 2^k before retry k = 1, 2, 3; then the retries are used up.
        assert_eq!(times, [0, 200, 600, 1400]);
        assert_eq!(result.unwrap_err().response.unwrap().status, 503);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_stretches_the_schedule_and_final_statuses_stop_it() {
        let (times, _) = schedule(policy(), vec![Err((429, Some("2"))), Err((503, None))]).await;
        assert_eq!(times, [0, 2000, 2200]);
        let (times, result) = schedule(policy(), vec![Err((400, None))]).await;
        assert_eq!(times, [0], "a 400 is final");
        assert!(result.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn every_row_of_knatives_retry_table() {
        // (status, retried?)
        let rows = [
            (400, false),
            (401, false),
            (403, false),
            (404, true),
            (408, true),
            (409, true),
            (410, false),
            (413, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (301, false),
            (302, false),
        ];
        for (status, retried) in rows {
            let (times, _) = schedule(policy(), vec![Err((status, None))]).await;
            assert_eq!(times.len() == 2, retried, "{status}");
        }
    }

    #[test]
    fn dead_letter_extensions_follow_knative() {
        let event = CloudEvent {
            id: "1".into(),
            source: "/s".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            ..Default::default()
        };
        let subscriber: Uri = "http://127.0.0.1:9/sub".parse().unwrap();
        let mut resp = response(500, None);
        resp.body = Bytes::from(vec![b'x'; 2000]);
        let failure = Failure {
            response: Some(resp),
            reason: "boom".into(),
        };
        let dead = dead_letter_event(&event, &subscriber, &failure);
        assert_eq!(
            dead.attribute("knativeerrordest").as_deref(),
            Some("http://127.0.0.1:9/sub")
        );
        assert_eq!(dead.attribute("knativeerrorcode").as_deref(), Some("500"));
        assert_eq!(
            dead.attribute("knativeerrordata").map(|d| d.len()),
            Some(1024)
        );
    }
}
