//! The live topology: what runs for a configuration, and how it moves to the next one.
//!
//! [`Ember::start`] opens every broker (recovering its log), starts its dispatchers, starts the
//! sources and serves. [`Ember::reload`] takes a new, fully validated configuration, diffs it
//! against the running one by resource id ([`ConfigDiff`]) and touches only what changed, in an
//! order that keeps every reference valid:
//!
//! 1. new Brokers open and start taking events;
//! 2. changed Brokers take their new settings in place (durability, segment size, retention,
//!    body limit, disk budget) — nothing is reopened, so no acknowledged event is at risk;
//! 3. Triggers change broker by broker: new ones start at the end of the log, changed ones keep
//!    their position, removed ones stop after their in-flight deliveries and lose their cursor;
//! 4. sources are added, replaced (a WebhookSource hands its dedup window over, a PingSource
//!    keeps its tick record by name) and removed;
//! 5. removed Brokers stop taking events (404) once their in-flight requests finish, then stop
//!    and close their log. Their data stays on disk: deleting data is never implicit.
//!
//! KafkaSinks are added and replaced before step 1 and removed after step 5, so whatever
//! delivers to one always finds it.
//!
//! Only what is Ready runs (`Config::runnable`): a Trigger whose Broker, or a source whose sink,
//! is not defined yet waits outside the running set; the diff is taken over that set, so it
//! starts the moment a reload brings its referent, and stops if the referent goes.
//!
//! Ingress never refuses because of a reload: the listener, and every broker that stays, keep
//! serving throughout.
//!
//! Every resource of the full configuration — running or waiting — has a status
//! ([`Statuses`]): its configuration-decided conditions are recorded at start and on every
//! reload, before the runnable filter, and its runtime-decided ones are read once what runs has
//! changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ember_api::config::{ConfigDiff, Fingerprint, Readiness};
use ember_api::resource::{Kind, ResourceId};
use ember_broker::broker::{Broker, TriggerChanges};
use ember_broker::delivery::{BrokerDirectory, HttpClient, http_client};
use ember_sources::SourceManager;
use ember_sources::webhook::WebhookRoutes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::connection::ConnectionLimits;
use crate::server::{Router, serve};
use crate::sources::Sinks;
use crate::status::{self, Statuses};
use crate::wiring::{self, BrokerPlan, Config, SubscriberLimits};
use ember_broker::dispatch::TriggerConfig;

