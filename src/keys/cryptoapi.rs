//! The Windows CryptoAPI PUBLICKEYBLOB in discovery's `value` attribute (docs/proof.md §3).

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

/// Reads a PUBLICKEYBLOB; the error says which field is wrong.
pub fn parse_public_key_blob(blob: &[u8]) -> Result<BlobKey, String> {
    if blob.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than the 20-byte header", blob.len()));
    }
    if blob[0] != 0x06 || blob[1] != 0x02 {
        return Err(format!("type/version {:#04x}/{:#04x}, expected 0x06/0x02", blob[0], blob[1]));
    }
    let alg = le32(&blob[4..8]);
    if alg != CALG_RSA_KEYX && alg != CALG_RSA_SIGN {
        return Err(format!("aiKeyAlg {alg:#010x}, expected 0x0000a400 or 0x00002400"));
    }
    if &blob[8..12] != b"RSA1" {
        return Err("magic is not RSA1".into());
    }
    let bits = le32(&blob[12..16]) as usize;
    if bits == 0 || bits % 8 != 0 || bits > 16384 {
        return Err(format!("bit length {bits} is not a whole number of bytes"));
    }
    let n_len = bits / 8;
    if blob.len() != HEADER_LEN + n_len {
        return Err(format!("{} bytes, expected {} for a {bits}-bit key", blob.len(), HEADER_LEN + n_len));
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
        assert!(parse_public_key_blob(&broken).unwrap_err().contains("type"));
        let mut broken = blob.clone();
        broken[5] = 0x66;
        assert!(parse_public_key_blob(&broken).unwrap_err().contains("aiKeyAlg"));
        let mut broken = blob.clone();
        broken[8] = b'X';
        assert!(parse_public_key_blob(&broken).unwrap_err().contains("RSA1"));
        assert!(parse_public_key_blob(&blob[..blob.len() - 1]).unwrap_err().contains("expected"));
        assert!(parse_public_key_blob(&blob[..10]).unwrap_err().contains("header"));
        let mut broken = blob;
        broken[12] = 3;
        assert!(parse_public_key_blob(&broken).is_err());
    }
}
