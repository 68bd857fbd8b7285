//! Every resource's status as Knative reports it — `status.observedGeneration`,
//! `status.conditions[]` (`type`, `status`, `reason`, `message`, `lastTransitionTime`) and the
//! kind's addresses — served read-only under `/apis/` ([`Statuses::respond`]) and shown by
//! `ember get`.
//!
//! What decides a condition:
//! - the configuration, for what Knative's controllers decide from the objects alone
//!   (`BrokerReady`, `SubscriberResolved`, `DeadLetterSinkResolved`, `SinkProvided`:
//!   [`Config::readiness`]). [`Statuses::observe_config`] records them from the *full*
//!   configuration at start and on every reload — resources that are not Ready do not run, but
//!   they are listed here with the reason;
//! - the running parts, for what only they know (`IngressReady`: the Broker's log is open and
//!   takes events; `SubscriptionReady`: its Broker runs the Trigger; `Deployed`: the source
//!   runs). These are read when a request asks, and after each start or reload
//!   ([`Statuses::observe_running`]), so their `lastTransitionTime` is when a change was first
//!   seen;
//! - nothing, for what Ember always provides (`Addressable`, `TriggerChannelReady`,
//!   `DependencyReady`).
//!
//! `Ready` is True when every other condition is; otherwise it carries the reason and message
//! of the first False condition (else the first Unknown), as Knative's condition sets do.
//!
//! `metadata.generation` (and `status.observedGeneration`) is 1 when Ember first sees a
//! resource and grows by one each time a reload changes its metadata or spec (its
//! [`Fingerprint`] hash). `metadata.creationTimestamp` is when Ember first saw it. Neither, nor
//! any `lastTransitionTime`, is persisted: a restart starts them again.
//!
//! Memory stays small at ten thousand Triggers: the registry never keeps the parsed
//! configuration. Per resource it keeps the id, the document's text as loaded (shared with the
//! loader, parsed to JSON only when a request asks), the hash, generation and times, and the
//! configuration-decided conditions — whose texts are interned, since most resources share
//! them.
//!
//! Never: a write endpoint, or a Secret's value — documents are shown as written, and Secret
//! documents never are; a password in a URL's user-info is masked.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ember_api::config::{Check, Fingerprint, Readiness, Target};
use ember_api::{Config, Destination, Kind, Located, ObjectMeta, ResourceId};
use ember_broker::delivery::BrokerDirectory;
use ember_sources::SourceManager;
use http::StatusCode;
use serde_json::{Map, Value, json};

/// Where the API is served on Ember's listener.
pub const PREFIX: &str = "/apis/";

/// The URL plural of `kind`, as Kubernetes names it (`brokers`, `pingsources`, ...).
pub fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Broker => "brokers",
        Kind::Trigger => "triggers",
        Kind::PingSource => "pingsources",
        Kind::KafkaSource => "kafkasources",
        Kind::RabbitmqSource => "rabbitmqsources",
        Kind::WebhookSource => "webhooksources",
        Kind::KafkaSink => "kafkasinks",
        Kind::Service => "services",
        Kind::Configuration => "configurations",
        Kind::Route => "routes",
    }
}

/// The preferred `group/version` of `kind` (what `ember get` asks for).
pub fn preferred_version(kind: Kind) -> &'static str {
    kind.api_versions()[0]
}

/// What a path under [`PREFIX`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest<'a> {
    /// One object.
    Get {
        /// Its kind.
        kind: Kind,
        /// The `group/version` asked for (the object's `apiVersion` in the answer).
        api_version: &'static str,
        /// Its namespace.
        namespace: &'a str,
        /// Its name.
        name: &'a str,
    },
    /// The objects of a kind in one namespace, or in all (`None`).
    List {
        /// The kind.
        kind: Kind,
        /// The `group/version` asked for.
        api_version: &'static str,
        /// The namespace, or every one.
        namespace: Option<&'a str>,
    },
}

impl<'a> ApiRequest<'a> {
    /// Parses `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]` and
    /// `/apis/{group}/{version}/{plural}`; `None` for anything else.
    pub fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix(PREFIX)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let segments: Vec<&str> = rest.split('/').collect();
        let served = |group: &str, version: &str, plural_name: &str| {
            Kind::ALL.into_iter().find_map(|kind| {
                let version = kind
                    .api_versions()
                    .iter()
                    .find(|v| v.split_once('/') == Some((group, version)))?;
                (plural(kind) == plural_name).then_some((kind, *version))
            })
        };
        match segments.as_slice() {
            [group, version, plural_name] => {
                let (kind, api_version) = served(group, version, plural_name)?;
                Some(ApiRequest::List {
                    kind,
                    api_version,
                    namespace: None,
                })
            }
            [group, version, "namespaces", ns, plural_name] if !ns.is_empty() => {
                let (kind, api_version) = served(group, version, plural_name)?;
                Some(ApiRequest::List {
                    kind,
                    api_version,
                    namespace: Some(ns),
                })
            }
            [group, version, "namespaces", ns, plural_name, name]
                if !ns.is_empty() && !name.is_empty() =>
            {
                let (kind, api_version) = served(group, version, plural_name)?;
                Some(ApiRequest::Get {
                    kind,
                    api_version,
                    namespace: ns,
                    name,
                })
            }
            _ => None,
        }
    }
}

