//! `wopi-guard sign`: sign a request with a PEM private key, as an office server would, to test a
//! deployment end to end.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt::Write;

use super::signer::{ProofSet, Signer};

/// A signer from a PEM private key (`BEGIN PRIVATE KEY` PKCS#8 or `BEGIN RSA PRIVATE KEY` PKCS#1).
pub fn signer_from_pem(pem: &str) -> Result<Signer, String> {
    const FORM: &str =
        "pass an RSA private key in PEM form (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)";
    let begin = pem.lines().position(|l| l.trim().starts_with("-----BEGIN") && l.contains("PRIVATE KEY-----"));
    let Some(begin) = begin else {
        return Err(format!("no PEM private key found; {FORM}"));
    };
    let body: String = pem.lines().skip(begin + 1).map(str::trim).take_while(|l| !l.starts_with("-----END")).collect();
    if body.is_empty() {
        return Err(format!("the PEM block is empty; {FORM}"));
    }
    let der = STANDARD.decode(body).map_err(|e| format!("the PEM body is not base64: {e}"))?;
    Signer::from_der(&der).map_err(|e| format!("not an RSA private key ({e})"))
}

/// The three proof headers for `url` at `ticks`, and a curl line that sends them.
pub fn sign_request(url: &str, current: &Signer, old: &Signer, ticks: i64) -> String {
    let proof = ProofSet::sign(url, ticks, current, old);
    let mut out = String::new();
    for (name, value) in proof.headers() {
        let _ = writeln!(out, "{name}: {value}");
    }
    let headers: String = proof.headers().iter().map(|(n, v)| format!(" -H '{n}: {v}'")).collect();
    let _ = writeln!(out, "\ncurl -i '{url}'{headers}");
    out
}
