//! Serving in the binary: the configuration's Knative Services run by `ember-serving`, reached
//! by `Host` at Ember's listener (`{service}.{namespace}.{domain}`, `{tag}-{service}...`) and,
//! in process, by the triggers and sources that name a Service (the broker's service gateway).
//!
//! The domain is `--domain` (default `localhost`: curl and browsers resolve `*.localhost` to
//! loopback), or the default domain of a `config-domain` ConfigMap in namespace
//! `knative-serving`, as Knative users set it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use ember_api::config::Config;
use ember_broker::delivery::{BrokerDirectory, Destination, ServiceGateway};
use ember_broker::dispatch::LaneState;
use ember_serving::Serving;
use ember_serving::activator::Backlog;
use ember_serving::proxy::{Body, Origin};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// The name and namespace of Knative's domain ConfigMap.
const CONFIG_DOMAIN: (&str, &str) = ("knative-serving", "config-domain");

/// The domain Services are reached under: `config-domain`'s default domain (the key whose
/// value is empty, or the only key), else `flag`.
pub fn domain(config: &Config, flag: &str) -> String {
    let map =
        config.config_maps.iter().rev().find(|m| {
            m.metadata.namespace == CONFIG_DOMAIN.0 && m.metadata.name == CONFIG_DOMAIN.1
        });
    let Some(map) = map else {
        return flag.to_owned();
    };
    let keys: Vec<&String> = map.data.keys().filter(|k| !k.starts_with('_')).collect();
    map.data
        .iter()
        .find(|(k, v)| v.trim().is_empty() && !k.starts_with('_'))
        .map(|(k, _)| k.clone())
        .or_else(|| (keys.len() == 1).then(|| keys[0].clone()))
        .unwrap_or_else(|| flag.to_owned())
}

/// The events waiting in the brokers for each Service: the waiting-event counters of the
/// triggers delivering to it, indexed when triggers change and read as atomics.
#[derive(Default)]
struct BrokerBacklog {
    index: RwLock<LanesByService>,
}

/// The waiting-event counters of the triggers delivering to each Service, by namespace and
/// name.
type LanesByService = HashMap<String, HashMap<String, Vec<Arc<LaneState>>>>;

impl Backlog for BrokerBacklog {
    fn waiting(&self, namespace: &str, service: &str) -> u64 {
        // Asked on every scaling look of every revision: no allocation, atomics only.
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index
            .get(namespace)
            .and_then(|services| services.get(service))
            .map_or(0, |lanes| lanes.iter().map(|l| l.pending()).sum())
    }
}

/// The Services of a running Ember and the domain they are reached under.
#[derive(Clone)]
pub struct Services {
    /// The running Services.
    pub serving: Arc<Serving>,
    domain: Arc<RwLock<String>>,
    backlog: Arc<BrokerBacklog>,
}

impl Services {
    /// Services with revision histories under `data_dir`, reached under `domain`.
    pub fn new(serving: Arc<Serving>, domain: String) -> Self {
        let backlog = Arc::new(BrokerBacklog::default());
        serving.set_backlog(backlog.clone());
        Self {
            serving,
            domain: Arc::new(RwLock::new(domain)),
            backlog,
        }
    }

    /// Indexes, again, the triggers of `brokers` that deliver to a Service (call when triggers
    /// change): their waiting events are what the Services' autoscalers see.
    pub fn index_backlog(&self, brokers: &BrokerDirectory) {
        let mut index = LanesByService::new();
        for broker in brokers.all() {
            for (subscriber, lane) in broker.subscriber_lanes() {
                if let Destination::Service {
                    namespace, name, ..
                } = subscriber
                {
                    index
                        .entry(namespace)
                        .or_default()
                        .entry(name)
                        .or_default()
                        .push(lane);
                }
            }
        }
        *self
            .backlog
            .index
            .write()
            .unwrap_or_else(|e| e.into_inner()) = index;
    }

    /// The domain now.
    pub fn domain(&self) -> String {
        self.domain
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the domain (a reload changed `config-domain`).
    pub fn set_domain(&self, domain: String) {
        *self.domain.write().unwrap_or_else(|e| e.into_inner()) = domain;
    }

    /// The Service a `Host` names, if it names one that runs: `(tag, service, namespace)`.
    ///
    /// Asked of every request at Ember's listener, broker ingress included: with no Service
    /// running it answers at once, and otherwise reads the domain without copying it.
    pub fn by_host(&self, host: &str) -> Option<(Option<String>, String, String)> {
        if self.serving.is_empty() {
            return None;
        }
        let domain = self.domain.read().unwrap_or_else(|e| e.into_inner());
        let (tag, service, namespace) =
            ember_serving::route::parse_host(host, &domain, |s, ns| self.serving.knows(s, ns))?;
        Some((
            tag.map(str::to_owned),
            service.to_owned(),
            namespace.to_owned(),
        ))
    }

    /// Answers a request for a Service, streaming both ways.
    pub async fn handle<B>(
        &self,
        (tag, service, namespace): (Option<String>, String, String),
        req: Request<B>,
        client: Option<SocketAddr>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<ember_serving::proxy::BoxError>,
    {
        let req = req.map(|b| b.map_err(Into::into).boxed_unsync());
        match self
            .serving
            .request(&namespace, &service, tag.as_deref(), req, Origin { client })
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(service = %format!("{namespace}/{service}"), error = %e, "request not served");
                e.into_response()
            }
        }
    }
}

impl ServiceGateway for Services {
    fn admit(&self, namespace: &str, name: &str) -> BoxFuture<'static, Box<dyn Send + Sync>> {
        let admit = self.serving.admit(namespace, name);
        Box::pin(async move { Box::new(admit.await) as Box<dyn Send + Sync> })
    }

    fn send(
        &self,
        namespace: &str,
        name: &str,
        request: Request<Full<Bytes>>,
        max_body: usize,
    ) -> BoxFuture<'static, Result<Response<Bytes>, (StatusCode, String)>> {
        let host = format!("{name}.{namespace}.{}", self.domain());
        Box::pin(deliver(
            self.serving.clone(),
            namespace.to_owned(),
            name.to_owned(),
            host,
            request,
            max_body,
        ))
    }
}

/// One delivery to a Service: its answer with the body read up to `max_body` bytes.
async fn deliver(
    serving: Arc<Serving>,
    namespace: String,
    name: String,
    host: String,
    request: Request<Full<Bytes>>,
    max_body: usize,
) -> Result<Response<Bytes>, (StatusCode, String)> {
    let mut req: Request<Body> = request.map(|b| b.map_err(|e| match e {}).boxed_unsync());
    if let Ok(h) = HeaderValue::from_str(&host) {
        req.headers_mut().insert(http::header::HOST, h);
    }
    let resp = serving
        .request(&namespace, &name, None, req, Origin { client: None })
        .await
        .map_err(|e| (e.status(), e.to_string()))?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        read_up_to(body, max_body).await,
    ))
}

/// A body's first `max` bytes (the rest is dropped with the connection).
async fn read_up_to(mut body: Body, max: usize) -> Bytes {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            let room = max.saturating_sub(out.len());
            out.extend_from_slice(&data[..data.len().min(room)]);
            if out.len() >= max {
                break;
            }
        }
    }
    out.freeze()
}
