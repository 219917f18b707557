//! The validated configuration: one typed struct per section of the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::policy::{ForwardAuthConfig, ForwardConfig, IpConfig, OperationRules, PolicyConfig};
use super::public_url::PublicUrl;
use crate::framing::RequestLimits;
use crate::keys::{DiscoveryConfig, KeysConfig};
use crate::logging::LogFormat;
use crate::paths::PathRules;
use crate::policy::{NetList, RateLimitConfig, Scheme};
use crate::proof::TimeWindow;
use crate::trust::ClientTls;

/// Enforce refuses; monitor verifies, logs and forwards anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofMode {
    /// Refuse what does not verify.
    Enforce,
    /// Log what would be refused, forward everything.
    Monitor,
}

/// The WOPI host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// https?
    pub tls: bool,
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// Port (default 80/443).
    pub port: u16,
}

impl std::fmt::Display for UpstreamTarget {
    /// `host:port`, as the metrics and logs name a member.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `[health]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Path asked for.
    pub path: String,
    /// Between two checks.
    pub interval: Duration,
    /// Longest wait for an answer.
    pub timeout: Duration,
}

/// `[proof]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofConfig {
    /// Enforce or monitor.
    pub mode: ProofMode,
    /// Protected paths.
    pub paths: PathRules,
    /// Timestamp window.
    pub window: TimeWindow,
    /// Status of a refused proof.
    pub reject_status: u16,
    /// `replay_cache`: at most this many remembered proofs; `None`: no replay protection.
    pub replay_cache: Option<usize>,
    /// `allow_unsigned_from`: a protected request with no proof headers passes from these.
    pub allow_unsigned_from: NetList,
    /// `exempt_paths`: never proof-checked (still IP- and rate-limited).
    pub exempt_paths: PathRules,
}

/// `[timeouts]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to the WOPI host.
    pub upstream_connect: Duration,
    /// Each read from the WOPI host.
    pub upstream_read: Duration,
    /// Each write to the WOPI host.
    pub upstream_write: Duration,
}

/// `[server]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Proxy worker threads.
    pub threads: usize,
    /// Drain time on SIGTERM.
    pub grace_period: Duration,
    /// Request target and header section limits.
    pub limits: RequestLimits,
    /// Caps on open connections, and the header-section deadline.
    pub connections: ConnectionLimits,
}

/// `server.max_connections`, `ip.max_connections`, `server.header_timeout`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, in total.
    pub max: usize,
    /// Connections open at once per client address (the socket peer); `None`: no cap.
    pub per_ip: Option<usize>,
    /// From a connection's start, or a kept-alive connection's first byte of the next request,
    /// to the end of the header section.
    pub header_timeout: Duration,
    /// `server.idle_timeout`: a kept-alive connection waits at most this long for its next
    /// request (whole seconds, at least 1).
    pub idle_timeout: Duration,
    /// `server.tls_handshake_timeout`: from accept to the end of a client's TLS handshake (the
    /// connection holds its slots meanwhile).
    pub tls_handshake_timeout: Duration,
    /// `server.body_min_rate`: bytes per second a request body must average over
    /// [`BODY_RATE_WINDOW`]; `None`: off.
    pub body_min_rate: Option<u64>,
}

/// The window `server.body_min_rate` is averaged over: a body read that waits longer for its
/// next byte is cut too.
pub const BODY_RATE_WINDOW: Duration = Duration::from_secs(10);

/// Which requests a route serves, by the request's Host (port ignored, any case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteHost {
    /// `*`: any host no other route names (and the one route of a file without `[[routes]]`).
    Any,
    /// This host name or address, lowercase, without a port or a trailing dot.
    Name(String),
}

impl std::fmt::Display for RouteHost {
    /// As written in the file: the name, or `*`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteHost::Any => f.write_str("*"),
            RouteHost::Name(name) => f.write_str(name),
        }
    }
}

/// One WOPI host behind wopi-guard: where its requests go, whose keys verify them, and the policy
/// they meet. A file without `[[routes]]` has one, from the top level, serving every Host.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// The Host it serves.
    pub host: RouteHost,
    /// The WOPI host, or the members of its pool (at least one).
    pub upstream: Vec<UpstreamTarget>,
    /// `[health]`: active checks of the upstream's members; `None`: not checked (one upstream
    /// and no `[health]`).
    pub health: Option<HealthConfig>,
    /// Base of every signed URL.
    pub public_url: PublicUrl,
    /// Key sources.
    pub discovery: DiscoveryConfig,
    /// `[keys]`: which served keys are trusted, and how long they are kept.
    pub keys: KeysConfig,
    /// Proof checks.
    pub proof: ProofConfig,
    /// `[ip]`: who may connect, and which hop's forwarding header is believed.
    pub ip: IpConfig,
    /// `[rate_limit]`.
    pub rate_limit: RateLimitConfig,
    /// `[operations]`: per-operation rules.
    pub operations: OperationRules,
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// The WOPI hosts: one route per `[[routes]]` table, or one from the top level. Never empty.
    pub routes: Vec<RouteConfig>,
    /// `[[routes]]` is in the file: requests are routed by Host (an unknown one gets 421), and
    /// metrics and access lines name the route.
    pub routed: bool,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Process settings.
    pub server: ServerSettings,
    /// `[forward]`: what is added to forwarded requests.
    pub forward: ForwardConfig,
    /// `[forward_auth]`.
    pub forward_auth: ForwardAuthConfig,
    /// Log format and filter.
    pub log: LogSettings,
    /// TLS on the proxy listener: (certificate chain, private key) PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How the WOPI host's certificate is checked.
    pub upstream_tls: ClientTls,
    /// `[shared]`: rate limits and replay cache on Redis; `None`: in this process.
    pub shared: Option<crate::shared::SharedConfig>,
}

impl Config {
    /// The gate's view of `route`'s policy sections with the process-wide ones; the listener's
    /// scheme follows `[tls]`.
    pub fn policy(&self, route: &RouteConfig) -> PolicyConfig {
        PolicyConfig {
            ip: route.ip.clone(),
            rate_limit: route.rate_limit.clone(),
            operations: route.operations.clone(),
            forward: self.forward.clone(),
            forward_auth: self.forward_auth.clone(),
            listener_scheme: Scheme::of_listener(self.tls.is_some()),
        }
    }

    /// The first route: the only one of a file without `[[routes]]`.
    pub fn first_route(&self) -> &RouteConfig {
        &self.routes[0]
    }
}

/// `[log]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// EnvFilter directives.
    pub level: String,
}
