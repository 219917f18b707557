//! The configuration file as written: every field optional, each documented. Unknown keys are
//! collected (all of them, not only the first) by `serde_ignored` in `load.rs`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Top level of the TOML file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    /// Where WOPI clients connect, `IP:port`.
    pub listen: Option<String>,
    /// `/ping` and `/ready`, `IP:port`; never the proxy port.
    pub admin_listen: Option<String>,
    /// The WOPI host, `http://host:port` or `https://host:port`, or a list of them: a pool.
    /// Read as a value so that a wrong type gets this key's own message.
    pub upstream: Option<toml::Value>,
    /// `scheme://host[:port][/prefix]` as the office server calls us.
    pub public_url: Option<String>,
    /// Where the proof keys come from.
    #[serde(default)]
    pub discovery: RawDiscovery,
    /// Which of the served keys are trusted, and how long they are kept.
    #[serde(default)]
    pub keys: RawKeys,
    /// What is checked.
    #[serde(default)]
    pub proof: RawProof,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Process settings.
    #[serde(default)]
    pub server: RawServer,
    /// Client address filter.
    pub ip: Option<RawIp>,
    /// Active checks of upstream pool members.
    pub health: Option<RawHealth>,
    /// Rate limits.
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    /// Per-operation rules.
    #[serde(default)]
    pub operations: RawOperations,
    /// Headers toward the upstream.
    #[serde(default)]
    pub forward: RawForward,
    /// Log format and level.
    #[serde(default)]
    pub log: RawLog,
    /// The forward-auth endpoint for nginx / Traefik / Envoy.
    #[serde(default)]
    pub forward_auth: RawForwardAuth,
    /// TLS on the proxy listener.
    pub tls: Option<RawTls>,
    /// How the WOPI host's certificate is checked (https upstream).
    #[serde(default)]
    pub upstream_tls: RawClientTls,
    /// Rate limits and the replay cache shared by several instances on Redis.
    pub shared: Option<RawShared>,
    /// Several WOPI hosts, chosen by the request's Host; the sections above are their defaults.
    pub routes: Option<Vec<RawRoute>>,
}

/// `[[routes]]`: one WOPI host. Read for its key names and types; its values are layered over
/// the top level's (`config::routes`) before they are validated.
#[derive(Debug, Default, Deserialize)]
pub struct RawRoute {
    /// The request's Host this route serves (port ignored, any case), or `*` for any other.
    pub host: Option<String>,
    /// `scheme://host[:port][/prefix]` as the route's office server calls it.
    pub public_url: Option<String>,
    /// The route's WOPI host, or a list of them: a pool.
    pub upstream: Option<toml::Value>,
    /// The route's own office servers.
    pub discovery: Option<RawDiscovery>,
    /// Which of the route's served keys are trusted.
    pub keys: Option<RawKeys>,
    /// What is checked on the route.
    pub proof: Option<RawProof>,
    /// The route's client address filter.
    pub ip: Option<RawIp>,
    /// The route's rate limits.
    pub rate_limit: Option<RawRateLimit>,
    /// The route's per-operation rules.
    pub operations: Option<RawOperations>,
    /// Active checks of the route's pool members.
    pub health: Option<RawHealth>,
}

/// `[shared]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawShared {
    /// `redis://[:password@]host:port[/db]` or `rediss://` (TLS).
    pub redis: Option<String>,
    /// `redis` is one seed node of a Redis Cluster.
    pub cluster: Option<bool>,
    /// Longest wait per round trip.
    pub timeout: Option<String>,
    /// `local`, `deny` or `allow`: what applies while Redis fails.
    pub on_error: Option<String>,
    /// Expected number of instances (budgets are divided by it under `on_error = "local"`).
    pub instances: Option<i64>,
    /// Prefix of every Redis key.
    pub key_prefix: Option<String>,
    /// PEM CA certificates for `rediss://` (else the system roots).
    pub ca_file: Option<String>,
    /// The secret every instance hashes key material with (at least 16 bytes).
    pub hash_key: Option<String>,
    /// A file holding `hash_key` instead (trailing whitespace ignored).
    pub hash_key_file: Option<String>,
    /// Redis Sentinel nodes (`host:port`) that find the master, instead of a fixed node.
    pub sentinels: Option<Vec<String>>,
    /// The master's name the sentinels monitor (required with `sentinels`).
    pub sentinel_master: Option<String>,
}

/// `[upstream_tls]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawClientTls {
    /// PEM CA certificates to trust instead of the system's roots.
    pub ca_file: Option<String>,
    /// Accept any certificate. Tests only.
    pub insecure_skip_verify: Option<bool>,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: Option<String>,
    /// PEM private key.
    pub key_file: Option<String>,
}

/// `[forward_auth]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawForwardAuth {
    /// Path on the proxy listener that answers auth subrequests; absent: no endpoint.
    pub path: Option<String>,
    /// Which header pair carries the original request: `x-original-uri` (with
    /// `X-Original-Method`; nginx, the default) or `x-forwarded-uri` (with `X-Forwarded-Method`;
    /// Traefik). Only that pair is read.
    pub uri_header: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    /// `json` or `text`.
    pub format: Option<String>,
    /// Level or EnvFilter directives (`info`, `debug,pingora=warn`); `WOPI_GUARD_LOG` wins.
    pub level: Option<String>,
}

/// `[health]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawHealth {
    /// Path each member is asked for (`GET`); any answer below 500 is healthy.
    pub path: Option<String>,
    /// Time between two checks of a member.
    pub interval: Option<String>,
    /// Longest wait for a member's answer.
    pub timeout: Option<String>,
}

