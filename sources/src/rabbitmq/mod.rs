//! The RabbitmqSource (`sources.knative.dev/v1alpha1`): consumes a RabbitMQ queue and sends each
//! message, as a CloudEvent, to the source's sink — at least once, acknowledged to RabbitMQ only
//! after the sink holds the event (durably, for a broker of this Ember).
//!
//! - **Connection**: Ember's `connection` (`url`, `urlEnv`, `urlFile`: an `amqp://` or `amqps://`
//!   URL), or Knative's `rabbitmqClusterReference.connectionSecret` resolved by the configuration
//!   (the Secret's `uri` key, with `username`/`password` keys put into it when the URL has
//!   none). `rabbitmqResourcesConfig.vhost` replaces the URL's virtual host.
//! - **Topology**: `predeclared: true` consumes `queueName` as it is, declaring nothing.
//!   Otherwise a durable queue (`queueName`, else `ember.<namespace>.<name>`) is declared and
//!   bound to `exchangeName` with the routing key `#` (every message of a fanout, topic or
//!   headers exchange; a direct exchange routes only the key `#`); an exchange that does not
//!   exist is declared, durable, of type `topic`.
//! - **Parallelism** (1–1000, default 1): with 1, messages go to the sink one batch at a time in
//!   queue order (FIFO), each acknowledged with one `multiple` ack; with more, that many batches
//!   are under way at once. The prefetch is 256 messages per unit of parallelism (at most
//!   65,535): the most held unacknowledged, which
//!   bounds memory and is how backpressure reaches RabbitMQ — when the sink is slow or full,
//!   nothing more is taken.
//! - **Mapping** ([`mapping`]): the AMQP binding (binary or structured); any other message
//!   becomes a `dev.knative.rabbitmq.event`.
//! - **Failures**: the sink refusing for now → the batch is sent again after its wait, the
//!   messages stay unacknowledged; an event that can never be valid → the message is rejected
//!   without requeue (to the queue's dead-letter exchange, if it has one) and logged; the
//!   connection lost (RabbitMQ restarted) → reconnect with the shared backoff, declare again,
//!   resume; what was unacknowledged comes back from RabbitMQ.

pub mod mapping;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ember_api::sources::{RabbitmqConnection, RabbitmqSource};
use ember_api::{FieldError, FieldPath, Kind, Resource};
use ember_event::sink::Prepared;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind, message::Delivery};
use tokio::sync::mpsc;

use crate::component::{Handover, Source, SourceContext, SourceError, SourceKind};
use crate::metrics::{Counter, CounterFamily, SourceMetrics};
use crate::{Backoff, LogThrottle};

/// Messages sent to the sink in one batch at most (and the prefetch per unit of parallelism).
const BATCH: usize = 256;

/// How long a stopping source lets its batches under way finish.
const WORKERS_GRACE: Duration = Duration::from_secs(5);

/// Builds RabbitmqSources.
#[derive(Debug, Default)]
pub struct RabbitmqSourceKind;

impl RabbitmqSourceKind {
    /// The kind.
    pub fn new() -> Self {
        Self
    }
}

impl SourceKind for RabbitmqSourceKind {
    fn kind(&self) -> Kind {
        Kind::RabbitmqSource
    }

    fn build(&self, resource: &Resource) -> Result<Box<dyn Source>, FieldError> {
        let Resource::RabbitmqSource(r) = resource else {
            return Err(FieldError::new(FieldPath::root(), "not a RabbitmqSource"));
        };
        Ok(Box::new(Rabbitmq {
            settings: Arc::new(Settings::of(r)?),
            metrics: Arc::default(),
        }))
    }
}

/// What one source consumes, resolved from its resource.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The AMQP URL, virtual host included (never logged: it may hold a password).
    url: String,
    /// The URL without credentials, for logs.
    shown: String,
    exchange: Option<String>,
    queue: String,
    predeclared: bool,
    parallelism: usize,
    mapping: mapping::Mapping,
}

