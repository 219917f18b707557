//! Why a request was refused, and the one place that turns a reason into a status, a body,
//! a log label and (later) a metric label.

use std::fmt;

use crate::policy::LimitScope;

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
    /// The client address is not in `ip.allow`.
    IpDenied,
    /// A rate limit is spent; retry after this many seconds.
    RateLimited {
        /// Which limit.
        scope: LimitScope,
        /// Seconds until a retry could pass.
        retry_after: u32,
    },
    /// The operation is in `operations.deny`.
    OperationDenied,
    /// The request body is larger than `operations.max_body` allows.
    BodyTooLarge,
    /// `access_header` is badly percent-encoded or too large.
    AccessHeaderInvalid,
    /// `proof.replay_cache`: this signed request already passed within the timestamp window.
    ProofReplayed,
    /// `proof.replay_cache` is full of unexpired entries: new proofs are refused until some expire.
    ReplayCacheFull,
    /// The request target is longer than `server.max_target_bytes`.
    TargetTooLong,
    /// The header section is larger than `server.max_header_bytes`.
    HeadersTooLarge,
    /// `Content-Length` together with `Transfer-Encoding`: a request smuggling shape.
    AmbiguousFraming,
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
            Refusal::IpDenied => "ip_denied",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::OperationDenied => "operation_denied",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::AccessHeaderInvalid => "access_header_invalid",
            Refusal::ProofReplayed => "proof_replayed",
            Refusal::ReplayCacheFull => "replay_cache_full",
            Refusal::TargetTooLong => "target_too_long",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::AmbiguousFraming => "ambiguous_framing",
        }
    }

    /// The HTTP status: `reject_status` for a refused proof, 503 while there are no keys, and
    /// the usual status for each policy refusal.
    pub fn status(self, reject_status: u16) -> u16 {
        match self {
            Refusal::NoKeys | Refusal::ReplayCacheFull => 503,
            Refusal::IpDenied | Refusal::OperationDenied => 403,
            Refusal::RateLimited { .. } => 429,
            Refusal::BodyTooLarge => 413,
            Refusal::AccessHeaderInvalid | Refusal::AmbiguousFraming => 400,
            Refusal::TargetTooLong => 414,
            Refusal::HeadersTooLarge => 431,
            Refusal::ProofMissing
            | Refusal::TimestampMalformed
            | Refusal::ProofExpired
            | Refusal::ProofFromFuture
            | Refusal::TokenAmbiguous
            | Refusal::ProofInvalid
            | Refusal::ProofReplayed => reject_status,
        }
    }

    /// `Retry-After` seconds, for a rate-limited request or a full replay cache.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Refusal::RateLimited { retry_after, .. } => Some(retry_after),
            Refusal::ReplayCacheFull => Some(60),
            _ => None,
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
            Refusal::IpDenied => "wopi-guard: refused: client address not allowed\n",
            Refusal::RateLimited { .. } => "wopi-guard: refused: rate limit exceeded, retry later\n",
            Refusal::OperationDenied => "wopi-guard: refused: this WOPI operation is not allowed\n",
            Refusal::BodyTooLarge => "wopi-guard: refused: request body too large for this operation\n",
            Refusal::AccessHeaderInvalid => "wopi-guard: refused: access_header is malformed\n",
            Refusal::ProofReplayed => "wopi-guard: refused: this signed request was already used\n",
            Refusal::ReplayCacheFull => "wopi-guard: replay cache full; retry later\n",
            Refusal::TargetTooLong => "wopi-guard: refused: request target too long\n",
            Refusal::HeadersTooLarge => "wopi-guard: refused: request headers too large\n",
            Refusal::AmbiguousFraming => "wopi-guard: refused: Content-Length with Transfer-Encoding\n",
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
        let limited = Refusal::RateLimited { scope: LimitScope::Ip, retry_after: 3 };
        assert_eq!((limited.status(500), limited.retry_after()), (429, Some(3)));
        assert_eq!(Refusal::IpDenied.status(500), 403);
        assert_eq!(Refusal::BodyTooLarge.status(500), 413);
        assert_eq!(Refusal::AccessHeaderInvalid.status(500), 400);
        assert_eq!(Refusal::ProofInvalid.retry_after(), None);
        assert_eq!(Refusal::ProofReplayed.status(500), 500);
        assert_eq!((Refusal::ReplayCacheFull.status(500), Refusal::ReplayCacheFull.retry_after()), (503, Some(60)));
    }
}
