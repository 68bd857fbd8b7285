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
//! when a request's headers are complete and when its answer is ready, and one timer per
//! connection — re-armed only when it fires — closes it when its current phase has lasted too
//! long. Request bodies carry their own deadline ([`TimedBody`]), checked only when the body is
//! not already buffered, so the common case costs no timer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
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
const READING_HEADERS: u8 = 0;
const IN_REQUEST: u8 = 1;
const IDLE: u8 = 2;

/// What the I/O, the service and the timer share for one connection.
#[derive(Debug)]
struct Phase {
    start: Instant,
    phase: AtomicU8,
    /// When the phase began, in milliseconds after `start`.
    since_ms: AtomicU64,
}

impl Phase {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            phase: AtomicU8::new(READING_HEADERS),
            since_ms: AtomicU64::new(0),
        }
    }

    fn enter(&self, phase: u8) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.since_ms.store(ms, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
    }

    /// When the current phase must end, or `None` while a request is being handled.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, u8)> {
        let phase = self.phase.load(Ordering::Acquire);
        let since = self.start + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        match phase {
            READING_HEADERS => Some((since + limits.header_read_timeout, phase)),
            IDLE => Some((since + limits.idle_timeout, phase)),
            _ => None,
        }
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
        if buf.filled().len() > before && self.phase.phase.load(Ordering::Relaxed) == IDLE {
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

/// A request body that must arrive by a deadline; past it, reading fails with [`BodyTimeout`].
#[derive(Debug)]
pub struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// Armed only once the body is not already buffered.
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    /// `inner`, due by `deadline`.
    pub fn new(inner: Incoming, deadline: Instant) -> Self {
        Self {
            inner,
            deadline,
            timer: None,
        }
    }
}

pub use ember_broker::ingress::BodyTimeout;

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
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
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

/// Wraps the listener's service: marks the request phases and gives bodies their deadline.
#[derive(Clone)]
struct Phased<S> {
    inner: S,
    phase: Arc<Phase>,
    body_read_timeout: Duration,
}

impl<S, R> Service<http::Request<Incoming>> for Phased<S>
where
    S: Service<http::Request<TimedBody>, Response = R> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = R;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<R, S::Error>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        self.phase.enter(IN_REQUEST);
        let deadline = Instant::now() + self.body_read_timeout;
        let req = req.map(|body| TimedBody::new(body, deadline));
        let answer = self.inner.call(req);
        let phase = self.phase.clone();
        Box::pin(async move {
            let response = answer.await;
            phase.enter(IDLE);
            response
        })
    }
}

/// Serves one accepted connection with `service` under `limits` until the client closes it, a
/// timeout closes it, or `shutdown` resolves (in-progress requests finish; idle connections
/// close at once).
pub fn serve<S, B>(
    stream: TcpStream,
    limits: ConnectionLimits,
    service: S,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) -> impl Future<Output = ()> + Send + 'static
where
    S: Service<http::Request<TimedBody>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    STATS.opened.fetch_add(1, Ordering::Relaxed);
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
    let conn = graceful.watch(http.serve_connection(io, service));
    async move {
        tokio::pin!(conn);
        let first_check = limits.header_read_timeout.min(limits.idle_timeout);
        let timer = tokio::time::sleep(first_check);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                _ = &mut conn => return,
                () = &mut timer => {
                    let now = Instant::now();
                    match phase.deadline(&limits) {
                        Some((deadline, state)) if deadline <= now => {
                            let counter = if state == IDLE { &STATS.idle_closed } else { &STATS.header_timeouts };
                            counter.fetch_add(1, Ordering::Relaxed);
                            // Dropping the connection closes the socket.
                            return;
                        }
                        Some((deadline, _)) => timer.as_mut().reset(deadline),
                        None => timer.as_mut().reset(now + first_check),
                    }
                }
            }
        }
    }
}
