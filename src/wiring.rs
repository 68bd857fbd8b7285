//! From validated resources to running parts: each Broker with its Triggers becomes a
//! [`BrokerConfig`] and [`TriggerConfig`]s; delivery settings resolve Trigger over Broker over
//! Ember's defaults, field by field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ember_api::broker::Durability as ApiDurability;
use ember_api::delivery::Destination;
use ember_api::delivery::{BackoffPolicy as ApiBackoff, DeliveryFormat as ApiFormat, DeliverySpec};
use ember_api::resource::Kind;
use ember_api::trigger::Filter as ApiFilter;
use ember_api::trigger::{DeliveryOrder, Trigger};
use ember_api::{ConfigError, ConfigErrors, FieldError, FieldPath};
use ember_broker::broker::BrokerConfig;
use ember_broker::delivery::policy::{BackoffPolicy, DeliveryPolicy};
use ember_broker::delivery::{DeliveryFormat, Destination as BrokerDestination};
use ember_broker::dispatch::TriggerConfig;
use ember_broker::log::Durability;
use ember_triggers::{Comparison, FilterSpec, TriggerFilter};
use http::Uri;

pub use ember_api::config::Config;
use ember_api::config::Target;

/// The kinds `ember run` runs today: brokers, triggers, Knative Services, KafkaSinks and the
/// registered source kinds.
pub fn runnable(sources: &ember_sources::SourceKinds) -> Vec<Kind> {
    [
        Kind::Broker,
        Kind::Trigger,
        Kind::Service,
        Kind::Configuration,
        Kind::Route,
        Kind::KafkaSink,
    ]
    .into_iter()
    .chain(sources.kinds())
    .collect()
}

/// Append batches that may wait for a broker's log writer before ingress answers 503.
pub const APPEND_QUEUE_CAPACITY: usize = 4096;

/// Loads, validates and checks that everything can run; the error lists every problem.
pub fn load(files: &[PathBuf]) -> anyhow::Result<Config> {
    let config = ember_api::config::load(files)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    // Kinds are only checked here: their routes are never served.
    let sources = crate::sources::kinds(&Default::default());
    config
        .ensure_runnable(&runnable(&sources))
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    check_filters(&config).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    // Sources and sinks as running them would check them, and images against this machine's
    // OCI runtime: every problem at once.
    let mut errors = images_runnable(&config);
    for checked in [
        crate::sources::check(&config, &sources),
        crate::sinks::check(&config),
    ] {
        if let Err(e) = checked {
            errors.extend(e.0);
        }
    }
    if !errors.is_empty() {
        bail!("invalid configuration:\n{}", ConfigErrors(errors));
    }
    Ok(config)
}

/// A Service (or Configuration) with an image, on a machine with no usable OCI runtime: one
/// error each, at its `image`.
fn images_runnable(config: &Config) -> Vec<ConfigError> {
    let with_image: Vec<(ember_api::ResourceId, &ember_api::Origin)> = config
        .services
        .iter()
        .map(|s| {
            (
                ember_api::Resource::Service(s.resource.clone()).id(),
                &s.origin,
                &s.spec.template.spec.containers,
            )
        })
        .chain(config.configurations.iter().map(|c| {
            (
                ember_api::Resource::Configuration(c.resource.clone()).id(),
                &c.origin,
                &c.spec.template.spec.containers,
            )
        }))
        .filter(|(_, _, containers)| containers.iter().any(|c| c.image.is_some()))
        .map(|(id, origin, _)| (id, origin))
        .collect();
    if with_image.is_empty() {
        return Vec::new();
    }
    let Err(why) = ember_serving::container::runtime_program() else {
        return Vec::new();
    };
    with_image
        .into_iter()
        .map(|(id, origin)| {
            origin.error(
                Some(id.to_string()),
                FieldError::new(
                    FieldPath::parse_keys("spec.template.spec.containers")
                        .index(0)
                        .key("image"),
                    why.clone(),
                ),
            )
        })
        .collect()
}

