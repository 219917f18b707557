//! Per-request costs in isolation: verification (2048/3072/4096-bit; current-key hit, old-key
//! hit, miss — and a miss whose signature exceeds the moduli, which costs no RSA operation),
//! signed-bytes building, path normalisation, and discovery parsing (not per request).
//! Run: `cargo bench --bench verify`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use wopi_guard::keys::{parse_discovery, KeySnapshot, ProofKey, Served, SourceKeys};
use wopi_guard::paths::PathRules;
use wopi_guard::proof::{ticks_at, verify, write_signed_bytes, Combination, ProofHeaders, SignedRequest, TimeWindow};
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
                retained: false,
            })],
            generation: 1,
            ..Default::default()
        };
        let ticks = ticks_at(now);
        let (m_current, m_old) = (current.modulus(), old.modulus());
        // A signature at or above a key's modulus is refused without an RSA operation, and the
        // keys are new each run: each case is signed at the first timestamp that gives it its
        // intended number of RSA operations, so the rows do not depend on the keys drawn.
        let signed = |proof_key: &Signer, old_key: &Signer, wanted: &dyn Fn(&ProofSet) -> bool| {
            (0..1000)
                .map(|step| ProofSet::sign(&url, ticks + step, proof_key, old_key))
                .find(|p| wanted(p))
                .expect("a timestamp within 1000 ticks gives the wanted signatures")
        };
        for (name, proof, outcome) in [
            // One RSA operation: Proof with the current key.
            ("current-hit", ProofSet::sign(&url, ticks, &current, &current), Some(Combination::ProofWithCurrent)),
            // Three: Proof and ProofOld with the current key, then Proof with the old key.
            (
                "old-key-hit",
                signed(&old, &stranger, &|p| below(&p.proof, m_current) && below(&p.proof_old, m_current)),
                Some(Combination::ProofWithOld),
            ),
            // Two: Proof (= ProofOld, tried once) with the current and the old key.
            ("miss", signed(&stranger, &stranger, &|p| below(&p.proof, m_current) && below(&p.proof, m_old)), None),
            // None: a forged signature of all ones, above both moduli.
            (
                "miss-above-moduli",
                {
                    use base64::Engine;
                    let ones = base64::engine::general_purpose::STANDARD.encode(vec![0xff; m_current.len()]);
                    ProofSet { proof: ones.clone(), proof_old: ones, timestamp: ticks.to_string() }
                },
                None,
            ),
        ] {
            let headers = ProofHeaders {
                proof: Some(proof.proof.as_bytes()),
                proof_old: Some(proof.proof_old.as_bytes()),
                timestamp: Some(proof.timestamp.as_bytes()),
            };
            let request = SignedRequest {
                url_base_upper: BASE.as_bytes(),
                url_base_alt_upper: None,
                raw_target: TARGET.as_bytes(),
                headers,
            };
            let mut scratch = Vec::new();
            // The row times what its name says: an old-key hit that failed would be timed as a miss.
            let verified = verify(&keys, &request, &WINDOW, now, &mut scratch).ok().map(|v| v.combination);
            assert_eq!(verified, outcome, "verify/{bits}/{name}");
            c.bench_function(&format!("verify/{bits}/{name}"), |b| {
                b.iter(|| black_box(verify(&keys, black_box(&request), &WINDOW, now, &mut scratch).is_ok()))
            });
        }
    }
}

