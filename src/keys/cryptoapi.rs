//! The Windows CryptoAPI PUBLICKEYBLOB in discovery's `value` attribute (docs/proof.md §3).

use std::fmt;

/// `aiKeyAlg` values seen in real discovery documents.
const CALG_RSA_KEYX: u32 = 0x0000_A400;
const CALG_RSA_SIGN: u32 = 0x0000_2400;
const HEADER_LEN: usize = 20;

/// Modulus and exponent, big-endian, as read from a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey {
    /// Big-endian modulus.
    pub modulus: Vec<u8>,
    /// Big-endian exponent.
    pub exponent: Vec<u8>,
    /// `aiKeyAlg` (0xA400 CALG_RSA_KEYX or 0x2400 CALG_RSA_SIGN).
    pub alg: u32,
}

/// Which field of a PUBLICKEYBLOB is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// Fewer bytes than the header.
    Short(usize),
    /// `bType`/`bVersion` are not PUBLICKEYBLOB/2.
    TypeVersion(u8, u8),
    /// `aiKeyAlg` is not an RSA algorithm.
    Algorithm(u32),
    /// The magic is not `RSA1`.
    Magic,
    /// `bitlen` is zero, not a multiple of 8, or over 16384.
    Bits(usize),
    /// The length does not match `bitlen`.
    Length {
        /// Bytes present.
        got: usize,
        /// Bytes a key of `bits` needs.
        expected: usize,
        /// `bitlen`.
        bits: usize,
    },
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobError::Short(n) => write!(f, "{n} bytes, shorter than the {HEADER_LEN}-byte header"),
            BlobError::TypeVersion(t, v) => write!(f, "type/version {t:#04x}/{v:#04x}, expected 0x06/0x02"),
            BlobError::Algorithm(alg) => write!(f, "aiKeyAlg {alg:#010x}, expected 0x0000a400 or 0x00002400"),
            BlobError::Magic => f.write_str("magic is not RSA1"),
            BlobError::Bits(bits) => write!(f, "bit length {bits} is not a whole number of bytes"),
            BlobError::Length { got, expected, bits } => {
                write!(f, "{got} bytes, expected {expected} for a {bits}-bit key")
            }
        }
    }
}

/// Reads a PUBLICKEYBLOB; the error says which field is wrong.
pub fn parse_public_key_blob(blob: &[u8]) -> Result<BlobKey, BlobError> {
    if blob.len() < HEADER_LEN {
        return Err(BlobError::Short(blob.len()));
    }
    if blob[0] != 0x06 || blob[1] != 0x02 {
        return Err(BlobError::TypeVersion(blob[0], blob[1]));
    }
    let alg = le32(&blob[4..8]);
    if alg != CALG_RSA_KEYX && alg != CALG_RSA_SIGN {
        return Err(BlobError::Algorithm(alg));
    }
    if &blob[8..12] != b"RSA1" {
        return Err(BlobError::Magic);
    }
    let bits = le32(&blob[12..16]) as usize;
    if bits == 0 || bits % 8 != 0 || bits > 16384 {
        return Err(BlobError::Bits(bits));
    }
    let n_len = bits / 8;
    if blob.len() != HEADER_LEN + n_len {
        return Err(BlobError::Length { got: blob.len(), expected: HEADER_LEN + n_len, bits });
    }
    let mut modulus = blob[HEADER_LEN..].to_vec();
    modulus.reverse();
    let exponent = blob[16..20].iter().rev().copied().collect();
    Ok(BlobKey { modulus, exponent, alg })
}

/// Builds a PUBLICKEYBLOB (CALG_RSA_KEYX, as Collabora and ONLYOFFICE publish it).
pub fn encode_public_key_blob(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut out = vec![0x06, 0x02, 0, 0];
    out.extend_from_slice(&CALG_RSA_KEYX.to_le_bytes());
    out.extend_from_slice(b"RSA1");
    out.extend_from_slice(&((modulus.len() * 8) as u32).to_le_bytes());
    let mut e = [0u8; 4];
    for (i, b) in exponent.iter().rev().take(4).enumerate() {
        e[i] = *b;
    }
    out.extend_from_slice(&e);
    out.extend(modulus.iter().rev());
    out
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_each_field() {
        let n: Vec<u8> = (1..=128).collect();
        let blob = encode_public_key_blob(&n, &[1, 0, 1]);
        let key = parse_public_key_blob(&blob).unwrap();
        assert_eq!(key.modulus, n);
        assert_eq!(key.exponent, vec![0, 1, 0, 1]);

        let mut sign = blob.clone();
        sign[5] = 0x24; // CALG_RSA_SIGN
        assert!(parse_public_key_blob(&sign).is_ok());

        let mut broken = blob.clone();
        broken[0] = 0x07;
        assert!(parse_public_key_blob(&broken).unwrap_err().to_string().contains("type"));
        let mut broken = blob.clone();
        broken[5] = 0x66;
        assert!(parse_public_key_blob(&broken).unwrap_err().to_string().contains("aiKeyAlg"));
        let mut broken = blob.clone();
        broken[8] = b'X';
        assert!(parse_public_key_blob(&broken).unwrap_err().to_string().contains("RSA1"));
        assert!(parse_public_key_blob(&blob[..blob.len() - 1]).unwrap_err().to_string().contains("expected"));
        assert!(parse_public_key_blob(&blob[..10]).unwrap_err().to_string().contains("header"));
        let mut broken = blob;
        broken[12] = 3;
        assert!(parse_public_key_blob(&broken).is_err());
    }
}
