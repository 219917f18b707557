//! `rotation`'s trusted sets kept where several instances see them (`[shared]`'s Redis): the
//! first instance to write a source's set wins, later ones (and restarted pods) adopt it, and a
//! proved rotation is added for all. The store keeps deciding alone; this only carries sets.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::key::Fingerprint;

/// Shared storage for trusted sets, per source label (the discovery URL, or `URL@address`).
#[async_trait]
pub trait TrustShare: Send + Sync {
    /// The set kept for `label`; when none is kept yet, `local` becomes it (atomically: the
    /// first writer wins). `Err` says why the storage did not answer.
    async fn claim_or_adopt(&self, label: &str, local: &BTreeSet<Fingerprint>)
        -> Result<BTreeSet<Fingerprint>, String>;

    /// The set kept for `label`, if any (read before trusting on first use).
    async fn kept(&self, label: &str) -> Result<Option<BTreeSet<Fingerprint>>, String>;

    /// Adds a key a request proved to `label`'s set.
    async fn append(&self, label: &str, key: &Fingerprint) -> Result<(), String>;
}
