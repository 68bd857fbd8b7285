//! A scriptable test subscriber on loopback: records every request it receives and answers with
//! a status chosen per request (e.g. fail the first N with 503).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct State {
    /// Requests being answered now, and the most at once.
    concurrent: usize,
    max_concurrent: usize,
    /// Per-request delay before answering.
    delay: std::time::Duration,
    received: Vec<Received>,
    /// Answers to give, in order; when empty, `default`.
    script: VecDeque<Answer>,
    /// The answer once the script is used up (200, empty, unless set).
    default: Option<Answer>,
}

/// A scripted answer: status, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Answer {
    /// A status with no body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

/// A running subscriber.
#[derive(Clone)]
pub struct Subscriber {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// While true, requests wait (a hanging subscriber).
    held: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Subscriber {
    /// Starts a subscriber answering 200 (empty body) to everything.
    pub async fn start() -> Self {
        Self::with_script(Vec::new()).await
    }

    /// Starts a subscriber answering the given statuses first, then 200.
    pub async fn with_script(statuses: Vec<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, statuses)
    }

    /// Serves on a given listener (to restart on a known port).
    pub fn serve(listener: TcpListener, statuses: Vec<u16>) -> Self {
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(tokio::sync::watch::channel(false).0);
        let hold = held.clone();
        let state = Arc::new(Mutex::new(State {
            delay: Default::default(),
            concurrent: 0,
            max_concurrent: 0,
            received: Vec::new(),
            script: statuses.into_iter().map(Answer::status).collect(),
            default: None,
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                let hold = hold.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let st = st.clone();
                        let mut held = hold.subscribe();
                        async move {
                            let delay = {
                                let mut s = st.lock().unwrap();
                                s.concurrent += 1;
                                s.max_concurrent = s.max_concurrent.max(s.concurrent);
                                s.delay
                            };
                            let _ = held.wait_for(|h| !*h).await;
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let answer = {
                                let mut s = st.lock().unwrap();
                                s.concurrent -= 1;
                                s.received.push(Received {
                                    headers: parts.headers,
                                    body,
                                });
                                s.script
                                    .pop_front()
                                    .or_else(|| s.default.clone())
                                    .unwrap_or_else(|| Answer::status(200))
                            };
                            let mut resp = Response::new(Full::new(answer.body));
                            *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap();
                            for (k, v) in &answer.headers {
                                resp.headers_mut().insert(
                                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    http::HeaderValue::from_str(v).unwrap(),
                                );
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, held }
    }

    /// Answers these first (then the default).
    pub fn script(&self, answers: Vec<Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, answer: Answer) {
        self.state.lock().unwrap().default = Some(answer);
    }

    /// Makes every request wait this long before it is answered.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Hangs: requests wait (unanswered) until [`Subscriber::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Answers the waiting requests and stops hanging.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// The `ce-id` of every request received, in arrival order.
    pub fn ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter_map(|r| r.header("ce-id").map(str::to_owned))
            .collect()
    }

    /// `http://ADDR/`.
    pub fn uri(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests being answered now (e.g. waiting while the subscriber hangs).
    pub fn in_progress(&self) -> usize {
        self.state.lock().unwrap().concurrent
    }

    /// The most requests it was answering at once.
    pub fn max_concurrent(&self) -> usize {
        self.state.lock().unwrap().max_concurrent
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }
}
