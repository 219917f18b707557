//! The admission decision for one request, with no Pingora in sight: who the client is, whether
//! policy lets it in, whether the path is protected and the proof verifies (re-reading discovery
//! on rotation), and what the upstream request must look like.

use http::{HeaderMap, Method};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{PolicyConfig, ProofConfig, ProofMode, PublicUrl};
use crate::keys::{Fingerprint, ProofKey};
use crate::keys::{KeyStore, Refresher};
use crate::metrics::Metrics;
use crate::operation::{classify, Operation};
use crate::policy::{
    access_headers, came_through_us, client_address, forwarding_plan, strip_access_header, AccessHeaderError,
    HeaderPlan, Hop, RateLimits, ReplayCache, Seen, UnknownClient,
};
use crate::proof::{
    verify_recovering, Combination, Header, ProofHeaders, ProofValid, Query, SignedRequest, Token, UrlForm, Verified,
};
use crate::refusal::{LimitScope, Refusal};
use crate::shared::{SharedState, Subjects};

/// How many requests `rotation` remembers within the window (at least; `proof.replay_cache`'s
/// size when larger), one entry each, as the replay cache keeps them.
const EVIDENCE_ENTRIES: usize = 1_000_000;

/// `rotation`'s record of signed bytes seen within the window.
struct Evidence {
    seen: ReplayCache,
    /// Until when evidence is not taken: the cache was full, so bytes that passed then may be
    /// missing from it.
    full_until: std::sync::Mutex<Option<Instant>>,
}

impl Evidence {
    /// Records `signed`, remembering a full cache for one window.
    fn record(&self, signed: &[u8], now: Instant) -> Seen {
        let seen = self.seen.check_and_remember(signed, now);
        if seen == Seen::Full {
            let window = self.seen.ttl();
            *self.full_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(now + window);
        }
        seen
    }

    /// True while a full cache within the window makes freshness unknowable.
    fn unreliable(&self, now: Instant) -> bool {
        self.full_until.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|until| now < until)
    }
}

/// What the evidence cache said of a request on its arrival (`None`: not recorded).
#[derive(Default)]
struct Arrival(Option<Seen>);

/// What identifies a request's signed bytes whatever form verifies: the request target
/// uppercased (as the signed URL has it; the token and every path and query byte are in it) and
/// the timestamp. Two requests with the same key have the same signed bytes for every
/// `public_url` and token form, so a proof copied from one into the other is caught.
fn evidence_key(raw_target: &[u8], ticks: i64) -> Vec<u8> {
    // Both spellings of a query's quote are one signed message (the verifier's `%27` form): one
    // evidence entry, or a transplant would pass as fresh under the other spelling.
    let canonical = crate::proof::quote_unescaped(raw_target);
    let target = canonical.as_deref().unwrap_or(raw_target);
    let mut key: Vec<u8> = target.iter().map(u8::to_ascii_uppercase).collect();
    key.extend_from_slice(&ticks.to_be_bytes());
    key
}

/// A rotation's evidence waiting for `[shared]`'s replay check: the source, the key, and the
/// trusted key that signed `X-WOPI-ProofOld`.
type Proving = (Arc<str>, crate::keys::ProofKey, String);

/// Why a request may be forwarded. Forwarding requires one; its fields are private, so only
/// [`Gate::check`] makes them.
#[derive(Debug)]
pub struct Admission(Admitted);

#[derive(Debug)]
enum Admitted {
    /// A protected request whose proof verified.
    Verified {
        /// The verifier's marker.
        _proof: ProofValid,
        /// Which combination verified.
        combination: Combination,
        /// Which form of `public_url` verified.
        url_form: UrlForm,
    },
    /// A protected request with no proof headers, from `proof.allow_unsigned_from`.
    UnsignedAllowed,
    /// The path is under `proof.exempt_paths`.
    Exempt,
    /// The path is not under `proof.paths`.
    Unprotected,
    /// Monitor mode: this request would have been refused; it is forwarded anyway.
    Monitored(Refusal),
}

