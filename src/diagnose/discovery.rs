//! `wopi-guard discovery URL|FILE`: the keys a discovery document publishes, how each attribute
//! form reads, and warnings.

use std::fmt::Write;
use std::time::Duration;

use crate::config::ClientTls;
use crate::keys::{
    discovery_client, discovery_client_to, fetch_discovery, inspect_discovery, published, FetchLimits, KeyForms,
    ProofKey, Resolver,
};

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

/// `discovery --resolve-all`: fetches `url` from every address its host resolves to (through
/// `resolver`), as `discovery.resolve_all` does, and describes each node's keys. The report, and
/// whether any node failed or served no usable key.
pub async fn every_node(url: &str, timeout: Duration, tls: &ClientTls, resolver: &Resolver) -> (String, bool) {
    let mut out = String::new();
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return (format!("{url}: not a URL ({e})\n"), true),
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return (format!("{url}: no host\n"), true);
    };
    let addresses = match resolver.resolve(host, port).await {
        Ok(addresses) => addresses,
        Err(e) => return (format!("{url}: {host} does not resolve ({e})\n"), true),
    };
    let _ = writeln!(out, "{url}: {} address(es): one office node each\n", addresses.len());
    let limits = FetchLimits { timeout, max_bytes: 4 << 20 };
    let mut failed = false;
    for ip in addresses {
        let _ = writeln!(out, "node {ip} (source {url}@{ip}):");
        let fetched = match discovery_client_to(tls, Some((host, ip))) {
            Ok(client) => fetch_discovery(&client, url, limits).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let report = match fetched {
            Ok(xml) => describe_discovery(&xml).map_err(|unusable| format!("{}{}", unusable.report, unusable.error)),
            Err(e) => Err(format!("cannot fetch: {e}")),
        };
        let text = report.unwrap_or_else(|e| {
            failed = true;
            format!("UNUSABLE: {e}\n")
        });
        for line in text.lines() {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out);
    }
    (out, failed)
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