/// Compiles every Trigger's filter (CESQL included), so a bad one is refused before anything
/// starts, located like any configuration error.
pub fn check_filters(config: &Config) -> Result<(), ConfigErrors> {
    let errors: Vec<ConfigError> = config
        .triggers
        .iter()
        .filter_map(|t| {
            compile_filter(&t.resource).err().map(|e| {
                let path = field_path("spec", e.path());
                t.origin.error(
                    Some(
                        ember_api::Resource::Trigger(t.resource.clone())
                            .id()
                            .to_string(),
                    ),
                    FieldError::new(path, e.problem().to_string()),
                )
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Field errors for a message: `spec.a: why; spec.b: why`.
fn field_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `filters[2].any[0].cesql` below `root` as a field path.
fn field_path(root: &str, dotted: &str) -> FieldPath {
    let mut path = if root.is_empty() {
        FieldPath::root()
    } else {
        FieldPath::root().key(root)
    };
    for part in dotted.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
            path = path.key(name);
        }
        for index in pieces {
            match index.trim_end_matches(']').parse() {
                Ok(i) => path = path.index(i),
                Err(_) => path = path.key(index.trim_end_matches(']')),
            }
        }
    }
    path
}

/// The Trigger's compiled filter: `filters` (Subscriptions API dialects) over the legacy
/// `filter.attributes`.
pub fn compile_filter(t: &Trigger) -> Result<TriggerFilter, ember_triggers::FilterError> {
    let empty = Default::default();
    let attributes = t.spec.filter.as_ref().map_or(&empty, |f| &f.attributes);
    let specs: Vec<FilterSpec> = t.spec.filters.iter().map(filter_spec).collect();
    TriggerFilter::compile(attributes, &specs)
}

/// The configuration's filter element as the filter engine's spec. An `exact`/`prefix`/
/// `suffix` element naming several attributes means all of them.
fn filter_spec(f: &ApiFilter) -> FilterSpec {
    // An exact/prefix/suffix element may name several attributes: every one must match.
    match f {
        ApiFilter::Exact(m) => FilterSpec::attributes(Comparison::Exact, m.clone()),
        ApiFilter::Prefix(m) => FilterSpec::attributes(Comparison::Prefix, m.clone()),
        ApiFilter::Suffix(m) => FilterSpec::attributes(Comparison::Suffix, m.clone()),
        ApiFilter::All(v) => FilterSpec::All(v.iter().map(filter_spec).collect()),
        ApiFilter::Any(v) => FilterSpec::Any(v.iter().map(filter_spec).collect()),
        ApiFilter::Not(inner) => FilterSpec::Not(Box::new(filter_spec(inner))),
        ApiFilter::Cesql(s) => FilterSpec::Cesql(s.clone()),
    }
}

/// A broker and its triggers, ready to open.
#[derive(Debug, Clone)]
pub struct BrokerPlan {
    /// The broker's settings.
    pub broker: BrokerConfig,
    /// Its triggers.
    pub triggers: Vec<TriggerConfig>,
}

/// The semaphores of `ember.dev/subscriber-max-in-flight`, by subscriber (host and port), kept
/// across reloads: triggers that share a subscriber keep sharing one limit, and an unchanged
/// limit keeps its semaphore (and the permits taken from it).
#[derive(Debug, Default)]
pub struct SubscriberLimits(
    std::collections::HashMap<String, (u32, std::sync::Arc<tokio::sync::Semaphore>)>,
);

/// Resolves every broker of the configuration, sharing subscriber limits through `limits`.
pub fn brokers(
    config: &Config,
    data_dir: &Path,
    ingress: SocketAddr,
    limits: &mut SubscriberLimits,
) -> anyhow::Result<Vec<BrokerPlan>> {
    let mut plans = Vec::with_capacity(config.brokers.len());
    for located in &config.brokers {
        let b = &located.resource;
        let settings = b
            .settings()
            .map_err(|e| anyhow::anyhow!("broker {}: {}", b.metadata.name, field_errors(&e)))?;
        let namespace = b.metadata.namespace.clone();
        let broker_delivery = b.spec.delivery.clone().unwrap_or_default();
        let mut triggers: Vec<TriggerConfig> = Vec::new();
        for t in config.triggers.iter().map(|l| &l.resource) {
            if t.metadata.namespace == namespace && t.spec.broker == b.metadata.name {
                triggers.push(trigger(config, t, &broker_delivery, ingress)?);
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
                disk_budget: settings.disk_budget,
            },
            triggers,
        });
    }
    share_subscriber_limits(&config.triggers, &mut plans, limits);
    Ok(plans)
}

/// Gives every trigger that delivers to a subscriber (host and port) named in some trigger's
/// `ember.dev/subscriber-max-in-flight` one shared semaphore: the smallest limit given.
fn share_subscriber_limits(
    triggers: &[ember_api::Located<Trigger>],
    plans: &mut [BrokerPlan],
    existing: &mut SubscriberLimits,
) {
    use std::collections::HashMap;
    let authority = |d: &ember_broker::delivery::Destination| d.authority().unwrap_or_default();
    // By (namespace, name), so that ten thousand triggers do not cost a hundred million lookups.
    let declared_limits: HashMap<(&str, &str), u32> = triggers
        .iter()
        .filter_map(|l| {
            let meta = &l.resource.metadata;
            let limit = l.resource.settings().ok()?.subscriber_max_in_flight?;
            Some(((meta.namespace.as_str(), meta.name.as_str()), limit))
        })
        .collect();
    let mut limits: HashMap<String, u32> = HashMap::new();
    for plan in plans.iter() {
        for t in &plan.triggers {
            let declared = declared_limits
                .get(&(plan.broker.namespace.as_str(), t.name.as_str()))
                .copied();
            if let Some(n) = declared {
                let e = limits.entry(authority(&t.subscriber)).or_insert(n);
                *e = (*e).min(n);
            }
        }
    }
    let semaphores: HashMap<String, (u32, std::sync::Arc<tokio::sync::Semaphore>)> = limits
        .into_iter()
        .map(|(a, n)| {
            let semaphore = match existing.0.get(&a) {
                Some((same, semaphore)) if *same == n => semaphore.clone(),
                _ => std::sync::Arc::new(tokio::sync::Semaphore::new(n as usize)),
            };
            (a, (n, semaphore))
        })
        .collect();
    for plan in plans.iter_mut() {
        for t in &mut plan.triggers {
            t.subscriber_limit = semaphores
                .get(&authority(&t.subscriber))
                .map(|(_, s)| s.clone());
        }
    }
    existing.0 = semaphores;
}

/// What a destination names, as [`Config::target`] resolves it: a URL, or a Broker of this
/// Ember (appended to in process, entering it as through its ingress: TTL decremented, arrival
/// time stamped). A Broker `ref` with a relative `uri` is the URL that resolves to against the
/// Broker's address on `ingress`, Ember's listener.
pub fn destination(
    config: &Config,
    dest: &Destination,
    own_namespace: &str,
    ingress: SocketAddr,
) -> anyhow::Result<BrokerDestination> {
    let url = |u: &str| -> anyhow::Result<BrokerDestination> {
        if u.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            bail!("not supported yet: https destinations");
        }
        let uri: Uri = u.parse().with_context(|| format!("{u:?} is not a URL"))?;
        Ok(BrokerDestination::Http(uri))
    };
    match config
        .target(dest, own_namespace)
        .map_err(|why| anyhow::anyhow!("{}: {}", why.reason, why.message))?
    {
        Target::Url(u) => url(&u),
        Target::Broker {
            namespace,
            name,
            uri: None,
        } => Ok(BrokerDestination::Broker { namespace, name }),
        Target::Broker {
            namespace,
            name,
            uri: Some(_),
        } => url(&dest
            .resolve_against(&format!("http://{ingress}/{namespace}/{name}"))
            .map_err(anyhow::Error::msg)?),
        Target::Service {
            namespace,
            name,
            uri,
        } => Ok(BrokerDestination::Service {
            path: service_path(dest, uri.is_some())?,
            namespace,
            name,
        }),
        Target::KafkaSink { namespace, name } => Ok(BrokerDestination::Sink {
            kind: crate::sinks::KAFKA_SINK.to_owned(),
            namespace,
            name,
        }),
    }
}

/// The path a request to a Service takes: its `ref`'s relative `uri` resolved against the
/// Service's root, `/` without one.
pub fn service_path(dest: &Destination, has_uri: bool) -> anyhow::Result<String> {
    if !has_uri {
        return Ok("/".to_owned());
    }
    let resolved = dest
        .resolve_against("http://service.invalid/")
        .map_err(anyhow::Error::msg)?;
    let uri: Uri = resolved.parse()?;
    Ok(uri.path_and_query().map_or("/", |p| p.as_str()).to_owned())
}

fn trigger(
    config: &Config,
    t: &Trigger,
    broker_delivery: &DeliverySpec,
    ingress: SocketAddr,
) -> anyhow::Result<TriggerConfig> {
    let name = &t.metadata.name;
    let settings = t
        .settings()
        .map_err(|e| anyhow::anyhow!("trigger {name}: {}", field_errors(&e)))?;
    let filter = compile_filter(t)?;
    let ns = &t.metadata.namespace;
    let subscriber = destination(config, &t.spec.subscriber, ns, ingress)
        .with_context(|| format!("trigger {name}: spec.subscriber"))?;
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
        subscriber,
        policy,
        format: match delivery.format {
            Some(ApiFormat::Json) => DeliveryFormat::Json,
            Some(ApiFormat::Binary) | None => DeliveryFormat::Binary,
        },
        dead_letter: match &delivery.dead_letter_sink {
            Some(dls) => Some(
                destination(config, dls, ns, ingress)
                    .with_context(|| format!("trigger {name}: delivery.deadLetterSink"))?,
            ),
            None => None,
        },
        subscriber_limit: None,
        retry_after_max: delivery
            .retry_after_max()
            .unwrap_or(ember_broker::delivery::policy::MAX_BACKOFF),
        ordered: settings.delivery_order == DeliveryOrder::Ordered,
        max_in_flight: settings.max_in_flight as usize,
    })
}

