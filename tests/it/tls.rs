//! TLS (rustls) on all three sides, with certificates made here by openssl: the proxy listener
//! (and its certificate swapped by a reload), an https WOPI host and an https discovery, each
//! checked against a CA file, the system's roots, or (only when asked) nothing.

use crate::common::*;
use std::time::Duration;
use wopi_guard::config::Config;

const FILE: &str = "/wopi/files/1?access_token=t";

fn listener_tls((cert, key): &(std::path::PathBuf, std::path::PathBuf)) -> String {
    format!("[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n", cert.display(), key.display())
}

async fn signed_https(h: &Harness, client: &reqwest::Client) -> reqwest::Result<reqwest::Response> {
    let mut request = client.get(format!("https://localhost:{}{FILE}", h.listen.port()));
    for (n, v) in h.sign(FILE).headers() {
        request = request.header(n, v);
    }
    request.send().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_says_so_upstream() {
    let pki = Pki::new("test CA");
    let leaf = pki.leaf("server");
    let h = Harness::start_with(Options { extra: listener_tls(&leaf), ..Options::default() }).await;
    assert_eq!(signed_https(&h, &pki.client()).await.unwrap().status(), 200);
    assert_eq!(h.host.last().unwrap().header("x-forwarded-proto"), Some("https"));
    // Plain HTTP on the TLS port does not get through, even with a valid proof: the handshake
    // fails, and the host sees nothing.
    let heads = h.host.count_heads();
    let mut plain = h.client.get(h.local(FILE));
    for (n, v) in h.sign(FILE).headers() {
        plain = plain.header(n, v);
    }
    let plain = plain.send().await;
    assert!(plain.is_err(), "plain HTTP on the TLS port was answered: {plain:?}");
    assert_eq!(h.host.count_heads(), heads, "nothing reached the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_listener_certificate_without_closing_connections() {
    let (first, second) = (Pki::new("first CA"), Pki::new("second CA"));
    let leaf = first.leaf("server");
    let h = Harness::start_with(Options { extra: listener_tls(&leaf), ..Options::default() }).await;
    let kept = first.client(); // keeps its connection open (keep-alive) across the reload
    assert_eq!(signed_https(&h, &kept).await.unwrap().status(), 200);

    let next = second.leaf("server");
    let text = h.config_text.replace(&listener_tls(&leaf), &listener_tls(&next));
    assert_ne!(text, h.config_text);
    assert_eq!(h.reload(&text).await, Ok(vec![]));

    assert_eq!(
        signed_https(&h, &second.client()).await.unwrap().status(),
        200,
        "new handshakes get the new certificate"
    );
    assert!(signed_https(&h, &first.client()).await.is_err(), "the old CA no longer vouches for new handshakes");
    assert_eq!(signed_https(&h, &kept).await.unwrap().status(), 200, "an open connection goes on");

    // A key that does not match its certificate is refused and the certificate in force stays.
    let mismatched = h.config_text.replace(&listener_tls(&leaf), &listener_tls(&(next.0.clone(), leaf.1.clone())));
    let refused = h.reload(&mismatched).await.unwrap_err();
    assert!(refused.contains("not a usable pair"), "{refused}");
    assert_eq!(signed_https(&h, &second.client()).await.unwrap().status(), 200);

    // Removing [tls] needs a restart: the listener stays TLS, and the host is still told https.
    let plain = h.config_text.replace(&listener_tls(&leaf), "");
    assert_eq!(h.reload(&plain).await, Ok(vec!["tls".to_string()]));
    assert_eq!(signed_https(&h, &second.client()).await.unwrap().status(), 200);
    assert_eq!(h.host.last().unwrap().header("x-forwarded-proto"), Some("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_checked_against_the_ca_file() {
    let pki = Pki::new("host CA");
    let leaf = pki.leaf("host");
    let host = FakeHost::start().await;
    let front = TlsFront::start(host.addr(), &leaf.0, &leaf.1).await;
    let upstream = Some(format!("https://127.0.0.1:{}", front.addr.port()));
    let ca = format!("[upstream_tls]\nca_file = \"{}\"\n", pki.ca.display());
    let h = Harness::start_with(Options { upstream: upstream.clone(), extra: ca, ..Options::default() }).await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(host.count(), 1, "the request went through TLS to the host");
    drop(h);

    // The system's roots do not include the test CA: the proxy refuses to talk to the host.
    let h = Harness::start_with(Options { upstream: upstream.clone(), ..Options::default() }).await;
    let (status, body) = h.signed_get(FILE).await;
    assert_eq!(status, 502, "{body}");
    assert!(h.admin_text("/metrics").await.contains(r#"verdict="upstream_error"} 1"#));
    drop(h);

    // Another CA's file: refused too.
    let other = Pki::new("other CA");
    let extra = format!("[upstream_tls]\nca_file = \"{}\"\n", other.ca.display());
    let h = Harness::start_with(Options { upstream: upstream.clone(), extra, ..Options::default() }).await;
    assert_eq!(h.signed_get(FILE).await.0, 502);
    drop(h);

    // The right CA, but a certificate for another name: refused, the name is checked too.
    let wrong_name = pki.leaf_for("elsewhere", "DNS:elsewhere.example.test");
    let elsewhere = TlsFront::start(host.addr(), &wrong_name.0, &wrong_name.1).await;
    let extra = format!("[upstream_tls]\nca_file = \"{}\"\n", pki.ca.display());
    let named_wrong = Some(format!("https://127.0.0.1:{}", elsewhere.addr.port()));
    let h = Harness::start_with(Options { upstream: named_wrong, extra, ..Options::default() }).await;
    assert_eq!(h.signed_get(FILE).await.0, 502);
    assert_eq!(host.count_heads(), 1, "nothing reached the host through a certificate for another name");
    drop(h);

    // insecure_skip_verify: anything goes (and `check` warns, see below).
    let extra = "[upstream_tls]\ninsecure_skip_verify = true\n".to_string();
    let h = Harness::start_with(Options { upstream, extra, ..Options::default() }).await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(host.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_discovery_is_checked_against_the_ca_file() {
    let pki = Pki::new("office CA");
    let leaf = pki.leaf("office");
    let office = std::sync::Arc::new(FakeOffice::start(2048).await);
    let front = TlsFront::start(office.addr(), &leaf.0, &leaf.1).await;
    let url = format!("https://127.0.0.1:{}/hosting/discovery", front.addr.port());
    let options = |discovery: String, wait_ready| Options {
        discovery_url: Some(url.clone()),
        discovery,
        wait_ready,
        ..Options::default()
    };

    let h = Harness::start_on(office.clone(), options(format!("ca_file = \"{}\"", pki.ca.display()), true)).await;
    assert_eq!(h.signed_get(FILE).await.0, 200, "keys came over https");
    drop(h);

    let h = Harness::start_on(office.clone(), options(String::new(), false)).await;
    let failed = format!(r#"wopi_guard_discovery_fetches_total{{source="{url}",outcome="failed"}} 1"#);
    for _ in 0..200 {
        if h.admin_text("/metrics").await.contains(&failed) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(h.admin_text("/metrics").await.contains(&failed), "the system's roots do not vouch for the test CA");
    assert_eq!(h.admin_status("/ready").await, 503);
    assert_eq!(h.signed_get(FILE).await.0, 503, "no keys: fail closed");
    drop(h);

    let h = Harness::start_on(office, options("insecure_skip_verify = true".into(), true)).await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_of_discovery_keeps_the_last_known_good_keys() {
    let (trusted, other) = (Pki::new("office CA"), Pki::new("impostor CA"));
    let leaf = trusted.leaf("office");
    let office = std::sync::Arc::new(FakeOffice::start(2048).await);
    let front = TlsFront::start(office.addr(), &leaf.0, &leaf.1).await;
    let addr = front.addr;
    let url = format!("https://127.0.0.1:{}/hosting/discovery", addr.port());
    let options = Options {
        discovery_url: Some(url.clone()),
        discovery: format!("ca_file = \"{}\"", trusted.ca.display()),
        ..Options::default()
    };
    let h = Harness::start_on(office.clone(), options).await;
    assert_eq!(h.signed_get(FILE).await.0, 200);

    // The same address now answers with a certificate the CA file does not vouch for.
    drop(front);
    let impostor = other.leaf("office");
    let _front = TlsFront::start_on(addr, office.addr(), &impostor.0, &impostor.1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // past min_refresh_interval
    let intruder = Signer::generate(2048);
    let forged = ProofSet::sign(&h.public(FILE), ticks(0), &intruder, &intruder);
    assert_eq!(h.send("GET", FILE, Some(&forged), None).await.0, 500, "the re-fetch fails; refused");
    assert_eq!(h.signed_get(FILE).await.0, 200, "the last-known-good keys stay in force");
    let failed = format!(r#"wopi_guard_discovery_fetches_total{{source="{url}",outcome="failed"}} 1"#);
    assert!(h.admin_text("/metrics").await.contains(&failed));
    assert_eq!(h.admin_status("/ready").await, 200);
}

#[test]
fn check_warns_about_insecure_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "upstream = \"https://127.0.0.1:1\"\npublic_url = \"https://x\"\n[discovery]\nurls = [\"https://o/hosting/discovery\"]\ninsecure_skip_verify = true\n[upstream_tls]\ninsecure_skip_verify = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wopi-guard"))
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("WOPI_GUARD_UPSTREAM")
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for key in ["upstream_tls.insecure_skip_verify", "discovery.insecure_skip_verify"] {
        assert!(all.contains(&format!("{key} = true: any certificate is accepted")), "{key} not warned:\n{all}");
    }
}

#[test]
fn tls_settings_errors_name_the_key() {
    let pki = Pki::new("CA");
    let base = "public_url = \"https://x\"\n[discovery]\nurls = [\"http://o/hosting/discovery\"]\n";
    let errors = |text: String| -> Vec<String> {
        Config::from_toml(&text).unwrap_err().0.into_iter().map(|e| format!("{}: {}", e.key, e.message)).collect()
    };

    let e = errors(format!(
        "upstream = \"http://127.0.0.1:1\"\n{base}ca_file = \"{}\"\n[upstream_tls]\nca_file = \"{}\"\n",
        pki.ca.display(),
        pki.ca.display()
    ));
    assert!(e.iter().any(|m| m.starts_with("upstream_tls.ca_file: applies only to https://")), "{e:?}");
    assert!(e.iter().any(|m| m.starts_with("discovery.ca_file: applies only to https://")), "{e:?}");

    let not_pem = pki.path("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let e = errors(format!(
        "upstream = \"https://h\"\n{base}[upstream_tls]\nca_file = \"{}\"\ninsecure_skip_verify = true\n",
        not_pem.display()
    ));
    assert!(e.iter().any(|m| m.starts_with("upstream_tls.ca_file:") && m.contains("no PEM certificate")), "{e:?}");
    assert!(e.iter().any(|m| m.starts_with("upstream_tls.insecure_skip_verify: cannot be combined")), "{e:?}");

    let e = errors(format!("upstream = \"https://h\"\n{base}[upstream_tls]\nca_file = \"/no/such/ca.pem\"\n"));
    assert!(e.iter().any(|m| m.starts_with("upstream_tls.ca_file: cannot read /no/such/ca.pem")), "{e:?}");

    // The happy path loads.
    let ok = format!("upstream = \"https://h\"\n{base}[upstream_tls]\nca_file = \"{}\"\n", pki.ca.display());
    let c = Config::from_toml(&ok).unwrap();
    assert_eq!(c.upstream_tls.ca_file.as_deref(), Some(pki.ca.as_path()));
}

#[test]
fn missing_files_are_named() {
    let text = "upstream = \"http://127.0.0.1:1\"\npublic_url = \"https://x\"\n[discovery]\nurls = [\"https://o/hosting/discovery\"]\n[tls]\ncert_file = \"/nope.pem\"\nkey_file = \"/nope.key\"";
    let e = Config::from_toml(text).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["tls.cert_file", "tls.key_file"]);
    let half = text.replace("key_file = \"/nope.key\"", "");
    assert_eq!(Config::from_toml(&half).unwrap_err().0[0].key, "tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_command_takes_a_ca_file() {
    let pki = Pki::new("office CA");
    let leaf = pki.leaf("office");
    let office = FakeOffice::start(2048).await;
    let front = TlsFront::start(office.addr(), &leaf.0, &leaf.1).await;
    let url = format!("https://127.0.0.1:{}/hosting/discovery", front.addr.port());
    let run = |extra: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_wopi-guard"))
                .arg("discovery")
                .arg(&url)
                .args(extra)
                .output()
                .unwrap();
            (
                out.status.code(),
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            )
        })
    };
    let (code, out) = run(vec!["--ca-file".into(), pki.ca.display().to_string()]).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2048 bits"), "{out}");
    let (code, out) = run(vec![]).await.unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot fetch") && out.to_lowercase().contains("certificate"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connections_hold_the_caps_only_until_the_handshake_timeout() {
    let pki = Pki::new("test CA");
    let leaf = pki.leaf("server");
    // Appended to the harness's own [server] table.
    let extra = format!("tls_handshake_timeout = \"1s\"\nmax_connections = 50\n{}", listener_tls(&leaf));
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    let started = std::time::Instant::now();
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(tokio::net::TcpStream::connect(h.listen).await.unwrap());
    }
    // They count from accept: once all are in, a 51st connection is closed at once, long before
    // the timeout.
    h.metric_shows("wopi_guard_connections_open 50\n").await;
    let mut over = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    assert!(closed_by_peer(&mut over, Duration::from_millis(500)).await, "the handshakes were not under the cap");
    assert!(started.elapsed() < Duration::from_millis(900), "too slow to tell: {:?}", started.elapsed());
    h.metric_shows("wopi_guard_connections_closed_total{reason=\"max_connections\"} 1").await;
    for stream in &mut silent {
        assert!(closed_by_peer(stream, Duration::from_secs(3)).await, "a silent connection stayed open");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "closed after {took:?}");
    h.metric_shows("wopi_guard_connections_closed_total{reason=\"tls_handshake_timeout\"} 50").await;
    drop(silent);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(signed_https(&h, &pki.client()).await.unwrap().status(), 200, "the slots are free again");
}
