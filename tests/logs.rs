//! No token, signature, access_header value or key material reaches the log, at trace level for
//! every crate (Pingora's own lines included), for forwarded, refused, forward-auth and failed
//! requests.

#[path = "it/common/mod.rs"]
mod common;

use common::*;

const TOKEN: &str = "SeCrEtToKeN0123456789";
const HEADER_SECRET: &str = "QmFzaWNTZWNyZXQ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    std::env::set_var("WOPI_GUARD_LOG", "trace");
    let buffer = captured_logs();

    let h = Harness::start().await;
    let host = h.host.addr();
    let key_modulus = h.office.current().modulus().to_vec();
    let target = format!("/wopi/files/1?access_token={TOKEN}&access_header=Authorization%3A%20Basic%20{HEADER_SECRET}");
    let proof = h.sign(&target);
    let mut request =
        h.client.get(h.local(&target)).header("X-Request-Id", "req-42").header("X-COOL-WOPI-ServerId", "node-7");
    for (n, v) in proof.headers() {
        request = request.header(n, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    let other = target.replace("/1?", "/2?");
    assert_eq!(h.send("GET", &other, Some(&proof), None).await.0, 500);
    assert_eq!(h.send("GET", &target, None, None).await.0, 500);
    let header_only = format!("/wopi/files/1?access_header=Authorization%3A%20Basic%20{HEADER_SECRET}");
    assert_eq!(h.send("GET", &header_only, None, None).await.0, 500);
    drop(h);

    // Forward-auth: the line names the rebuilt original URL (token hashed) and the verdict.
    let extra = "[forward_auth]\npath = \"/_auth\"\n[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]".to_string();
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    let fa_proof = h.sign(&target);
    for (id, proof) in [("fa-allowed", Some(&fa_proof)), ("fa-refused", None)] {
        let mut request = h
            .client
            .get(h.local("/_auth"))
            .header("X-Original-URI", &target)
            .header("X-Original-Method", "GET")
            .header("X-Request-Id", id);
        for (n, v) in proof.map(|p| p.headers().to_vec()).unwrap_or_default() {
            request = request.header(n, v);
        }
        let expected = if proof.is_some() { 200 } else { 500 };
        assert_eq!(request.send().await.unwrap().status(), expected, "{id}");
    }
    drop(h);

    let dead = free_port();
    let h = Harness::start_with(Options { upstream: Some(format!("http://{dead}")), ..Options::default() }).await;
    let proof = h.sign(&target);
    assert_eq!(h.send("GET", &target, Some(&proof), None).await.0, 502);
    drop(h);

    let logs = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("proof_invalid") && logs.contains("upstream request failed"),
        "the lines were captured:\n{logs}"
    );
    assert!(logs.contains("tok:"), "the token appears only as its hash");
    assert!(logs.contains(r#""operation":"CheckFileInfo""#), "lines name the WOPI operation");
    let access =
        logs.lines().find(|l| l.contains(r#""request_id":"req-42""#)).expect("the access line carries the request id");
    // The file id's hash, of the id in the target the gate checked (forward-auth's original one).
    let file = format!(r#""file":"{}""#, wopi_guard::redact::short_hash("file", b"1"));
    // The access line names the upstream member that answered; a failed one, the member tried.
    let upstream = format!(r#""upstream":"{host}""#);
    for field in
        [r#""server_id":"node-7""#, &file, r#""bytes_out":"#, r#""status":200"#, r#""verdict":"verified""#, &upstream]
    {
        assert!(access.contains(field), "{field} missing from {access}");
    }
    let line_of = |id: &str| {
        logs.lines()
            .find(|l| l.contains(&format!(r#""request_id":"{id}""#)))
            .unwrap_or_else(|| panic!("no line for {id}"))
    };
    let rebuilt = r#""url":"https://wopi.example.test/wopi/files/1?access_token=tok:"#;
    let allowed = line_of("fa-allowed");
    assert!(allowed.contains("forward-auth: allowed") && allowed.contains(rebuilt), "{allowed}");
    assert!(allowed.contains(r#""verdict":"verified""#) && allowed.contains(&file), "{allowed}");
    let refused = line_of("fa-refused");
    assert!(refused.contains(r#""reason":"proof_missing""#) && refused.contains(rebuilt), "{refused}");
    assert!(!allowed.contains(r#""upstream":"#) && !refused.contains(r#""upstream":"#), "nothing was forwarded");
    let failed = logs.lines().find(|l| l.contains("upstream request failed")).unwrap();
    assert!(failed.contains(&format!(r#""upstream":"{dead}""#)), "{failed}");
    assert!(logs.contains(r#""level":"TRACE""#), "the run was at trace level");
    let modulus = base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, key_modulus);
    // The signed URL is upper-cased, so a leak may be in any case.
    let lower = logs.to_lowercase();
    for secret in
        [TOKEN, HEADER_SECRET, &proof.proof[..40], &proof.proof_old[..40], &fa_proof.proof[..40], &modulus[..40]]
    {
        assert!(!lower.contains(&secret.to_lowercase()), "{secret} leaked into:\n{logs}");
    }
    let mut keys_tried = 0;
    for line in logs.lines() {
        let v =
            serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        // Typed values: no Rust debug text, lists as arrays, durations as whole microseconds.
        for (key, value) in v.as_object().unwrap() {
            if let Some(text) = value.as_str() {
                assert!(!text.starts_with("Some(") && text != "None", "{key} holds debug text: {line}");
            }
        }
        for key in ["duration_us", "upstream_us", "status", "bytes_in", "bytes_out"] {
            assert!(v.get(key).is_none_or(serde_json::Value::is_u64), "{key} is not an integer: {line}");
        }
        if let Some(client) = v.get("client") {
            assert!(client.as_str().is_some_and(|c| c.parse::<std::net::IpAddr>().is_ok()), "{line}");
        }
        if let Some(tried) = v.get("keys_tried") {
            keys_tried += 1;
            assert_eq!(v["reason"], "proof_invalid", "only a proof no key verified lists the keys: {line}");
            let tried = tried.as_array().unwrap_or_else(|| panic!("keys_tried is a list: {line}"));
            assert!(!tried.is_empty() && tried.iter().all(serde_json::Value::is_string), "{line}");
        }
        if v["reason"] == "proof_missing" {
            assert!(v.get("keys_tried").is_none(), "{line}");
        }
    }
    assert!(keys_tried >= 1, "the proof_invalid line lists its keys");
    let forwarded = logs.lines().find(|l| l.contains(r#""request_id":"req-42""#)).unwrap();
    assert!(forwarded.contains(r#""duration_us":"#) && forwarded.contains(r#""upstream_us":"#), "{forwarded}");
}
