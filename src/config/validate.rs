//! Checks the raw file's values section by section into typed configuration, reporting every
//! problem at once, each naming its key and the fix. Absent keys take [`super::defaults`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::defaults as default;
use super::error::{byte_size, duration, err, host_of, nets, parse_url, required, socket, ConfigError};
use super::policy::{validate_forward, validate_forward_auth, validate_ip, validate_operations, validate_rate_limit};
use super::public_url;
use super::raw::{RawConfig, RawDiscovery, RawHealth, RawKeys, RawLog, RawProof, RawServer, RawTimeouts};
use super::tls::{client_tls, listener_tls};
use super::types::{
    Config, ConnectionLimits, HealthConfig, LogSettings, ProofConfig, ProofMode, RouteConfig, RouteHost,
    ServerSettings, Timeouts, UpstreamTarget,
};
use crate::framing::RequestLimits;
use crate::keys::{DiscoveryConfig, Fingerprint, KeysConfig, Resolver, TrustMode};
use crate::logging::{LogFormat, DEFAULT_FILTER};
use crate::paths::PathRules;
use crate::proof::TimeWindow;

/// Collects every problem into `errors`; returns a config only when it found none. `table` is
/// the file as read (after the environment and flags), which `[[routes]]` are layered over.
pub(super) fn validate(mut raw: RawConfig, table: &toml::Table, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let start = errors.len();
    let forward = validate_forward(&raw, errors);
    let forward_auth = validate_forward_auth(&raw, errors);
    let listen = socket(errors, "listen", raw.listen.take().as_deref().unwrap_or(default::LISTEN));
    let admin_listen =
        socket(errors, "admin_listen", raw.admin_listen.take().as_deref().unwrap_or(default::ADMIN_LISTEN));
    if let (Some(a), Some(b)) = (listen, admin_listen) {
        if a == b {
            errors.push(err("admin_listen", format!("{b} is also `listen`; give the admin endpoints their own port")));
        }
    }
    let own = Own { listen, admin_listen, shared: raw.shared.is_some() };
    let timeouts = timeouts(errors, std::mem::take(&mut raw.timeouts));
    let server = server(errors, std::mem::take(&mut raw.server), raw.ip.as_ref().and_then(|ip| ip.max_connections));
    let log = log(errors, std::mem::take(&mut raw.log));
    let shared = super::shared::validate_shared(errors, raw.shared.take());
    let tls = listener_tls(errors, raw.tls.as_ref());
    let upstream_tls = std::mem::take(&mut raw.upstream_tls);
    let routed = raw.routes.is_some();
    // Whether any upstream is https, from the values as written (even where a route has other
    // problems), for `[upstream_tls]`'s own checks.
    let https_used = if routed {
        let top = table.get("upstream");
        let list = table.get("routes").and_then(toml::Value::as_array);
        let values: Vec<&toml::Value> =
            list.into_iter().flatten().filter_map(|route| route.get("upstream").or(top)).collect();
        (!values.is_empty()).then(|| values.into_iter().any(names_https))
    } else {
        raw.upstream.as_ref().map(names_https)
    };
    let routes = match raw.routes.take() {
        Some(list) => super::routes::validate_routes(table, list.len(), own, errors),
        None => validate_route(raw, RouteHost::Any, own, errors).map(|route| vec![route]),
    };
    let upstream_tls =
        client_tls(errors, "upstream_tls", upstream_tls.ca_file, upstream_tls.insecure_skip_verify, https_used);
    if errors.len() > start {
        return None;
    }
    Some(Config {
        listen: listen?,
        admin_listen: admin_listen?,
        routes: routes?,
        routed,
        timeouts: timeouts?,
        server: server?,
        forward,
        forward_auth: forward_auth?,
        log: log?,
        tls: tls?,
        upstream_tls: upstream_tls?,
        shared: shared?,
    })
}

/// Whether an `upstream` value (one URL or a list) names an https URL.
fn names_https(value: &toml::Value) -> bool {
    let https = |v: &toml::Value| v.as_str().is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"));
    match value {
        toml::Value::Array(items) => items.iter().any(https),
        other => https(other),
    }
}

/// wopi-guard's own listeners, which no upstream may point at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Own {
    /// `listen`, when valid.
    pub listen: Option<SocketAddr>,
    /// `admin_listen`, when valid.
    pub admin_listen: Option<SocketAddr>,
    /// `[shared]` is configured (it keeps `rotation`'s trusted sets for every instance).
    pub shared: bool,
}

