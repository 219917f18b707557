//! `[keys]` and `discovery.resolve_all` over the running proxy: several office nodes behind one
//! URL (retention, or one source per address), pinning, rotation trust kept across a restart,
//! and the published ONLYOFFICE keys refused unless allowed, signed with their own private keys.

use crate::common::*;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wopi_guard::keys::{ProofKey, Resolver};
use wopi_guard::proof::write_signed_bytes;

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";

fn fingerprint(signer: &Signer) -> String {
    ProofKey::from_components(signer.modulus(), signer.exponent()).unwrap().fingerprint().to_owned()
}

/// Signs `target` with `key` alone (Proof and ProofOld), as a node whose key is `key` does.
fn signed_by(harness: &Harness, key: &Signer, target: &str) -> ProofSet {
    ProofSet::sign(&harness.public(target), ticks(0), key, key)
}

async fn get_with(harness: &Harness, proof: &ProofSet) -> u16 {
    harness.send("GET", FILE, Some(proof), None).await.0
}

/// Waits until /metrics contains `line`.
async fn wait_metric(harness: &Harness, line: &str) -> String {
    let started = Instant::now();
    loop {
        let text = harness.admin_text("/metrics").await;
        if text.contains(line) {
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no {line:?} in /metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sends `key`'s request until one is admitted: the first may come within
/// `discovery.min_refresh_interval` (1 s here) of the last fetch, when no re-fetch is sent.
async fn eventually_admitted(harness: &Harness, key: &Signer) {
    let started = Instant::now();
    while get_with(harness, &signed_by(harness, key, FILE)).await != 200 {
        assert!(started.elapsed() < Duration::from_secs(5), "{} never admitted", fingerprint(key));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Node A's and node B's requests, alternately, `rounds` times each: how many were admitted.
async fn alternate(harness: &Harness, a: &Signer, b: &Signer, rounds: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..rounds {
        for key in [b, a] {
            admitted += usize::from(get_with(harness, &signed_by(harness, key, FILE)).await == 200);
        }
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_one_url_need_retention_and_never_cause_a_fetch_per_request() {
    captured_logs();
    let office = Arc::new(FakeOffice::start(2048).await);
    let (a, b) = (office.current(), Arc::new(Signer::generate(2048)));
    office.set_other_node(Some(b.clone()));

    // Without retention only the node that answered last verifies; the failure-triggered
    // re-fetch is what lets some of the other's requests through, at most one per second.
    let harness = Harness::start_on(office.clone(), Options::default()).await;
    let (started, fetches) = (Instant::now(), office.fetches());
    let admitted = alternate(&harness, &a, &b, 10).await;
    let fetched = office.fetches() - fetches;
    let bound = 2 + started.elapsed().as_secs() as usize;
    assert!(admitted < 20, "without retention some requests of the other node are refused: {admitted}/20");
    assert!(fetched <= bound, "{fetched} fetches for 20 requests in {:?}", started.elapsed());
    // Once a re-fetch may go out again, node B's request brings B's answer: a key change.
    eventually_admitted(&harness, &b).await;
    let changes = harness.admin_text("/metrics").await;
    let unchanged = format!("wopi_guard_proof_key_changes_total{{source=\"{}\"}} 0", office.discovery_url());
    assert!(
        changes.contains("wopi_guard_proof_key_changes_total{source=") && !changes.contains(&unchanged),
        "{changes}"
    );
    drop(harness);

    // With retention, once both answers were seen, both nodes verify and nothing is fetched.
    let options = Options { extra: "[keys]\nretention = \"1h\"".into(), ..Options::default() };
    let harness = Harness::start_on(office.clone(), options).await;
    // The first answer may have come from either node; a request of each brings the other.
    eventually_admitted(&harness, &a).await;
    eventually_admitted(&harness, &b).await;
    wait_metric(&harness, &format!("fingerprint=\"{}\"", fingerprint(&a))).await;
    wait_metric(&harness, &format!("fingerprint=\"{}\"", fingerprint(&b))).await;
    let fetches = office.fetches();
    assert_eq!(alternate(&harness, &a, &b, 10).await, 20);
    assert_eq!(office.fetches(), fetches, "no request needed a fetch");
    let metrics = harness.admin_text("/metrics").await;
    assert!(metrics.contains(r#"key="retained""#), "{metrics}");
    assert!(metrics.contains("wopi_guard_proof_key_last_seen_seconds{source="), "{metrics}");
}

/// Binds one port number on both 127.0.0.2 and 127.0.0.3.
async fn two_nodes_on_one_port() -> (tokio::net::TcpListener, tokio::net::TcpListener) {
    for _ in 0..20 {
        let first = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        if let Ok(second) = tokio::net::TcpListener::bind(("127.0.0.3", port)).await {
            return (first, second);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_all_fetches_every_node_and_accepts_each_nodes_key() {
    let (l2, l3) = two_nodes_on_one_port().await;
    let port = l2.local_addr().unwrap().port();
    let node2 = Arc::new(FakeOffice::start_on(l2, Signer::generate(2048)).await);
    let node3 = FakeOffice::start_on(l3, Signer::generate(2048)).await;
    let addresses: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    let url = format!("http://office.test:{port}/hosting/discovery");
    let options = Options {
        discovery_url: Some(url.clone()),
        discovery: "resolve_all = true".into(),
        resolver: Some(Resolver::Fixed(BTreeMap::from([("office.test".to_string(), addresses)]))),
        ..Options::default()
    };
    let harness = Harness::start_on(node2.clone(), options).await;
    for node in [&*node2, &node3] {
        let source = format!("{url}@{}", node.addr().ip());
        wait_metric(
            &harness,
            &format!(
                "wopi_guard_proof_key{{source=\"{source}\",key=\"current\",fingerprint=\"{}\"",
                fingerprint(&node.current())
            ),
        )
        .await;
        assert_eq!(get_with(&harness, &signed_by(&harness, &node.current(), FILE)).await, 200);
        assert_eq!(
            node.hosts().last().map(String::as_str),
            Some(format!("office.test:{port}").as_str()),
            "the Host header stays the URL's"
        );
    }
    let metrics = harness.admin_text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "wopi_guard_discovery_fetches_total{{source=\"{url}@127.0.0.3\",outcome=\"updated\"}} 1"
        )),
        "{metrics}"
    );
    let ready = harness.admin_text("/ready").await;
    assert!(ready.contains("2 key source(s)"), "one source per address: {ready}");

    // A key neither node serves is still refused.
    assert_eq!(get_with(&harness, &signed_by(&harness, &Signer::generate(2048), FILE)).await, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_trust_admits_only_pinned_keys() {
    let office = Arc::new(FakeOffice::start(2048).await);
    let pinned =
        |fp: &str| Options { extra: format!("[keys]\ntrust = \"pinned\"\npinned = [\"{fp}\"]"), ..Options::default() };
    let harness = Harness::start_on(office.clone(), pinned(&fingerprint(&office.current()))).await;
    assert_eq!(harness.signed_get(FILE).await.0, 200);
    drop(harness);

    let other = Signer::generate(2048);
    let harness =
        Harness::start_on(office.clone(), Options { wait_ready: false, ..pinned(&fingerprint(&other)) }).await;
    let held = format!(
        "wopi_guard_proof_key_held{{source=\"{}\",fingerprint=\"{}\"}} 1",
        office.discovery_url(),
        fingerprint(&office.current())
    );
    wait_metric(&harness, &held).await;
    let (status, body) = harness.signed_get(FILE).await;
    assert_eq!((status, body.contains("held")), (503, true), "{body}");
    assert_eq!(harness.forwarded(), 0);
    let ready = harness.admin_text("/ready").await;
    assert!(ready.contains("held"), "{ready}");
}

/// `X-WOPI-Proof` by `proof`, `X-WOPI-ProofOld` by `old`, over `target` now.
fn signed_pair(harness: &Harness, proof: &Signer, old: &Signer, target: &str) -> ProofSet {
    ProofSet::sign(&harness.public(target), ticks(0), proof, old)
}

fn rotation_options(cache: &std::path::Path) -> Options {
    Options {
        discovery: format!("cache_file = \"{}\"", cache.display()),
        extra: "[keys]\ntrust = \"rotation\"".into(),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forger_who_answers_discovery_never_gets_a_key_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("keys.json");
    let office = Arc::new(FakeOffice::start(2048).await);
    let a = office.current();
    let harness = Harness::start_on(office.clone(), rotation_options(&cache)).await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &a, FILE)).await, 200, "trusted on first use");
    // The forger answers discovery with their key as current and the genuine key as old.
    let c = Arc::new(Signer::generate(2048));
    office.set_keys(c.clone(), Some(a.clone()));
    let held = format!(
        "wopi_guard_proof_key_held{{source=\"{}\",fingerprint=\"{}\"}} 1",
        office.discovery_url(),
        fingerprint(&c)
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await; // past min_refresh_interval: re-fetched
        assert_eq!(get_with(&harness, &signed_by(&harness, &c, FILE)).await, 500, "C alone never verifies");
        wait_metric(&harness, &held).await;
    }
    // The genuine key still verifies (in C's old slot): the forger cannot cut the office off.
    assert_eq!(get_with(&harness, &signed_by(&harness, &a, FILE)).await, 200);
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(!text.contains(&fingerprint(&c)), "C was written as trusted:\n{text}");
    drop(harness);
    let harness = Harness::start_on(office.clone(), rotation_options(&cache)).await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &c, FILE)).await, 500, "after a restart too");
    assert!(harness.admin_text("/metrics").await.contains("wopi_guard_proof_key_rotations_proved_total 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_proved_by_a_request_signed_with_both_keys_and_survives_a_restart() {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("keys.json");
    let office = Arc::new(FakeOffice::start(2048).await);
    let a = office.current();
    let harness = Harness::start_on(office.clone(), rotation_options(&cache)).await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &a, FILE)).await, 200);
    // The office rotates: D is current, A old, and it signs with both.
    let d = Arc::new(Signer::generate(2048));
    office.set_keys(d.clone(), Some(a.clone()));
    let held = format!(
        "wopi_guard_proof_key_held{{source=\"{}\",fingerprint=\"{}\"}} 1",
        office.discovery_url(),
        fingerprint(&d)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &d, FILE)).await, 500, "D alone: not yet");
    wait_metric(&harness, &held).await;
    assert_eq!(get_with(&harness, &signed_pair(&harness, &d, &a, FILE)).await, 200, "D and A: admitted");
    wait_metric(&harness, "wopi_guard_proof_key_rotations_proved_total 1").await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &d, FILE)).await, 200, "then D alone");
    let log = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    let line = log
        .lines()
        .find(|l| l.contains("rotation proved by a request signed by both keys") && l.contains(&fingerprint(&d)));
    assert!(line.is_some_and(|l| l.contains(&fingerprint(&a))), "both fingerprints logged:\n{log}");
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains(&fingerprint(&d)), "D is in the cache file:\n{text}");
    drop(harness);
    office.set_keys(d.clone(), None);
    let harness = Harness::start_on(office.clone(), rotation_options(&cache)).await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &d, FILE)).await, 200, "D still trusted after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_proof_transplanted_into_a_forgery_is_no_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("keys.json");
    let office = Arc::new(FakeOffice::start(2048).await);
    let a = office.current();
    let harness = Harness::start_on(office.clone(), rotation_options(&cache)).await;
    let c = Arc::new(Signer::generate(2048));
    office.set_keys(c.clone(), Some(a.clone()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The forger's own request makes wopi-guard re-read discovery, which now holds C.
    assert_eq!(get_with(&harness, &signed_by(&harness, &c, FILE)).await, 500);
    let held = format!(
        "wopi_guard_proof_key_held{{source=\"{}\",fingerprint=\"{}\"}} 1",
        office.discovery_url(),
        fingerprint(&c)
    );
    wait_metric(&harness, &held).await;
    // A genuine request by A, as the office sends it.
    let ticks = ticks(0);
    let genuine = ProofSet::sign(&harness.public(FILE), ticks, &a, &a);
    assert_eq!(get_with(&harness, &genuine).await, 200);
    // The forger copies its X-WOPI-Proof into X-WOPI-ProofOld and signs the same bytes with C.
    let forged = ProofSet {
        proof: ProofSet::sign(&harness.public(FILE), ticks, &c, &c).proof,
        proof_old: genuine.proof.clone(),
        timestamp: genuine.timestamp.clone(),
    };
    assert_eq!(get_with(&harness, &forged).await, 500, "the bytes were seen: refused");
    assert_eq!(get_with(&harness, &signed_by(&harness, &c, FILE)).await, 500, "and C is not trusted");
    // A genuine request refused by policy (a denied DELETE) is recorded too: its X-WOPI-Proof,
    // moved into a LOCK signed by C, is no evidence either.
    drop(harness);
    let options = Options {
        extra: "[keys]\ntrust = \"rotation\"\n[operations]\ndeny = [\"DeleteFile\"]".into(),
        ..rotation_options(&cache)
    };
    let harness = Harness::start_on(office.clone(), options).await;
    let ticks = super::common::ticks(0);
    let genuine = ProofSet::sign(&harness.public(FILE), ticks, &a, &a);
    let post = |proof: &ProofSet, over: &'static str| {
        let mut request = harness.client.post(harness.local(FILE)).header("X-WOPI-Override", over);
        for (n, v) in proof.headers() {
            request = request.header(n, v.to_string());
        }
        request.send()
    };
    assert_eq!(post(&genuine, "DELETE").await.unwrap().status(), 403, "the genuine request is denied");
    let forged = ProofSet {
        proof: ProofSet::sign(&harness.public(FILE), ticks, &c, &c).proof,
        proof_old: genuine.proof.clone(),
        timestamp: genuine.timestamp.clone(),
    };
    assert_eq!(post(&forged, "LOCK").await.unwrap().status(), 500, "its bytes were recorded on arrival");
    assert_eq!(get_with(&harness, &signed_by(&harness, &c, FILE)).await, 500, "C is not trusted");
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(!text.contains(&fingerprint(&c)), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_key_in_the_old_slot_keeps_verifying() {
    let office = Arc::new(FakeOffice::start(2048).await);
    let a = office.current();
    let b = Arc::new(Signer::generate(2048));
    office.set_keys(b.clone(), Some(a.clone()));
    let extra = format!("[keys]\ntrust = \"pinned\"\npinned = [\"{}\"]", fingerprint(&a));
    let harness = Harness::start_on(office.clone(), Options { extra, ..Options::default() }).await;
    assert_eq!(harness.admin_status("/ready").await, 200);
    assert_eq!(get_with(&harness, &signed_by(&harness, &a, FILE)).await, 200, "A-signed: admitted");
    assert_eq!(get_with(&harness, &signed_pair(&harness, &b, &a, FILE)).await, 200, "B and A: through A");
    assert_eq!(get_with(&harness, &signed_by(&harness, &b, FILE)).await, 500, "B-signed: refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleets_first_start_trusts_every_node_and_a_later_key_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("keys.json");
    let (l2, l3) = two_nodes_on_one_port().await;
    let port = l2.local_addr().unwrap().port();
    let node2 = Arc::new(FakeOffice::start_on(l2, Signer::generate(2048)).await);
    let node3 = FakeOffice::start_on(l3, Signer::generate(2048)).await;
    let addresses: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    let url = format!("http://office.test:{port}/hosting/discovery");
    let options = Options {
        discovery_url: Some(url.clone()),
        discovery: format!("resolve_all = true\ncache_file = \"{}\"", cache.display()),
        extra: "[keys]\ntrust = \"rotation\"".into(),
        resolver: Some(Resolver::Fixed(BTreeMap::from([("office.test".to_string(), addresses)]))),
        ..Options::default()
    };
    let harness = Harness::start_on(node2.clone(), options).await;
    for node in [&*node2, &node3] {
        let source = format!("{url}@{}", node.addr().ip());
        let line = format!(
            "wopi_guard_proof_key{{source=\"{source}\",key=\"current\",fingerprint=\"{}\"",
            fingerprint(&node.current())
        );
        wait_metric(&harness, &line).await;
        assert_eq!(get_with(&harness, &signed_by(&harness, &node.current(), FILE)).await, 200, "{source}");
    }
    // A third key appearing later on one node is held.
    let later = Arc::new(Signer::generate(2048));
    node3.set_keys(later.clone(), None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &later, FILE)).await, 500);
    let held =
        format!("wopi_guard_proof_key_held{{source=\"{url}@127.0.0.3\",fingerprint=\"{}\"}} 1", fingerprint(&later));
    wait_metric(&harness, &held).await;
}

/// The public key's SHA-256 as openssl computes it, for a PEM private key.
fn openssl_fingerprint(pem: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl pkey -in '{}' -pubout -outform DER | sha256sum", pem.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    format!("sha256:{}", String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap())
}

/// Modulus and exponent of a PEM private key, read by openssl.
fn openssl_public(pem: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let out = Command::new("openssl").args(["rsa", "-noout", "-modulus", "-in"]).arg(pem).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    (hex::decode(text.trim().trim_start_matches("Modulus=")).unwrap(), vec![1, 0, 1])
}

/// Signs `url` at `ticks` with openssl (no wopi-guard signing code), both proof headers.
fn openssl_proof(pem: &std::path::Path, url: &str, token: &str, ticks: i64) -> ProofSet {
    let mut message = Vec::new();
    write_signed_bytes(&mut message, token.as_bytes(), url.to_ascii_uppercase().as_bytes(), b"", ticks);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("message");
    std::fs::write(&input, &message).unwrap();
    let out = Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(pem).arg(&input).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use base64::Engine;
    let signature = base64::engine::general_purpose::STANDARD.encode(out.stdout);
    ProofSet { proof: signature.clone(), proof_old: signature, timestamp: ticks.to_string() }
}

fn published_pems() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/onlyoffice_published_keys");
    let mut pems: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    pems.retain(|p| p.extension().is_some_and(|e| e == "pem"));
    pems.sort();
    assert_eq!(pems.len(), 6);
    pems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_onlyoffice_key_is_refused_unless_allowed() {
    for pem in published_pems() {
        let (modulus, exponent) = openssl_public(&pem);
        let key = ProofKey::from_components(&modulus, &exponent).unwrap();
        let fp = openssl_fingerprint(&pem);
        assert_eq!(key.fingerprint(), fp, "{}: the fingerprint is openssl's", pem.display());
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let xml = format!(
            r#"<wopi-discovery><net-zone name="external-http"/><proof-key modulus="{}" exponent="{}"/></wopi-discovery>"#,
            b64(&modulus),
            b64(&exponent)
        );
        let office = Arc::new(FakeOffice::start(2048).await);
        office.set_document(Some(xml));
        let harness = Harness::start_on(office.clone(), Options { wait_ready: false, ..Options::default() }).await;
        wait_metric(
            &harness,
            &format!("wopi_guard_proof_key_held{{source=\"{}\",fingerprint=\"{fp}\"}} 1", office.discovery_url()),
        )
        .await;
        let proof = openssl_proof(&pem, &harness.public(FILE), "tok-123", ticks(0));
        assert_eq!(get_with(&harness, &proof).await, 503, "{}: refused", pem.display());
        assert_eq!(harness.forwarded(), 0);

        let allowed = format!("{}\n[keys]\nallow_published = true\n", harness.config_text);
        harness.reload(&allowed).await.unwrap();
        assert_eq!(get_with(&harness, &proof).await, 200, "{}: admitted with allow_published", pem.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprints_are_openssls_and_discovery_names_published_keys() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate(2048);
    let pem = dir.path().join("key.pem");
    std::fs::write(&pem, signer.to_pkcs8_pem()).unwrap();
    assert_eq!(fingerprint(&signer), openssl_fingerprint(&pem));

    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/onlyoffice_discovery_from_ocis_test.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_wopi-guard")).args(["discovery", fixture]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let published = published_pems().into_iter().find(|p| p.to_string_lossy().contains("2021-04-21")).unwrap();
    assert!(text.contains(&openssl_fingerprint(&published)), "{text}");
    assert!(text.contains("2021-04-21") && text.contains("shipped by ONLYOFFICE in 2021 to 2024"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_trusted_set_on_redis_and_a_proved_rotation_reaches_all() {
    let redis = RedisServer::start(None);
    let options = || Options {
        // Under [shared] a rotation is proved only on bytes Redis has never seen.
        proof: "replay_cache = true",
        extra: format!(
            "[keys]\ntrust = \"rotation\"\n[shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"",
            redis.url()
        ),
        ..Options::default()
    };
    let office = Arc::new(FakeOffice::start(2048).await);
    let a = office.current();
    // The first instance trusts A on first use and writes the set; it has no cache file.
    let first = Harness::start_on(office.clone(), options()).await;
    assert_eq!(get_with(&first, &signed_by(&first, &a, FILE)).await, 200);
    // The second starts while discovery serves X (current) and A (old): it adopts {A}, not X.
    let x = Arc::new(Signer::generate(2048));
    office.set_keys(x.clone(), Some(a.clone()));
    // Someone with write access to Redis, but not the hash_key, adds X to the set: ignored.
    let sets: Vec<String> = redis.cli(&["KEYS", "*trust*"]).into_iter().filter(|k| !k.ends_with(":founded")).collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    redis.cli(&["SADD", &sets[0], &format!("{}|0123456789abcdef0123456789abcdef", fingerprint(&x))]);
    redis.cli(&["SADD", &sets[0], &fingerprint(&x)]);
    let second = Harness::start_on(office.clone(), options()).await;
    assert_eq!(get_with(&second, &signed_by(&second, &a, FILE)).await, 200, "A, adopted, in X's old slot");
    assert_eq!(get_with(&second, &signed_by(&second, &x, FILE)).await, 500, "X was not trusted on first use");
    // A rotation proved on the first instance ...
    let d = Arc::new(Signer::generate(2048));
    office.set_keys(d.clone(), Some(a.clone()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_with(&first, &signed_by(&first, &d, FILE)).await, 500);
    let held = format!(
        "wopi_guard_proof_key_held{{source=\"{}\",fingerprint=\"{}\"}} 1",
        office.discovery_url(),
        fingerprint(&d)
    );
    wait_metric(&first, &held).await;
    assert_eq!(get_with(&first, &signed_pair(&first, &d, &a, FILE)).await, 200);
    // ... is trusted on the second, which reads the set at its next discovery fetch.
    eventually_admitted(&second, &d).await;
    let metrics = second.admin_text("/metrics").await;
    assert!(metrics.contains("wopi_guard_proof_key_rotations_proved_total 0"), "proved by the other instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gone_past_retention_loses_its_client_and_metric_labels() {
    captured_logs();
    let (l2, l3) = two_nodes_on_one_port().await;
    let port = l2.local_addr().unwrap().port();
    let node2 = Arc::new(FakeOffice::start_on(l2, Signer::generate(2048)).await);
    let node3 = FakeOffice::start_on(l3, Signer::generate(2048)).await;
    let answers = Arc::new(std::sync::Mutex::new(BTreeMap::from([(
        "office.test".to_string(),
        vec!["127.0.0.2".parse::<IpAddr>().unwrap(), "127.0.0.3".parse().unwrap()],
    )])));
    let url = format!("http://office.test:{port}/hosting/discovery");
    let options = Options {
        discovery_url: Some(url.clone()),
        discovery: "resolve_all = true".into(),
        extra: "[keys]\nretention = \"1s\"".into(),
        resolver: Some(Resolver::Changing(answers.clone())),
        ..Options::default()
    };
    let harness = Harness::start_on(node2.clone(), options).await;
    let gone = format!("source=\"{url}@127.0.0.3\"");
    let counter = format!("wopi_guard_discovery_fetches_total{{{gone},outcome=\"updated\"}} 1");
    wait_metric(&harness, &counter).await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &node3.current(), FILE)).await, 200);
    // The pod goes: the name resolves to .2 alone from now on.
    answers.lock().unwrap().insert("office.test".into(), vec!["127.0.0.2".parse().unwrap()]);
    let forged = Signer::generate(2048);
    let started = Instant::now();
    loop {
        // A forgery makes the proxy fetch again (at most once per min_refresh_interval, 1 s).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let _ = get_with(&harness, &signed_by(&harness, &forged, FILE)).await;
        if !harness.admin_text("/metrics").await.contains(&gone) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{gone} still in /metrics");
    }
    let log = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(
        log.lines().any(|l| l.contains("its HTTP client and metrics are dropped") && l.contains("@127.0.0.3")),
        "no line about the gone node:\n{log}"
    );
    assert_eq!(get_with(&harness, &signed_by(&harness, &node3.current(), FILE)).await, 500, "its key went too");
    assert_eq!(get_with(&harness, &signed_by(&harness, &node2.current(), FILE)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_resolve_all_prints_every_nodes_keys() {
    let (l2, l3) = two_nodes_on_one_port().await;
    let port = l2.local_addr().unwrap().port();
    let node2 = FakeOffice::start_on(l2, Signer::generate(2048)).await;
    let node3 = FakeOffice::start_on(l3, Signer::generate(2048)).await;
    let url = format!("http://office.test:{port}/hosting/discovery");
    let tls = wopi_guard::config::ClientTls::default();
    let two = Resolver::Fixed(BTreeMap::from([(
        "office.test".to_string(),
        vec!["127.0.0.2".parse::<IpAddr>().unwrap(), "127.0.0.3".parse().unwrap()],
    )]));
    let (report, failed) = wopi_guard::diagnose::every_node(&url, Duration::from_secs(5), &tls, &two).await;
    assert!(!failed, "{report}");
    for (ip, node) in [("127.0.0.2", &node2), ("127.0.0.3", &node3)] {
        let section = report.split("node ").find(|s| s.starts_with(ip)).unwrap_or_else(|| panic!("{ip}:\n{report}"));
        assert!(section.contains(&fingerprint(&node.current())), "{ip}'s own key:\n{report}");
        assert!(section.contains(&format!("{url}@{ip}")), "{report}");
    }
    // A node that does not answer makes the command fail, saying which.
    let three = Resolver::Fixed(BTreeMap::from([(
        "office.test".to_string(),
        vec!["127.0.0.2".parse::<IpAddr>().unwrap(), "127.0.0.4".parse().unwrap()],
    )]));
    let (report, failed) = wopi_guard::diagnose::every_node(&url, Duration::from_secs(2), &tls, &three).await;
    assert!(failed && report.contains("node 127.0.0.4") && report.contains("cannot fetch"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_trusted_set_and_judges_keys_as_the_proxy_does() {
    use wopi_guard::keys::{save_cache, KeyStore, KeysConfig, Served, TrustMode};
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("keys.json");
    let office = FakeOffice::start(2048).await;
    let a = office.current();
    // What the proxy kept: A trusted for this URL.
    let store = KeyStore::new();
    store.configure(&KeysConfig { trust: TrustMode::Rotation, ..KeysConfig::default() });
    let url: Arc<str> = Arc::from(office.discovery_url().as_str());
    let keys = wopi_guard::keys::parse_discovery(wopi_guard::testkit::discovery_xml(&a, None).as_bytes()).unwrap();
    store.install(Served::new(0, url.clone(), None, keys, std::time::SystemTime::now()));
    save_cache(&cache, &store).unwrap();
    // Discovery now serves a forger's C as current, A as old.
    let c = Arc::new(Signer::generate(2048));
    office.set_keys(c.clone(), Some(a.clone()));
    let config = dir.path().join("wopi-guard.toml");
    std::fs::write(
        &config,
        format!(
            "upstream = \"http://127.0.0.1:8081\"\npublic_url = \"https://wopi.example.com\"\n[discovery]\nurls = [\"{url}\"]\ncache_file = \"{}\"\n[keys]\ntrust = \"rotation\"\n",
            cache.display()
        ),
    )
    .unwrap();
    let target = "https://wopi.example.com/wopi/files/42?access_token=tok";
    let explain = |signer: Arc<Signer>| {
        let proof = ProofSet::sign(target, ticks(0), &signer, &signer);
        let capture = dir.path().join("request.txt");
        let headers: String = proof.headers().iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
        std::fs::write(&capture, format!("GET {target}\n{headers}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wopi-guard"))
            .args(["explain", "--request"])
            .arg(&capture)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    // The office server answers on this runtime while the command runs: block this thread only.
    let (code, text) = tokio::task::block_in_place(|| explain(c.clone()));
    assert_eq!(code, Some(1), "C is held, as in the proxy:\n{text}");
    assert!(text.contains("is held") && text.contains(&fingerprint(&c)), "{text}");
    let (code, text) = tokio::task::block_in_place(|| explain(a));
    assert_eq!(code, Some(0), "A, trusted in the cache, verifies:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transplant_sent_to_another_instance_is_no_evidence_either() {
    let redis = RedisServer::start(None);
    let options = |replay: &'static str| Options {
        proof: replay,
        extra: format!(
            "[keys]\ntrust = \"rotation\"\n[shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"",
            redis.url()
        ),
        ..Options::default()
    };
    let office = Arc::new(FakeOffice::start(2048).await);
    let a = office.current();
    let first = Harness::start_on(office.clone(), options("replay_cache = true")).await;
    let c = Arc::new(Signer::generate(2048));
    office.set_keys(c.clone(), Some(a.clone()));
    let second = Harness::start_on(office.clone(), options("replay_cache = true")).await;
    let held = format!(
        "wopi_guard_proof_key_held{{source=\"{}\",fingerprint=\"{}\"}} 1",
        office.discovery_url(),
        fingerprint(&c)
    );
    wait_metric(&second, &held).await;
    // The genuine request reaches the first instance; its X-WOPI-Proof, transplanted into a
    // request signed by C, is sent to the second, which never saw those bytes itself.
    let ticks = ticks(0);
    let genuine = ProofSet::sign(&first.public(FILE), ticks, &a, &a);
    assert_eq!(get_with(&first, &genuine).await, 200);
    let forged = ProofSet {
        proof: ProofSet::sign(&second.public(FILE), ticks, &c, &c).proof,
        proof_old: genuine.proof.clone(),
        timestamp: genuine.timestamp.clone(),
    };
    assert_eq!(get_with(&second, &forged).await, 500, "Redis saw the bytes: refused");
    assert_eq!(get_with(&second, &signed_by(&second, &c, FILE)).await, 500, "C is not trusted");
    drop((first, second));

    // Without proof.replay_cache, [shared] proves no rotation at all (the bytes cannot be checked
    // across instances): even a genuine pair leaves the key held, and a line says so.
    captured_logs();
    let only = Harness::start_on(office.clone(), options("")).await;
    assert_eq!(get_with(&only, &signed_pair(&only, &c, &a, FILE)).await, 200, "admitted through A");
    assert_eq!(get_with(&only, &signed_by(&only, &c, FILE)).await, 500, "but C is not trusted");
    let log = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(log.contains("a rotation is proved only with proof.replay_cache = true"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_trusted_set_from_shared() {
    let redis = RedisServer::start(None);
    let shared = format!("[shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"", redis.url());
    let office = Arc::new(FakeOffice::start(2048).await);
    let a = office.current();
    // An instance trusts A on first use and writes the set to Redis.
    let extra = format!("[keys]\ntrust = \"rotation\"\n{shared}");
    let harness = Harness::start_on(office.clone(), Options { extra, ..Options::default() }).await;
    assert_eq!(get_with(&harness, &signed_by(&harness, &a, FILE)).await, 200);
    drop(harness);
    let c = Arc::new(Signer::generate(2048));
    office.set_keys(c.clone(), Some(a.clone()));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wopi-guard.toml");
    std::fs::write(
        &config,
        format!(
            "upstream = \"http://127.0.0.1:8081\"\npublic_url = \"https://wopi.example.test\"\n[discovery]\nurls = [\"{}\"]\n[keys]\ntrust = \"rotation\"\n{shared}\n",
            office.discovery_url()
        ),
    )
    .unwrap();
    let target = "https://wopi.example.test/wopi/files/42?access_token=tok";
    let proof = ProofSet::sign(target, ticks(0), &c, &c);
    let capture = dir.path().join("request.txt");
    let headers: String = proof.headers().iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
    std::fs::write(&capture, format!("GET {target}\n{headers}")).unwrap();
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_wopi-guard"))
            .args(["explain", "--request"])
            .arg(&capture)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "C is held, as the proxy holds it:\n{text}");
    assert!(text.contains("from [shared]") && text.contains("is held"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_pod_of_a_shared_fleet_trusts_no_new_node_on_first_use() {
    let redis = RedisServer::start(None);
    let (l2, l3) = two_nodes_on_one_port().await;
    let port = l2.local_addr().unwrap().port();
    let node2 = Arc::new(FakeOffice::start_on(l2, Signer::generate(2048)).await);
    let node3 = FakeOffice::start_on(l3, Signer::generate(2048)).await;
    let url = format!("http://office.test:{port}/hosting/discovery");
    let options = |addresses: &[&str]| Options {
        discovery_url: Some(url.clone()),
        discovery: "resolve_all = true".into(),
        extra: format!(
            "[keys]\ntrust = \"rotation\"\n[shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"",
            redis.url()
        ),
        resolver: Some(Resolver::Fixed(BTreeMap::from([(
            "office.test".to_string(),
            addresses.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect(),
        )]))),
        ..Options::default()
    };
    // The fleet's first instance sees only node .2 and trusts its key; the URL is founded.
    let first = Harness::start_on(node2.clone(), options(&["127.0.0.2"])).await;
    assert_eq!(get_with(&first, &signed_by(&first, &node2.current(), FILE)).await, 200);
    drop(first);
    // A pod started later (no cache file) resolves .3 too: it adopts .2's set and holds .3's key.
    let pod = Harness::start_on(node2.clone(), options(&["127.0.0.2", "127.0.0.3"])).await;
    assert_eq!(get_with(&pod, &signed_by(&pod, &node2.current(), FILE)).await, 200, ".2 adopted");
    let held = format!(
        "wopi_guard_proof_key_held{{source=\"{url}@127.0.0.3\",fingerprint=\"{}\"}} 1",
        fingerprint(&node3.current())
    );
    wait_metric(&pod, &held).await;
    assert_eq!(get_with(&pod, &signed_by(&pod, &node3.current(), FILE)).await, 500, ".3 is not trusted on first use");
}
