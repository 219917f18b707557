//! Stopping: SIGTERM drains (/ready says 503 so balancers stop sending, answers close their
//! connections, requests in flight finish for up to `server.grace_period`), then the process
//! stops; an idle proxy stops at once. SIGINT stops at once, also during a drain. Each step is
//! logged.
//!
//! Pingora's own SIGTERM handling sleeps the whole grace period even when nothing is in flight,
//! and logs below our filter; so the wait happens here, and Pingora is given no grace period of
//! its own.

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Requests in flight, and whether the process is draining.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drain {
    /// A request starts; it counts until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// True once a drain started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts draining and waits until nothing is in flight or `grace` has passed; the requests
    /// still in flight then.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.draining.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + grace;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.in_flight()
    }
}

/// The process's own signals: SIGTERM drains, SIGINT stops at once.
pub struct ProcessSignals {
    /// The proxy's drain state.
    pub drain: Arc<Drain>,
    /// `server.grace_period`.
    pub grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for ProcessSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot listen for SIGTERM and SIGINT: stop the process with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {
                let grace_ms = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
                tracing::info!(in_flight = self.drain.in_flight(), grace_ms, "draining: SIGTERM received; /ready says 503, requests in flight may finish");
                tokio::select! {
                    left = self.drain.drain(self.grace) => {
                        if left > 0 {
                            tracing::warn!(in_flight = left, "grace period over: stopping with requests still in flight");
                        } else {
                            tracing::info!("drained: no request in flight");
                        }
                        ShutdownSignal::GracefulTerminate
                    }
                    _ = int.recv() => {
                        tracing::info!(in_flight = self.drain.in_flight(), "SIGINT received while draining: stopping now");
                        ShutdownSignal::FastShutdown
                    }
                }
            }
            _ = int.recv() => {
                tracing::info!(in_flight = self.drain.in_flight(), "SIGINT received: stopping now");
                ShutdownSignal::FastShutdown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_when_the_last_request_ends_or_at_the_grace_period() {
        let drain = Arc::new(Drain::default());
        assert_eq!(drain.drain(Duration::from_secs(10)).await, 0, "idle: at once");
        assert!(drain.is_draining());

        let drain = Arc::new(Drain::default());
        let request = drain.enter();
        let other = drain.enter();
        assert_eq!(drain.in_flight(), 2);
        drop(other);
        let started = tokio::time::Instant::now();
        let ending = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(request);
        });
        assert_eq!(drain.drain(Duration::from_secs(10)).await, 0);
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(4), "{took:?}");
        ending.await.unwrap();

        let stuck = drain.enter();
        let started = tokio::time::Instant::now();
        assert_eq!(drain.drain(Duration::from_secs(2)).await, 1, "the grace period bounds the wait");
        assert!(started.elapsed() >= Duration::from_secs(2));
        drop(stuck);
        assert_eq!(drain.in_flight(), 0);
    }
}
