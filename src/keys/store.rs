//! The keys in force: one immutable snapshot, swapped whole when a source brings new keys,
//! read on every request without a lock or an allocation.

use arc_swap::{ArcSwap, Guard};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::discovery::DiscoveredKeys;
use super::key::ProofKey;

/// The keys of one discovery source.
#[derive(Debug)]
pub struct SourceKeys {
    /// Position of the source in `discovery.urls`.
    pub index: usize,
    /// The discovery URL.
    pub url: Arc<str>,
    /// The current key.
    pub current: ProofKey,
    /// The old key, when published and different from the current one.
    pub old: Option<ProofKey>,
    /// When these keys were fetched (or the cached fetch time).
    pub fetched_at: SystemTime,
}

impl SourceKeys {
    /// The keys a discovery document of source `index` (at `url`) gave, fetched `at`: an old
    /// key equal to the current one is dropped (the office server publishes the same key twice
    /// when it has not rotated).
    pub fn from_discovered(index: usize, url: Arc<str>, keys: DiscoveredKeys, at: SystemTime) -> SourceKeys {
        let old = keys.old.filter(|old| *old != keys.current);
        SourceKeys { index, url, current: keys.current, old, fetched_at: at }
    }
}

/// Every source's last-known-good keys, in configuration order.
#[derive(Debug, Default)]
pub struct KeySnapshot {
    /// Sources with keys; a source that never answered is absent.
    pub sources: Vec<Arc<SourceKeys>>,
    /// Bumped on every change, so a waiter can tell whether a re-fetch brought anything.
    pub generation: u64,
}

impl KeySnapshot {
    /// True when no source has keys.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Fingerprints of every loaded key, for refusal logs.
    pub fn fingerprints(&self) -> Vec<&str> {
        self.sources
            .iter()
            .flat_map(|s| std::iter::once(&s.current).chain(s.old.as_ref()))
            .map(ProofKey::fingerprint)
            .collect()
    }
}

/// `keys` at another position. The keys are parsed again from their components (they parsed
/// once, so this does not fail in practice; if it did, the source would wait for its next fetch).
fn renumbered(keys: &SourceKeys, index: usize) -> Option<SourceKeys> {
    let again = |k: &ProofKey| ProofKey::from_components(k.modulus(), k.exponent()).ok();
    let old = match &keys.old {
        Some(k) => Some(again(k)?),
        None => None,
    };
    Some(SourceKeys { index, url: keys.url.clone(), current: again(&keys.current)?, old, fetched_at: keys.fetched_at })
}

/// Shared handle to the keys in force; clones share the same keys.
#[derive(Clone, Default)]
pub struct KeyStore {
    current: Arc<ArcSwap<KeySnapshot>>,
    /// Serialises writers; holds the configured source URLs once a reload has set them, so a
    /// fetch that was under way for a source since removed or moved cannot install its keys.
    writer: Arc<Mutex<Option<Vec<String>>>>,
}

impl KeyStore {
    /// An empty store: nothing verifies until a source brings keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys in force now.
    pub fn snapshot(&self) -> Guard<Arc<KeySnapshot>> {
        self.current.load()
    }

    /// Generation of the keys in force.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// After a reload: keeps the keys of sources still in `urls` (re-numbered to their new
    /// position) and drops the others. Returns the URLs whose keys were dropped.
    pub fn retain_sources(&self, urls: &[String]) -> Vec<Arc<str>> {
        let mut configured = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        *configured = Some(urls.to_vec());
        let old = self.current.load_full();
        let mut dropped = Vec::new();
        let mut sources = Vec::new();
        for s in &old.sources {
            match urls.iter().position(|u| **u == *s.url) {
                Some(index) if index == s.index => sources.push(s.clone()),
                Some(index) => match renumbered(s, index) {
                    Some(moved) => sources.push(Arc::new(moved)),
                    None => dropped.push(s.url.clone()),
                },
                None => dropped.push(s.url.clone()),
            }
        }
        sources.sort_by_key(|s| s.index);
        let generation = old.generation + u64::from(!dropped.is_empty());
        self.current.store(Arc::new(KeySnapshot { sources, generation }));
        dropped
    }

