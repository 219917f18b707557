//! Discovery documents that must not give keys, and the error each gives.

use wopi_guard::keys::{parse_discovery, DiscoveryError, FormError, KeyError, Unusable};
use wopi_guard::testkit::{discovery_xml, Signer};

#[test]
fn documents_without_usable_keys_are_errors() {
    let no_key = br#"<wopi-discovery><net-zone/></wopi-discovery>"#;
    assert_eq!(parse_discovery(no_key).unwrap_err(), DiscoveryError::NoProofKey);
    assert!(matches!(parse_discovery(b"<wopi-discovery><proof-key value=").unwrap_err(), DiscoveryError::Xml(_)));
    assert!(matches!(parse_discovery(b"").unwrap_err(), DiscoveryError::NoProofKey));

    let bad_b64 = br#"<wopi-discovery><proof-key modulus="%%%" exponent="AQAB"/></wopi-discovery>"#;
    assert!(
        matches!(parse_discovery(bad_b64).unwrap_err(), DiscoveryError::BadCurrentKey(Unusable(e)) if matches!(e[..], [("modulus/exponent", FormError::NotBase64(_))]))
    );
    let tiny = br#"<wopi-discovery><proof-key modulus="AQAB" exponent="AQAB"/></wopi-discovery>"#;
    assert!(
        matches!(parse_discovery(tiny).unwrap_err(), DiscoveryError::BadCurrentKey(Unusable(e)) if e == [("modulus/exponent", FormError::Key(KeyError::Size(17)))])
    );
    let half = br#"<wopi-discovery><proof-key modulus="AQAB"/></wopi-discovery>"#;
    assert_eq!(
        parse_discovery(half).unwrap_err(),
        DiscoveryError::BadCurrentKey(Unusable(vec![("modulus/exponent", FormError::HalfPair)]))
    );
    let empty = br#"<wopi-discovery><proof-key/></wopi-discovery>"#;
    assert_eq!(parse_discovery(empty).unwrap_err(), DiscoveryError::NoCurrentKey);
    // Both forms broken: each is named, in the message too.
    let both = br#"<wopi-discovery><proof-key modulus="AQAB" value="BgIAAA=="/></wopi-discovery>"#;
    let e = parse_discovery(both).unwrap_err();
    assert_eq!(
        e.to_string(),
        "current proof key unusable: modulus/exponent: only one of the pair is present; value: 4 bytes, shorter than the 20-byte header"
    );
}

#[test]
fn generated_documents_round_trip_and_bad_old_key_is_reported() {
    let (a, b) = (Signer::generate(3072), Signer::generate(2048));
    let keys = parse_discovery(discovery_xml(&a, Some(&b)).as_bytes()).unwrap();
    assert_eq!(keys.current.modulus(), a.modulus());
    assert_eq!(keys.old.unwrap().modulus(), b.modulus());
    assert_eq!(parse_discovery(discovery_xml(&a, None).as_bytes()).unwrap().old, None);

    let xml = discovery_xml(&a, Some(&b)).replace("oldmodulus=\"", "oldmodulus=\"!!");
    let xml = xml.replace("oldvalue=\"", "oldvalue=\"!!");
    assert!(matches!(
        parse_discovery(xml.as_bytes()).unwrap_err(),
        DiscoveryError::BadOldKey(Unusable(e)) if matches!(e[..], [("modulus/exponent", FormError::NotBase64(_)), ("value", FormError::NotBase64(_))])
    ));
}
