//! A RabbitMQ message as a CloudEvent: through the AMQP binding when it is one (binary or
//! structured mode), else as Knative's RabbitmqSource makes one — type
//! `dev.knative.rabbitmq.event`, source `/apis/v1/namespaces/<ns>/rabbitmqsources/<name>`, id the
//! message id (else a new UUID), time the AMQP timestamp, the content type as
//! `datacontenttype`, the body as data. `ceOverrides` extensions are set on every event.

use ember_api::sources::RabbitmqSource;
use ember_event::CloudEvent;
use ember_event::amqp_binding::{self, AmqpMessage, AmqpValue};
use lapin::message::Delivery;
use lapin::types::AMQPValue;

/// The type of an event made from a message that is not a CloudEvent.
pub const EVENT_TYPE: &str = "dev.knative.rabbitmq.event";

/// How one source's messages become events.
#[derive(Debug, Clone)]
pub struct Mapping {
    source: String,
    extensions: Vec<(String, String)>,
}

impl Mapping {
    /// The mapping of source `r`.
    pub fn of(r: &RabbitmqSource) -> Self {
        Mapping {
            source: format!(
                "/apis/v1/namespaces/{}/rabbitmqsources/{}",
                r.metadata.namespace, r.metadata.name
            ),
            extensions: ember_api::sources::CeOverrides::pairs(r.spec.ce_overrides.as_ref()),
        }
    }

    /// The event of `delivery`; `Err` when it claims to be a CloudEvent and is not a valid one.
    pub fn event_of(&self, delivery: &Delivery) -> Result<CloudEvent, String> {
        let props = &delivery.properties;
        let message = AmqpMessage {
            content_type: props.content_type().as_ref().map(|c| c.to_string()),
            properties: props
                .headers()
                .as_ref()
                .map(|h| {
                    h.inner()
                        .iter()
                        .filter_map(|(k, v)| Some((k.to_string(), value(v)?)))
                        .collect()
                })
                .unwrap_or_default(),
            body: bytes::Bytes::copy_from_slice(&delivery.data),
        };
        let content_type = message.content_type.clone();
        let mut event = match amqp_binding::decode(message) {
            Ok(Some(event)) => event,
            Ok(None) => self.plain(delivery, content_type),
            Err(e) => return Err(format!("not a valid CloudEvent: {e}")),
        };
        for (k, v) in &self.extensions {
            event
                .attributes
                .insert(k.clone(), ember_event::string_value(v.clone()));
        }
        Ok(event)
    }

    /// The event Knative's RabbitmqSource makes of a message that is not a CloudEvent.
    fn plain(&self, delivery: &Delivery, content_type: Option<String>) -> CloudEvent {
        let props = &delivery.properties;
        let mut event = CloudEvent {
            id: props
                .message_id()
                .as_ref()
                .map(|m| m.to_string())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            source: self.source.clone(),
            spec_version: "1.0".into(),
            r#type: EVENT_TYPE.into(),
            attributes: ember_event::attribute_map(),
            ..Default::default()
        };
        if let Some(ts) = props.timestamp()
            && let Some(t) = chrono::DateTime::from_timestamp(*ts as i64, 0)
        {
            event.attributes.insert(
                "time".into(),
                ember_event::AttributeValue {
                    attr: Some(ember_event::Attr::CeTimestamp(prost_types::Timestamp {
                        seconds: t.timestamp(),
                        nanos: 0,
                    })),
                },
            );
        }
        if let Some(ct) = content_type {
            event
                .attributes
                .insert("datacontenttype".into(), ember_event::string_value(ct));
        }
        if !delivery.data.is_empty() {
            event.data = Some(ember_event::Data::BinaryData(
                bytes::Bytes::copy_from_slice(&delivery.data),
            ));
        }
        event
    }
}

/// An AMQP header value as the binding reads it (tables and arrays are not attributes).
fn value(v: &AMQPValue) -> Option<AmqpValue> {
    Some(match v {
        AMQPValue::Boolean(b) => AmqpValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => AmqpValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => AmqpValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => AmqpValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => AmqpValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => AmqpValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => AmqpValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => AmqpValue::Int(*i),
        AMQPValue::Float(f) => AmqpValue::Float(f64::from(*f)),
        AMQPValue::Double(f) => AmqpValue::Float(*f),
        AMQPValue::ShortString(s) => AmqpValue::Str(s.to_string()),
        AMQPValue::LongString(s) => AmqpValue::Bytes(s.as_bytes().to_vec()),
        AMQPValue::Timestamp(t) => AmqpValue::Timestamp(*t),
        AMQPValue::ByteArray(b) => AmqpValue::Bytes(b.as_slice().to_vec()),
        _ => return None,
    })
}
