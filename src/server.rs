//! Ember's HTTP listener: broker ingress at `/{namespace}/{broker}`, each WebhookSource's path,
//! `/healthz`, `/readyz`, `/metrics`, and the resources with their statuses, read-only, under
//! `/apis/` (see [`crate::status`]).
//!
//! The server takes a bound listener and a shutdown signal (so tests bind port 0). On shutdown
//! it stops accepting, lets requests in progress finish — an ingress request finishes when its
//! events are durable — and returns when they are done or the grace period has passed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ember_broker::delivery::BrokerDirectory;
use ember_broker::ingress;
use ember_sources::SourceManager;
use ember_sources::webhook::WebhookRoutes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::connection::{self, ConnectionLimits, TimedBody};
use crate::status::{self, Statuses};

/// Routes requests to brokers and health endpoints.
pub struct Router {
    /// The open brokers, as brokers come and go: a request for one being removed finishes; the
    /// next one is answered 404.
    brokers: BrokerDirectory,
    ready: AtomicBool,
    metrics: prometheus_client::registry::Registry,
    /// WebhookSources by path, as their sources start and stop.
    webhooks: Arc<WebhookRoutes>,
    /// The resources' statuses, served under `/apis/`.
    statuses: Option<Arc<Statuses>>,
    /// Knative Services, by `Host`.
    services: Option<crate::serving::Services>,
}

/// A response body: Ember's own (whole), or a function's (streamed).
pub type RouterBody = http_body_util::Either<Full<Bytes>, ember_serving::proxy::Body>;

impl Router {
    /// A router over the brokers of `brokers` and the WebhookSources in `webhooks`; not ready
    /// until [`Router::set_ready`].
    pub fn new(brokers: BrokerDirectory, webhooks: Arc<WebhookRoutes>) -> Self {
        let metrics = crate::metrics::registry(brokers.clone());
        Self {
            brokers,
            ready: AtomicBool::new(false),
            metrics,
            webhooks,
            statuses: None,
            services: None,
        }
    }

    /// Serves `statuses` under `/apis/`.
    pub fn with_statuses(mut self, statuses: Arc<Statuses>) -> Self {
        self.statuses = Some(statuses);
        self
    }

    /// Adds the counters of the sources `sources` runs to `/metrics`.
    pub fn with_sources(mut self, sources: Arc<SourceManager>) -> Self {
        crate::metrics::register_sources(&mut self.metrics, sources);
        self
    }

    /// Marks the server ready (every broker open and dispatching) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Serves the Services of `services` by `Host`.
    pub fn with_services(mut self, services: crate::serving::Services) -> Self {
        crate::metrics::register_serving(&mut self.metrics, services.serving.clone());
        self.services = Some(services);
        self
    }

    /// Answers one request from `client`: a Service's when its `Host` names one, else Ember's.
    pub async fn route(
        &self,
        req: Request<TimedBody>,
        client: Option<std::net::SocketAddr>,
    ) -> Response<RouterBody> {
        // HTTP/1 names the host in `Host`, HTTP/2 in the request's authority.
        if let Some(services) = &self.services
            && let Some(target) = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()))
                .and_then(|host| services.by_host(host))
        {
            return services
                .handle(target, req, client)
                .await
                .map(http_body_util::Either::Right);
        }
        self.route_local(req)
            .await
            .map(http_body_util::Either::Left)
    }

    /// Answers a request for Ember itself.
    async fn route_local(&self, req: Request<TimedBody>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        match path {
            "/healthz" => return text(StatusCode::OK, "ok\n"),
            "/readyz" if self.ready.load(Ordering::Acquire) => {
                return text(StatusCode::OK, "ready\n");
            }
            "/readyz" => return text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            "/metrics" => {
                let mut resp = Response::new(Full::new(Bytes::from(crate::metrics::render(
                    &self.metrics,
                ))));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                return resp;
            }
            _ => {}
        }
        if let Some(webhook) = self.webhooks.get(path) {
            return webhook.handle(req).await;
        }
        if let Some(broker) = self.brokers.by_path(path) {
            return ingress::handle(Some(&broker), req).await;
        }
        // Behind every ingress path: a broker's path has two segments, an API path at least four.
        if path.starts_with(status::PREFIX)
            && let Some(statuses) = &self.statuses
        {
            return api(statuses, &req).await;
        }
        let mut segments = path.trim_start_matches('/').split('/');
        match (segments.next(), segments.next(), segments.next()) {
            (Some(ns), Some(name), None) if !ns.is_empty() && !name.is_empty() => {
                // No such broker.
                ingress::handle(None, req).await
            }
            _ => ingress::error_response(
                StatusCode::NOT_FOUND,
                "not found: send events to /{namespace}/{broker}",
            ),
        }
    }
}

/// A read of the resources API: GET only. The answer is built on a blocking thread, since a
/// list of ten thousand Triggers parses as many documents.
async fn api(statuses: &Arc<Statuses>, req: &Request<TimedBody>) -> Response<Full<Bytes>> {
    if req.method() != http::Method::GET {
        let message = format!(
            "{} is not allowed: Ember's resources API is read-only (GET)",
            req.method()
        );
        let mut resp = json(
            StatusCode::METHOD_NOT_ALLOWED,
            &status::failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message),
        );
        resp.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
        return resp;
    }
    let path = req.uri().path().to_owned();
    let statuses = statuses.clone();
    match tokio::task::spawn_blocking(move || statuses.respond(&path)).await {
        Ok((code, body)) => json_bytes(code, body),
        Err(e) => {
            tracing::error!(error = %e, "answering a resources API request failed");
            let code = StatusCode::INTERNAL_SERVER_ERROR;
            json(
                code,
                &status::failure(code, "InternalError", "the request failed"),
            )
        }
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    json_bytes(status, body.to_string().into_bytes())
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// Serves until `shutdown` turns true, then drains connections for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = connection::Drain::default();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service = service_fn(move |req| {
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.route(req, Some(peer)).await) }
        });
        connection::spawn(stream, limits, service, &graceful, permit);
    }
    drop(listener);
    router.set_ready(false);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open after the shutdown grace period"
        );
    }
}
