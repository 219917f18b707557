//! Proof keys: parsing discovery, holding the keys in force, and keeping them fresh.

mod cache;
mod cryptoapi;
mod discovery;
mod fetch;
mod key;
mod published;
mod raw_rsa;
mod refresh;
mod resolve;
mod schedule;
mod share;
mod store;
mod trust;

pub use cache::{load_cache, save_cache, CacheError, Cached};
pub use cryptoapi::{encode_public_key_blob, parse_public_key_blob, BlobError, BlobKey};
pub use discovery::{
    inspect_discovery, parse_discovery, DiscoveredKeys, DiscoveryError, FormError, KeyForms, Unusable,
};
pub use fetch::{
    discovery_client, discovery_client_to, error_chain, fetch_discovery, health_client, ClientError, FetchError,
    FetchLimits,
};
pub use key::{Fingerprint, KeyError, ProofKey, MAX_BITS, MAX_SIGNATURE_LEN, MIN_BITS};
pub use published::{published, PublishedKey, PUBLISHED};
pub use refresh::{DiscoveryConfig, FetchObserver, RefreshOutcome, Refresher};
pub use resolve::Resolver;
pub use schedule::{jitter, Schedule};
pub use share::TrustShare;
pub use store::{source_label, CachedSource, HeldKey, KeySnapshot, KeyStore, Served, SourceKeys, Unproved};
pub use trust::{label_of, Held, KeysConfig, Learned, TrustMode, TrustedSets};
