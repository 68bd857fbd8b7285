//! References resolved as Knative resolves them: what a Destination names, and which resources
//! are Ready because everything they refer to exists.
//!
//! Knative lets a resource exist before what it refers to — a Trigger before its Broker, a
//! source before its sink, a Trigger before its subscriber's Service: the resource is simply
//! not Ready, with a reason, until the referent appears. [`Config::readiness`] decides that
//! for every resource, with Knative's condition types and reasons; [`Config::runnable`] keeps
//! the resources that are Ready, which is what `ember run` starts. A reload re-decides it, so
//! a resource starts the moment its referent appears and stops when it goes. `ember validate`
//! reports each not-Ready resource as a warning ([`Config::warnings`]) — only what Knative
//! itself refuses is an error.
//!
//! This is the one place that decides what a Destination resolves to: validation, the
//! statuses and the running broker all ask [`Config::target`].

use std::collections::BTreeMap;

use super::{Config, Located};
use crate::delivery::Destination;
use crate::field::{FieldError, FieldPath};
use crate::resource::{Resource, ResourceId};

/// What a Destination names, once resolved against the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An absolute URL.
    Url(String),
    /// A Broker of this configuration (`uri`: a relative URI to resolve against its address).
    Broker {
        /// The Broker's namespace.
        namespace: String,
        /// The Broker's name.
        name: String,
        /// The Destination's relative `uri`, if any.
        uri: Option<String>,
    },
    /// A KafkaSink of this configuration: events given to it become records of its topic.
    KafkaSink {
        /// The KafkaSink's namespace.
        namespace: String,
        /// The KafkaSink's name.
        name: String,
    },
    /// A Knative Service of this configuration (`uri`: as for a Broker).
    Service {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
        /// The Destination's relative `uri`, if any.
        uri: Option<String>,
    },
}

/// Why a Destination does not resolve (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// Knative's reason, e.g. `NotFound`.
    pub reason: String,
    /// What is missing, for people.
    pub message: String,
}

/// One of a resource's conditions that the configuration alone decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The condition type, e.g. `BrokerReady`.
    pub condition: &'static str,
    /// Whether it holds.
    pub ok: bool,
    /// Knative's reason.
    pub reason: String,
    /// For people.
    pub message: String,
    /// The field it is about, when one.
    pub field: Option<FieldPath>,
}

impl Check {
    /// A check that holds. Knative's True conditions carry no reason or message unless they
    /// say something; neither is kept here (ten thousand Triggers would hold as many strings).
    fn ok(condition: &'static str, _reason: &str, _message: impl Into<String>) -> Self {
        Check {
            condition,
            ok: true,
            reason: String::new(),
            message: String::new(),
            field: None,
        }
    }

    /// A check that holds, with Knative's reason and message for it.
    fn ok_noted(condition: &'static str, reason: &str, message: &str) -> Self {
        Check {
            condition,
            ok: true,
            reason: reason.to_owned(),
            message: message.to_owned(),
            field: None,
        }
    }

    fn failed(condition: &'static str, field: FieldPath, why: Unresolved) -> Self {
        Check {
            condition,
            ok: false,
            reason: why.reason,
            message: why.message,
            field: Some(field),
        }
    }
}

/// Every resource's configuration-decided conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness(BTreeMap<ResourceId, Vec<Check>>);

impl Readiness {
    /// The checks of `id` (empty for a resource with none, or unknown).
    pub fn checks(&self, id: &ResourceId) -> &[Check] {
        self.0.get(id).map_or(&[], Vec::as_slice)
    }

    /// Whether every check of `id` holds.
    pub fn is_ready(&self, id: &ResourceId) -> bool {
        self.checks(id).iter().all(|c| c.ok)
    }

    /// Resources with a failing check, and those checks.
    pub fn not_ready(&self) -> impl Iterator<Item = (&ResourceId, Vec<&Check>)> {
        self.0.iter().filter_map(|(id, checks)| {
            let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
            (!failed.is_empty()).then_some((id, failed))
        })
    }
}

/// Whether `api_version` is in `group` (any version: Knative's resolver follows the object,
/// and every served version of a kind names the same objects).
fn in_group(api_version: &str, group: &str) -> bool {
    api_version.split_once('/').is_some_and(|(g, _)| g == group)
}

