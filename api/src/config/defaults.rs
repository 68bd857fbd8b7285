//! Knative's broker defaults: the `config-br-defaults` ConfigMap in namespace
//! `knative-eventing`, read as Knative reads it.
//!
//! ```yaml
//! data:
//!   default-br-config: |
//!     clusterDefault:
//!       brokerClass: MTChannelBasedBroker
//!       delivery: {retry: 3, backoffPolicy: exponential, backoffDelay: PT0.2S}
//!     namespaceDefaults:
//!       team-a:
//!         brokerClass: Ember
//! ```
//!
//! As Knative's defaulting webhook does, a Broker without a class annotation gets the default
//! class written into its annotations, and a Broker without `spec.delivery` gets the default
//! delivery; a namespace's defaults win over the cluster's. Other fields (the channel
//! template's `apiVersion`, `kind`, `name`, `namespace`) configure Knative's channel-based
//! broker and are not used.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::kubernetes::ConfigMap;
use crate::annotations::BROKER_CLASS;
use crate::broker::Broker;
use crate::delivery::DeliverySpec;
use crate::field::{Errors, FieldError, FieldPath};

/// The ConfigMap's name.
pub const NAME: &str = "config-br-defaults";
/// Its namespace.
pub const NAMESPACE: &str = "knative-eventing";
/// The key holding the defaults.
const KEY: &str = "default-br-config";

/// Defaults for one scope.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeDefaults {
    #[serde(default)]
    broker_class: Option<String>,
    #[serde(default)]
    delivery: Option<DeliverySpec>,
    // The channel template (apiVersion, kind, name, namespace) is Knative's own business.
    #[serde(flatten)]
    _rest: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Defaults {
    #[serde(default)]
    cluster_default: Option<ScopeDefaults>,
    #[serde(default)]
    namespace_defaults: BTreeMap<String, ScopeDefaults>,
}

/// Knative's broker defaults, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerDefaults(Defaults);

impl BrokerDefaults {
    /// The defaults in `map` (`config-br-defaults`); errors name the field.
    pub fn parse(map: &ConfigMap) -> Result<Self, FieldError> {
        let path = FieldPath::parse_keys("data").key(KEY);
        let Some(text) = map.data.get(KEY) else {
            return Ok(Self::default());
        };
        let defaults: Defaults = serde_yaml_ng::from_str(text).map_err(|e| {
            FieldError::new(path.clone(), format!("not Knative's broker defaults: {e}"))
        })?;
        let mut errs = Errors::default();
        let scopes = defaults
            .cluster_default
            .iter()
            .map(|d| (path.key("clusterDefault"), d))
            .chain(
                defaults
                    .namespace_defaults
                    .iter()
                    .map(|(ns, d)| (path.key("namespaceDefaults").key(ns), d)),
            );
        for (p, d) in scopes {
            if let Some(class) = &d.broker_class
                && class.trim().is_empty()
            {
                errs.push(&p.key("brokerClass"), "must not be empty when given");
            }
            if let Some(delivery) = &d.delivery {
                delivery.validate_into(&p.key("delivery"), &mut errs);
            }
        }
        match errs.into_vec().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(Self(defaults)),
        }
    }

    fn for_namespace(&self, ns: &str) -> (Option<&String>, Option<&DeliverySpec>) {
        let scoped = self.0.namespace_defaults.get(ns);
        let cluster = self.0.cluster_default.as_ref();
        let class = scoped
            .and_then(|d| d.broker_class.as_ref())
            .or_else(|| cluster.and_then(|d| d.broker_class.as_ref()));
        let delivery = scoped
            .and_then(|d| d.delivery.as_ref())
            .or_else(|| cluster.and_then(|d| d.delivery.as_ref()));
        (class, delivery)
    }

    /// Writes the defaults into `broker` where it sets nothing itself.
    pub fn apply(&self, broker: &mut Broker) {
        let (class, delivery) = self.for_namespace(&broker.metadata.namespace);
        if let Some(class) = class {
            broker
                .metadata
                .annotations
                .entry(BROKER_CLASS.to_owned())
                .or_insert_with(|| class.clone());
        }
        if broker.spec.delivery.is_none() {
            broker.spec.delivery = delivery.cloned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> ConfigMap {
        ConfigMap {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            metadata: crate::meta::ObjectMeta::named(NAME),
            data: [(KEY.to_owned(), text.to_owned())].into(),
            binary_data: BTreeMap::new(),
        }
    }

    #[test]
    fn a_namespace_default_wins_over_the_cluster_default_and_a_broker_over_both() {
        let d = BrokerDefaults::parse(&map(
            "clusterDefault:\n  brokerClass: MTChannelBasedBroker\n  apiVersion: v1\n  kind: ConfigMap\n  name: config-br-default-channel\n  namespace: knative-eventing\n  delivery: {retry: 3}\nnamespaceDefaults:\n  team:\n    brokerClass: Kafka\n",
        ))
        .unwrap();
        let mut b = Broker::new("b");
        d.apply(&mut b);
        assert_eq!(b.metadata.annotations[BROKER_CLASS], "MTChannelBasedBroker");
        assert_eq!(b.spec.delivery.as_ref().and_then(|d| d.retry), Some(3));
        let mut b = Broker::new("b");
        b.metadata.namespace = "team".into();
        d.apply(&mut b);
        assert_eq!(b.metadata.annotations[BROKER_CLASS], "Kafka");
        assert_eq!(b.spec.delivery.as_ref().and_then(|d| d.retry), Some(3));
        let mut b = Broker::new("b");
        b.metadata
            .annotations
            .insert(BROKER_CLASS.into(), "Ember".into());
        d.apply(&mut b);
        assert_eq!(b.metadata.annotations[BROKER_CLASS], "Ember");
    }

    #[test]
    fn bad_defaults_name_the_field() {
        let e =
            BrokerDefaults::parse(&map("clusterDefault:\n  delivery: {retry: -1}\n")).unwrap_err();
        assert!(
            e.path.to_string().contains("clusterDefault.delivery"),
            "{e:?}"
        );
        let e = BrokerDefaults::parse(&map("clusterDefault: [1]\n")).unwrap_err();
        assert!(e.reason.contains("not Knative's broker defaults"), "{e:?}");
    }
}
