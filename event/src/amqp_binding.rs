//! The CloudEvents AMQP protocol binding (`../shared/spec/cloudevents/amqp-protocol-binding.md`),
//! over the message model RabbitMQ's AMQP 0-9-1 shares with AMQP 1.0: a content type, a table of
//! application properties (0-9-1's message headers) and a body. Independent of any AMQP client:
//! the caller hands the message's parts over as [`AmqpMessage`].
//!
//! - **Binary mode**: the attributes are application properties named with the prefix
//!   `cloudEvents:` — or `cloudEvents_`, the spec's form for AMQP 0-9-1 brokers whose header
//!   names cannot carry a colon in some clients — the content type is `datacontenttype`, the body
//!   is the data. Property values of any AMQP type are taken in their canonical string form;
//!   an AMQP timestamp for `time` is read as seconds since the epoch.
//! - **Structured mode**: a content type of `application/cloudevents+json` (parameters aside)
//!   makes the body the whole event in the JSON format.
//! - Anything else is not a CloudEvent: [`decode`] answers `Ok(None)` and the caller makes an
//!   event of its own from the message (as Knative's RabbitmqSource does).

use bytes::Bytes;

use crate::{CloudEvent, Data, EventError, SpecVersion};

/// An application property's value, as the binding reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum AmqpValue {
    /// A string (AMQP `string`, `symbol`; 0-9-1 `longstr`, `shortstr`).
    Str(String),
    /// A boolean.
    Bool(bool),
    /// Any integer type.
    Int(i64),
    /// Any floating-point type.
    Float(f64),
    /// An AMQP timestamp, in seconds since the Unix epoch (0-9-1's resolution).
    Timestamp(u64),
    /// Bytes (AMQP `binary`; 0-9-1 `bytearray`), taken as UTF-8 where they are.
    Bytes(Vec<u8>),
}

