//! The accept rule, pure: every combination, every refusal, with generated keys and a fixed clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wopi_guard::keys::{KeySnapshot, ProofKey, SourceKeys};
use wopi_guard::proof::{ticks_at, verify, Combination, ProofHeaders, SignedRequest, TimeWindow, Verified};
use wopi_guard::refusal::Refusal;
use wopi_guard::testkit::{ProofSet, Signer};

const BASE: &str = "https://wopi.example.test";
const TARGET: &str = "/wopi/files/42?access_token=t%2Bk&ttl=0";
const WINDOW: TimeWindow = TimeWindow { max_age: Duration::from_secs(1200), max_future_skew: Duration::from_secs(300) };

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

fn pk(s: &Signer) -> ProofKey {
    ProofKey::from_components(s.modulus(), s.exponent()).unwrap()
}

fn snapshot(sources: &[(&Signer, Option<&Signer>)]) -> KeySnapshot {
    KeySnapshot {
        sources: sources
            .iter()
            .enumerate()
            .map(|(index, (c, o))| {
                Arc::new(SourceKeys {
                    index,
                    url: Arc::from("test"),
                    current: pk(c),
                    old: o.map(pk),
                    fetched_at: now(),
                    retained: false,
                })
            })
            .collect(),
        generation: 1,
        ..Default::default()
    }
}

fn check(keys: &KeySnapshot, proof: &ProofSet) -> Result<Verified, Refusal> {
    check_target(keys, proof, TARGET)
}

fn check_target(keys: &KeySnapshot, proof: &ProofSet, target: &str) -> Result<Verified, Refusal> {
    on_request(proof, target, false, |request| verify(keys, request, &WINDOW, now(), &mut Vec::new()))
}

