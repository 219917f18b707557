//! `[shared]` on a real redis-server: instances share one rate budget and one replay cache, and
//! each `on_error` mode answers in time when Redis dies; after a restart they share again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

const HASH_KEY: &str = "0123456789abcdef0123456789abcdef";

fn shared(redis: &RedisServer, more: &str) -> String {
    block(&redis.url(), more)
}

/// A `[shared]` block for `url`.
fn block(url: &str, more: &str) -> String {
    format!("[shared]\nredis = \"{url}\"\nhash_key = \"{HASH_KEY}\"\n{more}\n")
}

/// `n` instances trusting one office server, each with `extra` config.
async fn instances(n: usize, proof: &'static str, extra: &str) -> Vec<Harness> {
    let office = Arc::new(FakeOffice::start(2048).await);
    let mut out = Vec::new();
    for _ in 0..n {
        let options = Options { proof, extra: extra.to_string(), ..Options::default() };
        out.push(Harness::start_on(office.clone(), options).await);
    }
    out
}

/// A fresh proof for each call (the timestamp moves), so the replay cache plays no part.
async fn fresh_get(h: &Harness, i: usize) -> u16 {
    let target = format!("/wopi/files/{i}?access_token=t{i}");
    h.signed_get(&target).await.0
}

/// 3 instances with `block` spend one budget of 10: the admitted count is exact within 1.
async fn one_budget_over_three_instances(block: &str) {
    let limit = "[rate_limit.per_ip]\nper_second = 0.01\nburst = 10\n\
                 [rate_limit.per_token]\nper_second = 0.01\nburst = 1000\n";
    let hs = instances(3, "", &format!("{block}{limit}")).await;
    let mut admitted = 0;
    for i in 0..30 {
        if fresh_get(&hs[i % 3], i).await == 200 {
            admitted += 1;
        }
    }
    assert!((9..=11).contains(&admitted), "10 admitted over the 3 instances, not 10 each: {admitted}");
}

/// A proof admitted by one instance with `block` is refused by another, and by the first.
async fn replay_to_another_instance(block: &str) {
    let hs = instances(2, "replay_cache = true", block).await;
    let target = "/wopi/files/7?access_token=tok";
    let proof = hs[0].sign(target);
    assert_eq!(hs[0].send("GET", target, Some(&proof), None).await.0, 200);
    let (status, body) = hs[1].send("GET", target, Some(&proof), None).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(hs[0].send("GET", target, Some(&proof), None).await.0, 500, "and on the first one too");
    assert_eq!(hs[1].host.count() + hs[0].host.count(), 1);
}

