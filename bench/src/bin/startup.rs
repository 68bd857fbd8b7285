//! Start-up benchmark probe (bench/triggers.sh): runs `ember run` on a config and a data
//! directory, measures the time from spawning the process until `/readyz` answers 200, then
//! Ember's resident memory once it has settled and its peak, and stops it with SIGTERM.
//! Prints one line: `ready_ms=… rss_mib=… peak_mib=…`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The `ember` binary.
    #[arg(long)]
    ember: PathBuf,
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The port Ember listens on (127.0.0.1).
    #[arg(long, default_value = "8089")]
    port: u16,
    /// How long Ember runs after it is ready before its resident memory is read.
    #[arg(long, default_value = "2")]
    settle_seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start = Instant::now();
    let mut child = Command::new(&args.ember)
        .args(["run", "-f"])
        .arg(&args.config)
        .arg("--data-dir")
        .arg(&args.data_dir)
        .args(["--listen", &format!("127.0.0.1:{}", args.port)])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.ember.display()))?;
    let ready = loop {
        if ready(args.port) {
            break start.elapsed();
        }
        if let Some(status) = child.try_wait()? {
            bail!("ember exited before it was ready: {status}");
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("ember not ready after 120 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    std::thread::sleep(Duration::from_secs(args.settle_seconds));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (rss, peak) = (kib("VmRSS:"), kib("VmHWM:"));
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let exit = child.wait()?;
    if !exit.success() {
        bail!("ember exited with {exit}");
    }
    println!(
        "ready_ms={:.0} rss_mib={:.1} peak_mib={:.1}",
        ready.as_secs_f64() * 1000.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    Ok(())
}

/// Whether `GET /readyz` answers 200.
fn ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
