//! What a Trigger (or a dead-letter sink, or a reply) names as the place for an event to go,
//! kept as named — not resolved to a URL — so each kind can be reached its own way.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use ember_event::sink::EventSink;

use http::Uri;

use crate::broker::Broker;

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Any CloudEvents receiver, over HTTP.
    Http(Uri),
    /// A Broker of this Ember, appended to in process — no HTTP round trip to itself; the event
    /// enters it as through its ingress (TTL decremented, arrival time stamped).
    Broker {
        /// The broker's namespace.
        namespace: String,
        /// The broker's name.
        name: String,
    },
    /// A Knative Service of this Ember, reached in process through its route and activator
    /// (the [`ServiceGateway`] the binary wires in): no HTTP hop through Ember's own listener,
    /// and a delivery that waits for a revision to wake is in flight, not a failed attempt.
    Service {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
        /// The request path (a relative `uri` beside the `ref`), `/` by default.
        path: String,
    },
    /// A sink of this Ember that is not a broker — a KafkaSink — taking events as sources hand
    /// them over ([`EventSink`]): `Ok` once it holds the event (Kafka acknowledged the record).
    /// The binary registers each in the [`BrokerDirectory`] by kind, namespace and name.
    Sink {
        /// The sink's kind, e.g. `KafkaSink`.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// How deliveries reach a Knative Service of this Ember: its route, activator and instance.
/// Implemented by the binary over serving, which never depends on the broker.
pub trait ServiceGateway: Send + Sync {
    /// Sends one request to Service `namespace/name` and returns its answer, the body read up to
    /// `max_body` bytes; `Err` when no answer came (not found, no instance could start, the
    /// connection failed), with the status the failure counts as.
    fn send(
        &self,
        namespace: &str,
        name: &str,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
        max_body: usize,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<http::Response<bytes::Bytes>, (http::StatusCode, String)>,
    >;

    /// Resolves once Service `namespace/name` has room for one more delivery (its ready
    /// instances' concurrency is not all taken by admitted deliveries), with a guard that gives
    /// the room back when dropped. At once when the Service does not exist or cannot start (the
    /// attempt then fails as it would).
    fn admit(
        &self,
        namespace: &str,
        name: &str,
    ) -> futures_util::future::BoxFuture<'static, Box<dyn Send + Sync>> {
        let _ = (namespace, name);
        Box::pin(async { Box::new(()) as Box<dyn Send + Sync> })
    }
}

impl Destination {
    /// The `host:port` requests to it share (for `ember.dev/subscriber-max-in-flight`), if it
    /// is reached over HTTP.
    pub fn authority(&self) -> Option<String> {
        match self {
            Destination::Http(uri) => uri.authority().map(|a| a.as_str().to_owned()),
            _ => None,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Http(uri) => write!(f, "{uri}"),
            Destination::Broker { namespace, name } => write!(f, "broker {namespace}/{name}"),
            Destination::Service {
                namespace,
                name,
                path,
            } => write!(f, "service {namespace}/{name}{path}"),
            Destination::Sink {
                kind,
                namespace,
                name,
            } => write!(f, "{kind} {namespace}/{name}"),
        }
    }
}

/// Other sinks by (kind, namespace, name).
type Sinks = HashMap<(String, String, String), Arc<dyn EventSink>>;

/// The in-process destinations of this Ember: its brokers by `namespace/name`, the gateway to
/// its Services, and its other sinks (KafkaSinks). Shared by every dispatcher; the binary adds
/// and removes brokers and sinks as they open and close.
#[derive(Clone, Default)]
pub struct BrokerDirectory(
    Arc<RwLock<Vec<Arc<Broker>>>>,
    Arc<RwLock<Option<Arc<dyn ServiceGateway>>>>,
    Arc<RwLock<Sinks>>,
);

impl fmt::Debug for BrokerDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let brokers = self.0.read().unwrap_or_else(|e| e.into_inner());
        f.debug_list()
            .entries(brokers.iter().map(|b| b.name()))
            .finish()
    }
}

impl BrokerDirectory {
    /// Sets the gateway to this Ember's Services.
    pub fn set_services(&self, gateway: Arc<dyn ServiceGateway>) {
        *self.1.write().unwrap_or_else(|e| e.into_inner()) = Some(gateway);
    }

    /// The gateway to this Ember's Services, once serving runs.
    pub fn services(&self) -> Option<Arc<dyn ServiceGateway>> {
        self.1.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `sink` reachable as the `kind` `namespace/name` (replacing one of the same name).
    pub fn insert_sink(&self, kind: &str, namespace: &str, name: &str, sink: Arc<dyn EventSink>) {
        self.2.write().unwrap_or_else(|e| e.into_inner()).insert(
            (kind.to_owned(), namespace.to_owned(), name.to_owned()),
            sink,
        );
    }

    /// Makes the sink `kind` `namespace/name` unreachable.
    pub fn remove_sink(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<dyn EventSink>> {
        self.2.write().unwrap_or_else(|e| e.into_inner()).remove(&(
            kind.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        ))
    }

    /// The sink `kind` `namespace/name`, if it is open.
    pub fn sink(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<dyn EventSink>> {
        let sinks = self.2.read().unwrap_or_else(|e| e.into_inner());
        // Few sinks, read once per delivery: a scan avoids building an owned key.
        sinks
            .iter()
            .find(|((k, ns, n), _)| k == kind && ns == namespace && n == name)
            .map(|(_, s)| s.clone())
    }

    /// Every sink's (kind, namespace, name).
    pub fn sinks(&self) -> Vec<(String, String, String)> {
        let sinks = self.2.read().unwrap_or_else(|e| e.into_inner());
        sinks.keys().cloned().collect()
    }

    /// Makes `broker` reachable under its `namespace/name` (replacing one of the same name).
    pub fn insert(&self, broker: Arc<Broker>) {
        let mut brokers = self.0.write().unwrap_or_else(|e| e.into_inner());
        brokers.retain(|b| b.name() != broker.name());
        brokers.push(broker);
    }

    /// Makes the broker `namespace/name` unreachable.
    pub fn remove(&self, namespace: &str, name: &str) -> Option<Arc<Broker>> {
        let mut brokers = self.0.write().unwrap_or_else(|e| e.into_inner());
        let at = brokers
            .iter()
            .position(|b| b.namespace() == namespace && b.short_name() == name)?;
        Some(brokers.swap_remove(at))
    }

    /// Every broker, in no particular order.
    pub fn all(&self) -> Vec<Arc<Broker>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many brokers are open.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no broker is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The broker whose ingress path is `path` (`/{namespace}/{name}`), if it is open.
    pub fn by_path(&self, path: &str) -> Option<Arc<Broker>> {
        let (namespace, name) = path.strip_prefix('/')?.split_once('/')?;
        self.get(namespace, name)
    }

    /// The broker `namespace/name`, if it is open. A scan without allocating a key: there are
    /// few brokers, and this is read once per request or in-process delivery.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Broker>> {
        let brokers = self.0.read().unwrap_or_else(|e| e.into_inner());
        brokers
            .iter()
            .find(|b| b.namespace() == namespace && b.short_name() == name)
            .cloned()
    }
}
