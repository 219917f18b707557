//! Per-request costs in isolation: verification (2048/3072/4096-bit; current-key hit, old-key
//! hit, miss), signed-bytes building, path normalisation, and discovery parsing (not per request).
//! Run: `cargo bench --bench verify`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use wopi_guard::keys::{parse_discovery, KeySnapshot, ProofKey, SourceKeys};
use wopi_guard::paths::PathRules;
use wopi_guard::proof::{ticks_at, verify, write_signed_bytes, ProofHeaders, SignedRequest, TimeWindow};
use wopi_guard::testkit::{discovery_xml, ProofSet, Signer};

const BASE: &str = "HTTPS://WOPI.EXAMPLE.COM";
const TARGET: &str = "/wopi/files/0123456789abcdef?access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U&access_token_ttl=0";
const WINDOW: TimeWindow = TimeWindow { max_age: Duration::from_secs(1200), max_future_skew: Duration::from_secs(300) };

fn key(s: &Signer) -> ProofKey {
    ProofKey::from_components(s.modulus(), s.exponent()).unwrap()
}

fn bench_verify(c: &mut Criterion) {
    let now = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let url = format!("https://wopi.example.com{TARGET}");
    for bits in [2048, 3072, 4096] {
        let (current, old, stranger) = (Signer::generate(bits), Signer::generate(bits), Signer::generate(bits));
        let keys = KeySnapshot {
            sources: vec![Arc::new(SourceKeys {
                index: 0,
                url: Arc::from("bench"),
                current: key(&current),
                old: Some(key(&old)),
                fetched_at: now,
            })],
            generation: 1,
        };
        let ticks = ticks_at(now);
        for (name, proof) in [
            ("current-hit", ProofSet::sign(&url, ticks, &current, &current)),
            ("old-key-hit", ProofSet::sign(&url, ticks, &old, &stranger)),
            ("miss", ProofSet::sign(&url, ticks, &stranger, &stranger)),
        ] {
            let headers = ProofHeaders {
                proof: Some(proof.proof.as_bytes()),
                proof_old: Some(proof.proof_old.as_bytes()),
                timestamp: Some(proof.timestamp.as_bytes()),
            };
            let request = SignedRequest { url_base_upper: BASE.as_bytes(), raw_target: TARGET.as_bytes(), headers };
            let mut scratch = Vec::new();
            c.bench_function(&format!("verify/{bits}/{name}"), |b| {
                b.iter(|| black_box(verify(&keys, black_box(&request), &WINDOW, now, &mut scratch).is_ok()))
            });
        }
    }
}

fn bench_request_work(c: &mut Criterion) {
    let mut buf = Vec::new();
    c.bench_function("signed-bytes", |b| {
        b.iter(|| write_signed_bytes(&mut buf, black_box(b"token"), BASE.as_bytes(), black_box(TARGET.as_bytes()), 1))
    });
    let rules = PathRules::new(&["/wopi/".to_string()]);
    c.bench_function("path-protected", |b| b.iter(|| black_box(rules.is_protected(black_box(TARGET.as_bytes())))));
    let (a, o) = (Signer::generate(2048), Signer::generate(2048));
    let xml = discovery_xml(&a, Some(&o));
    c.bench_function("discovery-parse", |b| b.iter(|| black_box(parse_discovery(black_box(xml.as_bytes())).is_ok())));
}

criterion_group!(benches, bench_verify, bench_request_work);
criterion_main!(benches);
