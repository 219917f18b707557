//! The background services: the periodic discovery refresh (following reloads) and the reload
//! listener (SIGHUP, or a [`ReloadTrigger`] in tests).

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

use super::error::StartError;
use super::runtime::Shared;
use crate::config::{Config, ConfigErrors};
use crate::keys::{jitter, RefreshOutcome, Refresher, Schedule};
use futures_util::future::join_all;
use tokio::time::Instant;

/// Fetches every discovery source of every route at start, then every
/// `discovery.refresh_interval` (each route's own); a source that fails (at start or later) is
/// retried with a backoff ([`Schedule`]). A reload that changed any route's refresher (a new
/// route, new sources, a rebuilt client) starts over: every source at once.
pub struct DiscoveryTask(pub Arc<Shared>);

#[async_trait]
impl BackgroundService for DiscoveryTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let active = self.0.active();
            let routes: Vec<(&Refresher, Option<&str>)> =
                active.routes.iter().map(|r| (r.gate.refresher(), r.label.as_deref())).collect();
            let mut schedules: Vec<Schedule> = routes
                .iter()
                .map(|(refresher, _)| {
                    Schedule::new(refresher.source_count(), refresher.refresh_interval(), Instant::now())
                })
                .collect();
            loop {
                let now = Instant::now();
                let due: Vec<(usize, usize)> = schedules
                    .iter()
                    .enumerate()
                    .flat_map(|(route, schedule)| schedule.due(now).into_iter().map(move |i| (route, i)))
                    .collect();
                let outcomes = join_all(due.iter().map(|&(route, i)| routes[route].0.refresh_source(i))).await;
                for (&(route, index), outcome) in due.iter().zip(&outcomes) {
                    let (refresher, label) = routes[route];
                    let schedule = &mut schedules[route];
                    let failed = matches!(outcome, RefreshOutcome::Failed(_));
                    schedule.record(index, failed, Instant::now(), jitter());
                    if let (true, Some(due), Some(url)) =
                        (failed, schedule.next_due_of(index), refresher.source_url(index))
                    {
                        let retry_in_ms = due.saturating_duration_since(Instant::now()).as_millis() as u64;
                        tracing::info!(source = %url, route = label, failures = schedule.failures(index), retry_in_ms, "discovery will be retried");
                    }
                }
                let Some(next) = schedules.iter().filter_map(Schedule::next_due).min() else {
                    // No sources: nothing to fetch until a reload brings some.
                    tokio::select! {
                        _ = self.0.sources_changed() => break,
                        _ = shutdown.changed() => return,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = self.0.sources_changed() => break,
                    _ = shutdown.changed() => return,
                }
                if *shutdown.borrow() {
                    return;
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// Reads the configuration again for a reload (the file, with the same environment and flags).
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

type Request = (Config, oneshot::Sender<Result<Vec<String>, StartError>>);

/// Asks a server started with the matching [`ReloadListener`] to apply a configuration.
#[derive(Clone)]
pub struct ReloadTrigger(mpsc::UnboundedSender<Request>);

/// The receiving end of a [`ReloadTrigger`].
pub struct ReloadListener(mpsc::UnboundedReceiver<Request>);

impl ReloadTrigger {
    /// A trigger and the listener it drives.
    pub fn new() -> (ReloadTrigger, ReloadListener) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ReloadTrigger(tx), ReloadListener(rx))
    }

    /// Applies `config` as a reload would; the answer is the same as the reload's log line:
    /// the keys that need a restart, or why the configuration was refused.
    pub async fn reload(&self, config: Config) -> Result<Vec<String>, StartError> {
        let (tx, rx) = oneshot::channel();
        self.0.send((config, tx)).map_err(|_| StartError::NotRunning)?;
        rx.await.map_err(|_| StartError::NotRunning)?
    }
}

/// Where reloads come from.
pub enum ReloadSource {
    /// SIGHUP, re-reading the configuration with the loader.
    Sighup(ConfigLoader),
    /// A [`ReloadTrigger`].
    Trigger(ReloadListener),
}

/// Applies reloads as they come, one at a time.
pub struct ReloadTask {
    shared: Arc<Shared>,
    source: Mutex<Option<ReloadSource>>,
}

impl ReloadTask {
    /// A task for `source`.
    pub fn new(shared: Arc<Shared>, source: ReloadSource) -> Self {
        ReloadTask { shared, source: Mutex::new(Some(source)) }
    }

    async fn apply(&self, loaded: Result<Config, StartError>, how: &str) -> Result<Vec<String>, StartError> {
        let metrics = self.shared.metrics();
        let result = match loaded {
            Ok(config) => match super::runtime::prepare_shared(&self.shared.active(), &config).await {
                Ok(shared) => {
                    let warnings = config.warnings();
                    self.shared.reload(config, shared).inspect(|_| {
                        for warning in warnings {
                            tracing::warn!(%warning, "configuration");
                        }
                    })
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match &result {
            Ok(restart_needed) => {
                metrics.reload(true);
                tracing::info!(trigger = how, "configuration reloaded");
                for key in restart_needed {
                    tracing::warn!(key = %key, "changed in the configuration but applied only at restart; the running value stays");
                }
            }
            Err(error) => {
                metrics.reload(false);
                tracing::error!(trigger = how, %error, "configuration reload refused; the running configuration stays in force");
            }
        }
        result
    }
}

#[async_trait]
impl BackgroundService for ReloadTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let source = self.source.lock().unwrap_or_else(|e| e.into_inner()).take();
        match source {
            Some(ReloadSource::Sighup(loader)) => {
                let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(hup) => hup,
                    Err(error) => {
                        tracing::error!(%error, "cannot listen for SIGHUP: reload is unavailable");
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = hup.recv() => {
                            let _ = self.apply(loader().map_err(StartError::Config), "SIGHUP").await;
                        }
                        _ = shutdown.changed() => return,
                    }
                }
            }
            Some(ReloadSource::Trigger(mut listener)) => loop {
                tokio::select! {
                    request = listener.0.recv() => match request {
                        Some((config, reply)) => {
                            let _ = reply.send(self.apply(Ok(config), "trigger").await);
                        }
                        None => return,
                    },
                    _ = shutdown.changed() => return,
                }
            },
            None => {}
        }
    }
}
