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
mod nginx;
mod tls;
pub use nginx::Nginx;
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
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            proof: "",
            discovery: String::new(),
            timeouts: "",
            upstream: None,
            wait_ready: true,
            more_sources: Vec::new(),
            extra: String::new(),
            discovery_url: None,
            public_url: None,
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

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Harness {
        let office = FakeOffice::start(2048).await;
        Harness::start_on(Arc::new(office), options).await
    }

    pub async fn start_on(office: Arc<FakeOffice>, options: Options) -> Harness {
        let host = FakeHost::start().await;
        let (listen, admin) = (free_port(), free_port());
        let upstream = options.upstream.clone().unwrap_or_else(|| host.url());
        let text = format!(
            r#"
listen = "{listen}"
admin_listen = "{admin}"
upstream = "{upstream}"
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
        );
        let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let (trigger, handle) = ShutdownTrigger::new();
        let (reload, listener) = ReloadTrigger::new();
        let thread = std::thread::spawn(move || {
            proxy::run_with(&config, Some(Box::new(handle)), Some(ReloadSource::Trigger(listener)))
        });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let harness =
            Harness { office, host, listen, admin, client, config_text: text, reload, trigger, thread: Some(thread) };
        harness.wait_listening().await;
        if options.wait_ready {
            harness.wait_ready().await;
        }
        harness
    }

    async fn wait_listening(&self) {
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(self.listen).await.is_ok()
                && tokio::net::TcpStream::connect(self.admin).await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("proxy did not listen on {} / {}", self.listen, self.admin);
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
        self.reload.reload(config).await
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
        let mut request = self.client.request(method.parse().unwrap(), self.local(target));
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
