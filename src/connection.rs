//! Serving HTTP/1 connections with bounds, for every listener Ember runs (`ember run`'s and
//! `ember display`'s): a cap on open connections, and timeouts that close a connection a client
//! holds without using it — the slowloris family of slow clients.
//!
//! | bound | default | applies | nginx's default, for comparison |
//! |---|---|---|---|
//! | `--header-read-timeout` | 10 s | from a new connection, or the first byte of a request on a kept-alive one, until its headers are complete | `client_header_timeout` 60 s |
//! | `--body-read-timeout` | 60 s | from the end of the headers until the whole body has arrived (answered 408) | `client_body_timeout` 60 s between reads |
//! | `--idle-timeout` | 120 s | a kept-alive connection with no request | `keepalive_timeout` 75 s |
//! | `--max-connections` | 10,000 | connections open at once; more wait in the kernel's accept queue | `worker_connections` 512 per worker |
//!
//! The idle timeout is longer than the keep-alive pools of common clients (90 s in Go's and
//! hyper's) so that a client rarely sends a request on a connection Ember is closing.
//!
//! How: the connection's I/O notes when the first byte of a request arrives, the service notes
//! when a request's headers are complete and when its answer is ready — a counter and an atomic
//! store each, no clock read — and one timer per connection, ticking at a quarter of the
//! shorter timeout, closes the connection once its phase has stayed unchanged for longer than
//! the phase's timeout (so a timeout fires up to a quarter of the shorter timeout late). Request
//! bodies carry their own timer ([`TimedBody`]), set only when the body has not already
//! arrived with the headers, so the common case costs none.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Bounds on the connections of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time for a request's headers to arrive, counted from the connection's start or from the
    /// first byte of a request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Time for a request's whole body to arrive once its headers have.
    pub body_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
        }
    }
}

/// The command-line flags that set [`ConnectionLimits`].
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Close a connection whose request headers have not all arrived this long after it opened
    /// (or after the request's first byte on a kept-alive connection).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub header_read_timeout: Duration,
    /// Answer 408 and close when a request body has not all arrived this long after its headers.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub body_read_timeout: Duration,
    /// Close a kept-alive connection that has carried no request for this long.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// Connections served at once; further clients wait in the kernel's accept queue.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub max_connections: u32,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match ember_api::duration::parse_flexible(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl From<&ConnectionArgs> for ConnectionLimits {
    fn from(a: &ConnectionArgs) -> Self {
        Self {
            header_read_timeout: a.header_read_timeout,
            body_read_timeout: a.body_read_timeout,
            idle_timeout: a.idle_timeout,
            max_connections: a.max_connections as usize,
        }
    }
}

/// Connections closed by each bound, process-wide (exported at `/metrics`).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections accepted.
    pub opened: AtomicU64,
    /// Connections closed because request headers did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Request bodies that did not arrive in time (answered 408).
    pub body_timeouts: AtomicU64,
    /// Kept-alive connections closed for carrying no request.
    pub idle_closed: AtomicU64,
}

/// The process's connection counters.
pub static STATS: ConnectionStats = ConnectionStats {
    opened: AtomicU64::new(0),
    header_timeouts: AtomicU64::new(0),
    body_timeouts: AtomicU64::new(0),
    idle_closed: AtomicU64::new(0),
};

/// Where a connection is in its request cycle.
const READING_HEADERS: u64 = 0;
const IN_REQUEST: u64 = 1;
const IDLE: u64 = 2;
const DONE: u64 = 3;

/// What the I/O, the service and the timer share for one connection: the current phase in the
/// low two bits and, above them, how many times the phase changed. No clock is read on the
/// request path; the timer notices how long a phase has lasted by seeing it unchanged.
#[derive(Debug)]
struct Phase(AtomicU64);

impl Phase {
    fn new() -> Self {
        Self(AtomicU64::new(READING_HEADERS))
    }

