//! `[shared]` keeps `rotation`'s trusted sets in Redis: per discovery URL a hash-tagged group
//! `{key_prefix:trust:<HMAC of the URL>}` (one Cluster slot), holding one set per source
//! (`…:<HMAC of the label>`) and a `…:founded` marker. The first instance to write a source's set
//! wins (one script: `SADD` only when the set does not exist, the marker set, then `SMEMBERS`);
//! later instances and restarted pods adopt it; a proved rotation is `SADD`ed for all. Each
//! member is `fingerprint|HMAC(label, fingerprint)` under `hash_key`: a member written by someone
//! without the key (write access to Redis alone) is ignored.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::SharedState;
use crate::keys::{Fingerprint, TrustShare};

/// Adds `ARGV` to the set `KEYS[1]` only when it does not exist yet, marks the URL founded
/// (`KEYS[2]`); answers the set.
const CLAIM: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SADD', KEYS[1], unpack(ARGV)) end redis.call('SET', KEYS[2], '1') return redis.call('SMEMBERS', KEYS[1])";

impl SharedState {
    fn trust_group(&self, url: &str) -> String {
        format!("{{{}:trust:{}}}", self.config.key_prefix, self.hash.hex("trust-url", url.as_bytes()))
    }

    fn trust_key(&self, url: &str, label: &str) -> String {
        format!("{}:{}", self.trust_group(url), self.hash.hex("trust", label.as_bytes()))
    }

    fn member(&self, label: &str, key: &Fingerprint) -> String {
        let signed = format!("{label}\u{0}{key}");
        format!("{key}|{}", self.hash.hex("trust-member", signed.as_bytes()))
    }

    /// The members that carry this instance's `hash_key`'s mark; others are ignored (logged).
    fn members(&self, label: &str, members: Vec<String>) -> BTreeSet<Fingerprint> {
        let mut out = BTreeSet::new();
        for m in members {
            let parsed = m.split_once('|').and_then(|(f, _)| Fingerprint::parse(f).ok());
            match parsed {
                Some(f) if self.member(label, &f) == m => {
                    out.insert(f);
                }
                _ => {
                    tracing::error!(source = %label, "a trusted key in Redis without this hash_key's mark is ignored: someone with write access to Redis but not the key wrote it")
                }
            }
        }
        out
    }
}

#[async_trait]
impl TrustShare for SharedState {
    async fn claim_or_adopt(
        &self,
        url: &str,
        label: &str,
        local: &BTreeSet<Fingerprint>,
    ) -> Result<BTreeSet<Fingerprint>, String> {
        if local.is_empty() {
            return Ok(self.kept(url, label).await?.unwrap_or_default());
        }
        let mut connection = self.connection().await.map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM).arg(2).arg(self.trust_key(url, label)).arg(format!("{}:founded", self.trust_group(url)));
        for f in local {
            cmd.arg(self.member(label, f));
        }
        let members: Vec<String> = connection.call(&cmd, self.config.timeout).await.map_err(|e| e.to_string())?;
        Ok(self.members(label, members))
    }

    async fn kept(&self, url: &str, label: &str) -> Result<Option<BTreeSet<Fingerprint>>, String> {
        let mut connection = self.connection().await.map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(self.trust_key(url, label));
        let members: Vec<String> = connection.call(&cmd, self.config.timeout).await.map_err(|e| e.to_string())?;
        if members.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.members(label, members)))
    }

    async fn founded(&self, url: &str) -> Result<bool, String> {
        let mut connection = self.connection().await.map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(format!("{}:founded", self.trust_group(url)));
        let n: i64 = connection.call(&cmd, self.config.timeout).await.map_err(|e| e.to_string())?;
        Ok(n > 0)
    }

    async fn append(&self, url: &str, label: &str, key: &Fingerprint) -> Result<(), String> {
        let mut connection = self.connection().await.map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("SADD");
        cmd.arg(self.trust_key(url, label)).arg(self.member(label, key));
        let _: i64 = connection.call(&cmd, self.config.timeout).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}
