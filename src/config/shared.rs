//! `[shared]`: Redis for the rate limits and the replay cache of several instances.

use std::path::PathBuf;
use std::time::Duration;

use super::defaults as default;
use super::error::{duration, err, ConfigError};
use super::raw::RawShared;
use crate::shared::{OnError, RedisUrl, SentinelConfig, SharedConfig};
use crate::trust::read_ca_file;

/// Shortest accepted `hash_key`.
const MIN_HASH_KEY: usize = 16;

/// `Some(None)`: no `[shared]` (state stays in this process); `None`: errors were reported.
pub(super) fn validate_shared(errors: &mut Vec<ConfigError>, raw: Option<RawShared>) -> Option<Option<SharedConfig>> {
    let Some(raw) = raw else { return Some(None) };
    let start = errors.len();
    let sentinel = sentinels(errors, raw.sentinels.as_deref(), raw.sentinel_master.as_deref());
    if raw.cluster == Some(true) && matches!(sentinel, Some(Some(_))) {
        errors.push(err(
            "shared.sentinels",
            "a Redis Cluster is not found through Sentinel; set cluster = true with a seed node in redis, or sentinels without cluster".into(),
        ));
    }
    let redis = match raw.redis.as_deref() {
        None | Some("") if matches!(sentinel, Some(Some(_)) | None) && raw.sentinels.is_some() => None,
        None | Some("") => {
            errors.push(err(
                "shared.redis",
                "missing; set it to the Redis URL, e.g. \"redis://:password@10.0.0.9:6379/0\" (or remove [shared] to keep state in this process)".into(),
            ));
            None
        }
        Some(text) => RedisUrl::parse(text).map_err(|e| errors.push(err("shared.redis", e))).ok(),
    };
    let tls = redis.as_ref().is_some_and(RedisUrl::is_tls);
    let timeout = duration(errors, "shared.timeout", raw.timeout.as_deref(), default::SHARED_TIMEOUT);
    if timeout.is_some_and(|t| t.is_zero() || t > Duration::from_secs(10)) {
        errors.push(err("shared.timeout", "must be between 1ms and 10s, e.g. \"50ms\"".into()));
    }
    let on_error = match raw.on_error.as_deref().unwrap_or(default::SHARED_ON_ERROR) {
        "local" => Some(OnError::Local),
        "deny" => Some(OnError::Deny),
        "allow" => Some(OnError::Allow),
        other => {
            errors.push(err("shared.on_error", format!("\"{other}\" is not one of \"local\", \"deny\", \"allow\"")));
            None
        }
    };
    let instances = match raw.instances.unwrap_or(default::SHARED_INSTANCES) {
        n @ 1..=10_000 => Some(n as u32),
        n => {
            errors.push(err("shared.instances", format!("{n} is not a number of instances; set 1 to 10000")));
            None
        }
    };
    let key_prefix = raw.key_prefix.unwrap_or_else(|| default::SHARED_KEY_PREFIX.into());
    if key_prefix.is_empty() || key_prefix.len() > 64 || key_prefix.contains(['{', '}', ' ']) {
        errors.push(err(
            "shared.key_prefix",
            "give 1 to 64 characters without spaces or braces, e.g. \"wopi-guard\"".into(),
        ));
    }
    let ca_file = raw.ca_file.filter(|f| !f.is_empty()).map(PathBuf::from);
    if let Some(path) = &ca_file {
        if let Err(e) = read_ca_file(path) {
            errors.push(err("shared.ca_file", format!("{e}; give a PEM file of CA certificates")));
        }
        if !tls {
            errors
                .push(err("shared.ca_file", "only used with rediss://; change shared.redis or remove ca_file".into()));
        }
    }
    let hash_key = match (raw.hash_key, raw.hash_key_file) {
        (Some(_), Some(_)) => {
            errors.push(err("shared.hash_key", "set hash_key or hash_key_file, not both".into()));
            None
        }
        (None, None) => {
            errors.push(err(
                "shared.hash_key",
                "missing; every instance needs the same secret (16 bytes or more) to agree on keys: set hash_key or hash_key_file, e.g. from `openssl rand -hex 32`".into(),
            ));
            None
        }
        (Some(key), None) => Some(key.into_bytes()),
        (None, Some(file)) => match std::fs::read(&file) {
            Ok(bytes) => Some(bytes.trim_ascii_end().to_vec()),
            Err(e) => {
                errors.push(err("shared.hash_key_file", format!("cannot read {file}: {e}")));
                None
            }
        },
    };
    if hash_key.as_ref().is_some_and(|k| k.len() < MIN_HASH_KEY) {
        errors.push(err(
            "shared.hash_key",
            format!("shorter than {MIN_HASH_KEY} bytes; use e.g. `openssl rand -hex 32`"),
        ));
    }
    if errors.len() > start {
        return None;
    }
    let sentinel = sentinel?;
    let redis = match &sentinel {
        Some(s) => RedisUrl::for_sentinel(redis.as_ref(), s),
        None => redis?,
    };
    Some(Some(SharedConfig {
        redis,
        cluster: raw.cluster.unwrap_or(false),
        sentinel,
        timeout: timeout?,
        on_error: on_error?,
        instances: instances?,
        replay_prefix: key_prefix.clone(),
        key_prefix,
        ca_file,
        hash_key: hash_key?,
    }))
}

