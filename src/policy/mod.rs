//! Request policy beyond the proof: who may come in, how often, which operations, and what
//! headers the upstream gets.

mod access_header;
mod client;
mod forward_auth;
mod forwarding;
mod ratelimit;
mod replay;

pub use access_header::{
    access_headers, never_from_access_header, strip_access_header, AccessHeaderError, AccessHeaders, MAX_DECODED_LEN,
};
pub use client::{client_address, forwarded_chain, AllowList, ForwardedHeader, NetList, UnknownClient};
pub use forward_auth::{original_request, ForwardAuthHeaders, OriginalRequest};
pub use forwarding::{
    came_through_us, forwarding_plan, hop_marker, ForwardingPlan, HeaderPlan, Hop, Scheme, IDENTITY_HEADERS,
    OVERRIDE_HEADERS, VERIFIED_HEADER,
};
pub use ratelimit::{ip_key, Budget, KeyedLimiter, LimitConfig, Limited, RateLimitConfig, RateLimits};
pub use replay::{ReplayCache, Seen};

/// A header map from `(name, value)` pairs, repeated names appended: for the policy tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (n, v) in pairs {
        map.append(*n, v.parse().unwrap());
    }
    map
}