impl Settings {
    /// Reads the resource: the connection URL (from the environment or a file where it says),
    /// the topology, the mapping.
    pub fn of(r: &RabbitmqSource) -> Result<Self, FieldError> {
        let spec = FieldPath::root().key("spec");
        let url = connection_url(r)?;
        let rc = r.spec.rabbitmq_resources_config.clone().unwrap_or_default();
        let mut url = url.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            FieldError::new(
                spec.key("connection"),
                format!("not a usable AMQP URL: {e}"),
            )
        })?;
        if let Some(vhost) = rc.vhost.as_deref().filter(|v| !v.is_empty()) {
            url.vhost = vhost.to_owned();
        }
        let shown = format!(
            "{}://{}:{}/{}",
            if matches!(url.scheme, lapin::uri::AMQPScheme::AMQPS) {
                "amqps"
            } else {
                "amqp"
            },
            url.authority.host,
            url.authority.port,
            url.vhost
        );
        let queue = rc
            .queue_name
            .clone()
            .filter(|q| !q.trim().is_empty())
            .unwrap_or_else(|| format!("ember.{}.{}", r.metadata.namespace, r.metadata.name));
        Ok(Settings {
            url: uri_string(&url),
            shown,
            exchange: rc.exchange_name.clone().filter(|e| !e.trim().is_empty()),
            queue,
            predeclared: rc.predeclared,
            parallelism: rc.parallelism.unwrap_or(1).clamp(1, 1000) as usize,
            mapping: mapping::Mapping::of(r),
        })
    }

    /// The prefetch: a batch per unit of parallelism.
    fn prefetch(&self) -> u16 {
        (self.parallelism * BATCH).min(u16::MAX as usize) as u16
    }
}

/// The URL as lapin's parser reads it back (vhost percent-encoded).
fn uri_string(u: &lapin::uri::AMQPUri) -> String {
    let scheme = match u.scheme {
        lapin::uri::AMQPScheme::AMQPS => "amqps",
        lapin::uri::AMQPScheme::AMQP => "amqp",
    };
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "{scheme}://{}:{}@{}:{}/{}",
        enc(&u.authority.userinfo.username),
        enc(&u.authority.userinfo.password),
        u.authority.host,
        u.authority.port,
        enc(&u.vhost)
    )
}

/// The connection URL the resource gives, read where it says.
fn connection_url(r: &RabbitmqSource) -> Result<String, FieldError> {
    let spec = FieldPath::root().key("spec");
    if let Some(c) = &r.spec.connection {
        let p = spec.key("connection");
        return match c {
            RabbitmqConnection::Url(u) => Ok(u.clone()),
            RabbitmqConnection::UrlEnv(var) => std::env::var(var).map_err(|_| {
                FieldError::new(
                    p.key("urlEnv"),
                    format!("the environment variable {var} is not set"),
                )
            }),
            RabbitmqConnection::UrlFile(file) => std::fs::read_to_string(file)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    FieldError::new(
                        p.key("urlFile"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                }),
        };
    }
    let secret = r
        .spec
        .rabbitmq_cluster_reference
        .as_ref()
        .and_then(|c| c.resolved.as_ref());
    match secret {
        Some(s) => Ok(s.url()),
        None => Err(FieldError::new(
            spec.key("rabbitmqClusterReference"),
            "Ember connects through spec.connection (url, urlEnv or urlFile) or a \
             connectionSecret whose Secret is in the configuration (keys uri, username, \
             password); a RabbitmqCluster by name needs Kubernetes",
        )),
    }
}

/// One RabbitmqSource.
struct Rabbitmq {
    settings: Arc<Settings>,
    metrics: Arc<RabbitmqMetrics>,
}

impl Source for Rabbitmq {
    fn metrics(&self) -> Arc<dyn SourceMetrics> {
        self.metrics.clone()
    }

    fn take_over(&mut self, previous: Handover) {
        if let Some(m) = previous.take::<Arc<RabbitmqMetrics>>() {
            self.metrics = m;
        }
    }

