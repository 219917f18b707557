//! `[health]`: active checks of the upstream's members, every `health.interval`, following
//! reloads (each round checks the members in force then).
//!
//! A member is up when `GET health.path` answers with any status below 500 within
//! `health.timeout`; down when it does not (no connection, a timeout, 5xx). Each change is logged
//! once, and shows in `wopi_guard_upstream_up`.

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

/// Records what `by` (a health check, or a request) found; logs a change.
pub(super) fn record(member: &Member, outcome: Result<(), String>, by: &str) {
    let name = member.stats.name();
    match outcome {
        Ok(()) => {
            if member.stats.set_up(true) {
                tracing::info!(upstream = name, by, "upstream member is up again");
            }
        }
        Err(reason) => {
            if member.stats.set_up(false) {
                tracing::warn!(upstream = name, by, reason, "upstream member is down: requests go to the others");
            }
        }
    }
}

#[async_trait]
impl BackgroundService for HealthTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            // The first round comes one interval after the start: until then every member is up,
            // and a failed connection marks one down at once anyway.
            let interval = self.0.active().health.as_ref().map_or(Duration::from_secs(1), |(h, _)| h.interval);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            // The members in force now (a reload may have changed them, or [health]).
            let active = self.0.active();
            if let Some((health, client)) = &active.health {
                let checks = active.upstream.members().iter().map(|m| async move {
                    record(m, check(client, health, m).await, "health check");
                });
                join_all(checks).await;
            }
        }
    }
}
