//! The destinations sources send to, through the `EventSink` contract: a broker appends a batch
//! with one arrival time and refuses what is over its disk budget for later and what is invalid
//! for good; a URL's answers map to `Ok`, a refusal for later (with the `Retry-After` it asked
//! for) or a refusal for good, by Knative's retry rules.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ember_broker::broker::{Broker, BrokerConfig};
use ember_broker::delivery::http_client;
use ember_broker::log::Durability;
use ember_broker::sink::{DISK_BUDGET_USED_UP, HttpSink};
use ember_event::sink::{EventSink, Prepared, Retry};
use ember_event::{self as event, CloudEvent, Data};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn open_broker(dir: &Path, disk_budget: Option<u64>) -> Broker {
    Broker::open(
        BrokerConfig {
            namespace: "default".into(),
            name: "default".into(),
            data_dir: dir.to_owned(),
            durability: Durability::None,
            segment_bytes: 1 << 20,
            retention: Duration::ZERO,
            max_event_bytes: 1 << 20,
            queue_capacity: 64,
            disk_budget,
        },
        Vec::new(),
    )
    .unwrap()
}

fn event(id: &str, data: usize) -> CloudEvent {
    CloudEvent {
        id: id.into(),
        source: "/test".into(),
        spec_version: "1.0".into(),
        r#type: "com.example.test".into(),
        data: Some(Data::BinaryData(Bytes::from(vec![b'x'; data]))),
        ..Default::default()
    }
}

async fn send(sink: &dyn EventSink, events: Vec<CloudEvent>) -> Vec<Result<(), Retry>> {
    let prepared: Vec<Prepared> = events
        .into_iter()
        .map(|e| sink.prepare(e).expect("a valid event"))
        .collect();
    let batch: Vec<&Prepared> = prepared.iter().collect();
    sink.send(&batch)
        .await
        .into_iter()
        .map(|a| a.map_err(|r| r.retry))
        .collect()
}

#[tokio::test]
async fn a_broker_appends_a_batch_with_one_arrival_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_broker(dir.path(), None);
    let answers = send(
        &broker,
        vec![event("a", 10), event("b", 10), event("c", 10)],
    )
    .await;
    assert_eq!(answers, vec![Ok(()), Ok(()), Ok(())]);
    assert_eq!(broker.end_offset(), 3);
    let mut reader = broker.log().reader(0);
    let records = reader.read_batch(10, 1 << 20).unwrap();
    let arrivals: Vec<String> = records
        .iter()
        .map(|(_, payload)| {
            let e = event::decode(payload).unwrap();
            event::canonical_string(e.attributes["knativearrivaltime"].attr.as_ref().unwrap())
                .into_owned()
        })
        .collect();
    assert_eq!(arrivals.len(), 3);
    assert!(arrivals.iter().all(|a| *a == arrivals[0]), "{arrivals:?}");
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_broker_over_its_disk_budget_refuses_for_later_and_appends_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 4096;
    let broker = open_broker(dir.path(), Some(budget));
    assert!(broker.disk_used() < 1024, "{}", broker.disk_used());
    let prepared: Vec<Prepared> = (0..4)
        .map(|i| broker.prepare(event(&format!("e{i}"), 1500)).unwrap())
        .collect();
    let batch: Vec<&Prepared> = prepared.iter().collect();
    let answers = broker.send(&batch).await;
    let appended = answers.iter().take_while(|a| a.is_ok()).count();
    assert!((1..4).contains(&appended), "{answers:?}");
    for refused in &answers[appended..] {
        let refused = refused.as_ref().unwrap_err();
        assert_eq!(refused.reason, DISK_BUDGET_USED_UP);
        assert!(
            matches!(refused.retry, Retry::After(wait) if wait > Duration::ZERO),
            "{refused:?}"
        );
    }
    assert_eq!(broker.end_offset(), appended as u64);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn an_invalid_event_is_refused_for_good_by_either_sink() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_broker(dir.path(), None);
    let url = HttpSink::new(http_client(), "http://127.0.0.1:1/".parse().unwrap());
    for sink in [&broker as &dyn EventSink, &url] {
        let mut bad = event("x", 1);
        bad.source.clear();
        let refused = sink.prepare(bad).unwrap_err();
        assert_eq!(refused.retry, Retry::Never, "{}", sink.name());
        assert!(refused.reason.contains("source"), "{}", refused.reason);
    }
    assert_eq!(broker.name(), "default/default");
    assert_eq!(EventSink::name(&url), "http://127.0.0.1:1/");
    broker.close().await.unwrap();
}

