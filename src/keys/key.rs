//! One RSA proof key, parsed once when discovery is read so that a request only verifies.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents, RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY};
use std::fmt;

use super::raw_rsa::RawPublicKey;

/// Smallest and largest modulus accepted (docs/proof.md §3: 1024-bit test keys to 4096-bit keys).
pub const MIN_BITS: usize = 1024;
/// See [`MIN_BITS`].
pub const MAX_BITS: usize = 4096;
/// Largest signature in bytes.
pub const MAX_SIGNATURE_LEN: usize = MAX_BITS / 8;

/// Why a key from discovery was not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The modulus is outside 1024..=4096 bits.
    Size(usize),
    /// The exponent is even, below 3 or longer than 4 bytes.
    Exponent,
    /// The crypto library refused the key.
    Rejected(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Size(bits) => write!(f, "{bits}-bit modulus (accepted: {MIN_BITS} to {MAX_BITS} bits)"),
            KeyError::Exponent => f.write_str("public exponent must be odd, at least 3 and at most 32 bits"),
            KeyError::Rejected(why) => write!(f, "key rejected: {why}"),
        }
    }
}

/// The SHA-256 of a key's DER SubjectPublicKeyInfo: what `openssl pkey -pubin -outform DER |
/// sha256sum` prints. Written `sha256:<64 hex digits>`, the only form `keys.pinned` accepts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Reads `sha256:` and 64 hex digits (either case); anything else, a short form included, is
    /// an error saying what is expected.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let expected = "expected \"sha256:\" and the 64 hex digits of the SHA-256 of the key's DER SubjectPublicKeyInfo (`openssl pkey -pubin -outform DER | sha256sum`, or `wopi-guard discovery URL`)";
        let Some(digits) = text.strip_prefix("sha256:") else {
            return Err(format!("{text:?}: {expected}"));
        };
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(digits, &mut bytes) {
            Ok(()) => Ok(Fingerprint(bytes)),
            Err(_) if digits.len() != 64 => Err(format!(
                "{text:?} has {} hex digits, not 64 (short forms are not accepted): {expected}",
                digits.len()
            )),
            Err(_) => Err(format!("{text:?} is not hexadecimal: {expected}")),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An RSA public key ready for PKCS#1 v1.5 SHA-256 verification. A clone shares the parsed key.
#[derive(Clone)]
pub struct ProofKey {
    parsed: ParsedPublicKey,
    /// The same key for the public operation alone ([`ProofKey::recover`]).
    raw: std::sync::Arc<RawPublicKey>,
    modulus: Box<[u8]>,
    exponent: Box<[u8]>,
    id: Fingerprint,
    fingerprint: Box<str>,
}

impl ProofKey {
    /// Builds a key from big-endian modulus and exponent bytes (leading zeros allowed).
    pub fn from_components(modulus: &[u8], exponent: &[u8]) -> Result<Self, KeyError> {
        let modulus = strip_zeros(modulus);
        let exponent = strip_zeros(exponent);
        let bits = bit_len(modulus);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(KeyError::Size(bits));
        }
        let e_ok = !exponent.is_empty()
            && exponent.len() <= 4
            && exponent[exponent.len() - 1] & 1 == 1
            && (exponent.len() > 1 || exponent[0] >= 3);
        if !e_ok {
            return Err(KeyError::Exponent);
        }
        let components = RsaPublicKeyComponents { n: modulus, e: exponent };
        let parsed = components
            .to_parsed_public_key(&RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let der = parsed.as_der().map_err(|_| KeyError::Rejected("cannot encode".into()))?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
        let id = Fingerprint(digest.as_ref().try_into().map_err(|_| KeyError::Rejected("digest size".into()))?);
        let fingerprint = id.to_string().into_boxed_str();
        let raw = RawPublicKey::new(modulus, exponent).ok_or_else(|| KeyError::Rejected("aws-lc refused it".into()))?;
        Ok(ProofKey {
            parsed,
            raw: std::sync::Arc::new(raw),
            modulus: modulus.into(),
            exponent: exponent.into(),
            id,
            fingerprint,
        })
    }

    /// True when `signature` is a PKCS#1 v1.5 SHA-256 signature of `message` by this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == self.modulus.len() && self.parsed.verify_sig(message, signature).is_ok()
    }

    /// The SHA-256 digest `signature` is a PKCS#1 v1.5 signature of under this key, if it is
    /// one: one public operation, which the verifier compares with every candidate message's
    /// digest. A signature of another length than the modulus costs no arithmetic.
    pub fn recover(&self, signature: &[u8]) -> Option<[u8; 32]> {
        if signature.len() != self.modulus.len() {
            return None;
        }
        self.raw.recover_sha256(signature)
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        bit_len(&self.modulus)
    }

    /// Big-endian modulus without leading zeros.
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// Big-endian exponent without leading zeros.
    pub fn exponent(&self) -> &[u8] {
        &self.exponent
    }

    /// `sha256:` and the 64 hex digits of the SHA-256 of the key's DER SubjectPublicKeyInfo
    /// ([`Fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The same as bytes.
    pub fn id(&self) -> Fingerprint {
        self.id
    }
}

impl PartialEq for ProofKey {
    fn eq(&self, other: &Self) -> bool {
        self.modulus == other.modulus && self.exponent == other.exponent
    }
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProofKey({} bits, {})", self.bits(), self.fingerprint)
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => be.len() * 8 - top.leading_zeros() as usize,
    }
}
