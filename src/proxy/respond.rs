//! The one place that turns an outcome wopi-guard answers itself into a status, a body and
//! headers: a refusal (forward-auth's included), forward-auth's 200, and a failed upstream
//! request. Every such answer is short and complete (Content-Length), never cached.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::refusal::Refusal;

/// A response wopi-guard writes itself.
#[derive(Debug)]
pub(super) struct Answer {
    status: u16,
    body: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
    keep_alive: bool,
}

impl Answer {
    /// The answer to `refusal`, whose status is `status` (`proof.reject_status` for a refused
    /// proof: [`crate::gate::Gate::status_of`]). It closes the connection, so an unread request
    /// body can never be taken for the next request.
    pub(super) fn refusal(refusal: Refusal, status: u16) -> Answer {
        let headers = refusal
            .retry_after()
            .map(|s| (HeaderName::from_static("retry-after"), HeaderValue::from(s)))
            .into_iter()
            .collect();
        Answer { status, body: refusal.body(), headers, keep_alive: false }
    }

    /// Forward-auth's "allowed": 200 with the headers the original request is to carry.
    pub(super) fn allowed(headers: Vec<(HeaderName, HeaderValue)>) -> Answer {
        Answer { status: 200, body: "", headers, keep_alive: true }
    }

    /// A failed proxied request: the status for the client (0 when the client is gone and gets
    /// no answer) and a body saying which side failed.
    pub(super) fn failure(error: &Error) -> Answer {
        let status = match (error.esource(), error.etype()) {
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
        let body = match status {
            504 => "wopi-guard: the WOPI host did not answer in time\n",
            502 => "wopi-guard: the WOPI host is unreachable\n",
            _ => "wopi-guard: request failed\n",
        };
        Answer { status, body, headers: Vec::new(), keep_alive: false }
    }

    /// Keeps the connection open: only for requests known to carry no body (forward-auth
    /// subrequests).
    pub(super) fn keeping_alive(mut self) -> Answer {
        self.keep_alive = true;
        self
    }

    /// The status (0: nothing is to be sent).
    pub(super) fn status(&self) -> u16 {
        self.status
    }

    /// Writes the answer, with Content-Length.
    pub(super) async fn send(self, session: &mut Session) -> Result<()> {
        let mut head = ResponseHeader::build(self.status, Some(4 + self.headers.len()))?;
        head.insert_header("content-type", "text/plain; charset=utf-8")?;
        head.insert_header("content-length", self.body.len().to_string())?;
        head.insert_header("cache-control", "no-store")?;
        for (name, value) in self.headers {
            head.insert_header(name, value)?;
        }
        if !self.keep_alive {
            session.set_keepalive(None);
        }
        session.write_response_header(Box::new(head), false).await?;
        session.write_response_body(Some(Bytes::from_static(self.body.as_bytes())), true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_failures_map_to_their_answers() {
        let limited =
            Answer::refusal(Refusal::RateLimited { scope: crate::refusal::LimitScope::Ip, retry_after: 7 }, 429);
        assert_eq!((limited.status(), limited.keep_alive), (429, false));
        assert_eq!(limited.headers, vec![(HeaderName::from_static("retry-after"), HeaderValue::from(7u32))]);
        assert_eq!(Answer::refusal(Refusal::ProofInvalid, 500).body, Refusal::ProofInvalid.body());
        assert!(Answer::refusal(Refusal::ForwardAuthHeaders, 400).keeping_alive().keep_alive);
        let upstream = |t| Answer::failure(&Error::new(t).into_up()).status();
        assert_eq!(upstream(ErrorType::ConnectTimedout), 504);
        assert_eq!(upstream(ErrorType::WriteTimedout), 504);
        assert_eq!(upstream(ErrorType::ConnectRefused), 502);
        assert_eq!(Answer::failure(&Error::new(ErrorType::ReadError).into_down()).status(), 0);
        assert_eq!(Answer::failure(&Error::new(ErrorType::InvalidHTTPHeader).into_down()).status(), 400);
        let answered = Answer::allowed(Vec::new());
        assert_eq!((answered.status(), answered.body, answered.keep_alive), (200, "", true));
    }
}
