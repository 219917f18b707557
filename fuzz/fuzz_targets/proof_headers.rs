//! Proof header and timestamp parsing through the verifier: arbitrary target, X-WOPI-Proof,
//! X-WOPI-ProofOld and X-WOPI-TimeStamp (split from the input at 0xFF bytes) against a real key.
//! Nothing panics, and nothing verifies (the key's private half is not here).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use wopi_guard::keys::{parse_discovery, KeySnapshot, SourceKeys};
use wopi_guard::proof::{parse_ticks, verify, ProofHeaders, SignedRequest, TimeWindow};

fn keys() -> &'static KeySnapshot {
    static KEYS: OnceLock<KeySnapshot> = OnceLock::new();
    KEYS.get_or_init(|| {
        let xml = include_bytes!("../../tests/fixtures/office_online_df_discovery_2016.xml");
        let k = parse_discovery(xml).expect("the fixture parses");
        let source = SourceKeys {
            index: 0,
            url: Arc::from("fixture"),
            current: k.current,
            old: k.old,
            fetched_at: SystemTime::now(),
            retained: false,
        };
        KeySnapshot { sources: vec![Arc::new(source)], generation: 1, ..Default::default() }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xFF);
    let target = parts.next().unwrap_or_default();
    let proof = parts.next();
    let proof_old = parts.next();
    let timestamp = parts.next();
    if let Some(ts) = timestamp {
        let _ = parse_ticks(ts);
    }
    let request = SignedRequest {
        url_base_upper: b"HTTPS://WOPI.EXAMPLE.COM",
        url_base_alt_upper: None,
        raw_target: target,
        headers: ProofHeaders { proof, proof_old, timestamp },
    };
    // A window wide enough that any parseable timestamp reaches the RSA step.
    let window = TimeWindow {
        max_age: Duration::from_secs(u32::MAX as u64),
        max_future_skew: Duration::from_secs(u32::MAX as u64),
    };
    let result = verify(keys(), &request, &window, SystemTime::now(), &mut Vec::new());
    assert!(result.is_err(), "a forged proof verified");
});
