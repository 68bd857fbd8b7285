//! Sources in the binary: which kinds `ember run` runs, and where their events go. Everything a
//! kind does lives in `ember-sources`; here each kind is registered, each source's `sink` is
//! resolved to an `EventSink` — a Broker of this Ember (appended in process) or a URL — and the
//! sources of a configuration are checked (`ember validate`) and started.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use ember_api::config::{Config, Target};
use ember_api::{ConfigError, ConfigErrors, Destination};
use ember_broker::delivery::{BrokerDirectory, HttpClient};
use ember_broker::sink::HttpSink;
use ember_event::sink::EventSink;
use ember_sources::kafka::KafkaSourceKind;
use ember_sources::ping::PingSourceKind;
use ember_sources::rabbitmq::RabbitmqSourceKind;
use ember_sources::webhook::{WebhookRoutes, WebhookSourceKind};
use ember_sources::{SourceKinds, SourceManager};

/// The source kinds Ember runs; WebhookSources are served through `routes`.
pub fn kinds(routes: &Arc<WebhookRoutes>) -> SourceKinds {
    let mut kinds = SourceKinds::default();
    kinds
        .register(KafkaSourceKind::new())
        .register(PingSourceKind::new())
        .register(RabbitmqSourceKind::new())
        .register(WebhookSourceKind::new(routes.clone()));
    kinds
}

/// Checks every source of `config` as running it would (secrets read, schedules parsed), so
/// `ember validate` refuses what `ember run` would; errors are located like any configuration
/// error.
pub fn check(config: &Config, kinds: &SourceKinds) -> Result<(), ConfigErrors> {
    // A source whose Secret is not in the configuration is not Ready (a warning, as in
    // Knative), not refused; it does not run, so its secret is not read.
    let readiness = config.readiness();
    let waits_for_secret = |r: &ember_api::Resource| {
        readiness
            .checks(&r.id())
            .iter()
            .any(|c| !c.ok && c.reason == "SecretNotFound")
    };
    let errors: Vec<ConfigError> = config
        .resources()
        .into_iter()
        .filter(|(resource, _)| !waits_for_secret(resource))
        .filter_map(|(resource, origin)| {
            let error = kinds.check(&resource)?.err()?;
            Some(origin.error(Some(resource.id().to_string()), error))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Resolves sources' sinks: one `EventSink` per broker and per URL, shared by every source that
/// names it — so that PingSources with one destination share its batches.
pub struct Sinks {
    brokers: BrokerDirectory,
    client: HttpClient,
    /// Ember's listener, which a Broker `ref` with a relative `uri` resolves against.
    ingress: SocketAddr,
    urls: Mutex<HashMap<String, Arc<HttpSink>>>,
}

impl Sinks {
    /// Sinks among the open `brokers`, or URLs reached with `client`.
    pub fn new(brokers: BrokerDirectory, client: HttpClient, ingress: SocketAddr) -> Self {
        Self {
            brokers,
            client,
            ingress,
            urls: Mutex::default(),
        }
    }

    /// The sink `dest` names, as [`Config::target`] resolves it: a URL, a Broker of this
    /// Ember (which must be among the brokers) — with a relative `uri`, the URL it resolves to
    /// against the Broker's address — a Service, or a KafkaSink (which must be running).
    pub fn resolve(
        &self,
        config: &Config,
        dest: &Destination,
        own_namespace: &str,
    ) -> anyhow::Result<Arc<dyn EventSink>> {
        let target = config
            .target(dest, own_namespace)
            .map_err(|why| anyhow::anyhow!("{}: {}", why.reason, why.message))?;
        match target {
            Target::Url(uri) => self.url(&uri),
            Target::Broker {
                namespace,
                name,
                uri: None,
            } => {
                let broker = self
                    .brokers
                    .get(&namespace, &name)
                    .with_context(|| format!("no Broker {namespace}/{name}"))?;
                Ok(broker)
            }
            Target::Broker {
                namespace, name, ..
            } => self.url(
                &dest
                    .resolve_against(&format!("http://{}/{namespace}/{name}", self.ingress))
                    .map_err(anyhow::Error::msg)?,
            ),
            Target::KafkaSink { namespace, name } => self
                .brokers
                .sink(crate::sinks::KAFKA_SINK, &namespace, &name)
                .with_context(|| format!("KafkaSink {namespace}/{name} is not running")),
            Target::Service {
                namespace,
                name,
                uri,
            } => {
                let path = crate::wiring::service_path(dest, uri.is_some())?;
                Ok(Arc::new(HttpSink::service(
                    self.client.clone(),
                    self.brokers.clone(),
                    &namespace,
                    &name,
                    path.parse()
                        .with_context(|| format!("{path:?} is not a path"))?,
                )))
            }
        }
    }

    fn url(&self, uri: &str) -> anyhow::Result<Arc<dyn EventSink>> {
        if uri
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            anyhow::bail!("not supported yet: https destinations");
        }
        let mut urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sink) = urls.get(uri) {
            return Ok(sink.clone());
        }
        let parsed = uri
            .parse()
            .with_context(|| format!("{uri:?} is not a URL"))?;
        let sink = Arc::new(HttpSink::new(self.client.clone(), parsed));
        urls.insert(uri.to_owned(), sink.clone());
        Ok(sink)
    }
}

/// Starts every source of `config` on `manager`, each into its resolved sink.
pub async fn start(config: &Config, manager: &SourceManager, sinks: &Sinks) -> anyhow::Result<()> {
    let mut sources = Vec::new();
    for (resource, _) in config.resources() {
        if manager.kinds().get(resource.kind()).is_none() {
            continue;
        }
        let id = resource.id();
        let dest = resource
            .sink()
            .with_context(|| format!("{id}: a source without a sink"))?;
        let sink = sinks
            .resolve(config, dest, resource.namespace())
            .with_context(|| format!("{id}: spec.sink"))?;
        sources.push((resource, sink));
    }
    manager.add_all(sources).await?;
    Ok(())
}