/// Whether the base64 `signature`, as a big-endian number, is below `modulus`.
fn below(signature: &str, modulus: &[u8]) -> bool {
    use base64::Engine;
    let signature = base64::engine::general_purpose::STANDARD.decode(signature).unwrap();
    let significant = |b: &[u8]| b[b.iter().position(|&x| x != 0).unwrap_or(b.len())..].to_vec();
    let (s, m) = (significant(&signature), significant(modulus));
    (s.len(), s) < (m.len(), m)
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

fn bench_policy(c: &mut Criterion) {
    use http::{HeaderMap, HeaderValue};
    use std::net::IpAddr;
    use wopi_guard::operation::{classify, Operation};
    use wopi_guard::policy::{
        client_address, forwarding_plan, Budget, ForwardedHeader, Hop, LimitConfig, NetList, RateLimitConfig,
        RateLimits,
    };

    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("wopi.example.com"));
    headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 10.9.0.2"));
    let trusted = NetList::new(vec!["127.0.0.1/32".parse().unwrap(), "10.9.0.0/16".parse().unwrap()]);
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    c.bench_function("policy/classify", |b| {
        b.iter(|| black_box(classify("GET", black_box(TARGET.as_bytes()), None, false)))
    });
    c.bench_function("policy/client-address", |b| {
        b.iter(|| black_box(client_address(peer, black_box(&headers), &trusted, ForwardedHeader::XForwardedFor)))
    });
    c.bench_function("policy/forwarding-headers", |b| {
        let hop = Hop {
            peer: Some(peer),
            peer_trusted: true,
            scheme: wopi_guard::policy::Scheme::Http,
            forwarded_header: ForwardedHeader::XForwardedFor,
            verified: Some("proof"),
        };
        b.iter(|| black_box(forwarding_plan(&hop, black_box(&headers))))
    });
    let limit = LimitConfig { general: Some(Budget { per_second: 1e9, burst: 1_000_000 }), operations: Vec::new() };
    let limits = RateLimits::new(&RateLimitConfig {
        per_ip: Some(limit.clone()),
        per_token: Some(limit),
        per_file: None,
        failed_proofs: None,
        max_tracked_keys: 1 << 20,
    });
    c.bench_function("policy/rate-limit-ip", |b| b.iter(|| black_box(limits.check_ip(peer, Operation::CheckFileInfo))));
    c.bench_function("policy/rate-limit-token", |b| {
        b.iter(|| black_box(limits.check_admitted(Some(b"token-0123456789"), None, Operation::CheckFileInfo)))
    });
}

/// The whole admission decision for one signed CheckFileInfo, as the proxy calls it.
fn bench_gate(c: &mut Criterion) {
    use http::{HeaderMap, HeaderValue, Method};
    use wopi_guard::config::Config;
    use wopi_guard::gate::{Gate, Incoming};
    use wopi_guard::keys::{KeyStore, Refresher};

    let config = Config::from_toml(
        r#"
        upstream = "http://127.0.0.1:9"
        public_url = "https://wopi.example.com"
        [discovery]
        urls = ["http://127.0.0.1:9/hosting/discovery"]
        "#,
    )
    .unwrap();
    let signer = Signer::generate(2048);
    let store = KeyStore::new();
    store.install(Served {
        index: 0,
        url: Arc::from("bench"),
        address: None,
        current: key(&signer),
        old: None,
        at: UNIX_EPOCH,
    });
    let route = config.first_route();
    let metrics = Arc::new(wopi_guard::metrics::Metrics::new(&route.discovery.urls));
    let refresher =
        Refresher::new(&route.discovery, store, metrics.fetch_observer()).expect("the default discovery client builds");
    let gate = Gate::new(refresher, route.public_url.clone(), route.proof.clone(), config.policy(route), metrics);
    let now = std::time::SystemTime::now();
    let proof = ProofSet::sign(&format!("https://wopi.example.com{TARGET}"), ticks_at(now), &signer, &signer);
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("wopi.example.com"));
    headers.insert("x-wopi-proof", HeaderValue::from_str(&proof.proof).unwrap());
    headers.insert("x-wopi-proofold", HeaderValue::from_str(&proof.proof_old).unwrap());
    headers.insert("x-wopi-timestamp", HeaderValue::from_str(&proof.timestamp).unwrap());
    let incoming = Incoming {
        method: &Method::GET,
        raw_target: TARGET.as_bytes(),
        headers: &headers,
        peer: Some("127.0.0.1".parse().unwrap()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut scratch = Vec::new();
    assert!(runtime.block_on(gate.check(&incoming, now, &mut scratch)).verdict.is_ok());
    c.bench_function("gate/check-signed-request", |b| {
        b.iter(|| black_box(runtime.block_on(gate.check(black_box(&incoming), now, &mut scratch)).verdict.is_ok()))
    });
}

/// The file id's hash every request's log lines carry, and the access line every forwarded request
/// writes, formatted by the proxy's JSON format into a sink (the write syscall excluded).
fn bench_log(c: &mut Criterion) {
    use tracing_subscriber::layer::SubscriberExt;
    let layer =
        tracing_subscriber::fmt::layer().event_format(wopi_guard::logging::JsonLines).with_writer(std::io::sink);
    let subscriber = tracing_subscriber::registry().with(layer);
    c.bench_function("log/file-id-hash", |b| {
        b.iter(|| wopi_guard::redact::short_hash("file", black_box(b"0123456789abcdef")))
    });
    let url = "https://wopi.example.com/wopi/files/1?access_token=tok:0123456789ab".to_string();
    let client: Option<std::net::IpAddr> = Some([10, 0, 0, 1].into());
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function("log/access-line", |b| {
            b.iter(|| {
                tracing::info!(
                    target: "wopi_guard::access",
                    method = %http::Method::GET,
                    operation = "CheckFileInfo",
                    url = %black_box(&url),
                    client = client.map(tracing::field::display),
                    file = Some("file:0123456789ab"),
                    request_id = %"0123456789abcdef",
                    server_id = None::<&str>,
                    status = 200u16,
                    verdict = "verified",
                    combination = "current",
                    bytes_in = 0u64,
                    bytes_out = 1024u64,
                    duration_us = 520u64,
                    upstream_us = Some(310u64),
                    "forwarded"
                )
            })
        });
    });
}

