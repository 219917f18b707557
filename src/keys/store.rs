//! The keys in force: one immutable snapshot, swapped whole when a source brings new keys,
//! read on every request without a lock or an allocation.

use arc_swap::{ArcSwap, Guard};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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

/// Shared handle to the keys in force; clones share the same keys.
#[derive(Clone, Default)]
pub struct KeyStore {
    current: Arc<ArcSwap<KeySnapshot>>,
    writer: Arc<Mutex<()>>,
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

    /// Installs a source's keys; returns false when they equal the ones it already has
    /// (only the fetch time is updated then, and the generation stays).
    pub fn install(&self, keys: SourceKeys) -> bool {
        let _one_writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
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
