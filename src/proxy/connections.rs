//! The connection layer, under Pingora's HTTP handling: the caps on connections open at once
//! (`server.max_connections` in total, `ip.max_connections` per socket peer) and the
//! header-section deadline (`server.header_timeout`, see [`super::head_deadline`]).
//!
//! Pingora 0.9 has neither: its only bound on a header section is 60 s per read, so a client
//! that trickles a byte a minute holds a socket for as long as its section stays under
//! `server.max_header_bytes`, and nothing stops one address from opening every socket the
//! process may have. [`ConnectionApp`] sits between Pingora's listener and the HTTP proxy: each
//! accepted connection takes a slot or is closed at once, then (on a TLS listener) runs its TLS
//! handshake under `server.tls_handshake_timeout` ([`super::handshake`]), and runs wrapped in a
//! [`GuardedStream`] that holds the slot until the connection is gone and enforces the deadline
//! on its reads.

use async_trait::async_trait;
use dashmap::DashMap;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::handshake::{self, HandshakeFailed};
use super::head_deadline::GuardedStream;
use super::runtime::Shared;
use super::service::WopiProxy;
use crate::config::ConnectionLimits;
use crate::metrics::{ConnectionEvent, Metrics};

/// Connections open now, in total and per client address (an IPv6 client by its /64, as the
/// rate limits key it: one host holds a whole /64).
#[derive(Debug, Default)]
pub struct OpenConnections {
    total: AtomicUsize,
    per_ip: DashMap<u128, usize>,
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    /// `server.max_connections` are open.
    Total,
    /// `ip.max_connections` are open from this address.
    PerIp,
}

impl OverCap {
    /// The metric's event.
    fn event(self) -> ConnectionEvent {
        match self {
            OverCap::Total => ConnectionEvent::OverMaxConnections,
            OverCap::PerIp => ConnectionEvent::OverIpMaxConnections,
        }
    }

    /// The config key whose cap was reached.
    fn key(self) -> &'static str {
        match self {
            OverCap::Total => "server.max_connections",
            OverCap::PerIp => "ip.max_connections",
        }
    }
}

/// One open connection's place in [`OpenConnections`], given back when dropped.
#[derive(Debug)]
pub struct Slot {
    open: Arc<OpenConnections>,
    ip: Option<u128>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            // An address's entry goes when its last connection does: the map holds only
            // addresses with open connections.
            self.open.per_ip.remove_if_mut(&ip, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
        self.open.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl OpenConnections {
    /// Takes a slot for a connection from `ip` under `limits`, or says which cap is reached.
    /// A connection with no IP address (a Unix socket) counts only in the total.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>, limits: &ConnectionLimits) -> Result<Slot, OverCap> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= limits.max {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(OverCap::Total);
        }
        // From here the slot gives the total back if the per-address cap refuses.
        let mut slot = Slot { open: self.clone(), ip: None };
        let Some(ip) = ip.map(crate::policy::ip_key) else { return Ok(slot) };
        let mut count = self.per_ip.entry(ip).or_insert(0);
        if limits.per_ip.is_some_and(|cap| *count >= cap) {
            let empty = *count == 0;
            drop(count);
            if empty {
                self.per_ip.remove_if(&ip, |_, n| *n == 0);
            }
            return Err(OverCap::PerIp);
        }
        *count += 1;
        slot.ip = Some(ip);
        Ok(slot)
    }

    /// Connections open now (the gauge is `Metrics`'; this is for tests).
    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Connections open now from `ip`.
    #[cfg(test)]
    pub fn from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&crate::policy::ip_key(ip)).map_or(0, |n| *n)
    }
}

/// At most one warning a second per kind of connection event; the count of the ones not
/// written rides on the next line (the metrics count every one).
#[derive(Debug, Default)]
pub struct Throttle {
    second: AtomicU64,
    quiet: AtomicU64,
}

impl Throttle {
    /// Whether to write a line now, and how many were not written since the last one.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.second.load(Ordering::Relaxed);
        if now != last && self.second.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return Some(self.quiet.swap(0, Ordering::AcqRel));
        }
        self.quiet.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Pingora's HTTP proxy behind the connection caps and the header deadline.
pub struct ConnectionApp {
    proxy: Arc<HttpProxy<WopiProxy>>,
    shared: Arc<Shared>,
    open: Arc<OpenConnections>,
    /// The listener's TLS, handshaken here under the caps (the listener itself is plain TCP).
    tls: Option<Acceptor>,
    /// One per [`OverCap`], one for the header deadline and one for the handshake deadline.
    throttles: [Throttle; 4],
}

impl ConnectionApp {
    /// The proxy behind the caps and deadlines of the configuration in force at each accept;
    /// with `tls`, each connection's TLS handshake runs after it took its slots.
    pub fn new(proxy: HttpProxy<WopiProxy>, shared: Arc<Shared>, tls: Option<Acceptor>) -> Self {
        ConnectionApp { proxy: Arc::new(proxy), shared, open: Arc::default(), tls, throttles: Default::default() }
    }
}

/// The socket peer's address, when the connection has one.
fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// Writes the warning for `event`, throttled.
fn warn(throttle: &Throttle, event: ConnectionEvent, peer: Option<IpAddr>, detail: &str) {
    if let Some(quiet) = throttle.allow() {
        let peer = peer.map(|ip| ip.to_string()).unwrap_or_default();
        tracing::warn!(reason = event.label(), peer, not_logged_since_last = quiet, "{detail}");
    }
}