    fn enter(&self, phase: u64) {
        // One writer: the connection's task drives its I/O and its service (the watchdog reads).
        let changes = (self.0.load(Ordering::Relaxed) >> 2) + 1;
        self.0.store(changes << 2 | phase, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How long a connection has been in its phase, as the timer sees it.
struct Watchdog {
    limits: ConnectionLimits,
    /// How often the timer looks: a quarter of the shorter timeout, so a timeout fires at most
    /// a quarter late.
    tick: Duration,
    seen: u64,
    unchanged_for: Duration,
}

impl Watchdog {
    fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            tick: (limits.header_read_timeout.min(limits.idle_timeout) / 4)
                .max(Duration::from_millis(1)),
            seen: READING_HEADERS,
            unchanged_for: Duration::ZERO,
        }
    }

    /// Called every tick: the phase that has outlasted its timeout, if any.
    fn expired(&mut self, now: u64) -> Option<u64> {
        if now == self.seen {
            self.unchanged_for += self.tick;
        } else {
            // The phase began somewhere in the last tick: count from now (at most a tick late).
            self.seen = now;
            self.unchanged_for = Duration::ZERO;
        }
        let phase = now & 3;
        let limit = match phase {
            READING_HEADERS => self.limits.header_read_timeout,
            IDLE => self.limits.idle_timeout,
            _ => return None,
        };
        (self.unchanged_for >= limit).then_some(phase)
    }
}

/// A connection's stream, noting when the first byte of a request arrives on an idle one.
struct Watched {
    stream: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before && self.phase.get() & 3 == IDLE {
            self.phase.enter(READING_HEADERS);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that must arrive within a time; past it, reading fails with [`BodyTimeout`].
/// The time counts from when the body is first found not yet arrived — in the common case the
/// body came with the headers and no timer is ever set.
#[derive(Debug)]
pub struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    /// `inner`, due within `timeout`.
    pub fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            timer: None,
        }
    }
}

pub use ember_event::http_binding::BodyTimeout;

/// Whether a body-reading error is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<BodyTimeout>()
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                STATS.body_timeouts.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps the listener's service: marks the request phases and gives bodies their timeout.
#[derive(Clone)]
struct Phased<S> {
    inner: S,
    phase: Arc<Phase>,
    body_read_timeout: Duration,
}

impl<S, R> Service<http::Request<Incoming>> for Phased<S>
where
    S: Service<http::Request<TimedBody>, Response = R>,
{
    type Response = R;
    type Error = S::Error;
    type Future = Answered<S::Future>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        self.phase.enter(IN_REQUEST);
        let timeout = self.body_read_timeout;
        let answer = self
            .inner
            .call(req.map(|body| TimedBody::new(body, timeout)));
        Answered {
            answer,
            phase: self.phase.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer; the connection turns idle when it is ready.
    pub struct Answered<F> {
        #[pin]
        answer: F,
        phase: Arc<Phase>,
    }
}

impl<F: Future> Future for Answered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = ready!(this.answer.poll(cx));
        this.phase.enter(IDLE);
        Poll::Ready(out)
    }
}

/// What a listener serves: a hyper service over requests with [`TimedBody`] bodies (Ember's
/// router, `ember display`'s printer), shared by the connection's tasks.
pub trait Served<B>:
    Service<
        http::Request<TimedBody>,
        Response = http::Response<B>,
        Future: Send + 'static,
        Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> Served<B> for S where
    S: Service<
            http::Request<TimedBody>,
            Response = http::Response<B>,
            Future: Send + 'static,
            Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A response body a listener can send.
pub trait ServedBody:
    Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> ServedBody for B where
    B: Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// Graceful shutdown for a listener's connections: [`Drain::shutdown`] asks every connection to
/// finish its request in progress and close (idle ones close at once), and waits until they
/// have. Ember's own (not hyper-util's `GracefulShutdown`, which does not cover connections
/// that may be upgraded, e.g. to a WebSocket for a function).
pub struct Drain {
    signal: tokio::sync::watch::Sender<bool>,
    open: tokio::sync::mpsc::Sender<()>,
    closed: tokio::sync::mpsc::Receiver<()>,
}

impl Default for Drain {
    fn default() -> Self {
        let (open, closed) = tokio::sync::mpsc::channel(1);
        Drain {
            signal: tokio::sync::watch::channel(false).0,
            open,
            closed,
        }
    }
}

impl Drain {
    /// Asks every connection to close after its request in progress; resolves when all have.
    pub async fn shutdown(self) {
        let Drain {
            signal,
            open,
            mut closed,
        } = self;
        let _ = signal.send(true);
        drop(open);
        // Each connection holds a sender: `None` once the last one has ended.
        let _ = closed.recv().await;
    }
}

