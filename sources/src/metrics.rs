//! Sources' counters as the exporter sees them: every kind describes its own, so `/metrics` needs
//! no code per kind. Each source keeps plain atomics (no lock, no allocation on its hot path);
//! [`SourceMetrics::counters`] reads them at scrape time, and the exporter adds the
//! `source="namespace/name"` label and groups the counters of all sources by family.

/// A family of counters: its Prometheus name (without `_total`) and help text.
#[derive(Debug, PartialEq, Eq)]
pub struct CounterFamily {
    /// E.g. `ember_webhook_requests`.
    pub name: &'static str,
    /// One sentence for `# HELP`.
    pub help: &'static str,
}

/// One counter's value, in its family, with the labels that tell it apart within one source.
#[derive(Debug)]
pub struct Counter {
    /// The family.
    pub family: &'static CounterFamily,
    /// Labels besides `source` (e.g. `outcome="accepted"`).
    pub labels: Vec<(&'static str, &'static str)>,
    /// The count so far.
    pub value: u64,
}

impl Counter {
    /// The counter `value` reads now.
    pub fn read(
        family: &'static CounterFamily,
        labels: Vec<(&'static str, &'static str)>,
        value: &std::sync::atomic::AtomicU64,
    ) -> Self {
        Counter {
            family,
            labels,
            value: value.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// A source's counters, read at scrape time.
pub trait SourceMetrics: Send + Sync + std::fmt::Debug {
    /// Every counter of the source, each family's in a fixed order.
    fn counters(&self) -> Vec<Counter>;
}
