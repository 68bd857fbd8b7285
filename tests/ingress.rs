//! Broker ingress over real HTTP on loopback: every content mode and every status code of the
//! contract, checked by what a subscriber then receives.

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, post, request};
use ember_event::{Attr, AttributeValue, CloudEvent, proto::CloudEventBatch};
use http::{Method, StatusCode};
use prost::Message;

fn config(subscriber: &Subscriber, broker_annotations: &str) -> String {
    format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  annotations: {{{broker_annotations}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: all
spec:
  broker: default
  subscriber:
    uri: {}
"#,
        subscriber.uri()
    )
}

async fn setup() -> (TestEmber, Subscriber, String) {
    let sub = Subscriber::start().await;
    let ember = TestEmber::start(&config(&sub, "")).await;
    let url = ember.url("/default/default");
    (ember, sub, url)
}

async fn wait_for(sub: &Subscriber, n: usize) {
    assert!(
        eventually(Duration::from_secs(10), || sub.count() >= n).await,
        "expected {n} deliveries, got {}",
        sub.count()
    );
}

#[tokio::test]
async fn binary_mode_event_is_accepted_and_delivered_unchanged() {
    let (ember, sub, url) = setup().await;
    let mut headers = binary_event("b-1", "com.example.binary");
    headers.extend([
        ("ce-subject", "orders/1"),
        ("ce-time", "2026-01-02T03:04:05Z"),
        ("ce-myext", "hello"),
        ("content-type", "application/json"),
    ]);
    let r = post(&url, &headers, r#"{"n":1}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_for(&sub, 1).await;
    let got = &sub.received()[0];
    assert_eq!(got.header("ce-id"), Some("b-1"));
    assert_eq!(got.header("ce-type"), Some("com.example.binary"));
    assert_eq!(got.header("ce-source"), Some("/test"));
    assert_eq!(got.header("ce-specversion"), Some("1.0"));
    assert_eq!(got.header("ce-subject"), Some("orders/1"));
    assert_eq!(got.header("ce-time"), Some("2026-01-02T03:04:05Z"));
    assert_eq!(got.header("ce-myext"), Some("hello"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("prefer"), Some("reply"));
    assert_eq!(got.header("ce-knativebrokerttl"), Some("255"));
    assert!(
        got.header("ce-knativearrivaltime")
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(&got.body[..], br#"{"n":1}"#);
    ember.stop().await;
}

#[tokio::test]
async fn structured_json_event_is_accepted_and_delivered_in_binary_mode() {
    let (ember, sub, url) = setup().await;
    let body = r#"{"specversion":"1.0","id":"s-1","source":"/json","type":"com.example.json",
                  "datacontenttype":"application/json","count":3,"data":{"a":[1,2]}}"#;
    let r = post(
        &url,
        &[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_for(&sub, 1).await;
    let got = &sub.received()[0];
    assert_eq!(got.header("ce-id"), Some("s-1"));
    assert_eq!(got.header("ce-count"), Some("3"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(&got.body[..], br#"{"a":[1,2]}"#);
    ember.stop().await;
}

#[tokio::test]
async fn json_batch_is_accepted_whole() {
    let (ember, sub, url) = setup().await;
    let body = r#"[
        {"specversion":"1.0","id":"1","source":"/b","type":"t"},
        {"specversion":"1.0","id":"2","source":"/b","type":"t","data_base64":"AAE="},
        {"specversion":"0.3","id":"3","source":"/b","type":"t"}]"#;
    let r = post(
        &url,
        &[("content-type", "application/cloudevents-batch+json")],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_for(&sub, 3).await;
    let mut ids: Vec<_> = sub
        .received()
        .iter()
        .map(|r| r.header("ce-id").unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
    ember.stop().await;
}

#[tokio::test]
async fn invalid_event_in_a_batch_refuses_the_whole_batch() {
    let (ember, sub, url) = setup().await;
    let body = r#"[{"specversion":"1.0","id":"1","source":"/b","type":"t"},
                   {"specversion":"1.0","id":"2","source":"/b"}]"#;
    let r = post(
        &url,
        &[("content-type", "application/cloudevents-batch+json")],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error()
            .contains("event 1: missing required attribute: type"),
        "{}",
        r.error()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sub.count(), 0);
    ember.stop().await;
}

#[tokio::test]
async fn structured_protobuf_event_is_accepted() {
    let (ember, sub, url) = setup().await;
    let ev = CloudEvent {
        id: "p-1".into(),
        source: "/proto".into(),
        spec_version: "1.0".into(),
        r#type: "com.example.proto".into(),
        data: Some(ember_event::Data::TextData("hi".into())),
        ..Default::default()
    };
    let r = post(
        &url,
        &[("content-type", "application/cloudevents+protobuf")],
        ev.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let batch = CloudEventBatch {
        events: vec![CloudEvent {
            id: "p-2".into(),
            ..ev.clone()
        }],
    };
    let r = post(
        &url,
        &[("content-type", "application/cloudevents-batch+protobuf")],
        batch.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    wait_for(&sub, 2).await;
    let got = sub.received();
    assert_eq!(got[0].header("ce-type"), Some("com.example.proto"));
    assert_eq!(&got[0].body[..], b"hi");
    ember.stop().await;
}

#[tokio::test]
async fn spec_version_0_3_is_kept_as_0_3() {
    let (ember, sub, url) = setup().await;
    let mut headers = binary_event("v03", "t");
    headers[0] = ("ce-specversion", "0.3");
    headers.push(("ce-schemaurl", "https://example.com/schema"));
    assert_eq!(post(&url, &headers, "x").await.status, StatusCode::ACCEPTED);
    wait_for(&sub, 1).await;
    let got = &sub.received()[0];
    assert_eq!(got.header("ce-specversion"), Some("0.3"));
    assert_eq!(
        got.header("ce-schemaurl"),
        Some("https://example.com/schema")
    );
    ember.stop().await;
}

#[tokio::test]
async fn percent_encoded_headers_follow_the_spec_example() {
    let (ember, sub, url) = setup().await;
    let mut headers = binary_event("pct", "t");
    headers.push(("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80"));
    headers.push(("ce-quoted", "\"a b\""));
    assert_eq!(post(&url, &headers, "").await.status, StatusCode::ACCEPTED);
    wait_for(&sub, 1).await;
    let got = &sub.received()[0];
    // Decoded on the way in ("Euro € 😀"), encoded again on the way out, exactly as the spec.
    assert_eq!(
        got.header("ce-subject"),
        Some("Euro%20%E2%82%AC%20%F0%9F%98%80")
    );
    assert_eq!(got.header("ce-quoted"), Some("a%20b"));
    ember.stop().await;
}

#[tokio::test]
async fn invalid_utf8_after_percent_decoding_is_400() {
    let (ember, _sub, url) = setup().await;
    let mut headers = binary_event("bad", "t");
    headers.push(("ce-subject", "%C0%A0"));
    let r = post(&url, &headers, "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error().contains("ce-subject") && r.error().contains("UTF-8"),
        "{}",
        r.error()
    );
    ember.stop().await;
}

#[tokio::test]
async fn missing_or_bad_attributes_are_400_naming_the_problem() {
    let (ember, sub, url) = setup().await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ],
            "missing required attribute: id",
        ),
        (
            vec![("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")],
            "missing required attribute: source",
        ),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
            ],
            "missing required attribute: type",
        ),
        (
            vec![("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")],
            "specversion",
        ),
        (
            vec![
                ("ce-specversion", "2.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ],
            "unsupported specversion \"2.0\"",
        ),
        (
            [binary_event("1", "t"), vec![("ce-time", "yesterday")]].concat(),
            "time",
        ),
        (
            [binary_event("1", "t"), vec![("ce-my_ext", "x")]].concat(),
            "invalid attribute name \"my_ext\"",
        ),
        (
            [
                binary_event("1", "t"),
                vec![("ce-datacontenttype", "text/plain")],
            ]
            .concat(),
            "Content-Type",
        ),
        (
            [binary_event("1", "t"), vec![("ce-knativebrokerttl", "0")]].concat(),
            "knativebrokerttl exhausted",
        ),
    ];
    for (headers, expected) in cases {
        let r = post(&url, &headers, "").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{headers:?}");
        assert!(
            r.error().contains(expected),
            "{headers:?}: {:?} lacks {expected:?}",
            r.error()
        );
    }
    let bad_json = post(
        &url,
        &[("content-type", "application/cloudevents+json")],
        "{not json",
    )
    .await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_json.error().contains("malformed JSON"),
        "{}",
        bad_json.error()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sub.count(), 0, "nothing refused may be delivered");
    ember.stop().await;
}

#[tokio::test]
async fn hostile_binary_headers_are_400_and_never_delivered() {
    let (ember, sub, url) = setup().await;
    let big = "a".repeat(64 * 1024);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("ce-subject", "%")], "percent-encoding"),
        (vec![("ce-subject", "%0")], "percent-encoding"),
        (vec![("ce-subject", "%g0")], "percent-encoding"),
        (
            vec![("ce-subject", "\"unterminated")],
            "unterminated quoted string",
        ),
        (vec![("ce-subject", "a%0Ab")], "U+000A"),
        (vec![("ce-subject", "a%7Fb")], "U+007F"),
        (vec![("ce-subject", "%C2%85")], "U+0085"),
        (vec![("ce-id", "again")], "ce-id: appears more than once"),
        (
            vec![("ce-specversion", "1.0")],
            "ce-specversion: appears more than once",
        ),
        (
            vec![
                ("content-type", "text/plain"),
                ("content-type", "text/html"),
            ],
            "content-type: appears more than once",
        ),
        (vec![("content-type", "xyz")], "not an RFC 2046 media type"),
        (vec![("ce-time", "9999-12-31T23:00:00-02:00")], "time"),
        (vec![("ce-dataschema", "no-scheme")], "dataschema"),
        (vec![("ce-big", big.as_str())], "at most 6144"),
    ];
    for (extra, expected) in cases {
        let headers = [binary_event("h", "t"), extra.clone()].concat();
        let r = post(&url, &headers, "x").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(r.error().contains(expected), "{extra:?}: {}", r.error());
    }
    // Too many attributes.
    let names: Vec<String> = (0..61).map(|i| format!("ce-x{i}")).collect();
    let mut headers = binary_event("h", "t");
    headers.extend(names.iter().map(|n| (n.as_str(), "v")));
    let r = post(&url, &headers, "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("at most 64"), "{}", r.error());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sub.count(), 0, "nothing refused may be delivered");
    ember.stop().await;
}

#[tokio::test]
async fn hostile_structured_events_are_400() {
    let (ember, sub, url) = setup().await;
    let json = [("content-type", "application/cloudevents+json")];
    let big = "a".repeat(64 * 1024);
    let big_member = format!(r#""big":"{big}""#);
    for (member, expected) in [
        (r#""datacontenttype":"xyz""#, "datacontenttype"),
        (r#""datacontenttype":"""#, "datacontenttype"),
        (r#""time":5"#, "time: must be a timestamp"),
        (r#""subject":7"#, "subject: must be a string"),
        (r#""subject":"""#, "subject: must be non-empty"),
        (r#""ext":"nul\u0000""#, "U+0000"),
        (r#""id":"again""#, "\"id\" appears more than once"),
        (big_member.as_str(), "at most 6144"),
    ] {
        let body = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t",{member}}}"#);
        let r = post(&url, &json, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{member}");
        assert!(r.error().contains(expected), "{member}: {}", r.error());
    }
    let proto = [("content-type", "application/cloudevents+protobuf")];
    let base = CloudEvent {
        id: "p".into(),
        source: "/s".into(),
        spec_version: "1.0".into(),
        r#type: "t".into(),
        ..Default::default()
    };
    let with = |name: &str, attr: Attr| {
        let mut e = base.clone();
        e.attributes
            .insert(name.into(), AttributeValue { attr: Some(attr) });
        e.encode_to_vec()
    };
    let ts = |seconds, nanos| Attr::CeTimestamp(prost_types::Timestamp { seconds, nanos });
    for (body, expected) in [
        (
            with("time", Attr::CeInteger(5)),
            "time: must be a timestamp",
        ),
        (with("time", Attr::CeString(String::new())), "time"),
        (with("subject", Attr::CeInteger(5)), "subject"),
        (with("subject", Attr::CeString(String::new())), "subject"),
        (with("time", ts(0, 1_000_000_000)), "nanos"),
        (with("time", ts(253_402_300_800, 0)), "0001-9999"),
        (with("dataschema", Attr::CeUri(String::new())), "dataschema"),
    ] {
        let r = post(&url, &proto, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error().contains(expected), "{}", r.error());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sub.count(), 0, "nothing refused may be delivered");
    ember.stop().await;
}

#[tokio::test]
async fn content_type_reaches_the_subscriber_as_sent() {
    let (ember, sub, url) = setup().await;
    let mut headers = binary_event("ct-1", "t");
    headers.push(("content-type", "text/plain; charset=utf-8"));
    assert_eq!(
        post(&url, &headers, "hi").await.status,
        StatusCode::ACCEPTED
    );
    let structured = r#"{"specversion":"1.0","id":"ct-2","source":"/s","type":"t","datacontenttype":"text/plain; charset=\"utf-8\"","data":"hi"}"#;
    let json = [("content-type", "application/cloudevents+json")];
    assert_eq!(
        post(&url, &json, structured).await.status,
        StatusCode::ACCEPTED
    );
    // JSON data with no datacontenttype is application/json once it leaves the JSON format.
    let implied =
        r#"{"specversion":"1.0","id":"ct-3","source":"/s","type":"t","data":{"a":[1,2]}}"#;
    assert_eq!(
        post(&url, &json, implied).await.status,
        StatusCode::ACCEPTED
    );
    wait_for(&sub, 3).await;
    let got = sub.received();
    assert_eq!(
        got[0].header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        got[1].header("content-type"),
        Some("text/plain; charset=\"utf-8\"")
    );
    assert_eq!(&got[1].body[..], b"hi");
    assert_eq!(got[2].header("content-type"), Some("application/json"));
    assert_eq!(&got[2].body[..], br#"{"a":[1,2]}"#);
    ember.stop().await;
}

#[tokio::test]
async fn events_in_0_3_leave_in_0_3_with_the_same_data() {
    let sub = Subscriber::start().await;
    let structured = Subscriber::start().await;
    let ember = TestEmber::start(&format!(
        "{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: json}}\n\
         spec:\n  broker: default\n  subscriber: {{uri: \"{}\"}}\n  delivery: {{format: json}}\n",
        config(&sub, ""),
        structured.uri()
    ))
    .await;
    let url = ember.url("/default/default");
    // Structured 0.3 with base64 data: decoded once.
    let body = r#"{"specversion":"0.3","id":"v1","source":"/s","type":"t","datacontenttype":"application/octet-stream","datacontentencoding":"base64","data":"AAEC"}"#;
    let json = [("content-type", "application/cloudevents+json")];
    assert_eq!(post(&url, &json, body).await.status, StatusCode::ACCEPTED);
    // Binary 0.3 with bytes that are not text.
    let mut headers = binary_event("v2", "t");
    headers[0] = ("ce-specversion", "0.3");
    headers.push(("content-type", "application/octet-stream"));
    assert_eq!(
        post(&url, &headers, vec![0u8, 159, 146, 150]).await.status,
        StatusCode::ACCEPTED
    );
    wait_for(&sub, 2).await;
    assert!(eventually(Duration::from_secs(10), || structured.count() >= 2).await);
    let binary = sub.received();
    assert_eq!(binary[0].header("ce-specversion"), Some("0.3"));
    assert_eq!(binary[0].header("ce-datacontentencoding"), None);
    assert_eq!(&binary[0].body[..], &[0, 1, 2]);
    assert_eq!(&binary[1].body[..], &[0, 159, 146, 150]);
    for (got, b64) in structured.received().iter().zip(["AAEC", "AJ+Slg=="]) {
        let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(v["specversion"], "0.3");
        assert_eq!(v["datacontentencoding"], "base64");
        assert_eq!(v["data"], b64);
        assert!(v.get("data_base64").is_none(), "{v}");
    }
    ember.stop().await;
}

#[tokio::test]
async fn ttl_is_decremented_when_present() {
    let (ember, sub, url) = setup().await;
    let mut headers = binary_event("ttl", "t");
    headers.push(("ce-knativebrokerttl", "5"));
    assert_eq!(post(&url, &headers, "").await.status, StatusCode::ACCEPTED);
    wait_for(&sub, 1).await;
    assert_eq!(sub.received()[0].header("ce-knativebrokerttl"), Some("4"));
    ember.stop().await;
}

#[tokio::test]
async fn unknown_broker_is_404_and_other_paths_too() {
    let (ember, _sub, _url) = setup().await;
    let r = post(&ember.url("/default/nope"), &binary_event("1", "t"), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("no such broker"));
    let r = post(&ember.url("/a/b/c"), &binary_event("1", "t"), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    ember.stop().await;
}

#[tokio::test]
async fn other_methods_are_405_and_options_answers_the_webhook_handshake() {
    let (ember, _sub, url) = setup().await;
    for m in [Method::GET, Method::PUT, Method::DELETE] {
        let r = request(m.clone(), &url, &[], "").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert_eq!(r.headers["allow"], "POST, OPTIONS");
    }
    let r = request(
        Method::OPTIONS,
        &url,
        &[("webhook-request-origin", "eventemitter.example.com")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["webhook-allowed-origin"],
        "eventemitter.example.com"
    );
    assert!(r.headers.contains_key("webhook-allowed-rate"));
    ember.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let sub = Subscriber::start().await;
    let ember = TestEmber::start(&config(&sub, "ember.dev/max-event-bytes: \"1024\"")).await;
    let url = ember.url("/default/default");
    let r = post(&url, &binary_event("big", "t"), vec![b'x'; 1025]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.error().contains("1024"));
    let r = post(&url, &binary_event("ok", "t"), vec![b'x'; 1000]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    ember.stop().await;
}

#[tokio::test]
async fn unknown_structured_format_is_415() {
    let (ember, _sub, url) = setup().await;
    let r = post(
        &url,
        &[("content-type", "application/cloudevents+avro")],
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.error().contains("application/cloudevents+avro"));
    ember.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let (ember, _sub, _url) = setup().await;
    assert_eq!(
        request(Method::GET, &ember.url("/healthz"), &[], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        request(Method::GET, &ember.url("/readyz"), &[], "")
            .await
            .status,
        StatusCode::OK
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_append_queue_is_503_with_retry_after_and_nothing_is_lost() {
    use ember_broker::broker::{Broker, BrokerConfig};
    use ember_broker::log::Durability;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let broker = Arc::new(
        Broker::open(
            BrokerConfig {
                namespace: "default".into(),
                name: "tiny".into(),
                data_dir: dir.path().to_owned(),
                durability: Durability::Fsync,
                segment_bytes: 1 << 20,
                retention: Duration::from_secs(3600),
                max_event_bytes: 1 << 20,
                queue_capacity: 2,
                disk_budget: None,
            },
            vec![],
        )
        .unwrap(),
    );
    let directory = ember_broker::delivery::BrokerDirectory::default();
    directory.insert(broker.clone());
    let router = Arc::new(ember::server::Router::new(directory, Default::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/default/tiny", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(ember::server::serve(
        listener,
        router,
        Default::default(),
        stopped,
        Duration::from_secs(5),
    ));

    // Hold the log writer: one append is taken by it, two fill the queue, the rest overflow.
    let pause = broker.log().pause_writer();
    let mut sends = Vec::new();
    for i in 0..6 {
        let url = url.clone();
        sends.push(tokio::spawn(async move {
            let id = format!("q{i}");
            post(&url, &binary_event(&id, "t"), "x").await
        }));
    }
    let full = eventually(Duration::from_secs(10), || {
        sends.iter().filter(|s| s.is_finished()).count() >= 3
    })
    .await;
    assert!(full, "requests beyond the queue are answered at once");
    drop(pause);
    let mut accepted = 0;
    let mut refused = 0;
    for s in sends {
        let r = s.await.unwrap();
        match r.status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(r.headers["retry-after"], "1");
                assert!(r.error().contains("full"), "{}", r.error());
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused >= 3, "{refused} refused");
    // Exactly the accepted events are in the log.
    assert_eq!(*broker.log().committed().borrow(), accepted);
    let _ = stop.send(true);
    server.await.unwrap();
    broker.close().await.unwrap();
}