impl AmqpValue {
    /// The value's canonical string form for attribute `name`.
    fn into_string(self, name: &str) -> Result<String, EventError> {
        Ok(match self {
            AmqpValue::Str(s) => s,
            AmqpValue::Bool(b) => b.to_string(),
            AmqpValue::Int(i) => i.to_string(),
            AmqpValue::Float(f) => f.to_string(),
            AmqpValue::Timestamp(secs) => chrono::DateTime::from_timestamp(secs as i64, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .ok_or_else(|| EventError::Malformed {
                    format: "AMQP",
                    reason: format!("{name}: timestamp {secs} is out of range"),
                })?,
            AmqpValue::Bytes(b) => String::from_utf8(b).map_err(|_| EventError::Malformed {
                format: "AMQP",
                reason: format!("{name}: not valid UTF-8"),
            })?,
        })
    }
}

/// The parts of one AMQP message the binding reads.
#[derive(Debug, Clone, Default)]
pub struct AmqpMessage {
    /// The message's content type.
    pub content_type: Option<String>,
    /// Its application properties (0-9-1: headers), in order.
    pub properties: Vec<(String, AmqpValue)>,
    /// The body.
    pub body: Bytes,
}

/// The prefixes of an attribute's application property.
const PREFIXES: [&str; 2] = ["cloudEvents:", "cloudEvents_"];

/// The attribute an application property carries, if it is one.
fn attribute_name(property: &str) -> Option<&str> {
    PREFIXES.iter().find_map(|p| property.strip_prefix(p))
}

/// Decodes a message: `Ok(Some(event))` in binary or structured mode, `Ok(None)` when it is not
/// a CloudEvent at all, `Err` when it claims to be one and is not valid.
pub fn decode(message: AmqpMessage) -> Result<Option<CloudEvent>, EventError> {
    if message
        .content_type
        .as_deref()
        .is_some_and(crate::http_binding::is_structured_json)
    {
        return crate::json_format::decode_event(&message.body).map(Some);
    }
    let Some(spec_version) = message
        .properties
        .iter()
        .find(|(k, _)| attribute_name(k) == Some("specversion"))
        .map(|(_, v)| v.clone())
    else {
        return Ok(None);
    };
    let spec_version = spec_version.into_string("specversion")?;
    let version = SpecVersion::parse(&spec_version)?;
    let mut event = CloudEvent {
        spec_version,
        attributes: crate::attribute_map(),
        ..Default::default()
    };
    let mut seen = std::collections::BTreeSet::new();
    for (property, value) in message.properties {
        let Some(name) = attribute_name(&property) else {
            continue;
        };
        if !seen.insert(name.to_owned()) {
            return Err(EventError::Malformed {
                format: "AMQP",
                reason: format!("attribute {name} is given twice (both prefixes?)"),
            });
        }
        if !crate::is_valid_attribute_name(name) {
            return Err(EventError::AttributeName(name.to_owned()));
        }
        let value = value.into_string(name)?;
        match name {
            "specversion" => {}
            "id" => event.id = value,
            "source" => event.source = value,
            "type" => event.r#type = value,
            "datacontenttype" => {
                // The content type carries it in binary mode; a property is taken only when
                // the message has none.
                if message.content_type.is_none() {
                    event
                        .attributes
                        .insert(name.to_owned(), crate::string_value(value));
                }
            }
            _ => {
                let typed = crate::typed_from_string(version, name, value)?;
                event.attributes.insert(name.to_owned(), typed);
            }
        }
    }
    if let Some(ct) = message.content_type {
        event
            .attributes
            .insert("datacontenttype".to_owned(), crate::string_value(ct));
    }
    if !message.body.is_empty() {
        event.data = Some(Data::BinaryData(message.body));
    }
    crate::decode_content_encoding(&mut event, version)?;
    crate::validate(&event)?;
    Ok(Some(event))
}

/// Writes an event as a binary-mode message: `cloudEvents:` properties (string values), the
/// content type, the body.
pub fn encode_binary(event: &CloudEvent) -> AmqpMessage {
    use crate::CloudEventExt;
    let mut properties = vec![
        (
            "cloudEvents:specversion".to_owned(),
            AmqpValue::Str(event.spec_version.clone()),
        ),
        (
            "cloudEvents:id".to_owned(),
            AmqpValue::Str(event.id.clone()),
        ),
        (
            "cloudEvents:source".to_owned(),
            AmqpValue::Str(event.source.clone()),
        ),
        (
            "cloudEvents:type".to_owned(),
            AmqpValue::Str(event.r#type.clone()),
        ),
    ];
    for name in event.attributes.keys() {
        if name == "datacontenttype" {
            continue;
        }
        if let Some(v) = event.attribute(name) {
            properties.push((
                format!("cloudEvents:{name}"),
                AmqpValue::Str(v.into_owned()),
            ));
        }
    }
    AmqpMessage {
        content_type: event.data_content_type().map(str::to_owned),
        properties,
        body: event.data_bytes().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloudEventExt;

    fn s(v: &str) -> AmqpValue {
        AmqpValue::Str(v.to_owned())
    }

    #[test]
    fn binary_mode_reads_prefixed_properties_and_the_content_type() {
        let message = AmqpMessage {
            content_type: Some("application/json".into()),
            properties: vec![
                ("cloudEvents:specversion".into(), s("1.0")),
                ("cloudEvents:id".into(), s("a-1")),
                ("cloudEvents_source".into(), s("/orders")),
                ("cloudEvents:type".into(), s("order.created")),
                (
                    "cloudEvents:time".into(),
                    AmqpValue::Timestamp(1_700_000_000),
                ),
                ("cloudEvents:retries".into(), AmqpValue::Int(3)),
                ("x-other".into(), s("not an attribute")),
            ],
            body: Bytes::from_static(b"{\"n\":1}"),
        };
        let e = decode(message).unwrap().unwrap();
        assert_eq!(e.id, "a-1");
        assert_eq!(e.source, "/orders");
        assert_eq!(e.r#type, "order.created");
        assert_eq!(e.data_content_type(), Some("application/json"));
        assert_eq!(e.attribute("time").unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(e.attribute("retries").unwrap(), "3");
        assert!(e.attribute("x-other").is_none());
        assert_eq!(e.data_bytes().unwrap(), Bytes::from_static(b"{\"n\":1}"));
        // And back: the same attributes.
        let again = decode(encode_binary(&e)).unwrap().unwrap();
        assert_eq!(again.attribute("time"), e.attribute("time"));
        assert_eq!(again.id, e.id);
        assert_eq!(again.data_bytes(), e.data_bytes());
    }

    #[test]
    fn structured_mode_by_content_type_plain_messages_and_bad_events() {
        let structured = AmqpMessage {
            content_type: Some("application/cloudevents+json; charset=utf-8".into()),
            properties: vec![],
            body: Bytes::from_static(
                br#"{"specversion":"1.0","id":"s-1","source":"/s","type":"t","data":{"k":2}}"#,
            ),
        };
        let e = decode(structured).unwrap().unwrap();
        assert_eq!(e.id, "s-1");
        let plain = AmqpMessage {
            content_type: Some("text/plain".into()),
            properties: vec![("x-trace".into(), s("1"))],
            body: Bytes::from_static(b"hello"),
        };
        assert!(decode(plain).unwrap().is_none(), "not a CloudEvent");
        let missing_id = AmqpMessage {
            content_type: None,
            properties: vec![
                ("cloudEvents:specversion".into(), s("1.0")),
                ("cloudEvents:source".into(), s("/s")),
                ("cloudEvents:type".into(), s("t")),
            ],
            body: Bytes::new(),
        };
        assert!(
            decode(missing_id).is_err(),
            "claims to be one, is not valid"
        );
        let twice = AmqpMessage {
            content_type: None,
            properties: vec![
                ("cloudEvents:specversion".into(), s("1.0")),
                ("cloudEvents:id".into(), s("1")),
                ("cloudEvents_id".into(), s("2")),
                ("cloudEvents:source".into(), s("/s")),
                ("cloudEvents:type".into(), s("t")),
            ],
            body: Bytes::new(),
        };
        assert!(decode(twice).is_err());
    }
}
