//! The KafkaSink (`eventing.knative.dev/v1alpha1`): each event handed to it becomes a record of
//! its topic, in the Kafka protocol binding's `binary` (default) or `structured` content mode,
//! keyed by the event's `partitionkey`. It is an [`EventSink`], so Triggers (as subscriber or
//! dead-letter sink) and sources (as their sink) hand it events the same way.
//!
//! - **Durable on `Ok`**: the producer runs with `acks=all` and idempotence, and an event is
//!   answered `Ok` only once Kafka acknowledged its record. A batch is produced at once (the
//!   producer batches records per partition) and answered record by record.
//! - **Refusals**: a record Kafka can never take (too large, invalid) is never retried;
//!   anything else — brokers down, the local queue full, a timeout — may succeed later, so a
//!   Trigger retries it and a source pauses.
//! - **The topic**: with both `numPartitions` and `replicationFactor` Ember creates it when it
//!   does not exist; otherwise it must exist (as in Knative). Until the check succeeds it is
//!   retried in the background, and the reason is in the log and in each refusal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_api::sinks::{ContentMode, KafkaSink as KafkaSinkResource};
use ember_api::{FieldError, FieldPath};
use ember_event::CloudEvent;
use ember_event::kafka_binding::{self, KafkaRecord};
use ember_event::sink::{Answers, EventSink, Prepared, Refused};
use futures_util::future::join_all;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::task::JoinHandle;

use super::client_log::ClientLog;

/// How long a record may wait for Kafka's acknowledgement before its send fails (and is
/// retried): the bound every sink keeps on a send.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait asked for after a refusal that may succeed later.
const RETRY_WAIT: Duration = Duration::from_secs(1);

/// One KafkaSink's producer.
pub struct KafkaSink {
    name: String,
    topic: String,
    mode: ContentMode,
    producer: FutureProducer<ProducerContext>,
    /// Why the topic is not usable, until its check succeeds.
    topic_problem: Arc<Mutex<Option<String>>>,
    checker: Mutex<Option<JoinHandle<()>>>,
    /// Records Kafka acknowledged, and sends that failed.
    pub counters: Arc<KafkaSinkCounters>,
}

/// A KafkaSink's counters.
#[derive(Debug, Default)]
pub struct KafkaSinkCounters {
    /// Records Kafka acknowledged.
    pub produced: AtomicU64,
    /// Records that failed (retryable or not).
    pub failed: AtomicU64,
    /// Errors the Kafka client reported.
    pub client_errors: Arc<AtomicU64>,
}

struct ProducerContext(ClientLog);

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.line(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(error, reason);
    }
}

impl KafkaSink {
    /// Starts the producer of `sink` and, in the background, the check (or creation) of its
    /// topic. Must run inside a Tokio runtime.
    pub fn start(sink: &KafkaSinkResource) -> Result<Self, String> {
        let name = format!(
            "KafkaSink {}/{}",
            sink.metadata.namespace, sink.metadata.name
        );
        let security = Self::security(sink).map_err(|e| format!("{name}: {e}"))?;
        let brokers = sink.spec.bootstrap_servers.join(",");
        let counters = Arc::new(KafkaSinkCounters::default());
        let mut config = ClientConfig::new();
        for (key, value) in &security {
            config.set(*key, value);
        }
        let producer: FutureProducer<ProducerContext> = config
            .clone()
            .set("bootstrap.servers", &brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // The topic exists or Ember creates it (as in Knative): producing never creates it
            // with the cluster's defaults.
            .set("allow.auto.create.topics", "false")
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            )
            .set("client.id", format!("ember-{name}").replace(' ', "-"))
            .create_with_context(ProducerContext(ClientLog::new(
                name.clone(),
                counters.client_errors.clone(),
            )))
            .map_err(|e| format!("{name}: creating the Kafka producer: {e}"))?;
        let topic = sink.spec.topic.clone();
        let topic_problem = Arc::new(Mutex::new(Some("not checked yet".to_owned())));
        config.set("bootstrap.servers", &brokers);
        let checker = tokio::spawn(check_topic(
            name.clone(),
            config,
            topic.clone(),
            sink.spec.topic_to_create(),
            topic_problem.clone(),
        ));
        Ok(KafkaSink {
            name,
            topic,
            mode: sink.spec.content_mode(),
            producer,
            topic_problem,
            checker: Mutex::new(Some(checker)),
            counters,
        })
    }

    /// The connection settings of `auth` (its Secret's keys), as librdkafka settings.
    pub fn security(sink: &KafkaSinkResource) -> Result<Vec<(&'static str, String)>, FieldError> {
        let path = FieldPath::parse_keys("spec.auth.secret.ref.name");
        match &sink.spec.resolved_net {
            None => Ok(Vec::new()),
            Some(Err(why)) => Err(FieldError::new(path, why.clone())),
            Some(Ok(net)) => super::security::client_settings(Some(net), &path),
        }
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits until every record handed over is acknowledged or failed (at most `timeout`).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }

    fn record_of(&self, event: &CloudEvent) -> KafkaRecord {
        match self.mode {
            ContentMode::Binary => kafka_binding::encode_binary(event),
            ContentMode::Structured => kafka_binding::encode_structured(event),
        }
    }

