//! Faults around the proxy. Discovery: slow, huge, malformed, redirect loops, down, keys missing:
//! the last-known-good keys stay in use and the log and metrics say what happened. Upstream:
//! refused, cut mid-answer, cut mid-upload, an upload abandoned by the client, 5xx: the right
//! status, no hang, no leaked connections, no upstream request silently truncated.

use crate::common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";
const CONTENTS: &str = "/wopi/files/doc1/contents?access_token=tok-123";

fn log_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_faults_keep_the_last_known_good_keys_and_say_so() {
    captured_logs();
    let h = Harness::start_with(Options { discovery: "max_bytes = 65536".into(), ..Options::default() }).await;
    let source = h.office.discovery_url();
    let intruder = Signer::generate(2048);
    let faults = [
        (DiscoveryBehaviour::Slow(Duration::from_secs(3)), "timed out"),
        (DiscoveryBehaviour::Huge(100_000), "document larger than 65536 bytes"),
        (DiscoveryBehaviour::Malformed, "discovery"),
        (DiscoveryBehaviour::RedirectLoop, "redirect"),
        (DiscoveryBehaviour::Unavailable, "HTTP status 503"),
        (DiscoveryBehaviour::NoProofKey, "no <proof-key>"),
    ];
    for (i, (behaviour, says)) in faults.into_iter().enumerate() {
        h.office.set_behaviour(behaviour);
        tokio::time::sleep(Duration::from_millis(1100)).await; // past min_refresh_interval
                                                               // A forgery makes the proxy re-read discovery, which fails: refused all the same.
        let forged = ProofSet::sign(&h.public(FILE), ticks(0), &intruder, &intruder);
        assert_eq!(h.send("GET", FILE, Some(&forged), None).await.0, 500, "{behaviour:?}");
        assert_eq!(h.signed_get(FILE).await.0, 200, "{behaviour:?}: the last-known-good keys still verify");
        assert_eq!(h.admin_status("/ready").await, 200);
        let failed = format!(r#"wopi_guard_discovery_fetches_total{{source="{source}",outcome="failed"}} {}"#, i + 1);
        let metrics = h.admin_text("/metrics").await;
        assert!(metrics.contains(&failed), "{behaviour:?}: {failed} missing:\n{metrics}");
        let log = log_text();
        let line = log
            .lines()
            .filter(|l| l.contains("discovery refresh failed") && l.contains(&source))
            .nth(i)
            .unwrap_or_else(|| panic!("{behaviour:?}: no log line:\n{log}"));
        assert!(line.contains(says), "{behaviour:?}: {line}");
        assert!(line.contains(r#""keeps_last_known_good_keys":true"#), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_down_at_start_is_retried_with_backoff_until_it_answers() {
    captured_logs();
    let office = std::sync::Arc::new(FakeOffice::start(2048).await);
    office.set_behaviour(DiscoveryBehaviour::Unavailable);
    let h = Harness::start_on(office.clone(), Options { wait_ready: false, ..Options::default() }).await;
    // Only the background task fetches here: no WOPI request is sent, /ready fetches nothing.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while office.fetches() < 2 {
        assert!(std::time::Instant::now() < deadline, "not retried within 5 s: {} fetch(es)", office.fetches());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.admin_status("/ready").await, 503, "no keys yet");
    office.set_behaviour(DiscoveryBehaviour::Keys);
    h.wait_ready().await; // within 10 s; the retries before this point wait 1, 2, 4 s at most
    let answered_after = office.fetches();
    assert!((2..=5).contains(&answered_after), "backoff, not a flood: {answered_after} fetches");
    let log = log_text();
    let source = office.discovery_url();
    assert!(
        log.lines()
            .any(|l| l.contains("discovery will be retried") && l.contains(&source) && l.contains(r#""failures":1"#)),
        "the retry is logged:\n{log}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(office.fetches(), answered_after, "once it answered, the next fetch waits for refresh_interval");
    assert_eq!(h.signed_get(FILE).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_leads_back_to_wopi_guard_gets_508_after_one_round() {
    // upstream -> a TCP relay -> wopi-guard's own listener: a loop no configuration check can see.
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", relay.local_addr().unwrap());
    let h = Harness::start_with(Options { upstream: Some(upstream), ..Options::default() }).await;
    let (listen, rounds) = (h.listen, std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)));
    let counted = rounds.clone();
    let relay = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = relay.accept().await else { continue };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(listen).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    let (status, body) = h.signed_get(FILE).await;
    relay.abort();
    assert_eq!(status, 508, "{body}");
    assert!(body.contains("request loop"), "{body}");
    assert_eq!(rounds.load(std::sync::atomic::Ordering::SeqCst), 1, "one round, then stopped");
    assert_eq!(h.forwarded(), 0);
    let metrics = h.admin_text("/metrics").await;
    assert!(
        metrics.contains(r#"wopi_guard_requests_total{operation="CheckFileInfo",verdict="loop_detected"} 1"#),
        "{metrics}"
    );
}

/// One way for a WOPI host to misbehave.
#[derive(Clone, Copy)]
enum Misbehaving {
    /// Announces 1 MiB, sends 1000 bytes, closes.
    CutAnswer,
    /// Reads 64 KiB of the upload, closes without answering.
    CutUpload,
    /// Answers 503 with a body, as a host under maintenance.
    Unavailable,
    /// Reads the head, then nothing more, holding the connection for a minute.
    NeverReads,
}

async fn misbehaving_host(how: Misbehaving) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = vec![0u8; 65536];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                match how {
                    Misbehaving::CutAnswer => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n").await;
                        let _ = stream.write_all(&[b'w'; 1000]).await;
                    }
                    Misbehaving::CutUpload => {
                        let mut body = 0;
                        while body < 65536 {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => body += n,
                            }
                        }
                    }
                    Misbehaving::NeverReads => tokio::time::sleep(Duration::from_secs(60)).await,
                    Misbehaving::Unavailable => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\n\r\nmaintenance\n")
                            .await;
                    }
                }
                // Dropping the stream closes the connection.
            });
        }
    });
    addr
}

