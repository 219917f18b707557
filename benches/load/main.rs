//! The load benchmark, every process separate, on 127.0.0.1, in ONE run with interleaved rounds:
//!
//! - (a) the upstream directly: nginx (Debian's package) serving the answers as static files;
//! - (b) nginx `proxy_pass` to (a), no verification (keep-alive upstream connections);
//! - (p) bare Pingora to (a): the same Pingora version and threads, nothing of wopi-guard's;
//! - (c) wopi-guard to (a), protecting nothing (`proof.paths = []`);
//! - (d) wopi-guard to (a), verifying every request (2048-bit keys, valid signed requests);
//! - (l) (d) with rate limits per address, token and file (budgets never spent), in process;
//! - (e) (l) with `[shared]` on a local redis-server: the limits cost one Redis round trip;
//! - (g) (d) as a gateway: two `[[routes]]` (each with its own keys), the loaded one a pool of
//!   two members (two ports of the same nginx, so the upstream's work is (d)'s), health-checked;
//! - (r) and (s), references for what any proxy must spend: the least forwarding there is, by
//!   `read`/`write` (r) and by `splice(2)` (s), see [`floor`];
//! - (f) a forgery flood against three 4096-bit sources, with `rate_limit.failed_proofs` on (the
//!   default) and off, see [`flood`] (`WOPI_BENCH_FLOOD_SECONDS`, 5; `WOPI_BENCH_ONLY=f` runs it
//!   alone);
//!
//! for small CheckFileInfo-size answers (1 KiB) and 1 MiB GetFile answers, loaded by wrk (one
//! thread, 16 connections) replaying pre-signed requests — the same signed requests to all seven.
//! Then a large PutFile (1 GiB by default) streamed through (c) and (d) to a sink that reads every
//! byte, with wall time and the proxy's peak RSS; then our RSA verify against `openssl speed`.
//! CPU per request is the proxy process's own (nginx: master and workers), from /proc.
//!
//! Bounded: ROUNDS x 2 sizes x every target x SECONDS, plus PUT_ROUNDS x 2 PutFiles. Settings:
//! `WOPI_BENCH_ROUNDS` (5), `WOPI_BENCH_SECONDS` (3), `WOPI_BENCH_PUT_MIB` (1024),
//! `WOPI_BENCH_PUT_ROUNDS` (5), `WOPI_BENCH_ONLY=d` (one of a, b, n, p, c, d, l, e, g, r, s, for a profiler; the proxy's pid
//! is printed), `WOPI_BENCH_CALLGRIND=1` (instead of the timed run: instructions per request of
//! (p), (c), (d), (g) under valgrind's callgrind, see [`callgrind`]; `WOPI_BENCH_CALLGRIND_REQUESTS`,
//! 1100). Run: `make bench` or `cargo bench --bench load`. Under `cargo test --benches`
//! it is a smoke test: every target answers once, a 1 MiB PutFile goes through, no timing.

// The same allocator as wopi-guard's binary, so that (p) differs from (c) only by wopi-guard's work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bare;
mod callgrind;
#[path = "../../tests/it/common/child.rs"]
mod child;
mod flood;
mod floor;
mod procs;
mod put;
mod wrk;

use procs::Proc;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use wopi_guard::keys::ProofKey;
use wopi_guard::proof::ticks_at;
use wopi_guard::testkit::{discovery_xml, free_port, ProofSet, Signer};

const PUBLIC: &str = "https://wopi.bench.test";
const CONNECTIONS: usize = 16;
const SMALL: &str = "/wopi/files/small";
const BIG: &str = "/wopi/files/big/contents";
const PUTFILE: &str = "/wopi/files/put/contents";
const SIGNED_VARIANTS: usize = 256;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Keys {
    current: Signer,
    old: Signer,
}

impl Keys {
    fn sign(&self, target: &str) -> ProofSet {
        ProofSet::sign(&format!("{PUBLIC}{target}"), ticks_at(SystemTime::now()), &self.current, &self.old)
    }
}