/// `proof`'s three headers on `target` under BASE (and its `:443` form when `alt`), handed to `run`.
fn on_request<T>(proof: &ProofSet, target: &str, alt: bool, run: impl FnOnce(&SignedRequest<'_>) -> T) -> T {
    let headers = ProofHeaders {
        proof: Some(proof.proof.as_bytes()),
        proof_old: Some(proof.proof_old.as_bytes()),
        timestamp: Some(proof.timestamp.as_bytes()),
    };
    let upper = BASE.to_ascii_uppercase();
    let alt_upper = format!("{upper}:443");
    let request = SignedRequest {
        url_base_upper: upper.as_bytes(),
        url_base_alt_upper: alt.then_some(alt_upper.as_bytes()),
        raw_target: target.as_bytes(),
        headers,
    };
    run(&request)
}

fn signed(current: &Signer, old: &Signer) -> ProofSet {
    ProofSet::sign(&format!("{BASE}{TARGET}"), ticks_at(now()), current, old)
}

#[test]
fn exactly_the_three_combinations_verify() {
    let (ours_current, ours_old, stranger) = (Signer::generate(2048), Signer::generate(2048), Signer::generate(2048));
    let keys = snapshot(&[(&ours_current, Some(&ours_old))]);
    let combo = |p: &ProofSet| check(&keys, p).map(|v| v.combination);

    assert_eq!(combo(&signed(&ours_current, &ours_current)), Ok(Combination::ProofWithCurrent));
    assert_eq!(combo(&signed(&stranger, &ours_current)), Ok(Combination::ProofOldWithCurrent));
    assert_eq!(combo(&signed(&ours_old, &stranger)), Ok(Combination::ProofWithOld));
    // ProofOld verifying only with the OLD key is not genuine.
    assert_eq!(combo(&signed(&stranger, &ours_old)), Err(Refusal::ProofInvalid));
    assert_eq!(combo(&signed(&stranger, &stranger)), Err(Refusal::ProofInvalid));
}

#[test]
fn a_bad_header_never_ends_the_check_early() {
    let (current, old) = (Signer::generate(2048), Signer::generate(2048));
    let keys = snapshot(&[(&current, Some(&old))]);
    let good = signed(&current, &old);
    for junk in ["", "!!!", "AAAA", "QUJD", &"A".repeat(5000)] {
        // Junk ProofOld: Proof still verifies.
        let mut p = good.clone();
        p.proof_old = junk.into();
        assert_eq!(check(&keys, &p).map(|v| v.combination), Ok(Combination::ProofWithCurrent), "{junk:?}");
        // Junk Proof: ProofOld (by the current key) still verifies.
        let mut p = signed(&old, &current);
        p.proof = junk.into();
        assert_eq!(check(&keys, &p).map(|v| v.combination), Ok(Combination::ProofOldWithCurrent), "{junk:?}");
        // Both junk: refused, no panic.
        let mut p = good.clone();
        p.proof = junk.into();
        p.proof_old = junk.into();
        assert_eq!(check(&keys, &p).map(|v| v.combination), Err(Refusal::ProofInvalid), "{junk:?}");
    }
    // No ProofOld header at all (older Collabora) and no old key.
    let keys = snapshot(&[(&current, None)]);
    let headers = ProofHeaders {
        proof: Some(good.proof.as_bytes()),
        proof_old: None,
        timestamp: Some(good.timestamp.as_bytes()),
    };
    let upper = BASE.to_ascii_uppercase();
    let request = SignedRequest {
        url_base_upper: upper.as_bytes(),
        url_base_alt_upper: None,
        raw_target: TARGET.as_bytes(),
        headers,
    };
    assert!(verify(&keys, &request, &WINDOW, now(), &mut Vec::new()).is_ok());
}

#[test]
fn any_changed_byte_is_refused() {
    let signer = Signer::generate(2048);
    let keys = snapshot(&[(&signer, None)]);
    let good = signed(&signer, &signer);
    assert!(check(&keys, &good).is_ok());
    // URL: path, query, token.
    for target in [
        "/wopi/files/43?access_token=t%2Bk&ttl=0",
        "/wopi/files/42?access_token=t%2Bk&ttl=1",
        "/wopi/files/42?access_token=t%2Bj&ttl=0",
    ] {
        assert_eq!(check_target(&keys, &good, target).map(|_| ()), Err(Refusal::ProofInvalid), "{target}");
    }
    // The same target in another encoding is another URL.
    assert!(check_target(&keys, &good, "/wopi/files/42?access_token=t+k&ttl=0").is_err());
    // Timestamp off by one tick.
    let mut p = good.clone();
    p.timestamp = (ticks_at(now()) - 1).to_string();
    assert_eq!(check(&keys, &p).map(|_| ()), Err(Refusal::ProofInvalid));
}

#[test]
fn time_and_presence_rules() {
    let signer = Signer::generate(2048);
    let keys = snapshot(&[(&signer, None)]);
    let url = format!("{BASE}{TARGET}");
    let at = |secs: i64| ProofSet::sign(&url, ticks_at(now()) + secs * 10_000_000, &signer, &signer);
    assert!(check(&keys, &at(-1199)).is_ok());
    assert_eq!(check(&keys, &at(-1201)).map(|_| ()), Err(Refusal::ProofExpired));
    assert!(check(&keys, &at(299)).is_ok());
    assert_eq!(check(&keys, &at(301)).map(|_| ()), Err(Refusal::ProofFromFuture));

    let upper = BASE.to_ascii_uppercase();
    let none = SignedRequest {
        url_base_upper: upper.as_bytes(),
        url_base_alt_upper: None,
        raw_target: TARGET.as_bytes(),
        headers: ProofHeaders::default(),
    };
    assert_eq!(verify(&keys, &none, &WINDOW, now(), &mut Vec::new()).map(|_| ()), Err(Refusal::ProofMissing));
    let empty = KeySnapshot::default();
    assert_eq!(check(&empty, &at(0)).map(|_| ()), Err(Refusal::NoKeys));
}

#[test]
fn keys_of_every_source_and_size_are_accepted() {
    let (a, b) = (Signer::generate(3072), Signer::generate(4096));
    let keys = snapshot(&[(&a, None), (&b, None)]);
    assert_eq!(check(&keys, &signed(&a, &a)).map(|v| v.source), Ok(0));
    assert_eq!(check(&keys, &signed(&b, &b)).map(|v| v.source), Ok(1));
    // A 4096-bit signature against a 3072-bit key is a length mismatch, not a panic.
    let only_a = snapshot(&[(&a, None)]);
    assert_eq!(check(&only_a, &signed(&b, &b)).map(|_| ()), Err(Refusal::ProofInvalid));
}

#[test]
fn raw_token_form_is_accepted_too() {
    // Microsoft signs the token as it appears in the URL; ours signs it decoded. Both pass.
    let signer = Signer::generate(2048);
    let keys = snapshot(&[(&signer, None)]);
    let ticks = ticks_at(now());
    let mut message = Vec::new();
    let url_upper = format!("{BASE}{TARGET}").to_ascii_uppercase();
    wopi_guard::proof::write_signed_bytes(&mut message, b"t%2Bk", url_upper.as_bytes(), b"", ticks);
    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD.encode(signer.sign(&message));
    let p = ProofSet { proof: sig.clone(), proof_old: sig, timestamp: ticks.to_string() };
    assert!(check(&keys, &p).is_ok());
}

/// Runs the verifier over `target` (with the alt base when `alt`), counting public operations.
fn counted(keys: &KeySnapshot, proof: &ProofSet, target: &str, alt: bool) -> (Result<Verified, Refusal>, usize) {
    use wopi_guard::proof::{verify_recovering, Token};
    let mut ops = 0;
    let mut recover = |key: &ProofKey, _: wopi_guard::proof::Header, signature: &[u8]| {
        ops += 1;
        key.recover(signature)
    };
    let result = on_request(proof, target, alt, |request| {
        let token = Token::from_target(request.raw_target);
        verify_recovering(keys, request, &token, &WINDOW, now(), &mut Vec::new(), &mut recover)
    });
    (result, ops)
}

#[test]
fn a_forgery_costs_one_public_operation_per_signature_and_key_whatever_the_forms() {
    let (current, old, forger) = (Signer::generate(2048), Signer::generate(2048), Signer::generate(2048));
    // Every form at once: two URL forms, a token that decodes to something else (two token
    // forms), and a %27 in the query (a third message per URL form).
    let target = "/wopi/files/42?access_token=t%2Bk%27x&ttl=0";
    let forged = ProofSet::sign(&format!("{BASE}{target}"), ticks_at(now()), &forger, &Signer::generate(2048));
    let with_old = snapshot(&[(&current, Some(&old))]);
    let (result, ops) = counted(&with_old, &forged, target, true);
    assert_eq!((result.map(|v| v.combination), ops), (Err(Refusal::ProofInvalid), 3), "current x 2 headers, old x 1");
    let without_old = snapshot(&[(&current, None)]);
    assert_eq!(counted(&without_old, &forged, target, true).1, 2);
    // Identical X-WOPI-Proof and X-WOPI-ProofOld are one signature.
    let same = ProofSet::sign(&format!("{BASE}{target}"), ticks_at(now()), &forger, &forger);
    assert_eq!(counted(&without_old, &same, target, true).1, 1);
    // Three sources: three per source.
    let (b, c) = (Signer::generate(2048), Signer::generate(2048));
    let three =
        snapshot(&[(&current, Some(&old)), (&b, Some(&Signer::generate(2048))), (&c, Some(&Signer::generate(2048)))]);
    assert_eq!(counted(&three, &forged, target, true).1, 9);
    // A genuine request costs one, whichever form it was signed over.
    for signed_over in [format!("{BASE}{target}"), format!("{BASE}:443{target}")] {
        let genuine = ProofSet::sign(&signed_over, ticks_at(now()), &current, &old);
        let (result, ops) = counted(&with_old, &genuine, target, true);
        assert!(result.is_ok(), "{signed_over}");
        assert_eq!(ops, 1, "{signed_over}");
    }
}

#[test]
fn onlyoffice_signs_a_quote_it_sends_as_percent_27_and_both_spellings_verify_as_one_message() {
    use wopi_guard::proof::{verify_parsed, Token, UrlForm};
    let (current, old) = (Signer::generate(2048), Signer::generate(2048));
    let keys = snapshot(&[(&current, Some(&old))]);
    // ONLYOFFICE: encodeURIComponent keeps `'`, the signature covers it, URI.serialize sends %27.
    let signed_over = "/wopi/files/42?access_token=it's";
    let sent = "/wopi/files/42?access_token=it%27s";
    let proof = ProofSet::sign(&format!("{BASE}{signed_over}"), ticks_at(now()), &current, &old);
    let verify_bytes = |target: &str| {
        on_request(&proof, target, false, |request| {
            let mut scratch = Vec::new();
            let token = Token::from_target(request.raw_target);
            verify_parsed(&keys, request, &token, &WINDOW, now(), &mut scratch).map(|v| (v.url_form, scratch))
        })
    };
    let (form, as_sent) = verify_bytes(sent).expect("the %27 spelling verifies");
    assert_eq!(form, UrlForm::QuoteUnescaped);
    let (form, as_signed) = verify_bytes(signed_over).expect("the ' spelling verifies");
    assert_eq!(form, UrlForm::AsConfigured);
    assert_eq!(as_sent, as_signed, "the replay cache keys on the bytes that verified: one message");
    // Only the query is read so: a %27 in the path is the path's.
    assert_eq!(wopi_guard::proof::quote_unescaped(b"/a%27b/c?x=%27&y=1").unwrap(), b"/a%27b/c?x='&y=1");
    assert_eq!(wopi_guard::proof::quote_unescaped(b"/a%27b/c?x=1"), None);
    assert_eq!(wopi_guard::proof::quote_unescaped(b"/a%27b"), None);
}

#[test]
fn the_public_operation_agrees_with_the_full_verify_and_refuses_other_lengths() {
    let key = Signer::generate(2048);
    let pk = pk(&key);
    let other = Signer::generate(2048);
    for i in 0..20 {
        let message = format!("message {i}").into_bytes();
        let signature = key.sign(&message);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &message);
        assert_eq!(pk.recover(&signature).as_ref().map(|d| &d[..]), Some(digest.as_ref()));
        assert!(pk.verifies(&message, &signature));
        let forged = other.sign(&message);
        assert!(pk.recover(&forged).is_none_or(|d| d[..] != *digest.as_ref()) && !pk.verifies(&message, &forged));
        assert_eq!(pk.recover(&signature[1..]), None, "one byte short");
        let mut long = signature.clone();
        long.push(0);
        assert_eq!(pk.recover(&long), None, "one byte long");
    }
}