    fn refusal(&self, e: &KafkaError) -> Refused {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        let never = matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidMessageSize
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::InvalidMessage
            )
        );
        let mut reason = format!("{}: topic {}: {e}", self.name, self.topic);
        if let Some(problem) = self.topic_problem() {
            reason.push_str(&format!(" ({problem})"));
        }
        if never {
            Refused::never(reason)
        } else {
            Refused::later(reason, RETRY_WAIT)
        }
    }

    fn topic_problem(&self) -> Option<String> {
        self.topic_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn send_all(&self, batch: &[&Prepared]) -> Vec<Result<(), Refused>> {
        let records: Vec<Result<KafkaRecord, Refused>> = batch
            .iter()
            .map(|p| match p {
                Prepared::Event(e) => Ok(self.record_of(e)),
                Prepared::Encoded(_) => Err(Refused::never(format!(
                    "{}: an event prepared for a broker",
                    self.name
                ))),
            })
            .collect();
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let record = match record {
                Ok(r) => r,
                Err(refused) => {
                    deliveries.push(Err(refused.clone()));
                    continue;
                }
            };
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            let mut out: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(k) = &record.key {
                out = out.key(&k[..]);
            }
            if let Some(v) = &record.value {
                out = out.payload(&v[..]);
            }
            // A full local queue (100,000 records waiting for Kafka) refuses the event for now.
            deliveries.push(match self.producer.send_result(out) {
                Ok(delivery) => Ok(delivery),
                Err((e, _)) => Err(self.refusal(&e)),
            });
        }
        join_all(deliveries.into_iter().map(|d| async move {
            match d {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => {
                        self.counters.produced.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Ok(Err((e, _))) => Err(self.refusal(&e)),
                    Err(_) => Err(self.refusal(&KafkaError::Canceled)),
                },
                Err(refused) => Err(refused),
            }
        }))
        .await
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Some(checker) = self
            .checker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            checker.abort();
        }
    }
}

impl EventSink for KafkaSink {
    /// Validated; encoded when sent.
    fn prepare(&self, event: CloudEvent) -> Result<Prepared, Refused> {
        ember_event::validate(&event).map_err(|e| Refused::never(e.to_string()))?;
        Ok(Prepared::Event(Box::new(event)))
    }

    fn send<'a>(&'a self, batch: &'a [&'a Prepared]) -> Answers<'a> {
        Box::pin(self.send_all(batch))
    }

    fn problem(&self) -> Option<String> {
        self.topic_problem()
            .map(|p| format!("topic {}: {p}", self.topic))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Checks that `topic` exists — creating it first when `create` gives its partitions and
/// replication factor — retrying every few seconds until it does; `problem` holds why not yet.
async fn check_topic(
    name: String,
    client: ClientConfig,
    topic: String,
    create: Option<(i32, i32)>,
    problem: Arc<Mutex<Option<String>>>,
) {
    let set = |p: Option<String>| *problem.lock().unwrap_or_else(|e| e.into_inner()) = p;
    let mut wait = Duration::from_millis(500);
    loop {
        match topic_ready(&client, &topic, create).await {
            Ok(created) => {
                set(None);
                if created {
                    tracing::info!(sink = %name, %topic, "KafkaSink: topic created");
                } else {
                    tracing::info!(sink = %name, %topic, "KafkaSink: topic exists");
                }
                return;
            }
            Err(why) => {
                tracing::warn!(sink = %name, %topic, error = %why, "KafkaSink: the topic is not usable yet; checking again");
                set(Some(why));
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Whether `topic` exists (`Ok(false)`), or was created (`Ok(true)`).
async fn topic_ready(
    client: &ClientConfig,
    topic: &str,
    create: Option<(i32, i32)>,
) -> Result<bool, String> {
    let mut create_failed = None;
    let mut config = client.clone();
    config.set("log_level", "3");
    if let Some((partitions, replication)) = create {
        let admin: AdminClient<DefaultClientContext> = config
            .create()
            .map_err(|e| format!("creating the Kafka admin client: {e}"))?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        match admin.create_topics([&new], &options).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => return Ok(true),
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(false),
                Some(Err((_, code))) => {
                    return Err(format!(
                        "creating it with {partitions} partition(s) and replication factor {replication}: {code}"
                    ));
                }
                None => {}
            },
            // A cluster that cannot create topics (the API unsupported) may still have it.
            Err(e) => create_failed = Some(e.to_string()),
        }
    }
    use rdkafka::consumer::Consumer as _;
    let consumer: rdkafka::consumer::BaseConsumer = config
        .create()
        .map_err(|e| format!("creating the Kafka metadata client: {e}"))?;
    let topic_owned = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(Some(&topic_owned), Duration::from_secs(10))
            .map(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == topic_owned)
                    .map(|t| (t.error(), t.partitions().len()))
            })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading the cluster's metadata: {e}"))?;
    let missing = match metadata {
        Some((None, n)) if n > 0 => return Ok(false),
        Some((Some(e), _)) => format!("it does not exist ({})", RDKafkaErrorCode::from(e)),
        _ => "it does not exist".to_owned(),
    };
    Err(match create_failed {
        Some(e) => format!("{missing}, and creating it failed: {e}"),
        None if create.is_some() => missing,
        None => format!(
            "{missing}; create it, or set numPartitions and replicationFactor for Ember to create it"
        ),
    })
}
