//! Configuration precedence: flags > environment (`WOPI_GUARD_...`) > file > defaults.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wopi_guard::testkit::free_port;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wopi-guard"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("WOPI_GUARD_")) {
        c.env_remove(name);
    }
    c
}

fn file(dir: &tempfile::TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("wopi-guard.toml");
    std::fs::write(&path, body).unwrap();
    path
}

const BASE: &str = r#"
upstream = "http://127.0.0.1:9"
public_url = "https://wopi.example.com"
[discovery]
urls = ["http://127.0.0.1:9/hosting/discovery"]
"#;

#[test]
fn environment_overrides_the_file_and_check_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, &format!("listen = \"127.0.0.1:1111\"\n{BASE}"));
    let out = bin().args(["check", "--config"]).arg(&path).env("WOPI_GUARD_LISTEN", "127.0.0.1:2222").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("listen = 127.0.0.1:2222"), "{stdout}");
    assert!(stdout.contains("from WOPI_GUARD_LISTEN: listen = "), "{stdout}");

    // Nested keys, typed values.
    let out = bin()
        .args(["check", "--config"])
        .arg(&path)
        .env(
            "WOPI_GUARD_DISCOVERY__URLS",
            r#"["https://a.example/hosting/discovery", "https://b.example/hosting/discovery"]"#,
        )
        .env("WOPI_GUARD_PROOF__MAX_AGE", "10m")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("b.example"), "{stdout}");
}

#[test]
fn a_bad_variable_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, BASE);
    let out = bin()
        .args(["check", "--config"])
        .arg(&path)
        .env("WOPI_GUARD_PROOF__MAX_AGE", "soon")
        .env("WOPI_GUARD_NOPE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("proof.max_age:") && stdout.contains("(set by WOPI_GUARD_PROOF__MAX_AGE)"), "{stdout}");
    assert!(stdout.contains("nope: unknown key") && stdout.contains("(set by WOPI_GUARD_NOPE)"), "{stdout}");
}

/// `level = "warning"` once passed `check` and then turned every log line off.
#[test]
fn a_bad_log_level_is_an_error_not_silence() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, &format!("{BASE}\n[log]\nlevel = \"warning\"\n"));
    let out = bin().args(["check", "--config"]).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("log.level") && stdout.contains("\"warning\" is not a level"), "{stdout}");
    // The same in WOPI_GUARD_LOG: refused at start, before anything runs.
    let path = file(&dir, BASE);
    let out = bin().arg("--config").arg(&path).env("WOPI_GUARD_LOG", "warning").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("WOPI_GUARD_LOG is not valid"), "{stderr}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `addr` accepts within `within`; panics at once if the child exited first.
fn listening(child: &mut Killed, addr: std::net::SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("wopi-guard exited ({status}) before it listened on {addr}");
        }
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env, from_flag, admin) = (free_port(), free_port(), free_port(), free_port());
    let path = file(&dir, &format!("listen = \"{from_file}\"\nadmin_listen = \"{admin}\"\n{BASE}"));
    let child = bin()
        .arg("--config")
        .arg(&path)
        .args(["--listen", &from_flag.to_string()])
        .env("WOPI_GUARD_LISTEN", from_env.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    assert!(listening(&mut guard, from_flag, Duration::from_secs(20)), "the flag's address is used");
    assert!(TcpStream::connect(from_env).is_err() && TcpStream::connect(from_file).is_err());
}

#[test]
fn runs_from_environment_and_flags_alone() {
    let (listen, admin) = (free_port(), free_port());
    let child = bin()
        .args(["--listen", &listen.to_string(), "--admin-listen", &admin.to_string(), "--log-format", "text"])
        .args(["--discovery-url", "http://127.0.0.1:9/hosting/discovery"])
        .env("WOPI_GUARD_UPSTREAM", "http://127.0.0.1:9")
        .env("WOPI_GUARD_PUBLIC_URL", "https://wopi.example.com")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    assert!(listening(&mut guard, listen, Duration::from_secs(20)));
    // Without the required keys, it says which are missing.
    let out = bin().args(["--listen", "127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("upstream: missing") && stderr.contains("public_url: missing"), "{stderr}");
}
