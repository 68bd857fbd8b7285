//! The Services that run, and the way in to them.
//!
//! [`Serving::apply`] takes the configuration's Services (at start-up and on each reload): each
//! Service's template gives its revision (new when the template changed, from the history in the
//! data directory), every revision its traffic names runs (its activator and scaler), the
//! Route is rebuilt, and revisions nothing routes to any more stop after their requests.
//! [`Serving::request`] takes a request for a Service (by Host at Ember's listener, or a trigger's
//! delivery): route → activator → instance, the response streamed back while the instance's
//! room stays taken.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use ember_api::serving::{AutoscalerConfig, RevisionTemplate, Service};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::activator::{
    ActivateError, Admissions, Admitted, Backlog, BacklogSource, Lease, Queue, Revision,
    RevisionSnapshot,
};
use crate::history::{History, HistoryError};
use crate::proxy::{Body, BoxError, InstanceClient, Origin, text};
use crate::revision::RevisionSpec;
use crate::route::{Route, Target};

/// A running revision: its activator and its scaler task.
struct Running {
    revision: Arc<Revision>,
    scaler: JoinHandle<()>,
}

/// One Service: its revisions and its route.
struct ServiceState {
    service: Service,
    revisions: BTreeMap<String, Running>,
    /// Newest first: what `latestRevision` follows (the first ready one).
    latest: Vec<Arc<Revision>>,
    route: Arc<Route>,
    /// The revision the template makes now.
    latest_created: String,
    /// The revisions routed once the latest is ready: the latest and those the traffic names.
    pinned: Vec<String>,
    /// A Service (reached by its name) rather than a Configuration written on its own (reached
    /// only through a Route).
    addressable: bool,
    /// The deliveries admitted to it.
    admissions: Arc<Admissions>,
}

/// A Service as its status shows it.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    /// The revision its template makes now.
    pub latest_created: String,
    /// The newest revision that has been ready.
    pub latest_ready: Option<String>,
    /// Where its traffic goes.
    pub traffic: Vec<TrafficStatus>,
    /// Its running revisions.
    pub revisions: Vec<(String, RevisionSnapshot)>,
}

/// A revision as its status shows it.
#[derive(Debug, Clone)]
pub struct RevisionRecord {
    /// Its namespace.
    pub namespace: String,
    /// Its Service (and Configuration).
    pub service: String,
    /// Its name.
    pub name: String,
    /// Its place in the Service's history, from 1 (Knative's configuration generation).
    pub generation: u64,
    /// The template it was made from.
    pub template: serde_json::Value,
    /// Seconds since the epoch when it was made.
    pub created: u64,
    /// Its state, if it runs (it is routed).
    pub state: Option<RevisionSnapshot>,
}

/// One traffic target as routed now.
#[derive(Debug, Clone)]
pub struct TrafficStatus {
    /// The revision requests go to.
    pub revision: String,
    /// Its share.
    pub percent: u32,
    /// Its tag.
    pub tag: Option<String>,
    /// Whether it follows the latest ready revision.
    pub latest: bool,
}

/// What `apply` did, per Service.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Revisions created, `namespace/name`.
    pub created: Vec<String>,
    /// Revisions stopped.
    pub stopped: Vec<String>,
}

/// Why a request got no answer from the function.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No such Service (or tag).
    #[error("no Service {0}")]
    NotFound(String),
    /// The activator refused it.
    #[error(transparent)]
    Activate(#[from] ActivateError),
    /// Forwarding failed.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
}

impl RequestError {
    /// The status a client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound(_) => StatusCode::NOT_FOUND,
            RequestError::Activate(ActivateError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            RequestError::Activate(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Proxy(p) => p.status(),
        }
    }

