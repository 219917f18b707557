//! Proof keys: parsing discovery, holding the keys in force, and keeping them fresh.

mod cache;
mod cryptoapi;
mod discovery;
mod fetch;
mod key;
mod known;
mod refresh;
mod schedule;
mod store;

pub use cache::{load_cache, save_cache, CacheError};
pub use cryptoapi::{encode_public_key_blob, parse_public_key_blob, BlobError, BlobKey};
pub use discovery::{
    inspect_discovery, parse_discovery, DiscoveredKeys, DiscoveryError, FormError, KeyForms, Unusable,
};
pub use fetch::{discovery_client, fetch_discovery, ClientError, FetchError, FetchLimits};
pub use key::{KeyError, ProofKey, MAX_BITS, MAX_SIGNATURE_LEN, MIN_BITS};
pub use known::known_insecure;
pub use refresh::{DiscoveryConfig, FetchObserver, RefreshOutcome, Refresher};
pub use schedule::{jitter, Schedule};
pub use store::{KeySnapshot, KeyStore, SourceKeys};