/// A Kubernetes `Status` object: what the API answers with an error.
pub fn failure(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code.as_u16(),
    })
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`: not observed yet.
    Unknown,
}

impl ConditionStatus {
    fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    fn of(ok: bool) -> Self {
        if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }

    fn code(self) -> u64 {
        match self {
            ConditionStatus::False => 0,
            ConditionStatus::True => 1,
            ConditionStatus::Unknown => 2,
        }
    }

    fn from_code(code: u64) -> Self {
        match code {
            0 => ConditionStatus::False,
            1 => ConditionStatus::True,
            _ => ConditionStatus::Unknown,
        }
    }
}

/// A condition decided by the running parts: its status and when that last changed, in one
/// word, so that requests stamp it under the registry's shared lock.
#[derive(Debug)]
struct Mark(AtomicU64);

impl Mark {
    fn new(status: ConditionStatus, since: i64) -> Self {
        Mark(AtomicU64::new(Self::pack(status, since)))
    }

    fn pack(status: ConditionStatus, since: i64) -> u64 {
        (u64::try_from(since).unwrap_or(0) << 2) | status.code()
    }

    #[cfg(test)]
    fn get(&self) -> (ConditionStatus, i64) {
        let word = self.0.load(Ordering::Acquire);
        (
            ConditionStatus::from_code(word & 3),
            i64::try_from(word >> 2).unwrap_or(i64::MAX),
        )
    }

    /// Records `status` as seen at `now`; the time moves only when the status changes.
    /// Returns when the status took its current value.
    fn observe(&self, status: ConditionStatus, now: i64) -> i64 {
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            let (was, since) = (ConditionStatus::from_code(word & 3), word >> 2);
            if was == status {
                return i64::try_from(since).unwrap_or(i64::MAX);
            }
            match self.0.compare_exchange(
                word,
                Self::pack(status, now),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return now,
                Err(current) => word = current,
            }
        }
    }

    fn copy(&self) -> Self {
        Mark(AtomicU64::new(self.0.load(Ordering::Acquire)))
    }
}

/// A configuration-decided condition's outcome; interned, as thousands of resources share a
/// few of them ("the subscriber resolves").
#[derive(Debug, PartialEq, Eq, Hash)]
struct Verdict {
    condition: &'static str,
    ok: bool,
    reason: Box<str>,
    message: Box<str>,
}

/// A configuration-decided condition: its outcome and since when it holds.
#[derive(Debug)]
struct Judged {
    verdict: Arc<Verdict>,
    since: i64,
}

/// What a kind's status shows besides conditions, resolved when the configuration is observed.
#[derive(Debug)]
enum Detail {
    Broker {
        /// The class run on the embedded log as a stand-in, if any.
        stand_in_for: Option<Arc<str>>,
        dead_letter_sink_uri: Option<Box<str>>,
    },
    Trigger {
        broker: Arc<str>,
        subscriber_uri: Option<Box<str>>,
        dead_letter_sink_uri: Option<Box<str>>,
    },
    Source {
        sink_uri: Option<Box<str>>,
    },
    Service,
    /// A sink of this Ember registered under its kind (a KafkaSink).
    Sink,
}

/// One resource's record.
#[derive(Debug)]
struct Entry {
    /// The document's text as loaded.
    document: Arc<str>,
    /// Its fingerprint hash, to tell a change at the next reload.
    hash: u64,
    generation: u64,
    /// When Ember first saw it (Unix seconds).
    created: i64,
    /// The configuration-decided conditions, in the order `Ready` consults them.
    checks: Box<[Judged]>,
    /// The one condition the running parts decide (IngressReady, SubscriptionReady, Deployed).
    running: Mark,
    ready: Mark,
    detail: Detail,
}

/// Every resource's record, sorted by id (kind, namespace, name): as dense as memory gets,
/// and a namespace's resources of a kind are one slice of it.
#[derive(Debug, Default)]
struct Registry(Box<[(ResourceId, Entry)]>);

impl Registry {
    fn get(&self, id: &ResourceId) -> Option<&Entry> {
        let at = self.0.binary_search_by(|(k, _)| k.cmp(id)).ok()?;
        Some(&self.0[at].1)
    }

    /// The resources of `kind` in `namespace`, or in every namespace.
    fn of(&self, kind: Kind, namespace: Option<&str>) -> &[(ResourceId, Entry)] {
        fn key(id: &ResourceId, by_namespace: bool) -> (Kind, Option<&str>) {
            (id.kind, by_namespace.then_some(id.namespace.as_str()))
        }
        let wanted = (kind, namespace);
        let by_namespace = namespace.is_some();
        let start = self
            .0
            .partition_point(|(id, _)| key(id, by_namespace) < wanted);
        let end = self
            .0
            .partition_point(|(id, _)| key(id, by_namespace) <= wanted);
        &self.0[start..end]
    }
}

/// One condition as shown.
#[derive(Debug, Clone)]
struct Shown<'a> {
    condition: &'static str,
    status: ConditionStatus,
    reason: &'a str,
    message: std::borrow::Cow<'a, str>,
    since: i64,
}

impl Shown<'_> {
    fn to_json(&self) -> Value {
        let mut c = Map::new();
        c.insert("type".into(), self.condition.into());
        c.insert("status".into(), self.status.as_str().into());
        if !self.reason.is_empty() {
            c.insert("reason".into(), self.reason.into());
        }
        if !self.message.is_empty() {
            c.insert("message".into(), self.message.as_ref().into());
        }
        c.insert("lastTransitionTime".into(), timestamp(self.since).into());
        Value::Object(c)
    }
}

/// The running parts the runtime-decided conditions are read from.
#[derive(Clone)]
pub struct Running {
    /// The open brokers.
    pub brokers: BrokerDirectory,
    /// The running sources.
    pub sources: Arc<SourceManager>,
    /// Ember's listener: Brokers' addresses are on it.
    pub listen: SocketAddr,
    /// The Knative Services that run.
    pub services: Option<crate::serving::Services>,
}

/// The registry of statuses: written at start and on each reload, read by the router.
pub struct Statuses {
    /// Swapped whole on each reload; a request works on the one it took.
    entries: RwLock<Arc<Registry>>,
    running: Running,
}

impl Statuses {
    /// An empty registry reading runtime conditions from `running`.
    pub fn new(running: Running) -> Self {
        Self {
            entries: RwLock::default(),
            running,
        }
    }

    fn snapshot(&self) -> Arc<Registry> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many resources have a status.
    pub fn len(&self) -> usize {
        self.snapshot().0.len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the configuration-decided part of every resource of `config` — the full
    /// configuration, Ready or not — with `readiness` and `fingerprint` computed from it.
    /// Resources no longer in it are forgotten.
    pub fn observe_config(
        &self,
        config: &Config,
        readiness: &Readiness,
        fingerprint: &Fingerprint,
    ) {
        let old = self.snapshot();
        let now = now();
        let listen = self.running.listen;
        let mut interned = Interner::default();
        let mut entries = Vec::with_capacity(config.len());
        let mut record =
            |interned: &mut Interner, id: ResourceId, document: &Arc<str>, detail: Detail| {
                let before = old.get(&id);
                let hash = fingerprint.hash(&id).unwrap_or_default();
                let generation = match before {
                    Some(b) if b.hash == hash => b.generation,
                    Some(b) => b.generation + 1,
                    None => 1,
                };
                let checks = readiness
                    .checks(&id)
                    .iter()
                    .enumerate()
                    .map(|(i, check)| {
                        let verdict = interned.verdict(check);
                        // A kind's checks come in a fixed order.
                        let since = before
                            .and_then(|b| b.checks.get(i))
                            .filter(|j| j.verdict.condition == check.condition)
                            .filter(|j| j.verdict.ok == check.ok)
                            .map_or(now, |j| j.since);
                        Judged { verdict, since }
                    })
                    .collect();
                let unknown = || Mark::new(ConditionStatus::Unknown, now);
                let entry = Entry {
                    document: document.clone(),
                    hash,
                    generation,
                    created: before.map_or(now, |b| b.created),
                    checks,
                    running: before.map_or_else(unknown, |b| b.running.copy()),
                    ready: before.map_or_else(unknown, |b| b.ready.copy()),
                    detail,
                };
                entries.push((id, entry));
            };
        let url = |dest: &Destination, namespace: &str| {
            resolved_url(config, dest, namespace, listen).map(String::into_boxed_str)
        };
        for b in &config.brokers {
            let meta = &b.metadata;
            let dls = b
                .spec
                .delivery
                .as_ref()
                .and_then(|d| d.dead_letter_sink.as_ref());
            let stand_in_for = b
                .settings()
                .ok()
                .and_then(|s| s.stand_in_for().map(|c| interned.text(c)));
            let detail = Detail::Broker {
                stand_in_for,
                dead_letter_sink_uri: dls.and_then(|d| url(d, &meta.namespace)),
            };
            record(
                &mut interned,
                id(Kind::Broker, meta),
                b.origin.text(),
                detail,
            );
        }
        for t in &config.triggers {
            let meta = &t.metadata;
            let dls = config.dead_letter_sink_for(t);
            let detail = Detail::Trigger {
                broker: interned.text(&t.spec.broker),
                subscriber_uri: url(&t.spec.subscriber, &meta.namespace),
                dead_letter_sink_uri: dls.and_then(|d| url(d, &meta.namespace)),
            };
            record(
                &mut interned,
                id(Kind::Trigger, meta),
                t.origin.text(),
                detail,
            );
        }
        fn sources<'a, T>(
            list: &'a [Located<T>],
            kind: Kind,
            parts: fn(&T) -> (&ObjectMeta, &Destination),
        ) -> impl Iterator<Item = (ResourceId, &'a Arc<str>, &'a Destination)> + 'a {
            list.iter().map(move |l| {
                let (meta, sink) = parts(&l.resource);
                (id(kind, meta), l.origin.text(), sink)
            })
        }
        let all_sources = sources(&config.ping_sources, Kind::PingSource, |s| {
            (&s.metadata, &s.spec.sink)
        })
        .chain(sources(&config.kafka_sources, Kind::KafkaSource, |s| {
            (&s.metadata, &s.spec.sink)
        }))
        .chain(sources(
            &config.rabbitmq_sources,
            Kind::RabbitmqSource,
            |s| (&s.metadata, &s.spec.sink),
        ))
        .chain(sources(&config.webhook_sources, Kind::WebhookSource, |s| {
            (&s.metadata, &s.spec.sink)
        }));
        for (id, document, sink) in all_sources {
            let sink_uri = url(sink, &id.namespace);
            record(&mut interned, id, document, Detail::Source { sink_uri });
        }
        for s in &config.kafka_sinks {
            record(
                &mut interned,
                id(Kind::KafkaSink, &s.metadata),
                s.origin.text(),
                Detail::Sink,
            );
        }
        for s in &config.services {
            record(
                &mut interned,
                id(Kind::Service, &s.metadata),
                s.origin.text(),
                Detail::Service,
            );
        }
        entries.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let entries = Arc::new(Registry(entries.into_boxed_slice()));
        let old = std::mem::replace(
            &mut *self.entries.write().unwrap_or_else(|e| e.into_inner()),
            entries,
        );
        drop(old);
    }

    /// Reads every runtime-decided condition now, so that a change made by a start or a reload
    /// is dated by it rather than by the next request.
    pub fn observe_running(&self) {
        let entries = self.snapshot();
        let mut seen = Seen::new(&self.running);
        for (id, entry) in entries.0.iter() {
            self.conditions(&mut seen, id, entry);
        }
    }

    /// The answer to a GET of `path` (under [`PREFIX`]): the HTTP status and its JSON body.
    /// A list is written item by item, so that ten thousand items never exist as one tree.
    pub fn respond(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let not_found = |message: &str| {
            let body = failure(StatusCode::NOT_FOUND, "NotFound", message);
            (StatusCode::NOT_FOUND, body.to_string().into_bytes())
        };
        // The objects serving makes of each Service (Revisions, Routes, Configurations).
        if let Some(services) = &self.running.services
            && let Some(answer) =
                crate::serving_status::respond(services, self.running.listen, path)
        {
            return answer;
        }
        let Some(request) = ApiRequest::parse(path) else {
            return not_found(&format!(
                "the server could not find the requested resource ({path})"
            ));
        };
        let entries = self.snapshot();
        let mut seen = Seen::new(&self.running);
        match request {
            ApiRequest::Get {
                kind,
                api_version,
                namespace,
                name,
            } => {
                let id = ResourceId {
                    kind,
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                };
                match entries.get(&id) {
                    Some(entry) => {
                        let object = self.object(&mut seen, &id, entry, api_version);
                        (StatusCode::OK, object.to_string().into_bytes())
                    }
                    None => {
                        let group = api_version.split_once('/').map_or("", |(g, _)| g);
                        not_found(&format!("{}.{group} {name:?} not found", plural(kind)))
                    }
                }
            }
            ApiRequest::List {
                kind,
                api_version,
                namespace,
            } => {
                let head = json!({
                    "apiVersion": api_version,
                    "kind": format!("{kind}List"),
                    "metadata": {},
                });
                // `{"apiVersion":...,"metadata":{}` then `,"items":[...]}`.
                let mut body = head.to_string().into_bytes();
                body.pop();
                body.extend_from_slice(b",\"items\":[");
                for (i, (id, entry)) in entries.of(kind, namespace).iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    let object = self.object(&mut seen, id, entry, api_version);
                    // Writing a Value to a Vec does not fail.
                    let _ = serde_json::to_writer(&mut body, &object);
                }
                body.extend_from_slice(b"]}");
                (StatusCode::OK, body)
            }
        }
    }

    /// The object as served: `apiVersion`, `kind`, `metadata` and `spec` as written (with the
    /// namespace, generation and creation time filled in), and `status`.
    fn object(&self, seen: &mut Seen, id: &ResourceId, entry: &Entry, api_version: &str) -> Value {
        let written: Value = serde_yaml_ng::from_str(&entry.document).unwrap_or(Value::Null);
        let mut metadata = match written.get("metadata") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        metadata.insert("name".into(), id.name.as_str().into());
        metadata.insert("namespace".into(), id.namespace.as_str().into());
        metadata.insert("generation".into(), entry.generation.into());
        metadata.insert("creationTimestamp".into(), timestamp(entry.created).into());
        let mut spec = written.get("spec").cloned().unwrap_or_else(|| json!({}));
        // A Trigger without a broker is on Broker `default`: Knative writes that in.
        if let (Detail::Trigger { broker, .. }, Value::Object(spec)) = (&entry.detail, &mut spec) {
            spec.entry("broker")
                .or_insert_with(|| broker.as_ref().into());
        }
        let mut object = json!({
            "apiVersion": api_version,
            "kind": id.kind.as_str(),
            "metadata": metadata,
            "spec": spec,
            "status": self.status(seen, id, entry),
        });
        mask_passwords(&mut object);
        object
    }

    fn status(&self, seen: &mut Seen, id: &ResourceId, entry: &Entry) -> Value {
        let mut conditions = self.conditions(seen, id, entry);
        // Knative lists conditions by type.
        conditions.sort_by_key(|c| c.condition);
        let mut status = Map::new();
        status.insert("observedGeneration".into(), entry.generation.into());
        status.insert(
            "conditions".into(),
            conditions.iter().map(Shown::to_json).collect(),
        );
        let mut put = |key: &str, value: &Option<Box<str>>| {
            if let Some(v) = value {
                status.insert(key.into(), v.as_ref().into());
            }
        };
        match &entry.detail {
            Detail::Broker {
                dead_letter_sink_uri,
                ..
            } => {
                put("deadLetterSinkUri", dead_letter_sink_uri);
                status.insert(
                    "address".into(),
                    json!({ "url": self.broker_address(&id.namespace, &id.name) }),
                );
            }
            Detail::Trigger {
                subscriber_uri,
                dead_letter_sink_uri,
                ..
            } => {
                put("subscriberUri", subscriber_uri);
                put("deadLetterSinkUri", dead_letter_sink_uri);
            }
            Detail::Source { sink_uri } => put("sinkUri", sink_uri),
            Detail::Service => self.service_fields(id, &mut status),
            Detail::Sink => {}
        }
        Value::Object(status)
    }

    /// A Service's `url`, `address`, `latestCreatedRevisionName`, `latestReadyRevisionName` and
    /// `traffic` (each tag with its own URL), as Knative writes them.
    fn service_fields(&self, id: &ResourceId, status: &mut Map<String, Value>) {
        let Some(services) = &self.running.services else {
            return;
        };
        let Some(st) = services.serving.status(&id.namespace, &id.name) else {
            return;
        };
        let domain = services.domain();
        let port = self.running.listen.port();
        let url = |host: String| format!("http://{host}.{}.{domain}:{port}", id.namespace);
        let own = url(id.name.clone());
        status.insert("url".into(), own.clone().into());
        status.insert("address".into(), json!({ "url": own }));
        status.insert("latestCreatedRevisionName".into(), st.latest_created.into());
        if let Some(r) = st.latest_ready {
            status.insert("latestReadyRevisionName".into(), r.into());
        }
        let traffic = crate::serving_status::traffic_json(
            &st.traffic,
            &|host| url(host.to_owned()),
            &id.name,
        );
        status.insert("traffic".into(), traffic.into());
    }

    fn broker_address(&self, namespace: &str, name: &str) -> String {
        broker_address(self.running.listen, namespace, name)
    }

    /// Every condition of `id`, `Ready` last, in the order `Ready` consults them; stamps the
    /// runtime-decided ones and `Ready` as `seen` sees them.
    fn conditions<'a>(&self, seen: &mut Seen, id: &ResourceId, entry: &'a Entry) -> Vec<Shown<'a>> {
        use std::borrow::Cow;
        let now = seen.now;
        let mut out: Vec<Shown<'a>> = Vec::with_capacity(entry.checks.len() + 4);
        // One condition per type: the first failing check of a type stands for it (a source
        // missing two Secrets is not Deployed, for the first one's reason).
        for j in entry.checks.iter() {
            let shown = Shown {
                condition: j.verdict.condition,
                status: ConditionStatus::of(j.verdict.ok),
                reason: &j.verdict.reason,
                message: Cow::Borrowed(&j.verdict.message),
                since: j.since,
            };
            match out.iter_mut().find(|c| c.condition == shown.condition) {
                Some(c) if c.status == ConditionStatus::True && !j.verdict.ok => *c = shown,
                Some(_) => {}
                None => out.push(shown),
            }
        }
        let always = |condition, message: &'static str| Shown {
            condition,
            status: ConditionStatus::True,
            reason: "",
            message: Cow::Borrowed(message),
            since: entry.created,
        };
        // What the running parts decide; stamped below.
        let observed = |condition, status, reason, message| Shown {
            condition,
            status,
            reason,
            message,
            since: 0,
        };
        let config_ok = entry.checks.iter().all(|j| j.verdict.ok);
        let mut ready_note = Cow::Borrowed("");
        let running = match &entry.detail {
            Detail::Broker { stand_in_for, .. } => {
                out.push(always(
                    "TriggerChannelReady",
                    "Ember's embedded log carries this Broker's events to its Triggers",
                ));
                out.push(always("Addressable", ""));
                if let Some(class) = stand_in_for {
                    ready_note = Cow::Owned(format!(
                        "class {class:?} runs on Ember's embedded log as a stand-in (Ember has \
                         no {class} backend)"
                    ));
                }
                let open = seen.running.brokers.get(&id.namespace, &id.name).is_some();
                Some(if open {
                    observed(
                        "IngressReady",
                        ConditionStatus::True,
                        "",
                        Cow::Borrowed("its log is open and takes events"),
                    )
                } else {
                    observed(
                        "IngressReady",
                        ConditionStatus::False,
                        "NotRunning",
                        Cow::Borrowed("its log is not open (Ember is opening or closing it)"),
                    )
                })
            }
            Detail::Trigger { broker, .. } => {
                out.push(always(
                    "DependencyReady",
                    "Ember does not read the knative.dev/dependency annotation: a Trigger \
                     waits for no dependency",
                ));
                let runs = seen.runs_trigger(&id.namespace, broker, &id.name);
                Some(if runs {
                    observed(
                        "SubscriptionReady",
                        ConditionStatus::True,
                        "",
                        Cow::Owned(format!("Broker {broker:?} delivers its events")),
                    )
                } else {
                    observed(
                        "SubscriptionReady",
                        ConditionStatus::False,
                        "NotSubscribed",
                        Cow::Borrowed(if config_ok {
                            "Ember does not run this Trigger (yet)"
                        } else {
                            "Ember runs this Trigger once what it refers to is defined"
                        }),
                    )
                })
            }
            Detail::Source { .. } => {
                let supported = seen.running.sources.kinds().get(id.kind).is_some();
                Some(if seen.running.sources.is_running(id) {
                    observed(
                        "Deployed",
                        ConditionStatus::True,
                        "",
                        Cow::Borrowed("Ember runs this source"),
                    )
                } else if !supported {
                    observed(
                        "Deployed",
                        ConditionStatus::False,
                        "NotSupported",
                        Cow::Owned(format!("Ember does not run {}s yet", id.kind)),
                    )
                } else {
                    observed(
                        "Deployed",
                        ConditionStatus::False,
                        "NotDeployed",
                        Cow::Borrowed(if config_ok {
                            "Ember does not run this source (yet)"
                        } else {
                            "Ember runs this source once what it refers to is defined"
                        }),
                    )
                })
            }
            Detail::Sink => {
                let sink = seen
                    .running
                    .brokers
                    .sink(id.kind.as_str(), &id.namespace, &id.name);
                Some(match sink.map(|s| s.problem()) {
                    Some(None) => observed(
                        "TopicReady",
                        ConditionStatus::True,
                        "",
                        Cow::Borrowed("its topic exists; events given to it are produced to it"),
                    ),
                    Some(Some(problem)) => observed(
                        "TopicReady",
                        ConditionStatus::False,
                        "TopicNotPresentOrInvalid",
                        Cow::Owned(problem),
                    ),
                    None => observed(
                        "TopicReady",
                        ConditionStatus::False,
                        "NotRunning",
                        Cow::Borrowed("Ember does not run this KafkaSink"),
                    ),
                })
            }
            Detail::Service => {
                let status = self
                    .running
                    .services
                    .as_ref()
                    .and_then(|s| s.serving.status(&id.namespace, &id.name));
                let (state, reason, message): (_, &'static str, Cow<'a, str>) = match &status {
                    None => (
                        ConditionStatus::False,
                        "NotRunning",
                        Cow::Borrowed("Ember does not run this Service"),
                    ),
                    Some(st) => {
                        let latest = st
                            .revisions
                            .iter()
                            .find(|(n, _)| *n == st.latest_created)
                            .map(|(_, r)| r);
                        match latest {
                            Some(r) if r.ever_ready => (
                                ConditionStatus::True,
                                "",
                                Cow::Owned(format!("revision {} is ready", st.latest_created)),
                            ),
                            Some(r) if r.last_failure.is_some() => (
                                ConditionStatus::False,
                                "RevisionFailed",
                                Cow::Owned(format!(
                                    "revision {} failed: {}",
                                    st.latest_created,
                                    r.last_failure.clone().unwrap_or_default()
                                )),
                            ),
                            _ => (
                                ConditionStatus::Unknown,
                                "Deploying",
                                Cow::Owned(format!(
                                    "revision {} has not been ready yet (it starts with the first request when at zero)",
                                    st.latest_created
                                )),
                            ),
                        }
                    }
                };
                // The route follows the latest ready revision: ready once any of its
                // targets has been ready.
                let routed = status.as_ref().is_some_and(|st| st.latest_ready.is_some());
                out.push(Shown {
                    condition: "RoutesReady",
                    // Not ready yet is not failed: a revision at zero starts with its first
                    // request (ConfigurationsReady says when one failed).
                    status: if routed {
                        ConditionStatus::True
                    } else {
                        ConditionStatus::Unknown
                    },
                    reason: if routed { "" } else { "RevisionMissing" },
                    message: Cow::Borrowed(if routed {
                        "traffic reaches a ready revision"
                    } else {
                        "no revision the traffic names has been ready yet"
                    }),
                    since: entry.created,
                });
                Some(observed("ConfigurationsReady", state, reason, message))
            }
        };
        if let Some(mut shown) = running {
            shown.since = entry.running.observe(shown.status, now);
            // The configuration may have decided it already (a source's Secret is missing:
            // Deployed False, SecretNotFound); what the running parts see adds nothing then.
            match out.iter_mut().find(|c| c.condition == shown.condition) {
                Some(c) if c.status != ConditionStatus::True => {}
                Some(c) => *c = shown,
                None => out.push(shown),
            }
        }
        let first = |status| out.iter().find(|c| c.status == status);
        let ready = match first(ConditionStatus::False).or_else(|| first(ConditionStatus::Unknown))
        {
            Some(c) => Shown {
                condition: "Ready",
                since: 0,
                ..c.clone()
            },
            None => Shown {
                condition: "Ready",
                status: ConditionStatus::True,
                reason: "",
                message: ready_note,
                since: 0,
            },
        };
        let since = entry.ready.observe(ready.status, now);
        out.push(Shown { since, ..ready });
        out
    }
}

/// What runs, as one request (or one observation) sees it. Each open Broker's Triggers are read
/// once, so that the statuses of ten thousand Triggers cost as many lookups, not as many scans.
struct Seen<'r> {
    running: &'r Running,
    now: i64,
    /// The names of the Triggers each Broker runs (`None`: not open), by namespace and name.
    triggers: HashMap<String, HashMap<String, Option<HashSet<String>>>>,
}

impl<'r> Seen<'r> {
    fn new(running: &'r Running) -> Self {
        Self {
            running,
            now: now(),
            triggers: HashMap::new(),
        }
    }

    /// Whether the Broker `namespace/broker` is open and runs the Trigger `trigger`.
    fn runs_trigger(&mut self, namespace: &str, broker: &str, trigger: &str) -> bool {
        if let Some(names) = self.triggers.get(namespace).and_then(|n| n.get(broker)) {
            return names.as_ref().is_some_and(|names| names.contains(trigger));
        }
        let names: Option<HashSet<String>> = self
            .running
            .brokers
            .get(namespace, broker)
            .map(|b| b.trigger_states().into_iter().map(|t| t.name).collect());
        let runs = names.as_ref().is_some_and(|names| names.contains(trigger));
        self.triggers
            .entry(namespace.to_owned())
            .or_default()
            .insert(broker.to_owned(), names);
        runs
    }
}

/// `http://{listen}/{namespace}/{name}`: a Broker's address.
pub fn broker_address(listen: SocketAddr, namespace: &str, name: &str) -> String {
    format!("http://{listen}/{namespace}/{name}")
}

