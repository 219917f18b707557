//! Public keys whose private half is published, so that a proof made with them proves nothing:
//! every default WOPI key pair ONLYOFFICE Docs shipped in its `Common/config/default.json`. Only
//! the moduli are embedded (all with exponent 65537); the private keys are in the test fixtures.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::OnceLock;

use super::key::ProofKey;

/// A key whose private half anyone can download.
#[derive(Debug, PartialEq, Eq)]
pub struct PublishedKey {
    /// What it is.
    pub name: &'static str,
    /// The years in which it shipped.
    pub shipped: &'static str,
    modulus: &'static str,
}

impl std::fmt::Display for PublishedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, shipped by ONLYOFFICE in {} (its private key is published)", self.name, self.shipped)
    }
}

/// Every published pair (ONLYOFFICE/server `Common/config/default.json`, `wopi.privateKey` and
/// `wopi.privateKeyOld`, from 9a7b84c4 of 2021-04-15 to 160b002b of 2025-01-10 which removed them).
pub const PUBLISHED: [PublishedKey; 6] = [
    PublishedKey {
        name: "ONLYOFFICE Docs default WOPI key of 2021-04-15 (1024-bit, 1 of 4)",
        shipped: "2021",
        modulus: "1JBmuX+RtGLbdfvG38X03hQ7PFowBfK/UkGJO4Z2wPgpXVQNBkIJxmbDZMEuHuu8GppkeU/4iHpXngG925qCS500BaZXBg2UQjjMoThWf/fVRP5eskMbmO/ZxV6qNyzNp38zrqQdllWR7wXEl8ip7zLmhrufBI2QOFHbFNSa900=",
    },
    PublishedKey {
        name: "ONLYOFFICE Docs default WOPI key of 2021-04-15 (1024-bit, 2 of 4)",
        shipped: "2021",
        modulus: "4vddaTJ8f1IFs44o4dg1OX9Q78P/fwfakOREkDKp97cfkJx2PIPBpmyqQ7pkzPQujtpEu8222qrea0F8Z5jMZzFuRF+UnTwEv5yxt+iNIIHDe1uV1hjGkQlEC3fTNeDbYEL2f+eQyUfRwPWzimYTI6NP2bCjcMrfwBkLUSOGeT8=",
    },
    PublishedKey {
        name: "ONLYOFFICE Docs default WOPI key of 2021-04-15 (1024-bit, 3 of 4)",
        shipped: "2021",
        modulus: "mKQs5M6GjKAotHB8DQ8pLPWhy/PEkCRBZnGFCIH9z1nOsNpapi3fzhxm9w2h2oToWCtXyNj4W5zapNQJtbdgnS3dib4YVDZ5TdO5EnN5xW6nHsWCc0JQbfTI8lrUvk1PPUNYsmsdOgY+63XfjHm++g+CBAcTDoaMEXIo3kWzqdU=",
    },
    PublishedKey {
        name: "ONLYOFFICE Docs default WOPI key of 2021-04-15 (1024-bit, 4 of 4)",
        shipped: "2021",
        modulus: "zxn90fVvA2ID/OOXjvofTaFMcceL2AZyE2iNT1Mlkmg4CVZlwqpQh0zRQqfO0i+WiTNNM7Rqx8H0oD06ga7VraN1QECn76FfQwq2/f6e4TLFlbwWbiHZRgAu9v5QkS+vTo6wS4eET88I/bqhlioxUqmTzhyfqo3ukZ0ci6UjP0c=",
    },
    PublishedKey {
        name: "ONLYOFFICE Docs default WOPI key of 2021-04-21 (2048-bit)",
        shipped: "2021 to 2024",
        modulus: "qnro3nUUjvZK1i7UqeOlXmCrVPiDtHlRgIPReAjt2nKL1GG3SBXO6N0aPbiM5rtK0XRPUoLmKu2rYvSJ/Kmkdp14a/3uiEl788VVn0hb/l9OuQtH3HBjmM0/LKRgJQuU3LgHI67uRVZYtSJ/n9fYdZqnLfveLsrgZpgRCoabrp+H5Uem9N+x0OJR3LpToVRZhzSkYQrxnERJmF3bhR5yF8Zn+3BoSiUpVOCAvJRAYl8cAIs3BwQcTEyXJjnt+wW5Q1VyKr+bXp/39+tnugQeTe1jjdPy6rOTftQwzjro81oZpOMazwwR1aeQuQWCrmHQZqyV3Rvo6X3xYlOQnlo1/w==",
    },
    PublishedKey {
        name: "ONLYOFFICE Docs default WOPI key of 2024-05-25 (2048-bit)",
        shipped: "2024 and 2025",
        modulus: "5cvdwCUNhlp1wl2TyuMgmD3G4iqevPDI1aAfFEPTjme2r3avJpvgcoB0/OZREZPiAjHb+oSxL77hY4gxeHPPekDnvIvZpvW1cmUXlZlf/B3SBkLcbKmAz3bh3S96sisKJgEmj9L0yjCsnOP3iD4H610QRkyYp3RDBjkAU9HKpyZsHHf6clviMaYcdOkXkOdmFpLAdW32y5NtLcQnX8aT53d73DUvyg7XvcUFcneiciS8Pg22MuRDt108A/EqUpsGgJh2wTNcGMafY+kCvXPgc0NzztOZUqN1dxJcxmOfHSqrH6OtgVS56UWKR32vsoLgKmcSxDcZaZnyQ2hDiZhOaQ==",
    },
];

fn moduli() -> &'static [Vec<u8>] {
    static MODULI: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    MODULI.get_or_init(|| PUBLISHED.iter().map(|k| STANDARD.decode(k.modulus).expect("a valid constant")).collect())
}

/// The published key `key` is, if it is one.
pub fn published(key: &ProofKey) -> Option<&'static PublishedKey> {
    moduli().iter().position(|m| m.as_slice() == key.modulus()).map(|i| &PUBLISHED[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_modulus_is_a_usable_key_and_onlyoffice_discovery_is_recognised() {
        for (k, m) in PUBLISHED.iter().zip(moduli()) {
            let key = ProofKey::from_components(m, &[1, 0, 1]).unwrap();
            assert_eq!(published(&key), Some(k));
        }
        let xml = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/onlyoffice_discovery_from_ocis_test.xml"
        ))
        .unwrap();
        let keys = crate::keys::parse_discovery(&xml).unwrap();
        assert_eq!(published(&keys.current).unwrap().shipped, "2021 to 2024");
        let xml =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/office_online_df_discovery_2016.xml"))
                .unwrap();
        assert_eq!(published(&crate::keys::parse_discovery(&xml).unwrap().current), None);
    }
}
