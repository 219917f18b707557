//! Reads `<proof-key>` out of a `/hosting/discovery` document (docs/proof.md §3).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt;

use super::cryptoapi::{parse_public_key_blob, BlobError};
use super::key::{KeyError, ProofKey};

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
    /// `<proof-key>` has neither modulus/exponent nor a value attribute.
    NoCurrentKey,
    /// The current key's attributes are present but no form of them is usable.
    BadCurrentKey(Unusable),
    /// Old key attributes are present but no form of them is usable.
    BadOldKey(Unusable),
}

/// Why one attribute form of a key (modulus/exponent, or the value blob) is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// An attribute is not base64; the decoder's message.
    NotBase64(String),
    /// Only one of modulus and exponent is present.
    HalfPair,
    /// The value attribute is not a PUBLICKEYBLOB.
    Blob(BlobError),
    /// The numbers do not make an acceptable RSA key.
    Key(KeyError),
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::NotBase64(e) => write!(f, "not base64 ({e})"),
            FormError::HalfPair => f.write_str("only one of the pair is present"),
            FormError::Blob(e) => e.fmt(f),
            FormError::Key(e) => e.fmt(f),
        }
    }
}

/// Every present form of one key, each with why it is unusable: `modulus/exponent` or `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub Vec<(&'static str, FormError)>);

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (form, e)) in self.0.iter().enumerate() {
            write!(f, "{}{form}: {e}", if i == 0 { "" } else { "; " })?;
        }
        Ok(())
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Xml(e) => write!(f, "discovery is not well-formed XML: {e}"),
            DiscoveryError::NoProofKey => {
                f.write_str("discovery has no <proof-key> element (the office server has no proof key configured)")
            }
            DiscoveryError::NoCurrentKey => {
                f.write_str("current proof key unusable: <proof-key> has no modulus/exponent and no value attribute")
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
    pub components: Option<Result<ProofKey, FormError>>,
    /// From the CryptoAPI blob in `value` (or `oldvalue`), with its `aiKeyAlg`, when present.
    pub blob: Option<Result<(ProofKey, u32), FormError>>,
}

/// Every form of the current and old key in a discovery document, each parsed on its own.
pub fn inspect_discovery(xml: &[u8]) -> Result<(KeyForms, KeyForms), DiscoveryError> {
    let attrs = find_proof_key(xml)?;
    let forms = |m: Option<&str>, e: Option<&str>, v: Option<&str>| KeyForms {
        components: match (m, e) {
            (None, None) => None,
            (Some(m), Some(e)) => Some(components(m, e)),
            _ => Some(Err(FormError::HalfPair)),
        },
        blob: v.map(blob),
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
        .ok_or(DiscoveryError::NoCurrentKey)?;
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
    value: Option<&str>,
) -> Result<Option<(ProofKey, &'static str)>, Unusable> {
    let mut problems = Vec::new();
    match (modulus, exponent) {
        (Some(m), Some(e)) => match components(m, e) {
            Ok(key) => return Ok(Some((key, "modulus/exponent"))),
            Err(err) => problems.push(("modulus/exponent", err)),
        },
        (None, None) => {}
        _ => problems.push(("modulus/exponent", FormError::HalfPair)),
    }
    if let Some(value) = value {
        match blob(value) {
            Ok((key, _)) => return Ok(Some((key, "value"))),
            Err(err) => problems.push(("value", err)),
        }
    }
    if problems.is_empty() {
        Ok(None)
    } else {
        Err(Unusable(problems))
    }
}

fn components(modulus: &str, exponent: &str) -> Result<ProofKey, FormError> {
    ProofKey::from_components(&b64(modulus)?, &b64(exponent)?).map_err(FormError::Key)
}

fn blob(value: &str) -> Result<(ProofKey, u32), FormError> {
    let k = parse_public_key_blob(&b64(value)?).map_err(FormError::Blob)?;
    ProofKey::from_components(&k.modulus, &k.exponent).map(|key| (key, k.alg)).map_err(FormError::Key)
}

fn b64(text: &str) -> Result<Vec<u8>, FormError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(compact).map_err(|e| FormError::NotBase64(e.to_string()))
}
