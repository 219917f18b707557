//! Forward-auth mode: directly, and behind a real nginx (`auth_request`) from Debian's packages.

use crate::common::*;

const FILE: &str = "/wopi/files/doc1?access_token=tok";
const AUTH: &str = "/_wopi-guard/auth";

fn options(trusted: &str) -> Options {
    let extra = format!("[forward_auth]\npath = \"{AUTH}\"\n[ip]\ntrusted_proxies = [\"{trusted}\"]");
    Options { proof: "allow_unsigned_from = [\"10.9.9.9/32\"]", extra, ..Options::default() }
}

async fn ask(
    h: &Harness,
    uri: Option<&str>,
    method: &str,
    proof: Option<&ProofSet>,
    more: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = h.client.get(h.local(AUTH)).header("X-Original-Method", method);
    if let Some(uri) = uri {
        request = request.header("X-Original-URI", uri);
    }
    for (n, v) in proof.map(|p| p.headers().to_vec()).unwrap_or_default() {
        request = request.header(n, v);
    }
    for (n, v) in more {
        request = request.header(*n, *v);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_for_the_original_request() {
    let h = Harness::start_with(options("127.0.0.1/32")).await;
    let proof = h.sign(FILE);
    assert_eq!(ask(&h, Some(FILE), "GET", Some(&proof), &[]).await.status(), 200);
    assert_eq!(ask(&h, Some(&FILE.replace("doc1", "doc2")), "GET", Some(&proof), &[]).await.status(), 500);
    assert_eq!(ask(&h, Some(FILE), "GET", None, &[]).await.status(), 500);
    assert_eq!(ask(&h, None, "GET", Some(&proof), &[]).await.status(), 400);
    // access_header becomes response headers; the client behind the proxy is from X-Forwarded-For.
    let unsigned = "/wopi/files/doc1?access_header=Authorization%3A%20Basic%20eHk%3D";
    let r = ask(&h, Some(unsigned), "GET", None, &[("X-Forwarded-For", "10.9.9.9")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["authorization"], "Basic eHk=");
    assert_eq!(h.forwarded(), 0, "forward-auth never forwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_proxies_may_ask() {
    let h = Harness::start_with(options("10.0.0.1/32")).await;
    assert_eq!(ask(&h, Some(FILE), "GET", Some(&h.sign(FILE)), &[]).await.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_shipped_nginx_example() {
    let h = Harness::start_with(options("127.0.0.1/32")).await;
    let pki = Pki::new("nginx-example");
    let nginx = Nginx::example(h.listen, h.host.addr(), &pki).await;
    let client = pki.client();
    let base = format!("https://{}", nginx.addr);
    let send = |target: String, proof: Option<ProofSet>| {
        let mut r = client.get(format!("{base}{target}"));
        for (n, v) in proof
            .map(|p| p.headers().iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            r = r.header(n, v);
        }
        r.send()
    };
    // nginx itself passes the raw target: the signature over public_url + target holds.
    assert_eq!(send(FILE.into(), Some(h.sign(FILE))).await.unwrap().status(), 200);
    let seen = h.host.last().unwrap();
    assert_eq!(seen.target, FILE);
    assert_eq!(seen.header("host"), Some("127.0.0.1"), "the host gets the name the client called, not the upstream's");
    // A refusal by wopi-guard (500) is an error for auth_request: nginx answers 500, forwards nothing.
    let before = h.forwarded();
    assert_eq!(send(FILE.replace("doc1", "doc2"), Some(h.sign(FILE))).await.unwrap().status(), 500);
    assert_eq!(send(FILE.into(), None).await.unwrap().status(), 500);
    assert_eq!(h.forwarded(), before);
    // access_header: wopi-guard's answer header becomes the host's Authorization (auth_request_set).
    let unsigned = "/wopi/files/doc1?access_header=Authorization%3A%20Basic%20eHk%3D";
    let h2 = Harness::start_with(Options {
        proof: "allow_unsigned_from = [\"127.0.0.0/8\"]",
        extra: format!("[forward_auth]\npath = \"{AUTH}\"\n[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]"),
        ..Options::default()
    })
    .await;
    let nginx2 = Nginx::example(h2.listen, h2.host.addr(), &pki).await;
    let r = client.get(format!("https://{}{unsigned}", nginx2.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h2.host.last().unwrap().header("authorization"), Some("Basic eHk="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_say_how_it_was_verified_and_keep_the_connection() {
    let mut options = options("127.0.0.1/32");
    options.extra.push_str("\n[forward]\nverified_header = true\n");
    let h = Harness::start_with(options).await;
    let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    let proof = h.sign(FILE);
    let signed = proof.headers().to_vec();
    let ask_raw = |uri: &str, more: &[(&str, &str)]| {
        let mut headers = vec![("X-Original-URI", uri), ("X-Original-Method", "GET")];
        headers.extend_from_slice(more);
        raw_head("GET", AUTH, &headers)
    };
    use tokio::io::AsyncWriteExt;
    // A refusal of a well-formed subrequest, then two admissions, all on one connection.
    let other = FILE.replace("doc1", "doc2");
    stream.write_all(ask_raw(&other, &signed).as_bytes()).await.unwrap();
    let (status, head, body) = read_answer(&mut stream).await.expect("an answer");
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    assert!(!head.contains("connection: close"), "{head}");
    assert!(!head.contains("x-wopi-guard-verified"), "{head}");

    stream.write_all(ask_raw(FILE, &signed).as_bytes()).await.unwrap();
    let (status, head, _) = read_answer(&mut stream).await.expect("an answer on the same connection");
    assert_eq!(status, 200);
    assert!(head.contains("x-wopi-guard-verified: proof\r\n"), "{head}");

    let unsigned = "/wopi/files/doc1?access_token=tok";
    stream.write_all(ask_raw(unsigned, &[("X-Forwarded-For", "10.9.9.9")]).as_bytes()).await.unwrap();
    let (status, head, _) = read_answer(&mut stream).await.expect("a third answer on the same connection");
    assert_eq!(status, 200);
    assert!(head.contains("x-wopi-guard-verified: unsigned-allowed\r\n"), "{head}");
    assert!(
        !closed_by_peer(&mut stream, std::time::Duration::from_secs(1)).await,
        "the connection stays open for the next subrequest"
    );
    assert_eq!(h.forwarded(), 0);
}