/// The sections one route is made of, read from `raw` (the top level, or a route layered over
/// it); every problem is named by its key as if at the top level (`config::routes` renames).
pub(super) fn validate_route(
    raw: RawConfig,
    host: RouteHost,
    own: Own,
    errors: &mut Vec<ConfigError>,
) -> Option<RouteConfig> {
    let start = errors.len();
    let ip = validate_ip(&raw, errors);
    let rate_limit = validate_rate_limit(&raw, errors);
    let operations = validate_operations(&raw, errors);
    let upstream = required(errors, "upstream", raw.upstream, "the WOPI host, e.g. \"http://127.0.0.1:8081\"")
        .and_then(|u| upstreams(errors, u));
    for u in upstream.iter().flatten() {
        not_ourselves(errors, u, [("listen", own.listen), ("admin_listen", own.admin_listen)]);
    }
    let health = health(errors, raw.health, upstream.as_ref().is_some_and(|u| u.len() > 1));
    let public_url = required(
        errors,
        "public_url",
        raw.public_url,
        "the URL the office server calls, e.g. \"https://wopi.example.com\"",
    )
    .and_then(|u| public_url::validate(errors, &u));
    let discovery = discovery(errors, raw.discovery);
    let keys = keys(errors, raw.keys, discovery.as_ref().map(|d| d.cache_file.is_some() || own.shared));
    let proof = proof(errors, raw.proof);
    if errors.len() > start {
        return None;
    }
    Some(RouteConfig {
        host,
        upstream: upstream?,
        health: health?,
        public_url: public_url?,
        discovery: discovery?,
        keys: keys?,
        proof: proof?,
        ip: ip?,
        rate_limit: rate_limit?,
        operations: operations?,
    })
}

/// Refuses an upstream that is one of wopi-guard's own listeners.
fn not_ourselves<const N: usize>(
    errors: &mut Vec<ConfigError>,
    u: &UpstreamTarget,
    own: [(&str, Option<SocketAddr>); N],
) {
    let ip =
        if u.host.eq_ignore_ascii_case("localhost") { Some(IpAddr::from([127, 0, 0, 1])) } else { u.host.parse().ok() };
    for (key, own) in own {
        if let (Some(ip), Some(own)) = (ip, own) {
            if points_at(own, ip, u.port) {
                errors.push(err("upstream", format!("{}:{} is wopi-guard's own `{key}` ({own}): every request would come back to wopi-guard; set upstream to the WOPI host's address", u.host, u.port)));
            }
        }
    }
}

/// `[discovery]`.
fn discovery(errors: &mut Vec<ConfigError>, d: RawDiscovery) -> Option<DiscoveryConfig> {
    let start = errors.len();
    let urls = required(
        errors,
        "discovery.urls",
        d.urls,
        "the office server's discovery, e.g. [\"https://office.example.com/hosting/discovery\"]",
    )
    .and_then(|urls| discovery_urls(errors, urls));
    let refresh_interval =
        duration(errors, "discovery.refresh_interval", d.refresh_interval.as_deref(), default::REFRESH_INTERVAL);
    let min_refresh_interval = duration(
        errors,
        "discovery.min_refresh_interval",
        d.min_refresh_interval.as_deref(),
        default::MIN_REFRESH_INTERVAL,
    );
    if let (Some(min), Some(every)) = (min_refresh_interval, refresh_interval) {
        if min < Duration::from_secs(1) {
            errors.push(err("discovery.min_refresh_interval", "must be at least \"1s\": it is what stops bad requests from flooding the office server with discovery fetches".into()));
        } else if min > every {
            errors.push(err("discovery.min_refresh_interval", "must not exceed discovery.refresh_interval".into()));
        }
    }
    let timeout = duration(errors, "discovery.timeout", d.timeout.as_deref(), default::DISCOVERY_TIMEOUT);
    let max_bytes = match d.max_bytes.unwrap_or(default::DISCOVERY_MAX_BYTES) {
        n @ 1024..=67_108_864 => Some(n as usize),
        n => {
            errors.push(err(
                "discovery.max_bytes",
                format!("{n} is out of range; use 1024 to 67108864 (real documents are 10-100 KiB)"),
            ));
            None
        }
    };
    let cache_file = d.cache_file.filter(|f| !f.is_empty()).map(PathBuf::from);
    let https = urls.as_ref().map(|urls| urls.iter().any(|u| u.starts_with("https://")));
    let tls = client_tls(errors, "discovery", d.ca_file, d.insecure_skip_verify, https);
    (errors.len() == start).then_some(())?;
    Some(DiscoveryConfig {
        urls: urls?,
        refresh_interval: refresh_interval?,
        min_refresh_interval: min_refresh_interval?,
        cache_file,
        timeout: timeout?,
        max_bytes: max_bytes?,
        tls: tls?,
        resolve_all: d.resolve_all.unwrap_or(default::RESOLVE_ALL),
        resolver: Resolver::System,
    })
}

