//! Request shapes refused before any other work: an oversized request target (414) or header
//! section (431), framing two HTTP parsers could read differently (400), and an asterisk-form
//! target (`*`) on any method but OPTIONS (400, RFC 9112 §3.2.4).
//!
//! Pingora 0.9 already refuses differing duplicate `Content-Length`, a final `Transfer-Encoding`
//! other than `chunked`, `Transfer-Encoding` on HTTP/1.0, obsolete line folding and header
//! sections over 1 MiB. It resolves `Content-Length` *with* `Transfer-Encoding` by dropping the
//! `Content-Length` (RFC 9112 §6.3); this refuses that shape instead, since no WOPI client sends
//! it and a request smuggling attempt does.

use crate::refusal::Refusal;

/// Size limits on what a client may send before its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest request target (path and query), bytes.
    pub max_target_bytes: usize,
    /// Largest header section (request line included), bytes.
    pub max_header_bytes: usize,
}

/// What the checks need to know of one request.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// Length of the raw request target.
    pub target_len: usize,
    /// The header section as received, when the connection is HTTP/1.
    pub raw_header: Option<&'a [u8]>,
    /// Header section size when the raw bytes are not available (names, values, separators).
    pub header_len: usize,
    /// A `Transfer-Encoding` header is present.
    pub transfer_encoding: bool,
    /// The request target is `*` and the method is not OPTIONS.
    pub misused_asterisk: bool,
}

/// Refuses what the limits and the framing rule do not allow.
pub fn check_shape(limits: &RequestLimits, shape: &Shape<'_>) -> Result<(), Refusal> {
    if shape.misused_asterisk {
        return Err(Refusal::TargetFormInvalid);
    }
    if shape.target_len > limits.max_target_bytes {
        return Err(Refusal::TargetTooLong);
    }
    let header_bytes = shape.raw_header.map_or(shape.header_len, <[u8]>::len);
    if header_bytes > limits.max_header_bytes {
        return Err(Refusal::HeadersTooLarge);
    }
    if shape.transfer_encoding && shape.raw_header.is_some_and(has_content_length) {
        return Err(Refusal::AmbiguousFraming);
    }
    Ok(())
}

/// True when a header line of `raw` is `Content-Length` (any case, any spacing before `:`).
fn has_content_length(raw: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length";
    raw.split(|&b| b == b'\n').skip(1).any(|line| {
        line.len() > NAME.len()
            && line[..NAME.len()].eq_ignore_ascii_case(NAME)
            && line[NAME.len()..].iter().find(|b| !matches!(b, b' ' | b'\t')) == Some(&b':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits { max_target_bytes: 100, max_header_bytes: 200 };

    fn shape(raw: &[u8], target_len: usize, te: bool) -> Shape<'_> {
        Shape { target_len, raw_header: Some(raw), header_len: 0, transfer_encoding: te, misused_asterisk: false }
    }

    #[test]
    fn sizes_and_framing() {
        let ok = b"POST /wopi/files/1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check_shape(&LIMITS, &shape(ok, 16, true)), Ok(()));
        assert_eq!(check_shape(&LIMITS, &shape(ok, 101, true)), Err(Refusal::TargetTooLong));
        let big = [b'x'; 201];
        assert_eq!(check_shape(&LIMITS, &shape(&big, 1, false)), Err(Refusal::HeadersTooLarge));
        let no_raw = Shape {
            target_len: 1,
            raw_header: None,
            header_len: 201,
            transfer_encoding: false,
            misused_asterisk: false,
        };
        assert_eq!(check_shape(&LIMITS, &no_raw), Err(Refusal::HeadersTooLarge));
        for both in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-LENGTH : 5\r\n\r\n",
            b"POST / HTTP/1.1\nTransfer-Encoding: chunked\ncontent-length:5\n\n",
        ] {
            assert_eq!(check_shape(&LIMITS, &shape(both, 1, true)), Err(Refusal::AmbiguousFraming));
        }
        // A header merely containing the words, or a Content-Length without Transfer-Encoding, is fine.
        let lookalike = b"POST / HTTP/1.1\r\nX-Note: content-length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check_shape(&LIMITS, &shape(lookalike, 1, true)), Ok(()));
        let plain = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(check_shape(&LIMITS, &shape(plain, 1, false)), Ok(()));
        let star = Shape { misused_asterisk: true, ..shape(b"GET * HTTP/1.1\r\n\r\n", 1, false) };
        assert_eq!(check_shape(&LIMITS, &star), Err(Refusal::TargetFormInvalid));
    }
}
