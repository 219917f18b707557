//! The RSA public operation alone: `s^e mod n` and the PKCS#1 v1.5 type-1 padding check, by
//! aws-lc (`RSA_verify_raw`, the building block of its own `RSA_verify`), leaving the encoded
//! digest. The verifier compares it with the SHA-256 of each candidate message, so a request
//! costs one modular exponentiation per signature and key however many forms of its URL and
//! token are tried (docs/proof.md §2). No big-number code here: only the FFI call, and the
//! exact comparison of the whole DigestInfo.

use std::ptr::NonNull;

use super::key::MAX_SIGNATURE_LEN;

/// DER of `DigestInfo { sha256, NULL }` up to the digest (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

/// An aws-lc public RSA key.
pub struct RawPublicKey(NonNull<aws_lc_sys::RSA>);

// SAFETY: aws-lc documents an RSA object as usable from several threads at once by functions
// that do not change it; the public operation's one lazily made state (the Montgomery context)
// is set under the object's own lock (`BN_MONT_CTX_set_locked` in rsa_impl.c). Nothing here
// changes the key after it is made.
unsafe impl Send for RawPublicKey {}
// SAFETY: as above.
unsafe impl Sync for RawPublicKey {}

impl RawPublicKey {
    /// The key of big-endian `modulus` and `exponent`; `None` when aws-lc refuses them.
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Option<RawPublicKey> {
        // SAFETY: BN_bin2bn reads `len` bytes from a live slice and returns a new BIGNUM (or
        // NULL); RSA_new_public_key copies both numbers; each BIGNUM is freed once here.
        unsafe {
            let n = aws_lc_sys::BN_bin2bn(modulus.as_ptr(), modulus.len(), std::ptr::null_mut());
            let e = aws_lc_sys::BN_bin2bn(exponent.as_ptr(), exponent.len(), std::ptr::null_mut());
            let rsa =
                if n.is_null() || e.is_null() { std::ptr::null_mut() } else { aws_lc_sys::RSA_new_public_key(n, e) };
            aws_lc_sys::BN_free(n);
            aws_lc_sys::BN_free(e);
            if rsa.is_null() {
                aws_lc_sys::ERR_clear_error();
            }
            NonNull::new(rsa).map(RawPublicKey)
        }
    }

    /// The SHA-256 digest `signature` carries under this key, when it is a well-formed
    /// PKCS#1 v1.5 SHA-256 signature block; `None` otherwise (a signature whose length is not the
    /// modulus length included: aws-lc refuses it before any arithmetic).
    pub fn recover_sha256(&self, signature: &[u8]) -> Option<[u8; 32]> {
        let mut out = [0u8; MAX_SIGNATURE_LEN];
        let mut len = 0usize;
        // SAFETY: the key is live for `self`; `out` has `out.len()` writable bytes and aws-lc
        // writes at most that many (it refuses a smaller `max_out` than the modulus size);
        // `signature` is read for its own length.
        let ok = unsafe {
            aws_lc_sys::RSA_verify_raw(
                self.0.as_ptr(),
                &mut len,
                out.as_mut_ptr(),
                out.len(),
                signature.as_ptr(),
                signature.len(),
                aws_lc_sys::RSA_PKCS1_PADDING as std::os::raw::c_int,
            )
        };
        if ok != 1 {
            // A forged signature is an ordinary outcome: drop the error it queued on this thread.
            // SAFETY: clears this thread's error queue, nothing else.
            unsafe { aws_lc_sys::ERR_clear_error() };
            return None;
        }
        let digest = out.get(..len)?.strip_prefix(&SHA256_DIGEST_INFO[..])?;
        digest.try_into().ok()
    }
}

impl Drop for RawPublicKey {
    fn drop(&mut self) {
        // SAFETY: made by RSA_new_public_key, freed once.
        unsafe { aws_lc_sys::RSA_free(self.0.as_ptr()) }
    }
}

impl std::fmt::Debug for RawPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawPublicKey")
    }
}
