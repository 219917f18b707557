//! The header invariant (docs/security.md): for any request, the headers the upstream gets,
//! less the ones wopi-guard sets itself, are a subset of the client's less the ones stripped;
//! `access_header` adds only names `[forward] access_header_names` lists; no path or method
//! override header ever reaches the host, and no identity header from an untrusted peer. The
//! upstream header set is made by the proxy's own `apply_plan`.
//!
//! Input: a flag byte (bit 0: the peer is a trusted proxy; bit 1: `Forwarded` is the forwarding
//! header; bit 2: `X-WOPI-Guard-Verified` is sent), the request target up to the first 0xFF,
//! then headers separated by 0xFF, each a name index byte and its value.
#![no_main]
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wopi_guard::gate::UpstreamPlan;
use wopi_guard::policy::{
    access_headers, forwarding_plan, never_from_access_header, ForwardedHeader, Hop, Scheme, IDENTITY_HEADERS,
    OVERRIDE_HEADERS,
};

const NAMES: [&str; 24] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-uri",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-wopi-guard-verified",
    "x-wopi-override",
    "authorization",
    "cookie",
    "host",
    "x-tenant",
    "connection",
    "x-client-ip",
    "x-forwarded-prefix",
    "content-type",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut parts = rest.split(|&b| b == 0xFF);
    let target = parts.next().unwrap_or_default();
    let mut client = HeaderMap::new();
    for part in parts {
        let Some((&which, value)) = part.split_first() else { continue };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            client.append(NAMES[usize::from(which) % NAMES.len()], value);
        }
    }
    let trusted = flags & 1 != 0;
    let hop = Hop {
        peer: Some("192.0.2.7".parse().unwrap()),
        peer_trusted: trusted,
        scheme: Scheme::Http,
        forwarded_header: if flags & 2 != 0 { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor },
        verified: (flags & 4 != 0).then_some("proof"),
    };
    let allowed = [http::header::AUTHORIZATION, http::header::COOKIE];
    let forwarding = forwarding_plan(&hop, &client);
    let query = wopi_guard::proof::Query::parse(target);
    let access = match access_headers(&query, &allowed) {
        Ok(Some(a)) => a.set,
        _ => Vec::new(),
    };
    for (name, _) in &access {
        assert!(allowed.contains(name) && !never_from_access_header(name), "access_header set {name}");
    }
    let plan = UpstreamPlan { headers: forwarding.headers, access: access.clone(), ..UpstreamPlan::default() };
    let upstream = wopi_guard::proxy::upstream_headers(&plan, &client).expect("a plan always applies");
    let own = |name: &HeaderName| plan.headers.set.iter().any(|(n, _)| n == name);
    let from_access = |name: &HeaderName| access.iter().any(|(n, _)| n == name);
    for name in upstream.keys() {
        let n = name.as_str();
        assert!(!OVERRIDE_HEADERS.contains(&n), "override header {n} reached the host");
        if own(name) {
            let ours: Vec<_> = plan.headers.set.iter().filter(|(m, _)| m == name).map(|(_, v)| v).collect();
            assert!(upstream.get_all(name).iter().all(|v| ours.contains(&v)), "{n} is not only ours");
            continue;
        }
        assert!(n != "x-wopi-guard-verified", "the client's X-WOPI-Guard-Verified reached the host");
        if from_access(name) {
            continue;
        }
        assert!(!plan.headers.remove.contains(name), "{n} was to be removed");
        if !trusted {
            let identity = n.starts_with("x-forwarded-") || n == "forwarded" || IDENTITY_HEADERS.contains(&n);
            assert!(!identity, "identity header {n} from an untrusted peer");
        }
        for value in upstream.get_all(name) {
            assert!(client.get_all(name).iter().any(|v| v == value), "{n} has a value the client never sent");
        }
    }
});
