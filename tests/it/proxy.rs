//! End to end through the proxy: what is forwarded, what is refused and why.

use crate::common::*;
use std::time::Duration;

const FILE: &str = "/wopi/files/doc1?access_token=tok-123&access_token_ttl=0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_request_reaches_host_unchanged() {
    let h = Harness::start().await;
    let target = "/wopi/files/doc1?access_token=a%2Fb%2Bc&permission=edit&z=%7E";
    let proof = h.sign(target);
    let response = h
        .client
        .get(h.local(target))
        .header("X-WOPI-Proof", &proof.proof)
        .header("X-WOPI-ProofOld", &proof.proof_old)
        .header("X-WOPI-TimeStamp", &proof.timestamp)
        .header("X-COOL-WOPI-ServerId", "node-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = h.host.last().expect("forwarded");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, target, "path and query reach the host byte for byte");
    assert_eq!(seen.header("x-wopi-proof"), Some(proof.proof.as_str()));
    assert_eq!(seen.header("x-cool-wopi-serverid"), Some("node-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgeries_are_refused_and_never_forwarded() {
    let h = Harness::start().await;
    let proof = h.sign(FILE);

    let other = FILE.replace("doc1", "doc2");
    assert_eq!(h.send("GET", &other, Some(&proof), None).await.0, 500, "tampered URL");
    let token = FILE.replace("tok-123", "tok-999");
    assert_eq!(h.send("GET", &token, Some(&proof), None).await.0, 500, "tampered token");
    let case = FILE.replace("doc1", "DOC1");
    assert_eq!(h.send("GET", &case, Some(&proof), None).await.0, 200, "the signed URL is uppercased");

    let stale = h.office.sign(&h.public(FILE), ticks(-21 * 60));
    let (status, body) = h.send("GET", FILE, Some(&stale), None).await;
    assert_eq!((status, body.contains("too old")), (500, true), "{body}");

    let future = h.office.sign(&h.public(FILE), ticks(6 * 60));
    let (status, body) = h.send("GET", FILE, Some(&future), None).await;
    assert_eq!((status, body.contains("future")), (500, true), "{body}");

    let (status, body) = h.send("GET", FILE, None, None).await;
    assert_eq!((status, body.contains("no WOPI proof")), (500, true), "{body}");

    let mut garbled = proof.clone();
    garbled.proof = "!!!not base64!!!".into();
    garbled.proof_old = String::new();
    assert_eq!(h.send("GET", FILE, Some(&garbled), None).await.0, 500, "undecodable proof");

    let mut bad_time = proof.clone();
    bad_time.timestamp = "yesterday".into();
    let (status, body) = h.send("GET", FILE, Some(&bad_time), None).await;
    assert_eq!((status, body.contains("TimeStamp")), (500, true), "{body}");

    let doubled = format!("{FILE}&access_token=tok-123");
    let proof2 = h.sign(&doubled);
    let (status, body) = h.send("GET", &doubled, Some(&proof2), None).await;
    assert_eq!(status, 500, "two access_tokens");
    assert_eq!(body, wopi_guard::refusal::Refusal::TokenAmbiguous.body(), "refused for the token, not the proof");
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"verdict="token_ambiguous"} 1"#), "{metrics}");

    assert_eq!(h.forwarded(), 1, "only the case-changed request was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_key_only_on_proofold_is_not_genuine() {
    let h = Harness::start().await;
    let first = h.office.current();
    h.office.rotate();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = h.office.current();
    let only_new = ProofSet::sign(&h.public(FILE), ticks(0), &second, &second);
    assert_eq!(h.send("GET", FILE, Some(&only_new), None).await.0, 200, "re-fetch brings current=second, old=first");
    // ProofOld by our OLD key, Proof by an unknown key: not genuine (docs/proof.md §2).
    let intruder = Signer::generate(2048);
    let sneaky = ProofSet::sign(&h.public(FILE), ticks(0), &intruder, &first);
    assert_eq!(h.send("GET", FILE, Some(&sneaky), None).await.0, 500);
    assert_eq!(h.forwarded(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_refused_and_refetches_are_bounded() {
    let h = Harness::start().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = h.office.fetches();
    let intruder = Signer::generate(2048);
    let forged = ProofSet::sign(&h.public(FILE), ticks(0), &intruder, &intruder);
    let sends = (0..40).map(|_| h.send("GET", FILE, Some(&forged), None));
    let results = futures_util::future::join_all(sends).await;
    assert!(results.iter().all(|(status, _)| *status == 500));
    let fetched = h.office.fetches() - before;
    assert!((1..=2).contains(&fetched), "40 bad requests caused {fetched} discovery fetches");
    assert_eq!(h.forwarded(), 0);
    // The re-read found the same keys (the others of the burst waited for it). One more forgery
    // within min_refresh_interval may not re-read.
    assert_eq!(h.send("GET", FILE, Some(&forged), None).await.0, 500);
    let metrics = h.admin_text("/metrics").await;
    let fetches = |outcome: &str| -> u64 {
        let label = format!("outcome=\"{outcome}\"");
        metrics
            .lines()
            .filter(|l| l.starts_with("wopi_guard_discovery_fetches_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(fetches("unchanged") as usize, fetched, "{metrics}");
    assert!(fetches("rate_limited") >= 1, "{metrics}");
    assert_eq!(fetches("updated"), 1, "the first read at start: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_by_an_old_key_re_reads_discovery_in_the_background() {
    let h = Harness::start().await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // past min_refresh_interval
    let before = h.office.fetches();
    h.office.rotate();
    assert_eq!(h.signed_get(FILE).await.0, 200, "ProofOld verifies with the key we hold as current");
    // No other request: the re-read happens on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.office.fetches() == before {
        assert!(std::time::Instant::now() < deadline, "no re-read after an old-key verify");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The office server's new key is now ours: a proof by it alone verifies with no fetch.
    let metrics_updated = "outcome=\"updated\"} 2";
    for _ in 0..200 {
        if h.admin_text("/metrics").await.contains(metrics_updated) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fetched = h.office.fetches();
    let new = h.office.current();
    let only_new = ProofSet::sign(&h.public(FILE), ticks(0), &new, &new);
    assert_eq!(h.send("GET", FILE, Some(&only_new), None).await.0, 200);
    assert_eq!(h.office.fetches(), fetched, "the new key was already in force");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_followed() {
    let h = Harness::start().await;
    // One step: Proof by a new key, ProofOld by the key we hold -> accepted at once.
    h.office.rotate();
    assert_eq!(h.signed_get(FILE).await.0, 200, "ProofOld verifies with our current key");
    // Two more steps: neither key known -> one re-fetch, then accepted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.office.rotate();
    h.office.rotate();
    let before = h.office.fetches();
    assert_eq!(h.signed_get(FILE).await.0, 200, "accepted after re-reading discovery");
    assert!(h.office.fetches() > before);
    // We refreshed, the client did not: Proof by the key that is now our old key.
    let old = h.office.old().unwrap();
    let lagging = ProofSet::sign(&h.public(FILE), ticks(0), &old, &old);
    assert_eq!(h.send("GET", FILE, Some(&lagging), None).await.0, 200, "Proof verifies with our old key");
    assert_eq!(h.forwarded(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_down_keeps_last_known_good_keys() {
    let h = Harness::start().await;
    h.office.set_behaviour(DiscoveryBehaviour::Unavailable);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
    // A failing proof triggers a re-fetch that fails: keys stay, the forgery is refused.
    let intruder = Signer::generate(2048);
    let forged = ProofSet::sign(&h.public(FILE), ticks(0), &intruder, &intruder);
    assert_eq!(h.send("GET", FILE, Some(&forged), None).await.0, 500);
    // A document without <proof-key> never replaces good keys either.
    h.office.set_behaviour(DiscoveryBehaviour::NoProofKey);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(h.send("GET", FILE, Some(&forged), None).await.0, 500);
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(h.admin_status("/ready").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keys_yet_means_503_until_discovery_answers() {
    let office = FakeOffice::start(2048).await;
    office.set_behaviour(DiscoveryBehaviour::Unavailable);
    let h = Harness::start_on(std::sync::Arc::new(office), Options { wait_ready: false, ..Options::default() }).await;
    assert_eq!(h.admin_status("/ping").await, 200);
    assert_eq!(h.admin_status("/ready").await, 503);
    let (status, body) = h.signed_get(FILE).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(h.send("GET", "/elsewhere", None, None).await.0, 200, "unprotected paths still pass");
    assert_eq!(h.forwarded(), 1);
    h.office.set_behaviour(DiscoveryBehaviour::Keys);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The next protected request kicks a background re-fetch; keys arrive shortly after.
    let _ = h.signed_get(FILE).await;
    h.wait_ready().await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_forwards_what_it_would_refuse() {
    let logs = captured_logs();
    let h = Harness::start_with(Options { proof: r#"mode = "monitor""#, ..Options::default() }).await;
    assert_eq!(h.send("GET", FILE, None, None).await.0, 200);
    assert_eq!(h.forwarded(), 1);
    // Both lines about the request (would-refuse, then forwarded) carry its client and the same
    // request id; the forwarded line is written after the answer: wait for it.
    let r = h.client.get(h.local(FILE)).header("X-Request-Id", "monitor-7").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut lines = Vec::new();
    for _ in 0..200 {
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        lines = text.lines().filter(|l| l.contains(r#""request_id":"monitor-7""#)).map(str::to_string).collect();
        if lines.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("would refuse") && lines[0].contains(r#""reason":"proof_missing""#), "{}", lines[0]);
    assert!(lines[1].contains(r#""verdict":"monitored""#), "{}", lines[1]);
    for line in &lines {
        assert!(line.contains(r#""client":"127.0.0.1""#), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_status_is_configurable_and_paths_are_normalised() {
    let h = Harness::start_with(Options { proof: "reject_status = 401", ..Options::default() }).await;
    for sneaky in ["/WOPI/files/x", "/%77opi/files/x", "//wopi/files/x", "/a/../wopi/files/x"] {
        assert_eq!(h.send("GET", sneaky, None, None).await.0, 401, "{sneaky}");
    }
    assert_eq!(h.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_and_range_answers_come_back_unchanged() {
    let h = Harness::start().await;
    let target = "/wopi/files/doc1/contents?access_token=tok";
    let proof = h.sign(target);
    let mut request =
        h.client.post(h.local(target)).header("X-WOPI-Override", "PUT").header("X-COOL-WOPI-Timestamp", "conflict");
    for (n, v) in proof.headers() {
        request = request.header(n, v);
    }
    let response = request.body("new content").send().await.unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(response.text().await.unwrap(), r#"{"COOLStatusCode":1010}"#);

    let target = "/wopi/files/doc1/contents?access_token=tok&size=100000";
    let proof = h.sign(target);
    let mut request = h.client.get(h.local(target)).header("Range", "bytes=10-19");
    for (n, v) in proof.headers() {
        request = request.header(n, v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(response.bytes().await.unwrap().len(), 10);
    assert_eq!(h.host.last().unwrap().header("range"), Some("bytes=10-19"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let dead = free_port();
    let h = Harness::start_with(Options { upstream: Some(format!("http://{dead}")), ..Options::default() }).await;
    let (status, body) = h.signed_get(FILE).await;
    assert_eq!(status, 502, "{body}");
    drop(h);

    let h = Harness::start_with(Options { timeouts: r#"upstream_read = "300ms""#, ..Options::default() }).await;
    let slow = "/wopi/files/doc1?access_token=t&delay_ms=3000";
    let (status, body) = h.signed_get(slow).await;
    assert_eq!(status, 504, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_survive_a_restart_while_discovery_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("keys.json");
    let discovery = format!("cache_file = \"{}\"", cache.display());
    let h = Harness::start_with(Options { discovery: discovery.clone(), ..Options::default() }).await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
    let office = h.office.clone();
    drop(h);
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert!(cached.contains(&office.discovery_url()), "{cached}");

    office.set_behaviour(DiscoveryBehaviour::Unavailable);
    let h = Harness::start_on(office, Options { discovery, ..Options::default() }).await;
    assert_eq!(h.signed_get(FILE).await.0, 200, "cached keys verify with discovery down");
    // A corrupt cache is ignored with a warning, never fatal.
    std::fs::write(&cache, "not json").unwrap();
    let office = h.office.clone();
    drop(h);
    let h = Harness::start_on(
        office,
        Options { discovery: format!("cache_file = \"{}\"", cache.display()), wait_ready: false, ..Options::default() },
    )
    .await;
    assert_eq!(h.admin_status("/ready").await, 503);
    assert_eq!(h.signed_get(FILE).await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_every_source_are_accepted_and_a_down_source_keeps_its_keys() {
    let second = FakeOffice::start(3072).await;
    let h = Harness::start_with(Options { more_sources: vec![second.discovery_url()], ..Options::default() }).await;
    for _ in 0..200 {
        if second.fetches() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let by_second = second.sign(&h.public(FILE), ticks(0));
    assert_eq!(h.send("GET", FILE, Some(&by_second), None).await.0, 200, "second source's key");
    assert_eq!(h.signed_get(FILE).await.0, 200, "first source's key");

    second.set_behaviour(DiscoveryBehaviour::Unavailable);
    h.office.rotate();
    h.office.rotate();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The first source rotated: a re-fetch of both runs; the second fails and keeps its keys.
    assert_eq!(h.signed_get(FILE).await.0, 200, "first source's new key after re-fetch");
    assert_eq!(h.send("GET", FILE, Some(&second.sign(&h.public(FILE), ticks(0))), None).await.0, 200);
    assert_eq!(h.forwarded(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upload_is_never_forwarded_and_the_next_request_is_clean() {
    let h = Harness::start().await;
    let target = "/wopi/files/doc1/contents?access_token=tok";
    let forged = ProofSet::sign(&h.public(target), ticks(0), &h.office.current(), &h.office.current());
    let tampered = "/wopi/files/doc2/contents?access_token=tok";
    // The refusal may arrive before the body is sent; the connection is closed after it.
    let result = h
        .client
        .post(h.local(tampered))
        .header("X-WOPI-Override", "PUT")
        .header("X-WOPI-Proof", &forged.proof)
        .header("X-WOPI-TimeStamp", &forged.timestamp)
        .body(vec![1u8; 8 << 20])
        .send()
        .await;
    if let Ok(response) = result {
        assert_eq!(response.status(), 500);
    }
    assert_eq!(h.forwarded(), 0);
    let proof = h.sign(target);
    let (status, _) = h.send("POST", target, Some(&proof), Some(vec![2u8; 1 << 20])).await;
    assert_eq!(status, 200);
    assert_eq!(h.host.last().unwrap().body_len, 1 << 20);
}

/// docs/proof.md §4: ONLYOFFICE signs a WOPISrc's default port as written (`https://host:443/…`),
/// Collabora and .NET drop it. `public_url` as configured is tried first, then the other form; the
/// access line says which verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ports_verify_in_either_form() {
    let logs = captured_logs();
    let office = std::sync::Arc::new(FakeOffice::start(2048).await);
    for (n, (public_url, with_port, without_port)) in [
        ("https://wopi.example.test:443", "as_configured", "default_port_dropped"),
        ("https://wopi.example.test", "default_port_added", "as_configured"),
        ("http://wopi.example.test:80", "as_configured", "default_port_dropped"),
        ("http://wopi.example.test", "default_port_added", "as_configured"),
    ]
    .into_iter()
    .enumerate()
    {
        let options = Options { public_url: Some(public_url.to_string()), ..Options::default() };
        let h = Harness::start_on(office.clone(), options).await;
        let (scheme, port) = if public_url.starts_with("https") { ("https", 443) } else { ("http", 80) };
        for (m, (signed_base, form)) in [
            (format!("{scheme}://wopi.example.test:{port}"), with_port), // ONLYOFFICE
            (format!("{scheme}://wopi.example.test"), without_port),     // Collabora, .NET
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("ports-{n}-{m}");
            let target = "/wopi/files/1?access_token=tok";
            let proof = h.office.sign(&format!("{signed_base}{target}"), ticks(0));
            let r = h.client.get(h.local(target)).headers(header_map(&proof)).header("X-Request-Id", &id).send();
            assert_eq!(r.await.unwrap().status(), 200, "{public_url} signed as {signed_base}");
            // The access line is written after the answer: wait for it.
            let needle = format!(r#""request_id":"{id}""#);
            let mut line = None;
            for _ in 0..200 {
                let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
                line = text.lines().find(|l| l.contains(&needle)).map(str::to_string);
                if line.is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            let line = line.expect("access line");
            assert!(line.contains(&format!(r#""url_form":"{form}""#)), "{public_url} / {signed_base}: {line}");
        }
        // Another port is not a form of either.
        let proof =
            h.office.sign(&format!("{scheme}://wopi.example.test:8443/wopi/files/1?access_token=tok"), ticks(0));
        assert_eq!(h.send("GET", "/wopi/files/1?access_token=tok", Some(&proof), None).await.0, 500);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_close_the_connection_and_forwarded_answers_keep_it() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start().await;
    let signed = |h: &Harness| {
        let proof = h.sign(FILE);
        let headers: Vec<(String, String)> =
            proof.headers().iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        raw_head("GET", FILE, &pairs)
    };
    // Forwarded answers keep the connection: two on one.
    let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    for _ in 0..2 {
        stream.write_all(signed(&h).as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut stream).await.expect("an answer").0, 200);
    }
    // A refusal says so and closes, even with a second request already sent behind it.
    let unsigned = raw_head("GET", FILE, &[]);
    stream.write_all(format!("{unsigned}{}", signed(&h)).as_bytes()).await.unwrap();
    let (status, head, _) = read_answer(&mut stream).await.expect("the refusal");
    assert_eq!(status, 500);
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(closed_by_peer(&mut stream, Duration::from_secs(5)).await, "closed after the refusal");
    assert_eq!(h.forwarded(), 2, "the request sent behind the refusal was never read");
}

/// docs/proof.md §4: ONLYOFFICE signs a token's `'` and sends `%27`. The request verifies, the
/// access line names the form, and the other spelling of the same request is a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onlyoffice_quote_sent_as_percent_27_verifies_and_is_one_message_with_its_other_spelling() {
    let logs = captured_logs();
    let h = Harness::start_with(Options { proof: "replay_cache = true", ..Options::default() }).await;
    let signed_over = "/wopi/files/1?access_token=o'neil";
    let sent = "/wopi/files/1?access_token=o%27neil";
    let proof = h.office.sign(&h.public(signed_over), ticks(0));
    let r = h.client.get(h.local(sent)).headers(header_map(&proof)).header("X-Request-Id", "quote-1").send();
    assert_eq!(r.await.unwrap().status(), 200);
    assert_eq!(h.host.last().unwrap().target, sent, "the host gets the target as sent");
    let mut line = None;
    for _ in 0..200 {
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        line = text.lines().find(|l| l.contains(r#""request_id":"quote-1""#)).map(str::to_string);
        if line.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let line = line.expect("an access line");
    assert!(line.contains(r#""url_form":"as_configured_quote_unescaped""#), "{line}");
    // The same signed request spelled with `'` (raw: an HTTP client library would encode it):
    // the bytes that verify are the same message.
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    let head = raw_head("GET", signed_over, &proof.headers());
    stream.write_all(head.as_bytes()).await.unwrap();
    let (status, _, body) = read_answer(&mut stream).await.expect("an answer");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(h.host.count(), 1, "only the first reached the host");
}
