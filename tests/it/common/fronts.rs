//! The shipped front-proxy examples under the real servers from Debian's packages: nginx (proxy
//! mode and forward-auth), Apache httpd, HAProxy and Caddy, each started on a free port in a
//! process group of its own, with only the example's addresses and certificate paths replaced
//! (and the few process settings a test run needs wrapped around it: a private directory, no
//! daemon, no system service touched). Stopped with its children when dropped.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, Nginx, Pki};

/// Which shipped example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `examples/nginx-proxy.conf`: nginx in front of wopi-guard.
    NginxProxy,
    /// `examples/nginx-auth-request.conf`: nginx asks wopi-guard (forward-auth).
    NginxAuth,
    /// `examples/apache-proxy.conf`.
    Apache,
    /// `examples/haproxy.cfg`.
    HAProxy,
    /// `examples/Caddyfile`.
    Caddy,
    /// `examples/Caddyfile.forward-auth`: Caddy asks wopi-guard (forward_auth).
    CaddyAuth,
}

impl Kind {
    /// The front asks wopi-guard's forward-auth endpoint instead of proxying through it.
    pub fn asks(self) -> bool {
        matches!(self, Kind::NginxAuth | Kind::CaddyAuth)
    }
}

/// A running front proxy.
pub struct Front {
    child: Option<Child>,
    _nginx: Option<Nginx>,
    dir: tempfile::TempDir,
    /// Where it listens (TLS).
    pub addr: SocketAddr,
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            super::child::stop_group(child, Some(Duration::from_secs(3)));
        }
    }
}

/// The shipped example `name`.
fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name))
        .expect("the shipped example")
}

/// Replaces every occurrence of `from` (there must be `count`): a change to the example that the
/// test no longer covers is noticed.
fn replace(text: &str, from: &str, to: &str, count: usize) -> String {
    assert_eq!(text.matches(from).count(), count, "expected {from:?} {count} time(s) in the example");
    text.replace(from, to)
}

