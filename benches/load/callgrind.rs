//! Instructions per request, counted by callgrind (valgrind): independent of the machine's other
//! load, unlike the timed rounds, though not exactly repeatable for a multi-threaded proxy (tokio's
//! parking and polling differ from run to run; the README shows two runs). Each of (p), (c), (d) is
//! started under callgrind twice and sent `few` then `many` requests on one keep-alive connection;
//! the difference of the two totals over `many - few` requests leaves out start-up and shutdown.
//! The count files stay in `target/callgrind/` for `callgrind_annotate --inclusive=yes`.

use crate::procs::{Launch, Proc};
use crate::put;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts a process under test on (listen, admin) as the [`Launch`] says.
pub type Starter<'a> = Box<dyn Fn(Launch, SocketAddr, SocketAddr) -> Proc + 'a>;

/// One process under test.
pub struct Subject<'a> {
    pub label: &'static str,
    pub short: &'static str,
    pub start: Starter<'a>,
}

/// A request to repeat: what it is called in the table, its target, its signed headers.
pub struct Request<'a> {
    pub label: &'static str,
    pub target: String,
    pub headers: Vec<(&'static str, &'a str)>,
}

pub fn available() -> bool {
    std::process::Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Counts every subject on every request; prints a table (one column per request).
pub fn run(subjects: &[Subject], requests: &[Request], few: usize, many: usize) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out_dir: PathBuf = tmp.parent().unwrap_or(tmp).join("callgrind");
    std::fs::create_dir_all(&out_dir).unwrap();
    println!("## Instructions per request (callgrind), {few} and {many} requests on one connection\n");
    print!("| target |");
    for r in requests {
        print!(" {} |", r.label);
    }
    println!("\n|---|{}", "---|".repeat(requests.len()));
    let mut counts = vec![Vec::new(); subjects.len()];
    for (i, subject) in subjects.iter().enumerate() {
        for (size, request) in requests.iter().enumerate() {
            let totals: Vec<u64> = [few, many]
                .iter()
                .map(|&n| {
                    let file = out_dir.join(format!("{}-{size}-{n}.out", subject.short));
                    let _ = std::fs::remove_file(&file);
                    let (listen, admin) = (wopi_guard::testkit::free_port(), wopi_guard::testkit::free_port());
                    let proc = (subject.start)(Launch::Callgrind(&file), listen, admin);
                    let ok = put::get_many(listen, &request.target, &request.headers, n);
                    assert_eq!(ok, n, "{}: every request answered 200", subject.label);
                    proc.interrupt(Duration::from_secs(60));
                    total(&file)
                })
                .collect();
            let per_request = (totals[1].saturating_sub(totals[0])) as f64 / (many - few) as f64;
            eprintln!("callgrind {}: {}: {per_request:.0} instructions/request", subject.label, request.label);
            counts[i].push(per_request);
        }
        print!("| {} |", subject.label);
        for c in &counts[i] {
            print!(" {} |", thousands(*c));
        }
        println!();
    }
    println!("\n(count files: {})\n", out_dir.display());
}

/// The `totals:` (or `summary:`) line of a callgrind output file.
fn total(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e} (did the process exit on SIGINT?)", file.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{}: no totals line", file.display()))
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}
