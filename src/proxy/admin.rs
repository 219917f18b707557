//! The admin listener: `/ping` (the process lives), `/ready` (proof keys are loaded and the
//! process is not draining) and
//! `/metrics` (Prometheus text).

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use std::sync::Arc;

use super::drain::Drain;
use crate::keys::KeyStore;
use crate::metrics::Metrics;

/// Answers the admin endpoints.
pub struct AdminApp {
    keys: KeyStore,
    metrics: Arc<Metrics>,
    drain: Arc<Drain>,
}

impl AdminApp {
    /// Readiness follows `keys` and `drain`; `/metrics` renders `metrics`.
    pub fn new(keys: KeyStore, metrics: Arc<Metrics>, drain: Arc<Drain>) -> Self {
        AdminApp { keys, metrics, drain }
    }
}

fn text(status: u16, body: &str) -> Response<Vec<u8>> {
    typed(status, "text/plain; charset=utf-8", body)
}

fn typed(status: u16, content_type: &str, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body.as_bytes().to_vec())
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/ping" => text(200, "pong\n"),
            "/ready" => {
                let keys = self.keys.snapshot();
                if self.drain.is_draining() {
                    text(503, "not ready: draining (the process is stopping)\n")
                } else if keys.is_empty() && !keys.held.is_empty() {
                    text(503, "not ready: every proof key discovery served is held by [keys] (see the error log and wopi_guard_proof_key_held)\n")
                } else if keys.is_empty() {
                    text(503, "not ready: no proof keys loaded (discovery not reached yet)\n")
                } else {
                    let mut sources: Vec<&str> = keys.sources.iter().map(|s| &*s.url).collect();
                    sources.dedup();
                    text(200, &format!("ready: {} key source(s) loaded\n", sources.len()))
                }
            }
            "/metrics" => {
                let body = self.metrics.render(&self.keys.snapshot(), std::time::SystemTime::now());
                typed(200, "text/plain; version=0.0.4; charset=utf-8", &body)
            }
            _ => text(404, "not found: try /ping, /ready or /metrics\n"),
        }
    }
}
