//! Values from outside the file. Precedence, highest first: command-line flags, environment
//! variables (`WOPI_GUARD_...`), the configuration file, the documented defaults.
//!
//! Every file key has an environment variable: `WOPI_GUARD_` + the key path in capitals with `__`
//! between tables, e.g. `WOPI_GUARD_LISTEN`, `WOPI_GUARD_PROOF__MAX_AGE`,
//! `WOPI_GUARD_RATE_LIMIT__PER_IP__PER_SECOND`. Values are read as TOML when they parse as TOML
//! (`50`, `true`, `["https://a/hosting/discovery"]`) and as a string otherwise (`20m`,
//! `0.0.0.0:8080`). `WOPI_GUARD_LOG` is the log filter, not a key.

use super::error::{err, ConfigError};

/// Environment variables starting with this are configuration.
pub const ENV_PREFIX: &str = "WOPI_GUARD_";

/// Variables with the prefix that are not configuration keys.
const NOT_KEYS: [&str; 1] = ["WOPI_GUARD_LOG"];

/// One value set outside the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Where it came from, for error messages: `WOPI_GUARD_LISTEN` or `--listen`.
    pub origin: String,
    /// The key path, e.g. `["proof", "max_age"]`.
    pub path: Vec<String>,
    /// The value.
    pub value: toml::Value,
}

impl Override {
    /// An override from a command-line flag.
    pub fn flag(flag: &str, path: &[&str], value: toml::Value) -> Self {
        Override { origin: flag.to_string(), path: path.iter().map(|s| s.to_string()).collect(), value }
    }

    /// The dotted key.
    pub fn key(&self) -> String {
        self.path.join(".")
    }
}

/// A value as TOML when it parses as one, else as a string.
pub fn parse_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// The configuration overrides among `vars` (normally `std::env::vars()`), sorted by name.
pub fn env_overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut out: Vec<Override> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !NOT_KEYS.contains(&name.as_str()))
        .map(|(name, value)| {
            let path = name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
            Override { origin: name, path, value: parse_value(&value) }
        })
        .collect();
    out.sort_by(|a, b| a.origin.cmp(&b.origin));
    out
}

/// Sets every override in `table`, in order (later wins).
pub fn apply(table: &mut toml::Table, overrides: &[Override], errors: &mut Vec<ConfigError>) {
    'each: for o in overrides {
        let Some((last, parents)) = o.path.split_last() else { continue };
        let mut at = &mut *table;
        for (depth, name) in parents.iter().enumerate() {
            let entry = at.entry(name.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => at = t,
                _ => {
                    let key = parents[..=depth].join(".");
                    errors.push(err(&o.key(), format!("{} sets a key inside {key}, which is not a table", o.origin)));
                    continue 'each;
                }
            }
        }
        at.insert(last.clone(), o.value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_keys_and_values_to_types() {
        let vars = [
            ("WOPI_GUARD_LISTEN", "0.0.0.0:9000"),
            ("WOPI_GUARD_PROOF__MAX_AGE", "10m"),
            ("WOPI_GUARD_RATE_LIMIT__PER_IP__PER_SECOND", "2.5"),
            ("WOPI_GUARD_DISCOVERY__URLS", r#"["https://a/hosting/discovery"]"#),
            ("WOPI_GUARD_FORWARD__VERIFIED_HEADER", "true"),
            ("WOPI_GUARD_LOG", "debug"),
            ("HOME", "/root"),
        ];
        let o = env_overrides(vars.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let keys: Vec<String> = o.iter().map(Override::key).collect();
        assert_eq!(
            keys,
            ["discovery.urls", "forward.verified_header", "listen", "proof.max_age", "rate_limit.per_ip.per_second"]
        );
        assert_eq!(o[0].value, toml::Value::Array(vec![toml::Value::String("https://a/hosting/discovery".into())]));
        assert_eq!(o[1].value, toml::Value::Boolean(true));
        assert_eq!(o[2].value, toml::Value::String("0.0.0.0:9000".into()));
        assert_eq!(o[4].value, toml::Value::Float(2.5));
    }

    #[test]
    fn a_key_below_a_non_table_is_an_error() {
        let mut table: toml::Table = toml::from_str("listen = \"x\"").unwrap();
        let mut errors = Vec::new();
        apply(&mut table, &[Override::flag("--x", &["listen", "port"], toml::Value::Integer(1))], &mut errors);
        assert_eq!(errors[0].key, "listen.port");
        assert!(errors[0].message.contains("--x"));
    }
}
