//! The circuit breaker in front of Redis: after [`OPEN_AFTER`] consecutive errors or timeouts it
//! opens, and for [`OPEN_FOR`] no request calls Redis (each gets `on_error` at once); then one
//! request probes, and its success closes the breaker. Pure: the time is passed in.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
pub const OPEN_AFTER: u32 = 3;
/// How long it stays open before a probe.
pub const OPEN_FOR: Duration = Duration::from_secs(2);

/// What a request may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Call Redis.
    Call,
    /// Call Redis as the one probe of a half-open breaker.
    Probe,
    /// Do not call: apply `on_error`.
    Open,
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    open_until: Option<Instant>,
    /// When it opened (for the outage's length once it closes).
    opened_at: Option<Instant>,
    /// When the probe in flight started. A probe whose request was dropped never reports, so
    /// after [`OPEN_FOR`] another may go.
    probing: Option<Instant>,
}

/// A breaker shared by every request of one Redis connection.
#[derive(Debug, Default)]
pub struct Breaker(Mutex<State>);

impl Breaker {
    /// Whether a request may call Redis at `now`.
    pub fn permit(&self, now: Instant) -> Permit {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.open_until {
            None => Permit::Call,
            Some(until) if now < until => Permit::Open,
            // Half-open: one probe at a time; the others keep the fallback meanwhile.
            Some(_) if s.probing.is_some_and(|started| now < started + OPEN_FOR) => Permit::Open,
            Some(_) => {
                s.probing = Some(now);
                Permit::Probe
            }
        }
    }

    /// A call succeeded at `now`: the breaker closes. How long it had been open, if it was.
    pub fn success(&self, now: Instant) -> Option<Duration> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let outage = s.opened_at.map(|at| now.saturating_duration_since(at));
        *s = State::default();
        outage
    }

    /// A call failed or timed out at `now`. True when this opened the breaker.
    pub fn failure(&self, now: Instant) -> bool {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.consecutive = s.consecutive.saturating_add(1);
        let was_open = s.open_until.is_some();
        if s.probing.is_some() || s.consecutive >= OPEN_AFTER {
            s.open_until = Some(now + OPEN_FOR);
            s.opened_at.get_or_insert(now);
            s.probing = None;
        }
        !was_open && s.open_until.is_some()
    }

    /// True while requests get `on_error` instead of Redis (open or half-open).
    pub fn is_open(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).open_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_and_recovers() {
        let b = Breaker::default();
        let t = Instant::now();
        assert_eq!(b.permit(t), Permit::Call);
        assert!(!b.failure(t));
        assert_eq!(b.success(t), None, "it was not open");
        for _ in 1..OPEN_AFTER {
            assert!(!b.failure(t), "a success in between resets the count");
        }
        assert!(b.failure(t), "the third failure in a row opens it");
        assert!(b.is_open());
        assert_eq!(b.permit(t + Duration::from_secs(1)), Permit::Open);
        let later = t + OPEN_FOR;
        assert_eq!(b.permit(later), Permit::Probe);
        assert_eq!(b.permit(later), Permit::Open, "one probe at a time");
        assert!(!b.failure(later), "a failed probe keeps it open");
        assert_eq!(b.permit(later + Duration::from_secs(1)), Permit::Open);
        assert_eq!(b.permit(later + OPEN_FOR), Permit::Probe);
        assert!(b.success(later + OPEN_FOR).is_some_and(|outage| outage >= OPEN_FOR), "the outage's length");
        assert!(!b.is_open());
        assert_eq!(b.permit(later + OPEN_FOR), Permit::Call);
    }

    #[test]
    fn a_probe_that_never_reports_does_not_keep_the_breaker_open_forever() {
        let b = Breaker::default();
        let t = Instant::now();
        for _ in 0..OPEN_AFTER {
            b.failure(t);
        }
        let half_open = t + OPEN_FOR;
        assert_eq!(b.permit(half_open), Permit::Probe);
        // Its request was dropped (the client went away): no success, no failure.
        assert_eq!(b.permit(half_open + OPEN_FOR / 2), Permit::Open);
        assert_eq!(b.permit(half_open + OPEN_FOR), Permit::Probe, "another probe goes");
        b.success(half_open + OPEN_FOR);
        assert_eq!(b.permit(half_open + OPEN_FOR), Permit::Call);
    }
}
