//! librdkafka's own log lines and errors, written to Ember's log: each kind at most once per
//! 10 s, since a cluster that is down makes librdkafka repeat itself every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;

use crate::LogThrottle;

/// The log of one Kafka client (a KafkaSource's consumer, a KafkaSink's producer).
pub(crate) struct ClientLog {
    /// Who the lines are about: the source's or sink's identity.
    who: String,
    log: LogThrottle<String>,
    errors: Arc<AtomicU64>,
}

impl ClientLog {
    /// A log for `who`, counting client errors in `errors`.
    pub(crate) fn new(who: String, errors: Arc<AtomicU64>) -> Self {
        Self {
            who,
            log: LogThrottle::new(Duration::from_secs(10)),
            errors,
        }
    }

    /// Who the lines are about.
    pub(crate) fn who(&self) -> &str {
        &self.who
    }

    /// A librdkafka log line (debug and info are left out).
    pub(crate) fn line(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if matches!(level, RDKafkaLogLevel::Debug | RDKafkaLogLevel::Info) {
            return;
        }
        let Some(suppressed) = self.log.allow(fac.to_owned(), tokio::time::Instant::now()) else {
            return;
        };
        match level {
            RDKafkaLogLevel::Notice => {
                tracing::info!(resource = %self.who, facility = fac, suppressed, "librdkafka: {message}")
            }
            _ => {
                tracing::warn!(resource = %self.who, facility = fac, suppressed, "librdkafka: {message}")
            }
        }
    }

    /// An error the client reports (brokers down, a failed fetch; it retries on its own).
    pub(crate) fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self
            .log
            .allow(format!("error:{error}"), tokio::time::Instant::now())
        {
            tracing::warn!(resource = %self.who, suppressed, "Kafka: {error}: {reason}");
        }
    }
}
