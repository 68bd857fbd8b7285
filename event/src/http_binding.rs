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
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::json_format;
use crate::{CloudEvent, CloudEventExt, Data, EventError, SpecVersion};

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

/// The error a listener's request body gives when it did not arrive within the body read
/// timeout. Whoever reads a body (broker ingress, a WebhookSource) recognises it among body
/// errors and answers 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyTimeout;

/// Whether a content type is the JSON event format (`application/cloudevents+json`, parameters
/// aside): structured mode in every binding.
pub fn is_structured_json(content_type: &str) -> bool {
    matches!(
        content_mode(Some(content_type)),
        Ok(ContentMode::StructuredJson)
    )
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
            let mut e = crate::decode(&body)?;
            crate::normalize_protobuf(&mut e)?;
            crate::validate(&e)?;
            Ok(vec![e])
        }
        ContentMode::BatchProtobuf => {
            let batch =
                <crate::proto::CloudEventBatch as prost::Message>::decode(body).map_err(|e| {
                    EventError::Malformed {
                        format: "protobuf batch",
                        reason: e.to_string(),
                    }
                })?;
            let mut events = batch.events;
            for e in &mut events {
                crate::normalize_protobuf(e)?;
                crate::validate(e)?;
            }
            Ok(events)
        }
    }
}

/// Undoes RFC 7230 quoted strings wherever they appear in a header value (`a "b \" c"` →
/// `a b " c`); a value without `"` is returned as it is. An unterminated quoted string is an
/// error.
fn unquote(raw: &[u8]) -> Result<Cow<'_, [u8]>, &'static str> {
    if !raw.contains(&b'"') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    let mut quoted = false;
    while let Some(&b) = bytes.next() {
        match (quoted, b) {
            (_, b'"') => quoted = !quoted,
            (true, b'\\') => match bytes.next() {
                Some(&escaped) => out.push(escaped),
                None => break,
            },
            _ => out.push(b),
        }
    }
    if quoted {
        return Err("unterminated quoted string");
    }
    Ok(Cow::Owned(out))
}

