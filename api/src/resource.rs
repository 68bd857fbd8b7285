//! The kinds Ember understands, and [`Resource`], one value of any of them.
//!
//! [`Kind`] names a kind and the API versions accepted for it; [`Resource`] wraps the typed
//! struct of each kind with uniform accessors (kind, name, namespace, validation).

use std::fmt;

use crate::broker::Broker;
use crate::delivery::{DeliverySpec, Destination};
use crate::field::{FieldError, FieldPath};
use crate::meta::ObjectMeta;
use crate::serving::{Configuration, Route, Service};
use crate::sinks::KafkaSink;
use crate::sources::{KafkaSource, PingSource, RabbitmqSource, WebhookSource};
use crate::trigger::Trigger;

/// A kind of resource Ember reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `Broker` (eventing.knative.dev/v1).
    Broker,
    /// `Trigger` (eventing.knative.dev/v1).
    Trigger,
    /// `PingSource` (sources.knative.dev/v1, v1beta2).
    PingSource,
    /// `KafkaSource` (sources.knative.dev/v1beta1, v1).
    KafkaSource,
    /// `RabbitmqSource` (sources.knative.dev/v1alpha1).
    RabbitmqSource,
    /// `WebhookSource` (sources.ember.dev/v1alpha1).
    WebhookSource,
    /// `KafkaSink` (eventing.knative.dev/v1alpha1).
    KafkaSink,
    /// `Service` (serving.knative.dev/v1).
    Service,
    /// `Configuration` (serving.knative.dev/v1), written on its own.
    Configuration,
    /// `Route` (serving.knative.dev/v1), written on its own.
    Route,
}

impl Kind {
    /// Every kind, in documentation order.
    pub const ALL: [Kind; 10] = [
        Kind::Broker,
        Kind::Trigger,
        Kind::PingSource,
        Kind::KafkaSource,
        Kind::RabbitmqSource,
        Kind::WebhookSource,
        Kind::KafkaSink,
        Kind::Service,
        Kind::Configuration,
        Kind::Route,
    ];

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Broker => "Broker",
            Kind::Trigger => "Trigger",
            Kind::PingSource => "PingSource",
            Kind::KafkaSource => "KafkaSource",
            Kind::RabbitmqSource => "RabbitmqSource",
            Kind::WebhookSource => "WebhookSource",
            Kind::KafkaSink => "KafkaSink",
            Kind::Service => "Service",
            Kind::Configuration => "Configuration",
            Kind::Route => "Route",
        }
    }

    /// The API versions accepted for this kind, preferred first.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Broker | Kind::Trigger => &["eventing.knative.dev/v1"],
            Kind::PingSource => &["sources.knative.dev/v1", "sources.knative.dev/v1beta2"],
            Kind::KafkaSource => &["sources.knative.dev/v1", "sources.knative.dev/v1beta1"],
            Kind::RabbitmqSource => &["sources.knative.dev/v1alpha1"],
            Kind::WebhookSource => &["sources.ember.dev/v1alpha1"],
            Kind::KafkaSink => &["eventing.knative.dev/v1alpha1"],
            Kind::Service | Kind::Configuration | Kind::Route => &["serving.knative.dev/v1"],
        }
    }

    /// The kind named `name` (case-sensitive, as Kubernetes), if Ember knows it.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource's identity: kind, namespace and name. Displays as `Trigger default/orders`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    /// The kind.
    pub kind: Kind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One resource of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A Broker.
    Broker(Broker),
    /// A Trigger.
    Trigger(Trigger),
    /// A PingSource.
    PingSource(PingSource),
    /// A KafkaSource.
    KafkaSource(KafkaSource),
    /// A RabbitmqSource.
    RabbitmqSource(RabbitmqSource),
    /// A WebhookSource.
    WebhookSource(WebhookSource),
    /// A KafkaSink.
    KafkaSink(KafkaSink),
    /// A Service.
    Service(Service),
    /// A Configuration written on its own.
    Configuration(Configuration),
    /// A Route written on its own.
    Route(Route),
}

