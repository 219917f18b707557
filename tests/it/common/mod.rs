//! The test language: a proxy started in-process on free ports, in front of a stand-in office
//! server and a stand-in WOPI host, and a client that signs like the office server.
#![allow(dead_code, unused_imports)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wopi_guard::config::Config;
use wopi_guard::proof::ticks_at;
use wopi_guard::proxy::{self, ReloadSource, ReloadTrigger, ShutdownTrigger};

pub mod child;
mod fronts;
mod nginx;
mod redis;
mod tls;
pub use fronts::{Front, Kind};
pub use nginx::Nginx;
pub use redis::{RedisCluster, RedisSentinels, RedisServer};
pub use tls::{Pki, TlsFront};
pub use wopi_guard::testkit::{content_digest, free_port, DiscoveryBehaviour, FakeHost, FakeOffice, ProofSet, Signer};

/// A running proxy with its stand-ins.
pub struct Harness {
    pub office: Arc<FakeOffice>,
    pub host: FakeHost,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub client: reqwest::Client,
    /// The configuration it started with (TOML), for reload tests to edit.
    pub config_text: String,
    reload: ReloadTrigger,
    trigger: ShutdownTrigger,
    thread: Option<std::thread::JoinHandle<Result<(), wopi_guard::proxy::StartError>>>,
}

/// Options for [`Harness::start_with`].
pub struct Options {
    /// Extra TOML appended to `[proof]` (e.g. `mode = "monitor"`).
    pub proof: &'static str,
    /// Extra TOML appended to `[discovery]`.
    pub discovery: String,
    /// Extra TOML appended to `[timeouts]`.
    pub timeouts: &'static str,
    /// Upstream URL instead of the stand-in host.
    pub upstream: Option<String>,
    /// A pool of these upstream URLs instead (a TOML list).
    pub pool: Vec<String>,
    /// Wait for keys before returning.
    pub wait_ready: bool,
    /// More discovery URLs after the stand-in office server's.
    pub more_sources: Vec<String>,
    /// More TOML, appended at the end (new tables such as `[ip]`).
    pub extra: String,
    /// The first discovery URL instead of the stand-in office server's own (e.g. through a TLS front).
    pub discovery_url: Option<String>,
    /// `public_url` instead of `https://wopi.example.test`.
    pub public_url: Option<String>,
    /// How `discovery.resolve_all` resolves names (not in the file; a reload keeps the system's).
    pub resolver: Option<wopi_guard::keys::Resolver>,
    /// Listen on `[::1]` instead of 127.0.0.1.
    pub listen_ipv6: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            proof: "",
            discovery: String::new(),
            timeouts: "",
            upstream: None,
            pool: Vec::new(),
            wait_ready: true,
            more_sources: Vec::new(),
            extra: String::new(),
            discovery_url: None,
            public_url: None,
            resolver: None,
            listen_ipv6: false,
        }
    }
}

/// Everything this test binary logs, as JSON lines (one subscriber per process: the first call
/// installs it, at the level `WOPI_GUARD_LOG` says then).
pub fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let capture = Capture(buffer.clone());
        wopi_guard::logging::init(wopi_guard::logging::LogFormat::Json, None, move || capture.clone());
        buffer
    })
    .clone()
}

/// The three proof headers as a header map for reqwest.
pub fn header_map(proof: &ProofSet) -> reqwest::header::HeaderMap {
    proof.headers().iter().map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap())).collect()
}

/// Now, in .NET ticks, shifted by `secs`.
pub fn ticks(secs: i64) -> i64 {
    ticks_at(SystemTime::now()) + secs * 10_000_000
}