/// A broker with its tasks.
struct RunningBroker {
    broker: Arc<Broker>,
    /// Stops this broker's tasks (its dispatchers finish their in-flight deliveries first).
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A running Ember: brokers open, dispatchers and sources running, the server accepting.
pub struct Ember {
    /// The address the server listens on.
    pub addr: SocketAddr,
    /// The open brokers, by `namespace/name` (also how in-process destinations find them).
    pub directory: BrokerDirectory,
    /// The running sources, by resource id: add, remove or replace one while the others run.
    pub sources: Arc<SourceManager>,
    /// Where sources' events go: a source's `sink` resolved to a broker or a URL.
    pub sinks: Sinks,
    /// Every resource's status, served under `/apis/`.
    pub statuses: Arc<Statuses>,
    /// The Knative Services that run, and their domain.
    pub services: crate::serving::Services,
    /// `--domain`, for when a reload drops `config-domain`.
    domain_flag: String,
    brokers: BTreeMap<String, RunningBroker>,
    fingerprint: Fingerprint,
    limits: SubscriberLimits,
    data_dir: PathBuf,
    client: HttpClient,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    server: JoinHandle<()>,
}

impl Ember {
    /// Opens every broker of `config` below `data_dir` (recovering their logs), starts the
    /// dispatchers and the sources, and serves on `listener` within `limits`; revisions with
    /// an image pull from the registries `images` describes.
    pub async fn start(
        config: &Config,
        data_dir: &Path,
        listener: TcpListener,
        limits: ConnectionLimits,
        grace: Duration,
        domain: &str,
        images: ember_images::StoreSettings,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        // What runs: every Broker, and each other resource whose references resolve.
        let whole = config;
        let readiness = whole.readiness();
        // Ten thousand triggers cost a copy only when some of them wait.
        let waiting;
        let config = if readiness.not_ready().next().is_none() {
            whole
        } else {
            waiting = whole.runnable(&readiness);
            &waiting
        };
        let mut subscriber_limits = SubscriberLimits::default();
        let addr = listener.local_addr()?;
        let plans = wiring::brokers(config, data_dir, addr, &mut subscriber_limits)?;
        let (shutdown, signal) = watch::channel(false);
        let client = http_client();
        let directory = BrokerDirectory::default();
        let mut brokers = BTreeMap::new();
        for plan in plans {
            let running = open(plan).await?;
            directory.insert(running.broker.clone());
            brokers.insert(running.broker.name().to_owned(), running);
        }
        // Services: their revisions start (at their initial scale); triggers and sources reach
        // them through the directory's gateway, clients by Host.
        let serving = ember_serving::Serving::new(data_dir);
        serving.set_image_settings(images);
        let services =
            crate::serving::Services::new(Arc::new(serving), crate::serving::domain(whole, domain));
        apply_services(&services, config)?;
        directory.set_services(Arc::new(services.clone()));
        // KafkaSinks: before anything delivers to them.
        crate::sinks::start(config, &directory)?;
        for running in brokers.values_mut() {
            running.start(&client, &directory, grace);
        }
        services.index_backlog(&directory);
        // Sources: each into its sink, a broker of this Ember (appended directly) or a URL.
        let routes = Arc::new(WebhookRoutes::new());
        let sources = Arc::new(SourceManager::new(crate::sources::kinds(&routes), data_dir));
        let sinks = Sinks::new(directory.clone(), client.clone(), addr);
        if let Err(e) = crate::sources::start(config, &sources, &sinks).await {
            sources.shutdown().await;
            return Err(e);
        }
        let statuses = Arc::new(Statuses::new(status::Running {
            brokers: directory.clone(),
            sources: sources.clone(),
            listen: addr,
            services: Some(services.clone()),
        }));
        let fingerprint = observe(&statuses, whole, &readiness);
        statuses.observe_running();
        let router = Arc::new(
            Router::new(directory.clone(), routes)
                .with_sources(sources.clone())
                .with_statuses(statuses.clone())
                .with_services(services.clone()),
        );
        router.set_ready(true);
        let server = tokio::spawn(serve(listener, router, limits, signal, grace));
        Ok(Self {
            addr,
            directory,
            sources,
            sinks,
            statuses,
            services,
            domain_flag: domain.to_owned(),
            brokers,
            fingerprint,
            limits: subscriber_limits,
            data_dir: data_dir.to_owned(),
            client,
            shutdown,
            grace,
            server,
        })
    }

    /// The broker `namespace/name`, if it is open.
    pub fn broker(&self, namespace: &str, name: &str) -> Option<Arc<Broker>> {
        self.directory.get(namespace, name)
    }

    /// How many brokers are open.
    pub fn broker_count(&self) -> usize {
        self.brokers.len()
    }

