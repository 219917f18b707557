//! The processes under test: nginx instances and wopi-guard instances started from files in one
//! work directory, their CPU time and peak memory read from /proc, all stopped on drop.

use crate::floor;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, started in a process group of its own ([`own_group`]) and stopped with its
/// group on drop; nginx gets SIGTERM and `grace` first, so that its master reaps its workers.
pub struct Proc {
    child: Child,
    grace: Option<Duration>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        crate::child::stop_group(&mut self.child, self.grace);
    }
}

/// `command`, set to start its process in a new process group that it leads.
fn own_group(mut command: Command) -> Command {
    command.process_group(0);
    command
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU of this process and its children that are alive (nginx workers).
    pub fn cpu(&self) -> Duration {
        let mut total = cpu_of(self.pid());
        for child in children(self.pid()) {
            total += cpu_of(child);
        }
        total
    }

    /// Peak resident memory (VmHWM) since start or the last [`Proc::reset_peak`], in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Asks the process to stop (SIGINT, as a terminal would) and waits for it to exit, so that
    /// a profiler it runs under writes its counts. Killed after `patience`.
    pub fn interrupt(mut self, patience: Duration) {
        let _ = Command::new("kill").arg("-INT").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drop kills it.
    }

    /// Resets the peak resident memory to the current one (Linux: `5` into `clear_refs`).
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }
}

fn clock_ticks() -> u64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; `getconf` confirms it when present.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().map(str::to_string).collect()
}

fn cpu_of(pid: u32) -> Duration {
    let f = stat_fields(pid);
    // After the command name: state(0) ppid(1) ... utime(11) stime(12).
    let ticks: u64 =
        f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_micros(ticks * 1_000_000 / clock_ticks())
}

fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent))
        .collect()
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, what: &str, log: &Path) {
    wait_listening_for(addr, what, log, Duration::from_secs(15));
}

fn wait_listening_for(addr: SocketAddr, what: &str, log: &Path, patience: Duration) {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on {addr}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// The nginx binary from Debian's package.
pub fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Starts nginx with `http_body` inside `http { }`, in `dir/name/`.
pub fn nginx(dir: &Path, name: &str, workers: usize, http_body: &str, addr: SocketAddr) -> Proc {
    let nginx = nginx_binary().expect("nginx is installed (make bench installs Debian's nginx)");
    let d = dir.join(name);
    for sub in ["", "body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
        chmod(&d.join(sub), 0o777); // workers may run as nobody
    }
    let conf = format!(
        r#"daemon off;
worker_processes {workers};
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    access_log {d}/access.log;
    keepalive_requests 1000000;
{http_body}
}}
"#,
        d = d.display()
    );
    let conf_path = d.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = own_group(Command::new(nginx))
        .arg("-p")
        .arg(&d)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let proc = Proc { child, grace: Some(Duration::from_secs(3)) };
    wait_listening(addr, name, &d.join("error.log"));
    proc
}

/// How a process under test is started: directly, or under callgrind writing its counts to a file.
#[derive(Clone, Copy)]
pub enum Launch<'a> {
    Direct,
    Callgrind(&'a Path),
}

impl Launch<'_> {
    fn command(self, program: &Path) -> Command {
        match self {
            Launch::Direct => own_group(Command::new(program)),
            Launch::Callgrind(out) => {
                let mut c = own_group(Command::new("valgrind"));
                c.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out.display())).arg(program);
                c
            }
        }
    }

    /// Start-up under valgrind is tens of times slower.
    fn patience(self) -> Duration {
        match self {
            Launch::Direct => Duration::from_secs(15),
            Launch::Callgrind(_) => Duration::from_secs(120),
        }
    }
}

/// Starts the wopi-guard binary on `config` (TOML), logging to `dir/name.log`.
pub fn wopi_guard(dir: &Path, name: &str, config: &str, listen: SocketAddr, admin: SocketAddr) -> Proc {
    wopi_guard_as(Launch::Direct, dir, name, config, listen, admin)
}

/// [`wopi_guard`], started as `launch` says.
pub fn wopi_guard_as(
    launch: Launch,
    dir: &Path,
    name: &str,
    config: &str,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Proc {
    let conf_path = dir.join(format!("{name}.toml"));
    std::fs::write(&conf_path, config).unwrap();
    let log = dir.join(format!("{name}.log"));
    let mut command = launch.command(Path::new(env!("CARGO_BIN_EXE_wopi-guard")));
    for (var, _) in std::env::vars().filter(|(n, _)| n.starts_with("WOPI_GUARD_")) {
        command.env_remove(var);
    }
    let child = command
        .arg("--config")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("wopi-guard starts");
    let proc = Proc { child, grace: None };
    wait_listening_for(listen, name, &log, launch.patience());
    // Ready means the proof keys are loaded.
    let deadline = Instant::now() + launch.patience();
    loop {
        let ready = std::net::TcpStream::connect(admin).ok().and_then(|mut s| {
            use std::io::{Read, Write};
            s.write_all(b"GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            Some(text.starts_with("HTTP/1.1 200"))
        });
        if ready == Some(true) {
            return proc;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became ready:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Starts this bench binary again as the bare Pingora proxy ([`crate::bare`]).
pub fn bare_pingora(listen: SocketAddr, upstream: SocketAddr) -> Proc {
    bare_pingora_as(Launch::Direct, listen, upstream)
}

/// [`bare_pingora`], started as `launch` says.
pub fn bare_pingora_as(launch: Launch, listen: SocketAddr, upstream: SocketAddr) -> Proc {
    this_binary_as(launch, &["--bare-pingora", &listen.to_string(), &upstream.to_string()], listen, "bare Pingora")
}

/// A redis-server (Debian's package) on `listen`, nothing persisted, for `[shared]`.
pub fn redis(dir: &Path, listen: SocketAddr) -> Proc {
    let data = dir.join("redis");
    std::fs::create_dir_all(&data).unwrap();
    let child = own_group(Command::new("redis-server"))
        .args([
            "--port",
            &listen.port().to_string(),
            "--bind",
            &listen.ip().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is not installed (Debian package redis-server; `make test-deps` installs it)");
    let proc = Proc { child, grace: None };
    wait_listening(listen, "redis-server", Path::new("/dev/null"));
    proc
}

/// Starts this bench binary again as the floor proxy ([`crate::floor`]) in `mode`.
pub fn floor(mode: floor::Mode, listen: SocketAddr, upstream: SocketAddr) -> Proc {
    let args = ["--floor", mode.arg(), &listen.to_string(), &upstream.to_string()];
    this_binary_as(Launch::Direct, &args, listen, "the floor proxy")
}

fn this_binary_as(launch: Launch, args: &[&str], listen: SocketAddr, what: &str) -> Proc {
    let child = launch
        .command(&std::env::current_exe().unwrap())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the bench binary starts again");
    let proc = Proc { child, grace: None };
    wait_listening_for(listen, what, Path::new("/dev/null"), launch.patience());
    proc
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}
