//! From validated resources to running parts: each Broker with its Triggers becomes a
//! [`BrokerConfig`] and [`TriggerConfig`]s; delivery settings resolve Trigger over Broker over
//! Ember's defaults, field by field.

use std::path::{Path, PathBuf};

use anyhow::bail;
use ember_api::broker::Durability as ApiDurability;
use ember_api::delivery::{BackoffPolicy as ApiBackoff, DeliveryFormat as ApiFormat, DeliverySpec};
use ember_api::resource::Kind;
use ember_api::trigger::{DeliveryOrder, Trigger};
use ember_broker::broker::BrokerConfig;
use ember_broker::dispatch::{DeliveryFormat, TriggerConfig};
use ember_broker::log::Durability;
use ember_broker::retry::{BackoffPolicy, DeliveryPolicy};
use ember_triggers::{AttributesFilter, Filter};

pub use ember_api::config::Config;

/// The kinds `ember run` runs today.
pub const RUNNABLE: &[Kind] = &[Kind::Broker, Kind::Trigger];

/// Append batches that may wait for a broker's log writer before ingress answers 503.
pub const APPEND_QUEUE_CAPACITY: usize = 4096;

/// Loads, validates and checks that everything can run; the error lists every problem.
pub fn load(files: &[PathBuf]) -> anyhow::Result<Config> {
    let config = ember_api::config::load(files)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    config
        .ensure_runnable(RUNNABLE)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    Ok(config)
}

/// A broker and its triggers, ready to open.
pub struct BrokerPlan {
    /// The broker's settings.
    pub broker: BrokerConfig,
    /// Its triggers.
    pub triggers: Vec<TriggerConfig>,
}

/// Resolves every broker of the configuration.
pub fn brokers(config: &Config, data_dir: &Path) -> anyhow::Result<Vec<BrokerPlan>> {
    let mut plans = Vec::with_capacity(config.brokers.len());
    for located in &config.brokers {
        let b = &located.resource;
        let settings = b
            .settings()
            .map_err(|e| anyhow::anyhow!("broker {}: {e:?}", b.metadata.name))?;
        let namespace = b.metadata.namespace.clone();
        let broker_delivery = b.spec.delivery.clone().unwrap_or_default();
        let mut triggers = Vec::new();
        for t in config.triggers.iter().map(|l| &l.resource) {
            if t.metadata.namespace == namespace && t.spec.broker == b.metadata.name {
                triggers.push(trigger(t, &broker_delivery)?);
            }
        }
        plans.push(BrokerPlan {
            broker: BrokerConfig {
                namespace,
                name: b.metadata.name.clone(),
                data_dir: data_dir.to_owned(),
                durability: match settings.durability {
                    ApiDurability::Fsync => Durability::Fsync,
                    ApiDurability::None => Durability::None,
                },
                segment_bytes: settings.segment_bytes,
                retention: settings.retention,
                max_event_bytes: usize::try_from(settings.max_event_bytes).unwrap_or(usize::MAX),
                queue_capacity: APPEND_QUEUE_CAPACITY,
            },
            triggers,
        });
    }
    Ok(plans)
}

fn trigger(t: &Trigger, broker_delivery: &DeliverySpec) -> anyhow::Result<TriggerConfig> {
    let name = &t.metadata.name;
    let settings = t
        .settings()
        .map_err(|e| anyhow::anyhow!("trigger {name}: {e:?}"))?;
    let filter = match t.spec.filter.as_ref().map(|f| &f.attributes) {
        Some(attrs) if !attrs.is_empty() => Filter::Attributes(AttributesFilter::new(
            attrs.iter().map(|(k, v)| (k.clone(), v.clone())),
        )?),
        _ => Filter::All,
    };
    let Some(uri) = &t.spec.subscriber.uri else {
        bail!("trigger {name}: spec.subscriber: only uri subscribers run today");
    };
    if uri.starts_with("https://") {
        bail!("trigger {name}: spec.subscriber.uri: not supported yet: https subscribers");
    }
    let delivery = t
        .spec
        .delivery
        .clone()
        .unwrap_or_default()
        .overriding(broker_delivery);
    let defaults = DeliveryPolicy::default();
    let policy = DeliveryPolicy {
        retry: delivery
            .retry
            .map(|_| delivery.retries())
            .unwrap_or(defaults.retry),
        backoff_policy: match delivery.backoff_policy {
            Some(ApiBackoff::Linear) => BackoffPolicy::Linear,
            Some(ApiBackoff::Exponential) | None => BackoffPolicy::Exponential,
        },
        backoff_delay: delivery.backoff_delay().unwrap_or(defaults.backoff_delay),
        timeout: delivery.timeout().unwrap_or(defaults.timeout),
    };
    Ok(TriggerConfig {
        name: name.clone(),
        filter,
        subscriber: uri.parse()?,
        policy,
        format: match delivery.format {
            Some(ApiFormat::Json) => DeliveryFormat::Json,
            Some(ApiFormat::Binary) | None => DeliveryFormat::Binary,
        },
        // Ordered delivery is one event at a time per trigger for now (per-key ordering comes
        // with the delivery work).
        max_in_flight: match settings.delivery_order {
            DeliveryOrder::Ordered => 1,
            DeliveryOrder::Unordered => settings.max_in_flight as usize,
        },
    })
}

/// A one-line-per-resource description of a valid configuration (`ember validate`).
pub fn summary(config: &Config) -> String {
    let mut out = format!("configuration is valid: {} resource(s)", config.len());
    for (resource, origin) in config.resources() {
        out.push_str(&format!(
            "\n  {} ({}: document {})",
            resource.id(),
            origin.file.display(),
            origin.document
        ));
    }
    out
}
