//! A minimal HTTP/1.1 server for the stand-ins: a handler function per request, one task per
//! connection, stopped when the returned [`ServerTask`] is dropped.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Response body type of the stand-ins.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A whole response body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed()
}

/// A response with a body and Content-Length.
pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(full(body))
        .expect("valid response parts")
}

/// The accept loop of a stand-in; aborted on drop.
pub struct ServerTask {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler` on `listener` in the current runtime. Dropping the returned task stops the
/// server and its open connections with it, as a killed process would.
pub fn serve<H, F>(listener: TcpListener, handler: H) -> ServerTask
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let addr = listener.local_addr().expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            while connections.try_join_next().is_some() {}
            let handler = handler.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    ServerTask { addr, task }
}

/// Reserves a port on 127.0.0.1 for a server that must be told its address (Pingora cannot report
/// a port-0 bind). The port is free when handed out, comes from below the kernel's ephemeral range
/// (so no outgoing connection and no port-0 bind on this machine takes it before the server binds
/// it), and is never handed out twice by one process (so a port handed out to stay dead does).
pub fn free_port() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Processes (test binaries run one after another, or two CI runs) start at different places;
    // within one process the start is fixed, so consecutive offsets never give a port twice.
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    const LOWEST: u32 = 10_000;
    let below = ephemeral_low().max(LOWEST + 1_000);
    let span = below - LOWEST;
    let start = *START.get_or_init(|| {
        std::process::id().wrapping_mul(7_919)
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
    }) % span;
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = LOWEST + (start + offset) % span;
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free port in {LOWEST}..{below}");
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .filter(|low: &u32| *low <= 65_535)
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_never_handed_out_twice_and_stay_below_the_ephemeral_range() {
        let low = super::ephemeral_low();
        let ports: Vec<u16> = (0..500).map(|_| super::free_port().port()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|&p| u32::from(p) >= 10_000 && (low < 11_000 || u32::from(p) < low)), "{ports:?}");
    }
}
