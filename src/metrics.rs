//! `GET /metrics`: Prometheus text exposition of Ember's counters, read at scrape time from the
//! brokers' and sources' own atomics (nothing on the hot path records into a metrics library).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ember_broker::broker::Broker;
use ember_broker::dispatch::DispatchStats;
use ember_sources::ping::PingMetrics;
use ember_sources::webhook::{Outcome, WebhookMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Collects broker and trigger metrics on each scrape.
struct Brokers(Vec<Arc<Broker>>);

impl std::fmt::Debug for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|b| b.name()))
            .finish()
    }
}

type Labels<'a> = [(&'static str, &'a str)];

/// A trigger counter: name, help, and how to read it.
type Counter = (&'static str, &'static str, fn(&DispatchStats) -> u64);

fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: impl Iterator<Item = (Vec<(&'static str, &'a str)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        let labels: &Labels = &labels;
        let metric = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(metric)?,
            _ => ConstGauge::new(value as i64).encode(metric)?,
        }
    }
    Ok(())
}

impl Collector for Brokers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let brokers = || self.0.iter();
        family(
            &mut encoder,
            "ember_broker_log_end_offset",
            "Offset one past the last durable event of the broker's log.",
            MetricType::Gauge,
            brokers().map(|b| (vec![("broker", b.name())], b.end_offset())),
        )?;
        family(
            &mut encoder,
            "ember_broker_log_disk_bytes",
            "Bytes of log segments on disk.",
            MetricType::Gauge,
            brokers().map(|b| (vec![("broker", b.name())], b.disk_used())),
        )?;
        // One snapshot per scrape: (broker, trigger's numbers, the broker's end offset).
        let snapshot: Vec<(&str, ember_broker::broker::TriggerMetrics, u64)> = brokers()
            .flat_map(|b| {
                let end = b.end_offset();
                b.trigger_states()
                    .into_iter()
                    .map(move |t| (b.name(), t, end))
            })
            .collect();
        let triggers = || snapshot.iter();
        family(
            &mut encoder,
            "ember_trigger_backlog_events",
            "Offsets between the trigger's position and the end of the log (events not yet finished, matching or not).",
            MetricType::Gauge,
            triggers().map(|(b, t, end)| {
                (
                    vec![("broker", *b), ("trigger", t.name.as_str())],
                    end.saturating_sub(t.position),
                )
            }),
        )?;
        family(
            &mut encoder,
            "ember_trigger_pending_events",
            "Events the trigger matched and has not yet finished (delivered, dead-lettered or dropped): what waits for its subscriber.",
            MetricType::Gauge,
            triggers().map(|(b, t, _)| {
                (
                    vec![("broker", *b), ("trigger", t.name.as_str())],
                    t.pending,
                )
            }),
        )?;
        let counters: [Counter; 7] = [
            (
                "ember_trigger_delivered",
                "Events the subscriber acknowledged.",
                |s| s.delivered.load(Ordering::Relaxed),
            ),
            (
                "ember_trigger_dead_lettered",
                "Events the dead-letter sink accepted after delivery failed.",
                |s| s.dead_lettered.load(Ordering::Relaxed),
            ),
            (
                "ember_trigger_dropped",
                "Events given up on: delivery (and dead-lettering, if configured) failed.",
                |s| s.dropped.load(Ordering::Relaxed),
            ),
            (
                "ember_trigger_retries",
                "Delivery attempts that failed and were retried.",
                |s| s.retries.load(Ordering::Relaxed),
            ),
            (
                "ember_trigger_replies",
                "Reply events appended to the broker.",
                |s| s.replies.load(Ordering::Relaxed),
            ),
            (
                "ember_trigger_replies_expired",
                "Reply events dropped because their TTL ran out.",
                |s| s.replies_expired.load(Ordering::Relaxed),
            ),
            (
                "ember_trigger_replies_ignored",
                "200 responses whose body is not a CloudEvent: delivered, with no reply.",
                |s| s.replies_ignored.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            family(
                &mut encoder,
                name,
                help,
                MetricType::Counter,
                triggers().map(|(b, t, _)| {
                    (
                        vec![("broker", *b), ("trigger", t.name.as_str())],
                        read(&t.stats),
                    )
                }),
            )?;
        }
        Ok(())
    }
}

