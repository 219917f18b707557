//! What may appear in a log: the URL with secrets replaced. The access token becomes a short
//! hash (enough to correlate lines, useless to replay); `access_header` disappears entirely.

/// Query parameters whose value is a credential.
const SECRET_PARAMS: [&str; 2] = ["access_token", "access_header"];

/// `tok:` and the first 12 hex digits of the SHA-256 of `token`.
pub fn token_hash(token: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    format!("tok:{}", hex::encode(&digest.as_ref()[..6]))
}

/// `base` + `raw_target` with every credential value replaced.
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
        match pair.split_once('=') {
            Some((name, value)) if name == "access_token" => {
                out.push_str(name);
                out.push('=');
                out.push_str(&token_hash(value.as_bytes()));
            }
            Some((name, _)) if SECRET_PARAMS.contains(&name) => {
                out.push_str(name);
                out.push_str("=<redacted>");
            }
            _ => out.push_str(pair),
        }
    }
    out
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
    }
}
