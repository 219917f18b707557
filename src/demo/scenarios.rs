//! The demo's requests: genuine ones and every kind of forgery the proxy must refuse.

use std::time::{Duration, SystemTime};

use crate::proof::ticks_at;
use crate::testkit::{DiscoveryBehaviour, FakeHost, FakeOffice, ProofSet, Signer};

/// What one demo request did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was sent.
    pub name: String,
    /// Whether it should reach the WOPI host.
    pub expect_forwarded: bool,
    /// The status the client saw.
    pub status: u16,
    /// Whether the WOPI host saw it.
    pub forwarded: bool,
    /// Discovery fetches it caused.
    pub fetches: usize,
    /// The refusal text, or the host's answer in short.
    pub detail: String,
}

impl Outcome {
    /// Forwarded exactly when it should be.
    pub fn as_expected(&self) -> bool {
        self.forwarded == self.expect_forwarded
    }
}

struct Ctx<'a> {
    client: &'a reqwest::Client,
    office: &'a FakeOffice,
    host: &'a FakeHost,
    base: &'a str,
}

fn now_ticks(offset_secs: i64) -> i64 {
    ticks_at(SystemTime::now()) + offset_secs * 10_000_000
}

impl Ctx<'_> {
    fn url(&self, file: &str, token: &str) -> String {
        format!("{}/wopi/files/{file}?access_token={token}", self.base)
    }

    async fn send(
        &self,
        name: &str,
        expect_forwarded: bool,
        method: &str,
        url: &str,
        proof: Option<&ProofSet>,
        body: Option<Vec<u8>>,
    ) -> Outcome {
        let (seen, fetched) = (self.host.requests().len(), self.office.fetches());
        let mut request = self.client.request(method.parse().expect("a valid method"), url);
        if let Some(proof) = proof {
            for (name, value) in proof.headers() {
                request = request.header(name, value);
            }
        }
        if let Some(body) = body {
            request = request.header("X-WOPI-Override", "PUT").body(body);
        }
        let (status, text) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(e) => (0, format!("request failed: {e}")),
        };
        let forwarded = self.host.requests().len() > seen;
        let detail = if forwarded {
            let text = text.trim();
            format!("host answered {}", if text.len() > 40 { &text[..40] } else { text })
        } else {
            text.trim().trim_start_matches("wopi-guard: ").to_string()
        };
        Outcome {
            name: name.into(),
            expect_forwarded,
            status,
            forwarded,
            fetches: self.office.fetches() - fetched,
            detail,
        }
    }
}

/// Sends every demo request through the proxy at `base` and reports what happened.
pub async fn run_scenarios(client: &reqwest::Client, office: &FakeOffice, host: &FakeHost, base: &str) -> Vec<Outcome> {
    let ctx = Ctx { client, office, host, base };
    let mut out = Vec::new();
    let url = ctx.url("demo", "token-abc");

    let proof = office.sign(&url, now_ticks(0));
    out.push(ctx.send("genuine CheckFileInfo", true, "GET", &url, Some(&proof), None).await);

    let contents = format!("{base}/wopi/files/demo/contents?access_token=token-abc");
    let proof = office.sign(&contents, now_ticks(0));
    out.push(ctx.send("genuine PutFile (64 KiB)", true, "POST", &contents, Some(&proof), Some(vec![7u8; 65536])).await);

    let proof = office.sign(&url, now_ticks(0));
    let other = ctx.url("other", "token-abc");
    out.push(ctx.send("tampered URL (other file, same proof)", false, "GET", &other, Some(&proof), None).await);

    let stolen = ctx.url("demo", "token-evil");
    out.push(ctx.send("tampered token", false, "GET", &stolen, Some(&proof), None).await);

    let stale = office.sign(&url, now_ticks(-30 * 60));
    out.push(ctx.send("stale timestamp (30 min old)", false, "GET", &url, Some(&stale), None).await);

    let future = office.sign(&url, now_ticks(60 * 60));
    out.push(ctx.send("timestamp 1 h in the future", false, "GET", &url, Some(&future), None).await);

    out.push(ctx.send("no proof headers", false, "GET", &url, None, None).await);

    tokio::time::sleep(Duration::from_millis(1100)).await; // past min_refresh_interval
    let intruder = Signer::generate(2048);
    let forged = ProofSet::sign(&url, now_ticks(0), &intruder, &intruder);
    out.push(ctx.send("signed by an unknown key", false, "GET", &url, Some(&forged), None).await);

    let mut flood = ctx.send("20 more by the unknown key", false, "GET", &url, Some(&forged), None).await;
    let fetched = office.fetches();
    for _ in 1..20 {
        let o = ctx.send("", false, "GET", &url, Some(&forged), None).await;
        flood.forwarded |= o.forwarded;
    }
    flood.fetches += office.fetches() - fetched;
    out.push(flood);

    out.push(ctx.send("outside /wopi/ (not protected)", true, "GET", &format!("{base}/status"), None, None).await);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    office.rotate();
    let proof = office.sign(&url, now_ticks(0));
    out.push(ctx.send("office rotated its key (ProofOld = our key)", true, "GET", &url, Some(&proof), None).await);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    office.rotate();
    office.rotate();
    let proof = office.sign(&url, now_ticks(0));
    out.push(ctx.send("rotated twice more (both keys new to us)", true, "GET", &url, Some(&proof), None).await);

    office.set_behaviour(DiscoveryBehaviour::Unavailable);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let proof = office.sign(&url, now_ticks(0));
    out.push(ctx.send("discovery down: last-known-good keys", true, "GET", &url, Some(&proof), None).await);
    office.set_behaviour(DiscoveryBehaviour::Keys);
    out
}

/// The outcomes as a text table.
pub fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(10).max(7);
    let mut s = format!("   {:<width$}  status  verdict    fetches  detail\n", "request");
    s.push_str(&format!("   {}\n", "-".repeat(width + 48)));
    for o in outcomes {
        let mark = if o.as_expected() { "  " } else { "!!" };
        let verdict = if o.forwarded { "forwarded" } else { "REFUSED" };
        s.push_str(&format!(
            " {mark}{:<width$}  {:>6}  {verdict:<9}  {:>7}  {}\n",
            o.name, o.status, o.fetches, o.detail
        ));
    }
    s
}
