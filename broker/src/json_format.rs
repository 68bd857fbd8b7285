//! The CloudEvents JSON event format (`application/cloudevents+json`) and its batch form
//! (`application/cloudevents-batch+json`), to and from the protobuf representation.
//!
//! Typed attributes follow the JSON format: booleans and integers stay typed, `time` becomes a
//! timestamp, `dataschema` a URI. `data` holding JSON (a JSON or absent `datacontenttype`) is
//! kept as the JSON text; `data` holding a string under another content type is kept as that
//! string; `data_base64` becomes binary data. An attribute whose value is `null` is absent, as
//! the format says.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::event::{
    self, Attr, AttributeValue, CloudEvent, CloudEventExt, Data, EventError, SpecVersion,
};

fn malformed(format: &'static str, reason: impl Into<String>) -> EventError {
    EventError::Malformed {
        format,
        reason: reason.into(),
    }
}

/// Parses one structured JSON event.
pub fn decode_event(body: &[u8]) -> Result<CloudEvent, EventError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => from_object(map),
        Ok(_) => Err(malformed(
            "JSON",
            "a structured event must be a JSON object",
        )),
        Err(e) => Err(malformed("JSON", e.to_string())),
    }
}

/// Parses a JSON batch: an array of structured events (possibly empty).
pub fn decode_batch(body: &[u8]) -> Result<Vec<CloudEvent>, EventError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => from_object(map).map_err(|e| in_batch(i, e)),
                _ => Err(malformed(
                    "JSON batch",
                    format!("element {i} is not a JSON object"),
                )),
            })
            .collect(),
        Ok(_) => Err(malformed("JSON batch", "a batch must be a JSON array")),
        Err(e) => Err(malformed("JSON batch", e.to_string())),
    }
}

fn in_batch(index: usize, e: EventError) -> EventError {
    malformed("JSON batch", format!("event {index}: {e}"))
}

/// Whether a content type carries JSON (`application/json`, `text/json`, `*+json`).
pub fn is_json_content_type(ct: &str) -> bool {
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

fn required(map: &mut Map<String, Value>, name: &'static str) -> Result<String, EventError> {
    match map.remove(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | Some(Value::Null) | None => Err(EventError::Missing(name)),
        Some(_) => Err(event::EventError::AttributeValue {
            name: name.to_owned(),
            reason: "must be a string".to_owned(),
        }),
    }
}

fn from_object(mut map: Map<String, Value>) -> Result<CloudEvent, EventError> {
    let spec_version = match map.remove("specversion") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err(EventError::MissingSpecVersion),
        Some(other) => return Err(EventError::SpecVersion(other.to_string())),
    };
    let version = SpecVersion::parse(&spec_version)?;
    let id = required(&mut map, "id")?;
    let source = required(&mut map, "source")?;
    let ty = required(&mut map, "type")?;
    let data = map.remove("data");
    let data_base64 = map.remove("data_base64");

    let mut attributes = event::attribute_map();
    for (name, value) in map {
        if !event::is_valid_attribute_name(&name) {
            return Err(EventError::AttributeName(name));
        }
        let attr = match value {
            Value::Null => continue,
            Value::Bool(b) => Attr::CeBoolean(b),
            Value::Number(n) => {
                let i = n
                    .as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| EventError::AttributeValue {
                        name: name.clone(),
                        reason: format!("{n} is not a 32-bit integer"),
                    })?;
                Attr::CeInteger(i)
            }
            Value::String(s) => match event::typed_from_string(version, &name, s)?.attr {
                Some(a) => a,
                None => continue,
            },
            Value::Array(_) | Value::Object(_) => {
                return Err(EventError::AttributeValue {
                    name,
                    reason: "attribute values must be strings, numbers or booleans".to_owned(),
                });
            }
        };
        attributes.insert(name, AttributeValue { attr: Some(attr) });
    }

    let mut event = CloudEvent {
        id,
        source,
        spec_version,
        r#type: ty,
        attributes,
        data: None,
    };
    event.data = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(malformed(
                "JSON",
                "data and data_base64 are mutually exclusive",
            ));
        }
        (None, Some(Value::String(b64))) => Some(Data::BinaryData(decode_base64(&b64)?)),
        (None, Some(Value::Null)) | (None, None) | (Some(Value::Null), None) => None,
        (None, Some(_)) => return Err(malformed("JSON", "data_base64 must be a string")),
        (Some(value), None) => Some(json_data(&event, version, value)?),
    };
    event::validate(&event)?;
    Ok(event)
}

