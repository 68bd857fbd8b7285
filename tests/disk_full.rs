//! A full disk is not a dead end. The `ember` binary runs with its data directory on a small
//! tmpfs that is then filled up: ingress answers 507 with `Retry-After`, webhooks 503 with
//! `Retry-After`, every event acknowledged before is delivered, and the cursors and journals
//! that cannot be written say so once rather than on every try. Once space is freed, ingress,
//! webhooks, PingSources and cursors resume by themselves, without a restart; every
//! acknowledged event is delivered exactly once and no refused one ever is; and a restart
//! afterwards recovers the same log.
//!
//! Needs root (it mounts a tmpfs), as the tests run in CI.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{Reply, binary_event, ember_bin, eventually, post};
use http::StatusCode;
use tokio::net::TcpListener;

/// A tmpfs mounted on a temporary directory, unmounted when dropped (also on panic).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Tmpfs { dir },
            other => panic!(
                "mounting a {size} tmpfs on {} failed ({other:?}): this test fills a small \
                 file system and must run as root",
                dir.path().display()
            ),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes an unprivileged writer may still use.
    fn available(&self) -> u64 {
        let path = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes()).unwrap();
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
        stat.f_bavail as u64 * stat.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: detaches at once even if something still has a file open in it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The `ember` binary, killed when dropped; its stderr (JSON log lines) is collected.
struct Ember {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Ember {
    async fn start(config: &Path, data_dir: &Path) -> Ember {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(ember_bin())
            .args(["--log-format", "json", "run", "-f"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--shutdown-grace", "1s"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ember starts");
        // Read stderr as it comes, so a full pipe never blocks Ember.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("stderr");
        let lines = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                lines.lock().unwrap().push(line);
            }
        });
        let ready = eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(
            ready,
            "ember did not start listening: {:?}",
            stderr.lock().unwrap()
        );
        Ember {
            child,
            port,
            stderr,
            reader: Some(reader),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Log lines so far, parsed.
    fn log(&self) -> Vec<serde_json::Value> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// SIGTERM, then waits for a clean exit; returns the log.
    fn stop(mut self) -> Vec<serde_json::Value> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.log()
    }
}

impl Drop for Ember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Log lines at `level` whose target contains `target`.
fn lines<'a>(
    log: &'a [serde_json::Value],
    level: &'a str,
    target: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    log.iter().filter(move |l| {
        l["level"] == level && l["target"].as_str().is_some_and(|t| t.contains(target))
    })
}

fn message(line: &serde_json::Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

fn write_config(dir: &Path, subscriber: &Subscriber) -> PathBuf {
    let token = dir.join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let file = dir.join("ember.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  annotations: {{ember.dev/segment-bytes: "16Ki", ember.dev/max-event-bytes: "4Ki"}}
spec:
  delivery: {{retry: 1000, backoffPolicy: linear, backoffDelay: PT0.05S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all}}
spec:
  broker: default
  subscriber: {{uri: "{}"}}
---
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {{name: hook}}
spec:
  path: /hooks/in
  auth: {{bearer: {{tokenFile: {}}}}}
  dedupWindow: 10m
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: tick}}
spec:
  schedule: "* * * * * *"
  data: '{{"tick": true}}'
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}
"#,
            subscriber.uri(),
            token.display()
        ),
    )
    .unwrap();
    file
}

const PING_TYPE: &str = "dev.knative.sources.ping";
const PAYLOAD: [u8; 1024] = [b'x'; 1024];

/// What the subscriber got: ids of the events sent by the test (not ticks), in order, and
/// the `time` of every tick.
fn received(sub: &Subscriber) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut ticks = Vec::new();
    for r in sub.received() {
        if r.header("ce-type") == Some(PING_TYPE) {
            ticks.push(r.header("ce-time").unwrap_or_default().to_owned());
        } else if let Some(id) = r.header("ce-id") {
            ids.push(id.to_owned());
        }
    }
    (ids, ticks)
}

async fn send(ember: &Ember, id: &str) -> Reply {
    post(
        &ember.url("/default/default"),
        &binary_event(id, "com.example.disk"),
        PAYLOAD.to_vec(),
    )
    .await
}

async fn send_webhook(ember: &Ember, id: &str) -> Reply {
    let mut headers = binary_event(id, "com.example.hook");
    headers.push(("authorization", "Bearer t0ken"));
    post(&ember.url("/hooks/in"), &headers, "{}").await
}