    fn run(
        self: Box<Self>,
        mut cx: SourceContext,
    ) -> BoxFuture<'static, Result<Handover, SourceError>> {
        Box::pin(async move {
            // Ready at once: RabbitMQ being down is waited out, logged and counted, never a
            // reason for Ember not to start.
            cx.ready();
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
            let log: LogThrottle<()> = LogThrottle::new(Duration::from_secs(10));
            loop {
                let session = consume(&self.settings, &self.metrics, &mut cx, &mut backoff);
                match session.await {
                    Ok(()) => break, // asked to stop
                    Err(e) => {
                        self.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
                        if log.allow((), tokio::time::Instant::now()).is_some() {
                            tracing::warn!(source = %cx.id, rabbitmq = %self.settings.shown, error = %e, "RabbitmqSource: connection lost or refused; reconnecting");
                        }
                    }
                }
                let wait = backoff.next_wait();
                tokio::select! {
                    _ = cx.shutdown.requested() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Ok(Handover::new(self.metrics.clone()))
        })
    }
}

/// One connection's life: declare, consume until asked to stop (`Ok`) or the connection fails
/// (`Err`).
async fn consume(
    settings: &Settings,
    metrics: &Arc<RabbitmqMetrics>,
    cx: &mut SourceContext,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let conn = Connection::connect(&settings.url, ConnectionProperties::default())
        .await
        .map_err(text)?;
    let channel = conn.create_channel().await.map_err(text)?;
    channel
        .basic_qos(settings.prefetch(), BasicQosOptions::default())
        .await
        .map_err(text)?;
    if !settings.predeclared {
        declare(&conn, &channel, settings).await.map_err(|e| {
            format!(
                "declaring the queue {} and its binding: {e}",
                settings.queue
            )
        })?;
    }
    let tag = format!("ember-{}", cx.id.name);
    let mut consumer = channel
        .basic_consume(
            settings.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consuming the queue {}: {e}", settings.queue))?;
    tracing::info!(source = %cx.id, rabbitmq = %settings.shown, queue = %settings.queue, "RabbitmqSource consuming");
    backoff.reset();

    // Deliveries go to `parallelism` workers in batches; a worker acknowledges each message
    // once the sink holds its event.
    let (tx, rx) = mpsc::channel::<Delivery>(settings.prefetch() as usize);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..settings.parallelism)
        .map(|_| {
            tokio::spawn(work(
                rx.clone(),
                cx.sink.clone(),
                settings.mapping.clone(),
                metrics.clone(),
                cx.id.to_string(),
                settings.parallelism == 1,
                cx.shutdown.clone(),
            ))
        })
        .collect();
    let result = loop {
        tokio::select! {
            _ = cx.shutdown.requested() => {
                let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                break Ok(());
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    if tx.send(delivery).await.is_err() {
                        break Ok(());
                    }
                }
                Some(Err(e)) => break Err(text(e)),
                None => break Err("the consumer was cancelled or the connection closed".to_owned()),
            },
        }
    };
    // What the workers hold finishes — acknowledged — within a bound; whatever is still
    // unacknowledged then goes back to the queue when the connection closes.
    drop(tx);
    let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
    let finished = futures_util::future::join_all(workers);
    if tokio::time::timeout(WORKERS_GRACE, finished).await.is_err() {
        for a in aborts {
            a.abort();
        }
    }
    let _ = conn.close(200, "ember source stopping".into()).await;
    result
}

fn text(e: lapin::Error) -> String {
    e.to_string()
}

