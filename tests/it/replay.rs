//! Opt-in replay protection: `[proof] replay_cache = true` refuses a signed request that already
//! passed within the timestamp window, with bounded memory; off by default.

use crate::common::*;
use std::sync::Arc;

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";

fn replay(extra: &'static str) -> Options {
    Options { proof: extra, ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_request_is_refused_and_a_fresh_one_passes() {
    let h = Harness::start_with(replay("replay_cache = true")).await;
    let proof = h.sign(FILE);
    assert_eq!(h.send("GET", FILE, Some(&proof), None).await.0, 200);
    let (status, body) = h.send("GET", FILE, Some(&proof), None).await;
    assert_eq!((status, body.as_str()), (500, "wopi-guard: refused: this signed request was already used\n"));
    // The signature covers the URL upper-cased: another case of the path is the same message.
    let upper = FILE.replace("/wopi/files/doc1", "/WOPI/FILES/DOC1");
    assert_eq!(h.send("GET", &upper, Some(&proof), None).await.0, 500);
    // A new signature (a later timestamp) is a new request.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(h.forwarded(), 2);
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"verdict="proof_replayed"} 2"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_identical_requests_racing_one_passes() {
    let h = Arc::new(Harness::start_with(replay("replay_cache = true")).await);
    let proof = h.sign(FILE);
    let racers = (0..8).map(|_| {
        let (h, proof) = (h.clone(), proof.clone());
        tokio::spawn(async move { h.send("GET", FILE, Some(&proof), None).await.0 })
    });
    let mut statuses: Vec<u16> = futures_util::future::join_all(racers).await.into_iter().map(Result::unwrap).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 500, 500, 500, 500, 500, 500, 500]);
    assert_eq!(h.forwarded(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_and_monitor_mode_only_counts() {
    let h = Harness::start().await;
    let proof = h.sign(FILE);
    for _ in 0..2 {
        assert_eq!(h.send("GET", FILE, Some(&proof), None).await.0, 200, "no replay cache unless asked");
    }
    drop(h);

    let h = Harness::start_with(replay("replay_cache = true\nmode = \"monitor\"")).await;
    let proof = h.sign(FILE);
    for _ in 0..2 {
        assert_eq!(h.send("GET", FILE, Some(&proof), None).await.0, 200);
    }
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"wopi_guard_monitor_would_refuse_total{reason="proof_replayed"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_refuses_new_proofs_with_retry_after() {
    let h = Harness::start_with(replay("replay_cache = true\nreplay_cache_max_entries = 1000")).await;
    for i in 0..1000 {
        let target = format!("/wopi/files/doc1?access_token=tok-{i}");
        assert_eq!(h.signed_get(&target).await.0, 200, "request {i}");
    }
    let target = "/wopi/files/doc1?access_token=one-too-many";
    let proof = h.sign(target);
    let response = h.client.get(h.local(target)).headers(header_map(&proof)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "60");
    assert_eq!(h.forwarded(), 1000, "the refused request was not forwarded");
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"verdict="replay_cache_full"} 1"#), "{metrics}");
}

#[test]
fn the_cache_size_is_validated() {
    let text = "upstream = \"http://127.0.0.1:1\"\npublic_url = \"https://x\"\n[discovery]\nurls = [\"https://o/hosting/discovery\"]\n[proof]\nreplay_cache = true\nreplay_cache_max_entries = 5\n";
    let e = wopi_guard::config::Config::from_toml(text).unwrap_err();
    assert_eq!(e.0[0].key, "proof.replay_cache_max_entries");
    let ok = text.replace("= 5", "= 2000");
    assert_eq!(wopi_guard::config::Config::from_toml(&ok).unwrap().first_route().proof.replay_cache, Some(2000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_forget_what_was_seen() {
    let h = Harness::start_with(replay("replay_cache = true")).await;
    let proof = h.sign(FILE);
    assert_eq!(h.send("GET", FILE, Some(&proof), None).await.0, 200);
    let text = format!("{}\n[forward]\nverified_header = true\n", h.config_text);
    assert_eq!(h.reload(&text).await, Ok(vec![]));
    assert_eq!(h.send("GET", FILE, Some(&proof), None).await.0, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_window_or_the_size_keeps_what_was_seen() {
    let h = Harness::start_with(replay("replay_cache = true")).await;
    let proof = h.sign(FILE);
    assert_eq!(h.send("GET", FILE, Some(&proof), None).await.0, 200);
    let wider = h.config_text.replace(
        "replay_cache = true",
        "replay_cache = true\nmax_age = \"1h\"\nmax_future_skew = \"10m\"\nreplay_cache_max_entries = 5000",
    );
    assert_ne!(wider, h.config_text);
    assert_eq!(h.reload(&wider).await, Ok(vec![]));
    let (status, body) = h.send("GET", FILE, Some(&proof), None).await;
    assert_eq!((status, body.as_str()), (500, wopi_guard::refusal::Refusal::ProofReplayed.body()), "still a replay");
    let fresh = h.sign(FILE);
    assert_eq!(h.send("GET", FILE, Some(&fresh), None).await.0, 200, "a fresh proof passes under the new window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgeries_cannot_fill_the_cache() {
    // Every forgery must reach the verifier: failed_proofs would cut them after 60.
    let options = Options {
        extra: "[rate_limit.failed_proofs]\nburst = 0\n".into(),
        ..replay("replay_cache = true\nreplay_cache_max_entries = 1000")
    };
    let h = Harness::start_with(options).await;
    let intruder = Signer::generate(2048);
    for i in 0..1100 {
        let target = format!("/wopi/files/doc1?access_token=forged-{i}");
        let forged = ProofSet::sign(&h.public(&target), ticks(0), &intruder, &intruder);
        assert_eq!(h.send("GET", &target, Some(&forged), None).await.0, 500, "forgery {i}");
    }
    assert_eq!(h.signed_get(FILE).await.0, 200, "1100 forgeries later, a genuine proof still finds room");
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains(r#"verdict="proof_invalid"} 1100"#), "{metrics}");
    assert!(!metrics.contains(r#"verdict="replay_cache_full"} 1"#), "{metrics}");
}
