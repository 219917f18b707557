//! Header hygiene toward the upstream: `X-Forwarded-*` and `Forwarded` are believed only from
//! trusted proxies and always set correctly; the `X-WOPI-Guard-Verified` header we vouch for is
//! never taken from the client.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// The header that tells the upstream how a request was admitted.
pub const VERIFIED_HEADER: &str = "x-wopi-guard-verified";

/// Header changes for the upstream request, computed without touching the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderPlan {
    /// Removed first (every value).
    pub remove: Vec<HeaderName>,
    /// Then set, replacing.
    pub set: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderPlan {
    /// Adds a header to set (replacing an earlier plan entry of the same name).
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.set.retain(|(n, _)| *n != name);
        self.set.push((name, value));
    }
}

/// The forwarding headers for a request from `peer` (trusted or not) with these `headers`,
/// received over `scheme`. `verified` is the value of [`VERIFIED_HEADER`] to send, if any.
/// Returns the plan and whether the client sent its own copy of [`VERIFIED_HEADER`].
pub fn forwarding_plan(
    peer: Option<IpAddr>,
    peer_trusted: bool,
    headers: &HeaderMap,
    scheme: &'static str,
    verified: Option<&'static str>,
) -> (HeaderPlan, bool) {
    let mut plan = HeaderPlan::default();
    let spoofed_verified = headers.contains_key(VERIFIED_HEADER);
    plan.remove.push(HeaderName::from_static(VERIFIED_HEADER));
    let prior_chain = if peer_trusted {
        let values: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        (!values.is_empty()).then(|| values.join(", "))
    } else {
        for name in headers.keys().filter(|n| n.as_str().starts_with("x-forwarded-") || n.as_str() == "forwarded") {
            if !plan.remove.contains(name) {
                plan.remove.push(name.clone());
            }
        }
        None
    };
    let peer_text = peer.map_or_else(|| "unknown".to_string(), |p| p.to_canonical().to_string());
    let chain = match prior_chain {
        Some(prior) => format!("{prior}, {peer_text}"),
        None => peer_text,
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        plan.set(HeaderName::from_static("x-forwarded-for"), v);
    }
    let keep = |name: &str| peer_trusted && headers.contains_key(name);
    if !keep("x-forwarded-proto") {
        plan.set(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(scheme));
    }
    if !keep("x-forwarded-host") {
        if let Some(host) = headers.get("host") {
            plan.set(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
    }
    if let Some(how) = verified {
        plan.set(HeaderName::from_static(VERIFIED_HEADER), HeaderValue::from_static(how));
    }
    (plan, spoofed_verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(*n, v.parse().unwrap());
        }
        map
    }

    fn get<'a>(plan: &'a HeaderPlan, name: &str) -> Option<&'a str> {
        plan.set.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn untrusted_peer_cannot_forge_forwarding_or_verification() {
        let h = headers(&[
            ("host", "wopi.example.com"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("forwarded", "for=10.0.0.1"),
            ("x-wopi-guard-verified", "proof"),
        ]);
        let (plan, spoofed) = forwarding_plan(Some("198.51.100.7".parse().unwrap()), false, &h, "http", None);
        assert!(spoofed);
        for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "forwarded", "x-wopi-guard-verified"] {
            assert!(plan.remove.iter().any(|n| n == name), "{name} not removed");
        }
        assert_eq!(get(&plan, "x-forwarded-for"), Some("198.51.100.7"));
        assert_eq!(get(&plan, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&plan, "x-forwarded-host"), Some("wopi.example.com"));
        assert_eq!(get(&plan, "x-wopi-guard-verified"), None);
    }

    #[test]
    fn trusted_peer_chain_is_extended_and_verified_header_set() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "a.example"),
        ]);
        let (plan, spoofed) =
            forwarding_plan(Some("::ffff:127.0.0.1".parse().unwrap()), true, &h, "http", Some("proof"));
        assert!(!spoofed);
        assert_eq!(get(&plan, "x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
        assert_eq!(get(&plan, "x-forwarded-proto"), None, "kept as sent by the trusted proxy");
        assert!(!plan.remove.iter().any(|n| n == "x-forwarded-proto"));
        assert_eq!(get(&plan, "x-wopi-guard-verified"), Some("proof"));
        assert!(plan.remove.iter().any(|n| n == "x-wopi-guard-verified"));
    }
}
