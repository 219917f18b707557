//! The Pingora glue: each phase calls a plain function (`Gate::check`, [`Answer`],
//! [`access_log::write`]), and forwarding requires the [`Admission`] held in
//! [`Stage::Forwarding`].

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::access_log::{self, Outcome};
use super::body_rate::{BodyRate, BODY_RATE_WINDOW};
use super::drain::InFlight;
use super::head_deadline;
use super::health;
use super::pool::Tried;
use super::respond::Answer;
use super::runtime::{Active, Route, Shared};
use super::scratch::Scratch;
use crate::framing::{check_shape, RequestLimits, Shape};
use crate::gate::{Admission, Decision, Incoming, UpstreamPlan};
use crate::metrics::RouteMetrics;
use crate::operation::Operation;
use crate::policy::UnknownClient;
use crate::refusal::Refusal;

/// Where a request is.
#[derive(Debug)]
pub enum Stage {
    /// Not decided yet.
    Pending,
    /// Refused; answered and logged.
    Refused,
    /// Forward-auth: answered "allowed" for this admission.
    Answered(Admission),
    /// Admitted: forwarded under this plan.
    Forwarding {
        /// Why it may be forwarded.
        admission: Admission,
        /// What to change in the upstream request.
        plan: UpstreamPlan,
    },
}

