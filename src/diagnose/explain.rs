//! `wopi-guard explain`: take a captured request (URL and headers) and say which combination
//! verified, or why none did, with the signed URL shown with its token hashed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::config::PublicUrl;
use crate::keys::{KeySnapshot, ProofKey};
use crate::proof::{
    attempts, parse_ticks, verify, ProofHeaders, SignedRequest, TimeWindow, Token, TokenForm, UNIX_EPOCH_TICKS,
};
use crate::redact::{redacted_url, token_hash};

/// A request as captured: the first line `METHOD URL` (absolute) or `METHOD TARGET [HTTP/1.1]`,
/// then `Name: value` header lines.
#[derive(Debug, Clone)]
pub struct CapturedRequest {
    /// Method.
    pub method: String,
    /// Base URL (`scheme://host[:port][/prefix]`).
    pub base: String,
    /// Raw request target.
    pub target: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

impl CapturedRequest {
    /// Parses a capture; `public_url` is the base for a target that is not an absolute URL.
    pub fn parse(text: &str, public_url: Option<&str>) -> Result<Self, String> {
        let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
        let first = lines
            .next()
            .ok_or("the capture is empty; the first line is `GET https://host/wopi/files/1?access_token=...`")?;
        let mut parts = first.split_whitespace();
        let (method, url) = match (parts.next(), parts.next()) {
            (Some(m), Some(u)) => (m.to_string(), u),
            (Some(u), None) => ("GET".to_string(), u),
            _ => return Err(format!("cannot read the first line {first:?}")),
        };
        let malformed = || {
            format!("cannot read the first line {first:?}: expected `METHOD URL`, the URL absolute (https://host/wopi/files/1?access_token=...) or a path starting with /")
        };
        if !method.bytes().all(|b| b.is_ascii_uppercase()) || parts.next().is_some_and(|p| !p.starts_with("HTTP/")) {
            return Err(malformed());
        }
        let (base, target) = if let Some(after) = url.find("://").map(|i| i + 3) {
            let slash = url[after..].find('/').map_or(url.len(), |s| after + s);
            let scheme = &url[..after - 3];
            if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) || slash == after {
                return Err(malformed());
            }
            (url[..slash].to_string(), if slash == url.len() { "/".to_string() } else { url[slash..].to_string() })
        } else if !url.starts_with('/') {
            return Err(malformed());
        } else {
            let base =
                public_url.ok_or("the first line has a path only: pass --public-url (or --config) for the base")?;
            (base.trim_end_matches('/').to_string(), url.to_string())
        };
        let headers = lines
            .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())))
            .collect();
        Ok(CapturedRequest { method, base, target, headers })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn decode(header: Option<&str>) -> Result<Vec<u8>, &'static str> {
    let value = header.ok_or("absent")?;
    STANDARD.decode(value.trim()).map_err(|_| "not base64")
}

