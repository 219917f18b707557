//! /metrics after traffic: requests by operation and verdict, timings, discovery, keys.

use crate::common::*;

const FILE: &str = "/wopi/files/doc1?access_token=tok";

/// /metrics once it holds every line of `want`: a request is counted in Pingora's logging phase,
/// which runs just after the response has gone out, so the client may ask a moment too early.
async fn metrics_with(h: &Harness, want: &[&str]) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = h.admin_text("/metrics").await;
        if want.iter().all(|line| text.contains(line)) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let missing: Vec<_> = want.iter().filter(|l| !text.contains(*l)).collect();
    panic!("{missing:?} missing from:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let h =
        Harness::start_with(Options { extra: "[operations]\ndeny = [\"DeleteFile\"]".into(), ..Options::default() })
            .await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(h.signed_get(FILE).await.0, 200);
    let contents = "/wopi/files/doc1/contents?access_token=tok";
    assert_eq!(h.send("POST", contents, Some(&h.sign(contents)), Some(b"x".to_vec())).await.0, 200);
    assert_eq!(h.send("GET", FILE, None, None).await.0, 500);
    let stale = h.office.sign(&h.public(FILE), ticks(-3600));
    assert_eq!(h.send("GET", FILE, Some(&stale), None).await.0, 500);
    let mut request = h.client.post(h.local(FILE)).header("X-WOPI-Override", "DELETE");
    for (n, v) in h.sign(FILE).headers() {
        request = request.header(n, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 403);

    let text = metrics_with(
        &h,
        &[
            r#"wopi_guard_requests_total{operation="CheckFileInfo",verdict="forwarded"} 2"#,
            r#"wopi_guard_requests_total{operation="PutFile",verdict="forwarded"} 1"#,
            r#"wopi_guard_requests_total{operation="CheckFileInfo",verdict="proof_missing"} 1"#,
            r#"wopi_guard_requests_total{operation="CheckFileInfo",verdict="proof_expired"} 1"#,
            r#"wopi_guard_requests_total{operation="DeleteFile",verdict="operation_denied"} 1"#,
            // Every proof check is timed, including the ones refused before any RSA work.
            "wopi_guard_verification_seconds_count 5",
            "wopi_guard_upstream_seconds_count 3",
            &format!(
                r#"wopi_guard_discovery_fetches_total{{source="{}",outcome="updated"}} 1"#,
                h.office.discovery_url()
            ),
            &format!(r#"wopi_guard_proof_key_age_seconds{{source="{}"}}"#, h.office.discovery_url()),
        ],
    )
    .await;
    assert!(text.contains(r#"key="current",fingerprint="sha256:"#), "{text}");
    assert!(!text.contains("tok"), "no token in metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_counts_what_it_would_refuse() {
    let h = Harness::start_with(Options { proof: r#"mode = "monitor""#, ..Options::default() }).await;
    assert_eq!(h.send("GET", FILE, None, None).await.0, 200);
    metrics_with(
        &h,
        &[
            r#"wopi_guard_monitor_would_refuse_total{reason="proof_missing"} 1"#,
            r#"wopi_guard_requests_total{operation="CheckFileInfo",verdict="forwarded"} 1"#,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_counted() {
    let dead = free_port();
    let h = Harness::start_with(Options { upstream: Some(format!("http://{dead}")), ..Options::default() }).await;
    assert_eq!(h.signed_get(FILE).await.0, 502);
    let text = h.admin_text("/metrics").await;
    assert!(
        text.contains(r#"wopi_guard_requests_total{operation="CheckFileInfo",verdict="upstream_error"} 1"#),
        "{text}"
    );
}

/// Checks a text exposition by the format's rules: every family declared once with `# HELP` and
/// `# TYPE` before its samples, its samples contiguous, every sample named after the family in
/// force (histograms: `_bucket`, `_sum`, `_count`), labels well-formed, values numbers.
fn check_exposition(text: &str) -> Result<usize, String> {
    let mut declared = std::collections::HashSet::new();
    let (mut family, mut kind, mut help_for) = (String::new(), String::new(), String::new());
    let mut samples = 0;
    for (n, line) in text.lines().enumerate() {
        let at = |what: String| format!("line {}: {what}: {line}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default().to_string();
            if !declared.insert(name.clone()) {
                return Err(at(format!("family {name} declared twice")));
            }
            help_for = name;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default();
            if name != help_for {
                return Err(at(format!("TYPE of {name} does not follow its HELP")));
            }
            family = name.to_string();
            kind = parts.next().unwrap_or_default().to_string();
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.as_str()) {
                return Err(at(format!("unknown type {kind}")));
            }
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("stray comment or blank line".into()));
        } else {
            let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
            let name = &line[..name_end];
            let ok = match kind.as_str() {
                "histogram" => [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")]
                    .contains(&name.to_string()),
                _ => name == family,
            };
            if family.is_empty() || !ok {
                return Err(at(format!("sample {name} outside its family (in force: {family})")));
            }
            let rest = &line[name_end..];
            let value = if let Some(labels) = rest.strip_prefix('{') {
                let close = labels.rfind('}').ok_or_else(|| at("unclosed labels".into()))?;
                for pair in labels[..close].split("\",").filter(|p| !p.is_empty()) {
                    let (key, _) = pair.split_once("=\"").ok_or_else(|| at(format!("bad label {pair}")))?;
                    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(at(format!("bad label name {key}")));
                    }
                }
                labels[close + 1..].trim()
            } else {
                rest.trim()
            };
            if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
                return Err(at(format!("value {value} is not a number")));
            }
            samples += 1;
        }
    }
    Ok(samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_follows_the_format_rules() {
    let h = Harness::start().await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
    assert_eq!(h.send("GET", FILE, None, None).await.0, 500);
    let text = metrics_with(&h, &["wopi_guard_proof_key{", "verdict=\"proof_missing\"} 1"]).await;
    let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(samples > 20, "{samples} samples");
    // The checker itself refuses the shape this once had: samples after another family's TYPE.
    let broken = "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na 1\nb 2\n";
    assert!(check_exposition(broken).is_err());
}
