//! What may appear in a log: the URL with secrets replaced. The access token becomes a short
//! hash (enough to correlate lines, useless to replay); `access_header` disappears entirely.
//! Names are matched as the gate reads them ([`param_name_is`]: `ACCESS_TOKEN`, `access.token`,
//! `access%5Ftoken`, `access_token[]` are all the token), so whatever the gate could take for a
//! credential is redacted.

use crate::proof::param_name_is;

/// `tok:` and the first 12 hex digits of the SHA-256 of `token`.
pub fn token_hash(token: &[u8]) -> String {
    short_hash("tok", token)
}

/// `prefix:` and the first 12 hex digits of the SHA-256 of `value`.
pub fn short_hash(prefix: &str, value: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
    // One allocation of the final size (this runs for every request's file id and token).
    let mut out = String::with_capacity(prefix.len() + 13);
    out.push_str(prefix);
    out.push(':');
    for byte in &digest.as_ref()[..6] {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 15)] as char);
    }
    out
}

/// A request id: the client's `X-Request-Id` when it is short and plain, otherwise a new one
/// (process start time and a counter, unique per process run).
pub fn request_id(incoming: Option<&[u8]>) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    if let Some(id) = incoming.filter(|id| !id.is_empty() && id.len() <= 64) {
        if id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return String::from_utf8_lossy(id).into_owned();
        }
    }
    static BOOT: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let boot = BOOT.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
    });
    format!("{:x}-{:x}", boot & 0xffff_ffff_ffff, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `base` + `raw_target` with every credential value replaced. Each `&`-separated pair's name
/// is read as the gate reads names; a pair holding a `#` is read once whole (`access_header[#]`
/// is PHP's `access_header`) and once from after the `#` (a host may be sent what follows it).
pub fn redacted_url(base: &str, raw_target: &[u8]) -> String {
    let target = String::from_utf8_lossy(raw_target);
    let mut out = String::with_capacity(base.len() + target.len());
    out.push_str(base);
    let Some((path, query)) = target.split_once('?') else {
        out.push_str(&target);
        return out;
    };
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        redact_pair(pair, &mut out);
    }
    out
}

fn redact_pair(pair: &str, out: &mut String) {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    if param_name_is(name.as_bytes(), b"access_token") && !value.is_empty() {
        out.push_str(name);
        out.push('=');
        out.push_str(&token_hash(value.as_bytes()));
    } else if param_name_is(name.as_bytes(), b"access_header") && !value.is_empty() {
        out.push_str(name);
        out.push_str("=<redacted>");
    } else if let Some((before, after)) = pair.split_once('#') {
        out.push_str(before);
        out.push('#');
        redact_pair(after, out);
    } else {
        out.push_str(pair);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_survive() {
        let url =
            redacted_url("https://h", b"/wopi/files/1?a=1&access_token=SECRET&access_header=Authorization%3A%20x");
        assert!(!url.contains("SECRET"));
        assert!(!url.contains("Authorization"));
        assert!(url.starts_with("https://h/wopi/files/1?a=1&access_token=tok:"));
        assert!(url.ends_with("&access_header=<redacted>"));
        assert_eq!(token_hash(b"SECRET"), token_hash(b"SECRET"));
        assert_ne!(token_hash(b"SECRET"), token_hash(b"SECRET2"));
        assert_eq!(redacted_url("", b"/x"), "/x");
        // The first 12 hex digits of SHA-256("42"), as `echo -n 42 | sha256sum` prints them.
        assert_eq!(short_hash("file", b"42"), "file:73475cb40a56");
    }

    #[test]
    fn every_name_the_gate_reads_as_a_credential_is_redacted() {
        for pair in [
            "ACCESS_TOKEN=SECRET",
            "access.token=SECRET",
            "access%5Ftoken=SECRET",
            "access_token[]=SECRET",
            "Access_Header=SECRET",
            "access+header=SECRET",
            "access_header[#]=SECRET",
            "%61ccess_token=SECRET",
        ] {
            let url = redacted_url("", format!("/wopi/files/1?a=1&{pair}&b=2").as_bytes());
            assert!(!url.contains("SECRET"), "{pair}: {url}");
            assert!(url.starts_with("/wopi/files/1?a=1&") && url.ends_with("&b=2"), "{url}");
        }
        // After a `#` too, and the separators are kept as they were.
        let url = redacted_url("", b"/f?x=1#access_token=SECRET&y");
        assert_eq!(url, format!("/f?x=1#access_token={}&y", token_hash(b"SECRET")));
        let url = redacted_url("", b"/f?x=1#y#access_header=SECRET");
        assert_eq!(url, "/f?x=1#y#access_header=<redacted>");
        assert_eq!(redacted_url("", b"/f?x=1#y"), "/f?x=1#y");
        // Names that only contain the word are other parameters.
        assert_eq!(
            redacted_url("", b"/f?access_token_ttl=5&xaccess_header=1"),
            "/f?access_token_ttl=5&xaccess_header=1"
        );
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        let (a, b) = (request_id(None), request_id(Some(b"bad id\n")));
        assert_ne!(a, b);
        assert!(!b.contains(' '));
        assert_ne!(request_id(Some(&[b'a'; 65])), "a".repeat(65));
    }
}
