//! Header hygiene toward the upstream: the forwarding chain is read only from the one header
//! `[ip] forwarded_header` names and only from trusted proxies, the other one is removed, and
//! `X-Forwarded-*` are always set correctly; the `X-WOPI-Guard-Verified` header we vouch for is
//! never taken from the client; path and method override headers, which some frameworks route
//! on, never reach the host.

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write;
use std::net::IpAddr;

use super::client::{forwarded_chain, ForwardedHeader};

/// The header that tells the upstream how a request was admitted.
pub const VERIFIED_HEADER: &str = "x-wopi-guard-verified";

/// This process's name in `Via`: `wopi-guard-` and 16 random hex digits, made once per run, so
/// a request that comes back (an upstream that leads to wopi-guard again) is recognised.
pub fn hop_marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        use aws_lc_rs::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        // A failed draw leaves zeros plus the time: still unique enough to recognise our own hop.
        if aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            bytes = (now.as_nanos() as u64).to_be_bytes();
        }
        let mut marker = String::from("wopi-guard-");
        for b in bytes {
            let _ = write!(marker, "{b:02x}");
        }
        marker
    })
}

/// True when a `Via` header already names this process ([`hop_marker`]): the request went round
/// a loop back to wopi-guard.
pub fn came_through_us(headers: &HeaderMap) -> bool {
    let marker = hop_marker();
    headers
        .get_all("via")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|hop| hop.split_whitespace().nth(1) == Some(marker))
}

/// Headers that make some frameworks route a request to another path or method than the one
/// wopi-guard checked (older Symfony and Laravel, IIS URL Rewrite, Express method-override):
/// removed from every forwarded request. `X-WOPI-Override` is WOPI's own and stays.
pub const OVERRIDE_HEADERS: [&str; 6] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers that name the client to hosts and frameworks besides the forwarding headers
/// (nginx's `X-Real-IP`, Akamai's and Cloudflare's): like `X-Forwarded-*`, passed on only from
/// `ip.trusted_proxies`, removed otherwise.
pub const IDENTITY_HEADERS: [&str; 8] = [
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "x-forwarded",
    "forwarded-for",
    "client-ip",
];

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

    fn remove(&mut self, name: &HeaderName) {
        if !self.remove.contains(name) {
            self.remove.push(name.clone());
        }
    }
}

/// The scheme of wopi-guard's listener, for `X-Forwarded-Proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP.
    Http,
    /// The listener has `[tls]`.
    Https,
}

