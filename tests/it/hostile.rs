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

/// The proxy with `[server] header_timeout` and more of `[server]` and `[ip]`.
async fn with_limits(server: &str, ip: &str) -> Harness {
    Harness::start_with(Options { extra: format!("{server}\n[ip]\n{ip}\n"), ..Options::default() }).await
}

/// `wopi_guard_connections_open`.
async fn open_connections(h: &Harness) -> u64 {
    let text = h.admin_text("/metrics").await;
    let line = text.lines().find(|l| l.starts_with("wopi_guard_connections_open ")).expect("the gauge is shown");
    line["wopi_guard_connections_open ".len()..].parse().unwrap()
}

/// Whether the proxy closed `stream` (end of stream or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("an answer on a connection that sent no request: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_trickled_header_is_dropped_at_header_timeout() {
    let h = with_limits("header_timeout = \"1s\"", "").await;
    // Stalled: part of a header section, then nothing.
    let mut stalled = TcpStream::connect(h.listen).await.unwrap();
    stalled.write_all(b"GET /wopi/files/doc1?access_token=x HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    // Trickled: a byte every 100 ms, so no single read ever waits long.
    let mut trickled = TcpStream::connect(h.listen).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for byte in b"GET /wopi/files/doc1?access_token=x HTTP/1.1\r\nHost: a\r\nX-Slow: ".iter().cycle() {
            if trickled.write_all(&[*byte]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(started.elapsed() < Duration::from_secs(10), "the trickle was not cut within 10 s");
        }
        unreachable!("cycle never ends")
    };
    let (stalled_closed, cut_after) = tokio::join!(
        async { closed_within(&mut stalled, Duration::from_secs(10)).await.then(|| started.elapsed()) },
        trickle
    );
    let stalled_closed = stalled_closed.expect("the stalled header was not dropped within 10 s");
    // 1 s, plus the writes still accepted by the socket buffers before the reset is seen.
    for (what, after) in [("stalled", stalled_closed), ("trickled", cut_after)] {
        assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(5), "{what} closed after {after:?}");
    }
    h.metric_shows(r#"wopi_guard_connections_closed_total{reason="header_timeout"} 2"#).await;
    assert_eq!(h.forwarded(), 0);
    assert_eq!(h.signed_get(FILE).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_idles_freely_and_a_slow_body_is_not_cut() {
    let h = with_limits("header_timeout = \"1s\"", "").await;
    let mut conn = TcpStream::connect(h.listen).await.unwrap();
    assert!(ask(&mut conn, &h, FILE).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than header_timeout: the next request's deadline starts with its first byte.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        ask(&mut conn, &h, FILE).await.starts_with("HTTP/1.1 200"),
        "a kept-alive connection is not cut for idling"
    );
    // A PutFile body that takes longer than header_timeout is the body's business, not the header's.
    let put = "/wopi/files/doc1/contents?access_token=tok-123";
    let head = signed_head(&h, "POST", put, "X-WOPI-Override: PUT\r\nContent-Length: 6\r\n");
    let mut upload = TcpStream::connect(h.listen).await.unwrap();
    upload.write_all(head.as_bytes()).await.unwrap();
    for part in [&b"ab"[..], b"cd", b"ef"] {
        tokio::time::sleep(Duration::from_millis(700)).await;
        upload.write_all(part).await.unwrap();
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), upload.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(h
        .admin_text("/metrics")
        .await
        .contains(r#"wopi_guard_connections_closed_total{reason="header_timeout"} 0"#));
}

/// Sends a signed GET of `target` on `conn` and returns the start of the answer.
async fn ask(conn: &mut TcpStream, h: &Harness, target: &str) -> String {
    conn.write_all(signed_head(h, "GET", target, "").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(from), 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_more_than_ip_max_connections_while_others_are_served() {
    let logs = captured_logs();
    let h = with_limits("", "max_connections = 20").await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(connect_from([127, 0, 0, 2], h.listen).await);
    }
    h.metric_shows(r#"wopi_guard_connections_closed_total{reason="ip_max_connections"} 30"#).await;
    // A line says why (throttled to one a second, so one here), with the address.
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    let line = text
        .lines()
        .find(|l| {
            l.contains("ip_max_connections") && l.contains("connection closed at once") && l.contains("127.0.0.2")
        })
        .unwrap_or_else(|| panic!("no warning line in:\n{text}"));
    assert!(line.contains("127.0.0.2") && line.contains("raise ip.max_connections"), "{line}");
    let mut closed = 0;
    for conn in &mut idle {
        closed += usize::from(closed_within(conn, Duration::from_millis(200)).await);
    }
    assert_eq!(closed, 30, "the 30 over the cap were closed at once, the 20 under it are open");
    // 127.0.0.1 is another address: served, several connections at once.
    let gets = (0..5).map(|_| h.signed_get(FILE));
    for (status, _) in futures_util::future::join_all(gets).await {
        assert_eq!(status, 200);
    }
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains("wopi_guard_connections_open "), "{metrics}");
    // A closed connection gives its place back (once the proxy has seen it close).
    idle.clear();
    let mut open = u64::MAX;
    for _ in 0..200 {
        open = open_connections(&h).await;
        if open <= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(open <= 5, "{open} connections still open: the client's 5 at most");
    let mut again = Vec::new();
    for _ in 0..20 {
        again.push(connect_from([127, 0, 0, 2], h.listen).await);
    }
    for conn in &mut again {
        assert!(!closed_within(conn, Duration::from_millis(100)).await, "a freed place was not given back");
    }
    // The cap follows a reload.
    let lower = h.config_text.replace("max_connections = 20", "max_connections = 25");
    assert_ne!(lower, h.config_text);
    h.reload(&lower).await.unwrap();
    let mut more = Vec::new();
    for _ in 0..6 {
        more.push(connect_from([127, 0, 0, 2], h.listen).await);
    }
    let mut closed = 0;
    for conn in &mut more {
        closed += usize::from(closed_within(conn, Duration::from_millis(300)).await);
    }
    assert_eq!(closed, 1, "20 + 6 against a cap of 25");
    assert_eq!(h.forwarded(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_max_connections_caps_the_total() {
    let h = with_limits("max_connections = 10", "").await;
    let mut conns = Vec::new();
    for i in 0..12u8 {
        conns.push(connect_from([127, 0, 0, 3 + i % 3], h.listen).await);
    }
    h.metric_shows(r#"wopi_guard_connections_closed_total{reason="max_connections"} 2"#).await;
    let mut closed = 0;
    for conn in &mut conns {
        closed += usize::from(closed_within(conn, Duration::from_millis(200)).await);
    }
    assert_eq!(closed, 2);
    conns.truncate(5);
    // The freed places serve a genuine request again (the admin port is not counted).
    let mut status = 0;
    for _ in 0..100 {
        status = h.signed_get(FILE).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, 200);
}
