//! Load from a second process: wrk from Debian's packages, replaying pre-signed requests.

use std::path::Path;
use std::process::Command;

/// A wrk script that cycles through pre-formatted requests, one per line of the file given after
/// `--`: `path<TAB>X-WOPI-Proof<TAB>X-WOPI-ProofOld<TAB>X-WOPI-TimeStamp`.
pub const SCRIPT: &str = r#"
local requests = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    local path, proof, old, ts = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)")
    requests[#requests + 1] = wrk.format("GET", path,
      { ["X-WOPI-Proof"] = proof, ["X-WOPI-ProofOld"] = old, ["X-WOPI-TimeStamp"] = ts })
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
"#;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkRun {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// True when wrk is on the PATH.
pub fn available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// Runs wrk against `base` (`http://127.0.0.1:PORT`) for `seconds` with `connections`.
pub fn run(base: &str, script: &Path, requests: &Path, seconds: u64, connections: usize) -> WrkRun {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(script)
        .arg(base)
        .arg("--")
        .arg(requests)
        .output()
        .expect("wrk runs (make bench installs Debian's wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    parse(&text).unwrap_or_else(|e| panic!("{e} in wrk's output:\n{text}"))
}

fn parse(text: &str) -> Result<WrkRun, String> {
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx or 3xx responses")) {
        return Err(format!("refused or failed requests ({})", line.trim()));
    }
    // wrk counts connect/read/write errors and timeouts apart from the answers it got.
    if let Some(line) = text.lines().find(|l| l.trim_start().starts_with("Socket errors:")) {
        return Err(format!("socket errors ({})", line.trim()));
    }
    let field = |prefix: &str| {
        text.lines().map(str::trim).find_map(|l| l.strip_prefix(prefix)).map(str::trim).ok_or(format!("no {prefix}"))
    };
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or("no request count")?;
    let rps: f64 = field("Requests/sec:")?.parse().map_err(|_| "bad Requests/sec")?;
    Ok(WrkRun { requests, rps, p50_us: micros(field("50%")?)?, p99_us: micros(field("99%")?)? })
}

fn micros(value: &str) -> Result<f64, String> {
    let (number, factor) = if let Some(v) = value.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1e6)
    } else {
        return Err(format!("latency {value:?} has no unit"));
    };
    number.trim().parse::<f64>().map(|n| n * factor).map_err(|_| format!("bad latency {value:?}"))
}

/// The parser against a sample of wrk 4.1's output (run in the smoke test, which has no harness).
pub fn check_parser() {
    let text = "Running 3s test @ http://127.0.0.1:1\n  1 threads and 16 connections\n  Latency Distribution\n     50%  635.91us\n     75%  712.00us\n     90%    1.01ms\n     99%    1.59ms\n  123456 requests in 3.00s, 12.34MB read\nRequests/sec:  41152.33\nTransfer/sec:      4.11MB\n";
    let run = parse(text).unwrap();
    assert_eq!(run.requests, 123456);
    assert!((run.p50_us - 635.91).abs() < 1e-6 && (run.p99_us - 1590.0).abs() < 1e-6);
    assert!(parse(&format!("{text}  Non-2xx or 3xx responses: 3\n")).is_err());
    let socket_errors =
        text.replace("  123456 requests", "  Socket errors: connect 0, read 2, write 0, timeout 0\n  123456 requests");
    assert!(parse(&socket_errors).unwrap_err().starts_with("socket errors"));
}
