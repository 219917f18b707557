//! `[[routes]]`: two WOPI hosts behind one wopi-guard, each with its own office server's keys,
//! upstream and policy; a request is routed by its Host, an unknown Host gets 421 and reaches
//! nobody, a key of the other route is refused, metrics and access lines name the route, and a
//! reload adds a route.

use crate::common::*;
use std::sync::Arc;
use std::time::Duration;

const FILE: &str = "/wopi/files/doc1?access_token=tok-123";
const CONTENTS: &str = "/wopi/files/doc1/contents?access_token=tok-123";

fn fingerprint(office: &FakeOffice) -> String {
    let key = office.current();
    wopi_guard::keys::ProofKey::from_components(key.modulus(), key.exponent()).unwrap().fingerprint().to_owned()
}

fn log_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

/// Route A takes the harness's office server and host from the top level; route B names its own.
fn route_b(office: &FakeOffice, host: &FakeHost) -> String {
    format!(
        r#"
[[routes]]
host = "cloud-b.test"
public_url = "https://cloud-b.test"
upstream = "{}"
[routes.discovery]
urls = ["{}"]
[routes.operations]
deny = ["PutFile"]
"#,
        host.url(),
        office.discovery_url()
    )
}

const ROUTE_A: &str = "\n[[routes]]\nhost = \"Cloud-A.test\"\npublic_url = \"https://cloud-a.test\"\n";

