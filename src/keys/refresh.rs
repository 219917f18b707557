//! Keeping keys fresh: a periodic refresh of every source, and a failure-triggered re-fetch that
//! is single-flight and rate-limited per source, so a flood of bad requests never becomes a flood
//! of discovery fetches. A source that fails keeps its last-known-good keys.
//!
//! Ownership: the proxy and its discovery task share one [`Refresher`] (a cheap clone); a reload
//! that changes `[discovery]` makes a new one over the same [`KeyStore`]. The periodic loop is
//! the proxy's background service (`proxy::runtime`), which follows reloads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::cache::{load_cache, save_cache};
use super::discovery::parse_discovery;
use super::fetch::{discovery_client, discovery_client_to, fetch_discovery, ClientError, FetchLimits};
use super::resolve::Resolver;
use super::share::TrustShare;
use super::store::{source_label, KeyStore, Served};
use crate::trust::ClientTls;

/// `[discovery]`, validated: the sources and how they are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Discovery URLs.
    pub urls: Vec<String>,
    /// Periodic refresh.
    pub refresh_interval: Duration,
    /// Failure-triggered re-fetch at most this often per source.
    pub min_refresh_interval: Duration,
    /// Key cache.
    pub cache_file: Option<PathBuf>,
    /// Whole-fetch timeout.
    pub timeout: Duration,
    /// Largest accepted document.
    pub max_bytes: usize,
    /// How the office servers' certificates are checked.
    pub tls: ClientTls,
    /// Fetch each URL from every address its host name resolves to.
    pub resolve_all: bool,
    /// How `resolve_all` resolves names (not in the file: the system's, or fixed in tests).
    pub resolver: Resolver,
}

/// What one fetch of one source did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// New keys are in force.
    Updated,
    /// The document gave the keys already in force.
    Unchanged,
    /// The fetch or the document failed; the source keeps its last-known-good keys.
    Failed(String),
    /// A failure-triggered re-fetch within `min_refresh_interval` of the last attempt: not sent.
    RateLimited,
}

impl RefreshOutcome {
    /// Every outcome's metric label, in [`RefreshOutcome::index`] order.
    pub const LABELS: [&'static str; 4] = ["updated", "unchanged", "failed", "rate_limited"];

    /// Position of this outcome in [`RefreshOutcome::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            RefreshOutcome::Updated => 0,
            RefreshOutcome::Unchanged => 1,
            RefreshOutcome::Failed(_) => 2,
            RefreshOutcome::RateLimited => 3,
        }
    }

    /// Metric label.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

/// Told of every fetch of a source (its URL) and how it ended, re-fetches not sent included:
/// the metrics' discovery counters listen here.
pub type FetchObserver = Arc<dyn Fn(&str, &RefreshOutcome) + Send + Sync>;

/// Told of each `resolve_all` source gone past `keys.retention`.
pub type ForgetObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// Whether a caller waits for a fetch of the same source that is already under way.
#[derive(Clone, Copy)]
enum Wait {
    Yes,
    No,
}

struct Source {
    url: Arc<str>,
    /// Held for the length of a fetch (single flight); holds the time of the last attempt.
    last_attempt: Mutex<Option<Instant>>,
}

struct Inner {
    /// What this refresher was made for.
    config: DiscoveryConfig,
    store: KeyStore,
    sources: Vec<Source>,
    client: reqwest::Client,
    /// `resolve_all`: one client per (host, address), built on first use.
    pinned_clients: std::sync::Mutex<std::collections::HashMap<(String, std::net::IpAddr), reqwest::Client>>,
    resolve_all: bool,
    resolver: Resolver,
    tls: ClientTls,
    limits: FetchLimits,
    refresh_interval: Duration,
    min_refresh_interval: Duration,
    cache_file: Option<PathBuf>,
    observer: FetchObserver,
    /// `[shared]` with `rotation`: where every instance's trusted sets are kept.
    share: std::sync::Mutex<Option<Arc<dyn TrustShare>>>,
    /// Told of each source (`URL@address`) gone past `keys.retention`, so its metric label sets
    /// go too.
    forget: std::sync::Mutex<Option<ForgetObserver>>,
}

