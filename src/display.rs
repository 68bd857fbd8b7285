//! `ember display`: a tiny CloudEvents subscriber that prints every event it receives, for the
//! quickstart and for debugging triggers (like Knative's `event_display`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use ember_event::{self as event, CloudEvent, CloudEventExt};
use ember_event::{http_binding, json_format};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::connection::{self, ConnectionArgs, ConnectionLimits, TimedBody, is_body_timeout};
use crate::output;

/// Where to listen.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  ember display --listen 127.0.0.1:9090\n  # then point a Trigger's subscriber.uri at http://127.0.0.1:9090/"
)]
pub struct DisplayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Formats an event the way `ember display` prints it.
pub fn render(ev: &CloudEvent) -> String {
    let mut out = String::from("☁  CloudEvent\n");
    out.push_str(&format!(
        "  specversion: {}\n  type: {}\n  source: {}\n  id: {}\n",
        ev.spec_version, ev.r#type, ev.source, ev.id
    ));
    let mut names: Vec<_> = ev.attributes.keys().collect();
    names.sort();
    for name in names {
        if let Some(attr) = &ev.attributes[name].attr {
            out.push_str(&format!("  {name}: {}\n", event::canonical_string(attr)));
        }
    }
    if let Some(data) = ev.data_bytes() {
        out.push_str("  data: ");
        out.push_str(&String::from_utf8_lossy(&data));
        out.push('\n');
    }
    out
}

/// How `ember display` prints events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The human-readable block of [`render`].
    Block,
    /// One structured JSON event per line (`--log-format json`).
    JsonLines,
}

async fn answer(req: Request<TimedBody>, style: Style) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let status = match Limited::new(body, 16 << 20).collect().await {
        Ok(body) => match http_binding::decode_request(&parts.headers, body.to_bytes()) {
            Ok(events) => {
                for ev in &events {
                    match style {
                        Style::Block => output::line(format_args!("{}", render(ev))),
                        Style::JsonLines => output::line(format_args!(
                            "{}",
                            String::from_utf8_lossy(&json_format::encode_event(ev))
                        )),
                    }
                }
                StatusCode::ACCEPTED
            }
            Err(e) => {
                tracing::warn!(error = %e, "not a valid CloudEvent");
                StatusCode::BAD_REQUEST
            }
        },
        Err(e) if is_body_timeout(e.as_ref()) => StatusCode::REQUEST_TIMEOUT,
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Serves until interrupted.
pub async fn run(args: DisplayArgs, style: Style) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        "ember display: listening on http://{}/",
        listener.local_addr()?
    );
    let limits = ConnectionLimits::from(&args.connections);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = connection::Drain::default();
    loop {
        let permit = permits.clone().acquire_owned().await?;
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let service =
            service_fn(move |req| async move { Ok::<_, Infallible>(answer(req, style).await) });
        connection::spawn(stream, limits, service, &graceful, permit);
    }
}