    /// The response a client gets: a 503 from a full queue says when to retry.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut resp = text(status, format!("{self}\n"));
        if matches!(self, RequestError::Activate(ActivateError::Overloaded(_))) {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

/// `(namespace, name)`.
type ServiceKey = (String, String);

/// A Service's `env` values from `valueFrom`, by variable name.
pub type Env = HashMap<String, String>;

/// Serving: every Service of the configuration, running.
pub struct Serving {
    data_dir: PathBuf,
    client: InstanceClient,
    /// Knative's `config-autoscaler`, for every revision.
    autoscaler: Mutex<AutoscalerConfig>,
    /// The events waiting for each Service in the broker, once the binary wires it.
    backlog: BacklogSource,
    /// Each Service's `env` values from `valueFrom`.
    env: Mutex<HashMap<ServiceKey, Env>>,
    /// Revisions Routes written on their own name, by the Service or Configuration they are of.
    pins: Mutex<HashMap<ServiceKey, Vec<String>>>,
    /// Routes written on their own.
    routes: RwLock<HashMap<ServiceKey, Arc<Route>>>,
    /// Whether any Service or Route runs.
    reachable: std::sync::atomic::AtomicBool,
    services: RwLock<HashMap<ServiceKey, Arc<Mutex<ServiceState>>>>,
    /// Registries, credentials and the cache budget for images.
    image_settings: Mutex<ember_images::StoreSettings>,
    /// Each Service's registry credentials from its `imagePullSecrets`.
    pull_credentials: Mutex<HashMap<ServiceKey, ember_images::registry::Credentials>>,
    /// The image store and OCI runtime, opened with the first revision that has an image.
    containers: std::sync::OnceLock<Arc<crate::container::Containers>>,
}

impl Serving {
    /// Serving with revision histories under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Serving {
            data_dir: data_dir.into(),
            client: InstanceClient::default(),
            autoscaler: Mutex::default(),
            backlog: BacklogSource::default(),
            env: Mutex::default(),
            pins: Mutex::default(),
            routes: RwLock::default(),
            reachable: std::sync::atomic::AtomicBool::new(false),
            services: RwLock::default(),
            image_settings: Mutex::default(),
            pull_credentials: Mutex::default(),
            containers: std::sync::OnceLock::new(),
        }
    }

    /// Sets the registry credentials of Service (or Configuration) `namespace/name` from its
    /// `imagePullSecrets`, resolved by the caller; new revisions pull with them.
    pub fn set_pull_credentials(
        &self,
        namespace: &str,
        name: &str,
        credentials: ember_images::registry::Credentials,
    ) {
        let mut all = self
            .pull_credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        if credentials.is_empty() {
            all.remove(&key);
        } else {
            all.insert(key, credentials);
        }
    }

    /// Sets where images come from (before the first revision with an image starts).
    pub fn set_image_settings(&self, settings: ember_images::StoreSettings) {
        *self
            .image_settings
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = settings;
    }

    /// The image store and runtime, opened (leftover containers cleaned up) on first use.
    pub fn containers(&self) -> Result<Arc<crate::container::Containers>, String> {
        if let Some(c) = self.containers.get() {
            return Ok(c.clone());
        }
        let settings = self
            .image_settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let opened = crate::container::Containers::open(&self.data_dir, settings)
            .map_err(|e| format!("opening the image store: {e}"))?;
        if let Some(p) = opened.problem() {
            tracing::warn!("{p}");
        }
        Ok(self.containers.get_or_init(|| Arc::new(opened)).clone())
    }

    /// Sets Knative's `config-autoscaler` settings; running revisions take them at once.
    pub fn set_autoscaler(&self, config: AutoscalerConfig) {
        let mut current = self.autoscaler.lock().unwrap_or_else(|e| e.into_inner());
        if *current == config {
            return;
        }
        *current = config.clone();
        drop(current);
        for (_, _, revision) in self.all_revisions() {
            revision.set_scaling(revision.spec().scaling_over(&config));
        }
    }

