//! Functions without an HTTP server (riff's invokers), chosen by the revision template's
//! `ember.dev/invoker` annotation. Each instance is a small HTTP adapter on a loopback port,
//! in Ember's process, so the activator, the autoscaler, timeouts and routes treat it exactly
//! like an HTTP function; what stands behind the adapter differs:
//!
//! - `command`: one process per event. The event's data on stdin; its attributes as
//!   environment variables (`CE_ID`, `CE_TYPE`, `CE_SOURCE`, `CE_SPECVERSION`, `CE_SUBJECT`,
//!   `CE_TIME`, `CE_DATACONTENTTYPE`, each extension as `CE_<NAME>`); what it writes on stdout
//!   is the reply — a structured JSON CloudEvent as written, any other output as the data of a
//!   reply event with the same content type; nothing is success with no reply. An exit code
//!   other than 0 fails the delivery (500) with its last lines of stderr as the error.
//! - `stream`: one long-lived process per instance reading one structured JSON CloudEvent per
//!   line on stdin and writing one line per event on stdout, in order: a reply event, or `{}`
//!   for "done, no reply". `containerConcurrency` lines may be in flight (1 when unset). A
//!   process that dies fails the events it had (502, retried by their triggers) and is
//!   replaced by the activator.
//!
//! A plain HTTP request (no CloudEvent in it, e.g. at the route's URL) becomes an event whose
//! data is the body (type `dev.ember.http.request`), and is answered with the reply's data.
//! A reply made from plain output has type `<event type>.reply`, source
//! `/apis/serving.knative.dev/v1/namespaces/<ns>/revisions/<revision>` and id
//! `<event id>.reply`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ember_event::{CloudEvent, CloudEventExt, http_binding, json_format};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{oneshot, watch};

use crate::process::{self, Instance, StartError};
use crate::revision::{Invoker, RevisionSpec};

/// The largest request body an invoker takes (the broker's default event size limit is lower).
const MAX_BODY: usize = 16 << 20;
/// Lines of stderr kept for a failed command's error.
const ERROR_LINES: usize = 10;

/// The type of the event a plain HTTP request becomes.
pub const HTTP_REQUEST_TYPE: &str = "dev.ember.http.request";

/// Starts an invoker instance of `spec`: its adapter listening, and for `stream` its process.
pub(crate) async fn start(spec: &RevisionSpec, id: u64) -> Result<Instance, StartError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| StartError::Spawn {
            program: program.clone(),
            error: format!("no loopback port for the invoker: {e}"),
        })?;
    let addr = listener.local_addr().map_err(|e| StartError::Spawn {
        program: program.clone(),
        error: e.to_string(),
    })?;
    let tag = Arc::new(format!("{}/{}", spec.namespace, spec.name));
    let output = Arc::new(Mutex::new(VecDeque::new()));
    let context = Arc::new(Context {
        spec: spec.clone(),
        tag: tag.clone(),
        instance: id,
        sequence: AtomicU64::new(0),
    });
    let (exit_tx, exited) = watch::channel(None);
    let (handler, pid, exit_tx) = match spec.invoker {
        Invoker::Stream => {
            let mut cmd = process::command(spec);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().map_err(|e| StartError::Spawn {
                program: program.clone(),
                error: e.to_string(),
            })?;
            let pid = child.id().unwrap_or_default();
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            if let Some(err) = child.stderr.take() {
                tokio::spawn(process::forward(
                    err,
                    "stderr",
                    tag.clone(),
                    id,
                    output.clone(),
                ));
            }
            let stream = Arc::new(Stream {
                stdin: tokio::sync::Mutex::new(Some(stdin)),
                waiting: Mutex::new(VecDeque::new()),
            });
            tokio::spawn(stream.clone().read_replies(stdout, output.clone()));
            tokio::spawn(async move {
                let status = child.wait().await.ok();
                let _ = exit_tx.send(status);
            });
            (Handler::Stream(stream), pid, None)
        }
        _ => (Handler::Command, 0, Some(exit_tx)),
    };
    let handler = Arc::new(handler);
    let server = tokio::spawn(serve(listener, context, handler, output.clone()));
    tracing::info!(revision = %tag, instance = id, %addr, invoker = ?spec.invoker, "invoker instance ready");
    Ok(Instance::adapter(
        id,
        addr,
        pid,
        exited,
        exit_tx,
        output,
        server.abort_handle(),
    ))
}

/// What every request of one instance shares.
struct Context {
    spec: RevisionSpec,
    tag: Arc<String>,
    instance: u64,
    /// Numbers the events made from plain requests.
    sequence: AtomicU64,
}

