//! TLS on the proxy listener (rustls), with a certificate made here by openssl.

mod common;

use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_says_so_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    std::fs::write(p("leaf.ext"), "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl makes the test certificates");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    let extra = format!("[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"", cert.display(), key.display());
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;

    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder().no_proxy().add_root_certificate(root).build().unwrap();
    let file = "/wopi/files/1?access_token=t";
    let mut request = client.get(format!("https://localhost:{}{file}", h.listen.port()));
    for (n, v) in h.sign(file).headers() {
        request = request.header(n, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    assert_eq!(h.host.last().unwrap().header("x-forwarded-proto"), Some("https"));
    // Plain HTTP on the TLS port does not get through.
    assert!(h.client.get(h.local(file)).send().await.map_or(true, |r| r.status() != 200));
}

#[test]
fn missing_files_are_named() {
    let text = "upstream = \"http://127.0.0.1:1\"\npublic_url = \"https://x\"\n[discovery]\nurls = [\"https://o/hosting/discovery\"]\n[tls]\ncert_file = \"/nope.pem\"\nkey_file = \"/nope.key\"";
    let e = wopi_guard::config::Config::from_toml(text).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["tls.cert_file", "tls.key_file"]);
    let half = text.replace("key_file = \"/nope.key\"", "");
    assert_eq!(wopi_guard::config::Config::from_toml(&half).unwrap_err().0[0].key, "tls");
}