impl Admission {
    /// Label for logs.
    pub fn label(&self) -> &'static str {
        match self.0 {
            Admitted::Verified { .. } => "verified",
            Admitted::UnsignedAllowed => "unsigned_allowed",
            Admitted::Exempt => "exempt",
            Admitted::Unprotected => "unprotected",
            Admitted::Monitored(_) => "monitored",
        }
    }

    /// For a verified proof: which combination, over which form of `public_url`.
    pub fn verified(&self) -> Option<(Combination, UrlForm)> {
        match self.0 {
            Admitted::Verified { combination, url_form, .. } => Some((combination, url_form)),
            _ => None,
        }
    }

    /// Monitor mode: the refusal enforce mode would have made.
    pub fn would_refuse(&self) -> Option<Refusal> {
        match self.0 {
            Admitted::Monitored(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// Whether the request spends `per_token` and `per_file` (and their operation budgets): only
    /// a protected request whose proof verified, or that came unsigned from
    /// `proof.allow_unsigned_from`. Otherwise anyone could spend a chosen file's budget with
    /// unsigned requests to an unprotected or exempt path naming it, and lock the file.
    fn spends_subject_budgets(&self) -> bool {
        matches!(self.0, Admitted::Verified { .. } | Admitted::UnsignedAllowed)
    }

    /// Whether `access_header` is turned into headers: only on a protected path, for a request
    /// whose proof verified, that came unsigned from `proof.allow_unsigned_from`, or that monitor
    /// mode forwards.
    fn honours_access_header(&self) -> bool {
        matches!(self.0, Admitted::Verified { .. } | Admitted::UnsignedAllowed | Admitted::Monitored(_))
    }

    /// The `X-WOPI-Guard-Verified` value for this admission, if it has one.
    fn verified_value(&self) -> Option<&'static str> {
        match self.0 {
            Admitted::Verified { .. } => Some("proof"),
            Admitted::UnsignedAllowed => Some("unsigned-allowed"),
            _ => None,
        }
    }
}

/// What the proxy must do to the upstream request.
#[derive(Debug, Default)]
pub struct UpstreamPlan {
    /// Header removals and settings.
    pub headers: HeaderPlan,
    /// Headers from `access_header` (set after `headers`; also the answer of forward-auth).
    pub access: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Names of `access_header` lines dropped (never values), for a warning.
    pub dropped_access_lines: Vec<(String, &'static str)>,
    /// The request target to send instead (without `access_header`).
    pub target: Option<Vec<u8>>,
    /// Upstream read timeout for this operation.
    pub read_timeout: Option<Duration>,
    /// Largest request body for this operation.
    pub max_body: Option<u64>,
    /// The client sent its own `X-WOPI-Guard-Verified` (stripped).
    pub spoofed_verified_header: bool,
    /// Path and method override headers the client sent (stripped; names only, for the log).
    pub stripped_overrides: Vec<&'static str>,
}

/// A request as the gate sees it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Method.
    pub method: &'a Method,
    /// Request target exactly as received.
    pub raw_target: &'a [u8],
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Socket peer (`None` for a Unix socket).
    pub peer: Option<IpAddr>,
}

/// The verdict on one request, with what the logs need either way.
#[derive(Debug)]
pub struct Decision {
    /// Admitted (with the plan for the upstream request) or refused.
    pub verdict: Result<(Admission, UpstreamPlan), Refusal>,
    /// The WOPI operation.
    pub operation: Operation,
    /// The client address (`None`: unknown, and the request refused as `client_unknown`).
    pub client: Option<IpAddr>,
    /// Why the client address is unknown, for the log line.
    pub client_problem: Option<UnknownClient>,
    /// Where the WOPI file id is in the request target: the logs hash it (`file:` + 12 hex
    /// digits) only when a line is written.
    pub file_id: Option<std::ops::Range<usize>>,
}

/// Everything the decision needs; shared by all requests.
pub struct Gate {
    keys: KeyStore,
    refresher: Refresher,
    public_url: PublicUrl,
    proof: ProofConfig,
    policy: PolicyConfig,
    limits: Arc<RateLimits>,
    replay: Option<Arc<ReplayCache>>,
    /// `[shared]`: rate limits and replay cache on Redis instead of `limits` and `replay`.
    shared: Option<Arc<SharedState>>,
    /// `keys.trust = "rotation"`: the signed bytes of every verified request within the window,
    /// so a rotation's evidence (a request signed by a held key and a trusted one) is taken only
    /// from bytes never seen before, whatever `proof.replay_cache` says.
    evidence: Option<Arc<Evidence>>,
    metrics: Arc<Metrics>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

impl Gate {
    /// A gate over the keys `refresher` keeps fresh.
    pub fn new(
        refresher: Refresher,
        public_url: PublicUrl,
        proof: ProofConfig,
        policy: PolicyConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limits = Arc::new(RateLimits::new(&policy.rate_limit));
        let window = proof.window.max_age + proof.window.max_future_skew;
        let replay = proof.replay_cache.map(|capacity| Arc::new(ReplayCache::new(capacity, window)));
        Gate {
            keys: refresher.store().clone(),
            refresher,
            public_url,
            proof,
            policy,
            limits,
            replay,
            shared: None,
            evidence: None,
            metrics,
        }
    }

    /// With `keys.trust = "rotation"`: keeps the signed bytes of verified requests, so a held key
    /// is trusted only on evidence no one has seen ([`Gate::check`]).
    pub fn with_rotation(mut self, rotation: bool) -> Self {
        self.evidence = rotation.then(|| {
            let window = self.proof.window.max_age + self.proof.window.max_future_skew;
            let capacity = self.proof.replay_cache.unwrap_or(0).max(EVIDENCE_ENTRIES);
            Arc::new(Evidence { seen: ReplayCache::new(capacity, window), full_until: std::sync::Mutex::new(None) })
        });
        self
    }

    /// With `[shared]`: rate limits and the replay check go to Redis through `shared`.
    pub fn with_shared(mut self, shared: Option<Arc<SharedState>>) -> Self {
        self.shared = shared;
        self
    }

    /// The `[shared]` state in force, if any.
    pub fn shared(&self) -> Option<&Arc<SharedState>> {
        self.shared.as_ref()
    }

    /// After a reload: keeps `previous`'s rate-limit state when `[rate_limit]` did not change,
    /// so a reload does not hand every client a fresh burst.
    pub fn keeping_limits_of(mut self, previous: &Gate) -> Self {
        if self.policy.rate_limit == previous.policy.rate_limit {
            self.limits = previous.limits.clone();
        }
        self.keeping_replay_of(previous)
    }

    /// After a reload: keeps `previous`'s replay cache and rotation evidence (a reload must not
    /// make recent proofs usable again).
    pub fn keeping_replay_of(mut self, previous: &Gate) -> Self {
        // Likewise the replay cache: a reload must not make recent proofs usable again, whatever
        // it changes of the window or the size.
        if let (Some(capacity), Some(cache)) = (self.proof.replay_cache, &previous.replay) {
            cache.resize(capacity, self.proof.window.max_age + self.proof.window.max_future_skew);
            self.replay = Some(cache.clone());
        }
        // And the bytes a rotation's evidence must not repeat.
        if let (Some(mine), Some(cache)) = (&self.evidence, &previous.evidence) {
            cache.seen.resize(mine.seen.capacity(), self.proof.window.max_age + self.proof.window.max_future_skew);
            self.evidence = Some(cache.clone());
        }
        self
    }

    /// The discovery sources behind the keys.
    pub fn refresher(&self) -> &Refresher {
        &self.refresher
    }

    /// The metrics this gate records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The same, shared.
    pub fn metrics_arc(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The key store in force.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The configured public base URL.
    pub fn public_url(&self) -> &PublicUrl {
        &self.public_url
    }

    /// The header pair forward-auth subrequests carry the original request in.
    pub fn forward_auth_headers(&self) -> crate::policy::ForwardAuthHeaders {
        self.policy.forward_auth.headers
    }

    /// True when `peer` is one of `ip.trusted_proxies`.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|p| self.policy.ip.trusted_proxies.contains(p))
    }

    /// Status for a refusal under this configuration.
    pub fn status_of(&self, refusal: Refusal) -> u16 {
        refusal.status(self.proof.reject_status)
    }

    /// Decides one request. `scratch` is reused for the signed bytes.
    pub async fn check(&self, req: &Incoming<'_>, now: SystemTime, scratch: &mut Vec<u8>) -> Decision {
        let client = match req.peer {
            Some(peer) => {
                client_address(peer, req.headers, &self.policy.ip.trusted_proxies, self.policy.ip.forwarded_header)
            }
            None => Err(UnknownClient::NoPeer),
        };
        let mut overrides = req.headers.get_all("x-wopi-override").iter();
        let override_ = overrides.next().map(|v| v.as_bytes());
        let override_repeated = overrides.next().is_some();
        let classified =
            classify(req.method.as_str(), req.raw_target, override_, req.headers.contains_key("x-wopi-oldlock"));
        let operation = classified.operation;
        let query = Query::parse(req.raw_target);
        // `rotation`: the signed bytes are recorded before any refusal, so a genuine request
        // refused by policy (denied, limited, from outside the allow-list) is not fresh evidence
        // for a forger who copies its X-WOPI-Proof later.
        let arrival = self.record_arrival(req);
        let verdict = match client {
            // First: a request that went round a loop is stopped before it costs anything more.
            _ if came_through_us(req.headers) => Err(Refusal::LoopDetected),
            // Never a shared "unknown" key: a request from nobody in particular is refused.
            Err(_) => Err(Refusal::ClientUnknown),
            // The gate reads the first override, PHP the last: two are refused, not guessed at.
            Ok(_) if override_repeated => Err(Refusal::OverrideAmbiguous),
            // The host would run another operation than any the gate could judge.
            Ok(_) if classified.override_invalid => Err(Refusal::OverrideInvalid),
            // A header the proxy would drop after the gate read it: the host would see another request.
            Ok(_) if connection_names_a_read_header(req.headers) => Err(Refusal::ConnectionHeader),
            // `X_WOPI_Override` is `X-WOPI-Override` to PHP and CGI hosts, never to the gate.
            Ok(_) if underscore_lookalike(req.headers, &self.policy.forward.access_header_names) => {
                Err(Refusal::HeaderUnderscore)
            }
            Ok(client) => self.decide(req, &query, client, operation, classified.file_id, now, scratch, &arrival).await,
        };
        let file_id = classified.file_id.map(|id| within(req.raw_target, id));
        Decision { verdict, operation, client: client.ok(), client_problem: client.err(), file_id }
    }

    #[allow(clippy::too_many_arguments)] // the request's parts, each read once by `check`
    async fn decide(
        &self,
        req: &Incoming<'_>,
        query: &Query<'_>,
        client: IpAddr,
        operation: Operation,
        file_id: Option<&[u8]>,
        now: SystemTime,
        scratch: &mut Vec<u8>,
        arrival: &Arrival,
    ) -> Result<(Admission, UpstreamPlan), Refusal> {
        let policy = &self.policy;
        if !policy.ip.allow.admits(client) {
            return Err(Refusal::IpDenied);
        }
        // An override no built-in operation has spends PutRelativeFile's per-operation budgets
        // unless a budget names it (Nextcloud runs PutRelativeFile for it).
        let budget_op = self.budget_operation(operation);
        // Shared: only what Redis already said is over its limit; the one call comes later.
        let address_keys = match &self.shared {
            Some(shared) => shared.precheck(client, budget_op)?,
            None => {
                self.limits.check_ip(client, budget_op).map_err(limited)?;
                Vec::new()
            }
        };
        if policy.operations.denies(operation) {
            return Err(Refusal::OperationDenied);
        }
        let max_body = policy.operations.max_body(operation);
        let declared =
            header(req.headers, "content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        if let (Some(max), Some(len)) = (max_body, declared) {
            if len > max {
                return Err(Refusal::BodyTooLarge);
            }
        }

        // `rotation` with `[shared]`: a proof to trust once Redis said its bytes are new.
        let mut proving = None;
        let admission = self.admission(req, query, client, now, scratch, (arrival, &mut proving)).await;
        let token = match query.token {
            Token::Present { raw, .. } => Some(raw),
            _ => None,
        };
        match &self.shared {
            Some(shared) => {
                // One round trip: every budget, and the first use of a verified proof.
                let replay = match &admission {
                    Ok(a) if a.verified().is_some() => Some(&scratch[..]),
                    _ => None,
                };
                let subjects = match &admission {
                    Ok(a) if a.spends_subject_budgets() => {
                        Subjects { client, token, file: file_id, operation: budget_op, failed_proof: false }
                    }
                    // A refused proof still spends the address's budget, as without [shared]; so
                    // do unprotected, exempt and monitored requests, and only that one. A failed
                    // proof spends the address's failed_proofs too.
                    _ => Subjects {
                        client,
                        token: None,
                        file: None,
                        operation: budget_op,
                        failed_proof: admission.as_ref().is_err_and(|r| r.is_proof_failure()),
                    },
                };
                match (&admission, shared.admit_checked(address_keys, &subjects, replay).await) {
                    (_, Err(limited @ (Refusal::RateLimited { .. } | Refusal::ProofFailures { .. }))) => {
                        return Err(limited)
                    }
                    (Ok(_), Err(refusal)) => return Err(refusal),
                    // Redis itself recorded the signed bytes as never seen: the evidence holds.
                    (Ok(_), Ok(true)) => {
                        if let Some((label, key, by)) = proving.take() {
                            self.trust_proved(&label, &key, &by);
                        }
                    }
                    _ => {}
                }
            }
            None => {
                if admission.as_ref().is_ok_and(Admission::spends_subject_budgets) {
                    self.limits.check_admitted(token, file_id, budget_op).map_err(limited)?;
                }
                // A failed proof spends the address's failed_proofs; one too many is refused
                // as such (the ones after it before any RSA work).
                if admission.as_ref().is_err_and(|r| r.is_proof_failure()) && self.proof.mode == ProofMode::Enforce {
                    self.limits.failed_proof(client).map_err(limited)?;
                }
            }
        }
        let admission = admission?;
        // A proof that verified, was new and passed every budget: its address's failed_proofs
        // budget is whole again (a replayed or limited one gives nothing back).
        if admission.verified().is_some() {
            match &self.shared {
                Some(shared) => shared.proof_verified(client).await,
                None => self.limits.proof_verified(client),
            }
        }
        // access_header is honoured only where a proof (or its stated absence) was judged:
        // elsewhere the request goes on untouched, the parameter included, and makes no header.
        let access = if admission.honours_access_header() {
            access_headers(query, &policy.forward.access_header_names).map_err(|e| match e {
                AccessHeaderError::BadPercentEncoding | AccessHeaderError::TooLarge => Refusal::AccessHeaderInvalid,
            })?
        } else {
            None
        };

        let hop = Hop {
            peer: req.peer,
            peer_trusted: req.peer.is_some_and(|p| policy.ip.trusted_proxies.contains(p)),
            scheme: policy.listener_scheme,
            forwarded_header: policy.ip.forwarded_header,
            verified: if policy.forward.verified_header { admission.verified_value() } else { None },
        };
        let forwarding = forwarding_plan(&hop, req.headers);
        let (access, dropped_access_lines) = access.map(|a| (a.set, a.dropped)).unwrap_or_default();
        let plan = UpstreamPlan {
            headers: forwarding.headers,
            access,
            dropped_access_lines,
            target: if admission.honours_access_header() { strip_access_header(req.raw_target, query) } else { None },
            read_timeout: policy.operations.read_timeout(operation),
            max_body,
            spoofed_verified_header: forwarding.spoofed_verified,
            stripped_overrides: forwarding.stripped_overrides,
        };
        Ok((admission, plan))
    }

    async fn admission(
        &self,
        req: &Incoming<'_>,
        query: &Query<'_>,
        client: IpAddr,
        now: SystemTime,
        scratch: &mut Vec<u8>,
        (arrival, proving): (&Arrival, &mut Option<Proving>),
    ) -> Result<Admission, Refusal> {
        if self.proof.exempt_paths.is_protected(req.raw_target) {
            return Ok(Admission(Admitted::Exempt));
        }
        if !self.proof.paths.is_protected(req.raw_target) {
            return Ok(Admission(Admitted::Unprotected));
        }
        let headers = ProofHeaders {
            proof: header(req.headers, "x-wopi-proof"),
            proof_old: header(req.headers, "x-wopi-proofold"),
            timestamp: header(req.headers, "x-wopi-timestamp"),
        };
        if headers.all_absent() && self.proof.allow_unsigned_from.contains(client) {
            // The verifier refuses an ambiguous token on signed requests; an unsigned one from
            // `allow_unsigned_from` must not carry a token the host could read differently either.
            if query.token == Token::Ambiguous {
                return match self.proof.mode {
                    ProofMode::Monitor => Ok(Admission(Admitted::Monitored(Refusal::TokenAmbiguous))),
                    ProofMode::Enforce => Err(Refusal::TokenAmbiguous),
                };
            }
            return Ok(Admission(Admitted::UnsignedAllowed));
        }
        let request = SignedRequest {
            url_base_upper: self.public_url.upper(),
            url_base_alt_upper: self.public_url.alt_upper(),
            raw_target: req.raw_target,
            headers,
        };
        // `rate_limit.failed_proofs`: an address whose proofs keep failing gets no more RSA work
        // until its budget refills (monitor mode forwards anyway, so it is not applied there).
        if self.proof.mode == ProofMode::Enforce {
            match &self.shared {
                Some(shared) => shared.failures_refused(client)?,
                None => self.limits.failures_blocked(client).map_err(limited)?,
            }
        }
        let verified = self.verify_with_refetch(&request, &query.token, now, scratch).await;
        // On success `scratch` holds the signed bytes that verified. The replay check first: a
        // replayed message proves nothing, so no rotation is trusted on it.
        let verified = verified.and_then(|v| self.first_use(scratch).map(|()| v));
        match verified.and_then(|v| self.rotation(&v, scratch, request.headers.proof, arrival, proving).map(|()| v)) {
            Ok(v) => {
                Ok(Admission(Admitted::Verified { _proof: v.valid, combination: v.combination, url_form: v.url_form }))
            }
            Err(refusal) if self.proof.mode == ProofMode::Monitor => Ok(Admission(Admitted::Monitored(refusal))),
            Err(refusal) => Err(refusal),
        }
    }

    /// `keys.trust = "rotation"`: records the signed bytes of a verified request, and when its
    /// `X-WOPI-Proof` verifies with a held key while its `X-WOPI-ProofOld` verified with a
    /// trusted key of the same URL, trusts the held key, but only if those bytes were never seen
    /// (a genuine request's `X-WOPI-Proof` copied into a forged one's `X-WOPI-ProofOld` is a
    /// replay: refused).
    ///
    /// With `[shared]`, the bytes must be new to every instance (a transplant may be sent to
    /// another instance than the genuine request): the key is trusted only once Redis's replay
    /// check passed (`proof.replay_cache` on, in the same round trip), through `proving`; with
    /// `proof.replay_cache` off no rotation is proved under `[shared]` (a warn line says so).
    fn rotation(
        &self,
        verified: &Verified,
        signed: &[u8],
        proof: Option<&[u8]>,
        arrival: &Arrival,
        proving: &mut Option<Proving>,
    ) -> Result<(), Refusal> {
        let Some(evidence) = &self.evidence else { return Ok(()) };
        let keys = self.keys.snapshot();
        let Some(proved) = crate::proof::rotation_evidence(&keys, verified, signed, proof) else { return Ok(()) };
        let by = keys.sources.iter().find(|s| s.index == verified.source).map_or("", |s| s.current.fingerprint());
        // Not recorded on arrival, or the cache was full within the window (bytes it could not
        // hold may have passed): no evidence can be told fresh, so none is taken.
        let fresh = match arrival.0 {
            Some(seen) if !evidence.unreliable(Instant::now()) => seen,
            _ => {
                tracing::warn!(route = self.keys.route(), source = %proved.label, key = proved.key.fingerprint(), "a request proves a held key, but the evidence cache was full within the proof window: the key stays held");
                return Ok(());
            }
        };
        match fresh {
            Seen::Fresh if self.shared.is_none() => {
                self.trust_proved(&proved.label, &proved.key, by);
                Ok(())
            }
            Seen::Fresh if self.proof.replay_cache.is_some() => {
                *proving = Some((proved.label.clone(), proved.key.clone(), by.to_owned()));
                Ok(())
            }
            Seen::Fresh => {
                tracing::warn!(route = self.keys.route(), source = %proved.label, key = proved.key.fingerprint(), "a request proves a held key, but with [shared] a rotation is proved only with proof.replay_cache = true (the signed bytes must be new to every instance): the key stays held; pin it, or turn the replay cache on");
                Ok(())
            }
            Seen::Replayed => Err(Refusal::ProofReplayed),
            Seen::Full => Err(Refusal::ReplayCacheFull),
        }
    }

    /// `rotation`: records the request (its [`evidence_key`]) in the evidence cache before any
    /// refusal, and what the cache said of it.
    fn record_arrival(&self, req: &Incoming<'_>) -> Arrival {
        let Some(evidence) = &self.evidence else { return Arrival::default() };
        let headers = ProofHeaders {
            proof: header(req.headers, "x-wopi-proof"),
            proof_old: header(req.headers, "x-wopi-proofold"),
            timestamp: header(req.headers, "x-wopi-timestamp"),
        };
        let Some(ticks) = headers.timestamp.and_then(crate::proof::parse_ticks) else { return Arrival::default() };
        if headers.proof.is_none() && headers.proof_old.is_none() {
            return Arrival::default();
        }
        Arrival(Some(evidence.record(&evidence_key(req.raw_target, ticks), Instant::now())))
    }

    /// The operation whose per-operation rate budgets `op` spends: its own when a budget names
    /// it, else, for an override no built-in operation has, PutRelativeFile's.
    fn budget_operation(&self, op: Operation) -> Operation {
        if !crate::config::is_other_override(op) {
            return op;
        }
        let rl = &self.policy.rate_limit;
        let named = [&rl.per_ip, &rl.per_token, &rl.per_file]
            .into_iter()
            .flatten()
            .any(|limit| limit.operations.iter().any(|(o, _)| *o == op));
        if named {
            op
        } else {
            Operation::PutRelativeFile
        }
    }

    /// A proved rotation: the key is trusted (and written where trust is kept) and counted.
    fn trust_proved(&self, label: &Arc<str>, key: &crate::keys::ProofKey, by: &str) {
        if self.refresher.prove(label, key, by) {
            self.metrics.rotation_proved();
        }
    }

    /// With `proof.replay_cache`: refuses signed bytes that already passed within the window.
    fn first_use(&self, signed: &[u8]) -> Result<(), Refusal> {
        if self.shared.is_some() {
            return Ok(()); // checked in Redis, with the rate limits, in one round trip
        }
        let Some(cache) = &self.replay else { return Ok(()) };
        match cache.check_and_remember(signed, Instant::now()) {
            Seen::Fresh => Ok(()),
            Seen::Replayed => Err(Refusal::ProofReplayed),
            Seen::Full => Err(Refusal::ReplayCacheFull),
        }
    }

    async fn verify_with_refetch(
        &self,
        request: &SignedRequest<'_>,
        token: &Token<'_>,
        now: SystemTime,
        scratch: &mut Vec<u8>,
    ) -> Result<Verified, Refusal> {
        let mut memo = Recoveries::default();
        let (first, generation) = self.verify_once(request, token, now, scratch, &mut memo);
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
                    // Only keys the re-fetch changed cost a public operation again.
                    memo.replaying = true;
                    self.verify_once(request, token, now, scratch, &mut memo).0
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
        token: &Token<'_>,
        now: SystemTime,
        scratch: &mut Vec<u8>,
        memo: &mut Recoveries,
    ) -> (Result<Verified, Refusal>, u64) {
        let keys = self.keys.snapshot();
        let started = Instant::now();
        let mut recover = |key: &ProofKey, header: Header, signature: &[u8]| memo.recover(key, header, signature);
        let result = verify_recovering(&keys, request, token, &self.proof.window, now, scratch, &mut recover);
        self.metrics.verification_time(started.elapsed());
        (result, keys.generation)
    }
}

/// Headers the gate (or the forwarding that follows it) reads: a `Connection` header naming one
/// would make the proxy drop it after the decision, so the host would act on another request.
const READ_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "transfer-encoding",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-original-uri",
    "x-original-method",
];

/// True when a `Connection` header names an `X-WOPI-*` header or one of [`READ_HEADERS`].
pub fn connection_names_a_read_header(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|token| {
            let starts =
                |prefix: &[u8]| token.len() >= prefix.len() && token[..prefix.len()].eq_ignore_ascii_case(prefix);
            starts(b"x-wopi-") || READ_HEADERS.iter().any(|h| token.eq_ignore_ascii_case(h.as_bytes()))
        })
}

