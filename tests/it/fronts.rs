//! Every shipped front-proxy example, run as shipped under the real server from Debian's
//! packages (`tests/it/common/fronts.rs`), with wopi-guard behind it (or beside it, asked by
//! nginx's auth_request) and two `[[routes]]` with their own office servers: genuine proofs pass
//! with the target byte for byte for the tricky targets, forgeries are refused, a 3 MiB PutFile
//! arrives whole, the host sees the Host and scheme the office server called, each route's keys
//! admit only its own host, and kept-alive connections through the front do not mix requests.

use crate::common::*;
use std::sync::Arc;

/// Targets whose bytes a careless proxy changes: an encoded slash, `%2B` and `+`, `;`
/// parameters, dot segments (sent by curl with `--path-as-is`: reqwest's URL type resolves
/// them), UTF-8, and a long token.
fn tricky_targets() -> Vec<String> {
    vec![
        "/wopi/files/a%2Fb?access_token=t%2Bk+1".into(),
        "/wopi/files/doc1;v=2?access_token=tok&x=%3B;y".into(),
        "/wopi/files/%E2%82%AC?access_token=tok%20sp%26more".into(),
        "/wopi/x/../files/./doc1?access_token=dots".into(),
        format!("/wopi/files/doc1?access_token={}", "L".repeat(1500)),
    ]
}

fn route_b(office: &FakeOffice, host: &FakeHost) -> String {
    format!(
        "\n[[routes]]\nhost = \"cloud-b.test\"\npublic_url = \"https://cloud-b.test\"\nupstream = \"{}\"\n[routes.discovery]\nurls = [\"{}\"]\n",
        host.url(),
        office.discovery_url()
    )
}

struct Setup {
    h: Harness,
    office_b: Arc<FakeOffice>,
    host_b: FakeHost,
    front: Front,
    client: reqwest::Client,
    pki: Pki,
}

impl Setup {
    async fn start(kind: Kind) -> Setup {
        let office_b = Arc::new(FakeOffice::start(2048).await);
        let host_b = FakeHost::start().await;
        let mut extra = String::from("[ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n");
        match kind {
            Kind::NginxAuth => extra.push_str("[forward_auth]\npath = \"/_wopi-guard/auth\"\n"),
            Kind::CaddyAuth => {
                extra.push_str("[forward_auth]\npath = \"/_wopi-guard/auth\"\nuri_header = \"x-forwarded-uri\"\n")
            }
            _ => {}
        }
        extra.push_str("\n[[routes]]\nhost = \"cloud-a.test\"\npublic_url = \"https://cloud-a.test\"\n");
        extra.push_str(&route_b(&office_b, &host_b));
        let h = Harness::start_with(Options { extra, ..Options::default() }).await;
        let pki = Pki::new("fronts");
        let front = Front::start(kind, h.listen, h.host.addr(), &pki).await;
        let client = pki.client();
        Setup { h, office_b, host_b, front, client, pki }
    }

    /// `method target` through the front with `Host: host`, signed by `office` for
    /// `https://{signed}{target}` (`None`: by a key nobody publishes).
    async fn send(
        &self,
        host: &str,
        method: &str,
        target: &str,
        office: Option<(&FakeOffice, &str)>,
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        let url = |signed: &str| format!("https://{signed}{target}");
        let proof = match office {
            Some((office, signed)) => office.sign(&url(signed), ticks(0)),
            None => {
                let intruder = Signer::generate(2048);
                ProofSet::sign(&url(host), ticks(0), &intruder, &intruder)
            }
        };
        if target.contains("/.") {
            return self.curl(host, method, target, &proof).await;
        }
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("https://{}{target}", self.front.addr))
            .header("host", host);
        for (name, value) in proof.headers() {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.header("X-WOPI-Override", "PUT").body(body);
        }
        match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
            }
            Err(e) => panic!("{method} {target} through the front: {e}\n{}", self.front.log()),
        }
    }
}

impl Setup {
    /// A GET through the front by curl, which sends the target as written (`--path-as-is`).
    async fn curl(&self, host: &str, method: &str, target: &str, proof: &ProofSet) -> (u16, Vec<u8>) {
        assert_eq!(method, "GET", "curl sends only GETs here");
        let mut command = std::process::Command::new("curl");
        command.args(["--path-as-is", "-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"]).arg(&self.pki.ca);
        command.args(["-H", &format!("Host: {host}")]);
        for (name, value) in proof.headers() {
            command.args(["-H", &format!("{name}: {value}")]);
        }
        command.arg(format!("https://{}{target}", self.front.addr));
        let out = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("curl runs");
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        let text = out.stdout;
        let split = text.iter().rposition(|&b| b == b'\n').expect("curl's status line");
        let status = String::from_utf8_lossy(&text[split + 1..]).trim().parse().expect("a status");
        (status, text[..split].to_vec())
    }
}