/// The test configuration for `options`, on `listen` and `admin`.
fn config_text(
    office: &FakeOffice,
    host: &FakeHost,
    options: &Options,
    listen: SocketAddr,
    admin: SocketAddr,
) -> String {
    let upstream = match &options.pool[..] {
        [] => format!("\"{}\"", options.upstream.clone().unwrap_or_else(|| host.url())),
        pool => format!("[{}]", pool.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ")),
    };
    format!(
        r#"
listen = "{listen}"
admin_listen = "{admin}"
upstream = {upstream}
public_url = "{public_url}"
[discovery]
urls = [{discovery}]
min_refresh_interval = "1s"
timeout = "2s"
{extra_discovery}
[proof]
{proof}
[timeouts]
{timeouts}
[server]
threads = 2
grace_period = "1s"
{extra}
"#,
        extra = options.extra,
        public_url = options.public_url.as_deref().unwrap_or("https://wopi.example.test"),
        discovery = std::iter::once(options.discovery_url.clone().unwrap_or_else(|| office.discovery_url()))
            .chain(options.more_sources.clone())
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", "),
        extra_discovery = options.discovery,
        proof = options.proof,
        timeouts = options.timeouts,
    )
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Harness {
        let office = FakeOffice::start(2048).await;
        Harness::start_on(Arc::new(office), options).await
    }

    pub async fn start_on(office: Arc<FakeOffice>, options: Options) -> Harness {
        let mut host = FakeHost::start().await;
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        // A port handed out by free_port() can still be taken by another program before the
        // proxy binds it: the start then fails at once, and is tried again on other ports.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let (mut listen, admin) = (free_port(), free_port());
            if options.listen_ipv6 {
                listen.set_ip(std::net::Ipv6Addr::LOCALHOST.into());
            }
            let text = config_text(&office, &host, &options, listen, admin);
            let mut config = Config::from_toml(&text).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
            if let Some(resolver) = &options.resolver {
                for route in &mut config.routes {
                    route.discovery.resolver = resolver.clone();
                }
            }
            let (trigger, handle) = ShutdownTrigger::new();
            let (reload, listener) = ReloadTrigger::new();
            let thread = std::thread::spawn(move || {
                proxy::run_with(&config, Some(Box::new(handle)), Some(ReloadSource::Trigger(listener)))
            });
            let mut harness = Harness {
                office: office.clone(),
                host,
                listen,
                admin,
                client: client.clone(),
                config_text: text,
                reload,
                trigger,
                thread: Some(thread),
            };
            match harness.wait_listening().await {
                Ok(()) => {
                    if options.wait_ready {
                        harness.wait_ready().await;
                    }
                    return harness;
                }
                Err(error) if error.contains("cannot listen on") => {
                    failures.push(error);
                    host = std::mem::replace(&mut harness.host, FakeHost::start().await);
                }
                Err(error) => panic!("the proxy stopped while starting: {error}"),
            }
        }
        panic!("the proxy could not bind in three tries: {failures:?}");
    }

    /// Waits until both listeners accept; an error if the proxy's thread ended first.
    async fn wait_listening(&mut self) -> Result<(), String> {
        for _ in 0..400 {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let outcome = self.thread.take().expect("checked above").join();
                return Err(match outcome {
                    Ok(Ok(())) => "stopped without an error".to_string(),
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => "panicked".to_string(),
                });
            }
            if tokio::net::TcpStream::connect(self.listen).await.is_ok()
                && tokio::net::TcpStream::connect(self.admin).await.is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("proxy did not listen on {} / {} within 10 s", self.listen, self.admin);
    }

    /// Waits until /ready says 200.
    pub async fn wait_ready(&self) {
        for _ in 0..400 {
            if self.admin_status("/ready").await == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("proxy never became ready");
    }

    /// Waits (up to 10 s) until `/metrics` has `line`.
    pub async fn metric_shows(&self, line: &str) {
        let mut text = String::new();
        for _ in 0..400 {
            text = self.admin_text("/metrics").await;
            if text.contains(line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("/metrics never showed {line}:\n{text}");
    }

    /// The body of an admin endpoint.
    pub async fn admin_text(&self, path: &str) -> String {
        self.client.get(format!("http://{}{path}", self.admin)).send().await.unwrap().text().await.unwrap()
    }

    pub async fn admin_status(&self, path: &str) -> u16 {
        match self.client.get(format!("http://{}{path}", self.admin)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Reloads with `text` as the whole configuration, as SIGHUP would: the keys that need a
    /// restart, or why the configuration was refused.
    pub async fn reload(&self, text: &str) -> Result<Vec<String>, String> {
        let config = Config::from_toml(text).map_err(|e| e.to_string())?;
        self.reload.reload(config).await.map_err(|e| e.to_string())
    }

    /// The URL the office server signs for `target` (public_url + target).
    pub fn public(&self, target: &str) -> String {
        format!("https://wopi.example.test{target}")
    }

    /// The URL the client actually connects to.
    pub fn local(&self, target: &str) -> String {
        format!("http://{}{target}", self.listen)
    }

    /// Signs `target` now as the office server does.
    pub fn sign(&self, target: &str) -> ProofSet {
        self.office.sign(&self.public(target), ticks(0))
    }

    /// Sends `method target` with `proof` and optional body.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        proof: Option<&ProofSet>,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        self.send_to(None, method, target, proof, body).await
    }

    /// [`Harness::send`] with `Host: host` instead of the connection's address (`[[routes]]`).
    pub async fn send_to(
        &self,
        host: Option<&str>,
        method: &str,
        target: &str,
        proof: Option<&ProofSet>,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        let mut request = self.client.request(method.parse().unwrap(), self.local(target));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(proof) = proof {
            for (name, value) in proof.headers() {
                request = request.header(name, value);
            }
        }
        if let Some(body) = body {
            request = request.header("X-WOPI-Override", "PUT").body(body);
        }
        let response = request.send().await.expect("request reaches the proxy");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// GET `target` signed now.
    pub async fn signed_get(&self, target: &str) -> (u16, String) {
        let proof = self.sign(target);
        self.send("GET", target, Some(&proof), None).await
    }

    /// How many requests reached the WOPI host: heads counted on arrival, so a refused request
    /// whose head or part of whose body got through is seen too.
    pub fn forwarded(&self) -> usize {
        self.host.count_heads()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.trigger.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One answer read off a raw HTTP/1.1 connection: status, head (lowercase) and the body its
/// Content-Length announces; `None` when the connection closed before an answer. No answer and no
/// close within 10 s is a failure.
pub async fn read_answer(stream: &mut tokio::net::TcpStream) -> Option<(u16, String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("the proxy neither answered nor closed the connection within 10 s");
        match read {
            Ok(0) | Err(_) if buf.is_empty() => return None,
            Ok(0) | Err(_) => panic!("the connection closed inside an answer: {:?}", String::from_utf8_lossy(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("an HTTP status line");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("a numeric Content-Length"));
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("the body came within 10 s")
            .expect("the body was read");
        assert!(n > 0, "the connection closed inside a body");
        body.extend_from_slice(&chunk[..n]);
    }
    Some((status, head, body))
}

/// Whether the peer closes `stream` (EOF or reset) within `within`, without sending anything more.
pub async fn closed_by_peer(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) => panic!("the peer sent more than its answer"),
        Err(_) => false,
    }
}

/// A raw request head: `method target HTTP/1.1`, Host, `headers`, the blank line.
pub fn raw_head(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: wopi.example.test\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head + "\r\n"
}