    /// Installs a source's keys; returns false when they equal the ones it already has
    /// (only the fetch time is updated then, and the generation stays).
    pub fn install(&self, mut keys: SourceKeys) -> bool {
        let configured = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(urls) = configured.as_ref() {
            match urls.iter().position(|u| **u == *keys.url) {
                Some(index) => keys.index = index,
                None => return false, // the source was removed by a reload while it was fetched
            }
        }
        let old = self.current.load_full();
        let mut sources = old.sources.clone();
        let changed = match sources.iter().position(|s| s.index == keys.index) {
            Some(at) => {
                let changed = sources[at].current != keys.current || sources[at].old != keys.old;
                sources[at] = Arc::new(keys);
                changed
            }
            None => {
                sources.push(Arc::new(keys));
                sources.sort_by_key(|s| s.index);
                true
            }
        };
        let generation = old.generation + u64::from(changed);
        self.current.store(Arc::new(KeySnapshot { sources, generation }));
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Signer;

    fn keys_for(url: &str, index: usize, signer: &Signer) -> SourceKeys {
        let current = ProofKey::from_components(signer.modulus(), signer.exponent()).unwrap();
        SourceKeys { index, url: Arc::from(url), current, old: None, fetched_at: SystemTime::UNIX_EPOCH }
    }

    #[test]
    fn a_reload_keeps_moved_sources_and_drops_removed_ones() {
        let (a, b) = (Signer::generate(2048), Signer::generate(2048));
        let store = KeyStore::new();
        assert!(store.install(keys_for("https://a", 0, &a)));
        assert!(store.install(keys_for("https://b", 1, &b)));
        let before = store.generation();

        let dropped = store.retain_sources(&["https://c".into(), "https://b".into()]);
        assert_eq!(dropped, vec![Arc::<str>::from("https://a")]);
        let snapshot = store.snapshot();
        assert_eq!(snapshot.sources.len(), 1);
        assert_eq!((&*snapshot.sources[0].url, snapshot.sources[0].index), ("https://b", 1));
        assert_eq!(snapshot.sources[0].current.fingerprint(), keys_for("x", 0, &b).current.fingerprint());
        assert!(store.generation() > before, "a waiter sees that keys went away");

        // A fetch of the removed source that was under way cannot bring its keys back, and a
        // fetch that still uses an old position lands at the source's new one.
        assert!(!store.install(keys_for("https://a", 0, &a)));
        assert!(store.install(keys_for("https://c", 7, &a)));
        let positions: Vec<(String, usize)> =
            store.snapshot().sources.iter().map(|s| (s.url.to_string(), s.index)).collect();
        assert_eq!(positions, [("https://c".to_string(), 0), ("https://b".to_string(), 1)]);
    }

    #[test]
    fn discovered_keys_drop_an_old_key_equal_to_the_current_one() {
        let (a, b) = (Signer::generate(2048), Signer::generate(2048));
        let key = |s: &Signer| keys_for("x", 0, s).current;
        let found =
            |old: Option<&Signer>| DiscoveredKeys { current: key(&a), old: old.map(key), current_from: "value" };
        let at = SystemTime::UNIX_EPOCH;
        let same = SourceKeys::from_discovered(3, Arc::from("https://a"), found(Some(&a)), at);
        assert_eq!((same.index, &*same.url, same.old), (3, "https://a", None));
        let rotated = SourceKeys::from_discovered(0, Arc::from("https://a"), found(Some(&b)), at);
        assert_eq!(rotated.old.as_ref().map(ProofKey::fingerprint), Some(key(&b).fingerprint()));
        assert_eq!(rotated.current.fingerprint(), key(&a).fingerprint());
    }
}
