//! The binary: `check` on good and bad files, the proxy refusing a bad file, and the demo.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wopi-guard"))
}

#[test]
fn check_accepts_the_reference_config() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/wopi-guard.toml");
    let out = bin().args(["check", "--config", file]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("OK"));
}

#[test]
fn check_prints_each_route_of_the_several_hosts_example() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/several-hosts.toml");
    let out = bin().args(["check", "--config", file]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for line in [
        "routes[0].host = cloud.example.com",
        "routes[0].upstream = http://10.0.0.5:80",
        "routes[0].upstream = http://10.0.0.6:80",
        "routes[0].health = GET /status.php every 5s",
        "routes[1].host = files.example.com",
        "routes[1].public_url = https://files.example.com",
        "routes[1].discovery.urls = [\"https://onlyoffice.example.com/hosting/discovery\"]",
    ] {
        assert!(stdout.contains(line), "{line} missing:\n{stdout}");
    }
    // A route's problem is named by its route; the proxy refuses the file with the same words.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text =
        std::fs::read_to_string(file).unwrap().replace("upstream = \"http://10.0.1.5:8000\"", "upstream = \"ftp://x\"");
    std::fs::write(&bad, text).unwrap();
    let out = bin().args(["check", "--config"]).arg(&bad).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("error: routes[1].upstream:"), "{stdout}");
}

#[test]
fn check_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listen = \"x\"\ntypo = 1\n[proof]\nmax_age = \"forever\"\n").unwrap();
    let out = bin().args(["check", "--config"]).arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for key in [
        "error: listen:",
        "error: typo:",
        "error: proof.max_age:",
        "error: upstream:",
        "error: public_url:",
        "error: discovery.urls:",
    ] {
        assert!(stdout.contains(key), "{key} missing:\n{stdout}");
    }
    // Running the proxy on it refuses too, with the same messages.
    let out = bin().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("proof.max_age"));
    let out = bin().args(["check", "--config", "/nonexistent.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_never_shows_a_secret_of_a_broken_or_mistyped_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.toml");
    let head = "upstream = \"http://127.0.0.1:1\"\npublic_url = \"https://h\"\n[discovery]\nurls = [\"https://o/hosting/discovery\"]\n[shared]\n";
    for (body, secret, key) in [
        ("redis = \"redis://:TopSecretPw@127.0.0.1:6379\n", "TopSecretPw", "shared.redis"),
        ("redis = \"redis://127.0.0.1:6379\"\nhash_key = 98765432109876543\n", "98765432109876543", "shared.hash_key"),
        ("redis = \"redis://127.0.0.1:6379\"\nhash_key = \"0123456789abcdefSECRET\" x\n", "SECRET", "shared.hash_key"),
    ] {
        std::fs::write(&file, format!("{head}{body}")).unwrap();
        let out = bin().args(["check", "--config"]).arg(&file).output().unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(!all.contains(secret), "the secret was shown:\n{all}");
        assert!(all.contains(key), "the key is named:\n{all}");
    }
}

#[test]
fn check_needs_no_file_when_the_environment_and_flags_give_every_key() {
    let out = bin()
        .args(["check", "--upstream", "http://127.0.0.1:8081", "--public-url", "https://wopi.example.com"])
        .env("WOPI_GUARD_DISCOVERY__URLS", "[\"http://127.0.0.1:9980/hosting/discovery\"]")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("from --upstream: upstream = "), "{stdout}");
    assert!(stdout.contains("the configuration: OK"), "{stdout}");
}

#[test]
fn check_tries_what_a_start_would_and_refuses_what_a_start_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let file = dir.path().join("wopi-guard.toml");
    std::fs::write(
        &file,
        format!(
            "upstream = \"http://wopi-host.invalid:8081\"\npublic_url = \"https://wopi.example.com\"\n\
             [discovery]\nurls = [\"http://127.0.0.1:9980/hosting/discovery\"]\n\
             [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let out = bin().args(["check", "--config"]).arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("a start would fail: 2 problem(s)"), "{stdout}");
    assert!(stdout.contains("error: upstream: cannot resolve wopi-host.invalid:8081"), "{stdout}");
    assert!(stdout.contains("holds no certificate"), "{stdout}");
    // A start refuses the same file for the same reason.
    let out = bin().arg("--config").arg(&file).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot resolve wopi-host.invalid") || stderr.contains("holds no certificate"), "{stderr}");

    // An upstream that is wopi-guard's own listener: refused by check.
    let looped = dir.path().join("loop.toml");
    std::fs::write(
        &looped,
        "listen = \"0.0.0.0:8080\"\nupstream = \"http://localhost:8080\"\npublic_url = \"https://w.example\"\n\
         [discovery]\nurls = [\"http://127.0.0.1:9980/hosting/discovery\"]\n",
    )
    .unwrap();
    let out = bin().args(["check", "--config"]).arg(&looped).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("error: upstream: localhost:8080 is wopi-guard's own `listen`"), "{stdout}");
}

#[test]
fn demo_runs_every_scenario_as_expected() {
    let (listen, admin) = (wopi_guard::testkit::free_port(), wopi_guard::testkit::free_port());
    let out = bin()
        .args(["demo", "--once", "--listen", &listen.to_string(), "--admin-listen", &admin.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for row in ["genuine CheckFileInfo", "tampered URL", "tampered token", "stale timestamp", "unknown key", "rotated"]
    {
        assert!(stdout.contains(row), "{row} missing:\n{stdout}");
    }
    assert!(!stdout.contains("!!"), "a scenario went unexpectedly:\n{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO"), "the demo logs in text: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no colour codes when stderr is not a terminal:\n{stderr}");
}

/// `--version` names the commit when built from a git checkout (CI builds a clone).
#[test]
fn version_names_the_commit_in_a_checkout() {
    let out = bin().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.starts_with(&format!("wopi-guard {}", env!("CARGO_PKG_VERSION"))), "{text}");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(head) = head {
        assert!(text.contains(&format!("(commit {head})")), "{text} should name {head}");
    }
}
