//! The Pingora glue: each phase calls a plain function (`Gate::check`, `Refusal`'s mappings,
//! `redact`), and forwarding requires an [`Admission`].

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::config::{Config, Timeouts};
use crate::gate::{Admission, Gate};
use crate::proof::ProofHeaders;
use crate::redact::redacted_url;
use crate::refusal::Refusal;

/// Per-request state.
pub struct RequestCtx {
    admission: Option<Admission>,
    refused: bool,
    started: Instant,
    scratch: Vec<u8>,
}

/// The proxy: the gate in front, one upstream behind.
pub struct WopiProxy {
    gate: Arc<Gate>,
    upstream: HttpPeer,
}

impl WopiProxy {
    /// A proxy to the configured upstream, resolved once here (never per request).
    pub fn new(gate: Arc<Gate>, config: &Config) -> std::result::Result<Self, String> {
        let target = &config.upstream;
        let addr = resolve(&target.host, target.port)?;
        let mut upstream = HttpPeer::new(addr, target.tls, target.host.clone());
        apply_timeouts(&mut upstream, &config.timeouts);
        Ok(WopiProxy { gate, upstream })
    }

    fn url_for_log(&self, session: &Session) -> String {
        redacted_url(self.gate.public_url().as_str(), session.req_header().raw_path())
    }
}

fn resolve(host: &str, port: u16) -> std::result::Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("upstream: cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("upstream: {host}:{port} resolves to no address"))
}

fn apply_timeouts(peer: &mut HttpPeer, t: &Timeouts) {
    peer.options.connection_timeout = Some(t.upstream_connect);
    peer.options.read_timeout = Some(t.upstream_read);
    peer.options.write_timeout = Some(t.upstream_write);
}

fn header<'a>(session: &'a Session, name: &str) -> Option<&'a [u8]> {
    session.req_header().headers.get(name).map(|v| v.as_bytes())
}

/// Writes a complete short response (with Content-Length) and closes the connection, so an
/// unread request body can never be taken for the next request.
async fn respond(session: &mut Session, status: u16, body: &'static str) -> Result<()> {
    let mut head = ResponseHeader::build(status, Some(4))?;
    head.insert_header("content-type", "text/plain; charset=utf-8")?;
    head.insert_header("content-length", body.len().to_string())?;
    head.insert_header("cache-control", "no-store")?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(Bytes::from_static(body.as_bytes())), true).await
}

#[async_trait]
impl ProxyHttp for WopiProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx { admission: None, refused: false, started: Instant::now(), scratch: Vec::new() }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let headers = ProofHeaders {
            proof: header(session, "x-wopi-proof"),
            proof_old: header(session, "x-wopi-proofold"),
            timestamp: header(session, "x-wopi-timestamp"),
        };
        let raw_target = session.req_header().raw_path();
        match self.gate.check(raw_target, headers, SystemTime::now(), &mut ctx.scratch).await {
            Ok(admission) => {
                if let Admission::Monitored(would) = &admission {
                    tracing::warn!(
                        target: "wopi_guard::access",
                        reason = would.label(),
                        url = %self.url_for_log(session),
                        keys_tried = ?self.gate.keys().snapshot().fingerprints(),
                        "monitor mode: would refuse, forwarding"
                    );
                }
                ctx.admission = Some(admission);
                Ok(false)
            }
            Err(refusal) => {
                ctx.refused = true;
                let status = self.gate.status_of(refusal);
                log_refusal(self, session, refusal, status);
                respond(session, status, refusal.body()).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        match ctx.admission {
            Some(_) => Ok(Box::new(self.upstream.clone())),
            // Unreachable by construction; fail closed if a future change makes it reachable.
            None => Error::e_explain(ErrorType::InternalError, "no admission for this request"),
        }
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut RequestCtx) -> FailToProxy {
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
        tracing::error!(
            target: "wopi_guard::access",
            status,
            error = e.etype().as_str(),
            source = ?e.esource(),
            method = %session.req_header().method,
            url = %self.url_for_log(session),
            "upstream request failed"
        );
        if status > 0 && session.response_written().is_none() {
            let body: &'static str = match status {
                504 => "wopi-guard: the WOPI host did not answer in time\n",
                502 => "wopi-guard: the WOPI host is unreachable\n",
                _ => "wopi-guard: request failed\n",
            };
            if let Err(write) = respond(session, status, body).await {
                tracing::debug!(error = %write, "could not send the error response");
            }
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.refused || e.is_some() {
            return; // already logged with its reason
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let (verdict, combination) = match &ctx.admission {
            Some(Admission::Verified { combination, .. }) => ("verified", combination.label()),
            Some(Admission::Unprotected) => ("unprotected", ""),
            Some(Admission::Monitored(_)) => ("monitored", ""),
            None => ("none", ""),
        };
        tracing::info!(
            target: "wopi_guard::access",
            method = %session.req_header().method,
            url = %self.url_for_log(session),
            status,
            verdict,
            combination,
            duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            "forwarded"
        );
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        // Pingora puts this in its own error lines: never the raw URL (it holds the token).
        format!("{} {}", session.req_header().method, self.url_for_log(session))
    }
}

fn log_refusal(proxy: &WopiProxy, session: &Session, refusal: Refusal, status: u16) {
    tracing::warn!(
        target: "wopi_guard::access",
        reason = refusal.label(),
        status,
        method = %session.req_header().method,
        url = %proxy.url_for_log(session),
        keys_tried = ?proxy.gate.keys().snapshot().fingerprints(),
        client = ?session.client_addr().map(|a| a.to_string()),
        "refused"
    );
}
