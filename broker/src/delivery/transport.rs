//! The bottom of a delivery stack: one attempt to hand an event to its [`Destination`].
//!
//! - HTTP: a POST in binary mode (structured JSON when the delivery `format` says so) with
//!   `Prefer: reply`; the answer's body is read up to 1 MiB (a reply, or error data for a
//!   dead-letter sink). Any 2xx is success; the retry table decides the rest.
//! - A Broker of this Ember: appended to its log in process, as its ingress would take the event
//!   (validated, `knativebrokerttl` decremented, `knativearrivaltime` stamped), and answered as
//!   its ingress would answer: 202 once durable; 503 with `Retry-After` when its queue is full
//!   or it is closing; 507 when its disk budget or disk is full; 400 (final) for an event it
//!   refuses.
//! - A Service of this Ember: the same request as over HTTP, handed in process to its route and
//!   activator (the [`ServiceGateway`](super::destination::ServiceGateway)); while its revision
//!   wakes from zero the attempt is simply in flight. An answer counts as over HTTP; no answer —
//!   no instance could start, the connection failed — is a 503 or 502 (retryable).
//! - Another sink of this Ember (a KafkaSink): handed the event as sources hand theirs over;
//!   answered 202 once it holds it, 503 with `Retry-After` when it may take it later, 400
//!   (final) when it refuses it for good.

use std::time::Duration;

use bytes::Bytes;
use ember_event::{CloudEvent, CloudEventExt, http_binding};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::destination::{BrokerDirectory, Destination};
use super::{Attempt, Failure, Response, Tried};
use crate::log::AppendError;

/// The HTTP client deliveries go through (keep-alive connection pool shared by all triggers).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Builds the delivery client.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(4096)
        .build(connector)
}

/// The most response body read from a receiver (the rest is discarded with the connection).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// How events are sent over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryFormat {
    /// Attributes as `ce-` headers, data as the body (the default).
    #[default]
    Binary,
    /// The whole event as `application/cloudevents+json`.
    Json,
}

/// Builds the HTTP request for one attempt.
pub fn build_request(
    uri: &Uri,
    format: DeliveryFormat,
    event: &CloudEvent,
) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::with_capacity(event.attributes.len() + 6);
    let body = match format {
        DeliveryFormat::Binary => http_binding::encode_binary(event, &mut headers),
        DeliveryFormat::Json => http_binding::encode_structured_json(event, &mut headers),
    };
    headers.insert("prefer", HeaderValue::from_static("reply"));
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers;
    req
}

/// One attempt at a destination.
#[derive(Debug, Clone)]
pub struct Transport {
    /// Where to.
    pub destination: Destination,
    /// Binary or structured, for HTTP.
    pub format: DeliveryFormat,
    /// The HTTP client.
    pub client: HttpClient,
    /// How an in-process destination finds its broker.
    pub brokers: BrokerDirectory,
}

impl Attempt for Transport {
    fn destination(&self) -> &Destination {
        &self.destination
    }

    async fn attempt(&self, event: &CloudEvent) -> Result<Response, Tried> {
        match &self.destination {
            Destination::Http(uri) => self.post(uri, event).await,
            Destination::Broker { namespace, name } => {
                let Some(broker) = self.brokers.get(namespace, name) else {
                    // Removed while this trigger still names it: retryable, as a 404 is.
                    return Err(Tried::retryable(Failure::new(format!(
                        "broker {namespace}/{name} is not open"
                    ))));
                };
                append(&broker, event).await
            }
            Destination::Service {
                namespace,
                name,
                path,
            } => self.to_service(namespace, name, path, event).await,
            Destination::Sink {
                kind,
                namespace,
                name,
            } => {
                let Some(sink) = self.brokers.sink(kind, namespace, name) else {
                    return Err(Tried::retryable(Failure::new(format!(
                        "{kind} {namespace}/{name} is not open"
                    ))));
                };
                to_sink(sink.as_ref(), event).await
            }
        }
    }
}

/// Hands `event` to a sink of this Ember, answered as an HTTP receiver would be: 202 once it
/// holds the event; 503 with `Retry-After` for what may succeed later; 400 (final) for an
/// event it refuses for good.
async fn to_sink(
    sink: &dyn ember_event::sink::EventSink,
    event: &CloudEvent,
) -> Result<Response, Tried> {
    use ember_event::sink::{Refused, Retry};
    let refused = |r: Refused| match r.retry {
        Retry::Never => Tried::final_(Failure {
            reason: format!("{} refused the event: {}", sink.name(), r.reason),
            response: Some(Box::new(Response::status(StatusCode::BAD_REQUEST))),
        }),
        Retry::After(wait) => {
            let mut resp = Response::status(StatusCode::SERVICE_UNAVAILABLE);
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers.insert(http::header::RETRY_AFTER, v);
            }
            Tried::retryable(Failure {
                reason: format!("{}: {}", sink.name(), r.reason),
                response: Some(Box::new(resp)),
            })
        }
    };
    let prepared = sink.prepare(event.clone()).map_err(refused)?;
    let answer = sink.send(&[&prepared]).await.into_iter().next();
    match answer {
        Some(Ok(())) => Ok(Response::status(StatusCode::ACCEPTED)),
        Some(Err(r)) => Err(refused(r)),
        None => Err(Tried::retryable(Failure::new(format!(
            "{} gave no answer",
            sink.name()
        )))),
    }
}

