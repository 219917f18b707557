//! The bytes a WOPI client signs (docs/proof.md §1, §4):
//! `be32(len T) ‖ T ‖ be32(len U) ‖ U ‖ be32(8) ‖ be64(ticks)`,
//! where U is the URL the client called, uppercased, and T the access token.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// The `access_token` query value of a raw request target, in both forms a signer may have used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token<'a> {
    /// No `access_token` parameter: signers that sign anything sign the empty token.
    Absent,
    /// One `access_token` parameter.
    Present {
        /// Exactly as on the wire (Microsoft's vectors sign this form).
        raw: &'a [u8],
        /// Percent-decoded (Collabora and ONLYOFFICE sign this form).
        decoded: Cow<'a, [u8]>,
    },
    /// More than one parameter a host could read as `access_token` ([`param_name_is`]): which
    /// one the host reads is the host's guess.
    Ambiguous,
}

impl<'a> Token<'a> {
    /// Finds `access_token` in the query of a raw request target. Its value is never decoded
    /// before matching; its name is compared as hosts read names ([`param_name_is`]), so a
    /// lookalike second name (`access%5Ftoken`, `access.token`, `access_token[]`) is ambiguity,
    /// not another parameter.
    pub fn from_target(raw_target: &'a [u8]) -> Self {
        Query::parse(raw_target).token
    }

    /// The token forms to try, decoded first, each once.
    pub fn candidates(&self) -> impl Iterator<Item = &[u8]> {
        let (first, second): (&[u8], Option<&[u8]>) = match self {
            Token::Absent | Token::Ambiguous => (b"", None),
            Token::Present { raw, decoded } => {
                let decoded: &[u8] = decoded;
                (decoded, (decoded != *raw).then_some(*raw))
            }
        };
        std::iter::once(first).chain(second)
    }
}

/// The query parameters of a raw request target that the checks read, found in one pass: the
/// request is parsed once and this is handed down (verifier, rate limits, `access_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// `access_token` ([`Token::from_target`]).
    pub token: Token<'a>,
    /// The value of the last parameter a host could read as `access_header`, undecoded.
    pub access_header: Option<&'a [u8]>,
    /// A parameter a host could read as `access_header` may appear anywhere in the target,
    /// after a `#` included: the target sent upstream must be stripped of it. May be true when
    /// stripping finds nothing; never false when it would find something.
    pub mentions_access_header: bool,
}

impl<'a> Query<'a> {
    /// Reads `raw_target`'s query once. Names are compared as hosts read them
    /// ([`param_name_is`]); values are never decoded before matching.
    pub fn parse(raw_target: &'a [u8]) -> Self {
        let (mut token, mut ambiguous, mut access_header) = (None, false, None);
        for (name, value) in query_pairs(raw_target) {
            if param_name_is(name, b"access_token") {
                ambiguous |= token.is_some();
                token = Some(value);
            } else if param_name_is(name, b"access_header") {
                access_header = Some(value);
            }
        }
        let token = match token {
            _ if ambiguous => Token::Ambiguous,
            None => Token::Absent,
            Some(raw) => Token::Present { raw, decoded: percent_decode(raw).into() },
        };
        // `query_pairs` stops at a `#`, but what follows it still reaches the host if sent on,
        // and a name may straddle it (`access_header[#]` is PHP's `access_header`): a query with
        // a `#` is left to the stripping's own scan of the whole query.
        let has_hash = query_of(raw_target).contains(&b'#');
        Query { token, access_header, mentions_access_header: access_header.is_some() || has_hash }
    }
}

/// Everything after the first `?` of a raw request target (empty without one).
fn query_of(raw_target: &[u8]) -> &[u8] {
    match raw_target.iter().position(|&b| b == b'?') {
        Some(q) => &raw_target[q + 1..],
        None => &[],
    }
}

/// True when a raw query parameter name is `want` as a host's framework reads it: `+` and
/// percent-escapes decoded, leading spaces dropped, cut at a NUL, `name[...]` as `name`, and
/// `.`, space and a lone `[` folded to `_` (PHP's rules), compared case-insensitively (ASP.NET's
/// query collection ignores case). `want` is lowercase ASCII with `_` for the folded characters.
pub fn param_name_is(name: &[u8], want: &[u8]) -> bool {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
    if name.iter().all(plain) {
        return name.eq_ignore_ascii_case(want);
    }
    let spaced: Vec<u8> = name.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    let decoded: Vec<u8> = percent_decode(&spaced).collect();
    let mut name: &[u8] = &decoded;
    if let Some(nul) = name.iter().position(|&b| b == 0) {
        name = &name[..nul];
    }
    let name = name.trim_ascii_start();
    // `name[...]` is an array named `name`; a `[` with no `]` after it is folded like `.`.
    let base = match name.iter().position(|&b| b == b'[') {
        Some(open) if name[open..].contains(&b']') => &name[..open],
        _ => name,
    };
    base.len() == want.len()
        && base.iter().zip(want).all(|(&b, &w)| {
            let b = if matches!(b, b'.' | b' ' | b'[') { b'_' } else { b };
            b.eq_ignore_ascii_case(&w)
        })
}

