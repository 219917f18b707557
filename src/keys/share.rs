//! `rotation`'s trusted sets kept where several instances see them (`[shared]`'s Redis): the
//! first instance to write a source's set wins, later ones (and restarted pods) adopt it, and a
//! proved rotation is added for all. Once any source of a URL has a kept set the URL is
//! *founded*: no instance trusts on first use for it again (a restarted pod of a `resolve_all`
//! fleet adopts each node's set, and a node the fleet never trusted stays held). The store keeps
//! deciding alone; this only carries sets.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::key::Fingerprint;

/// Shared storage for trusted sets, per source label (the discovery URL, or `URL@address`) of a
/// discovery URL.
#[async_trait]
pub trait TrustShare: Send + Sync {
    /// The set kept for `label` of `url`; when none is kept yet, `local` becomes it and `url` is
    /// founded (atomically: the first writer wins). `Err` says why the storage did not answer.
    async fn claim_or_adopt(
        &self,
        url: &str,
        label: &str,
        local: &BTreeSet<Fingerprint>,
    ) -> Result<BTreeSet<Fingerprint>, String>;

    /// The set kept for `label` of `url`, if any.
    async fn kept(&self, url: &str, label: &str) -> Result<Option<BTreeSet<Fingerprint>>, String>;

    /// Whether some source of `url` has a kept set (then nothing is trusted on first use).
    async fn founded(&self, url: &str) -> Result<bool, String>;

    /// Adds a key a request proved to `label`'s set.
    async fn append(&self, url: &str, label: &str, key: &Fingerprint) -> Result<(), String>;
}
