//! `[health]`: active checks of the upstream's members, every `health.interval`, following
//! reloads (each round checks the members in force then).
//!
//! A member is up when `GET health.path` answers with any status below 500 within
//! `health.timeout` (a redirect is not followed); down when it does not (no connection, a
//! timeout, 5xx). Each change is logged once, and shows in `wopi_guard_upstream_up`.

use async_trait::async_trait;
use futures_util::future::join_all;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

use super::pool::Member;
use super::runtime::Shared;
use crate::config::HealthConfig;

/// The periodic health checks.
pub struct HealthTask(pub Arc<Shared>);

/// Checks `member` once: `Ok` when up, else why not.
async fn check(client: &reqwest::Client, health: &HealthConfig, member: &Member) -> Result<(), String> {
    let url = format!("{}{}", member.url, health.path);
    let answer = tokio::time::timeout(health.timeout, client.get(&url).send()).await;
    match answer {
        Err(_) => Err(format!("no answer within health.timeout ({:?})", health.timeout)),
        Ok(Err(e)) => Err(format!("request failed: {}", crate::keys::error_chain(&e))),
        Ok(Ok(r)) if r.status().as_u16() >= 500 => Err(format!("answered {}", r.status().as_u16())),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Records what `by` (a health check, or a request) found; logs a change, naming the route.
pub(super) fn record(member: &Member, outcome: Result<(), String>, by: &str, route: Option<&str>) {
    let name = member.stats.name();
    match outcome {
        Ok(()) => {
            if member.stats.set_up(true) {
                tracing::info!(upstream = name, route, by, "upstream member is up again");
            }
        }
        Err(reason) => {
            if member.stats.set_up(false) {
                tracing::warn!(
                    upstream = name,
                    route,
                    by,
                    reason,
                    "upstream member is down: requests go to the others"
                );
            }
        }
    }
}

#[async_trait]
impl BackgroundService for HealthTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // When each route's members were last checked (by label; "" without `[[routes]]`).
        let mut last: Vec<(String, tokio::time::Instant)> = Vec::new();
        loop {
            // Wake at the shortest route interval; a route is checked once its own is due. The
            // first round comes one interval after the start: until then every member is up, and
            // a failed connection marks one down at once anyway.
            let tick = self
                .0
                .active()
                .routes
                .iter()
                .filter_map(|r| r.health.as_ref().map(|(h, _)| h.interval))
                .min()
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => return,
            }
            // The routes and members in force now (a reload may have changed them, or [health]).
            let active = self.0.active();
            last.retain(|(k, _)| active.routes.iter().any(|r| r.label.as_deref().unwrap_or("") == k));
            let now = tokio::time::Instant::now();
            let mut checks = Vec::new();
            for route in &active.routes {
                let Some((health, client)) = &route.health else { continue };
                let key = route.label.as_deref().unwrap_or("");
                let due = match last.iter_mut().find(|(k, _)| k == key) {
                    Some((_, at)) if now.duration_since(*at) + tick / 2 < health.interval => false,
                    Some((_, at)) => {
                        *at = now;
                        true
                    }
                    None => {
                        last.push((key.to_string(), now));
                        true
                    }
                };
                if due {
                    let label = route.label.as_deref();
                    checks.extend(route.upstream.members().iter().map(move |m| async move {
                        record(m, check(client, health, m).await, "health check", label);
                    }));
                }
            }
            join_all(checks).await;
        }
    }
}