/// `[keys]`. `cache_file`: whether `discovery.cache_file` is set (`None`: `[discovery]` is
/// invalid, already reported).
fn keys(errors: &mut Vec<ConfigError>, k: RawKeys, cache_file: Option<bool>) -> Option<KeysConfig> {
    let start = errors.len();
    let retention = duration(errors, "keys.retention", k.retention.as_deref(), default::KEY_RETENTION);
    let trust = match k.trust.as_deref().unwrap_or(default::KEY_TRUST) {
        "discovery" => Some(TrustMode::Discovery),
        "pinned" => Some(TrustMode::Pinned),
        "rotation" => Some(TrustMode::Rotation),
        other => {
            errors.push(err(
                "keys.trust",
                format!("{other:?} is not a trust mode; use \"discovery\" (every key discovery serves), \"pinned\" (only keys.pinned) or \"rotation\" (trust on first use, then only rotations a request proves by signing with the new key and a trusted one)"),
            ));
            None
        }
    };
    let mut pinned = std::collections::BTreeSet::new();
    for (i, text) in k.pinned.unwrap_or_default().iter().enumerate() {
        match Fingerprint::parse(text.trim()) {
            Ok(f) => {
                pinned.insert(f);
            }
            Err(why) => errors.push(err(&format!("keys.pinned[{i}]"), why)),
        }
    }
    if trust == Some(TrustMode::Pinned) && pinned.is_empty() {
        errors.push(err(
            "keys.pinned",
            "keys.trust = \"pinned\" needs at least one fingerprint; `wopi-guard discovery URL` prints each key's"
                .into(),
        ));
    }
    if trust == Some(TrustMode::Rotation) && cache_file == Some(false) {
        errors.push(err("discovery.cache_file", "keys.trust = \"rotation\" needs a cache file or [shared]: the trusted keys must survive a restart, or the first keys seen after it would be trusted again; set discovery.cache_file = \"/var/lib/wopi-guard/keys.json\" (or configure [shared], which keeps them in Redis for every instance)".into()));
    }
    (errors.len() == start).then_some(())?;
    Some(KeysConfig {
        retention: retention?,
        trust: trust?,
        pinned,
        allow_published: k.allow_published.unwrap_or(default::ALLOW_PUBLISHED),
    })
}

/// `[proof]`.
fn proof(errors: &mut Vec<ConfigError>, p: RawProof) -> Option<ProofConfig> {
    let start = errors.len();
    let mode = match p.mode.as_deref().unwrap_or(default::PROOF_MODE) {
        "enforce" => Some(ProofMode::Enforce),
        "monitor" => Some(ProofMode::Monitor),
        other => {
            errors.push(err("proof.mode", format!("\"{other}\" is not a mode; use \"enforce\" or \"monitor\"")));
            None
        }
    };
    let paths = p.paths.unwrap_or_else(|| default::PROOF_PATHS.map(String::from).to_vec());
    let exempt_paths = p.exempt_paths.unwrap_or_default();
    for (key, list) in [("proof.paths", &paths), ("proof.exempt_paths", &exempt_paths)] {
        for (i, path) in list.iter().enumerate() {
            if !path.starts_with('/') {
                errors.push(err(&format!("{key}[{i}]"), format!("\"{path}\" must start with '/'")));
            }
        }
    }
    let max_age = duration(errors, "proof.max_age", p.max_age.as_deref(), default::MAX_AGE);
    let max_future_skew =
        duration(errors, "proof.max_future_skew", p.max_future_skew.as_deref(), default::MAX_FUTURE_SKEW);
    if max_age.is_some_and(|d| d.is_zero()) {
        errors.push(err("proof.max_age", "must be more than zero".into()));
    }
    let reject_status = match p.reject_status.unwrap_or(default::REJECT_STATUS) {
        s @ 400..=599 => Some(s as u16),
        s => {
            errors.push(err(
                "proof.reject_status",
                format!("{s} is not an error status; use 400-599 (Microsoft's validator expects 500)"),
            ));
            None
        }
    };
    let replay_cache = match (
        p.replay_cache.unwrap_or(default::REPLAY_CACHE),
        p.replay_cache_max_entries.unwrap_or(default::TRACKED_ENTRIES),
    ) {
        (_, n) if !(1000..=100_000_000).contains(&n) => {
            errors.push(err(
                "proof.replay_cache_max_entries",
                format!("{n} is out of range; use 1000 to 100000000 (about 70 bytes each)"),
            ));
            None
        }
        (true, n) => Some(Some(n as usize)),
        (false, _) => Some(None),
    };
    let allow_unsigned_from = nets(errors, "proof.allow_unsigned_from", p.allow_unsigned_from.as_ref());
    if errors.len() > start {
        return None;
    }
    Some(ProofConfig {
        mode: mode?,
        paths: PathRules::new(&paths),
        window: TimeWindow { max_age: max_age?, max_future_skew: max_future_skew? },
        reject_status: reject_status?,
        replay_cache: replay_cache?,
        allow_unsigned_from: allow_unsigned_from?,
        exempt_paths: PathRules::new(&exempt_paths),
    })
}

impl ProofConfig {
    /// `[proof]` with every key at its default: what the proxy checks with no `[proof]` table.
    pub fn defaults() -> ProofConfig {
        proof(&mut Vec::new(), RawProof::default()).expect("the defaults validate (a unit test holds them)")
    }
}

