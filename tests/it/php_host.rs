//! A real PHP host (`php -S`, Debian's php-cli, with `tests/fixtures/php/router.php`, which
//! answers what PHP parsed) behind wopi-guard: a differential test over generated targets and the
//! fuzz corpora. For every request wopi-guard forwards as verified, PHP's `access_token` is the
//! parameter the gate verified (`urldecode` of its raw value), PHP's request URI is the target
//! that was signed, byte for byte, and PHP's `X-WOPI-Override` is the one the gate classified.
//! Every disagreement fails the test. `make test` runs a short set; `WOPI_GUARD_DIFFERENTIAL=full`
//! (`make differential`, in CI after the tests) runs all of it.

use crate::common::*;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

struct Php {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for Php {
    fn drop(&mut self) {
        crate::common::child::stop_group(&mut self.child, Some(Duration::from_secs(2)));
    }
}

async fn start_php() -> Php {
    assert!(
        std::path::Path::new("/usr/bin/php").exists(),
        "php is not installed: `make test-deps` installs it (apt-get install php-cli)"
    );
    let addr = free_port();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/php");
    let child = Command::new("/usr/bin/php")
        .process_group(0)
        .args(["-S", &addr.to_string(), "-t", dir, &format!("{dir}/router.php")])
        .env("PHP_CLI_SERVER_WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("php -S starts");
    let php = Php { child, addr }; // stopped and reaped on drop, a failed start included
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return php;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("php -S did not listen on {addr}");
}

/// PHP's `urldecode`: `+` is a space, `%XX` a byte (a bad escape stays as written).
fn php_urldecode(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&spaced).collect()
}

/// The raw `access_token` value the gate reads (it refuses a query with two of them).
fn gate_token(target: &str) -> Option<Vec<u8>> {
    match wopi_guard::proof::Token::from_target(target.as_bytes()) {
        wopi_guard::proof::Token::Present { raw, .. } => Some(raw.to_vec()),
        _ => None,
    }
}

/// Generated targets: paths with encoded slashes, `;` parameters, dot segments and case, times
/// queries with duplicate and lookalike names, `[]` and `.` in names, `+` and `%20`, `%00`,
/// overlong UTF-8, and the fuzz corpora's targets.
fn targets(full: bool) -> Vec<String> {
    let paths = [
        "/wopi/files/42",
        "/wopi/files/a%2Fb",
        "/wopi/files/42;v=1",
        "/wopi/x/../files/42",
        "/WOPI/Files/42",
        "/wopi/files/%34%32",
        "/wopi//files/42",
        "/index.php/apps/richdocuments/wopi/files/7_oc1",
    ];
    let tokens = ["abc", "a%2Bb", "a+b", "a%20b", "a%00b", "%C0%AF", "a%26b%3Dc", "", "%zz", "a.b[]"];
    let extras = [
        "",
        "&access.token=Z",
        "&access_token[]=Z",
        "&ACCESS_TOKEN=Z",
        "&access%5Ftoken=Z",
        "&access+token=Z",
        "&access_token=Z",
        "&permission=edit&access_token_ttl=5",
        "&access_header=Authorization%3A%20Basic%20eA%3D%3D",
        "#frag",
        "&a[b=1&access[token=Z",
    ];
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        for (j, token) in tokens.iter().enumerate() {
            for (k, extra) in extras.iter().enumerate() {
                if full || (i + j + k) % 7 == 0 {
                    out.push(format!("{path}?access_token={token}{extra}"));
                }
            }
        }
    }
    // Random compositions of the same pieces (a fixed seed: a failure is reproducible).
    let pieces = [
        "access_token=",
        "access_token[]=",
        "access.token=",
        "ACCESS_TOKEN=",
        "access%5Ftoken=",
        "access_header=",
        "Access_Header=",
        "a",
        "%2B",
        "+",
        "%20",
        "%00",
        "%C0%AF",
        "%2F",
        ";",
        "&",
        "=",
        "[",
        "]",
        ".",
        "%zz",
        "x",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for _ in 0..if full { 4000 } else { 150 } {
        let mut query = String::from("access_token=");
        for _ in 0..next(8) + 1 {
            query.push_str(pieces[next(pieces.len())]);
        }
        out.push(format!("{}?{query}", paths[next(paths.len())]));
    }
    let corpora = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus");
    for dir in ["access_header", "operation", "proof_headers"] {
        for entry in std::fs::read_dir(format!("{corpora}/{dir}")).into_iter().flatten().flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else { continue };
            let start = bytes.iter().position(|&b| b == b'/').unwrap_or(bytes.len());
            let text: String = bytes[start..].iter().take_while(|b| b.is_ascii_graphic()).map(|&b| b as char).collect();
            if !text.is_empty() {
                out.push(if text.starts_with("/wopi/") { text } else { format!("/wopi/files/1{text}") });
            }
        }
    }
    out
}

