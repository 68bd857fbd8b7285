//! The CloudEvents HTTP protocol binding: requests to events (ingress) and events to requests
//! (delivery).
//!
//! The content mode is chosen from `Content-Type`, as the binding says: a type starting with
//! `application/cloudevents-batch` is batched mode, `application/cloudevents` structured mode
//! (JSON and protobuf are understood; any other format is refused with 415), anything else
//! binary mode. Binary-mode header values are unquoted (RFC 7230 quoted strings), then
//! percent-decoded once; a decoded byte sequence that is not UTF-8 (e.g. the overlong `%C0%A0`)
//! is refused.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};

use crate::event::{self, CloudEvent, CloudEventExt, Data, EventError, SpecVersion};
use crate::json_format;

/// Media type of the structured JSON format.
pub const JSON_FORMAT: &str = "application/cloudevents+json";
/// Media type of the JSON batch format.
pub const JSON_BATCH_FORMAT: &str = "application/cloudevents-batch+json";
/// Media type of the structured protobuf format.
pub const PROTOBUF_FORMAT: &str = "application/cloudevents+protobuf";
/// Media type of the protobuf batch format.
pub const PROTOBUF_BATCH_FORMAT: &str = "application/cloudevents-batch+protobuf";

/// Characters percent-encoded in header values: controls, space, `"`, `%` and (implicitly,
/// by `utf8_percent_encode`) everything outside ASCII.
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// Why a request does not carry acceptable CloudEvents.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid event (400).
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// A structured or batch format Ember does not understand (415).
    #[error(
        "unsupported event format {0:?}: use binary mode, {JSON_FORMAT}, {JSON_BATCH_FORMAT} or {PROTOBUF_FORMAT}"
    )]
    UnsupportedFormat(String),
}

/// The content mode of a request, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    /// Attributes in `ce-` headers, data in the body.
    Binary,
    /// One event in the JSON format.
    StructuredJson,
    /// One event in the protobuf format.
    StructuredProtobuf,
    /// An array of events in the JSON format.
    BatchJson,
    /// A `CloudEventBatch` in the protobuf format.
    BatchProtobuf,
}

