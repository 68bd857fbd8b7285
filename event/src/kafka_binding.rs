//! The CloudEvents Kafka protocol binding (`../shared/spec/cloudevents/kafka-protocol-binding.md`),
//! over a client-independent record model ([`KafkaRecord`]): the caller hands over the record's
//! key, value, headers and timestamp.
//!
//! - **Structured mode**: a `content-type` header of `application/cloudevents+json` (parameters
//!   aside) makes the value the whole event in the JSON format.
//! - **Binary mode**: headers named `ce_<attribute>` carry the attributes (UTF-8 values), the
//!   `content-type` header is `datacontenttype`, the value is the data.
//! - **Key mapping** (the spec's opt-in "Key Mapper", section 3.1): encoding puts the event's
//!   `partitionkey` in the record key; decoding a binary or structured record keeps the event's
//!   own attributes — a `partitionkey` the event lacks is *not* invented from the key, since the
//!   spec leaves that to the sender.
//! - Anything else is not a CloudEvent: [`decode`] answers `Ok(None)` and the caller makes an
//!   event of its own (as Knative's KafkaSource does).

use bytes::Bytes;

use crate::{CloudEvent, CloudEventExt, Data, EventError, SpecVersion};

/// One Kafka record, as the binding reads and writes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KafkaRecord {
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// The headers, in order (a header may have no value).
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl KafkaRecord {
    /// The first header named `name` (case-insensitively), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

fn malformed(reason: String) -> EventError {
    EventError::Malformed {
        format: "Kafka",
        reason,
    }
}

/// Decodes a record: `Ok(Some(event))` in binary or structured mode, `Ok(None)` when it is not a
/// CloudEvent, `Err` when it claims to be one and is not valid.
pub fn decode(record: &KafkaRecord) -> Result<Option<CloudEvent>, EventError> {
    if record
        .header("content-type")
        .is_some_and(crate::http_binding::is_structured_json)
    {
        let value = record.value.clone().unwrap_or_default();
        return crate::json_format::decode_event(&value).map(Some);
    }
    let Some(spec_version) = record
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ce_specversion"))
    else {
        return Ok(None);
    };
    let text = |name: &str, v: &Option<Bytes>| -> Result<String, EventError> {
        let v = v.as_deref().unwrap_or_default();
        String::from_utf8(v.to_vec()).map_err(|_| malformed(format!("header {name} is not UTF-8")))
    };
    let spec_version = text("ce_specversion", &spec_version.1)?;
    let version = SpecVersion::parse(&spec_version)?;
    let mut event = CloudEvent {
        spec_version,
        attributes: crate::attribute_map(),
        ..Default::default()
    };
    let mut seen = std::collections::BTreeSet::new();
    for (header, value) in &record.headers {
        let lower = header.to_ascii_lowercase();
        let Some(name) = lower.strip_prefix("ce_") else {
            continue;
        };
        if !seen.insert(name.to_owned()) {
            return Err(malformed(format!("header {header} appears more than once")));
        }
        if !crate::is_valid_attribute_name(name) {
            return Err(EventError::AttributeName(name.to_owned()));
        }
        let value = text(header, value)?;
        match name {
            "specversion" => {}
            "id" => event.id = value,
            "source" => event.source = value,
            "type" => event.r#type = value,
            "datacontenttype" => {
                return Err(malformed(
                    "ce_datacontenttype must not be sent in binary mode: content-type carries it"
                        .into(),
                ));
            }
            _ => {
                let typed = crate::typed_from_string(version, name, value)?;
                event.attributes.insert(name.to_owned(), typed);
            }
        }
    }
    if let Some(ct) = record.header("content-type") {
        event
            .attributes
            .insert("datacontenttype".into(), crate::string_value(ct));
    }
    if let Some(v) = record.value.clone().filter(|v| !v.is_empty()) {
        event.data = Some(Data::BinaryData(v));
    }
    crate::decode_content_encoding(&mut event, version)?;
    crate::validate(&event)?;
    Ok(Some(event))
}

/// The record key an event maps to: its `partitionkey`, if it has one.
fn key_of(event: &CloudEvent) -> Option<Bytes> {
    event
        .attribute("partitionkey")
        .map(|k| Bytes::from(k.into_owned()))
}

/// Writes an event as a binary-mode record: `ce_` headers, `content-type`, the data as value,
/// the `partitionkey` as key.
pub fn encode_binary(event: &CloudEvent) -> KafkaRecord {
    let mut headers = vec![
        (
            "ce_specversion".to_owned(),
            Some(Bytes::from(event.spec_version.clone())),
        ),
        ("ce_id".to_owned(), Some(Bytes::from(event.id.clone()))),
        (
            "ce_source".to_owned(),
            Some(Bytes::from(event.source.clone())),
        ),
        (
            "ce_type".to_owned(),
            Some(Bytes::from(event.r#type.clone())),
        ),
    ];
    for name in event.attributes.keys() {
        if name == "datacontenttype" {
            continue;
        }
        if let Some(v) = event.attribute(name) {
            headers.push((format!("ce_{name}"), Some(Bytes::from(v.into_owned()))));
        }
    }
    if let Some(ct) = event.data_content_type() {
        headers.push(("content-type".to_owned(), Some(Bytes::from(ct.to_owned()))));
    }
    KafkaRecord {
        key: key_of(event),
        value: event.data_bytes(),
        headers,
    }
}

/// Writes an event as a structured-mode record: the JSON format as value, the `partitionkey`
/// as key.
pub fn encode_structured(event: &CloudEvent) -> KafkaRecord {
    KafkaRecord {
        key: key_of(event),
        value: Some(Bytes::from(crate::json_format::encode_event(event))),
        headers: vec![(
            "content-type".to_owned(),
            Some(Bytes::from_static(
                b"application/cloudevents+json; charset=UTF-8",
            )),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &str, v: &str) -> (String, Option<Bytes>) {
        (k.to_owned(), Some(Bytes::from(v.to_owned())))
    }

    #[test]
    fn binary_mode_as_the_spec_example_and_back() {
        // The spec's binary-mode example (section 3.2.4).
        let record = KafkaRecord {
            key: Some(Bytes::from_static(b"mykey")),
            value: Some(Bytes::from_static(b"...application data...")),
            headers: vec![
                h("ce_specversion", "1.0"),
                h("ce_type", "com.example.someevent"),
                h("ce_source", "/mycontext/subcontext"),
                h("ce_id", "1234-1234-1234"),
                h("ce_time", "2018-04-05T03:56:24Z"),
                h("content-type", "application/avro"),
                h("ce_partitionkey", "mykey"),
                h("x-other", "not an attribute"),
            ],
        };
        let e = decode(&record).unwrap().unwrap();
        assert_eq!(e.id, "1234-1234-1234");
        assert_eq!(e.r#type, "com.example.someevent");
        assert_eq!(e.data_content_type(), Some("application/avro"));
        assert_eq!(e.attribute("time").unwrap(), "2018-04-05T03:56:24Z");
        assert_eq!(e.attribute("partitionkey").unwrap(), "mykey");
        assert!(e.attribute("x-other").is_none());
        let back = encode_binary(&e);
        assert_eq!(back.key.as_deref(), Some(&b"mykey"[..]));
        assert_eq!(decode(&back).unwrap().unwrap(), e);
        let structured = encode_structured(&e);
        assert_eq!(decode(&structured).unwrap().unwrap().id, e.id);
        assert_eq!(structured.key, back.key);
    }

    #[test]
    fn plain_records_are_not_events_and_bad_ones_are_errors() {
        let plain = KafkaRecord {
            key: None,
            value: Some(Bytes::from_static(b"{\"a\":1}")),
            headers: vec![h("content-type", "application/json")],
        };
        assert!(decode(&plain).unwrap().is_none());
        let no_id = KafkaRecord {
            key: None,
            value: None,
            headers: vec![
                h("ce_specversion", "1.0"),
                h("ce_source", "/s"),
                h("ce_type", "t"),
            ],
        };
        assert!(decode(&no_id).is_err());
        let bad_json = KafkaRecord {
            key: None,
            value: Some(Bytes::from_static(b"{nope")),
            headers: vec![h("content-type", "application/cloudevents+json")],
        };
        assert!(decode(&bad_json).is_err());
    }
}