enum Handler {
    Command,
    Stream(Arc<Stream>),
}

async fn serve(
    listener: tokio::net::TcpListener,
    context: Arc<Context>,
    handler: Arc<Handler>,
    output: Arc<Mutex<VecDeque<String>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let context = context.clone();
        let handler = handler.clone();
        let output = output.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let context = context.clone();
                let handler = handler.clone();
                let output = output.clone();
                async move { Ok::<_, Infallible>(handle(&context, &handler, &output, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The event a request carries: a CloudEvent (binary or structured), else one made from the
/// body. The flag says whether the request was a CloudEvent.
fn event_of(
    context: &Context,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(CloudEvent, bool), String> {
    let is_event = headers.contains_key("ce-specversion")
        || headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/cloudevents"));
    if is_event {
        let mut events = http_binding::decode_request(headers, body).map_err(|e| e.to_string())?;
        if events.len() != 1 {
            return Err("a batch of events is not taken by an invoker; send one".into());
        }
        return Ok((events.remove(0), true));
    }
    let n = context.sequence.fetch_add(1, Ordering::Relaxed);
    let mut event = CloudEvent {
        id: format!("{}-{}-{n}", context.spec.name, context.instance),
        source: source_of(&context.spec),
        spec_version: "1.0".into(),
        r#type: HTTP_REQUEST_TYPE.into(),
        data: Some(ember_event::Data::BinaryData(body)),
        ..Default::default()
    };
    if let Some(ct) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        event
            .attributes
            .insert("datacontenttype".into(), ember_event::string_value(ct));
    }
    Ok((event, false))
}

fn source_of(spec: &RevisionSpec) -> String {
    format!(
        "/apis/serving.knative.dev/v1/namespaces/{}/revisions/{}",
        spec.namespace, spec.name
    )
}

async fn handle(
    context: &Context,
    handler: &Handler,
    output: &Mutex<VecDeque<String>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")),
    };
    let (event, was_event) = match event_of(context, &parts.headers, body) {
        Ok(e) => e,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let reply = match handler {
        Handler::Command => run_command(context, &event).await,
        Handler::Stream(stream) => stream.call(&event, output).await,
    };
    match reply {
        Ok(None) => Response::builder()
            .status(StatusCode::OK)
            .body(Full::new(Bytes::new()))
            .expect("valid response"),
        Ok(Some(reply)) if was_event => {
            let mut headers = HeaderMap::new();
            let body = http_binding::encode_binary(&reply, &mut headers);
            let mut resp = Response::new(Full::new(body));
            *resp.headers_mut() = headers;
            resp
        }
        Ok(Some(reply)) => {
            // A plain request gets the reply's data.
            let mut resp = Response::new(Full::new(reply.data_bytes().unwrap_or_default()));
            if let Some(ct) = reply
                .data_content_type()
                .and_then(|c| HeaderValue::from_str(c).ok())
            {
                resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
            }
            resp
        }
        Err((status, why)) => {
            tracing::debug!(revision = %context.tag, instance = context.instance, event = %event.id, error = %why, "invocation failed");
            text(status, why)
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The variables a `command` invocation gets for `event`'s attributes.
pub fn event_env(event: &CloudEvent) -> Vec<(String, String)> {
    let mut env = vec![
        ("CE_ID".to_owned(), event.id.clone()),
        ("CE_SOURCE".to_owned(), event.source.clone()),
        ("CE_SPECVERSION".to_owned(), event.spec_version.clone()),
        ("CE_TYPE".to_owned(), event.r#type.clone()),
    ];
    for name in event.attributes.keys() {
        if let Some(value) = event.attribute(name) {
            env.push((
                format!("CE_{}", name.to_ascii_uppercase()),
                value.into_owned(),
            ));
        }
    }
    env
}

/// The reply a function's output makes: a structured JSON CloudEvent as written, else an
/// event with the output as data, typed after `event`.
fn reply_of(
    spec: &RevisionSpec,
    event: &CloudEvent,
    out: &[u8],
) -> Result<Option<CloudEvent>, String> {
    let trimmed = out.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.starts_with(b"{")
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(trimmed)
        && v.get("specversion").is_some()
    {
        return json_format::decode_event(trimmed).map(Some).map_err(|e| {
            format!("the output looks like a CloudEvent but is not a valid one: {e}")
        });
    }
    let mut reply = CloudEvent {
        id: format!("{}.reply", event.id),
        source: source_of(spec),
        spec_version: "1.0".into(),
        r#type: format!("{}.reply", event.r#type),
        data: Some(ember_event::Data::BinaryData(Bytes::copy_from_slice(out))),
        ..Default::default()
    };
    if let Some(ct) = event.data_content_type() {
        reply
            .attributes
            .insert("datacontenttype".into(), ember_event::string_value(ct));
    }
    Ok(Some(reply))
}

/// One `command` invocation.
async fn run_command(
    context: &Context,
    event: &CloudEvent,
) -> Result<Option<CloudEvent>, (StatusCode, String)> {
    let spec = &context.spec;
    let mut cmd: Command = process::command(spec);
    cmd.envs(event_env(event))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "cannot start {:?}: {e}",
                spec.argv.first().cloned().unwrap_or_default()
            ),
        )
    })?;
    // When the invocation ends — or is abandoned, its request timed out or cancelled — its
    // whole process group goes, not only the direct child: nothing it started outlives it.
    let _group = GroupGuard(child.id().unwrap_or_default());
    let data = event.data_bytes().unwrap_or_default();
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Feed stdin while reading both outputs, so that a large event or a chatty function
    // cannot deadlock on a full pipe.
    let feed = async move {
        let _ = stdin.write_all(&data).await;
        drop(stdin);
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let (_, out_read, err_read) = tokio::join!(
        feed,
        stdout.read_to_end(&mut out),
        stderr.read_to_end(&mut err)
    );
    let _ = (out_read, err_read);
    let status = child.wait().await.map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("waiting for the command: {e}"),
        )
    })?;
    let err_text = String::from_utf8_lossy(&err);
    for line in err_text.lines() {
        tracing::info!(target: "ember::function", revision = %context.tag, instance = context.instance, stream = "stderr", "{line}");
    }
    if !status.success() {
        let last: Vec<&str> = err_text.lines().rev().take(ERROR_LINES).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "{} failed ({}){}",
                spec.argv.first().cloned().unwrap_or_default(),
                process::describe(status),
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {}", last.join(" | "))
                }
            ),
        ));
    }
    reply_of(spec, event, &out).map_err(|why| (StatusCode::BAD_GATEWAY, why))
}

