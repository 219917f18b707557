//! `server.header_timeout`: one deadline for a request's whole header section, not per read.
//!
//! Pingora 0.9 reads the header section itself and bounds only each read (60 s), so the
//! deadline lives in the stream it reads from. [`GuardedStream`] wraps an accepted connection:
//! its reads fail with `TimedOut` once the deadline has passed while the deadline runs, and
//! Pingora then closes the connection without an answer, as it does for any broken read.
//!
//! When the deadline runs:
//! - from the connection's start (after the TLS handshake) until the first request's header
//!   section is in: a connection that sends nothing is closed too;
//! - on a kept-alive connection, from the first byte of the next request (the idle time before
//!   it is Pingora's keep-alive timeout, 60 s) until its header section is in.
//!
//! The proxy says when a header section is in ([`head_received`], from `early_request_filter`,
//! the first hook after Pingora parsed it) and when a request is over ([`request_done`], from
//! `logging`): it reaches this stream through the session's stream.

use pingora::prelude::Session;
use pingora::protocols::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use super::connections::Slot;

/// The deadline runs: a header section is awaited.
const RUNNING: u8 = 0;
/// Between requests: the deadline starts with the next byte.
const IDLE: u8 = 1;
/// The header section is in: body and response take as long as their own timeouts allow.
const OFF: u8 = 2;
/// The deadline passed: every read fails.
const EXPIRED: u8 = 3;

/// An accepted connection under the header deadline, holding its [`Slot`] until dropped.
#[derive(Debug)]
pub struct GuardedStream {
    inner: Stream,
    state: AtomicU8,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
    _slot: Slot,
}

impl GuardedStream {
    /// Wraps `inner`; the deadline for the first header section starts now.
    pub fn new(inner: Stream, slot: Slot, timeout: Duration) -> Self {
        GuardedStream {
            inner,
            state: AtomicU8::new(RUNNING),
            timeout,
            deadline: Box::pin(sleep_until(Instant::now() + timeout)),
            timed_out: Arc::new(AtomicBool::new(false)),
            _slot: slot,
        }
    }

    /// Set once the deadline closed the connection (readable after the stream is gone).
    pub fn timed_out_flag(&self) -> Arc<AtomicBool> {
        self.timed_out.clone()
    }

    /// The header section is in.
    pub fn head_received(&self) {
        let _ = self.state.compare_exchange(RUNNING, OFF, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The request is over; the next one's deadline starts with its first byte.
    pub fn request_done(&self) {
        let _ = self.state.compare_exchange(OFF, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }

    fn expire(&mut self) -> Poll<io::Result<()>> {
        self.state.store(EXPIRED, Ordering::Release);
        self.timed_out.store(true, Ordering::Release);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "server.header_timeout passed")))
    }
}

/// The connection under `session`, when it is one of ours (HTTP/1).
fn guarded(session: &Session) -> Option<&GuardedStream> {
    let stream = session.as_downstream().stream()?;
    (**stream).as_any().downcast_ref::<GuardedStream>()
}

/// The session's header section is in: its deadline stops.
pub fn head_received(session: &Session) {
    if let Some(g) = guarded(session) {
        g.head_received();
    }
}

/// The session's request is over.
pub fn request_done(session: &Session) {
    if let Some(g) = guarded(session) {
        g.request_done();
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let state = this.state.load(Ordering::Acquire);
        if state == EXPIRED {
            return this.expire();
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got_bytes = matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        match state {
            RUNNING => match read {
                // Checked on data too: a trickle never leaves the read pending.
                Poll::Ready(Ok(())) if got_bytes && Instant::now() >= this.deadline.deadline() => this.expire(),
                Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => this.expire(),
                other => other,
            },
            IDLE if got_bytes => {
                if this.state.compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    let at = Instant::now() + this.timeout;
                    this.deadline.as_mut().reset(at);
                }
                read
            }
            _ => read,
        }
    }
}

super::delegate::delegate_io!(GuardedStream);

#[cfg(test)]
mod tests {
    use super::super::connections::OpenConnections;
    use super::*;
    use crate::config::ConnectionLimits;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn guarded(timeout: Duration) -> (GuardedStream, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let open = Arc::new(OpenConnections::default());
        let limits = ConnectionLimits {
            max: 10,
            per_ip: None,
            header_timeout: timeout,
            idle_timeout: timeout,
            tls_handshake_timeout: timeout,
            body_min_rate: None,
        };
        let slot = open.admit(None, &limits).unwrap();
        (GuardedStream::new(Box::new(ours), slot, timeout), theirs)
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_header_fails_at_the_deadline_though_every_read_brings_a_byte() {
        let (mut g, mut client) = guarded(Duration::from_secs(10));
        let flag = g.timed_out_flag();
        let mut buf = [0u8; 16];
        for _ in 0..9 {
            client.write_all(b"x").await.unwrap();
            assert_eq!(g.read(&mut buf).await.unwrap(), 1);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        client.write_all(b"x").await.unwrap();
        let error = g.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(flag.load(Ordering::Acquire));
        client.write_all(b"x").await.unwrap();
        assert!(g.read(&mut buf).await.is_err(), "it stays failed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_fails_at_the_deadline() {
        let (mut g, _client) = guarded(Duration::from_secs(5));
        let started = Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(g.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn body_reads_and_idle_keep_alive_time_are_not_bounded_and_the_next_head_is() {
        let (mut g, mut client) = guarded(Duration::from_secs(5));
        let mut buf = [0u8; 16];
        client.write_all(b"head").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 4);
        g.head_received();
        // A slow body: well past the deadline, still read.
        tokio::time::advance(Duration::from_secs(60)).await;
        client.write_all(b"body").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 4);
        g.request_done();
        // Idle between requests: no deadline (Pingora's keep-alive timeout applies).
        tokio::time::advance(Duration::from_secs(60)).await;
        client.write_all(b"n").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 1, "the next request's first byte starts its deadline");
        tokio::time::advance(Duration::from_secs(4)).await;
        client.write_all(b"e").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        client.write_all(b"x").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn end_of_stream_and_writes_pass_through() {
        let (mut g, mut client) = guarded(Duration::from_secs(5));
        g.write_all(b"answer").await.unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"answer");
        drop(client);
        let mut buf = [0u8; 4];
        assert_eq!(g.read(&mut buf).await.unwrap(), 0);
    }
}
