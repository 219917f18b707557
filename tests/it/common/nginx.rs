//! A real nginx from Debian's packages, started on a free port in a process group of its own and
//! stopped with its workers when dropped; and the shipped `examples/nginx-auth-request.conf`
//! itself, with only its addresses and certificate paths replaced.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, Pki};

/// A running nginx; stopped with its workers on drop.
pub struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        super::child::stop_group(&mut self.child, Some(Duration::from_secs(3)));
    }
}

fn binary() -> &'static str {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is not installed: `make test` installs it (apt-get install nginx); it is needed for this test")
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Replaces the one occurrence of `from` in `text`; panics when it is not there exactly once,
/// so a change to the example that the test no longer covers is noticed.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "expected {from:?} exactly once in the nginx example");
    text.replacen(from, to, 1)
}

impl Nginx {
    /// Starts nginx with `events {}` / `http { … }` sections `conf` (what a site's file holds),
    /// adding what a test run needs: a private prefix, no daemon, one worker.
    pub async fn start(conf: &str, addr: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let user = if running_as_root() { "user root;" } else { "" };
        let globals =
            format!("{user}\nworker_processes 1;\ndaemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n");
        let http = format!(
            "http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n"
        );
        let conf = format!("{globals}{}", replace_once(conf, "http {\n", &http));
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(binary())
            .process_group(0)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Nginx { child, dir, addr };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default()
        );
    }

    /// `examples/nginx-auth-request.conf` as shipped, in front of `host`, asking `guard`, on
    /// 127.0.0.1 with TLS from `pki` (certificate for 127.0.0.1).
    pub async fn example(guard: SocketAddr, host: SocketAddr, pki: &Pki) -> Nginx {
        Nginx::example_edited(guard, host, pki, &[]).await
    }

    /// As [`Nginx::example`], with each `(from, to)` of `edits` replaced once first: an operator's
    /// variation of the shipped file.
    pub async fn example_edited(guard: SocketAddr, host: SocketAddr, pki: &Pki, edits: &[(&str, &str)]) -> Nginx {
        let mut text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/nginx-auth-request.conf"))
                .expect("the shipped example");
        for (from, to) in edits {
            text = replace_once(&text, from, to);
        }
        let addr = free_port();
        let (cert, key) = pki.leaf("nginx");
        let text = replace_once(&text, "server 127.0.0.1:8081;", &format!("server {host};"));
        let text = replace_once(&text, "server 127.0.0.1:8080;", &format!("server {guard};"));
        let text = replace_once(&text, "listen 443 ssl;", &format!("listen {addr} ssl;"));
        let text = replace_once(&text, "/etc/ssl/wopi.example.com.crt", &cert.display().to_string());
        let text = replace_once(&text, "/etc/ssl/wopi.example.com.key", &key.display().to_string());
        Nginx::start(&text, addr).await
    }
}
