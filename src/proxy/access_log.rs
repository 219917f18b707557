//! The access line: one per request, built from the request context by one function, whatever
//! the outcome (refused, forwarded, forward-auth's answer, upstream failure), and the monitor
//! mode's "would refuse" line. An absent value is left out of the line.

use pingora::prelude::Session;
use std::net::IpAddr;

use super::service::RequestCtx;
use crate::gate::UpstreamPlan;
use crate::policy::UnknownClient;
use crate::redact::{redacted_url, request_id, short_hash};
use crate::refusal::Refusal;

/// What happened to a request.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    /// Refused with this status.
    Refused(Refusal, u16),
    /// Monitor mode: enforce mode would refuse; forwarded anyway (the forwarded line follows).
    WouldRefuse(Refusal),
    /// Forwarded and answered by the WOPI host.
    Forwarded,
    /// Forward-auth: answered "allowed".
    ForwardAuthAllowed,
    /// The proxied request failed; `status` went to the client (0: none).
    UpstreamFailed {
        /// The status sent.
        status: u16,
        /// Pingora's error type.
        error: &'static str,
        /// Which side failed.
        source: &'static str,
    },
}

/// One tracing event for `$line` at `$level`: the field list is written once.
macro_rules! emit {
    ($level:ident, $line:expr, $message:literal) => {{
        let l = $line;
        tracing::$level!(
            target: "wopi_guard::access",
            route = l.route,
            reason = l.reason,
            status = l.status,
            error = l.error.map(|e| e.0),
            source = l.error.map(|e| e.1),
            operation = l.operation,
            method = l.method,
            url = %l.url,
            client = l.client.map(tracing::field::display),
            why = l.why,
            file = l.file.as_deref(),
            request_id = l.request_id,
            server_id = l.server_id,
            keys_tried = l.keys_tried.as_deref(),
            verdict = l.verdict,
            combination = l.combination,
            url_form = l.url_form,
            bytes_in = l.bytes_in,
            bytes_out = l.bytes_out,
            duration_us = l.duration_us,
            upstream_us = l.upstream_us,
            upstream = l.upstream,
            $message
        )
    }};
}