impl Transport {
    async fn to_service(
        &self,
        namespace: &str,
        name: &str,
        path: &str,
        event: &CloudEvent,
    ) -> Result<Response, Tried> {
        let Some(gateway) = self.brokers.services() else {
            return Err(Tried::retryable(Failure::new(format!(
                "service {namespace}/{name}: serving is not running"
            ))));
        };
        let uri: Uri = path.parse().unwrap_or_else(|_| Uri::from_static("/"));
        let req = build_request(&uri, self.format, event);
        match gateway.send(namespace, name, req, MAX_RESPONSE_BYTES).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                classify(
                    format!("service {namespace}/{name}"),
                    Response {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    },
                )
            }
            Err((status, why)) => Err(Tried {
                retryable: super::policy::is_retryable_status(status.as_u16()),
                failure: Failure {
                    reason: format!("service {namespace}/{name}: {why}"),
                    response: Some(Box::new(Response::status(status))),
                },
            }),
        }
    }

    async fn post(&self, uri: &Uri, event: &CloudEvent) -> Result<Response, Tried> {
        let req = build_request(uri, self.format, event);
        let resp = match self.client.request(req).await {
            Ok(resp) => resp,
            Err(e) => {
                return Err(Tried::retryable(Failure::new(format!(
                    "request to {uri} failed: {e}"
                ))));
            }
        };
        let (parts, body) = resp.into_parts();
        let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        classify(
            uri.to_string(),
            Response {
                status: parts.status,
                headers: parts.headers,
                body,
            },
        )
    }
}

/// An answer as an attempt's outcome: any 2xx is success; the retry table decides the rest.
fn classify(to: String, resp: Response) -> Result<Response, Tried> {
    if resp.status.is_success() {
        return Ok(resp);
    }
    let status = resp.status;
    let failure = Failure {
        reason: format!("{to} answered {status}"),
        response: Some(Box::new(resp)),
    };
    Err(Tried {
        retryable: super::policy::is_retryable_status(status.as_u16()),
        failure,
    })
}

/// Appends `event` to a broker of this Ember as its ingress would (see the module doc).
pub(crate) async fn append(
    broker: &crate::broker::Broker,
    event: &CloudEvent,
) -> Result<Response, Tried> {
    let mut event = event.clone();
    if let Err(e) = ember_event::validate(&event)
        .and_then(|_| ember_event::stamp_ingress(&mut event, &ember_event::now_rfc3339()))
    {
        return Err(Tried::final_(Failure {
            reason: format!("broker {} refused the event: {e}", broker.name()),
            response: Some(Box::new(Response::status(StatusCode::BAD_REQUEST))),
        }));
    }
    let record = event.encode_to_bytes();
    if broker.over_disk_budget(record.len() as u64 + 8) {
        return Err(Tried::retryable(Failure {
            reason: format!("broker {}: its disk budget is used up", broker.name()),
            response: Some(Box::new(Response::status(StatusCode::INSUFFICIENT_STORAGE))),
        }));
    }
    let busy = |why: String, wait: Duration| {
        let mut resp = Response::status(StatusCode::SERVICE_UNAVAILABLE);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers.insert(http::header::RETRY_AFTER, v);
        }
        Err(Tried::retryable(Failure {
            reason: format!("broker {}: {why}", broker.name()),
            response: Some(Box::new(resp)),
        }))
    };
    match broker.append(vec![record]).await {
        Ok(_) => Ok(Response::status(StatusCode::ACCEPTED)),
        Err(AppendError::Full) => busy("its append queue is full".into(), Duration::from_secs(1)),
        Err(e @ AppendError::TooLarge { .. }) => Err(Tried::final_(Failure {
            reason: format!("broker {}: {e}", broker.name()),
            response: Some(Box::new(Response::status(StatusCode::PAYLOAD_TOO_LARGE))),
        })),
        Err(AppendError::StorageFull { retry_after }) => {
            busy("its disk is full".into(), retry_after)
        }
        Err(e) => busy(e.to_string(), Duration::from_secs(1)),
    }
}

impl Response {
    /// An answer with only a status.
    pub fn status(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}
