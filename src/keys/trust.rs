//! Which keys are trusted (`[keys]`): every key discovery serves, only pinned keys, or trust on
//! first use followed by the rotations the signer announces; and keys whose private half is
//! published are refused unless allowed. Pure: the store calls it with its state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::key::{Fingerprint, ProofKey};
use super::published::{published, PublishedKey};

/// `keys.trust`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustMode {
    /// Every key discovery serves.
    #[default]
    Discovery,
    /// Only keys listed in `keys.pinned`.
    Pinned,
    /// Trust on first use, then only rotations the signer announces (the new current key's
    /// discovery lists a trusted key as its old key).
    Rotation,
}

impl TrustMode {
    /// The value as written in the file.
    pub fn label(self) -> &'static str {
        match self {
            TrustMode::Discovery => "discovery",
            TrustMode::Pinned => "pinned",
            TrustMode::Rotation => "rotation",
        }
    }
}

/// `[keys]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeysConfig {
    /// How long a source's key is kept after the source stopped serving it.
    pub retention: Duration,
    /// Which keys are trusted.
    pub trust: TrustMode,
    /// Keys trusted whatever discovery says (in `pinned` mode, the only ones).
    pub pinned: BTreeSet<Fingerprint>,
    /// Accept keys whose private half is public.
    pub allow_published: bool,
}

/// Why a key that discovery served is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Its private half is public, and `keys.allow_published` is off.
    Published(&'static PublishedKey),
    /// `keys.trust = "pinned"` and it is not in `keys.pinned`.
    NotPinned,
    /// `keys.trust = "rotation"`: a new key no trusted key announced.
    NotAnnounced,
}

impl Held {
    /// What the operator should do, for the error line.
    pub fn advice(self) -> &'static str {
        match self {
            Held::Published(_) => "anyone can sign requests with this key: give the office server its own key pair (or, for a test setup only, set keys.allow_published = true)",
            Held::NotPinned => "if this is your office server's key, add its fingerprint to keys.pinned and reload (SIGHUP)",
            Held::NotAnnounced => "no trusted key announced it as a rotation (discovery did not list a trusted key as its old key); if the office server's key really changed, add the fingerprint to keys.pinned and reload (SIGHUP)",
        }
    }

    /// Short label, for logs.
    pub fn label(self) -> &'static str {
        match self {
            Held::Published(_) => "published_private_key",
            Held::NotPinned => "not_pinned",
            Held::NotAnnounced => "rotation_not_announced",
        }
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Published(p) => write!(f, "{p}"),
            Held::NotPinned => f.write_str("not in keys.pinned"),
            Held::NotAnnounced => f.write_str("a new key that no trusted key announced"),
        }
    }
}

/// Keys trusted in `rotation` mode, per configured discovery URL (the addresses of one URL share
/// one set; keys never cross URLs). Kept in the cache file across restarts.
pub type TrustedSets = BTreeMap<Arc<str>, BTreeSet<Fingerprint>>;

/// Whether `key`, served by a source of discovery URL `url`, is used. `Ok` means trusted.
pub fn judge(config: &KeysConfig, trusted: &TrustedSets, url: &str, key: &ProofKey) -> Result<(), Held> {
    if let Some(p) = published(key) {
        if !config.allow_published {
            return Err(Held::Published(p));
        }
    }
    let id = key.id();
    match config.trust {
        TrustMode::Discovery => Ok(()),
        TrustMode::Pinned if config.pinned.contains(&id) => Ok(()),
        TrustMode::Pinned => Err(Held::NotPinned),
        TrustMode::Rotation if config.pinned.contains(&id) => Ok(()),
        TrustMode::Rotation if trusted.get(url).is_some_and(|set| set.contains(&id)) => Ok(()),
        TrustMode::Rotation => Err(Held::NotAnnounced),
    }
}

/// What a new discovery answer (`current`, `old`) of a source of `url` adds to the trusted sets in
/// `rotation` mode: the first keys ever loaded for the URL (unless `pinned` gives the start), or
/// a new current key whose old key is trusted. Returns what it added, for the log.
pub fn learn(
    config: &KeysConfig,
    trusted: &mut TrustedSets,
    url: &Arc<str>,
    current: &ProofKey,
    old: Option<&ProofKey>,
) -> Vec<(Fingerprint, Learned)> {
    if config.trust != TrustMode::Rotation {
        return Vec::new();
    }
    let usable = |k: &ProofKey| config.allow_published || published(k).is_none();
    let set = trusted.entry(url.clone()).or_default();
    let mut added = Vec::new();
    if set.is_empty() && config.pinned.is_empty() {
        for key in std::iter::once(current).chain(old).filter(|k| usable(k)) {
            if set.insert(key.id()) {
                added.push((key.id(), Learned::FirstUse));
            }
        }
        return added;
    }
    let known = |k: &ProofKey| set.contains(&k.id()) || config.pinned.contains(&k.id());
    if !known(current) && usable(current) && old.is_some_and(|o| usable(o) && known(o)) {
        set.insert(current.id());
        added.push((current.id(), Learned::Announced));
    }
    added
}

/// How a key came to be trusted in `rotation` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// The first keys loaded for a discovery URL (nothing pinned, nothing cached).
    FirstUse,
    /// Discovery listed a trusted key as its old key.
    Announced,
}
