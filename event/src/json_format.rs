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
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::{Attr, AttributeValue, CloudEvent, CloudEventExt, Data, EventError, SpecVersion};

fn malformed(format: &'static str, reason: impl Into<String>) -> EventError {
    EventError::Malformed {
        format,
        reason: reason.into(),
    }
}

/// An event object's members in document order. Unlike a map, it notices a member written
/// twice (refused: which one would win is up to the parser) and stops at a bound, so a hostile
/// object cannot make the decoder hold more than an event's worth of members.
struct Members(Vec<(String, Value)>);

/// Members an event object may have: every attribute Ember accepts, plus `data`/`data_base64`.
const MAX_MEMBERS: usize = crate::MAX_ATTRIBUTES + 2;

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor).and_then(|e| match e {
            Element::Object(m) => Ok(m),
            Element::NotObject => Err(de::Error::custom(
                "a structured event must be a JSON object",
            )),
        })
    }
}

/// A batch element: an event object, or something else (reported with its index).
enum Element {
    Object(Members),
    NotObject,
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor)
    }
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element, A::Error> {
        let mut members: Vec<(String, Value)> = Vec::with_capacity(8);
        while let Some(name) = map.next_key::<String>()? {
            if members.iter().any(|(n, _)| *n == name) {
                return Err(de::Error::custom(format!(
                    "member {name:?} appears more than once"
                )));
            }
            if members.len() == MAX_MEMBERS {
                return Err(de::Error::custom(format!(
                    "more than {MAX_MEMBERS} members: an event has at most {} attributes",
                    crate::MAX_ATTRIBUTES
                )));
            }
            let value = map.next_value::<Value>()?;
            members.push((name, value));
        }
        Ok(Element::Object(Members(members)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Element::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Element, E> {
        Ok(Element::NotObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Element, E> {
        Ok(Element::NotObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Element, E> {
        Ok(Element::NotObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Element, E> {
        Ok(Element::NotObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Element, E> {
        Ok(Element::NotObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Element, E> {
        Ok(Element::NotObject)
    }
}

/// Parses one structured JSON event.
pub fn decode_event(body: &[u8]) -> Result<CloudEvent, EventError> {
    match serde_json::from_slice::<Element>(body) {
        Ok(Element::Object(members)) => from_members(members),
        Ok(Element::NotObject) => Err(malformed(
            "JSON",
            "a structured event must be a JSON object",
        )),
        Err(e) => Err(malformed("JSON", e.to_string())),
    }
}

/// Parses a JSON batch: an array of structured events (possibly empty).
pub fn decode_batch(body: &[u8]) -> Result<Vec<CloudEvent>, EventError> {
    match serde_json::from_slice::<Batch>(body) {
        Ok(Batch(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Element::Object(members) => from_members(members).map_err(|e| in_batch(i, e)),
                Element::NotObject => Err(malformed(
                    "JSON batch",
                    format!("element {i} is not a JSON object"),
                )),
            })
            .collect(),
        Err(e) => Err(malformed("JSON batch", e.to_string())),
    }
}

/// A batch: an array of elements.
struct Batch(Vec<Element>);

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BatchVisitor;
        impl<'de> Visitor<'de> for BatchVisitor {
            type Value = Batch;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a batch must be a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Element>()? {
                    items.push(item);
                }
                Ok(Batch(items))
            }
        }
        d.deserialize_seq(BatchVisitor)
    }
}

fn in_batch(index: usize, e: EventError) -> EventError {
    malformed("JSON batch", format!("event {index}: {e}"))
}

/// The content type a `data` member has when the event names none.
pub const IMPLIED_CONTENT_TYPE: &str = "application/json";

/// Whether a content type declares JSON: its media type, parameters stripped, is `*/json` or
/// `*/*+json` (case-insensitive).
pub fn is_json_content_type(ct: &str) -> bool {
    let media = ct.split(';').next().unwrap_or("").trim();
    let Some((_, subtype)) = media.split_once('/') else {
        return false;
    };
    let ends_with = |suffix: &str| {
        subtype.len() >= suffix.len()
            && subtype[subtype.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    subtype.eq_ignore_ascii_case("json") || ends_with("+json")
}

fn take(members: &mut Vec<(String, Value)>, name: &str) -> Option<Value> {
    let at = members.iter().position(|(n, _)| n == name)?;
    Some(members.swap_remove(at).1)
}

fn required(members: &mut Vec<(String, Value)>, name: &'static str) -> Result<String, EventError> {
    match take(members, name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | Some(Value::Null) | None => Err(EventError::Missing(name)),
        Some(_) => Err(crate::EventError::AttributeValue {
            name: name.to_owned(),
            reason: "must be a string".to_owned(),
        }),
    }
}

fn from_members(Members(mut map): Members) -> Result<CloudEvent, EventError> {
    let spec_version = match take(&mut map, "specversion") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err(EventError::MissingSpecVersion),
        Some(other) => return Err(EventError::SpecVersion(other.to_string())),
    };
    let version = SpecVersion::parse(&spec_version)?;
    let id = required(&mut map, "id")?;
    let source = required(&mut map, "source")?;
    let ty = required(&mut map, "type")?;
    let data = take(&mut map, "data");
    let data_base64 = take(&mut map, "data_base64");

    let mut attributes = crate::attribute_map();
    for (name, value) in map {
        if !crate::is_valid_attribute_name(&name) {
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
            Value::String(s) => match crate::typed_from_string(version, &name, s)?.attr {
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
        // `"data": null` is an explicit null payload, unlike an absent `data` (JSON format
        // §3.1.1); a null `data_base64` carries nothing.
        (None, Some(Value::Null)) | (None, None) => None,
        (None, Some(_)) => return Err(malformed("JSON", "data_base64 must be a string")),
        (Some(value), None) => Some(json_data(&event, version, value)?),
    };
    if version == SpecVersion::V03 {
        // `json_data` has decoded base64 data: the attribute no longer describes it.
        let encoding = event.attributes.get("datacontentencoding");
        if matches!(encoding.and_then(|v| v.attr.as_ref()), Some(Attr::CeString(e)) if e.eq_ignore_ascii_case("base64"))
        {
            event.attributes.remove("datacontentencoding");
        }
    }
    // A `data` member with no `datacontenttype` is JSON, and says so explicitly when the event
    // leaves in another format or binding (JSON format §3.1.2, core spec `datacontenttype`).
    if matches!(event.data, Some(Data::TextData(_))) && event.data_content_type().is_none() {
        event.attributes.insert(
            "datacontenttype".to_owned(),
            crate::string_value(IMPLIED_CONTENT_TYPE),
        );
    }
    crate::validate(&event)?;
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

/// Encodes one event in the JSON format. JSON data is written as it is stored (its bytes, not
/// a re-serialization); binary data that is neither JSON nor text becomes `data_base64` in
/// 1.0 and, in 0.3 (which has no `data_base64`), base64 `data` with
/// `datacontentencoding: base64`.
pub fn encode_event(event: &CloudEvent) -> Vec<u8> {
    let data_len = event.data.as_ref().map_or(0, |d| match d {
        Data::BinaryData(b) => b.len() * 4 / 3 + 4,
        Data::TextData(s) => s.len() + 2,
        Data::ProtoData(any) => any.value.len() * 4 / 3 + 4,
    });
    let mut out = Vec::with_capacity(128 + 32 * event.attributes.len() + data_len);
    out.push(b'{');
    member_str(&mut out, "specversion", &event.spec_version);
    member_str(&mut out, "id", &event.id);
    member_str(&mut out, "source", &event.source);
    member_str(&mut out, "type", &event.r#type);
    let v03 = event.version() == Some(SpecVersion::V03);
    for (name, value) in &event.attributes {
        match &value.attr {
            None => continue,
            Some(Attr::CeBoolean(b)) => {
                member_raw(&mut out, name, if *b { b"true" } else { b"false" })
            }
            Some(Attr::CeInteger(i)) => member_raw(&mut out, name, i.to_string().as_bytes()),
            Some(other) => member_str(&mut out, name, &crate::canonical_string(other)),
        }
    }
    let ct = event.data_content_type();
    let json = ct.is_none_or(is_json_content_type);
    let binary = |out: &mut Vec<u8>, bytes: &[u8]| {
        if v03 {
            if !event.attributes.contains_key("datacontentencoding") {
                member_str(out, "datacontentencoding", "base64");
            }
            // 0.3 reads `data` with no `datacontenttype` as JSON even when base64-encoded:
            // bytes of no declared type are said to be what RFC 2046 calls them.
            if ct.is_none() {
                member_str(out, "datacontenttype", "application/octet-stream");
            }
            member_str(out, "data", &base64_of(bytes));
        } else {
            member_str(out, "data_base64", &base64_of(bytes));
        }
    };
    match &event.data {
        None => {}
        Some(Data::TextData(s)) if json && is_json(s.as_bytes()) => {
            member_raw(&mut out, "data", s.trim().as_bytes())
        }
        Some(Data::TextData(s)) => member_str(&mut out, "data", s),
        Some(Data::BinaryData(b)) if ct.is_some() && json && is_json(b) => {
            member_raw(&mut out, "data", b.trim_ascii())
        }
        Some(Data::BinaryData(b)) if ct.is_some_and(is_text_content_type) => {
            match std::str::from_utf8(b) {
                Ok(text) => member_str(&mut out, "data", text),
                Err(_) => binary(&mut out, b),
            }
        }
        Some(Data::BinaryData(b)) => binary(&mut out, b),
        Some(Data::ProtoData(any)) => binary(&mut out, &any.value),
    }
    out.push(b'}');
    out
}

/// Whether `bytes` are one JSON value (surrounding whitespace allowed).
fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(bytes).is_ok()
}

/// Whether a content type is `text/*`.
fn is_text_content_type(ct: &str) -> bool {
    let media = ct.trim_start().as_bytes();
    media.len() > 5 && media[..5].eq_ignore_ascii_case(b"text/")
}

fn separator(out: &mut Vec<u8>) {
    if out.len() > 1 {
        out.push(b',');
    }
}

fn member_str(out: &mut Vec<u8>, name: &str, value: &str) {
    separator(out);
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, name);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, value);
}

fn member_raw(out: &mut Vec<u8>, name: &str, json: &[u8]) {
    separator(out);
    let _ = serde_json::to_writer(&mut *out, name);
    out.push(b':');
    out.extend_from_slice(json);
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloudEventExt;

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
    fn v03_base64_data_is_decoded_once() {
        let e = decode_event(
            br#"{"specversion":"0.3","id":"1","source":"/s","type":"t","datacontentencoding":"base64","datacontenttype":"application/octet-stream","data":"AAEC"}"#,
        )
        .unwrap();
        assert_eq!(
            e.data,
            Some(Data::BinaryData(Bytes::from_static(&[0, 1, 2])))
        );
        assert!(!e.attributes.contains_key("datacontentencoding"));
        let out: Value = serde_json::from_slice(&encode_event(&e)).unwrap();
        assert_eq!(out["datacontentencoding"], "base64");
        assert_eq!(out["data"], "AAEC");
        assert_eq!(decode_event(&encode_event(&e)).unwrap(), e);

        // Untyped bytes: 0.3 would read base64 `data` with no type as JSON.
        let mut untyped = e.clone();
        untyped.attributes.remove("datacontenttype");
        let out: Value = serde_json::from_slice(&encode_event(&untyped)).unwrap();
        assert_eq!(out["datacontenttype"], "application/octet-stream");
        assert_eq!(out["data"], "AAEC");
    }

    #[test]
    fn json_data_is_written_as_it_is_stored() {
        let mut e = decode_event(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json"}"#,
        )
        .unwrap();
        e.data = Some(Data::BinaryData(Bytes::from_static(
            b"{\"big\": 123456789012345678901234567890, \"f\": 1.50}",
        )));
        let out = String::from_utf8(encode_event(&e)).unwrap();
        assert!(
            out.contains(r#""data":{"big": 123456789012345678901234567890, "f": 1.50}"#),
            "{out}"
        );
    }

    #[test]
    fn null_data_is_a_payload() {
        let e =
            decode_event(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":null}"#)
                .unwrap();
        assert_eq!(e.data, Some(Data::TextData("null".into())));
        let out: Value = serde_json::from_slice(&encode_event(&e)).unwrap();
        assert_eq!(out.get("data"), Some(&Value::Null));
    }

    #[test]
    fn data_without_content_type_is_json() {
        let e =
            decode_event(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"x"}"#)
                .unwrap();
        assert_eq!(e.data_content_type(), Some("application/json"));
        assert_eq!(e.data, Some(Data::TextData(r#""x""#.into())));
        // No data: nothing implied.
        let e =
            decode_event(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#).unwrap();
        assert_eq!(e.data_content_type(), None);
        // data_base64 makes no assumption (JSON format §3.1.2).
        let e = decode_event(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAEC"}"#,
        )
        .unwrap();
        assert_eq!(e.data_content_type(), None);
    }

    #[test]
    fn invalid_attribute_values_are_refused() {
        for (member, want) in [
            (r#""time":5"#, "time"),
            (r#""time":"""#, "time"),
            (r#""subject":5"#, "subject"),
            (r#""subject":"""#, "subject"),
            (r#""datacontenttype":"xyz""#, "datacontenttype"),
            (r#""datacontenttype":"""#, "datacontenttype"),
            (r#""dataschema":"""#, "dataschema"),
            (r#""ext":"a\u0000b""#, "ext"),
            (r#""ext":"line\nbreak""#, "ext"),
            (r#""time":"9999-12-31T23:00:00-02:00""#, "time"),
        ] {
            let body =
                format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t",{member}}}"#);
            let err = decode_event(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{member}: {err}");
        }
        let err =
            decode_event(br#"{"specversion":"1.0","id":"1","id":"2","source":"/s","type":"t"}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("more than once"), "{err}");
    }

    #[test]
    fn json_content_types() {
        for ct in [
            "application/json",
            "text/json",
            "application/cloudevents+json",
            "APPLICATION/JSON; charset=utf-8",
            "application/vnd.x+JSON",
        ] {
            assert!(is_json_content_type(ct), "{ct}");
        }
        for ct in [
            "application/jsonx",
            "application/xml",
            "json",
            "text/plain",
            "application/json-seq",
        ] {
            assert!(!is_json_content_type(ct), "{ct}");
        }
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
