//! The demo's requests: genuine ones and every kind of forgery the proxy must refuse.

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

use crate::proof::ticks_at;
use crate::refusal::Refusal;
use crate::testkit::{DiscoveryBehaviour, FakeHost, FakeOffice, ProofSet, Signer};

/// What a demo request should do.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The status the client should see.
    pub status: u16,
    /// `None`: forwarded to the host; `Some`: refused for this reason, and not forwarded.
    pub refusal: Option<Refusal>,
    /// Discovery fetches it should cause (a range where it depends on timing: a re-read within
    /// `min_refresh_interval` of the last one is not sent, and a background one may still run).
    pub fetches: RangeInclusive<usize>,
}

fn forwarded(fetches: RangeInclusive<usize>) -> Expect {
    Expect { status: 200, refusal: None, fetches }
}

fn refused(refusal: Refusal, fetches: RangeInclusive<usize>) -> Expect {
    Expect { status: refusal.status(500), refusal: Some(refusal), fetches }
}

/// What one demo request did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was sent.
    pub name: String,
    /// What it should do.
    pub expect: Expect,
    /// The status the client saw.
    pub status: u16,
    /// Whether the WOPI host saw it.
    pub forwarded: bool,
    /// The answer's body is the expected refusal's (true for a row expected forwarded).
    pub reason_matches: bool,
    /// A body sent reached the host byte for byte (true when there was none).
    pub intact: bool,
    /// Discovery fetches it caused.
    pub fetches: usize,
    /// What was seen: the refusal text, or what the host got.
    pub detail: String,
}

