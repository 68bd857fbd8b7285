//! Loading the user's configuration: files and folders of multi-document YAML, parsed into
//! typed resources and validated as a whole.
//!
//! [`load`] takes files and folders (a folder contributes every `*.yaml` and `*.yml` directly
//! inside it, in name order; sub-folders are not read) and returns a [`Config`] — the validated
//! resources by kind, in file order, each with its [`Origin`] — or [`ConfigErrors`] listing every
//! problem found, each located by file, document, line, resource and field.
//! [`Config::ensure_runnable`] then refuses what parses but does not run yet.

pub mod defaults;
mod diff;
mod documents;
mod error;
pub mod kubernetes;
mod load;
mod locate;
mod parse;
mod resolve;
mod runnable;
mod secrets;
mod validate;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

pub use diff::{ConfigDiff, Fingerprint, KindDiff};
pub use error::{ConfigError, ConfigErrors};
pub use kubernetes::{ConfigMap, Secret};
pub use load::{load, load_str};
pub use resolve::{Check, Readiness, Target, Unresolved};
pub use runnable::not_yet_supported;
pub use secrets::{SecretRef, env_refs, pull_secret_refs, secret_refs};

use crate::broker::Broker;
use crate::delivery::DeliverySpec;
use crate::field::FieldError;
use crate::resource::{Kind, Resource, ResourceId};
use crate::serving::{Configuration, Route, Service};
use crate::sinks::KafkaSink;
use crate::sources::{KafkaSource, PingSource, RabbitmqSource, WebhookSource};
use crate::trigger::Trigger;

/// Where a resource was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// The document's 1-based index among the file's non-empty documents.
    pub document: usize,
    /// The 1-based file line where the document's content starts.
    pub line: usize,
    /// Position of the file in load order (for sorting errors).
    seq: usize,
    /// File line of the document text's first line.
    first_line: usize,
    /// The document's text, to locate fields in later errors.
    text: Arc<str>,
}

impl Origin {
    /// An origin with no document text (for resources built in code).
    pub fn new(file: impl Into<PathBuf>, document: usize, line: usize) -> Self {
        Origin {
            file: file.into(),
            document,
            line,
            seq: 0,
            first_line: line,
            text: Arc::from(""),
        }
    }

    /// A [`ConfigError`] at this origin for `resource`, at the line of `err`'s field when it
    /// can be found.
    pub fn error(&self, resource: Option<String>, err: FieldError) -> ConfigError {
        let line = locate::locate(&self.text, err.path.segments())
            .map_or(self.line, |f| self.first_line + f.line - 1);
        ConfigError {
            file: self.file.clone(),
            document: Some(self.document),
            line: Some(line),
            resource,
            field: (!err.path.is_empty()).then(|| err.path.to_string()),
            reason: err.reason,
        }
    }

    /// The document's text as written (shared, not copied): what a status endpoint shows as
    /// the resource's `metadata` and `spec` without keeping the parsed resource.
    pub fn text(&self) -> &Arc<str> {
        &self.text
    }

    fn sort_key(&self) -> (usize, usize) {
        (self.seq, self.document)
    }
}

/// A resource together with where it was read from. Dereferences to the resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The resource.
    pub resource: T,
    /// Where it came from.
    pub origin: Origin,
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.resource
    }
}

/// A validated configuration: the resources by kind, each list in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Brokers.
    pub brokers: Vec<Located<Broker>>,
    /// Triggers (each one's broker exists in its namespace).
    pub triggers: Vec<Located<Trigger>>,
    /// PingSources.
    pub ping_sources: Vec<Located<PingSource>>,
    /// KafkaSources.
    pub kafka_sources: Vec<Located<KafkaSource>>,
    /// RabbitmqSources.
    pub rabbitmq_sources: Vec<Located<RabbitmqSource>>,
    /// WebhookSources.
    pub webhook_sources: Vec<Located<WebhookSource>>,
    /// KafkaSinks.
    pub kafka_sinks: Vec<Located<KafkaSink>>,
    /// Services.
    pub services: Vec<Located<Service>>,
    /// Configurations written on their own.
    pub configurations: Vec<Located<Configuration>>,
    /// Routes written on their own.
    pub routes: Vec<Located<Route>>,
    /// Secrets (`v1`), for the references to them; never logged.
    pub secrets: Vec<Located<Secret>>,
    /// ConfigMaps (`v1`); Ember reads Knative's `config-br-defaults`.
    pub config_maps: Vec<Located<ConfigMap>>,
    /// Namespaces declared with `kind: Namespace`.
    pub namespaces: Vec<String>,
    /// What was accepted with a remark (kinds ignored, a resource applied over an earlier
    /// document), located like errors; `ember validate` prints them, `ember run` logs them.
    pub notices: Vec<ConfigError>,
}

impl Config {
    /// Knative's autoscaler settings: the `config-autoscaler` ConfigMap of `knative-serving`
    /// (validated when the configuration was loaded), else Knative's defaults.
    pub fn autoscaler(&self) -> crate::serving::AutoscalerConfig {
        use crate::serving::AutoscalerConfig;
        self.config_maps
            .iter()
            .rev()
            .find(|m| {
                m.metadata.name == AutoscalerConfig::NAME
                    && m.metadata.namespace == AutoscalerConfig::NAMESPACE
            })
            .and_then(|m| AutoscalerConfig::parse(&m.data).ok())
            .unwrap_or_default()
    }

