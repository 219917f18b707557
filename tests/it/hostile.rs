//! Hostile HTTP: oversized request lines and headers, request smuggling shapes, and floods of idle
//! or slow-header connections. Each is refused or absorbed, never forwarded, and genuine signed
//! traffic is still served during it.

use crate::common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";

/// Sends raw bytes and returns the status of the answer (0: the connection was closed without
/// one). No answer and no close within 5 s is a failure: a hanging proxy does not pass.
async fn raw(h: &Harness, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(h.listen).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the proxy neither answered nor closed the connection within 5 s");
    let n = read.unwrap_or(0); // a reset is a close
    let text = String::from_utf8_lossy(&buf[..n]);
    if n == 0 {
        return 0;
    }
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

/// A signed request head for `target` with `extra` header lines.
fn signed_head(h: &Harness, method: &str, target: &str, extra: &str) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: wopi.example.test\r\n");
    for (n, v) in h.sign(target).headers() {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(extra);
    head.push_str("\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_targets_and_headers_are_refused() {
    let h = Harness::start().await;
    let long = format!("/wopi/files/doc1?access_token={}", "t".repeat(20_000));
    assert_eq!(raw(&h, signed_head(&h, "GET", &long, "").as_bytes()).await, 414);
    let junk: String = (0..100).map(|i| format!("X-Junk-{i}: {}\r\n", "j".repeat(1000))).collect();
    assert_eq!(raw(&h, signed_head(&h, "GET", FILE, &junk).as_bytes()).await, 431);
    // Past Pingora's own 1 MiB limit the parser refuses before wopi-guard sees anything.
    let huge: String = (0..1200).map(|i| format!("X-Junk-{i}: {}\r\n", "j".repeat(1000))).collect();
    assert_ne!(raw(&h, signed_head(&h, "GET", FILE, &huge).as_bytes()).await, 200);
    assert_eq!(h.forwarded(), 0, "none of them reached the host");
    assert_eq!(h.signed_get(FILE).await.0, 200, "genuine traffic still passes");
    let metrics = h.admin_text("/metrics").await;
    for verdict in ["target_too_long", "headers_too_large"] {
        assert!(metrics.contains(&format!(r#"verdict="{verdict}"}} 1"#)), "{verdict}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_configurable() {
    let h = Harness::start_with(Options {
        extra: "max_target_bytes = 1024\nmax_header_bytes = 4096\n".into(), // lands in [server]
        ..Options::default()
    })
    .await;
    let long = format!("/wopi/files/doc1?access_token={}", "t".repeat(1100));
    assert_eq!(raw(&h, signed_head(&h, "GET", &long, "").as_bytes()).await, 414);
    assert_eq!(raw(&h, signed_head(&h, "GET", FILE, &format!("X-A: {}\r\n", "a".repeat(3500))).as_bytes()).await, 431);
    assert_eq!(h.signed_get(FILE).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_and_never_forwarded() {
    let h = Harness::start().await;
    let put = "/wopi/files/doc1/contents?access_token=tok-123";
    // Smuggled to a path no proof protects, so it would be forwarded if it were ever parsed as a
    // request of its own.
    let smuggled = "GET /smuggled-target HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_ne!(raw(&h, smuggled.as_bytes()).await, 0, "alone, the inner request is answered");
    let heads = h.host.count_heads();
    assert_eq!(heads, 1, "alone, the inner request is forwarded");
    let shapes = [
        // Content-Length with Transfer-Encoding, either order, any case.
        format!("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("Transfer-Encoding: chunked\r\ncontent-length: 60\r\n\r\n0\r\n\r\n{smuggled}"),
        // Two different Content-Lengths.
        format!("Content-Length: 4\r\nContent-Length: 50\r\n\r\nbody{smuggled}"),
        // A final Transfer-Encoding that is not chunked.
        format!("Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"),
        // Obsolete line folding.
        format!("X-WOPI-Override: PUT\r\n folded\r\nContent-Length: 4\r\n\r\nbody{smuggled}"),
    ];
    for (i, shape) in shapes.iter().enumerate() {
        let head = signed_head(&h, "POST", put, "X-WOPI-Override: PUT\r\n");
        let request = head.trim_end_matches("\r\n").to_string() + "\r\n" + shape;
        let status = raw(&h, request.as_bytes()).await;
        assert!(status == 400 || status == 0, "shape {i}: {status}");
    }
    // Transfer-Encoding on HTTP/1.0, which has no chunked coding.
    let head = signed_head(&h, "POST", put, "X-WOPI-Override: PUT\r\n").replacen(" HTTP/1.1\r\n", " HTTP/1.0\r\n", 1);
    let request =
        head.trim_end_matches("\r\n").to_string() + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled;
    let status = raw(&h, request.as_bytes()).await;
    assert!(status == 400 || status == 0, "Transfer-Encoding on HTTP/1.0: {status}");
    assert_eq!(h.host.count_heads(), heads, "no part of any of them reached the host");
    assert_eq!(h.host.requests().iter().filter(|r| r.target == "/smuggled-target").count(), 1, "only the lone one");
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"verdict="ambiguous_framing"} 2"#), "{metrics}");
    assert_eq!(h.signed_get(FILE).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_do_not_starve_genuine_traffic() {
    let h = Harness::start().await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(h.listen).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(h.listen).await.unwrap();
        s.write_all(b"GET /wopi/files/doc1?access_token=x HTTP/1.1\r\nHost: a\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(h.signed_get(FILE).await.0, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "20 genuine requests took {:?}", started.elapsed());
    // The slow ones trickle a byte each: still no answer, nothing forwarded, nothing broken.
    for s in &mut slow {
        s.write_all(b"x").await.unwrap();
    }
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(h.forwarded(), 21);
    drop((idle, slow));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_header_is_dropped_after_the_read_timeout() {
    // Pingora's header read timeout is 60 s per read and not configurable in 0.9: this test
    // waits it out once, so that a change of that default is noticed.
    let h = Harness::start().await;
    let mut stalled = TcpStream::connect(h.listen).await.unwrap();
    stalled.write_all(b"GET /wopi/files/doc1?access_token=x HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(90), stalled.read(&mut buf)).await;
    let waited = started.elapsed();
    assert!(read.is_ok(), "still open after 90 s");
    assert!(waited >= Duration::from_secs(55) && waited < Duration::from_secs(75), "closed after {waited:?}");
    assert_eq!(h.forwarded(), 0);
    assert_eq!(h.signed_get(FILE).await.0, 200);
}