/// True when a header name has a `_` and, read with `-` for it (as PHP and CGI do), names a
/// header the gate reads, strips or sets: any `X-WOPI-*` or `X-Forwarded-*`, the path and method
/// overrides, the identity and forwarding headers, the ones in [`READ_HEADERS`], `Authorization`
/// and the `access_header_names`.
pub fn underscore_lookalike(headers: &HeaderMap, access_names: &[http::HeaderName]) -> bool {
    use crate::policy::{IDENTITY_HEADERS, OVERRIDE_HEADERS};
    headers.keys().filter(|n| n.as_str().contains('_')).any(|name| {
        let dashed = name.as_str().replace('_', "-");
        let d = dashed.as_str();
        d.starts_with("x-wopi-")
            || d.starts_with("x-forwarded-")
            || OVERRIDE_HEADERS.contains(&d)
            || IDENTITY_HEADERS.contains(&d)
            || READ_HEADERS.contains(&d)
            || d == "authorization"
            || d == "connection"
            || access_names.iter().any(|a| a.as_str() == d)
    })
}

/// Where `part`, a sub-slice of `whole`, lies in it.
fn within(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    debug_assert!(start + part.len() <= whole.len(), "not a sub-slice");
    start..start + part.len()
}

/// One request's public operations, kept for the pass after a re-fetch: a key it already tried
/// is not tried again (only keys the re-fetch changed are).
/// One public operation's outcome: the key, the header, the digest its signature carried.
type Recovery = (Fingerprint, Header, Option<[u8; 32]>);

