//! Collabora's `access_header` (docs/operations.md): the host page's credential, sent in the query
//! instead of an `access_token`, turned into real upstream headers. `access_token` wins when both
//! are present. Only the names `[forward] access_header_names` lists are set (`Authorization` by
//! default), and names hosts route or identify on, or that frame the request, can never be
//! listed ([`never_from_access_header`]). The value is a credential: nothing here logs it, and
//! the parameter never reaches the upstream URL of a request that honours it.

use http::{HeaderName, HeaderValue};
use percent_encoding::percent_decode;

use super::forwarding::{IDENTITY_HEADERS, OVERRIDE_HEADERS};
use crate::proof::{param_name_is, Query, Token};

/// Longest accepted decoded `access_header`.
pub const MAX_DECODED_LEN: usize = 8192;

/// Why an `access_header` was refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessHeaderError {
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// Longer than [`MAX_DECODED_LEN`] once decoded.
    TooLarge,
}

/// Headers to set upstream, and the names of lines that were dropped (never their values).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessHeaders {
    /// To set on the upstream request, replacing any client-sent header of the same name.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Lines dropped and why, for a warning: `("host", "forbidden header")`; the name is empty
    /// when the line had no valid name.
    pub dropped: Vec<(String, &'static str)>,
}

/// Headers no `access_header` line may ever set, whatever `[forward] access_header_names` says
/// (the configuration refuses to list them): headers hosts route on (path and method overrides),
/// identify the client by (`X-Real-IP` and its kin, `Via`, `Forwarded`, `X-Forwarded-*`), WOPI's
/// and wopi-guard's own (`X-WOPI-*`), and hop-by-hop and framing headers.
pub fn never_from_access_header(name: &HeaderName) -> bool {
    const HOP_AND_FRAMING: [&str; 16] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "upgrade",
        "expect",
        "proxy-authorization",
        "proxy-authenticate",
        "forwarded",
        "via",
        "x-original-method",
    ];
    let n = name.as_str();
    HOP_AND_FRAMING.contains(&n)
        || OVERRIDE_HEADERS.contains(&n)
        || IDENTITY_HEADERS.contains(&n)
        || n.starts_with("x-wopi-")
        || n.starts_with("x-forwarded-")
}

/// The upstream headers an `access_header` asks for, from the request's parsed query, limited to
/// the names in `allowed` (lowercase, as `HeaderName`s are). `Ok(None)` when there is no
/// `access_header`, or when an `access_token` is present (the token wins).
pub fn access_headers(query: &Query<'_>, allowed: &[HeaderName]) -> Result<Option<AccessHeaders>, AccessHeaderError> {
    let Some(raw) = query.access_header else {
        return Ok(None);
    };
    if query.token != Token::Absent {
        return Ok(None);
    }
    if !well_encoded(raw) {
        return Err(AccessHeaderError::BadPercentEncoding);
    }
    let decoded: Vec<u8> = percent_decode(raw).collect();
    if decoded.len() > MAX_DECODED_LEN {
        return Err(AccessHeaderError::TooLarge);
    }
    let mut out = AccessHeaders::default();
    for line in decoded.split(|&b| b == b'\r' || b == b'\n').filter(|l| !l.trim_ascii().is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            out.dropped.push((String::new(), "line without ':'"));
            continue;
        };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        let Ok(name) = HeaderName::from_bytes(name) else {
            // Not even the name is kept: a malformed line may be a credential.
            out.dropped.push((String::new(), "invalid header name"));
            continue;
        };
        if never_from_access_header(&name) {
            out.dropped.push((name.to_string(), "forbidden header"));
            continue;
        }
        if !allowed.contains(&name) {
            out.dropped.push((name.to_string(), "not in forward.access_header_names"));
            continue;
        }
        let Ok(value) = HeaderValue::from_bytes(value) else {
            out.dropped.push((name.to_string(), "invalid header value"));
            continue;
        };
        out.set.retain(|(n, _)| *n != name);
        out.set.push((name, value));
    }
    Ok(Some(out))
}