/// Sends `head` on a new connection and reads the answer to the connection's end: the status and
/// the body (de-chunked).
async fn exchange(addr: std::net::SocketAddr, head: &str) -> (u16, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut all))
        .await
        .expect("an answer within 10 s")
        .expect("the answer is read");
    let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") else { return (0, Vec::new()) };
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = all[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let (mut out, mut rest) = (Vec::new(), &body[..]);
        while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap_or("0").trim(), 16).unwrap_or(0);
            if size == 0 || rest.len() < line_end + 2 + size {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[(line_end + 4 + size).min(rest.len())..];
        }
        body = out;
    }
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_php_acts_on_is_what_wopi_guard_verified() {
    let full = std::env::var("WOPI_GUARD_DIFFERENTIAL").is_ok_and(|v| v == "full");
    let php = start_php().await;
    let proof = "paths = [\"/wopi/\", \"/index.php/apps/richdocuments/wopi/\"]";
    let h =
        Harness::start_with(Options { proof, upstream: Some(format!("http://{}", php.addr)), ..Options::default() })
            .await;
    let overrides = [None, Some("LOCK"), Some("lock"), Some("PUT_RELATIVE"), Some("COBALT")];
    let (mut verified, mut refused) = (0, 0);
    let mut statuses = std::collections::BTreeMap::new();
    for (n, target) in targets(full).iter().enumerate() {
        let over = overrides[n % overrides.len()];
        let method = if over.is_some() { "POST" } else { "GET" };
        let proof = h.office.sign(&h.public(target), ticks(0));
        let mut headers = vec![("X-WOPI-Proof", proof.proof.as_str()), ("X-WOPI-ProofOld", proof.proof_old.as_str())];
        headers.push(("X-WOPI-TimeStamp", proof.timestamp.as_str()));
        headers.push(("Content-Length", "0"));
        headers.push(("Connection", "close"));
        if let Some(over) = over {
            headers.push(("X-WOPI-Override", over));
        }
        let (status, body) = exchange(h.listen, &raw_head(method, target, &headers)).await;
        let Ok(seen) = serde_json::from_slice::<serde_json::Value>(&body) else {
            // Refused by wopi-guard (or by PHP's server before the router): nothing to compare.
            assert_ne!(status, 200, "{target}: a 200 that is not PHP's answer");
            refused += 1;
            *statuses.entry(status).or_insert(0) += 1;
            continue;
        };
        assert_eq!(status, 200, "{target}: {seen}");
        verified += 1;
        // The path PHP routes on is the one that was signed, byte for byte (less access_header,
        // which never reaches the host's URL).
        let query = wopi_guard::proof::Query::parse(target.as_bytes());
        let sent = wopi_guard::policy::strip_access_header(target.as_bytes(), &query)
            .map_or_else(|| target.clone(), |t| String::from_utf8(t).unwrap());
        assert_eq!(seen["request_uri"].as_str(), Some(sent.as_str()), "{target}");
        assert!(seen["access_header"].is_null(), "{target}: PHP read an access_header: {seen}");
        // PHP's access_token is the parameter the gate verified, never another one.
        // (None: the gate saw no token and signed the empty one; PHP must see none either.)
        let php_token = seen["access_token_hex"].as_str().map(|s| hex::decode(s).unwrap());
        let expected = gate_token(target).map(|raw| php_urldecode(&raw));
        assert_eq!(php_token, expected, "{target}: PHP read another access_token: {seen}");
        assert!(expected.is_some() || seen["access_token"].is_null(), "{target}: {seen}");
        // PHP's override is the one the gate classified.
        assert_eq!(seen["override"].as_str(), over, "{target}");
        if method == "POST" {
            let classified = wopi_guard::operation::classify(method, target.as_bytes(), over.map(str::as_bytes), false);
            assert!(!classified.override_invalid, "{target}: {over:?} reached PHP");
        }
    }
    assert!(verified > 10 && refused > 10, "both kinds seen: {verified} verified, {refused} refused");
    eprintln!("php differential: {verified} forwarded as verified and equal in PHP, {refused} refused {statuses:?}");
}
