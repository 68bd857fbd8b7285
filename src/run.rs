//! `ember run` and `ember validate`.
//!
//! Start-up order: load and validate every file (nothing starts on a bad config); open each
//! broker's log (recovery) and cursors; bind the listener; start dispatchers; start the sources
//! (each into its resolved sink); mark ready.
//! Shutdown (SIGINT/SIGTERM), step by step:
//! 1. the shutdown signal flips: the server stops accepting and `/readyz` turns 503;
//! 2. requests in progress finish within the grace period — an ingress or webhook request
//!    finishes when its events are durable, so every 2xx sent is on disk;
//! 3. the sources stop: PingSources record the ticks under way, WebhookSources close their
//!    dedup journals;
//! 4. dispatchers stop reading, let in-flight deliveries finish within the same grace, and
//!    persist their cursors (the lowest unfinished offset);
//! 5. each log finishes its queued appends, syncs and closes; the process exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::ConfigArgs;
use crate::connection::{ConnectionArgs, ConnectionLimits};
pub use crate::topology::Ember;
use crate::wiring;

/// Options of `ember run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  ember run -f examples/quickstart/ --listen 127.0.0.1:8080\n  # events: POST http://127.0.0.1:8080/{namespace}/{broker}"
)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Where brokers keep their logs, triggers their cursors and PingSources their last ticks.
    #[arg(
        long,
        env = "EMBER_DATA_DIR",
        default_value = "./.ember",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Address of the HTTP listener: broker ingress at /{namespace}/{broker}, WebhookSource paths,
    /// /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "EMBER_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// How long in-flight requests and deliveries may take to finish on SIGINT/SIGTERM
    /// (e.g. 10s, 500ms, PT10S).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,
    /// The domain Knative Services are reached under, by Host: `{service}.{namespace}.{domain}`
    /// (and `{tag}-{service}.{namespace}.{domain}`). `localhost` needs no DNS: curl and
    /// browsers resolve `*.localhost` to loopback. A `config-domain` ConfigMap (namespace
    /// `knative-serving`) in the configuration overrides it, as in Knative.
    #[arg(
        long,
        env = "EMBER_DOMAIN",
        default_value = "localhost",
        value_name = "DOMAIN"
    )]
    pub domain: String,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub images: ImageArgs,
}

/// Where container images come from.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// A Docker config.json with registry credentials (`auths`), for pulling images
    /// [default: ~/.docker/config.json].
    #[arg(long, env = "EMBER_REGISTRY_CONFIG", value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// A registry reached over plain HTTP, e.g. 127.0.0.1:5000 (repeat for more); every other
    /// registry is reached over HTTPS.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// How much disk unpacked images may take; beyond it, the least recently used images no
    /// revision runs are evicted (e.g. 10Gi, 500M; 0: no limit).
    #[arg(long, default_value = "10Gi", value_name = "SIZE", value_parser = parse_size)]
    pub image_cache_size: u64,
}

impl ImageArgs {
    /// The image store's settings (credentials read now).
    pub fn settings(&self) -> anyhow::Result<ember_images::StoreSettings> {
        let file = self.registry_config.clone().or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
        });
        let credentials = match &file {
            Some(f) => ember_images::registry::Credentials::from_file(f)
                .map_err(|e| anyhow::anyhow!("--registry-config: {e}"))?,
            None => Default::default(),
        };
        Ok(ember_images::StoreSettings {
            insecure: self.insecure_registries.clone(),
            credentials,
            budget: self.image_cache_size,
        })
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    ember_api::serving::quantity::memory_bytes(s)
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 10Gi, 500M)"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    ember_api::duration::parse_flexible(s).map_err(|e| e.to_string())
}

/// `ember validate`: loads and checks the configuration, starting nothing.
pub fn validate(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = wiring::load(&args.files)?;
    crate::output::line(format_args!("{}", wiring::summary(&config)));
    Ok(())
}

/// `ember run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = wiring::load(&args.config.files)?;
    report(&config);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let limits = ConnectionLimits::from(&args.connections);
    let mut reloads = crate::reload::Requests::watch(&args.config.files)?;
    let mut ember = Ember::start(
        &config,
        &args.data_dir,
        listener,
        limits,
        args.shutdown_grace,
        &args.domain,
        args.images.settings()?,
    )
    .await?;
    // Nothing below reads the configuration (a reload compares fingerprints); free it with the
    // rest of start-up's memory.
    drop(config);
    crate::allocator::release_startup_memory();
    tracing::info!(
        brokers = ember.broker_count(),
        data_dir = %args.data_dir.display(),
        "ember is running; send events to http://{}/{{namespace}}/{{broker}}",
        ember.addr
    );
    let stop = wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(cause) = reloads.next() => reload(&mut ember, &args, &cause).await,
        }
    }
    tracing::info!(grace = ?args.shutdown_grace, "shutting down");
    ember.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Reloads the configuration files: a configuration that `ember validate` would refuse is not
/// applied (its errors are logged as validate prints them) and the running one stays.
async fn reload(ember: &mut Ember, args: &RunArgs, cause: &crate::reload::Cause) {
    tracing::info!(
        %cause,
        "reloading the configuration (--listen and --data-dir are fixed for the life of the process; change them with a restart)"
    );
    let files = args.config.files.clone();
    let loaded = tokio::task::spawn_blocking(move || wiring::load(&files).inspect(report)).await;
    let config = match loaded {
        Ok(Ok(config)) => config,
        Ok(Err(e)) => {
            for line in format!("{e:#}").lines() {
                tracing::error!("configuration not applied: {line}");
            }
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration not applied: loading failed");
            return;
        }
    };
    match ember.reload(config).await {
        Ok(diff) => tracing::info!(changes = %diff, "configuration applied"),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "configuration partly applied"),
    }
}

/// Logs the configuration's notices and, for each resource that is not Ready, why.
fn report(config: &wiring::Config) {
    for line in wiring::remarks(config, &config.readiness()) {
        match line.strip_prefix("warning: ") {
            Some(w) => tracing::warn!("{w}"),
            None => tracing::info!("{}", line.trim_start_matches("notice: ")),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
