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
    /// A body sent reached the host byte for byte (true when there was none).
    pub intact: bool,
    /// Discovery fetches it caused.
    pub fetches: usize,
    /// The refusal text, or the host's answer in short.
    pub detail: String,
}

impl Outcome {
    /// Forwarded exactly when it should be.
    pub fn as_expected(&self) -> bool {
        self.forwarded == self.expect_forwarded && self.intact
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

    /// Sends one request. `forward_note` is `Some(why)` for a request that should be forwarded
    /// (shown as its detail), `None` for one that should be refused (its refusal is the detail).
    async fn send(
        &self,
        name: &str,
        forward_note: Option<&str>,
        method: &str,
        url: &str,
        proof: Option<&ProofSet>,
        body: Option<Vec<u8>>,
    ) -> Outcome {
        let (seen, fetched) = (self.host.count(), self.office.fetches());
        let mut request = self.client.request(method.parse().expect("a valid method"), url);
        if let Some(proof) = proof {
            for (name, value) in proof.headers() {
                request = request.header(name, value);
            }
        }
        let sent_digest = body.as_ref().map(|b| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)));
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
        let forwarded = self.host.count() > seen;
        let intact = match (&sent_digest, self.host.last()) {
            (Some(sent), Some(seen)) if forwarded => *sent == seen.body_sha256,
            _ => true,
        };
        let detail = if !intact {
            "the body reaching the host differs from the body sent".to_string()
        } else if forwarded {
            forward_note.unwrap_or("forwarded").to_string()
        } else {
            text.trim().trim_start_matches("wopi-guard: ").to_string()
        };
        Outcome {
            name: name.into(),
            expect_forwarded: forward_note.is_some(),
            status,
            forwarded,
            intact,
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
    out.push(
        ctx.send(
            "genuine CheckFileInfo",
            Some("verified: X-WOPI-Proof with the current key"),
            "GET",
            &url,
            Some(&proof),
            None,
        )
        .await,
    );

    let contents = format!("{base}/wopi/files/demo/contents?access_token=token-abc");
    let proof = office.sign(&contents, now_ticks(0));
    out.push(
        ctx.send(
            "genuine PutFile (64 KiB)",
            Some("verified; the host got the same SHA-256"),
            "POST",
            &contents,
            Some(&proof),
            Some(vec![7u8; 65536]),
        )
        .await,
    );

    let proof = office.sign(&url, now_ticks(0));
    let other = ctx.url("other", "token-abc");
    out.push(ctx.send("tampered URL (other file, same proof)", None, "GET", &other, Some(&proof), None).await);

    let stolen = ctx.url("demo", "token-evil");
    out.push(ctx.send("tampered token", None, "GET", &stolen, Some(&proof), None).await);

    let stale = office.sign(&url, now_ticks(-30 * 60));
    out.push(ctx.send("stale timestamp (30 min old)", None, "GET", &url, Some(&stale), None).await);

    let future = office.sign(&url, now_ticks(60 * 60));
    out.push(ctx.send("timestamp 1 h in the future", None, "GET", &url, Some(&future), None).await);

    out.push(ctx.send("no proof headers", None, "GET", &url, None, None).await);

    tokio::time::sleep(Duration::from_millis(1100)).await; // past min_refresh_interval
    let intruder = Signer::generate(2048);
    let forged = ProofSet::sign(&url, now_ticks(0), &intruder, &intruder);
    out.push(ctx.send("signed by an unknown key", None, "GET", &url, Some(&forged), None).await);

    let mut flood = ctx.send("20 more by the unknown key", None, "GET", &url, Some(&forged), None).await;
    let fetched = office.fetches();
    for _ in 1..20 {
        let o = ctx.send("", None, "GET", &url, Some(&forged), None).await;
        flood.forwarded |= o.forwarded;
    }
    flood.fetches += office.fetches() - fetched;
    out.push(flood);

    out.push(
        ctx.send(
            "outside /wopi/ (not protected)",
            Some("not under proof.paths: passed untouched"),
            "GET",
            &format!("{base}/status"),
            None,
            None,
        )
        .await,
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    office.rotate();
    let proof = office.sign(&url, now_ticks(0));
    out.push(
        ctx.send(
            "office rotated its key (ProofOld = our key)",
            Some("X-WOPI-ProofOld verified with our key; discovery re-read in the background"),
            "GET",
            &url,
            Some(&proof),
            None,
        )
        .await,
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    office.rotate();
    office.rotate();
    let proof = office.sign(&url, now_ticks(0));
    out.push(
        ctx.send(
            "rotated twice more (both keys new to us)",
            Some("nothing verified: discovery re-read once, then verified"),
            "GET",
            &url,
            Some(&proof),
            None,
        )
        .await,
    );

    office.set_behaviour(DiscoveryBehaviour::Unavailable);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let proof = office.sign(&url, now_ticks(0));
    out.push(
        ctx.send(
            "discovery down: last-known-good keys",
            Some("discovery answers 503; the keys from the last good read verify"),
            "GET",
            &url,
            Some(&proof),
            None,
        )
        .await,
    );
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