/// `[timeouts]`.
fn timeouts(errors: &mut Vec<ConfigError>, t: RawTimeouts) -> Option<Timeouts> {
    let connect =
        duration(errors, "timeouts.upstream_connect", t.upstream_connect.as_deref(), default::UPSTREAM_CONNECT);
    let read = duration(errors, "timeouts.upstream_read", t.upstream_read.as_deref(), default::UPSTREAM_READ);
    let write = duration(errors, "timeouts.upstream_write", t.upstream_write.as_deref(), default::UPSTREAM_WRITE);
    Some(Timeouts { upstream_connect: connect?, upstream_read: read?, upstream_write: write? })
}

/// `[server]`.
/// `[server]`, with `ip.max_connections` (the connection caps are enforced together, below HTTP).
fn server(errors: &mut Vec<ConfigError>, s: RawServer, per_ip: Option<i64>) -> Option<ServerSettings> {
    let threads = match s.threads.unwrap_or(default::THREADS) {
        0 => Some(std::thread::available_parallelism().map_or(2, |n| n.get())),
        n @ 1..=1024 => Some(n as usize),
        n => {
            errors.push(err("server.threads", format!("{n} is out of range; use 1-1024, or 0 for one per core")));
            None
        }
    };
    let grace_period = duration(errors, "server.grace_period", s.grace_period.as_deref(), default::GRACE_PERIOD);
    let mut size = |key: &str, value: Option<i64>, default: i64| match value.unwrap_or(default) {
        n @ 1024..=1_048_575 => Some(n as usize),
        n => {
            errors.push(err(key, format!("{n} is out of range; use 1024 to 1048575 bytes")));
            None
        }
    };
    let max_target_bytes = size("server.max_target_bytes", s.max_target_bytes, default::MAX_TARGET_BYTES);
    let max_header_bytes = size("server.max_header_bytes", s.max_header_bytes, default::MAX_HEADER_BYTES);
    let mut count = |key: &str, value: i64| match value {
        n @ 1..=1_000_000 => Some(n as usize),
        n => {
            errors.push(err(key, format!("{n} is out of range; use 1 to 1000000 connections")));
            None
        }
    };
    let max = count("server.max_connections", s.max_connections.unwrap_or(default::MAX_CONNECTIONS));
    // Outer `None`: an error was reported; inner `None`: no per-address cap.
    let per_ip = match per_ip {
        None => Some(None),
        Some(n) => count("ip.max_connections", n).map(Some),
    };
    let header_timeout =
        duration(errors, "server.header_timeout", s.header_timeout.as_deref(), default::HEADER_TIMEOUT).and_then(|d| {
            if (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
                Some(d)
            } else {
                errors.push(err(
                    "server.header_timeout",
                    format!("{d:?} is out of range; use 100ms to 1h, e.g. \"30s\""),
                ));
                None
            }
        });
    let idle_timeout = duration(errors, "server.idle_timeout", s.idle_timeout.as_deref(), default::IDLE_TIMEOUT)
        .and_then(|d| {
            if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
                // Pingora keeps whole seconds: round up, never to 0 (which would mean forever).
                Some(Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0)))
            } else {
                errors.push(err("server.idle_timeout", format!("{d:?} is out of range; use 1s to 1h, e.g. \"60s\"")));
                None
            }
        });
    let tls_handshake_timeout = duration(
        errors,
        "server.tls_handshake_timeout",
        s.tls_handshake_timeout.as_deref(),
        default::TLS_HANDSHAKE_TIMEOUT,
    )
    .and_then(|d| {
        if (Duration::from_millis(100)..=Duration::from_secs(300)).contains(&d) {
            Some(d)
        } else {
            errors.push(err(
                "server.tls_handshake_timeout",
                format!("{d:?} is out of range; use 100ms to 5m, e.g. \"10s\""),
            ));
            None
        }
    });
    let body_min_rate = match body_rate(s.body_min_rate.as_ref()) {
        Ok(rate) => Some(rate),
        Err(e) => {
            errors.push(err("server.body_min_rate", e));
            None
        }
    };
    Some(ServerSettings {
        threads: threads?,
        grace_period: grace_period?,
        limits: RequestLimits { max_target_bytes: max_target_bytes?, max_header_bytes: max_header_bytes? },
        connections: ConnectionLimits {
            max: max?,
            per_ip: per_ip?,
            header_timeout: header_timeout?,
            idle_timeout: idle_timeout?,
            tls_handshake_timeout: tls_handshake_timeout?,
            body_min_rate: body_min_rate?,
        },
    })
}

