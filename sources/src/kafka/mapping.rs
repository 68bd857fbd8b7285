//! A Kafka record as a CloudEvent: through the Kafka binding when it is one (binary or
//! structured mode), else as Knative's KafkaSource makes one — type `dev.knative.kafka.event`,
//! source `/apis/v1/namespaces/<ns>/kafkasources/<name>#<topic>`, subject
//! `partition:<p>#<offset>`, id `partition:<p>/offset:<offset>`, time the record's timestamp,
//! the key as the `key` extension (and as `partitionkey`), the other headers as extensions
//! (their names lowercased, other characters than a–z and 0–9 dropped; headers that are not
//! UTF-8, or whose names leave nothing, are left out). `ceOverrides` extensions are set on
//! every event.

use bytes::Bytes;
use ember_api::sources::KafkaSource;
use ember_event::CloudEvent;
use ember_event::kafka_binding::{self, KafkaRecord};

/// The type of an event made from a record that is not a CloudEvent.
pub const EVENT_TYPE: &str = "dev.knative.kafka.event";

/// One record, as the source took it.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the epoch.
    pub timestamp: Option<i64>,
    /// Key, value and headers.
    pub record: KafkaRecord,
}

/// How one source's records become events.
#[derive(Debug, Clone)]
pub struct Mapping {
    namespace: String,
    name: String,
    extensions: Vec<(String, String)>,
}

impl Mapping {
    /// The mapping of source `s`.
    pub fn of(s: &KafkaSource) -> Self {
        Mapping {
            namespace: s.metadata.namespace.clone(),
            name: s.metadata.name.clone(),
            extensions: ember_api::sources::CeOverrides::pairs(s.spec.ce_overrides.as_ref()),
        }
    }

    /// The event of `c`; `Err` when it claims to be a CloudEvent and is not a valid one.
    pub fn event_of(&self, c: &Consumed) -> Result<CloudEvent, String> {
        let mut event = match kafka_binding::decode(&c.record) {
            Ok(Some(e)) => e,
            Ok(None) => self.plain(c),
            Err(e) => return Err(format!("not a valid CloudEvent: {e}")),
        };
        for (k, v) in &self.extensions {
            event
                .attributes
                .insert(k.clone(), ember_event::string_value(v.clone()));
        }
        Ok(event)
    }

    fn plain(&self, c: &Consumed) -> CloudEvent {
        let mut event = CloudEvent {
            id: format!("partition:{}/offset:{}", c.partition, c.offset),
            source: format!(
                "/apis/v1/namespaces/{}/kafkasources/{}#{}",
                self.namespace, self.name, c.topic
            ),
            spec_version: "1.0".into(),
            r#type: EVENT_TYPE.into(),
            attributes: ember_event::attribute_map(),
            ..Default::default()
        };
        let mut set = |k: &str, v: String| {
            event
                .attributes
                .insert(k.to_owned(), ember_event::string_value(v));
        };
        set("subject", format!("partition:{}#{}", c.partition, c.offset));
        for (name, value) in &c.record.headers {
            if name.eq_ignore_ascii_case("content-type") {
                continue;
            }
            let clean: String = name
                .to_ascii_lowercase()
                .chars()
                .filter(|ch| ch.is_ascii_alphanumeric())
                .collect();
            let Some(text) = value.as_deref().and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            if clean.is_empty() || is_reserved(&clean) {
                continue;
            }
            set(&clean, text.to_owned());
        }
        if let Some(key) = c
            .record
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
        {
            set("key", key.to_owned());
            set("partitionkey", key.to_owned());
        }
        if let Some(ct) = c.record.header("content-type") {
            set("datacontenttype", ct.to_owned());
        }
        if let Some(ms) = c.timestamp
            && let Some(t) = chrono::DateTime::from_timestamp_millis(ms)
        {
            event.attributes.insert(
                "time".into(),
                ember_event::AttributeValue {
                    attr: Some(ember_event::Attr::CeTimestamp(prost_types::Timestamp {
                        seconds: t.timestamp(),
                        nanos: t.timestamp_subsec_nanos() as i32,
                    })),
                },
            );
        }
        if let Some(v) = c.record.value.clone().filter(|v| !v.is_empty()) {
            event.data = Some(ember_event::Data::BinaryData(v));
        }
        event
    }
}

/// Attributes a header may not set on a made event.
fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "specversion" | "id" | "source" | "type" | "subject" | "time" | "datacontenttype" | "data"
    )
}

/// A record from its parts.
pub fn record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: Vec<(String, Option<Bytes>)>,
) -> KafkaRecord {
    KafkaRecord {
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_event::CloudEventExt;

    fn source() -> KafkaSource {
        let yaml = "apiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata: {name: ks, namespace: shop}\nspec:\n  bootstrapServers: [127.0.0.1:9092]\n  topics: [orders]\n  ceOverrides: {extensions: {team: a}}\n  sink: {uri: http://127.0.0.1:1/}\n";
        let config = ember_api::config::load_str("k.yaml", yaml).unwrap();
        config.kafka_sources[0].resource.clone()
    }

    #[test]
    fn a_plain_record_becomes_knatives_kafka_event() {
        let m = Mapping::of(&source());
        let c = Consumed {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            timestamp: Some(1_700_000_000_123),
            record: record(
                Some(b"cust-7"),
                Some(b"{\"n\":1}"),
                vec![
                    (
                        "content-type".into(),
                        Some(Bytes::from_static(b"application/json")),
                    ),
                    ("X-Trace_Id".into(), Some(Bytes::from_static(b"abc"))),
                    ("bin".into(), Some(Bytes::from_static(&[0xff, 0xfe]))),
                ],
            ),
        };
        let e = m.event_of(&c).unwrap();
        assert_eq!(e.r#type, EVENT_TYPE);
        assert_eq!(e.source, "/apis/v1/namespaces/shop/kafkasources/ks#orders");
        assert_eq!(e.id, "partition:2/offset:41");
        assert_eq!(e.attribute("subject").unwrap(), "partition:2#41");
        assert_eq!(e.attribute("key").unwrap(), "cust-7");
        assert_eq!(e.attribute("partitionkey").unwrap(), "cust-7");
        assert_eq!(e.attribute("xtraceid").unwrap(), "abc");
        assert!(e.attribute("bin").is_none(), "not UTF-8: left out");
        assert_eq!(e.attribute("team").unwrap(), "a");
        assert_eq!(e.attribute("time").unwrap(), "2023-11-14T22:13:20.123Z");
        assert_eq!(e.data_content_type(), Some("application/json"));
    }
}
