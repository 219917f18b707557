//! Turns the raw file into typed configuration, reporting every problem at once, each naming
//! its key and the fix.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::layers::{apply, Override};
use super::policy::{validate_policy, PolicyConfig};
use super::raw::RawConfig;
use super::tls::{client_tls, listener_tls, ClientTls};
use crate::framing::RequestLimits;
use crate::logging::{LogFormat, DEFAULT_FILTER};
use crate::paths::PathRules;
use crate::proof::TimeWindow;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, dotted (`proof.max_age`), or `(file)` for the file as a whole.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", e.key, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

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

/// `public_url` without a trailing `/`, its port as written, and the other form signers may use:
/// Collabora and .NET drop a default port from the URL they sign, ONLYOFFICE keeps one its host
/// wrote (docs/proof.md §4). The form as configured is tried first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    text: String,
    upper: Box<[u8]>,
    alt_upper: Option<Box<[u8]>>,
}

impl PublicUrl {
    /// The base URL as configured (normalised).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Uppercased bytes, the prefix of every signed URL.
    pub fn upper(&self) -> &[u8] {
        &self.upper
    }

    /// Parses a base URL as `public_url` is parsed: `scheme://host[:port][/prefix]`.
    pub fn parse(text: &str) -> Result<PublicUrl, String> {
        let mut errors = Vec::new();
        public_url(&mut errors, text)
            .ok_or_else(|| errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; "))
    }

    /// The form a proof verified over, in words.
    pub fn form_label(&self, form: crate::proof::UrlForm) -> &'static str {
        match form {
            crate::proof::UrlForm::AsConfigured => "as_configured",
            crate::proof::UrlForm::DefaultPortToggled if self.default_port_written() => "default_port_dropped",
            crate::proof::UrlForm::DefaultPortToggled => "default_port_added",
        }
    }

    /// True when `public_url` writes its default port (the other form drops it).
    pub fn default_port_written(&self) -> bool {
        self.alt_upper.as_ref().is_some_and(|alt| alt.len() < self.upper.len())
    }

    /// The other form, uppercased: the default port dropped when `public_url` writes it, added
    /// when it does not; `None` for a non-default port.
    pub fn alt_upper(&self) -> Option<&[u8]> {
        self.alt_upper.as_deref()
    }
}

/// The port written in a URL's authority, as text (`url` forgets a default one).
fn written_port(text: &str) -> Option<&str> {
    let rest = text.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_end = match host_port.strip_prefix('[') {
        Some(v6) => v6.find(']')? + 2,
        None => host_port.find(':').unwrap_or(host_port.len()),
    };
    host_port[host_end..].strip_prefix(':').filter(|p| !p.is_empty())
}

/// `[discovery]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Discovery URLs.
    pub urls: Vec<String>,
    /// Periodic refresh.
    pub refresh_interval: Duration,
    /// Failure-triggered re-fetch at most this often per source.
    pub min_refresh_interval: Duration,
    /// Key cache.
    pub cache_file: Option<PathBuf>,
    /// Whole-fetch timeout.
    pub timeout: Duration,
    /// Largest accepted document.
    pub max_bytes: usize,
    /// How the office servers' certificates are checked.
    pub tls: ClientTls,
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
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// WOPI host.
    pub upstream: UpstreamTarget,
    /// Base of every signed URL.
    pub public_url: PublicUrl,
    /// Key sources.
    pub discovery: DiscoveryConfig,
    /// Proof checks.
    pub proof: ProofConfig,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Process settings.
    pub server: ServerSettings,
    /// IP filter, rate limits, operation rules, forwarding headers.
    pub policy: PolicyConfig,
    /// Log format and filter.
    pub log: LogSettings,
    /// TLS on the proxy listener: (certificate chain, private key) PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How the WOPI host's certificate is checked.
    pub upstream_tls: ClientTls,
}

