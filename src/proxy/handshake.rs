//! `server.tls_handshake_timeout`: the client's TLS handshake, under the connection caps.
//!
//! Pingora's TLS listener runs the handshake before the connection reaches any application,
//! with a fixed 60 s bound, so a client that opens sockets and never sends a ClientHello holds
//! them outside every cap. wopi-guard's TLS listener is therefore a plain TCP one: the
//! connection takes its slots at accept ([`super::connections`]) and the handshake runs here,
//! cut after `server.tls_handshake_timeout`.

use pingora::listeners::tls::Acceptor;
use pingora::protocols::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};

/// An accepted TCP connection, as the TLS acceptor wants its transport: `Stream` is a boxed
/// trait object, which does not itself implement Pingora's stream traits.
#[derive(Debug)]
struct Plain {
    inner: Stream,
}

impl AsyncRead for Plain {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

super::delegate::delegate_io!(Plain);

/// Why a handshake did not finish.
#[derive(Debug)]
pub enum HandshakeFailed {
    /// Not over within `server.tls_handshake_timeout`.
    TimedOut,
    /// The client broke it off or spoke something else.
    Failed(String),
}

/// Runs the server side of a TLS handshake on `stream`, within `timeout`.
pub async fn accept(acceptor: &Acceptor, stream: Stream, timeout: Duration) -> Result<Stream, HandshakeFailed> {
    match tokio::time::timeout(timeout, acceptor.tls_handshake(Plain { inner: stream })).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(e)) => Err(HandshakeFailed::Failed(e.to_string())),
        Err(_) => Err(HandshakeFailed::TimedOut),
    }
}
