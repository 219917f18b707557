//! The keys in force: one immutable snapshot, swapped whole when a source brings new keys, read
//! on every request without a lock or an allocation.
//!
//! Behind the snapshot, the store keeps what every source served: its latest answer (current
//! and old key), the answers it served within `keys.retention` before that, and for `rotation`
//! trust the keys trusted per discovery URL. The snapshot holds only the trusted keys; held keys
//! are listed beside them for logs and metrics and never verify anything.

use arc_swap::{ArcSwap, Guard};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::discovery::DiscoveredKeys;
use super::key::{Fingerprint, ProofKey};
use super::published::published;
use super::trust::{judge, label_of, learn, url_has_trust, Held, KeysConfig, Learned, TrustMode, TrustedSets};

/// One trusted key pair of one source, as the verifier tries it.
#[derive(Debug, Clone)]
pub struct SourceKeys {
    /// Position of the source's URL in `discovery.urls`.
    pub index: usize,
    /// The source: the discovery URL, or `URL@address` with `discovery.resolve_all`.
    pub url: Arc<str>,
    /// The current key.
    pub current: ProofKey,
    /// The old key, when published, different from the current one, and trusted.
    pub old: Option<ProofKey>,
    /// When the source last served this pair.
    pub fetched_at: SystemTime,
    /// True for a pair the source served before its latest answer, kept by `keys.retention`.
    pub retained: bool,
}

/// A key a source served that is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    /// The source (URL, or `URL@address`).
    pub source: Arc<str>,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Why it is held.
    pub why: Held,
}

/// `rotation`: a key a source serves that no request has proved yet, tried only as the
/// evidence of a rotation (`X-WOPI-Proof` signed with it, `X-WOPI-ProofOld` with a trusted key).
#[derive(Debug, Clone)]
pub struct Unproved {
    /// Position of the source's URL in `discovery.urls`: evidence counts only for the same URL.
    pub index: usize,
    /// The source (URL, or `URL@address`), whose trusted set it would join.
    pub label: Arc<str>,
    /// The key.
    pub key: ProofKey,
}

/// Every source's last-known-good keys, in configuration order.
#[derive(Debug, Default)]
pub struct KeySnapshot {
    /// Trusted key pairs: each source's latest, then the ones it retains. A source that never
    /// answered, or whose keys are all held, is absent.
    pub sources: Vec<Arc<SourceKeys>>,
    /// Bumped on every change of the trusted keys, so a waiter can tell whether a re-fetch
    /// brought anything.
    pub generation: u64,
    /// Keys served but not used.
    pub held: Vec<HeldKey>,
    /// `rotation`: the held keys a request may prove.
    pub unproved: Vec<Unproved>,
    /// When each source last answered.
    pub answered: Vec<(Arc<str>, SystemTime)>,
    /// How many times each source's current key changed to one it had not served within the
    /// retention window.
    pub changes: Vec<(Arc<str>, u64)>,
}

