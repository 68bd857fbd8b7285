//! Container-image benchmarks (BENCHMARKS.md), against a real registry on loopback (Debian's
//! `docker-registry`) and runc:
//!
//! 1. Cold start with the image already unpacked: two Services at zero — the static busybox's
//!    `httpd` as a local process, and the same binary in an image — each woken by one GET
//!    `--rounds` times, `--idle` ms apart (longer than the stable window and grace, so both are
//!    at zero), timed from before connecting to the last byte of the answer. The difference is
//!    the container's extra cost (runc create + start, the overlay, the bundle).
//! 2. First pull: a `--pull-mb` MiB image (one incompressible layer) pulled and unpacked by
//!    Ember's image store, next to `skopeo copy` of the same image to an OCI layout (which
//!    fetches and verifies but does not unpack).

use std::time::{Duration, Instant};

use clap::Parser;
use ember_bench::{quantile, summary};
use ember_images::testing::{Entry, Registry, busybox_layer, layer, push};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// The ember binary.
    #[arg(long)]
    ember: String,
    /// A scratch directory.
    #[arg(long)]
    work: std::path::PathBuf,
    /// Wakes measured per Service.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Wait before each round, in milliseconds.
    #[arg(long, default_value_t = 9000)]
    idle: u64,
    /// Size of the image pulled, MiB (0: skip the pull benchmark).
    #[arg(long, default_value_t = 50)]
    pull_mb: usize,
}

async fn wake(ember: std::net::SocketAddr, host: &str) -> Duration {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(ember)
        .await
        .expect("ember listens");
    s.set_nodelay(true).unwrap();
    let req = format!("GET /index.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{host}: {text}");
    took
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.work).unwrap();
    let registry = Registry::start(false);
    let httpd =
        json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["exec httpd -f -p \"$PORT\" -h /www"]});
    push(
        &registry.addr,
        "bench/httpd",
        "v1",
        vec![busybox_layer()],
        httpd,
    )
    .await;
    let www = args.work.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from an image\n").unwrap();
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-autoscaler, namespace: knative-serving}}\ndata: {{scale-to-zero-grace-period: 200ms, stable-window: 6s}}\n---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: proc}}\nspec:\n  template:\n    metadata: {{annotations: {{autoscaling.knative.dev/initial-scale: \"0\"}}}}\n    spec:\n      containers: [{{command: [/bin/sh, -c, 'exec /bin/busybox httpd -f -p \"$PORT\" -h {}']}}]\n---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: img}}\nspec:\n  template:\n    metadata: {{annotations: {{autoscaling.knative.dev/initial-scale: \"0\"}}}}\n    spec:\n      containers: [{{image: '{}/bench/httpd:v1'}}]\n",
        www.display(),
        registry.addr
    );
    let file = args.work.join("ember.yaml");
    std::fs::write(&file, yaml).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut ember = tokio::process::Command::new(&args.ember)
        .arg("run")
        .arg("-f")
        .arg(&file)
        .arg("--data-dir")
        .arg(args.work.join("data"))
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--insecure-registry")
        .arg(&registry.addr)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ember starts");
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first wake pulls and unpacks the image: not measured.
    let first = wake(listen, "img.default.localhost").await;
    println!(
        "## first wake of the image Service (pull + unpack + start): {:.1} ms",
        first.as_secs_f64() * 1e3
    );
    println!(
        "## cold start: {} rounds, {} ms idle before each, image already unpacked",
        args.rounds, args.idle
    );
    let (mut procs, mut imgs) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        tokio::time::sleep(Duration::from_millis(args.idle)).await;
        procs.push(wake(listen, "proc.default.localhost").await);
        imgs.push(wake(listen, "img.default.localhost").await);
    }
    let procs = summary("busybox httpd, process", procs);
    let imgs = summary("busybox httpd, image", imgs);
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        println!(
            "the container's extra cost at {label}: {:.2} ms",
            (quantile(&imgs, q).as_secs_f64() - quantile(&procs, q).as_secs_f64()) * 1e3
        );
    }
    let _ = ember.kill().await;

    if args.pull_mb > 0 {
        let mut data = vec![0u8; args.pull_mb << 20];
        let mut rng = fastrand::Rng::with_seed(7);
        rng.fill(&mut data);
        let big = layer(&[("data.bin", Entry::File(data, 0o644))]);
        push(
            &registry.addr,
            "bench/big",
            "v1",
            vec![busybox_layer(), big],
            json!({"Cmd": ["/bin/sh"]}),
        )
        .await;
        println!("## first pull of a {} MiB image (two layers)", args.pull_mb);
        for round in 1..=3 {
            let dir = args.work.join(format!("pull-{round}"));
            let store = ember_images::ImageStore::open(
                &dir,
                ember_images::StoreSettings {
                    insecure: vec![registry.addr.clone()],
                    ..Default::default()
                },
            )
            .unwrap();
            let t = Instant::now();
            store
                .get(
                    &format!("{}/bench/big:v1", registry.addr),
                    ember_images::PullPolicy::Always,
                )
                .await
                .expect("pulled");
            let ember_took = t.elapsed();
            let oci = args.work.join(format!("skopeo-{round}"));
            let t = Instant::now();
            let status = std::process::Command::new("skopeo")
                .args(["copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{}/bench/big:v1", registry.addr))
                .arg(format!("oci:{}:v1", oci.display()))
                .status()
                .expect("skopeo runs");
            let skopeo_took = t.elapsed();
            assert!(status.success());
            println!(
                "round {round}: Ember pull + verify + unpack {:.0} ms; skopeo copy (fetch + verify, no unpack) {:.0} ms",
                ember_took.as_secs_f64() * 1e3,
                skopeo_took.as_secs_f64() * 1e3
            );
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(&oci);
        }
    }
}
