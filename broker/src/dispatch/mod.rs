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

mod lane;
mod low_water;
mod ordered;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ember_event::{self as event, CloudEvent, CloudEventExt};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};

pub use lane::{AttachRequest, LaneState};
pub use low_water::LowWater;
pub use ordered::KeyQueues;

use crate::delivery::dead_letter::DeadLetter;
use crate::delivery::{self, DeliveryFormat, DeliveryPolicy, Destination, Outcome, Route, Stack};
use crate::fanout::Handoff;
use crate::log::EventLog;
use crate::throttle::LogThrottle;
use lane::{CatchUp, CatchUpReader};

/// A trigger as the dispatcher runs it.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// The trigger's name (unique within its broker's namespace); names its cursor.
    pub name: String,
    /// Which events it wants.
    pub filter: ember_triggers::TriggerFilter,
    /// Where matching events go, as the Trigger named it.
    pub subscriber: Destination,
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
    pub dead_letter: Option<Destination>,
    /// The longest `Retry-After` honoured (`delivery.retryAfterMax`).
    pub retry_after_max: Duration,
    /// A limit on requests in flight to the subscriber shared by every trigger delivering
    /// there (`ember.dev/subscriber-max-in-flight`); a permit is held for one attempt.
    pub subscriber_limit: Option<Arc<tokio::sync::Semaphore>>,
}

/// Counters a dispatcher keeps (read by `/metrics` and tests), and its rate-limited logs.
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

/// A trigger's delivery stacks: to its subscriber and to its dead-letter sink.
#[derive(Debug, Clone)]
pub struct Stacks {
    /// To the subscriber, holding the subscriber's shared permits per attempt.
    pub subscriber: Stack,
    /// To the dead-letter sink, if there is one.
    pub dead_letter: Option<Box<Stack>>,
}

impl Stacks {
    /// Builds the stacks of `trigger` with the client and broker directory of `route`.
    pub fn new(
        trigger: &TriggerConfig,
        client: &delivery::HttpClient,
        brokers: &delivery::BrokerDirectory,
    ) -> Self {
        let route = Route {
            policy: trigger.policy.clone(),
            retry_after_max: trigger.retry_after_max,
            format: trigger.format,
            client: client.clone(),
            brokers: brokers.clone(),
        };
        Self {
            subscriber: route.stack(trigger.subscriber.clone(), trigger.subscriber_limit.clone()),
            // Boxed: most triggers have none, and a stack is ~300 bytes.
            dead_letter: trigger
                .dead_letter
                .clone()
                .map(|d| Box::new(route.stack(d, None))),
        }
    }
}

/// One trigger's dispatch loop and what it needs.
pub struct Dispatcher {
    /// `namespace/broker`, for logs.
    pub broker: Arc<str>,
    /// The trigger (shared with its deliveries in flight).
    pub trigger: Arc<TriggerConfig>,
    /// How its events get to the subscriber and the dead-letter sink.
    pub stacks: Arc<Stacks>,
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
    /// Counters.
    pub stats: Arc<DispatchStats>,
    /// How long in-flight deliveries may finish after shutdown is signalled.
    pub grace: Duration,
}

/// An event to deliver.
struct Pending {
    offset: u64,
    event: Arc<CloudEvent>,
    /// The fan-out handed it over (rather than the dispatcher's own reader finding it).
    from_lane: bool,
}

/// A delivery under way.
type Delivery = std::pin::Pin<Box<dyn Future<Output = Done> + Send>>;

/// A finished delivery.
struct Done {
    offset: u64,
    from_lane: bool,
    /// The partition key it held (ordered triggers).
    key: Option<String>,
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
        let mut keys: KeyQueues<Pending> = KeyQueues::default();
        let mut water = LowWater::new(start);
        let mut buffered = std::collections::VecDeque::new();
        let max = self.trigger.max_in_flight.max(1);