impl Outcome {
    /// Status, verdict, reason and discovery fetches as expected, and any body intact.
    pub fn as_expected(&self) -> bool {
        self.status == self.expect.status
            && self.forwarded == self.expect.refusal.is_none()
            && self.reason_matches
            && self.intact
            && self.expect.fetches.contains(&self.fetches)
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

    /// Sends one request and records what happened against `expect`.
    async fn send(
        &self,
        name: &str,
        expect: Expect,
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
        let reason_matches = expect.refusal.is_none_or(|r| text == r.body());
        let detail = match (forwarded, &sent_digest) {
            (true, Some(_)) if intact => "the host got it, body SHA-256 equal to the one sent".to_string(),
            (true, Some(_)) => "the body reaching the host differs from the body sent".to_string(),
            (true, None) => "the host got it".to_string(),
            (false, _) => text.trim().trim_start_matches("wopi-guard: ").to_string(),
        };
        Outcome {
            name: name.into(),
            expect,
            status,
            forwarded,
            reason_matches,
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
    out.push(ctx.send("genuine CheckFileInfo", forwarded(0..=0), "GET", &url, Some(&proof), None).await);

    let contents = format!("{base}/wopi/files/demo/contents?access_token=token-abc");
    let proof = office.sign(&contents, now_ticks(0));
    out.push(
        ctx.send("genuine PutFile (64 KiB)", forwarded(0..=0), "POST", &contents, Some(&proof), Some(vec![7u8; 65536]))
            .await,
    );

    let proof = office.sign(&url, now_ticks(0));
    let other = ctx.url("other", "token-abc");
    out.push(
        ctx.send(
            "tampered URL (other file, same proof)",
            refused(Refusal::ProofInvalid, 0..=1),
            "GET",
            &other,
            Some(&proof),
            None,
        )
        .await,
    );

    let stolen = ctx.url("demo", "token-evil");
    out.push(
        ctx.send("tampered token", refused(Refusal::ProofInvalid, 0..=1), "GET", &stolen, Some(&proof), None).await,
    );

    let stale = office.sign(&url, now_ticks(-30 * 60));
    out.push(
        ctx.send(
            "stale timestamp (30 min old)",
            refused(Refusal::ProofExpired, 0..=0),
            "GET",
            &url,
            Some(&stale),
            None,
        )
        .await,
    );

    let future = office.sign(&url, now_ticks(60 * 60));
    out.push(
        ctx.send(
            "timestamp 1 h in the future",
            refused(Refusal::ProofFromFuture, 0..=0),
            "GET",
            &url,
            Some(&future),
            None,
        )
        .await,
    );

    out.push(ctx.send("no proof headers", refused(Refusal::ProofMissing, 0..=0), "GET", &url, None, None).await);

    tokio::time::sleep(Duration::from_millis(1100)).await; // past min_refresh_interval
    let intruder = Signer::generate(2048);
    let forged = ProofSet::sign(&url, now_ticks(0), &intruder, &intruder);
    out.push(
        ctx.send("signed by an unknown key", refused(Refusal::ProofInvalid, 1..=1), "GET", &url, Some(&forged), None)
            .await,
    );

    // Within min_refresh_interval (1 s) of the last re-read: none sent, unless the machine is slow.
    let flood_expect = || refused(Refusal::ProofInvalid, 0..=1);
    let mut flood = ctx.send("20 more by the unknown key", flood_expect(), "GET", &url, Some(&forged), None).await;
    let fetched = office.fetches();
    for _ in 1..20 {
        let o = ctx.send("", flood_expect(), "GET", &url, Some(&forged), None).await;
        flood.forwarded |= o.forwarded;
        flood.reason_matches &= o.reason_matches;
        if o.status != flood.status {
            flood.status = o.status;
        }
    }
    flood.fetches += office.fetches() - fetched;
    out.push(flood);

    out.push(
        ctx.send("outside /wopi/ (not protected)", forwarded(0..=0), "GET", &format!("{base}/status"), None, None)
            .await,
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    office.rotate();
    let proof = office.sign(&url, now_ticks(0));
    out.push(
        ctx.send(
            "office rotated its key (ProofOld = our key)",
            // Verified at once; the re-read runs in the background, maybe after the answer.
            forwarded(0..=1),
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
            // One re-read before it verifies (plus the previous row's, if still under way).
            forwarded(1..=2),
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
    out.push(ctx.send("discovery down: last-known-good keys", forwarded(0..=0), "GET", &url, Some(&proof), None).await);
    office.set_behaviour(DiscoveryBehaviour::Keys);
    out
}

/// The outcomes as a text table: what was seen; a row that differs from what was expected is
/// marked `!!` and says what was expected.
pub fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(10).max(7);
    let mut s = format!("   {:<width$}  status  verdict    fetches  detail (as seen)\n", "request");
    s.push_str(&format!("   {}\n", "-".repeat(width + 48)));
    for o in outcomes {
        let mark = if o.as_expected() { "  " } else { "!!" };
        let verdict = if o.forwarded { "forwarded" } else { "REFUSED" };
        s.push_str(&format!(
            " {mark}{:<width$}  {:>6}  {verdict:<9}  {:>7}  {}\n",
            o.name, o.status, o.fetches, o.detail
        ));
        if !o.as_expected() {
            let e = &o.expect;
            let want = e.refusal.map_or("forwarded".to_string(), |r| format!("refused as {}", r.label()));
            s.push_str(&format!(
                "   {:<width$}  expected: {} {want}, {}..={} fetch(es)\n",
                "",
                e.status,
                e.fetches.start(),
                e.fetches.end()
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(expect: Expect, status: u16, forwarded: bool, body: &str, fetches: usize) -> Outcome {
        let reason_matches = expect.refusal.is_none_or(|r| body == r.body());
        Outcome {
            name: "row".into(),
            expect,
            status,
            forwarded,
            reason_matches,
            intact: true,
            fetches,
            detail: String::new(),
        }
    }

    #[test]
    fn a_row_passes_only_with_its_status_reason_and_fetches() {
        let expect = || refused(Refusal::ProofInvalid, 1..=1);
        assert!(outcome(expect(), 500, false, Refusal::ProofInvalid.body(), 1).as_expected());
        // Not forwarded, but for the wrong reason (no keys): once counted as expected.
        assert!(!outcome(expect(), 503, false, Refusal::NoKeys.body(), 1).as_expected());
        assert!(
            !outcome(expect(), 500, false, Refusal::ProofMissing.body(), 1).as_expected(),
            "right status, wrong reason"
        );
        assert!(!outcome(expect(), 500, false, Refusal::ProofInvalid.body(), 0).as_expected(), "no re-read");
        assert!(!outcome(forwarded(0..=0), 200, false, "", 0).as_expected(), "answered 200 without the host");
        assert!(outcome(forwarded(0..=1), 200, true, "", 1).as_expected());
    }
}
