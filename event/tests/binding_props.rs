//! Property tests of the CloudEvents bindings, with the `cloudevents-sdk` crate as an
//! independent reference:
//! - any valid event encoded in one mode (binary, structured JSON, protobuf) decodes to the same
//!   event, and so does a decoded event re-encoded in another mode;
//! - events the SDK encodes in each HTTP mode decode in Ember to the event the SDK sent;
//! - what Ember delivers (binary and structured) decodes in the SDK to the event Ember sent;
//! - no request, however malformed, makes the decoders panic.
//!
//! The SDK neither percent-encodes nor percent-decodes binary-mode headers, so the events
//! exchanged with it in binary mode use header-safe ASCII; structured mode uses any Unicode.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::binding::http::{Builder, Serializer};
use cloudevents::message::BinaryDeserializer;
use cloudevents::{AttributesReader, EventBuilder, EventBuilderV03, EventBuilderV10};
use ember_event::http_binding::{self, JSON_FORMAT, PROTOBUF_FORMAT};
use ember_event::json_format;
use ember_event::{self as event, Attr, AttributeValue, CloudEvent, Data};
use http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;

/// The data an event carries, with its content type.
#[derive(Debug, Clone)]
enum Payload {
    None,
    Json(serde_json::Value),
    Text(String),
    Binary { bytes: Vec<u8>, typed: bool },
}

#[derive(Debug, Clone)]
enum Ext {
    Str(String),
    Bool(bool),
    Int(i32),
}

/// A generated event, from which both Ember's and the SDK's events are built.
#[derive(Debug, Clone)]
struct Spec {
    v03: bool,
    id: String,
    source: String,
    ty: String,
    subject: Option<String>,
    time: Option<DateTime<Utc>>,
    schema: Option<String>,
    extensions: BTreeMap<String, Ext>,
    payload: Payload,
}

const RESERVED: &[&str] = &[
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "schemaurl",
    "subject",
    "time",
    "data",
    "datacontentencoding",
    "knativebrokerttl",
    "knativearrivaltime",
];

fn header_safe() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~:/?#@!$&'()*+,;=-]{1,16}"
}

fn any_text() -> impl Strategy<Value = String> {
    "\\PC{1,16}"
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        "\\PC{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn spec(safe: bool) -> impl Strategy<Value = Spec> {
    let text = move || -> BoxedStrategy<String> {
        if safe {
            header_safe().boxed()
        } else {
            any_text().boxed()
        }
    };
    let ext_value = prop_oneof![
        text().prop_map(Ext::Str),
        any::<bool>().prop_map(Ext::Bool),
        any::<i32>().prop_map(Ext::Int),
    ];
    let extensions =
        prop::collection::btree_map("[a-z][a-z0-9]{0,8}", ext_value, 0..5).prop_map(|m| {
            m.into_iter()
                .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
                .collect()
        });
    let payload = prop_oneof![
        Just(Payload::None),
        json_value().prop_map(Payload::Json),
        text().prop_map(Payload::Text),
        (prop::collection::vec(any::<u8>(), 1..64), any::<bool>())
            .prop_map(|(bytes, typed)| Payload::Binary { bytes, typed }),
    ];
    let time = prop::option::of((0i64..4_000_000_000, 0u32..1_000_000_000))
        .prop_map(|t| t.and_then(|(s, n)| DateTime::from_timestamp(s, n)));
    (
        any::<bool>(),
        (text(), text(), text()),
        prop::option::of(text()),
        time,
        prop::option::of("[a-z]{1,8}".prop_map(|p| format!("https://schemas.example.com/{p}"))),
        extensions,
        payload,
    )
        .prop_map(
            |(v03, (id, source, ty), subject, time, schema, extensions, payload)| Spec {
                v03,
                id,
                source,
                ty,
                subject,
                time,
                schema,
                extensions,
                // 0.3 cannot carry untyped bytes in JSON (its `data` with no type is JSON), so
                // Ember types them there (a unit test covers it): 0.3 bytes are typed here.
                payload: match payload {
                    Payload::Binary { bytes, .. } if v03 => Payload::Binary { bytes, typed: true },
                    other => other,
                },
            },
        )
}

