//! Policy end to end: allow-lists and forwarded addresses, rate limits, unsigned and exempt
//! requests, access_header, operation rules, header hygiene.

use crate::common::*;
use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";

/// Sends a raw request head and returns the response status.
async fn raw_status(h: &Harness, head: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

fn with(proof: &'static str, extra: &str) -> Options {
    Options { proof, extra: extra.to_string(), ..Options::default() }
}

async fn get(h: &Harness, target: &str, proof: Option<&ProofSet>, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = h.client.get(h.local(target));
    for (n, v) in proof.map(|p| p.headers().to_vec()).unwrap_or_default() {
        request = request.header(n, v);
    }
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_refuses_before_any_proof_work() {
    let h = Harness::start_with(with("", "[ip]\nallow = [\"10.0.0.0/8\"]")).await;
    let (status, body) = h.signed_get(FILE).await;
    assert_eq!(status, 403, "{body}");
    // A forgery gets the same 403, not the proof refusal: no RSA work for outsiders.
    assert_eq!(h.send("GET", FILE, None, None).await.0, 403);
    // Forwarded addresses from an untrusted peer are ignored.
    let r = get(&h, FILE, Some(&h.sign(FILE)), &[("X-Forwarded-For", "10.1.2.3")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(h.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_chains_name_the_client() {
    let extra = "[ip]\nallow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\ntrusted_proxies = [\"127.0.0.1/32\"]";
    let h = Harness::start_with(with("", extra)).await;
    let proof = h.sign(FILE);
    assert_eq!(get(&h, FILE, Some(&proof), &[("X-Forwarded-For", "10.1.2.3")]).await.status(), 200);
    assert_eq!(get(&h, FILE, Some(&proof), &[("X-Forwarded-For", "[2001:db8::5]:443")]).await.status(), 200);
    // `Forwarded` is not the configured header (tests/it/header_trust.rs): the client is the peer.
    assert_eq!(get(&h, FILE, Some(&proof), &[("Forwarded", "for=\"[2001:db8::5]:443\"")]).await.status(), 403);
    // The right-most untrusted hop decides, whatever the client wrote on the left.
    let r = get(&h, FILE, Some(&proof), &[("X-Forwarded-For", "10.1.2.3, 192.0.2.1")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(get(&h, FILE, Some(&proof), &[("X-Forwarded-For", "garbage")]).await.status(), 400, "unknown client");
    // The upstream sees the chain extended by our peer.
    let _ = get(&h, FILE, Some(&proof), &[("X-Forwarded-For", "10.1.2.3")]).await;
    assert_eq!(h.host.last().unwrap().header("x-forwarded-for"), Some("10.1.2.3, 127.0.0.1"));
    assert_eq!(h.forwarded(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_gives_429_with_retry_after() {
    let h = Harness::start_with(with("", "[rate_limit.per_ip]\nper_second = 0.2\nburst = 3")).await;
    for _ in 0..3 {
        assert_eq!(h.signed_get(FILE).await.0, 200);
    }
    let r = get(&h, FILE, Some(&h.sign(FILE)), &[]).await;
    assert_eq!(r.status(), 429);
    let retry: u32 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=15).contains(&retry), "retry-after {retry}");
    assert_eq!(h.forwarded(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_token_and_per_file_limits_count_only_admitted_requests() {
    let extra = "[rate_limit.per_token]\nper_second = 100\nburst = 100\n[rate_limit.per_token.operations.PutFile]\nper_second = 0.1\nburst = 1\n\
                 [rate_limit.per_file]\nper_second = 0.1\nburst = 2";
    let h = Harness::start_with(with("", extra)).await;
    // Forgeries naming the victim's token and file spend nothing.
    let forged = ProofSet::sign(&h.public(FILE), ticks(0), &Signer::generate(2048), &Signer::generate(2048));
    for _ in 0..5 {
        assert_eq!(h.send("GET", FILE, Some(&forged), None).await.0, 500);
    }
    let put = "/wopi/files/doc9/contents?access_token=tok-put";
    let proof = h.sign(put);
    assert_eq!(h.send("POST", put, Some(&proof), Some(b"v1".to_vec())).await.0, 200);
    let (status, _) = h.send("POST", put, Some(&proof), Some(b"v2".to_vec())).await;
    assert_eq!(status, 429, "one PutFile per 10 s per token");
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(h.signed_get(FILE).await.0, 429, "two requests per file, then the file's budget is spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_pass_only_from_the_allowed_networks() {
    let h = Harness::start_with(with("allow_unsigned_from = [\"127.0.0.1/32\"]", "")).await;
    assert_eq!(h.send("GET", "/wopi/files/1", None, None).await.0, 200);
    // Proof headers that do not verify are refused wherever they come from.
    let mut bad = h.sign(FILE);
    bad.proof = "AAAA".into();
    bad.proof_old = "AAAA".into();
    assert_eq!(h.send("GET", FILE, Some(&bad), None).await.0, 500);
    let r = get(&h, "/wopi/files/1", None, &[("X-WOPI-TimeStamp", "1")]).await;
    assert_eq!(r.status(), 500, "any proof header present means the proof is checked");
    drop(h);

    let h = Harness::start_with(with("allow_unsigned_from = [\"10.0.0.0/8\"]", "")).await;
    let (status, body) = h.send("GET", "/wopi/files/1", None, None).await;
    assert_eq!((status, body.contains("no WOPI proof")), (500, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exempt_paths_skip_the_proof_but_not_the_policy() {
    let h = Harness::start_with(with(
        "exempt_paths = [\"/wopi/settings\"]",
        "[rate_limit.per_ip]\nper_second = 0.1\nburst = 2",
    ))
    .await;
    assert_eq!(h.send("GET", "/wopi/settings?x=1", None, None).await.0, 200);
    assert_eq!(h.send("GET", "/wopi/files/1", None, None).await.0, 500);
    assert_eq!(h.send("GET", "/wopi/settings", None, None).await.0, 429);
    drop(h);
    let h = Harness::start_with(with("exempt_paths = [\"/wopi/settings\"]", "[ip]\nallow = [\"10.0.0.0/8\"]")).await;
    assert_eq!(h.send("GET", "/wopi/settings", None, None).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_header_becomes_real_headers_and_leaves_the_url() {
    let names = "[forward]\naccess_header_names = [\"Authorization\", \"X-Tenant\"]";
    let h = Harness::start_with(with("allow_unsigned_from = [\"127.0.0.1/32\"]", names)).await;
    let target = "/wopi/files/7?access_header=Authorization%3A%20Basic%20dXNlcjpwYXNz%0D%0AX-Tenant%3A%20a%0D%0AHost%3A%20evil%0D%0AX-WOPI-Override%3A%20DELETE&permission=edit";
    let r = get(&h, target, None, &[("Authorization", "Bearer client-sent"), ("X-Tenant", "client")]).await;
    assert_eq!(r.status(), 200);
    let seen = h.host.last().unwrap();
    assert_eq!(seen.target, "/wopi/files/7?permission=edit");
    assert_eq!(seen.header("authorization"), Some("Basic dXNlcjpwYXNz"));
    assert_eq!(seen.headers.iter().filter(|(n, _)| n == "authorization").count(), 1, "client copy replaced");
    assert_eq!(seen.header("x-tenant"), Some("a"));
    assert_eq!(seen.header("x-wopi-override"), None);
    assert!(seen.header("host").unwrap().starts_with("127.0.0.1"), "Host not overridden");

    // access_token wins: no headers set, the parameter still leaves the URL.
    let both = "/wopi/files/7?access_token=t&access_header=X-Tenant%3A%20b";
    let _ = get(&h, both, Some(&h.sign(both)), &[]).await;
    let seen = h.host.last().unwrap();
    assert_eq!((seen.target.as_str(), seen.header("x-tenant")), ("/wopi/files/7?access_token=t", None));

    // Malformed: 400, never forwarded.
    let before = h.forwarded();
    assert_eq!(get(&h, "/wopi/files/7?access_header=%zz", None, &[]).await.status(), 400);
    let huge = format!("/wopi/files/7?access_header=X-A%3A%20{}", "a".repeat(9000));
    assert_eq!(get(&h, &huge, None, &[]).await.status(), 400);
    assert_eq!(h.forwarded(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_can_be_denied_and_bodies_limited() {
    let extra = "[operations]\ndeny = [\"DELETE\", \"RenameFile\"]\n[operations.max_body]\nPutFile = \"1MiB\"";
    let h = Harness::start_with(with("", extra)).await;
    let file = "/wopi/files/doc1?access_token=t";
    let proof = h.sign(file);
    for over in ["DELETE", "RENAME_FILE"] {
        let mut request = h.client.post(h.local(file)).header("X-WOPI-Override", over);
        for (n, v) in proof.headers() {
            request = request.header(n, v);
        }
        assert_eq!(request.send().await.unwrap().status(), 403, "{over}");
    }
    let contents = "/wopi/files/doc1/contents?access_token=t";
    let proof = h.sign(contents);
    assert_eq!(h.send("POST", contents, Some(&proof), Some(vec![0; 1 << 20])).await.0, 200, "exactly the limit");
    // Declared Content-Length over the limit: refused from the head alone, body never read.
    let head = format!(
        "POST {contents} HTTP/1.1\r\nHost: x\r\nX-WOPI-Override: PUT\r\nX-WOPI-Proof: {}\r\nX-WOPI-TimeStamp: {}\r\nContent-Length: {}\r\n\r\n",
        proof.proof,
        proof.timestamp,
        2 << 20
    );
    assert_eq!(raw_status(&h, &head).await, 413);
    // Chunked (no Content-Length): refused while streaming, the host never gets a whole body.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..32).map(|_| Ok(vec![1u8; 64 * 1024])).collect();
    let mut request = h.client.post(h.local(contents)).header("X-WOPI-Override", "PUT");
    for (n, v) in proof.headers() {
        request = request.header(n, v);
    }
    if let Ok(r) = request.body(reqwest::Body::wrap_stream(stream::iter(chunks))).send().await {
        assert_eq!(r.status(), 413, "streamed body over the limit");
    }
    assert_eq!(
        h.host.requests().iter().filter(|r| r.method == "POST").count(),
        1,
        "only the in-limit PutFile arrived whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeouts_are_per_operation() {
    let h = Harness::start_with(with("", "[operations.read_timeout]\nCheckFileInfo = \"300ms\"")).await;
    assert_eq!(h.signed_get("/wopi/files/1?access_token=t&delay_ms=1500").await.0, 504);
    let (status, _) = h.signed_get("/wopi/files/1/contents?access_token=t&delay_ms=1500").await;
    assert_eq!(status, 200, "GetFile keeps the general read timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_ours_and_verification_is_vouched_for() {
    let h = Harness::start_with(with("allow_unsigned_from = [\"127.0.0.1/32\"]", "[forward]\nverified_header = true"))
        .await;
    let spoof = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"), ("X-WOPI-Guard-Verified", "proof")];
    let _ = get(&h, FILE, Some(&h.sign(FILE)), &spoof).await;
    let seen = h.host.last().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-wopi-guard-verified"), Some("proof"));
    assert_eq!(seen.headers.iter().filter(|(n, _)| n == "x-wopi-guard-verified").count(), 1);
    let _ = get(&h, "/wopi/files/2", None, &spoof).await;
    assert_eq!(h.host.last().unwrap().header("x-wopi-guard-verified"), Some("unsigned-allowed"));
    let _ = get(&h, "/elsewhere", None, &spoof).await;
    assert_eq!(h.host.last().unwrap().header("x-wopi-guard-verified"), None, "an unprotected path is not vouched for");
}
