//! Requests per second through the proxy, measured in ONE run with interleaved rounds:
//! (a) the stand-in WOPI host directly, (c) wopi-guard protecting nothing, (d) wopi-guard
//! verifying every request (valid 2048-bit signed CheckFileInfo requests).
//!
//! Everything runs in this process on 127.0.0.1: the load generator, the host and both proxies
//! share the machine's cores, so absolute numbers are low and only the ratios mean much.
//! Bounded: ROUNDS x 3 runs of SECONDS each (defaults 3 x 3 x 3 s); override with
//! `WOPI_BENCH_ROUNDS` and `WOPI_BENCH_SECONDS`; `WOPI_BENCH_ONLY="(d)"` runs one target (for a
//! profiler). Run: `cargo bench --bench load`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Harness, Options};

use std::time::{Duration, Instant};

const CONCURRENCY: usize = 16;
const TARGET: &str = "/wopi/files/bench?access_token=bench-token-0123456789&access_token_ttl=0";

struct Run {
    requests: usize,
    latencies: Vec<Duration>,
    /// CPU time of this whole process (load generator, stand-ins, proxies) during the run.
    cpu: Duration,
}

/// User + system CPU time of this process, from /proc/self/stat (10 ms resolution).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

async fn load(client: &reqwest::Client, url: &str, headers: &[(String, String)], seconds: u64) -> Run {
    let cpu_before = process_cpu();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers = (0..CONCURRENCY).map(|_| {
        let (client, url, headers) = (client.clone(), url.to_string(), headers.to_vec());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                let mut request = client.get(&url);
                for (n, v) in &headers {
                    request = request.header(n, v);
                }
                let response = request.send().await.expect("request");
                assert_eq!(response.status(), 200, "{url}");
                response.bytes().await.expect("body");
                latencies.push(start.elapsed());
            }
            latencies
        })
    });
    let mut latencies = Vec::new();
    for worker in futures_util::future::join_all(workers).await {
        latencies.extend(worker.expect("worker"));
    }
    latencies.sort();
    Run { requests: latencies.len(), latencies, cpu: process_cpu() - cpu_before }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: skipped (runs under `cargo bench --bench load`, which passes --bench)");
        return;
    }
    let (rounds, seconds) = (env("WOPI_BENCH_ROUNDS", 3), env("WOPI_BENCH_SECONDS", 3));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let verifying = Harness::start().await;
        let office = verifying.office.clone();
        let open = Harness::start_on(office.clone(), Options { proof: "paths = []", ..Options::default() }).await;
        let proof = verifying.sign(TARGET);
        let signed: Vec<(String, String)> =
            proof.headers().iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CONCURRENCY).build().unwrap();
        let targets = [
            ("(a) host directly", format!("{}{TARGET}", verifying.host.url())),
            ("(c) wopi-guard, protecting nothing", open.local(TARGET)),
            ("(d) wopi-guard, verifying every request", verifying.local(TARGET)),
        ];
        let mut results: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
        // For profiling one target: WOPI_BENCH_ONLY="(d)".
        let only = std::env::var("WOPI_BENCH_ONLY").ok();
        for round in 0..rounds {
            // Rotate the order each round so no target always runs first or last.
            for k in 0..targets.len() {
                let i = (k + round as usize) % targets.len();
                let (name, url) = &targets[i];
                if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
                    continue;
                }
                let run = load(&client, url, &signed, seconds).await;
                eprintln!(
                    "round {round}: {name}: {} req/s, {:.0} µs CPU/request, {:.0}% of the cores",
                    run.requests as u64 / seconds,
                    run.cpu.as_secs_f64() * 1e6 / run.requests as f64,
                    run.cpu.as_secs_f64() * 100.0 / seconds as f64 / 2.0
                );
                results[i].push(run);
            }
        }
        println!(
            "\n{CONCURRENCY} connections, {rounds} interleaved rounds of {seconds} s, small CheckFileInfo answers\n"
        );
        println!("| target | req/s (median round) | p50 µs | p99 µs | process CPU µs/request |");
        println!("|---|---|---|---|---|");
        let mut medians = Vec::new();
        for ((name, _), runs) in targets.iter().zip(&results).filter(|(_, runs)| !runs.is_empty()) {
            let mut rates: Vec<f64> = runs.iter().map(|r| r.requests as f64 / seconds as f64).collect();
            rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let median = rates[rates.len() / 2];
            let mut all: Vec<Duration> = runs.iter().flat_map(|r| r.latencies.iter().copied()).collect();
            all.sort();
            let cpu: f64 = runs.iter().map(|r| r.cpu.as_secs_f64()).sum::<f64>() * 1e6;
            let requests: usize = runs.iter().map(|r| r.requests).sum();
            println!(
                "| {name} | {median:.0} | {:.0} | {:.0} | {:.0} |",
                pct(&all, 0.5),
                pct(&all, 0.99),
                cpu / requests as f64
            );
            medians.push(median);
        }
        if medians.len() == 3 {
            println!("\nratio (d)/(c) = {:.2}, (c)/(a) = {:.2}", medians[2] / medians[1], medians[1] / medians[0]);
        }
        drop(open);
        drop(verifying);
    });
}