fn binary(candidates: &[&'static str], package: &str) -> &'static str {
    candidates.iter().copied().find(|p| Path::new(p).exists()).unwrap_or_else(|| {
        panic!("{package} is not installed: `make test-deps` installs it (apt-get install {package})")
    })
}

impl Front {
    /// `kind`'s example on 127.0.0.1 with TLS from `pki` (a certificate for 127.0.0.1), in front of
    /// wopi-guard at `guard` (and, for forward-auth, of the WOPI host at `host`).
    pub async fn start(kind: Kind, guard: SocketAddr, host: SocketAddr, pki: &Pki) -> Front {
        let (cert, key) = pki.leaf(&format!("front-{kind:?}"));
        let dir = tempfile::tempdir().unwrap();
        let addr = free_port();
        let guard_text = guard.to_string();
        let (program, args): (&str, Vec<String>) = match kind {
            Kind::NginxProxy | Kind::NginxAuth => {
                let nginx = match kind {
                    Kind::NginxAuth => Nginx::example(guard, host, pki).await,
                    _ => {
                        let text = example("nginx-proxy.conf");
                        let text = replace(&text, "server 127.0.0.1:8080;", &format!("server {guard};"), 1);
                        let text = replace(&text, "listen 443 ssl;", &format!("listen {addr} ssl;"), 1);
                        let text = replace(&text, "/etc/ssl/wopi.example.com.crt", &cert.display().to_string(), 1);
                        let text = replace(&text, "/etc/ssl/wopi.example.com.key", &key.display().to_string(), 1);
                        Nginx::start(&text, addr).await
                    }
                };
                let addr = nginx.addr;
                return Front { child: None, _nginx: Some(nginx), dir, addr };
            }
            Kind::Apache => {
                let d = dir.path().display();
                let text = example("apache-proxy.conf");
                let text = replace(&text, "<VirtualHost *:443>", &format!("<VirtualHost {addr}>"), 1);
                let text = replace(&text, "http://127.0.0.1:8080/", &format!("http://{guard_text}/"), 2);
                let text = replace(&text, "/etc/ssl/wopi.example.com.crt", &cert.display().to_string(), 1);
                let text = replace(&text, "/etc/ssl/wopi.example.com.key", &key.display().to_string(), 1);
                let modules = ["mpm_event", "authz_core", "ssl", "socache_shmcb", "proxy", "proxy_http", "headers"];
                let loads: String = modules
                    .iter()
                    .map(|m| format!("LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so\n"))
                    .collect();
                let user = if running_as_root() { "User www-data\nGroup www-data\n" } else { "" };
                let main = format!(
                    "ServerRoot {d}\nServerName 127.0.0.1\nPidFile {d}/apache.pid\nErrorLog {d}/error.log\nLogLevel warn\nMutex posixsem\n{user}{loads}Listen {addr}\n{text}"
                );
                let conf = dir.path().join("apache.conf");
                std::fs::write(&conf, main).unwrap();
                let program = binary(&["/usr/sbin/apache2"], "apache2");
                (program, vec!["-f".into(), conf.display().to_string(), "-DFOREGROUND".into()])
            }
            Kind::HAProxy => {
                let pem = dir.path().join("front.pem");
                let both =
                    format!("{}{}", std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap());
                std::fs::write(&pem, both).unwrap();
                let text = example("haproxy.cfg");
                let text = replace(
                    &text,
                    "bind :443 ssl crt /etc/ssl/wopi.example.com.pem",
                    &format!("bind {addr} ssl crt {}", pem.display()),
                    1,
                );
                let text = replace(&text, "server guard 127.0.0.1:8080", &format!("server guard {guard_text}"), 1);
                let conf = dir.path().join("haproxy.cfg");
                std::fs::write(&conf, text).unwrap();
                let program = binary(&["/usr/sbin/haproxy"], "haproxy");
                (program, vec!["-db".into(), "-f".into(), conf.display().to_string()])
            }
            Kind::Caddy | Kind::CaddyAuth => {
                let d = dir.path().display();
                let text = if kind == Kind::Caddy {
                    let text = example("Caddyfile");
                    replace(&text, "reverse_proxy 127.0.0.1:8080 {", &format!("reverse_proxy {guard_text} {{"), 1)
                } else {
                    let text = example("Caddyfile.forward-auth");
                    let text =
                        replace(&text, "forward_auth 127.0.0.1:8080 {", &format!("forward_auth {guard_text} {{"), 1);
                    replace(&text, "reverse_proxy 127.0.0.1:8081 {", &format!("reverse_proxy {host} {{"), 1)
                };
                // Any host on this port: the test calls it by the routes' names.
                let text = replace(&text, "wopi.example.com:443 {", &format!(":{} {{", addr.port()), 1);
                let text = replace(&text, "/etc/ssl/wopi.example.com.crt", &cert.display().to_string(), 1);
                let text = replace(&text, "/etc/ssl/wopi.example.com.key", &key.display().to_string(), 1);
                let globals = format!(
                    "{{\n\tadmin off\n\tauto_https disable_redirects\n\thttp_port {}\n\thttps_port {}\n\tstorage file_system {{\n\t\troot {d}/data\n\t}}\n}}\n\n",
                    free_port().port(),
                    addr.port()
                );
                let conf = dir.path().join("Caddyfile");
                std::fs::write(&conf, format!("{globals}{text}")).unwrap();
                let program = binary(&["/usr/bin/caddy"], "caddy");
                let args = ["run", "--adapter", "caddyfile", "--config"].map(String::from).into_iter();
                (program, args.chain([conf.display().to_string()]).collect())
            }
        };
        let child = Command::new(program)
            .process_group(0)
            .args(&args)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} did not start: {e}"));
        let mut front = Front { child: Some(child), _nginx: None, dir, addr };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return front;
            }
            if let Some(Ok(Some(status))) = front.child.as_mut().map(|c| c.try_wait()) {
                panic!("{kind:?} exited ({status}): {}", front.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{kind:?} did not listen on {addr}: {}", front.log());
    }

    /// What the front wrote to its logs.
    pub fn log(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
