//! What a reload replaces, and the reload itself. Everything built from the configuration that
//! requests use (the gate: policy, proof settings, discovery sources; the upstream peer) lives in
//! one [`Active`] value, swapped whole; each request takes the one in force when it starts and
//! keeps it to its end, so a reload never drops or mixes up a request. The key store, the
//! metrics and the listener's certificate resolver live as long as the process.
//!
//! A reload builds everything that can fail (address resolution, CA and certificate files, the
//! discovery client) before it changes anything: an invalid new configuration leaves the running
//! one untouched.

use arc_swap::ArcSwap;
use pingora::prelude::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

use super::drain::Drain;
use super::error::StartError;
use super::pool::{Member, Pool};
use super::tls::{apply_upstream_tls, load_certified_key, CertResolver};
use crate::config::{Config, ConnectionLimits, HealthConfig, Timeouts, UpstreamTarget};
use crate::framing::RequestLimits;
use crate::gate::Gate;
use crate::keys::{discovery_client, KeyStore, Refresher};
use crate::metrics::Metrics;
use crate::shared::SharedState;

/// The request-facing state built from one configuration.
pub struct Active {
    /// The admission decision.
    pub gate: Arc<Gate>,
    /// The WOPI host or its pool, resolved when this was built.
    pub upstream: Pool,
    /// `[health]`, with the client its checks use (`upstream_tls`); `None`: no checks.
    pub health: Option<(HealthConfig, reqwest::Client)>,
    config: Config,
}

impl Active {
    /// Request target and header section limits.
    pub fn limits(&self) -> &RequestLimits {
        &self.config.server.limits
    }

    /// Connection caps and the header deadline, for connections accepted now.
    pub fn connection_limits(&self) -> ConnectionLimits {
        self.config.server.connections
    }
}

/// State shared by the proxy, the admin service and the background tasks.
pub struct Shared {
    active: ArcSwap<Active>,
    keys: KeyStore,
    metrics: Arc<Metrics>,
    cert: Option<Arc<CertResolver>>,
    sources_changed: Notify,
    reloading: std::sync::Mutex<()>,
    drain: Arc<Drain>,
}

impl Shared {
    /// Builds the first state for `config`.
    pub fn new(config: &Config) -> Result<Arc<Shared>, StartError> {
        let keys = KeyStore::new();
        let metrics = Arc::new(Metrics::new(&config.discovery.urls));
        let cert = match &config.tls {
            Some((cert, key)) => Some(Arc::new(CertResolver::load(cert, key)?)),
            None => None,
        };
        let active = build(config, &keys, &metrics, None, None)?;
        Ok(Arc::new(Shared {
            active: ArcSwap::from_pointee(active),
            keys,
            metrics,
            cert,
            sources_changed: Notify::new(),
            reloading: std::sync::Mutex::new(()),
            drain: Arc::new(Drain::default()),
        }))
    }

    /// Requests in flight and whether the process is draining.
    pub fn drain(&self) -> &Arc<Drain> {
        &self.drain
    }

    /// The state in force now.
    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// The keys in force.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The listener's certificate resolver, when the listener is TLS.
    pub fn cert_resolver(&self) -> Option<Arc<CertResolver>> {
        self.cert.clone()
    }

    /// Resolves when a reload changed the discovery sources (the periodic task fetches at once).
    pub async fn sources_changed(&self) {
        self.sources_changed.notified().await;
    }