impl Resource {
    /// The resource's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Broker(_) => Kind::Broker,
            Resource::Trigger(_) => Kind::Trigger,
            Resource::PingSource(_) => Kind::PingSource,
            Resource::KafkaSource(_) => Kind::KafkaSource,
            Resource::RabbitmqSource(_) => Kind::RabbitmqSource,
            Resource::WebhookSource(_) => Kind::WebhookSource,
            Resource::KafkaSink(_) => Kind::KafkaSink,
            Resource::Service(_) => Kind::Service,
            Resource::Configuration(_) => Kind::Configuration,
            Resource::Route(_) => Kind::Route,
        }
    }

    /// The resource's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::Broker(r) => &r.metadata,
            Resource::Trigger(r) => &r.metadata,
            Resource::PingSource(r) => &r.metadata,
            Resource::KafkaSource(r) => &r.metadata,
            Resource::RabbitmqSource(r) => &r.metadata,
            Resource::WebhookSource(r) => &r.metadata,
            Resource::KafkaSink(r) => &r.metadata,
            Resource::Service(r) => &r.metadata,
            Resource::Configuration(r) => &r.metadata,
            Resource::Route(r) => &r.metadata,
        }
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The resource's namespace (`default` when the YAML gave none).
    pub fn namespace(&self) -> &str {
        &self.metadata().namespace
    }

    /// The resource's identity.
    pub fn id(&self) -> ResourceId {
        ResourceId {
            kind: self.kind(),
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
        }
    }

    /// Every destination in the resource with its path: subscribers, sinks and dead-letter
    /// sinks.
    pub fn destinations(&self) -> Vec<(FieldPath, &Destination)> {
        fn dead_letter<'a>(
            spec: &FieldPath,
            d: Option<&'a DeliverySpec>,
            out: &mut Vec<(FieldPath, &'a Destination)>,
        ) {
            if let Some(dls) = d.and_then(|d| d.dead_letter_sink.as_ref()) {
                out.push((spec.key("delivery").key("deadLetterSink"), dls));
            }
        }
        let spec = FieldPath::root().key("spec");
        let mut out = Vec::new();
        let delivery = |d, out: &mut Vec<_>| dead_letter(&spec, d, out);
        match self {
            Resource::Broker(r) => delivery(r.spec.delivery.as_ref(), &mut out),
            Resource::Trigger(r) => {
                out.push((spec.key("subscriber"), &r.spec.subscriber));
                delivery(r.spec.delivery.as_ref(), &mut out);
            }
            Resource::PingSource(r) => out.push((spec.key("sink"), &r.spec.sink)),
            Resource::KafkaSource(r) => {
                out.push((spec.key("sink"), &r.spec.sink));
                delivery(r.spec.delivery.as_ref(), &mut out);
            }
            Resource::RabbitmqSource(r) => {
                out.push((spec.key("sink"), &r.spec.sink));
                delivery(r.spec.delivery.as_ref(), &mut out);
            }
            Resource::WebhookSource(r) => out.push((spec.key("sink"), &r.spec.sink)),
            Resource::KafkaSink(_)
            | Resource::Service(_)
            | Resource::Configuration(_)
            | Resource::Route(_) => {}
        }
        out
    }

    /// Where a source sends its events (`spec.sink`); `None` for kinds that are not sources.
    pub fn sink(&self) -> Option<&Destination> {
        match self {
            Resource::PingSource(r) => Some(&r.spec.sink),
            Resource::KafkaSource(r) => Some(&r.spec.sink),
            Resource::RabbitmqSource(r) => Some(&r.spec.sink),
            Resource::WebhookSource(r) => Some(&r.spec.sink),
            Resource::Broker(_)
            | Resource::Trigger(_)
            | Resource::KafkaSink(_)
            | Resource::Service(_)
            | Resource::Configuration(_)
            | Resource::Route(_) => None,
        }
    }

    /// Checks the resource on its own (not against other resources); paths start at the
    /// resource's root (`metadata.name`, `spec.delivery.retry`).
    pub fn validate(&self) -> Vec<FieldError> {
        match self {
            Resource::Broker(r) => r.validate(),
            Resource::Trigger(r) => r.validate(),
            Resource::PingSource(r) => r.validate(),
            Resource::KafkaSource(r) => r.validate(),
            Resource::RabbitmqSource(r) => r.validate(),
            Resource::WebhookSource(r) => r.validate(),
            Resource::KafkaSink(r) => r.validate(),
            Resource::Service(r) => r.validate(),
            Resource::Configuration(r) => r.validate(),
            Resource::Route(r) => r.validate(),
        }
    }
}