impl Spec {
    fn content_type(&self) -> Option<&'static str> {
        match &self.payload {
            Payload::None => None,
            Payload::Json(_) => Some("application/json"),
            Payload::Text(_) => Some("text/plain; charset=utf-8"),
            Payload::Binary { typed: true, .. } => Some("application/octet-stream"),
            Payload::Binary { typed: false, .. } => None,
        }
    }

    fn ember(&self) -> CloudEvent {
        let mut e = CloudEvent {
            id: self.id.clone(),
            source: self.source.clone(),
            spec_version: if self.v03 { "0.3" } else { "1.0" }.into(),
            r#type: self.ty.clone(),
            ..Default::default()
        };
        let mut put = |name: &str, attr: Attr| {
            e.attributes
                .insert(name.into(), AttributeValue { attr: Some(attr) });
        };
        if let Some(s) = &self.subject {
            put("subject", Attr::CeString(s.clone()));
        }
        if let Some(t) = self.time {
            put(
                "time",
                Attr::CeTimestamp(prost_types::Timestamp {
                    seconds: t.timestamp(),
                    nanos: t.timestamp_subsec_nanos() as i32,
                }),
            );
        }
        if let Some(s) = &self.schema {
            let name = if self.v03 { "schemaurl" } else { "dataschema" };
            put(name, Attr::CeUri(s.clone()));
        }
        if let Some(ct) = self.content_type() {
            put("datacontenttype", Attr::CeString(ct.into()));
        }
        for (k, v) in &self.extensions {
            put(
                k,
                match v {
                    Ext::Str(s) => Attr::CeString(s.clone()),
                    Ext::Bool(b) => Attr::CeBoolean(*b),
                    Ext::Int(i) => Attr::CeInteger(*i),
                },
            );
        }
        e.data = match &self.payload {
            Payload::None => None,
            Payload::Json(v) => Some(Data::TextData(v.to_string())),
            Payload::Text(s) => Some(Data::TextData(s.clone())),
            Payload::Binary { bytes, .. } => Some(Data::BinaryData(Bytes::from(bytes.clone()))),
        };
        e
    }

    fn sdk(&self) -> cloudevents::Event {
        macro_rules! build {
            ($builder:expr, $schema_setter:ident) => {{
                let mut b = $builder
                    .id(&self.id)
                    .source(self.source.clone())
                    .ty(&self.ty);
                if let Some(s) = &self.subject {
                    b = b.subject(s);
                }
                if let Some(t) = self.time {
                    b = b.time(t);
                }
                for (k, v) in &self.extensions {
                    b = match v {
                        Ext::Str(s) => b.extension(k, s.as_str()),
                        Ext::Bool(x) => b.extension(k, *x),
                        Ext::Int(i) => b.extension(k, *i as i64),
                    };
                }
                let ct = self.content_type();
                b = match (&self.payload, ct) {
                    (Payload::None, _) => b,
                    (Payload::Json(v), Some(ct)) => b.data(ct, v.clone()),
                    (Payload::Text(s), Some(ct)) => b.data(ct, s.clone()),
                    (Payload::Binary { bytes, .. }, Some(ct)) => b.data(ct, bytes.clone()),
                    (Payload::Binary { bytes, .. }, None) => {
                        b.data("application/octet-stream", bytes.clone())
                    }
                    (_, None) => b,
                };
                let mut event = b.build().expect("the SDK builds the event");
                if ct.is_none() {
                    event.set_datacontenttype(None::<String>);
                }
                if let Some(s) = &self.schema {
                    let url: url::Url = s.parse().unwrap();
                    event.$schema_setter(Some(url));
                }
                event
            }};
        }
        use cloudevents::AttributesWriter;
        if self.v03 {
            build!(EventBuilderV03::new(), set_dataschema)
        } else {
            build!(EventBuilderV10::new(), set_dataschema)
        }
    }
}

/// An event reduced to what every mode must agree on: attributes as canonical strings
/// (timestamps as instants) and the data as bytes, or as a JSON value under a JSON type.
#[derive(Debug, PartialEq)]
struct Canon {
    attributes: BTreeMap<String, String>,
    data: Option<CanonData>,
}

#[derive(Debug, PartialEq)]
enum CanonData {
    Json(serde_json::Value),
    Bytes(Vec<u8>),
}

fn canon_attr(name: &str, value: String) -> String {
    if name == "time" {
        let t = DateTime::parse_from_rfc3339(&value).expect("an RFC 3339 time");
        return t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Nanos, true);
    }
    value
}

