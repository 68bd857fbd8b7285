//! An HTTP/2-only function (h2c, prior knowledge), as a gRPC server would be: it answers every
//! request with one JSON line giving the protocol version it was spoken to in, the path and
//! `K_REVISION`. Listens on `PORT`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .expect("bind PORT");
    let revision = std::env::var("K_REVISION").unwrap_or_default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let revision = revision.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = format!(
                    "{{\"version\":\"{:?}\",\"path\":\"{}\",\"revision\":\"{revision}\"}}\n",
                    req.version(),
                    req.uri().path()
                );
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
