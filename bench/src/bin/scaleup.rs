//! Scale-up benchmark (BENCHMARKS.md): a burst of events into a broker whose trigger delivers
//! to a Service at zero; how soon the autoscaler asks for (and gets) `--max-scale` instances,
//! and how long the backlog takes to drain next to the ideal
//! `events × service time ÷ (max-scale × containerConcurrency)`.
//!
//! The function (ember-echo with `ECHO_LOG`) appends one line per delivery to `--log`; the
//! revision's status (`status.autoscaler`) is polled every millisecond over the API.

use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// Ember's listener, e.g. 127.0.0.1:8080.
    #[arg(long)]
    ember: std::net::SocketAddr,
    /// The broker's ingress path.
    #[arg(long, default_value = "/default/default")]
    broker: String,
    /// The revision's status path.
    #[arg(long)]
    revision: String,
    /// Type of the events sent (the trigger's filter).
    #[arg(long)]
    event_type: String,
    /// The function's delivery log (one line per delivery).
    #[arg(long)]
    log: std::path::PathBuf,
    /// Events in the burst.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Instances the revision may run (`max-scale`).
    #[arg(long, default_value_t = 8)]
    max_scale: u64,
    /// `containerConcurrency`.
    #[arg(long, default_value_t = 10)]
    concurrency: u64,
    /// The function's time per event, in milliseconds.
    #[arg(long, default_value_t = 100)]
    service_ms: u64,
    /// Ember's log (text format): the autoscaler's decision is timed from its line.
    #[arg(long)]
    ember_log: Option<std::path::PathBuf>,
}

/// When Ember logged that `revision` wants `max` instances (its first such line).
fn decided_at(
    log: &std::path::Path,
    revision: &str,
    max: u64,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = std::fs::read_to_string(log).ok()?;
    let wanted = format!("to={max} ");
    text.lines()
        .filter(|l| l.contains("autoscaler: instances wanted"))
        .filter(|l| l.contains(&format!("revision={revision}")))
        .find(|l| l.contains(&wanted))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// One request on a new connection; the status and the body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let status = std::str::from_utf8(&out[9..12])
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |p| p + 4);
    (status, out[at..].to_vec())
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let before = lines(&args.log);
    let batches: Vec<Vec<u8>> = (0..args.events)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|ids| {
            let events: Vec<serde_json::Value> = ids
                .iter()
                .map(|i| {
                    serde_json::json!({"specversion": "1.0", "id": format!("{}-{i}", args.event_type),
                        "source": "/bench", "type": args.event_type, "data": {"n": i}})
                })
                .collect();
            serde_json::to_vec(&events).unwrap()
        })
        .collect();

    // The status watcher: when the decider asked for max-scale, when that many were ready.
    let watcher = {
        let (addr, path, max) = (args.ember, args.revision.clone(), args.max_scale);
        tokio::spawn(async move {
            let start = Instant::now();
            let (mut desired_at, mut ready_at) = (None, None);
            while ready_at.is_none() && start.elapsed() < Duration::from_secs(60) {
                let (_, body) = http(addr, "GET", &path, "application/json", b"").await;
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let a = &v["status"]["autoscaler"];
                if desired_at.is_none() && a["desiredReplicas"].as_u64() >= Some(max) {
                    desired_at = Some(start.elapsed());
                }
                if a["actualReplicas"].as_u64() >= Some(max) {
                    ready_at = Some(start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (start, desired_at, ready_at)
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let burst = Instant::now();
    let mut first_accepted = None;
    let mut first_wall = None;
    for b in &batches {
        let (status, body) = http(
            args.ember,
            "POST",
            &args.broker,
            "application/cloudevents-batch+json",
            b,
        )
        .await;
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
        if first_accepted.is_none() {
            first_wall = Some(chrono::Utc::now());
        }
        first_accepted.get_or_insert_with(|| burst.elapsed());
    }
    let first_accepted = first_accepted.unwrap_or_default();
    let accepted = burst.elapsed();
    let (watch_start, desired_at, ready_at) = watcher.await.unwrap();
    let offset = burst.duration_since(watch_start);
    // From the moment the first batch was durable (its 202), when the first events could be
    // matched and wait for the function.
    let since_burst = |d: Option<Duration>| {
        d.map_or("never".to_owned(), |d| {
            format!(
                "{:.1} ms",
                d.saturating_sub(offset + first_accepted).as_secs_f64() * 1e3
            )
        })
    };
    while lines(&args.log) < before + args.events {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = burst.elapsed();
    // From Ember's own log: the decision's time, to the microsecond, after the first 202.
    let revision_name = args
        .revision
        .rsplit('/')
        .next()
        .map(|r| format!("default/{r}"))
        .unwrap_or_default();
    let logged = match (&args.ember_log, first_wall) {
        (Some(log), Some(first)) => decided_at(log, &revision_name, args.max_scale)
            .map(|t| {
                format!(
                    "{:.2} ms",
                    (t - first).num_microseconds().unwrap_or(0) as f64 / 1e3
                )
            })
            .unwrap_or_else(|| "-".into()),
        _ => "-".into(),
    };
    let ideal = Duration::from_millis(
        args.events as u64 * args.service_ms / (args.max_scale * args.concurrency),
    );
    println!(
        "events {}  first 1,000 durable after {:.1} ms, all after {:.1} ms; from the first durable: decision logged after {}, desired {} seen after {}, ready after {}; drained in {:.2} s, ideal {:.2} s ({:.1}% of ideal)",
        args.events,
        first_accepted.as_secs_f64() * 1e3,
        accepted.as_secs_f64() * 1e3,
        logged,
        args.max_scale,
        since_burst(desired_at),
        since_burst(ready_at),
        drained.as_secs_f64(),
        ideal.as_secs_f64(),
        drained.as_secs_f64() / ideal.as_secs_f64() * 100.0
    );
}
