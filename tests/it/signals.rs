//! The real binary and Unix signals: SIGHUP re-reads the file (a valid one applies, an invalid
//! one is refused with a log line and the running one stays); SIGTERM lets requests under way
//! finish and exits within `server.grace_period`, not Pingora's 300 s default.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";
const PUBLIC: &str = "https://wopi.example.test";

struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
    listen: SocketAddr,
    admin: SocketAddr,
    client: reqwest::Client,
}

impl Running {
    async fn start(config: &Path, listen: SocketAddr, admin: SocketAddr) -> Running {
        Running::start_until(config, listen, admin, "/ready").await
    }

    /// Starts the binary and waits until the admin `path` answers 200.
    async fn start_until(config: &Path, listen: SocketAddr, admin: SocketAddr, path: &str) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wopi-guard"));
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("WOPI_GUARD_")) {
            command.env_remove(name);
        }
        let mut child = command.arg("--config").arg(config).stderr(Stdio::piped()).spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut running = Running { child, log, listen, admin, client };
        for _ in 0..400 {
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!("the binary exited ({status}) before it was ready:\n{}", running.log());
            }
            if let Ok(r) = running.client.get(format!("http://{admin}{path}")).send().await {
                if r.status() == 200 {
                    return running;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the binary never became ready:\n{}", running.log());
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("sh").arg("-c").arg(format!("kill -{name} {}", self.child.id())).status().unwrap();
        assert!(status.success());
    }

    async fn signed_get(&self, office: &FakeOffice, target: &str) -> reqwest::Result<u16> {
        let mut request = self.client.get(format!("http://{}{target}", self.listen));
        for (n, v) in office.sign(&format!("{PUBLIC}{target}"), ticks(0)).headers() {
            request = request.header(n, v);
        }
        Ok(request.send().await?.status().as_u16())
    }

    /// Waits for the process to exit after `signal` was sent at `sent`; fails after 20 s.
    async fn wait_exit(&mut self, signal: &str, sent: Instant) -> std::process::ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(sent.elapsed() < Duration::from_secs(20), "still running 20 s after {signal}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_log(&self, text: &str) {
        for _ in 0..200 {
            if self.log().contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {text:?} in the log:\n{}", self.log());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("wopi-guard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn config(office: &FakeOffice, host: &FakeHost, listen: SocketAddr, admin: SocketAddr, more: &str) -> String {
    format!(
        r#"listen = "{listen}"
admin_listen = "{admin}"
upstream = "{}"
public_url = "{PUBLIC}"
[discovery]
urls = ["{}"]
[server]
threads = 1
grace_period = "2s"
{more}
"#,
        host.url(),
        office.discovery_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_file_and_refuses_an_invalid_one() {
    let (office, host) = (FakeOffice::start(2048).await, FakeHost::start().await);
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &config(&office, &host, listen, admin, ""));
    let proxy = Running::start(&path, listen, admin).await;
    assert_eq!(proxy.signed_get(&office, FILE).await.unwrap(), 200);

    write_config(&dir, &config(&office, &host, listen, admin, "[ip]\nallow = [\"10.0.0.0/8\"]"));
    proxy.signal("HUP");
    proxy.wait_log("configuration reloaded").await;
    assert_eq!(proxy.signed_get(&office, FILE).await.unwrap(), 403, "the new allow-list is in force");

    write_config(&dir, &config(&office, &host, listen, admin, "[ip]\nallow = [\"not-a-network\"]"));
    proxy.signal("HUP");
    proxy.wait_log("configuration reload refused").await;
    let refused = proxy.log().lines().find(|l| l.contains("configuration reload refused")).unwrap().to_string();
    assert!(refused.contains("ip.allow"), "the log line names the key: {refused}");
    // A broken line holding a credential: refused, named by key and line, the secret nowhere.
    let broken = format!(
        "{}\n[shared]\nredis = \"redis://:TopSecretPw@127.0.0.1:6379\n",
        config(&office, &host, listen, admin, "")
    );
    write_config(&dir, &broken);
    proxy.signal("HUP");
    for _ in 0..200 {
        if proxy.log().matches("configuration reload refused").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = proxy.log();
    let refused = log.lines().filter(|l| l.contains("configuration reload refused")).nth(1).expect("a second refusal");
    assert!(refused.contains("shared.redis") && refused.contains("line"), "{refused}");
    assert!(!log.contains("TopSecretPw"), "the password reached the log:\n{log}");
    assert_eq!(proxy.signed_get(&office, FILE).await.unwrap(), 403, "the running configuration stays");
    let metrics =
        proxy.client.get(format!("http://{}/metrics", proxy.admin)).send().await.unwrap().text().await.unwrap();
    for line in [r#"wopi_guard_config_reloads_total{outcome="applied"} 1"#, r#"{outcome="refused"} 2"#] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_within_the_grace_period() {
    let (office, host) = (Arc::new(FakeOffice::start(2048).await), FakeHost::start().await);
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &config(&office, &host, listen, admin, ""));
    let mut proxy = Running::start(&path, listen, admin).await;
    let request = |target: &'static str| {
        let (client, office) = (proxy.client.clone(), office.clone());
        tokio::spawn(async move {
            let mut request = client.get(format!("http://{listen}{target}"));
            for (n, v) in office.sign(&format!("{PUBLIC}{target}"), ticks(0)).headers() {
                request = request.header(n, v);
            }
            request.send().await.map(|r| r.status().as_u16())
        })
    };
    let finishing = request("/wopi/files/doc1?access_token=t&delay_ms=1000");
    let endless = request("/wopi/files/doc2?access_token=t&delay_ms=60000");
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.count_heads() < 2 {
        assert!(Instant::now() < deadline, "the requests never reached the host");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = Instant::now();
    proxy.signal("TERM");
    proxy.wait_log("draining").await;
    let ready = proxy.client.get(format!("http://{admin}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "a draining process is not ready");

    assert_eq!(finishing.await.unwrap().unwrap(), 200, "a request under way completes");
    let exited = proxy.wait_exit("SIGTERM", sent).await;
    let took = sent.elapsed();
    // The endless request holds the drain for the whole grace period (2 s), then it is cut.
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "exited after {took:?}");
    assert!(exited.success(), "a drained shutdown exits 0: {exited:?}");
    assert!(endless.await.unwrap().is_err(), "a request longer than the grace period is cut, not waited for");
    let log = proxy.log();
    for line in ["grace period over: stopping with requests still in flight", "\"message\":\"stopped\""] {
        assert!(log.contains(line), "{line} missing:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_an_idle_proxy_stops_at_once_and_says_so() {
    let (office, host) = (FakeOffice::start(2048).await, FakeHost::start().await);
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let text = config(&office, &host, listen, admin, "").replace("grace_period = \"2s\"", "grace_period = \"30s\"");
    let path = write_config(&dir, &text);
    let mut proxy = Running::start(&path, listen, admin).await;
    assert_eq!(proxy.signed_get(&office, FILE).await.unwrap(), 200);
    let sent = Instant::now();
    proxy.signal("TERM");
    let exited = proxy.wait_exit("SIGTERM", sent).await;
    // Nothing in flight: no wait for the 30 s grace period; Pingora's runtimes take up to 1 s.
    assert!(sent.elapsed() < Duration::from_secs(5), "exited after {:?}", sent.elapsed());
    assert!(exited.success(), "{exited:?}");
    proxy.wait_log("\"message\":\"stopped\"").await; // the stderr reader catches up
    let log = proxy.log();
    let order: Vec<usize> = ["draining: SIGTERM received", "drained: no request in flight", "\"message\":\"stopped\""]
        .iter()
        .map(|line| log.find(line).unwrap_or_else(|| panic!("{line} missing:\n{log}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in this order:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_at_once_even_with_a_request_in_flight_and_during_a_drain() {
    for during_drain in [false, true] {
        let (office, host) = (Arc::new(FakeOffice::start(2048).await), FakeHost::start().await);
        let (listen, admin) = (free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let text = config(&office, &host, listen, admin, "").replace("grace_period = \"2s\"", "grace_period = \"30s\"");
        let mut proxy = Running::start(&write_config(&dir, &text), listen, admin).await;
        let target = "/wopi/files/doc2?access_token=t&delay_ms=60000";
        let mut request = proxy.client.get(format!("http://{listen}{target}"));
        for (n, v) in office.sign(&format!("{PUBLIC}{target}"), ticks(0)).headers() {
            request = request.header(n, v);
        }
        let endless = tokio::spawn(request.send());
        while host.count_heads() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if during_drain {
            // The endless request would hold the drain for the whole 30 s grace period.
            proxy.signal("TERM");
            proxy.wait_log("draining").await;
        }
        let sent = Instant::now();
        proxy.signal("INT");
        let exited = proxy.wait_exit("SIGINT", sent).await;
        assert!(sent.elapsed() < Duration::from_secs(3), "no wait on SIGINT: {:?}", sent.elapsed());
        assert!(exited.success(), "{exited:?}");
        assert!(endless.await.unwrap().is_err(), "the request in flight is cut");
        let said =
            if during_drain { "SIGINT received while draining: stopping now" } else { "SIGINT received: stopping now" };
        proxy.wait_log(said).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_key_verifies_once_pinned_and_reloaded_by_sighup() {
    let (office, host) = (FakeOffice::start(2048).await, FakeHost::start().await);
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let key = |s: &Signer| wopi_guard::keys::ProofKey::from_components(s.modulus(), s.exponent()).unwrap();
    let (ours, other) = (key(&office.current()), key(&Signer::generate(2048)));
    let pinned = |fp: &str| format!("[keys]\ntrust = \"pinned\"\npinned = [\"{fp}\"]");
    let path = write_config(&dir, &config(&office, &host, listen, admin, &pinned(other.fingerprint())));
    let proxy = Running::start_until(&path, listen, admin, "/ping").await;
    proxy.wait_log("proof key held").await;
    let held = proxy.log().lines().find(|l| l.contains("proof key held")).unwrap().to_string();
    assert!(
        held.contains(ours.fingerprint()) && held.contains("keys.pinned"),
        "the line says which key and what to do: {held}"
    );
    assert_eq!(proxy.signed_get(&office, FILE).await.unwrap(), 503);

    write_config(&dir, &config(&office, &host, listen, admin, &pinned(ours.fingerprint())));
    proxy.signal("HUP");
    proxy.wait_log("configuration reloaded").await;
    assert_eq!(proxy.signed_get(&office, FILE).await.unwrap(), 200);
    assert_eq!(host.count(), 1);
}
