//! Event sources: resources that turn outside input into CloudEvents sent to a sink.
//!
//! [`PingSource`] (cron), [`KafkaSource`], [`RabbitmqSource`] (Knative's shapes) and Ember's own
//! [`WebhookSource`]. The pieces they share — `ceOverrides` and CloudEvents extension names —
//! live here.

pub mod kafka;
pub mod kafka_net;
pub mod ping;
pub mod rabbitmq;
pub mod webhook;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::field::{Errors, FieldPath};
use crate::meta::null_as_default;

pub use kafka::{InitialOffset, KafkaSource, KafkaSourceSpec, Ordering};
pub use kafka_net::{KafkaNet, KafkaSasl, KafkaTls, NetSecret};
pub use ping::{PingSource, PingSourceSpec, check_schedule, check_timezone};
pub use rabbitmq::{
    ConnectionSecret, RabbitmqClusterReference, RabbitmqConnection, RabbitmqResourcesConfig,
    RabbitmqSource, RabbitmqSourceSpec, ResolvedConnection,
};
pub use webhook::{
    BasicAuth, BearerAuth, HmacAlgorithm, HmacAuth, HmacEncoding, IdRule, RateLimit, SecretKeyRef,
    SecretSource, SecretValue, SignedSecret, TypeRule, WebhookAuth, WebhookSource,
    WebhookSourceSpec,
};

/// Attributes added to, or overriding, every event a source produces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeOverrides {
    /// Extension attribute name → value, set on every event.
    #[serde(default, deserialize_with = "null_as_default")]
    pub extensions: BTreeMap<String, String>,
}

impl CeOverrides {
    /// The extensions of `overrides` (none when absent), as name–value pairs.
    pub fn pairs(overrides: Option<&CeOverrides>) -> Vec<(String, String)> {
        overrides
            .map(|o| {
                o.extensions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Attributes that `ceOverrides` and header mappings may not set.
const RESERVED_ATTRIBUTES: &[&str] =
    &["specversion", "id", "source", "type", "data", "data_base64"];

/// Why `name` is not a usable CloudEvents extension attribute name, or `Ok`.
pub fn check_extension_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(format!(
            "{name:?} is not a CloudEvents attribute name (lowercase letters and digits only)"
        ));
    }
    if RESERVED_ATTRIBUTES.contains(&name) {
        return Err(format!("{name:?} is a reserved CloudEvents attribute"));
    }
    Ok(())
}

impl CeOverrides {
    pub(crate) fn validate_into(&self, path: &FieldPath, errs: &mut Errors) {
        for k in self.extensions.keys() {
            if let Err(why) = check_extension_name(k) {
                errs.push(&path.key("extensions"), why);
            }
        }
    }
}

/// Picks the one option that is set among `options`, or explains what is wrong.
pub(crate) fn exactly_one<T>(options: Vec<(&'static str, Option<T>)>) -> Result<T, String> {
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let mut set: Vec<(&'static str, T)> = options
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
    match set.len() {
        1 => Ok(set.remove(0).1),
        0 => Err(format!(
            "exactly one of {} is required, found none",
            names.join(", ")
        )),
        _ => Err(format!(
            "exactly one of {} is required, found {}",
            names.join(", "),
            set.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )),
    }
}
