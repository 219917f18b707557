//! The Pingora glue: each phase calls a plain function (`Gate::check`, `Refusal`'s mappings,
//! `redact`), and forwarding requires an [`Admission`].

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::drain::InFlight;
use super::runtime::{Active, Shared};
use crate::framing::{check_shape, RequestLimits, Shape};
use crate::gate::{Admission, Incoming, UpstreamPlan};
use crate::operation::Operation;
use crate::policy::UnknownClient;
use crate::redact::{redacted_url, request_id};
use crate::refusal::Refusal;

/// Per-request state.
pub struct RequestCtx {
    /// The configuration in force when the request started; kept to its end.
    pub(super) active: Arc<Active>,
    pub(super) admission: Option<Admission>,
    plan: UpstreamPlan,
    pub(super) operation: Operation,
    pub(super) client: Option<IpAddr>,
    /// Why the client address is unknown (the request was refused for it).
    pub(super) client_problem: Option<UnknownClient>,
    pub(super) file_hash: Option<String>,
    request_id: String,
    server_id: Option<String>,
    pub(super) refused: bool,
    pub(super) forward_auth_allowed: bool,
    /// Forward-auth: the original request target it was asked about.
    pub(super) original_target: Option<Vec<u8>>,
    body_bytes: u64,
    started: Instant,
    upstream_started: Option<Instant>,
    pub(super) scratch: Vec<u8>,
    /// Counts this request as in flight for a drain, until the context is dropped.
    _in_flight: InFlight,
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

    /// The URL the request is about, redacted: for forward-auth, the rebuilt original request.
    fn url_for_log(&self, session: &Session, ctx: &RequestCtx) -> String {
        let target = ctx.original_target.as_deref().unwrap_or_else(|| session.req_header().raw_path());
        redacted_url(ctx.active.gate.public_url().as_str(), target)
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
        ctx.refused = true;
        let status = ctx.active.gate.status_of(refusal);
        ctx.active.gate.metrics().refused(ctx.operation, refusal);
        self.log_refusal(session, ctx, refusal, status);
        respond_with(session, status, refusal.body(), &retry_headers(refusal.retry_after()), keep_alive).await?;
        Ok(true)
    }

    pub(super) fn log_refusal(&self, session: &Session, ctx: &RequestCtx, refusal: Refusal, status: u16) {
        tracing::warn!(
            target: "wopi_guard::access",
            reason = refusal.label(),
            status,
            operation = ctx.operation.name(),
            method = %session.req_header().method,
            url = %self.url_for_log(session, ctx),
            client = ctx.client.map(display),
            why = ctx.client_problem.map(UnknownClient::reason),
            file = ctx.file_hash.as_deref(),
            request_id = %ctx.request_id,
            server_id = ctx.server_id.as_deref(),
            keys_tried = keys_tried(ctx, refusal).as_deref(),
            "refused"
        );
    }

    /// Notes what the logs need of a gate decision.
    pub(super) fn note_decision(ctx: &mut RequestCtx, decision: &mut crate::gate::Decision) {
        ctx.operation = decision.operation;
        ctx.client = decision.client;
        ctx.client_problem = decision.client_problem;
        ctx.file_hash = decision.file_hash.take();
    }
}

/// The keys a refused proof was tried against, space-separated (the JSON lines write it as an
/// array): only for a proof that no key verified, the one refusal that tried them all.
fn keys_tried(ctx: &RequestCtx, refusal: Refusal) -> Option<String> {
    (refusal == Refusal::ProofInvalid).then(|| ctx.active.gate.keys().snapshot().fingerprints().join(" "))
}

/// Whole microseconds, the unit of every duration in the access lines.
fn micros(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
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

/// The request id and the office node (`X-COOL-WOPI-ServerId`, or the older `X-LOOL-`) for logs.
pub(super) fn note_ids(ctx: &mut RequestCtx, headers: &http::HeaderMap) {
    ctx.request_id = request_id(headers.get("x-request-id").map(|v| v.as_bytes()));
    ctx.server_id = headers
        .get("x-cool-wopi-serverid")
        .or_else(|| headers.get("x-lool-wopi-serverid"))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect());
}

