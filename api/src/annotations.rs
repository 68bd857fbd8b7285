//! Annotation names Ember reads, their defaults, and the parsers for their values.
//!
//! Broker annotations choose the broker class and tune the embedded log; Trigger annotations
//! choose ordering and concurrency; Service template annotations drive the autoscaler (see
//! [`crate::serving::AutoscalingSettings`]). Typed views live next to each kind:
//! [`crate::broker::BrokerSettings`], [`crate::trigger::TriggerSettings`].

use std::collections::BTreeMap;

use crate::field::{Errors, FieldPath};

/// Broker class: `Ember` (the embedded log, default; `MTChannelBasedBroker` is accepted as
/// `Ember`) or `Kafka` (a Kafka topic per broker).
pub const BROKER_CLASS: &str = "eventing.knative.dev/broker.class";
/// Broker durability: `fsync` (default; acknowledge after fdatasync) or `none` (benchmarks).
pub const DURABILITY: &str = "ember.dev/durability";
/// Broker log segment size in bytes (default 64 MiB).
pub const SEGMENT_BYTES: &str = "ember.dev/segment-bytes";
/// Broker log retention: how long consumed segments are kept (default 24h).
pub const RETENTION: &str = "ember.dev/retention";
/// Largest event a broker accepts, in bytes (default 1 MiB).
pub const MAX_EVENT_BYTES: &str = "ember.dev/max-event-bytes";
/// Broker disk budget: the most bytes its log may hold on disk; when full, ingress answers 507
/// with `Retry-After` until triggers have moved on and old segments are deleted (default: no
/// budget).
pub const DISK_BUDGET: &str = "ember.dev/disk-budget";
/// Trigger delivery order: `ordered` or `unordered` (default).
pub const DELIVERY_ORDER: &str = "kafka.eventing.knative.dev/delivery.order";
/// Trigger concurrency: events in flight to the subscriber at once (≥ 1, default 100).
pub const MAX_IN_FLIGHT: &str = "ember.dev/max-in-flight";
/// Trigger: requests in flight to its subscriber (host and port) across every Trigger that
/// delivers there (≥ 1; the smallest value given wins; default: no shared limit).
pub const SUBSCRIBER_MAX_IN_FLIGHT: &str = "ember.dev/subscriber-max-in-flight";
/// Prefix of the Knative autoscaling annotations on a Service's `spec.template.metadata`.
pub const AUTOSCALING_PREFIX: &str = "autoscaling.knative.dev/";

/// Reads an annotation, recording an error when `parse` refuses it.
pub(crate) fn read<T>(
    annotations: &BTreeMap<String, String>,
    key: &str,
    meta_path: &FieldPath,
    errs: &mut Errors,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> T {
    match annotations.get(key) {
        None => default,
        Some(v) => match parse(v.trim()) {
            Ok(t) => t,
            Err(why) => {
                errs.push(&annotation_path(meta_path, key), why);
                default
            }
        },
    }
}

/// The path of an annotation, e.g. `metadata.annotations[ember.dev/durability]`.
pub(crate) fn annotation_path(meta_path: &FieldPath, key: &str) -> FieldPath {
    meta_path.key("annotations").key(key)
}

/// Parses a byte size: a whole number, optionally with a binary suffix `Ki`, `Mi` or `Gi`
/// (`67108864`, `64Mi`).
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let (digits, mult) = if let Some(d) = v.strip_suffix("Ki") {
        (d, 1u64 << 10)
    } else if let Some(d) = v.strip_suffix("Mi") {
        (d, 1 << 20)
    } else if let Some(d) = v.strip_suffix("Gi") {
        (d, 1 << 30)
    } else {
        (v, 1)
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("{v:?} is not a byte count (a whole number, optionally with Ki, Mi or Gi)")
    })?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{v:?} is too large"))
}

/// Parses a whole number within `[min, max]`.
pub(crate) fn parse_int_in(v: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = v
        .parse()
        .map_err(|_| format!("{v:?} is not a whole number"))?;
    if n < min {
        return Err(format!("must be at least {min}, got {n}"));
    }
    if n > max {
        return Err(format!("must be at most {max}, got {n}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("64Mi"), Ok(64 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert!(parse_bytes("64MB").is_err());
        assert!(parse_bytes("-1").is_err());
    }
}