fn canon_data(ct: Option<&str>, bytes: Vec<u8>) -> CanonData {
    if ct.is_some_and(json_format::is_json_content_type)
        && let Ok(v) = serde_json::from_slice(&bytes)
    {
        return CanonData::Json(v);
    }
    CanonData::Bytes(bytes)
}

fn canon_ember(e: &CloudEvent) -> Canon {
    use event::CloudEventExt;
    let mut attributes = BTreeMap::new();
    attributes.insert("specversion".into(), e.spec_version.clone());
    attributes.insert("id".into(), e.id.clone());
    attributes.insert("source".into(), e.source.clone());
    attributes.insert("type".into(), e.r#type.clone());
    for (k, v) in &e.attributes {
        if let Some(a) = &v.attr {
            attributes.insert(
                k.clone(),
                canon_attr(k, event::canonical_string(a).into_owned()),
            );
        }
    }
    Canon {
        data: e
            .data_bytes()
            .map(|b| canon_data(e.data_content_type(), b.to_vec())),
        attributes,
    }
}

fn canon_sdk(e: &cloudevents::Event) -> Canon {
    let attributes = e
        .iter()
        .filter(|(k, _)| *k != "datacontentencoding")
        .map(|(k, v)| (k.to_owned(), canon_attr(k, v.to_string())))
        .collect();
    let data = e.data().map(|d| {
        let bytes = match d {
            cloudevents::Data::Binary(b) => b.clone(),
            cloudevents::Data::String(s) => s.clone().into_bytes(),
            cloudevents::Data::Json(v) => serde_json::to_vec(v).unwrap(),
        };
        canon_data(e.datacontenttype(), bytes)
    });
    Canon { attributes, data }
}

fn headers_with(content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap(),
    );
    h
}

/// Ember's encodings of an event: binary-mode headers and body, structured JSON, protobuf.
fn encodings(e: &CloudEvent) -> Vec<(&'static str, HeaderMap, Bytes)> {
    let mut binary = HeaderMap::new();
    let body = http_binding::encode_binary(e, &mut binary);
    vec![
        ("binary", binary, body),
        (
            "json",
            headers_with(JSON_FORMAT),
            Bytes::from(json_format::encode_event(e)),
        ),
        (
            "protobuf",
            headers_with(PROTOBUF_FORMAT),
            Bytes::from(prost::Message::encode_to_vec(e)),
        ),
    ]
}

fn decode_one(headers: &HeaderMap, body: Bytes) -> CloudEvent {
    let mut events = http_binding::decode_request(headers, body).expect("a valid event decodes");
    assert_eq!(events.len(), 1);
    events.remove(0)
}

/// One of Ember's HTTP encoders: headers added to the map, the body returned.
type Encoder = dyn Fn(&CloudEvent, &mut HeaderMap) -> Bytes;

/// Builds an `http` request from the SDK's binary serializer.
struct SdkRequest {
    headers: HeaderMap,
}

impl Builder<(HeaderMap, Vec<u8>)> for SdkRequest {
    fn header(&mut self, key: &str, value: HeaderValue) {
        self.headers
            .append(http::HeaderName::from_bytes(key.as_bytes()).unwrap(), value);
    }
    fn body(&mut self, bytes: Vec<u8>) -> cloudevents::message::Result<(HeaderMap, Vec<u8>)> {
        Ok((std::mem::take(&mut self.headers), bytes))
    }
    fn finish(&mut self) -> cloudevents::message::Result<(HeaderMap, Vec<u8>)> {
        self.body(Vec::new())
    }
}