/// `[log]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// EnvFilter directives.
    pub level: String,
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        Config::load_layered(Some(path), &[])
    }

    /// Reads the file (if any), applies `overrides` (environment, then flags: later wins) and
    /// validates the result. Problems with an overridden key name its origin.
    pub fn load_layered(path: Option<&std::path::Path>, overrides: &[Override]) -> Result<Config, ConfigErrors> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ConfigErrors(vec![err(
                    "(file)",
                    format!("cannot read {}: {e}; pass an existing TOML file to --config", path.display()),
                )])
            })?,
            None => String::new(),
        };
        Config::from_toml_with(&text, overrides)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml_with(text, &[])
    }

    /// Parses TOML text, applies `overrides`, validates.
    pub fn from_toml_with(text: &str, overrides: &[Override]) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut table: toml::Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(e) => {
                return Err(ConfigErrors(vec![err("(file)", format!("not valid TOML: {}", e.to_string().trim()))]));
            }
        };
        apply(&mut table, overrides, &mut errors);
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path| unknown.push(key_path(&path.to_string()));
        let ignored = serde_ignored::Deserializer::new(toml::Value::Table(table), &mut note_unknown);
        let raw: Result<RawConfig, _> = serde_path_to_error::deserialize(ignored);
        for key in unknown {
            errors.push(err(&key, "unknown key; remove it or check its spelling (see docs/configuration.md)".into()));
        }
        let validated = match raw {
            Ok(raw) => validate(raw, &mut errors),
            Err(e) => {
                let key = key_path(&e.path().to_string());
                let key = if key == "." || key.is_empty() { "(file)".to_string() } else { key };
                errors.push(err(&key, format!("wrong type: {}", e.inner().to_string().trim())));
                None
            }
        };
        for e in &mut errors {
            if let Some(o) =
                overrides.iter().rev().find(|o| e.key == o.key() || e.key.starts_with(&format!("{}[", o.key())))
            {
                e.message.push_str(&format!(" (set by {})", o.origin));
            }
        }
        match validated {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Things that are allowed but probably not meant.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.proof.paths.protects_nothing() {
            out.push("proof.paths is empty: no request is proof-checked".into());
        }
        if self.proof.mode == ProofMode::Monitor {
            out.push("proof.mode = \"monitor\": requests that fail the proof are forwarded anyway".into());
        }
        if self.policy.allow == crate::policy::AllowList::Only(crate::policy::NetList::default()) {
            out.push("ip.allow is empty: every client is refused (remove [ip] allow to filter nobody)".into());
        }
        if !self.policy.allow_unsigned_from.is_empty() {
            out.push("proof.allow_unsigned_from: requests without proof headers pass from these networks (Collabora with access_header)".into());
        }
        if self.discovery.urls.iter().any(|u| u.starts_with("http://")) {
            out.push("discovery.urls: plain http lets anyone on the path substitute the proof keys; use https".into());
        }
        for (key, tls) in [("upstream_tls", &self.upstream_tls), ("discovery", &self.discovery.tls)] {
            if tls.insecure_skip_verify {
                out.push(format!("{key}.insecure_skip_verify = true: any certificate is accepted, so anyone on the path can impersonate the server; use ca_file instead"));
            }
        }
        if let Some(dir) = self.discovery.cache_file.as_ref().and_then(|f| f.parent()) {
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                out.push(format!(
                    "discovery.cache_file: directory {} does not exist; the cache will not be written",
                    dir.display()
                ));
            }
        }
        out
    }
}

pub(super) fn err(key: &str, message: String) -> ConfigError {
    ConfigError { key: key.to_string(), message }
}