/// Writes a complete short response (with Content-Length) and closes the connection, so an
/// unread request body can never be taken for the next request.
async fn respond(session: &mut Session, status: u16, body: &'static str, retry_after: Option<u32>) -> Result<()> {
    respond_with(session, status, body, &retry_headers(retry_after), false).await
}

pub(super) fn retry_headers(retry_after: Option<u32>) -> Vec<(HeaderName, HeaderValue)> {
    retry_after.map(|s| (HeaderName::from_static("retry-after"), HeaderValue::from(s))).into_iter().collect()
}

/// As [`respond`], with extra headers; `keep_alive` only for requests known to carry no body.
pub(super) async fn respond_with(
    session: &mut Session,
    status: u16,
    body: &'static str,
    extra: &[(HeaderName, HeaderValue)],
    keep_alive: bool,
) -> Result<()> {
    let mut head = ResponseHeader::build(status, Some(5 + extra.len()))?;
    head.insert_header("content-type", "text/plain; charset=utf-8")?;
    head.insert_header("content-length", body.len().to_string())?;
    head.insert_header("cache-control", "no-store")?;
    for (name, value) in extra {
        head.insert_header(name.clone(), value.clone())?;
    }
    if !keep_alive {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(Bytes::from_static(body.as_bytes())), true).await
}

