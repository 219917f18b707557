//! Every default of the configuration file, in one place: what a key means when it is absent.
//! `docs/configuration.md` documents the same values; `validate` never writes a literal.

/// `listen`.
pub const LISTEN: &str = "0.0.0.0:8080";
/// `admin_listen`.
pub const ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// `discovery.refresh_interval`.
pub const REFRESH_INTERVAL: &str = "12h";
/// `discovery.min_refresh_interval`.
pub const MIN_REFRESH_INTERVAL: &str = "30s";
/// `discovery.timeout`.
pub const DISCOVERY_TIMEOUT: &str = "10s";
/// `discovery.max_bytes`.
pub const DISCOVERY_MAX_BYTES: u64 = 4 << 20;
/// `discovery.resolve_all`.
pub const RESOLVE_ALL: bool = false;

/// `keys.retention`.
pub const KEY_RETENTION: &str = "0s";
/// `keys.trust`.
pub const KEY_TRUST: &str = "discovery";
/// `keys.allow_published`.
pub const ALLOW_PUBLISHED: bool = false;

/// `proof.mode`.
pub const PROOF_MODE: &str = "enforce";
/// `proof.paths`.
pub const PROOF_PATHS: [&str; 1] = ["/wopi/"];
/// `proof.max_age`.
pub const MAX_AGE: &str = "20m";
/// `proof.max_future_skew`.
pub const MAX_FUTURE_SKEW: &str = "5m";
/// `proof.reject_status`: what Microsoft's validator expects.
pub const REJECT_STATUS: i64 = 500;
/// `proof.replay_cache`.
pub const REPLAY_CACHE: bool = false;

/// `proof.replay_cache_max_entries` and `rate_limit.max_tracked_keys`: each bounded map holds at
/// most this many entries (some tens of bytes each).
pub const TRACKED_ENTRIES: i64 = 1_000_000;
/// `rate_limit.failed_proofs.burst`: a genuine signer whose proofs fail during a key change gets
/// this many before the re-fetch has the new key, far more than it needs.
pub const FAILED_PROOFS_BURST: i64 = 60;
/// `rate_limit.failed_proofs.per_second`.
pub const FAILED_PROOFS_PER_SECOND: f64 = 1.0;

/// `timeouts.upstream_connect`.
pub const UPSTREAM_CONNECT: &str = "5s";
/// `timeouts.upstream_read`.
pub const UPSTREAM_READ: &str = "300s";
/// `timeouts.upstream_write`.
pub const UPSTREAM_WRITE: &str = "300s";

/// `server.threads`: 0 is one per core.
pub const THREADS: i64 = 0;
/// `server.grace_period`.
pub const GRACE_PERIOD: &str = "10s";
/// `server.max_target_bytes`.
pub const MAX_TARGET_BYTES: i64 = 16384;
/// `server.max_header_bytes`.
pub const MAX_HEADER_BYTES: i64 = 65536;

/// `server.max_connections`.
pub const MAX_CONNECTIONS: i64 = 10_000;
/// `server.header_timeout`: nginx's `client_header_timeout` is 60 s per read; this bounds the
/// whole section.
pub const HEADER_TIMEOUT: &str = "30s";
/// `server.idle_timeout`: nginx's `keepalive_timeout` is 75 s; Pingora 0.9 keeps an HTTP/1.1
/// connection open forever between requests unless told.
pub const IDLE_TIMEOUT: &str = "60s";
/// `server.tls_handshake_timeout`: a real client's handshake takes a few round trips.
pub const TLS_HANDSHAKE_TIMEOUT: &str = "10s";
/// `server.body_min_rate`: a WOPI client on a slow line still sends far more than 1 KiB/s.
pub const BODY_MIN_RATE: &str = "1KiB/s";

/// `health.path`.
pub const HEALTH_PATH: &str = "/";
/// `health.interval`.
pub const HEALTH_INTERVAL: &str = "5s";
/// `health.timeout`.
pub const HEALTH_TIMEOUT: &str = "2s";

/// `log.format`.
pub const LOG_FORMAT: &str = "json";

/// `[shared] timeout`: per Redis round trip.
pub const SHARED_TIMEOUT: &str = "50ms";
/// `[shared] on_error`.
pub const SHARED_ON_ERROR: &str = "local";
/// `[shared] instances`.
pub const SHARED_INSTANCES: i64 = 1;
/// `[shared] key_prefix`.
pub const SHARED_KEY_PREFIX: &str = "wopi-guard";