/// Sends `method target` to the proxy with `Host: host`, signed by `office` for
/// `https://{signed_host}{target}` (or unsigned).
async fn send(
    h: &Harness,
    host: &str,
    method: &str,
    target: &str,
    signer: Option<(&FakeOffice, &str)>,
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let proof = signer.map(|(office, signed_host)| office.sign(&format!("https://{signed_host}{target}"), ticks(0)));
    h.send_to(Some(host), method, target, proof.as_ref(), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routes_keep_their_keys_upstreams_and_policy_apart_and_an_unknown_host_gets_421() {
    captured_logs();
    let office_b = Arc::new(FakeOffice::start(2048).await);
    let host_b = FakeHost::start().await;
    let extra = format!("{ROUTE_A}{}", route_b(&office_b, &host_b));
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    let office_a = h.office.clone();

    // Each route: its own office server's keys, its own upstream, the Host passed on as sent.
    assert_eq!(send(&h, "cloud-a.test", "GET", FILE, Some((&office_a, "cloud-a.test")), None).await.0, 200);
    assert_eq!(send(&h, "CLOUD-B.test:8443", "GET", FILE, Some((&office_b, "cloud-b.test")), None).await.0, 200);
    assert_eq!((h.forwarded(), host_b.count_heads()), (1, 1));
    assert_eq!(h.host.last().unwrap().header("host"), Some("cloud-a.test"));
    assert_eq!(host_b.last().unwrap().header("host"), Some("CLOUD-B.test:8443"));

    // A key of the other route never verifies here, even over this route's own URL; the proxy
    // re-reads only this route's discovery for it.
    let (status, body) = send(&h, "cloud-a.test", "GET", FILE, Some((&office_b, "cloud-a.test")), None).await;
    assert_eq!((status, body.as_str()), (500, "wopi-guard: refused: proof does not verify\n"));
    let (status, _) = send(&h, "cloud-b.test", "GET", FILE, Some((&office_a, "cloud-b.test")), None).await;
    assert_eq!(status, 500);
    // A proof made for one route's URL does not verify on the other (public_url is the route's).
    assert_eq!(send(&h, "cloud-b.test", "GET", FILE, Some((&office_b, "cloud-a.test")), None).await.0, 500);
    assert_eq!((h.forwarded(), host_b.count_heads()), (1, 1), "no refused request reached a host");

    // Per-route policy: route B denies PutFile, route A does not.
    let body = Some(vec![7u8; 1024]);
    assert_eq!(
        send(&h, "cloud-b.test", "POST", CONTENTS, Some((&office_b, "cloud-b.test")), body.clone()).await.0,
        403
    );
    assert_eq!(send(&h, "cloud-a.test", "POST", CONTENTS, Some((&office_a, "cloud-a.test")), body).await.0, 200);

    // An unknown Host: 421, forwarded nowhere. A malformed Host: 400 from the router; a repeated
    // one, or one unlike an absolute-form target's, Pingora itself refuses with 400 first.
    let (status, body) = send(&h, "cloud-c.test", "GET", FILE, Some((&office_a, "cloud-c.test")), None).await;
    assert_eq!((status, body.as_str()), (421, "wopi-guard: refused: no route for this Host (misdirected request)\n"));
    let (status, body) = send(&h, "cloud-a.test:x", "GET", FILE, Some((&office_a, "cloud-a.test")), None).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "wopi-guard: refused: Host header repeated, malformed, or unlike the request target's host\n")
    );
    for head in [
        format!("GET {FILE} HTTP/1.1\r\nHost: cloud-a.test\r\nHost: cloud-b.test\r\n\r\n"),
        format!("GET http://cloud-b.test{FILE} HTTP/1.1\r\nHost: cloud-a.test\r\n\r\n"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(h.listen).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut stream).await.map(|a| a.0), Some(400), "{head}");
    }
    assert_eq!((h.forwarded(), host_b.count_heads()), (2, 1), "only route A's PutFile was added");

    // Metrics and access lines carry the route.
    for line in [
        "wopi_guard_requests_total{route=\"cloud-a.test\",operation=\"CheckFileInfo\",verdict=\"forwarded\"} 1",
        "wopi_guard_requests_total{route=\"cloud-b.test\",operation=\"CheckFileInfo\",verdict=\"forwarded\"} 1",
        "wopi_guard_requests_total{route=\"cloud-a.test\",operation=\"CheckFileInfo\",verdict=\"proof_invalid\"} 1",
        "wopi_guard_requests_total{route=\"cloud-b.test\",operation=\"CheckFileInfo\",verdict=\"proof_invalid\"} 2",
        "wopi_guard_requests_total{route=\"cloud-b.test\",operation=\"PutFile\",verdict=\"operation_denied\"} 1",
        "wopi_guard_requests_total{operation=\"Unknown\",verdict=\"host_unknown\"} 1",
        "wopi_guard_requests_total{operation=\"Unknown\",verdict=\"host_invalid\"} 1",
        &format!("wopi_guard_upstream_requests_total{{route=\"cloud-b.test\",upstream=\"{}\"}} 1", host_b.addr()),
        &format!(
            "wopi_guard_discovery_fetches_total{{route=\"cloud-b.test\",source=\"{}\",outcome=\"updated\"}} 1",
            office_b.discovery_url()
        ),
    ] {
        h.metric_shows(line).await;
    }
    let metrics = h.admin_text("/metrics").await;
    let key_a = format!(
        "route=\"cloud-a.test\",source=\"{}\",key=\"current\",fingerprint=\"{}\"",
        office_a.discovery_url(),
        fingerprint(&office_a)
    );
    let key_b = format!(
        "route=\"cloud-b.test\",source=\"{}\",key=\"current\",fingerprint=\"{}\"",
        office_b.discovery_url(),
        fingerprint(&office_b)
    );
    assert!(metrics.contains(&key_a) && metrics.contains(&key_b), "{metrics}");
    let logs = log_text();
    let refused_on_b =
        logs.lines().any(|l| l.contains("\"route\":\"cloud-b.test\"") && l.contains("\"reason\":\"operation_denied\""));
    assert!(refused_on_b, "an access line names the route");
    let misdirected = logs.lines().find(|l| l.contains("\"reason\":\"host_unknown\"")).expect("a 421 line");
    assert!(misdirected.contains("\"status\":421") && !misdirected.contains("\"route\""), "{misdirected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_route_and_the_routes_it_keeps_stay_ready() {
    let office_b = Arc::new(FakeOffice::start(2048).await);
    let host_b = FakeHost::start().await;
    let h = Harness::start_with(Options { extra: ROUTE_A.into(), ..Options::default() }).await;
    let office_a = h.office.clone();
    assert_eq!(send(&h, "cloud-a.test", "GET", FILE, Some((&office_a, "cloud-a.test")), None).await.0, 200);
    assert_eq!(send(&h, "cloud-b.test", "GET", FILE, Some((&office_b, "cloud-b.test")), None).await.0, 421);

    let text = format!("{}{}", h.config_text, route_b(&office_b, &host_b));
    assert_eq!(h.reload(&text).await, Ok(vec![]));
    h.metric_shows(&format!("wopi_guard_proof_key{{route=\"cloud-b.test\",source=\"{}\"", office_b.discovery_url()))
        .await;
    assert_eq!(send(&h, "cloud-b.test", "GET", FILE, Some((&office_b, "cloud-b.test")), None).await.0, 200);
    assert_eq!(host_b.count_heads(), 1);
    // Route A kept its keys and counters through the reload (no fetch was needed for it).
    assert_eq!(send(&h, "cloud-a.test", "GET", FILE, Some((&office_a, "cloud-a.test")), None).await.0, 200);
    h.metric_shows(
        "wopi_guard_requests_total{route=\"cloud-a.test\",operation=\"CheckFileInfo\",verdict=\"forwarded\"} 2",
    )
    .await;
    assert_eq!(h.admin_status("/ready").await, 200);

    // Taking route B away again: its Host is misdirected at once.
    assert_eq!(h.reload(&h.config_text).await, Ok(vec![]));
    assert_eq!(send(&h, "cloud-b.test", "GET", FILE, Some((&office_b, "cloud-b.test")), None).await.0, 421);
    assert_eq!(host_b.count_heads(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_every_route_and_names_the_one_without_keys() {
    let host_b = FakeHost::start().await;
    // Route B's office server does not answer: nothing listens on its port.
    let silent = format!("http://127.0.0.1:{}/hosting/discovery", free_port().port());
    let extra = format!(
        "{ROUTE_A}\n[[routes]]\nhost = \"cloud-b.test\"\npublic_url = \"https://cloud-b.test\"\nupstream = \"{}\"\n[routes.discovery]\nurls = [\"{silent}\"]\n",
        host_b.url()
    );
    let h = Harness::start_with(Options { extra, wait_ready: false, ..Options::default() }).await;
    let office_a = h.office.clone();
    h.metric_shows(&format!("route=\"cloud-a.test\",source=\"{}\",key=\"current\"", office_a.discovery_url())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = h.client.get(format!("http://{}/ready", h.admin)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body = ready.text().await.unwrap();
    assert_eq!(body, "not ready: route cloud-b.test: no proof keys loaded (discovery not reached yet)\n");
    // Route A serves meanwhile; route B fails closed with 503.
    assert_eq!(send(&h, "cloud-a.test", "GET", FILE, Some((&office_a, "cloud-a.test")), None).await.0, 200);
    assert_eq!(send(&h, "cloud-b.test", "GET", FILE, Some((&office_a, "cloud-b.test")), None).await.0, 503);
    assert_eq!(host_b.count_heads(), 0);
}

/// A GET of file `i` (a fresh token and proof each, so only the address's budget is shared).
async fn get(h: &Harness, office: &FakeOffice, host: &str, i: usize) -> u16 {
    let target = format!("/wopi/files/{i}?access_token=t{i}");
    send(h, host, "GET", &target, Some((office, host)), None).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_shared_each_route_has_its_own_budget_shared_by_every_instance() {
    let redis = RedisServer::start(None);
    let extra = format!(
        "{ROUTE_A}\n[[routes]]\nhost = \"cloud-b.test\"\npublic_url = \"https://cloud-b.test\"\n\
         [rate_limit.per_ip]\nper_second = 0.01\nburst = 3\n\
         [shared]\nredis = \"{}\"\nhash_key = \"0123456789abcdef0123456789abcdef\"\n",
        redis.url()
    );
    let office = Arc::new(FakeOffice::start(2048).await);
    let one = Harness::start_on(office.clone(), Options { extra: extra.clone(), ..Options::default() }).await;
    let two = Harness::start_on(office.clone(), Options { extra, ..Options::default() }).await;
    let office = &*office;
    // Route A's budget of 3 is spent over both instances...
    let a = [
        get(&one, office, "cloud-a.test", 0).await,
        get(&two, office, "cloud-a.test", 1).await,
        get(&one, office, "cloud-a.test", 2).await,
    ];
    assert_eq!(a, [200, 200, 200]);
    assert_eq!(get(&two, office, "cloud-a.test", 3).await, 429, "route A's budget is shared by the instances");
    // ...and route B, the same client, has its own.
    for i in 4..7 {
        assert_eq!(get(&two, office, "cloud-b.test", i).await, 200, "route B's budget is its own");
    }
    assert_eq!(get(&one, office, "cloud-b.test", 7).await, 429);
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    assert!(keys.iter().any(|k| k.starts_with("wopi-guard:cloud-a.test:rl:")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("wopi-guard:cloud-b.test:rl:")), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("wopi-guard:cloud-")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_has_its_own_allow_list_rate_limit_and_health_checks() {
    let live = FakeHost::start().await;
    let dead = free_port(); // nothing listens here
    let extra = format!(
        r#"{ROUTE_A}
[[routes]]
host = "cloud-b.test"
public_url = "https://cloud-b.test"
upstream = ["{}", "http://{dead}"]
[routes.ip]
allow = ["127.0.0.2/32"]
[routes.rate_limit.per_ip]
per_second = 0.01
burst = 2
[routes.health]
path = "/status.php"
interval = "200ms"
timeout = "150ms"
"#,
        live.url()
    );
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    let office = h.office.clone();
    // Route B admits only 127.0.0.2; route A has no allow-list.
    assert_eq!(get(&h, &office, "cloud-b.test", 0).await, 403);
    for i in 1..4 {
        assert_eq!(get(&h, &office, "cloud-a.test", i).await, 200, "route A has no rate limit");
    }
    let second = reqwest::Client::builder().no_proxy().local_address("127.0.0.2".parse().ok()).build().unwrap();
    let from_second = |i: usize| {
        let target = format!("/wopi/files/{i}?access_token=t{i}");
        let proof = office.sign(&format!("https://cloud-b.test{target}"), ticks(0));
        let request = second.get(h.local(&target)).header("host", "cloud-b.test");
        async move {
            let mut request = request;
            for (name, value) in proof.headers() {
                request = request.header(name, value);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!([from_second(10).await, from_second(11).await, from_second(12).await], [200, 200, 429]);
    // Route B's pool is checked by its own [health]: the dead member is marked down, by route.
    h.metric_shows(&format!("wopi_guard_upstream_up{{route=\"cloud-b.test\",upstream=\"{dead}\"}} 0")).await;
    h.metric_shows(&format!("wopi_guard_upstream_up{{route=\"cloud-b.test\",upstream=\"{}\"}} 1", live.addr())).await;
    h.metric_shows(
        "wopi_guard_requests_total{route=\"cloud-b.test\",operation=\"CheckFileInfo\",verdict=\"ip_denied\"} 1",
    )
    .await;
    h.metric_shows(
        "wopi_guard_requests_total{route=\"cloud-b.test\",operation=\"CheckFileInfo\",verdict=\"rate_limited\"} 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_into_routes_keeps_the_keys_and_the_new_route_is_fetched() {
    let h = Harness::start().await;
    assert_eq!(h.signed_get(FILE).await.0, 200);
    let text = format!("{}\n[[routes]]\nhost = \"*\"\n", h.config_text);
    assert_eq!(h.reload(&text).await, Ok(vec![]));
    // At once, with no fetch in between: the one route's keys came along into the `*` route.
    assert_eq!(h.signed_get(FILE).await.0, 200);
    h.metric_shows("wopi_guard_requests_total{route=\"*\",operation=\"CheckFileInfo\",verdict=\"forwarded\"} 1").await;
    // The periodic fetches follow the new route's refresher: discovery is read again for it.
    let fetched = format!(
        "wopi_guard_discovery_fetches_total{{route=\"*\",source=\"{}\",outcome=\"unchanged\"}} 1",
        h.office.discovery_url()
    );
    h.metric_shows(&fetched).await;
}

/// Traefik's forwardAuth behind `[[routes]]`: a subrequest carries Traefik's own `Host` and the
/// original one in `X-Forwarded-Host`, which picks the route (its keys, public URL and trust).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traefik_subrequest_is_routed_by_x_forwarded_host() {
    const AUTH: &str = "/_wopi-guard/auth";
    let office_b = Arc::new(FakeOffice::start(2048).await);
    let host_b = FakeHost::start().await;
    let extra = format!(
        "[forward_auth]\npath = \"{AUTH}\"\nuri_header = \"x-forwarded-uri\"\n[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         {ROUTE_A}{}\n[[routes]]\nhost = \"cloud-c.test\"\n[routes.ip]\ntrusted_proxies = [\"10.0.0.1/32\"]\n",
        route_b(&office_b, &host_b)
    );
    let h = Harness::start_with(Options { extra, ..Options::default() }).await;
    let office_a = h.office.clone();
    let ask = |forwarded_host: Vec<&'static str>, signer: (&FakeOffice, &str)| {
        let proof = signer.0.sign(&format!("https://{}{FILE}", signer.1), ticks(0));
        let mut request = h
            .client
            .get(h.local(AUTH))
            .header("X-Forwarded-Uri", FILE)
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Proto", "https");
        for value in forwarded_host {
            request = request.header("X-Forwarded-Host", value);
        }
        for (name, value) in proof.headers() {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    // The subrequest's own Host is the proxy's address: only X-Forwarded-Host tells the route.
    assert_eq!(ask(vec!["cloud-a.test"], (&office_a, "cloud-a.test")).await.0, 200);
    assert_eq!(ask(vec!["Cloud-B.test:443"], (&office_b, "cloud-b.test")).await.0, 200);
    // Route B's keys and URL: route A's proof, or a proof for A's URL, does not verify there.
    assert_eq!(ask(vec!["cloud-b.test"], (&office_a, "cloud-a.test")).await.0, 500);
    assert_eq!(ask(vec!["cloud-b.test"], (&office_b, "cloud-a.test")).await.0, 500);
    // Route C trusts another proxy: this peer may not ask for it.
    assert_eq!(ask(vec!["cloud-c.test"], (&office_a, "cloud-c.test")).await.0, 403);
    let (status, body) = ask(vec!["cloud-d.test"], (&office_a, "cloud-d.test")).await;
    assert_eq!((status, body.as_str()), (421, "wopi-guard: refused: no route for this Host (misdirected request)\n"));
    for hosts in [vec![], vec!["cloud-a.test", "cloud-b.test"]] {
        let (status, body) = ask(hosts.clone(), (&office_a, "cloud-a.test")).await;
        assert_eq!(status, 400, "{hosts:?}");
        assert!(body.contains("one X-Forwarded-Host"), "{body}");
    }
    assert_eq!(ask(vec!["cloud-a.test:x"], (&office_a, "cloud-a.test")).await.0, 400);
    assert_eq!((h.forwarded(), host_b.count()), (0, 0), "forward-auth never forwards");
    for line in [
        "wopi_guard_requests_total{route=\"cloud-a.test\",operation=\"CheckFileInfo\",verdict=\"forwarded\"} 1",
        "wopi_guard_requests_total{route=\"cloud-b.test\",operation=\"CheckFileInfo\",verdict=\"forwarded\"} 1",
        "wopi_guard_requests_total{route=\"cloud-b.test\",operation=\"CheckFileInfo\",verdict=\"proof_invalid\"} 2",
        "wopi_guard_requests_total{operation=\"Unknown\",verdict=\"host_unknown\"} 1",
        "wopi_guard_requests_total{operation=\"Unknown\",verdict=\"forward_auth_headers\"} 2",
    ] {
        h.metric_shows(line).await;
    }
}
