//! The admin listener: `/ping` (the process lives), `/ready` (proof keys are loaded and the
//! process is not draining) and
//! `/metrics` (Prometheus text).

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use std::sync::Arc;

use super::runtime::Shared;

/// Answers the admin endpoints.
pub struct AdminApp {
    shared: Arc<Shared>,
}

impl AdminApp {
    /// Readiness follows every route's keys and the drain; `/metrics` renders the metrics with
    /// every route's keys.
    pub fn new(shared: Arc<Shared>) -> Self {
        AdminApp { shared }
    }

    /// `/ready`: the status and the body.
    async fn ready(&self) -> (u16, String) {
        if self.shared.drain().is_draining() {
            return (503, "not ready: draining (the process is stopping)\n".into());
        }
        let active = self.shared.active();
        let mut not_ready = Vec::new();
        let mut sources = 0;
        for (label, keys) in active.key_snapshots() {
            let route = label.map_or_else(String::new, |l| format!("route {l}: "));
            if keys.is_empty() && !keys.held.is_empty() {
                not_ready.push(format!("{route}every proof key discovery served is held by [keys] (see the error log and wopi_guard_proof_key_held)"));
            } else if keys.is_empty() {
                not_ready.push(format!("{route}no proof keys loaded (discovery not reached yet)"));
            } else {
                let mut urls: Vec<&str> = keys.sources.iter().map(|s| &*s.url).collect();
                urls.dedup();
                sources += urls.len();
            }
        }
        // `on_error = "deny"`: while Redis does not answer every request gets 503, so not ready.
        let mut asked = Vec::new();
        for route in &active.routes {
            let Some(shared) = route.gate.shared() else { continue };
            if asked.iter().any(|a| Arc::ptr_eq(a, shared)) {
                continue;
            }
            asked.push(shared.clone());
            if let Err(why) = shared.ready().await {
                let route = route.label.as_deref().map_or_else(String::new, |l| format!("route {l}: "));
                not_ready.push(format!(
                    "{route}[shared] on_error = \"deny\" applies: {why}; every request that needs Redis gets 503"
                ));
            }
        }
        match &not_ready[..] {
            [] => (200, format!("ready: {sources} key source(s) loaded\n")),
            [one] => (503, format!("not ready: {one}\n")),
            many => {
                (503, format!("not ready:\n{}\n", many.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n")))
            }
        }
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
                let (status, body) = self.ready().await;
                text(status, &body)
            }
            "/metrics" => {
                let active = self.shared.active();
                let snapshots = active.key_snapshots();
                let keys: Vec<(Option<&str>, &crate::keys::KeySnapshot)> =
                    snapshots.iter().map(|(label, snap)| (label.as_deref(), &***snap)).collect();
                let body = self.shared.metrics().render_routes(&keys, std::time::SystemTime::now());
                typed(200, "text/plain; version=0.0.4; charset=utf-8", &body)
            }
            _ => text(404, "not found: try /ping, /ready or /metrics\n"),
        }
    }
}