/// Writes the line for `outcome`. Nothing of it is built (URL, request id, key list) when the
/// filter drops the line's level.
pub(super) fn write(outcome: Outcome, session: &Session, ctx: &mut RequestCtx) {
    use tracing::{enabled, Level};
    let wanted = match outcome {
        Outcome::Refused(..) | Outcome::WouldRefuse(_) => enabled!(target: "wopi_guard::access", Level::WARN),
        Outcome::Forwarded | Outcome::ForwardAuthAllowed => enabled!(target: "wopi_guard::access", Level::INFO),
        Outcome::UpstreamFailed { .. } => enabled!(target: "wopi_guard::access", Level::ERROR),
    };
    if !wanted {
        return;
    }
    let id = ctx
        .request_id
        .get_or_insert_with(|| request_id(session.req_header().headers.get("x-request-id").map(|v| v.as_bytes())));
    let request_id = id.as_str();
    let headers = &session.req_header().headers;
    let server_id = headers
        .get("x-cool-wopi-serverid")
        .or_else(|| headers.get("x-lool-wopi-serverid"))
        .and_then(|v| v.to_str().ok())
        .map(|v| &v[..v.char_indices().nth(64).map_or(v.len(), |(i, _)| i)]);
    let target = ctx.original_target.as_deref().unwrap_or_else(|| session.req_header().raw_path());
    let route = ctx.route.map(|i| &ctx.active.routes[i]); // fields: `request_id` is borrowed
    let url = redacted_url(route.map_or("", |r| r.gate.public_url().as_str()), target);
    // Forward-auth's subrequest method is not the original request's: left out.
    let method = ctx.original_target.is_none().then(|| session.req_header().method.as_str());
    let admission = ctx.stage.admission();
    let verified = admission.and_then(|a| a.verified());
    let (reason, refused_status) = match outcome {
        Outcome::Refused(r, status) => (Some(r), Some(status)),
        Outcome::WouldRefuse(r) => (Some(r), None),
        _ => (None, None),
    };
    let forwarded = matches!(outcome, Outcome::Forwarded);
    let line = Line {
        route: route.and_then(|r| r.label.as_deref()),
        reason: reason.map(Refusal::label),
        status: match outcome {
            Outcome::Forwarded => Some(session.response_written().map_or(0, |r| r.status.as_u16())),
            Outcome::UpstreamFailed { status, .. } => Some(status),
            Outcome::ForwardAuthAllowed => Some(200),
            _ => refused_status,
        },
        error: match outcome {
            Outcome::UpstreamFailed { error, source, .. } => Some((error, source)),
            _ => None,
        },
        operation: ctx.operation.name(),
        method,
        url,
        client: ctx.client,
        why: ctx.client_problem.map(UnknownClient::reason),
        file: ctx.file_id.clone().and_then(|id| target.get(id)).map(|id| short_hash("file", id)),
        request_id,
        server_id,
        keys_tried: reason
            .filter(|r| *r == Refusal::ProofInvalid)
            .and_then(|_| route.map(|r| r.gate.keys().snapshot().fingerprints().join(" "))),
        verdict: admission.map(|a| a.label()).filter(|_| reason.is_none()),
        combination: verified.map(|(c, _)| c.label()),
        url_form: verified.and_then(|(_, form)| route.map(|r| r.gate.public_url().form_label(form))),
        bytes_in: (forwarded || matches!(outcome, Outcome::UpstreamFailed { .. })).then(|| session.body_bytes_read()),
        bytes_out: forwarded.then(|| session.body_bytes_sent()),
        duration_us: forwarded.then(|| micros(ctx.started.elapsed())),
        upstream_us: ctx.upstream_started.filter(|_| forwarded).map(|t| micros(t.elapsed())),
        // The member that answered, or the last one tried when none did.
        upstream: ctx
            .member
            .filter(|_| forwarded || matches!(outcome, Outcome::UpstreamFailed { .. }))
            .and_then(|i| route.map(|r| r.upstream.member(i).stats.name())),
    };
    match outcome {
        Outcome::Refused(..) => emit!(warn, line, "refused"),
        Outcome::WouldRefuse(_) => emit!(warn, line, "monitor mode: would refuse, forwarding"),
        Outcome::Forwarded => emit!(info, line, "forwarded"),
        Outcome::ForwardAuthAllowed => emit!(info, line, "forward-auth: allowed"),
        Outcome::UpstreamFailed { .. } => emit!(error, line, "upstream request failed"),
    }
}

/// The lines about what the gate changed in an admitted request's headers.
pub(super) fn plan_notes(plan: &UpstreamPlan, client: Option<IpAddr>, route: Option<&str>) {
    let client = client.map(tracing::field::display);
    if plan.spoofed_verified_header {
        tracing::warn!(target: "wopi_guard::access", route, client, "stripped a client-sent X-WOPI-Guard-Verified header");
    }
    for name in &plan.stripped_overrides {
        tracing::warn!(target: "wopi_guard::access", route, client, header = name, "stripped a client-sent path or method override header");
    }
    for (name, why) in &plan.dropped_access_lines {
        tracing::warn!(target: "wopi_guard::access", route, header = %name, why, "access_header line dropped");
    }
}

/// Every field an access line can have; `None` is left out.
struct Line<'a> {
    route: Option<&'a str>,
    reason: Option<&'static str>,
    status: Option<u16>,
    error: Option<(&'static str, &'static str)>,
    operation: &'static str,
    method: Option<&'a str>,
    url: String,
    client: Option<IpAddr>,
    why: Option<&'static str>,
    file: Option<String>,
    request_id: &'a str,
    server_id: Option<&'a str>,
    keys_tried: Option<String>,
    verdict: Option<&'static str>,
    combination: Option<&'static str>,
    url_form: Option<&'static str>,
    bytes_in: Option<usize>,
    bytes_out: Option<usize>,
    duration_us: Option<u64>,
    upstream_us: Option<u64>,
    upstream: Option<&'a str>,
}

/// Whole microseconds, the unit of every duration in the access lines.
fn micros(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}
