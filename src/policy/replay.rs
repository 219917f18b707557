//! Opt-in replay protection (`proof.replay_cache`): a signed message that verified is remembered
//! until its timestamp could no longer pass the window (`max_age + max_future_skew` after it was
//! first seen); the same signed message again is a replay. Only verified proofs are remembered,
//! so forgeries cannot fill the cache. Bounded: when it holds `capacity` unexpired entries, a new
//! proof is refused (fail closed) rather than an old one forgotten, which would reopen its replay.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the cache says about one verified signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: remembered now.
    Fresh,
    /// Seen within the window: a replay.
    Replayed,
    /// Not seen, but the cache is full of unexpired entries: refuse.
    Full,
}

type Key = [u8; 16];

struct Inner {
    keys: HashSet<Key>,
    /// When each entry was first seen, in insertion order, which is expiry order: every entry
    /// lives the same `ttl`, the one in force now.
    order: VecDeque<(Instant, Key)>,
    capacity: usize,
    ttl: Duration,
}

/// Signed messages seen recently.
pub struct ReplayCache {
    inner: Mutex<Inner>,
}

impl ReplayCache {
    /// A cache of at most `capacity` entries, each kept `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let inner = Inner { keys: HashSet::new(), order: VecDeque::new(), capacity, ttl };
        ReplayCache { inner: Mutex::new(inner) }
    }

    /// How long an entry is kept.
    pub fn ttl(&self) -> Duration {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).ttl
    }

    /// How many unexpired entries it may hold.
    pub fn capacity(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).capacity
    }

    /// After a reload that changed the window or the size: entries already held are kept and
    /// from now on live the new `ttl` from when they were first seen (a longer window keeps them
    /// longer, so a reload never reopens a replay); a smaller `capacity` evicts nothing, it
    /// refuses new proofs until enough expire.
    pub fn resize(&self, capacity: usize, ttl: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.capacity = capacity;
        inner.ttl = ttl;
    }

    /// Looks `signed` (the exact signed bytes that verified) up and remembers it if fresh; at
    /// once, so of two identical requests racing, one passes.
    pub fn check_and_remember(&self, signed: &[u8], now: Instant) -> Seen {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signed);
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_ref()[..16]);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = inner.ttl;
        while let Some((seen, old)) = inner.order.front().copied() {
            if seen + ttl > now {
                break;
            }
            inner.order.pop_front();
            inner.keys.remove(&old);
        }
        if inner.keys.contains(&key) {
            return Seen::Replayed;
        }
        if inner.keys.len() >= inner.capacity {
            return Seen::Full;
        }
        inner.keys.insert(key);
        inner.order.push_back((now, key));
        Seen::Fresh
    }

    /// Entries held now (expired ones included until the next lookup).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).keys.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_passes_once_per_window() {
        let cache = ReplayCache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(cache.check_and_remember(b"message one", t0), Seen::Fresh);
        assert_eq!(cache.check_and_remember(b"message one", t0 + Duration::from_secs(59)), Seen::Replayed);
        assert_eq!(cache.check_and_remember(b"message two", t0), Seen::Fresh);
        // Past the window the timestamp check refuses it anyway; the cache forgets it.
        assert_eq!(cache.check_and_remember(b"message one", t0 + Duration::from_secs(61)), Seen::Fresh);
        assert_eq!(cache.len(), 1, "both first entries expired");
    }

    #[test]
    fn a_full_cache_refuses_instead_of_forgetting() {
        let cache = ReplayCache::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for m in [b"a", b"b", b"c"] {
            assert_eq!(cache.check_and_remember(m, t0), Seen::Fresh);
        }
        assert_eq!(cache.check_and_remember(b"d", t0), Seen::Full);
        assert_eq!(cache.check_and_remember(b"a", t0), Seen::Replayed, "nothing was evicted");
        assert_eq!(cache.check_and_remember(b"d", t0 + Duration::from_secs(60)), Seen::Fresh, "room once they expire");
    }

    #[test]
    fn a_resize_keeps_what_was_seen_under_the_new_window() {
        let cache = ReplayCache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(cache.check_and_remember(b"seen", t0), Seen::Fresh);
        cache.resize(10, Duration::from_secs(600));
        assert_eq!(cache.check_and_remember(b"seen", t0 + Duration::from_secs(300)), Seen::Replayed, "longer window");
        cache.resize(1, Duration::from_secs(600));
        assert_eq!(cache.check_and_remember(b"new", t0 + Duration::from_secs(301)), Seen::Full, "nothing evicted");
        cache.resize(1, Duration::from_secs(30));
        assert_eq!(cache.check_and_remember(b"new", t0 + Duration::from_secs(302)), Seen::Fresh, "shorter: expired");
    }

    #[test]
    fn memory_stays_bounded_under_a_stream_of_fresh_proofs() {
        let cache = ReplayCache::new(1000, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0u64..100_000 {
            let now = t0 + Duration::from_millis(i);
            assert_ne!(cache.check_and_remember(&i.to_be_bytes(), now), Seen::Replayed);
        }
        assert!(cache.len() <= 1000);
    }
}
