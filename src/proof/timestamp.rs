//! `X-WOPI-TimeStamp`: .NET ticks (100 ns units since 0001-01-01 UTC) and the age window.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::refusal::Refusal;

/// Ticks between 0001-01-01 and 1970-01-01 (docs/proof.md §1).
pub const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// .NET ticks for a wall-clock time (times before 1970 saturate at the epoch).
pub fn ticks_at(time: SystemTime) -> i64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH_TICKS.saturating_add(i64::try_from(since.as_nanos() / 100).unwrap_or(i64::MAX))
}

/// Parses the header as a decimal int64 (digits only, as every signer sends it).
pub fn parse_ticks(raw: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The accepted window around "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Older than this is refused (Microsoft: 20 minutes).
    pub max_age: Duration,
    /// Further ahead than this is refused (clock drift allowance).
    pub max_future_skew: Duration,
}

impl TimeWindow {
    /// Refuses `ticks` outside the window around `now`.
    pub fn check(&self, ticks: i64, now: SystemTime) -> Result<(), Refusal> {
        let now = ticks_at(now);
        let age = i128::from(now) - i128::from(ticks);
        if age > to_ticks(self.max_age) {
            Err(Refusal::ProofExpired)
        } else if -age > to_ticks(self.max_future_skew) {
            Err(Refusal::ProofFromFuture)
        } else {
            Ok(())
        }
    }
}

fn to_ticks(d: Duration) -> i128 {
    (d.as_nanos() / 100) as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: TimeWindow =
        TimeWindow { max_age: Duration::from_secs(20 * 60), max_future_skew: Duration::from_secs(5 * 60) };

    #[test]
    fn unix_epoch_is_the_dotnet_constant() {
        assert_eq!(ticks_at(UNIX_EPOCH), UNIX_EPOCH_TICKS);
        let t = UNIX_EPOCH + Duration::from_secs(1);
        assert_eq!(ticks_at(t), UNIX_EPOCH_TICKS + 10_000_000);
    }

    #[test]
    fn parses_only_plain_decimal() {
        assert_eq!(parse_ticks(b"635655897610773532"), Some(635_655_897_610_773_532));
        assert_eq!(parse_ticks(b" 42 "), Some(42));
        for bad in [&b""[..], b"-5", b"+5", b"1e9", b"0x10", b"12a", b"99999999999999999999", b"\xff"] {
            assert_eq!(parse_ticks(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn window_edges() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |secs: i64| ticks_at(now) + secs * 10_000_000;
        assert_eq!(WINDOW.check(at(0), now), Ok(()));
        assert_eq!(WINDOW.check(at(-20 * 60), now), Ok(()));
        assert_eq!(WINDOW.check(at(-20 * 60 - 1), now), Err(Refusal::ProofExpired));
        assert_eq!(WINDOW.check(at(5 * 60), now), Ok(()));
        assert_eq!(WINDOW.check(at(5 * 60 + 1), now), Err(Refusal::ProofFromFuture));
        assert_eq!(WINDOW.check(i64::MIN, now), Err(Refusal::ProofExpired));
        assert_eq!(WINDOW.check(i64::MAX, now), Err(Refusal::ProofFromFuture));
    }
}
