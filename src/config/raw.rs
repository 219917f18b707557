//! The configuration file as written: every field optional, each documented. Unknown keys are
//! collected (all of them, not only the first) by `serde_ignored` in `validate.rs`.

use serde::Deserialize;

/// Top level of the TOML file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    /// Where WOPI clients connect, `IP:port`.
    pub listen: Option<String>,
    /// `/ping` and `/ready`, `IP:port`; never the proxy port.
    pub admin_listen: Option<String>,
    /// The WOPI host, `http://host:port` or `https://host:port`.
    pub upstream: Option<String>,
    /// `scheme://host[:port][/prefix]` as the office server calls us.
    pub public_url: Option<String>,
    /// Where the proof keys come from.
    #[serde(default)]
    pub discovery: RawDiscovery,
    /// What is checked.
    #[serde(default)]
    pub proof: RawProof,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Process settings.
    #[serde(default)]
    pub server: RawServer,
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
}