/// Collects every problem into `errors`; returns a config only when it found none.
fn validate(raw: RawConfig, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let start = errors.len();
    let policy = validate_policy(&raw, errors);
    let listen = socket(errors, "listen", raw.listen.as_deref().unwrap_or("0.0.0.0:8080"));
    let admin_listen = socket(errors, "admin_listen", raw.admin_listen.as_deref().unwrap_or("127.0.0.1:9090"));
    if let (Some(a), Some(b)) = (listen, admin_listen) {
        if a == b {
            errors.push(err("admin_listen", format!("{b} is also `listen`; give the admin endpoints their own port")));
        }
    }
    let upstream = required(errors, "upstream", raw.upstream, "the WOPI host, e.g. \"http://127.0.0.1:8081\"")
        .and_then(|u| upstream(errors, &u));
    if let Some(u) = &upstream {
        for (key, own) in [("listen", listen), ("admin_listen", admin_listen)] {
            let ip = if u.host.eq_ignore_ascii_case("localhost") {
                Some(IpAddr::from([127, 0, 0, 1]))
            } else {
                u.host.parse().ok()
            };
            if let (Some(ip), Some(own)) = (ip, own) {
                if points_at(own, ip, u.port) {
                    errors.push(err("upstream", format!("{}:{} is wopi-guard's own `{key}` ({own}): every request would come back to wopi-guard; set upstream to the WOPI host's address", u.host, u.port)));
                }
            }
        }
    }
    let public_url = required(
        errors,
        "public_url",
        raw.public_url,
        "the URL the office server calls, e.g. \"https://wopi.example.com\"",
    )
    .and_then(|u| public_url(errors, &u));

    let d = raw.discovery;
    let urls = required(
        errors,
        "discovery.urls",
        d.urls,
        "the office server's discovery, e.g. [\"https://office.example.com/hosting/discovery\"]",
    )
    .and_then(|urls| discovery_urls(errors, urls));
    let refresh_interval = duration(errors, "discovery.refresh_interval", d.refresh_interval.as_deref(), "12h");
    let min_refresh_interval =
        duration(errors, "discovery.min_refresh_interval", d.min_refresh_interval.as_deref(), "30s");
    if let (Some(min), Some(every)) = (min_refresh_interval, refresh_interval) {
        if min < Duration::from_secs(1) {
            errors.push(err("discovery.min_refresh_interval", "must be at least \"1s\": it is what stops bad requests from flooding the office server with discovery fetches".into()));
        } else if min > every {
            errors.push(err("discovery.min_refresh_interval", "must not exceed discovery.refresh_interval".into()));
        }
    }
    let fetch_timeout = duration(errors, "discovery.timeout", d.timeout.as_deref(), "10s");
    let max_bytes = match d.max_bytes.unwrap_or(4 << 20) {
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
    let discovery_https = urls.as_ref().map(|urls| urls.iter().any(|u| u.starts_with("https://")));
    let discovery_tls = client_tls(errors, "discovery", d.ca_file, d.insecure_skip_verify, discovery_https);

    let p = raw.proof;
    let mode = match p.mode.as_deref().unwrap_or("enforce") {
        "enforce" => Some(ProofMode::Enforce),
        "monitor" => Some(ProofMode::Monitor),
        other => {
            errors.push(err("proof.mode", format!("\"{other}\" is not a mode; use \"enforce\" or \"monitor\"")));
            None
        }
    };
    let paths = p.paths.unwrap_or_else(|| vec!["/wopi/".into()]);
    for (i, path) in paths.iter().enumerate() {
        if !path.starts_with('/') {
            errors.push(err(&format!("proof.paths[{i}]"), format!("\"{path}\" must start with '/'")));
        }
    }
    let defaults = TimeWindow::default();
    let max_age = match p.max_age.as_deref() {
        Some(text) => duration(errors, "proof.max_age", Some(text), ""),
        None => Some(defaults.max_age),
    };
    let max_future_skew = match p.max_future_skew.as_deref() {
        Some(text) => duration(errors, "proof.max_future_skew", Some(text), ""),
        None => Some(defaults.max_future_skew),
    };
    if max_age.is_some_and(|d| d.is_zero()) {
        errors.push(err("proof.max_age", "must be more than zero".into()));
    }
    let reject_status = match p.reject_status.unwrap_or(500) {
        s @ 400..=599 => Some(s as u16),
        s => {
            errors.push(err(
                "proof.reject_status",
                format!("{s} is not an error status; use 400-599 (Microsoft's validator expects 500)"),
            ));
            None
        }
    };

    let replay_cache = match (p.replay_cache.unwrap_or(false), p.replay_cache_max_entries.unwrap_or(1_000_000)) {
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

    let t = raw.timeouts;
    let upstream_connect = duration(errors, "timeouts.upstream_connect", t.upstream_connect.as_deref(), "5s");
    let upstream_read = duration(errors, "timeouts.upstream_read", t.upstream_read.as_deref(), "300s");
    let upstream_write = duration(errors, "timeouts.upstream_write", t.upstream_write.as_deref(), "300s");

    let threads = match raw.server.threads.unwrap_or(0) {
        0 => Some(std::thread::available_parallelism().map_or(2, |n| n.get())),
        n @ 1..=1024 => Some(n as usize),
        n => {
            errors.push(err("server.threads", format!("{n} is out of range; use 1-1024, or 0 for one per core")));
            None
        }
    };
    let grace_period = duration(errors, "server.grace_period", raw.server.grace_period.as_deref(), "10s");
    let mut size = |key: &str, value: Option<i64>, default: i64| match value.unwrap_or(default) {
        n @ 1024..=1_048_575 => Some(n as usize),
        n => {
            errors.push(err(key, format!("{n} is out of range; use 1024 to 1048575 bytes")));
            None
        }
    };
    let max_target_bytes = size("server.max_target_bytes", raw.server.max_target_bytes, 16384);
    let max_header_bytes = size("server.max_header_bytes", raw.server.max_header_bytes, 65536);
    let log_format = match raw.log.format.as_deref().unwrap_or("json") {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        other => {
            errors.push(err("log.format", format!("\"{other}\" is not a format; use \"json\" or \"text\"")));
            None
        }
    };
    let log_level = raw.log.level.clone().unwrap_or_else(|| DEFAULT_FILTER.to_string());
    let tls = listener_tls(errors, raw.tls.as_ref());
    let upstream_tls = client_tls(
        errors,
        "upstream_tls",
        raw.upstream_tls.ca_file,
        raw.upstream_tls.insecure_skip_verify,
        upstream.as_ref().map(|u| u.tls),
    );
    if let Err(e) = crate::logging::check_filter(&log_level) {
        errors.push(err("log.level", e));
    }

    if errors.len() > start {
        return None;
    }
    Some(Config {
        listen: listen?,
        admin_listen: admin_listen?,
        upstream: upstream?,
        public_url: public_url?,
        discovery: DiscoveryConfig {
            urls: urls?,
            refresh_interval: refresh_interval?,
            min_refresh_interval: min_refresh_interval?,
            cache_file,
            timeout: fetch_timeout?,
            max_bytes: max_bytes?,
            tls: discovery_tls?,
        },
        proof: ProofConfig {
            mode: mode?,
            paths: PathRules::new(&paths),
            window: TimeWindow { max_age: max_age?, max_future_skew: max_future_skew? },
            reject_status: reject_status?,
            replay_cache: replay_cache?,
        },
        timeouts: Timeouts {
            upstream_connect: upstream_connect?,
            upstream_read: upstream_read?,
            upstream_write: upstream_write?,
        },
        server: ServerSettings {
            threads: threads?,
            grace_period: grace_period?,
            limits: RequestLimits { max_target_bytes: max_target_bytes?, max_header_bytes: max_header_bytes? },
        },
        policy: PolicyConfig {
            listener_scheme: if matches!(tls, Some(Some(_))) { "https" } else { "http" },
            ..policy?
        },
        log: LogSettings { format: log_format?, level: log_level },
        tls: tls?,
        upstream_tls: upstream_tls?,
    })
}

fn required<T>(errors: &mut Vec<ConfigError>, key: &str, value: Option<T>, example: &str) -> Option<T> {
    if value.is_none() {
        errors.push(err(key, format!("missing; set it to {example}")));
    }
    value
}

fn socket(errors: &mut Vec<ConfigError>, key: &str, text: &str) -> Option<SocketAddr> {
    text.parse()
        .map_err(|_| {
            errors.push(err(key, format!("\"{text}\" is not IP:port, e.g. \"0.0.0.0:8080\" or \"[::]:8080\"")))
        })
        .ok()
}

pub(super) fn duration(
    errors: &mut Vec<ConfigError>,
    key: &str,
    text: Option<&str>,
    default: &str,
) -> Option<Duration> {
    let text = text.unwrap_or(default);
    humantime::parse_duration(text)
        .map_err(|e| {
            errors.push(err(key, format!("\"{text}\" is not a duration ({e}); write e.g. \"30s\", \"20m\", \"12h\"")))
        })
        .ok()
}

fn parse_url(errors: &mut Vec<ConfigError>, key: &str, text: &str) -> Option<url::Url> {
    match url::Url::parse(text) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {
            if !u.username().is_empty() || u.password().is_some() {
                errors.push(err(key, "must not carry credentials".into()));
                return None;
            }
            Some(u)
        }
        Ok(_) => {
            errors.push(err(key, format!("\"{text}\" must be an http:// or https:// URL with a host")));
            None
        }
        Err(e) => {
            errors.push(err(key, format!("\"{text}\" is not a URL ({e})")));
            None
        }
    }
}

fn host_of(u: &url::Url) -> String {
    match u.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => String::new(),
    }
}

