//! Baseline for log benchmarks: how many 1 KiB write + fdatasync rounds per second the disk
//! does, single-threaded, appending to one file (what an unbatched durable log could reach).

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Directory for the scratch file (use the disk Ember's data directory is on).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// How long to measure.
    #[arg(long, default_value = "5")]
    seconds: u64,
    /// Bytes written before each fdatasync.
    #[arg(long, default_value = "1024")]
    bytes: usize,
    /// Zero-fill this many MiB first and overwrite them in place (no file growth per sync).
    #[arg(long)]
    prealloc_mib: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let path = args.dir.join(format!(".fsync-rate-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let buf = vec![0x5au8; args.bytes];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(args.seconds) {
        let t = Instant::now();
        file.write_all(&buf)?;
        file.sync_data()?;
        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    let elapsed = start.elapsed();
    std::fs::remove_file(&path)?;
    lat.sort_unstable();
    println!(
        "fdatasync: {} rounds in {:.2}s = {:.0}/s; latency p50 {} p99 {}",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        ember_bench::ms(ember_bench::percentile(&lat, 50.0)),
        ember_bench::ms(ember_bench::percentile(&lat, 99.0)),
    );
    Ok(())
}
