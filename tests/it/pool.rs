//! `upstream = [...]`: a pool of WOPI host replicas, round-robin over the members up, a member
//! killed mid-run and brought back, health checks (which follow no redirect), and a reload that
//! changes the members.

use crate::common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wopi_guard::testkit::FakeHost;

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";

const HEALTH: &str = "[health]\npath = \"/status.php\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n";

/// Requests for WOPI paths that reached `host` (health checks are not counted).
fn wopi(host: &FakeHost) -> usize {
    host.requests().iter().filter(|r| r.target.starts_with("/wopi/")).count()
}

fn up(host: std::net::SocketAddr, value: u8) -> String {
    format!("wopi_guard_upstream_up{{upstream=\"{host}\"}} {value}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_spreads_requests_and_loses_no_get_when_a_member_dies_and_comes_back() {
    let a = FakeHost::start().await;
    let b = FakeHost::start().await;
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let h =
        Harness::start_with(Options { pool: vec![a.url(), b.url()], extra: HEALTH.into(), ..Options::default() }).await;
    for _ in 0..20 {
        assert_eq!(h.signed_get(FILE).await.0, 200);
    }
    assert_eq!((wopi(&a), wopi(&b)), (10, 10), "round-robin over two members");

    // A steady stream of GETs; B is killed in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let h = Arc::new(h);
    let load = {
        let (h, stop, sent, failed) = (h.clone(), stop.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let (status, body) = h.signed_get(FILE).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("GET failed: {status} {body}");
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(b); // the listener and every open connection go at once
    h.metric_shows(&up(b_addr, 0)).await;
    let a_before = a.count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.count() > a_before, "A took the requests while B was down");

    // B comes back where it was: the health check marks it up, and it is used again.
    let b = FakeHost::start_at(b_addr).await;
    h.metric_shows(&up(b_addr, 1)).await;
    for _ in 0..100 {
        if b.count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    load.await.unwrap();
    assert!(b.count() > 0, "B got requests again once it was back");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "of {} GETs", sent.load(Ordering::Relaxed));
    let metrics = h.admin_text("/metrics").await;
    for member in [a_addr, b_addr] {
        let requests = format!("wopi_guard_upstream_requests_total{{upstream=\"{member}\"}} ");
        assert!(metrics.contains(&requests), "{metrics}");
    }
    assert!(metrics.contains(&up(a_addr, 1)), "{metrics}");

    // A reload removes B: only A is asked, and B is no longer shown.
    let only_a = h.config_text.replace(&format!(", \"{}\"", format_args!("http://{b_addr}")), "");
    assert_ne!(only_a, h.config_text);
    h.reload(&only_a).await.unwrap();
    let b_before = b.count();
    for _ in 0..10 {
        assert_eq!(h.signed_get(FILE).await.0, 200);
    }
    assert_eq!(b.count(), b_before);
    let metrics = h.admin_text("/metrics").await;
    assert!(!metrics.contains(&format!("upstream=\"{b_addr}\"")), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_refuses_connections_is_skipped_without_a_failed_request() {
    let a = FakeHost::start().await;
    // A reserved port with nothing listening: every connection is refused.
    let dead = free_port();
    // Health checks an hour apart: only the failed connection tells.
    let slow_checks = "[health]\ninterval = \"1h\"\n".to_string();
    let options = Options { pool: vec![format!("http://{dead}"), a.url()], extra: slow_checks, ..Options::default() };
    let h = Harness::start_with(options).await;
    for _ in 0..10 {
        assert_eq!(h.signed_get(FILE).await.0, 200);
    }
    // PutFile too: a refused connection sent nothing, so even a POST with a body may go elsewhere.
    let put = "/wopi/files/doc1/contents?access_token=tok-123";
    assert_eq!(h.send("POST", put, Some(&h.sign(put)), Some(vec![7u8; 1000])).await.0, 200);
    assert_eq!(wopi(&a), 11);
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(&up(dead, 0)), "{metrics}");
    assert!(
        metrics.contains(&format!("wopi_guard_upstream_errors_total{{upstream=\"{dead}\"}} 1\n")),
        "tried once, then skipped while down: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_and_health_settings_are_checked() {
    let base = "public_url = \"https://w.example\"\n[discovery]\nurls = [\"https://o.example/hosting/discovery\"]\n";
    // (the top-level `upstream`, tables after the base), and the error expected.
    let cases = [
        ("upstream = []", "", "upstream: is an empty list"),
        ("upstream = 5", "", "upstream: is a integer"),
        ("upstream = [\"http://a:1\", 2]", "", "upstream[1]: is not a string"),
        ("upstream = [\"http://a:1\", \"http://a:1\"]", "", "upstream: lists a:1 twice"),
        ("upstream = [\"http://a:1/x\"]", "", "upstream[0]: \"http://a:1/x\" must be scheme://host[:port] only"),
        ("upstream = \"http://a:1\"", "[health]\npath = \"status\"", "health.path: \"status\" must be a path"),
        (
            "upstream = \"http://a:1\"",
            "[health]\ninterval = \"1s\"\ntimeout = \"2s\"",
            "health.timeout: 2s must be above zero and at most health.interval",
        ),
    ];
    for (upstream, tables, expected) in cases {
        let text = format!("{upstream}\n{base}\n{tables}\n");
        let error = wopi_guard::config::Config::from_toml(&text).unwrap_err().to_string();
        assert!(error.contains(expected), "{upstream} {tables}: {error}");
    }
    let pool =
        wopi_guard::config::Config::from_toml(&format!("upstream = [\"http://a:1\", \"https://b\"]\n{base}")).unwrap();
    assert_eq!(pool.first_route().upstream.len(), 2);
    let health = pool.first_route().health.clone().expect("a pool is checked by default");
    assert_eq!(
        (health.path.as_str(), health.interval, health.timeout),
        ("/", Duration::from_secs(5), Duration::from_secs(2))
    );
}

/// Answers every request on `addr` with a redirect to `to`, whatever is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_judges_the_member_and_follows_no_redirect() {
    let a = FakeHost::start().await;
    let member = free_port();
    let options =
        Options { pool: vec![format!("http://{member}"), a.url()], extra: HEALTH.into(), ..Options::default() };
    let h = Harness::start_with(options).await;
    // Nothing listens yet: the checks mark the member down.
    h.metric_shows(&up(member, 0)).await;
    // Now it answers, with a redirect to where nothing listens. Its own answer (302, below 500)
    // is what counts: a check that followed the redirect would find nobody and keep it down.
    let nowhere = free_port();
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: http://{nowhere}/status.php\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let server = answering(member, Some(redirect)).await;
    h.metric_shows(&up(member, 1)).await;
    server.abort();
}

/// A server at `addr` that answers every request's head with `answer`, or (`None`) reads it and
/// never answers.
async fn answering(addr: std::net::SocketAddr, answer: Option<String>) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Some(answer) => {
                        let _ = stream.write_all(answer.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_answered_with_a_5xx_or_not_in_time_marks_the_member_down() {
    let a = FakeHost::start().await;
    let (failing, silent) = (free_port(), free_port());
    let unavailable = "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string();
    let servers = [answering(failing, Some(unavailable)).await, answering(silent, None).await];
    let pool = vec![format!("http://{failing}"), format!("http://{silent}"), a.url()];
    let h = Harness::start_with(Options { pool, extra: HEALTH.into(), ..Options::default() }).await;
    h.metric_shows(&up(failing, 0)).await;
    h.metric_shows(&up(silent, 0)).await;
    h.metric_shows(&up(a.addr(), 1)).await;
    for server in servers {
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answer_marks_a_member_up_again_without_health_checks() {
    let member = free_port();
    let b = FakeHost::start().await;
    let slow_checks = "[health]\ninterval = \"1h\"\n".to_string();
    let options = Options { pool: vec![format!("http://{member}"), b.url()], extra: slow_checks, ..Options::default() };
    let h = Harness::start_with(options).await;
    // Nothing listens at the member: its failed connection marks it down, B answers.
    assert_eq!(h.signed_get(FILE).await.0, 200);
    h.metric_shows(&up(member, 0)).await;
    // The member comes back and B goes away: B's failed connection leaves only the member, which
    // is tried though down, and its answer marks it up.
    let back = FakeHost::start_at(member).await;
    drop(b);
    assert_eq!(h.signed_get(FILE).await.0, 200);
    h.metric_shows(&up(member, 1)).await;
    assert_eq!(wopi(&back), 1);
}
