//! `[shared]`: Redis for the rate limits and the replay cache of several instances.

use std::path::PathBuf;
use std::time::Duration;

use super::defaults as default;
use super::error::{duration, err, ConfigError};
use super::raw::RawShared;
use crate::shared::{OnError, RedisUrl, SharedConfig};
use crate::trust::read_ca_file;

/// Shortest accepted `hash_key`.
const MIN_HASH_KEY: usize = 16;

/// `Some(None)`: no `[shared]` (state stays in this process); `None`: errors were reported.
pub(super) fn validate_shared(errors: &mut Vec<ConfigError>, raw: Option<RawShared>) -> Option<Option<SharedConfig>> {
    let Some(raw) = raw else { return Some(None) };
    let start = errors.len();
    let redis = match raw.redis.as_deref() {
        None | Some("") => {
            errors.push(err(
                "shared.redis",
                "missing; set it to the Redis URL, e.g. \"redis://:password@10.0.0.9:6379/0\" (or remove [shared] to keep state in this process)".into(),
            ));
            None
        }
        Some(text) => RedisUrl::parse(text).map_err(|e| errors.push(err("shared.redis", e))).ok(),
    };
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
        if redis.as_ref().is_some_and(|r| !r.is_tls()) {
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
    Some(Some(SharedConfig {
        redis: redis?,
        cluster: raw.cluster.unwrap_or(false),
        timeout: timeout?,
        on_error: on_error?,
        instances: instances?,
        key_prefix,
        ca_file,
        hash_key: hash_key?,
    }))
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
    fn hash_key_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hash.key");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        let c = load(&format!("redis = \"redis://h\"\nhash_key_file = \"{}\"", file.display())).unwrap();
        assert_eq!(c.shared.unwrap().hash_key, b"0123456789abcdef0123");
    }
}
