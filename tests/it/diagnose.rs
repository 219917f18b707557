//! The diagnostics commands, run as the binary: discovery, sign, explain.

use std::process::Command;
use wopi_guard::testkit::{discovery_xml, Signer};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wopi-guard"))
}

fn run(args: &[&str]) -> (i32, String) {
    let out = bin().args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn discovery_describes_keys_and_warns_about_published_ones() {
    let (code, out) = run(&["discovery", &fixture("onlyoffice_discovery_from_ocis_test.xml")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("modulus/exponent: 2048 bits"), "{out}");
    assert!(out.contains("aiKeyAlg 0xa400"), "{out}");
    assert!(out.contains("old key == current key"), "{out}");
    assert!(out.contains("WARNING: current key is the ONLYOFFICE Docs default WOPI key of 2021-04-21"), "{out}");

    let (code, out) = run(&["discovery", &fixture("office_online_df_discovery_2016.xml")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("aiKeyAlg 0x2400") && !out.contains("WARNING"), "{out}");
    let (_, out) = run(&["discovery", &fixture("wopi_validator_pr145_dummy_discovery.xml")]);
    assert!(out.contains("1024 bits"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.xml");
    std::fs::write(&empty, "<wopi-discovery/>").unwrap();
    let (code, out) = run(&["discovery", empty.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("no <proof-key>"), "{out}");
    let (code, _) = run(&["discovery", "/no/such/file.xml"]);
    assert_eq!(code, 1);
}

#[test]
fn discovery_over_http() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let office = runtime.block_on(wopi_guard::testkit::FakeOffice::start(2048));
    let (code, out) = run(&["discovery", &office.discovery_url()]);
    assert_eq!(code, 0, "{out}");
    let fingerprint =
        wopi_guard::keys::ProofKey::from_components(office.current().modulus(), office.current().exponent()).unwrap();
    assert!(out.contains(fingerprint.fingerprint()), "{out}");
}

#[test]
fn sign_then_explain_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (key, old) = (Signer::generate(2048), Signer::generate(2048));
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem()).unwrap();
    let discovery = dir.path().join("discovery.xml");
    std::fs::write(&discovery, discovery_xml(&key, Some(&old))).unwrap();

    let url = "https://wopi.example.com/wopi/files/42?access_token=secret-token-123";
    let (code, signed) = run(&["sign", "--key", key_file.to_str().unwrap(), "--url", url]);
    assert_eq!(code, 0, "{signed}");
    assert!(signed.contains("curl -i"));
    let headers: String = signed.lines().take_while(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect();
    assert_eq!(headers.lines().count(), 3, "{signed}");

    let capture = dir.path().join("request.txt");
    std::fs::write(&capture, format!("GET {url}\n{headers}")).unwrap();
    let args = |c: &std::path::Path| {
        vec![
            "explain".to_string(),
            "--request".into(),
            c.display().to_string(),
            "--discovery".into(),
            discovery.display().to_string(),
        ]
    };
    let (code, out) = run(&args(&capture).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VERIFIED (proof+current"), "{out}");
    assert!(out.contains("within the window"), "{out}");
    // The signed URL is shown uppercased: compare in lower case, or an uppercased token slips by.
    assert!(!out.to_lowercase().contains("secret-token-123"), "the token is hashed: {out}");
    assert!(out.contains("URL as_configured"), "{out}");

    // A capture written with the default port, signed without it (Collabora, .NET): the verifier
    // tries the other form, and so does explain (it once refused what the proxy accepts).
    let with_port = dir.path().join("port.txt");
    std::fs::write(&with_port, format!("GET {}\n{headers}", url.replace(".com/", ".com:443/"))).unwrap();
    let (code, out) = run(&args(&with_port).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("URL default_port_dropped"), "{out}");
    assert!(!out.to_lowercase().contains("secret-token-123"), "{out}");
    // The tries are the verifier's attempts, in its order: the written form first, then the other.
    let tries: Vec<&str> = out.lines().filter(|l| l.starts_with("  ") && l.contains(" key ")).collect();
    assert!(tries[0].starts_with("  as_configured, decoded token, Proof    with current key"), "{out}");
    assert!(tries.iter().all(|l| !l.starts_with("  as_configured") || l.ends_with(": no")), "{out}");
    assert!(
        tries.iter().any(|l| l.starts_with("  default_port_dropped, decoded token, Proof    with current key")
            && l.ends_with("VERIFIES")),
        "{out}"
    );

    // The time window is the configuration's when one is given: 30 minutes later passes a 1 h
    // max_age (the default 20 minutes refuses it, below).
    let config = dir.path().join("wopi-guard.toml");
    std::fs::write(
        &config,
        "upstream = \"http://127.0.0.1:8081\"\npublic_url = \"https://wopi.example.com\"\n\
         [discovery]\nurls = [\"http://127.0.0.1:9/hosting/discovery\"]\n[proof]\nmax_age = \"1h\"\n",
    )
    .unwrap();
    let half_hour =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + std::time::Duration::from_secs(1800))
            .to_string();
    let mut configured = args(&capture);
    configured.extend(["--config".to_string(), config.display().to_string(), "--at".to_string(), half_hour.clone()]);
    let (code, out) = run(&configured.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("within the window"), "{out}");
    let mut defaults = args(&capture);
    defaults.extend(["--at".to_string(), half_hour]);
    let (code, out) = run(&defaults.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REFUSED (proof_expired)"), "{out}");

    // The same proof on another file: refused, and the report says nothing verified.
    let tampered = dir.path().join("tampered.txt");
    std::fs::write(&tampered, format!("GET {}\n{headers}", url.replace("/42?", "/43?"))).unwrap();
    let (code, out) = run(&args(&tampered).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REFUSED: proof_invalid") && !out.contains("VERIFIES"), "{out}");

    // A path-only capture needs a base.
    let path_only = dir.path().join("path.txt");
    std::fs::write(&path_only, format!("GET /wopi/files/42?access_token=secret-token-123 HTTP/1.1\n{headers}"))
        .unwrap();
    let (code, out) = run(&args(&path_only).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1);
    assert!(out.contains("--public-url"), "{out}");
    let mut with_base = args(&path_only);
    with_base.extend(["--public-url".to_string(), "https://wopi.example.com".to_string()]);
    let (code, out) = run(&with_base.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");

    // Judged later than 20 minutes: the signature still verifies, the time refuses.
    let mut later = args(&capture);
    later.extend([
        "--at".to_string(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
            .to_string(),
    ]);
    let (code, out) = run(&later.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REFUSED (proof_expired)") && out.contains("VERIFIES"), "{out}");

    let (code, out) = run(&["sign", "--key", discovery.to_str().unwrap(), "--url", url]);
    assert_eq!(code, 1);
    assert!(out.contains("--key"), "{out}");
}

/// Stdout and stderr apart, and the exit code.
fn run_split(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout.into_owned(), stderr.into_owned())
}

#[test]
fn bad_input_to_the_diagnostics_is_an_error_that_says_which_input() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-key.txt");
    std::fs::write(&not_pem, "hello world, not a key\n").unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, Signer::generate(2048).to_pkcs8_pem()).unwrap();
    let key = key_file.to_str().unwrap();

    // sign: a URL that is no URL, a key file that is no PEM.
    for url in ["not a url", "/wopi/files/1", "ftp://host/x", "https://"] {
        let (code, stdout, stderr) = run_split(&["sign", "--key", key, "--url", url]);
        assert_eq!(code, 1, "{url}: {stdout}{stderr}");
        assert!(stdout.is_empty() && stderr.starts_with("wopi-guard: --url: "), "{url}: {stderr}");
    }
    let (code, _, stderr) = run_split(&["sign", "--key", not_pem.to_str().unwrap(), "--url", "https://h/wopi/files/1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("--key: {}: no PEM private key found", not_pem.display())), "{stderr}");

    // discovery FILE: the error on stderr, prefixed, one whole line.
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, "<wopi-discovery><net-zone <<").unwrap();
    let (code, stdout, stderr) = run_split(&["discovery", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.starts_with(&format!("wopi-guard: {}: ", broken.display())) && stderr.ends_with('\n'), "{stderr:?}");

    // explain: a first line that is neither an absolute URL nor a path.
    for first in ["garbage", "GET garbage", "get /wopi/files/1", "GET ftp://h/x", "GET /wopi/files/1 junk"] {
        let capture = dir.path().join("capture.txt");
        std::fs::write(&capture, format!("{first}\nX-WOPI-TimeStamp: 1\n")).unwrap();
        let (code, stdout, stderr) = run_split(&[
            "explain",
            "--request",
            capture.to_str().unwrap(),
            "--discovery",
            &fixture("office_online_df_discovery_2016.xml"),
            "--public-url",
            "http://127.0.0.1:18080",
        ]);
        assert_eq!(code, 1, "{first}: {stdout}{stderr}");
        assert!(stderr.contains("cannot read the first line"), "{first}: {stderr}");
        assert!(!stdout.contains("18080garbage"), "{stdout}");
    }
}

#[test]
fn explain_judges_keys_as_the_proxy_does_and_holds_a_published_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = fixture("onlyoffice_published_keys/onlyoffice_default_2021-04-21_2048_1.pem");
    let url = "https://wopi.example.com/wopi/files/42?access_token=tok";
    let (code, signed) = run(&["sign", "--key", &key, "--url", url]);
    assert_eq!(code, 0, "{signed}");
    let headers: String = signed.lines().take_while(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect();
    let capture = dir.path().join("request.txt");
    std::fs::write(&capture, format!("GET {url}\n{headers}")).unwrap();
    // The ONLYOFFICE discovery fixture publishes exactly this key.
    let discovery = fixture("onlyoffice_discovery_from_ocis_test.xml");
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--request", capture.to_str().unwrap(), "--discovery", &discovery];
        args.extend_from_slice(extra);
        run_split(&args)
    };
    let (code, stdout, stderr) = explain(&[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(!stdout.contains("VERIFIED"), "{stdout}");
    assert!(stderr.contains("is held") && stderr.contains("2021-04-21"), "{stderr}");

    let config = dir.path().join("wopi-guard.toml");
    std::fs::write(
        &config,
        "upstream = \"http://127.0.0.1:8081\"\npublic_url = \"https://wopi.example.com\"\n[discovery]\nurls = [\"https://office.example/hosting/discovery\"]\n[keys]\nallow_published = true\n",
    )
    .unwrap();
    let (code, stdout, stderr) = explain(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("VERIFIED"), "{stdout}");
}