/// `[ip]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawIp {
    /// Only these client networks (CIDR); absent: no filter; empty: nobody.
    pub allow: Option<Vec<String>>,
    /// Peers whose forwarding header is believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// The one forwarding header trusted proxies maintain: `x-forwarded-for` (default) or
    /// `forwarded` (RFC 7239). The other is never read and is removed before forwarding.
    pub forwarded_header: Option<String>,
    /// Connections open at once per client address (the socket peer); absent: no cap.
    pub max_connections: Option<i64>,
}

/// `[rate_limit]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawRateLimit {
    /// Keys tracked per limiter at most.
    pub max_tracked_keys: Option<i64>,
    /// Per client address.
    pub per_ip: Option<RawLimit>,
    /// Per access token hash.
    pub per_token: Option<RawLimit>,
    /// Per WOPI file id.
    pub per_file: Option<RawLimit>,
    /// Per client address, spent by protected requests that fail verification.
    pub failed_proofs: Option<RawBudget>,
}

/// `[rate_limit.per_*]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawLimit {
    /// Sustained requests per second (integer or decimal).
    pub per_second: Option<toml::Value>,
    /// Requests at once.
    pub burst: Option<i64>,
    /// Stricter budgets per operation: `PutFile = { per_second = 1, burst = 5 }`.
    pub operations: Option<BTreeMap<String, RawBudget>>,
}

/// One per-operation budget.
#[derive(Debug, Default, Deserialize)]
pub struct RawBudget {
    /// Sustained requests per second.
    pub per_second: Option<toml::Value>,
    /// Requests at once.
    pub burst: Option<i64>,
}

/// `[operations]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawOperations {
    /// Operations refused outright.
    pub deny: Option<Vec<String>>,
    /// Largest request body per operation: bytes, or "512MiB".
    pub max_body: Option<BTreeMap<String, toml::Value>>,
    /// Upstream read timeout per operation.
    pub read_timeout: Option<BTreeMap<String, String>>,
}

/// `[forward]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawForward {
    /// Send `X-WOPI-Guard-Verified: proof|unsigned-allowed` upstream.
    pub verified_header: Option<bool>,
    /// The only headers `access_header` may set (default `["Authorization"]`).
    pub access_header_names: Option<Vec<String>>,
}

/// `[discovery]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawDiscovery {
    /// Discovery URLs of one or more office servers; keys of all are accepted.
    pub urls: Option<Vec<String>>,
    /// Periodic refresh, humantime ("12h").
    pub refresh_interval: Option<String>,
    /// At most one failure-triggered re-fetch per source per this long.
    pub min_refresh_interval: Option<String>,
    /// Last-known-good keys survive a restart here.
    pub cache_file: Option<String>,
    /// Whole-fetch timeout.
    pub timeout: Option<String>,
    /// Largest accepted discovery document, bytes.
    pub max_bytes: Option<u64>,
    /// PEM CA certificates to trust instead of the system's roots (https discovery).
    pub ca_file: Option<String>,
    /// Accept any certificate. Tests only.
    pub insecure_skip_verify: Option<bool>,
    /// Fetch each URL from every address its host name resolves to (one office node each).
    pub resolve_all: Option<bool>,
}

/// `[keys]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawKeys {
    /// Keep a key this long after its source stopped serving it, humantime.
    pub retention: Option<String>,
    /// `discovery`, `pinned` or `rotation`.
    pub trust: Option<String>,
    /// `sha256:<64 hex>` SPKI fingerprints.
    pub pinned: Option<Vec<String>>,
    /// Accept keys whose private half is public.
    pub allow_published: Option<bool>,
}

/// `[proof]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawProof {
    /// `enforce` or `monitor`.
    pub mode: Option<String>,
    /// Protected path prefixes.
    pub paths: Option<Vec<String>>,
    /// Oldest accepted timestamp.
    pub max_age: Option<String>,
    /// Furthest-ahead accepted timestamp.
    pub max_future_skew: Option<String>,
    /// Status of a refused proof.
    pub reject_status: Option<i64>,
    /// Requests with no proof headers at all pass only from these networks.
    pub allow_unsigned_from: Option<Vec<String>>,
    /// Path prefixes never proof-checked (still IP- and rate-limited).
    pub exempt_paths: Option<Vec<String>>,
    /// Refuse a signed request whose proof already passed within the timestamp window.
    pub replay_cache: Option<bool>,
    /// Most proofs remembered; past it, new proofs are refused until some expire.
    pub replay_cache_max_entries: Option<i64>,
}

/// `[timeouts]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawTimeouts {
    /// Connecting to the WOPI host.
    pub upstream_connect: Option<String>,
    /// Longest wait for each read from the WOPI host.
    pub upstream_read: Option<String>,
    /// Longest wait for each write to the WOPI host.
    pub upstream_write: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    /// Worker threads of the proxy.
    pub threads: Option<i64>,
    /// On SIGTERM, how long in-flight requests may take to finish.
    pub grace_period: Option<String>,
    /// Longest request target, bytes (414 beyond).
    pub max_target_bytes: Option<i64>,
    /// Largest request header section, bytes (431 beyond).
    pub max_header_bytes: Option<i64>,
    /// Connections open at once, in total.
    pub max_connections: Option<i64>,
    /// The whole header section of a request must arrive within this.
    pub header_timeout: Option<String>,
    /// A kept-alive client connection with no request under way is closed after this.
    pub idle_timeout: Option<String>,
    /// A client's TLS handshake must be over within this.
    pub tls_handshake_timeout: Option<String>,
    /// A request body slower than this (averaged over 10 s) is cut; 0 = off.
    pub body_min_rate: Option<toml::Value>,
}
