//! Rate limits (governor GCRA) per client address, per access token (hashed) and per file id,
//! each with optional stricter budgets per operation.
//!
//! Memory is bounded: each limiter tracks at most `max_tracked_keys` keys in its own store
//! ([`BoundedStore`]). Idle keys (whose budget has fully refilled) are swept every 10 s, and at
//! most once a second while the store is full; a NEW key arriving while the store is still full
//! is refused as rate-limited (fail closed) until the sweep makes room. IPv6 clients are keyed by
//! their /64, so one host cannot spray keys from its own prefix.

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::operation::Operation;
use crate::refusal::LimitScope;

/// One budget: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Sustained rate (may be fractional: 0.5 = one every 2 s).
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Budget {
    fn quota(self) -> Quota {
        let period = Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst)
    }
}

/// The limits for one kind of key: a general budget and per-operation budgets, each optional.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LimitConfig {
    /// Applies to every request with this kind of key.
    pub general: Option<Budget>,
    /// Applies, in addition, to requests of that operation.
    pub operations: Vec<(Operation, Budget)>,
}

/// `[rate_limit]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Keys tracked per limiter at most.
    pub max_tracked_keys: usize,
    /// Per client address (IPv6: per /64).
    pub per_ip: Option<LimitConfig>,
    /// Per access token (its hash).
    pub per_token: Option<LimitConfig>,
    /// Per WOPI file id.
    pub per_file: Option<LimitConfig>,
    /// Per client address (IPv6: per /64): protected requests whose proof failed.
    pub failed_proofs: Option<Budget>,
}

struct StoreInner<K> {
    map: DashMap<K, AtomicU64>,
    len: AtomicUsize,
    cap: usize,
}

/// A governor state store that never holds more than `cap` keys.
pub struct BoundedStore<K>(Arc<StoreInner<K>>);

impl<K> Clone for BoundedStore<K> {
    fn clone(&self) -> Self {
        BoundedStore(self.0.clone())
    }
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    fn new(cap: usize) -> Self {
        BoundedStore(Arc::new(StoreInner { map: DashMap::new(), len: AtomicUsize::new(0), cap }))
    }

    fn tracked(&self) -> usize {
        self.0.len.load(Ordering::Relaxed)
    }
}

