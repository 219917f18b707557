//! Signing like an office server: a key pair, and the three proof headers for a URL.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::keys::encode_public_key_blob;
use crate::proof::{write_signed_bytes, Token};

/// An RSA key pair that signs like Collabora, ONLYOFFICE and Office for the web.
pub struct Signer {
    pair: RsaKeyPair,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl Signer {
    /// A fresh key pair of 2048, 3072 or 4096 bits.
    pub fn generate(bits: usize) -> Signer {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => panic!("{other}-bit keys cannot be generated here; use 2048, 3072 or 4096"),
        };
        Signer::from_pair(RsaKeyPair::generate(size).expect("RSA key generation"))
    }

    /// A signer from a PKCS#8 or PKCS#1 DER private key.
    pub fn from_der(der: &[u8]) -> Result<Signer, String> {
        let pair = RsaKeyPair::from_pkcs8(der).or_else(|_| RsaKeyPair::from_der(der)).map_err(|e| e.to_string())?;
        Ok(Signer::from_pair(pair))
    }

    fn from_pair(pair: RsaKeyPair) -> Signer {
        let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        Signer { modulus: components.n, exponent: components.e, pair }
    }

    /// The private key as PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub fn to_pkcs8_pem(&self) -> String {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        let der: Pkcs8V1Der<'static> = self.pair.as_der().expect("an RSA key pair encodes");
        let b64 = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
    }

    /// Big-endian modulus.
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// Big-endian exponent.
    pub fn exponent(&self) -> &[u8] {
        &self.exponent
    }

    /// Discovery's `value` attribute for this key (CryptoAPI PUBLICKEYBLOB, base64).
    pub fn blob_b64(&self) -> String {
        STANDARD.encode(encode_public_key_blob(&self.modulus, &self.exponent))
    }

    /// PKCS#1 v1.5 SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig).expect("RSA signing");
        sig
    }

    /// Base64 signature over the signed bytes of `url` (the full URL the client calls) at `ticks`,
    /// with the percent-decoded `access_token` as the token, as Collabora and ONLYOFFICE sign.
    pub fn proof_for(&self, url: &str, ticks: i64) -> String {
        let token = Token::from_target(url.as_bytes());
        let token = token.candidates().next().unwrap_or_default().to_vec();
        let mut message = Vec::new();
        write_signed_bytes(&mut message, &token, url.to_ascii_uppercase().as_bytes(), b"", ticks);
        STANDARD.encode(self.sign(&message))
    }
}

/// The three proof headers of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofSet {
    /// `X-WOPI-Proof`.
    pub proof: String,
    /// `X-WOPI-ProofOld`.
    pub proof_old: String,
    /// `X-WOPI-TimeStamp`.
    pub timestamp: String,
}

impl ProofSet {
    /// Signs `url` at `ticks`: Proof with `current`, ProofOld with `old`.
    pub fn sign(url: &str, ticks: i64, current: &Signer, old: &Signer) -> ProofSet {
        ProofSet {
            proof: current.proof_for(url, ticks),
            proof_old: old.proof_for(url, ticks),
            timestamp: ticks.to_string(),
        }
    }

    /// As `(name, value)` header pairs.
    pub fn headers(&self) -> [(&'static str, &str); 3] {
        [("X-WOPI-Proof", &self.proof), ("X-WOPI-ProofOld", &self.proof_old), ("X-WOPI-TimeStamp", &self.timestamp)]
    }
}
