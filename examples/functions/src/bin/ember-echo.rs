//! An HTTP function that reports what it was given: its environment (`PORT`, `K_SERVICE`,
//! `K_CONFIGURATION`, `K_REVISION` and any other variable named in `ECHO_ENV`, comma
//! separated), its arguments, working directory and whether stdin was at EOF, and each
//! request's method, path, headers and body size — as one JSON object per response.
//!
//! With `ECHO_LOG=FILE`, each request also appends one line to FILE: its `ce-id` header (or `-`)
//! and its path — what a test counts deliveries by.
//!
//! A request with an `Upgrade` header is answered `101 Switching Protocols` and every byte sent
//! afterwards is echoed back (a stand-in for a WebSocket, without its framing).
//!
//! Query parameters: `sleep=MS` waits before answering; `stream=MS` sends the head and a first
//! chunk at once, then the rest after MS; `status=N` answers N; `exit=CODE` exits with CODE
//! once the answer is sent (a function that crashes). Every response also says how
//! many requests this process had in flight then and at most (`in_flight`, `max_in_flight`).
//! Standard library only, so it starts in about a millisecond.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

struct Started {
    stdin_eof: bool,
    args: Vec<String>,
    cwd: String,
    env: Vec<(String, String)>,
}

fn main() {
    let mut buf = [0u8; 1];
    let stdin_eof = matches!(std::io::stdin().read(&mut buf), Ok(0));
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let mut names: Vec<String> = ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(extra) = std::env::var("ECHO_ENV") {
        names.extend(extra.split(',').map(str::to_owned));
    }
    let started = Box::leak(Box::new(Started {
        stdin_eof,
        args: std::env::args().skip(1).collect(),
        cwd: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        env: names
            .into_iter()
            .filter_map(|n| std::env::var(&n).ok().map(|v| (n, v)))
            .collect(),
    }));
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind PORT");
    eprintln!("echo listening on {port}");
    for conn in listener.incoming().flatten() {
        let started: &'static Started = started;
        std::thread::spawn(move || serve(conn, started));
    }
}

fn serve(conn: TcpStream, started: &Started) {
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or("/").to_owned();
        let mut headers = Vec::new();
        let mut length = 0usize;
        let mut chunked = false;
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                match k.as_str() {
                    "content-length" => length = v.parse().unwrap_or(0),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
                headers.push((k, v));
            }
        }
        if let Some((_, protocol)) = headers.iter().find(|(k, _)| k == "upgrade") {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: {protocol}\r\nconnection: upgrade\r\n\r\n"
            );
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            // Echo until the client closes: what was buffered first, then the socket.
            let pending = reader.buffer().to_vec();
            if !pending.is_empty() && out.write_all(&pending).is_err() {
                return;
            }
            let mut conn = reader.into_inner();
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            return;
        }
        let body_len = if chunked {
            read_chunked(&mut reader)
        } else {
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            length
        };
        if let Ok(log) = std::env::var("ECHO_LOG") {
            let id = headers
                .iter()
                .find(|(k, _)| k == "ce-id")
                .map_or("-", |(_, v)| v.as_str());
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                // One write per line: instances append to the same file at once.
                let _ = f.write_all(format!("{id} {target}\n").as_bytes());
            }
        }
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(ms) = param("sleep") {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let report = report(started, &method, path, &headers, body_len, now);
        let status = param("status").unwrap_or(200);
        let ok = match param("stream") {
            Some(ms) => {
                let head = format!(
                    "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                let first = format!("{:x}\r\n{report}\r\n", report.len());
                let sent = out.write_all(head.as_bytes()).is_ok()
                    && out.write_all(first.as_bytes()).is_ok()
                    && out.flush().is_ok();
                std::thread::sleep(Duration::from_millis(ms));
                sent && out.write_all(b"4\r\ndone\r\n0\r\n\r\n").is_ok()
            }
            None => {
                let resp = format!(
                    "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{report}",
                    report.len()
                );
                out.write_all(resp.as_bytes()).is_ok()
            }
        };
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        if let Some(code) = param("exit") {
            let _ = out.flush();
            std::process::exit(code as i32);
        }
        if !ok || close {
            return;
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> usize {
    let mut total = 0;
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return total;
        }
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = vec![0u8; n + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return total;
        }
        total += n;
        if n == 0 {
            return total;
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn object(pairs: &[(String, String)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn report(
    started: &Started,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body_len: usize,
    in_flight: usize,
) -> String {
    let args: Vec<String> = started.args.iter().map(|a| json_string(a)).collect();
    format!(
        "{{\"pid\":{},\"env\":{},\"args\":[{}],\"cwd\":{},\"stdin_eof\":{},\"method\":{},\"path\":{},\"headers\":{},\"body_len\":{},\"in_flight\":{},\"max_in_flight\":{}}}\n",
        std::process::id(),
        object(&started.env),
        args.join(","),
        json_string(&started.cwd),
        started.stdin_eof,
        json_string(method),
        json_string(path),
        object(headers),
        body_len,
        in_flight,
        MAX_IN_FLIGHT.load(Ordering::SeqCst),
    )
}