/// The lines wrk replays: the same path with distinct tokens, each validly signed.
fn write_requests(path: &Path, keys: &Keys, base: &str) {
    let lines: Vec<String> = (0..SIGNED_VARIANTS)
        .map(|i| {
            let target = format!("{base}?access_token=bench-token-{i:04}");
            let p = keys.sign(&target);
            format!("{target}\t{}\t{}\t{}", p.proof, p.proof_old, p.timestamp)
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Rate limits on every key kind, with budgets the load never spends, for (l) and (e).
const LIMITS: &str = "[rate_limit.per_ip]\nper_second = 1000000\nburst = 1000000\n\
                      [rate_limit.per_token]\nper_second = 1000000\nburst = 1000000\n\
                      [rate_limit.per_file]\nper_second = 1000000\nburst = 1000000\n";

/// (l)'s config, and with `redis`, (e)'s.
fn limited_config(upstream: SocketAddr, listen: SocketAddr, admin: SocketAddr, redis: Option<SocketAddr>) -> String {
    let shared = redis.map_or(String::new(), |r| {
        format!("[shared]\nredis = \"redis://{r}\"\nhash_key = \"bench-hash-key-0123456789abcdef\"\n")
    });
    format!("{}{LIMITS}{shared}", guard_config(upstream, listen, admin, upstream, true))
}

fn guard_config(
    upstream: SocketAddr,
    listen: SocketAddr,
    admin: SocketAddr,
    discovery: SocketAddr,
    protect: bool,
) -> String {
    format!(
        r#"listen = "{listen}"
admin_listen = "{admin}"
upstream = "http://{upstream}"
public_url = "{PUBLIC}"
[discovery]
urls = ["http://{discovery}/hosting/discovery"]
[proof]
{paths}
[server]
threads = 2
grace_period = "1s"
"#,
        paths = if protect { "" } else { "paths = []" }
    )
}

/// (f)'s config: three discovery sources (4096-bit keys, old keys too), `failed_proofs` at its
/// default or off.
fn flood_config(upstream: SocketAddr, listen: SocketAddr, admin: SocketAddr, failed_proofs: bool) -> String {
    let urls: Vec<String> = (0..3).map(|i| format!("\"http://{upstream}/hosting/f-discovery-{i}\"")).collect();
    format!(
        r#"listen = "{listen}"
admin_listen = "{admin}"
upstream = "http://{upstream}"
public_url = "{PUBLIC}"
[discovery]
urls = [{urls}]
[server]
threads = 2
grace_period = "1s"
{off}"#,
        urls = urls.join(", "),
        off = if failed_proofs { "" } else { "[rate_limit.failed_proofs]\nburst = 0\n" },
    )
}

/// (g)'s config: a route for another host first, then the route for `127.0.0.1` (the Host wrk
/// sends, port ignored) with a pool of two members.
fn gateway_config(members: [SocketAddr; 2], listen: SocketAddr, admin: SocketAddr, discovery: SocketAddr) -> String {
    format!(
        r#"listen = "{listen}"
admin_listen = "{admin}"
[server]
threads = 2
grace_period = "1s"
[health]
path = "{SMALL}"
[[routes]]
host = "other.bench.test"
public_url = "https://other.bench.test"
upstream = "http://{first}"
[routes.discovery]
urls = ["http://{discovery}/hosting/other-discovery"]
[[routes]]
host = "127.0.0.1"
public_url = "{PUBLIC}"
upstream = ["http://{first}", "http://{second}"]
[routes.discovery]
urls = ["http://{discovery}/hosting/discovery"]
"#,
        first = members[0],
        second = members[1],
    )
}

struct Target {
    label: &'static str,
    base: String,
    proc_index: usize,
}

struct PutGuard {
    label: &'static str,
    addr: SocketAddr,
    proc: Proc,
}

struct Sample {
    run: wrk::WrkRun,
    cpu: Duration,
    /// redis-server's CPU over the same run (only (e) calls it).
    redis_cpu: Duration,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, listen, upstream] = args.as_slice() {
        if flag == "--bare-pingora" {
            bare::run(listen.parse().unwrap(), upstream.parse().unwrap(), 2);
        }
    }
    if let [_, flag, mode, listen, upstream] = args.as_slice() {
        if let (true, Some(mode)) = (flag == "--floor", floor::Mode::from_arg(mode)) {
            floor::run(listen.parse().unwrap(), upstream.parse().unwrap(), mode);
        }
    }
    let bench = args.iter().any(|a| a == "--bench");
    let dir = tempfile::tempdir().unwrap();
    procs::chmod(dir.path(), 0o755);
    let www = dir.path().join("www");
    for sub in ["wopi/files/big", "hosting"] {
        std::fs::create_dir_all(www.join(sub)).unwrap();
    }
    for sub in ["", "wopi", "wopi/files", "wopi/files/big", "hosting"] {
        procs::chmod(&www.join(sub), 0o755);
    }
    let keys = Keys { current: Signer::generate(2048), old: Signer::generate(2048) };
    let small_answer = format!("{{\"BaseFileName\":\"bench.docx\",\"Size\":1024,\"Padding\":\"{}\"}}", "x".repeat(970));
    std::fs::write(www.join("wopi/files/small"), &small_answer).unwrap();
    std::fs::write(www.join("wopi/files/big/contents"), vec![b'w'; 1 << 20]).unwrap();
    std::fs::write(www.join("hosting/discovery"), discovery_xml(&keys.current, Some(&keys.old))).unwrap();
    let other = Signer::generate(2048); // (g)'s other route: keys of its own
    std::fs::write(www.join("hosting/other-discovery"), discovery_xml(&other, None)).unwrap();
    // (f): three sources of 4096-bit keys with old keys; a forger's keys of the same size.
    let flood_keys: Vec<Keys> =
        (0..3).map(|_| Keys { current: Signer::generate(4096), old: Signer::generate(4096) }).collect();
    for (i, k) in flood_keys.iter().enumerate() {
        std::fs::write(www.join(format!("hosting/f-discovery-{i}")), discovery_xml(&k.current, Some(&k.old))).unwrap();
    }
    let forger = Keys { current: Signer::generate(4096), old: Signer::generate(4096) };
    let flood_genuine: Vec<flood::Raw> = (0..64)
        .map(|i| {
            let target = format!("{SMALL}?access_token=flood-genuine-{i:02}");
            flood::raw(&target, &flood_keys[0].sign(&target).headers())
        })
        .collect();
    let forged_target = format!("{SMALL}?access_token=flood-forged");
    let flood_forged = flood::raw(&forged_target, &forger.sign(&forged_target).headers());

    let [up, up_second, via_nginx, via_nginx_unbuffered, bare_port, floor_copy, floor_splice, open, open_admin, verifying, verifying_admin, put_open, put_open_admin, put_verifying, put_verifying_admin, limited, limited_admin, shared, shared_admin, redis_port, gateway, gateway_admin, flood_on, flood_on_admin, flood_off, flood_off_admin] =
        std::array::from_fn(|_| free_port());
    let upstream = procs::nginx(
        dir.path(),
        "upstream",
        1,
        &format!(
            "    default_type application/json;\n    server {{ listen {up}; listen {up_second}; root {}; location / {{ }} }}",
            www.display()
        ),
        up,
    );
    let proxy_nginx = procs::nginx(
        dir.path(),
        "nginx-proxy",
        2,
        &format!(
            "    upstream backend {{ server {up}; keepalive 64; }}\n    server {{ listen {via_nginx}; location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
        via_nginx,
    );
    let unbuffered_nginx = procs::nginx(
        dir.path(),
        "nginx-proxy-unbuffered",
        2,
        &format!(
            "    upstream backend {{ server {up}; keepalive 64; }}\n    server {{ listen {via_nginx_unbuffered}; location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; proxy_request_buffering off; }} }}"
        ),
        via_nginx_unbuffered,
    );
    let bare_pingora = procs::bare_pingora(bare_port, up);
    let floor_copying = procs::floor(floor::Mode::Copy, floor_copy, up);
    let floor_splicing = procs::floor(floor::Mode::Splice, floor_splice, up);
    // A wopi-guard process to `upstream`, discovery always from the nginx upstream.
    let guard = |name: &str, upstream, listen, admin, protect| {
        procs::wopi_guard(dir.path(), name, &guard_config(upstream, listen, admin, up, protect), listen, admin)
    };
    let guard_open = guard("wopi-guard-open", up, open, open_admin, false);
    let guard_verifying = guard("wopi-guard-verifying", up, verifying, verifying_admin, true);
    let redis = procs::redis(dir.path(), redis_port);
    let limited_guard = |name: &str, listen, admin, redis| {
        procs::wopi_guard(dir.path(), name, &limited_config(up, listen, admin, redis), listen, admin)
    };
    let guard_limited = limited_guard("wopi-guard-limited", limited, limited_admin, None);
    let guard_shared = limited_guard("wopi-guard-shared", shared, shared_admin, Some(redis_port));
    let gateway_guard = procs::wopi_guard(
        dir.path(),
        "wopi-guard-gateway",
        &gateway_config([up, up_second], gateway, gateway_admin, up),
        gateway,
        gateway_admin,
    );
    let flood_guards =
        [(true, flood_on, flood_on_admin), (false, flood_off, flood_off_admin)].map(|(on, listen, admin)| {
            let name = if on { "wopi-guard-flood" } else { "wopi-guard-flood-off" };
            (listen, procs::wopi_guard(dir.path(), name, &flood_config(up, listen, admin, on), listen, admin))
        });
    let sink = put::sink();
    let put_guards = [
        PutGuard {
            label: "(c) wopi-guard, protecting nothing",
            addr: put_open,
            proc: guard("putfile-open", sink.addr, put_open, put_open_admin, false),
        },
        PutGuard {
            label: "(d) wopi-guard, verifying",
            addr: put_verifying,
            proc: guard("putfile-verifying", sink.addr, put_verifying, put_verifying_admin, true),
        },
    ];
    let procs: [&Proc; 12] = [
        &upstream,
        &proxy_nginx,
        &bare_pingora,
        &guard_open,
        &guard_verifying,
        &floor_copying,
        &floor_splicing,
        &unbuffered_nginx,
        &guard_limited,
        &guard_shared,
        &redis,
        &gateway_guard,
    ];
    const REDIS: usize = 10;
    let targets = [
        Target { label: "(a) nginx upstream directly", base: format!("http://{up}"), proc_index: 0 },
        Target { label: "(b) nginx proxy_pass, no verification", base: format!("http://{via_nginx}"), proc_index: 1 },
        Target { label: "(p) bare Pingora, same threads", base: format!("http://{bare_port}"), proc_index: 2 },
        Target { label: "(c) wopi-guard, protecting nothing", base: format!("http://{open}"), proc_index: 3 },
        Target { label: "(d) wopi-guard, verifying every request", base: format!("http://{verifying}"), proc_index: 4 },
        Target { label: "(r) floor: read/write, nothing else", base: format!("http://{floor_copy}"), proc_index: 5 },
        Target { label: "(s) floor: splice(2), nothing else", base: format!("http://{floor_splice}"), proc_index: 6 },
        Target {
            label: "(n) nginx proxy_pass, proxy_buffering off",
            base: format!("http://{via_nginx_unbuffered}"),
            proc_index: 7,
        },
        Target { label: "(l) (d) with rate limits, in process", base: format!("http://{limited}"), proc_index: 8 },
        Target { label: "(e) (l) with [shared] on redis-server", base: format!("http://{shared}"), proc_index: 9 },
        Target {
            label: "(g) (d) as a gateway: 2 routes, a 2-member pool",
            base: format!("http://{gateway}"),
            proc_index: 11,
        },
    ];

    if !bench {
        smoke(&targets, &keys, &put_guards, &sink);
        for (listen, _) in &flood_guards {
            flood::smoke(*listen, &flood_genuine[0], &flood_forged);
        }
        return;
    }
    if std::env::var("WOPI_BENCH_CALLGRIND").is_ok_and(|v| v == "1") {
        assert!(callgrind::available(), "valgrind is not installed (Debian package valgrind)");
        let dir = dir.path();
        let guard_subject = |label, short, protect| callgrind::Subject {
            label,
            short,
            start: Box::new(move |launch, listen, admin| {
                let config = guard_config(up, listen, admin, up, protect);
                procs::wopi_guard_as(launch, dir, &format!("callgrind-{short}"), &config, listen, admin)
            }),
        };
        let subjects = [
            callgrind::Subject {
                label: "(p) bare Pingora",
                short: "p",
                start: Box::new(|launch, listen, _admin| procs::bare_pingora_as(launch, listen, up)),
            },
            guard_subject("(c) wopi-guard, protecting nothing", "c", false),
            guard_subject("(d) wopi-guard, verifying every request", "d", true),
            callgrind::Subject {
                label: "(g) (d) as a gateway: 2 routes, a 2-member pool",
                short: "g",
                start: Box::new(move |launch, listen, admin| {
                    let config = gateway_config([up, up_second], listen, admin, up);
                    procs::wopi_guard_as(launch, dir, "callgrind-g", &config, listen, admin)
                }),
            },
        ];
        let targets = [SMALL, BIG].map(|base| format!("{base}?access_token=callgrind"));
        let proofs = targets.clone().map(|t| keys.sign(&t));
        let requests = [
            callgrind::Request {
                label: "small (1 KiB)",
                target: targets[0].clone(),
                headers: proofs[0].headers().to_vec(),
            },
            callgrind::Request {
                label: "1 MiB GetFile",
                target: targets[1].clone(),
                headers: proofs[1].headers().to_vec(),
            },
        ];
        callgrind::run(&subjects, &requests, 100, env("WOPI_BENCH_CALLGRIND_REQUESTS", 1100) as usize);
        return;
    }
    assert!(wrk::available(), "wrk is not installed: `make bench` installs it (Debian package wrk)");
    let (rounds, seconds) = (env("WOPI_BENCH_ROUNDS", 5), env("WOPI_BENCH_SECONDS", 3));
    let only = std::env::var("WOPI_BENCH_ONLY").ok();
    let script = dir.path().join("signed.lua");
    std::fs::write(&script, wrk::SCRIPT).unwrap();
    let sizes = [("small (1 KiB CheckFileInfo)", SMALL), ("1 MiB GetFile", BIG)];
    let request_files: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, (_, base))| {
            let path = dir.path().join(format!("requests-{i}.txt"));
            write_requests(&path, &keys, base);
            path
        })
        .collect();
    if only.as_deref() == Some("f") {
        flood_phase(&flood_guards, &flood_genuine, &flood_forged);
        return;
    }
    if let Some(only) = &only {
        let t = targets
            .iter()
            .find(|t| t.label.starts_with(&format!("({only})")))
            .expect("WOPI_BENCH_ONLY=a|b|n|p|c|d|l|e|g|r|s|f");
        eprintln!("only {}: pid {}", t.label, procs[t.proc_index].pid());
    }

    // One unrecorded round first: connections, caches and the allocators' pools warm up, so no
    // target's first recorded round is a cold one.
    for (s, _) in sizes.iter().enumerate() {
        for t in &targets {
            if only.as_deref().is_none_or(|o| t.label.starts_with(&format!("({o})"))) {
                wrk::run(&t.base, &script, &request_files[s], 1, CONNECTIONS);
            }
        }
    }
    let started = Instant::now();
    let mut samples: Vec<Vec<Vec<Sample>>> =
        sizes.iter().map(|_| targets.iter().map(|_| Vec::new()).collect()).collect();
    for round in 0..rounds as usize {
        for (s, (size, _)) in sizes.iter().enumerate() {
            for k in 0..targets.len() {
                let i = (k + round) % targets.len(); // rotate: no target always first
                let t = &targets[i];
                if only.as_deref().is_some_and(|o| !t.label.starts_with(&format!("({o})"))) {
                    continue;
                }
                let proc = procs[t.proc_index];
                let (before, redis_before) = (proc.cpu(), procs[REDIS].cpu());
                let run = wrk::run(&t.base, &script, &request_files[s], seconds, CONNECTIONS);
                let cpu = proc.cpu() - before;
                let redis_cpu = procs[REDIS].cpu() - redis_before;
                eprintln!(
                    "round {round} {size}: {}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {:.1} µs CPU/request",
                    t.label,
                    run.rps,
                    run.p50_us,
                    run.p99_us,
                    cpu.as_secs_f64() * 1e6 / run.requests as f64
                );
                samples[s][i].push(Sample { run, cpu, redis_cpu });
            }
        }
    }
    let load_time = started.elapsed();

    println!("\n## Load: {CONNECTIONS} connections (wrk, 1 thread), {rounds} interleaved rounds of {seconds} s\n");
    let mut rates = vec![vec![0.0; targets.len()]; sizes.len()];
    for (s, (size, _)) in sizes.iter().enumerate() {
        println!("{size}:\n");
        println!(
            "| target | req/s (median) | p50 µs (median) | p99 µs (median) | CPU µs/request of the process (median) |"
        );
        println!("|---|---|---|---|---|");
        for (i, t) in targets.iter().enumerate() {
            let runs = &samples[s][i];
            if runs.is_empty() {
                continue;
            }
            let cpu = median(runs.iter().map(|r| r.cpu.as_secs_f64() * 1e6 / r.run.requests as f64).collect());
            rates[s][i] = median(runs.iter().map(|r| r.run.rps).collect());
            println!(
                "| {} | {:.0} | {:.0} | {:.0} | {cpu:.1} |",
                t.label,
                rates[s][i],
                median(runs.iter().map(|r| r.run.p50_us).collect()),
                median(runs.iter().map(|r| r.run.p99_us).collect()),
            );
        }
        println!();
    }
    if only.is_none() {
        println!(
            "ratios (median req/s): small (d)/(c) = {:.2} [target >= 0.70], (c)/(a) = {:.2}, (d)/(b) = {:.2}, (c)/(p) = {:.2}; 1 MiB (d)/(b) = {:.2} [target >= 1.5], (d)/(c) = {:.2}\n",
            rates[0][4] / rates[0][3],
            rates[0][3] / rates[0][0],
            rates[0][4] / rates[0][1],
            rates[0][3] / rates[0][2],
            rates[1][4] / rates[1][1],
            rates[1][4] / rates[1][3],
        );
        println!(
            "the floor against nginx proxy_pass (median req/s): 1 MiB (r)/(b) = {:.2}, (s)/(b) = {:.2}; small (r)/(b) = {:.2}, (s)/(b) = {:.2}\n",
            rates[1][5] / rates[1][1],
            rates[1][6] / rates[1][1],
            rates[0][5] / rates[0][1],
            rates[0][6] / rates[0][1],
        );
        println!(
            "against nginx with proxy_buffering off (median req/s): small (d)/(n) = {:.2}, (n)/(b) = {:.2}; 1 MiB (d)/(n) = {:.2}, (n)/(b) = {:.2}\n",
            rates[0][4] / rates[0][7],
            rates[0][7] / rates[0][1],
            rates[1][4] / rates[1][7],
            rates[1][7] / rates[1][1],
        );
    }
    let g = 10;
    for (s, (size, _)) in sizes.iter().enumerate() {
        if samples[s][g].is_empty() || samples[s][4].is_empty() {
            continue;
        }
        println!(
            "gateway {size}: (g)/(d) = {:.2} [target >= 0.95: within 5% of one route], (g)/(c) = {:.2} against (d)/(c) = {:.2}\n",
            rates[s][g] / rates[s][4],
            rates[s][g] / rates[s][3],
            rates[s][4] / rates[s][3],
        );
    }
    let (l, e) = (8, 9);
    for (s, (size, _)) in sizes.iter().enumerate() {
        let (limited, shared) = (&samples[s][l], &samples[s][e]);
        if limited.is_empty() || shared.is_empty() {
            continue;
        }
        let p50 = |runs: &[Sample]| median(runs.iter().map(|r| r.run.p50_us).collect());
        let redis = median(shared.iter().map(|r| r.redis_cpu.as_secs_f64() * 1e6 / r.run.requests as f64).collect());
        println!(
            "[shared] {size}: (e)/(l) = {:.2} [target >= 0.85], p50 (e) - (l) = {:.0} µs [target <= 300], redis-server CPU {redis:.1} µs/request\n",
            rates[s][e] / rates[s][l],
            p50(shared) - p50(limited),
        );
    }
    println!("(load phase: {:.0} s)\n", load_time.as_secs_f64());

    if only.is_none() {
        flood_phase(&flood_guards, &flood_genuine, &flood_forged);
        putfile(&keys, &put_guards, &sink, env("WOPI_BENCH_PUT_MIB", 1024) << 20, env("WOPI_BENCH_PUT_ROUNDS", 5));
        verify_against_openssl(&keys);
    }
}

/// Every target answers a signed request of each size; a 1 MiB PutFile goes through both
/// PutFile proxies; a request signed for another URL is refused by (d). No timing.
/// (f): the flood against `failed_proofs` on and off, printed as a table.
fn flood_phase(guards: &[(SocketAddr, Proc); 2], genuine: &[flood::Raw], forged: &flood::Raw) {
    let seconds = env("WOPI_BENCH_FLOOD_SECONDS", 5);
    println!(
        "## (f) forgery flood: 3 sources of 4096-bit keys with old keys; {} flooding addresses at full speed, genuine requests at {}/s from another, {seconds} s each\n",
        flood::FLOODERS,
        flood::GENUINE_RATE
    );
    println!("| failed_proofs | genuine OK quiet | genuine OK flooded | genuine p50/p99 µs quiet | genuine p50/p99 µs flooded | forged answered | forged refused 429 | forged CPU µs/request |");
    println!("|---|---|---|---|---|---|---|---|");
    for (on, (listen, proc)) in [true, false].iter().zip(guards) {
        let r = flood::run(proc, *listen, genuine, forged.clone(), seconds);
        let pct = |g: &flood::Genuine| 100.0 * g.ok as f64 / g.sent.max(1) as f64;
        println!(
            "| {} | {:.1} % | {:.1} % | {:.0} / {:.0} | {:.0} / {:.0} | {} | {:.1} % | {:.1} |",
            if *on { "on (burst 60, 1/s)" } else { "off" },
            pct(&r.quiet),
            pct(&r.flooded),
            r.quiet.p50_us,
            r.quiet.p99_us,
            r.flooded.p50_us,
            r.flooded.p99_us,
            r.forged,
            100.0 * r.cut as f64 / r.forged.max(1) as f64,
            r.forged_cpu_us,
        );
    }
    println!();
}

fn smoke(targets: &[Target], keys: &Keys, put_guards: &[PutGuard; 2], sink: &put::Sink) {
    wrk::check_parser();
    for t in targets {
        let addr: SocketAddr = t.base.trim_start_matches("http://").parse().unwrap();
        for (base, size) in [(SMALL, 1000), (BIG, 1 << 20)] {
            let target = format!("{base}?access_token=smoke");
            let (status, len) = put::get(addr, &target, &keys.sign(&target).headers());
            assert_eq!(status, 200, "{} {target}", t.label);
            assert!(len >= size, "{}: {len} bytes", t.label);
        }
    }
    let other = keys.sign(&format!("{SMALL}?access_token=other"));
    let verifying: SocketAddr = targets[4].base.trim_start_matches("http://").parse().unwrap();
    assert_eq!(put::get(verifying, &format!("{SMALL}?access_token=smoke"), &other.headers()).0, 500);
    for guard in put_guards {
        let before = sink.received.load(std::sync::atomic::Ordering::Relaxed);
        let (status, _) = send_put(keys, guard, 1 << 20);
        assert_eq!(status, 200, "{}", guard.label);
        assert_eq!(sink.received.load(std::sync::atomic::Ordering::Relaxed) - before, 1 << 20, "{}", guard.label);
    }
    println!("load: smoke test passed (the timed run is `cargo bench --bench load`)");
}

fn send_put(keys: &Keys, guard: &PutGuard, bytes: u64) -> (u16, Duration) {
    let target = format!("{PUTFILE}?access_token=bench-put");
    let proof = keys.sign(&target);
    let mut headers = proof.headers().to_vec();
    headers.push(("X-WOPI-Override", "PUT"));
    put::put(guard.addr, &target, &headers, bytes)
}

/// The PutFile leg: `rounds` x (c) and (d), alternating, each on a fresh peak-RSS count.
fn putfile(keys: &Keys, guards: &[PutGuard; 2], sink: &put::Sink, bytes: u64, rounds: u64) {
    let mut results: Vec<Vec<(f64, u64)>> = vec![Vec::new(), Vec::new()];
    for round in 0..rounds as usize {
        for k in 0..2 {
            let i = (k + round) % 2;
            let guard = &guards[i];
            guard.proc.reset_peak();
            let before = sink.received.load(std::sync::atomic::Ordering::Relaxed);
            let (status, took) = send_put(keys, guard, bytes);
            let received = sink.received.load(std::sync::atomic::Ordering::Relaxed) - before;
            assert_eq!((status, received), (200, bytes), "{}: the whole body reached the host", guard.label);
            let rss = guard.proc.peak_rss();
            eprintln!(
                "PutFile round {round}: {}: {:.2} s, {:.0} MiB/s, peak RSS {:.1} MiB",
                guard.label,
                took.as_secs_f64(),
                bytes as f64 / took.as_secs_f64() / 1048576.0,
                rss as f64 / 1048576.0
            );
            results[i].push((took.as_secs_f64(), rss));
        }
    }
    println!(
        "## PutFile: {} MiB streamed through, {rounds} rounds each, alternating
",
        bytes >> 20
    );
    println!("| target | wall time s (median) | MiB/s (median) | peak RSS of the proxy MiB (max) |");
    println!("|---|---|---|---|");
    let mut speeds = Vec::new();
    for (guard, runs) in guards.iter().zip(&results) {
        let time = median(runs.iter().map(|r| r.0).collect());
        let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
        speeds.push(bytes as f64 / time / 1048576.0);
        println!("| {} | {time:.2} | {:.0} | {:.1} |", guard.label, speeds[speeds.len() - 1], peak as f64 / 1048576.0);
    }
    println!("\nratio (d)/(c) = {:.2} [target >= 0.9]; peak RSS target < 64 MiB\n", speeds[1] / speeds[0]);
}

/// Our 2048-bit verify (the proxy's own code path) against `openssl speed rsa2048` in this run.
fn verify_against_openssl(keys: &Keys) {
    let key = ProofKey::from_components(keys.current.modulus(), keys.current.exponent()).unwrap();
    let message = b"wopi-guard verify benchmark".to_vec();
    let signature = keys.current.sign(&message);
    let n = 20_000;
    let started = Instant::now();
    for _ in 0..n {
        assert!(key.verifies(std::hint::black_box(&message), std::hint::black_box(&signature)));
    }
    let ours = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let out = std::process::Command::new("openssl").args(["speed", "-seconds", "3", "rsa2048"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    // "rsa 2048 bits 0.000563s 0.000019s [0.000020s 0.000560s] 1776.2 52631.6 ...": of the
    // plain numbers, 2048 comes first, then sign/s, then verify/s.
    let per_second = text
        .lines()
        .find(|l| l.starts_with("rsa") && l.contains("2048 bits"))
        .and_then(|l| l.split_whitespace().filter_map(|w| w.parse::<f64>().ok()).nth(2));
    println!("## RSA-2048 verify\n");
    match per_second {
        Some(rate) => {
            let theirs = 1e6 / rate;
            println!(
                "wopi-guard (aws-lc-rs): {ours:.1} µs; openssl speed: {theirs:.1} µs ({rate:.0}/s); ratio {:.2} [target <= 1.2]",
                ours / theirs
            );
        }
        None => println!("wopi-guard (aws-lc-rs): {ours:.1} µs; openssl speed gave no rsa2048 verify line:\n{text}"),
    }
}
