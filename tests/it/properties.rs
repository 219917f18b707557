//! Property tests (proptest): the signed-bytes layout against an independent encoding, and that a
//! change to any one byte of the URL, the token or the timestamp of a genuine request is refused.

use proptest::prelude::*;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use wopi_guard::keys::{KeySnapshot, ProofKey, SourceKeys};
use wopi_guard::proof::{ticks_at, verify, write_signed_bytes, ProofHeaders, SignedRequest, TimeWindow};
use wopi_guard::testkit::{ProofSet, Signer};

/// Microsoft's layout written out independently: big-endian u32 lengths, ticks as big-endian i64.
fn reference_encoding(token: &[u8], url: &str, ticks: i64) -> Vec<u8> {
    let url = url.to_ascii_uppercase();
    let mut out = Vec::new();
    out.extend((token.len() as u32).to_be_bytes());
    out.extend(token);
    out.extend((url.len() as u32).to_be_bytes());
    out.extend(url.as_bytes());
    out.extend(8u32.to_be_bytes());
    out.extend(ticks.to_be_bytes());
    out
}

struct Office {
    current: Signer,
    old: Signer,
    keys: KeySnapshot,
}

fn office() -> &'static Office {
    static OFFICE: OnceLock<Office> = OnceLock::new();
    OFFICE.get_or_init(|| {
        let (current, old) = (Signer::generate(2048), Signer::generate(2048));
        let key = |s: &Signer| ProofKey::from_components(s.modulus(), s.exponent()).unwrap();
        let source = SourceKeys {
            index: 0,
            url: Arc::from("test"),
            current: key(&current),
            old: Some(key(&old)),
            fetched_at: SystemTime::now(),
            retained: false,
        };
        Office {
            keys: KeySnapshot { sources: vec![Arc::new(source)], generation: 1, ..Default::default() },
            current,
            old,
        }
    })
}

const BASE: &str = "https://wopi.example.com";
const WINDOW: TimeWindow = TimeWindow { max_age: Duration::from_secs(1200), max_future_skew: Duration::from_secs(300) };

fn verifies(target: &str, proof: &ProofSet, timestamp: &str, now: SystemTime) -> bool {
    let upper = BASE.to_ascii_uppercase();
    let request = SignedRequest {
        url_base_upper: upper.as_bytes(),
        url_base_alt_upper: None,
        raw_target: target.as_bytes(),
        headers: ProofHeaders {
            proof: Some(proof.proof.as_bytes()),
            proof_old: Some(proof.proof_old.as_bytes()),
            timestamp: Some(timestamp.as_bytes()),
        },
    };
    verify(&office().keys, &request, &WINDOW, now, &mut Vec::new()).is_ok()
}

const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const PATH_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn word(chars: &'static [u8], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(chars), len).prop_map(|b| String::from_utf8(b).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn signed_bytes_match_an_independent_encoding(
        token in proptest::collection::vec(any::<u8>(), 0..300),
        base in "https?://[a-z0-9.-]{1,30}(:[0-9]{1,5})?",
        target in "/[ -~]{0,200}",
        ticks in any::<i64>(),
    ) {
        let mut ours = Vec::new();
        write_signed_bytes(&mut ours, &token, base.to_ascii_uppercase().as_bytes(), target.as_bytes(), ticks);
        prop_assert_eq!(ours, reference_encoding(&token, &format!("{base}{target}"), ticks));
    }
}

proptest! {
    // Each case signs with 2048-bit keys: fewer cases, still every position of every part.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn one_changed_byte_anywhere_is_refused(
        file in word(PATH_CHARS, 1..24),
        token in word(TOKEN_CHARS, 1..64),
        part in 0usize..3,
        position in any::<prop::sample::Index>(),
        replacement in any::<prop::sample::Index>(),
        delta in prop_oneof![-9_999_999i64..-1, 1i64..9_999_999],
    ) {
        let o = office();
        let now = SystemTime::now();
        let ticks = ticks_at(now);
        let target = format!("/wopi/files/{file}?access_token={token}");
        let proof = ProofSet::sign(&format!("{BASE}{target}"), ticks, &o.current, &o.old);
        prop_assert!(verifies(&target, &proof, &ticks.to_string(), now), "the genuine request verifies");

        let change = |text: &str, chars: &'static [u8], case_matters: bool| {
            let at = position.index(text.len());
            let old = text.as_bytes()[at];
            let differs = |c: &u8| if case_matters { *c != old } else { !c.eq_ignore_ascii_case(&old) };
            let choices: Vec<u8> = chars.iter().copied().filter(differs).collect();
            let mut bytes = text.as_bytes().to_vec();
            bytes[at] = choices[replacement.index(choices.len())];
            String::from_utf8(bytes).unwrap()
        };
        let (tampered_target, timestamp) = match part {
            // The URL: one byte of the file id (the URL is signed upper-cased, so a change of case
            // alone is the same URL; every other change must fail).
            0 => (format!("/wopi/files/{}?access_token={token}", change(&file, PATH_CHARS, false)), ticks.to_string()),
            // The token: one byte (case-sensitive).
            1 => (format!("/wopi/files/{file}?access_token={}", change(&token, TOKEN_CHARS, true)), ticks.to_string()),
            // The timestamp: any other value, even one inside the window.
            _ => (target.clone(), (ticks + delta).to_string()),
        };
        prop_assert!(!verifies(&tampered_target, &proof, &timestamp, now), "{} / {}", tampered_target, timestamp);
    }
}
