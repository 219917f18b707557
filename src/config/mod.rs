//! Configuration: the raw file (`raw`) and its validation into typed values (`validate`).

mod raw;
mod validate;

pub use raw::RawConfig;
pub use validate::{
    Config, ConfigError, ConfigErrors, DiscoveryConfig, ProofConfig, ProofMode, PublicUrl, ServerSettings, Timeouts,
    UpstreamTarget,
};
