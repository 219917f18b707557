//! Configuration, bottom up: `error` (the error and one field's parsers), `defaults`, `raw` (the
//! file as written), `public_url`, `types` (the validated sections), `tls` and `policy` (their
//! sections' checks), `validate` (every other section, one route's sections, and the whole), `routes`
//! (`[[routes]]` layered over the top level), `layers` (environment and
//! flags over the file), `load` (file → typed config), `warnings`. In tests, `reference` holds
//! `docs/configuration.md` against the keys `raw` accepts.

mod defaults;
mod error;
mod layers;
mod load;
mod policy;
mod public_url;
mod raw;
#[cfg(test)]
mod reference;
mod routes;
mod shared;
mod tls;
mod types;
mod validate;
mod warnings;

pub use crate::keys::DiscoveryConfig;
pub use crate::trust::{read_ca_file, ClientTls};
pub use error::{byte_size, ConfigError, ConfigErrors};
pub use layers::{env_overrides, parse_value, Override, ENV_PREFIX};
pub use policy::{is_other_override, ForwardAuthConfig, ForwardConfig, IpConfig, OperationRules, PolicyConfig};
pub use public_url::PublicUrl;
pub use raw::RawConfig;
pub use types::{
    Config, ConnectionLimits, HealthConfig, LogSettings, ProofConfig, ProofMode, RouteConfig, RouteHost,
    ServerSettings, Timeouts, UpstreamTarget, BODY_RATE_WINDOW,
};
pub use validate::points_at;

/// For the config modules' unit tests: the smallest valid file plus `extra`, or the keys of its
/// errors.
#[cfg(test)]
pub(crate) fn load_with(extra: &str) -> Result<Config, Vec<String>> {
    Config::from_toml(&format!("{TEST_BASE}\n{extra}")).map_err(|e| e.0.into_iter().map(|e| e.key).collect())
}

/// [`load_with`]'s errors as `check` prints them (empty when the file is valid).
#[cfg(test)]
pub(crate) fn load_errors_text(extra: &str) -> String {
    Config::from_toml(&format!("{TEST_BASE}\n{extra}")).err().map(|e| e.to_string()).unwrap_or_default()
}

#[cfg(test)]
const TEST_BASE: &str = r#"
    upstream = "http://127.0.0.1:8081"
    public_url = "https://wopi.example.com"
    [discovery]
    urls = ["https://office.example.com/hosting/discovery"]
"#;