    /// Sets where the events waiting for each Service in the broker are counted.
    pub fn set_backlog(&self, backlog: Arc<dyn Backlog>) {
        *self.backlog.write().unwrap_or_else(|e| e.into_inner()) = Some(backlog);
    }

    /// Resolves once Service `namespace/name` has room for one more delivery — its ready
    /// instances' concurrency not all taken by admitted deliveries — waking its revisions so
    /// they see the work waiting. `None` (at once) when it is not a Service that runs.
    pub fn admit(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl std::future::Future<Output = Option<Admitted>> + Send + 'static {
        let found = self.state(namespace, name).and_then(|state| {
            let st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.addressable
                .then(|| (st.admissions.clone(), st.route.revisions()))
        });
        async move {
            let (admissions, revisions) = found?;
            loop {
                let room = admissions.room().notified();
                tokio::pin!(room);
                room.as_mut().enable();
                if revisions.iter().any(|r| r.failing()) {
                    return Some(admissions.admit_anyway());
                }
                let capacity: u64 = revisions.iter().map(|r| r.capacity()).sum();
                if let Some(admitted) = admissions.try_admit(capacity) {
                    return Some(admitted);
                }
                for r in &revisions {
                    r.nudge();
                }
                room.await;
            }
        }
    }

    /// Whether nothing is reachable by Host: no Service and no Route runs (read without a lock,
    /// since the listener asks it of every request).
    pub fn is_empty(&self) -> bool {
        !self.reachable.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn update_reachable(&self) {
        let any = !self
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
            || !self
                .routes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
        self.reachable
            .store(any, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether Service `namespace/name` runs.
    pub fn has(&self, namespace: &str, name: &str) -> bool {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&(namespace.to_owned(), name.to_owned()))
    }

    /// Moves to `services`: new revisions for changed templates, routes rebuilt, revisions no
    /// longer routed stopped (after their requests), Services gone stopped.
    pub fn apply(&self, services: &[Service]) -> Result<Applied, HistoryError> {
        let with: Vec<(Service, Env)> = services.iter().map(|s| (s.clone(), Env::new())).collect();
        self.apply_with_env(&with)
    }

    /// As [`Serving::apply`], with each Service's `env` values from `valueFrom` resolved by
    /// the caller (by variable name). They are read when a revision is created and never
    /// written to the revision history.
    pub fn apply_with_env(&self, services: &[(Service, Env)]) -> Result<Applied, HistoryError> {
        self.apply_all(services, &[], &[])
    }

    /// As [`Serving::apply_with_env`], with the Configurations and Routes written on their own:
    /// a Configuration runs like a Service's (its revisions numbered after its name) but is
    /// reached only through a Route; a Route is reached at `{route}.{namespace}.{domain}` and
    /// sends its traffic to Configurations' (or Services') latest ready revisions, or to named
    /// revisions — which then keep running.
    pub fn apply_all(
        &self,
        services: &[(Service, Env)],
        configurations: &[(Service, Env)],
        routes: &[ember_api::serving::Route],
    ) -> Result<Applied, HistoryError> {
        let standalone: std::collections::HashSet<ServiceKey> = configurations
            .iter()
            .map(|(c, _)| (c.metadata.namespace.clone(), c.metadata.name.clone()))
            .collect();
        // Revisions a Route names keep running in the Service or Configuration they belong to.
        let mut pins: HashMap<ServiceKey, Vec<String>> = HashMap::new();
        for r in routes {
            let ns = &r.metadata.namespace;
            for t in &r.spec.traffic {
                let Some(rev) = &t.revision_name else {
                    continue;
                };
                let owner = services
                    .iter()
                    .chain(configurations)
                    .map(|(s, _)| &s.metadata)
                    .filter(|m| &m.namespace == ns)
                    .find(|m| {
                        History::load(&self.data_dir, ns, &m.name)
                            .is_ok_and(|h| h.revisions().iter().any(|x| &x.name == rev))
                    });
                if let Some(m) = owner {
                    pins.entry((ns.clone(), m.name.clone()))
                        .or_default()
                        .push(rev.clone());
                }
            }
        }
        *self.pins.lock().unwrap_or_else(|e| e.into_inner()) = pins;
        let all: Vec<(Service, Env)> = services.iter().chain(configurations).cloned().collect();
        let applied = self.apply_services(&all, &standalone);
        self.build_routes(routes);
        self.update_reachable();
        applied
    }

    fn apply_services(
        &self,
        services: &[(Service, Env)],
        standalone: &std::collections::HashSet<ServiceKey>,
    ) -> Result<Applied, HistoryError> {
        let mut env = self.env.lock().unwrap_or_else(|e| e.into_inner());
        env.clear();
        for (s, e) in services {
            env.insert(
                (s.metadata.namespace.clone(), s.metadata.name.clone()),
                e.clone(),
            );
        }
        drop(env);
        let services: Vec<Service> = services.iter().map(|(s, _)| s.clone()).collect();
        let services = &services[..];
        let mut applied = Applied::default();
        let mut map = self.services.write().unwrap_or_else(|e| e.into_inner());
        let keep: Vec<(String, String)> = services
            .iter()
            .map(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()))
            .collect();
        let gone: Vec<(String, String)> =
            map.keys().filter(|k| !keep.contains(k)).cloned().collect();
        for key in gone {
            if let Some(state) = map.remove(&key) {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                for (name, r) in std::mem::take(&mut st.revisions) {
                    r.revision.stop();
                    applied.stopped.push(format!("{}/{name}", key.0));
                }
            }
        }
        for service in services {
            let key = (
                service.metadata.namespace.clone(),
                service.metadata.name.clone(),
            );
            let state = map.get(&key).cloned();
            match state {
                Some(state) => {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    st.addressable = !standalone.contains(&key);
                    self.update(&mut st, service, &mut applied)?;
                    drop(st);
                    finish_rollout(&state);
                }
                None => {
                    let mut st = self.create(service, !standalone.contains(&key), &mut applied)?;
                    st.addressable = !standalone.contains(&key);
                    map.insert(key, Arc::new(Mutex::new(st)));
                }
            }
        }
        Ok(applied)
    }

    fn create(
        &self,
        service: &Service,
        addressable: bool,
        applied: &mut Applied,
    ) -> Result<ServiceState, HistoryError> {
        let mut st = ServiceState {
            service: service.clone(),
            revisions: BTreeMap::new(),
            latest: Vec::new(),
            route: Arc::new(Route::new(Vec::new())),
            latest_created: String::new(),
            pinned: Vec::new(),
            addressable,
            admissions: Arc::default(),
        };
        self.update(&mut st, service, applied)?;
        Ok(st)
    }

    fn update(
        &self,
        st: &mut ServiceState,
        service: &Service,
        applied: &mut Applied,
    ) -> Result<(), HistoryError> {
        let ns = &service.metadata.namespace;
        let name = &service.metadata.name;
        let mut history = History::load(&self.data_dir, ns, name)?;
        let (latest, created) = history.revision_for(name, &service.spec.template)?;
        if created {
            applied.created.push(format!("{ns}/{latest}"));
            tracing::info!(service = %format!("{ns}/{name}"), revision = %latest, "revision created");
        }
        st.service = service.clone();
        st.latest_created = latest.clone();
        // The revisions to run: the latest, those the traffic names, and — while the latest is
        // not ready yet — the one serving now.
        let mut wanted: Vec<String> = vec![latest.clone()];
        for t in &service.spec.traffic {
            if let Some(r) = &t.revision_name
                && !wanted.contains(r)
            {
                wanted.push(r.clone());
            }
        }
        if let Some(extra) = self
            .pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(ns.clone(), name.clone()))
        {
            for r in extra {
                if !wanted.contains(r) {
                    wanted.push(r.clone());
                }
            }
        }
        st.pinned = wanted.clone();
        let follows_latest = service.spec.traffic.is_empty()
            || service
                .spec
                .traffic
                .iter()
                .any(|t| t.latest_revision == Some(true));
        if follows_latest {
            let serving_now = st.latest.iter().find(|r| r.is_ready()).cloned();
            let latest_ready = st
                .revisions
                .get(&latest)
                .is_some_and(|r| r.revision.is_ready());
            if let Some(r) = serving_now
                && !latest_ready
                && !wanted.iter().any(|w| w == r.name())
            {
                wanted.push(r.name().to_owned());
            }
        }
        for r in &wanted {
            if st.revisions.contains_key(r) {
                continue;
            }
            let template = if *r == latest {
                Some(service.spec.template.clone())
            } else {
                history.template(r)
            };
            let Some(template) = template else {
                // A traffic target naming a revision that does not exist: nothing to run; the
                // route gives it no requests.
                tracing::warn!(service = %format!("{ns}/{name}"), revision = %r, "traffic names an unknown revision");
                continue;
            };
            let resolved = self
                .env
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(ns.clone(), name.clone()))
                .cloned()
                .unwrap_or_default();
            let globals = self
                .autoscaler
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let mut spec = RevisionSpec::from_service(
                &with_template(service, template),
                r,
                &resolved,
                &globals,
            );
            if !st.addressable {
                // A Configuration on its own belongs to no Service.
                spec.service.clear();
            }
            if let Some(c) = spec.container.as_mut() {
                c.credentials = self
                    .pull_credentials
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(ns.clone(), name.clone()))
                    .cloned();
            }
            let queue = Queue::new(self.backlog.clone(), ns, name, st.admissions.clone());
            let revision = Revision::with_queue(spec, queue);
            if revision.spec().container.is_some() {
                match self.containers() {
                    Ok(c) => revision.use_containers(c),
                    Err(e) => {
                        tracing::error!(revision = %r, error = %e, "container images cannot run")
                    }
                }
            }
            let scaler = tokio::spawn(revision.clone().run());
            st.revisions.insert(r.clone(), Running { revision, scaler });
        }
        // `latestRevision` follows the newest ready revision of those created, newest first.
        let mut order: Vec<&str> = history
            .revisions()
            .iter()
            .rev()
            .map(|r| r.name.as_str())
            .collect();
        order.retain(|n| st.revisions.contains_key(*n));
        st.latest = order
            .iter()
            .filter_map(|n| st.revisions.get(*n).map(|r| r.revision.clone()))
            .collect();
        st.route = Arc::new(self.route_of(st));
        st.route
            .share_queue(st.revisions.values().map(|r| r.revision.clone()));
        // Stop what nothing routes to any more.
        let routed: Vec<String> = st
            .revisions
            .keys()
            .filter(|n| wanted.contains(n))
            .cloned()
            .collect();
        let stale: Vec<String> = st
            .revisions
            .keys()
            .filter(|n| !routed.contains(n))
            .cloned()
            .collect();
        for n in stale {
            if let Some(r) = st.revisions.remove(&n) {
                r.revision.stop();
                drop(r.scaler);
                applied.stopped.push(format!("{ns}/{n}"));
            }
        }
        st.latest.retain(|r| routed.iter().any(|n| n == r.name()));
        history.mark_active(&routed)?;
        Ok(())
    }

    fn route_of(&self, st: &ServiceState) -> Route {
        let traffic = &st.service.spec.traffic;
        if traffic.is_empty() {
            return Route::with_latest(
                vec![Target {
                    revision: st
                        .latest
                        .first()
                        .cloned()
                        .expect("the latest revision runs"),
                    percent: 100,
                    tag: None,
                    latest: true,
                    follow: Vec::new(),
                }],
                st.latest.clone(),
            );
        }
        let targets = traffic
            .iter()
            .filter_map(|t| {
                let revision = match &t.revision_name {
                    Some(r) => st.revisions.get(r)?.revision.clone(),
                    None => st.latest.first()?.clone(),
                };
                Some(Target {
                    revision,
                    percent: t.percent.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
                    tag: t.tag.clone(),
                    latest: t.latest_revision == Some(true),
                    follow: Vec::new(),
                })
            })
            .collect();
        Route::with_latest(targets, st.latest.clone())
    }

    /// The revisions of Service `namespace/name` and their state now.
    pub fn revisions(&self, namespace: &str, name: &str) -> Vec<(String, RevisionSnapshot)> {
        let Some(state) = self.state(namespace, name) else {
            return Vec::new();
        };
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.revisions
            .iter()
            .map(|(n, r)| (n.clone(), r.revision.snapshot()))
            .collect()
    }

    /// What Service `namespace/name` looks like now, for its status.
    pub fn status(&self, namespace: &str, name: &str) -> Option<ServiceStatus> {
        let state = self.state(namespace, name)?;
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        let latest_ready = st
            .latest
            .iter()
            .find(|r| r.is_ready())
            .map(|r| r.name().to_owned());
        let traffic = st
            .route
            .targets()
            .iter()
            .map(|t| TrafficStatus {
                revision: if t.latest {
                    latest_ready
                        .clone()
                        .unwrap_or_else(|| t.revision.name().to_owned())
                } else {
                    t.revision.name().to_owned()
                },
                percent: t.percent,
                tag: t.tag.clone(),
                latest: t.latest,
            })
            .collect();
        Some(ServiceStatus {
            latest_created: st.latest_created.clone(),
            latest_ready,
            traffic,
            revisions: st
                .revisions
                .iter()
                .map(|(n, r)| (n.clone(), r.revision.snapshot()))
                .collect(),
        })
    }

    /// The Services (and Configurations written on their own) that run, as
    /// `(namespace, name)`, in `namespace` or all.
    pub fn service_names(&self, namespace: Option<&str>) -> Vec<(String, String)> {
        keys_in(&self.services, namespace)
    }

    /// Every revision kept for the Services in `namespace` (or all): from the history, with the
    /// running ones' state.
    pub fn revision_records(&self, namespace: Option<&str>) -> Vec<RevisionRecord> {
        let mut out = Vec::new();
        for (ns, service) in self.service_names(namespace) {
            let Ok(history) = History::load(&self.data_dir, &ns, &service) else {
                continue;
            };
            let running: HashMap<String, RevisionSnapshot> =
                self.revisions(&ns, &service).into_iter().collect();
            for (i, r) in history.revisions().iter().enumerate() {
                out.push(RevisionRecord {
                    namespace: ns.clone(),
                    service: service.clone(),
                    name: r.name.clone(),
                    generation: i as u64 + 1,
                    template: r.template.clone(),
                    created: r.created,
                    state: running.get(&r.name).cloned(),
                });
            }
        }
        out
    }

    /// Every running revision, with its namespace and Service.
    pub fn all_revisions(&self) -> Vec<(String, String, Arc<Revision>)> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for ((ns, name), state) in services.iter() {
            let st = state.lock().unwrap_or_else(|e| e.into_inner());
            for r in st.revisions.values() {
                out.push((ns.clone(), name.clone(), r.revision.clone()));
            }
        }
        out
    }

    /// The running revision `namespace/name`.
    pub fn revision(&self, namespace: &str, name: &str) -> Option<Arc<Revision>> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        services
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .find_map(|(_, s)| {
                let st = s.lock().unwrap_or_else(|e| e.into_inner());
                st.revisions.get(name).map(|r| r.revision.clone())
            })
    }

    /// The revision Service `namespace/name`'s template makes now.
    pub fn latest_created(&self, namespace: &str, name: &str) -> Option<String> {
        let state = self.state(namespace, name)?;
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        Some(st.latest_created.clone())
    }

    fn state(&self, namespace: &str, name: &str) -> Option<Arc<Mutex<ServiceState>>> {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Whether `(service, namespace)` runs: for telling a tagged host from a plain one.
    pub fn knows(&self, service: &str, namespace: &str) -> bool {
        let key = (namespace.to_owned(), service.to_owned());
        self.state(namespace, service)
            .is_some_and(|s| s.lock().unwrap_or_else(|e| e.into_inner()).addressable)
            || self
                .routes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&key)
    }

    /// Rebuilds the Routes written on their own over the revisions running now.
    fn build_routes(&self, routes: &[ember_api::serving::Route]) {
        let mut built = HashMap::new();
        for r in routes {
            let ns = &r.metadata.namespace;
            let targets: Vec<Target> = r
                .spec
                .traffic
                .iter()
                .filter_map(|t| {
                    let percent = t.percent.and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
                    match (&t.configuration_name, &t.revision_name) {
                        (Some(c), _) => {
                            let state = self.state(ns, c)?;
                            let st = state.lock().unwrap_or_else(|e| e.into_inner());
                            let newest = st
                                .revisions
                                .get(&st.latest_created)
                                .map(|r| r.revision.clone())?;
                            Some(Target {
                                revision: newest,
                                percent,
                                tag: t.tag.clone(),
                                latest: true,
                                follow: st.latest.clone(),
                            })
                        }
                        (None, Some(rev)) => {
                            let revision = self.revision(ns, rev)?;
                            Some(Target {
                                revision,
                                percent,
                                tag: t.tag.clone(),
                                latest: false,
                                follow: Vec::new(),
                            })
                        }
                        (None, None) => None,
                    }
                })
                .collect();
            built.insert(
                (ns.clone(), r.metadata.name.clone()),
                Arc::new(Route::new(targets)),
            );
        }
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = built;
    }

    /// The Routes written on their own, as `(namespace, name)`, in `namespace` or all.
    pub fn route_names(&self, namespace: Option<&str>) -> Vec<(String, String)> {
        keys_in(&self.routes, namespace)
    }

    /// Where a Route written on its own sends its traffic now.
    pub fn route_traffic(&self, namespace: &str, name: &str) -> Option<Vec<TrafficStatus>> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let route = routes.get(&(namespace.to_owned(), name.to_owned()))?;
        Some(
            route
                .targets()
                .iter()
                .map(|t| TrafficStatus {
                    revision: if t.latest {
                        t.follow
                            .iter()
                            .find(|r| r.is_ready())
                            .map_or_else(|| t.revision.name().to_owned(), |r| r.name().to_owned())
                    } else {
                        t.revision.name().to_owned()
                    },
                    percent: t.percent,
                    tag: t.tag.clone(),
                    latest: t.latest,
                })
                .collect(),
        )
    }

    /// Whether `namespace/name` is a Service (not a Configuration written on its own).
    pub fn is_service(&self, namespace: &str, name: &str) -> bool {
        self.state(namespace, name)
            .is_some_and(|s| s.lock().unwrap_or_else(|e| e.into_inner()).addressable)
    }

    /// Sends `req` to Service `namespace/name` (or its `tag`): a revision by the route's weights,
    /// an instance with room (woken from zero if need be), the response streamed back.
    pub async fn request(
        &self,
        namespace: &str,
        name: &str,
        tag: Option<&str>,
        req: Request<Body>,
        origin: Origin,
    ) -> Result<Response<Body>, RequestError> {
        let not_found = || {
            RequestError::NotFound(match tag {
                Some(t) => format!("{namespace}/{name} tag {t}"),
                None => format!("{namespace}/{name}"),
            })
        };
        let route = match self.state(namespace, name) {
            Some(state) if state.lock().unwrap_or_else(|e| e.into_inner()).addressable => state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .route
                .clone(),
            _ => self
                .routes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(namespace.to_owned(), name.to_owned()))
                .cloned()
                .ok_or_else(not_found)?,
        };
        let pick = |route: &Route| match tag {
            Some(t) => route.tagged(t),
            None => route.pick(),
        };
        let mut revision = pick(&route).ok_or_else(not_found)?;
        let lease = match revision.acquire().await {
            // Retired between the pick and now (a rollout finished): the route has moved on.
            Err(ActivateError::Stopped(_)) => {
                let state = self.state(namespace, name).ok_or_else(not_found)?;
                let route = state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .route
                    .clone();
                revision = pick(&route).ok_or_else(not_found)?;
                revision.acquire().await?
            }
            other => other?,
        };
        let timeout = revision.spec().timeout;
        let h2c = revision.spec().h2c;
        let (resp, tunnel) = self
            .client
            .forward(lease.addr, req, origin, timeout, h2c)
            .await?;
        if let Some(tunnel) = tunnel {
            // An upgraded connection (a WebSocket) holds its instance's room while it lasts.
            tokio::spawn(async move {
                tunnel.await;
                drop(lease);
            });
            return Ok(resp);
        }
        // The instance's room stays taken until the response body has been sent.
        Ok(resp.map(|body| {
            LeasedBody {
                body,
                lease: Some(lease),
            }
            .boxed_unsync()
        }))
    }

    /// Stops every revision (their requests finish first) and waits for them.
    pub async fn shutdown(&self) {
        let states: Vec<Arc<Mutex<ServiceState>>> = self
            .services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.update_reachable();
        let mut scalers = Vec::new();
        for s in states {
            let mut st = s.lock().unwrap_or_else(|e| e.into_inner());
            for (_, r) in std::mem::take(&mut st.revisions) {
                r.revision.stop();
                scalers.push(r.scaler);
            }
        }
        for s in scalers {
            let _ = s.await;
        }
    }
}

