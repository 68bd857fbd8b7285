//! `ember display`: a tiny CloudEvents subscriber that prints every event it receives, for the
//! quickstart and for debugging triggers (like Knative's `event_display`).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use ember_broker::event::{self, CloudEvent, CloudEventExt};
use ember_broker::http_binding;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Where to listen.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  ember display --listen 127.0.0.1:9090\n  # then point a Trigger's subscriber.uri at http://127.0.0.1:9090/"
)]
pub struct DisplayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    pub listen: SocketAddr,
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

async fn answer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let status = match Limited::new(body, 16 << 20).collect().await {
        Ok(body) => match http_binding::decode_request(&parts.headers, body.to_bytes()) {
            Ok(events) => {
                let mut stdout = std::io::stdout().lock();
                for ev in &events {
                    let _ = writeln!(stdout, "{}", render(ev));
                }
                let _ = stdout.flush();
                StatusCode::ACCEPTED
            }
            Err(e) => {
                eprintln!("not a valid CloudEvent: {e}");
                StatusCode::BAD_REQUEST
            }
        },
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Serves until interrupted.
pub async fn run(args: DisplayArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "ember display: listening on http://{}/",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        tokio::spawn(async move {
            let service = service_fn(|req| async { Ok::<_, Infallible>(answer(req).await) });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