/// The request target without any `access_header` parameter; `None` when it has none. `query` is
/// `raw_target`'s, parsed once: without a mention of `access_header` the target is not scanned.
pub fn strip_access_header(raw_target: &[u8], query: &Query<'_>) -> Option<Vec<u8>> {
    if !query.mentions_access_header {
        return None;
    }
    let q = raw_target.iter().position(|&b| b == b'?')?;
    let (path, query) = (&raw_target[..q], &raw_target[q + 1..]);
    // Every name a host could read as `access_header` goes: the credential never reaches the URL.
    let is_access_header =
        |pair: &&[u8]| pair.split(|&b| b == b'=').next().is_some_and(|name| param_name_is(name, b"access_header"));
    if !query.split(|&b| b == b'&').any(|p| is_access_header(&p)) {
        return None;
    }
    let kept: Vec<&[u8]> = query.split(|&b| b == b'&').filter(|p| !is_access_header(p)).collect();
    let mut out = path.to_vec();
    if !kept.is_empty() {
        out.push(b'?');
        out.extend_from_slice(&kept.join(&b'&'));
    }
    Some(out)
}

fn well_encoded(raw: &[u8]) -> bool {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if !(raw.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && raw.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(target: &str) -> Result<Option<AccessHeaders>, AccessHeaderError> {
        let allowed = ["authorization", "x-tenant", "x-a", "x-old"].map(HeaderName::from_static);
        access_headers(&Query::parse(target.as_bytes()), &allowed)
    }

    fn strip(target: &[u8]) -> Option<Vec<u8>> {
        let parsed = strip_access_header(target, &Query::parse(target));
        // Stripping after a full scan finds the same: the parsed query never hides a mention.
        let scanned = strip_access_header(target, &Query { mentions_access_header: true, ..Query::parse(target) });
        assert_eq!(parsed, scanned, "{}", String::from_utf8_lossy(target));
        parsed
    }

    fn names(h: &AccessHeaders) -> Vec<(&str, &str)> {
        h.set.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect()
    }

    #[test]
    fn several_headers_from_the_last_parameter() {
        let h = parse("/wopi/files/1?access_header=X-Old%3A%201&access_header=Authorization%3A%20Basic%20dXNlcjpwYXNz%0D%0AX-Tenant%3A%20a")
            .unwrap()
            .unwrap();
        assert_eq!(names(&h), vec![("authorization", "Basic dXNlcjpwYXNz"), ("x-tenant", "a")]);
        assert!(h.dropped.is_empty());
    }

    #[test]
    fn access_token_wins() {
        assert_eq!(parse("/wopi/files/1?access_token=t&access_header=Authorization%3A%20x").unwrap(), None);
        assert_eq!(parse("/wopi/files/1?x=1").unwrap(), None);
    }

    #[test]
    fn hostile_values() {
        // CRLF injection only ever makes more lines, each checked on its own.
        let h = parse("/f?access_header=X-A%3A%201%0D%0AHost%3A%20evil%0AContent-Length%3A%200%0D%0ATransfer-Encoding%3A%20chunked%0D%0AX-WOPI-Proof%3A%20x%0D%0AConnection%3A%20close%0D%0AX-Forwarded-For%3A%201.2.3.4%0D%0Ajunk%0D%0AB%20ad%3A%20x")
            .unwrap()
            .unwrap();
        assert_eq!(names(&h), vec![("x-a", "1")]);
        let dropped: Vec<&str> = h.dropped.iter().map(|(n, _)| n.as_str()).collect();
        for name in ["host", "content-length", "transfer-encoding", "x-wopi-proof", "connection", "x-forwarded-for"] {
            assert!(dropped.contains(&name), "{name} not dropped: {dropped:?}");
        }
        assert_eq!(h.dropped.len(), 8, "{:?}", h.dropped);
        // A name outside the list is dropped and named; the list itself cannot open the rest.
        let h = parse("/f?access_header=Cookie%3A%20s%3D1%0D%0AX-A%3A%201").unwrap().unwrap();
        assert_eq!(names(&h), vec![("x-a", "1")]);
        assert_eq!(h.dropped, vec![("cookie".to_string(), "not in forward.access_header_names")]);
        let everything: Vec<HeaderName> = ["x-original-url", "x-real-ip", "via", "x-http-method-override", "cookie"]
            .map(HeaderName::from_static)
            .to_vec();
        let q = "/f?access_header=X-Original-URL%3A%20%2Fa%0D%0AX-Real-IP%3A%201.2.3.4%0D%0AVia%3A%201.1%20x%0D%0AX-HTTP-Method-Override%3A%20PUT%0D%0ACookie%3A%20c";
        let h = access_headers(&Query::parse(q.as_bytes()), &everything).unwrap().unwrap();
        assert_eq!(names(&h), vec![("cookie", "c")], "forbidden names stay forbidden even if listed");
        for name in [
            "x-original-url",
            "x-real-ip",
            "via",
            "x-http-method-override",
            "x-wopi-guard-verified",
            "true-client-ip",
            "cf-connecting-ip",
            "x-client-ip",
            "x-forwarded-prefix",
            "te",
            "x-original-method",
        ] {
            assert!(never_from_access_header(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["authorization", "cookie", "x-tenant"] {
            assert!(!never_from_access_header(&HeaderName::from_static(name)), "{name}");
        }
        // A NUL or bare control byte in a value is not a header value.
        let h = parse("/f?access_header=X-A%3A%20a%00b").unwrap().unwrap();
        assert!(h.set.is_empty());
        assert_eq!(parse("/f?access_header=X-A%3A%2"), Err(AccessHeaderError::BadPercentEncoding));
        assert_eq!(parse("/f?access_header=%zzX"), Err(AccessHeaderError::BadPercentEncoding));
        let huge = format!("/f?access_header=X-A%3A%20{}", "a".repeat(MAX_DECODED_LEN));
        assert_eq!(parse(&huge), Err(AccessHeaderError::TooLarge));
        // Later lines replace earlier ones of the same name.
        let h = parse("/f?access_header=X-A%3A%201%0AX-A%3A%202").unwrap().unwrap();
        assert_eq!(names(&h), vec![("x-a", "2")]);
    }

    #[test]
    fn stripped_from_the_upstream_target_byte_for_byte() {
        assert_eq!(strip(b"/f?a=1&access_header=X%3A1&b=%2B+"), Some(b"/f?a=1&b=%2B+".to_vec()));
        assert_eq!(strip(b"/f?access_header=X%3A1"), Some(b"/f".to_vec()));
        assert_eq!(strip(b"/f?access_header=1&access_header=2&z"), Some(b"/f?z".to_vec()));
        assert_eq!(strip(b"/f?access_headerx=1"), None);
        // Names a host reads as access_header go too (PHP folding, encoding).
        assert_eq!(strip(b"/f?a=1&access.header=X%3A1&access%5Fheader=2"), Some(b"/f?a=1".to_vec()));
        assert_eq!(strip(b"/f"), None);
        // After a `#`, which the query parser stops at but a host may still be sent.
        assert_eq!(strip(b"/f?a=1#&access_header=X%3A1"), Some(b"/f?a=1#".to_vec()));
        assert_eq!(strip(b"/f?a=1#x&access%5Fheader=1&b"), Some(b"/f?a=1#x&b".to_vec()));
        assert_eq!(strip(b"/f?a=1#access_header"), None, "one pair `1#access_header`, not the name");
        assert_eq!(strip(b"/f?access_header=1#&access_header=2"), Some(b"/f".to_vec()));
        // A name that straddles the `#` (found by the fuzzer): before it `access_header[` is
        // another name; the whole `access_header[#]` is the array PHP reads as `access_header`.
        assert_eq!(strip(b"/f?access_header[#]=1&b"), Some(b"/f?b".to_vec()));
        assert_eq!(strip(b"/f?a=1&%20access.header%5B#x%5D"), Some(b"/f?a=1".to_vec()));
    }
}
