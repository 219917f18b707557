//! `server.body_min_rate`: a request body must average at least this many bytes per second
//! over each [`BODY_RATE_WINDOW`], or the request is cut (408 `body_too_slow`).
//!
//! Pingora bounds only each body read (60 s by default), so a client trickling one byte every
//! 59 s holds its connection, its slot under the caps and an upstream connection for as long as
//! it likes. The meter is fed each chunk as it arrives ([`BodyRate::chunk`]); a read that waits
//! longer than the window for its next byte is cut by the downstream read timeout the proxy
//! sets to the window, so a silent client is cut as a slow one is.

use std::time::{Duration, Instant};

pub use crate::config::BODY_RATE_WINDOW;

/// The body arrived slower than the minimum over one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow {
    /// Bytes received in the window.
    pub bytes: u64,
    /// The window's length.
    pub over: Duration,
}

/// One request body's rate, window by window.
#[derive(Debug, Clone)]
pub struct BodyRate {
    min_per_second: u64,
    window_start: Instant,
    bytes: u64,
}

impl BodyRate {
    /// A meter for a body that starts arriving at `now`.
    pub fn new(min_per_second: u64, now: Instant) -> Self {
        BodyRate { min_per_second, window_start: now, bytes: 0 }
    }

    /// `len` more bytes arrived at `now`. Once a window is over, its average is checked and a
    /// new window starts.
    pub fn chunk(&mut self, len: usize, now: Instant) -> Result<(), TooSlow> {
        self.bytes = self.bytes.saturating_add(len as u64);
        let over = now.saturating_duration_since(self.window_start);
        if over < BODY_RATE_WINDOW {
            return Ok(());
        }
        // bytes / seconds < min, without floating point: bytes * 1000 < min * ms.
        let needed = u128::from(self.min_per_second) * over.as_millis();
        if u128::from(self.bytes) * 1000 < needed {
            return Err(TooSlow { bytes: self.bytes, over });
        }
        self.window_start = now;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn a_trickle_is_cut_at_the_first_check_after_a_window() {
        let start = Instant::now();
        let mut rate = BodyRate::new(KIB, start);
        // One byte every 9 s: no read waits a whole window, yet the average is far too low.
        assert_eq!(rate.chunk(1, start + Duration::from_secs(9)), Ok(()));
        let cut = rate.chunk(1, start + Duration::from_secs(18)).unwrap_err();
        assert_eq!(cut, TooSlow { bytes: 2, over: Duration::from_secs(18) });
    }

    #[test]
    fn a_steady_body_at_the_minimum_passes_window_after_window() {
        let start = Instant::now();
        let mut rate = BodyRate::new(KIB, start);
        for s in 1..=60 {
            assert_eq!(rate.chunk(KIB as usize, start + Duration::from_secs(s)), Ok(()), "second {s}");
        }
    }

    #[test]
    fn a_fast_start_does_not_pay_for_a_stall_later() {
        let start = Instant::now();
        let mut rate = BodyRate::new(KIB, start);
        assert_eq!(rate.chunk(100 << 20, start + Duration::from_secs(10)), Ok(()), "100 MiB in the first window");
        // The next window is judged on its own bytes.
        assert_eq!(rate.chunk(100, start + Duration::from_secs(15)), Ok(()));
        assert!(rate.chunk(100, start + Duration::from_secs(20)).is_err());
    }

    #[test]
    fn a_burst_inside_the_window_is_never_judged_early() {
        let start = Instant::now();
        let mut rate = BodyRate::new(1 << 20, start);
        assert_eq!(rate.chunk(1, start + Duration::from_millis(9_999)), Ok(()));
        assert!(rate.chunk(1, start + Duration::from_secs(10)).is_err());
    }
}
