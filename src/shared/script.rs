//! What one request asks Redis: every rate-limit key it spends (GCRA, Redis `TIME` as the clock)
//! and its replay key, in one Lua script, one round trip. Keys whose budget is spent are left
//! unchanged; a proof already seen spends nothing; keys expire when their budget has refilled.

use std::time::Duration;

use crate::policy::Budget;
use crate::refusal::LimitScope;

/// The script. KEYS: the limit keys, then the replay key when `ARGV[1]` > 0. ARGV[1]: the replay
/// window in ms (0: no replay key); then, per limit key, its emission interval and its limit
/// (interval × burst), in µs. Answers `{0}` admitted, `{1, i, µs}` over the limit of key `i`
/// (the longest wait), `{2}` the replay key already exists.
pub const LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local replay_ms = tonumber(ARGV[1])
local n = #KEYS
if replay_ms > 0 then n = n - 1 end
local next_tat = {}
local wait, over = 0, 0
for i = 1, n do
  local interval = tonumber(ARGV[2 * i])
  local limit = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local nt = tat + interval
  if nt - now > limit then
    local w = nt - limit - now
    if w > wait then wait, over = w, i end
  end
  next_tat[i] = nt
end
if over > 0 then return {1, over, math.ceil(wait)} end
if replay_ms > 0 then
  if not redis.call('SET', KEYS[n + 1], '1', 'NX', 'PX', replay_ms) then return {2, 0, 0} end
end
for i = 1, n do
  redis.call('SET', KEYS[i], string.format('%.0f', next_tat[i]), 'PX', math.ceil((next_tat[i] - now) / 1000) + 1)
end
return {0, 0, 0}
"#;

/// One budget a request spends, under its Redis key.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitKey {
    /// The Redis key (`<prefix>:rl:{<subject>}` or `…:<Operation>`).
    pub key: String,
    /// Which limit, for the refusal.
    pub scope: LimitScope,
    /// The budget.
    pub budget: Budget,
}

impl LimitKey {
    /// GCRA's emission interval, in µs (at least 1).
    pub fn interval_us(&self) -> u64 {
        ((1_000_000.0 / self.budget.per_second).round() as u64).max(1)
    }

    /// The limit: interval × burst, in µs.
    pub fn limit_us(&self) -> u64 {
        self.interval_us().saturating_mul(u64::from(self.budget.burst.max(1)))
    }
}

/// Redis's answer to one script call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Every budget spent one, and the replay key (if any) set.
    Admitted,
    /// Over the limit of the limit key at this index (into the call's keys), for this long.
    Limited(usize, Duration),
    /// The replay key existed: this signed request was already used.
    Replayed,
}

impl Answer {
    /// From the script's reply `{code, index, µs}`; `None` when it is not one.
    pub fn from_reply(reply: &[i64]) -> Option<Answer> {
        match *reply {
            [0, _, _] => Some(Answer::Admitted),
            [1, index, wait] if index >= 1 => {
                Some(Answer::Limited(usize::try_from(index - 1).ok()?, Duration::from_micros(wait.max(0) as u64)))
            }
            [2, _, _] => Some(Answer::Replayed),
            _ => None,
        }
    }
}

/// The keys and arguments of one call: `limits`, then `replay` (key, window) if any.
pub fn invocation(limits: &[&LimitKey], replay: Option<(&str, Duration)>) -> (Vec<String>, Vec<u64>) {
    let mut keys: Vec<String> = limits.iter().map(|l| l.key.clone()).collect();
    let window_ms = replay.map_or(0, |(_, w)| u64::try_from(w.as_millis()).unwrap_or(u64::MAX).max(1));
    let mut args = Vec::with_capacity(1 + 2 * limits.len());
    args.push(window_ms);
    for limit in limits {
        args.push(limit.interval_us());
        args.push(limit.limit_us());
    }
    if let Some((key, _)) = replay {
        keys.push(key.to_string());
    }
    (keys, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_replies() {
        let limit = LimitKey {
            key: "p:rl:{ip:ab}".into(),
            scope: LimitScope::Ip,
            budget: Budget { per_second: 4.0, burst: 3 },
        };
        assert_eq!((limit.interval_us(), limit.limit_us()), (250_000, 750_000));
        let (keys, args) = invocation(&[&limit], Some(("p:rp:cd", Duration::from_secs(1200))));
        assert_eq!(keys, vec!["p:rl:{ip:ab}".to_string(), "p:rp:cd".to_string()]);
        assert_eq!(args, vec![1_200_000, 250_000, 750_000]);
        assert_eq!(invocation(&[], None), (vec![], vec![0]));
        assert_eq!(Answer::from_reply(&[0, 0, 0]), Some(Answer::Admitted));
        assert_eq!(Answer::from_reply(&[1, 2, 1500]), Some(Answer::Limited(1, Duration::from_micros(1500))));
        assert_eq!(Answer::from_reply(&[2, 0, 0]), Some(Answer::Replayed));
        assert_eq!(Answer::from_reply(&[1, 0, 5]), None);
        assert_eq!(Answer::from_reply(&[7]), None);
    }
}
