//! Requests to events: the HTTP binding's decoder (binary mode, structured JSON and protobuf,
//! both batch forms) on arbitrary headers and bodies. Decoding never panics, and every event it
//! accepts is valid and deliverable: it encodes in binary mode and in structured JSON, and each
//! encoding decodes again to an event with the same id, source, type and data bytes.

#![no_main]

use bytes::Bytes;
use ember_event::{self as event, CloudEventExt};
use ember_event::{http_binding, json_format};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: &[&str] = &[
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/cloudevents+protobuf",
    "application/cloudevents-batch+protobuf",
    "application/json",
    "text/plain; charset=utf-8",
];

fuzz_target!(|input: (u8, Vec<(String, Vec<u8>)>, Vec<u8>)| {
    let (mode, headers, body) = input;
    let mut h = HeaderMap::new();
    if let Some(ct) = CONTENT_TYPES.get(mode as usize) {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    for (name, value) in headers {
        let name = if mode % 2 == 0 { format!("ce-{name}") } else { name };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
            h.append(n, v);
        }
    }
    let Ok(events) = http_binding::decode_request(&h, Bytes::from(body)) else {
        return;
    };
    for e in events {
        assert!(event::validate(&e).is_ok(), "accepted an invalid event: {e:?}");
        let mut binary = HeaderMap::new();
        let data = http_binding::encode_binary(&e, &mut binary);
        let again = http_binding::decode_binary(&binary, data)
            .unwrap_or_else(|err| panic!("binary re-encoding refused: {err}: {e:?}"));
        assert_eq!((&again.id, &again.source, &again.r#type), (&e.id, &e.source, &e.r#type));
        assert_eq!(again.data_bytes(), e.data_bytes());
        let json = json_format::encode_event(&e);
        let again = json_format::decode_event(&json)
            .unwrap_or_else(|err| panic!("JSON re-encoding refused: {err}: {e:?}"));
        assert_eq!((&again.id, &again.source, &again.r#type), (&e.id, &e.source, &e.r#type));
    }
});