/// Shared handle on the discovery sources; clones share the same state.
#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

impl Refresher {
    /// A refresher for the configured sources, filling `store`. Cached keys are loaded at once
    /// for sources the store has no keys for. Fails only when the HTTP client cannot be built
    /// (an unreadable `discovery.ca_file`).
    pub fn new(config: &DiscoveryConfig, store: KeyStore, observer: FetchObserver) -> Result<Self, ClientError> {
        let client = discovery_client(&config.tls)?;
        Ok(Refresher::with_client(config, store, observer, client))
    }

    /// As [`Refresher::new`] with an HTTP client already built (by [`discovery_client`]).
    pub fn with_client(
        config: &DiscoveryConfig,
        store: KeyStore,
        observer: FetchObserver,
        client: reqwest::Client,
    ) -> Self {
        let sources = config
            .urls
            .iter()
            .map(|url| Source { url: Arc::from(url.as_str()), last_attempt: Mutex::new(None) })
            .collect();
        let refresher = Refresher {
            inner: Arc::new(Inner {
                config: config.clone(),
                store,
                sources,
                client,
                pinned_clients: Default::default(),
                resolve_all: config.resolve_all,
                resolver: config.resolver.clone(),
                tls: config.tls.clone(),
                limits: FetchLimits { timeout: config.timeout, max_bytes: config.max_bytes },
                refresh_interval: config.refresh_interval,
                min_refresh_interval: config.min_refresh_interval,
                cache_file: config.cache_file.clone(),
                observer,
                share: Default::default(),
                forget: Default::default(),
            }),
        };
        refresher.load_cache(&config.urls);
        refresher
    }

    /// Whether `other` is a clone of this refresher (the same sources and state).
    pub fn is_same(&self, other: &Refresher) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The `[discovery]` it was made for.
    pub fn config(&self) -> &DiscoveryConfig {
        &self.inner.config
    }

    /// The periodic refresh interval.
    pub fn refresh_interval(&self) -> Duration {
        self.inner.refresh_interval
    }

    /// The store this refresher fills.
    pub fn store(&self) -> &KeyStore {
        &self.inner.store
    }

    fn load_cache(&self, urls: &[String]) {
        let Some(path) = &self.inner.cache_file else { return };
        match load_cache(path, urls) {
            Ok(cached) => {
                for source in self.inner.store.restore(cached.sources, cached.trusted) {
                    tracing::info!(route = self.inner.store.route(), %source, "loaded cached proof keys");
                }
            }
            Err(error) => {
                tracing::warn!(route = self.inner.store.route(), cache_file = %path.display(), %error, "ignoring the key cache");
                // `rotation`: the trusted sets it kept are unknown, so nothing is trusted on first
                // use (a corrupt file must not make wopi-guard trust whatever it sees next).
                if self.inner.store.trust_mode() == super::trust::TrustMode::Rotation {
                    for url in urls {
                        self.inner.store.close_first_use(&Arc::from(url.as_str()));
                    }
                    tracing::error!(route = self.inner.store.route(), cache_file = %path.display(), "keys.trust = \"rotation\" with an unreadable cache file: every key is held until pinned (keys.pinned) or the file is restored");
                }
            }
        }
    }

    /// How many discovery sources there are (indexes `0..count`).
    pub fn source_count(&self) -> usize {
        self.inner.sources.len()
    }

    /// The URL of source `index`.
    pub fn source_url(&self, index: usize) -> Option<&str> {
        self.inner.sources.get(index).map(|s| &*s.url)
    }

    /// Fetches source `index` now, waiting for a fetch of it already under way (the periodic
    /// refresh and its retries: `keys::Schedule` says when).
    pub async fn refresh_source(&self, index: usize) -> RefreshOutcome {
        if index >= self.inner.sources.len() {
            return RefreshOutcome::Failed(format!("no discovery source number {index}"));
        }
        self.fetch_source(index, None, Wait::Yes).await
    }

    /// After a proof failed with keys of generation `seen`: re-fetch every source that was not
    /// attempted within `min_refresh_interval`, waiting for a fetch already under way instead of
    /// starting another. True when the keys in force changed since `seen`.
    pub async fn refetch_after_failure(&self, seen: u64) -> bool {
        let min = self.inner.min_refresh_interval;
        let fetches = (0..self.inner.sources.len()).map(|i| self.fetch_source(i, Some(min), Wait::Yes));
        futures_util::future::join_all(fetches).await;
        self.inner.store.generation() != seen
    }