/// The report, and whether the request verifies under `window` at `now`.
pub fn explain(req: &CapturedRequest, keys: &KeySnapshot, window: &TimeWindow, now: SystemTime) -> (String, bool) {
    let mut out = String::new();
    let url = match PublicUrl::parse(&req.base) {
        Ok(url) => url,
        Err(e) => {
            let _ = writeln!(out, "base URL:   {e}");
            return (out, false);
        }
    };
    let _ = writeln!(out, "request:    {} {}", req.method, redacted_url(&req.base, req.target.as_bytes()));
    // Redacted before uppercasing: the token never shows, in either case.
    let signed = redacted_url(url.as_str(), req.target.as_bytes()).to_ascii_uppercase();
    let _ = writeln!(out, "signed URL: {signed}");
    if let Some(alt) = url.alt_upper() {
        let label = url.form_label(crate::proof::UrlForm::DefaultPortToggled);
        let _ = writeln!(out, "            then {} ({label})", String::from_utf8_lossy(alt));
    }
    let token = Token::from_target(req.target.as_bytes());
    match &token {
        Token::Absent => {
            let _ = writeln!(out, "token:      no access_token: the empty token is signed");
        }
        Token::Ambiguous => {
            let _ = writeln!(out, "token:      more than one access_token: refused as ambiguous");
        }
        Token::Present { raw, decoded } => {
            let _ = writeln!(
                out,
                "token:      {} bytes decoded ({}), {} bytes raw ({})",
                decoded.len(),
                token_hash(decoded),
                raw.len(),
                token_hash(raw)
            );
        }
    }
    let ticks = req.header("x-wopi-timestamp").and_then(|t| parse_ticks(t.as_bytes()));
    match ticks {
        None => {
            let _ = writeln!(out, "timestamp:  missing or not a decimal integer");
        }
        Some(t) => {
            let at = SystemTime::UNIX_EPOCH
                + Duration::from_nanos(((t - UNIX_EPOCH_TICKS).max(0) as u64).saturating_mul(100));
            let verdict = match window.check(t, now) {
                Ok(()) => "within the window".to_string(),
                Err(r) => format!("REFUSED ({r})"),
            };
            let age = now.duration_since(at).map_or_else(
                |e| format!("{} s in the future", e.duration().as_secs()),
                |d| format!("{} s old", d.as_secs()),
            );
            let _ = writeln!(out, "timestamp:  {t} = {}, {age}: {verdict}", humantime::format_rfc3339_seconds(at));
        }
    }
    let proof = decode(req.header("x-wopi-proof"));
    let proof_old = decode(req.header("x-wopi-proofold"));
    for (name, sig) in [("X-WOPI-Proof", &proof), ("X-WOPI-ProofOld", &proof_old)] {
        let _ = writeln!(
            out,
            "{name:<15} {}",
            sig.as_ref().map_or_else(|e| e.to_string(), |s| format!("{} bytes", s.len()))
        );
    }
    let headers = ProofHeaders {
        proof: req.header("x-wopi-proof").map(str::as_bytes),
        proof_old: req.header("x-wopi-proofold").map(str::as_bytes),
        timestamp: req.header("x-wopi-timestamp").map(str::as_bytes),
    };
    let request = SignedRequest {
        url_base_upper: url.upper(),
        url_base_alt_upper: url.alt_upper(),
        raw_target: req.target.as_bytes(),
        headers,
    };
    if let Some(t) = ticks {
        // The verifier's own attempts, in its order; each key and header shown, not only the
        // accepted combinations, so a near miss is visible.
        let _ = writeln!(out, "tries (signature checked whatever the time):");
        let mut message = Vec::new();
        let quoted = crate::proof::quote_unescaped(request.raw_target);
        for attempt in attempts(&request, &token, quoted.as_deref()) {
            let token_form = match attempt.token_form {
                TokenForm::Decoded => "decoded token",
                TokenForm::Raw => "raw token",
                TokenForm::Empty => "empty token",
            };
            let form = format!("{}, {token_form}", url.form_label(attempt.url_form));
            attempt.write(&mut message, t);
            for source in &keys.sources {
                let mut try_key = |which: &str, key: &ProofKey| {
                    for (name, sig) in [("Proof", &proof), ("ProofOld", &proof_old)] {
                        let ok = sig.as_ref().is_ok_and(|s| key.verifies(&message, s));
                        let result = match (ok, which, name) {
                            (true, "old", "ProofOld") => {
                                "verifies, but ProofOld with the old key is NOT an accepted combination"
                            }
                            (true, _, _) => "VERIFIES",
                            (false, _, _) => "no",
                        };
                        let _ = writeln!(
                            out,
                            "  {form}, {name:<8} with {which:<7} key {} of {}: {result}",
                            key.fingerprint(),
                            source.url
                        );
                    }
                };
                try_key("current", &source.current);
                if let Some(old) = &source.old {
                    try_key("old", old);
                }
            }
        }
    }
    let result = verify(keys, &request, window, now, &mut Vec::new());
    let ok = result.is_ok();
    let _ = match result {
        Ok(v) => writeln!(
            out,
            "verdict:    VERIFIED ({}, source {}, URL {})",
            v.combination.label(),
            v.source,
            url.form_label(v.url_form)
        ),
        Err(r) => writeln!(out, "verdict:    REFUSED: {r} ({})", r.body().trim().trim_start_matches("wopi-guard: ")),
    };
    (out, ok)
}
