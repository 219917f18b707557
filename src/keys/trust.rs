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
    /// Trust on first use, then only rotations the signer proves: a new key is trusted when a
    /// request is signed with it (`X-WOPI-Proof`) and with a trusted key (`X-WOPI-ProofOld`)
    /// over the same, never-seen bytes.
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
    /// `keys.trust = "rotation"`: a new key no request has proved yet (signed with it and with a
    /// trusted key).
    NotAnnounced,
}

impl Held {
    /// What the operator should do, for the error line.
    pub fn advice(self) -> &'static str {
        match self {
            Held::Published(_) => "anyone can sign requests with this key: give the office server its own key pair (or, for a test setup only, set keys.allow_published = true)",
            Held::NotPinned => "if this is your office server's key, add its fingerprint to keys.pinned and reload (SIGHUP)",
            Held::NotAnnounced => "no request has proved it yet: it is trusted when a request carries X-WOPI-Proof signed with it and X-WOPI-ProofOld signed with a trusted key (as the office server signs during a rotation); if the office server's key really changed without such requests, add the fingerprint to keys.pinned and reload (SIGHUP)",
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
            Held::NotAnnounced => f.write_str("a new key that no request signed with a trusted key has proved"),
        }
    }
}

/// Keys trusted in `rotation` mode, per source: the discovery URL, or `URL@address` with
/// `resolve_all` (each office node its own set; keys never cross URLs). A set kept under the URL
/// alone (an older cache file) counts for every address of it. Kept in the cache file across
/// restarts.
pub type TrustedSets = BTreeMap<Arc<str>, BTreeSet<Fingerprint>>;

/// True when `label` (a source label) is `url` or one of its addresses (`url@address`).
pub fn label_of(url: &str, label: &str) -> bool {
    label == url || label.strip_prefix(url).is_some_and(|rest| rest.starts_with('@'))
}

/// True when some source of `url` has a trusted key.
pub fn url_has_trust(trusted: &TrustedSets, url: &str) -> bool {
    trusted.iter().any(|(label, set)| label_of(url, label) && !set.is_empty())
}

/// Whether `key`, served by source `label` of discovery URL `url`, is used. `Ok` means trusted.
pub fn judge(config: &KeysConfig, trusted: &TrustedSets, url: &str, label: &str, key: &ProofKey) -> Result<(), Held> {
    if let Some(p) = published(key) {
        if !config.allow_published {
            return Err(Held::Published(p));
        }
    }
    let id = key.id();
    let in_set = |name: &str| trusted.get(name).is_some_and(|set| set.contains(&id));
    match config.trust {
        TrustMode::Discovery => Ok(()),
        TrustMode::Pinned if config.pinned.contains(&id) => Ok(()),
        TrustMode::Pinned => Err(Held::NotPinned),
        TrustMode::Rotation if config.pinned.contains(&id) => Ok(()),
        TrustMode::Rotation if in_set(label) || in_set(url) => Ok(()),
        TrustMode::Rotation => Err(Held::NotAnnounced),
    }
}

/// What a discovery answer (`current`, `old`) of source `label` adds to the trusted sets in
/// `rotation` mode: its keys, on first use, when `first_use` allows it (the URL had no trusted
/// key when its first fetch round began, nothing is pinned, and this source has no set yet).
/// Discovery alone never adds a key otherwise: a forger who answers discovery with
/// `current = their key, old = a trusted key` gets nothing. Returns what it added, for the log.
pub fn learn(
    config: &KeysConfig,
    trusted: &mut TrustedSets,
    label: &Arc<str>,
    first_use: bool,
    current: &ProofKey,
    old: Option<&ProofKey>,
) -> Vec<(Fingerprint, Learned)> {
    if config.trust != TrustMode::Rotation || !first_use || !config.pinned.is_empty() {
        return Vec::new();
    }
    let usable = |k: &ProofKey| config.allow_published || published(k).is_none();
    let set = trusted.entry(label.clone()).or_default();
    if !set.is_empty() {
        return Vec::new();
    }
    let mut added = Vec::new();
    for key in std::iter::once(current).chain(old).filter(|k| usable(k)) {
        if set.insert(key.id()) {
            added.push((key.id(), Learned::FirstUse));
        }
    }
    added
}

/// How a key came to be trusted in `rotation` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// The first keys loaded for a source (nothing pinned, nothing cached, the URL's first
    /// fetch round).
    FirstUse,
    /// A request proved it: `X-WOPI-Proof` signed with it, `X-WOPI-ProofOld` with a trusted key,
    /// over bytes not seen before.
    Proved,
}
