//! `[shared]` keeps `rotation`'s trusted sets in Redis, one set per source under
//! `key_prefix:trust:` and the HMAC of the source label: the first instance to write a source's
//! set wins (one script: `SADD` only when the key does not exist yet, then `SMEMBERS`), later
//! instances and restarted pods adopt it, and a proved rotation is `SADD`ed for all. A cluster
//! takes each set on one slot (one key per call).

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::SharedState;
use crate::keys::{Fingerprint, TrustShare};

/// Adds `ARGV` to the set `KEYS[1]` only when it does not exist yet; answers the set.
const CLAIM: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SADD', KEYS[1], unpack(ARGV)) end return redis.call('SMEMBERS', KEYS[1])";

fn parse(members: Vec<String>) -> Result<BTreeSet<Fingerprint>, String> {
    members.iter().map(|m| Fingerprint::parse(m).map_err(|e| format!("a trusted fingerprint in Redis: {e}"))).collect()
}

impl SharedState {
    fn trust_key(&self, label: &str) -> String {
        format!("{}:trust:{}", self.config.key_prefix, self.hash.hex("trust", label.as_bytes()))
    }
}

#[async_trait]
impl TrustShare for SharedState {
    async fn claim_or_adopt(
        &self,
        label: &str,
        local: &BTreeSet<Fingerprint>,
    ) -> Result<BTreeSet<Fingerprint>, String> {
        if local.is_empty() {
            return Ok(self.kept(label).await?.unwrap_or_default());
        }
        let mut connection = self.connection().await.map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM).arg(1).arg(self.trust_key(label));
        for f in local {
            cmd.arg(f.to_string());
        }
        let members: Vec<String> = connection.call(&cmd, self.config.timeout).await.map_err(|e| e.to_string())?;
        parse(members)
    }

    async fn kept(&self, label: &str) -> Result<Option<BTreeSet<Fingerprint>>, String> {
        let mut connection = self.connection().await.map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(self.trust_key(label));
        let members: Vec<String> = connection.call(&cmd, self.config.timeout).await.map_err(|e| e.to_string())?;
        if members.is_empty() {
            return Ok(None);
        }
        parse(members).map(Some)
    }

    async fn append(&self, label: &str, key: &Fingerprint) -> Result<(), String> {
        let mut connection = self.connection().await.map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("SADD");
        cmd.arg(self.trust_key(label)).arg(key.to_string());
        let _: i64 = connection.call(&cmd, self.config.timeout).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}
