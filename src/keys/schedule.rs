//! When each discovery source is fetched next: every `refresh_interval` while it answers, and
//! with a backoff while it fails (at start, until it first answers, and after a failed periodic
//! refresh): 1 s, doubling up to 30 s (never beyond `refresh_interval`), each delay shortened by
//! a random 0–20 % so that many instances restarted together do not fetch in step.
//!
//! Pure: the caller passes the time and the randomness; the discovery task (`proxy::tasks`) owns
//! one schedule per set of sources and drops it when a reload changes the sources.

use std::time::Duration;
use tokio::time::Instant;

/// The first retry after a failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// The wait before retry number `failures` (1 = after the first failure), before jitter.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// `delay` shortened by `jitter` × 20 %, `jitter` in `[0, 1)`.
fn jittered(delay: Duration, jitter: f64) -> Duration {
    delay.mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    due: Instant,
    failures: u32,
}

/// The next fetch of each source of one [`super::Refresher`].
#[derive(Debug)]
pub struct Schedule {
    slots: Vec<Slot>,
    refresh_interval: Duration,
}

impl Schedule {
    /// `sources` sources, all due at `now`.
    pub fn new(sources: usize, refresh_interval: Duration, now: Instant) -> Self {
        Schedule { slots: vec![Slot { due: now, failures: 0 }; sources], refresh_interval }
    }

    /// The sources due at `now`.
    pub fn due(&self, now: Instant) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].due <= now).collect()
    }

    /// Records the outcome of a fetch of source `index` that ended at `now`; `jitter` in `[0, 1)`.
    pub fn record(&mut self, index: usize, failed: bool, now: Instant, jitter: f64) {
        let Some(slot) = self.slots.get_mut(index) else { return };
        if failed {
            slot.failures = slot.failures.saturating_add(1);
            let wait = jittered(retry_delay(slot.failures), jitter).min(self.refresh_interval);
            slot.due = now + wait;
        } else {
            slot.failures = 0;
            slot.due = now + self.refresh_interval;
        }
    }

    /// Consecutive failures of source `index` (0 once it answered).
    pub fn failures(&self, index: usize) -> u32 {
        self.slots.get(index).map_or(0, |s| s.failures)
    }

    /// When source `index` is due.
    pub fn next_due_of(&self, index: usize) -> Option<Instant> {
        self.slots.get(index).map(|s| s.due)
    }

    /// When the next source is due; `None` without sources.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots.iter().map(|s| s.due).min()
    }
}

/// A number in `[0, 1)` from the process's random hash keys: jitter needs no more than that.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn retries_double_from_one_second_to_thirty() {
        let delays: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn a_source_down_at_start_is_retried_with_backoff_until_it_answers() {
        let start = Instant::now();
        let mut schedule = Schedule::new(2, HOUR, start);
        assert_eq!(schedule.due(start), [0, 1]);
        schedule.record(0, true, start, 0.0);
        schedule.record(1, false, start, 0.0);
        assert_eq!(schedule.next_due(), Some(start + Duration::from_secs(1)));
        assert_eq!(schedule.due(start + Duration::from_millis(999)), Vec::<usize>::new());
        assert_eq!(schedule.due(start + Duration::from_secs(1)), [0]);

        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..7 {
            now = schedule.next_due().unwrap();
            schedule.record(0, true, now, 0.0);
            waits.push((schedule.next_due().unwrap() - now).as_secs());
        }
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(schedule.failures(0), 8);

        schedule.record(0, false, now, 0.0);
        assert_eq!(schedule.failures(0), 0);
        assert_eq!(schedule.due(now + HOUR - Duration::from_secs(1)), [1], "source 1 keeps its own period");
        assert_eq!(schedule.due(now + HOUR), [0, 1]);
    }

    #[test]
    fn a_failed_periodic_refresh_is_retried_sooner_than_the_interval() {
        let start = Instant::now();
        let mut schedule = Schedule::new(1, HOUR, start);
        schedule.record(0, false, start, 0.0);
        let periodic = start + HOUR;
        assert_eq!(schedule.due(periodic), [0]);
        schedule.record(0, true, periodic, 0.0);
        assert_eq!(schedule.next_due(), Some(periodic + Duration::from_secs(1)));
    }

    #[test]
    fn jitter_only_shortens_and_never_passes_the_interval() {
        let now = Instant::now();
        let mut schedule = Schedule::new(1, Duration::from_secs(5), now);
        for failures in 1..=6 {
            schedule.record(0, true, now, 0.999);
            let wait = schedule.next_due().unwrap() - now;
            let full = retry_delay(failures).min(Duration::from_secs(5));
            assert!(wait <= full && wait >= full.mul_f64(0.8), "{failures}: {wait:?} against {full:?}");
        }
        let samples: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(samples.iter().any(|j| *j != samples[0]), "jitter varies");
    }
}