/// Chooses the content mode from a `Content-Type` value.
pub fn content_mode(content_type: Option<&str>) -> Result<ContentMode, DecodeError> {
    let Some(ct) = content_type else {
        return Ok(ContentMode::Binary);
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    let starts = |prefix: &str| {
        media.len() >= prefix.len() && media[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if starts("application/cloudevents-batch") {
        if media.eq_ignore_ascii_case(JSON_BATCH_FORMAT) {
            Ok(ContentMode::BatchJson)
        } else if media.eq_ignore_ascii_case(PROTOBUF_BATCH_FORMAT) {
            Ok(ContentMode::BatchProtobuf)
        } else {
            Err(DecodeError::UnsupportedFormat(media.to_owned()))
        }
    } else if starts("application/cloudevents") {
        if media.eq_ignore_ascii_case(JSON_FORMAT) {
            Ok(ContentMode::StructuredJson)
        } else if media.eq_ignore_ascii_case(PROTOBUF_FORMAT) {
            Ok(ContentMode::StructuredProtobuf)
        } else {
            Err(DecodeError::UnsupportedFormat(media.to_owned()))
        }
    } else {
        Ok(ContentMode::Binary)
    }
}

/// Decodes the events of a request, validated.
pub fn decode_request(headers: &HeaderMap, body: Bytes) -> Result<Vec<CloudEvent>, DecodeError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match content_mode(content_type)? {
        ContentMode::Binary => Ok(vec![decode_binary(headers, body)?]),
        ContentMode::StructuredJson => Ok(vec![json_format::decode_event(&body)?]),
        ContentMode::BatchJson => Ok(json_format::decode_batch(&body)?),
        ContentMode::StructuredProtobuf => {
            let e = event::decode(&body)?;
            event::validate(&e)?;
            Ok(vec![e])
        }
        ContentMode::BatchProtobuf => {
            let batch =
                <event::proto::CloudEventBatch as prost::Message>::decode(body).map_err(|e| {
                    EventError::Malformed {
                        format: "protobuf batch",
                        reason: e.to_string(),
                    }
                })?;
            for e in &batch.events {
                event::validate(e)?;
            }
            Ok(batch.events)
        }
    }
}

/// Unquotes an RFC 7230 quoted string (`"a \"b\""` → `a "b"`); other values pass unchanged.
fn unquote(raw: &[u8]) -> Cow<'_, [u8]> {
    if raw.len() < 2 || raw[0] != b'"' || raw[raw.len() - 1] != b'"' {
        return Cow::Borrowed(raw);
    }
    let inner = &raw[1..raw.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if escaped || b != b'\\' {
            out.push(b);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    Cow::Owned(out)
}

/// Decodes one binary-mode header value: unquote, one round of percent-decoding, UTF-8 check.
pub fn decode_header_value(name: &str, value: &HeaderValue) -> Result<String, EventError> {
    let raw = unquote(value.as_bytes());
    let invalid = || EventError::Header {
        header: name.to_owned(),
        reason: "percent-decoded value is not valid UTF-8",
    };
    if !raw.contains(&b'%') {
        return std::str::from_utf8(&raw)
            .map(str::to_owned)
            .map_err(|_| invalid());
    }
    percent_decode(&raw)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| invalid())
}

/// Percent-encodes an attribute's canonical string for a header, as the binding requires.
pub fn encode_header_value(value: &str) -> HeaderValue {
    let encoded: Cow<'_, str> = utf8_percent_encode(value, HEADER_VALUE).into();
    // Every byte is now printable ASCII, which is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Decodes a binary-mode request: `ce-*` headers are attributes, `Content-Type` is
/// `datacontenttype`, the body is the data.
pub fn decode_binary(headers: &HeaderMap, body: Bytes) -> Result<CloudEvent, DecodeError> {
    let spec_version = match headers.get("ce-specversion") {
        Some(v) => decode_header_value("ce-specversion", v)?,
        None => return Err(EventError::MissingSpecVersion.into()),
    };
    let version = SpecVersion::parse(&spec_version)?;
    let mut event = CloudEvent {
        spec_version,
        attributes: event::attribute_map(),
        ..Default::default()
    };
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        match attr {
            "specversion" => continue,
            "datacontenttype" => {
                return Err(EventError::Header {
                    header: name.as_str().to_owned(),
                    reason: "must not be sent in binary mode: Content-Type carries datacontenttype",
                }
                .into());
            }
            _ => {}
        }
        if !event::is_valid_attribute_name(attr) {
            return Err(EventError::AttributeName(attr.to_owned()).into());
        }
        let value = decode_header_value(name.as_str(), value)?;
        match attr {
            "id" => event.id = value,
            "source" => event.source = value,
            "type" => event.r#type = value,
            _ => {
                let typed = event::typed_from_string(version, attr, value)?;
                event.attributes.insert(attr.to_owned(), typed);
            }
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = decode_header_value("content-type", ct)?;
        event
            .attributes
            .insert("datacontenttype".to_owned(), event::string_value(ct));
    }
    if !body.is_empty() {
        event.data = Some(Data::BinaryData(body));
    }
    event::validate(&event)?;
    Ok(event)
}

/// Writes an event as a binary-mode message: the headers to add and the body.
pub fn encode_binary(event: &CloudEvent, headers: &mut HeaderMap) -> Bytes {
    headers.insert("ce-specversion", encode_header_value(&event.spec_version));
    headers.insert("ce-id", encode_header_value(&event.id));
    headers.insert("ce-source", encode_header_value(&event.source));
    headers.insert("ce-type", encode_header_value(&event.r#type));
    for (name, value) in &event.attributes {
        let Some(attr) = &value.attr else { continue };
        let text = event::canonical_string(attr);
        if name == "datacontenttype" {
            headers.insert(header::CONTENT_TYPE, encode_header_value(&text));
            continue;
        }
        let header_name = match name.as_str() {
            "time" => HeaderName::from_static("ce-time"),
            "knativearrivaltime" => HeaderName::from_static("ce-knativearrivaltime"),
            "knativebrokerttl" => HeaderName::from_static("ce-knativebrokerttl"),
            "subject" => HeaderName::from_static("ce-subject"),
            "dataschema" => HeaderName::from_static("ce-dataschema"),
            "partitionkey" => HeaderName::from_static("ce-partitionkey"),
            _ => match HeaderName::from_bytes(format!("ce-{name}").as_bytes()) {
                Ok(header_name) => header_name,
                Err(_) => continue,
            },
        };
        headers.insert(header_name, encode_header_value(&text));
    }
    event.data_bytes().unwrap_or_default()
}

/// Writes an event as a structured JSON message: the headers to add and the body.
pub fn encode_structured_json(event: &CloudEvent, headers: &mut HeaderMap) -> Bytes {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_FORMAT));
    Bytes::from(json_format::encode_event(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_triggers::EventAttributes;

    fn binary_headers(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]
        .iter()
        .chain(extra)
        {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn spec_percent_encoding_example_round_trips() {
        let v = encode_header_value("Euro € 😀");
        assert_eq!(v.to_str().unwrap(), "Euro%20%E2%82%AC%20%F0%9F%98%80");
        assert_eq!(decode_header_value("ce-x", &v).unwrap(), "Euro € 😀");
        let lower = HeaderValue::from_static("Euro%20%e2%82%ac");
        assert_eq!(decode_header_value("ce-x", &lower).unwrap(), "Euro €");
    }

    #[test]
    fn overlong_utf8_is_refused() {
        let h = binary_headers(&[("ce-subject", "%C0%A0")]);
        let err = decode_binary(&h, Bytes::new()).unwrap_err();
        assert!(err.to_string().contains("ce-subject"), "{err}");
    }

    #[test]
    fn quoted_strings_are_unquoted() {
        let v = HeaderValue::from_static(r#""a \"b\" c""#);
        assert_eq!(decode_header_value("ce-x", &v).unwrap(), r#"a "b" c"#);
    }

    #[test]
    fn binary_mode_maps_content_type_and_extensions() {
        let mut h = binary_headers(&[("ce-myext", "v"), ("content-type", "text/plain")]);
        h.insert("x-other", HeaderValue::from_static("ignored"));
        let e = decode_binary(&h, Bytes::from_static(b"hi")).unwrap();
        assert_eq!(e.attribute("myext").as_deref(), Some("v"));
        assert_eq!(
            e.attribute("datacontenttype").as_deref(),
            Some("text/plain")
        );
        assert_eq!(e.data, Some(Data::BinaryData(Bytes::from_static(b"hi"))));
        let mut out = HeaderMap::new();
        let body = encode_binary(&e, &mut out);
        assert_eq!(body, Bytes::from_static(b"hi"));
        assert_eq!(out["content-type"], "text/plain");
        assert_eq!(out["ce-myext"], "v");
        assert!(!out.contains_key("ce-datacontenttype"));
    }

    #[test]
    fn content_modes() {
        assert_eq!(content_mode(None).unwrap(), ContentMode::Binary);
        assert_eq!(
            content_mode(Some("application/json")).unwrap(),
            ContentMode::Binary
        );
        assert_eq!(
            content_mode(Some("Application/CloudEvents+JSON; charset=utf-8")).unwrap(),
            ContentMode::StructuredJson
        );
        assert_eq!(
            content_mode(Some(JSON_BATCH_FORMAT)).unwrap(),
            ContentMode::BatchJson
        );
        assert!(matches!(
            content_mode(Some("application/cloudevents+avro")),
            Err(DecodeError::UnsupportedFormat(_))
        ));
    }
}