/// Once the latest revision is ready, stops the revision that served while it started (if any
/// still runs that is no longer pinned by the traffic).
fn finish_rollout(state: &Arc<Mutex<ServiceState>>) {
    let (latest, name) = {
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        if st.revisions.keys().all(|n| st.pinned.contains(n)) {
            return;
        }
        let Some(latest) = st.revisions.get(&st.latest_created) else {
            return;
        };
        (latest.revision.clone(), st.latest_created.clone())
    };
    let state = state.clone();
    tokio::spawn(async move {
        latest.ready().await;
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        if st.latest_created != name || !latest.is_ready() {
            return;
        }
        let stale: Vec<String> = st
            .revisions
            .keys()
            .filter(|n| !st.pinned.contains(n))
            .cloned()
            .collect();
        for n in stale {
            if let Some(r) = st.revisions.remove(&n) {
                tracing::info!(revision = %n, "revision no longer routed: stopping after its requests");
                r.revision.stop();
            }
        }
        let pinned = st.pinned.clone();
        st.latest.retain(|r| pinned.iter().any(|n| n == r.name()));
        st.route
            .share_queue(st.revisions.values().map(|r| r.revision.clone()));
    });
}

/// The keys of `map` in `namespace` (or all), sorted.
fn keys_in<V>(map: &RwLock<HashMap<ServiceKey, V>>, namespace: Option<&str>) -> Vec<ServiceKey> {
    let map = map.read().unwrap_or_else(|e| e.into_inner());
    let mut out: Vec<ServiceKey> = map
        .keys()
        .filter(|(ns, _)| namespace.is_none_or(|n| n == ns))
        .cloned()
        .collect();
    out.sort();
    out
}

fn with_template(service: &Service, template: RevisionTemplate) -> Service {
    let mut s = service.clone();
    s.spec.template = template;
    s
}

/// A response body that keeps its instance's room taken until it ends.
struct LeasedBody {
    body: Body,
    lease: Option<Lease>,
}

impl hyper::body::Body for LeasedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.lease.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
