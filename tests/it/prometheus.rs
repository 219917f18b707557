//! Prometheus's own tools on what wopi-guard ships: `promtool check metrics` on a scraped
//! `/metrics` after traffic (with `[[routes]]` and `[shared]` on a real redis-server), and
//! `promtool check rules` / `promtool test rules` on the alert rules of `examples/`.

use crate::common::*;
use std::io::Write;
use std::process::{Command, Stdio};

fn promtool() -> Command {
    assert!(
        std::path::Path::new("/usr/bin/promtool").exists(),
        "promtool is not installed: `make test-deps` installs it (apt-get install prometheus)"
    );
    Command::new("/usr/bin/promtool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_after_traffic_with_routes_and_shared() {
    let redis = RedisServer::start(None);
    let extra = format!(
        "[shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"\n\n[[routes]]\nhost = \"cloud-a.test\"\npublic_url = \"https://wopi.example.test\"\n\n[[routes]]\nhost = \"*\"\npublic_url = \"https://wopi.example.test\"\nupstream = \"http://127.0.0.1:1\"\n",
        redis.url()
    );
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    let file = "/wopi/files/doc1?access_token=tok";
    let proof = h.sign(file);
    assert_eq!(h.send_to(Some("cloud-a.test"), "GET", file, Some(&proof), None).await.0, 200);
    assert_eq!(h.send_to(Some("cloud-a.test"), "GET", file, None, None).await.0, 500);
    assert_eq!(h.send_to(Some("other.test"), "GET", file, Some(&h.sign(file)), None).await.0, 502);
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains("route=\"cloud-a.test\"") && metrics.contains("wopi_guard_shared"), "{metrics}");
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
}

#[test]
fn the_alert_rules_load_and_fire_as_documented() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    for args in [&["check", "rules", "prometheus-alerts.yml"][..], &["test", "rules", "prometheus-alerts.test.yml"]] {
        let out = promtool().args(args).current_dir(examples).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.contains("SUCCESS"), "promtool {args:?}:\n{said}");
    }
}