async fn the_example_holds(kind: Kind) {
    let s = Setup::start(kind).await;
    let (a, b) = (s.h.office.clone(), s.office_b.clone());
    // Genuine: the target byte for byte, the Host and scheme the office server called.
    for target in tricky_targets() {
        let (status, body) = s.send("cloud-a.test", "GET", &target, Some((&a, "cloud-a.test")), None).await;
        assert_eq!(status, 200, "{kind:?} {target}: {}\n{}", String::from_utf8_lossy(&body), s.front.log());
        let seen = s.h.host.last().unwrap();
        assert_eq!(seen.target, target, "{kind:?}: the target changed on the way");
        assert_eq!(seen.header("host"), Some("cloud-a.test"), "{kind:?}: {:?}", seen.headers);
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{kind:?}: {:?}", seen.headers);
        if !kind.asks() {
            assert_eq!(seen.header("x-forwarded-host"), Some("cloud-a.test"), "{kind:?}: {:?}", seen.headers);
            assert_eq!(seen.header("x-wopi-guard-verified"), None);
        }
    }
    let file = "/wopi/files/doc1?access_token=tok-front";
    // The office server's own Authorization reaches the host unchanged when wopi-guard sets none.
    let proof = a.sign(&format!("https://cloud-a.test{file}"), ticks(0));
    let mut request = s.client.get(format!("https://{}{file}", s.front.addr)).header("host", "cloud-a.test");
    for (name, value) in proof.headers() {
        request = request.header(name, value);
    }
    let status = request.header("authorization", "Bearer office-own").send().await.unwrap().status();
    assert_eq!(status, 200, "{kind:?}");
    assert_eq!(s.h.host.last().unwrap().header("authorization"), Some("Bearer office-own"), "{kind:?}");
    // Forged: refused, nothing forwarded.
    let before = (s.h.forwarded(), s.host_b.count_heads());
    assert_eq!(s.send("cloud-a.test", "GET", file, None, None).await.0, 500, "{kind:?}");
    // Each route's keys admit only its own host; a proof over the other host's URL fails too.
    assert_eq!(s.send("cloud-a.test", "GET", file, Some((&b, "cloud-a.test")), None).await.0, 500, "{kind:?}");
    assert_eq!(s.send("cloud-b.test", "GET", file, Some((&a, "cloud-b.test")), None).await.0, 500, "{kind:?}");
    assert_eq!(s.send("cloud-b.test", "GET", file, Some((&b, "cloud-a.test")), None).await.0, 500, "{kind:?}");
    assert_eq!((s.h.forwarded(), s.host_b.count_heads()), before, "{kind:?}: a refused request was forwarded");
    assert_eq!(s.send("cloud-b.test", "GET", file, Some((&b, "cloud-b.test")), None).await.0, 200, "{kind:?}");
    // A 3 MiB PutFile arrives whole.
    let contents = "/wopi/files/doc1/contents?access_token=tok-front";
    let upload: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let sha = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &upload));
    let (status, body) = s.send("cloud-a.test", "POST", contents, Some((&a, "cloud-a.test")), Some(upload)).await;
    assert_eq!(status, 200, "{kind:?}: {}\n{}", String::from_utf8_lossy(&body), s.front.log());
    let seen = s.h.host.last().unwrap();
    assert_eq!((seen.body_len, seen.body_sha256.as_str()), (3 << 20, sha.as_str()), "{kind:?}");
    // Kept-alive connections through the front: every answer is its own request's.
    for n in 1..=8u64 {
        let (host, office) = if n % 2 == 0 { ("cloud-a.test", &a) } else { ("cloud-b.test", &b) };
        let target = format!("/wopi/files/doc{n}/contents?access_token=tok-{n}&size={}", n * 1000);
        let (status, body) = s.send(host, "GET", &target, Some((office, host)), None).await;
        assert_eq!((status, body.len() as u64), (200, n * 1000), "{kind:?}: {target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nginx_proxy_example_holds() {
    the_example_holds(Kind::NginxProxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nginx_auth_request_example_holds() {
    the_example_holds(Kind::NginxAuth).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apache_example_holds() {
    the_example_holds(Kind::Apache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_haproxy_example_holds() {
    the_example_holds(Kind::HAProxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caddy_example_holds() {
    the_example_holds(Kind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caddy_forward_auth_example_holds() {
    the_example_holds(Kind::CaddyAuth).await;
}