    /// Moves to `config` (already validated in full), touching only what changed; see the
    /// module doc for the order. Returns what changed.
    ///
    /// The work that grows with the configuration (fingerprints, diff, compiling every
    /// trigger's filter) runs on a blocking thread, so that a reload of ten thousand triggers
    /// never holds up a runtime worker that serves ingress.
    pub async fn reload(&mut self, config: Config) -> anyhow::Result<ConfigDiff> {
        let old = self.fingerprint.clone();
        let data_dir = self.data_dir.clone();
        let addr = self.addr;
        let mut limits = std::mem::take(&mut self.limits);
        let statuses = self.statuses.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let readiness = config.readiness();
            let fingerprint = observe(&statuses, &config, &readiness);
            let config = if readiness.not_ready().next().is_none() {
                config
            } else {
                config.runnable(&readiness)
            };
            let diff = ConfigDiff::of_fingerprints(&old, &fingerprint);
            let plans = if diff.is_empty() {
                Ok(Vec::new())
            } else {
                wiring::brokers(&config, &data_dir, addr, &mut limits)
            };
            (config, fingerprint, diff, plans, limits)
        })
        .await
        .context("preparing the configuration")?;
        let (config, fingerprint, diff, plans, limits) = prepared;
        self.limits = limits;
        let plans = plans?;
        self.services
            .set_domain(crate::serving::domain(&config, &self.domain_flag));
        if diff.is_empty() {
            self.statuses.observe_running();
            return Ok(diff);
        }
        let brokers = diff.of_kind(Kind::Broker);