#[async_trait]
impl ServerApp for ConnectionApp {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let limits = self.shared.active().connection_limits();
        let metrics: &Arc<Metrics> = self.shared.metrics();
        let peer = peer_ip(&stream);
        let slot = match self.open.admit(peer, &limits) {
            Ok(slot) => slot,
            Err(over) => {
                metrics.connection(over.event());
                let (cap, scope) = match over {
                    OverCap::Total => (limits.max, "in total"),
                    OverCap::PerIp => (limits.per_ip.unwrap_or_default(), "from this address"),
                };
                let key = over.key();
                let detail = format!(
                    "connection closed at once: {cap} connections are open {scope} ({key}); raise {key} if this is expected load"
                );
                warn(&self.throttles[over as usize], over.event(), peer, &detail);
                return None; // dropping the stream closes it
            }
        };
        metrics.connection_open(true);
        let stream = match &self.tls {
            None => stream,
            Some(acceptor) => match handshake::accept(acceptor, stream, limits.tls_handshake_timeout).await {
                Ok(tls) => tls,
                Err(failed) => {
                    drop(slot);
                    metrics.connection_open(false);
                    match failed {
                        HandshakeFailed::TimedOut => {
                            let event = ConnectionEvent::TlsHandshakeTimeout;
                            metrics.connection(event);
                            let detail = format!(
                                "connection closed: its TLS handshake was not over within server.tls_handshake_timeout ({:?})",
                                limits.tls_handshake_timeout
                            );
                            warn(&self.throttles[3], event, peer, &detail);
                        }
                        HandshakeFailed::Failed(error) => {
                            tracing::debug!(%error, peer = ?peer, "TLS handshake failed");
                        }
                    }
                    return None;
                }
            },
        };
        let guarded = GuardedStream::new(stream, slot, limits.header_timeout);
        let timed_out = guarded.timed_out_flag();
        self.proxy.process_new(Box::new(guarded), shutdown).await;
        if timed_out.load(Ordering::Acquire) {
            metrics.connection(ConnectionEvent::HeaderTimeout);
            let detail = format!(
                "connection closed: its header section did not arrive within server.header_timeout ({:?})",
                limits.header_timeout
            );
            warn(&self.throttles[2], ConnectionEvent::HeaderTimeout, peer, &detail);
        }
        metrics.connection_open(false);
        None
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max: usize, per_ip: Option<usize>) -> ConnectionLimits {
        ConnectionLimits {
            max,
            per_ip,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            body_min_rate: None,
        }
    }

    #[test]
    fn the_total_cap_refuses_the_connection_over_it_and_a_closed_one_frees_its_slot() {
        let open = Arc::new(OpenConnections::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = open.admit(Some(a), &limits(2, None)).unwrap();
        let _second = open.admit(Some(b), &limits(2, None)).unwrap();
        assert_eq!(open.admit(Some(a), &limits(2, None)).unwrap_err(), OverCap::Total);
        assert_eq!((open.total(), open.from(a), open.from(b)), (2, 1, 1), "a refusal holds nothing");
        drop(first);
        assert_eq!((open.total(), open.from(a)), (1, 0));
        assert!(open.per_ip.get(&crate::policy::ip_key(a)).is_none(), "an address with nothing open is forgotten");
        assert!(open.admit(Some(a), &limits(2, None)).is_ok());
    }

    #[test]
    fn the_per_address_cap_leaves_other_addresses_alone() {
        let open = Arc::new(OpenConnections::default());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let l = limits(100, Some(2));
        let held: Vec<Slot> = (0..2).map(|_| open.admit(Some(a), &l).unwrap()).collect();
        assert_eq!(open.admit(Some(a), &l).unwrap_err(), OverCap::PerIp);
        // The same address written as IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(open.admit(Some(mapped), &l).unwrap_err(), OverCap::PerIp);
        assert_eq!(open.total(), 2, "the refused ones gave their total slot back");
        let other = open.admit(Some(b), &l).unwrap();
        assert_eq!((open.from(a), open.from(b), open.total()), (2, 1, 3));
        drop((held, other));
        assert_eq!(open.total(), 0);
        assert!(open.per_ip.is_empty());
    }

    #[test]
    fn ipv6_clients_are_capped_by_their_slash_64() {
        let open = Arc::new(OpenConnections::default());
        let l = limits(1000, Some(5));
        // 30 addresses of one /64 (one host can take them all): 5 pass, 25 are refused.
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 1..=30u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            match open.admit(Some(ip), &l) {
                Ok(slot) => held.push(slot),
                Err(over) => {
                    assert_eq!(over, OverCap::PerIp);
                    refused += 1;
                }
            }
        }
        assert_eq!((held.len(), refused), (5, 25));
        // Another /64 is another client.
        assert!(open.admit(Some("2001:db8:1:3::1".parse().unwrap()), &l).is_ok());
        assert_eq!(open.from("2001:db8:1:2::ffff".parse().unwrap()), 5, "counted for the whole /64");
    }

    #[test]
    fn a_connection_without_an_address_counts_in_the_total_only() {
        let open = Arc::new(OpenConnections::default());
        let _slot = open.admit(None, &limits(1, Some(1))).unwrap();
        assert_eq!(open.admit(None, &limits(1, Some(1))).unwrap_err(), OverCap::Total);
        assert!(open.per_ip.is_empty());
    }

    #[test]
    fn the_throttle_writes_one_line_a_second_and_counts_the_rest() {
        let t = Throttle::default();
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        // A new second: the next line says how many were not written.
        t.second.store(0, Ordering::Relaxed);
        assert_eq!(t.allow(), Some(2));
    }
}