    /// Applies `config`: allow-lists, rate limits, operation rules, proof settings, public URL,
    /// discovery sources, upstream (re-resolved), upstream and discovery TLS, and the listener's
    /// certificate. Returns the keys that changed but need a restart (listen addresses, threads,
    /// grace period, log settings, TLS switched on or off), which keep their running values.
    /// On error nothing changed.
    pub fn reload(&self, mut config: Config, shared: Option<Arc<SharedState>>) -> Result<Vec<String>, StartError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.active();
        let old = &previous.config;
        let mut restart_needed = Vec::new();
        let mut note = |key: &str, changed: bool| {
            if changed {
                restart_needed.push(key.to_string());
            }
        };
        note("listen", old.listen != config.listen);
        note("admin_listen", old.admin_listen != config.admin_listen);
        note("server.threads", old.server.threads != config.server.threads);
        note("server.grace_period", old.server.grace_period != config.server.grace_period);
        note("log", old.log != config.log);
        note("tls", old.tls.is_some() != config.tls.is_some());
        // What needs a restart keeps its running value, so the state says what is in force and
        // the next reload warns again.
        config.listen = old.listen;
        config.admin_listen = old.admin_listen;
        config.server.threads = old.server.threads;
        config.server.grace_period = old.server.grace_period;
        config.log = old.log.clone();
        if old.tls.is_some() != config.tls.is_some() {
            config.tls = old.tls.clone();
        }
        let new_cert = match (&self.cert, &config.tls) {
            (Some(_), Some((cert, key))) => Some(load_certified_key(cert, key)?),
            _ => None,
        };
        let sources_changed = old.discovery != config.discovery;
        let active = build(&config, &self.keys, &self.metrics, Some(&previous), shared)?;
        // Nothing below fails.
        if let (Some(resolver), Some(key)) = (&self.cert, new_cert) {
            resolver.replace(key);
        }
        self.active.store(Arc::new(active));
        if sources_changed {
            self.sources_changed.notify_one();
        }
        Ok(restart_needed)
    }
}

/// `[shared]` for a reload, connected before anything is swapped: the running one when nothing it
/// depends on changed, else a new one that must reach Redis (or the reload is refused).
pub async fn prepare_shared(previous: &Active, config: &Config) -> Result<Option<Arc<SharedState>>, StartError> {
    let Some(wanted) = &config.shared else { return Ok(None) };
    let replay = shared_replay(config);
    if let Some(running) = previous.gate.shared() {
        let same = running.config() == wanted
            && running.limits() == &config.rate_limit
            && shared_replay(&previous.config) == replay
            && wanted.ca_file.is_none(); // a CA file may have changed under the same name
        if same {
            return Ok(Some(running.clone()));
        }
    }
    let metrics = previous.gate.metrics_arc();
    let state = SharedState::new(wanted.clone(), config.rate_limit.clone(), replay, metrics);
    state
        .connect()
        .await
        .map_err(|error| StartError::SharedState { redis: wanted.redis.shown().to_string(), error })?;
    Ok(Some(Arc::new(state)))
}

/// `proof.replay_cache` for `[shared]`: the local capacity and the window.
fn shared_replay(config: &Config) -> Option<(usize, std::time::Duration)> {
    let window = config.proof.window.max_age + config.proof.window.max_future_skew;
    config.proof.replay_cache.map(|capacity| (capacity, window))
}

