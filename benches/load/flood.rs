//! (f) the forgery flood: wopi-guard verifying against three discovery sources of 4096-bit keys
//! with old keys (a forged request's worst case, up to 9 RSA operations), flooded with forged
//! proofs from 64 client addresses (127.0.0.10 to 127.0.0.73, one connection each, at full speed)
//! while genuine signed requests arrive from 127.0.0.200 at a fixed 200 a second.
//!
//! Reported: the genuine requests' success rate and p50/p99 with and without the flood, the
//! forged requests' CPU per request and the share `rate_limit.failed_proofs` refused (429) — for
//! the default budget and with it off (`burst = 0`), where a forgery reaches RSA. Compare the
//! forged CPU with the load rows' (c) and (d), measured at full speed in the same run.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::procs::Proc;

/// Flooding addresses.
pub const FLOODERS: u8 = 64;
/// Genuine requests a second.
pub const GENUINE_RATE: u64 = 200;

/// A request as bytes, sent as is.
pub type Raw = Vec<u8>;

/// `GET target` with `headers`, keep-alive.
pub fn raw(target: &str, headers: &[(&str, &str)]) -> Raw {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: wopi.bench.test\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    (head + "\r\n").into_bytes()
}

/// A connection from `from` to `to`.
fn connect(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// Sends `request` and reads one answer: its status, and whether the connection stays open.
fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Option<(u16, bool)> {
    stream.write_all(request).ok()?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_ascii_lowercase();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((status, !head.contains("connection: close")))
}

/// What the genuine client saw.
pub struct Genuine {
    pub sent: u64,
    pub ok: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Genuine requests from 127.0.0.200 at [`GENUINE_RATE`] for `seconds`, round-robin over
/// `requests` (the replay cache is off in (f)).
fn genuine(to: SocketAddr, requests: &[Raw], seconds: u64) -> Genuine {
    let from = Ipv4Addr::new(127, 0, 0, 200);
    let mut stream = None;
    let mut buf = Vec::new();
    let mut latencies = Vec::new();
    let (mut sent, mut ok) = (0, 0);
    let start = Instant::now();
    let every = Duration::from_micros(1_000_000 / GENUINE_RATE);
    while start.elapsed() < Duration::from_secs(seconds) {
        let due = start + every * sent as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let request = &requests[sent as usize % requests.len()];
        sent += 1;
        let began = Instant::now();
        if stream.is_none() {
            stream = connect(from, to).ok();
        }
        let answer = stream.as_mut().and_then(|s| exchange(s, request, &mut buf));
        latencies.push(began.elapsed().as_secs_f64() * 1e6);
        match answer {
            Some((200, keep)) => {
                ok += 1;
                if !keep {
                    stream = None;
                }
            }
            _ => stream = None,
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0.0);
    Genuine { sent, ok, p50_us: pick(0.5), p99_us: pick(0.99) }
}

/// Forged requests from [`FLOODERS`] addresses until `stop`: (answers, of which 429).
fn flood(to: SocketAddr, forged: Arc<Raw>, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<(u64, u64)>> {
    (0..FLOODERS)
        .map(|i| {
            let (forged, stop) = (forged.clone(), stop.clone());
            std::thread::spawn(move || {
                let from = Ipv4Addr::new(127, 0, 0, 10 + i);
                let (mut answers, mut cut) = (0u64, 0u64);
                let mut buf = Vec::new();
                let mut stream = None;
                while !stop.load(Ordering::Relaxed) {
                    if stream.is_none() {
                        stream = connect(from, to).ok();
                    }
                    match stream.as_mut().and_then(|s| exchange(s, &forged, &mut buf)) {
                        Some((status, keep)) => {
                            answers += 1;
                            cut += u64::from(status == 429);
                            if !keep {
                                stream = None; // refusals close the connection: reconnect
                            }
                        }
                        None => stream = None,
                    }
                }
                (answers, cut)
            })
        })
        .collect()
}

/// One (f) configuration's results.
pub struct Report {
    pub quiet: Genuine,
    pub flooded: Genuine,
    pub forged: u64,
    pub cut: u64,
    pub forged_cpu_us: f64,
}

/// Genuine alone, then genuine under the flood, `seconds` each, against `guard`.
pub fn run(guard: &Proc, to: SocketAddr, requests: &[Raw], forged: Raw, seconds: u64) -> Report {
    let before = guard.cpu();
    let quiet = genuine(to, requests, seconds);
    let genuine_cpu = guard.cpu() - before;
    let stop = Arc::new(AtomicBool::new(false));
    let before = guard.cpu();
    let flooders = flood(to, Arc::new(forged), stop.clone());
    let flooded = genuine(to, requests, seconds);
    stop.store(true, Ordering::Relaxed);
    let (mut forged_n, mut cut) = (0, 0);
    for f in flooders {
        let (a, c) = f.join().unwrap();
        forged_n += a;
        cut += c;
    }
    let flood_cpu = guard.cpu() - before;
    // The flood's CPU: the whole, less what the genuine requests cost alone (at 200 a second a
    // request's CPU is mostly wake-ups: not a per-request cost to compare with the load rows).
    let genuine_cpu_us = genuine_cpu.as_secs_f64() * 1e6 / quiet.sent.max(1) as f64;
    let forged_cpu = flood_cpu.as_secs_f64() * 1e6 - genuine_cpu_us * flooded.sent as f64;
    Report { quiet, flooded, forged: forged_n, cut, forged_cpu_us: forged_cpu / forged_n.max(1) as f64 }
}

/// Under `cargo test --benches`: one genuine and one forged request get their answers.
pub fn smoke(to: SocketAddr, genuine: &Raw, forged: &Raw) {
    let mut buf = Vec::new();
    let mut s = connect(Ipv4Addr::new(127, 0, 0, 200), to).expect("(f) accepts");
    assert_eq!(exchange(&mut s, genuine, &mut buf).map(|a| a.0), Some(200), "(f) genuine");
    let mut s = connect(Ipv4Addr::new(127, 0, 0, 10), to).expect("(f) accepts");
    assert_eq!(exchange(&mut s, forged, &mut buf).map(|a| a.0), Some(500), "(f) forged");
}
