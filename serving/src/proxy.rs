//! Forwarding a request to an instance: method, path, query, headers and body streamed both ways
//! (never buffered whole), `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` set, and the
//! revision's `timeoutSeconds` bounding the wait for the response's head — a response whose
//! first byte came in time is not cut.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A request or response body of any source, boxed.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
/// The error of a boxed body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The keep-alive clients to instances, shared by every revision: HTTP/1.1, and HTTP/2 with
/// prior knowledge for functions whose port is named `h2c`.
#[derive(Clone)]
pub struct InstanceClient {
    http1: Client<HttpConnector, Body>,
    h2c: Client<HttpConnector, Body>,
}

impl Default for InstanceClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        InstanceClient {
            http1: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(1024)
                .build(connector.clone()),
            h2c: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .http2_only(true)
                .build(connector),
        }
    }
}

/// Headers that name a hop's connection: meaningless, and forbidden, in HTTP/2.
const CONNECTION_HEADERS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The instance did not answer in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection to the instance failed.
    #[error("instance {addr}: {error}")]
    Upstream {
        /// The instance.
        addr: SocketAddr,
        /// Why.
        error: String,
    },
}

impl ProxyError {
    /// The status a client gets for it: 504 for a timeout, 502 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Where a request came from, for the forwarding headers.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The client's address.
    pub client: Option<SocketAddr>,
}

/// The two ends of an upgraded connection (a WebSocket) joined, until either closes.
pub type Tunnel = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl InstanceClient {
    /// Sends `req` to the instance at `addr`; the response streams back as it arrives. When the
    /// request asks to upgrade the connection (`Upgrade: websocket`) and the instance agrees
    /// (101), the tunnel joining the client's connection to the instance's is returned too: run
    /// it to carry the traffic.
    pub async fn forward(
        &self,
        addr: SocketAddr,
        mut req: Request<Body>,
        origin: Origin,
        timeout: Duration,
        h2c: bool,
    ) -> Result<(Response<Body>, Option<Tunnel>), ProxyError> {
        // An HTTP/2 request names its host in the URI, not in a Host header.
        if !req.headers().contains_key(http::header::HOST)
            && let Some(authority) = req.uri().authority()
            && let Ok(v) = HeaderValue::from_str(authority.as_str())
        {
            req.headers_mut().insert(http::header::HOST, v);
        }
        let client_side = req
            .headers()
            .contains_key(http::header::UPGRADE)
            .then(|| hyper::upgrade::on(&mut req));
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        *req.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(addr.to_string())
            .path_and_query(path)
            .build()
            .map_err(|e| ProxyError::Upstream {
                addr,
                error: e.to_string(),
            })?;
        set_forwarding(&mut req, origin);
        let sent = if h2c {
            *req.version_mut() = http::Version::HTTP_2;
            for h in CONNECTION_HEADERS {
                req.headers_mut().remove(h);
            }
            self.h2c.request(req)
        } else {
            *req.version_mut() = http::Version::HTTP_11;
            self.http1.request(req)
        };
        let resp = match tokio::time::timeout(timeout, sent).await {
            Err(_) => return Err(ProxyError::Timeout(timeout)),
            Ok(Err(e)) => {
                return Err(ProxyError::Upstream {
                    addr,
                    error: e.to_string(),
                });
            }
            Ok(Ok(resp)) => resp,
        };
        let mut resp = resp;
        let tunnel = match client_side {
            Some(client_side) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let upstream = hyper::upgrade::on(&mut resp);
                let joined: Tunnel = Box::pin(async move {
                    let (Ok(client), Ok(instance)) = tokio::join!(client_side, upstream) else {
                        return;
                    };
                    let mut client = hyper_util::rt::TokioIo::new(client);
                    let mut instance = hyper_util::rt::TokioIo::new(instance);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut instance).await;
                });
                Some(joined)
            }
            _ => None,
        };
        Ok((
            resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()),
            tunnel,
        ))
    }
}

/// `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `Forwarded`, as a proxy in front of
/// the function would set them.
fn set_forwarding(req: &mut Request<Body>, origin: Origin) {
    let headers = req.headers_mut();
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    if let Some(client) = origin.client {
        let ip = client.ip().to_string();
        let xff = HeaderName::from_static("x-forwarded-for");
        let value = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.clone(),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(xff, v);
        }
    }
    // The runtime contract requires `Forwarded`; a delivery from inside Ember (a trigger, a
    // source) has no client address: RFC 7239's `for=unknown`.
    let mut forwarded = format!(
        "for={}",
        origin
            .client
            .map_or_else(|| "unknown".to_owned(), quoted_for)
    );
    if let Some(h) = &host {
        forwarded.push_str(&format!(";host={h}"));
    }
    forwarded.push_str(";proto=http");
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.append(http::header::FORWARDED, v);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
}

/// RFC 7239: an IPv6 address (and any with a port) is quoted.
fn quoted_for(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("\"[{}]\"", a.ip()),
    }
}

/// A small response with a text body.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(
        http_body_util::Full::new(Bytes::from(body.into()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