/// `server.body_min_rate`: `"1KiB/s"` (a size per second), `0` or `"0"` for off.
fn body_rate(value: Option<&toml::Value>) -> Result<Option<u64>, String> {
    let fix = "write a size per second, e.g. \"1KiB/s\", or 0 to turn it off";
    let bytes = match value {
        None => byte_size(&toml::Value::String(default::BODY_MIN_RATE.trim_end_matches("/s").into()))?,
        Some(toml::Value::Integer(0)) => 0,
        Some(toml::Value::String(text)) => match text.trim().strip_suffix("/s") {
            Some(size) => byte_size(&toml::Value::String(size.into())).map_err(|e| format!("{e}; {fix}"))?,
            None if text.trim() == "0" => 0,
            None => return Err(format!("\"{text}\" has no \"/s\"; {fix}")),
        },
        Some(other) => return Err(format!("{other} is not a rate; {fix}")),
    };
    if bytes > 1 << 30 {
        return Err(format!("{bytes} bytes per second would cut every real upload; {fix}"));
    }
    Ok((bytes > 0).then_some(bytes))
}

/// `[log]`.
fn log(errors: &mut Vec<ConfigError>, l: RawLog) -> Option<LogSettings> {
    let format = match l.format.as_deref().unwrap_or(default::LOG_FORMAT) {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        other => {
            errors.push(err("log.format", format!("\"{other}\" is not a format; use \"json\" or \"text\"")));
            None
        }
    };
    let level = l.level.unwrap_or_else(|| DEFAULT_FILTER.to_string());
    if let Err(e) = crate::logging::check_filter(&level) {
        errors.push(err("log.level", e));
    }
    Some(LogSettings { format: format?, level })
}

/// True when a connection to `ip:port` would reach a socket bound to `own` on this machine: the
/// same address, or any loopback or unspecified address when `own` listens on every address.
/// (Another local interface's address is not known here: the run-time hop marker catches it.)
pub fn points_at(own: SocketAddr, ip: IpAddr, port: u16) -> bool {
    let ip = ip.to_canonical();
    port == own.port()
        && (ip == own.ip().to_canonical() || (own.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
}

/// Members of one pool at most (a request remembers which it tried in 64 bits).
pub const MAX_MEMBERS: usize = 64;

/// `upstream`: one URL, or a list of them (a pool).
fn upstreams(errors: &mut Vec<ConfigError>, value: toml::Value) -> Option<Vec<UpstreamTarget>> {
    const FIX: &str =
        "write the WOPI host as \"http://host:port\", or a pool as [\"http://10.0.0.5:80\", \"http://10.0.0.6:80\"]";
    match value {
        toml::Value::String(text) => Some(vec![upstream(errors, "upstream", &text)?]),
        toml::Value::Array(items) if items.is_empty() => {
            errors.push(err("upstream", format!("is an empty list; {FIX}")));
            None
        }
        toml::Value::Array(items) => {
            let before = errors.len();
            let mut members = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let key = format!("upstream[{i}]");
                match item.as_str() {
                    Some(text) => members.extend(upstream(errors, &key, text)),
                    None => errors.push(err(&key, format!("is not a string; {FIX}"))),
                }
            }
            for (i, m) in members.iter().enumerate() {
                if members[..i].contains(m) {
                    errors.push(err("upstream", format!("lists {m} twice; name each member once")));
                }
            }
            if members.len() > MAX_MEMBERS {
                errors.push(err(
                    "upstream",
                    format!("lists {} members; a pool has at most {MAX_MEMBERS}", members.len()),
                ));
            }
            (errors.len() == before).then_some(members)
        }
        other => {
            errors.push(err("upstream", format!("is a {}; {FIX}", other.type_str())));
            None
        }
    }
}

/// `[health]`: present, or defaulted for a pool.
fn health(errors: &mut Vec<ConfigError>, raw: Option<RawHealth>, pool: bool) -> Option<Option<HealthConfig>> {
    let Some(h) = raw.or_else(|| pool.then(RawHealth::default)) else { return Some(None) };
    let before = errors.len();
    let path = h.path.unwrap_or_else(|| default::HEALTH_PATH.to_string());
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        errors.push(err("health.path", format!("\"{path}\" must be a path starting with '/', e.g. \"/status.php\"")));
    }
    let interval = duration(errors, "health.interval", h.interval.as_deref(), default::HEALTH_INTERVAL);
    let timeout = duration(errors, "health.timeout", h.timeout.as_deref(), default::HEALTH_TIMEOUT);
    let (interval, timeout) = (interval?, timeout?);
    if interval < Duration::from_millis(100) {
        errors.push(err("health.interval", format!("{interval:?} is too short; use 100ms or more, e.g. \"5s\"")));
    }
    if timeout.is_zero() || timeout > interval {
        errors.push(err(
            "health.timeout",
            format!("{timeout:?} must be above zero and at most health.interval ({interval:?})"),
        ));
    }
    if errors.len() > before {
        return None;
    }
    Some(Some(HealthConfig { path, interval, timeout }))
}

fn upstream(errors: &mut Vec<ConfigError>, key: &str, text: &str) -> Option<UpstreamTarget> {
    let u = parse_url(errors, key, text)?;
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        errors.push(err(key, format!("\"{text}\" must be scheme://host[:port] only; requests keep their own path")));
        return None;
    }
    let port = u.port_or_known_default()?;
    Some(UpstreamTarget { tls: u.scheme() == "https", host: host_of(&u), port })
}