/// A one-line-per-resource description of a valid configuration (`ember validate`).
pub fn summary(config: &Config) -> String {
    let readiness = config.readiness();
    let not_ready = readiness.not_ready().count();
    let mut out = format!("configuration is valid: {} resource(s)", config.len());
    if not_ready > 0 {
        out.push_str(&format!(", {not_ready} not Ready yet (warnings below)"));
    }
    for (resource, origin) in config.resources() {
        let id = resource.id();
        let failed: Vec<&str> = readiness
            .checks(&id)
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.reason.as_str())
            .collect();
        out.push_str(&format!(
            "\n  {id} ({}: document {}){}",
            origin.file.display(),
            origin.document,
            if failed.is_empty() {
                String::new()
            } else {
                format!(": not Ready ({})", failed.join(", "))
            }
        ));
    }
    for line in remarks(config, &readiness) {
        out.push_str(&format!("\n{line}"));
    }
    out
}

/// What `ember validate` prints and `ember run` logs besides errors: `notice: ...` (a kind
/// ignored, a resource applied over an earlier document, a broker class run on the embedded
/// log) and `warning: ...` (a resource not Ready because what it refers to is not defined).
pub fn remarks(config: &Config, readiness: &ember_api::config::Readiness) -> Vec<String> {
    let mut out: Vec<String> = config
        .notices
        .iter()
        .map(|n| format!("notice: {n}"))
        .collect();
    out.extend(
        config
            .warnings(readiness)
            .into_iter()
            .map(|w| format!("warning: {w}")),
    );
    out
}
