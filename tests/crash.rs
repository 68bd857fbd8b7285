//! Crash safety of the `ember` binary: every event that got a 202 is delivered at least once,
//! even when Ember is SIGKILLed mid-stream — also to each of many triggers while their cursors
//! are being written; a hand-torn log tail is recovered.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{binary_event, ember_bin, eventually, post, try_request};
use http::StatusCode;
use tokio::net::TcpListener;

/// A free loopback port (bound then released; the OS does not hand it out again at once), for a
/// subscriber that must come back on the same port later.
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
    /// Ember's log lines, read as they come so a full pipe never blocks it.
    stderr: Arc<Mutex<Vec<String>>>,
}

/// A test that fails midway leaves no Ember running.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ember run` on an ephemeral port (`--listen 127.0.0.1:0`) and waits for the line that
/// says where it listens.
async fn start_ember(config: &std::path::Path, data_dir: &std::path::Path) -> Running {
    let mut child = Command::new(ember_bin())
        .args(["run", "-f"])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--shutdown-grace", "1s"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ember starts");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let lines = stderr.clone();
    let pipe = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            lines.lock().unwrap().push(line);
        }
    });
    let base = || {
        stderr.lock().unwrap().iter().find_map(|l| {
            let at = l.find("ember is running; send events to http://")?;
            let rest = &l[at + "ember is running; send events to ".len()..];
            let port: String = rest["http://127.0.0.1:".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Some(format!("http://127.0.0.1:{port}"))
        })
    };
    let started = eventually(Duration::from_secs(60), || base().is_some()).await;
    assert!(started, "ember did not start: {:?}", stderr.lock().unwrap());
    Running {
        child,
        url: format!("{}/default/default", base().unwrap()),
        stderr,
    }
}

/// Waits for Ember to exit; its log.
fn stderr_of(mut ember: Running) -> String {
    let _ = ember.child.wait();
    // The reader thread ends with the pipe; give it a moment to take the last lines.
    for _ in 0..50 {
        if Arc::strong_count(&ember.stderr) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ember.stderr.lock().unwrap().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill() {
    let sub = Subscriber::start().await;
    let sub_port = sub.addr.port();
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
    let _ = stderr_of(ember);
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
    let mut ember = ember;
    let status = ember.child.wait().unwrap();
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
    let stderr = stderr_of(ember);
    assert!(
        stderr.contains("trunc"),
        "recovery logs the truncation: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_redelivers_after_restart() {
    let sub = Subscriber::start().await;
    let sub_port = sub.addr.port();
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
    let _ = stderr_of(ember);
}

/// Many triggers, one subscriber each.
fn write_many_triggers_config(
    dir: &std::path::Path,
    subscribers: &[Subscriber],
) -> std::path::PathBuf {
    let mut yaml = String::from(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n\
         spec:\n  delivery: {retry: 1000, backoffPolicy: linear, backoffDelay: PT0.05S}\n",
    );
    for (i, sub) in subscribers.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t{i}}}\n\
             spec:\n  broker: default\n  subscriber: {{uri: \"{}\"}}\n",
            sub.uri()
        ));
    }
    let file = dir.join("ember.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_many_triggers_write_their_cursors_skips_no_event_for_any_trigger() {
    const TRIGGERS: usize = 40;
    let mut subscribers = Vec::new();
    for _ in 0..TRIGGERS {
        let sub = Subscriber::start().await;
        // Slow enough that every trigger has deliveries in flight when Ember is killed.
        sub.set_delay(Duration::from_millis(5));
        subscribers.push(sub);
    }
    let config_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let config = write_many_triggers_config(config_dir.path(), &subscribers);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let delivered =
        |subscribers: &[Subscriber]| -> usize { subscribers.iter().map(Subscriber::count).sum() };

    // Three rounds: send under load, and SIGKILL Ember while every trigger is delivering, so
    // its cursors are being written (all of them every 100 ms).
    for round in 0..3 {
        let mut ember = start_ember(&config, data_dir.path()).await;
        let before = delivered(&subscribers);
        let mut senders = Vec::new();
        for s in 0..4 {
            let (url, acked) = (ember.url.clone(), acked.clone());
            senders.push(tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("{round}-{s}-{i}");
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
        let busy = eventually(Duration::from_secs(30), || {
            delivered(&subscribers) - before >= 40 * TRIGGERS
        })
        .await;
        assert!(busy, "deliveries under way in round {round}");
        ember.child.kill().expect("SIGKILL");
        let _ = ember.child.wait();
        for s in senders {
            let _ = s.await;
        }
    }

    // Restart: every acknowledged event reaches every trigger's subscriber (at least once).
    let ember = start_ember(&config, data_dir.path()).await;
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let missing = |sub: &Subscriber| -> Vec<String> {
        let got: HashSet<String> = sub.ids().into_iter().collect();
        acked.difference(&got).cloned().collect()
    };
    eventually(Duration::from_secs(120), || {
        subscribers.iter().all(|s| missing(s).is_empty())
    })
    .await;
    let skipped: Vec<String> = subscribers
        .iter()
        .enumerate()
        .filter_map(|(i, sub)| {
            let m = missing(sub);
            (!m.is_empty())
                .then(|| format!("t{i}: {} events, e.g. {:?}", m.len(), &m[..m.len().min(3)]))
        })
        .collect();
    assert!(
        skipped.is_empty(),
        "triggers skipped acknowledged events: {skipped:#?}"
    );
    let broker_dir = data_dir.path().join("brokers/default/default");
    assert!(broker_dir.join("cursors.journal").exists());
    assert!(!broker_dir.join("cursors").exists(), "no file per trigger");
    unsafe { libc::kill(ember.child.id() as i32, libc::SIGTERM) };
    let _ = stderr_of(ember);
}