        // 0. New and changed KafkaSinks, before anything delivers to them.
        crate::sinks::reload_added(&config, &diff, &self.directory)?;
        // 1. New brokers, with their triggers.
        for id in &brokers.added {
            let plan = plan_of(&plans, id)?;
            let mut running = open(plan.clone()).await?;
            self.directory.insert(running.broker.clone());
            running.start(&self.client, &self.directory, self.grace);
            tracing::info!(broker = %running.broker.name(), "broker added");
            self.brokers
                .insert(running.broker.name().to_owned(), running);
        }
        // 2. Changed brokers' settings, in place.
        for id in &brokers.changed {
            let plan = plan_of(&plans, id)?;
            if let Some(running) = self.brokers.get(&key(id)) {
                running.broker.update_settings(&plan.broker);
            }
        }
        // 3. Triggers, broker by broker (those of new brokers started with them).
        let triggers = diff.of_kind(Kind::Trigger);
        // Each trigger of the new configuration by (namespace, name): its broker and settings.
        let planned: HashMap<(&str, &str), (String, &TriggerConfig)> = plans
            .iter()
            .flat_map(|p| {
                let broker = format!("{}/{}", p.broker.namespace, p.broker.name);
                p.triggers.iter().map(move |t| {
                    (
                        (p.broker.namespace.as_str(), t.name.as_str()),
                        (broker.clone(), t),
                    )
                })
            })
            .collect();
        let new_broker: HashSet<String> = brokers.added.iter().map(|id| key(id)).collect();
        let mut changes: BTreeMap<String, TriggerChanges> = BTreeMap::new();
        for id in &triggers.added {
            let Some((broker, t)) = planned.get(&(id.namespace.as_str(), id.name.as_str())) else {
                continue;
            };
            if !new_broker.contains(broker) {
                let change = changes.entry(broker.clone()).or_default();
                change.add.push((*t).clone());
            }
        }
        for id in &triggers.changed {
            let Some((broker, t)) = planned.get(&(id.namespace.as_str(), id.name.as_str())) else {
                continue;
            };
            if new_broker.contains(broker) {
                continue;
            }
            // A Trigger may move to another Broker: it leaves the old one and starts anew.
            match self.broker_running_trigger(id) {
                Some(old) if &old != broker => {
                    changes.entry(old).or_default().remove.push(id.name.clone());
                    let change = changes.entry(broker.clone()).or_default();
                    change.add.push((*t).clone());
                }
                _ => {
                    let change = changes.entry(broker.clone()).or_default();
                    change.replace.push((*t).clone());
                }
            }
        }
        for id in &triggers.removed {
            if let Some(broker) = self.broker_running_trigger(id) {
                if brokers.removed.iter().any(|b| key(b) == broker) {
                    continue;
                }
                changes
                    .entry(broker)
                    .or_default()
                    .remove
                    .push(id.name.clone());
            }
        }
        for (broker, change) in changes {
            if let Some(running) = self.brokers.get(&broker) {
                running
                    .broker
                    .change_triggers(change)
                    .await
                    .with_context(|| format!("changing the triggers of broker {broker}"))?;
            }
        }
        // 4. Services: new revisions for changed templates, routes rebuilt (before the sources,
        //    which may name them).
        let serving_changed = [Kind::Service, Kind::Configuration, Kind::Route]
            .into_iter()
            .any(|kind| {
                let d = diff.of_kind(kind);
                !(d.added.is_empty() && d.changed.is_empty() && d.removed.is_empty())
            });
        self.services.serving.set_autoscaler(config.autoscaler());
        if serving_changed {
            apply_services(&self.services, &config)?;
        }
        self.services.index_backlog(&self.directory);
        // 5. Sources.
        self.reload_sources(&config, &diff).await?;
        // 6. Removed brokers: no new requests, in-flight ones finish, then stop and close.
        for id in &brokers.removed {
            if let Some(running) = self.brokers.remove(&key(id)) {
                self.directory.remove(&id.namespace, &id.name);
                running.stop().await;
                tracing::info!(broker = %key(id), "broker removed; its data stays on disk");
            }
        }
        // 7. Removed KafkaSinks, once nothing running names them.
        crate::sinks::reload_removed(&diff, &self.directory);
        self.fingerprint = fingerprint;
        self.statuses.observe_running();
        // Ten thousand parsed resources take a while to free, too.
        tokio::task::spawn_blocking(move || drop((config, plans)));
        Ok(diff)
    }

    /// The broker (`namespace/name`) that runs the trigger `id`, if any.
    fn broker_running_trigger(&self, id: &ResourceId) -> Option<String> {
        self.brokers
            .values()
            .find(|r| r.broker.namespace() == id.namespace && r.broker.has_trigger(&id.name))
            .map(|r| r.broker.name().to_owned())
    }

    async fn reload_sources(&self, config: &Config, diff: &ConfigDiff) -> anyhow::Result<()> {
        let is_source = |id: &&ResourceId| self.sources.kinds().get(id.kind).is_some();
        for id in diff.removed.iter().filter(is_source) {
            self.sources
                .remove(id)
                .await
                .with_context(|| format!("removing {id}"))?;
        }
        let resources = config.resources();
        let find = |id: &ResourceId| {
            resources
                .iter()
                .map(|(r, _)| r)
                .find(|r| r.id() == *id)
                .with_context(|| format!("{id} is not in the configuration"))
        };
        for (id, replace) in diff
            .changed
            .iter()
            .filter(is_source)
            .map(|id| (id, true))
            .chain(diff.added.iter().filter(is_source).map(|id| (id, false)))
        {
            let resource = find(id)?;
            let dest = resource
                .sink()
                .with_context(|| format!("{id}: a source without a sink"))?;
            let sink = self
                .sinks
                .resolve(config, dest, resource.namespace())
                .with_context(|| format!("{id}: spec.sink"))?;
            if replace {
                self.sources.replace(resource, sink).await
            } else {
                self.sources.add(resource, sink).await
            }
            .with_context(|| format!("starting {id}"))?;
        }
        Ok(())
    }

    /// Graceful shutdown: the server stops accepting and finishes its requests; the sources
    /// stop; each broker's dispatchers finish their in-flight deliveries and write their
    /// positions; the logs close.
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
        let stops = self.brokers.into_values().map(RunningBroker::stop);
        futures_util::future::join_all(stops).await;
        // Last, the functions: deliveries to them have finished.
        self.services.serving.shutdown().await;
    }
}