    fn push(&mut self, resource: Resource, origin: Origin) {
        match resource {
            Resource::Broker(r) => self.brokers.push(Located {
                resource: r,
                origin,
            }),
            Resource::Trigger(r) => self.triggers.push(Located {
                resource: r,
                origin,
            }),
            Resource::PingSource(r) => self.ping_sources.push(Located {
                resource: r,
                origin,
            }),
            Resource::KafkaSource(r) => self.kafka_sources.push(Located {
                resource: r,
                origin,
            }),
            Resource::RabbitmqSource(r) => self.rabbitmq_sources.push(Located {
                resource: r,
                origin,
            }),
            Resource::WebhookSource(r) => self.webhook_sources.push(Located {
                resource: r,
                origin,
            }),
            Resource::KafkaSink(r) => self.kafka_sinks.push(Located {
                resource: r,
                origin,
            }),
            Resource::Service(r) => self.services.push(Located {
                resource: r,
                origin,
            }),
            Resource::Configuration(r) => self.configurations.push(Located {
                resource: r,
                origin,
            }),
            Resource::Route(r) => self.routes.push(Located {
                resource: r,
                origin,
            }),
        }
    }

    /// Every resource as a [`Resource`] with its origin, grouped by kind.
    pub fn resources(&self) -> Vec<(Resource, &Origin)> {
        fn each<'a, T: Clone>(
            v: &'a [Located<T>],
            wrap: fn(T) -> Resource,
        ) -> impl Iterator<Item = (Resource, &'a Origin)> + 'a {
            v.iter().map(move |l| (wrap(l.resource.clone()), &l.origin))
        }
        each(&self.brokers, Resource::Broker)
            .chain(each(&self.triggers, Resource::Trigger))
            .chain(each(&self.ping_sources, Resource::PingSource))
            .chain(each(&self.kafka_sources, Resource::KafkaSource))
            .chain(each(&self.rabbitmq_sources, Resource::RabbitmqSource))
            .chain(each(&self.webhook_sources, Resource::WebhookSource))
            .chain(each(&self.kafka_sinks, Resource::KafkaSink))
            .chain(each(&self.services, Resource::Service))
            .chain(each(&self.configurations, Resource::Configuration))
            .chain(each(&self.routes, Resource::Route))
            .collect()
    }

    /// The identity and origin of every resource, grouped by kind.
    pub fn ids(&self) -> Vec<(ResourceId, &Origin)> {
        self.resources()
            .into_iter()
            .map(|(r, o)| (r.id(), o))
            .collect()
    }

    /// How many resources of all kinds.
    pub fn len(&self) -> usize {
        self.brokers.len()
            + self.triggers.len()
            + self.ping_sources.len()
            + self.kafka_sources.len()
            + self.rabbitmq_sources.len()
            + self.webhook_sources.len()
            + self.kafka_sinks.len()
            + self.services.len()
            + self.configurations.len()
            + self.routes.len()
    }

    /// Whether there are no resources.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The broker `namespace/name`.
    pub fn broker(&self, namespace: &str, name: &str) -> Option<&Located<Broker>> {
        self.brokers
            .iter()
            .find(|b| b.metadata.namespace == namespace && b.metadata.name == name)
    }

    /// The Secret `namespace/name`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Located<Secret>> {
        self.secrets
            .iter()
            .rev()
            .find(|s| s.metadata.namespace == namespace && s.metadata.name == name)
    }

    /// The value under `key` of the Secret `namespace/name`; the error never holds a value.
    pub fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Result<Vec<u8>, String> {
        match self.secret(namespace, name) {
            Some(s) => s.value(key),
            None => Err(format!(
                "no Secret {namespace}/{name} in the configuration (add a Secret document, v1, \
                 with data or stringData)"
            )),
        }
    }

    /// The triggers of broker `namespace/name`, in file order.
    pub fn triggers_of<'a>(
        &'a self,
        namespace: &'a str,
        broker: &'a str,
    ) -> impl Iterator<Item = &'a Located<Trigger>> + 'a {
        self.triggers
            .iter()
            .filter(move |t| t.metadata.namespace == namespace && t.spec.broker == broker)
    }

    /// The delivery options in force for `trigger`: its own `delivery` over its Broker's,
    /// field by field.
    pub fn delivery_for(&self, trigger: &Trigger) -> DeliverySpec {
        let own = trigger.spec.delivery.clone().unwrap_or_default();
        match self
            .broker(&trigger.metadata.namespace, &trigger.spec.broker)
            .and_then(|b| b.spec.delivery.as_ref())
        {
            Some(base) => own.overriding(base),
            None => own,
        }
    }

    /// Refuses every resource whose kind is not in `runnable` (`not supported yet: <Kind>`)
    /// and, in the others, every feature that parses but does not run yet (see
    /// [`not_yet_supported`]). Errors are located like any configuration error.
    pub fn ensure_runnable(&self, runnable: &[Kind]) -> Result<(), ConfigErrors> {
        runnable::ensure_runnable(self, runnable)
    }
}