fn sdk_binary(e: cloudevents::Event) -> (HeaderMap, Vec<u8>) {
    BinaryDeserializer::deserialize_binary(
        e,
        Serializer::new(SdkRequest {
            headers: HeaderMap::new(),
        }),
    )
    .expect("the SDK encodes binary mode")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_valid_event_decodes_the_same_from_every_mode(spec in spec(false)) {
        let e = spec.ember();
        prop_assert!(event::validate(&e).is_ok(), "{:?}", event::validate(&e));
        let want = canon_ember(&e);
        for (mode, headers, body) in encodings(&e) {
            let decoded = decode_one(&headers, body);
            prop_assert_eq!(&canon_ember(&decoded), &want, "decoded from {}", mode);
            // And onwards into every other mode.
            for (next, headers, body) in encodings(&decoded) {
                let again = decode_one(&headers, body);
                prop_assert_eq!(&canon_ember(&again), &want, "{} then {}", mode, next);
            }
        }
        // The JSON format and protobuf keep attribute types too.
        let (_, h, b) = &encodings(&e)[1];
        let from_json = decode_one(h, b.clone());
        for (k, v) in &e.attributes {
            prop_assert_eq!(from_json.attributes.get(k), Some(v), "{}", k);
        }
    }

    #[test]
    fn events_the_sdk_sends_decode_in_ember_to_the_same_event(binary_spec in spec(true), any_spec in spec(false)) {
        // Binary mode: the SDK writes header values as they are.
        let (headers, body) = sdk_binary(binary_spec.sdk());
        let decoded = decode_one(&headers, Bytes::from(body));
        prop_assert_eq!(canon_ember(&decoded), canon_sdk(&binary_spec.sdk()));
        prop_assert_eq!(canon_ember(&decoded), canon_ember(&binary_spec.ember()));
        // Structured JSON: any text.
        let sdk = any_spec.sdk();
        let body = serde_json::to_vec(&sdk).unwrap();
        let decoded = decode_one(&headers_with(JSON_FORMAT), Bytes::from(body));
        prop_assert_eq!(canon_ember(&decoded), canon_sdk(&sdk));
    }

    #[test]
    fn what_ember_delivers_decodes_in_the_sdk_to_the_event_sent(binary_spec in spec(true), any_spec in spec(false)) {
        // The encoders delivery uses: binary mode by default, structured JSON when asked.
        let binary = |e: &CloudEvent, h: &mut HeaderMap| http_binding::encode_binary(e, h);
        let structured = |e: &CloudEvent, h: &mut HeaderMap| http_binding::encode_structured_json(e, h);
        let modes: [(&Spec, &str, &Encoder); 2] =
            [(&binary_spec, "binary", &binary), (&any_spec, "structured", &structured)];
        for (spec, mode, encode) in modes {
            let e = spec.ember();
            let mut headers = HeaderMap::new();
            let body = encode(&e, &mut headers);
            let sdk = cloudevents::binding::http::to_event(&headers, body.to_vec())
                .map_err(|err| TestCaseError::fail(format!("{mode}: the SDK refused: {err}")))?;
            prop_assert_eq!(canon_sdk(&sdk), canon_ember(&e), "{}", mode);
        }
    }

    #[test]
    fn no_request_makes_the_decoders_panic(
        content_type in prop_oneof![
            Just(None),
            Just(Some(JSON_FORMAT.to_owned())),
            Just(Some("application/cloudevents-batch+json".to_owned())),
            Just(Some(PROTOBUF_FORMAT.to_owned())),
            Just(Some("application/cloudevents-batch+protobuf".to_owned())),
            "[ -~]{0,40}".prop_map(Some),
        ],
        headers in prop::collection::vec(("ce-[a-z0-9]{0,6}|[a-z-]{1,8}", prop::collection::vec(32u8..255, 0..24)), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type
            && let Ok(v) = HeaderValue::from_str(&ct)
        {
            h.insert(header::CONTENT_TYPE, v);
        }
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
                h.append(n, v);
            }
        }
        if let Ok(events) = http_binding::decode_request(&h, Bytes::from(body)) {
            // Whatever is accepted is valid and can be delivered in both modes.
            for e in &events {
                prop_assert!(event::validate(e).is_ok());
                let mut out = HeaderMap::new();
                let _ = http_binding::encode_binary(e, &mut out);
                let _ = json_format::encode_event(e);
            }
        }
    }

    #[test]
    fn structured_json_of_any_shape_never_panics(value in json_value(), extra in prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..6)) {
        let mut object = serde_json::Map::new();
        object.insert("specversion".into(), "1.0".into());
        object.insert("id".into(), "1".into());
        object.insert("source".into(), "/s".into());
        object.insert("type".into(), "t".into());
        object.insert("data".into(), value);
        object.extend(extra);
        let body = serde_json::to_vec(&serde_json::Value::Object(object)).unwrap();
        if let Ok(e) = json_format::decode_event(&body) {
            let again = json_format::decode_event(&json_format::encode_event(&e)).expect("re-decodes");
            prop_assert_eq!(canon_ember(&again), canon_ember(&e));
        }
    }
}