impl Config {
    /// What `dest` names, for a resource in `own_namespace`. `Err` when its referent is not
    /// (yet) in the configuration, with Knative's reason.
    pub fn target(&self, dest: &Destination, own_namespace: &str) -> Result<Target, Unresolved> {
        let Some(r) = &dest.reference else {
            return match &dest.uri {
                Some(uri) => Ok(Target::Url(uri.clone())),
                None => Err(Unresolved {
                    reason: "NotFound".into(),
                    message: "neither uri nor ref is set".into(),
                }),
            };
        };
        let namespace = r.namespace_or(own_namespace).to_owned();
        let uri = dest.uri.clone().filter(|u| !u.is_empty());
        let not_found = |what: &str| Unresolved {
            reason: "NotFound".into(),
            message: format!(
                "{what} {namespace}/{} does not exist{}",
                r.name,
                self.defined_hint(what, &namespace)
            ),
        };
        match r.kind.as_str() {
            "Broker" if in_group(&r.api_version, "eventing.knative.dev") => {
                if self.broker(&namespace, &r.name).is_none() {
                    return Err(not_found("Broker"));
                }
                Ok(Target::Broker {
                    namespace,
                    name: r.name.clone(),
                    uri,
                })
            }
            "KafkaSink" if in_group(&r.api_version, "eventing.knative.dev") => {
                let Some(sink) = self
                    .kafka_sinks
                    .iter()
                    .find(|s| s.metadata.namespace == namespace && s.metadata.name == r.name)
                else {
                    return Err(not_found("KafkaSink"));
                };
                // A KafkaSink whose auth Secret is missing does not run: what names it waits.
                if let Some(check) = self
                    .secret_checks(&Resource::KafkaSink(sink.resource.clone()))
                    .into_iter()
                    .next()
                {
                    return Err(Unresolved {
                        reason: "NotReady".into(),
                        message: format!(
                            "KafkaSink {namespace}/{} is not Ready: {}",
                            r.name, check.message
                        ),
                    });
                }
                // Knative's KafkaSink is addressed at its URL; a relative `uri` beside the ref
                // has no meaning for a topic.
                Ok(Target::KafkaSink {
                    namespace,
                    name: r.name.clone(),
                })
            }
            "Service" if in_group(&r.api_version, "serving.knative.dev") => {
                let defined = self
                    .services
                    .iter()
                    .any(|s| s.metadata.namespace == namespace && s.metadata.name == r.name);
                if !defined {
                    return Err(not_found("Service"));
                }
                Ok(Target::Service {
                    namespace,
                    name: r.name.clone(),
                    uri,
                })
            }
            // Validation refuses refs to anything else (see `unresolvable_ref`).
            kind => Err(Unresolved {
                reason: "NotFound".into(),
                message: format!("a ref to a {kind} ({}) does not resolve", r.api_version),
            }),
        }
    }

    /// ` (Brokers there: a, b)`, or ` (no Broker is defined in namespace "x")`.
    fn defined_hint(&self, kind: &str, namespace: &str) -> String {
        let names: Vec<&str> = match kind {
            "Broker" => self
                .brokers
                .iter()
                .filter(|b| b.metadata.namespace == namespace)
                .map(|b| b.metadata.name.as_str())
                .collect(),
            "KafkaSink" => self
                .kafka_sinks
                .iter()
                .filter(|s| s.metadata.namespace == namespace)
                .map(|s| s.metadata.name.as_str())
                .collect(),
            _ => self
                .services
                .iter()
                .filter(|s| s.metadata.namespace == namespace)
                .map(|s| s.metadata.name.as_str())
                .collect(),
        };
        if names.is_empty() {
            format!(" (no {kind} is defined in namespace {namespace:?} yet)")
        } else {
            format!(" ({kind}s there: {})", names.join(", "))
        }
    }