/// What a forgery costs against a genuine request (issue 32's targets: forged ≤ 3 × genuine with
/// one source, whatever the forms; ≤ 9 × with three): one 2048-bit source with an old key, a
/// `public_url` with a default port form, a token whose decoded form differs and a `%27` (six
/// candidate messages); and three sources of 4096-bit keys with old keys.
fn bench_forgery(c: &mut Criterion) {
    let now = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let target = "/wopi/files/0123456789abcdef?access_token=eyJhbGci%2BOiJIUzI1NiJ9.o%27neil&access_token_ttl=0";
    let upper = "HTTPS://WOPI.EXAMPLE.COM";
    let alt_upper = "HTTPS://WOPI.EXAMPLE.COM:443";
    for (name, bits, sources) in [("1x2048-every-form", 2048, 1), ("3x4096-old-keys", 4096, 3)] {
        let pairs: Vec<(Signer, Signer)> =
            (0..sources).map(|_| (Signer::generate(bits), Signer::generate(bits))).collect();
        let keys = KeySnapshot {
            sources: pairs
                .iter()
                .enumerate()
                .map(|(index, (current, old))| {
                    Arc::new(SourceKeys {
                        index,
                        url: Arc::from("bench"),
                        current: key(current),
                        old: Some(key(old)),
                        fetched_at: now,
                        retained: false,
                    })
                })
                .collect(),
            generation: 1,
            ..Default::default()
        };
        let ticks = ticks_at(now);
        let genuine = ProofSet::sign(&format!("https://wopi.example.com{target}"), ticks, &pairs[0].0, &pairs[0].1);
        let forger = (Signer::generate(bits), Signer::generate(bits));
        let forged = ProofSet::sign(&format!("https://wopi.example.com{target}"), ticks, &forger.0, &forger.1);
        for (kind, proof, ok) in [("genuine", &genuine, true), ("forged", &forged, false)] {
            let request = SignedRequest {
                url_base_upper: upper.as_bytes(),
                url_base_alt_upper: Some(alt_upper.as_bytes()),
                raw_target: target.as_bytes(),
                headers: ProofHeaders {
                    proof: Some(proof.proof.as_bytes()),
                    proof_old: Some(proof.proof_old.as_bytes()),
                    timestamp: Some(proof.timestamp.as_bytes()),
                },
            };
            let mut scratch = Vec::new();
            assert_eq!(verify(&keys, &request, &WINDOW, now, &mut scratch).is_ok(), ok, "{name} {kind}");
            c.bench_function(&format!("forgery/{name}/{kind}"), |b| {
                b.iter(|| black_box(verify(&keys, black_box(&request), &WINDOW, now, &mut scratch).is_ok()))
            });
        }
    }
}

criterion_group!(benches, bench_verify, bench_request_work, bench_policy, bench_gate, bench_log, bench_forgery);
criterion_main!(benches);