    /// Like [`Self::refetch_after_failure`] without waiting, and skipping a source whose fetch
    /// is already under way: for a proof that verified only through an old key (a sign of
    /// rotation, no reason to delay the request), and while there are no keys at all (no request
    /// waits on a discovery that is down, and a flood spawns only tasks that end at once).
    pub fn refetch_in_background(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let min = this.inner.min_refresh_interval;
            let fetches = (0..this.inner.sources.len()).map(|i| this.fetch_source(i, Some(min), Wait::No));
            futures_util::future::join_all(fetches).await;
        });
    }

    async fn fetch_source(&self, index: usize, rate_limit: Option<Duration>, wait: Wait) -> RefreshOutcome {
        let source = &self.inner.sources[index];
        // A re-fetch not sent is counted too: the metric shows refused re-reads under a flood.
        let not_sent = || {
            (self.inner.observer)(&source.url, &RefreshOutcome::RateLimited);
            RefreshOutcome::RateLimited
        };
        let mut last_attempt = match wait {
            Wait::Yes => source.last_attempt.lock().await,
            Wait::No => match source.last_attempt.try_lock() {
                Ok(guard) => guard,
                Err(_) => return not_sent(),
            },
        };
        if let (Some(min), Some(last)) = (rate_limit, *last_attempt) {
            if last.elapsed() < min {
                return not_sent();
            }
        }
        *last_attempt = Some(Instant::now());
        // The round ends however this future ends (a dropped fetch must not leave the URL's
        // first round open, trusting every new address on first use).
        struct RoundDone<'a>(&'a KeyStore, &'a str);
        impl Drop for RoundDone<'_> {
            fn drop(&mut self) {
                self.0.round_done(self.1);
            }
        }
        let round = RoundDone(&self.inner.store, &source.url);
        self.pull_trust(&source.url).await;
        let outcome = if self.inner.resolve_all {
            self.fetch_every_address(index, &source.url).await
        } else {
            let outcome = self.fetch_one(index, &source.url, None).await;
            if !matches!(outcome, RefreshOutcome::Failed(_)) {
                // resolve_all was switched off by a reload: the per-address sources are done.
                for gone in self.inner.store.retire_absent(&source.url, None, SystemTime::now()) {
                    tracing::warn!(route = self.inner.store.route(), source = %gone, "discovery.resolve_all is off: this node's keys are kept only for keys.retention");
                }
            }
            outcome
        };
        self.inner.store.expire(SystemTime::now());
        if self.inner.resolve_all {
            self.forget_gone(&source.url);
        }
        drop(round);
        self.push_trust(&source.url).await;
        // The cache also keeps last-seen times and the trusted sets: written after every answer.
        if !matches!(outcome, RefreshOutcome::Failed(_)) {
            self.save_cache();
        }
        outcome
    }

    /// One fetch from one source (the URL, or one address of it), told to the observer.
    async fn fetch_one(&self, index: usize, url: &Arc<str>, address: Option<std::net::IpAddr>) -> RefreshOutcome {
        let label = source_label(url, address);
        let outcome = match self.client_for(url, address) {
            Ok(client) => self.fetch_and_install(index, url, address, &client).await,
            Err(error) => RefreshOutcome::Failed(error),
        };
        (self.inner.observer)(&label, &outcome);
        if let RefreshOutcome::Failed(error) = &outcome {
            let keeps = self.inner.store.has_source(&label);
            tracing::error!(route = self.inner.store.route(), source = %label, %error, keeps_last_known_good_keys = keeps, "discovery refresh failed");
        }
        outcome
    }

    /// `resolve_all`: resolves the URL's host again and fetches from every address at once;
    /// sources whose address is gone keep their keys for `keys.retention`. Updated when any
    /// address brought new keys, failed when every one failed (or the name did not resolve).
    async fn fetch_every_address(&self, index: usize, url: &Arc<str>) -> RefreshOutcome {
        let parsed = match url::Url::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return RefreshOutcome::Failed(format!("not a URL: {e}")),
        };
        let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
            return RefreshOutcome::Failed("the URL has no host".into());
        };
        let addresses = match self.inner.resolver.resolve(host, port).await {
            Ok(addresses) => addresses,
            Err(e) => {
                let outcome = RefreshOutcome::Failed(format!("cannot resolve {host}: {e}"));
                (self.inner.observer)(url, &outcome);
                let keeps = self.inner.store.has_url(url);
                tracing::error!(route = self.inner.store.route(), source = %url, error = %e, keeps_last_known_good_keys = keeps, "discovery refresh failed: the host name does not resolve");
                return outcome;
            }
        };
        let fetches = addresses.iter().map(|&ip| self.fetch_one(index, url, Some(ip)));
        let outcomes = futures_util::future::join_all(fetches).await;
        for gone in self.inner.store.retire_absent(url, Some(&addresses), SystemTime::now()) {
            tracing::warn!(route = self.inner.store.route(), source = %gone, "the office node's address no longer resolves (or resolve_all was switched on): its keys are kept only for keys.retention");
        }
        if outcomes.contains(&RefreshOutcome::Updated) {
            RefreshOutcome::Updated
        } else if outcomes.iter().all(|o| matches!(o, RefreshOutcome::Failed(_))) {
            let first = outcomes.into_iter().next();
            first.unwrap_or_else(|| RefreshOutcome::Failed("no address".into()))
        } else {
            RefreshOutcome::Unchanged
        }
    }

    /// The HTTP client for `url` (pinned to `address` with `resolve_all`).
    fn client_for(&self, url: &str, address: Option<std::net::IpAddr>) -> Result<reqwest::Client, String> {
        let Some(ip) = address else { return Ok(self.inner.client.clone()) };
        let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let mut clients = self.inner.pinned_clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&(host.clone(), ip)) {
            return Ok(client.clone());
        }
        let client = discovery_client_to(&self.inner.tls, Some((&host, ip))).map_err(|e| e.to_string())?;
        clients.insert((host, ip), client.clone());
        Ok(client)
    }

    async fn fetch_and_install(
        &self,
        index: usize,
        url: &Arc<str>,
        address: Option<std::net::IpAddr>,
        client: &reqwest::Client,
    ) -> RefreshOutcome {
        let body = match fetch_discovery(client, url, self.inner.limits).await {
            Ok(body) => body,
            Err(e) => return RefreshOutcome::Failed(e.to_string()),
        };
        let keys = match parse_discovery(&body) {
            Ok(keys) => keys,
            Err(e) => return RefreshOutcome::Failed(e.to_string()),
        };
        let current_from = keys.current_from;
        let served = Served::new(index, url.clone(), address, keys, SystemTime::now());
        let (current, old) = (&served.current, &served.old);
        let (bits, fingerprint, old_fingerprint) =
            (current.bits(), current.fingerprint().to_owned(), old.as_ref().map(|k| k.fingerprint().to_owned()));
        let source = served.source();
        if self.inner.store.install(served) {
            tracing::info!(route = self.inner.store.route(), %source, bits, key = %fingerprint, old_key = old_fingerprint.as_deref(), from = current_from, "proof keys updated");
            RefreshOutcome::Updated
        } else {
            RefreshOutcome::Unchanged
        }
    }

    /// `rotation`: a request proved `key` for `label`; the trusted set changed, so the cache file
    /// is written now (a restart must not forget it), and with `[shared]` the key is added for
    /// every instance.
    pub fn prove(&self, label: &Arc<str>, key: &crate::keys::ProofKey, by: &str) -> bool {
        let added = self.inner.store.prove(label, key, by);
        if added {
            self.save_cache();
            let url = self.inner.config.urls.iter().find(|u| super::trust::label_of(u, label)).cloned();
            if let (Some(share), Some(url)) = (self.share(), url) {
                let (label, id, route) = (label.clone(), key.id(), self.inner.store.route().map(str::to_owned));
                tokio::spawn(async move {
                    if let Err(error) = share.append(&url, &label, &id).await {
                        tracing::error!(route, source = %label, key = %id, %error, "could not add a proved key to the [shared] trusted set; other instances learn it from their own evidence");
                    }
                });
            }
        }
        added
    }

    /// Tells `forget` of each `resolve_all` source gone past `keys.retention` (its metrics go).
    pub fn set_forget_observer(&self, forget: ForgetObserver) {
        *self.inner.forget.lock().unwrap_or_else(|e| e.into_inner()) = Some(forget);
    }

    /// `resolve_all`: after a round, the sources of `url` the store no longer holds (their
    /// address gone past `keys.retention`) lose their pinned HTTP client and their metric label
    /// sets, so pod IP churn does not grow them without bound.
    fn forget_gone(&self, url: &str) {
        let live = self.inner.store.source_labels();
        let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let mut gone = Vec::new();
        self.inner.pinned_clients.lock().unwrap_or_else(|e| e.into_inner()).retain(|(h, ip), _| {
            let label = source_label(url, Some(*ip));
            let keep = *h != host || live.contains(&label);
            if !keep {
                gone.push(label);
            }
            keep
        });
        let forget = self.inner.forget.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for label in gone {
            tracing::info!(route = self.inner.store.route(), source = %label, "office node gone past keys.retention: its HTTP client and metrics are dropped");
            if let Some(forget) = &forget {
                forget(&label);
            }
        }
    }

    /// With `[shared]` and `rotation`: keeps the trusted sets in `share` from now on.
    pub fn set_trust_share(&self, share: Option<Arc<dyn TrustShare>>) {
        *self.inner.share.lock().unwrap_or_else(|e| e.into_inner()) = share;
    }

    fn share(&self) -> Option<Arc<dyn TrustShare>> {
        self.inner.share.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Before a fetch round of `url`: when `[shared]` says the URL is founded (some instance
    /// trusts keys for it), or cannot say (Redis unreadable: fail closed), nothing of it is
    /// trusted on first use here; the sets it keeps for the sources known so far are adopted.
    async fn pull_trust(&self, url: &Arc<str>) {
        let Some(share) = self.share() else { return };
        let store = &self.inner.store;
        match share.founded(url).await {
            Ok(true) => store.close_first_use(url),
            Ok(false) => {}
            Err(error) => {
                store.close_first_use(url);
                tracing::warn!(route = store.route(), source = %url, %error, "could not read the [shared] trusted sets: nothing is trusted on first use until Redis answers");
            }
        }
        self.adopt_kept(&share, url).await;
    }

    /// Adopts the set `[shared]` keeps for every known source of `url` (a restarted pod of a
    /// `resolve_all` fleet learns each node's set once the node answered).
    async fn adopt_kept(&self, share: &Arc<dyn TrustShare>, url: &Arc<str>) {
        let store = &self.inner.store;
        let mut labels: Vec<Arc<str>> = store.labels_of(url);
        labels.extend(store.trusted_of(url).into_iter().map(|(l, _)| l));
        labels.push(url.clone());
        labels.sort();
        labels.dedup();
        for label in labels {
            match share.kept(url, &label).await {
                Ok(Some(set)) => {
                    store.adopt(&label, set);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(route = store.route(), source = %label, %error, "could not read the [shared] trusted set; the local one is used")
                }
            }
        }
    }

    /// After a fetch round of `url`: each source's set is written to `[shared]` when none is
    /// kept yet (the first instance wins, and the URL is founded), else the kept one is adopted.
    async fn push_trust(&self, url: &Arc<str>) {
        let Some(share) = self.share() else { return };
        let store = &self.inner.store;
        for (label, local) in store.trusted_of(url) {
            match share.claim_or_adopt(url, &label, &local).await {
                Ok(kept) => {
                    store.adopt(&label, kept);
                }
                Err(error) => {
                    tracing::warn!(route = store.route(), source = %label, %error, "could not write the [shared] trusted set; the local one is used")
                }
            }
        }
        self.adopt_kept(&share, url).await;
    }

    fn save_cache(&self) {
        let Some(path) = &self.inner.cache_file else { return };
        if let Err(error) = save_cache(path, &self.inner.store) {
            tracing::warn!(route = self.inner.store.route(), cache_file = %path.display(), %error, "cannot write the key cache");
        }
    }
}
