//! Crash safety of the `ember` binary: every event that got a 202 is delivered at least once,
//! even when Ember is SIGKILLed mid-stream; a hand-torn log tail is recovered.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{binary_event, ember_bin, eventually, post, try_request};
use http::StatusCode;
use tokio::net::TcpListener;

/// A free loopback port (bound then released; the OS does not hand it out again at once).
async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &std::path::Path, subscriber_port: u16) -> std::path::PathBuf {
    let file = dir.join("ember.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default}}
spec:
  delivery: {{retry: 1000, backoffPolicy: linear, backoffDelay: PT0.05S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all}}
spec:
  broker: default
  subscriber: {{uri: "http://127.0.0.1:{subscriber_port}/"}}
"#
        ),
    )
    .unwrap();
    file
}

struct Running {
    child: Child,
    url: String,
}

async fn start_ember(config: &std::path::Path, data_dir: &std::path::Path) -> Running {
    let port = free_port().await;
    let child = Command::new(ember_bin())
        .args(["run", "-f"])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--shutdown-grace",
            "1s",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ember starts");
    let base = format!("http://127.0.0.1:{port}");
    let ready = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(ready, "ember did not start listening");
    Running {
        child,
        url: format!("{base}/default/default"),
    }
}

fn stderr_of(mut child: Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    let _ = child.wait();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill() {
    let sub_port = free_port().await;
    let sub = Subscriber::serve(
        TcpListener::bind(("127.0.0.1", sub_port)).await.unwrap(),
        vec![],
    );
    let config_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let config = write_config(config_dir.path(), sub_port);
    let mut ember = start_ember(&config, data_dir.path()).await;

    // Eight concurrent senders; Ember is killed while they are still sending.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut senders = Vec::new();
    for s in 0..8 {
        let (url, acked) = (ember.url.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("{s}-{i}");
                let headers = binary_event(&id, "com.example.crash");
                match try_request(http::Method::POST, &url, &headers, "{}").await {
                    Some(r) if r.status == StatusCode::ACCEPTED => {
                        acked.lock().unwrap().insert(id);
                    }
                    _ => return, // Ember is gone
                }
            }
        }));
    }
    assert!(
        eventually(Duration::from_secs(20), || acked.lock().unwrap().len()
            >= 400)
        .await
    );
    ember.child.kill().expect("SIGKILL");
    let _ = ember.child.wait();
    for s in senders {
        let _ = s.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    // Restart on the same data directory: everything acknowledged arrives (at least once).
    let ember = start_ember(&config, data_dir.path()).await;
    let all_delivered = eventually(Duration::from_secs(60), || {
        let got: HashSet<String> = sub
            .received()
            .iter()
            .filter_map(|r| r.header("ce-id").map(str::to_owned))
            .collect();
        acked.is_subset(&got)
    })
    .await;
    let got: HashSet<String> = sub
        .received()
        .iter()
        .filter_map(|r| r.header("ce-id").map(str::to_owned))
        .collect();
    let missing: Vec<_> = acked.difference(&got).take(10).collect();
    assert!(
        all_delivered,
        "{} acknowledged events never delivered, e.g. {missing:?}",
        acked.difference(&got).count()
    );
    unsafe { libc::kill(ember.child.id() as i32, libc::SIGTERM) };
    let _ = stderr_of(ember.child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_truncated_and_everything_before_it_kept() {
    // Run 1: the subscriber is down, so all ten events stay undelivered in the log.
    let sub_port = free_port().await;
    let config_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let config = write_config(config_dir.path(), sub_port);
    let ember = start_ember(&config, data_dir.path()).await;
    for i in 0..10 {
        let r = post(
            &ember.url,
            &binary_event(&format!("e{i}"), "t"),
            "0123456789",
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    unsafe { libc::kill(ember.child.id() as i32, libc::SIGTERM) };
    let mut child = ember.child;
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    // Tear the last record by hand: cut the tail segment in the middle of it.
    let log_dir = data_dir.path().join("brokers/default/default/log");
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let tail = segments.last().expect("a segment");
    let len = std::fs::metadata(tail).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(tail).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);

    // Run 2: the subscriber is up; the nine intact events arrive, the torn one does not.
    let sub = Subscriber::serve(
        TcpListener::bind(("127.0.0.1", sub_port)).await.unwrap(),
        vec![],
    );
    let ember = start_ember(&config, data_dir.path()).await;
    assert!(
        eventually(Duration::from_secs(20), || sub.count() >= 9).await,
        "got {}",
        sub.count()
    );
    // A new event is appended after the recovered records and delivered too.
    let r = post(&ember.url, &binary_event("after", "t"), "x").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(20), || sub.count() >= 10).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<String> = sub
        .received()
        .iter()
        .filter_map(|r| r.header("ce-id").map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..9)
        .map(|i| format!("e{i}"))
        .chain(["after".to_owned()])
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "delivered {ids:?}");
    unsafe { libc::kill(ember.child.id() as i32, libc::SIGTERM) };
    let stderr = stderr_of(ember.child);
    assert!(
        stderr.contains("trunc"),
        "recovery logs the truncation: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_redelivers_after_restart() {
    let sub_port = free_port().await;
    let sub = Subscriber::serve(
        TcpListener::bind(("127.0.0.1", sub_port)).await.unwrap(),
        vec![],
    );
    let config_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let config = write_config(config_dir.path(), sub_port);
    let mut ember = start_ember(&config, data_dir.path()).await;

    // The first 20 events are delivered; then the subscriber hangs with deliveries in flight.
    for i in 0..20 {
        post(&ember.url, &binary_event(&format!("a{i}"), "t"), "").await;
    }
    assert!(eventually(Duration::from_secs(10), || sub.count() == 20).await);
    // Let the positions of the delivered events reach the disk (written every 100 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    sub.hold();
    for i in 0..50 {
        post(&ember.url, &binary_event(&format!("b{i}"), "t"), "").await;
    }
    assert!(
        eventually(Duration::from_secs(10), || sub.in_progress() == 50).await,
        "deliveries in flight: {} waiting, {} answered",
        sub.in_progress(),
        sub.count()
    );
    ember.child.kill().expect("SIGKILL");
    let _ = ember.child.wait();
    sub.release();

    let ember = start_ember(&config, data_dir.path()).await;
    let everything: HashSet<String> = (0..20)
        .map(|i| format!("a{i}"))
        .chain((0..50).map(|i| format!("b{i}")))
        .collect();
    let answered = |sub: &Subscriber| sub.ids().into_iter().collect::<HashSet<_>>();
    assert!(
        eventually(Duration::from_secs(20), || answered(&sub)
            .is_superset(&everything))
        .await,
        "every event delivered at least once"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = sub.ids();
    let redelivered_a = ids.iter().filter(|id| id.starts_with('a')).count() - 20;
    assert_eq!(
        redelivered_a, 0,
        "events whose delivery finished before the crash are not redelivered"
    );
    unsafe { libc::kill(ember.child.id() as i32, libc::SIGTERM) };
    let _ = stderr_of(ember.child);
}
