//! The bottom of `config`: the error every check reports, and the parsers of one field's value
//! (address, duration, URL, network list, byte size) that every section uses.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::policy::NetList;

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

/// A problem with `key`: what is wrong and how to fix it.
pub(super) fn err(key: &str, message: String) -> ConfigError {
    ConfigError { key: key.to_string(), message }
}

/// `value`, or an error saying the key is missing and what to set it to.
pub(super) fn required<T>(errors: &mut Vec<ConfigError>, key: &str, value: Option<T>, example: &str) -> Option<T> {
    if value.is_none() {
        errors.push(err(key, format!("missing; set it to {example}")));
    }
    value
}

/// An `IP:port` listen address.
pub(super) fn socket(errors: &mut Vec<ConfigError>, key: &str, text: &str) -> Option<SocketAddr> {
    text.parse()
        .map_err(|_| {
            errors.push(err(key, format!("\"{text}\" is not IP:port, e.g. \"0.0.0.0:8080\" or \"[::]:8080\"")))
        })
        .ok()
}

/// A humantime duration (`"30s"`, `"12h"`); `default` when the key is absent.
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

/// An http(s) URL with a host and no credentials.
pub(super) fn parse_url(errors: &mut Vec<ConfigError>, key: &str, text: &str) -> Option<url::Url> {
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

/// The URL's host as a socket address needs it: an IPv6 literal without brackets.
pub(super) fn host_of(u: &url::Url) -> String {
    match u.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => String::new(),
    }
}

/// A key as the file writes it: the serde paths mark an optional table with a `?` segment
/// (`ip.?.alow`), which is not part of any key. The empty key (`[""]`, valid TOML) is written
/// `""`, so an error always names one.
pub(super) fn key_path(serde_path: &str) -> String {
    let mut out = String::new();
    for segment in serde_path.split('.').filter(|segment| *segment != "?") {
        if !out.is_empty() && !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]")); // a list's item: `routes[0]`
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    if out.is_empty() {
        return "\"\"".to_string();
    }
    out
}

/// A list of addresses and CIDR networks; each bad entry is reported as `key[i]`.
pub(super) fn nets(errors: &mut Vec<ConfigError>, key: &str, list: Option<&Vec<String>>) -> Option<NetList> {
    let mut out = Vec::new();
    for (i, text) in list.into_iter().flatten().enumerate() {
        match text.parse::<ipnet::IpNet>().or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)) {
            Ok(net) => out.push(net.trunc()),
            Err(_) => errors.push(err(
                &format!("{key}[{i}]"),
                format!("\"{text}\" is not an address or CIDR network, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""),
            )),
        }
    }
    Some(NetList::new(out))
}

/// Parses `"512MiB"`, `"64 KiB"`, `"100MB"`, `"1024"` or an integer into bytes.
pub fn byte_size(value: &toml::Value) -> Result<u64, String> {
    let text = match value {
        toml::Value::Integer(n) if *n >= 0 => return Ok(*n as u64),
        toml::Value::String(s) => s.trim(),
        other => return Err(format!("{other} is not a size")),
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("\"{text}\" is not a size"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => return Err(format!("unknown unit \"{other}\"; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("\"{text}\" is too large"))
}
