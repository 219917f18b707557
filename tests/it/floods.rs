//! `rate_limit.failed_proofs`: an address whose protected requests keep failing verification is
//! refused (429 `proof_failures`) before any RSA work until its budget refills; a request that
//! verifies gives its address the whole budget back. Without and with `[shared]` (a real
//! redis-server).

use crate::common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const TARGET: &str = "/wopi/files/7?access_token=tok-7";

/// A request to TARGET whose proof was made for another URL: it never verifies.
async fn forged(h: &Harness, client: &reqwest::Client) -> (u16, Option<String>) {
    let proof = h.sign("/wopi/files/8?access_token=tok-7");
    let mut request = client.get(h.local(TARGET));
    for (n, v) in proof.headers() {
        request = request.header(n, v);
    }
    let response = request.send().await.unwrap();
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), retry)
}

async fn genuine(h: &Harness, client: &reqwest::Client) -> u16 {
    let proof = h.sign(TARGET);
    let mut request = client.get(h.local(TARGET));
    for (n, v) in proof.headers() {
        request = request.header(n, v);
    }
    request.send().await.unwrap().status().as_u16()
}

/// The verifications the proxy ran so far.
async fn verifications(h: &Harness) -> u64 {
    let text = h.admin_text("/metrics").await;
    let line = text.lines().find(|l| l.starts_with("wopi_guard_verification_seconds_count ")).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn forgers_are_cut_before_rsa_and_a_genuine_proof_refills(extra: &str) {
    let limit = "[rate_limit.failed_proofs]\nper_second = 1\nburst = 3\n";
    let h = Harness::start_with(Options { extra: format!("{extra}{limit}"), ..Options::default() }).await;
    let forger = reqwest::Client::builder().no_proxy().build().unwrap();
    let office =
        reqwest::Client::builder().no_proxy().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).build().unwrap();
    for i in 0..3 {
        assert_eq!(forged(&h, &forger).await.0, 500, "forgery {i} is judged");
    }
    // Locally the fourth is cut before RSA; with [shared], Redis says so in the round trip after
    // the fourth's RSA, and from then on the instance cuts it before RSA with no Redis call.
    let (status, retry) = forged(&h, &forger).await;
    assert_eq!(status, 429, "the fourth is cut");
    assert_eq!(retry.as_deref(), Some("1"));
    let before = verifications(&h).await;
    for _ in 0..20 {
        assert_eq!(forged(&h, &forger).await.0, 429);
    }
    assert_eq!(verifications(&h).await, before, "no RSA work for an address out of its budget");
    h.metric_shows("wopi_guard_requests_total{operation=\"CheckFileInfo\",verdict=\"proof_failures\"} 21").await;
    // Another address is not affected.
    assert_eq!(genuine(&h, &office).await, 200);
    // Once one failure has refilled, the next signed request reaches RSA: a genuine one
    // verifies and gives the address its whole budget back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(genuine(&h, &forger).await, 200, "a genuine signer proves itself");
    for i in 0..3 {
        assert_eq!(forged(&h, &forger).await.0, 500, "a whole budget again: forgery {i} is judged");
    }
    assert_eq!(forged(&h, &forger).await.0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_whose_proofs_keep_failing_is_cut_before_rsa() {
    forgers_are_cut_before_rsa_and_a_genuine_proof_refills("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_whose_proofs_keep_failing_is_cut_before_rsa_with_shared() {
    let redis = RedisServer::start(None);
    let shared = format!("[shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"\n", redis.url());
    forgers_are_cut_before_rsa_and_a_genuine_proof_refills(&shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_proofs_is_on_by_default_and_burst_0_turns_it_off() {
    let h = Harness::start().await;
    let forger = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..61 {
        statuses.push(forged(&h, &forger).await.0);
    }
    assert!(statuses[..60].iter().all(|s| *s == 500), "{statuses:?}");
    assert_eq!(statuses[60], 429, "the 61st of a burst of 60");
    let off = Options { extra: "[rate_limit.failed_proofs]\nburst = 0\n".into(), ..Options::default() };
    let h = Harness::start_with(off).await;
    for _ in 0..70 {
        assert_eq!(forged(&h, &forger).await.0, 500);
    }
}
