//! Forward-auth mode: directly, and behind a real nginx (`auth_request`) from Debian's packages.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const FILE: &str = "/wopi/files/doc1?access_token=tok";
const AUTH: &str = "/_wopi-guard/auth";

fn options(trusted: &str) -> Options {
    let extra = format!("[forward_auth]\npath = \"{AUTH}\"\n[ip]\ntrusted_proxies = [\"{trusted}\"]");
    Options { proof: "allow_unsigned_from = [\"10.9.9.9/32\"]", extra, ..Options::default() }
}

async fn ask(
    h: &Harness,
    uri: Option<&str>,
    method: &str,
    proof: Option<&ProofSet>,
    more: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = h.client.get(h.local(AUTH)).header("X-Original-Method", method);
    if let Some(uri) = uri {
        request = request.header("X-Original-URI", uri);
    }
    for (n, v) in proof.map(|p| p.headers().to_vec()).unwrap_or_default() {
        request = request.header(n, v);
    }
    for (n, v) in more {
        request = request.header(*n, *v);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_for_the_original_request() {
    let h = Harness::start_with(options("127.0.0.1/32")).await;
    let proof = h.sign(FILE);
    assert_eq!(ask(&h, Some(FILE), "GET", Some(&proof), &[]).await.status(), 200);
    assert_eq!(ask(&h, Some(&FILE.replace("doc1", "doc2")), "GET", Some(&proof), &[]).await.status(), 500);
    assert_eq!(ask(&h, Some(FILE), "GET", None, &[]).await.status(), 500);
    assert_eq!(ask(&h, None, "GET", Some(&proof), &[]).await.status(), 400);
    // Traefik's header names work too.
    let mut r = h.client.get(h.local(AUTH)).header("X-Forwarded-Uri", FILE).header("X-Forwarded-Method", "GET");
    for (n, v) in proof.headers() {
        r = r.header(n, v);
    }
    assert_eq!(r.send().await.unwrap().status(), 200);
    // access_header becomes response headers; the client behind the proxy is from X-Forwarded-For.
    let unsigned = "/wopi/files/doc1?access_header=Authorization%3A%20Basic%20eHk%3D";
    let r = ask(&h, Some(unsigned), "GET", None, &[("X-Forwarded-For", "10.9.9.9")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["authorization"], "Basic eHk=");
    assert_eq!(h.forwarded(), 0, "forward-auth never forwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_proxies_may_ask() {
    let h = Harness::start_with(options("10.0.0.1/32")).await;
    assert_eq!(ask(&h, Some(FILE), "GET", Some(&h.sign(FILE)), &[]).await.status(), 403);
}

/// nginx in a process group of its own, stopped with its worker on drop.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        common::child::stop_group(&mut self.0, Some(Duration::from_secs(3)));
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_real_nginx() {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx is not installed: `make test` installs it (apt-get install nginx); it is needed for this test");
    let h = Harness::start_with(options("127.0.0.1/32")).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let host = h.host.url().trim_start_matches("http://").to_string();
    let user = if running_as_root() { "user root;" } else { "" };
    let conf = format!(
        r#"{user}
worker_processes 1;
daemon off;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {port};
        location /wopi/ {{
            auth_request /_wopi_guard;
            auth_request_set $wg_authorization $upstream_http_authorization;
            proxy_set_header Authorization $wg_authorization;
            proxy_pass http://{host};
        }}
        location = /_wopi_guard {{
            internal;
            proxy_pass http://{guard}{AUTH};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"#,
        guard = h.listen,
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(nginx)
        .process_group(0)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _nginx = Nginx(child);
    let base = format!("http://{port}");
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(port).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "nginx did not start: {}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());

    let send = |target: String, proof: Option<ProofSet>| {
        let mut r = h.client.get(format!("{base}{target}"));
        for (n, v) in proof
            .map(|p| p.headers().iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            r = r.header(n, v);
        }
        r.send()
    };
    // nginx itself passes the raw target: the signature over public_url + target holds.
    assert_eq!(send(FILE.into(), Some(h.sign(FILE))).await.unwrap().status(), 200);
    assert_eq!(h.host.last().unwrap().target, FILE);
    // A refusal by wopi-guard (500) is an error for auth_request: nginx answers 500, forwards nothing.
    let before = h.forwarded();
    assert_eq!(send(FILE.replace("doc1", "doc2"), Some(h.sign(FILE))).await.unwrap().status(), 500);
    assert_eq!(send(FILE.into(), None).await.unwrap().status(), 500);
    assert_eq!(h.forwarded(), before);
}
