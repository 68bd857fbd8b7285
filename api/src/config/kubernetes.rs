//! Plain Kubernetes kinds that travel with Knative manifests, and what Ember makes of each.
//!
//! - `Secret` (`data` base64, `stringData` plain) is where the secrets Knative resources refer
//!   to live when Ember runs standalone; `ConfigMap` carries Knative's settings
//!   (`config-br-defaults` in `knative-eventing`); `Namespace` is accepted. These are data, not
//!   resources Ember runs: they have no status and are read by what refers to them.
//! - RBAC and identity kinds (`ServiceAccount`, `Role`, ...) mean nothing outside a cluster:
//!   accepted and ignored, with one notice each.
//! - `List` (what `kubectl get -o yaml` prints) is unwrapped by the loader.
//! - Everything else is refused with one consistent message that names what Ember runs instead
//!   where there is an equivalent ([`unclaimed`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

/// A Kubernetes `Secret` (v1): `data` (base64) and `stringData` (plain), merged as the API
/// server merges them (`stringData` wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// `v1`.
    pub api_version: String,
    /// `Secret`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The Secret's type (`Opaque`, ...); not used.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// Values, base64-encoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Values, as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// `immutable`; not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl Secret {
    /// The value under `key`, decoded. Never put a value in an error or a log line.
    pub fn value(&self, key: &str) -> Result<Vec<u8>, String> {
        if let Some(v) = self.string_data.get(key) {
            return Ok(v.as_bytes().to_vec());
        }
        let Some(v) = self.data.get(key) else {
            let keys: Vec<&str> = self
                .data
                .keys()
                .chain(self.string_data.keys())
                .map(String::as_str)
                .collect();
            return Err(format!(
                "Secret {}/{} has no key {key:?} (keys: {})",
                self.metadata.namespace,
                self.metadata.name,
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            ));
        };
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| {
                format!(
                    "Secret {}/{}: data[{key}] is not base64: {e}",
                    self.metadata.namespace, self.metadata.name
                )
            })
    }

    /// Why the Secret is malformed (a `data` value that is not base64), or `Ok`.
    pub fn check(&self) -> Result<(), String> {
        for key in self.data.keys() {
            self.value(key)?;
        }
        Ok(())
    }
}

/// A Kubernetes `ConfigMap` (v1): string data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    /// `v1`.
    pub api_version: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Binary data; not used.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
}

/// What Ember does with a document of a kind that is not one of the resources it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Other {
    /// A Secret: kept, for references to it.
    Secret,
    /// A ConfigMap: kept; Ember reads Knative's own.
    ConfigMap,
    /// A Namespace: accepted (namespaces exist by being named).
    Namespace,
    /// Meaningless outside a cluster: accepted and ignored, with this notice.
    Ignored(String),
    /// Unwrapped by the loader.
    List,
    /// Refused, with this reason.
    Refused(String),
}

/// Kubernetes kinds about identity and access, meaningless outside a cluster.
const IGNORED: &[&str] = &[
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// What Ember does with `kind` at `api_version`, when it is not a kind Ember runs.
pub(super) fn other(api_version: &str, kind: &str) -> Other {
    match (api_version, kind) {
        ("v1", "Secret") => Other::Secret,
        ("v1", "ConfigMap") => Other::ConfigMap,
        ("v1", "Namespace") => Other::Namespace,
        ("v1", "List") => Other::List,
        (_, k) if IGNORED.contains(&k) => Other::Ignored(format!(
            "{k} ({api_version}) has no meaning outside Kubernetes: ignored"
        )),
        ("", _) => Other::Refused(format!("apiVersion is required; {}", unclaimed("", kind))),
        _ => Other::Refused(unclaimed(api_version, kind)),
    }
}

/// The kinds Ember reads, for messages.
pub const KINDS: &str = "Ember runs Broker, Trigger (eventing.knative.dev/v1), PingSource, \
                         KafkaSource, RabbitmqSource (sources.knative.dev), WebhookSource \
                         (sources.ember.dev/v1alpha1), KafkaSink \
                         (eventing.knative.dev/v1alpha1), Service, Configuration and Route \
                         (serving.knative.dev/v1); it reads Secret, ConfigMap and Namespace (v1)";

/// The one message for a kind Ember does not run: what it is, and what to use instead.
pub fn unclaimed(api_version: &str, kind: &str) -> String {
    let instead = match kind {
        "Service" if api_version == "v1" => {
            "a Kubernetes Service addresses pods in a cluster; Ember runs standalone. Reach a \
             process you run with a uri (http://HOST:PORT/), or define a Knative Service \
             (serving.knative.dev/v1) for Ember to run"
        }
        "Channel" | "InMemoryChannel" | "KafkaChannel" | "NatssChannel" => {
            "a Broker with Triggers does what a Channel with Subscriptions does"
        }
        "Subscription" => "subscribe with a Trigger on a Broker",
        "Sequence" | "Parallel" => {
            "chain steps with Triggers whose subscribers reply (a reply goes back to the Broker)"
        }
        "ContainerSource" | "SinkBinding" => {
            "send events from your process to a Broker's ingress (POST \
             http://HOST:PORT/{namespace}/{broker}); a PingSource or WebhookSource may fit"
        }
        "ApiServerSource" => "Ember runs without a Kubernetes API server",
        "EventType" => "event types are not registered; Triggers filter on any type",
        "Deployment" | "StatefulSet" | "DaemonSet" | "Pod" | "ReplicaSet" | "Job" | "CronJob" => {
            "run your code as a Knative Service (serving.knative.dev/v1), or schedule it with a \
             PingSource"
        }
        _ => "",
    };
    let runs = KINDS;
    let what = if api_version.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({api_version})")
    };
    if instead.is_empty() {
        format!("Ember does not run {what}; {runs}")
    } else {
        format!("Ember does not run {what}: {instead}")
    }
}