/// Collects the listener's connection counters.
#[derive(Debug)]
struct Connections;

impl Collector for Connections {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &crate::connection::STATS;
        for (name, help, value) in [
            (
                "ember_http_connections_opened",
                "Connections accepted by the listener.",
                &stats.opened,
            ),
            (
                "ember_http_header_timeouts",
                "Connections closed because request headers did not arrive within --header-read-timeout.",
                &stats.header_timeouts,
            ),
            (
                "ember_http_body_timeouts",
                "Requests answered 408 because the body did not arrive within --body-read-timeout.",
                &stats.body_timeouts,
            ),
            (
                "ember_http_idle_closed",
                "Kept-alive connections closed after --idle-timeout without a request.",
                &stats.idle_closed,
            ),
        ] {
            family(
                &mut encoder,
                name,
                help,
                MetricType::Counter,
                std::iter::once((vec![], value.load(Ordering::Relaxed))),
            )?;
        }
        Ok(())
    }
}

/// Collects PingSource counters on each scrape, labelled `source="namespace/name"`.
#[derive(Debug)]
struct PingSources(Vec<(String, Arc<PingMetrics>)>);

/// A PingSource counter: name, help, and how to read it.
type PingCounter = (&'static str, &'static str, fn(&PingMetrics) -> u64);

impl Collector for PingSources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters: [PingCounter; 4] = [
            (
                "ember_pingsource_ticks_fired",
                "Ticks the sink accepted and the tick store recorded.",
                PingMetrics::fired,
            ),
            (
                "ember_pingsource_ticks_late",
                "Fired ticks the sink accepted more than 1 s after their scheduled instant \
                 (missed ticks caught up after downtime among them).",
                PingMetrics::late,
            ),
            (
                "ember_pingsource_ticks_retried",
                "Sends of a tick the sink refused, each retried with backoff.",
                PingMetrics::retried,
            ),
            (
                "ember_pingsource_ticks_skipped",
                "Ticks that came due while Ember was not running and were not fired (the \
                 missed-tick policy).",
                PingMetrics::skipped,
            ),
        ];
        for (name, help, read) in counters {
            family(
                &mut encoder,
                name,
                help,
                MetricType::Counter,
                self.0
                    .iter()
                    .map(|(source, m)| (vec![("source", source.as_str())], read(m))),
            )?;
        }
        Ok(())
    }
}

/// Adds PingSources' counters to `registry`.
pub fn register_ping_sources(registry: &mut Registry, pings: Vec<(String, Arc<PingMetrics>)>) {
    if !pings.is_empty() {
        registry.register_collector(Box::new(PingSources(pings)));
    }
}

/// Collects WebhookSource counters on each scrape: `(namespace/name, counters)` per source.
struct Webhooks(Vec<(String, Arc<WebhookMetrics>)>);

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(id, _)| id))
            .finish()
    }
}

impl Collector for Webhooks {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        family(
            &mut encoder,
            "ember_webhook_requests",
            "Requests to a WebhookSource by outcome: accepted, deduplicated (every event a redelivery), \
             or refused as unauthorized, bad_request, too_large, rate_limited, unavailable, method_not_allowed.",
            MetricType::Counter,
            self.0.iter().flat_map(|(id, m)| {
                Outcome::ALL.into_iter().map(move |o| {
                    (
                        vec![("source", id.as_str()), ("outcome", o.label())],
                        m.requests(o),
                    )
                })
            }),
        )?;
        family(
            &mut encoder,
            "ember_webhook_duplicate_events",
            "Events a WebhookSource dropped because their id was seen within its dedupWindow.",
            MetricType::Counter,
            self.0
                .iter()
                .map(|(id, m)| (vec![("source", id.as_str())], m.duplicate_events())),
        )
    }
}

/// Adds the WebhookSources' counters, `(namespace/name, counters)` per source, to `registry`.
pub fn register_webhooks(registry: &mut Registry, webhooks: Vec<(String, Arc<WebhookMetrics>)>) {
    if !webhooks.is_empty() {
        registry.register_collector(Box::new(Webhooks(webhooks)));
    }
}

/// The registry serving `/metrics` for these brokers.
pub fn registry(brokers: Vec<Arc<Broker>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Brokers(brokers)));
    registry.register_collector(Box::new(Connections));
    registry
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