fn discovery_urls(errors: &mut Vec<ConfigError>, urls: Vec<String>) -> Option<Vec<String>> {
    if urls.is_empty() {
        errors.push(err("discovery.urls", "is empty; list at least one office server's /hosting/discovery URL".into()));
        return None;
    }
    let before = errors.len();
    for (i, u) in urls.iter().enumerate() {
        parse_url(errors, &format!("discovery.urls[{i}]"), u);
    }
    (errors.len() == before).then_some(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        upstream = "http://127.0.0.1:8081"
        public_url = "https://wopi.example.com:443/"
        [discovery]
        urls = ["https://office.example.com/hosting/discovery"]
    "#;

    #[test]
    fn proof_defaults_are_what_a_file_without_proof_gets() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(ProofConfig::defaults(), c.first_route().proof);
        assert_eq!(c.first_route().proof.window.max_age, Duration::from_secs(20 * 60));
        assert_eq!(c.first_route().proof.window.max_future_skew, Duration::from_secs(5 * 60));
    }

    #[test]
    fn connection_limits_default_and_every_bad_one_is_named() {
        let c = Config::from_toml(MINIMAL).unwrap();
        let expected = ConnectionLimits {
            max: 10_000,
            per_ip: None,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            body_min_rate: Some(1024),
        };
        assert_eq!(c.server.connections, expected);
        let set =
            format!("{MINIMAL}\n[server]\nmax_connections = 50\nheader_timeout = \"2s\"\n[ip]\nmax_connections = 20\n");
        let c = Config::from_toml(&set).unwrap();
        let expected = ConnectionLimits {
            max: 50,
            per_ip: Some(20),
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            body_min_rate: Some(1024),
        };
        assert_eq!(c.server.connections, expected);
        let set = format!("{MINIMAL}\n[server]\ntls_handshake_timeout = \"3s\"\nbody_min_rate = \"64 KiB/s\"\n");
        let c = Config::from_toml(&set).unwrap();
        assert_eq!(c.server.connections.tls_handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.server.connections.body_min_rate, Some(64 << 10));
        for off in ["0", "\"0\"", "\"0B/s\""] {
            let c = Config::from_toml(&format!("{MINIMAL}\n[server]\nbody_min_rate = {off}\n")).unwrap();
            assert_eq!(c.server.connections.body_min_rate, None, "{off}");
        }
        for (bad, needle) in [
            ("\"1KiB\"", "server.body_min_rate: \"1KiB\" has no \"/s\""),
            ("\"fast/s\"", "server.body_min_rate: \"fast\" is not a size"),
            ("2048", "server.body_min_rate: 2048 is not a rate"),
            ("\"2GiB/s\"", "server.body_min_rate: 2147483648 bytes per second"),
        ] {
            let text =
                Config::from_toml(&format!("{MINIMAL}\n[server]\nbody_min_rate = {bad}\n")).unwrap_err().to_string();
            assert!(text.contains(needle) && text.contains("e.g. \"1KiB/s\""), "{bad}: {text}");
        }
        let bad = format!(
            "{MINIMAL}\n[server]\nmax_connections = 0\nheader_timeout = \"10ms\"\ntls_handshake_timeout = \"1h\"\n[ip]\nmax_connections = -1\n"
        );
        let text = Config::from_toml(&bad).unwrap_err().to_string();
        for needle in [
            "server.max_connections: 0 is out of range; use 1 to 1000000",
            "server.header_timeout: 10ms is out of range; use 100ms to 1h",
            "server.tls_handshake_timeout: 3600s is out of range; use 100ms to 5m",
            "ip.max_connections: -1 is out of range",
        ] {
            assert!(text.contains(needle), "{needle}\n{text}");
        }
    }

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.first_route().public_url.as_str(), "https://wopi.example.com:443", "the port as written");
        assert_eq!(c.first_route().public_url.upper(), b"HTTPS://WOPI.EXAMPLE.COM:443");
        assert_eq!(c.first_route().public_url.alt_upper(), Some(&b"HTTPS://WOPI.EXAMPLE.COM"[..]));
        assert_eq!(c.first_route().discovery.refresh_interval, Duration::from_secs(12 * 3600));
        assert_eq!(c.first_route().discovery.min_refresh_interval, Duration::from_secs(30));
        assert_eq!(c.first_route().proof.mode, ProofMode::Enforce);
        assert!(c.first_route().proof.paths.is_protected(b"/wopi/files/1"));
        assert_eq!(c.first_route().proof.window.max_age, Duration::from_secs(1200));
        assert_eq!(c.first_route().proof.window.max_future_skew, Duration::from_secs(300));
        assert_eq!(c.first_route().proof.reject_status, 500);
        assert_eq!(c.first_route().upstream, vec![UpstreamTarget { tls: false, host: "127.0.0.1".into(), port: 8081 }]);
        assert_eq!(c.first_route().health, None, "one upstream and no [health]: not checked");
    }

    #[test]
    fn public_url_keeps_prefix_and_explicit_port() {
        let text = MINIMAL.replace("https://wopi.example.com:443/", "http://[::1]:8443/Office/");
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.first_route().public_url.as_str(), "http://[::1]:8443/Office");
        assert_eq!(c.first_route().public_url.alt_upper(), None, "a non-default port has no other form");
    }

    #[test]
    fn public_url_as_written_first_then_the_default_port_toggled() {
        let forms = |url: &str| {
            let c = Config::from_toml(&MINIMAL.replace("https://wopi.example.com:443/", url)).unwrap();
            let alt = c.first_route().public_url.alt_upper().map(|a| String::from_utf8(a.to_vec()).unwrap());
            (String::from_utf8(c.first_route().public_url.upper().to_vec()).unwrap(), alt)
        };
        let both = |a: &str, b: &str| (a.to_string(), Some(b.to_string()));
        assert_eq!(forms("https://h.example:443/"), both("HTTPS://H.EXAMPLE:443", "HTTPS://H.EXAMPLE"));
        assert_eq!(forms("https://h.example"), both("HTTPS://H.EXAMPLE", "HTTPS://H.EXAMPLE:443"));
        assert_eq!(forms("http://h.example:80/nc/"), both("HTTP://H.EXAMPLE:80/NC", "HTTP://H.EXAMPLE/NC"));
        assert_eq!(forms("http://h.example/nc"), both("HTTP://H.EXAMPLE/NC", "HTTP://H.EXAMPLE:80/NC"));
        assert_eq!(forms("https://[2001:db8::1]:443"), both("HTTPS://[2001:DB8::1]:443", "HTTPS://[2001:DB8::1]"));
        assert_eq!(forms("http://h.example:443"), ("HTTP://H.EXAMPLE:443".to_string(), None));
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let text = r#"
            listen = "nowhere"
            upstream = "ftp://x"
            surprise = 1
            [discovery]
            urls = []
            refresh_interval = "soon"
            min_refresh_interval = "0s"
            [proof]
            mode = "audit"
            paths = ["wopi"]
            reject_status = 200
            colour = "red"
        "#;
        let errors = Config::from_toml(text).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "surprise",
            "proof.colour",
            "listen",
            "upstream",
            "public_url",
            "discovery.urls",
            "discovery.refresh_interval",
            "proof.mode",
            "proof.paths[0]",
            "proof.reject_status",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert!(errors.iter().all(|e| !e.message.is_empty()));
    }

    #[test]
    fn min_refresh_interval_bounds() {
        let text = format!("{MINIMAL}\nmin_refresh_interval = \"0s\"");
        let e = Config::from_toml(&text).unwrap_err();
        assert_eq!(e.0[0].key, "discovery.min_refresh_interval");
    }

    #[test]
    fn type_errors_are_reported_not_panicked() {
        let e = Config::from_toml("listen = 5").unwrap_err();
        assert_eq!(e.0[0].key, "listen");
        assert!(e.0[0].message.contains("wrong type"), "{}", e.0[0].message);
        let e = Config::from_toml("[proof]\npaths = \"/wopi/\"").unwrap_err();
        assert_eq!(e.0[0].key, "proof.paths");
        let e = Config::from_toml("[proof\n").unwrap_err();
        assert_eq!(e.0[0].key, "proof", "the broken table header names its table");
        let e = Config::from_toml("= 1\n").unwrap_err();
        assert_eq!(e.0[0].key, "(file)");
    }

    #[test]
    fn log_settings() {
        let c =
            Config::from_toml(&format!("{MINIMAL}\n[log]\nformat = \"text\"\nlevel = \"debug,pingora=warn\"")).unwrap();
        assert_eq!(c.log, LogSettings { format: LogFormat::Text, level: "debug,pingora=warn".into() });
        let e = Config::from_toml(&format!("{MINIMAL}\n[log]\nformat = \"xml\"\nlevel = \"[\"")).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["log.format", "log.level"]);
    }

    #[test]
    fn same_port_for_admin_is_refused() {
        let text = format!("listen = \"127.0.0.1:9000\"\nadmin_listen = \"127.0.0.1:9000\"\n{MINIMAL}");
        let e = Config::from_toml(&text).unwrap_err();
        assert_eq!(e.0[0].key, "admin_listen");
    }

    #[test]
    fn an_upstream_that_is_wopi_guard_itself_is_refused() {
        let with = |listen: &str, upstream: &str| {
            Config::from_toml(&format!(
                "listen = \"{listen}\"\nadmin_listen = \"127.0.0.1:9090\"\nupstream = \"{upstream}\"\npublic_url = \"https://w.example\"\n[discovery]\nurls = [\"http://127.0.0.1:9980/hosting/discovery\"]"
            ))
        };
        for (listen, upstream) in [
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("0.0.0.0:8080", "http://127.0.0.1:8080"),
            ("0.0.0.0:8080", "http://localhost:8080"),
            ("[::]:8443", "https://[::1]:8443"),
            ("0.0.0.0:80", "http://127.0.0.5"),
            ("127.0.0.1:8080", "http://127.0.0.1:9090"),
        ] {
            let e = with(listen, upstream).expect_err(upstream);
            assert_eq!(e.0[0].key, "upstream", "{listen} {upstream}");
            assert!(e.0[0].message.contains("would come back to wopi-guard"), "{}", e.0[0].message);
        }
        for (listen, upstream) in [
            ("127.0.0.1:8080", "http://127.0.0.2:8080"),
            ("0.0.0.0:8080", "http://127.0.0.1:8081"),
            ("0.0.0.0:8080", "http://nextcloud:8080"),
        ] {
            assert!(with(listen, upstream).is_ok(), "{listen} {upstream}");
        }
    }

    #[test]
    fn keys_in_optional_tables_are_named_as_written_and_each_problem_once() {
        let text = format!("{MINIMAL}\n[ip]\nalow = []\n[rate_limit.per_ip]\nper_second = 1\nburst = 2\nbrust = 2\n");
        let e = Config::from_toml(&text).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["ip.alow", "rate_limit.per_ip.brust"], "{e}");
        let e = Config::from_toml(&format!("{MINIMAL}\n[ip]\nforwarded_header = 5\n")).unwrap_err();
        assert_eq!(e.0[0].key, "ip.forwarded_header", "{e}");
        let text = format!("{MINIMAL}\n[rate_limit.per_ip]\nper_second = 1\n");
        let e = Config::from_toml(&text).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(
            (e.0[0].key.as_str(), e.0[0].message.as_str()),
            ("rate_limit.per_ip", "set both per_second and burst")
        );
        let text = format!("{MINIMAL}\n[rate_limit.per_ip.operations]\nPutFile = {{ burst = 3 }}\n");
        let e = Config::from_toml(&text).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].key, "rate_limit.per_ip.operations.PutFile");
    }

    fn keys_errors(discovery: &str, keys: &str) -> Vec<(String, String)> {
        let text = format!(
            "upstream = \"http://127.0.0.1:8081\"\npublic_url = \"https://wopi.example.com\"\n[discovery]\nurls = [\"https://office.example.com/hosting/discovery\"]\n{discovery}\n[keys]\n{keys}"
        );
        match Config::from_toml(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| (e.key, e.message)).collect(),
        }
    }

    #[test]
    fn keys_defaults_and_the_contract_keys() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.first_route().keys, KeysConfig::default());
        assert_eq!(
            (c.first_route().keys.retention, c.first_route().keys.trust, c.first_route().keys.allow_published),
            (Duration::ZERO, TrustMode::Discovery, false)
        );
        assert!(!c.first_route().discovery.resolve_all);
        let full = "sha256:".to_string() + &"Ab".repeat(32);
        let text = format!(
            "{MINIMAL}\nresolve_all = true\ncache_file = \"/tmp/k.json\"\n[keys]\nretention = \"10m\"\ntrust = \"rotation\"\npinned = [\"{full}\"]\nallow_published = true"
        );
        let c = Config::from_toml(&text).unwrap();
        assert!(c.first_route().discovery.resolve_all);
        assert_eq!(
            (c.first_route().keys.retention, c.first_route().keys.trust, c.first_route().keys.allow_published),
            (Duration::from_secs(600), TrustMode::Rotation, true)
        );
        assert_eq!(
            c.first_route().keys.pinned.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            ["sha256:".to_string() + &"ab".repeat(32)]
        );
    }

    #[test]
    fn every_keys_error_names_its_key_and_the_fix() {
        let e = keys_errors("", "trust = \"tofu\"\nretention = \"soon\"\npinned = [\"sha256:abcd\", \"md5:00\"]");
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["keys.retention", "keys.trust", "keys.pinned[0]", "keys.pinned[1]"], "{e:?}");
        assert!(e[1].1.contains("\"pinned\""), "{e:?}");
        assert!(e[2].1.contains("not 64") && e[2].1.contains("short forms are not accepted"), "{e:?}");
        assert!(e[3].1.contains("sha256sum"), "{e:?}");

        let e = keys_errors("", "trust = \"pinned\"");
        assert_eq!(e.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["keys.pinned"], "{e:?}");
        assert!(e[0].1.contains("wopi-guard discovery"), "{e:?}");

        let e = keys_errors("", "trust = \"rotation\"");
        assert_eq!(e.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["discovery.cache_file"], "{e:?}");
        assert!(e[0].1.contains("restart"), "{e:?}");
        assert!(keys_errors("cache_file = \"/var/lib/wopi-guard/keys.json\"", "trust = \"rotation\"").is_empty());
    }
}
