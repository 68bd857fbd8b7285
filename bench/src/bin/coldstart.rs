//! Cold-start benchmark (BENCHMARKS.md): how long a request waits when the function is at zero,
//! next to how long the function takes to start on its own.
//!
//! 1. Alone: `--rounds` times, start `--function` with a free `PORT` and time exec → the port
//!    accepting a connection (probed every 50 µs), then kill it.
//! 2. Through Ember: `--rounds` times, wait `--idle` (longer than the Service's scale-to-zero
//!    grace period, so it is at zero), then time one GET with `Host: --host` to `--ember` on a
//!    new connection, from before connecting to the last byte of the answer. Each answer's `pid`
//!    must be new (the function reports it), proving the start was cold.
//!
//! Ember's share is the difference of the two distributions.

use std::time::{Duration, Instant};

use clap::Parser;
use ember_bench::{quantile, summary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// Ember's listener, e.g. 127.0.0.1:8080.
    #[arg(long)]
    ember: std::net::SocketAddr,
    /// The Service's host, e.g. hello.default.localhost.
    #[arg(long)]
    host: String,
    /// The function's program, started alone for the baseline.
    #[arg(long)]
    function: String,
    /// Wakes measured each way.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Wait before each wake, in milliseconds (longer than the grace period).
    #[arg(long, default_value_t = 700)]
    idle: u64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn alone(function: &str) -> Duration {
    let port = free_port();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(function)
        .env("PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the function starts");
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
    let took = started.elapsed();
    let _ = child.kill().await;
    took
}

async fn through_ember(ember: std::net::SocketAddr, host: &str) -> (Duration, String) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(ember)
        .await
        .expect("ember listens");
    s.set_nodelay(true).unwrap();
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&resp).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let pid = text
        .split("\"pid\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_default()
        .to_owned();
    (took, pid)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    println!(
        "## cold start: {} wakes each way, idle {} ms before each",
        args.rounds, args.idle
    );
    let mut starts = Vec::new();
    for _ in 0..args.rounds {
        starts.push(alone(&args.function).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let starts = summary("function alone", starts);
    let mut wakes = Vec::new();
    let mut pids = std::collections::HashSet::new();
    for _ in 0..args.rounds {
        tokio::time::sleep(Duration::from_millis(args.idle)).await;
        let (took, pid) = through_ember(args.ember, &args.host).await;
        assert!(
            pids.insert(pid.clone()),
            "pid {pid} answered twice: not a cold start"
        );
        wakes.push(took);
    }
    let wakes = summary("through Ember", wakes);
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        println!(
            "Ember's share at {label}: {:.3} ms",
            (quantile(&wakes, q).as_secs_f64() - quantile(&starts, q).as_secs_f64()) * 1e3
        );
    }
}
