//! The admission decision for one request, with no Pingora in sight: is the path protected, does
//! the proof verify, and if not, does a re-read of discovery (key rotation) change that.

use std::time::SystemTime;

use crate::config::{ProofConfig, ProofMode, PublicUrl};
use crate::keys::{KeyStore, Refresher};
use crate::proof::{verify, Combination, ProofHeaders, ProofValid, SignedRequest, Verified};
use crate::refusal::Refusal;

/// Why a request may be forwarded. Forwarding requires one; only [`Gate::check`] makes them.
#[derive(Debug)]
pub enum Admission {
    /// A protected request whose proof verified.
    Verified {
        /// The verifier's marker.
        proof: ProofValid,
        /// Which combination verified.
        combination: Combination,
        /// Index of the discovery source whose key verified.
        source: usize,
    },
    /// The path is not under `proof.paths`.
    Unprotected,
    /// Monitor mode: this request would have been refused; it is forwarded anyway.
    Monitored(Refusal),
}

/// Everything the decision needs; shared by all requests.
pub struct Gate {
    keys: KeyStore,
    refresher: Refresher,
    public_url: PublicUrl,
    proof: ProofConfig,
}

impl Gate {
    /// A gate over the keys `refresher` keeps fresh.
    pub fn new(refresher: Refresher, public_url: PublicUrl, proof: ProofConfig) -> Self {
        Gate { keys: refresher.store().clone(), refresher, public_url, proof }
    }

    /// The key store in force.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The configured public base URL.
    pub fn public_url(&self) -> &PublicUrl {
        &self.public_url
    }

    /// Status for a refusal under this configuration.
    pub fn status_of(&self, refusal: Refusal) -> u16 {
        refusal.status(self.proof.reject_status)
    }

    /// Decides one request. `scratch` is reused for the signed bytes.
    pub async fn check(
        &self,
        raw_target: &[u8],
        headers: ProofHeaders<'_>,
        now: SystemTime,
        scratch: &mut Vec<u8>,
    ) -> Result<Admission, Refusal> {
        if !self.proof.paths.is_protected(raw_target) {
            return Ok(Admission::Unprotected);
        }
        let request = SignedRequest { url_base_upper: self.public_url.upper(), raw_target, headers };
        match self.verify_with_refetch(&request, now, scratch).await {
            Ok(v) => Ok(Admission::Verified { proof: v.valid, combination: v.combination, source: v.source }),
            Err(refusal) if self.proof.mode == ProofMode::Monitor => Ok(Admission::Monitored(refusal)),
            Err(refusal) => Err(refusal),
        }
    }

    async fn verify_with_refetch(
        &self,
        request: &SignedRequest<'_>,
        now: SystemTime,
        scratch: &mut Vec<u8>,
    ) -> Result<Verified, Refusal> {
        let (first, generation) = self.verify_once(request, now, scratch);
        match first {
            Ok(verified) => {
                if verified.combination.suggests_rotation() {
                    self.refresher.refetch_in_background();
                }
                Ok(verified)
            }
            Err(Refusal::NoKeys) => {
                // Never hold a request while discovery is down; let the retry run on its own.
                self.refresher.refetch_in_background();
                Err(Refusal::NoKeys)
            }
            Err(Refusal::ProofInvalid) => {
                if self.refresher.refetch_after_failure(generation).await {
                    self.verify_once(request, now, scratch).0
                } else {
                    Err(Refusal::ProofInvalid)
                }
            }
            Err(other) => Err(other),
        }
    }

    fn verify_once(
        &self,
        request: &SignedRequest<'_>,
        now: SystemTime,
        scratch: &mut Vec<u8>,
    ) -> (Result<Verified, Refusal>, u64) {
        let keys = self.keys.snapshot();
        (verify(&keys, request, &self.proof.window, now, scratch), keys.generation)
    }
}