/// One round of percent-decoding in which every `%` must start a `%XY` hex pair.
fn percent_decode_strict(raw: &[u8]) -> Result<Cow<'_, [u8]>, &'static str> {
    if !raw.contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let pair = raw
                .get(i + 1)
                .copied()
                .and_then(hex)
                .zip(raw.get(i + 2).copied().and_then(hex));
            let Some((hi, lo)) = pair else {
                return Err("malformed percent-encoding: '%' must be followed by two hex digits");
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

/// Decodes one binary-mode header value: RFC 7230 quoted strings unescaped, then one round of
/// percent-decoding, then a UTF-8 check.
pub fn decode_header_value(name: &str, value: &HeaderValue) -> Result<String, EventError> {
    let header = |reason| EventError::Header {
        header: name.to_owned(),
        reason,
    };
    let unquoted = unquote(value.as_bytes()).map_err(header)?;
    let decoded = percent_decode_strict(&unquoted).map_err(header)?;
    String::from_utf8(decoded.into_owned())
        .map_err(|_| header("percent-decoded value is not valid UTF-8"))
}

/// Percent-encodes an attribute's canonical string for a header, as the binding requires.
pub fn encode_header_value(value: &str) -> HeaderValue {
    let encoded: Cow<'_, str> = utf8_percent_encode(value, HEADER_VALUE).into();
    // Every byte is now printable ASCII, which is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Decodes a binary-mode request: `ce-*` headers are attributes, `Content-Type` is
/// `datacontenttype` (as it is: only `ce-` headers are percent-encoded), the body is the data.
/// A header that occurs twice is refused rather than resolved one way or the other.
pub fn decode_binary(headers: &HeaderMap, body: Bytes) -> Result<CloudEvent, DecodeError> {
    let spec_version = match headers.get("ce-specversion") {
        Some(v) => decode_header_value("ce-specversion", v)?,
        None => return Err(EventError::MissingSpecVersion.into()),
    };
    let version = SpecVersion::parse(&spec_version)?;
    let mut event = CloudEvent {
        spec_version,
        attributes: crate::attribute_map(),
        ..Default::default()
    };
    // A header's values are yielded one after another: a repeat follows its first.
    let mut previous: Option<&HeaderName> = None;
    for (name, value) in headers {
        let repeated = previous == Some(name);
        previous = Some(name);
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            if repeated && name == header::CONTENT_TYPE {
                return Err(duplicate(name).into());
            }
            continue;
        };
        if repeated {
            return Err(duplicate(name).into());
        }
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
        if !crate::is_valid_attribute_name(attr) {
            return Err(EventError::AttributeName(attr.to_owned()).into());
        }
        let value = decode_header_value(name.as_str(), value)?;
        match attr {
            "id" => event.id = value,
            "source" => event.source = value,
            "type" => event.r#type = value,
            _ => {
                let typed = crate::typed_from_string(version, attr, value)?;
                event.attributes.insert(attr.to_owned(), typed);
            }
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = std::str::from_utf8(ct.as_bytes()).map_err(|_| EventError::Header {
            header: "content-type".to_owned(),
            reason: "is not valid UTF-8",
        })?;
        event
            .attributes
            .insert("datacontenttype".to_owned(), crate::string_value(ct));
    }
    if !body.is_empty() {
        event.data = Some(Data::BinaryData(body));
    }
    crate::decode_content_encoding(&mut event, version)?;
    crate::validate(&event)?;
    Ok(event)
}

fn duplicate(name: &HeaderName) -> EventError {
    EventError::Header {
        header: name.as_str().to_owned(),
        reason: "appears more than once: send each attribute once",
    }
}

/// Writes an event as a binary-mode message: the headers to add and the body.
pub fn encode_binary(event: &CloudEvent, headers: &mut HeaderMap) -> Bytes {
    headers.insert("ce-specversion", encode_header_value(&event.spec_version));
    headers.insert("ce-id", encode_header_value(&event.id));
    headers.insert("ce-source", encode_header_value(&event.source));
    headers.insert("ce-type", encode_header_value(&event.r#type));
    for (name, value) in &event.attributes {
        let Some(attr) = &value.attr else { continue };
        let text = crate::canonical_string(attr);
        if name == "datacontenttype" {
            // Content-Type carries datacontenttype as it is (validated at ingress as an RFC
            // 2046 media type); only `ce-` headers are percent-encoded.
            if let Ok(ct) = HeaderValue::from_str(&text) {
                headers.insert(header::CONTENT_TYPE, ct);
            }
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
    use crate::CloudEventExt;

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
    fn malformed_percent_sequences_are_refused() {
        for bad in ["%", "%0", "%g0", "a%zz", "100%", "%%41"] {
            let v = HeaderValue::from_str(bad).unwrap();
            let err = decode_header_value("ce-x", &v).unwrap_err().to_string();
            assert!(
                err.contains("ce-x") && err.contains("percent"),
                "{bad}: {err}"
            );
        }
        let ok = HeaderValue::from_static("%41%2f%2F");
        assert_eq!(decode_header_value("ce-x", &ok).unwrap(), "A//");
    }

    #[test]
    fn quoted_strings_are_unescaped_anywhere_and_must_end() {
        let cases = [
            (r#""quoted""#, "quoted"),
            (r#"a "b c" d"#, "a b c d"),
            (r#""a\\b""#, r"a\b"),
            (r#""%41""#, "A"),
            (r#""""#, ""),
        ];
        for (raw, want) in cases {
            let v = HeaderValue::from_str(raw).unwrap();
            assert_eq!(decode_header_value("ce-x", &v).unwrap(), want, "{raw}");
        }
        for bad in [r#""open"#, r#"a "b"#, r#""esc\""#] {
            let v = HeaderValue::from_str(bad).unwrap();
            let err = decode_header_value("ce-x", &v).unwrap_err().to_string();
            assert!(err.contains("unterminated"), "{bad}: {err}");
        }
    }

    #[test]
    fn repeated_headers_are_refused() {
        for name in ["ce-id", "ce-specversion", "ce-myext", "content-type"] {
            let mut h = binary_headers(&[("content-type", "text/plain"), ("ce-myext", "a")]);
            h.append(name, HeaderValue::from_static("1.0"));
            let err = decode_binary(&h, Bytes::new()).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains("more than once"),
                "{err}"
            );
        }
    }

    #[test]
    fn content_type_is_datacontenttype_as_it_is() {
        let h = binary_headers(&[("content-type", "text/plain; charset=utf-8")]);
        let e = decode_binary(&h, Bytes::from_static(b"hi")).unwrap();
        assert_eq!(
            e.attribute("datacontenttype").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        let mut out = HeaderMap::new();
        encode_binary(&e, &mut out);
        assert_eq!(out["content-type"], "text/plain; charset=utf-8");
        // Percent signs in Content-Type are not an encoding.
        let h = binary_headers(&[("content-type", "text/plain; name=a%20b")]);
        let e = decode_binary(&h, Bytes::new()).unwrap();
        assert_eq!(
            e.attribute("datacontenttype").as_deref(),
            Some("text/plain; name=a%20b")
        );
        // Not a media type.
        let h = binary_headers(&[("content-type", "xyz")]);
        assert!(decode_binary(&h, Bytes::new()).is_err());
    }

    #[test]
    fn structured_json_data_without_content_type_is_delivered_as_json() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static(JSON_FORMAT));
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}"#;
        let e = decode_request(&h, Bytes::from_static(body))
            .unwrap()
            .remove(0);
        let mut out = HeaderMap::new();
        let data = encode_binary(&e, &mut out);
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(data, Bytes::from_static(br#"{"a":1}"#));
    }

    #[test]
    fn v03_binary_data_stays_0_3_in_every_mode() {
        // Binary 0.3 with a body that is not text: structured delivery keeps 0.3's form.
        let mut h = binary_headers(&[("content-type", "application/octet-stream")]);
        h.insert("ce-specversion", HeaderValue::from_static("0.3"));
        let e = decode_binary(&h, Bytes::from_static(&[0, 159, 146, 150])).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&crate::json_format::encode_event(&e)).unwrap();
        assert_eq!(json["specversion"], "0.3");
        assert_eq!(json["datacontentencoding"], "base64");
        assert_eq!(json["data"], "AJ+Slg==");
        assert!(json.get("data_base64").is_none());
        // And back: the same bytes, without the encoding attribute.
        let again = crate::json_format::decode_event(json.to_string().as_bytes()).unwrap();
        assert_eq!(again.data, e.data);
        assert!(!again.attributes.contains_key("datacontentencoding"));
        let mut out = HeaderMap::new();
        assert_eq!(
            encode_binary(&again, &mut out),
            Bytes::from_static(&[0, 159, 146, 150])
        );
        assert!(!out.contains_key("ce-datacontentencoding"));
        assert_eq!(out["ce-specversion"], "0.3");

        // A 0.3 binary body declared base64 means the decoded bytes.
        let mut h = binary_headers(&[("ce-datacontentencoding", "base64")]);
        h.insert("ce-specversion", HeaderValue::from_static("0.3"));
        let e = decode_binary(&h, Bytes::from_static(b"AAEC")).unwrap();
        assert_eq!(
            e.data,
            Some(Data::BinaryData(Bytes::from_static(&[0, 1, 2])))
        );
        assert!(!e.attributes.contains_key("datacontentencoding"));
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