/// Declares the queue (and the exchange if missing) and binds them.
async fn declare(
    conn: &Connection,
    channel: &lapin::Channel,
    settings: &Settings,
) -> Result<(), lapin::Error> {
    if let Some(exchange) = &settings.exchange {
        // A passive declare fails (and closes its channel) when the exchange does not exist.
        let probe = conn.create_channel().await?;
        let exists = probe
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok();
        if !exists {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
    }
    channel
        .queue_declare(
            settings.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    if let Some(exchange) = &settings.exchange {
        channel
            .queue_bind(
                settings.queue.as_str().into(),
                exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// One worker: takes the deliveries waiting (up to a batch), sends their events, acknowledges.
/// The only worker (`alone`: parallelism 1, deliveries in order) acknowledges a whole batch with
/// one `multiple` ack of its last tag, once every message of it is settled.
async fn work(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Delivery>>>,
    sink: Arc<dyn ember_event::sink::EventSink>,
    mapping: mapping::Mapping,
    metrics: Arc<RabbitmqMetrics>,
    source: String,
    alone: bool,
    shutdown: crate::Shutdown,
) {
    let refused_log: LogThrottle<()> = LogThrottle::new(Duration::from_secs(10));
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
        }
        metrics
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        // Messages that cannot become events are rejected now; the rest go to the sink.
        let mut pending: Vec<(Delivery, Prepared)> = Vec::with_capacity(batch.len());
        for d in batch {
            match mapping.event_of(&d).and_then(|e| {
                sink.prepare(e)
                    .map_err(|r| format!("the sink refuses it: {}", r.reason))
            }) {
                Ok(p) => pending.push((d, p)),
                Err(why) => {
                    metrics.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(source = %source, delivery_tag = d.delivery_tag, routing_key = %d.routing_key, error = %why, "RabbitmqSource: message can never become an event; rejected without requeue");
                    let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
                }
            }
        }
        let settled = crate::settle::until_settled(sink.as_ref(), pending, shutdown.clone(), |why| {
            metrics.sink_retries.fetch_add(1, Ordering::Relaxed);
            if refused_log.allow((), tokio::time::Instant::now()).is_some() {
                tracing::warn!(source = %source, error = %why, "RabbitmqSource: the sink cannot take events now; holding them (RabbitMQ keeps the rest)");
            }
        })
        .await;
        for (d, why) in settled.refused {
            metrics.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(source = %source, delivery_tag = d.delivery_tag, error = %why, "RabbitmqSource: the sink refuses the event for good; rejected without requeue");
            let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
        }
        let held = settled.held;
        metrics.sent.fetch_add(held.len() as u64, Ordering::Relaxed);
        if settled.stopped {
            // Stopping: the unsettled ones go back to RabbitMQ with the connection; among
            // those held, a `multiple` ack could cover unsettled tags — ack each instead.
            futures_util::future::join_all(
                held.iter().map(|d| d.acker.ack(BasicAckOptions::default())),
            )
            .await;
            return;
        }
        // Every message of the batch is settled: the sink holds the events of these.
        if alone {
            if let Some(last) = held.iter().max_by_key(|d| d.delivery_tag) {
                let _ = last.acker.ack(BasicAckOptions { multiple: true }).await;
            }
        } else {
            futures_util::future::join_all(
                held.iter().map(|d| d.acker.ack(BasicAckOptions::default())),
            )
            .await;
        }
    }
}

/// A RabbitmqSource's counters.
#[derive(Debug, Default)]
pub struct RabbitmqMetrics {
    received: AtomicU64,
    sent: AtomicU64,
    rejected: AtomicU64,
    sink_retries: AtomicU64,
    reconnects: AtomicU64,
}

static MESSAGES: CounterFamily = CounterFamily {
    name: "ember_rabbitmq_messages",
    help: "Messages a RabbitmqSource took from its queue, by outcome: received; sent (the sink holds the event, the message acknowledged); rejected (it can never be an event).",
};
static SINK_RETRIES: CounterFamily = CounterFamily {
    name: "ember_rabbitmq_sink_retries",
    help: "Times a RabbitmqSource's sink could not take an event yet and it was held to send again.",
};
static RECONNECTS: CounterFamily = CounterFamily {
    name: "ember_rabbitmq_reconnects",
    help: "Times a RabbitmqSource lost or could not open its connection and reconnected.",
};

impl SourceMetrics for RabbitmqMetrics {
    fn counters(&self) -> Vec<Counter> {
        let c = Counter::read;
        vec![
            c(&MESSAGES, vec![("outcome", "received")], &self.received),
            c(&MESSAGES, vec![("outcome", "sent")], &self.sent),
            c(&MESSAGES, vec![("outcome", "rejected")], &self.rejected),
            c(&SINK_RETRIES, vec![], &self.sink_retries),
            c(&RECONNECTS, vec![], &self.reconnects),
        ]
    }
}

impl RabbitmqMetrics {
    /// Messages acknowledged after the sink held their events.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}
