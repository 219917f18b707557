//! Forward-auth (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` over HTTP): which
//! original request an auth subrequest asks about. Only the header pair `[forward_auth]
//! uri_header` names is read; a subrequest that carries both pairs' names, or no complete pair,
//! is refused, since the proxy in front maintains one pair and passes a client's copies of the
//! other through.

use http::{HeaderMap, Method};

use super::forwarding::OVERRIDE_HEADERS;
use crate::refusal::Refusal;

/// The header pair the front proxy sets on its auth subrequest (`[forward_auth] uri_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardAuthHeaders {
    /// `X-Original-URI` / `X-Original-Method`, as the nginx example sets them: the default.
    #[default]
    OriginalUri,
    /// `X-Forwarded-Uri` / `X-Forwarded-Method`, which Traefik sets.
    ForwardedUri,
}

impl ForwardAuthHeaders {
    /// The URI header's name, lowercase (the value of `uri_header`).
    pub fn uri_header(self) -> &'static str {
        match self {
            ForwardAuthHeaders::OriginalUri => "x-original-uri",
            ForwardAuthHeaders::ForwardedUri => "x-forwarded-uri",
        }
    }

    /// The matching method header's name, lowercase.
    pub fn method_header(self) -> &'static str {
        match self {
            ForwardAuthHeaders::OriginalUri => "x-original-method",
            ForwardAuthHeaders::ForwardedUri => "x-forwarded-method",
        }
    }

    /// From the configured `uri_header` value.
    pub fn from_name(name: &str) -> Option<Self> {
        [ForwardAuthHeaders::OriginalUri, ForwardAuthHeaders::ForwardedUri]
            .into_iter()
            .find(|h| h.uri_header().eq_ignore_ascii_case(name))
    }

    fn other(self) -> Self {
        match self {
            ForwardAuthHeaders::OriginalUri => ForwardAuthHeaders::ForwardedUri,
            ForwardAuthHeaders::ForwardedUri => ForwardAuthHeaders::OriginalUri,
        }
    }
}

/// The original request of an auth subrequest: its raw target and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    /// The request target as the client sent it (nginx's `$request_uri`).
    pub target: Vec<u8>,
    /// The client's method.
    pub method: Method,
}

/// Reads the original request from the configured header pair. Refused (400) when a header of
/// the pair is missing, repeated or malformed, when a header of the other pair is present too,
/// and when the subrequest carries a path or method override header that the host, which gets
/// the client's headers from the front proxy, could act on.
pub fn original_request(headers: &HeaderMap, which: ForwardAuthHeaders) -> Result<OriginalRequest, Refusal> {
    let other = which.other();
    if headers.contains_key(other.uri_header()) || headers.contains_key(other.method_header()) {
        return Err(Refusal::ForwardAuthHeaders);
    }
    let own = which.uri_header();
    if OVERRIDE_HEADERS.iter().any(|name| *name != own && headers.contains_key(*name)) {
        return Err(Refusal::OverrideHeader);
    }
    let only = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => Ok(v.as_bytes()),
            _ => Err(Refusal::ForwardAuthHeaders),
        }
    };
    let target = only(own)?;
    if !target.starts_with(b"/") {
        return Err(Refusal::ForwardAuthHeaders);
    }
    let method = Method::from_bytes(only(which.method_header())?).map_err(|_| Refusal::ForwardAuthHeaders)?;
    Ok(OriginalRequest { target: target.to_vec(), method })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::test_headers as headers;

    const NGINX: ForwardAuthHeaders = ForwardAuthHeaders::OriginalUri;
    const TRAEFIK: ForwardAuthHeaders = ForwardAuthHeaders::ForwardedUri;

    #[test]
    fn only_the_configured_pair_is_read() {
        let h = headers(&[("x-original-uri", "/wopi/files/1?access_token=t"), ("x-original-method", "POST")]);
        let want = OriginalRequest { target: b"/wopi/files/1?access_token=t".to_vec(), method: Method::POST };
        assert_eq!(original_request(&h, NGINX), Ok(want.clone()));
        assert_eq!(original_request(&h, TRAEFIK), Err(Refusal::ForwardAuthHeaders), "nginx's pair under Traefik");
        let h = headers(&[("x-forwarded-uri", "/wopi/files/1?access_token=t"), ("x-forwarded-method", "POST")]);
        assert_eq!(original_request(&h, TRAEFIK), Ok(want));
    }

    #[test]
    fn both_pairs_missing_parts_and_repeats_are_refused() {
        // The review's attack: Traefik sets X-Forwarded-*, the client adds X-Original-URI.
        let h = headers(&[
            ("x-forwarded-uri", "/wopi/files/1"),
            ("x-forwarded-method", "POST"),
            ("x-original-uri", "/health"),
        ]);
        assert_eq!(original_request(&h, TRAEFIK), Err(Refusal::ForwardAuthHeaders));
        assert_eq!(original_request(&h, NGINX), Err(Refusal::ForwardAuthHeaders));
        let h = headers(&[
            ("x-forwarded-uri", "/wopi/files/1"),
            ("x-forwarded-method", "GET"),
            ("x-original-method", "GET"),
        ]);
        assert_eq!(original_request(&h, TRAEFIK), Err(Refusal::ForwardAuthHeaders));
        for h in [
            headers(&[("x-original-uri", "/wopi/files/1")]),
            headers(&[("x-original-method", "GET")]),
            headers(&[("x-original-uri", "wopi/files/1"), ("x-original-method", "GET")]),
            headers(&[("x-original-uri", "/a"), ("x-original-uri", "/b"), ("x-original-method", "GET")]),
            headers(&[("x-original-uri", "/a"), ("x-original-method", "GET"), ("x-original-method", "POST")]),
            headers(&[("x-original-uri", "/a"), ("x-original-method", "G ET")]),
        ] {
            assert_eq!(original_request(&h, NGINX), Err(Refusal::ForwardAuthHeaders), "{h:?}");
        }
    }

    #[test]
    fn override_headers_are_refused() {
        for name in OVERRIDE_HEADERS.iter().filter(|n| **n != "x-original-uri") {
            let h = headers(&[("x-original-uri", "/status"), ("x-original-method", "GET"), (name, "/wopi/files/1")]);
            assert_eq!(original_request(&h, NGINX), Err(Refusal::OverrideHeader), "{name}");
        }
        let h = headers(&[("x-forwarded-uri", "/status"), ("x-forwarded-method", "GET"), ("x-original-url", "/w")]);
        assert_eq!(original_request(&h, TRAEFIK), Err(Refusal::OverrideHeader));
    }
}
