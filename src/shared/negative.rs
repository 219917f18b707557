//! The local negative cache: a key Redis said is over its limit is refused here, with no Redis
//! call, until its Retry-After has passed (as envoyproxy/ratelimit does). Bounded; expired entries
//! are dropped as they are met and swept when the cache is full.

use dashmap::DashMap;
use std::time::{Duration, Instant};

/// Keys kept at most.
const CAPACITY: usize = 100_000;

/// Over-limit keys and until when they stay refused.
#[derive(Debug, Default)]
pub struct NegativeCache(DashMap<String, Instant>);

impl NegativeCache {
    /// How long `key` stays refused from `now`, if it is over its limit.
    pub fn refused_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let until = *self.0.get(key)?;
        if until > now {
            return Some(until - now);
        }
        self.0.remove_if(key, |_, until| *until <= now);
        None
    }

    /// Redis said `key` is over its limit for `wait` from `now`.
    pub fn remember(&self, key: &str, now: Instant, wait: Duration) {
        if self.0.len() >= CAPACITY {
            self.0.retain(|_, until| *until > now);
            if self.0.len() >= CAPACITY {
                return; // still full: Redis is asked again for this key, which stays correct
            }
        }
        self.0.insert(key.to_string(), now + wait);
    }

    /// `key` is no longer over its limit.
    pub fn forget(&self, key: &str) {
        self.0.remove(key);
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_until_the_wait_has_passed_then_forgotten() {
        let cache = NegativeCache::default();
        let t = Instant::now();
        assert_eq!(cache.refused_for("k", t), None);
        cache.remember("k", t, Duration::from_secs(2));
        assert_eq!(cache.refused_for("k", t + Duration::from_secs(1)), Some(Duration::from_secs(1)));
        assert_eq!(cache.refused_for("other", t), None);
        assert_eq!(cache.refused_for("k", t + Duration::from_secs(2)), None);
        assert!(cache.is_empty(), "an expired entry is dropped when met");
    }
}