/// A receiver that answers each request with the next scripted response (the last one
/// repeats) and records the `ce-id` of what it got.
async fn receiver(script: Vec<(u16, Option<&'static str>)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        let script = Arc::new(Mutex::new(script));
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let script = script.clone();
            let seen = seen.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let script = script.clone();
                let seen = seen.clone();
                async move {
                    let id = req
                        .headers()
                        .get("ce-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = req.into_body().collect().await;
                    seen.lock().unwrap().push(id);
                    let (status, retry_after) = {
                        let mut s = script.lock().unwrap();
                        if s.len() > 1 { s.remove(0) } else { s[0] }
                    };
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Some(v) = retry_after {
                        resp.headers_mut()
                            .insert(http::header::RETRY_AFTER, v.parse().unwrap());
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test]
async fn a_url_sink_maps_statuses_to_ok_later_or_never() {
    for (status, retry_after, expected) in [
        (200, None, Ok(())),
        (202, None, Ok(())),
        (204, None, Ok(())),
        (429, Some("7"), Err(Retry::After(Duration::from_secs(7)))),
        (503, Some("3"), Err(Retry::After(Duration::from_secs(3)))),
        (500, None, Err(Retry::After(Duration::from_millis(200)))),
        (404, None, Err(Retry::After(Duration::from_millis(200)))),
        (408, None, Err(Retry::After(Duration::from_millis(200)))),
        (400, None, Err(Retry::Never)),
        (401, None, Err(Retry::Never)),
        (413, None, Err(Retry::Never)),
        (302, None, Err(Retry::Never)),
    ] {
        let (url, got) = receiver(vec![(status, retry_after)]).await;
        let sink = HttpSink::new(http_client(), url.parse().unwrap());
        let answers = send(&sink, vec![event("one", 3)]).await;
        assert_eq!(answers, vec![expected], "status {status}");
        assert_eq!(*got.lock().unwrap(), vec!["one".to_owned()]);
    }
}

#[tokio::test]
async fn a_url_sink_answers_each_event_and_every_event_of_a_batch() {
    let (url, got) = receiver(vec![
        (202, None),
        (503, Some("2")),
        (400, None),
        (200, None),
    ])
    .await;
    let sink = HttpSink::new(http_client(), url.parse().unwrap());
    // One at a time, so that the script's order is the events' order.
    let mut answers = Vec::new();
    for id in ["a", "b", "c", "d"] {
        answers.extend(send(&sink, vec![event(id, 1)]).await);
    }
    assert_eq!(
        answers,
        vec![
            Ok(()),
            Err(Retry::After(Duration::from_secs(2))),
            Err(Retry::Never),
            Ok(())
        ]
    );
    assert_eq!(got.lock().unwrap().len(), 4);
    let batch = send(
        &sink,
        (0..100).map(|i| event(&format!("b{i}"), 1)).collect(),
    )
    .await;
    assert_eq!(batch.len(), 100);
    assert!(batch.iter().all(Result::is_ok));
}

#[tokio::test]
async fn an_unreachable_url_is_refused_for_later() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let sink = HttpSink::new(http_client(), format!("http://{addr}/").parse().unwrap());
    let answers = send(&sink, vec![event("a", 1)]).await;
    assert!(matches!(answers[0], Err(Retry::After(_))), "{answers:?}");
}