/// Kills a process group when dropped before it is forgotten.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        process::signal_group(self.0, libc::SIGKILL);
    }
}

/// A `stream` instance's process: lines out in order, answers back in the same order.
struct Stream {
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    waiting: Mutex<VecDeque<oneshot::Sender<Result<String, String>>>>,
}

impl Stream {
    async fn call(
        &self,
        event: &CloudEvent,
        output: &Mutex<VecDeque<String>>,
    ) -> Result<Option<CloudEvent>, (StatusCode, String)> {
        let mut line = json_format::encode_event(event);
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        {
            let mut stdin = self.stdin.lock().await;
            let Some(pipe) = stdin.as_mut() else {
                return Err((StatusCode::BAD_GATEWAY, gone(output)));
            };
            // In the queue before the line is written: the answer may come at once.
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(tx);
            if pipe.write_all(&line).await.is_err() || pipe.flush().await.is_err() {
                *stdin = None;
            }
        }
        match rx.await {
            Ok(Ok(answer)) => {
                let trimmed = answer.trim();
                if trimmed == "{}" || trimmed.is_empty() {
                    return Ok(None);
                }
                json_format::decode_event(trimmed.as_bytes())
                    .map(Some)
                    .map_err(|e| {
                        (
                            StatusCode::BAD_GATEWAY,
                            format!("the function answered a line that is neither {{}} nor a CloudEvent: {e}"),
                        )
                    })
            }
            Ok(Err(why)) => Err((StatusCode::BAD_GATEWAY, why)),
            Err(_) => Err((StatusCode::BAD_GATEWAY, gone(output))),
        }
    }

    /// Hands each line of stdout to the oldest waiting event; when stdout ends (the process
    /// died), fails those still waiting.
    async fn read_replies(
        self: Arc<Self>,
        stdout: tokio::process::ChildStdout,
        output: Arc<Mutex<VecDeque<String>>>,
    ) {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let next = self
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            match next {
                Some(tx) => {
                    let _ = tx.send(Ok(line));
                }
                None => {
                    tracing::warn!(line = %line, "a stream function wrote a line no event waits for")
                }
            }
        }
        *self.stdin.lock().await = None;
        let why = gone(&output);
        for tx in self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = tx.send(Err(why.clone()));
        }
    }
}

fn gone(output: &Mutex<VecDeque<String>>) -> String {
    let last: Vec<String> = output
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    if last.is_empty() {
        "the stream function exited".to_owned()
    } else {
        format!(
            "the stream function exited; last output: {}",
            last.join(" | ")
        )
    }
}