/// The URL `dest` resolves to, as the running parts resolve it (see `wiring::destination`);
/// `None` when it does not resolve, or names a Service (Ember does not run them yet).
fn resolved_url(
    config: &Config,
    dest: &Destination,
    namespace: &str,
    listen: SocketAddr,
) -> Option<String> {
    match config.target(dest, namespace).ok()? {
        Target::Url(url) => Some(url),
        Target::Broker {
            namespace, name, ..
        } => dest
            .resolve_against(&broker_address(listen, &namespace, &name))
            .ok(),
        Target::Service { .. } | Target::KafkaSink { .. } => None,
    }
}

fn id(kind: Kind, meta: &ObjectMeta) -> ResourceId {
    ResourceId {
        kind,
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
    }
}

/// Shares equal texts among resources.
#[derive(Default)]
struct Interner {
    verdicts: HashSet<Arc<Verdict>>,
    texts: HashSet<Arc<str>>,
}

impl Interner {
    fn verdict(&mut self, check: &Check) -> Arc<Verdict> {
        let verdict = Verdict {
            condition: check.condition,
            ok: check.ok,
            reason: check.reason.as_str().into(),
            message: check.message.as_str().into(),
        };
        if let Some(v) = self.verdicts.get(&verdict) {
            return v.clone();
        }
        let v = Arc::new(verdict);
        self.verdicts.insert(v.clone());
        v
    }

