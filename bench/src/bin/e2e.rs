//! End-to-end delivery benchmark: sends binary-mode CloudEvents to a target (Ember's ingress,
//! or a one-hop proxy) and runs the subscriber they are delivered to, measuring latency from
//! the moment a request is sent to the moment the subscriber has it, and deliveries per second.
//!
//! Each event carries its send time (`ce-benchsent`, ns since the Unix epoch); the subscriber
//! subtracts it from its own clock (same machine). With `--rate` the total rate is spread over
//! the connections on a fixed schedule; without it each connection sends as fast as its
//! requests are answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Args {
    /// Where events are sent, e.g. http://127.0.0.1:8089/bench/e2e.
    #[arg(long)]
    target: String,
    /// Where this tool's subscriber listens (the trigger's subscriber.uri points here).
    #[arg(long, default_value = "127.0.0.1:9200")]
    subscriber: SocketAddr,
    /// Concurrent sending connections.
    #[arg(long, default_value = "16")]
    connections: usize,
    /// Total events per second (default: as fast as the target answers).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to send and measure (after the warm-up).
    #[arg(long, default_value = "10")]
    seconds: u64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value = "2")]
    warmup: u64,
    /// Event data size in bytes.
    #[arg(long, default_value = "1024")]
    body_bytes: usize,
    /// Deliveries expected per event (the number of matching triggers).
    #[arg(long, default_value = "1")]
    copies: u64,
    /// Send nothing: only receive, measuring each delivery against its `time` attribute (for
    /// PingSources, whose `time` is the scheduled instant).
    #[arg(long)]
    receive_only: bool,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[derive(Default)]
struct Sink {
    measuring: AtomicBool,
    delivered: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
    /// Scheduled events: broker arrival minus the scheduled `time`.
    fired_us: Mutex<Vec<u32>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sink = Arc::new(Sink::default());
    let listener = TcpListener::bind(args.subscriber).await?;
    let s = sink.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let s = s.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let header_ns = |name: &str| {
                            let t = req.headers().get(name)?.to_str().ok()?;
                            let t = chrono::DateTime::parse_from_rfc3339(t).ok()?;
                            t.timestamp_nanos_opt().map(|n| n as u64)
                        };
                        let sent = req
                            .headers()
                            .get("ce-benchsent")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .or_else(|| header_ns("ce-time"));
                        // For scheduled events: how late the broker received each tick.
                        let fired = header_ns("ce-time").zip(header_ns("ce-knativearrivaltime"));
                        let _ = req.into_body().collect().await;
                        if let Some((time, arrival)) = fired
                            && s.measuring.load(Ordering::Relaxed)
                        {
                            let us = (arrival.saturating_sub(time) / 1000).min(u64::from(u32::MAX));
                            s.fired_us.lock().unwrap().push(us as u32);
                        }
                        if let Some(sent) = sent
                            && s.measuring.load(Ordering::Relaxed)
                        {
                            let us =
                                (now_ns().saturating_sub(sent) / 1000).min(u64::from(u32::MAX));
                            s.latencies_us.lock().unwrap().push(us as u32);
                            s.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = StatusCode::ACCEPTED;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    if args.receive_only {
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        sink.measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        sink.measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let mut lat = sink.latencies_us.lock().unwrap().clone();
        lat.sort_unstable();
        let p = |q| ember_bench::ms(ember_bench::percentile(&lat, q));
        println!(
            "received {} in {:.1}s ({:.0}/s); delivered after `time` p50 {} p99 {} max {}",
            lat.len(),
            elapsed.as_secs_f64(),
            lat.len() as f64 / elapsed.as_secs_f64(),
            p(50.0),
            p(99.0),
            p(100.0)
        );
        let mut fired = sink.fired_us.lock().unwrap().clone();
        fired.sort_unstable();
        let f = |q| ember_bench::ms(ember_bench::percentile(&fired, q));
        println!(
            "reached the broker after `time` (knativearrivaltime - time): p50 {} p99 {} max {}",
            f(50.0),
            f(99.0),
            f(100.0)
        );
        return Ok(());
    }
    let uri: hyper::Uri = args.target.parse()?;
    let addr = format!(
        "{}:{}",
        uri.host().unwrap_or("127.0.0.1"),
        uri.port_u16().unwrap_or(80)
    );
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.connections as f64 / r));
    let mut senders = Vec::new();
    for c in 0..args.connections {
        let (addr, uri, body) = (addr.clone(), uri.clone(), body.clone());
        let (stop, sent, measuring) = (stop.clone(), sent.clone(), measuring.clone());
        senders.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect to target");
            stream.set_nodelay(true).ok();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut next = Instant::now()
                + interval
                    .map(|i| i.mul_f64(c as f64 / 16.0))
                    .unwrap_or_default();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(i) = interval {
                    let now = Instant::now();
                    if next > now {
                        tokio::time::sleep(next - now).await;
                    }
                    next += i;
                }
                seq += 1;
                let req = Request::post(uri.clone())
                    .header("host", "bench")
                    .header("ce-specversion", "1.0")
                    .header("ce-id", format!("{c}-{seq}"))
                    .header("ce-source", "/e2e")
                    .header("ce-type", "dev.ember.bench")
                    .header("ce-benchsent", now_ns().to_string())
                    .header("content-type", "application/octet-stream")
                    .body(Full::new(body.clone()))
                    .expect("request");
                match tx.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        if ok && measuring.load(Ordering::Relaxed) {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    sink.measuring.store(true, Ordering::Relaxed);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let delivered_in_window = sink.delivered.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }
    // Let deliveries of events sent in the window arrive (their latency still counts).
    let expected = sent.load(Ordering::Relaxed) * args.copies;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.measuring.store(false, Ordering::Relaxed);
    let mut lat = sink.latencies_us.lock().unwrap().clone();
    lat.sort_unstable();
    let p = |q| ember_bench::ms(ember_bench::percentile(&lat, q));
    println!(
        "{} conns{}, copies {}: sent {} ({:.0}/s), delivered {} in window ({:.0}/s), {} of {} expected in the end; latency p50 {} p99 {} max {}",
        args.connections,
        args.rate
            .map(|r| format!(", target {r:.0}/s"))
            .unwrap_or_default(),
        args.copies,
        sent.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        delivered_in_window,
        delivered_in_window as f64 / elapsed.as_secs_f64(),
        sink.delivered.load(Ordering::Relaxed),
        expected,
        p(50.0),
        p(99.0),
        p(100.0),
    );
    Ok(())
}
