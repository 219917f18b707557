//! Configuration: the raw file (`raw`) and its validation into typed values (`validate`); in
//! tests, `reference` holds `docs/configuration.md` against the keys `raw` accepts.

mod layers;
mod policy;
mod raw;
#[cfg(test)]
mod reference;
mod tls;
mod validate;

pub use layers::{env_overrides, parse_value, Override, ENV_PREFIX};
pub use policy::{byte_size, OperationRules, PolicyConfig};
pub use raw::RawConfig;
pub use tls::{read_ca_file, ClientTls};
pub use validate::points_at;
pub use validate::{
    Config, ConfigError, ConfigErrors, DiscoveryConfig, LogSettings, ProofConfig, ProofMode, PublicUrl, ServerSettings,
    Timeouts, UpstreamTarget,
};