    /// Every resource's configuration-decided conditions (see the module doc).
    pub fn readiness(&self) -> Readiness {
        let mut out = BTreeMap::new();
        for t in &self.triggers {
            out.insert(id_of(t, Resource::Trigger), self.trigger_checks(t));
        }
        for (resource, _) in self.resources() {
            let Some(sink) = resource.sink() else {
                continue;
            };
            let ns = resource.namespace().to_owned();
            let check = match self.target(sink, &ns) {
                Ok(_) => Check::ok("SinkProvided", "SinkProvided", "the sink resolves"),
                Err(why) => Check::failed("SinkProvided", FieldPath::parse_keys("spec.sink"), why),
            };
            let mut checks = vec![check];
            checks.extend(self.secret_checks(&resource));
            out.insert(resource.id(), checks);
        }
        for s in &self.kafka_sinks {
            let resource = Resource::KafkaSink(s.resource.clone());
            let checks = self.secret_checks(&resource);
            out.insert(resource.id(), checks);
        }
        for svc in &self.services {
            let resource = Resource::Service(svc.resource.clone());
            let checks = self.secret_checks(&resource);
            out.insert(resource.id(), checks);
        }
        for c in &self.configurations {
            let resource = Resource::Configuration(c.resource.clone());
            let checks = self.secret_checks(&resource);
            out.insert(resource.id(), checks);
        }
        for r in &self.routes {
            let ns = &r.metadata.namespace;
            let checks = r
                .spec
                .traffic
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let c = t.configuration_name.as_ref()?;
                    let defined = self
                        .configurations
                        .iter()
                        .map(|c| &c.metadata)
                        .chain(self.services.iter().map(|s| &s.metadata))
                        .any(|m| &m.namespace == ns && &m.name == c);
                    (!defined).then(|| {
                        Check::failed(
                            "AllTrafficAssigned",
                            FieldPath::parse_keys("spec.traffic")
                                .index(i)
                                .key("configurationName"),
                            Unresolved {
                                reason: "ConfigurationMissing".into(),
                                message: format!(
                                    "Configuration {ns}/{c} does not exist (a Configuration, or \
                                     a Service, which owns one of its name)"
                                ),
                            },
                        )
                    })
                })
                .collect();
            out.insert(Resource::Route(r.resource.clone()).id(), checks);
        }
        for b in &self.brokers {
            let mut checks = Vec::new();
            if let Some(dls) = b
                .spec
                .delivery
                .as_ref()
                .and_then(|d| d.dead_letter_sink.as_ref())
            {
                checks.push(self.dead_letter_check(
                    dls,
                    &b.metadata.namespace,
                    FieldPath::parse_keys("spec.delivery.deadLetterSink"),
                ));
            }
            out.insert(id_of(b, Resource::Broker), checks);
        }
        Readiness(out)
    }

    fn trigger_checks(&self, t: &Located<crate::trigger::Trigger>) -> Vec<Check> {
        let ns = &t.metadata.namespace;
        let broker = &t.spec.broker;
        let mut checks = Vec::new();
        checks.push(if self.broker(ns, broker).is_some() {
            Check::ok(
                "BrokerReady",
                "BrokerReady",
                format!("Broker {broker:?} exists"),
            )
        } else {
            Check::failed(
                "BrokerReady",
                FieldPath::parse_keys("spec.broker"),
                Unresolved {
                    reason: "BrokerDoesNotExist".into(),
                    message: format!(
                        "Broker {broker:?} does not exist{}",
                        self.defined_hint("Broker", ns)
                    ),
                },
            )
        });
        checks.push(match self.target(&t.spec.subscriber, ns) {
            Ok(_) => Check::ok(
                "SubscriberResolved",
                "SubscriberResolved",
                "the subscriber resolves",
            ),
            Err(why) => Check::failed(
                "SubscriberResolved",
                FieldPath::parse_keys("spec.subscriber"),
                Unresolved {
                    // Knative's own reason for this condition.
                    reason: "Unable to get the Subscriber's URI".into(),
                    message: why.message,
                },
            ),
        });
        let own = t
            .spec
            .delivery
            .as_ref()
            .and_then(|d| d.dead_letter_sink.as_ref());
        let dls = self.dead_letter_sink_for(t);
        checks.push(match dls {
            None => Check::ok_noted(
                "DeadLetterSinkResolved",
                "DeadLetterSinkNotConfigured",
                "No dead letter sink is configured.",
            ),
            Some(dls) => self.dead_letter_check(
                dls,
                ns,
                FieldPath::parse_keys(if own.is_some() {
                    "spec.delivery.deadLetterSink"
                } else {
                    "spec.broker"
                }),
            ),
        });
        checks
    }

    /// The dead-letter sink in force for `trigger`: its own, else its Broker's.
    pub fn dead_letter_sink_for<'a>(
        &'a self,
        trigger: &'a crate::trigger::Trigger,
    ) -> Option<&'a Destination> {
        let own = trigger
            .spec
            .delivery
            .as_ref()
            .and_then(|d| d.dead_letter_sink.as_ref());
        own.or_else(|| {
            self.broker(&trigger.metadata.namespace, &trigger.spec.broker)
                .and_then(|b| b.spec.delivery.as_ref())
                .and_then(|d| d.dead_letter_sink.as_ref())
        })
    }

    fn dead_letter_check(&self, dls: &Destination, ns: &str, field: FieldPath) -> Check {
        match self.target(dls, ns) {
            Ok(_) => Check::ok(
                "DeadLetterSinkResolved",
                "DeadLetterSinkResolved",
                "the dead letter sink resolves",
            ),
            Err(why) => Check::failed(
                "DeadLetterSinkResolved",
                field,
                Unresolved {
                    reason: "Unable to get the dead letter sink's URI".into(),
                    message: why.message,
                },
            ),
        }
    }

    /// The resources `ember run` starts: every Broker, and every other resource whose
    /// references all resolve (see [`Config::readiness`]).
    pub fn runnable(&self, readiness: &Readiness) -> Config {
        fn keep<T: Clone>(
            v: &[Located<T>],
            wrap: fn(T) -> Resource,
            readiness: &Readiness,
        ) -> Vec<Located<T>> {
            v.iter()
                .filter(|l| readiness.is_ready(&id_of(l, wrap)))
                .cloned()
                .collect()
        }
        Config {
            brokers: self.brokers.clone(),
            triggers: keep(&self.triggers, Resource::Trigger, readiness),
            ping_sources: keep(&self.ping_sources, Resource::PingSource, readiness),
            kafka_sources: keep(&self.kafka_sources, Resource::KafkaSource, readiness),
            rabbitmq_sources: keep(&self.rabbitmq_sources, Resource::RabbitmqSource, readiness),
            webhook_sources: keep(&self.webhook_sources, Resource::WebhookSource, readiness),
            kafka_sinks: keep(&self.kafka_sinks, Resource::KafkaSink, readiness),
            services: keep(&self.services, Resource::Service, readiness),
            ..self.clone()
        }
    }

    /// One warning per resource that is not Ready because a reference does not resolve, located
    /// like an error: what `ember validate` prints (and `ember run` logs) without refusing.
    pub fn warnings(&self, readiness: &Readiness) -> Vec<super::ConfigError> {
        let origins: BTreeMap<ResourceId, &super::Origin> = self.ids().into_iter().collect();
        let mut out = Vec::new();
        for (id, failed) in readiness.not_ready() {
            let Some(origin) = origins.get(id) else {
                continue;
            };
            for check in failed {
                out.push(origin.error(
                    Some(id.to_string()),
                    FieldError::new(
                        check.field.clone().unwrap_or_else(FieldPath::root),
                        format!(
                            "not Ready ({} {}): {}; it starts as soon as the configuration \
                             has what it refers to",
                            check.condition, check.reason, check.message
                        ),
                    ),
                ));
            }
        }
        out
    }
}

fn id_of<T: Clone>(l: &Located<T>, wrap: fn(T) -> Resource) -> ResourceId {
    wrap(l.resource.clone()).id()
}

/// The kinds a Destination `ref` may name in Ember, by (group, kind).
pub(super) fn refusable_ref(api_version: &str, kind: &str) -> Option<String> {
    match kind {
        "Broker" | "KafkaSink" if in_group(api_version, "eventing.knative.dev") => None,
        "Service" if in_group(api_version, "serving.knative.dev") => None,
        "Service" if api_version == "v1" => Some(
            "a Kubernetes Service (apiVersion v1) is not something Ember runs or can address: \
             its pods live in a cluster. Use a uri (e.g. http://HOST:PORT/ for a process you \
             run), or a Knative Service (serving.knative.dev/v1) for Ember to run"
                .to_owned(),
        ),
        _ => Some(format!(
            "a ref to a {kind} ({api_version}) never resolves in Ember: a ref names a Broker \
             (eventing.knative.dev/v1), a KafkaSink (eventing.knative.dev/v1alpha1) or a \
             Knative Service (serving.knative.dev/v1); use a uri for anything else"
        )),
    }
}
