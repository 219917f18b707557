//! The real binary and Unix signals: SIGHUP re-reads the file (a valid one applies, an invalid
//! one is refused with a log line and the running one stays); SIGTERM lets requests under way
//! finish and exits within `server.grace_period`, not Pingora's 300 s default.

mod common;

use common::*;
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
        let running = Running { child, log, listen, admin, client };
        for _ in 0..400 {
            if let Ok(r) = running.client.get(format!("http://{admin}/ready")).send().await {
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
    assert_eq!(proxy.signed_get(&office, FILE).await.unwrap(), 403, "the running configuration stays");
    let metrics =
        proxy.client.get(format!("http://{}/metrics", proxy.admin)).send().await.unwrap().text().await.unwrap();
    for line in [r#"wopi_guard_config_reloads_total{outcome="applied"} 1"#, r#"{outcome="refused"} 1"#] {
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    proxy.signal("TERM");

    assert_eq!(finishing.await.unwrap().unwrap(), 200, "a request under way completes");
    let exited = loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            break status;
        }
        assert!(sent.elapsed() < Duration::from_secs(20), "still running 20 s after SIGTERM:\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = sent.elapsed();
    // Pingora waits grace_period for listeners and then up to grace_period for runtimes.
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(8), "exited after {took:?}");
    assert!(exited.success(), "a drained shutdown exits 0: {exited:?}");
    assert!(endless.await.unwrap().is_err(), "a request longer than the grace period is cut, not waited for");
}
