//! What a reload replaces, and the reload itself. Everything built from the configuration that
//! requests use (per route: the gate with its policy, proof settings, discovery sources and key
//! store, and the upstream pool; the table that picks a route by Host) lives in one [`Active`]
//! value, swapped whole; each request takes the one in force when it starts and keeps it to its
//! end, so a reload never drops or mixes up a request. A route whose host stays keeps its key
//! store (and, when its sections are unchanged, its discovery and rate-limit state) across
//! reloads. The metrics and the listener's certificate resolver live as long as the process.
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
use crate::config::{Config, ConnectionLimits, HealthConfig, RouteConfig, RouteHost, Timeouts, UpstreamTarget};
use crate::framing::RequestLimits;
use crate::gate::Gate;
use crate::keys::{discovery_client, health_client, KeySnapshot, KeyStore, Refresher};
use crate::metrics::{Metrics, RouteMetrics};
use crate::routing::RouteTable;
use crate::shared::{SharedConfig, SharedState};

/// One route's request-facing state: its gate (with its own keys), its upstream, its counters.
pub struct Route {
    /// The admission decision, over this route's keys only.
    pub gate: Arc<Gate>,
    /// The WOPI host or its pool, resolved when this was built.
    pub upstream: Pool,
    /// `[health]`, with the client its checks use (`upstream_tls`); `None`: no checks.
    pub health: Option<(HealthConfig, reqwest::Client)>,
    /// Its requests, discovery fetches and members in `/metrics`.
    pub metrics: Arc<RouteMetrics>,
    /// The host it serves, as logs and metrics name it; `None` without `[[routes]]`.
    pub label: Option<Arc<str>>,
    host: RouteHost,
}

/// A route's label (`None` without `[[routes]]`) and the keys in force for it.
pub type RouteKeys = (Option<Arc<str>>, arc_swap::Guard<Arc<KeySnapshot>>);

/// The request-facing state built from one configuration.
pub struct Active {
    /// The routes, in the file's order (one without `[[routes]]`).
    pub routes: Vec<Route>,
    /// Which route a request's host picks.
    pub table: RouteTable,
    /// Requests refused before a route was chosen are counted here.
    pub unrouted: Arc<RouteMetrics>,
    config: Config,
}

impl Active {
    /// Request target and header section limits.
    pub fn limits(&self) -> &RequestLimits {
        &self.config.server.limits
    }

    /// `[forward_auth]` (the whole file's: its endpoint is chosen before the route).
    pub fn forward_auth(&self) -> &crate::config::ForwardAuthConfig {
        &self.config.forward_auth
    }

    /// Connection caps and the header deadline, for connections accepted now.
    pub fn connection_limits(&self) -> ConnectionLimits {
        self.config.server.connections
    }

    /// Each route's label and the keys in force for it now.
    pub fn key_snapshots(&self) -> Vec<RouteKeys> {
        self.routes.iter().map(|r| (r.label.clone(), r.gate.keys().snapshot())).collect()
    }
}

/// State shared by the proxy, the admin service and the background tasks.
pub struct Shared {
    active: ArcSwap<Active>,
    metrics: Arc<Metrics>,
    cert: Option<Arc<CertResolver>>,
    sources_changed: Notify,
    reloading: std::sync::Mutex<()>,
    drain: Arc<Drain>,
}

