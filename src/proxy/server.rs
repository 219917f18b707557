//! Assembles and runs the Pingora server: the proxy service, the admin service, the discovery
//! task and the reload task, sharing one [`Shared`] state.

use async_trait::async_trait;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tokio::sync::watch;

use super::admin::AdminApp;
use super::connections::ConnectionApp;
use super::drain::ProcessSignals;
use super::error::StartError;
use super::health::HealthTask;
use super::runtime::Shared;
use super::service::WopiProxy;
use super::tasks::{DiscoveryTask, ReloadSource, ReloadTask};
use crate::config::Config;
use pingora::listeners::tls::TlsSettings;

/// Ends a server started with the matching [`ShutdownHandle`] (tests, the demo).
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A shutdown signal driven by a [`ShutdownTrigger`] instead of Unix signals.
pub struct ShutdownHandle(watch::Receiver<bool>);

impl ShutdownTrigger {
    /// A trigger and the handle it drives.
    pub fn new() -> (ShutdownTrigger, ShutdownHandle) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), ShutdownHandle(rx))
    }

    /// Asks the server to stop now.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

#[async_trait]
impl ShutdownSignalWatch for ShutdownHandle {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::FastShutdown
    }
}

/// Builds the server for `config` and runs it until `signal` fires (Unix signals when `None`:
/// SIGTERM drains for `server.grace_period`, SIGINT stops at once). No reloads. Blocks the
/// calling thread.
pub fn run(config: &Config, signal: Option<Box<dyn ShutdownSignalWatch>>) -> Result<(), StartError> {
    run_with(config, signal, None)
}

/// As [`run`], with reloads from `reload` (SIGHUP for the real process, a trigger in tests).
pub fn run_with(
    config: &Config,
    signal: Option<Box<dyn ShutdownSignalWatch>>,
    reload: Option<ReloadSource>,
) -> Result<(), StartError> {
    preflight_bind("listen", config.listen)?;
    preflight_bind("admin_listen", config.admin_listen)?;
    let shared = Shared::new(config)?;
    // The drain waits for requests in flight ([`ProcessSignals`]); Pingora's own grace period
    // would only sleep on after it. One second lets its runtimes wind down.
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None::<Opt>, conf);
    server.bootstrap();

    let proxy = pingora::proxy::http_proxy(&server.configuration, WopiProxy::new(shared.clone()));
    // A TLS listener is a TCP one: the handshake runs in the connection layer, under the caps and
    // server.tls_handshake_timeout (Pingora's own runs before any cap, for up to 60 s).
    let tls = match shared.cert_resolver() {
        Some(resolver) => {
            // The file names are not read: the resolver serves the certificate, and a reload swaps it.
            let mut settings = TlsSettings::intermediate("", "").map_err(|e| StartError::ListenerTls(e.to_string()))?;
            settings.set_cert_resolver(resolver);
            Some(settings.build())
        }
        None => None,
    };
    let mut proxy_service = Service::new("wopi-guard".to_string(), ConnectionApp::new(proxy, shared.clone(), tls));
    proxy_service.add_tcp(&config.listen.to_string());

    let mut admin = Service::new("admin".to_string(), AdminApp::new(shared.clone()));
    admin.add_tcp(&config.admin_listen.to_string());

    server.add_service(proxy_service);
    server.add_service(admin);
    server.add_service(background_service("discovery", DiscoveryTask(shared.clone())));
    server.add_service(background_service("health", HealthTask(shared.clone())));
    if let Some(source) = reload {
        server.add_service(background_service("reload", ReloadTask::new(shared.clone(), source)));
    }
    for route in &config.routes {
        let host = config.routed.then(|| route.host.to_string());
        tracing::info!(listen = %config.listen, admin_listen = %config.admin_listen, route = host.as_deref(), public_url = route.public_url.as_str(), "wopi-guard starting");
    }
    let shutdown_signal = signal.unwrap_or_else(|| {
        Box::new(ProcessSignals { drain: shared.drain().clone(), grace: config.server.grace_period })
    });
    server.run(RunArgs { shutdown_signal });
    tracing::info!("stopped");
    Ok(())
}

/// Pingora exits the process on a failed bind; find out first and say which key to change.
fn preflight_bind(key: &'static str, addr: std::net::SocketAddr) -> Result<(), StartError> {
    std::net::TcpListener::bind(addr).map(drop).map_err(|error| StartError::Bind { key, addr, error })
}
