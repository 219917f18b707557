//! The admin listener: `/ping` (the process lives) and `/ready` (proof keys are loaded).

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::keys::KeyStore;

/// Answers the admin endpoints.
pub struct AdminApp {
    keys: KeyStore,
}

impl AdminApp {
    /// Readiness follows `keys`.
    pub fn new(keys: KeyStore) -> Self {
        AdminApp { keys }
    }
}

fn text(status: u16, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
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
                if keys.is_empty() {
                    text(503, "not ready: no proof keys loaded (discovery not reached yet)\n")
                } else {
                    text(200, &format!("ready: {} key source(s) loaded\n", keys.sources.len()))
                }
            }
            _ => text(404, "not found: try /ping or /ready\n"),
        }
    }
}
