//! Configuration: the raw file (`raw`) and its validation into typed values (`validate`).

mod policy;
mod raw;
mod validate;

pub use policy::{byte_size, OperationRules, PolicyConfig};
pub use raw::RawConfig;
pub use validate::{
    Config, ConfigError, ConfigErrors, DiscoveryConfig, ProofConfig, ProofMode, PublicUrl, ServerSettings, Timeouts,
    UpstreamTarget,
};
