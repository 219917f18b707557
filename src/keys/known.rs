//! Public keys whose private half is published, so that a proof made with them proves nothing.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::OnceLock;

use super::key::ProofKey;

/// ONLYOFFICE Docs' default WOPI key pair: the private key ships in its public `default.json`
/// (`wopi.privateKey`). Deployments that never set their own keys publish this one.
const ONLYOFFICE_DEFAULT_MODULUS: &str = "qnro3nUUjvZK1i7UqeOlXmCrVPiDtHlRgIPReAjt2nKL1GG3SBXO6N0aPbiM5rtK0XRPUoLmKu2rYvSJ/Kmkdp14a/3uiEl788VVn0hb/l9OuQtH3HBjmM0/LKRgJQuU3LgHI67uRVZYtSJ/n9fYdZqnLfveLsrgZpgRCoabrp+H5Uem9N+x0OJR3LpToVRZhzSkYQrxnERJmF3bhR5yF8Zn+3BoSiUpVOCAvJRAYl8cAIs3BwQcTEyXJjnt+wW5Q1VyKr+bXp/39+tnugQeTe1jjdPy6rOTftQwzjro81oZpOMazwwR1aeQuQWCrmHQZqyV3Rvo6X3xYlOQnlo1/w==";

fn known() -> &'static [(Vec<u8>, &'static str)] {
    static KNOWN: OnceLock<Vec<(Vec<u8>, &'static str)>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        vec![(
            STANDARD.decode(ONLYOFFICE_DEFAULT_MODULUS).expect("a valid constant"),
            "ONLYOFFICE's default key pair (its private key is published in ONLYOFFICE's default.json)",
        )]
    })
}

/// Why `key` is worthless, when it is a key whose private half is public.
pub fn known_insecure(key: &ProofKey) -> Option<&'static str> {
    known().iter().find(|(modulus, _)| modulus.as_slice() == key.modulus()).map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onlyoffice_default_is_recognised() {
        let xml = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/onlyoffice_discovery_from_ocis_test.xml"
        ))
        .unwrap();
        let keys = crate::keys::parse_discovery(&xml).unwrap();
        assert!(known_insecure(&keys.current).unwrap().contains("ONLYOFFICE"));
        let xml =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/office_online_df_discovery_2016.xml"))
                .unwrap();
        assert_eq!(known_insecure(&crate::keys::parse_discovery(&xml).unwrap().current), None);
    }
}