/// Builds the request-facing state; with `previous`, keeps its discovery state when
/// `[discovery]` is unchanged and its rate-limit state when `[rate_limit]` is. `shared` is a
/// reload's prepared `[shared]` state; without one, `[shared]` connects on first use.
fn build(
    config: &Config,
    keys: &KeyStore,
    metrics: &Arc<Metrics>,
    previous: Option<&Active>,
    shared: Option<Arc<SharedState>>,
) -> Result<Active, StartError> {
    let peers = upstream_peers(config)?;
    let health = match &config.health {
        Some(h) => Some((h.clone(), discovery_client(&config.upstream_tls)?)),
        None => None,
    };
    // Unchanged sources keep their state (last attempts, single flight), unless a CA file is in
    // use: its contents may have changed under the same name, so the client is rebuilt.
    let sources = match previous {
        Some(p) if p.config.discovery == config.discovery && config.discovery.tls.ca_file.is_none() => {
            Ok(p.gate.refresher().clone())
        }
        _ => Err(discovery_client(&config.discovery.tls)?),
    };
    // Nothing below fails. `[keys]` applies before the cache is read (a trusted set is restored
    // only for `rotation`), and judges every key served again.
    keys.configure(&config.keys);
    let refresher = match sources {
        Ok(kept) => kept,
        Err(client) => {
            let dropped = keys.retain_sources(&config.discovery.urls);
            for url in dropped {
                tracing::warn!(source = %url, "discovery source removed by the reload: its keys are no longer accepted");
            }
            metrics.add_sources(&config.discovery.urls);
            Refresher::with_client(&config.discovery, keys.clone(), metrics.fetch_observer(), client)
        }
    };
    let mut gate =
        Gate::new(refresher, config.public_url.clone(), config.proof.clone(), config.policy(), metrics.clone());
    if let Some(p) = previous {
        gate = gate.keeping_limits_of(&p.gate);
    }
    let shared = shared.or_else(|| {
        let wanted = config.shared.clone()?;
        let limits = config.rate_limit.clone();
        Some(Arc::new(SharedState::new(wanted, limits, shared_replay(config), metrics.clone())))
    });
    let gate = gate.with_shared(shared);
    let names: Vec<String> = config.upstream.iter().map(|u| u.to_string()).collect();
    let stats = metrics.members(&names);
    let members = peers
        .into_iter()
        .zip(stats)
        .zip(&config.upstream)
        .map(|((peer, stats), u)| Member {
            peer,
            url: format!("{}://{u}", if u.tls { "https" } else { "http" }),
            stats,
        })
        .collect();
    Ok(Active { gate: Arc::new(gate), upstream: Pool::new(members), health, config: config.clone() })
}

/// What a start does that can fail without binding a socket: resolve the upstream (and refuse
/// one that is wopi-guard itself), read the listener's certificate and key, read the CA files.
/// Every problem, for `wopi-guard check`.
pub fn preflight(config: &Config) -> Vec<StartError> {
    let mut problems = Vec::new();
    if let Err(e) = upstream_peers(config) {
        problems.push(e);
    }
    if let Some((cert, key)) = &config.tls {
        if let Err(e) = CertResolver::load(cert, key) {
            problems.push(e.into());
        }
    }
    if let Err(e) = discovery_client(&config.discovery.tls) {
        problems.push(e.into());
    }
    problems
}

/// The upstream's members as peers: each host resolved now (at start and on every reload, never
/// per request), timeouts, and how its certificate is checked.
fn upstream_peers(config: &Config) -> Result<Vec<HttpPeer>, StartError> {
    config.upstream.iter().map(|target| upstream_peer(config, target)).collect()
}

fn upstream_peer(config: &Config, target: &UpstreamTarget) -> Result<HttpPeer, StartError> {
    let addr = resolve(&target.host, target.port)?;
    for (key, own) in [("listen", config.listen), ("admin_listen", config.admin_listen)] {
        if crate::config::points_at(own, addr.ip(), addr.port()) {
            return Err(StartError::UpstreamIsSelf { host: target.host.clone(), port: target.port, addr, key });
        }
    }
    let mut peer = HttpPeer::new(addr, target.tls, target.host.clone());
    apply_timeouts(&mut peer, &config.timeouts);
    if target.tls {
        apply_upstream_tls(&mut peer, &config.upstream_tls)?;
    }
    Ok(peer)
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, StartError> {
    use std::net::ToSocketAddrs;
    let error = |error| StartError::Resolve { host: host.to_string(), port, error };
    (host, port).to_socket_addrs().map_err(|e| error(Some(e)))?.next().ok_or_else(|| error(None))
}

fn apply_timeouts(peer: &mut HttpPeer, t: &Timeouts) {
    peer.options.connection_timeout = Some(t.upstream_connect);
    peer.options.read_timeout = Some(t.upstream_read);
    peer.options.write_timeout = Some(t.upstream_write);
}