impl Shared {
    /// Builds the first state for `config`.
    pub fn new(config: &Config) -> Result<Arc<Shared>, StartError> {
        let metrics = Arc::new(Metrics::new(&[]));
        let cert = match &config.tls {
            Some((cert, key)) => Some(Arc::new(CertResolver::load(cert, key)?)),
            None => None,
        };
        let active = build(config, &metrics, None, None)?;
        Ok(Arc::new(Shared {
            active: ArcSwap::from_pointee(active),
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

    /// Applies `config`: routes (added, removed, changed), allow-lists, rate limits, operation
    /// rules, proof settings, public URLs, discovery sources, upstreams (re-resolved), upstream
    /// and discovery TLS, and the listener's certificate. `shared` is [`prepare_shared`]'s
    /// answer for `config`. Returns the keys that changed but need a restart (listen addresses,
    /// threads, grace period, log settings, TLS switched on or off), which keep their running
    /// values. On error nothing changed.
    pub fn reload(&self, mut config: Config, shared: PreparedShared) -> Result<Vec<String>, StartError> {
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
        let active = build(&config, &self.metrics, Some(&previous), Some(shared))?;
        // The periodic fetches follow the refreshers in force: any route whose refresher is not
        // the one before (a new route, new sources, a rebuilt client) restarts them.
        let refreshers = |a: &Active| a.routes.iter().map(|r| r.gate.refresher().clone()).collect::<Vec<_>>();
        let (before, after) = (refreshers(&previous), refreshers(&active));
        let sources_changed = before.len() != after.len() || before.iter().zip(&after).any(|(b, a)| !b.is_same(a));
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

/// `[shared]` for each route of a reload's configuration, connected before anything is swapped.
pub type PreparedShared = Vec<Option<Arc<SharedState>>>;

/// `[shared]` for a reload, connected before anything is swapped: per route, the running one
/// when nothing it depends on changed, else a new one that must reach Redis (or the reload is
/// refused).
pub async fn prepare_shared(previous: &Active, config: &Config) -> Result<PreparedShared, StartError> {
    let mut prepared = Vec::new();
    for route in &config.routes {
        let Some(wanted) = shared_config(config, route) else {
            prepared.push(None);
            continue;
        };
        let replay = shared_replay(route);
        let running = previous.routes.iter().find(|r| r.host == route.host).and_then(|r| r.gate.shared().cloned());
        if let Some(running) = running {
            let same = running.config() == &wanted
                && running.limits() == &route.rate_limit
                && running.replay() == replay
                && wanted.ca_file.is_none(); // a CA file may have changed under the same name
            if same {
                prepared.push(Some(running));
                continue;
            }
        }
        let state =
            SharedState::new(wanted.clone(), route.rate_limit.clone(), replay, previous.routes[0].gate.metrics_arc());
        state
            .connect()
            .await
            .map_err(|error| StartError::SharedState { redis: wanted.redis.shown().to_string(), error })?;
        prepared.push(Some(Arc::new(state)));
    }
    Ok(prepared)
}

/// `[shared]` as `route` uses it: with `[[routes]]`, each named route's keys in Redis start
/// with `key_prefix:host`, so routes never share a budget or a replay entry. The `"*"` route
/// keeps `key_prefix` alone, as a file without `[[routes]]` does (its one route serves any
/// host): a reload between the two keeps its budgets and its replay entries.
fn shared_config(config: &Config, route: &RouteConfig) -> Option<SharedConfig> {
    let mut shared = config.shared.clone()?;
    if config.routed && route.host != RouteHost::Any {
        shared.key_prefix = format!("{}:{}", shared.key_prefix, route.host);
    }
    Some(shared)
}

/// `proof.replay_cache` for `[shared]`: the local capacity and the window.
fn shared_replay(route: &RouteConfig) -> Option<(usize, std::time::Duration)> {
    let window = route.proof.window.max_age + route.proof.window.max_future_skew;
    route.proof.replay_cache.map(|capacity| (capacity, window))
}

/// Builds the request-facing state; with `previous`, a route of the same host keeps its keys,
/// its discovery state when its `[discovery]` is unchanged and its rate-limit state when its
/// `[rate_limit]` is. `shared` is a reload's prepared `[shared]` state per route; without one,
/// `[shared]` connects on first use.
fn build(
    config: &Config,
    metrics: &Arc<Metrics>,
    previous: Option<&Active>,
    shared: Option<PreparedShared>,
) -> Result<Active, StartError> {
    let labels: Vec<Option<String>> = config.routes.iter().map(|r| config.routed.then(|| r.host.to_string())).collect();
    // First everything that can fail, for every route.
    let mut parts = Vec::new();
    for (route, label) in config.routes.iter().zip(&labels) {
        let peers = upstream_peers(config, route)?;
        let health = match &route.health {
            Some(h) => Some((h.clone(), health_client(&config.upstream_tls)?)),
            None => None,
        };
        // The route of the same host before keeps its keys. Its discovery and rate-limit state
        // are kept only when it is labelled alike too: its refresher reports to its counters.
        let same_host = previous.and_then(|p| p.routes.iter().find(|r| r.host == route.host));
        let before = same_host.filter(|r| r.label.as_deref() == label.as_deref());
        let old_discovery = before.map(|b| b.gate.refresher().config());
        // Unchanged sources keep their state (last attempts, single flight), unless a CA file
        // is in use: its contents may have changed under the same name, so the client is rebuilt.
        let sources = match before {
            Some(b) if old_discovery == Some(&route.discovery) && route.discovery.tls.ca_file.is_none() => {
                Ok(b.gate.refresher().clone())
            }
            _ => Err(discovery_client(&route.discovery.tls)?),
        };
        let keys = same_host.map(|r| r.gate.keys().clone());
        parts.push((route, peers, health, same_host, sources, keys));
    }
    // Nothing below fails.
    let route_metrics = metrics.routes(&labels);
    // The one route of a file without `[[routes]]` (it served any host).
    let previous_any = previous.filter(|p| !p.table.is_routed()).and_then(|p| p.routes.first());
    let mut shared = shared.map(Vec::into_iter);
    let mut routes = Vec::new();
    for ((route, peers, health, same_host, sources, kept_keys), stats) in parts.into_iter().zip(route_metrics) {
        let label: Option<Arc<str>> = stats.label().map(Arc::from);
        // `[keys]` applies before the cache is read (a trusted set is restored only for
        // `rotation`), and judges every key served again.
        // (A store kept across a switch to or from `[[routes]]` keeps the label its log lines had.)
        let keys = kept_keys.unwrap_or_else(|| KeyStore::for_route(label.clone()));
        keys.configure(&route.keys);
        let refresher = match sources {
            Ok(kept) => kept,
            Err(client) => {
                let dropped = keys.retain_sources(&route.discovery.urls);
                for url in dropped {
                    tracing::warn!(source = %url, route = label.as_deref(), "discovery source removed by the reload: its keys are no longer accepted");
                }
                stats.add_sources(&route.discovery.urls);
                Refresher::with_client(&route.discovery, keys.clone(), stats.fetch_observer(), client)
            }
        };
        let forgetting = stats.clone();
        refresher.set_forget_observer(Arc::new(move |source: &str| forgetting.forget_source(source)));
        let mut gate =
            Gate::new(refresher, route.public_url.clone(), route.proof.clone(), config.policy(route), metrics.clone())
                .with_rotation(route.keys.trust == crate::keys::TrustMode::Rotation);
        // Budgets and the replay cache follow the host, whatever its label: a reload that turns a
        // single-route file into `[[routes]]` must not make recent proofs usable again.
        if let Some(b) = same_host {
            gate = gate.keeping_limits_of(&b.gate);
        } else if let Some(any) = previous_any {
            // A single-route file turned into `[[routes]]`: its one route served every host, so
            // its recent proofs may come back to any new route.
            gate = gate.keeping_replay_of(&any.gate);
        }
        let prepared = shared.as_mut().and_then(Iterator::next).flatten();
        let route_shared = prepared.or_else(|| {
            let wanted = shared_config(config, route)?;
            let limits = route.rate_limit.clone();
            Some(Arc::new(SharedState::new(wanted, limits, shared_replay(route), metrics.clone())))
        });
        // `rotation` with `[shared]`: the trusted sets live in Redis for every instance.
        let share = route_shared
            .clone()
            .filter(|_| route.keys.trust == crate::keys::TrustMode::Rotation)
            .map(|s| s as Arc<dyn crate::keys::TrustShare>);
        gate.refresher().set_trust_share(share);
        let gate = gate.with_shared(route_shared);
        let names: Vec<String> = route.upstream.iter().map(|u| u.to_string()).collect();
        let members = peers
            .into_iter()
            .zip(stats.members(&names))
            .zip(&route.upstream)
            .map(|((peer, stats), u)| Member {
                peer,
                url: format!("{}://{u}", if u.tls { "https" } else { "http" }),
                stats,
            })
            .collect();
        routes.push(Route {
            gate: Arc::new(gate),
            upstream: Pool::new(members),
            health,
            metrics: stats,
            label,
            host: route.host.clone(),
        });
    }
    let hosts: Vec<RouteHost> = config.routes.iter().map(|r| r.host.clone()).collect();
    Ok(Active {
        routes,
        table: RouteTable::new(&hosts, config.routed),
        unrouted: metrics.unrouted().clone(),
        config: config.clone(),
    })
}

/// What a start does that can fail without binding a socket: resolve every upstream (and refuse
/// one that is wopi-guard itself), read the listener's certificate and key, read the CA files.
/// Every problem, for `wopi-guard check`.
pub fn preflight(config: &Config) -> Vec<StartError> {
    let mut problems = Vec::new();
    for route in &config.routes {
        if let Err(e) = upstream_peers(config, route) {
            problems.push(e);
        }
    }
    if let Some((cert, key)) = &config.tls {
        if let Err(e) = CertResolver::load(cert, key) {
            problems.push(e.into());
        }
    }
    let mut seen = Vec::new();
    for route in &config.routes {
        if seen.contains(&&route.discovery.tls) {
            continue;
        }
        seen.push(&route.discovery.tls);
        if let Err(e) = discovery_client(&route.discovery.tls) {
            problems.push(e.into());
        }
    }
    problems
}

/// A route's upstream members as peers: each host resolved now (at start and on every reload,
/// never per request), timeouts, and how its certificate is checked.
fn upstream_peers(config: &Config, route: &RouteConfig) -> Result<Vec<HttpPeer>, StartError> {
    route.upstream.iter().map(|target| upstream_peer(config, target)).collect()
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