    fn text(&mut self, s: &str) -> Arc<str> {
        if let Some(t) = self.texts.get(s) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(s);
        self.texts.insert(t.clone());
        t
    }
}

/// Now, in Unix seconds (the wall clock: these times are shown to people).
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// RFC 3339 in UTC, to the second, as Kubernetes writes times.
fn timestamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Masks the password of every `scheme://user:password@host` URL among the strings of
/// `value`.
fn mask_passwords(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(masked) = masked_url(s) {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_passwords),
        Value::Object(map) => map.values_mut().for_each(mask_passwords),
        _ => {}
    }
}

/// `s` with its user-info password replaced by `***`, when it is a URL that has one.
fn masked_url(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let (user, _password) = rest[..at].split_once(':')?;
    Some(format!("{scheme}://{user}:***{}", &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_kind_version_namespace_and_name() {
        assert_eq!(
            ApiRequest::parse("/apis/eventing.knative.dev/v1/namespaces/ns/triggers/t"),
            Some(ApiRequest::Get {
                kind: Kind::Trigger,
                api_version: "eventing.knative.dev/v1",
                namespace: "ns",
                name: "t",
            })
        );
        assert_eq!(
            ApiRequest::parse("/apis/sources.knative.dev/v1beta2/namespaces/ns/pingsources/"),
            Some(ApiRequest::List {
                kind: Kind::PingSource,
                api_version: "sources.knative.dev/v1beta2",
                namespace: Some("ns"),
            })
        );
        assert_eq!(
            ApiRequest::parse("/apis/sources.ember.dev/v1alpha1/webhooksources"),
            Some(ApiRequest::List {
                kind: Kind::WebhookSource,
                api_version: "sources.ember.dev/v1alpha1",
                namespace: None,
            })
        );
        for unknown in [
            "/apis/eventing.knative.dev/v2/triggers",
            "/apis/sources.knative.dev/v1beta2/kafkasources",
            "/apis/eventing.knative.dev/v1/namespaces//triggers",
            "/apis/eventing.knative.dev/v1/namespaces/ns/triggers/t/status",
            "/apis/eventing.knative.dev/v1",
        ] {
            assert_eq!(ApiRequest::parse(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn a_mark_moves_only_when_the_status_changes() {
        let mark = Mark::new(ConditionStatus::Unknown, 10);
        assert_eq!(mark.observe(ConditionStatus::False, 20), 20);
        assert_eq!(mark.observe(ConditionStatus::False, 30), 20);
        assert_eq!(mark.observe(ConditionStatus::True, 40), 40);
        assert_eq!(mark.get(), (ConditionStatus::True, 40));
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            masked_url("amqp://user:s3cret@rabbit:5672/vhost").as_deref(),
            Some("amqp://user:***@rabbit:5672/vhost")
        );
        assert_eq!(masked_url("http://host/a@b:c"), None);
        assert_eq!(masked_url("http://user@host/"), None);
        let mut v = json!({"spec": {"connection": {"url": "amqps://u:p@h/"}}, "n": 1});
        mask_passwords(&mut v);
        assert_eq!(v["spec"]["connection"]["url"], "amqps://u:***@h/");
    }

    #[test]
    fn times_are_rfc3339_seconds_in_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    }
}
