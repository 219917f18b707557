//! Microsoft's official proof vectors and real discovery documents (tests/fixtures, provenance in
//! its README).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wopi_guard::config::PublicUrl;
use wopi_guard::keys::{parse_discovery, parse_public_key_blob, KeySnapshot, ProofKey, SourceKeys};
use wopi_guard::proof::{
    verify, write_signed_bytes, Combination, ProofHeaders, SignedRequest, TimeWindow, Token, UrlForm, UNIX_EPOCH_TICKS,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn key(modulus: &str, exponent: &str) -> ProofKey {
    ProofKey::from_components(&STANDARD.decode(modulus).unwrap(), &STANDARD.decode(exponent).unwrap()).unwrap()
}

fn at_ticks(ticks: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(((ticks - UNIX_EPOCH_TICKS) * 100) as u64)
}

/// Splits `https://host/path?query` into the uppercased base and the raw target.
fn split(url: &str) -> (Vec<u8>, &str) {
    let after_scheme = url.find("://").unwrap() + 3;
    let slash = after_scheme + url[after_scheme..].find('/').unwrap();
    (url[..slash].to_ascii_uppercase().into_bytes(), &url[slash..])
}

#[test]
fn microsoft_vectors_give_their_expected_result() {
    let data: Value = serde_json::from_slice(&fixture("ms_proofkey_testcases.json")).unwrap();
    let pk = &data["proof_key"];
    let s = |v: &Value| v.as_str().unwrap().to_string();
    let current = key(&s(&pk["modulus"]), &s(&pk["exponent"]));
    let old = key(&s(&pk["oldmodulus"]), &s(&pk["oldexponent"]));
    // The CryptoAPI blobs carry the same keys.
    for (blob, want) in [(&pk["value"], &current), (&pk["oldvalue"], &old)] {
        let k = parse_public_key_blob(&STANDARD.decode(s(blob)).unwrap()).unwrap();
        assert_eq!(&ProofKey::from_components(&k.modulus, &k.exponent).unwrap(), want);
    }
    let keys = KeySnapshot {
        sources: vec![Arc::new(SourceKeys {
            index: 0,
            url: Arc::from("vectors"),
            current,
            old: Some(old),
            fetched_at: UNIX_EPOCH,
            retained: false,
        })],
        generation: 1,
        ..Default::default()
    };
    let window = TimeWindow { max_age: Duration::from_secs(20 * 60), max_future_skew: Duration::from_secs(300) };
    let cases = data["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    let mut scratch = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let url = s(&case["url"]);
        let ticks = case["timestamp"].as_i64().unwrap();
        let (base, target) = split(&url);

        // The signed-bytes layout, against the bytes computed independently for the vectors.
        let raw_token = s(&case["access_token"]);
        let mut bytes = Vec::new();
        write_signed_bytes(&mut bytes, raw_token.as_bytes(), &base, target.as_bytes(), ticks);
        assert_eq!(STANDARD.encode(&bytes), s(&case["expected_signed_data_b64"]), "case {i}: layout");
        assert_eq!(bytes.len() as u64, case["expected_signed_data_len"].as_u64().unwrap());
        assert!(matches!(Token::from_target(target.as_bytes()), Token::Present { .. }));

        let (proof, proof_old) = (s(&case["x_wopi_proof"]), s(&case["x_wopi_proof_old"]));
        let headers = ProofHeaders {
            proof: Some(proof.as_bytes()),
            proof_old: Some(proof_old.as_bytes()),
            timestamp: Some(ticks.to_string().leak().as_bytes()),
        };
        let request =
            SignedRequest { url_base_upper: &base, url_base_alt_upper: None, raw_target: target.as_bytes(), headers };
        let result = verify(&keys, &request, &window, at_ticks(ticks), &mut scratch);
        let comment = s(&case["comment"]);
        assert_eq!(result.is_ok(), case["expected_valid"].as_bool().unwrap(), "case {i}: {comment}");
        // Each valid case names the combination it exercises: that one, not another, verified.
        let expected = [
            ("X-WOPI-Proof and Current Key", Combination::ProofWithCurrent),
            ("X-WOPI-ProofOld and Current Key", Combination::ProofOldWithCurrent),
            ("X-WOPI-Proof and Old Key", Combination::ProofWithOld),
        ]
        .into_iter()
        .find(|(words, _)| comment.contains(words))
        .map(|(_, c)| c);
        assert_eq!(result.as_ref().ok().map(|v| v.combination), expected, "case {i}: {comment}");
        if let Ok(v) = &result {
            assert_eq!(v.url_form, UrlForm::AsConfigured, "case {i}");
        }
        // Replayed today, every case is refused as stale.
        assert!(verify(&keys, &request, &window, SystemTime::now(), &mut scratch).is_err());
    }
}

fn attr(xml: &str, name: &str) -> String {
    let start = xml.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    xml[start..start + xml[start..].find('"').unwrap()].to_string()
}

fn without_components(xml: &str) -> String {
    let mut out = xml.to_string();
    for name in ["modulus", "exponent", "oldmodulus", "oldexponent"] {
        let value = attr(&out, name);
        out = out.replace(&format!(" {name}=\"{value}\""), " ");
    }
    out
}

#[test]
fn real_discovery_documents_parse_to_their_keys() {
    for (file, bits, old_equals_current) in [
        ("office_online_df_discovery_2016.xml", 2048, false),
        ("onlyoffice_discovery_from_ocis_test.xml", 2048, true),
        ("wopi_validator_pr145_dummy_discovery.xml", 1024, false),
    ] {
        let raw = fixture(file);
        let xml = String::from_utf8_lossy(&raw).to_string();
        let keys = parse_discovery(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(keys.current_from, "modulus/exponent", "{file}");
        assert_eq!(keys.current.bits(), bits, "{file}");
        assert_eq!(keys.current, key(&attr(&xml, "modulus"), &attr(&xml, "exponent")), "{file}");
        let old = keys.old.expect("old key published");
        assert_eq!(old == keys.current, old_equals_current, "{file}");

        // The CryptoAPI blob alone gives the same keys (either aiKeyAlg).
        let blob_only = without_components(&xml);
        let from_blob = parse_discovery(blob_only.as_bytes()).unwrap_or_else(|e| panic!("{file} (value only): {e}"));
        assert_eq!(from_blob.current_from, "value");
        assert_eq!(from_blob.current, keys.current, "{file}");
        assert_eq!(from_blob.old.unwrap(), old, "{file}");
    }
}

/// Proofs made outside this crate (tests/fixtures/make_independent_proofs.py: the bytes laid out
/// by hand in Python, signed by openssl) in the forms Collabora and ONLYOFFICE sign: the decoded
/// token, and a default port kept or dropped. The testkit signer shares the crate's own layout
/// code, so only these check the decoded-token and default-port forms from outside.
#[test]
fn proofs_signed_outside_the_crate_verify_in_the_signers_forms() {
    let data: Value = serde_json::from_slice(&fixture("independent_proofs.json")).unwrap();
    let s = |v: &Value| v.as_str().unwrap().to_string();
    let keys = KeySnapshot {
        sources: vec![Arc::new(SourceKeys {
            index: 0,
            url: Arc::from("independent"),
            current: key(&s(&data["modulus"]), &s(&data["exponent"])),
            old: None,
            fetched_at: UNIX_EPOCH,
            retained: false,
        })],
        generation: 1,
        ..Default::default()
    };
    let ticks = data["timestamp"].as_i64().unwrap();
    let ticks_text = ticks.to_string();
    let window = TimeWindow { max_age: Duration::from_secs(20 * 60), max_future_skew: Duration::from_secs(5 * 60) };
    let mut scratch = Vec::new();
    let cases = data["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let (signer, target, proof) = (s(&case["signer"]), s(&case["target"]), s(&case["proof"]));
        let public_url = PublicUrl::parse(&s(&case["public_url"])).unwrap();
        let headers = ProofHeaders {
            proof: Some(proof.as_bytes()),
            proof_old: Some(proof.as_bytes()),
            timestamp: Some(ticks_text.as_bytes()),
        };
        let request = SignedRequest {
            url_base_upper: public_url.upper(),
            url_base_alt_upper: public_url.alt_upper(),
            raw_target: target.as_bytes(),
            headers,
        };
        let verified = verify(&keys, &request, &window, at_ticks(ticks), &mut scratch)
            .unwrap_or_else(|r| panic!("{signer} {}: {r}", public_url.as_str()));
        assert_eq!(verified.combination, Combination::ProofWithCurrent);
        assert_eq!(public_url.form_label(verified.url_form), s(&case["expected_url_form"]), "{signer}");
        // The signed token is the decoded one: the raw target's token differs from it.
        let Token::Present { raw, decoded } = Token::from_target(target.as_bytes()) else { panic!("{target}") };
        assert_ne!(raw, decoded.as_ref(), "{signer}: the case exercises decoding");

        // Without the other URL form, a proof over that form does not verify.
        let only_written = SignedRequest { url_base_alt_upper: None, ..request };
        let alone = verify(&keys, &only_written, &window, at_ticks(ticks), &mut scratch);
        assert_eq!(alone.is_ok(), verified.url_form == UrlForm::AsConfigured, "{signer}");
        // One changed byte of the target: refused.
        let tampered = target.replacen("access_token=", "access_token=x", 1);
        let changed = SignedRequest { raw_target: tampered.as_bytes(), ..request };
        assert!(verify(&keys, &changed, &window, at_ticks(ticks), &mut scratch).is_err(), "{signer}");
    }
}
