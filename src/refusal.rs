//! Why a request was refused, and the one place that turns a reason into a status, a body,
//! a log label and (later) a metric label.

use std::fmt;

/// Every reason wopi-guard refuses a request.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A protected request carries none of the proof headers.
    ProofMissing,
    /// `X-WOPI-TimeStamp` is missing or not a decimal integer.
    TimestampMalformed,
    /// The timestamp is older than `proof.max_age`.
    ProofExpired,
    /// The timestamp is further ahead than `proof.max_future_skew`.
    ProofFromFuture,
    /// The query has more than one `access_token`.
    TokenAmbiguous,
    /// No accepted combination of proof header and key verified, even after re-reading discovery.
    ProofInvalid,
    /// Discovery has never been reached: there are no keys to verify with.
    NoKeys,
}

impl Refusal {
    /// Label for logs and metrics (stable, snake_case).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ProofMissing => "proof_missing",
            Refusal::TimestampMalformed => "timestamp_malformed",
            Refusal::ProofExpired => "proof_expired",
            Refusal::ProofFromFuture => "proof_from_future",
            Refusal::TokenAmbiguous => "token_ambiguous",
            Refusal::ProofInvalid => "proof_invalid",
            Refusal::NoKeys => "no_keys",
        }
    }

    /// The HTTP status: `reject_status` for a refused proof, 503 while there are no keys.
    pub fn status(self, reject_status: u16) -> u16 {
        match self {
            Refusal::NoKeys => 503,
            _ => reject_status,
        }
    }

    /// The short response body: says why, gives away nothing secret.
    pub fn body(self) -> &'static str {
        match self {
            Refusal::ProofMissing => "wopi-guard: refused: no WOPI proof headers\n",
            Refusal::TimestampMalformed => "wopi-guard: refused: X-WOPI-TimeStamp missing or malformed\n",
            Refusal::ProofExpired => "wopi-guard: refused: proof timestamp too old\n",
            Refusal::ProofFromFuture => "wopi-guard: refused: proof timestamp in the future\n",
            Refusal::TokenAmbiguous => "wopi-guard: refused: more than one access_token\n",
            Refusal::ProofInvalid => "wopi-guard: refused: proof does not verify\n",
            Refusal::NoKeys => "wopi-guard: proof keys not loaded yet (discovery unreachable)\n",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_labels() {
        assert_eq!(Refusal::ProofInvalid.status(500), 500);
        assert_eq!(Refusal::ProofExpired.status(401), 401);
        assert_eq!(Refusal::NoKeys.status(500), 503);
        assert_eq!(Refusal::ProofFromFuture.label(), "proof_from_future");
        assert!(Refusal::ProofMissing.body().ends_with('\n'));
    }
}
