//! `GET /metrics`: Prometheus text exposition of Ember's counters, read at scrape time from the
//! brokers' and sources' own atomics (nothing on the hot path records into a metrics library).
//! Sources describe their own counter families ([`ember_sources::SourceMetrics`]); the sources
//! running at the time of a scrape are the ones shown.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ember_broker::delivery::BrokerDirectory;
use ember_broker::dispatch::DispatchStats;
use ember_sources::{CounterFamily, SourceManager};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Collects broker and trigger metrics on each scrape, of the brokers open then.
#[derive(Debug)]
struct Brokers(BrokerDirectory);

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
        let open = self.0.all();
        let brokers = || open.iter();
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

/// Collects the counters of every running source on each scrape, labelled
/// `source="namespace/name"`: each kind describes its own families, so nothing here is
/// specific to one.
#[derive(Debug)]
struct Sources(Arc<SourceManager>);

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources: Vec<(String, Vec<ember_sources::Counter>)> = self
            .0
            .metrics()
            .into_iter()
            .map(|(id, m)| (format!("{}/{}", id.namespace, id.name), m.counters()))
            .collect();
        // Families in the order first met; each family's series source by source.
        let mut families: Vec<&'static CounterFamily> = Vec::new();
        for (_, counters) in &sources {
            for c in counters {
                if !families.iter().any(|f| std::ptr::eq(*f, c.family)) {
                    families.push(c.family);
                }
            }
        }
        for f in families {
            family(
                &mut encoder,
                f.name,
                f.help,
                MetricType::Counter,
                sources.iter().flat_map(|(source, counters)| {
                    counters
                        .iter()
                        .filter(move |c| std::ptr::eq(c.family, f))
                        .map(move |c| {
                            let mut labels = vec![("source", source.as_str())];
                            labels.extend(c.labels.iter().copied());
                            (labels, c.value)
                        })
                }),
            )?;
        }
        Ok(())
    }
}

/// Adds the counters of `sources`' running sources to `registry`.
pub fn register_sources(registry: &mut Registry, sources: Arc<SourceManager>) {
    registry.register_collector(Box::new(Sources(sources)));
}

/// Collects each running revision's numbers on each scrape.
struct Revisions(Arc<ember_serving::Serving>);

impl std::fmt::Debug for Revisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Revisions")
    }
}

impl Collector for Revisions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let revisions = self.0.all_revisions();
        let rows: Vec<(String, String, Arc<ember_serving::activator::Revision>, _)> = revisions
            .into_iter()
            .map(|(ns, svc, r)| {
                let snap = r.snapshot();
                (ns, svc, r, snap)
            })
            .collect();
        type Read = fn(&ember_serving::activator::RevisionSnapshot) -> u64;
        let gauges: [(&str, &str, Read); 5] = [
            (
                "ember_revision_instances_wanted",
                "Instances the autoscaler wants for the revision (its decision within min-scale, max-scale and activation-scale).",
                |s| u64::from(s.wanted),
            ),
            (
                "ember_revision_instances_ready",
                "Instances of the revision that are ready.",
                |s| u64::from(s.ready),
            ),
            (
                "ember_revision_instances_starting",
                "Instances of the revision being started.",
                |s| u64::from(s.starting),
            ),
            (
                "ember_revision_requests_in_flight",
                "Requests at the revision's instances.",
                |s| s.in_flight as u64,
            ),
            (
                "ember_revision_requests_waiting",
                "Requests waiting in the activator for room at an instance.",
                |s| s.waiting as u64,
            ),
        ];
        for (name, help, read) in gauges {
            family(
                &mut encoder,
                name,
                help,
                MetricType::Gauge,
                rows.iter().map(|(ns, svc, r, snap)| {
                    (
                        vec![
                            ("namespace", ns.as_str()),
                            ("service", svc.as_str()),
                            ("revision", r.name()),
                        ],
                        read(snap),
                    )
                }),
            )?;
        }
        family(
            &mut encoder,
            "ember_revision_events_waiting",
            "Events waiting in the broker for the revision (its share of its Service's), not yet sent: the queue-depth part of the autoscaler's load.",
            MetricType::Gauge,
            rows.iter().map(|(ns, svc, r, snap)| {
                (
                    vec![
                        ("namespace", ns.as_str()),
                        ("service", svc.as_str()),
                        ("revision", r.name()),
                    ],
                    snap.observed.backlog,
                )
            }),
        )?;
        type ReadF = fn(&ember_serving::activator::RevisionSnapshot) -> f64;
        let decider: [(&str, &str, ReadF); 4] = [
            (
                "ember_revision_autoscaler_load",
                "The load the autoscaler last saw: requests in flight and waiting plus events waiting (metric concurrency), or their arrival rate (rps).",
                |s| s.observed.load,
            ),
            (
                "ember_revision_autoscaler_stable_average",
                "The load averaged over the stable window at the last decision.",
                |s| s.decision.map_or(0.0, |d| d.stable),
            ),
            (
                "ember_revision_autoscaler_panic_average",
                "The load averaged over the panic window at the last decision.",
                |s| s.decision.map_or(0.0, |d| d.panic),
            ),
            (
                "ember_revision_autoscaler_panic_mode",
                "1 while the autoscaler is in panic mode (it never scales down then).",
                |s| f64::from(u8::from(s.decision.is_some_and(|d| d.panicking))),
            ),
        ];
        for (name, help, read) in decider {
            let mut f = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (ns, svc, r, snap) in &rows {
                let labels: &Labels = &[
                    ("namespace", ns.as_str()),
                    ("service", svc.as_str()),
                    ("revision", r.name()),
                ];
                ConstGauge::new(read(snap)).encode(f.encode_family(&labels)?)?;
            }
        }
        family(
            &mut encoder,
            "ember_revision_failed_starts",
            "Instance starts of the revision that failed.",
            MetricType::Counter,
            rows.iter().map(|(ns, svc, r, _)| {
                (
                    vec![
                        ("namespace", ns.as_str()),
                        ("service", svc.as_str()),
                        ("revision", r.name()),
                    ],
                    r.stats.failed_starts.load(Ordering::Relaxed),
                )
            }),
        )?;
        let mut hist = encoder.encode_descriptor(
            "ember_revision_cold_start_seconds",
            "Cold starts: from the first request waiting with no instance to an instance ready.",
            None,
            MetricType::Histogram,
        )?;
        for (ns, svc, r, _) in &rows {
            let labels: &Labels = &[
                ("namespace", ns.as_str()),
                ("service", svc.as_str()),
                ("revision", r.name()),
            ];
            let buckets: Vec<(f64, u64)> = ember_serving::activator::COLD_START_BUCKETS
                .iter()
                .zip(&r.stats.cold_start_buckets)
                .map(|(le, n)| (*le, n.load(Ordering::Relaxed)))
                .collect();
            let count = r.stats.cold_starts.load(Ordering::Relaxed);
            let sum = r.stats.cold_start_micros.load(Ordering::Relaxed) as f64 / 1e6;
            hist.encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
        }
        Ok(())
    }
}

/// Adds each running revision's numbers to `/metrics`.
pub fn register_serving(registry: &mut Registry, serving: Arc<ember_serving::Serving>) {
    registry.register_collector(Box::new(Revisions(serving)));
}

/// The registry serving `/metrics` for these brokers.
pub fn registry(brokers: BrokerDirectory) -> Registry {
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