/// `sentinels` and `sentinel_master`: `Some(None)` when neither is set, `None` after an error.
fn sentinels(
    errors: &mut Vec<ConfigError>,
    nodes: Option<&[String]>,
    master: Option<&str>,
) -> Option<Option<SentinelConfig>> {
    let Some(list) = nodes else {
        if master.is_some() {
            errors.push(err(
                "shared.sentinel_master",
                "set only with sentinels; add sentinels = [\"host:26379\", ...] or remove sentinel_master".into(),
            ));
            return None;
        }
        return Some(None);
    };
    let start = errors.len();
    if list.is_empty() {
        errors.push(err(
            "shared.sentinels",
            "empty; list the sentinels, e.g. [\"10.0.0.1:26379\", \"10.0.0.2:26379\"], or remove the key".into(),
        ));
    }
    let mut parsed = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match sentinel_node(text) {
            Some(node) => parsed.push(node),
            None => errors.push(err(
                &format!("shared.sentinels[{i}]"),
                format!("\"{text}\" is not host:port; write e.g. \"10.0.0.1:26379\" or \"[2001:db8::1]:26379\""),
            )),
        }
    }
    let master = match master.map(str::trim) {
        Some(m) if !m.is_empty() && !m.contains(char::is_whitespace) => Some(m.to_string()),
        Some(_) => {
            errors.push(err("shared.sentinel_master", "give the name the sentinels monitor, e.g. \"mymaster\"".into()));
            None
        }
        None => {
            errors.push(err(
                "shared.sentinel_master",
                "missing; with sentinels, name the master they monitor (`sentinel monitor <name> ...`), e.g. \"mymaster\"".into(),
            ));
            None
        }
    };
    if errors.len() > start {
        return None;
    }
    Some(Some(SentinelConfig { nodes: parsed, master: master? }))
}

