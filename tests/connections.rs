//! Slow and idle clients on Ember's listener: every timeout and the connection cap, each with a
//! client that misbehaves in exactly one way, over real TCP on loopback.

mod common;

use std::time::Duration;

use common::{TestEmber, binary_event, eventually, post};
use ember::connection::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str =
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n";

fn short_limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(800),
        max_connections: 4,
    }
}

async fn start() -> TestEmber {
    TestEmber::start_with(CONFIG, tempfile::tempdir().unwrap(), short_limits()).await
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

fn addr(ember: &TestEmber) -> std::net::SocketAddr {
    ember.ember.addr
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let ember = start().await;
    let mut idle = TcpStream::connect(addr(&ember)).await.unwrap();
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(10))
            .await
            .is_some(),
        "a silent connection was held"
    );
    ember.stop().await;
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off() {
    let ember = start().await;
    let mut slow = TcpStream::connect(addr(&ember)).await.unwrap();
    let request = b"POST /default/default HTTP/1.1\r\nHost: x\r\nce-id: 1\r\n";
    let mut closed = false;
    for byte in request.iter().cycle().take(400) {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if !closed {
        closed = read_until_closed(&mut slow, Duration::from_secs(10))
            .await
            .is_some();
    }
    assert!(closed, "a client trickling its headers kept the connection");
    ember.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let ember = start().await;
    let mut slow = TcpStream::connect(addr(&ember)).await.unwrap();
    slow.write_all(
        b"POST /default/default HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: 1\r\n\
          ce-source: /s\r\nce-type: t\r\ncontent-length: 1000\r\n\r\nonly part of it",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("the server answers and closes");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    ember.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_and_a_busy_one_is_not() {
    let ember = start().await;
    let mut conn = TcpStream::connect(addr(&ember)).await.unwrap();
    // Requests keep the connection alive past the idle timeout as long as they keep coming.
    for i in 0..6 {
        let req = format!(
            "POST /default/default HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: k{i}\r\n\
             ce-source: /s\r\nce-type: t\r\ncontent-length: 0\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 202"),
            "request {i} on a busy connection"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Then it goes quiet and is closed.
    assert!(
        read_until_closed(&mut conn, Duration::from_secs(10))
            .await
            .is_some(),
        "an idle keep-alive connection was held"
    );
    ember.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let ember = TestEmber::start_with(
        CONFIG,
        tempfile::tempdir().unwrap(),
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 2,
            ..ConnectionLimits::default()
        },
    )
    .await;
    let url = ember.url("/default/default");
    let a = TcpStream::connect(addr(&ember)).await.unwrap();
    let b = TcpStream::connect(addr(&ember)).await.unwrap();
    // Both slots are held by silent clients: a third request is not served...
    let third = tokio::spawn({
        let url = url.clone();
        async move { post(&url, &binary_event("c1", "t"), "").await.status }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a connection beyond the cap was served"
    );
    // ...until one of them goes.
    drop(a);
    let status = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert_eq!(status, http::StatusCode::ACCEPTED);
    drop(b);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ember_display_applies_the_same_timeouts() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut display = std::process::Command::new(common::ember_bin())
        .args([
            "display",
            "--listen",
            &listen,
            "--header-read-timeout",
            "300ms",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || std::net::TcpStream::connect(
            &listen
        )
        .is_ok())
        .await
    );
    let mut idle = TcpStream::connect(&listen).await.unwrap();
    let closed = read_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .is_some();
    let _ = display.kill();
    let _ = display.wait();
    assert!(closed, "ember display held a silent connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_serves_requests_and_closes_when_idle() {
    use http_body_util::BodyExt as _;
    let ember = start().await;
    let stream = TcpStream::connect(ember.ember.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 connection (prior knowledge)");
    let conn = tokio::spawn(conn);
    let mut req = http::Request::new(http_body_util::Full::new(bytes::Bytes::from("{}")));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = format!("http://{}/default/default", ember.ember.addr)
        .parse()
        .unwrap();
    for (k, v) in binary_event("h2-idle", "a") {
        req.headers_mut().insert(
            http::HeaderName::from_static(k),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::ACCEPTED);
    let _ = resp.into_body().collect().await;
    // No stream for the idle timeout (800 ms): Ember closes the connection.
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("closed once idle")
        .unwrap()
        .ok();
    ember.stop().await;
}
