//! `KafkaSource` (sources.knative.dev/v1beta1 and v1): consumes Kafka topics and sends each
//! record as a CloudEvent.
//!
//! `net` (TLS and SASL) is [`KafkaNet`](super::KafkaNet).

use serde::{Deserialize, Serialize};

use crate::delivery::DeliverySpec;
use crate::delivery::Destination;
use crate::field::{Errors, FieldError, FieldPath};
use crate::meta::{ObjectMeta, null_as_default};
use crate::sources::CeOverrides;

/// A KafkaSource: reads records from Kafka topics and sends them to its sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSource {
    /// `sources.knative.dev/v1beta1` (or `v1`).
    pub api_version: String,
    /// `KafkaSource`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// Cluster, topics, consumer group and sink.
    pub spec: KafkaSourceSpec,
    /// Status as written (e.g. exported from a cluster); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// Where to start reading when the consumer group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    /// From the oldest record still in the topic.
    Earliest,
    /// Only records produced from now on (Knative's default).
    Latest,
}

/// How records are dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// One record at a time per partition.
    Ordered,
    /// Many records in flight at once (Knative's default).
    Unordered,
}

/// What a KafkaSource consumes and where it sends events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSourceSpec {
    /// Kafka bootstrap servers, each `host:port`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub bootstrap_servers: Vec<String>,
    /// The topics to consume.
    #[serde(default, deserialize_with = "null_as_default")]
    pub topics: Vec<String>,
    /// The consumer group; derived from the source's namespace and name when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// Where to start without a committed offset: `earliest` or `latest` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_offset: Option<InitialOffset>,
    /// `ordered` (per partition) or `unordered` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<Ordering>,
    /// The number of consumers (Knative's replica hint); at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<i64>,
    /// TLS and SASL settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Box<super::KafkaNet>>,
    /// Delivery options for sending to the sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    /// Extension attributes added to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CeOverrides>,
    /// Where events are sent.
    pub sink: Destination,
}

impl KafkaSourceSpec {
    /// The initial offset, defaulted (`latest`).
    pub fn initial_offset(&self) -> InitialOffset {
        self.initial_offset.unwrap_or(InitialOffset::Latest)
    }

    /// The ordering, defaulted (`unordered`).
    pub fn ordering(&self) -> Ordering {
        self.ordering.unwrap_or(Ordering::Unordered)
    }
}

/// Whether `name` is a legal Kafka topic name (1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
pub fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks a `bootstrapServers` list at `path`: at least one `host:port` (Knative accepts
/// comma-separated lists inside one element too).
pub(crate) fn check_bootstrap_servers(servers: &[String], path: &FieldPath, errs: &mut Errors) {
    if servers.is_empty() {
        errs.push(path, "required: at least one host:port");
    }
    for (i, b) in servers.iter().enumerate() {
        for part in b.split(',') {
            if let Err(why) = check_host_port(part.trim()) {
                errs.push(&path.index(i), why);
            }
        }
    }
}

fn check_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} must be host:port"));
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains("://") {
        return Err(format!("{s:?} must be host:port, without a scheme"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{s:?} has an invalid port")),
    }
}

impl KafkaSource {
    /// Checks the source on its own (not against other resources).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        let spec = FieldPath::root().key("spec");
        let s = &self.spec;
        check_bootstrap_servers(
            &s.bootstrap_servers,
            &spec.key("bootstrapServers"),
            &mut errs,
        );
        if s.topics.is_empty() {
            errs.push(&spec.key("topics"), "required: at least one topic");
        }
        for (i, t) in s.topics.iter().enumerate() {
            if !is_topic_name(t) {
                errs.push(
                    &spec.key("topics").index(i),
                    format!(
                        "{t:?} is not a Kafka topic name (1 to 249 letters, digits, '.', '_', '-')"
                    ),
                );
            }
        }
        if let Some(g) = &s.consumer_group
            && g.trim().is_empty()
        {
            errs.push(&spec.key("consumerGroup"), "must not be empty when given");
        }
        if let Some(c) = s.consumers
            && (c < 1 || c > i64::from(i32::MAX))
        {
            errs.push(
                &spec.key("consumers"),
                format!("must be at least 1, got {c}"),
            );
        }
        if let Some(d) = &s.delivery {
            d.validate_into(&spec.key("delivery"), &mut errs);
        }
        if let Some(net) = &s.net {
            net.validate_into(&spec.key("net"), &mut errs);
        }
        if let Some(o) = &s.ce_overrides {
            o.validate_into(&spec.key("ceOverrides"), &mut errs);
        }
        s.sink.validate_into(&spec.key("sink"), &mut errs);
        errs.into_vec()
    }
}
