//! Budgets and connections under attack: unsigned requests never spend a file's or a token's
//! budget (with and without `[shared]`), and idle kept-alive connections are closed after
//! `server.idle_timeout` so they cannot hold the connection caps.

use crate::common::*;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const GENUINE: &str = "/wopi/files/42?access_token=tok-42";

async fn unsigned_cannot_lock_a_file_out(shared: Option<&RedisServer>) {
    let mut extra =
        "[rate_limit.per_file]\nper_second = 0.01\nburst = 2\n[rate_limit.per_token]\nper_second = 0.01\nburst = 2\n"
            .to_string();
    if let Some(redis) = shared {
        extra.push_str(&format!(
            "[shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"\n",
            redis.url()
        ));
    }
    let options = Options { proof: "exempt_paths = [\"/wopi/settings\"]", extra, ..Options::default() };
    let h = Harness::start_with(options).await;
    // Five unsigned requests naming file 42 and its token on an unprotected and an exempt path.
    for target in ["/x/wopi/files/42?access_token=tok-42", "/wopi/settings/wopi/files/42?access_token=tok-42"] {
        for _ in 0..5 {
            assert_eq!(h.send("GET", target, None, None).await.0, 200, "{target}");
        }
    }
    // The office server's genuine request for the file still passes (it got 429 before).
    let (status, body) = h.signed_get(GENUINE).await;
    assert_eq!(status, 200, "shared: {}: {body}", shared.is_some());
    assert_eq!(h.signed_get(GENUINE).await.0, 200, "the file's burst of 2 is the genuine requests'");
    assert_eq!(h.signed_get(GENUINE).await.0, 429, "and then it is spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_never_spend_a_files_budget() {
    unsigned_cannot_lock_a_file_out(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_never_spend_a_files_budget_with_shared() {
    let redis = RedisServer::start(None);
    unsigned_cannot_lock_a_file_out(Some(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_spends_a_files_budget_only_for_requests_that_verify() {
    let extra = "[rate_limit.per_file]\nper_second = 0.01\nburst = 2\n".to_string();
    let h = Harness::start_with(Options { proof: "mode = \"monitor\"", extra, ..Options::default() }).await;
    for _ in 0..5 {
        assert_eq!(h.send("GET", GENUINE, None, None).await.0, 200, "monitor mode forwards");
    }
    assert_eq!(h.signed_get(GENUINE).await.0, 200);
    assert_eq!(h.signed_get(GENUINE).await.0, 200);
    assert_eq!(h.signed_get(GENUINE).await.0, 429);
}

/// A kept-alive connection that made one request: `GET /status.php`, answered.
async fn one_request(h: &Harness) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    stream.write_all(raw_head("GET", "/status.php", &[]).as_bytes()).await.unwrap();
    let (status, _, _) = read_answer(&mut stream).await.expect("an answer");
    assert_eq!(status, 200);
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_kept_alive_connections_are_closed_and_free_the_caps() {
    // Appended to the harness's own [server] table.
    let extra = "idle_timeout = \"1s\"\nmax_connections = 40".to_string();
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(one_request(&h).await);
    }
    // The caps are full: a 41st client is closed at once.
    let mut over = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    assert!(closed_by_peer(&mut over, Duration::from_secs(2)).await, "over max_connections");
    // Within idle_timeout + 1 s every idle connection is closed by the proxy ...
    let started = Instant::now();
    for stream in &mut idle {
        assert!(closed_by_peer(stream, Duration::from_secs(3)).await, "an idle connection stayed open");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    drop(idle);
    // ... and a new client is served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _served = one_request(&h).await;
    h.metric_shows("wopi_guard_connections_closed_total{reason=\"max_connections\"} 1").await;
}

/// `/ready`'s status and body.
async fn ready(h: &Harness) -> (u16, String) {
    let r = h.client.get(format!("http://{}/ready", h.admin)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_503_while_deny_applies_and_the_log_tells_the_outage() {
    captured_logs();
    let mut redis = RedisServer::start(None);
    let extra = format!(
        "[shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"\non_error = \"deny\"\ntimeout = \"200ms\"\n[rate_limit.per_ip]\nper_second = 100\nburst = 100",
        redis.url()
    );
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    assert_eq!(ready(&h).await.0, 200);
    redis.kill();
    let started = Instant::now();
    loop {
        let (status, body) = ready(&h).await;
        if status == 503 {
            assert!(body.contains("on_error = \"deny\"") && body.contains("503"), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "/ready stayed 200 with Redis down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.signed_get(GENUINE).await.0, 503, "requests get 503 meanwhile");
    redis.restart();
    let started = Instant::now();
    while ready(&h).await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "/ready never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.signed_get(GENUINE).await.0, 200);
    let log = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    for says in ["shared state: connected to Redis", "Redis failing; applying on_error", "Redis answers again"] {
        assert!(log.contains(says), "no {says:?} line:\n{log}");
    }
    let line = log.lines().find(|l| l.contains("Redis answers again")).unwrap();
    assert!(line.contains("\"outage_s\":"), "{line}");
}

/// Sends a signed PutFile of `len` bytes whose body arrives as `pieces` (after each, its pause),
/// and returns the answer's status (`None`: closed without one).
async fn put_slowly(h: &Harness, len: usize, pieces: &[(usize, Duration)]) -> Option<u16> {
    let target = "/wopi/files/42/contents?access_token=tok-42";
    let proof = h.sign(target);
    let length = len.to_string();
    let mut headers: Vec<(&str, &str)> = vec![("X-WOPI-Override", "PUT"), ("Content-Length", &length)];
    let signed: Vec<(String, String)> =
        proof.headers().into_iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    headers.extend(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    stream.write_all(raw_head("POST", target, &headers).as_bytes()).await.unwrap();
    for (bytes, pause) in pieces {
        if stream.write_all(&vec![b'x'; *bytes]).await.is_err() {
            break; // cut while trickling
        }
        tokio::time::sleep(*pause).await;
    }
    read_answer(&mut stream).await.map(|(status, _, _)| status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_or_stalled_body_is_cut_under_body_min_rate() {
    captured_logs();
    let h = Harness::start().await; // body_min_rate = "1KiB/s" by default
    let off = Harness::start_with(Options { extra: "body_min_rate = 0".into(), ..Options::default() }).await;
    // A byte every 3 s: no read waits a whole 10 s window, the average is far under 1 KiB/s.
    let trickle = [(1, Duration::from_secs(3)); 5];
    // Half the body, then nothing: the read waits a whole window.
    let stall = [(50, Duration::from_secs(13))];
    // With body_min_rate = 0 the same stall is waited out (Pingora's own 60 s per read).
    let waited = [(50, Duration::from_secs(11)), (50, Duration::ZERO)];
    let started = Instant::now();
    let (trickled, stalled, patient) =
        tokio::join!(put_slowly(&h, 100, &trickle), put_slowly(&h, 100, &stall), put_slowly(&off, 100, &waited));
    assert_eq!(trickled, Some(408), "the trickle");
    assert_eq!(stalled, Some(408), "the stall");
    assert_eq!(patient, Some(200), "off");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    h.metric_shows("wopi_guard_requests_total{operation=\"PutFile\",verdict=\"body_too_slow\"} 2").await;
    // A body at a normal pace passes.
    assert_eq!(put_slowly(&h, 4096, &[(4096, Duration::ZERO)]).await, Some(200));
}

/// A local route for one IPv6 /64 on `lo` (removed when dropped), so clients can bind any of
/// its addresses (with `IP_FREEBIND`) and connect to `[::1]`.
struct LocalPrefix(String);

impl LocalPrefix {
    fn add() -> LocalPrefix {
        let prefix = format!("fd00:77:{:x}:{:x}", std::process::id() & 0xffff, free_port().port());
        let out = std::process::Command::new("ip")
            .args(["-6", "route", "add", "local", &format!("{prefix}::/64"), "dev", "lo"])
            .output()
            .expect("ip(8) from iproute2");
        assert!(
            out.status.success(),
            "`ip -6 route add local {prefix}::/64 dev lo` failed (the test needs root, as CI runs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LocalPrefix(prefix)
    }

    /// A connection from `prefix::host` to `to`.
    async fn connect(&self, host: u16, to: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        use std::os::fd::AsRawFd;
        let socket = tokio::net::TcpSocket::new_v6()?;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt(2) on a socket this function owns, with a c_int it points at.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_IP,
                libc::IP_FREEBIND,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "IP_FREEBIND");
        socket.bind(format!("[{}::{host:x}]:0", self.0).parse().unwrap())?;
        socket.connect(to).await
    }
}

impl Drop for LocalPrefix {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["-6", "route", "del", "local", &format!("{}::/64", self.0), "dev", "lo"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_addresses_of_one_ipv6_slash_64_share_a_connection_cap_of_5() {
    let prefix = LocalPrefix::add();
    let options = Options { listen_ipv6: true, extra: "[ip]\nmax_connections = 5\n".into(), ..Options::default() };
    let h = Harness::start_with(options).await;
    let mut open = Vec::new();
    for host in 1..=30u16 {
        open.push(prefix.connect(host, h.listen).await.unwrap());
    }
    h.metric_shows("wopi_guard_connections_closed_total{reason=\"ip_max_connections\"} 25").await;
    let mut closed = 0;
    for stream in &mut open {
        if closed_by_peer(stream, Duration::from_millis(50)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 25, "5 places for the whole /64, not one per address");
    // Another client (::1) is not counted with them.
    let mut other = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    other.write_all(raw_head("GET", "/status.php", &[]).as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut other).await.map(|a| a.0), Some(200));
}
