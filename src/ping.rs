//! Running PingSources: the resource into the scheduler's config, and the sinks it emits to —
//! a Broker of this Ember (appended directly, acknowledged once durable) or any CloudEvents URL
//! (POSTed in binary mode, acknowledged by a 2xx).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use ember_api::config::Located;
use ember_api::sources::PingSource;
use ember_broker::broker::Broker;
use ember_broker::delivery::HttpClient;
use ember_broker::log::AppendError;
use ember_event::Prestamped;
use ember_event::{self as event, CloudEvent, Data};
use ember_sources::ping::{
    MissedTicks, PingBatchSink, PingConfig, PingEvent, PingMetrics, SinkError,
};
use futures_util::StreamExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sink::{DISK_BUDGET_USED_UP, SINK_TIMEOUT, Sink};

/// `ember.dev/missed-ticks`: `skip` (default) or `catchUp`, what a PingSource does about ticks
/// that fell while Ember was down.
pub const MISSED_TICKS: &str = "ember.dev/missed-ticks";
/// `ember.dev/catch-up-window`: how far back `catchUp` fires missed ticks (default 1h).
pub const CATCH_UP_WINDOW: &str = "ember.dev/catch-up-window";
/// Default for [`CATCH_UP_WINDOW`].
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(3600);

