//! Reads `<proof-key>` out of a `/hosting/discovery` document (docs/proof.md §3).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt;

use super::cryptoapi::parse_public_key_blob;
use super::key::ProofKey;

/// The keys one discovery document publishes.
#[derive(Debug)]
pub struct DiscoveredKeys {
    /// The key the office server signs `X-WOPI-Proof` with.
    pub current: ProofKey,
    /// The previous key (`X-WOPI-ProofOld`), when published.
    pub old: Option<ProofKey>,
    /// Which attributes the current key came from: `modulus/exponent` or `value`.
    pub current_from: &'static str,
}

/// Why a discovery document gave no usable keys. Such a document never replaces good keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The XML is not well formed.
    Xml(String),
    /// No `<proof-key>` element: the office server has no key configured and signs nothing.
    NoProofKey,
    /// The current key attributes are missing or unreadable.
    BadCurrentKey(String),
    /// Old key attributes are present but unreadable.
    BadOldKey(String),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Xml(e) => write!(f, "discovery is not well-formed XML: {e}"),
            DiscoveryError::NoProofKey => {
                f.write_str("discovery has no <proof-key> element (the office server has no proof key configured)")
            }
            DiscoveryError::BadCurrentKey(e) => write!(f, "current proof key unusable: {e}"),
            DiscoveryError::BadOldKey(e) => write!(f, "old proof key unusable: {e}"),
        }
    }
}

impl std::error::Error for DiscoveryError {}

#[derive(Default)]
struct Attrs {
    value: Option<String>,
    modulus: Option<String>,
    exponent: Option<String>,
    oldvalue: Option<String>,
    oldmodulus: Option<String>,
    oldexponent: Option<String>,
}

/// One key as each attribute form gives it, for diagnostics.
#[derive(Debug)]
pub struct KeyForms {
    /// From `modulus`/`exponent` (or `oldmodulus`/`oldexponent`), when present.
    pub components: Option<Result<ProofKey, String>>,
    /// From the CryptoAPI blob in `value` (or `oldvalue`), with its `aiKeyAlg`, when present.
    pub blob: Option<Result<(ProofKey, u32), String>>,
}

/// Every form of the current and old key in a discovery document, each parsed on its own.
pub fn inspect_discovery(xml: &[u8]) -> Result<(KeyForms, KeyForms), DiscoveryError> {
    let attrs = find_proof_key(xml)?;
    let forms = |m: Option<&str>, e: Option<&str>, v: Option<&str>| KeyForms {
        components: match (m, e) {
            (None, None) => None,
            (Some(m), Some(e)) => Some(
                b64(m)
                    .and_then(|m| b64(e).map(|e| (m, e)))
                    .and_then(|(m, e)| ProofKey::from_components(&m, &e).map_err(|e| e.to_string())),
            ),
            _ => Some(Err("only one of the pair is present".into())),
        },
        blob: v.map(|v| {
            let k = b64(v).and_then(|raw| parse_public_key_blob(&raw))?;
            ProofKey::from_components(&k.modulus, &k.exponent).map(|key| (key, k.alg)).map_err(|e| e.to_string())
        }),
    };
    Ok((
        forms(attrs.modulus.as_deref(), attrs.exponent.as_deref(), attrs.value.as_deref()),
        forms(attrs.oldmodulus.as_deref(), attrs.oldexponent.as_deref(), attrs.oldvalue.as_deref()),
    ))
}

/// Parses a discovery document into its proof keys.
pub fn parse_discovery(xml: &[u8]) -> Result<DiscoveredKeys, DiscoveryError> {
    let attrs = find_proof_key(xml)?;
    let (current, current_from) = key_from(attrs.modulus.as_deref(), attrs.exponent.as_deref(), attrs.value.as_deref())
        .map_err(DiscoveryError::BadCurrentKey)?
        .ok_or_else(|| DiscoveryError::BadCurrentKey("no modulus/exponent and no value attribute".into()))?;
    let old = key_from(attrs.oldmodulus.as_deref(), attrs.oldexponent.as_deref(), attrs.oldvalue.as_deref())
        .map_err(DiscoveryError::BadOldKey)?
        .map(|(key, _)| key);
    Ok(DiscoveredKeys { current, old, current_from })
}

fn find_proof_key(xml: &[u8]) -> Result<Attrs, DiscoveryError> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| DiscoveryError::Xml(e.to_string()))?;
        match event {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"proof-key" => {
                let mut attrs = Attrs::default();
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| DiscoveryError::Xml(e.to_string()))?;
                    let value = attr.unescape_value().map_err(|e| DiscoveryError::Xml(e.to_string()))?.into_owned();
                    let slot = match attr.key.local_name().as_ref() {
                        b"value" => &mut attrs.value,
                        b"modulus" => &mut attrs.modulus,
                        b"exponent" => &mut attrs.exponent,
                        b"oldvalue" => &mut attrs.oldvalue,
                        b"oldmodulus" => &mut attrs.oldmodulus,
                        b"oldexponent" => &mut attrs.oldexponent,
                        _ => continue,
                    };
                    *slot = Some(value).filter(|v| !v.trim().is_empty());
                }
                return Ok(attrs);
            }
            Event::Eof => return Err(DiscoveryError::NoProofKey),
            _ => {}
        }
        buf.clear();
    }
}

/// Modulus/exponent preferred; the CryptoAPI blob when they are absent or unusable.
/// `Ok(None)` when neither form is present at all.
fn key_from(
    modulus: Option<&str>,
    exponent: Option<&str>,
    blob: Option<&str>,
) -> Result<Option<(ProofKey, &'static str)>, String> {
    let mut problems = Vec::new();
    match (modulus, exponent) {
        (Some(m), Some(e)) => match (b64(m), b64(e)) {
            (Ok(m), Ok(e)) => match ProofKey::from_components(&m, &e) {
                Ok(key) => return Ok(Some((key, "modulus/exponent"))),
                Err(err) => problems.push(format!("modulus/exponent: {err}")),
            },
            (Err(err), _) | (_, Err(err)) => problems.push(format!("modulus/exponent: {err}")),
        },
        (None, None) => {}
        _ => problems.push("modulus/exponent: only one of the pair is present".into()),
    }
    if let Some(blob) = blob {
        let parsed = b64(blob).and_then(|raw| parse_public_key_blob(&raw));
        match parsed.and_then(|k| ProofKey::from_components(&k.modulus, &k.exponent).map_err(|e| e.to_string())) {
            Ok(key) => return Ok(Some((key, "value"))),
            Err(err) => problems.push(format!("value: {err}")),
        }
    }
    if problems.is_empty() {
        Ok(None)
    } else {
        Err(problems.join("; "))
    }
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(compact).map_err(|e| format!("not base64 ({e})"))
}
