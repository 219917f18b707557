//! The forward-auth endpoint's glue: answers an auth subrequest from nginx (`auth_request`),
//! Traefik (`forwardAuth`) or Envoy (`ext_authz` over HTTP). The original request comes from the
//! header pair `[forward_auth] uri_header` names ([`original_request`]), believed only from a
//! trusted proxy, and goes through the same gate. The answer is 200 (with the `access_header`
//! headers, and `X-WOPI-Guard-Verified` when configured, as response headers) or the refusal's.

use pingora::prelude::Session;
use pingora::{Error, ErrorType, Result};
use std::net::IpAddr;
use std::time::SystemTime;

use super::access_log::{self, Outcome};
use super::respond::Answer;
use super::service::{RequestCtx, Stage, WopiProxy};
use crate::gate::Incoming;
use crate::policy::{original_request, VERIFIED_HEADER};
use crate::refusal::Refusal;

impl WopiProxy {
    /// Answers one auth subrequest. A gate decision keeps the connection (subrequests carry no
    /// body), as before.
    pub(super) async fn forward_auth(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        peer: Option<IpAddr>,
    ) -> Result<bool> {
        let headers = &session.req_header().headers;
        ctx.client = peer;
        // Not a well-formed subrequest from a trusted proxy: nothing vouches that it carries no
        // body, so the connection is closed, as for any other refusal.
        let Some(route) = ctx.route else {
            return Error::e_explain(ErrorType::InternalError, "no route chosen for this request");
        };
        if !ctx.active.routes[route].gate.trusts(peer) {
            return self.refuse(session, ctx, Refusal::ForwardAuthUntrusted, false).await;
        }
        let original = match original_request(headers, ctx.active.routes[route].gate.forward_auth_headers()) {
            Ok(original) => original,
            Err(refusal) => return self.refuse(session, ctx, refusal, false).await,
        };
        let incoming = Incoming { method: &original.method, raw_target: &original.target, headers, peer };
        let gate = &ctx.active.routes[route].gate;
        let mut decision = gate.check(&incoming, SystemTime::now(), &mut ctx.scratch).await;
        ctx.original_target = Some(original.target);
        Self::note_decision(ctx, &mut decision);
        match decision.verdict {
            Ok((admission, plan)) => {
                let mut answer = plan.access;
                answer.extend(plan.headers.set.into_iter().filter(|(n, _)| n == VERIFIED_HEADER));
                ctx.stage = Stage::Answered(admission);
                ctx.counters().forwarded(ctx.operation);
                access_log::write(Outcome::ForwardAuthAllowed, session, ctx);
                Answer::allowed(answer).send(session).await?;
                Ok(true)
            }
            Err(refusal) => self.refuse(session, ctx, refusal, true).await,
        }
    }
}
