//! Why a request was refused, and the one place that turns a reason into a status, a body,
//! a log label and a metric label.

use std::fmt;

/// Which rate limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitScope {
    /// `rate_limit.per_ip`.
    Ip,
    /// `rate_limit.per_token`.
    Token,
    /// `rate_limit.per_file`.
    File,
    /// `rate_limit.failed_proofs`.
    FailedProofs,
}

impl LimitScope {
    /// Label for logs.
    pub fn label(self) -> &'static str {
        match self {
            LimitScope::Ip => "ip",
            LimitScope::Token => "token",
            LimitScope::File => "file",
            LimitScope::FailedProofs => "failed_proofs",
        }
    }
}

/// Declares [`Refusal`] with its label, status and body side by side, and the list of every
/// label in declaration order ([`Refusal::LABELS`], the metrics' verdict set), so no list is
/// kept by hand. A status of `reject` is the configured `proof.reject_status`.
macro_rules! refusals {
    ($(
        $(#[$doc:meta])*
        $variant:ident $({ $($(#[$fdoc:meta])* $field:ident : $ty:ty = $sample:expr),* $(,)? })?
            => $label:literal, $status:tt, $body:literal;
    )*) => {
        /// Every reason wopi-guard refuses a request.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Refusal {
            $(
                $(#[$doc])*
                $variant $({ $($(#[$fdoc])* $field: $ty),* })?,
            )*
        }

        impl Refusal {
            /// Every label, in declaration order.
            pub const LABELS: &'static [&'static str] = &[$($label),*];

            /// How many reasons there are.
            pub const COUNT: usize = Self::LABELS.len();

            /// The HTTP status: `reject_status` for a refused proof, 503 while there are no
            /// keys, and the usual status for each policy refusal.
            pub fn status(self, reject_status: u16) -> u16 {
                match self { $(Refusal::$variant { .. } => refusals!(@status $status, reject_status)),* }
            }

            /// Label for logs and metrics (stable, snake_case).
            pub fn label(self) -> &'static str {
                match self { $(Refusal::$variant { .. } => $label),* }
            }

            /// Every reason once, in declaration order; a reason with fields carries a sample
            /// value of each (for tests and documentation tables).
            pub const ALL: [Refusal; Self::COUNT] = [$(Refusal::$variant $({ $($field: $sample),* })?),*];

            /// Position of this reason in [`Refusal::LABELS`] and [`Refusal::ALL`].
            pub fn index(self) -> usize {
                #[allow(dead_code)]
                enum Position { $($variant),* }
                match self { $(Refusal::$variant { .. } => Position::$variant as usize),* }
            }

            /// The short response body: says why, gives away nothing secret.
            pub fn body(self) -> &'static str {
                match self { $(Refusal::$variant { .. } => $body),* }
            }
        }
    };
    (@status reject, $reject:ident) => { $reject };
    (@status $status:literal, $reject:ident) => { $status };
}

refusals! {
    /// A protected request carries none of the proof headers.
    ProofMissing => "proof_missing", reject, "wopi-guard: refused: no WOPI proof headers\n";
    /// `X-WOPI-TimeStamp` is missing or not a decimal integer.
    TimestampMalformed => "timestamp_malformed", reject, "wopi-guard: refused: X-WOPI-TimeStamp missing or malformed\n";
    /// The timestamp is older than `proof.max_age`.
    ProofExpired => "proof_expired", reject, "wopi-guard: refused: proof timestamp too old\n";
    /// The timestamp is further ahead than `proof.max_future_skew`.
    ProofFromFuture => "proof_from_future", reject, "wopi-guard: refused: proof timestamp in the future\n";
    /// The query has more than one `access_token`, counting names that a host reads as
    /// `access_token` (percent-encoded, PHP-folded `access.token`, `access_token[]`, any case).
    TokenAmbiguous => "token_ambiguous", reject, "wopi-guard: refused: more than one access_token\n";
    /// No accepted combination of proof header and key verified, even after re-reading discovery.
    ProofInvalid => "proof_invalid", reject, "wopi-guard: refused: proof does not verify\n";
    /// Discovery has never been reached: there are no keys to verify with.
    NoKeys => "no_keys", 503, "wopi-guard: no trusted proof keys (discovery not reached yet, or every key it served is held by [keys])\n";
    /// The client address is not in `ip.allow`.
    IpDenied => "ip_denied", 403, "wopi-guard: refused: client address not allowed\n";
    /// A rate limit is spent; retry after this many seconds.
    RateLimited {
        /// Which limit.
        scope: LimitScope = LimitScope::Ip,
        /// Seconds until a retry could pass.
        retry_after: u32 = 1,
    } => "rate_limited", 429, "wopi-guard: refused: rate limit exceeded, retry later\n";
    /// `rate_limit.failed_proofs`: this address's protected requests failed verification too
    /// often; refused before any RSA work until its budget refills.
    ProofFailures {
        /// Seconds until a retry could pass.
        retry_after: u32 = 1,
    } => "proof_failures", 429, "wopi-guard: refused: too many failed proofs from this address, retry later\n";
    /// The operation is in `operations.deny`.
    OperationDenied => "operation_denied", 403, "wopi-guard: refused: this WOPI operation is not allowed\n";
    /// The request body is larger than `operations.max_body` allows.
    BodyTooLarge => "body_too_large", 413, "wopi-guard: refused: request body too large for this operation\n";
    /// The request body arrived slower than `server.body_min_rate` over a window.
    BodyTooSlow => "body_too_slow", 408, "wopi-guard: refused: request body arrived too slowly\n";
    /// `access_header` is badly percent-encoded or too large.
    AccessHeaderInvalid => "access_header_invalid", 400, "wopi-guard: refused: access_header is malformed\n";
    /// `proof.replay_cache`: this signed request already passed within the timestamp window.
    ProofReplayed => "proof_replayed", reject, "wopi-guard: refused: this signed request was already used\n";
    /// `proof.replay_cache` is full of unexpired entries: new proofs are refused until some expire.
    ReplayCacheFull => "replay_cache_full", 503, "wopi-guard: replay cache full; retry later\n";
    /// The request target is longer than `server.max_target_bytes`.
    TargetTooLong => "target_too_long", 414, "wopi-guard: refused: request target too long\n";
    /// The header section is larger than `server.max_header_bytes`.
    HeadersTooLarge => "headers_too_large", 431, "wopi-guard: refused: request headers too large\n";
    /// `Content-Length` together with `Transfer-Encoding`: a request smuggling shape.
    AmbiguousFraming => "ambiguous_framing", 400, "wopi-guard: refused: Content-Length with Transfer-Encoding\n";
    /// The client address cannot be determined: a trusted proxy forwarded something that is not
    /// an address. Such requests never share a rate-limit key; they are refused.
    ClientUnknown => "client_unknown", 400, "wopi-guard: refused: the client address cannot be determined\n";
    /// More than one `X-WOPI-Override` header: the gate and the host could read different ones.
    OverrideAmbiguous => "override_ambiguous", 400, "wopi-guard: refused: more than one X-WOPI-Override header\n";
    /// `POST …/files/{id}` with no `X-WOPI-Override`, one that is not exactly a canonical name
    /// (`lock`, `Lock`), or another endpoint's (`PUT`): hosts run PutRelativeFile (Nextcloud) or
    /// something else for it, never what the gate could judge.
    OverrideInvalid => "override_invalid", 400, "wopi-guard: refused: X-WOPI-Override missing or not a canonical operation name for this path\n";
    /// The `Connection` header names an `X-WOPI-*` header or another header the gate read: the
    /// proxy would drop it after the gate judged the request, so the host would see another one.
    ConnectionHeader => "connection_header", 400, "wopi-guard: refused: the Connection header names a header wopi-guard reads\n";
    /// A header name with `_` that a host reads as a header wopi-guard reads, strips or sets
    /// (PHP and CGI turn `X_WOPI_Override` into `HTTP_X_WOPI_OVERRIDE`, as they do
    /// `X-WOPI-Override`): the gate and the host could read different values.
    HeaderUnderscore => "header_underscore", 400, "wopi-guard: refused: a header name with '_' that a host reads as one wopi-guard checks\n";
    /// An asterisk-form request target (`*`) on a method other than OPTIONS.
    TargetFormInvalid => "target_form_invalid", 400, "wopi-guard: refused: request target '*' is only for OPTIONS\n";
    /// Forward-auth: the URI or method header is missing, or both names of it were sent.
    ForwardAuthHeaders => "forward_auth_headers", 400, "wopi-guard: refused: forward-auth needs exactly one URI header and one method header, as [forward_auth] uri_header names (and one X-Forwarded-Host with x-forwarded-uri behind [[routes]])\n";
    /// Forward-auth: the request does not come from `ip.trusted_proxies`.
    ForwardAuthUntrusted => "forward_auth_untrusted", 403, "wopi-guard: forward-auth answers only ip.trusted_proxies\n";
    /// Forward-auth: the original request carries a path or method override header
    /// (`X-Original-URL`, `X-HTTP-Method-Override`, ...), which the host could act on and
    /// wopi-guard cannot remove there.
    OverrideHeader => "override_header", 400, "wopi-guard: refused: path or method override header\n";
    /// `[shared] on_error = "deny"`: Redis does not answer, so no rate limit or replay check
    /// can be made.
    SharedStateUnavailable => "shared_state_unavailable", 503, "wopi-guard: shared state (Redis) unavailable; retry later\n";
    /// `[[routes]]`: no route serves the request's host (and there is no `*` route). Forwarded
    /// nowhere.
    HostUnknown => "host_unknown", 421, "wopi-guard: refused: no route for this Host (misdirected request)\n";
    /// `[[routes]]`: the request's host cannot be told: `Host` repeated or malformed, or naming
    /// another host than an absolute-form request target.
    HostInvalid => "host_invalid", 400, "wopi-guard: refused: Host header repeated, malformed, or unlike the request target's host\n";
    /// The request already passed through this wopi-guard (its own `Via` marker): the upstream
    /// leads back here.
    LoopDetected => "loop_detected", 508, "wopi-guard: refused: request loop (the upstream leads back to wopi-guard)\n";
}

impl Refusal {
    /// `Retry-After` seconds, for a rate-limited request or a full replay cache.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Refusal::RateLimited { retry_after, .. } | Refusal::ProofFailures { retry_after } => Some(retry_after),
            Refusal::ReplayCacheFull => Some(60),
            Refusal::SharedStateUnavailable => Some(2),
            _ => None,
        }
    }
}

impl Refusal {
    /// A refusal of a signed request's proof itself (what `rate_limit.failed_proofs` counts):
    /// not a missing proof, and not one refused for lack of keys or capacity.
    pub fn is_proof_failure(self) -> bool {
        matches!(
            self,
            Refusal::ProofInvalid | Refusal::ProofExpired | Refusal::ProofFromFuture | Refusal::TimestampMalformed
        )
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
        for r in [
            Refusal::ClientUnknown,
            Refusal::OverrideAmbiguous,
            Refusal::TargetFormInvalid,
            Refusal::OverrideInvalid,
            Refusal::ConnectionHeader,
            Refusal::HeaderUnderscore,
        ] {
            assert_eq!(r.status(500), 400, "{r}");
        }
    }

    #[test]
    fn every_reason_is_listed_once_in_order() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
            assert_eq!(Refusal::LABELS[i], r.label());
            assert!(r.body().starts_with("wopi-guard: ") && r.body().ends_with('\n'), "{r}");
            let status = r.status(401);
            assert!(status == 401 || (400..600).contains(&status), "{r}: {status}");
        }
    }

    #[test]
    fn labels_are_listed_once_in_order() {
        assert_eq!(Refusal::LABELS.len(), 32);
        assert_eq!(Refusal::COUNT, 32);
        let failures = Refusal::ProofFailures { retry_after: 4 };
        assert_eq!((failures.label(), failures.status(500), failures.retry_after()), ("proof_failures", 429, Some(4)));
        assert_eq!((Refusal::BodyTooSlow.label(), Refusal::BodyTooSlow.status(500)), ("body_too_slow", 408));
        assert_eq!((Refusal::HostUnknown.status(500), Refusal::HostInvalid.status(500)), (421, 400));
        assert_eq!(Refusal::LoopDetected.status(500), 508);
        let shared = Refusal::SharedStateUnavailable;
        assert_eq!(
            (shared.label(), shared.status(500), shared.retry_after()),
            ("shared_state_unavailable", 503, Some(2))
        );
        assert_eq!(Refusal::LABELS[Refusal::OverrideHeader.index()], "override_header");
        assert_eq!(Refusal::LABELS[limited().index()], "rate_limited");
        let mut sorted = Refusal::LABELS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), Refusal::LABELS.len(), "labels are unique");
    }

    fn limited() -> Refusal {
        Refusal::RateLimited { scope: LimitScope::Token, retry_after: 1 }
    }
}