fn decode_base64(s: &str) -> Result<Bytes, EventError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map(Bytes::from)
        .map_err(|e| malformed("JSON", format!("data_base64 is not valid base64: {e}")))
}

/// The `data` member under the event's content type.
fn json_data(event: &CloudEvent, version: SpecVersion, value: Value) -> Result<Data, EventError> {
    // CloudEvents 0.3: `datacontentencoding: base64` means `data` is a base64 string.
    if version == SpecVersion::V03
        && let Some(Attr::CeString(enc)) = event
            .attributes
            .get("datacontentencoding")
            .and_then(|v| v.attr.as_ref())
        && enc.eq_ignore_ascii_case("base64")
    {
        return match value {
            Value::String(s) => Ok(Data::BinaryData(decode_base64(&s)?)),
            _ => Err(malformed("JSON", "data must be a base64 string")),
        };
    }
    let json = event.data_content_type().is_none_or(is_json_content_type);
    match value {
        Value::String(s) if !json => Ok(Data::TextData(s)),
        other => Ok(Data::TextData(other.to_string())),
    }
}

/// Encodes one event in the JSON format.
pub fn encode_event(event: &CloudEvent) -> Vec<u8> {
    let mut map = Map::with_capacity(event.attributes.len() + 5);
    map.insert(
        "specversion".into(),
        Value::String(event.spec_version.clone()),
    );
    map.insert("id".into(), Value::String(event.id.clone()));
    map.insert("source".into(), Value::String(event.source.clone()));
    map.insert("type".into(), Value::String(event.r#type.clone()));
    for (name, value) in &event.attributes {
        let v = match &value.attr {
            None => continue,
            Some(Attr::CeBoolean(b)) => Value::Bool(*b),
            Some(Attr::CeInteger(i)) => Value::from(*i),
            Some(other) => Value::String(event::canonical_string(other).into_owned()),
        };
        map.insert(name.clone(), v);
    }
    match &event.data {
        None => {}
        Some(Data::TextData(s)) => {
            let json = event.data_content_type().is_none_or(is_json_content_type);
            let value = match json.then(|| serde_json::from_str::<Value>(s)) {
                Some(Ok(v)) => v,
                _ => Value::String(s.clone()),
            };
            map.insert("data".into(), value);
        }
        // Binary-mode JSON or text data is written as `data`, anything else as `data_base64`.
        Some(Data::BinaryData(b)) => match data_as_value(event, b) {
            Some(value) => {
                map.insert("data".into(), value);
            }
            None => {
                map.insert("data_base64".into(), Value::String(base64_of(b)));
            }
        },
        Some(Data::ProtoData(any)) => {
            map.insert("data_base64".into(), Value::String(base64_of(&any.value)));
        }
    }
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Binary data that the JSON format can carry as `data`: JSON under a JSON content type, or
/// UTF-8 under a `text/*` content type.
fn data_as_value(event: &CloudEvent, bytes: &[u8]) -> Option<Value> {
    let ct = event.data_content_type()?;
    if is_json_content_type(ct) {
        serde_json::from_slice(bytes).ok()
    } else if ct.trim_start().to_ascii_lowercase().starts_with("text/") {
        std::str::from_utf8(bytes)
            .ok()
            .map(|s| Value::String(s.to_owned()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_triggers::EventAttributes;

    #[test]
    fn parses_typed_extensions_and_json_data() {
        let e = decode_event(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","flag":true,"n":7,
                "time":"2018-04-26T14:48:09Z","data":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(e.attributes["flag"].attr, Some(Attr::CeBoolean(true)));
        assert_eq!(e.attributes["n"].attr, Some(Attr::CeInteger(7)));
        assert_eq!(e.attribute("time").as_deref(), Some("2018-04-26T14:48:09Z"));
        assert_eq!(e.data, Some(Data::TextData(r#"{"a":1}"#.into())));
    }

    #[test]
    fn data_and_data_base64_are_exclusive() {
        let err = decode_event(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"x","data_base64":"eA=="}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("mutually exclusive"));
    }

    #[test]
    fn base64_data_round_trips() {
        let e = decode_event(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAEC"}"#,
        )
        .unwrap();
        assert_eq!(
            e.data,
            Some(Data::BinaryData(Bytes::from_static(&[0, 1, 2])))
        );
        let again = decode_event(&encode_event(&e)).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn batch_reports_the_bad_element() {
        let err = decode_batch(br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","source":"/s","type":"t"}]"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("event 1: missing required attribute: id"),
            "{err}"
        );
    }
}
