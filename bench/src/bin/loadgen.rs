//! A closed-loop (or fixed-rate) HTTP load generator for CloudEvents ingress.
//!
//! Each connection is one keep-alive HTTP/1.1 connection sending binary-mode CloudEvents POSTs
//! one after another. Without `--rate` it sends as fast as responses come back (peak
//! throughput). With `--rate` the total rate is spread over the connections on a fixed schedule
//! and latency is measured from each request's scheduled time, so a stall is not hidden
//! (no coordinated omission). With `--pid` it samples the target's RSS every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Target URL (http only), e.g. http://127.0.0.1:8080/default/default.
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value = "64")]
    connections: usize,
    /// Seconds to measure (after the warm-up).
    #[arg(long, default_value = "10")]
    seconds: u64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value = "2")]
    warmup: u64,
    /// Event data size in bytes.
    #[arg(long, default_value = "1024")]
    body_bytes: usize,
    /// Fixed total request rate per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// PID whose RSS to sample every second.
    #[arg(long)]
    pid: Option<u32>,
    /// An extra request header, `NAME: VALUE` (repeatable), e.g. a webhook signature.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Send a plain request (no `ce-` headers), as a webhook provider does.
    #[arg(long)]
    plain: bool,
    /// Content type of the body.
    #[arg(long, default_value = "application/octet-stream")]
    content_type: String,
}

/// Per-request settings shared by the connections.
#[derive(Clone)]
struct Shape {
    headers: Vec<(String, String)>,
    plain: bool,
    content_type: String,
}

struct ConnResult {
    latencies_us: Vec<u32>,
    ok: u64,
    errors: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let uri: hyper::Uri = args.url.parse()?;
    let host = uri.host().unwrap_or("127.0.0.1").to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let addr = format!("{host}:{port}");
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let shape = Shape {
        headers: args
            .headers
            .iter()
            .filter_map(|h| h.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect(),
        plain: args.plain,
        content_type: args.content_type.clone(),
    };
    let per_conn_interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.connections as f64 / r));

    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (addr, uri, body, shape) = (addr.clone(), uri.clone(), body.clone(), shape.clone());
        let (stop, measuring) = (stop.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            connection(
                c,
                &addr,
                uri,
                body,
                shape,
                per_conn_interval,
                stop,
                measuring,
            )
            .await
        }));
    }

    let rss_task = args.pid.map(|pid| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = ember_bench::rss_kib(pid) {
                    samples.push(kib);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            samples
        })
    });

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);

    let mut all = Vec::new();
    let (mut ok, mut errors) = (0, 0);
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        let r = t.await?;
        all.extend(r.latencies_us);
        ok += r.ok;
        errors += r.errors;
        for (s, n) in r.statuses {
            *statuses.entry(s).or_insert(0) += n;
        }
    }
    all.sort_unstable();
    let p = |q| ember_bench::ms(ember_bench::percentile(&all, q));
    println!(
        "{} conns, {} B bodies{}: {ok} ok, {errors} errors in {:.2}s = {:.0} req/s; latency p50 {} p90 {} p99 {} max {}",
        args.connections,
        args.body_bytes,
        args.rate
            .map(|r| format!(", target {r:.0}/s"))
            .unwrap_or_default(),
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        p(50.0),
        p(90.0),
        p(99.0),
        p(100.0),
    );
    if statuses.keys().any(|s| !(200..300).contains(s)) {
        println!("statuses: {statuses:?}");
    }
    if let Some(task) = rss_task {
        let samples = task.await?;
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            let max = samples.iter().max().copied().unwrap_or(0);
            println!(
                "target RSS: first {:.1} MiB, max {:.1} MiB, last {:.1} MiB ({} samples)",
                *first as f64 / 1024.0,
                max as f64 / 1024.0,
                *last as f64 / 1024.0,
                samples.len()
            );
            let every_10s: Vec<String> = samples
                .iter()
                .step_by(10)
                .map(|kib| format!("{:.1}", *kib as f64 / 1024.0))
                .collect();
            println!("target RSS every 10 s (MiB): {}", every_10s.join(" "));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    index: usize,
    addr: &str,
    uri: hyper::Uri,
    body: Bytes,
    shape: Shape,
    interval: Option<Duration>,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
) -> ConnResult {
    let mut result = ConnResult {
        latencies_us: Vec::with_capacity(1 << 16),
        ok: 0,
        errors: 0,
        statuses: Default::default(),
    };
    let mut sender = None;
    // Spread the fixed-rate schedules of the connections over one interval.
    let mut next = Instant::now()
        + interval
            .map(|i| i.mul_f64(index as f64 / 64.0))
            .unwrap_or_default();
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let scheduled = match interval {
            Some(i) => {
                let now = Instant::now();
                if next > now {
                    tokio::time::sleep(next - now).await;
                }
                let s = next;
                next += i;
                s
            }
            None => Instant::now(),
        };
        if sender.is_none() {
            match connect(addr).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    result.errors += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        seq += 1;
        let mut req =
            Request::post(uri.clone()).header("content-type", shape.content_type.as_str());
        // A `--header host: ...` replaces the URL's (to reach a Service by Host).
        if !shape
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            req = req.header(
                "host",
                uri.authority().map(|a| a.as_str()).unwrap_or("localhost"),
            );
        }
        if !shape.plain {
            req = req
                .header("ce-specversion", "1.0")
                .header("ce-id", format!("{index}-{seq}"))
                .header("ce-source", "/loadgen")
                .header("ce-type", "dev.ember.bench");
        }
        for (k, v) in &shape.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(body.clone())).expect("valid request");
        match s.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                if measuring.load(Ordering::Relaxed) {
                    let us = scheduled.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    result.latencies_us.push(us);
                    *result.statuses.entry(status).or_insert(0) += 1;
                    if (200..300).contains(&status) {
                        result.ok += 1;
                    } else {
                        result.errors += 1;
                    }
                }
            }
            Err(_) => {
                result.errors += 1;
                sender = None;
            }
        }
    }
    result
}

async fn connect(
    addr: &str,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}