/// 100 concurrent copies of one proof over 3 instances with `block`: exactly one is admitted.
async fn one_of_100_concurrent(block: &str) {
    let hs = Arc::new(instances(3, "replay_cache = true", block).await);
    let target = "/wopi/files/9?access_token=tok";
    let proof = Arc::new(hs[0].sign(target));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (hs, proof) = (hs.clone(), proof.clone());
        tasks.push(tokio::spawn(async move { hs[i % 3].send("GET", target, Some(&proof), None).await.0 }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 500), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_budget() {
    let redis = RedisServer::start(None);
    one_budget_over_three_instances(&shared(&redis, "")).await;
    // The instances' own state would have let 30 through: the same setup without [shared].
    let limit = "[rate_limit.per_ip]\nper_second = 0.01\nburst = 10\n";
    let alone = instances(3, "", limit).await;
    let mut local = 0;
    for i in 0..30 {
        if fresh_get(&alone[i % 3], i).await == 200 {
            local += 1;
        }
    }
    assert_eq!(local, 30, "without [shared] each instance has its own budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_replayed_to_another_instance_is_refused() {
    let redis = RedisServer::start(None);
    replay_to_another_instance(&shared(&redis, "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_100_concurrent_identical_proofs_over_3_instances_one_is_admitted() {
    let redis = RedisServer::start(None);
    one_of_100_concurrent(&shared(&redis, "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shares_budgets_and_the_replay_cache_alike() {
    let mut cluster = RedisCluster::start();
    let block = block(&cluster.url(), "cluster = true");
    one_budget_over_three_instances(&block).await;
    replay_to_another_instance(&block).await;
    one_of_100_concurrent(&block).await;
    // The keys were spread by their hash tags: more than one node holds some.
    let holding = cluster.nodes.iter().filter(|n| !n.cli(&["--scan", "--pattern", "wopi-guard:*"]).is_empty()).count();
    assert!(holding >= 2, "keys on {holding} node(s): {:?}", cluster.keys());
    assert!(cluster.keys().iter().all(|k| k.starts_with("wopi-guard:")), "{:?}", cluster.keys());
    replays_spend_nothing_and_a_limit_gives_the_replay_key_back(&block).await;

    // The whole cluster down: on_error answers in time; back up: shared again, budgets full.
    let more = "cluster = true\non_error = \"deny\"\ntimeout = \"100ms\"\nkey_prefix = \"outage\"";
    let limit = "[rate_limit.per_ip]\nper_second = 0.01\nburst = 3\n";
    let hs = instances(2, "", &format!("{}{limit}", self::block(&cluster.url(), more))).await;
    assert_eq!(fresh_get(&hs[0], 0).await, 200);
    cluster.kill();
    for i in 1..4 {
        let started = Instant::now();
        assert_eq!(fresh_get(&hs[i % 2], i).await, 503, "on_error = deny");
        assert!(started.elapsed() < Duration::from_millis(1500), "answered after {:?}", started.elapsed());
    }
    cluster.restart();
    tokio::time::sleep(Duration::from_millis(2200)).await; // the breaker's open period
    let mut statuses = Vec::new();
    for i in 10..16 {
        statuses.push(fresh_get(&hs[i % 2], i).await);
    }
    // The first call after the breaker's pause may still find the old connections dead.
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429 || *s == 503), "{statuses:?}");
    assert_eq!(admitted, 3, "one budget of 3 again, over both instances: {statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wopi-guard"))
        .args(["check", "--connect", "--config"])
        .arg(write_config(&hs[0].config_text))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("cluster mode"), "{stdout}");
}

/// `text` in a file of its own, kept until the process ends.
fn write_config(text: &str) -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let file = dir.join("wopi-guard.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_redis_checked_against_the_ca_file() {
    let pki = Pki::new("redis CA");
    let leaf = pki.leaf("redis");
    let redis = RedisServer::start_tls(Some("TlsPa55"), &leaf, &pki.ca);
    assert!(redis.url().starts_with("rediss://"));
    let ca = format!("ca_file = \"{}\"", pki.ca.display());
    one_budget_over_three_instances(&shared(&redis, &ca)).await;
    replay_to_another_instance(&shared(&redis, &ca)).await;
    // Another authority's CA file: the handshake fails, and on_error = deny answers.
    let other = Pki::new("other CA");
    let wrong = format!("ca_file = \"{}\"\non_error = \"deny\"", other.ca.display());
    let extra = format!("{}[rate_limit.per_ip]\nper_second = 1\nburst = 5\n", shared(&redis, &wrong));
    let office = Arc::new(FakeOffice::start(2048).await);
    // Not ready, and it says why: deny applies while the unverified Redis cannot be used.
    let h = Harness::start_on(office, Options { extra, wait_ready: false, ..Options::default() }).await;
    let started = Instant::now();
    loop {
        let ready = h.client.get(format!("http://{}/ready", h.admin)).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 503);
        let body = ready.text().await.unwrap();
        if body.contains("on_error = \"deny\" applies") && !body.contains("no proof keys") {
            break; // the keys are loaded: only Redis keeps it from being ready
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fresh_get(&h, 0).await, 503, "an unverified Redis is not used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_on_error_mode_answers_in_time_when_redis_dies_and_sharing_resumes_after_a_restart() {
    let mut redis = RedisServer::start(None);
    let limit = "[rate_limit.per_ip]\nper_second = 0.01\nburst = 4\n";
    let mut hs = Vec::new();
    for mode in ["deny", "allow", "local"] {
        let more = format!("on_error = \"{mode}\"\ntimeout = \"50ms\"\ninstances = 2");
        hs.push(instances(1, "", &format!("{}{limit}", shared(&redis, &more))).await.remove(0));
    }
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(fresh_get(h, i).await, 200, "Redis up: admitted");
    }
    redis.kill();
    for (i, (h, mode)) in hs.iter().zip(["deny", "allow", "local"]).enumerate() {
        for round in 0..4 {
            let target = format!("/wopi/files/{i}?access_token=x{round}");
            let proof = h.sign(&target);
            let started = Instant::now();
            let response = h.client.get(h.local(&target));
            let mut request = response;
            for (n, v) in proof.headers() {
                request = request.header(n, v);
            }
            let answer = request.send().await.unwrap();
            let took = started.elapsed();
            // One round trip's timeout plus one connect attempt, with room for a loaded machine.
            assert!(took < Duration::from_millis(1500), "{mode}: answered after {took:?}");
            let status = answer.status().as_u16();
            match mode {
                "deny" => {
                    assert_eq!(status, 503, "{mode}");
                    assert!(answer.headers().contains_key("retry-after"), "{mode}");
                }
                "allow" => assert_eq!(status, 200, "{mode}"),
                // The local budget is the shared one divided by `instances`: 4 / 2 = 2 at once.
                _ => assert_eq!(status, if round < 2 { 200 } else { 429 }, "{mode} round {round}"),
            }
        }
        let metrics = h.admin_text("/metrics").await;
        assert!(metrics.contains("wopi_guard_shared_state_fallback 1"), "{mode}: {metrics}");
    }
    redis.restart();
    // The breaker probes again after its open period; then the instances share Redis again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let h = &hs[1]; // on_error = "allow": a 200 without Redis would hide a failure, so count
    let mut admitted = 0;
    for i in 0..8 {
        if fresh_get(h, 100 + i).await == 200 {
            admitted += 1;
        }
    }
    assert!((4..=5).contains(&admitted), "budgets start full after the restart, and are enforced: {admitted}");
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains("wopi_guard_shared_state_fallback 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_works_and_its_password_is_never_shown() {
    let password = "Pa55w0rdNeverLogged";
    let logs = captured_logs();
    let mut redis = RedisServer::start(Some(password));
    let hs = instances(1, "replay_cache = true", &shared(&redis, "timeout = \"50ms\"")).await;
    let h = &hs[0];
    let target = "/wopi/files/3?access_token=t";
    let proof = h.sign(target);
    assert_eq!(h.send("GET", target, Some(&proof), None).await.0, 200);
    assert_eq!(h.send("GET", target, Some(&proof), None).await.0, 500, "replay refused: Redis was used");
    // A reload with a wrong password is refused, and says so without any password.
    let wrong = h.config_text.replace(password, "WrongPassword123");
    let error = h.reload(&wrong).await.unwrap_err();
    assert!(error.contains("redis://***@127.0.0.1") && !error.contains("WrongPassword123"), "{error}");
    redis.kill();
    for i in 0..4 {
        let _ = fresh_get(h, i).await; // the breaker opens and says so, naming Redis
    }
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("redis://***@127.0.0.1"), "the failure names Redis without its password:\n{logs}");
    assert!(!logs.contains(password), "the password leaked into the log:\n{logs}");
    let metrics = h.admin_text("/metrics").await;
    assert!(!metrics.contains(password), "{metrics}");
    let check = wopi_guard::config::Config::from_toml(&h.config_text).unwrap();
    assert!(!format!("{check:?}").contains(password), "Debug of the config hides it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_carry_the_prefix_expire_once_refilled_and_hold_no_raw_token() {
    let redis = RedisServer::start(None);
    let limits = "[rate_limit.per_ip]\nper_second = 1\nburst = 5\n\
                  [rate_limit.per_token]\nper_second = 2\nburst = 4\n\
                  [rate_limit.per_token.operations]\nCheckFileInfo = { per_second = 1, burst = 2 }\n\
                  [rate_limit.per_file]\nper_second = 1\nburst = 3\n";
    let more = "key_prefix = \"guard-test\"";
    let hs = instances(1, "replay_cache = true", &format!("{}{limits}", shared(&redis, more))).await;
    let token = "SeCrEtToKeN";
    let target = format!("/wopi/files/4242?access_token={token}");
    assert_eq!(hs[0].signed_get(&target).await.0, 200);
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    // Address, token, token's CheckFileInfo budget, file, and the proof's replay key.
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("guard-test:")), "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.starts_with("guard-test:rp:")).count(), 1, "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("guard-test:rl:{tok:") && k.ends_with("}:CheckFileInfo")), "{keys:?}");
    for key in &keys {
        let lower = key.to_lowercase();
        assert!(!lower.contains(&token.to_lowercase()) && !lower.contains("4242"), "raw material in {key}");
        let ttl: i64 = redis.cli(&["PTTL", key])[0].parse().unwrap();
        // GCRA: a key lives until its budget has refilled (at most burst / rate: 5 s here); the
        // replay key for the proof window (max_age + max_future_skew).
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
        if key.contains(":rl:") {
            assert!(ttl <= 5_000, "{key} outlives its refill: {ttl} ms");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_limit_is_refused_locally_without_a_redis_call() {
    let redis = RedisServer::start(None);
    let limit = "[rate_limit.per_ip]\nper_second = 0.01\nburst = 2\n";
    let hs = instances(1, "", &format!("{}{limit}", shared(&redis, ""))).await;
    let h = &hs[0];
    assert_eq!(fresh_get(h, 0).await, 200);
    assert_eq!(fresh_get(h, 1).await, 200);
    let (status, body) = h.signed_get("/wopi/files/2?access_token=t2").await;
    assert_eq!(status, 429, "Redis says the budget is spent: {body}");
    let calls = redis.script_calls();
    for i in 3..8 {
        assert_eq!(fresh_get(h, i).await, 429);
    }
    assert_eq!(redis.script_calls(), calls, "refused from the local negative cache, with no Redis call");
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains("wopi_guard_shared_state_local_refusals_total 5"), "{metrics}");
    assert!(metrics.contains("wopi_guard_shared_state_seconds_count 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_costs_no_request_more_than_the_timeout() {
    let redis = RedisServer::start(None);
    let limit = "[rate_limit.per_ip]\nper_second = 100\nburst = 100\n";
    let more = "on_error = \"deny\"\ntimeout = \"100ms\"";
    let hs = instances(1, "", &format!("{}{limit}", shared(&redis, more))).await;
    let h = &hs[0];
    assert_eq!(fresh_get(h, 0).await, 200, "connected");
    redis.pause(); // the connection stays open; nothing answers
    for i in 1..6 {
        let started = Instant::now();
        let status = fresh_get(h, i).await;
        let took = started.elapsed();
        assert_eq!(status, 503, "on_error = deny");
        // The timeout, plus the proxy's own work on a loaded test machine.
        assert!(took < Duration::from_millis(600), "request {i} waited {took:?}");
    }
    let metrics = h.admin_text("/metrics").await;
    assert!(metrics.contains("wopi_guard_shared_state_errors_total{kind=\"timeout\"} 3"), "{metrics}");
    redis.resume();
}

#[test]
fn check_connect_reaches_redis_and_says_what_it_found() {
    let redis = RedisServer::start(Some("Pa55-check"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wopi-guard.toml");
    let write = |url: &str| {
        std::fs::write(
            &file,
            format!(
                "upstream = \"http://127.0.0.1:8081\"\npublic_url = \"https://wopi.example.com\"\n\
                 [discovery]\nurls = [\"http://127.0.0.1:9980/hosting/discovery\"]\n\
                 [shared]\nredis = \"{url}\"\nhash_key = \"{HASH_KEY}\"\n"
            ),
        )
        .unwrap()
    };
    let bin = || std::process::Command::new(env!("CARGO_BIN_EXE_wopi-guard"));
    write(&redis.url());
    let out = bin().args(["check", "--connect", "--config"]).arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("shared.redis: PING ") && stdout.contains(" ms, Redis 7") && stdout.contains("standalone"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("redis://***@127.0.0.1:{}", redis.port)), "{stdout}");
    assert!(!stdout.contains("Pa55-check"), "{stdout}");
    // Without --connect, check says Redis was not tried.
    let out = bin().args(["check", "--config"]).arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("`check --connect` tries it"));
    // The secrets may come from the environment (a Kubernetes Secret): check names them, never
    // shows them, and uses them.
    let out = bin()
        .args(["check", "--connect", "--config"])
        .arg(&file)
        .env("WOPI_GUARD_SHARED__REDIS", redis.url())
        .env("WOPI_GUARD_SHARED__HASH_KEY", "EnvHashKey-0123456789")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("from WOPI_GUARD_SHARED__HASH_KEY: shared.hash_key = \"***\""), "{stdout}");
    assert!(stdout.contains("from WOPI_GUARD_SHARED__REDIS: shared.redis = \"redis://***@127.0.0.1:"), "{stdout}");
    assert!(!stdout.contains("EnvHashKey") && !stdout.contains("Pa55-check"), "{stdout}");
    // A wrong password, and a port where nothing listens: exit 1, naming Redis without the password.
    for url in [
        redis.url().replace("Pa55-check", "Wrong-Pa55"),
        format!("redis://:Pa55-check@127.0.0.1:{}", free_port().port()),
    ] {
        write(&url);
        let out = bin().args(["check", "--connect", "--config"]).arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains("error: shared.redis: redis://***@127.0.0.1:") && stdout.contains("does not answer"),
            "{stdout}"
        );
        assert!(!stdout.contains("Pa55"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_to_another_redis_connected_before_the_swap() {
    let (first, second) = (RedisServer::start(None), RedisServer::start(None));
    // A slow refill: the address's key lives 100 s (at 100/s it lived 11 ms, and DBSIZE below
    // could find it gone).
    let limit = "[rate_limit.per_ip]\nper_second = 0.01\nburst = 100\n";
    let hs = instances(1, "", &format!("{}{limit}", shared(&first, ""))).await;
    let h = &hs[0];
    assert_eq!(fresh_get(h, 0).await, 200);
    assert_eq!(first.cli(&["DBSIZE"]), ["1"]);
    let calls = first.script_calls(); // EVALSHA, answered NOSCRIPT, then EVAL
                                      // An unchanged [shared] keeps its connection; a new one is used from the swap on.
    assert_eq!(h.reload(&h.config_text).await, Ok(vec![]));
    let moved = h.config_text.replace(&first.url(), &second.url());
    assert_eq!(h.reload(&moved).await, Ok(vec![]));
    assert_eq!(fresh_get(h, 1).await, 200);
    assert_eq!(second.cli(&["DBSIZE"]), ["1"], "the new Redis holds the address's key");
    assert_eq!(first.script_calls(), calls, "the old one is no longer called");
    // Removing [shared] goes back to this process's own state.
    let alone = moved.replace(&shared(&second, ""), "");
    assert_ne!(alone, moved);
    let calls = second.script_calls();
    assert_eq!(h.reload(&alone).await, Ok(vec![]));
    assert_eq!(fresh_get(h, 2).await, 200);
    assert_eq!(second.script_calls(), calls);
}

/// On a Cluster the replay key is in a slot of its own: it is checked first, so a refused replay
/// spends no budget, and a request a limit refuses gets its replay key back.
async fn replays_spend_nothing_and_a_limit_gives_the_replay_key_back(block: &str) {
    let limit = "[rate_limit.per_token]\nper_second = 2\nburst = 2\n[rate_limit.per_file]\nper_second = 2\nburst = 2\n";
    let hs = instances(2, "replay_cache = true", &format!("{block}\nkey_prefix = \"edges\"\n{limit}")).await;
    let target = "/wopi/files/9?access_token=tok-9";
    let proof = hs[0].sign(target);
    assert_eq!(hs[0].send("GET", target, Some(&proof), None).await.0, 200);
    // One captured request replayed five times: each refused, none spends the token's budget.
    for i in 0..5 {
        assert_eq!(hs[i % 2].send("GET", target, Some(&proof), None).await.0, 500, "replay {i}");
    }
    assert_eq!(hs[1].signed_get(target).await.0, 200, "the second of the token's burst of 2 is still there");
    // Over the limit: 429, and the same signed request passes once the budget refilled.
    let refused = hs[0].sign(target);
    assert_eq!(hs[0].send("GET", target, Some(&refused), None).await.0, 429);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(hs[1].send("GET", target, Some(&refused), None).await.0, 200, "its replay key was given back");
    assert_eq!(hs[0].send("GET", target, Some(&refused), None).await.0, 500, "and now it is used");
}

/// Waits until `h` judges requests through Redis again (its circuit breaker closed).
async fn through_redis_again(h: &Harness) {
    let started = Instant::now();
    loop {
        let _ = fresh_get(h, 900).await; // a request is what finds Redis back
        let text = h.admin_text("/metrics").await;
        if text.contains("wopi_guard_shared_state_fallback 0") {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never back on Redis:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_local_fallback_a_proof_is_admitted_once_across_an_outage_both_ways() {
    let mut redis = RedisServer::start(None);
    let more = "on_error = \"local\"\ntimeout = \"100ms\"";
    let hs = instances(2, "replay_cache = true", &shared(&redis, more)).await;
    // Admitted through Redis, then Redis dies: a replay to the same instance is refused locally.
    let before = "/wopi/files/1?access_token=before";
    let through_redis = hs[0].sign(before);
    assert_eq!(hs[0].send("GET", before, Some(&through_redis), None).await.0, 200);
    redis.kill();
    assert_eq!(hs[0].send("GET", before, Some(&through_redis), None).await.0, 500, "replayed during the outage");
    // Admitted locally during the outage: once Redis is back, a replay to either instance is refused.
    let during = "/wopi/files/2?access_token=during";
    let local = hs[0].sign(during);
    assert_eq!(hs[0].send("GET", during, Some(&local), None).await.0, 200);
    redis.restart();
    through_redis_again(&hs[0]).await;
    through_redis_again(&hs[1]).await;
    assert_eq!(hs[1].send("GET", during, Some(&local), None).await.0, 500, "replayed to another instance after");
    assert_eq!(hs[0].send("GET", during, Some(&local), None).await.0, 500, "and to the same one");
    assert!(!redis.cli(&["--scan", "--pattern", "wopi-guard:rp:*"]).is_empty(), "the outage's proof is in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_into_routes_of_the_same_host_keeps_the_replay_cache_local_and_shared() {
    let redis = RedisServer::start(None);
    // Into `"*"`, and into a route named for the host the requests carry (127.0.0.1).
    for host in ["*", "127.0.0.1"] {
        for extra in [String::new(), shared(&redis, "")] {
            let options = Options { proof: "replay_cache = true", extra, ..Options::default() };
            let h = Harness::start_with(options).await;
            let target = "/wopi/files/3?access_token=tok-3";
            let proof = h.sign(target);
            assert_eq!(h.send("GET", target, Some(&proof), None).await.0, 200);
            let routed = format!("{}\n[[routes]]\nhost = \"{host}\"\n", h.config_text);
            assert_eq!(h.reload(&routed).await, Ok(vec![]));
            h.wait_ready().await; // a route of another host reads discovery anew
            let (status, body) = h.send("GET", target, Some(&proof), None).await;
            assert_eq!(status, 500, "{host}: replayed after the reload: {body}");
            assert!(body.contains("already used"), "{body}");
            assert_eq!(h.send("GET", target, Some(&h.sign(target)), None).await.0, 200, "{host}: routed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinel_two_instances_follow_a_failover_and_share_again() {
    let logs = captured_logs();
    let mut redis = RedisSentinels::start();
    let nodes: Vec<String> = redis.nodes().iter().map(|n| format!("\"{n}\"")).collect();
    // `redis` gives only the password: its host is not used.
    let more = format!(
        "[shared]\nsentinels = [{}]\nsentinel_master = \"{}\"\nredis = \"redis://:{}@unused.invalid/0\"\n\
         hash_key = \"{HASH_KEY}\"\ntimeout = \"200ms\"\n[rate_limit.per_token]\nper_second = 0.01\nburst = 3\n",
        nodes.join(", "),
        RedisSentinels::MASTER,
        RedisSentinels::PASSWORD,
    );
    let hs = instances(2, "replay_cache = true", &more).await;
    let spend = |token: &'static str| {
        let hs = &hs;
        async move {
            let mut statuses = Vec::new();
            for i in 0..5 {
                statuses.push(hs[i % 2].signed_get(&format!("/wopi/files/5?access_token={token}")).await.0);
            }
            statuses
        }
    };
    assert_eq!(spend("before").await, [200, 200, 200, 429, 429], "one budget of 3 over both instances");
    let old = redis.master.port;
    assert_eq!(redis.master_port(), Some(old));

    redis.master.kill();
    let killed = Instant::now();
    let promoted = loop {
        if redis.master_port() == Some(redis.replica.port) {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "no sentinel promoted the replica");
        // Requests meanwhile are answered in time, by on_error ("local").
        let started = Instant::now();
        let _ = fresh_get(&hs[0], 100).await;
        assert!(started.elapsed() < Duration::from_millis(1500), "answered after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    through_redis_again(&hs[0]).await;
    through_redis_again(&hs[1]).await;
    let back = killed.elapsed();
    // The failover, plus the timeout, plus at most the circuit breaker's 2 s pause before it probes.
    assert!(
        back < promoted + Duration::from_millis(200 + 2000 + 1000),
        "back after {back:?}, promoted after {promoted:?}"
    );
    assert_eq!(spend("after").await, [200, 200, 200, 429, 429], "one budget again, on the new master");
    let target = "/wopi/files/6?access_token=replayed";
    let proof = hs[0].sign(target);
    assert_eq!(hs[0].send("GET", target, Some(&proof), None).await.0, 200);
    assert_eq!(hs[1].send("GET", target, Some(&proof), None).await.0, 500, "the replay cache is shared again");
    let keys = redis.replica.cli(&["--scan", "--pattern", "wopi-guard:*"]);
    assert!(!keys.is_empty(), "the new master holds the keys");
    let log = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(log.contains("sentinel://***@mymaster@127.0.0.1:"), "the connect line names the sentinels");
    assert!(!log.contains(RedisSentinels::PASSWORD), "the password reached the log");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wopi-guard"))
        .args(["check", "--connect", "--config"])
        .arg(write_config(&hs[0].config_text))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for says in ["warning: shared.redis: with sentinels its host unused.invalid:6379 is unused", "shared.redis: PING"] {
        assert!(stdout.contains(says), "no {says:?} in:\n{stdout}");
    }
    assert!(!stdout.contains(RedisSentinels::PASSWORD), "{stdout}");
    eprintln!("failover: promoted after {promoted:?}, both instances on the new master after {back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_shared_keeps_its_running_state_across_a_reload() {
    let redis = RedisServer::start(None);
    let limit = "[rate_limit.per_ip]\nper_second = 0.01\nburst = 1\n";
    let hs = instances(1, "", &format!("{}{limit}", shared(&redis, ""))).await;
    let h = &hs[0];
    assert_eq!(fresh_get(h, 0).await, 200);
    assert_eq!(fresh_get(h, 1).await, 429, "Redis says so, and the instance remembers it");
    let calls = redis.script_calls();
    assert_eq!(fresh_get(h, 2).await, 429);
    assert_eq!(redis.script_calls(), calls, "refused here, with no Redis call");
    assert_eq!(h.reload(&h.config_text).await, Ok(vec![]));
    assert_eq!(fresh_get(h, 3).await, 429);
    assert_eq!(redis.script_calls(), calls, "the same state after the reload: still no Redis call");
}