/// A key as the file writes it: the serde paths mark an optional table with a `?` segment
/// (`ip.?.alow`), which is not part of any key.
fn key_path(serde_path: &str) -> String {
    serde_path.split('.').filter(|segment| *segment != "?").collect::<Vec<_>>().join(".")
}

/// True when a connection to `ip:port` would reach a socket bound to `own` on this machine: the
/// same address, or any loopback or unspecified address when `own` listens on every address.
/// (Another local interface's address is not known here: the run-time hop marker catches it.)
pub fn points_at(own: SocketAddr, ip: IpAddr, port: u16) -> bool {
    let ip = ip.to_canonical();
    port == own.port()
        && (ip == own.ip().to_canonical() || (own.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
}

fn upstream(errors: &mut Vec<ConfigError>, text: &str) -> Option<UpstreamTarget> {
    let u = parse_url(errors, "upstream", text)?;
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        errors.push(err(
            "upstream",
            format!("\"{text}\" must be scheme://host[:port] only; requests keep their own path"),
        ));
        return None;
    }
    let port = u.port_or_known_default()?;
    Some(UpstreamTarget { tls: u.scheme() == "https", host: host_of(&u), port })
}

fn public_url(errors: &mut Vec<ConfigError>, text: &str) -> Option<PublicUrl> {
    let u = parse_url(errors, "public_url", text)?;
    if u.query().is_some() || u.fragment().is_some() {
        errors.push(err(
            "public_url",
            format!("\"{text}\" must be scheme://host[:port][/prefix], without query or fragment"),
        ));
        return None;
    }
    let host = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
    let path = u.path().trim_end_matches('/');
    let default = u.port_or_known_default();
    // `url` drops a default port; whether it was written decides which form is tried first.
    let written_default = u.port().is_none() && written_port(text).is_some();
    let (base, alt) = match (u.port(), default) {
        (Some(port), _) => (format!("{host}:{port}{path}"), None),
        (None, Some(default)) if written_default => (format!("{host}:{default}{path}"), Some(format!("{host}{path}"))),
        (None, Some(default)) => (format!("{host}{path}"), Some(format!("{host}:{default}{path}"))),
        (None, None) => (format!("{host}{path}"), None),
    };
    let upper = |s: &str| s.to_ascii_uppercase().into_bytes().into_boxed_slice();
    Some(PublicUrl { upper: upper(&base), alt_upper: alt.as_deref().map(upper), text: base })
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
    fn minimal_file_gets_documented_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.public_url.as_str(), "https://wopi.example.com:443", "the port as written");
        assert_eq!(c.public_url.upper(), b"HTTPS://WOPI.EXAMPLE.COM:443");
        assert_eq!(c.public_url.alt_upper(), Some(&b"HTTPS://WOPI.EXAMPLE.COM"[..]));
        assert_eq!(c.discovery.refresh_interval, Duration::from_secs(12 * 3600));
        assert_eq!(c.discovery.min_refresh_interval, Duration::from_secs(30));
        assert_eq!(c.proof.mode, ProofMode::Enforce);
        assert!(c.proof.paths.is_protected(b"/wopi/files/1"));
        assert_eq!(c.proof.window.max_age, Duration::from_secs(1200));
        assert_eq!(c.proof.window.max_future_skew, Duration::from_secs(300));
        assert_eq!(c.proof.reject_status, 500);
        assert_eq!(c.upstream, UpstreamTarget { tls: false, host: "127.0.0.1".into(), port: 8081 });
    }

    #[test]
    fn public_url_keeps_prefix_and_explicit_port() {
        let text = MINIMAL.replace("https://wopi.example.com:443/", "http://[::1]:8443/Office/");
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.public_url.as_str(), "http://[::1]:8443/Office");
        assert_eq!(c.public_url.alt_upper(), None, "a non-default port has no other form");
    }

    #[test]
    fn public_url_as_written_first_then_the_default_port_toggled() {
        let forms = |url: &str| {
            let c = Config::from_toml(&MINIMAL.replace("https://wopi.example.com:443/", url)).unwrap();
            let alt = c.public_url.alt_upper().map(|a| String::from_utf8(a.to_vec()).unwrap());
            (String::from_utf8(c.public_url.upper().to_vec()).unwrap(), alt)
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
}
