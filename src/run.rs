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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ember_broker::broker::Broker;
use ember_broker::delivery::{BrokerDirectory, http_client};
use ember_sources::SourceManager;
use ember_sources::webhook::WebhookRoutes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::ConfigArgs;
use crate::connection::{ConnectionArgs, ConnectionLimits};
use crate::server::{Router, serve};
use crate::sources::Sinks;
use crate::wiring::{self, Config};

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
    #[command(flatten)]
    pub connections: ConnectionArgs,
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
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let limits = ConnectionLimits::from(&args.connections);
    let ember = Ember::start(
        &config,
        &args.data_dir,
        listener,
        limits,
        args.shutdown_grace,
    )
    .await?;
    // Nothing below reads the configuration; free it with the rest of start-up's memory.
    drop(config);
    crate::allocator::release_startup_memory();
    tracing::info!(
        brokers = ember.brokers.len(),
        data_dir = %args.data_dir.display(),
        "ember is running; send events to http://{}/{{namespace}}/{{broker}}",
        ember.addr
    );
    wait_for_signal().await;
    tracing::info!(grace = ?args.shutdown_grace, "shutting down");
    ember.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// A running Ember: brokers open, dispatchers and sources running, the server accepting.
pub struct Ember {
    /// The address the server listens on.
    pub addr: SocketAddr,
    /// The open brokers.
    pub brokers: Vec<Arc<Broker>>,
    /// The running sources, by resource id: add, remove or replace one while the others run.
    pub sources: Arc<SourceManager>,
    /// Where sources' events go: a source's `sink` resolved to one of `brokers` or a URL.
    pub sinks: Sinks,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Ember {
    /// Opens every broker of `config` below `data_dir` (recovering their logs), starts the
    /// dispatchers and serves on `listener` within `limits`.
    pub async fn start(
        config: &Config,
        data_dir: &Path,
        listener: TcpListener,
        limits: ConnectionLimits,
        grace: Duration,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let plans = wiring::brokers(config, data_dir)?;
        let mut brokers = Vec::with_capacity(plans.len());
        for plan in plans {
            let broker =
                tokio::task::spawn_blocking(move || Broker::open(plan.broker, plan.triggers))
                    .await
                    .context("opening broker")??;
            brokers.push(Arc::new(broker));
        }
        let addr = listener.local_addr()?;
        let (shutdown, signal) = watch::channel(false);
        let client = http_client();
        let directory = BrokerDirectory::default();
        for broker in &brokers {
            directory.insert(broker.clone());
        }
        let mut tasks = Vec::new();
        for broker in &brokers {
            tasks.extend(broker.start(&client, &directory, &signal, grace));
        }
        // Sources: each into its sink, a broker of this Ember (appended directly) or a URL.
        let routes = Arc::new(WebhookRoutes::new());
        let sources = Arc::new(SourceManager::new(crate::sources::kinds(&routes), data_dir));
        let sinks = Sinks::new(brokers.clone(), client.clone());
        if let Err(e) = crate::sources::start(config, &sources, &sinks).await {
            sources.shutdown().await;
            return Err(e);
        }
        let router =
            Arc::new(Router::new(brokers.iter().cloned(), routes).with_sources(sources.clone()));
        router.set_ready(true);
        let server = tokio::spawn(serve(listener, router, limits, signal, grace));
        Ok(Self {
            addr,
            brokers,
            sources,
            sinks,
            shutdown,
            grace,
            server,
            tasks,
        })
    }

    /// The broker `namespace/name`.
    pub fn broker(&self, namespace: &str, name: &str) -> Option<&Arc<Broker>> {
        self.brokers
            .iter()
            .find(|b| b.namespace() == namespace && b.short_name() == name)
    }

    /// Graceful shutdown, in the order described at the top of this module.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        // Requests still running past the grace hold their WebhookSource open: stop waiting for
        // them after another grace (their dedup ids may then not reach the journal).
        if tokio::time::timeout(self.grace, self.sources.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?self.grace, "sources still stopping after the shutdown grace period");
        }
        for task in self.tasks {
            let _ = task.await;
        }
        for broker in &self.brokers {
            if let Err(e) = broker.close().await {
                tracing::error!(broker = %broker.name(), error = %e, "closing the log failed");
            }
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