impl KeySnapshot {
    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Fingerprints of every trusted key, for refusal logs.
    pub fn fingerprints(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .sources
            .iter()
            .flat_map(|s| std::iter::once(&s.current).chain(s.old.as_ref()))
            .map(ProofKey::fingerprint)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// One discovery answer, as a source served it.
#[derive(Debug, Clone)]
pub struct Served {
    /// Position of the discovery URL in `discovery.urls` (corrected to the configured one).
    pub index: usize,
    /// The discovery URL.
    pub url: Arc<str>,
    /// The office node's address, with `discovery.resolve_all`.
    pub address: Option<IpAddr>,
    /// The keys (an old key equal to the current one already dropped).
    pub current: ProofKey,
    /// The old key.
    pub old: Option<ProofKey>,
    /// When it was served.
    pub at: SystemTime,
}

impl Served {
    /// The answer `keys` of the source at `url` (and `address`), served `at`.
    pub fn new(index: usize, url: Arc<str>, address: Option<IpAddr>, keys: DiscoveredKeys, at: SystemTime) -> Self {
        let old = keys.old.filter(|old| *old != keys.current);
        Served { index, url, address, current: keys.current, old, at }
    }

    /// The source's name in logs and metrics: the URL, or `URL@address`.
    pub fn source(&self) -> Arc<str> {
        source_label(&self.url, self.address)
    }
}

/// The name of the source at `url` (and `address`).
pub fn source_label(url: &str, address: Option<IpAddr>) -> Arc<str> {
    match address {
        Some(ip) => Arc::from(format!("{url}@{ip}")),
        None => Arc::from(url),
    }
}

#[derive(Debug, Clone)]
struct Answer {
    current: ProofKey,
    old: Option<ProofKey>,
    last_seen: SystemTime,
}

#[derive(Debug)]
struct Source {
    index: usize,
    url: Arc<str>,
    label: Arc<str>,
    /// The latest answer first, then older ones within the retention window.
    answers: Vec<Answer>,
    fetched_at: SystemTime,
    /// Its address no longer resolves: every answer is only retained.
    retired: bool,
}

#[derive(Default)]
struct State {
    config: KeysConfig,
    /// The configured URLs once a reload set them: a fetch under way for a source since removed
    /// or moved cannot install its keys.
    configured: Option<Vec<String>>,
    sources: Vec<Source>,
    trusted: TrustedSets,
    changes: BTreeMap<Arc<str>, u64>,
    /// `rotation`: URLs in their first fetch round with no trusted key before it began; every
    /// address that answers in it trusts its own keys on first use.
    open_rounds: std::collections::BTreeSet<Arc<str>>,
    /// `rotation`: URLs that never trust on first use again, whatever is trusted locally: the
    /// fleet's trust is kept elsewhere (`[shared]` says the URL is founded), or where it is kept
    /// could not be read (fail closed: keys are held, not trusted on sight).
    founded: std::collections::BTreeSet<Arc<str>>,
}

/// What the cache file keeps of a source.
#[derive(Debug, Clone)]
pub struct CachedSource {
    /// Position of the URL in `discovery.urls`.
    pub index: usize,
    /// The discovery URL.
    pub url: Arc<str>,
    /// The node's address, with `resolve_all`.
    pub address: Option<IpAddr>,
    /// When it last answered.
    pub fetched_at: SystemTime,
    /// Its answers, latest first: current key, old key, last served.
    pub answers: Vec<(ProofKey, Option<ProofKey>, SystemTime)>,
}

/// Shared handle to the keys in force; clones share the same keys.
#[derive(Clone, Default)]
pub struct KeyStore {
    /// The `[[routes]]` route the keys are for, named in every log line about them.
    route: Option<Arc<str>>,
    current: Arc<ArcSwap<KeySnapshot>>,
    /// Serialises writers.
    state: Arc<Mutex<State>>,
}

impl KeyStore {
    /// An empty store trusting every key discovery serves (but published ones): nothing
    /// verifies until a source brings keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, for the keys of the route `route` (`None` without `[[routes]]`).
    pub fn for_route(route: Option<Arc<str>>) -> Self {
        KeyStore { route, ..Self::default() }
    }

    /// The route these keys are for, as log lines name it.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys in force now.
    pub fn snapshot(&self) -> Guard<Arc<KeySnapshot>> {
        self.current.load()
    }

    /// Generation of the keys in force.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// Applies `[keys]` (at start and on every reload): every key served is judged again, so a
    /// key held until now and since pinned verifies at once.
    pub fn configure(&self, config: &KeysConfig) {
        let mut state = self.lock();
        if state.config == *config {
            return;
        }
        state.config = config.clone();
        let state = &mut *state;
        if config.trust != TrustMode::Rotation {
            // A trusted set learned long ago must not come back if `rotation` is chosen again.
            state.trusted.clear();
        }
        // Switched to `rotation`: the keys loaded now are the first ones (where no trusted set
        // exists yet for their URL).
        for s in &state.sources {
            let front = &s.answers[0];
            let first_use = !url_has_trust(&state.trusted, &s.url) || state.open_rounds.contains(&s.url);
            for (id, how) in
                learn(&state.config, &mut state.trusted, &s.label, first_use, &front.current, front.old.as_ref())
            {
                log_learned(self.route(), &s.label, id, how);
            }
        }
        self.publish(state);
    }

    /// `rotation`: a request proved `key` for source `label` (signed with it and with a trusted
    /// key, over bytes not seen before): it joins the source's trusted set. True when it was new.
    pub fn prove(&self, label: &Arc<str>, key: &ProofKey, by: &str) -> bool {
        let mut state = self.lock();
        if state.config.trust != TrustMode::Rotation {
            return false;
        }
        if !state.trusted.entry(label.clone()).or_default().insert(key.id()) {
            return false;
        }
        tracing::warn!(route = self.route(), source = %label, key = key.fingerprint(), proved_by = by, "rotation proved by a request signed by both keys: the new key is trusted");
        self.publish(&state);
        true
    }

    /// `[shared]`: the set every instance keeps for `label` replaces this one's (the first
    /// instance to write it won; a restarted pod adopts it). True when the trusted keys changed.
    pub fn adopt(&self, label: &Arc<str>, set: BTreeSet<Fingerprint>) -> bool {
        let mut state = self.lock();
        if state.config.trust != TrustMode::Rotation || state.trusted.get(label) == Some(&set) {
            return false;
        }
        tracing::info!(route = self.route(), source = %label, keys = set.len(), "trusted proof keys adopted from [shared]");
        state.trusted.insert(label.clone(), set);
        self.publish(&state)
    }

    /// `rotation`: the trusted sets of the sources of `url` (labels with their sets).
    pub fn trusted_of(&self, url: &str) -> Vec<(Arc<str>, BTreeSet<Fingerprint>)> {
        let state = self.lock();
        if state.config.trust != TrustMode::Rotation {
            return Vec::new();
        }
        state
            .trusted
            .iter()
            .filter(|(label, set)| label_of(url, label) && !set.is_empty())
            .map(|(l, s)| (l.clone(), s.clone()))
            .collect()
    }

    /// `rotation`: `url` never trusts on first use again (its trust is kept by `[shared]`, or the
    /// place it is kept could not be read).
    pub fn close_first_use(&self, url: &Arc<str>) {
        let mut state = self.lock();
        state.founded.insert(url.clone());
        state.open_rounds.remove(url);
    }

    /// `[keys] trust` in force.
    pub fn trust_mode(&self) -> TrustMode {
        self.lock().config.trust
    }

    /// The labels of the sources of `url` the store holds answers from.
    pub fn labels_of(&self, url: &str) -> Vec<Arc<str>> {
        self.lock().sources.iter().filter(|s| &*s.url == url).map(|s| s.label.clone()).collect()
    }

    /// The end of a fetch round of `url`: its first round, if it was one, is over.
    pub fn round_done(&self, url: &str) {
        self.lock().open_rounds.remove(url);
    }

    /// The `rotation` trusted sets, for the cache file.
    pub fn trusted_sets(&self) -> TrustedSets {
        self.lock().trusted.clone()
    }

    /// Restores what the cache file kept: the `rotation` trusted sets (only in that mode), then
    /// the answers of every source the store has none for yet. Returns the sources restored.
    pub fn restore(&self, sources: Vec<CachedSource>, trusted: TrustedSets) -> Vec<Arc<str>> {
        let mut state = self.lock();
        let state = &mut *state;
        if state.config.trust == TrustMode::Rotation {
            for (url, set) in trusted {
                state.trusted.entry(url).or_default().extend(set);
            }
        }
        let mut restored = Vec::new();
        for cached in sources {
            let label = source_label(&cached.url, cached.address);
            let index = match state.configured.as_ref() {
                Some(urls) => match urls.iter().position(|u| **u == *cached.url) {
                    Some(index) => index,
                    None => continue,
                },
                None => cached.index,
            };
            if cached.answers.is_empty() || state.sources.iter().any(|s| s.label == label) {
                continue;
            }
            let (current, old, _) = &cached.answers[0];
            let first_use = !url_has_trust(&state.trusted, &cached.url);
            for (id, how) in learn(&state.config, &mut state.trusted, &label, first_use, current, old.as_ref()) {
                log_learned(self.route(), &label, id, how);
            }
            let answers = cached
                .answers
                .into_iter()
                .map(|(current, old, last_seen)| Answer { current, old, last_seen })
                .collect();
            state.sources.push(Source {
                index,
                url: cached.url,
                label: label.clone(),
                answers,
                fetched_at: cached.fetched_at,
                retired: false,
            });
            restored.push(label);
        }
        state.sources.sort_by(|a, b| (a.index, &a.label).cmp(&(b.index, &b.label)));
        self.publish(state);
        restored
    }

    /// Every source's answers, for the cache file.
    pub fn cached(&self) -> Vec<CachedSource> {
        let state = self.lock();
        state
            .sources
            .iter()
            .map(|s| CachedSource {
                index: s.index,
                url: s.url.clone(),
                address: address_of(&s.url, &s.label),
                fetched_at: s.fetched_at,
                answers: s.answers.iter().map(|a| (a.current.clone(), a.old.clone(), a.last_seen)).collect(),
            })
            .collect()
    }

    /// Every source's label.
    pub fn source_labels(&self) -> Vec<Arc<str>> {
        self.lock().sources.iter().map(|s| s.label.clone()).collect()
    }

    /// True when source `label` has an answer.
    pub fn has_source(&self, label: &str) -> bool {
        self.lock().sources.iter().any(|s| &*s.label == label)
    }

    /// True when any source of `url` has an answer.
    pub fn has_url(&self, url: &str) -> bool {
        self.lock().sources.iter().any(|s| &*s.url == url)
    }

    /// After a reload: keeps the keys of sources whose URL is still in `urls` (re-numbered to
    /// their new position) and drops the others. Returns the sources whose keys were dropped.
    pub fn retain_sources(&self, urls: &[String]) -> Vec<Arc<str>> {
        let mut state = self.lock();
        state.configured = Some(urls.to_vec());
        let mut dropped = Vec::new();
        state.sources.retain_mut(|s| match urls.iter().position(|u| **u == *s.url) {
            Some(index) => {
                s.index = index;
                true
            }
            None => {
                dropped.push(s.label.clone());
                false
            }
        });
        state.trusted.retain(|label, _| urls.iter().any(|u| label_of(u, label)));
        state.sources.sort_by(|a, b| (a.index, &a.label).cmp(&(b.index, &b.label)));
        self.publish(&state);
        dropped
    }

    /// Installs a source's answer; returns true when the trusted keys changed. A `rotation`
    /// trust learns from it first (trust on first use, in the URL's first fetch round).
    pub fn install(&self, served: Served) -> bool {
        let mut state = self.lock();
        let mut served = served;
        if let Some(urls) = state.configured.as_ref() {
            match urls.iter().position(|u| **u == *served.url) {
                Some(index) => served.index = index,
                None => return false, // the source was removed by a reload while it was fetched
            }
        }
        let label = served.source();
        let state = &mut *state;
        // A URL with no trusted key opens its first fetch round: every address answering in it
        // trusts its own keys, not only the first to answer.
        if state.config.trust == TrustMode::Rotation
            && !url_has_trust(&state.trusted, &served.url)
            && !state.founded.contains(&served.url)
        {
            state.open_rounds.insert(served.url.clone());
        }
        let first_use = state.open_rounds.contains(&served.url);
        for (id, how) in
            learn(&state.config, &mut state.trusted, &label, first_use, &served.current, served.old.as_ref())
        {
            log_learned(self.route(), &label, id, how);
        }
        let answer = Answer { current: served.current, old: served.old, last_seen: served.at };
        match state.sources.iter_mut().find(|s| s.label == label) {
            Some(source) => {
                source.retired = false;
                source.fetched_at = served.at;
                source.index = served.index;
                let same = |a: &Answer| a.current == answer.current && a.old == answer.old;
                if same(&source.answers[0]) {
                    source.answers[0].last_seen = served.at;
                } else {
                    let previous = source.answers[0].current.fingerprint().to_owned();
                    let known = source.answers.iter().any(|a| a.current == answer.current);
                    if !known && source.answers[0].current != answer.current {
                        *state.changes.entry(label.clone()).or_default() += 1;
                        tracing::warn!(route = self.route(), source = %label, key = answer.current.fingerprint(), previous_key = %previous, "the source's current proof key changed");
                    }
                    source.answers.retain(|a| !same(a));
                    source.answers.insert(0, answer);
                }
            }
            None => {
                state.sources.push(Source {
                    index: served.index,
                    url: served.url.clone(),
                    label: label.clone(),
                    answers: vec![answer],
                    fetched_at: served.at,
                    retired: false,
                });
                state.sources.sort_by(|a, b| (a.index, &a.label).cmp(&(b.index, &b.label)));
            }
        }
        prune(state, served.at);
        self.publish(state)
    }

    /// The sources of `url` that the last fetch did not reach keep their keys only for
    /// `keys.retention` from now: with `resolve_all`, those whose address no longer resolves (not
    /// in `live`) and one fetched without it; without (`live` is `None`), those of addresses.
    /// Returns them.
    pub fn retire_absent(&self, url: &str, live: Option<&[IpAddr]>, now: SystemTime) -> Vec<Arc<str>> {
        let mut state = self.lock();
        let mut retired = Vec::new();
        for s in state.sources.iter_mut().filter(|s| &*s.url == url && !s.retired) {
            let reached = match (live, address_of(&s.url, &s.label)) {
                (Some(live), Some(address)) => live.contains(&address),
                (Some(_), None) | (None, Some(_)) => false,
                (None, None) => true,
            };
            if !reached {
                s.retired = true;
                retired.push(s.label.clone());
            }
        }
        if !retired.is_empty() {
            prune(&mut state, now);
            self.publish(&state);
        }
        retired
    }

    /// Drops the answers older than `keys.retention` (after each fetch round, so they also go
    /// while discovery is down). A source's latest answer stays: its last-known-good keys.
    pub fn expire(&self, now: SystemTime) {
        let mut state = self.lock();
        if prune(&mut state, now) {
            self.publish(&state);
        }
    }

    /// Builds and stores the snapshot of `state`; true when the trusted keys changed.
    fn publish(&self, state: &State) -> bool {
        let old = self.current.load_full();
        let mut sources = Vec::new();
        let mut held: Vec<HeldKey> = Vec::new();
        for source in &state.sources {
            for (i, answer) in source.answers.iter().enumerate() {
                let verdict = |key: &ProofKey| judge(&state.config, &state.trusted, &source.url, &source.label, key);
                let mut hold = |key: &ProofKey, why: Held| {
                    let entry = HeldKey { source: source.label.clone(), fingerprint: key.id(), why };
                    if !held.contains(&entry) {
                        held.push(entry);
                    }
                };
                let current = verdict(&answer.current);
                if let Err(why) = current {
                    hold(&answer.current, why);
                }
                let old = match &answer.old {
                    Some(k) => match verdict(k) {
                        Ok(()) => Some(k.clone()),
                        Err(why) => {
                            hold(k, why);
                            None
                        }
                    },
                    None => None,
                };
                // A pair is used through its trusted current key; when only its old key is
                // trusted (a pinned key in the old slot, a rotation not proved yet), through that
                // one alone: the office server still signs with it during the rotation.
                // Answers that differ only in a held old key verify the same: tried once.
                let (used, used_old) = match (current, old) {
                    (Ok(()), old) => (answer.current.clone(), old),
                    (Err(_), Some(old)) => (old, None),
                    (Err(_), None) => continue,
                };
                let repeated = |s: &Arc<SourceKeys>| s.url == source.label && s.current == used && s.old == used_old;
                if !sources.iter().any(repeated) {
                    sources.push(Arc::new(SourceKeys {
                        index: source.index,
                        url: source.label.clone(),
                        current: used,
                        old: used_old,
                        fetched_at: answer.last_seen,
                        retained: i > 0 || source.retired,
                    }));
                }
            }
        }
        // The same pairs in another order (a retained answer served again) verify the same.
        let pairs = |list: &[Arc<SourceKeys>]| {
            let mut v: Vec<(Arc<str>, Fingerprint, Option<Fingerprint>)> =
                list.iter().map(|s| (s.url.clone(), s.current.id(), s.old.as_ref().map(ProofKey::id))).collect();
            v.sort();
            v
        };
        let same_keys = pairs(&old.sources) == pairs(&sources);
        for h in held.iter().filter(|h| !old.held.contains(h)) {
            match h.why {
                Held::Published(p) if state.config.allow_published => {
                    tracing::warn!(route = self.route(), source = %h.source, key = %h.fingerprint, published = %p, "proof key with a published private key")
                }
                why => {
                    tracing::error!(route = self.route(), source = %h.source, key = %h.fingerprint, reason = why.label(), why = %why, fix = why.advice(), "proof key held: it is never used to verify")
                }
            }
        }
        if state.config.allow_published {
            for s in &sources {
                for key in std::iter::once(&s.current).chain(s.old.as_ref()) {
                    if let (Some(p), false) = (published(key), old.fingerprints().contains(&key.fingerprint())) {
                        tracing::error!(route = self.route(), source = %s.url, key = key.fingerprint(), published = %p, "keys.allow_published lets a key whose private half is public verify: anyone can sign WOPI requests");
                    }
                }
            }
        }
        let generation = old.generation + u64::from(!same_keys);
        let mut unproved: Vec<Unproved> = Vec::new();
        for h in held.iter().filter(|h| h.why == Held::NotAnnounced) {
            let Some(source) = state.sources.iter().find(|s| s.label == h.source) else { continue };
            let keys = source.answers.iter().flat_map(|a| std::iter::once(&a.current).chain(a.old.as_ref()));
            if let Some(key) = keys.into_iter().find(|k| k.id() == h.fingerprint) {
                if !unproved.iter().any(|u| u.label == h.source && u.key == *key) {
                    unproved.push(Unproved { index: source.index, label: h.source.clone(), key: key.clone() });
                }
            }
        }
        self.current.store(Arc::new(KeySnapshot {
            sources,
            generation,
            held,
            unproved,
            answered: state.sources.iter().map(|s| (s.label.clone(), s.fetched_at)).collect(),
            changes: state.changes.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }));
        !same_keys
    }
}

fn log_learned(route: Option<&str>, source: &str, id: Fingerprint, how: Learned) {
    match how {
        Learned::FirstUse => {
            tracing::info!(route, source, key = %id, "proof key trusted on first use (keys.trust = \"rotation\")")
        }
        Learned::Proved => {
            tracing::warn!(route, source, key = %id, "rotation proved by a request signed by both keys: the new key is trusted")
        }
    }
}

/// The address part of a `URL@address` source label.
fn address_of(url: &str, label: &str) -> Option<IpAddr> {
    label.strip_prefix(url)?.strip_prefix('@')?.parse().ok()
}

/// Drops retained answers last served more than `keys.retention` before `now`, and retired
/// sources left with none. A source's latest answer stays (its last-known-good keys), and so does
/// its latest answer with a trusted current key: a held key (a forged discovery answer, or a
/// restart with a key nobody proved) does not take the trusted keys away. True when anything
/// went.
fn prune(state: &mut State, now: SystemTime) -> bool {
    let retention = state.config.retention;
    let (config, trusted) = (&state.config, &state.trusted);
    let mut changed = false;
    state.sources.retain_mut(|s| {
        let before = s.answers.len();
        let last_trusted = if s.retired {
            None
        } else {
            // An answer whose current or old key is trusted keeps verifying (the old slot).
            let trusted_key = |k: &ProofKey| judge(config, trusted, &s.url, &s.label, k).is_ok();
            s.answers.iter().position(|a| trusted_key(&a.current) || a.old.as_ref().is_some_and(trusted_key))
        };
        let mut i = 0;
        s.answers.retain(|a| {
            let keep = (i == 0 && !s.retired) || Some(i) == last_trusted || a.last_seen + retention >= now;
            i += 1;
            keep
        });
        changed |= s.answers.len() != before;
        !s.answers.is_empty()
    });
    changed
}

#[cfg(test)]
mod tests;