/// Every acknowledged id delivered exactly once, nothing else (ticks aside).
fn assert_exactly_once(sub: &Subscriber, acked: &HashSet<String>) {
    let (ids, ticks) = received(sub);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        *seen.entry(id).or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    let delivered: HashSet<String> = ids.iter().cloned().collect();
    let missing: Vec<_> = acked.difference(&delivered).collect();
    let unacked: Vec<_> = delivered.difference(acked).collect();
    assert!(
        missing.is_empty(),
        "acknowledged, never delivered: {missing:?}"
    );
    assert!(unacked.is_empty(), "refused, yet delivered: {unacked:?}");
    let distinct: HashSet<&String> = ticks.iter().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_507_until_space_is_freed_then_everything_resumes_by_itself() {
    let tmpfs = Tmpfs::mount("2m");
    let data_dir = tmpfs.path().join("data");
    let config_dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::start().await;
    let config = write_config(config_dir.path(), &sub);
    let ember = Ember::start(&config, &data_dir).await;
    let mut acked: HashSet<String> = HashSet::new();

    // Some traffic while there is room, then ticks keep coming.
    for i in 0..5 {
        let id = format!("early-{i}");
        assert_eq!(send(&ember, &id).await.status, StatusCode::ACCEPTED);
        acked.insert(id);
    }
    assert!(eventually(Duration::from_secs(10), || received(&sub).1.len() >= 2).await);

    // Fill the file system, leaving room for a few dozen events.
    let filler = tmpfs.path().join("filler");
    {
        let room = tmpfs.available().saturating_sub(64 * 1024);
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut left = room;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        f.sync_all().unwrap();
    }
    let mut refused = None;
    let mut refused_ids = HashSet::new();
    for i in 0..2000 {
        let id = format!("fill-{i}");
        let reply = send(&ember, &id).await;
        if reply.status == StatusCode::ACCEPTED {
            acked.insert(id);
        } else {
            refused_ids.insert(id);
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the disk fills up");
    assert_eq!(
        refused.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{refused:?}"
    );
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(refused.error().contains("disk"), "{}", refused.error());
    assert!(
        acked.len() > 10,
        "events fit before the disk was full: {}",
        acked.len()
    );

    // While the disk is full: refused at once, webhooks ask for a retry, and everything
    // acknowledged is delivered all the same.
    let again = send(&ember, "while-full").await;
    assert_eq!(again.status, StatusCode::INSUFFICIENT_STORAGE);
    refused_ids.insert("while-full".to_owned());
    let hook = send_webhook(&ember, "hook-1").await;
    assert_eq!(hook.status, StatusCode::SERVICE_UNAVAILABLE, "{hook:?}");
    assert!(hook.headers.contains_key("retry-after"));
    let all_delivered = |acked: &HashSet<String>| {
        let got: HashSet<String> = received(&sub).0.into_iter().collect();
        acked.is_subset(&got)
    };
    assert!(
        eventually(Duration::from_secs(20), || all_delivered(&acked)).await,
        "every event acknowledged before the disk filled up is delivered"
    );
    // The trigger's cursor cannot be written now; give its position task (every 100 ms)
    // many tries, to see that they are not each logged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        send(&ember, "still-full").await.status,
        StatusCode::INSUFFICIENT_STORAGE
    );
    refused_ids.insert("still-full".to_owned());

    // Space again: no restart, ingress accepts again within its Retry-After.
    std::fs::remove_file(&filler).unwrap();
    let ticks_at_free = received(&sub).1.len();
    let mut accepted_again = false;
    for i in 0..200 {
        let id = format!("after-{i}");
        let reply = send(&ember, &id).await;
        if reply.status == StatusCode::ACCEPTED {
            acked.insert(id);
            accepted_again = true;
            break;
        }
        assert_eq!(reply.status, StatusCode::INSUFFICIENT_STORAGE);
        refused_ids.insert(id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted_again, "ingress accepts again once space is freed");
    for i in 0..20 {
        let id = format!("later-{i}");
        assert_eq!(send(&ember, &id).await.status, StatusCode::ACCEPTED);
        acked.insert(id);
    }
    // The webhook refused earlier is accepted now, and its retry is a duplicate.
    assert_eq!(
        send_webhook(&ember, "hook-1").await.status,
        StatusCode::ACCEPTED
    );
    acked.insert("hook-1".to_owned());
    assert!(send_webhook(&ember, "hook-1").await.status.is_success());
    assert!(
        eventually(Duration::from_secs(20), || all_delivered(&acked)).await,
        "everything acknowledged is delivered"
    );
    assert!(
        eventually(Duration::from_secs(30), || received(&sub).1.len()
            > ticks_at_free)
        .await,
        "PingSource ticks resume"
    );
    let recovered = |ember: &Ember, target: &str| {
        lines(&ember.log(), "INFO", target).any(|l| message(l).contains("succeed again"))
    };
    // The cursors' journal grows by a few bytes per write, which may still fit in its last
    // page on a full disk; a write that did fail says so once it succeeds again.
    let cursor_failed = lines(&ember.log(), "WARN", "ember_broker::cursor").count() > 0;
    assert!(
        !cursor_failed
            || eventually(Duration::from_secs(10), || recovered(
                &ember,
                "ember_broker::cursor"
            ))
            .await,
        "cursor writes resume and say so"
    );
    assert!(
        recovered(&ember, "ember_broker::log"),
        "log writes resume and say so"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&sub, &acked);
    assert!(refused_ids.is_disjoint(&acked));

    // One line per cause, not one per try.
    let log = ember.stop();
    for target in [
        "ember_broker::cursor",
        "ember_broker::log",
        "ember_sources::ping::store",
        "ember_sources::webhook::dedup",
    ] {
        let noisy: Vec<&str> = lines(&log, "WARN", target)
            .chain(lines(&log, "ERROR", target))
            .map(message)
            .collect();
        assert!(noisy.len() <= 2, "{target} logged {noisy:#?}");
    }

    // A restart on the same data directory recovers the same log and redelivers nothing.
    let ember = Ember::start(&config, &data_dir).await;
    assert_eq!(send(&ember, "restarted").await.status, StatusCode::ACCEPTED);
    acked.insert("restarted".to_owned());
    assert!(eventually(Duration::from_secs(20), || all_delivered(&acked)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&sub, &acked);
    ember.stop();
}
