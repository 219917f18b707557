//! The pure verifier on its own: sign a request with a fresh key the way an office server does,
//! then check it (and a tampered copy) with wopi-guard's verifier at a fixed time.
//!
//! Run: `cargo run --example verify_one`

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wopi_guard::diagnose::{ProofSet, Signer};
use wopi_guard::keys::{KeySnapshot, ProofKey, SourceKeys};
use wopi_guard::proof::{ticks_at, verify, ProofHeaders, SignedRequest, TimeWindow};

fn main() {
    let office = Signer::generate(2048);
    let key = ProofKey::from_components(office.modulus(), office.exponent()).expect("a valid key");
    println!("office key: {key:?}");
    let keys = KeySnapshot {
        sources: vec![Arc::new(SourceKeys {
            index: 0,
            url: Arc::from("example"),
            current: key,
            old: None,
            fetched_at: SystemTime::now(),
            retained: false,
        })],
        generation: 1,
        ..Default::default()
    };
    let now = SystemTime::now();
    let window = TimeWindow { max_age: Duration::from_secs(20 * 60), max_future_skew: Duration::from_secs(5 * 60) };
    let proof =
        ProofSet::sign("https://wopi.example.com/wopi/files/1?access_token=abc", ticks_at(now), &office, &office);

    // The signed target verifies; the same proof over another file's target does not.
    for (target, genuine) in [("/wopi/files/1?access_token=abc", true), ("/wopi/files/2?access_token=abc", false)] {
        let headers = ProofHeaders {
            proof: Some(proof.proof.as_bytes()),
            proof_old: Some(proof.proof_old.as_bytes()),
            timestamp: Some(proof.timestamp.as_bytes()),
        };
        let request = SignedRequest {
            url_base_upper: b"HTTPS://WOPI.EXAMPLE.COM",
            url_base_alt_upper: None,
            raw_target: target.as_bytes(),
            headers,
        };
        let outcome = verify(&keys, &request, &window, now, &mut Vec::new());
        match &outcome {
            Ok(v) => println!("{target}: verified ({})", v.combination.label()),
            Err(refusal) => println!("{target}: refused ({refusal})"),
        }
        assert_eq!(outcome.is_ok(), genuine, "{target}: not the expected outcome");
    }
}
