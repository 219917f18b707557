//! What the host acts on is what the gate judged (docs/security.md, "What the host acts on is
//! what was judged"): `access_header` only where a proof was judged and only for listed names,
//! `POST …/files/{id}` classified as the host dispatches it, a `Connection` header that cannot
//! remove what the gate read, a retry that is the same request, and no lookalike credential name
//! in a log line.

use crate::common::*;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An `access_header` that asks for every header a host routes or identifies on, a cookie the
/// default list does not name, and the credential it does.
const HOSTILE: &str = "X-Original-URL%3A%20%2Fwopi%2Ffiles%2F42%2Fcontents%0D%0AX-HTTP-Method-Override%3A%20PUT%0D%0AX-Real-IP%3A%2010.20.30.40%0D%0AVia%3A%201.1%20spoofed%0D%0ACookie%3A%20oc_session%3DSTOLEN%0D%0AAuthorization%3A%20Basic%20dXNlcjpwYXNz";

fn logs() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

/// Waits (up to 5 s) until `count` log lines hold every one of `parts` (access lines are written
/// once the answer is sent, so a little after the client read it).
async fn wait_lines(parts: &[&str], count: usize) -> String {
    for _ in 0..200 {
        let log = logs();
        if log.lines().filter(|l| parts.iter().all(|p| l.contains(p))).count() >= count {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no {count} lines with {parts:?}:\n{}", logs());
}

/// The host's copy of the last request: none of the headers HOSTILE asks for but those listed.
fn assert_nothing_made(h: &Harness, target: &str, listed: &[&str]) {
    let seen = h.host.last().expect("forwarded");
    for name in ["x-original-url", "x-http-method-override", "x-real-ip", "cookie", "authorization"] {
        if !listed.contains(&name) {
            assert_eq!(seen.header(name), None, "{target}: {name} made from access_header");
        }
    }
    let via = seen.header("via").expect("our Via");
    assert!(via.starts_with("1.1 wopi-guard-") && !via.contains("spoofed"), "{target}: Via {via}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_header_makes_headers_only_where_a_proof_was_judged_and_only_listed_ones() {
    captured_logs();
    // The client (127.0.0.1) is in no allow-list: only the exempt and unprotected paths admit it.
    let proof = "allow_unsigned_from = [\"10.0.0.0/8\"]\nexempt_paths = [\"/wopi/settings\"]";
    let h = Harness::start_with(Options { proof, ..Options::default() }).await;
    for path in ["/status.php", "/wopi/settings", "/x/wopi/settings/wopi/files/42"] {
        let target = format!("{path}?access_header={HOSTILE}&a=1");
        let (status, body) = h.send("GET", &target, None, None).await;
        assert_eq!(status, 200, "{target}: {body}");
        assert_nothing_made(&h, &target, &[]);
        assert_eq!(h.host.last().unwrap().target, target, "forwarded untouched, the parameter included");
    }
    let before = h.forwarded();
    let target = format!("/wopi/files/42?access_header={HOSTILE}");
    assert_eq!(h.send("GET", &target, None, None).await.0, 500, "unsigned from outside allow_unsigned_from");
    assert_eq!(h.forwarded(), before, "nothing forwarded");
    drop(h);

    // Admitted on a protected path: only Authorization (the default list); the rest dropped by name.
    let h =
        Harness::start_with(Options { proof: "allow_unsigned_from = [\"127.0.0.1/32\"]", ..Options::default() }).await;
    let r = h.client.get(h.local(&target)).header("X-Real-IP", "10.9.9.9").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_nothing_made(&h, &target, &["authorization"]);
    let seen = h.host.last().unwrap();
    assert_eq!(seen.header("authorization"), Some("Basic dXNlcjpwYXNz"));
    assert_eq!(seen.target, "/wopi/files/42", "the credential left the URL");
    assert_eq!(seen.header("x-real-ip"), None, "a client's X-Real-IP from an untrusted peer is removed");
    let log = logs();
    let dropped: Vec<&str> = log.lines().filter(|l| l.contains("access_header line dropped")).collect();
    for name in ["x-original-url", "x-http-method-override", "x-real-ip", "via", "cookie"] {
        assert!(dropped.iter().any(|l| l.contains(&format!(r#""header":"{name}""#))), "{name} not named:\n{log}");
    }
    assert!(!log.contains("STOLEN") && !log.contains("dXNlcjpwYXNz"), "a value reached the log");
    drop(h);

    // Listed: Cookie too, never the forbidden ones.
    let extra = "[forward]\naccess_header_names = [\"Authorization\", \"cookie\"]".to_string();
    let h =
        Harness::start_with(Options { proof: "allow_unsigned_from = [\"127.0.0.1/32\"]", extra, ..Options::default() })
            .await;
    assert_eq!(h.send("GET", &target, None, None).await.0, 200);
    assert_nothing_made(&h, &target, &["authorization", "cookie"]);
    assert_eq!(h.host.last().unwrap().header("cookie"), Some("oc_session=STOLEN"));
}

#[test]
fn check_refuses_every_name_access_header_may_never_set() {
    let names = [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        "X-Original-URI",
        "X-Original-Method",
        "X-Real-IP",
        "True-Client-IP",
        "X-Client-IP",
        "CF-Connecting-IP",
        "Via",
        "Host",
        "Forwarded",
        "X-Forwarded-For",
        "X-Forwarded-Whatever",
        "X-WOPI-Override",
        "X-WOPI-Guard-Verified",
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Content-Length",
        "TE",
        "Upgrade",
        "Proxy-Authorization",
    ];
    let list = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "upstream = \"http://127.0.0.1:1\"\npublic_url = \"https://h\"\n[discovery]\nurls = [\"https://o/hosting/discovery\"]\n[forward]\naccess_header_names = [\"Authorization\", {list}]"
    );
    let e = wopi_guard::config::Config::from_toml(&text).unwrap_err();
    for (i, name) in names.iter().enumerate() {
        let key = format!("forward.access_header_names[{}]", i + 1);
        let found = e.0.iter().find(|x| x.key == key).unwrap_or_else(|| panic!("{name} accepted:\n{e}"));
        assert!(found.message.contains(name) && found.message.contains("never"), "{found:?}");
    }
    assert_eq!(e.0.len(), names.len(), "Authorization is accepted:\n{e}");
}

/// POSTs `target` signed, with `headers`, over a raw connection: the status.
async fn raw_post(h: &Harness, target: &str, headers: &[(&str, &str)]) -> u16 {
    let proof = h.sign(target);
    let mut all: Vec<(&str, &str)> = vec![
        ("X-WOPI-Proof", &proof.proof),
        ("X-WOPI-ProofOld", &proof.proof_old),
        ("X-WOPI-TimeStamp", &proof.timestamp),
    ];
    all.extend_from_slice(headers);
    all.push(("Content-Length", "4"));
    let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    stream.write_all(raw_head("POST", target, &all).as_bytes()).await.unwrap();
    stream.write_all(b"body").await.unwrap();
    read_answer(&mut stream).await.expect("an answer").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_post_is_judged_as_the_host_dispatches_it() {
    captured_logs();
    let extra = "[operations]\ndeny = [\"PutRelativeFile\"]".to_string();
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    let file = "/wopi/files/42?access_token=tok-post";
    // What Nextcloud would run as PutRelativeFile, past `deny`: refused, nothing forwarded.
    let refused: [(&[(&str, &str)], u16); 10] = [
        (&[], 400),
        (&[("X-WOPI-Override", "explode")], 400),
        (&[("X-WOPI-Override", "PUT")], 400),
        (&[("X-WOPI-Override", "lock")], 400),
        (&[("X-WOPI-Override", "LOCK"), ("Connection", "close, X-WOPI-Override")], 400),
        (&[("X-WOPI-Override", "LOCK"), ("X-WOPI-OldLock", "a"), ("Connection", "X-WOPI-OldLock")], 400),
        // Canonical but unknown: PutRelativeFile's rules, so denied with it.
        (&[("X-WOPI-Override", "EXPLODE")], 403),
        (&[("X-WOPI-Override", "PUT_RELATIVE")], 403),
        // PHP reads X_WOPI_Override as X-WOPI-Override (HTTP_X_WOPI_OVERRIDE), the gate never.
        (&[("X-WOPI-Override", "LOCK"), ("X_WOPI_Override", "DELETE")], 400),
        (&[("X-WOPI-Override", "LOCK"), ("X_Forwarded_For", "10.0.0.1")], 400),
    ];
    for (headers, status) in refused {
        assert_eq!(raw_post(&h, file, headers).await, status, "{headers:?}");
    }
    assert_eq!(h.forwarded(), 0, "nothing forwarded");
    h.metric_shows(r#"operation="OtherOverride",verdict="operation_denied"} 1"#).await;
    h.metric_shows(r#"operation="Unknown",verdict="override_invalid"} 4"#).await;
    h.metric_shows(r#"operation="Lock",verdict="connection_header"} 1"#).await;
    h.metric_shows(r#"operation="UnlockAndRelock",verdict="connection_header"} 1"#).await;
    h.metric_shows(r#"operation="Lock",verdict="header_underscore"} 2"#).await;
    drop(h);
    // PutRelativeFile allowed with a body limit: an unnamed override takes that limit, a named
    // custom one its own.
    let extra = "[operations.max_body]\nPutRelativeFile = \"2\"\nCOBALT = \"1KiB\"".to_string();
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    assert_eq!(raw_post(&h, file, &[("X-WOPI-Override", "EXPLODE")]).await, 413, "PutRelativeFile's max_body");
    // Canonical names pass and are classified as before; a named custom one has its own rules.
    for (over, op) in [("LOCK", "Lock"), ("UNLOCK", "Unlock"), ("RENAME_FILE", "RenameFile"), ("COBALT", "COBALT")] {
        assert_eq!(raw_post(&h, file, &[("X-WOPI-Override", over)]).await, 200, "{over}");
        let token = wopi_guard::redact::token_hash(b"tok-post");
        wait_lines(&[&token, r#""verdict":"verified""#, &format!(r#""operation":"{op}""#)], 1).await;
    }
    assert_eq!(h.forwarded(), 4);
    let lock = h.host.last().unwrap();
    assert_eq!(lock.header("x-wopi-override"), Some("COBALT"), "the override the gate judged reached the host");
    h.metric_shows(r#"operation="OtherOverride",verdict="forwarded"} 1"#).await;
}

/// A stand-in WOPI host that answers the first request of each connection and closes a reused
/// connection without answering: every request head it read, in order.
async fn dropping_host() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                for answered in 0.. {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    if answered > 0 {
                        return; // a reused connection: closed, no answer
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                }
            });
        }
    });
    (url, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_over_a_dropped_keep_alive_connection_is_the_same_request() {
    for members in [1, 2] {
        let mut pool = Vec::new();
        let mut recorders = Vec::new();
        for _ in 0..members {
            let (url, heads) = dropping_host().await;
            pool.push(url);
            recorders.push(heads);
        }
        let (upstream, pool) = if members == 1 { (Some(pool[0].clone()), Vec::new()) } else { (None, pool) };
        let options = Options {
            upstream,
            pool,
            proof: "allow_unsigned_from = [\"127.0.0.1/32\"]",
            extra: "[health]\ninterval = \"1h\"".into(),
            ..Options::default()
        };
        let h = Harness::start_with(options).await;
        let mut statuses = Vec::new();
        for i in 0..(members + 1) {
            let target = format!("/wopi/files/{i}?access_header=Authorization%3A%20Basic%20eHk%3D&n={i}");
            let r = h.client.get(h.local(&target)).header("X-Forwarded-For", "10.1.1.1").send().await.unwrap();
            statuses.push(r.status().as_u16());
        }
        assert!(statuses.iter().all(|s| *s == 200), "{members} member(s): {statuses:?}");
        let heads: Vec<String> = recorders.iter().flat_map(|r| r.lock().unwrap().clone()).collect();
        // The request that met a reused connection was sent twice: both times the same.
        let retried = format!("/wopi/files/{members}");
        let attempts: Vec<&String> = heads.iter().filter(|h| h.contains(&format!("GET {retried}?"))).collect();
        assert!(attempts.len() >= 2, "{members} member(s): no retry seen: {heads:#?}");
        for attempt in &attempts {
            assert_eq!(*attempt, attempts[0], "{members} member(s): a retry differs");
            assert!(!attempt.contains("access_header"), "{attempt}");
            let lower = attempt.to_ascii_lowercase();
            for header in ["authorization: basic ehk=", "x-forwarded-for: 127.0.0.1", "via: 1.1 wopi-guard-"] {
                assert!(lower.contains(header), "{members} member(s): {header} missing from {attempt}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookalike_credential_name_never_reaches_a_log_line() {
    captured_logs();
    let h =
        Harness::start_with(Options { proof: "allow_unsigned_from = [\"127.0.0.1/32\"]", ..Options::default() }).await;
    let names = ["ACCESS_TOKEN", "access.token", "access%5Ftoken", "access_token[]", "Access_Header"];
    for (i, name) in names.iter().enumerate() {
        let target = format!("/wopi/files/{i}?{name}=LOOKALIKE-SECRET-{i}&x=1");
        let (status, _) = h.send("GET", &target, None, None).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(h.host.last().unwrap().target.contains("LOOKALIKE"), !name.eq_ignore_ascii_case("access_header"));
    }
    // The access lines are written (one per request, each with its x=1), the secrets never.
    let log = wait_lines(&[r#""verdict":"unsigned_allowed""#, "x=1"], names.len()).await;
    assert!(!log.contains("LOOKALIKE-SECRET"), "a lookalike name's value was logged:\n{log}");
}
