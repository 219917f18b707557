//! Reload, in-process (the same code path SIGHUP takes, driven by a trigger): allow-lists, rate
//! limits, operation rules, discovery sources and the upstream follow a new configuration; an
//! invalid one is refused and the running one stays; requests under way are not disturbed.
//! `tests/it/signals.rs` does the same through the real binary and SIGHUP.

use crate::common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_follows_a_reload() {
    let h = Harness::start().await;
    let base = h.config_text.clone();
    assert_eq!(h.signed_get(FILE).await.0, 200);

    assert_eq!(h.reload(&format!("{base}\n[ip]\nallow = [\"10.0.0.0/8\"]\n")).await, Ok(vec![]));
    assert_eq!(h.signed_get(FILE).await.0, 403, "the new allow-list is in force");

    assert_eq!(h.reload(&format!("{base}\n[operations]\ndeny = [\"CheckFileInfo\"]\n")).await, Ok(vec![]));
    let (status, body) = h.signed_get(FILE).await;
    assert_eq!((status, body.contains("operation")), (403, true), "{body}");
    assert_eq!(h.signed_get("/wopi/files/doc1/contents?access_token=tok-123").await.0, 200, "GetFile still passes");

    let limited = format!("{base}\n[rate_limit.per_ip]\nper_second = 0.01\nburst = 2\n");
    assert_eq!(h.reload(&limited).await, Ok(vec![]));
    assert_eq!(h.signed_get(FILE).await.0, 200);
    // A reload that leaves [rate_limit] alone keeps the limiter state: no fresh burst.
    let same_limits = limited.replace("[proof]\n", "[proof]\nmax_age = \"15m\"\n");
    assert_ne!(same_limits, limited);
    assert_eq!(h.reload(&same_limits).await, Ok(vec![]));
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(h.signed_get(FILE).await.0, 429, "the burst of 2 was used across the reload");

    assert_eq!(h.reload(&base).await, Ok(vec![]));
    assert_eq!(h.signed_get(FILE).await.0, 200, "back to the first configuration");
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"wopi_guard_config_reloads_total{outcome="applied"} 5"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_is_refused_and_the_running_one_stays() {
    let h = Harness::start().await;
    let unresolvable = h.config_text.replace(&h.host.url(), "http://no-such-host.invalid:8080");
    assert_ne!(unresolvable, h.config_text);
    let error = h.reload(&unresolvable).await.unwrap_err();
    assert!(error.contains("upstream: cannot resolve no-such-host.invalid"), "{error}");
    let unknown_key = format!("{}\n[discovery.x]\n", h.config_text);
    assert!(h.reload(&unknown_key).await.unwrap_err().contains("discovery.x: unknown key"));
    assert_eq!(h.signed_get(FILE).await.0, 200, "the running configuration is untouched");
    assert_eq!(h.forwarded(), 1);
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"wopi_guard_config_reloads_total{outcome="refused"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_keys_are_reported_and_keep_their_running_values() {
    let h = Harness::start().await;
    let other = free_port();
    let text = h.config_text.replace(&format!("listen = \"{}\"", h.listen), &format!("listen = \"{other}\""));
    let text = text.replace("threads = 2", "threads = 1");
    let restart = Ok(vec!["listen".to_string(), "server.threads".to_string()]);
    let logs = captured_logs();
    assert_eq!(h.reload(&text).await, restart);
    assert_eq!(h.reload(&text).await, restart, "still not applied: said again");
    let log = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for key in ["listen", "server.threads"] {
        let warned = log.lines().filter(|l| {
            l.contains(r#""level":"WARN""#)
                && l.contains("applied only at restart")
                && l.contains(&format!(r#""key":"{key}""#))
        });
        assert_eq!(warned.count(), 2, "one warning for {key} per reload:\n{log}");
    }
    assert_eq!(h.signed_get(FILE).await.0, 200, "still on the first address");
    assert!(tokio::net::TcpStream::connect(other).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_under_way_finish_on_the_configuration_they_started_with() {
    let h = Arc::new(Harness::start().await);
    let slow = "/wopi/files/doc1?access_token=tok-123&delay_ms=3000";
    let in_flight = {
        let h = h.clone();
        tokio::spawn(async move { h.signed_get(slow).await.0 })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.host.count_heads() == 0 {
        assert!(Instant::now() < deadline, "the slow request never reached the host");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.reload(&format!("{}\n[ip]\nallow = [\"10.0.0.0/8\"]\n", h.config_text)).await, Ok(vec![]));
    assert!(!in_flight.is_finished(), "a reload does not wait for the requests under way");
    assert_eq!(h.signed_get(FILE).await.0, 403, "new requests see the new configuration");
    assert_eq!(in_flight.await.unwrap(), 200, "the request under way completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_sources_and_upstream_follow_a_reload() {
    let h = Harness::start().await;
    let second = FakeOffice::start(2048).await;
    let new_host = FakeHost::start().await;
    let text = h
        .config_text
        .replace(&h.office.discovery_url(), &second.discovery_url())
        .replace(&h.host.url(), &new_host.url());
    assert_eq!(h.reload(&text).await, Ok(vec![]));

    // The new source is fetched at once (no request needed), not at the next refresh_interval.
    let loaded = format!("wopi_guard_proof_key{{source=\"{}\"", second.discovery_url());
    for _ in 0..200 {
        if h.admin_text("/metrics").await.contains(&loaded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(h.admin_text("/metrics").await.contains(&loaded), "the new source was fetched after the reload");
    let proof = second.sign(&h.public(FILE), ticks(0));
    assert_eq!(h.send("GET", FILE, Some(&proof), None).await.0, 200, "the new office server's keys are in force");
    assert_eq!(new_host.count(), 1, "forwarded to the new upstream");
    assert_eq!(h.host.count(), 0);
    // The removed source's keys are no longer accepted.
    assert_eq!(h.signed_get(FILE).await.0, 500);
    let metrics = h.admin_text("/metrics").await;
    assert!(!metrics.contains(&format!("wopi_guard_proof_key{{source=\"{}\"", h.office.discovery_url())), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_and_proof_settings_follow_a_reload() {
    let h = Harness::start().await;
    let minute_old = h.office.sign(&h.public(FILE), ticks(-60));
    assert_eq!(h.send("GET", FILE, Some(&minute_old), None).await.0, 200, "within the default max_age");
    // public_url: what the office server signs changes with it.
    let moved_url = |target: &str| format!("https://moved.example.test{target}");
    let moved = h.config_text.replace("https://wopi.example.test", "https://moved.example.test");
    assert_eq!(h.reload(&moved).await, Ok(vec![]));
    assert_eq!(h.signed_get(FILE).await.0, 500, "signed over the old public_url");
    let proof = h.office.sign(&moved_url(FILE), ticks(0));
    assert_eq!(h.send("GET", FILE, Some(&proof), None).await.0, 200, "signed over the new public_url");
    // Proof settings: max_age and reject_status.
    let stricter = moved.replace("[proof]\n", "[proof]\nmax_age = \"30s\"\nreject_status = 401\n");
    assert_eq!(h.reload(&stricter).await, Ok(vec![]));
    let minute_old = h.office.sign(&moved_url(FILE), ticks(-60));
    let (status, body) = h.send("GET", FILE, Some(&minute_old), None).await;
    assert_eq!((status, body.contains("timestamp")), (401, true), "{body}");
    assert_eq!(h.send("GET", FILE, Some(&h.office.sign(&moved_url(FILE), ticks(0))), None).await.0, 200);
    // mode = "monitor": what would be refused is forwarded.
    let monitor = stricter.replace("[proof]\n", "[proof]\nmode = \"monitor\"\n");
    assert_eq!(h.reload(&monitor).await, Ok(vec![]));
    assert_eq!(h.send("GET", FILE, Some(&minute_old), None).await.0, 200);
    assert_eq!(h.forwarded(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_ca_follows_a_reload() {
    let (right, wrong) = (Pki::new("reload host CA"), Pki::new("reload other CA"));
    let leaf = right.leaf("host");
    let host = FakeHost::start().await;
    let front = TlsFront::start(host.addr(), &leaf.0, &leaf.1).await;
    let upstream = Some(format!("https://127.0.0.1:{}", front.addr.port()));
    let ca = |pki: &Pki| format!("[upstream_tls]\nca_file = \"{}\"\n", pki.ca.display());
    let h = Harness::start_with(Options { upstream, extra: ca(&wrong), ..Options::default() }).await;
    assert_eq!(h.signed_get(FILE).await.0, 502, "the other CA does not vouch for the host");
    assert_eq!(h.reload(&h.config_text.replace(&ca(&wrong), &ca(&right))).await, Ok(vec![]));
    assert_eq!(h.signed_get(FILE).await.0, 200, "the reloaded CA does");
    assert_eq!(h.reload(&h.config_text).await, Ok(vec![]));
    assert_eq!(h.signed_get(FILE).await.0, 502, "and back");
    assert_eq!(host.count(), 1);
}