        loop {
            let mut lane_done = 0;
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    water.finished(done.offset);
                    self.state.finished();
                    lane_done += usize::from(done.from_lane);
                    if let Some(key) = done.key
                        && let Some(next) = keys.finished(&key)
                    {
                        in_flight.push(self.deliver_one(next, Some(key)));
                    }
                }
                item = self.lane.recv(), if live && in_flight.len() + keys.waiting() < max => match item {
                    Some((offset, event)) => {
                        water.started(offset);
                        self.state.publish(false, water.mark());
                        self.launch(&mut in_flight, &mut keys, Pending { offset, event, from_lane: true });
                    }
                    None => break,
                },
                msg = lane::recv(&mut catch_up), if !live && buffered.is_empty() => match msg {
                    Some(CatchUp::Batch(batch)) => buffered = batch.into(),
                    Some(CatchUp::Attached(at)) => {
                        water.saw_up_to(at);
                        catch_up = None;
                        live = true;
                    }
                    None => break, // the log was closed
                },
            }
            while in_flight.len() + keys.waiting() < max {
                let Some((offset, record)) = buffered.pop_front() else {
                    break;
                };
                water.saw(offset);
                if let Some(event) = self.decode_matching(offset, &record) {
                    water.started(offset);
                    self.state.publish(false, water.mark());
                    let pending = Pending {
                        offset,
                        event: Arc::new(event),
                        from_lane: false,
                    };
                    self.launch(&mut in_flight, &mut keys, pending);
                }
            }
            self.state.publish(in_flight.is_empty(), water.mark());
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
                water.saw_up_to(from);
                catch_up = Some(self.catch_up(from));
            }
        }

        // Shutdown: let what is in flight finish within the grace period; the position then
        // is exactly the lowest unfinished offset, so nothing unacknowledged is skipped.
        let drain = async {
            // Events waiting behind a partition key are not started: they stay unfinished.
            while let Some(done) = in_flight.next().await {
                water.finished(done.offset);
                self.state.finished();
                self.state.publish(in_flight.is_empty(), water.mark());
                if done.from_lane {
                    self.state.finished_handoff();
                }
            }
        };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            tracing::warn!(
                broker = %self.broker, trigger = %self.trigger.name, unfinished = water.unfinished(),
                "shutdown grace elapsed with deliveries in flight; they will be redelivered"
            );
        }
        // `live` stays as it is: an attached, idle lane is at the fan-out's final position.
        self.state.publish(water.is_idle(), water.mark());
    }

    /// Starts reading the log on our own from `from`.
    fn catch_up(&self, from: u64) -> CatchUpReader {
        CatchUpReader::start(
            self.log.clone(),
            (self.lane_id, self.state.clone()),
            from,
            self.attach.clone(),
        )
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
    /// an event under way — queues it behind that one.
    fn launch(
        &self,
        in_flight: &mut FuturesUnordered<Delivery>,
        keys: &mut KeyQueues<Pending>,
        pending: Pending,
    ) {
        if !self.trigger.ordered {
            in_flight.push(self.deliver_one(pending, None));
            return;
        }
        let key = partition_key(&pending.event);
        if let Some(pending) = keys.admit(&key, pending) {
            in_flight.push(self.deliver_one(pending, Some(key)));
        }
    }

    /// Delivers one event with the retry policy, then appends its reply or dead-letters it;
    /// resolves once finished.
    fn deliver_one(&self, pending: Pending, key: Option<String>) -> Delivery {
        let Pending {
            offset,
            event,
            from_lane,
        } = pending;
        let trigger = self.trigger.clone();
        let stacks = self.stacks.clone();
        let stats = self.stats.clone();
        let broker = self.broker.clone();
        let log = self.log.clone();
        Box::pin(async move {
            match delivery::deliver(&stacks.subscriber, &trigger.name, &event, &stats).await {
                Outcome::Delivered { reply } => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some(reply) = reply {
                        delivery::reply::append_reply(&broker, &log, &event, reply, &stats).await;
                    }
                }
                Outcome::Failed(failure) => {
                    let dead_letter = DeadLetter {
                        broker: &broker,
                        trigger: &trigger.name,
                        subscriber: &trigger.subscriber,
                        sink: stacks.dead_letter.as_deref(),
                    };
                    dead_letter.handle(&event, offset, failure, &stats).await;
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

/// The CloudEvents `partitionkey` extension; events without one share the key `""`.
fn partition_key(event: &CloudEvent) -> String {
    event
        .attribute("partitionkey")
        .map(|k| k.into_owned())
        .unwrap_or_default()
}