/// Serves one accepted connection with `service` under `limits` until the client closes it, a
/// timeout closes it, or `graceful` shuts down (in-progress requests finish; idle connections
/// close at once). A request may upgrade the connection (a WebSocket to a function): hyper hands
/// the socket over once the response is sent. Two tasks: the connection, and a watchdog that wakes once a tick and aborts
/// the connection when its phase has outlasted its timeout, so the request path never polls a
/// timer. `permit` (the connection cap's) is held until the connection ends.
pub fn spawn<S, B>(
    stream: TcpStream,
    limits: ConnectionLimits,
    service: S,
    graceful: &Drain,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    S: Served<B>,
    B: ServedBody,
{
    STATS.opened.fetch_add(1, Ordering::Relaxed);
    let shutdown = graceful.signal.subscribe();
    let open = graceful.open.clone();
    tokio::spawn(async move {
        // HTTP/2 with prior knowledge (h2c) starts with its preface, `PRI * HTTP/2.0`; every
        // HTTP/1 request starts with its method. One peek per connection tells them apart.
        match starts_with_h2_preface(&stream, limits.header_read_timeout).await {
            Some(true) => serve_h2(stream, limits, service, shutdown, permit, open).await,
            Some(false) => serve_http1(stream, limits, service, shutdown, permit, open),
            // Nothing (or not enough) arrived in time, or the peer left.
            None => {
                STATS.header_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Whether the connection's first bytes are HTTP/2's preface; `None` if they do not arrive
/// within `timeout`.
async fn starts_with_h2_preface(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    const PREFACE: &[u8] = b"PRI ";
    let mut buf = [0u8; 4];
    tokio::time::timeout(timeout, async {
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != PREFACE[..n] {
                return Some(false);
            }
            if n == PREFACE.len() {
                return Some(true);
            }
            // A prefix of the preface so far: wait for more.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .ok()
    .flatten()
}

/// Serves an HTTP/2 connection (h2c): every stream through `service`, until the client closes,
/// the connection has had no stream for the idle timeout, or Ember shuts down (streams in
/// progress finish). Streams are bounded by the protocol (250 at once), each body by its read
/// timeout, and a peer that stops answering pings is dropped.
async fn serve_h2<S, B>(
    stream: TcpStream,
    limits: ConnectionLimits,
    service: S,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
    open: tokio::sync::mpsc::Sender<()>,
) where
    S: Served<B>,
    B: ServedBody,
{
    let _ = stream.set_nodelay(true);
    let body_timeout = limits.body_read_timeout;
    // Streams being answered, and when the last one ended: for the idle timeout.
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let last_end = Arc::new(std::sync::Mutex::new(Instant::now()));
    let service = {
        let (active, last_end) = (active.clone(), last_end.clone());
        hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let service = service.clone();
            let (active, last_end) = (active.clone(), last_end.clone());
            active.fetch_add(1, Ordering::SeqCst);
            async move {
                let out = service
                    .call(req.map(|b| TimedBody::new(b, body_timeout)))
                    .await;
                *last_end.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                active.fetch_sub(1, Ordering::SeqCst);
                out
            }
        })
    };
    let mut http = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    http.max_concurrent_streams(250)
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = *shutdown.borrow_and_update();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    let tick = (limits.idle_timeout / 4).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = ticks.tick(), if !closing => {
                let idle_since = *last_end.lock().unwrap_or_else(|e| e.into_inner());
                if active.load(Ordering::SeqCst) == 0 && idle_since.elapsed() >= limits.idle_timeout {
                    STATS.idle_closed.fetch_add(1, Ordering::Relaxed);
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(permit);
    drop(open);
}

/// Serves an HTTP/1 connection (see [`spawn`]).
fn serve_http1<S, B>(
    stream: TcpStream,
    limits: ConnectionLimits,
    service: S,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
    open: tokio::sync::mpsc::Sender<()>,
) where
    S: Served<B>,
    B: ServedBody,
{
    let _ = stream.set_nodelay(true);
    let phase = Arc::new(Phase::new());
    let io = TokioIo::new(Watched {
        stream,
        phase: phase.clone(),
    });
    let service = Phased {
        inner: service,
        phase: phase.clone(),
        body_read_timeout: limits.body_read_timeout,
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true);
    let conn = http.serve_connection(io, service).with_upgrades();
    let ended = phase.clone();
    let connection = tokio::spawn(async move {
        tokio::pin!(conn);
        let shutting_down = *shutdown.borrow_and_update();
        if shutting_down {
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = shutdown.changed(), if !shutting_down => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
        ended.enter(DONE);
        drop(permit);
        drop(open);
    });
    tokio::spawn(async move {
        let mut watchdog = Watchdog::new(limits);
        let mut ticks = tokio::time::interval_at(Instant::now() + watchdog.tick, watchdog.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = phase.get();
            if now & 3 == DONE {
                return;
            }
            if let Some(expired) = watchdog.expired(now) {
                let counter = if expired == IDLE {
                    &STATS.idle_closed
                } else {
                    &STATS.header_timeouts
                };
                counter.fetch_add(1, Ordering::Relaxed);
                // Dropping the connection's future closes the socket and frees its permit.
                connection.abort();
                return;
            }
        }
    });
}