impl Scheme {
    /// The listener's scheme: `https` when it has `[tls]`.
    pub fn of_listener(tls: bool) -> Scheme {
        if tls {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// `http` or `https`, as `X-Forwarded-Proto` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where a request came from and how it was admitted, as the forwarding headers need it.
#[derive(Debug, Clone, Copy)]
pub struct Hop {
    /// The socket peer.
    pub peer: Option<IpAddr>,
    /// The peer is one of `ip.trusted_proxies`.
    pub peer_trusted: bool,
    /// How the request reached us.
    pub scheme: Scheme,
    /// The forwarding header trusted proxies maintain.
    pub forwarded_header: ForwardedHeader,
    /// The value of [`VERIFIED_HEADER`] to send, if any.
    pub verified: Option<&'static str>,
}

/// The header plan, and what the client sent that was removed and should be logged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardingPlan {
    /// Removals and settings.
    pub headers: HeaderPlan,
    /// The client sent its own copy of [`VERIFIED_HEADER`].
    pub spoofed_verified: bool,
    /// Path and method override headers the client sent (names only; all removed).
    pub stripped_overrides: Vec<&'static str>,
}

/// `Via: 1.1 <hop_marker>`, for a request that arrives without a `Via` (made once).
fn own_via() -> HeaderValue {
    static VIA: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    VIA.get_or_init(|| HeaderValue::from_str(&format!("1.1 {}", hop_marker())).expect("ASCII marker")).clone()
}

/// A header value from text written into one buffer (one allocation, none for a `String` first).
fn value_of(text: BytesMut) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(text.freeze()).ok()
}

/// The forwarding headers for a request with these `headers` arriving over `hop`.
pub fn forwarding_plan(hop: &Hop, headers: &HeaderMap) -> ForwardingPlan {
    // Sized for the usual plan, so neither list grows per request.
    let mut out = ForwardingPlan {
        headers: HeaderPlan { remove: Vec::with_capacity(4), set: Vec::with_capacity(6) },
        ..ForwardingPlan::default()
    };
    let plan = &mut out.headers;
    out.spoofed_verified = headers.contains_key(VERIFIED_HEADER);
    plan.remove.push(HeaderName::from_static(VERIFIED_HEADER));
    for name in OVERRIDE_HEADERS {
        if headers.contains_key(name) {
            plan.remove.push(HeaderName::from_static(name));
            out.stripped_overrides.push(name);
        }
    }
    // The header trusted proxies do not maintain is the client's own: never passed on.
    let other = hop.forwarded_header.other().name();
    if headers.contains_key(other) {
        plan.remove(&HeaderName::from_static(other));
    }
    if !hop.peer_trusted {
        let identifies = |n: &HeaderName| {
            let n = n.as_str();
            n.starts_with("x-forwarded-") || n == "forwarded" || IDENTITY_HEADERS.contains(&n)
        };
        for name in headers.keys().filter(|n| identifies(n)) {
            plan.remove(name);
        }
    }
    let peer_text = |out: &mut BytesMut| match hop.peer {
        Some(p) => {
            let _ = write!(out, "{}", p.to_canonical());
        }
        None => out.extend_from_slice(b"unknown"),
    };
    match hop.forwarded_header {
        ForwardedHeader::XForwardedFor => {
            let mut chain = BytesMut::with_capacity(48);
            if hop.peer_trusted {
                for value in headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()) {
                    chain.extend_from_slice(value.as_bytes());
                    chain.extend_from_slice(b", ");
                }
            }
            peer_text(&mut chain);
            if let Some(v) = value_of(chain) {
                plan.set(HeaderName::from_static("x-forwarded-for"), v);
            }
        }
        ForwardedHeader::Forwarded => {
            // `Forwarded` extended by this hop; `X-Forwarded-For` rebuilt from it, never the client's.
            let (mut forwarded, mut xff) = (BytesMut::new(), BytesMut::new());
            if hop.peer_trusted {
                for value in headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()) {
                    forwarded.extend_from_slice(value.as_bytes());
                    forwarded.extend_from_slice(b", ");
                }
                for ip in forwarded_chain(headers, ForwardedHeader::Forwarded) {
                    match ip {
                        Some(ip) => {
                            let _ = write!(xff, "{ip}, ");
                        }
                        None => xff.extend_from_slice(b"unknown, "),
                    }
                }
            }
            match hop.peer.map(|p| p.to_canonical()) {
                Some(IpAddr::V6(v6)) => {
                    let _ = write!(forwarded, "for=\"[{v6}]\"");
                }
                Some(v4) => {
                    let _ = write!(forwarded, "for={v4}");
                }
                None => forwarded.extend_from_slice(b"for=unknown"),
            }
            peer_text(&mut xff);
            if let Some(v) = value_of(forwarded) {
                plan.set(HeaderName::from_static("forwarded"), v);
            }
            if let Some(v) = value_of(xff) {
                plan.set(HeaderName::from_static("x-forwarded-for"), v);
            }
        }
    }
    let keep = |name: &str| hop.peer_trusted && headers.contains_key(name);
    if !keep("x-forwarded-proto") {
        plan.set(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(hop.scheme.as_str()));
    }
    if !keep("x-forwarded-host") {
        if let Some(host) = headers.get("host") {
            plan.set(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
    }
    if let Some(how) = hop.verified {
        plan.set(HeaderName::from_static(VERIFIED_HEADER), HeaderValue::from_static(how));
    }
    // `Via` extended by this hop (RFC 9110 §7.6.3), which is how a loop is recognised.
    let via = if headers.contains_key("via") {
        let mut via = BytesMut::new();
        for value in headers.get_all("via").iter().filter_map(|v| v.to_str().ok()) {
            via.extend_from_slice(value.as_bytes());
            via.extend_from_slice(b", ");
        }
        via.extend_from_slice(b"1.1 ");
        via.extend_from_slice(hop_marker().as_bytes());
        value_of(via)
    } else {
        Some(own_via())
    };
    if let Some(v) = via {
        plan.set(HeaderName::from_static("via"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::test_headers as headers;

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    #[test]
    fn via_names_this_hop_and_a_returning_request_is_recognised() {
        let h = hop("192.0.2.1", false, XFF, None);
        let out = forwarding_plan(&h, &headers(&[("via", "1.0 fred, 1.1 p.example (Apache/1.1)")]));
        let via = out.headers.set.iter().find(|(n, _)| n == "via").map(|(_, v)| v.to_str().unwrap().to_owned());
        let expected = format!("1.0 fred, 1.1 p.example (Apache/1.1), 1.1 {}", hop_marker());
        assert_eq!(via.as_deref(), Some(expected.as_str()));
        assert!(came_through_us(&headers(&[("via", &expected)])));
        assert!(came_through_us(&headers(&[("via", "1.0 fred"), ("via", &format!("1.1 {}", hop_marker()))])));
        assert!(!came_through_us(&headers(&[("via", "1.0 fred, 1.1 p.example (Apache/1.1)")])));
        assert!(!came_through_us(&headers(&[("via", "1.1 wopi-guard-0000000000000000")])), "another instance");
        assert!(hop_marker().starts_with("wopi-guard-") && hop_marker().len() == 27);
    }

    fn hop(peer: &str, peer_trusted: bool, forwarded_header: ForwardedHeader, verified: Option<&'static str>) -> Hop {
        Hop { peer: Some(peer.parse().unwrap()), peer_trusted, scheme: Scheme::Http, forwarded_header, verified }
    }

    fn removes(plan: &HeaderPlan, name: &str) -> bool {
        plan.remove.iter().any(|n| n == name)
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
            ("x-real-ip", "10.0.0.1"),
            ("true-client-ip", "10.0.0.1"),
            ("cf-connecting-ip", "10.0.0.1"),
        ]);
        let out = forwarding_plan(&hop("198.51.100.7", false, XFF, None), &h);
        let plan = &out.headers;
        assert!(out.spoofed_verified);
        for name in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-port",
            "forwarded",
            "x-wopi-guard-verified",
            "x-real-ip",
            "true-client-ip",
            "cf-connecting-ip",
        ] {
            assert!(plan.remove.iter().any(|n| n == name), "{name} not removed");
        }
        assert_eq!(get(plan, "x-forwarded-for"), Some("198.51.100.7"));
        assert_eq!(get(plan, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(plan, "x-forwarded-host"), Some("wopi.example.com"));
        assert_eq!(get(plan, "x-wopi-guard-verified"), None);
    }

    #[test]
    fn trusted_peer_chain_is_extended_and_verified_header_set() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "a.example"),
        ]);
        let out = forwarding_plan(&hop("::ffff:127.0.0.1", true, XFF, Some("proof")), &h);
        let plan = &out.headers;
        assert!(!out.spoofed_verified);
        assert_eq!(get(plan, "x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
        assert_eq!(get(plan, "x-forwarded-proto"), None, "kept as sent by the trusted proxy");
        assert!(!plan.remove.iter().any(|n| n == "x-forwarded-proto"));
        assert_eq!(get(plan, "x-wopi-guard-verified"), Some("proof"));
        assert!(plan.remove.iter().any(|n| n == "x-wopi-guard-verified"));
    }

    #[test]
    fn the_header_not_configured_is_removed_even_from_trusted_proxies() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9"), ("forwarded", "for=192.0.2.7")]);
        let out = forwarding_plan(&hop("127.0.0.1", true, XFF, None), &h);
        assert!(removes(&out.headers, "forwarded"), "the client's own Forwarded never reaches the host");
        assert_eq!(get(&out.headers, "x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
        assert_eq!(get(&out.headers, "forwarded"), None);

        let out = forwarding_plan(&hop("127.0.0.1", true, ForwardedHeader::Forwarded, None), &h);
        assert!(removes(&out.headers, "x-forwarded-for"));
        assert_eq!(get(&out.headers, "forwarded"), Some("for=192.0.2.7, for=127.0.0.1"));
        assert_eq!(get(&out.headers, "x-forwarded-for"), Some("192.0.2.7, 127.0.0.1"), "rebuilt from Forwarded");
        let out = forwarding_plan(&hop("2001:db8::1", false, ForwardedHeader::Forwarded, None), &h);
        assert_eq!(get(&out.headers, "forwarded"), Some(r#"for="[2001:db8::1]""#));
        assert_eq!(get(&out.headers, "x-forwarded-for"), Some("2001:db8::1"));
    }

    #[test]
    fn path_and_method_overrides_are_stripped_and_named() {
        let h = headers(&[
            ("x-original-url", "/wopi/files/1"),
            ("x-rewrite-url", "/wopi/files/1"),
            ("x-original-uri", "/wopi/files/1"),
            ("x-http-method-override", "DELETE"),
            ("x-http-method", "DELETE"),
            ("x-method-override", "DELETE"),
            ("x-wopi-override", "LOCK"),
        ]);
        for trusted in [false, true] {
            let out = forwarding_plan(&hop("127.0.0.1", trusted, XFF, None), &h);
            assert_eq!(out.stripped_overrides, OVERRIDE_HEADERS.to_vec());
            for name in OVERRIDE_HEADERS {
                assert!(removes(&out.headers, name), "{name}");
            }
            assert!(!removes(&out.headers, "x-wopi-override"), "WOPI's own override stays");
        }
        let out = forwarding_plan(&hop("127.0.0.1", false, XFF, None), &headers(&[("x-wopi-override", "LOCK")]));
        assert!(out.stripped_overrides.is_empty());
    }
}
