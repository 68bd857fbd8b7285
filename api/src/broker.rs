//! `Broker` (eventing.knative.dev/v1): an event mesh that receives events and fans them out to
//! its Triggers.
//!
//! Ember reads `spec.delivery` (the default delivery for the broker's triggers) and the
//! annotations in [`crate::annotations`], exposed typed through [`Broker::settings`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::annotations::{
    self, BROKER_CLASS, DISK_BUDGET, DURABILITY, MAX_EVENT_BYTES, RETENTION, SEGMENT_BYTES,
};
use crate::delivery::DeliverySpec;
use crate::duration::parse_flexible;
use crate::field::{Errors, FieldError, FieldPath};
use crate::meta::{KReference, ObjectMeta};

/// The API version of Broker.
pub const API_VERSION: &str = "eventing.knative.dev/v1";

/// Default log segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default retention of consumed segments: 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Default largest accepted event: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: u64 = 1 << 20;
/// Smallest accepted segment size (4 KiB).
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;

/// A Broker: receives events at `POST /{namespace}/{name}` and delivers them to its Triggers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Broker {
    /// `eventing.knative.dev/v1`.
    pub api_version: String,
    /// `Broker`.
    pub kind: String,
    /// Name, namespace, labels and annotations (see [`crate::annotations`]).
    pub metadata: ObjectMeta,
    /// The broker's configuration.
    #[serde(default)]
    pub spec: BrokerSpec,
    /// Status as written (e.g. exported from a cluster); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// What a Broker is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerSpec {
    /// A reference to an object holding class-specific configuration (e.g. a ConfigMap for
    /// the Kafka class); not used by the `Ember` class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<KReference>,
    /// Default delivery options for this broker's Triggers; a Trigger's own `delivery`
    /// overrides them field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// Ember's own broker class: the embedded durable log.
pub const EMBER_CLASS: &str = "Ember";

/// Knative's default broker class; Ember runs it on its embedded log, as its own.
pub const KNATIVE_DEFAULT_CLASS: &str = "MTChannelBasedBroker";

/// When the broker acknowledges an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// After the fdatasync covering the event (default).
    Fsync,
    /// After the write, without waiting for the disk (for benchmarks).
    None,
}

/// A Broker's annotations, parsed and defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// From `eventing.knative.dev/broker.class` (default `Ember`, or the class set by a
    /// `config-br-defaults` ConfigMap): any non-empty name, as in Knative.
    pub class: String,
    /// From `ember.dev/durability` (default `fsync`).
    pub durability: Durability,
    /// From `ember.dev/segment-bytes` (default 64 MiB).
    pub segment_bytes: u64,
    /// From `ember.dev/retention` (default 24h).
    pub retention: Duration,
    /// From `ember.dev/max-event-bytes` (default 1 MiB).
    pub max_event_bytes: u64,
    /// From `ember.dev/disk-budget` (default none).
    pub disk_budget: Option<u64>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            class: EMBER_CLASS.to_owned(),
            durability: Durability::Fsync,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention: DEFAULT_RETENTION,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            disk_budget: None,
        }
    }
}

impl BrokerSettings {
    /// The class when Ember has no backend of it and runs the broker on its embedded log
    /// instead (a `Kafka`, `RabbitMQBroker`, `NatsJetStreamBroker`... broker brought from a
    /// cluster works on a laptop); `None` for Ember's own class and Knative's default
    /// (`MTChannelBasedBroker`), which the embedded log implements.
    pub fn stand_in_for(&self) -> Option<&str> {
        (self.class != EMBER_CLASS && self.class != KNATIVE_DEFAULT_CLASS)
            .then_some(self.class.as_str())
    }
}

/// Parses a broker class annotation value: Knative only requires it to be non-empty.
pub fn parse_broker_class(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        return Err(
            "must not be empty (Ember's own class is Ember; Knative's default, \
                    MTChannelBasedBroker, also runs on Ember's embedded log)"
                .into(),
        );
    }
    Ok(v.to_owned())
}

fn parse_durability(v: &str) -> Result<Durability, String> {
    match v {
        "fsync" => Ok(Durability::Fsync),
        "none" => Ok(Durability::None),
        other => Err(format!(
            "unknown durability {other:?}; expected fsync (default) or none"
        )),
    }
}

impl Broker {
    /// A Broker with this name in the default namespace and an empty spec.
    pub fn new(name: impl Into<String>) -> Self {
        Broker {
            api_version: API_VERSION.to_owned(),
            kind: "Broker".to_owned(),
            metadata: ObjectMeta::named(name),
            spec: BrokerSpec::default(),
            status: None,
        }
    }

    /// The broker's annotations, parsed and defaulted. Always `Ok` for a validated broker.
    pub fn settings(&self) -> Result<BrokerSettings, Vec<FieldError>> {
        let mut errs = Errors::default();
        let s = self.settings_into(&mut errs);
        if errs.0.is_empty() {
            Ok(s)
        } else {
            Err(errs.into_vec())
        }
    }

    fn settings_into(&self, errs: &mut Errors) -> BrokerSettings {
        let a = &self.metadata.annotations;
        let m = FieldPath::root().key("metadata");
        let d = BrokerSettings::default();
        let class = annotations::read(
            a,
            BROKER_CLASS,
            &m,
            errs,
            d.class.clone(),
            parse_broker_class,
        );
        let durability = annotations::read(a, DURABILITY, &m, errs, d.durability, parse_durability);
        let max_event_bytes =
            annotations::read(a, MAX_EVENT_BYTES, &m, errs, d.max_event_bytes, |v| {
                match annotations::parse_bytes(v)? {
                    0 => Err("must be at least 1 byte".into()),
                    n => Ok(n),
                }
            });
        let segment_bytes = annotations::read(a, SEGMENT_BYTES, &m, errs, d.segment_bytes, |v| {
            let n = annotations::parse_bytes(v)?;
            if n < MIN_SEGMENT_BYTES {
                return Err(format!(
                    "must be at least {MIN_SEGMENT_BYTES} bytes, got {n}"
                ));
            }
            Ok(n)
        });
        if segment_bytes <= max_event_bytes {
            let key = if a.contains_key(SEGMENT_BYTES) {
                SEGMENT_BYTES
            } else {
                MAX_EVENT_BYTES
            };
            errs.push(
                &annotations::annotation_path(&m, key),
                format!(
                    "{SEGMENT_BYTES} ({segment_bytes}) must be larger than {MAX_EVENT_BYTES} \
                     ({max_event_bytes}) so that every event fits in a segment"
                ),
            );
        }
        let retention = annotations::read(a, RETENTION, &m, errs, d.retention, |v| {
            parse_flexible(v).map_err(|e| e.to_string())
        });
        let disk_budget = annotations::read(a, DISK_BUDGET, &m, errs, d.disk_budget, |v| {
            let n = annotations::parse_bytes(v)?;
            if n < 2 * segment_bytes {
                return Err(format!(
                    "must be at least two segments ({} bytes), got {n}",
                    2 * segment_bytes
                ));
            }
            Ok(Some(n))
        });
        BrokerSettings {
            class,
            durability,
            segment_bytes,
            retention,
            max_event_bytes,
            disk_budget,
        }
    }

    /// Checks the broker on its own (not against other resources).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        self.settings_into(&mut errs);
        let spec = FieldPath::root().key("spec");
        if let Some(c) = &self.spec.config {
            c.validate_into(&spec.key("config"), &mut errs);
        }
        if let Some(d) = &self.spec.delivery {
            d.validate_into(&spec.key("delivery"), &mut errs);
        }
        errs.into_vec()
    }
}
