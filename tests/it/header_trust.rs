//! The header-trust bypasses of the security review, each reproduced as the attack was made:
//! a client choosing its own address with `Forwarded` (behind the shipped nginx example), a
//! client-chosen forward-auth URI, PutFile without `X-WOPI-Override`, lookalike `access_token`
//! names, unparseable forwarded addresses sharing one bucket, path and method override headers,
//! and asterisk-form targets.

use crate::common::*;
use std::net::{IpAddr, Ipv4Addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FILE: &str = "/wopi/files/1?access_token=x";
const AUTH: &str = "/_wopi-guard/auth";

fn with(proof: &'static str, extra: &str) -> Options {
    Options { proof, extra: extra.to_string(), ..Options::default() }
}

/// The `reason` of every refusal line logged for `request_id`.
fn refusal_reasons(request_id: &str) -> Vec<String> {
    let logs = captured_logs();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(&format!(r#""request_id":"{request_id}""#)))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["reason"].as_str().or(v["reason"].as_str()).map(str::to_string))
        .collect()
}

/// Log lines (JSON) containing `needle`.
fn log_lines_with(needle: &str) -> Vec<String> {
    let logs = captured_logs();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    text.lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// Sends raw bytes; the status of the answer. A connection that closes without one, or an
/// answer that takes over 10 s, fails the test.
async fn raw_status(h: &Harness, request: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// An nginx config without the example's clearing of `Forwarded` on the auth subrequest, as
/// the example was when the review reproduced the attack: wopi-guard alone must hold.
const WITHOUT_CLEARING: (&str, &str) = (
    "proxy_set_header X-Forwarded-For $remote_addr;\n            proxy_set_header Forwarded \"\";\n        }",
    "proxy_set_header X-Forwarded-For $remote_addr;\n        }",
);

/// Review item 1, as reproduced: nginx running the example in front, wopi-guard trusting nginx,
/// an attacker at 127.0.0.2 claiming an `allow_unsigned_from` address with `Forwarded`. Checked
/// with the example as it was (no clearing: wopi-guard alone refuses) and as shipped now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_from_a_client_decides_nothing_behind_the_nginx_example() {
    captured_logs();
    let extra = format!(
        "[forward_auth]\npath = \"{AUTH}\"\n[ip]\nallow = [\"127.0.0.0/8\", \"192.0.2.0/24\"]\ntrusted_proxies = [\"127.0.0.1/32\"]"
    );
    let h = Harness::start_with(with("allow_unsigned_from = [\"192.0.2.0/24\"]", &extra)).await;
    let pki = Pki::new("header-trust");
    let root = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let attacker = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    for (edits, id) in [(&[WITHOUT_CLEARING][..], "review-1-unclear"), (&[][..], "review-1-shipped")] {
        let nginx = Nginx::example_edited(h.listen, h.host.addr(), &pki, edits).await;
        let url = format!("https://{}{FILE}", nginx.addr);
        let r = attacker
            .post(&url)
            .header("X-WOPI-Override", "DELETE")
            .header("Forwarded", "for=192.0.2.7")
            .header("X-Request-Id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{id}: wopi-guard refused (proof_missing), so nginx answers 500");
        assert_eq!(h.forwarded(), 0, "{id}: the DELETE never reached the host");
        assert_eq!(refusal_reasons(id), vec!["proof_missing"], "{id}");
        // The refusal names the client nginx saw, not the one the attacker claimed.
        let line = log_lines_with(&format!(r#""request_id":"{id}""#)).pop().unwrap();
        assert!(line.contains("127.0.0.2") && !line.contains("192.0.2.7"), "{line}");
    }

    // A genuine signed request through the shipped example still passes, and the host gets
    // neither the client's Forwarded nor its override headers.
    let nginx = Nginx::example(h.listen, h.host.addr(), &pki).await;
    let url = format!("https://{}{FILE}", nginx.addr);
    let r = attacker
        .get(&url)
        .headers(header_map(&h.sign(FILE)))
        .header("Forwarded", "for=192.0.2.7")
        .header("X-Original-URI", "/elsewhere")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = h.host.last().unwrap();
    assert_eq!(seen.header("forwarded"), None);
    assert_eq!(seen.header("x-original-uri"), None);
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.2"));
}

/// Item 1 directly: `forwarded_header` decides which header is read, and the other one is
/// removed before forwarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_forwarding_header_is_read_and_the_other_removed() {
    let unsigned = "allow_unsigned_from = [\"192.0.2.0/24\"]";
    let h = Harness::start_with(with(unsigned, "[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]")).await;
    let claim = |h: &Harness, name: &'static str| {
        h.client.post(h.local(FILE)).header("X-WOPI-Override", "DELETE").header(name, "for=192.0.2.7").send()
    };
    assert_eq!(claim(&h, "Forwarded").await.unwrap().status(), 500, "Forwarded is not read by default");
    assert_eq!(h.forwarded(), 0);
    let r = h.client.get(h.local(FILE)).header("X-Forwarded-For", "192.0.2.7").send().await.unwrap();
    assert_eq!(r.status(), 200, "X-Forwarded-For from the trusted proxy is");
    let r = h.client.get(h.local("/status")).header("Forwarded", "for=192.0.2.7").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.host.last().unwrap().header("forwarded"), None, "the unread header is removed");

    let extra = "[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\nforwarded_header = \"forwarded\"";
    let h = Harness::start_with(with(unsigned, extra)).await;
    let r = h.client.get(h.local(FILE)).header("X-Forwarded-For", "192.0.2.7").send().await.unwrap();
    assert_eq!(r.status(), 500, "X-Forwarded-For is not read with forwarded_header = \"forwarded\"");
    let r = h.client.get(h.local(FILE)).header("Forwarded", "for=192.0.2.7").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = h.host.last().unwrap();
    assert_eq!(seen.header("forwarded"), Some("for=192.0.2.7, for=127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-for"), Some("192.0.2.7, 127.0.0.1"), "rebuilt from Forwarded");
    let r = h.client.get(h.local("/status")).header("X-Forwarded-For", "6.6.6.6").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.host.last().unwrap().header("x-forwarded-for"), Some("127.0.0.1"), "the client's copy is gone");
}

/// Item 1's second effect: a client could spend another client's `per_ip` budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_spend_another_clients_budget_with_forwarded() {
    let extra = "[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[rate_limit.per_ip]\nper_second = 0.01\nburst = 2";
    let h = Harness::start_with(with("", extra)).await;
    for want in [200, 200, 429] {
        let r = h
            .client
            .get(h.local("/status"))
            .header("X-Forwarded-For", "203.0.113.5")
            .header("Forwarded", "for=198.51.100.1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "203.0.113.5 spends its own budget");
    }
    // 198.51.100.1's budget is untouched: its two requests pass.
    for _ in 0..2 {
        let r = h.client.get(h.local("/status")).header("X-Forwarded-For", "198.51.100.1").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

fn forward_auth(uri_header: Option<&str>) -> Options {
    let uri = uri_header.map(|u| format!("uri_header = \"{u}\"\n")).unwrap_or_default();
    let extra = format!("[forward_auth]\npath = \"{AUTH}\"\n{uri}[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]");
    with("", &extra)
}

/// Review item 2: Traefik copies every client header into the auth request, then sets its own
/// X-Forwarded-Uri; a client-sent X-Original-URI must not decide what is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_reads_only_the_configured_uri_header() {
    captured_logs();
    // Under the default (nginx's X-Original-URI), Traefik's names are the other pair: refused.
    let h = Harness::start_with(forward_auth(None)).await;
    let asked = [("X-Original-URI", "/health"), ("X-Original-Method", "GET")];
    for (extra, want, why) in [
        (Some(("X-Forwarded-Uri", FILE)), 400, "both URI headers"),
        (Some(("X-Forwarded-Method", "POST")), 400, "both method headers"),
        // Override headers in the subrequest would reach the host from the front proxy.
        (Some(("X-HTTP-Method-Override", "DELETE")), 400, "an override header"),
        (None, 200, "an unprotected path, asked about properly"),
    ] {
        let pairs: Vec<_> = asked.into_iter().chain(extra).collect();
        assert_eq!(ask_auth(&h, &pairs, why).await.status(), want, "{why}");
    }
    assert_eq!(ask_auth(&h, &asked[..1], "no-method").await.status(), 400, "no method header");
    assert_eq!(h.forwarded(), 0, "forward-auth never forwards");

    let h = Harness::start_with(forward_auth(Some("x-forwarded-uri"))).await;
    // The attack: Traefik's own pair for the DELETE, plus the client's X-Original-URI: /health.
    let attack = [
        ("X-Forwarded-Uri", FILE),
        ("X-Forwarded-Method", "POST"),
        ("X-WOPI-Override", "DELETE"),
        ("X-Original-URI", "/health"),
    ];
    assert_eq!(ask_auth(&h, &attack, "review-2").await.status(), 400);
    assert_eq!(refusal_reasons("review-2"), vec!["forward_auth_headers"]);
    // Without the client's copy, Traefik's pair is checked: an unsigned DELETE is refused.
    assert_eq!(ask_auth(&h, &attack[..3], "review-2b").await.status(), 500);
    assert_eq!(refusal_reasons("review-2b"), vec!["proof_missing"]);
    // A signed one passes.
    let proof = h.sign(FILE);
    let mut pairs = vec![("X-Forwarded-Uri", FILE), ("X-Forwarded-Method", "GET")];
    pairs.extend(proof.headers());
    assert_eq!(ask_auth(&h, &pairs, "review-2c").await.status(), 200);
    assert_eq!(h.forwarded(), 0, "forward-auth never forwards");
}

/// Asks the forward-auth endpoint with these headers (and `X-Request-Id: id`, when plain).
async fn ask_auth(h: &Harness, pairs: &[(&str, &str)], id: &str) -> reqwest::Response {
    let mut r = h.client.get(h.local(AUTH)).header("X-Request-Id", id);
    for (n, v) in pairs {
        r = r.header(*n, *v);
    }
    r.send().await.unwrap()
}

async fn post(h: &Harness, target: &str, proof: &ProofSet, overrides: &[&str], body: Vec<u8>) -> (u16, String) {
    let mut r = h.client.post(h.local(target)).headers(header_map(proof)).body(body);
    for o in overrides {
        r = r.header("X-WOPI-Override", *o);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Review item 3: richdocuments' putFile never reads X-WOPI-Override, so a POST to …/contents
/// without it is a PutFile and every PutFile rule applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn putfile_rules_hold_without_an_override() {
    let contents = "/wopi/files/1/contents?access_token=x";
    let h = Harness::start_with(with("", "[operations]\ndeny = [\"PutFile\"]")).await;
    let proof = h.sign(contents);
    let (status, body) = post(&h, contents, &proof, &[], vec![7; 64 << 10]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(post(&h, contents, &proof, &["LOCK"], vec![7; 16]).await.0, 403, "any override at …/contents");
    assert_eq!(h.forwarded(), 0);

    let h = Harness::start_with(with("", "[operations.max_body]\nPutFile = 1024")).await;
    let proof = h.sign(contents);
    let (status, body) = post(&h, contents, &proof, &[], vec![7; 64 << 10]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(post(&h, contents, &proof, &[], vec![7; 1024]).await.0, 200, "within the limit");
    assert_eq!(h.host.last().unwrap().body_len, 1024);

    // Two overrides: the gate would read the first, PHP the last.
    let file = "/wopi/files/1?access_token=x";
    let proof = h.sign(file);
    let before = h.forwarded();
    let (status, body) = post(&h, file, &proof, &["LOCK", "DELETE"], Vec::new()).await;
    assert_eq!((status, body.as_str()), (400, "wopi-guard: refused: more than one X-WOPI-Override header\n"));
    assert_eq!(post(&h, file, &proof, &["LOCK"], Vec::new()).await.0, 200);
    assert_eq!(h.forwarded(), before + 1);
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"verdict="override_ambiguous"} 1"#), "{metrics}");
}

/// Review item 4: names a PHP host reads as `access_token` count as a second token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_token_names_are_ambiguous() {
    let h = Harness::start_with(with("allow_unsigned_from = [\"127.0.0.1/32\"]", "")).await;
    for second in ["access%5Ftoken=B", "access.token=B", "access_token[]=B", "access+token=B", "Access_Token=B"] {
        let target = format!("/wopi/files/1?access_token=A&{second}");
        let proof = h.sign(&target);
        let (status, body) = h.send("GET", &target, Some(&proof), None).await;
        assert_eq!((status, body.as_str()), (500, "wopi-guard: refused: more than one access_token\n"), "{second}");
        // Unsigned, from allow_unsigned_from: refused as well.
        let (status, body) = h.send("GET", &target, None, None).await;
        assert_eq!((status, body.as_str()), (500, "wopi-guard: refused: more than one access_token\n"), "{second}");
    }
    assert_eq!(h.forwarded(), 0);
    let fine = "/wopi/files/1?access_token=A&access_token_ttl=0";
    assert_eq!(h.signed_get(fine).await.0, 200, "a different name is a different parameter");
}

/// Review item 5: `ip:port` entries (Azure Application Gateway) are that address; an entry that
/// is no address is refused with its reason logged, never put in a shared bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_ports_name_the_client_and_garbage_is_refused() {
    captured_logs();
    let extra = "[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[rate_limit.per_ip]\nper_second = 0.01\nburst = 1";
    let h = Harness::start_with(with("", extra)).await;
    let from = |xff: &'static str, id: &'static str| {
        h.client.get(h.local("/status")).header("X-Forwarded-For", xff).header("X-Request-Id", id).send()
    };
    assert_eq!(from("203.0.113.9:1111", "p1").await.unwrap().status(), 200);
    assert_eq!(from("203.0.113.9:2222", "p2").await.unwrap().status(), 429, "same address, other port");
    assert_eq!(from("203.0.113.10:1111", "p3").await.unwrap().status(), 200, "another address has its own budget");
    assert_eq!(from("[2001:db8::5]:443", "p4").await.unwrap().status(), 200);
    assert_eq!(from("2001:db8::5", "p5").await.unwrap().status(), 429, "the same IPv6 client");
    assert_eq!(from("fe80::1%eth0", "p6").await.unwrap().status(), 200);
    // Unknown clients: each refused, none shares a budget with another.
    for (xff, id) in [("garbage", "u1"), ("other-garbage", "u2"), ("203.0.113.11:port", "u3")] {
        let r = from(xff, id).await.unwrap();
        assert_eq!(r.status(), 400, "{xff}");
        assert_eq!(r.text().await.unwrap(), "wopi-guard: refused: the client address cannot be determined\n");
        assert_eq!(refusal_reasons(id), vec!["client_unknown"]);
        let line = log_lines_with(&format!(r#""request_id":"{id}""#)).pop().unwrap();
        assert!(line.contains("not an IP address"), "the log says why: {line}");
    }
    assert_eq!(h.host.requests().len(), 4);
}

/// Review item 6: headers some frameworks route on never reach the host; the removal is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_method_override_headers_are_removed_and_logged() {
    captured_logs();
    let h = Harness::start().await;
    let overrides = [
        ("X-Original-URL", "/wopi/files/1"),
        ("X-Rewrite-URL", "/wopi/files/1"),
        ("X-Original-URI", "/wopi/files/1"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
    ];
    let mut r = h.client.get(h.local("/status")).header("X-Request-Id", "review-6").header("X-WOPI-Override", "LOCK");
    for (n, v) in overrides {
        r = r.header(n, v);
    }
    assert_eq!(r.send().await.unwrap().status(), 200);
    let seen = h.host.last().unwrap();
    assert_eq!(seen.target, "/status");
    for (name, _) in overrides {
        assert_eq!(seen.header(&name.to_ascii_lowercase()), None, "{name} reached the host");
    }
    assert_eq!(seen.header("x-wopi-override"), Some("LOCK"), "WOPI's own override stays");
    let stripped = log_lines_with("stripped a client-sent path or method override header");
    for (name, _) in overrides {
        let name = name.to_ascii_lowercase();
        assert!(stripped.iter().any(|l| l.contains(&format!(r#""header":"{name}""#))), "{name}: {stripped:?}");
    }
    assert!(stripped.iter().all(|l| !l.contains("DELETE") && !l.contains("/wopi/files/1")), "names only: {stripped:?}");
    // On a signed WOPI request too.
    let mut r = h.client.get(h.local(FILE)).headers(header_map(&h.sign(FILE)));
    for (n, v) in overrides {
        r = r.header(n, v);
    }
    assert_eq!(r.send().await.unwrap().status(), 200);
    let seen = h.host.last().unwrap();
    assert!(overrides.iter().all(|(n, _)| seen.header(&n.to_ascii_lowercase()).is_none()));
}

/// Review item 7: `*` is a request target only for OPTIONS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_form_is_only_for_options() {
    let h = Harness::start().await;
    for method in ["GET", "POST", "DELETE"] {
        let head = format!("{method} * HTTP/1.1\r\nHost: wopi.example.test\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(raw_status(&h, head.as_bytes()).await, 400, "{method} *");
    }
    assert_eq!(h.forwarded(), 0);
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"verdict="target_form_invalid"} 3"#), "{metrics}");
    let head = "OPTIONS * HTTP/1.1\r\nHost: wopi.example.test\r\n\r\n";
    assert_ne!(raw_status(&h, head.as_bytes()).await, 400, "OPTIONS * is not refused");
    assert!(!h.admin_text("/metrics").await.contains(r#"verdict="target_form_invalid"} 4"#));
}
