//! The upstream: one WOPI host, or a pool of members (`upstream = [...]`).
//!
//! Requests go round-robin over the members that are up; a request whose connection fails is
//! tried on the next member it has not tried (nothing was sent yet), and the failed member is
//! marked down until a health check or an answer says it is back. When every member is down,
//! they are tried anyway, round-robin: a wrong "down" costs one failed connection, a wrong
//! refusal costs the request.
//!
//! Not pingora-load-balancing: its health checks run as a service fixed when the server starts,
//! so a reload could not add or remove members, and it has no per-member request or error
//! counts. Round-robin over a short list, with the health flag beside each member, is this file.

use pingora::prelude::HttpPeer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::metrics::MemberStats;

/// One member: where it is, and its state.
pub struct Member {
    /// The peer, resolved when the configuration was applied.
    pub peer: HttpPeer,
    /// `http(s)://host:port`, for health checks.
    pub url: String,
    /// Up or down, and its counters.
    pub stats: Arc<MemberStats>,
}

/// The members and the round-robin position.
pub struct Pool {
    members: Vec<Member>,
    next: AtomicUsize,
}

/// Which members a request has tried (bit `i`: member `i`); pools have at most 64 members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    /// Whether member `i` was tried.
    pub fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// Member `i` is tried now.
    pub fn add(&mut self, i: usize) {
        self.0 |= 1 << i;
    }
}

impl Pool {
    /// A pool of `members` (at least one, at most 64: the configuration guarantees both).
    pub fn new(members: Vec<Member>) -> Self {
        Pool { members, next: AtomicUsize::new(0) }
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member `i`.
    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// Whether a request that has tried `tried` has a member left.
    pub fn pick_would_find(&self, tried: Tried) -> bool {
        (0..self.members.len()).any(|i| !tried.has(i))
    }

    /// The next member for a request that has tried `tried`: round-robin over the members up,
    /// or over all when none untried is up; `None` once every member was tried.
    pub fn pick(&self, tried: Tried) -> Option<usize> {
        let n = self.members.len();
        if n == 1 {
            return (!tried.has(0)).then_some(0);
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        // The turn-th of the eligible members, so that a member down leaves an even share to
        // each of the others (not a double share to the one after it).
        let nth = |eligible: &dyn Fn(usize) -> bool| {
            let count = (0..n).filter(|&i| eligible(i)).count();
            (count > 0).then(|| (0..n).filter(|&i| eligible(i)).nth(turn % count)).flatten()
        };
        nth(&|i| !tried.has(i) && self.members[i].stats.is_up()).or_else(|| nth(&|i| !tried.has(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        Pool::new(
            (0..n)
                .map(|i| Member {
                    peer: HttpPeer::new(("127.0.0.1", 8000 + i as u16), false, String::new()),
                    url: format!("http://127.0.0.1:{}", 8000 + i),
                    stats: Arc::new(MemberStats::new(&format!("127.0.0.1:{}", 8000 + i))),
                })
                .collect(),
        )
    }

    #[test]
    fn round_robin_over_the_members_up() {
        let p = pool(3);
        let picks: Vec<usize> = (0..6).filter_map(|_| p.pick(Tried::default())).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        p.member(1).stats.set_up(false);
        let picks: Vec<usize> = (0..6).filter_map(|_| p.pick(Tried::default())).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 3, "the others share evenly: {picks:?}");
    }

    #[test]
    fn a_retry_takes_a_member_not_tried_and_stops_when_all_were() {
        let p = pool(2);
        let mut tried = Tried::default();
        let first = p.pick(tried).unwrap();
        tried.add(first);
        let second = p.pick(tried).unwrap();
        assert_ne!(first, second);
        tried.add(second);
        assert_eq!(p.pick(tried), None);
    }

    #[test]
    fn when_every_member_is_down_they_are_still_tried() {
        let p = pool(2);
        for m in p.members() {
            m.stats.set_up(false);
        }
        let mut tried = Tried::default();
        let first = p.pick(tried).unwrap();
        tried.add(first);
        assert_eq!(p.pick(tried), Some(1 - first));
        // A member down but untried comes after the untried members that are up.
        p.member(0).stats.set_up(true);
        assert_eq!(p.pick(Tried::default()), Some(0));
    }

    #[test]
    fn one_upstream_is_always_the_one() {
        let p = pool(1);
        p.member(0).stats.set_up(false);
        assert_eq!(p.pick(Tried::default()), Some(0));
        let mut tried = Tried::default();
        tried.add(0);
        assert_eq!(p.pick(tried), None);
    }
}