/// The scheduler's config for a PingSource resource; errors name the annotation.
pub fn config(p: &PingSource) -> Result<PingConfig, String> {
    let a = &p.metadata.annotations;
    let missed = match a.get(MISSED_TICKS).map(String::as_str) {
        None | Some("skip") => MissedTicks::Skip,
        Some("catchUp") => {
            let window = match a.get(CATCH_UP_WINDOW) {
                Some(v) => ember_api::duration::parse_flexible(v)
                    .map_err(|e| format!("metadata.annotations[{CATCH_UP_WINDOW}]: {e}"))?,
                None => DEFAULT_CATCH_UP_WINDOW,
            };
            MissedTicks::CatchUp { window }
        }
        Some(other) => {
            return Err(format!(
                "metadata.annotations[{MISSED_TICKS}]: unknown policy {other:?}; expected skip (default) or catchUp"
            ));
        }
    };
    Ok(PingConfig {
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        schedule: p.spec.schedule.clone(),
        timezone: p.spec.timezone.clone(),
        content_type: p.spec.content_type.clone(),
        data: p.spec.data.clone(),
        data_base64: p.spec.data_base64.clone(),
        extensions: p
            .spec
            .ce_overrides
            .as_ref()
            .map(|o| {
                o.extensions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        missed,
    })
}

/// The CloudEvent for a tick.
pub fn cloud_event(e: PingEvent) -> CloudEvent {
    let mut ev = CloudEvent {
        id: e.id,
        source: e.source,
        spec_version: "1.0".into(),
        r#type: e.r#type,
        ..Default::default()
    };
    ev.attributes.insert(
        "time".into(),
        event::AttributeValue {
            attr: Some(event::Attr::CeTimestamp(prost_types_timestamp(e.time))),
        },
    );
    if let Some(ct) = e.content_type {
        ev.attributes
            .insert("datacontenttype".into(), event::string_value(ct));
    }
    for (k, v) in e.extensions {
        ev.attributes.insert(k, event::string_value(v));
    }
    ev.data = e.data.map(Data::BinaryData);
    ev
}

fn prost_types_timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Events per broker append when a batch of ticks is appended.
const APPEND_CHUNK: usize = 1024;
/// Ticks sent at once to a URL sink.
const HTTP_CONCURRENCY: usize = 64;

/// A tick made ready ahead of its instant.
pub enum PreparedTick {
    /// For a broker: validated and encoded, all but the arrival time (or why it cannot be).
    Encoded(Result<Prestamped, String>),
    /// For a URL: the event, sent in binary mode.
    Event(Box<CloudEvent>),
}

impl PingBatchSink for Sink {
    type Prepared = PreparedTick;

    fn prepare(&self, tick: PingEvent) -> PreparedTick {
        match self {
            Sink::Broker(_) => {
                PreparedTick::Encoded(Prestamped::new(cloud_event(tick)).map_err(|e| e.to_string()))
            }
            Sink::Http { .. } => PreparedTick::Event(Box::new(cloud_event(tick))),
        }
    }

    async fn send_all(&self, batch: &[&PreparedTick]) -> Vec<Result<(), SinkError>> {
        match self {
            Sink::Broker(broker) => append_all(broker, batch).await,
            Sink::Http { .. } => {
                let events: Vec<Option<CloudEvent>> = batch
                    .iter()
                    .map(|tick| match tick {
                        PreparedTick::Event(ev) => Some((**ev).clone()),
                        PreparedTick::Encoded(_) => None,
                    })
                    .collect();
                futures_util::stream::iter(events)
                    .map(|ev| async move {
                        match ev {
                            Some(ev) => self.send_event(ev).await.map_err(SinkError::new),
                            None => Err(SinkError::new("a tick prepared for a broker")),
                        }
                    })
                    .buffered(HTTP_CONCURRENCY)
                    .collect()
                    .await
            }
        }
    }
}

/// Appends prepared ticks to a broker in chunks of [`APPEND_CHUNK`]. The batch arrives at the
/// broker at once, so — as the HTTP ingress does for a batch request — every tick gets the same
/// `knativearrivaltime`, taken when the batch is handed over. All chunks are built before any is
/// appended, so the deliveries the first append sets off do not compete with building the rest.
/// One result per tick.
async fn append_all(broker: &Broker, batch: &[&PreparedTick]) -> Vec<Result<(), SinkError>> {
    let arrival = event::arrival_entry(&event::now_rfc3339());
    let mut results: Vec<Option<Result<(), SinkError>>> = Vec::with_capacity(batch.len());
    let mut chunks = Vec::new();
    let mut buf = BytesMut::new();
    let mut bytes = 0u64;
    for chunk in batch.chunks(APPEND_CHUNK) {
        let mut records = Vec::with_capacity(chunk.len());
        let mut slots = Vec::with_capacity(chunk.len());
        buf.reserve(
            chunk
                .iter()
                .map(|tick| match tick {
                    PreparedTick::Encoded(Ok(pre)) => pre.len() + arrival.len(),
                    _ => 0,
                })
                .sum(),
        );
        for tick in chunk {
            match tick {
                // The disk budget binds sources as it binds the ingress (a frame adds 8 bytes):
                // the ticks that fit are appended, the rest are refused and retried.
                PreparedTick::Encoded(Ok(pre))
                    if broker.over_disk_budget(bytes + (pre.len() + arrival.len()) as u64 + 8) =>
                {
                    results.push(Some(Err(SinkError::new(DISK_BUDGET_USED_UP))));
                }
                PreparedTick::Encoded(Ok(pre)) => {
                    bytes += (pre.len() + arrival.len()) as u64 + 8;
                    records.push(pre.record(&arrival, &mut buf));
                    slots.push(results.len());
                    results.push(None);
                }
                PreparedTick::Encoded(Err(e)) => results.push(Some(Err(SinkError::new(e.clone())))),
                PreparedTick::Event(_) => {
                    results.push(Some(Err(SinkError::new("a tick prepared for a URL"))))
                }
            }
        }
        chunks.push((slots, records));
    }
    // `join_all` polls the appends in order, so they are queued in order.
    let appends = chunks
        .iter_mut()
        .map(|(_, records)| broker.append(std::mem::take(records)));
    let appended =
        tokio::time::timeout(SINK_TIMEOUT, futures_util::future::join_all(appends)).await;
    for (i, (slots, _)) in chunks.iter().enumerate() {
        let outcome = match &appended {
            Ok(all) => match &all[i] {
                Ok(_) => Ok(()),
                Err(AppendError::Full) => Err("the broker's append queue is full".to_owned()),
                Err(e) => Err(e.to_string()),
            },
            Err(_) => Err(format!("no answer within {SINK_TIMEOUT:?}")),
        };
        for &slot in slots {
            results[slot] = Some(outcome.clone().map_err(SinkError::new));
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(SinkError::new("not appended"))))
        .collect()
}

/// Opens the tick store under the data directory.
pub fn tick_store(data_dir: &Path) -> anyhow::Result<ember_sources::ping::TickStore> {
    let dir = data_dir.join("ping");
    ember_sources::ping::TickStore::open(dir.clone())
        .with_context(|| format!("opening the PingSource tick store in {}", dir.display()))
}

/// The PingSources [`start`] started.
pub struct Started {
    /// The scheduler task; it ends at shutdown.
    pub task: JoinHandle<()>,
    /// Each source's counters, by `namespace/name`, for `/metrics`.
    pub metrics: Vec<(String, Arc<PingMetrics>)>,
}

/// Starts every PingSource on one scheduler task (see [`ember_sources::ping::run_many`]):
/// sources sending to the same destination share its batches. `None` when there are none.
pub fn start(
    pings: &[Located<PingSource>],
    brokers: &[Arc<Broker>],
    client: &HttpClient,
    data_dir: &Path,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<Started>> {
    if pings.is_empty() {
        return Ok(None);
    }
    let store = tick_store(data_dir)?;
    let mut sinks: Vec<Sink> = Vec::new();
    let mut sink_ids: HashMap<String, usize> = HashMap::new();
    let mut sources = Vec::with_capacity(pings.len());
    let mut metrics = Vec::with_capacity(pings.len());
    for p in pings {
        let p = &p.resource;
        let what = format!("PingSource {}/{}", p.metadata.namespace, p.metadata.name);
        let valid = config(p)
            .and_then(|c| c.validate().map_err(|e| e.to_string()))
            .map_err(anyhow::Error::msg)
            .with_context(|| what.clone())?;
        let sink = Sink::resolve(&p.spec.sink, &p.metadata.namespace, brokers, client)
            .with_context(|| format!("{what}: spec.sink"))?;
        let key = match &sink {
            Sink::Broker(b) => format!("broker {}", b.name()),
            Sink::Http { uri, .. } => format!("url {uri}"),
        };
        let id = *sink_ids.entry(key).or_insert_with(|| {
            sinks.push(sink);
            sinks.len() - 1
        });
        metrics.push((
            format!("{}/{}", p.metadata.namespace, p.metadata.name),
            valid.metrics().clone(),
        ));
        sources.push((valid, id));
    }
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = ember_sources::ping::run_many(
            sources,
            &sinks,
            store,
            ember_sources::ping::SystemClock,
            shutdown,
        )
        .await
        {
            tracing::error!(error = %e, "PingSources stopped");
        }
    });
    Ok(Some(Started { task, metrics }))
}