/// `host:port`, `[v6]:port`, or a host alone (port 26379).
fn sentinel_node(text: &str) -> Option<(String, u16)> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 26379,
            None => return None,
        };
        (host.parse::<std::net::Ipv6Addr>().ok()?.to_string(), port)
    } else if text.matches(':').count() > 1 {
        return None; // an IPv6 address goes in brackets: "[2001:db8::1]:26379"
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().ok()?),
            None => (text.to_string(), 26379),
        }
    };
    let valid = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    (valid && port != 0).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use crate::config::{load_with, Config};
    use crate::shared::OnError;
    use std::time::Duration;

    fn load(shared: &str) -> Result<Config, Vec<String>> {
        load_with(&format!("[shared]\n{shared}"))
    }

    #[test]
    fn defaults_and_the_contract_keys() {
        let c = load("redis = \"redis://:pw@10.0.0.9:6379/0\"\nhash_key = \"0123456789abcdef\"").unwrap();
        let s = c.shared.unwrap();
        assert_eq!(
            (s.cluster, s.timeout, s.on_error, s.instances, s.key_prefix.as_str()),
            (false, Duration::from_millis(50), OnError::Local, 1, "wopi-guard")
        );
        assert_eq!(s.redis.shown(), "redis://***@10.0.0.9:6379");
        assert!(!format!("{s:?}").contains("pw") && !format!("{s:?}").contains("0123456789abcdef"), "{s:?}");
        let c = load(
            "redis = \"redis://r:6379\"\ncluster = true\ntimeout = \"20ms\"\non_error = \"deny\"\ninstances = 4\nkey_prefix = \"wg\"\nhash_key = \"0123456789abcdef\"",
        )
        .unwrap();
        let s = c.shared.unwrap();
        assert_eq!(
            (s.cluster, s.timeout, s.on_error, s.instances, s.key_prefix.as_str()),
            (true, Duration::from_millis(20), OnError::Deny, 4, "wg")
        );
        assert!(load("").is_err(), "an empty [shared] is not 'no [shared]'");
        assert!(load_with("").unwrap().shared.is_none());
    }

    #[test]
    fn every_shared_error_names_its_key() {
        let keys = load(
            "redis = \"http://h\"\ntimeout = \"0s\"\non_error = \"maybe\"\ninstances = 0\nkey_prefix = \"a {b}\"\nhash_key = \"short\"",
        )
        .unwrap_err();
        for key in [
            "shared.redis",
            "shared.timeout",
            "shared.on_error",
            "shared.instances",
            "shared.key_prefix",
            "shared.hash_key",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        let keys = load("redis = \"redis://h\"\nca_file = \"/nonexistent.pem\"").unwrap_err();
        assert!(keys.iter().any(|k| k == "shared.ca_file"), "{keys:?}");
        assert!(keys.iter().any(|k| k == "shared.hash_key"), "a missing hash_key is an error: {keys:?}");
        let keys = load("redis = \"redis://h\"\nhash_key = \"0123456789abcdef\"\nhash_key_file = \"/nonexistent\"")
            .unwrap_err();
        assert_eq!(keys, ["shared.hash_key"], "not both");
        let keys = load("redis = \"redis://h\"\nhash_key_file = \"/nonexistent\"").unwrap_err();
        assert_eq!(keys, ["shared.hash_key_file"]);
    }

    #[test]
    fn sentinels_find_the_master_and_redis_gives_only_its_password() {
        let c = load("sentinels = [\"10.0.0.1:26379\", \"sentinel-b\", \"[2001:db8::1]:26380\"]\nsentinel_master = \"mymaster\"\nhash_key = \"0123456789abcdef\"").unwrap();
        let s = c.shared.as_ref().unwrap();
        let sentinel = s.sentinel.as_ref().unwrap();
        assert_eq!(sentinel.master, "mymaster");
        assert_eq!(
            sentinel.nodes,
            [("10.0.0.1".to_string(), 26379), ("sentinel-b".to_string(), 26379), ("2001:db8::1".to_string(), 26380)]
        );
        assert_eq!(s.redis.shown(), "sentinel://mymaster@10.0.0.1:26379,sentinel-b:26379,2001:db8::1:26380");
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        // With `redis` too: its password is used and never shown; `check` says its host is unused.
        let c = load("redis = \"redis://:s3cret@old-host:6380/2\"\nsentinels = [\"10.0.0.1:26379\"]\nsentinel_master = \"mymaster\"\nhash_key = \"0123456789abcdef\"").unwrap();
        let s = c.shared.as_ref().unwrap();
        assert_eq!(s.redis.shown(), "sentinel://***@mymaster@10.0.0.1:26379");
        assert!(s.redis.as_str().contains("s3cret"));
        let warnings = c.warnings().join("\n");
        assert!(warnings.contains("shared.redis: with sentinels its host old-host:6380 is unused"), "{warnings}");
        assert!(!warnings.contains("s3cret") && !format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn every_sentinel_error_names_its_key_and_the_fix() {
        let text = |body: &str| {
            load_with(&format!("[shared]\nhash_key = \"0123456789abcdef\"\n{body}")).map(|_| ()).unwrap_err()
        };
        assert_eq!(text("sentinels = [\"10.0.0.1:26379\"]"), ["shared.sentinel_master"]);
        assert_eq!(text("redis = \"redis://h\"\nsentinel_master = \"m\""), ["shared.sentinel_master"]);
        assert_eq!(text("sentinels = []\nsentinel_master = \"m\""), ["shared.sentinels"]);
        assert_eq!(
            text("sentinels = [\"h:x\", \"ok:1\", \"[::1\", \"2001:db8::1\"]\nsentinel_master = \"m\""),
            ["shared.sentinels[0]", "shared.sentinels[2]", "shared.sentinels[3]"]
        );
        assert_eq!(text("sentinels = [\"h:1\"]\nsentinel_master = \"m\"\ncluster = true"), ["shared.sentinels"]);
        assert_eq!(text("sentinels = [\"h:1\"]\nsentinel_master = \" \""), ["shared.sentinel_master"]);
        let all = crate::config::load_errors_text("[shared]\nhash_key = \"0123456789abcdef\"\nsentinels = [\"h:x\"]\n");
        assert!(all.contains("\"h:x\" is not host:port; write e.g. \"10.0.0.1:26379\""), "{all}");
        assert!(all.contains("sentinel monitor <name>"), "{all}");
    }

    #[test]
    fn hash_key_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hash.key");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        let c = load(&format!("redis = \"redis://h\"\nhash_key_file = \"{}\"", file.display())).unwrap();
        assert_eq!(c.shared.unwrap().hash_key, b"0123456789abcdef0123");
    }
}