#[async_trait]
impl ProxyHttp for WopiProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            active: self.shared.active(),
            admission: None,
            plan: UpstreamPlan::default(),
            operation: Operation::Unknown,
            client: None,
            client_problem: None,
            file_hash: None,
            request_id: String::new(),
            server_id: None,
            refused: false,
            forward_auth_allowed: false,
            original_target: None,
            body_bytes: 0,
            started: Instant::now(),
            upstream_started: None,
            scratch: Vec::new(),
            _in_flight: self.shared.drain().enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.shared.drain().is_draining() {
            session.set_keepalive(None); // the client reconnects, through the balancer, elsewhere
        }
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        if let Err(refusal) = shape_ok(session, ctx.active.limits()) {
            note_ids(ctx, &session.req_header().headers);
            ctx.client = peer;
            return self.refuse(session, ctx, refusal, false).await;
        }
        let req = session.req_header();
        if let Some(path) = ctx.active.gate.forward_auth_path() {
            let raw = req.raw_path();
            if raw.split(|&b| b == b'?').next() == Some(path.as_bytes()) {
                return self.forward_auth(session, ctx, peer).await;
            }
        }
        let incoming = Incoming { method: &req.method, raw_target: req.raw_path(), headers: &req.headers, peer };
        note_ids(ctx, &req.headers);
        let mut decision = ctx.active.gate.check(&incoming, SystemTime::now(), &mut ctx.scratch).await;
        Self::note_decision(ctx, &mut decision);
        match decision.verdict {
            Ok((admission, plan)) => {
                if let Admission::Monitored(would) = &admission {
                    ctx.active.gate.metrics().would_refuse(*would);
                    tracing::warn!(
                        target: "wopi_guard::access",
                        reason = would.label(),
                        operation = ctx.operation.name(),
                        url = %self.url_for_log(session, ctx),
                        keys_tried = keys_tried(ctx, *would).as_deref(),
                        "monitor mode: would refuse, forwarding"
                    );
                }
                if plan.spoofed_verified_header {
                    tracing::warn!(target: "wopi_guard::access", client = ctx.client.map(display), "stripped a client-sent X-WOPI-Guard-Verified header");
                }
                for name in &plan.stripped_overrides {
                    tracing::warn!(target: "wopi_guard::access", client = ctx.client.map(display), header = name, "stripped a client-sent path or method override header");
                }
                for (name, why) in &plan.dropped_access_lines {
                    tracing::warn!(target: "wopi_guard::access", header = %name, why, "access_header line dropped");
                }
                ctx.admission = Some(admission);
                ctx.plan = plan;
                Ok(false)
            }
            Err(refusal) => self.refuse(session, ctx, refusal, false).await,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        if ctx.admission.is_none() {
            // Unreachable by construction; fail closed if a future change makes it reachable.
            return Error::e_explain(ErrorType::InternalError, "no admission for this request");
        }
        ctx.upstream_started = Some(Instant::now());
        let mut peer = ctx.active.upstream.clone();
        if let Some(timeout) = ctx.plan.read_timeout {
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
        let plan = &mut ctx.plan;
        for name in &plan.headers.remove {
            upstream.remove_header(name);
        }
        for (name, value) in plan.headers.set.drain(..).chain(plan.access.drain(..)) {
            upstream.insert_header(name, value)?;
        }
        if let Some(target) = plan.target.take() {
            upstream.set_raw_path(&target)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(started) = ctx.upstream_started {
            ctx.active.gate.metrics().upstream_time(started.elapsed());
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(max), Some(chunk)) = (ctx.plan.max_body, body.as_ref()) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > max {
                ctx.refused = true;
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over operations.max_body");
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let status = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => *code,
            (
                ErrorSource::Upstream,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => 504,
            (ErrorSource::Upstream, _) => 502,
            (ErrorSource::Downstream, ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed) => 0,
            (ErrorSource::Downstream, _) => 400,
            _ => 500,
        };
        if ctx.refused && status == 413 {
            ctx.active.gate.metrics().refused(ctx.operation, Refusal::BodyTooLarge);
            self.log_refusal(session, ctx, Refusal::BodyTooLarge, 413);
        } else {
            ctx.active.gate.metrics().upstream_error(ctx.operation);
            tracing::error!(
                target: "wopi_guard::access",
                status,
                error = e.etype().as_str(),
                source = e.esource().as_str(),
                operation = ctx.operation.name(),
                method = %session.req_header().method,
                url = %self.url_for_log(session, ctx),
                client = ctx.client.map(display),
                file = ctx.file_hash.as_deref(),
                request_id = %ctx.request_id,
                server_id = ctx.server_id.as_deref(),
                bytes_in = session.body_bytes_read(),
                "upstream request failed"
            );
        }
        if status > 0 && session.response_written().is_none() {
            let body: &'static str = match status {
                413 => Refusal::BodyTooLarge.body(),
                504 => "wopi-guard: the WOPI host did not answer in time\n",
                502 => "wopi-guard: the WOPI host is unreachable\n",
                _ => "wopi-guard: request failed\n",
            };
            if let Err(write) = respond(session, status, body, None).await {
                tracing::debug!(error = %write, "could not send the error response");
            }
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.refused || e.is_some() {
            return; // already logged with its reason
        }
        let (combination, url_form) = match &ctx.admission {
            Some(Admission::Verified { combination, url_form, .. }) => {
                (combination.label(), Some(ctx.active.gate.public_url().form_label(*url_form)))
            }
            _ => ("", None),
        };
        if ctx.forward_auth_allowed {
            tracing::info!(
                target: "wopi_guard::access",
                operation = ctx.operation.name(),
                client = ctx.client.map(display),
                file = ctx.file_hash.as_deref(),
                request_id = %ctx.request_id,
                verdict = ctx.admission.as_ref().map_or("none", Admission::label),
                combination,
                url_form,
                url = %self.url_for_log(session, ctx),
                "forward-auth: allowed"
            );
            return;
        }
        ctx.active.gate.metrics().forwarded(ctx.operation);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        tracing::info!(
            target: "wopi_guard::access",
            method = %session.req_header().method,
            operation = ctx.operation.name(),
            url = %self.url_for_log(session, ctx),
            client = ctx.client.map(display),
            file = ctx.file_hash.as_deref(),
            request_id = %ctx.request_id,
            server_id = ctx.server_id.as_deref(),
            status,
            verdict = ctx.admission.as_ref().map_or("none", Admission::label),
            combination,
            url_form,
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            duration_us = micros(ctx.started.elapsed()),
            upstream_us = ctx.upstream_started.map(|t| micros(t.elapsed())),
            "forwarded"
        );
    }

    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        // Pingora puts this in its own error lines: never the raw URL (it holds the token).
        format!("{} {}", session.req_header().method, self.url_for_log(session, ctx))
    }
}
