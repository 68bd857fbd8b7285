//! Sinks in the binary that are neither brokers nor URLs: KafkaSinks. Each runs a producer
//! (`ember-sources`), registered in the [`BrokerDirectory`] under its kind, namespace and name,
//! where Triggers (subscriber, dead-letter sink) and sources (their sink) find it.
//!
//! They start before anything that delivers to them and, on a reload, are added and replaced
//! first and removed last; a replaced or removed producer lives on until the deliveries that
//! hold it finish.

use anyhow::Context;
use ember_api::config::ConfigDiff;
use ember_api::{Config, ConfigError, ConfigErrors, Kind, ResourceId};
use ember_broker::delivery::BrokerDirectory;
use ember_sources::kafka::sink::KafkaSink;
use std::sync::Arc;

/// The kind name KafkaSinks are registered under (and named by in `Destination::Sink`).
pub const KAFKA_SINK: &str = "KafkaSink";

/// Checks what `ember run` would refuse of the sinks of `config`: `auth` whose Secret holds a
/// bad protocol or mechanism. (A sink whose Secret is missing is not Ready, not refused.)
pub fn check(config: &Config) -> Result<(), ConfigErrors> {
    let errors: Vec<ConfigError> = config
        .kafka_sinks
        .iter()
        .filter_map(|s| {
            let error = KafkaSink::security(s).err()?;
            let id = ResourceId {
                kind: Kind::KafkaSink,
                namespace: s.metadata.namespace.clone(),
                name: s.metadata.name.clone(),
            };
            Some(s.origin.error(Some(id.to_string()), error))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Starts every KafkaSink of `config` into `directory`.
pub fn start(config: &Config, directory: &BrokerDirectory) -> anyhow::Result<()> {
    for s in &config.kafka_sinks {
        open(s, directory)?;
    }
    Ok(())
}

/// Adds and replaces the KafkaSinks `diff` adds or changes (before what delivers to them).
pub fn reload_added(
    config: &Config,
    diff: &ConfigDiff,
    directory: &BrokerDirectory,
) -> anyhow::Result<()> {
    let d = diff.of_kind(Kind::KafkaSink);
    for id in d.added.iter().chain(&d.changed) {
        let sink = config
            .kafka_sinks
            .iter()
            .find(|s| s.metadata.namespace == id.namespace && s.metadata.name == id.name)
            .with_context(|| format!("{id} is not in the configuration"))?;
        open(sink, directory)?;
    }
    Ok(())
}

/// Removes the KafkaSinks `diff` removes (after what delivered to them).
pub fn reload_removed(diff: &ConfigDiff, directory: &BrokerDirectory) {
    for id in &diff.of_kind(Kind::KafkaSink).removed {
        if directory
            .remove_sink(KAFKA_SINK, &id.namespace, &id.name)
            .is_some()
        {
            tracing::info!(sink = %id, "KafkaSink removed");
        }
    }
}

fn open(s: &ember_api::KafkaSink, directory: &BrokerDirectory) -> anyhow::Result<()> {
    let sink = KafkaSink::start(s).map_err(anyhow::Error::msg)?;
    tracing::info!(sink = %format!("{}/{}", s.metadata.namespace, s.metadata.name), topic = %s.spec.topic, brokers = %s.spec.bootstrap_servers.join(","), "KafkaSink producing");
    directory.insert_sink(
        KAFKA_SINK,
        &s.metadata.namespace,
        &s.metadata.name,
        Arc::new(sink),
    );
    Ok(())
}