/// On the stack (no allocation per request): a forgery's operations over 8 sources.
#[derive(Default)]
struct Recoveries {
    done: [Option<Recovery>; 24],
    /// The pass after the re-fetch: answer from `done` where it can.
    replaying: bool,
}

impl Recoveries {
    fn recover(&mut self, key: &ProofKey, header: Header, signature: &[u8]) -> Option<[u8; 32]> {
        let id = key.id();
        let same = |(k, h, _): &Recovery| *k == id && *h == header;
        if self.replaying {
            if let Some((_, _, d)) = self.done.iter().flatten().find(|e| same(e)) {
                return *d;
            }
            return key.recover(signature);
        }
        let digest = key.recover(signature);
        if let Some(free) = self.done.iter_mut().find(|e| e.is_none()) {
            *free = Some((id, header, digest));
        }
        digest
    }
}

fn limited(l: crate::policy::Limited) -> Refusal {
    match l.scope {
        LimitScope::FailedProofs => Refusal::ProofFailures { retry_after: l.retry_after },
        scope => Refusal::RateLimited { scope, retry_after: l.retry_after },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Signer;

    #[test]
    fn both_spellings_of_a_query_quote_are_one_evidence_entry() {
        // The verifier reads `%27` in a query as `'`: a transplant under the other spelling
        // must meet the genuine request's entry.
        assert_eq!(
            evidence_key(b"/wopi/files/1?access_token=o%27n", 7),
            evidence_key(b"/wopi/files/1?access_token=o'n", 7)
        );
        assert_ne!(evidence_key(b"/a%27/files?x=1", 7), evidence_key(b"/a'/files?x=1", 7), "the path is the path's");
        assert_ne!(evidence_key(b"/a?x=1", 7), evidence_key(b"/a?x=1", 8));
    }

    #[test]
    fn after_a_re_fetch_only_changed_keys_cost_a_public_operation() {
        let (kept, new) = (Signer::generate(2048), Signer::generate(2048));
        let key = |s: &Signer| ProofKey::from_components(s.modulus(), s.exponent()).unwrap();
        let (kept_key, new_key) = (key(&kept), key(&new));
        let signature = new.sign(b"message");
        let mut memo = Recoveries::default();
        // The first pass tried the kept key with both headers.
        assert_eq!(memo.recover(&kept_key, Header::Proof, &signature), None);
        assert_eq!(memo.recover(&kept_key, Header::ProofOld, &signature), None);
        memo.replaying = true;
        // Answered from the first pass, with a signature it could not have checked: no new work.
        let other = kept.sign(b"message");
        assert_eq!(memo.recover(&kept_key, Header::Proof, &other), None, "not recomputed");
        // A key the re-fetch brought is tried.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"message");
        assert_eq!(memo.recover(&new_key, Header::Proof, &signature).unwrap()[..], *digest.as_ref());
    }
}