impl Stage {
    /// The admission, once there is one.
    pub(super) fn admission(&self) -> Option<&Admission> {
        match self {
            Stage::Answered(admission) | Stage::Forwarding { admission, .. } => Some(admission),
            Stage::Pending | Stage::Refused => None,
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    /// The configuration in force when the request started; kept to its end.
    pub(super) active: Arc<Active>,
    /// Its route in `active.routes`, once chosen (at once without `[[routes]]`).
    pub(super) route: Option<usize>,
    pub(super) stage: Stage,
    pub(super) operation: Operation,
    pub(super) client: Option<IpAddr>,
    /// Why the client address is unknown (the request was refused for it).
    pub(super) client_problem: Option<UnknownClient>,
    /// Where the WOPI file id is in the target the gate checked (hashed when logged).
    pub(super) file_id: Option<std::ops::Range<usize>>,
    /// Made when the first line about the request is written.
    pub(super) request_id: Option<String>,
    /// Forward-auth: the original request target it was asked about.
    pub(super) original_target: Option<Vec<u8>>,
    body_bytes: u64,
    /// `server.body_min_rate`'s meter, for a forwarded request with a body (started by its
    /// first chunk).
    body_rate: Option<(u64, Option<BodyRate>)>,
    /// The body was cut for `server.body_min_rate`.
    body_too_slow: bool,
    pub(super) started: Instant,
    pub(super) upstream_started: Option<Instant>,
    /// The signed bytes, in a buffer on loan from the worker's free list.
    pub(super) scratch: Scratch,
    /// The upstream members tried, and the one tried last.
    tried: Tried,
    pub(super) member: Option<usize>,
    /// The last member's connection failed (counted there already).
    connect_failed: bool,
    /// The last attempt failed on a reused keep-alive connection and may be retried: with no
    /// untried member left, once more on the same one (a fresh connection).
    reused_failed: bool,
    /// That one retry on the same member was made.
    retried_same: bool,
    /// Counts this request as in flight for a drain, until the context is dropped.
    _in_flight: InFlight,
}

impl RequestCtx {
    /// The request's route, once chosen.
    pub(super) fn route(&self) -> Option<&Route> {
        self.route.map(|i| &self.active.routes[i])
    }

    /// Where the request is counted: its route's counters, or the unlabelled ones before a route
    /// was chosen.
    pub(super) fn counters(&self) -> &RouteMetrics {
        self.route().map_or(&self.active.unrouted, |r| &r.metrics)
    }

    /// The status of `refusal` under the route's `proof.reject_status` (before a route is
    /// chosen only refusals with a fixed status are made).
    fn status_of(&self, refusal: Refusal) -> u16 {
        self.route().map_or_else(|| refusal.status(500), |r| r.gate.status_of(refusal))
    }
}

/// The proxy: the gate in front, one upstream behind, both from the configuration in force.
pub struct WopiProxy {
    shared: Arc<Shared>,
}

impl WopiProxy {
    /// A proxy over `shared` (its gate and upstream follow reloads).
    pub fn new(shared: Arc<Shared>) -> Self {
        WopiProxy { shared }
    }

    /// Counts, logs and answers a refusal. The connection is closed, unless `keep_alive` (for
    /// forward-auth subrequests, which carry no body).
    pub(super) async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        refusal: Refusal,
        keep_alive: bool,
    ) -> Result<bool> {
        ctx.stage = Stage::Refused;
        let status = ctx.status_of(refusal);
        ctx.counters().refused(ctx.operation, refusal);
        access_log::write(Outcome::Refused(refusal, status), session, ctx);
        let answer = Answer::refusal(refusal, status);
        let answer = if keep_alive { answer.keeping_alive() } else { answer };
        answer.send(session).await?;
        Ok(true)
    }

    /// Notes what the logs need of a gate decision.
    pub(super) fn note_decision(ctx: &mut RequestCtx, decision: &mut Decision) {
        ctx.operation = decision.operation;
        ctx.client = decision.client;
        ctx.client_problem = decision.client_problem;
        ctx.file_id = decision.file_id.take();
    }
}

/// Makes `upstream` the request the plan says: `access_header`'s headers first, then the
/// removals, then wopi-guard's own headers, so nothing but wopi-guard's own settings comes after
/// a removal (the strip is last, whatever was inserted before it).
pub(super) fn apply_plan(plan: &UpstreamPlan, upstream: &mut RequestHeader) -> Result<()> {
    for (name, value) in &plan.access {
        upstream.insert_header(name.clone(), value.clone())?;
    }
    for name in &plan.headers.remove {
        upstream.remove_header(name);
    }
    for (name, value) in &plan.headers.set {
        upstream.insert_header(name.clone(), value.clone())?;
    }
    if let Some(target) = &plan.target {
        upstream.set_raw_path(target)?;
    }
    Ok(())
}

/// The header section the upstream gets for a request with `client`'s headers under `plan`,
/// made by [`apply_plan`] itself: what the header invariant's fuzz target and tests check.
pub fn upstream_headers(plan: &UpstreamPlan, client: &http::HeaderMap) -> Result<http::HeaderMap> {
    let mut upstream = RequestHeader::build("GET", b"/", Some(client.len()))?;
    for (name, value) in client {
        upstream.append_header(name.clone(), value.clone())?;
    }
    apply_plan(plan, &mut upstream)?;
    Ok(upstream.headers.clone())
}

/// Checks the request's sizes and framing ([`check_shape`]) on the header section as received.
fn shape_ok(session: &Session, limits: &RequestLimits) -> std::result::Result<(), Refusal> {
    let req = session.req_header();
    let raw = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
    let shape = Shape {
        target_len: req.raw_path().len(),
        raw_header: raw.as_deref(),
        header_len: match raw {
            Some(_) => 0, // not used: the raw section is measured
            None => req.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum(),
        },
        transfer_encoding: req.headers.contains_key(http::header::TRANSFER_ENCODING),
        misused_asterisk: req.raw_path() == b"*" && req.method != Method::OPTIONS,
    };
    check_shape(limits, &shape)
}

#[async_trait]
impl ProxyHttp for WopiProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        let active = self.shared.active();
        RequestCtx {
            route: (!active.table.is_routed()).then_some(0),
            active,
            stage: Stage::Pending,
            operation: Operation::Unknown,
            client: None,
            client_problem: None,
            file_id: None,
            request_id: None,
            original_target: None,
            body_bytes: 0,
            body_rate: None,
            body_too_slow: false,
            started: Instant::now(),
            upstream_started: None,
            scratch: Scratch::take(),
            tried: Tried::default(),
            member: None,
            connect_failed: false,
            reused_failed: false,
            retried_same: false,
            _in_flight: self.shared.drain().enter(),
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<()> {
        head_deadline::head_received(session);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.shared.drain().is_draining() {
            session.set_keepalive(None); // the client reconnects, through the balancer, elsewhere
        } else if session.get_keepalive().is_some() {
            // Pingora 0.9 waits for the next request on a kept-alive HTTP/1.1 connection forever
            // (or as long as the client's own Keep-Alive asks): bounded by server.idle_timeout.
            session.set_keepalive(Some(ctx.active.connection_limits().idle_timeout.as_secs().max(1)));
        }
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        if let Err(refusal) = shape_ok(session, ctx.active.limits()) {
            ctx.client = peer;
            return self.refuse(session, ctx, refusal, false).await;
        }
        let req = session.req_header();
        let routed = match ctx.active.table.route_request(req.raw_path(), &req.headers, ctx.active.forward_auth()) {
            Ok(routed) => routed,
            Err(refusal) => {
                ctx.client = peer;
                return self.refuse(session, ctx, refusal, false).await;
            }
        };
        let route = routed.route;
        ctx.route = Some(route);
        if routed.forward_auth {
            return self.forward_auth(session, ctx, peer).await;
        }
        let incoming = Incoming { method: &req.method, raw_target: req.raw_path(), headers: &req.headers, peer };
        let gate = &ctx.active.routes[route].gate;
        let mut decision = gate.check(&incoming, SystemTime::now(), &mut ctx.scratch).await;
        Self::note_decision(ctx, &mut decision);
        match decision.verdict {
            Ok((admission, plan)) => {
                if let Some(would) = admission.would_refuse() {
                    ctx.counters().would_refuse(would);
                    access_log::write(Outcome::WouldRefuse(would), session, ctx);
                }
                access_log::plan_notes(&plan, ctx.client, ctx.route().and_then(|r| r.label.as_deref()));
                ctx.stage = Stage::Forwarding { admission, plan };
                if let Some(min) = ctx.active.connection_limits().body_min_rate.filter(|_| !session.is_body_empty()) {
                    // A body read waiting longer than the window is as slow as a trickle; but a
                    // client that sent `Expect: 100-continue` waits for the host's 100 first,
                    // which may take longer: its reads keep Pingora's own bound.
                    let expects = session
                        .req_header()
                        .headers
                        .get("expect")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
                    if !expects {
                        session.set_read_timeout(Some(BODY_RATE_WINDOW));
                    }
                    ctx.body_rate = Some((min, None));
                }
                Ok(false)
            }
            Err(refusal) => self.refuse(session, ctx, refusal, false).await,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Stage::Forwarding { plan, .. } = &ctx.stage else {
            // Unreachable by construction; fail closed if a future change makes it reachable.
            return Error::e_explain(ErrorType::InternalError, "no admission for this request");
        };
        ctx.upstream_started = Some(Instant::now());
        let Some(route) = ctx.route else {
            return Error::e_explain(ErrorType::InternalError, "no route chosen for this request");
        };
        let pool = &ctx.active.routes[route].upstream;
        let again = std::mem::take(&mut ctx.reused_failed).then_some(ctx.member).flatten();
        let Some(i) =
            pool.pick(ctx.tried).or_else(|| again.filter(|_| !std::mem::replace(&mut ctx.retried_same, true)))
        else {
            return Error::e_explain(ErrorType::ConnectError, "every upstream member was tried");
        };
        ctx.tried.add(i);
        ctx.member = Some(i);
        ctx.connect_failed = false;
        let member = pool.member(i);
        member.stats.request();
        let mut peer = member.peer.clone();
        if let Some(timeout) = plan.read_timeout {
            peer.options.read_timeout = Some(timeout);
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Stage::Forwarding { plan, .. } = &ctx.stage else {
            return Error::e_explain(ErrorType::InternalError, "no admission for this request");
        };
        // Read, never drained: a retry runs this again and must send the same request.
        apply_plan(plan, upstream)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(started), Some(route)) = (ctx.upstream_started, ctx.route()) {
            route.gate.metrics().upstream_time(started.elapsed());
        }
        if let (Some(i), Some(route)) = (ctx.member, ctx.route()) {
            // An answer: the member is up, whatever a check said before.
            health::record(route.upstream.member(i), Ok(()), "an answer", route.label.as_deref());
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(route) = ctx.route else { return e };
        let route = &ctx.active.routes[route];
        let pool = &route.upstream;
        if let Some(i) = ctx.member {
            let member = pool.member(i);
            member.stats.error();
            ctx.connect_failed = true;
            let why = Err(format!("connection failed: {}", e.etype().as_str()));
            health::record(member, why, "a request", route.label.as_deref());
        }
        // Nothing was sent: another member may take the request.
        if pool.pick_would_find(ctx.tried) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // Pingora's own policy: a retry only for an idempotent method whose body is still whole,
        // and a "reused only" error only on a reused connection.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        ctx.reused_failed = client_reused && e.retry();
        e
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Stage::Forwarding { plan, .. } = &ctx.stage else { return Ok(()) };
        if let (Some((min, meter)), Some(chunk)) = (ctx.body_rate.as_mut(), body.as_ref()) {
            let now = Instant::now();
            let result = match meter {
                Some(meter) => meter.chunk(chunk.len(), now),
                None => {
                    let mut first = BodyRate::new(*min, now);
                    let result = first.chunk(chunk.len(), now);
                    *meter = Some(first);
                    result
                }
            };
            if let Err(slow) = result {
                ctx.body_too_slow = true;
                tracing::debug!(
                    bytes = slow.bytes,
                    over_s = slow.over.as_secs_f64(),
                    "body under server.body_min_rate"
                );
                return Error::e_explain(ErrorType::HTTPStatus(408), "request body under server.body_min_rate");
            }
        }
        if let (Some(max), Some(chunk)) = (plan.max_body, body.as_ref()) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > max {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over operations.max_body");
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let over_max_body = matches!(e.etype(), ErrorType::HTTPStatus(413))
            && matches!(&ctx.stage, Stage::Forwarding { plan, .. } if plan.max_body.is_some_and(|m| ctx.body_bytes > m));
        // A body read that waited a whole window under server.body_min_rate is as slow as a trickle.
        let too_slow = ctx.body_too_slow
            || (ctx.body_rate.is_some()
                && matches!(e.etype(), ErrorType::ReadTimedout)
                && matches!(e.esource(), ErrorSource::Downstream));
        let refused = if over_max_body {
            Some(Refusal::BodyTooLarge)
        } else if too_slow {
            Some(Refusal::BodyTooSlow)
        } else {
            None
        };
        let answer = if let Some(refusal) = refused {
            let status = refusal.status(500);
            ctx.counters().refused(ctx.operation, refusal);
            access_log::write(Outcome::Refused(refusal, status), session, ctx);
            ctx.stage = Stage::Refused;
            Answer::refusal(refusal, status)
        } else {
            let answer = Answer::failure(e);
            ctx.counters().upstream_error(ctx.operation);
            if let (Some(i), Some(route), false, ErrorSource::Upstream) =
                (ctx.member, ctx.route(), ctx.connect_failed, e.esource())
            {
                route.upstream.member(i).stats.error();
            }
            let failed = Outcome::UpstreamFailed {
                status: answer.status(),
                error: e.etype().as_str(),
                source: e.esource().as_str(),
            };
            access_log::write(failed, session, ctx);
            answer
        };
        let status = answer.status();
        if status > 0 && session.response_written().is_none() {
            if let Err(write) = answer.send(session).await {
                tracing::debug!(error = %write, "could not send the error response");
            }
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        head_deadline::request_done(session);
        // A refusal, forward-auth's answer and a failure were logged when they happened.
        if e.is_some() || !matches!(ctx.stage, Stage::Forwarding { .. }) {
            return;
        }
        ctx.counters().forwarded(ctx.operation);
        access_log::write(Outcome::Forwarded, session, ctx);
    }

    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        // Pingora puts this in its own error lines: never the raw URL (it holds the token).
        let target = ctx.original_target.as_deref().unwrap_or_else(|| session.req_header().raw_path());
        format!(
            "{} {}",
            session.req_header().method,
            crate::redact::redacted_url(ctx.route().map_or("", |r| r.gate.public_url().as_str()), target)
        )
    }
}
