//! `wopi-guard discovery URL|FILE`: the keys a discovery document publishes, how each attribute
//! form reads, and warnings.

use std::fmt::Write;
use std::time::Duration;

use crate::config::ClientTls;
use crate::keys::{discovery_client, fetch_discovery, inspect_discovery, published, FetchLimits, KeyForms, ProofKey};

/// Reads a discovery document from an http(s) URL (certificates checked per `tls`) or a file.
pub fn load_discovery(source: &str, timeout: Duration, tls: &ClientTls) -> Result<Vec<u8>, String> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let limits = FetchLimits { timeout, max_bytes: 4 << 20 };
        let client = discovery_client(tls).map_err(|e| e.to_string())?;
        runtime.block_on(fetch_discovery(&client, source, limits)).map_err(|e| format!("cannot fetch {source}: {e}"))
    } else {
        std::fs::read(source).map_err(|e| format!("cannot read {source}: {e}"))
    }
}

fn key_line(out: &mut String, label: &str, key: &ProofKey) {
    let _ = writeln!(
        out,
        "    {label}: {} bits, exponent {}, {}",
        key.bits(),
        hex::encode(key.exponent()),
        key.fingerprint()
    );
}

fn describe(out: &mut String, which: &str, forms: &KeyForms) -> (Option<String>, Vec<String>) {
    let mut warnings = Vec::new();
    let _ = writeln!(out, "{which} key:");
    if forms.components.is_none() && forms.blob.is_none() {
        let _ = writeln!(out, "    not published");
        return (None, warnings);
    }
    let mut used = None;
    match &forms.components {
        Some(Ok(key)) => {
            key_line(out, "modulus/exponent", key);
            used = Some(key);
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "    modulus/exponent: UNUSABLE: {e}");
            warnings.push(format!("{which} key: modulus/exponent unusable ({e})"));
        }
        None => {
            let _ = writeln!(out, "    modulus/exponent: absent");
        }
    }
    match &forms.blob {
        Some(Ok((key, alg))) => {
            key_line(out, &format!("value (CryptoAPI blob, aiKeyAlg {alg:#06x})"), key);
            if used.is_some_and(|u| u != key) {
                warnings.push(format!("{which} key: the value blob and modulus/exponent are DIFFERENT keys; wopi-guard uses modulus/exponent"));
            }
            used = used.or(Some(key));
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "    value: UNUSABLE: {e}");
            warnings.push(format!("{which} key: value blob unusable ({e})"));
        }
        None => {
            let _ = writeln!(out, "    value: absent");
        }
    }
    if let Some(p) = used.and_then(published) {
        warnings.push(format!(
            "{which} key is the {p}: anyone can sign requests with it, and wopi-guard refuses it unless keys.allow_published = true; give the office server its own key pair"
        ));
    }
    (used.map(|k| k.fingerprint().to_string()), warnings)
}

/// Why a discovery document is of no use: what could be read of it (possibly nothing), and the
/// error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryUnusable {
    /// The report on the keys as far as it goes.
    pub report: String,
    /// One line saying what is wrong.
    pub error: String,
}

/// A human-readable report on a discovery document; `Err` when it gives no usable current key.
pub fn describe_discovery(xml: &[u8]) -> Result<String, DiscoveryUnusable> {
    let (current, old) =
        inspect_discovery(xml).map_err(|e| DiscoveryUnusable { report: String::new(), error: e.to_string() })?;
    let mut out = String::new();
    let (current_fp, mut warnings) = describe(&mut out, "current", &current);
    let (old_fp, old_warnings) = describe(&mut out, "old", &old);
    warnings.extend(old_warnings);
    if current_fp.is_some() && current_fp == old_fp {
        let _ = writeln!(out, "old key == current key (Collabora and ONLYOFFICE publish it so until they rotate)");
    }
    for w in &warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    match current_fp {
        Some(_) => Ok(out),
        None => Err(DiscoveryUnusable {
            report: out,
            error: "no usable current key: wopi-guard would keep its last-known-good keys".into(),
        }),
    }
}