async fn on(upstream: SocketAddr) -> Harness {
    Harness::start_with(Options { upstream: Some(format!("http://{upstream}")), ..Options::default() }).await
}

/// TCP connections that hold a socket open (ESTABLISHED or CLOSE_WAIT) with `port` at either
/// end, from /proc/net/tcp{,6}: other tests of this binary use other ports.
fn open_connections(port: u16) -> usize {
    let hex = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port_of = |addr: &str| addr.rsplit(':').next().map(str::to_string);
            fields.len() > 3
                && matches!(fields[3], "01" | "08")
                && (port_of(fields[1]).as_deref() == Some(hex.as_str())
                    || port_of(fields[2]).as_deref() == Some(hex.as_str()))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_by_the_host_is_never_passed_off_as_complete() {
    captured_logs();
    let host = misbehaving_host(Misbehaving::CutAnswer).await;
    let h = on(host).await;
    let run = || async {
        let response = h.client.get(h.local(CONTENTS)).headers(header_map(&h.sign(CONTENTS))).send().await.unwrap();
        assert_eq!(response.status(), 200, "the header had already come");
        tokio::time::timeout(Duration::from_secs(10), response.bytes()).await.expect("no hang")
    };
    assert!(run().await.is_err(), "the client sees the answer end early, not a short body");
    metrics_once(&h, r#"verdict="upstream_error"} 1"#).await;
    assert!(log_text().contains("upstream request failed"));

    // No connection is left behind by cut answers, toward the host or toward the client.
    let probe = TcpStream::connect(h.listen).await.unwrap();
    assert!(open_connections(h.listen.port()) >= 1, "the count sees an open connection");
    drop(probe);
    for _ in 0..30 {
        assert!(run().await.is_err());
    }
    let mut left = (0, 0);
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = (open_connections(host.port()), open_connections(h.listen.port()));
        if left == (0, 0) {
            break;
        }
    }
    assert_eq!(left, (0, 0), "connections still open (to the host, to the proxy) after 30 cut answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_the_host_gets_502_without_a_hang() {
    let h = on(misbehaving_host(Misbehaving::CutUpload).await).await;
    let body = vec![b'u'; 4 << 20];
    let request = h
        .client
        .post(h.local(CONTENTS))
        .headers(header_map(&h.sign(CONTENTS)))
        .header("X-WOPI-Override", "PUT")
        .body(body)
        .send();
    match tokio::time::timeout(Duration::from_secs(10), request).await.expect("no hang") {
        Ok(response) => assert_eq!(response.status(), 502),
        Err(e) => assert!(e.is_request() || e.is_body() || e.is_connect(), "{e}"), // cut while still sending
    }
    metrics_once(&h, r#"verdict="upstream_error"} 1"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_abandoned_by_the_client_never_completes_upstream() {
    let h = Harness::start().await;
    let mut stream = TcpStream::connect(h.listen).await.unwrap();
    let mut head =
        format!("POST {CONTENTS} HTTP/1.1\r\nHost: a\r\nX-WOPI-Override: PUT\r\nContent-Length: 4194304\r\n");
    for (n, v) in h.sign(CONTENTS).headers() {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    stream.write_all(format!("{head}\r\n").as_bytes()).await.unwrap();
    stream.write_all(&vec![b'u'; 1 << 20]).await.unwrap();
    drop(stream);
    // The head was streamed on (heads count it); the body never completed: wait for the host to
    // see its request end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.host.count_cut() == 0 {
        assert!(std::time::Instant::now() < deadline, "the host's request never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((h.host.count_heads(), h.host.count_cut()), (1, 1));
    assert_eq!(h.host.count(), 0, "the host never saw a complete PutFile");
    assert_eq!(h.signed_get(FILE).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_errors_come_back_unchanged_and_a_refused_connection_is_502() {
    let h = on(misbehaving_host(Misbehaving::Unavailable).await).await;
    let response = h.client.get(h.local(FILE)).headers(header_map(&h.sign(FILE))).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), "maintenance\n", "the host's own answer");
    // The count is taken when the request's log line is written, just after the answer.
    let metrics = metrics_once(&h, r#"verdict="forwarded"} 1"#).await;
    assert!(!metrics.contains(r#"verdict="upstream_error""#), "{metrics}");
    drop(h);

    let h = on(free_port()).await;
    assert_eq!(h.signed_get(FILE).await.0, 502);
}

/// The metrics once they contain `line` (waits up to 2 s).
async fn metrics_once(h: &Harness, line: &str) -> String {
    for _ in 0..80 {
        let metrics = h.admin_text("/metrics").await;
        if metrics.contains(line) {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{line} never appeared:\n{}", h.admin_text("/metrics").await);
}

/// The access log line of the upstream failure whose error is `error`, once it is written (waits
/// up to 20 s).
async fn failure_line(error: &str) -> String {
    let needle = format!("\"error\":\"{error}\"");
    for _ in 0..800 {
        if let Some(line) = log_text().lines().find(|l| l.contains("upstream request failed") && l.contains(&needle)) {
            return line.to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no `upstream request failed` line with {needle}:\n{}", log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_does_not_accept_in_time_is_504() {
    captured_logs();
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            fillers.push(stream);
        }
    }
    let timeouts = "upstream_connect = \"1s\"";
    let h =
        Harness::start_with(Options { upstream: Some(format!("http://{addr}")), timeouts, ..Options::default() }).await;
    let (status, body) = h.signed_get(FILE).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body, "wopi-guard: the WOPI host did not answer in time\n");
    let line = failure_line("ConnectTimedout").await;
    assert!(line.contains("\"status\":504"), "{line}");
    metrics_once(&h, r#"verdict="upstream_error"} 1"#).await;
    drop(fillers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_reading_an_upload_is_504() {
    captured_logs();
    let host = misbehaving_host(Misbehaving::NeverReads).await;
    let timeouts = "upstream_write = \"1s\"\nupstream_read = \"2s\"";
    let h =
        Harness::start_with(Options { upstream: Some(format!("http://{host}")), timeouts, ..Options::default() }).await;
    let length = 256u64 << 20;
    let proof = h.sign(CONTENTS);
    let mut headers: Vec<(String, String)> =
        proof.headers().iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    headers.push(("X-WOPI-Override".into(), "PUT".into()));
    headers.push(("Content-Length".into(), length.to_string()));
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let stream = TcpStream::connect(h.listen).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = raw_head("POST", CONTENTS, &pairs);
    let sender = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        let chunk = vec![b'u'; 1 << 20];
        for _ in 0..(length >> 20) {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    // The host holds the connection for 60 s. The 1 s write timeout ends the upload; Pingora then
    // still waits up to upstream_read (2 s) for an answer the host may have sent early (a 413).
    let line = tokio::time::timeout(Duration::from_secs(30), failure_line("WriteTimedout")).await.expect("no hang");
    assert!(line.contains("\"status\":504"), "{line}");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 504 "), "{answer}");
    metrics_once(&h, r#"verdict="upstream_error"} 1"#).await;
    sender.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_while_there_are_no_keys_fetches_discovery_at_once() {
    let office = std::sync::Arc::new(FakeOffice::start(2048).await);
    office.set_behaviour(DiscoveryBehaviour::Unavailable);
    let h = Harness::start_on(office.clone(), Options { wait_ready: false, ..Options::default() }).await;
    // Three failed fetches (after about 1 and 2 s): the next retry waits at least 3.2 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while office.fetches() < 3 {
        assert!(std::time::Instant::now() < deadline, "{} fetch(es)", office.fetches());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    office.set_behaviour(DiscoveryBehaviour::Keys);
    tokio::time::sleep(Duration::from_millis(1100)).await; // discovery.min_refresh_interval
    let asked = std::time::Instant::now();
    assert_eq!(h.signed_get("/wopi/files/1?access_token=t").await.0, 503, "no keys yet");
    // The refused request started a fetch: keys within well under the retry's wait.
    while h.admin_status("/ready").await != 200 {
        assert!(asked.elapsed() < Duration::from_millis(1500), "no fetch followed the request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.signed_get("/wopi/files/1?access_token=t").await.0, 200);
}
