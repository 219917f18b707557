//! A stand-in WOPI host. It records every request that reaches it and answers like a host:
//! CheckFileInfo JSON; GetFile with a deterministic body of `?size=N` bytes (Range honoured);
//! PutFile by hashing the streamed body; 409 `{"COOLStatusCode":1010}` when the client's
//! `X-COOL-WOPI-Timestamp` is `conflict`; `?delay_ms=N` answers late.

use aws_lc_rs::digest::{Context, SHA256};
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

use super::http::{respond, serve, Body, ServerTask};

const CHUNK: u64 = 64 * 1024;
/// Requests kept for inspection; older ones are only counted (a benchmark must not grow memory).
const KEPT: usize = 1024;

/// What reached the host.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Request target exactly as received.
    pub target: String,
    /// Headers in order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Request body length.
    pub body_len: u64,
    /// Hex SHA-256 of the request body.
    pub body_sha256: String,
}

impl Recorded {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Log {
    kept: Mutex<VecDeque<Recorded>>,
    total: AtomicUsize,
    /// Request heads, counted on arrival (before the body, which may never complete).
    heads: AtomicUsize,
    /// Requests whose body broke off or whose connection went away before the body was whole.
    cut: AtomicUsize,
}

/// Counts a request as cut unless its body was read to the end; the server drops the handler
/// when the connection closes, so a drop before [`BodyGuard::complete`] is a cut body.
struct BodyGuard(Option<Arc<Log>>);

impl BodyGuard {
    fn complete(&mut self) {
        self.0 = None;
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        if let Some(log) = self.0.take() {
            log.cut.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A running stand-in WOPI host.
pub struct FakeHost {
    log: Arc<Log>,
    server: ServerTask,
}

impl FakeHost {
    /// Starts on 127.0.0.1.
    pub async fn start() -> FakeHost {
        FakeHost::start_at("127.0.0.1:0".parse().expect("an address")).await
    }

    /// Starts on `addr` (a host brought back where it was).
    pub async fn start_at(addr: std::net::SocketAddr) -> FakeHost {
        let listener = TcpListener::bind(addr).await.expect("bind the stand-in WOPI host");
        let log = Arc::new(Log::default());
        let shared = log.clone();
        let server = serve(listener, move |req| handle(req, shared.clone()));
        FakeHost { log, server }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The most recent requests (up to 1024), oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.kept.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// How many requests reached the host with their whole body.
    pub fn count(&self) -> usize {
        self.log.total.load(Ordering::SeqCst)
    }

    /// How many request heads reached the host, counted as they arrive: also a request whose
    /// body was cut or never came.
    pub fn count_heads(&self) -> usize {
        self.log.heads.load(Ordering::SeqCst)
    }

    /// How many requests arrived but never completed their body: cut off, or the connection closed.
    pub fn count_cut(&self) -> usize {
        self.log.cut.load(Ordering::SeqCst)
    }

    /// The most recent request.
    pub fn last(&self) -> Option<Recorded> {
        self.log.kept.lock().unwrap_or_else(|e| e.into_inner()).back().cloned()
    }
}

/// Byte `i` of every GetFile body.
fn content_byte(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

fn content(start: u64, end: u64) -> Bytes {
    (start..end).map(content_byte).collect::<Vec<u8>>().into()
}

/// Hex SHA-256 of the first `len` bytes of the GetFile content.
pub fn content_digest(len: u64) -> String {
    let mut ctx = Context::new(&SHA256);
    let mut at = 0;
    while at < len {
        let end = (at + CHUNK).min(len);
        ctx.update(&content(at, end));
        at = end;
    }
    hex::encode(ctx.finish())
}

fn query_value(target: &str, name: &str) -> Option<u64> {
    let query = target.split_once('?')?.1;
    query.split('&').filter_map(|p| p.split_once('=')).find(|(n, _)| *n == name)?.1.parse().ok()
}

fn streamed(start: u64, end: u64) -> Body {
    let chunks =
        (start..end).step_by(CHUNK as usize).map(move |at| Ok(Frame::data(content(at, (at + CHUNK).min(end)))));
    BodyExt::boxed(StreamBody::new(stream::iter(chunks)))
}

async fn handle(req: Request<Incoming>, log: Arc<Log>) -> Response<Body> {
    log.heads.fetch_add(1, Ordering::SeqCst);
    let mut guard = BodyGuard(Some(log.clone()));
    let (parts, mut body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_string());
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let mut digest = Context::new(&SHA256);
    let mut body_len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return respond(400, "text/plain", "broken request body\n") };
        if let Some(data) = frame.data_ref() {
            digest.update(data);
            body_len += data.len() as u64;
        }
    }
    let record = Recorded {
        method: parts.method.to_string(),
        target: target.clone(),
        headers,
        body_len,
        body_sha256: hex::encode(digest.finish()),
    };
    {
        let mut kept = log.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(record.clone());
        log.total.fetch_add(1, Ordering::SeqCst);
    }
    guard.complete();

    if let Some(ms) = query_value(&target, "delay_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let path = target.split('?').next().unwrap_or_default();
    let override_ = record.header("x-wopi-override").unwrap_or_default().to_string();
    match (parts.method.as_str(), path.ends_with("/contents"), override_.as_str()) {
        ("GET", true, _) => get_file(&target, record.header("range")),
        ("POST", true, "PUT") => {
            if record.header("x-cool-wopi-timestamp") == Some("conflict") {
                return respond(409, "application/json", r#"{"COOLStatusCode":1010}"#);
            }
            let json = format!(
                r#"{{"LastModifiedTime":"2026-11-22T00:00:00Z","Size":{body_len},"Sha256":"{}"}}"#,
                record.body_sha256
            );
            respond(200, "application/json", json)
        }
        ("GET", false, _) => {
            let json = r#"{"BaseFileName":"demo.odt","OwnerId":"demo","Size":1024,"UserId":"demo","Version":"1","UserCanWrite":true}"#;
            respond(200, "application/json", json)
        }
        _ => respond(200, "application/json", r#"{"ok":true}"#),
    }
}

fn get_file(target: &str, range: Option<&str>) -> Response<Body> {
    let size = query_value(target, "size").unwrap_or(1024);
    let builder =
        Response::builder().header("content-type", "application/octet-stream").header("accept-ranges", "bytes");
    let range = range.and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.split_once('-')).and_then(|(a, b)| {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() { size - 1 } else { b.parse().ok()? };
        (start <= end && end < size).then_some((start, end + 1))
    });
    let response = match range {
        Some((start, end)) => builder
            .status(206)
            .header("content-range", format!("bytes {start}-{}/{size}", end - 1))
            .header("content-length", end - start)
            .body(streamed(start, end)),
        None => builder.status(200).header("content-length", size).body(streamed(0, size)),
    };
    response.expect("valid response parts")
}