/// Runs the Services of `config` (a new revision for each changed template).
fn apply_services(services: &crate::serving::Services, config: &Config) -> anyhow::Result<()> {
    services.serving.set_autoscaler(config.autoscaler());
    // `env` values from Secret and ConfigMap keys (`valueFrom`), resolved here: the revision
    // history keeps the template, never a secret's value.
    // Registry credentials from `imagePullSecrets` (Secret documents' `.dockerconfigjson`).
    for s in config
        .services
        .iter()
        .map(|s| s.resource.clone())
        .chain(config.configurations.iter().map(|c| c.as_service()))
    {
        let mut credentials = ember_images::registry::Credentials::default();
        for r in ember_api::config::pull_secret_refs(&s) {
            match config
                .key_value(&s.metadata.namespace, &r)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    ember_images::registry::Credentials::parse(&String::from_utf8_lossy(&v))
                }) {
                Ok(c) => credentials.merge(c),
                Err(e) => {
                    tracing::warn!(service = %format!("{}/{}", s.metadata.namespace, s.metadata.name), secret = %r.name, error = %e, "imagePullSecrets: not usable")
                }
            }
        }
        services
            .serving
            .set_pull_credentials(&s.metadata.namespace, &s.metadata.name, credentials);
    }
    let with_env = |s: ember_api::serving::Service| {
        let env: ember_serving::Env = ember_api::config::env_refs(&s)
            .into_iter()
            .filter_map(|(var, r)| {
                let value = config.key_value(&s.metadata.namespace, &r).ok()?;
                Some((var, String::from_utf8_lossy(&value).into_owned()))
            })
            .collect();
        (s, env)
    };
    let list: Vec<_> = config
        .services
        .iter()
        .map(|s| with_env(s.resource.clone()))
        .collect();
    let configurations: Vec<_> = config
        .configurations
        .iter()
        .map(|c| with_env(c.as_service()))
        .collect();
    let routes: Vec<_> = config.routes.iter().map(|r| r.resource.clone()).collect();
    let applied = services
        .serving
        .apply_all(&list, &configurations, &routes)
        .context("running the Services")?;
    for r in &applied.stopped {
        tracing::info!(revision = %r, "revision stopped (no longer routed)");
    }
    Ok(())
}

impl RunningBroker {
    /// Starts the broker's tasks.
    fn start(&mut self, client: &HttpClient, directory: &BrokerDirectory, grace: Duration) {
        let signal = self.shutdown.subscribe();
        self.tasks = self.broker.start(client, directory, &signal, grace);
    }

    /// Stops the broker's tasks (dispatchers finish in-flight deliveries within the grace and
    /// positions are written), then closes its log.
    async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(e) = self.broker.close().await {
            tracing::error!(broker = %self.broker.name(), error = %e, "closing the log failed");
        }
    }
}

/// Records the statuses of the whole configuration `config`, and returns the fingerprint of
/// what runs of it (`Config::runnable`: every Broker, and every other resource that is Ready),
/// hashing each resource once for both.
fn observe(statuses: &Statuses, config: &Config, readiness: &Readiness) -> Fingerprint {
    let mut fingerprint = Fingerprint::of(config);
    statuses.observe_config(config, readiness, &fingerprint);
    fingerprint.retain(|id| id.kind == Kind::Broker || readiness.is_ready(id));
    debug_assert_eq!(
        fingerprint,
        Fingerprint::of(&config.runnable(readiness)),
        "the runnable part of a fingerprint is the fingerprint of the runnable part"
    );
    fingerprint
}

/// Opens a broker (recovering its log) without starting it.
async fn open(plan: BrokerPlan) -> anyhow::Result<RunningBroker> {
    let broker = tokio::task::spawn_blocking(move || Broker::open(plan.broker, plan.triggers))
        .await
        .context("opening broker")??;
    Ok(RunningBroker {
        broker: Arc::new(broker),
        shutdown: watch::channel(false).0,
        tasks: Vec::new(),
    })
}

/// `namespace/name` of a resource.
fn key(id: &ResourceId) -> String {
    format!("{}/{}", id.namespace, id.name)
}

fn plan_of<'a>(plans: &'a [BrokerPlan], id: &ResourceId) -> anyhow::Result<&'a BrokerPlan> {
    plans
        .iter()
        .find(|p| p.broker.namespace == id.namespace && p.broker.name == id.name)
        .with_context(|| format!("{id} is not in the configuration"))
}