/// `name=value` pairs of the query of a raw request target, undecoded.
pub fn query_pairs(raw_target: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let query = query_of(raw_target);
    let query = match query.iter().position(|&b| b == b'#') {
        Some(h) => &query[..h],
        None => query,
    };
    query.split(|&b| b == b'&').filter(|p| !p.is_empty()).map(|pair| match pair.iter().position(|&b| b == b'=') {
        Some(eq) => (&pair[..eq], &pair[eq + 1..]),
        None => (pair, &[][..]),
    })
}

/// Writes the signed bytes into `buf` (cleared first, so one buffer serves every attempt).
///
/// The URL is `url_base` followed by `raw_target`, uppercased ASCII a–z only (as Collabora does;
/// .NET and JS signers also uppercase non-ASCII, which never appears raw in a request target).
/// `url_base` must already be uppercase.
pub fn write_signed_bytes(buf: &mut Vec<u8>, token: &[u8], url_base: &[u8], raw_target: &[u8], ticks: i64) {
    let url_len = url_base.len() + raw_target.len();
    buf.clear();
    buf.reserve(4 + token.len() + 4 + url_len + 4 + 8);
    buf.extend_from_slice(&len32(token.len()));
    buf.extend_from_slice(token);
    buf.extend_from_slice(&len32(url_len));
    buf.extend_from_slice(url_base);
    buf.extend(raw_target.iter().map(u8::to_ascii_uppercase));
    buf.extend_from_slice(&8u32.to_be_bytes());
    buf.extend_from_slice(&ticks.to_be_bytes());
}

fn len32(len: usize) -> [u8; 4] {
    // Request targets and tokens are bounded far below 4 GiB by the HTTP parser.
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_length_prefixed_big_endian() {
        let mut buf = Vec::new();
        write_signed_bytes(&mut buf, b"tok", b"HTTPS://H", b"/a?b=c", 0x0102_0304_0506_0708);
        let mut want = vec![0, 0, 0, 3];
        want.extend_from_slice(b"tok");
        want.extend_from_slice(&[0, 0, 0, 15]);
        want.extend_from_slice(b"HTTPS://H/A?B=C");
        want.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(buf, want);
    }

    #[test]
    fn uppercases_ascii_only_and_keeps_encoding() {
        let mut buf = Vec::new();
        write_signed_bytes(&mut buf, b"", b"", b"/%2f+~\xc3\xa9", 0);
        assert_eq!(&buf[8..8 + 8], b"/%2F+~\xc3\xa9");
    }

    #[test]
    fn token_forms() {
        assert_eq!(Token::from_target(b"/wopi/files/1"), Token::Absent);
        assert_eq!(Token::from_target(b"/f?access_token=a&access_token=b"), Token::Ambiguous);
        let t = Token::from_target(b"/f?x=1&access_token=a%2fb&access_token_ttl=5");
        assert_eq!(t.candidates().collect::<Vec<_>>(), vec![&b"a/b"[..], &b"a%2fb"[..]]);
        let t = Token::from_target(b"/f?access_token=plain");
        assert_eq!(t.candidates().collect::<Vec<_>>(), vec![&b"plain"[..]]);
        let t = Token::from_target(b"/f?access_token=");
        assert_eq!(t.candidates().collect::<Vec<_>>(), vec![&b""[..]]);
        // A name that merely contains the word is another parameter.
        assert_eq!(Token::from_target(b"/f?xaccess_token=a"), Token::Absent);
        assert_eq!(Token::from_target(b"/f?access_tokens=a&access_token=b").candidates().count(), 1);
    }

    #[test]
    fn lookalike_names_make_the_token_ambiguous() {
        for second in [
            "access%5Ftoken=B",
            "access%5ftoken=B",
            "access.token=B",
            "access+token=B",
            "access%20token=B",
            "access_token[]=B",
            "access_token[x]=B",
            "access[token=B",
            "ACCESS_TOKEN=B",
            "%61ccess_token=B",
            "+access_token=B",
            "access_token%00junk=B",
        ] {
            let target = format!("/wopi/files/1?access_token=A&{second}");
            assert_eq!(Token::from_target(target.as_bytes()), Token::Ambiguous, "{second}");
        }
        for other in ["access_token_ttl=5", "access_tokenx=B", "access__token=B", "access[token]=B", "x=access_token"] {
            let target = format!("/wopi/files/1?access_token=A&{other}");
            assert!(matches!(Token::from_target(target.as_bytes()), Token::Present { .. }), "{other}");
        }
    }
}