/// The compare-and-swap loop of governor's own in-memory state.
fn replace<T, E>(state: &AtomicU64, f: impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>) -> Result<T, E> {
    let mut prev = state.load(Ordering::Acquire);
    loop {
        let (result, next) = f((prev != 0).then(|| Nanos::from(prev)))?;
        match state.compare_exchange_weak(prev, next.into(), Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return Ok(result),
            Err(now) => prev = now,
        }
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.0.map.get(key) {
            return replace(&state, f);
        }
        if self.tracked() >= self.0.cap {
            // Full: the new key counts as one that has just spent its whole budget.
            return f(Some(Nanos::from(u64::MAX / 4))).map(|(result, _)| result);
        }
        let state = self.0.map.entry(key.clone()).or_insert_with(|| {
            self.0.len.fetch_add(1, Ordering::Relaxed);
            AtomicU64::new(0)
        });
        replace(&state, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        let below: u64 = drop_below.into();
        self.0.map.retain(|_, state| state.load(Ordering::Relaxed) > below);
        self.0.len.store(self.0.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.0.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.tracked()
    }

    fn is_empty(&self) -> bool {
        self.tracked() == 0
    }
}

const IDLE_SWEEP: Duration = Duration::from_secs(10);
const FULL_SWEEP: Duration = Duration::from_secs(1);

/// One governor keyed limiter over a [`BoundedStore`].
pub struct KeyedLimiter<K: Hash + Eq + Clone, C: Clock> {
    limiter: RateLimiter<K, BoundedStore<K>, C, NoOpMiddleware<C::Instant>>,
    store: BoundedStore<K>,
    clock: C,
    start: C::Instant,
    last_sweep: AtomicU64,
    max_wait: Duration,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimiter<K, C> {
    /// A limiter for `budget`, tracking at most `cap` keys, on `clock`.
    pub fn new(budget: Budget, cap: usize, clock: C) -> Self {
        let quota = budget.quota();
        let store = BoundedStore::new(cap);
        let limiter = RateLimiter::new(quota, store.clone(), clock.clone());
        let max_wait = quota.burst_size_replenished_in().max(Duration::from_secs(1));
        KeyedLimiter { limiter, store, start: clock.now(), clock, last_sweep: AtomicU64::new(0), max_wait }
    }

    /// Admits `key`, or says how long until it would be admitted.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.sweep_if_due();
        self.limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(self.clock.now()).min(self.max_wait))
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.store.tracked()
    }

    /// Gives `key` its whole budget back (it is tracked no more).
    pub fn forget(&self, key: &K) {
        if self.store.0.map.remove(key).is_some() {
            self.store.0.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// True when `key` is tracked (it spent some of its budget recently).
    pub fn holds(&self, key: &K) -> bool {
        self.store.0.map.contains_key(key)
    }

    fn sweep_if_due(&self) {
        let elapsed: u64 = self.clock.now().duration_since(self.start).into();
        let last = self.last_sweep.load(Ordering::Relaxed);
        let every = if self.store.tracked() >= self.store.0.cap { FULL_SWEEP } else { IDLE_SWEEP };
        if elapsed.saturating_sub(last) < every.as_nanos() as u64 {
            return;
        }
        if self.last_sweep.compare_exchange(last, elapsed, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let before = self.store.tracked();
            self.limiter.retain_recent();
            if self.store.tracked() < before / 2 {
                self.limiter.shrink_to_fit();
            }
        }
    }
}

struct LimitSet<K: Hash + Eq + Clone, C: Clock> {
    general: Option<KeyedLimiter<K, C>>,
    operations: Vec<(Operation, KeyedLimiter<K, C>)>,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> LimitSet<K, C> {
    fn new(config: &LimitConfig, cap: usize, clock: &C) -> Self {
        LimitSet {
            general: config.general.map(|b| KeyedLimiter::new(b, cap, clock.clone())),
            operations: config
                .operations
                .iter()
                .map(|(op, b)| (*op, KeyedLimiter::new(*b, cap, clock.clone())))
                .collect(),
        }
    }

    fn check(&self, key: &K, op: Operation) -> Result<(), Duration> {
        if let Some((_, limiter)) = self.operations.iter().find(|(o, _)| *o == op) {
            limiter.check(key)?;
        }
        match &self.general {
            Some(limiter) => limiter.check(key),
            None => Ok(()),
        }
    }
}

/// Every configured limit.
pub struct RateLimits<C: Clock = DefaultClock> {
    // (high, low) halves: 8-byte alignment keeps an entry at 24 bytes, not 32 as with u128.
    per_ip: Option<LimitSet<(u64, u64), C>>,
    per_token: Option<LimitSet<u64, C>>,
    per_file: Option<LimitSet<u64, C>>,
    failed_proofs: Option<KeyedLimiter<(u64, u64), C>>,
    /// Addresses out of their `failed_proofs` budget, and until when (on `clock`): looked up
    /// before RSA work, which spends nothing.
    failures_blocked: DashMap<(u64, u64), C::Instant>,
    clock: C,
    cap: usize,
    hasher: RandomState,
}

/// A refusal by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Which limit.
    pub scope: LimitScope,
    /// Whole seconds until a retry could pass (at least 1).
    pub retry_after: u32,
}

fn limited(scope: LimitScope) -> impl Fn(Duration) -> Limited {
    move |wait| Limited { scope, retry_after: wait.as_secs_f64().ceil().clamp(1.0, u32::MAX as f64) as u32 }
}

/// The key of a client address: IPv4 as its mapped form, IPv6 by its /64.
pub fn ip_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

/// [`ip_key`] as (high, low) halves.
fn halves(client: IpAddr) -> (u64, u64) {
    let key = ip_key(client);
    ((key >> 64) as u64, key as u64)
}

impl RateLimits<DefaultClock> {
    /// Limits on the real clock.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Limits on `clock` (tests pass governor's `FakeRelativeClock`).
    pub fn with_clock(config: &RateLimitConfig, clock: C) -> Self {
        let cap = config.max_tracked_keys;
        RateLimits {
            per_ip: config.per_ip.as_ref().map(|c| LimitSet::new(c, cap, &clock)),
            per_token: config.per_token.as_ref().map(|c| LimitSet::new(c, cap, &clock)),
            per_file: config.per_file.as_ref().map(|c| LimitSet::new(c, cap, &clock)),
            failed_proofs: config.failed_proofs.map(|b| KeyedLimiter::new(b, cap, clock.clone())),
            failures_blocked: DashMap::new(),
            clock,
            cap,
            hasher: RandomState::new(),
        }
    }

    /// Per client address (before any proof work).
    pub fn check_ip(&self, client: IpAddr, op: Operation) -> Result<(), Limited> {
        let Some(set) = &self.per_ip else { return Ok(()) };
        set.check(&halves(client), op).map_err(limited(LimitScope::Ip))
    }

    /// Per access token and per file id (after admission, so forgeries cannot spend a
    /// genuine client's budget). The token is hashed with a per-process key and never kept.
    pub fn check_admitted(&self, token: Option<&[u8]>, file_id: Option<&[u8]>, op: Operation) -> Result<(), Limited> {
        if let (Some(set), Some(token)) = (&self.per_token, token) {
            set.check(&self.hasher.hash_one(token), op).map_err(limited(LimitScope::Token))?;
        }
        if let (Some(set), Some(id)) = (&self.per_file, file_id) {
            set.check(&self.hasher.hash_one(id), op).map_err(limited(LimitScope::File))?;
        }
        Ok(())
    }

    /// `rate_limit.failed_proofs`, before any RSA work on a signed request: a refusal while the
    /// address is out of its budget. Spends nothing.
    pub fn failures_blocked(&self, client: IpAddr) -> Result<(), Limited> {
        if self.failed_proofs.is_none() {
            return Ok(());
        }
        let key = halves(client);
        let Some(until) = self.failures_blocked.get(&key).map(|u| *u) else { return Ok(()) };
        let now = self.clock.now();
        if until > now {
            let wait: u64 = until.duration_since(now).into();
            return Err(limited(LimitScope::FailedProofs)(Duration::from_nanos(wait)));
        }
        self.failures_blocked.remove_if(&key, |_, u| *u <= now);
        Ok(())
    }

    /// A signed request from `client` failed verification: one of its `failed_proofs` budget
    /// is spent. A refusal when that was one too many: the address is then refused before RSA
    /// ([`RateLimits::failures_blocked`]) until its budget refills. Fails open when the
    /// limiter is full of other addresses: a genuine signer is never refused for being new.
    pub fn failed_proof(&self, client: IpAddr) -> Result<(), Limited> {
        let Some(limiter) = &self.failed_proofs else { return Ok(()) };
        let key = halves(client);
        if limiter.tracked() >= self.cap && !limiter.holds(&key) {
            return Ok(());
        }
        let wait = match limiter.check(&key) {
            Ok(()) => return Ok(()),
            Err(wait) => wait,
        };
        if self.failures_blocked.len() >= self.cap {
            let now = self.clock.now();
            self.failures_blocked.retain(|_, until| *until > now);
        }
        if self.failures_blocked.len() < self.cap {
            self.failures_blocked.insert(key, self.clock.now() + wait.into());
        }
        Err(limited(LimitScope::FailedProofs)(wait))
    }

    /// A request from `client` verified (and was admitted): its `failed_proofs` budget is
    /// whole again (a genuine signer proves itself).
    pub fn proof_verified(&self, client: IpAddr) {
        if let Some(limiter) = &self.failed_proofs {
            let key = halves(client);
            limiter.forget(&key);
            self.failures_blocked.remove(&key);
        }
    }

    /// Keys tracked by the per-IP general limiter (for tests and benchmarks).
    pub fn tracked_ips(&self) -> usize {
        self.per_ip.as_ref().and_then(|s| s.general.as_ref()).map_or(0, KeyedLimiter::tracked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    fn config(budget: Budget, ops: Vec<(Operation, Budget)>, cap: usize) -> RateLimitConfig {
        let limit = LimitConfig { general: Some(budget), operations: ops };
        RateLimitConfig {
            max_tracked_keys: cap,
            per_ip: Some(limit.clone()),
            per_token: Some(limit.clone()),
            per_file: Some(limit),
            failed_proofs: None,
        }
    }

    const TWO_PER_SECOND: Budget = Budget { per_second: 2.0, burst: 3 };

    #[test]
    fn failed_proofs_are_charged_before_rsa_and_a_verified_proof_gives_the_budget_back() {
        let clock = FakeRelativeClock::default();
        let mut c = config(TWO_PER_SECOND, vec![], 100);
        c.failed_proofs = Some(Budget { per_second: 1.0, burst: 2 });
        let limits = RateLimits::with_clock(&c, clock.clone());
        let forger = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66));
        let office = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let cut = Limited { scope: LimitScope::FailedProofs, retry_after: 1 };
        assert_eq!(limits.failures_blocked(forger), Ok(()));
        assert_eq!(limits.failed_proof(forger), Ok(()));
        assert_eq!(limits.failed_proof(forger), Ok(()));
        assert_eq!(limits.failures_blocked(forger), Ok(()), "a burst of 2 failures spent, not yet over");
        assert_eq!(limits.failed_proof(forger), Err(cut), "the third is one too many");
        assert_eq!(limits.failures_blocked(forger), Err(cut), "from then on: before RSA");
        // Another address, and verified requests, are untouched.
        assert_eq!(limits.failures_blocked(office), Ok(()));
        limits.proof_verified(office);
        clock.advance(Duration::from_secs(1));
        assert_eq!(limits.failures_blocked(forger), Ok(()), "refilled after Retry-After");
        assert_eq!(limits.failed_proof(forger), Ok(()));
        assert_eq!(limits.failed_proof(forger), Err(cut));
        limits.proof_verified(forger);
        assert_eq!(limits.failures_blocked(forger), Ok(()), "a verified proof gives the whole burst back");
        assert_eq!(limits.failed_proof(forger), Ok(()));
        assert_eq!(limits.failed_proof(forger), Ok(()));
        assert_eq!(limits.failed_proof(forger), Err(cut));
        // Off: never charged.
        let off = RateLimits::with_clock(&config(TWO_PER_SECOND, vec![], 100), clock.clone());
        assert!((0..100).all(|_| off.failed_proof(forger).is_ok() && off.failures_blocked(forger).is_ok()));
        // Full of other addresses: a new one fails open.
        let mut small = config(TWO_PER_SECOND, vec![], 2);
        small.failed_proofs = Some(Budget { per_second: 1.0, burst: 1 });
        let full = RateLimits::with_clock(&small, clock);
        let (a, b) = (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        let _ = (full.failed_proof(a), full.failed_proof(b));
        assert!((0..5).all(|_| full.failed_proof(forger).is_ok() && full.failures_blocked(forger).is_ok()));
    }

    #[test]
    fn burst_then_refill_on_a_controlled_clock() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(&config(TWO_PER_SECOND, vec![], 100), clock.clone());
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        for _ in 0..3 {
            assert_eq!(limits.check_ip(ip, Operation::CheckFileInfo), Ok(()));
        }
        assert_eq!(
            limits.check_ip(ip, Operation::CheckFileInfo),
            Err(Limited { scope: LimitScope::Ip, retry_after: 1 })
        );
        // Another client is not affected.
        assert_eq!(limits.check_ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), Operation::GetFile), Ok(()));
        clock.advance(Duration::from_millis(500));
        assert_eq!(limits.check_ip(ip, Operation::CheckFileInfo), Ok(()));
        assert!(limits.check_ip(ip, Operation::CheckFileInfo).is_err());
    }

    #[test]
    fn operation_budgets_are_stricter_and_separate() {
        let clock = FakeRelativeClock::default();
        let put = Budget { per_second: 0.1, burst: 1 };
        let limits =
            RateLimits::with_clock(&config(TWO_PER_SECOND, vec![(Operation::PutFile, put)], 100), clock.clone());
        assert_eq!(limits.check_admitted(Some(b"tok"), None, Operation::PutFile), Ok(()));
        let refused = limits.check_admitted(Some(b"tok"), None, Operation::PutFile).unwrap_err();
        assert_eq!(refused.scope, LimitScope::Token);
        assert_eq!(refused.retry_after, 10, "one PutFile per 10 s");
        // Other operations with the same token still pass (general budget has 1 of 3 left).
        assert_eq!(limits.check_admitted(Some(b"tok"), None, Operation::CheckFileInfo), Ok(()));
        // Per file.
        assert_eq!(limits.check_admitted(None, Some(b"file-1"), Operation::PutFile), Ok(()));
        assert_eq!(
            limits.check_admitted(None, Some(b"file-1"), Operation::PutFile).unwrap_err().scope,
            LimitScope::File
        );
        clock.advance(Duration::from_secs(10));
        assert_eq!(limits.check_admitted(Some(b"tok"), None, Operation::PutFile), Ok(()));
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        assert_eq!(ip_key("2001:db8:1:2::1".parse().unwrap()), ip_key("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert_ne!(ip_key("2001:db8:1:2::1".parse().unwrap()), ip_key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(ip_key("::ffff:10.0.0.1".parse().unwrap()), ip_key("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_spray_cannot_grow_state_past_the_cap_and_idle_keys_go() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(&config(TWO_PER_SECOND, vec![], 1000), clock.clone());
        let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..5000 {
            let _ = limits.check_ip(addr(i), Operation::CheckFileInfo);
        }
        assert_eq!(limits.tracked_ips(), 1000);
        // While full, a new key is refused; a tracked key keeps its own budget.
        assert!(limits.check_ip(addr(99_999), Operation::CheckFileInfo).is_err());
        assert_eq!(limits.check_ip(addr(0), Operation::CheckFileInfo), Ok(()));
        // Budgets refill in 1.5 s (a burst of 3 at 2/s). While the store is full the sweep runs
        // once a second, not every 10 s: 1.6 s on, the new key gets in.
        clock.advance(Duration::from_millis(1600));
        assert_eq!(limits.check_ip(addr(99_999), Operation::CheckFileInfo), Ok(()));
        assert_eq!(limits.tracked_ips(), 1);
    }

    #[test]
    fn a_store_that_is_not_full_is_swept_every_ten_seconds() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(&config(TWO_PER_SECOND, vec![], 1000), clock.clone());
        let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..10 {
            let _ = limits.check_ip(addr(i), Operation::CheckFileInfo);
        }
        clock.advance(Duration::from_secs(5));
        let _ = limits.check_ip(addr(100), Operation::CheckFileInfo);
        assert_eq!(limits.tracked_ips(), 11, "idle keys stay until the 10 s sweep");
        clock.advance(Duration::from_secs(6));
        let _ = limits.check_ip(addr(101), Operation::CheckFileInfo);
        assert_eq!(limits.tracked_ips(), 1, "swept (all refilled), then the new key");
    }
}
