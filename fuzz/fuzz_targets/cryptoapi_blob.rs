//! The CryptoAPI PUBLICKEYBLOB parser; a blob it accepts must round-trip through the encoder.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = wopi_guard::keys::parse_public_key_blob(data) {
        let again = wopi_guard::keys::encode_public_key_blob(&key.modulus, &key.exponent);
        let reparsed = wopi_guard::keys::parse_public_key_blob(&again).expect("an encoded blob parses");
        assert_eq!((reparsed.modulus, reparsed.exponent), (key.modulus, key.exponent));
    }
});
